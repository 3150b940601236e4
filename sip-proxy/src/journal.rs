//! The call-record journal: a node's durable spool on local disk.
//!
//! Every call's start, answer and end is appended here (one JSON line each)
//! before anything else happens to it: written at once, so a killed process
//! loses nothing, and flushed to the disk by a syncer thread at most
//! [`SYNC_INTERVAL`] later (group commit), so a power cut loses at most that;
//! and a `done` line once the records reached the database. So after a crash
//! or while the database is away, the journal alone says which calls were
//! open (they are closed as recovered), which records are finished but not
//! yet stored (they are written again; `record_uid` makes that idempotent),
//! and when the node last knew its calls were up (`beat` lines).
//!
//! The file is compacted by rewriting only what is still needed to a new file
//! and renaming it over the old one, so it stays small however long the node
//! runs. A torn last line (a crash in the middle of a write) is ignored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pbx_store::call_records::NewCallRecord;
use pbx_store::Millis;
use serde::{Deserialize, Serialize};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Entry {
    /// A call was set up; `record` holds what is known so far.
    Open { record: NewCallRecord },
    /// It was answered.
    Answer {
        uid: String,
        at: Millis,
        callee_device: Option<i64>,
        /// The extension that answered (a ring group's member, a forward's
        /// target); absent in journals written before it was recorded.
        #[serde(default)]
        callee_extension: Option<i64>,
        /// The carrier trunk that answered (calls to the public network).
        #[serde(default)]
        trunk: Option<i64>,
        /// The call's recording, if it is recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<pbx_store::call_recordings::NewRecording>,
    },
    /// It is finished: the complete record.
    End { record: NewCallRecord },
    /// These records are in the database.
    Done { uids: Vec<String> },
    /// The node was alive, and every open call still up, at this instant.
    Beat { at: Millis },
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Calls that were in progress, by uid, as far as they got.
    pub open: HashMap<String, NewCallRecord>,
    /// Finished records not yet confirmed in the database, by uid.
    pub pending: HashMap<String, NewCallRecord>,
    /// The last instant the node wrote a beat or any entry with a time.
    pub last_alive: Option<Millis>,
}

impl Recovered {
    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Open { record } => {
                self.alive(record.invite_at);
                self.open.insert(record.record_uid.clone(), record);
            }
            Entry::Answer {
                uid,
                at,
                callee_device,
                callee_extension,
                trunk,
                recording,
            } => {
                self.alive(at);
                if let Some(r) = self.open.get_mut(&uid) {
                    r.answer_at = Some(at);
                    if recording.is_some() {
                        r.recording = recording;
                    }
                    r.callee_device_id = callee_device.map(pbx_store::DeviceId);
                    if let Some(t) = trunk {
                        r.trunk_id = Some(pbx_store::TrunkId(t));
                    }
                    if let Some(e) = callee_extension {
                        r.callee_extension_id = Some(pbx_store::ExtensionId(e));
                    }
                }
            }
            Entry::End { record } => {
                self.alive(record.end_at);
                self.open.remove(&record.record_uid);
                self.pending.insert(record.record_uid.clone(), record);
            }
            Entry::Done { uids } => {
                for uid in uids {
                    self.pending.remove(&uid);
                }
            }
            Entry::Beat { at } => self.alive(at),
        }
    }

    fn alive(&mut self, at: Millis) {
        self.last_alive = Some(self.last_alive.map_or(at, |a| a.max(at)));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("call-record journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The open journal file.
pub struct Journal {
    path: PathBuf,
    file: File,
    syncer: Arc<Syncer>,
    /// Bytes appended since the last compaction.
    written: u64,
}

const FILE_NAME: &str = "call-records.journal";

/// How long written entries may wait for `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);

/// Flushes the journal to disk in groups, on a thread of its own, so that
/// neither the SIP path nor the runtime waits for the disk.
struct Syncer {
    file: Mutex<Option<File>>,
    dirty: AtomicBool,
}

impl Syncer {
    fn run(self: Arc<Syncer>) {
        // Ends when the journal (the other owner) is gone.
        while Arc::strong_count(&self) > 1 {
            std::thread::sleep(SYNC_INTERVAL);
            self.sync();
        }
        self.sync();
    }

    fn sync(&self) {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Err(e)) = file.as_ref().map(File::sync_data) {
                tracing::error!(error = %e, "call-record journal sync failed");
            }
        }
    }
}

