//! Call records, exactly once: from the proxy's call events to rated rows in
//! the store, through the node's [journal](crate::journal).
//!
//! The SIP path only puts an event on an unbounded channel (no I/O, no
//! lock held). The recorder task turns events into records, appends them to
//! the journal and syncs it, and only then hands finished records to the
//! writer task, which inserts them in batches and reports back which are
//! stored, so the journal can forget them. When the database is away the
//! writer retries with backoff while the journal holds everything; when the
//! node is killed, the next start closes the calls that were open at the last
//! instant the node knew them to be up, marks them recovered, and writes the
//! finished records again (`record_uid` makes repeats harmless).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use pbx_store::call_records::{
    CallDirection, Disposition, HangupSide as StoredHangup, NewCallRecord,
};
use pbx_store::{Millis, Principal, Store};
use tokio::sync::{mpsc, oneshot};

use crate::events::{CallOutcome, EventBus, HangupSide, SipEvent};
use crate::journal::{Entry, Journal, JournalError, Recovered};

/// What the recorder is told.
pub enum Note {
    Event(SipEvent),
    /// Resolves once every finished record is stored (or the wait is given up).
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub spool_dir: PathBuf,
    pub node_id: String,
    /// Answered calls are closed this long after their answer at the latest.
    pub max_call_duration: Duration,
    /// How often the journal notes that the node and its calls are alive.
    pub beat: Duration,
    /// Records per database batch.
    pub batch: usize,
}

impl RecorderConfig {
    pub fn new(spool_dir: PathBuf, node_id: &str) -> RecorderConfig {
        RecorderConfig {
            spool_dir,
            node_id: node_id.to_owned(),
            max_call_duration: Duration::from_secs(4 * 3600),
            beat: Duration::from_secs(2),
            batch: 500,
        }
    }
}

/// The handle the proxy sends notes through.
#[derive(Clone)]
pub struct RecorderHandle {
    tx: mpsc::UnboundedSender<Note>,
}

impl RecorderHandle {
    pub fn event(&self, event: SipEvent) {
        // A closed channel means the node is stopping; the journal has the rest.
        let _ = self.tx.send(Note::Event(event));
    }

    /// Waits until finished records are stored, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Note::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(())))
    }
}

/// Who is in a call: its Call-ID and the caller's From tag.
type CallKey = (String, String);

/// Opens the journal, closes what a previous run left open, and starts the
/// recorder and writer tasks.
pub fn start(
    config: RecorderConfig,
    store: Store,
    events: EventBus,
) -> Result<(RecorderHandle, Vec<tokio::task::JoinHandle<()>>), JournalError> {
    let (mut journal, recovered) = Journal::open(&config.spool_dir)?;
    let now = pbx_store::now_ms();
    let closed = close_recovered(&config, &recovered, now);
    if !closed.is_empty() {
        tracing::warn!(
            calls = closed.len(),
            "calls left open by the previous run closed as recovered"
        );
    }
    let mut pending: HashMap<String, NewCallRecord> = recovered.pending;
    for record in closed {
        pending.insert(record.record_uid.clone(), record);
    }
    // What the previous run left is rewritten as finished records only.
    let keep: Vec<Entry> = pending
        .values()
        .map(|r| Entry::End { record: r.clone() })
        .collect();
    journal.compact(&keep)?;
    if !pending.is_empty() {
        tracing::info!(records = pending.len(), "spooled call records to write");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (to_writer, writer_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut initial: Vec<NewCallRecord> = pending.values().cloned().collect();
    initial.sort_by_key(|r| r.invite_at);
    let writer = tokio::spawn(write_loop(
        store,
        config.spool_dir.clone(),
        config.batch,
        initial,
        writer_rx,
        done_tx,
        events,
    ));
    let state = State {
        boot: pbx_store::secrets::random_token(6),
        seq: 0,
        open: HashMap::new(),
        legs: HashMap::new(),
        recent: HashMap::new(),
        pending,
        flush_waiters: Vec::new(),
        config,
    };
    let recorder = tokio::spawn(record_loop(state, journal, rx, done_rx, to_writer));
    Ok((RecorderHandle { tx }, vec![recorder, writer]))
}

/// Closes the calls a crashed run left open: at the last instant the node
/// knew them up, never before they began, never beyond the maximum duration.
fn close_recovered(
    config: &RecorderConfig,
    recovered: &Recovered,
    now: Millis,
) -> Vec<NewCallRecord> {
    let max = i64::try_from(config.max_call_duration.as_millis()).unwrap_or(i64::MAX);
    let mut out: Vec<NewCallRecord> = recovered
        .open
        .values()
        .map(|open| {
            let mut r = open.clone();
            let last_alive = recovered.last_alive.unwrap_or(r.invite_at).min(now);
            match r.answer_at {
                Some(answer) => {
                    r.end_at = last_alive.clamp(answer, answer.saturating_add(max));
                    r.disposition = Disposition::Answered;
                    r.sip_status = Some(200);
                }
                None => {
                    r.end_at = last_alive.max(r.invite_at);
                    r.disposition = Disposition::Failed;
                    r.sip_status = None;
                }
            }
            r.hangup_side = Some(StoredHangup::System);
            r.end_reason = Some("node_restart".into());
            r.recovered = true;
            r
        })
        .collect();
    out.sort_by_key(|r| r.invite_at);
    out
}

struct State {
    config: RecorderConfig,
    /// Makes record uids unique across restarts of the node.
    boot: String,
    seq: u64,
    open: HashMap<CallKey, NewCallRecord>,
    /// Outbound legs of open calls forwarded to a number outside.
    legs: HashMap<CallKey, NewCallRecord>,
    /// Calls ended lately: a retransmitted request refused statelessly must
    /// not open a second record.
    recent: HashMap<CallKey, Millis>,
    /// Finished records not yet stored, by uid.
    pending: HashMap<String, NewCallRecord>,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

/// How long an ended call's key is remembered (64 × T1 covers retransmissions).
const RECENT_MS: Millis = 64_000;
/// Calls that never reached a final answer are given up after this long.
const STUCK_SETUP_MS: Millis = 10 * 60_000;
/// How long the writer lets finished records gather before a batch.
const LINGER: Duration = Duration::from_millis(100);

/// How long the recorder lets call events gather after it woke for one:
/// the SIP threads then hand it events without waking it each time (a
/// wake-up of a parked runtime thread costs more than turning an event into
/// a journal entry).
const GATHER: Duration = Duration::from_millis(10);
/// The journal is rewritten once this much was appended since the last time.
const COMPACT_BYTES: u64 = 64 << 20;

fn hangup(side: HangupSide) -> StoredHangup {
    match side {
        HangupSide::Caller => StoredHangup::Caller,
        HangupSide::Callee => StoredHangup::Callee,
        HangupSide::System => StoredHangup::System,
    }
}

/// How a call ended, as its `call_ended` event says.
struct Ending {
    outcome: CallOutcome,
    sip_status: u16,
    side: Option<HangupSide>,
    reason: Option<&'static str>,
    at: Millis,
}

/// Notes the answer on an open record (once).
fn answer(
    r: &mut NewCallRecord,
    at: Millis,
    callee_device: Option<pbx_store::DeviceId>,
    callee_extension: Option<pbx_store::ExtensionId>,
    trunk: Option<pbx_store::TrunkId>,
    recording: Option<pbx_store::call_recordings::NewRecording>,
    journal: &mut Vec<Entry>,
) {
    if r.answer_at.is_some() {
        return;
    }
    r.recording.clone_from(&recording);
    r.answer_at = Some(at.max(r.invite_at));
    r.callee_device_id = callee_device;
    if trunk.is_some() {
        r.trunk_id = trunk;
    }
    // Who answered: a ring group's member, a forward's target.
    if callee_extension.is_some() {
        r.callee_extension_id = callee_extension;
    }
    journal.push(Entry::Answer {
        uid: r.record_uid.clone(),
        at: at.max(r.invite_at),
        callee_device: callee_device.map(|d| d.0),
        callee_extension: callee_extension.map(|e| e.0),
        trunk: trunk.map(|t| t.0),
        recording,
    });
}

/// Completes an open record as `end` says; `trunk` is the one finally used.
fn close(r: &mut NewCallRecord, end: &Ending, trunk: Option<pbx_store::TrunkId>) {
    r.end_at = end.at.max(r.answer_at.unwrap_or(r.invite_at));
    r.disposition = disposition(end.outcome);
    if r.disposition == Disposition::Answered && r.answer_at.is_none() {
        r.answer_at = Some(r.end_at);
    }
    if r.disposition != Disposition::Answered {
        r.answer_at = None;
    }
    r.sip_status = Some(end.sip_status);
    r.hangup_side = end.side.map(hangup);
    r.end_reason = end.reason.map(str::to_owned);
    if trunk.is_some() {
        r.trunk_id = trunk;
    }
}

fn disposition(outcome: CallOutcome) -> Disposition {
    match outcome {
        CallOutcome::Answered => Disposition::Answered,
        CallOutcome::Busy => Disposition::Busy,
        CallOutcome::NoAnswer => Disposition::NoAnswer,
        CallOutcome::Cancelled => Disposition::Cancelled,
        CallOutcome::Failed => Disposition::Failed,
    }
}

impl State {
    fn on_event(
        &mut self,
        event: SipEvent,
        journal: &mut Vec<Entry>,
        finished: &mut Vec<NewCallRecord>,
    ) {
        match event {
            SipEvent::CallStarted {
                reseller,
                customer,
                call_id,
                caller_tag,
                caller,
                callee,
                caller_extension,
                callee_extension,
                caller_device,
                direction,
                destination,
                stateless,
                at,
            } => {
                let key = (call_id, caller_tag);
                // A call set up statefully may reuse the key of one ended a
                // moment ago (a new INVITE after a CANCEL): it is a new call.
                if self.open.contains_key(&key) || (stateless && self.recent.contains_key(&key)) {
                    return;
                }
                self.seq += 1;
                let record = NewCallRecord {
                    record_uid: format!("{}-{}-{}", self.config.node_id, self.boot, self.seq),
                    call_id: key.0.clone(),
                    leg: 0,
                    reseller_id: reseller,
                    customer_id: customer,
                    direction,
                    caller,
                    callee,
                    caller_extension_id: caller_extension,
                    callee_extension_id: callee_extension,
                    caller_device_id: caller_device,
                    callee_device_id: None,
                    destination,
                    trunk_id: None,
                    invite_at: at,
                    answer_at: None,
                    end_at: at,
                    disposition: Disposition::Failed,
                    sip_status: None,
                    hangup_side: None,
                    end_reason: None,
                    recovered: false,
                    node_id: self.config.node_id.clone(),
                    media: None,
                    recording: None,
                };
                journal.push(Entry::Open {
                    record: record.clone(),
                });
                self.open.insert(key, record);
            }
            SipEvent::CallForwardedOut {
                call_id,
                caller_tag,
                by_extension,
                callee,
                destination,
                at,
                ..
            } => {
                let key = (call_id, caller_tag);
                let Some(base) = self.open.get(&key) else {
                    return;
                };
                if self.legs.contains_key(&key) {
                    return;
                }
                self.seq += 1;
                // The outbound leg: placed by the extension that forwards,
                // billed to its customer like a call it dialled.
                let leg = NewCallRecord {
                    record_uid: format!("{}-{}-{}", self.config.node_id, self.boot, self.seq),
                    leg: 1,
                    direction: CallDirection::Outbound,
                    callee,
                    caller_extension_id: Some(by_extension),
                    callee_extension_id: None,
                    caller_device_id: None,
                    callee_device_id: None,
                    destination: Some(destination),
                    trunk_id: None,
                    invite_at: at.max(base.invite_at),
                    end_at: at.max(base.invite_at),
                    ..base.clone()
                };
                journal.push(Entry::Open {
                    record: leg.clone(),
                });
                self.legs.insert(key, leg);
            }
            SipEvent::CallAnswered {
                call_id,
                caller_tag,
                callee_device,
                callee_extension,
                trunk,
                at,
                recording,
                ..
            } => {
                let key = (call_id, caller_tag);
                let forwarded = self.legs.contains_key(&key);
                if let Some(r) = self.open.get_mut(&key) {
                    // A forwarded call's trunk is its outbound leg's; its
                    // recording is the call's (one file, one row).
                    let trunk = if forwarded { None } else { trunk };
                    answer(
                        r,
                        at,
                        callee_device,
                        callee_extension,
                        trunk,
                        recording,
                        journal,
                    );
                }
                if let Some(leg) = self.legs.get_mut(&key) {
                    answer(leg, at, None, None, trunk, None, journal);
                }
            }
            SipEvent::CallEnded {
                call_id,
                caller_tag,
                outcome,
                sip_status,
                hangup: side,
                reason,
                trunk,
                at,
                media,
                ..
            } => {
                let key = (call_id, caller_tag);
                let mut leg = self.legs.remove(&key);
                let Some(mut r) = self.open.remove(&key) else {
                    return;
                };
                // A forwarded call's media is its outbound leg's too.
                let media = media.map(|m| *m);
                r.media.clone_from(&media);
                if let Some(leg) = leg.as_mut() {
                    leg.media = media;
                }
                let end = Ending {
                    outcome,
                    sip_status,
                    side,
                    reason,
                    at,
                };
                close(&mut r, &end, if leg.is_some() { None } else { trunk });
                self.finish(key.clone(), r, at, journal, finished);
                if let Some(mut leg) = leg {
                    close(&mut leg, &end, trunk);
                    self.finish(key, leg, at, journal, finished);
                }
            }
            _ => {}
        }
    }

    fn finish(
        &mut self,
        key: CallKey,
        record: NewCallRecord,
        now: Millis,
        journal: &mut Vec<Entry>,
        finished: &mut Vec<NewCallRecord>,
    ) {
        self.recent.insert(key, now);
        journal.push(Entry::End {
            record: record.clone(),
        });
        self.pending
            .insert(record.record_uid.clone(), record.clone());
        finished.push(record);
    }

    /// The beat: notes that open calls are up, and closes calls the proxy
    /// lost track of (a safety net; the dialogs' own expiry comes first).
    fn on_beat(
        &mut self,
        now: Millis,
        journal: &mut Vec<Entry>,
        finished: &mut Vec<NewCallRecord>,
    ) {
        self.recent.retain(|_, at| now - *at < RECENT_MS);
        let max = i64::try_from(self.config.max_call_duration.as_millis()).unwrap_or(i64::MAX);
        let grace = 60_000;
        let lost: Vec<CallKey> = self
            .open
            .iter()
            .filter(|(_, r)| match r.answer_at {
                Some(answer) => now - answer > max.saturating_add(grace),
                None => now - r.invite_at > STUCK_SETUP_MS,
            })
            .map(|(k, _)| k.clone())
            .collect();
        let give_up = |r: &mut NewCallRecord| {
            match r.answer_at {
                Some(answer) => {
                    r.end_at = answer.saturating_add(max).max(r.invite_at);
                    r.disposition = Disposition::Answered;
                    r.end_reason = Some("max_duration".into());
                }
                None => {
                    r.end_at = now;
                    r.end_reason = Some("setup_timeout".into());
                }
            }
            r.hangup_side = Some(StoredHangup::System);
        };
        for key in lost {
            let leg = self.legs.remove(&key);
            if let Some(mut r) = self.open.remove(&key) {
                give_up(&mut r);
                tracing::warn!(call_id = %r.call_id, customer = %r.customer_id, "call closed by the recorder's safety net");
                self.finish(key.clone(), r, now, journal, finished);
            }
            if let Some(mut leg) = leg {
                give_up(&mut leg);
                self.finish(key, leg, now, journal, finished);
            }
        }
        if !self.open.is_empty() {
            journal.push(Entry::Beat { at: now });
        }
    }

    fn on_done(&mut self, uids: Vec<String>, journal: &mut Vec<Entry>) {
        for uid in &uids {
            self.pending.remove(uid);
        }
        journal.push(Entry::Done { uids });
        if self.pending.is_empty() {
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// What a compacted journal must hold.
    fn snapshot(&self) -> Vec<Entry> {
        let open = self
            .open
            .values()
            .chain(self.legs.values())
            .map(|r| Entry::Open { record: r.clone() });
        let pending = self
            .pending
            .values()
            .map(|r| Entry::End { record: r.clone() });
        open.chain(pending).collect()
    }
}

async fn record_loop(
    mut state: State,
    mut journal: Journal,
    mut rx: mpsc::UnboundedReceiver<Note>,
    mut done_rx: mpsc::UnboundedReceiver<Vec<String>>,
    to_writer: mpsc::UnboundedSender<Vec<NewCallRecord>>,
) {
    let mut beat = tokio::time::interval(state.config.beat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut entries = Vec::new();
        let mut finished = Vec::new();
        let mut woken_by_note = false;
        tokio::select! {
            note = rx.recv() => {
                let Some(note) = note else { return };
                woken_by_note = true;
                let mut next = Some(note);
                // Everything already queued goes into the same write.
                while let Some(note) = next.take() {
                    match note {
                        Note::Event(event) => state.on_event(event, &mut entries, &mut finished),
                        Note::Flush(waiter) => {
                            entries.push(Entry::Beat { at: pbx_store::now_ms() });
                            journal.append(&std::mem::take(&mut entries)).ok();
                            journal.sync();
                            if state.pending.is_empty() {
                                let _ = waiter.send(());
                            } else {
                                state.flush_waiters.push(waiter);
                            }
                        }
                    }
                    if entries.len() < 4096 {
                        next = rx.try_recv().ok();
                    }
                }
            }
            uids = done_rx.recv() => {
                let Some(uids) = uids else { return };
                state.on_done(uids, &mut entries);
            }
            _ = beat.tick() => state.on_beat(pbx_store::now_ms(), &mut entries, &mut finished),
        }
        // A small append to the page cache: done here, not on a blocking
        // thread (the disk flush happens on the journal's syncer thread).
        if let Err(e) = journal.append(&entries) {
            // Records stay in memory and go to the database; only their crash
            // safety is lost until the disk recovers.
            tracing::error!(error = %e, "call-record journal write failed");
        }
        if journal.written() > COMPACT_BYTES {
            // Rewriting and syncing the file takes a while: not on the runtime.
            let keep = state.snapshot();
            let mut j = journal;
            match tokio::task::spawn_blocking(move || {
                let result = j.compact(&keep);
                (j, result)
            })
            .await
            {
                Ok((j, result)) => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, "call-record journal compaction failed");
                    }
                    journal = j;
                }
                Err(e) => {
                    tracing::error!(error = %e, "call-record journal task failed");
                    return;
                }
            }
        }
        // Only journaled records go to the database.
        if !finished.is_empty() && to_writer.send(finished).is_err() {
            return;
        }
        if woken_by_note {
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// Writes finished records to the store in batches, retrying while the
/// database is unreachable, and reports the uids that are stored.
async fn write_loop(
    store: Store,
    spool_dir: PathBuf,
    batch: usize,
    initial: Vec<NewCallRecord>,
    mut rx: mpsc::UnboundedReceiver<Vec<NewCallRecord>>,
    done: mpsc::UnboundedSender<Vec<String>>,
    events: EventBus,
) {
    let system = Principal::system();
    let mut queue: VecDeque<NewCallRecord> = initial.into();
    let mut backoff = Duration::from_millis(250);
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(records) => queue.extend(records),
                None => return,
            }
            // Let a batch gather: one transaction for many records costs far
            // less than one each, and the journal holds them meanwhile.
            tokio::time::sleep(LINGER).await;
        }
        while let Ok(records) = rx.try_recv() {
            queue.extend(records);
        }
        let n = queue.len().min(batch.max(1));
        let chunk: Vec<NewCallRecord> = queue.iter().take(n).cloned().collect();
        match store.call_records().insert_batch(&system, &chunk).await {
            Ok(_) => {
                queue.drain(..n);
                backoff = Duration::from_millis(250);
                announce(&events, &chunk);
                let _ = done.send(chunk.into_iter().map(|r| r.record_uid).collect());
            }
            Err(e) if e.is_unavailable() && !e.is_refused_data() => {
                tracing::warn!(error = %e, spooled = queue.len(), retry_in_ms = backoff.as_millis() as u64,
                    "call records not written yet; they are spooled and will be retried");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                // A record the database refuses for its content must not hold
                // up the others: write them one by one and set aside the ones
                // refused, in a file, never dropped.
                tracing::error!(error = %e, "a call-record batch was refused; writing one by one");
                let mut stored = Vec::new();
                for record in chunk {
                    match store
                        .call_records()
                        .insert_batch(&system, std::slice::from_ref(&record))
                        .await
                    {
                        Ok(_) => {
                            announce(&events, std::slice::from_ref(&record));
                            stored.push(record.record_uid);
                        }
                        Err(e) if e.is_unavailable() && !e.is_refused_data() => break,
                        Err(e) => {
                            tracing::error!(error = %e, record_uid = %record.record_uid, call_id = %record.call_id,
                                "call record refused by the database; kept in rejected-call-records.jsonl");
                            if set_aside(&spool_dir, &record).is_ok() {
                                stored.push(record.record_uid);
                            }
                        }
                    }
                }
                queue.retain(|r| !stored.contains(&r.record_uid));
                let _ = done.send(stored);
            }
        }
    }
}

/// Tells the event bus that these records are stored and priced.
fn announce(events: &EventBus, records: &[NewCallRecord]) {
    let now = pbx_store::now_ms();
    for r in records {
        events.publish(SipEvent::RecordRated {
            reseller: r.reseller_id,
            customer: r.customer_id,
            call_id: r.call_id.clone(),
            record_uid: r.record_uid.clone(),
            direction: r.direction,
            disposition: r.disposition,
            billable_ms: r.billable_ms(),
            at: now,
        });
    }
}

fn set_aside(dir: &std::path::Path, record: &NewCallRecord) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("rejected-call-records.jsonl"))?;
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_store::call_records::CallDirection;
    use pbx_store::{CustomerId, ResellerId};

    fn open_call(uid: &str, invite: Millis, answer: Option<Millis>) -> NewCallRecord {
        NewCallRecord {
            record_uid: uid.into(),
            call_id: uid.into(),
            leg: 0,
            reseller_id: ResellerId(1),
            customer_id: CustomerId(1),
            direction: CallDirection::Internal,
            caller: "101".into(),
            callee: "102".into(),
            caller_extension_id: None,
            callee_extension_id: None,
            caller_device_id: None,
            callee_device_id: None,
            destination: None,
            trunk_id: None,
            invite_at: invite,
            answer_at: answer,
            end_at: invite,
            disposition: Disposition::Failed,
            sip_status: None,
            hangup_side: None,
            end_reason: None,
            recovered: false,
            node_id: "n".into(),
            media: None,
            recording: None,
        }
    }

    #[test]
    fn recovered_calls_end_at_the_last_sign_of_life_within_bounds() {
        let mut config = RecorderConfig::new(PathBuf::from("/nonexistent"), "n");
        config.max_call_duration = Duration::from_secs(3600);
        let mut recovered = Recovered {
            last_alive: Some(100_000),
            ..Recovered::default()
        };
        for r in [
            open_call("talking", 10_000, Some(20_000)),
            open_call("ringing", 90_000, None),
            open_call("answered-after-last-beat", 10_000, Some(150_000)),
        ] {
            recovered.open.insert(r.record_uid.clone(), r);
        }
        let closed = close_recovered(&config, &recovered, 200_000);
        let get = |uid: &str| closed.iter().find(|r| r.record_uid == uid).expect("closed");
        let talking = get("talking");
        assert_eq!(
            (talking.end_at, talking.disposition),
            (100_000, Disposition::Answered)
        );
        assert!(talking.recovered);
        assert_eq!(talking.hangup_side, Some(StoredHangup::System));
        let ringing = get("ringing");
        assert_eq!(
            (ringing.end_at, ringing.disposition),
            (100_000, Disposition::Failed)
        );
        assert_eq!(
            get("answered-after-last-beat").end_at,
            150_000,
            "never before the answer"
        );
        // A call older than the maximum duration is cut at the maximum.
        let mut old = Recovered {
            last_alive: Some(10_000_000),
            ..Recovered::default()
        };
        old.open
            .insert("long".into(), open_call("long", 0, Some(1_000)));
        let closed = close_recovered(&config, &old, 10_000_000);
        assert_eq!(closed[0].end_at, 1_000 + 3_600_000);
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use pbx_store::call_records::CallDirection;
    use pbx_store::{CustomerId, ExtensionId, ResellerId, TrunkId};

    fn state() -> State {
        State {
            config: RecorderConfig::new(PathBuf::from("/nonexistent"), "n"),
            boot: "b".into(),
            seq: 0,
            open: HashMap::new(),
            legs: HashMap::new(),
            recent: HashMap::new(),
            pending: HashMap::new(),
            flush_waiters: Vec::new(),
        }
    }

    fn started(tag: &str, stateless: bool, at: Millis) -> SipEvent {
        SipEvent::CallStarted {
            reseller: ResellerId(1),
            customer: CustomerId(1),
            call_id: "c".into(),
            caller_tag: tag.into(),
            caller: "101".into(),
            callee: "102".into(),
            caller_extension: None,
            callee_extension: Some(ExtensionId(2)),
            caller_device: None,
            direction: CallDirection::Internal,
            destination: None,
            stateless,
            at,
        }
    }

    fn ended(tag: &str, outcome: CallOutcome, trunk: Option<TrunkId>, at: Millis) -> SipEvent {
        SipEvent::CallEnded {
            reseller: ResellerId(1),
            customer: CustomerId(1),
            call_id: "c".into(),
            caller_tag: tag.into(),
            outcome,
            sip_status: if outcome == CallOutcome::Answered {
                200
            } else {
                487
            },
            hangup: None,
            reason: None,
            trunk,
            at,
            media: None,
        }
    }

    #[test]
    fn a_new_call_reusing_an_ended_calls_key_gets_its_own_record_but_a_refusal_once() {
        let mut s = state();
        let (mut j, mut done) = (Vec::new(), Vec::new());
        s.on_event(started("t", false, 1), &mut j, &mut done);
        s.on_event(
            ended("t", CallOutcome::Cancelled, None, 2),
            &mut j,
            &mut done,
        );
        // A new INVITE after the CANCEL, same Call-ID and tag: a new call.
        s.on_event(started("t", false, 3), &mut j, &mut done);
        s.on_event(
            ended("t", CallOutcome::Cancelled, None, 4),
            &mut j,
            &mut done,
        );
        assert_eq!(done.len(), 2);
        // A refused request's retransmission is refused again: one record.
        for at in [5, 6] {
            s.on_event(started("t;z9hG4bKr", true, at), &mut j, &mut done);
            s.on_event(
                ended("t;z9hG4bKr", CallOutcome::Failed, None, at),
                &mut j,
                &mut done,
            );
        }
        assert_eq!(done.len(), 3);
    }

    #[test]
    fn a_call_forwarded_out_ends_with_two_legs_and_the_trunk_on_the_outbound_one() {
        let mut s = state();
        let (mut j, mut done) = (Vec::new(), Vec::new());
        s.on_event(started("t", false, 1_000), &mut j, &mut done);
        s.on_event(
            SipEvent::CallForwardedOut {
                reseller: ResellerId(1),
                customer: CustomerId(1),
                call_id: "c".into(),
                caller_tag: "t".into(),
                by_extension: ExtensionId(2),
                callee: "01711234567".into(),
                destination: "491711234567".into(),
                at: 2_000,
            },
            &mut j,
            &mut done,
        );
        s.on_event(
            SipEvent::CallAnswered {
                reseller: ResellerId(1),
                customer: CustomerId(1),
                call_id: "c".into(),
                caller_tag: "t".into(),
                callee_device: None,
                callee_extension: None,
                trunk: Some(TrunkId(7)),
                at: 3_000,
                recording: None,
            },
            &mut j,
            &mut done,
        );
        s.on_event(
            ended("t", CallOutcome::Answered, Some(TrunkId(7)), 63_000),
            &mut j,
            &mut done,
        );
        assert_eq!(done.len(), 2);
        let (call, leg) = (&done[0], &done[1]);
        assert_eq!((call.leg, leg.leg), (0, 1));
        assert_ne!(call.record_uid, leg.record_uid);
        assert_eq!(call.trunk_id, None);
        assert_eq!(call.callee_extension_id, Some(ExtensionId(2)));
        assert_eq!(leg.trunk_id, Some(TrunkId(7)));
        assert_eq!(leg.direction, CallDirection::Outbound);
        assert_eq!(leg.caller_extension_id, Some(ExtensionId(2)));
        assert_eq!(leg.destination.as_deref(), Some("491711234567"));
        assert_eq!(
            (leg.invite_at, leg.answer_at, leg.end_at),
            (2_000, Some(3_000), 63_000)
        );
        assert!(s.open.is_empty() && s.legs.is_empty());
    }
}