impl Journal {
    /// Opens (creating) the journal in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> Result<(Journal, Recovered), JournalError> {
        let io = |source| JournalError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(FILE_NAME);
        let mut recovered = Recovered::default();
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        // Everything after the last newline is a write the crash cut short.
        let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in data[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => recovered.apply(entry),
                Err(e) => tracing::warn!(error = %e, "skipping a damaged journal line"),
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if whole < data.len() {
            tracing::warn!(bytes = data.len() - whole, "dropping a torn journal write");
            file.set_len(whole as u64).map_err(io)?;
        }
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        let syncer = Arc::new(Syncer {
            file: Mutex::new(file.try_clone().ok()),
            dirty: AtomicBool::new(false),
        });
        let thread_syncer = syncer.clone();
        std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || thread_syncer.run())
            .map_err(io)?;
        Ok((
            Journal {
                path,
                file,
                syncer,
                written,
            },
            recovered,
        ))
    }

    fn err(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends entries: in the file (safe from a crash of the process) when
    /// this returns, on the disk within [`SYNC_INTERVAL`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let buf = encode(entries);
        self.file.write_all(&buf).map_err(|e| self.err(e))?;
        self.syncer.dirty.store(true, Ordering::Release);
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Flushes everything appended to the disk now.
    pub fn sync(&self) {
        self.syncer.dirty.store(true, Ordering::Release);
        self.syncer.sync();
    }

    /// Bytes written since the file was last compacted.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Replaces the file by one holding only `keep` (the open calls and the
    /// records not yet stored), atomically: a crash leaves either file whole.
    pub fn compact(&mut self, keep: &[Entry]) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("journal.tmp");
        let buf = encode(keep);
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().append(true).open(&self.path)
        };
        self.file = write().map_err(|e| self.err(e))?;
        *self.syncer.file.lock().unwrap_or_else(|p| p.into_inner()) = self.file.try_clone().ok();
        self.written = buf.len() as u64;
        Ok(())
    }
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.len() * 256);
    for entry in entries {
        // Serialising our own types cannot fail.
        if serde_json::to_writer(&mut buf, entry).is_ok() {
            buf.push(b'\n');
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_store::call_records::{CallDirection, Disposition};
    use pbx_store::{CustomerId, ResellerId};

    fn record(uid: &str) -> NewCallRecord {
        NewCallRecord {
            record_uid: uid.into(),
            call_id: format!("{uid}@test"),
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
            invite_at: 1_000,
            answer_at: None,
            end_at: 1_000,
            disposition: Disposition::Failed,
            sip_status: None,
            hangup_side: None,
            end_reason: None,
            recovered: false,
            node_id: "n1".into(),
            media: None,
            recording: None,
        }
    }

    #[test]
    fn replay_tells_open_pending_and_stored_apart_and_survives_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let (mut j, rec) = Journal::open(&dir).expect("open");
            assert!(rec.open.is_empty() && rec.pending.is_empty());
            let mut ended = record("b");
            ended.end_at = 5_000;
            j.append(&[
                Entry::Open {
                    record: record("a"),
                },
                Entry::Open {
                    record: record("b"),
                },
                Entry::Open {
                    record: record("c"),
                },
                Entry::Answer {
                    uid: "a".into(),
                    at: 2_000,
                    callee_device: Some(7),
                    callee_extension: None,
                    trunk: None,
                    recording: None,
                },
                Entry::End { record: ended },
                Entry::End {
                    record: record("c"),
                },
                Entry::Done {
                    uids: vec!["c".into()],
                },
                Entry::Beat { at: 9_000 },
            ])
            .expect("append");
        }
        // A crash in the middle of a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE_NAME))
            .expect("reopen");
        f.write_all(b"{\"t\":\"end\",\"record\":{\"rec")
            .expect("torn");
        drop(f);
        let (mut j, rec) = Journal::open(&dir).expect("reopen");
        // The torn tail is gone, so the next line is whole.
        j.append(&[Entry::Beat { at: 9_500 }]).expect("append");
        drop(j);
        let (mut j, rec2) = Journal::open(&dir).expect("reopen again");
        assert_eq!(rec2.last_alive, Some(9_500));
        assert_eq!(rec.open.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(rec.open["a"].answer_at, Some(2_000));
        assert_eq!(rec.pending.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(rec.last_alive, Some(9_000));
        // Compaction keeps exactly what it is given.
        j.compact(&[Entry::End {
            record: rec.pending["b"].clone(),
        }])
        .expect("compact");
        drop(j);
        let (_, rec) = Journal::open(&dir).expect("after compaction");
        assert!(rec.open.is_empty());
        assert_eq!(rec.pending.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
