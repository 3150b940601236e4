//! Call recording in the relay (as rtpengine records for Kamailio): what
//! the relay forwards of a recorded call is copied, without waiting, to a
//! writer task that puts both sides back in order and writes them to a
//! stereo WAV file, the caller left and the callee right, 8 kHz 16-bit.
//!
//! The writers run on one thread of their own (the recorder), never on the
//! threads that relay and route calls: a slow or stalled disk holds up
//! recordings, not calls. Every 100 ms it takes what the relay queued for
//! each recording (the relay never wakes it: a wake-up per packet, or a
//! tick per frame, cost more than relaying the call) and writes five 20 ms
//! frames of each side (silence where a side sent nothing), so the two
//! channels stay aligned through loss, silence suppression, hold and a
//! restarted stream; a late tick is made up at once.
//! The file's header is brought up to date every few seconds: a node that
//! dies mid-call leaves a file that plays up to then. A write that fails
//! (a full disk) ends the recording, never the call.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::audio::{FRAME, RATE};
use crate::g711::Law;
use crate::jitter::{Inbound, Keep};
use crate::relay::RelayStats;

/// Packets waiting for the writer, per call: two seconds of both sides.
/// A writer that falls further behind loses packets (counted), never
/// holds up the relay.
const QUEUE: usize = 200;
/// The writer's tick, and the frames it writes per tick.
const TICK: Duration = Duration::from_millis(100);
const FRAMES_PER_TICK: usize = 5;
/// 60 ms of reordering is put right; at most 300 ms wait per side.
const WINDOW: u32 = 480;
const MOST: usize = 2400;
/// The most the recorder makes up after falling behind.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Ticks between header updates (5 s).
const FLUSH_TICKS: u32 = 50;
/// The longest payload kept whole (60 ms of G.711); longer ones are cut.
const PAYLOAD: usize = 480;

/// One forwarded packet of a recorded call, as it came (decoded by the
/// writer, off the relay's path).
#[derive(Debug)]
struct Tapped {
    caller: bool,
    law: Law,
    ssrc: u32,
    timestamp: u32,
    len: u16,
    payload: [u8; PAYLOAD],
}

/// What the relay hands the writer.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Vec<Tapped>>,
    /// The announcement is over: the file starts (before, nothing is
    /// written, so the file and its record start at the same moment).
    live: AtomicBool,
    /// The call's media ended: the writer finishes the file.
    ended: AtomicBool,
    /// The writer gave up (a write failed): nothing more is queued.
    stopped: AtomicBool,
}

/// The relay's end of a recording: copies packets to its writer. Dropping
/// it (the call's media ends) finishes the file.
#[derive(Debug)]
pub struct Tap {
    shared: Arc<Shared>,
    stats: Arc<RelayStats>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shared.ended.store(true, Ordering::Release);
    }
}

impl Tap {
    /// From now on the call is recorded (the announcement is over).
    pub fn go_live(&self) {
        self.shared.live.store(true, Ordering::Release);
    }

    /// An RTP packet one side sent (`caller`: the caller's side). Only
    /// G.711 is recorded; DTMF events and other payloads are left out.
    pub fn packet(&self, caller: bool, data: &[u8]) {
        if !self.shared.live.load(Ordering::Acquire) || self.shared.stopped.load(Ordering::Acquire)
        {
            return;
        }
        let Some((h, _, payload)) = crate::rtp::parse(data) else {
            return;
        };
        let Some(law) = Law::of_payload_type(h.payload_type) else {
            return;
        };
        let len = payload.len().min(PAYLOAD);
        let mut tapped = Tapped {
            caller,
            law,
            ssrc: h.ssrc,
            timestamp: h.timestamp,
            len: len as u16,
            payload: [0; PAYLOAD],
        };
        tapped.payload[..len].copy_from_slice(&payload[..len]);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() < QUEUE {
            queue.push(tapped);
        } else {
            self.stats
                .recording_dropped_packets
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Creates the file at `path` and hands its writing to the recorder. The
/// error is the file's: nothing is recorded then.
pub fn start(path: &Path, stats: Arc<RelayStats>) -> std::io::Result<Tap> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let file = std::fs::File::create(path)?;
    let writer = hound::WavWriter::new(BufWriter::with_capacity(64 * 1024, file), spec)
        .map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared::default());
    stats.recordings_started.fetch_add(1, Ordering::Relaxed);
    let job = Job::new(shared.clone(), writer, stats.clone(), path.to_owned());
    if let Err(mpsc::SendError(job)) = recorder().send(job) {
        // No recorder thread (it could not be started): the file is given up.
        job.abandon();
        return Err(std::io::Error::other("the recorder is not running"));
    }
    Ok(Tap { shared, stats })
}

/// The recorder thread's inbox, started with the first recording.
fn recorder() -> &'static mpsc::Sender<Job> {
    static INBOX: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    INBOX.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the recorder thread did not start: calls are not recorded");
        }
        tx
    })
}

/// The recorder: one tick of every recording each [`TICK`].
fn run(inbox: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut next = Instant::now();
    loop {
        // Idle, it sleeps until a recording comes.
        if jobs.is_empty() {
            match inbox.recv() {
                Ok(job) => jobs.push(job),
                Err(_) => return,
            }
            next = Instant::now();
        }
        jobs.extend(inbox.try_iter());
        next += TICK;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > CATCH_UP {
            // Far behind (a stalled disk, a suspended machine): what was
            // missed beyond this is not made up, the jitter buffers hold
            // no more than that anyway.
            next = now;
        }
        let mut i = 0;
        while i < jobs.len() {
            // One recording's fault (a bug) ends that recording, not the
            // recorder and every other call's.
            let tick = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jobs[i].tick()));
            match tick {
                Ok(false) => i += 1,
                Ok(true) => jobs.swap_remove(i).finish(),
                Err(_) => {
                    let job = jobs.swap_remove(i);
                    job.stats.recording_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(file = %job.path.display(), "a recording's writer failed: ended");
                    job.shared.stopped.store(true, Ordering::Release);
                }
            }
        }
    }
}

type Writer = hound::WavWriter<BufWriter<std::fs::File>>;

/// One recording being written.
struct Job {
    shared: Arc<Shared>,
    writer: Writer,
    stats: Arc<RelayStats>,
    path: PathBuf,
    sides: [Inbound; 2],
    ticks: u32,
    taken: Vec<Tapped>,
    failed: Option<hound::Error>,
}

impl Job {
    fn new(shared: Arc<Shared>, writer: Writer, stats: Arc<RelayStats>, path: PathBuf) -> Job {
        Job {
            shared,
            writer,
            stats,
            path,
            sides: [
                Inbound::new(WINDOW, Keep::Latest(MOST)),
                Inbound::new(WINDOW, Keep::Latest(MOST)),
            ],
            ticks: 0,
            taken: Vec::with_capacity(QUEUE),
            failed: None,
        }
    }

    /// Takes what was queued and writes a tick's frames; true when the
    /// recording is over (the call's media ended, or a write failed).
    fn tick(&mut self) -> bool {
        let ended = self.shared.ended.load(Ordering::Acquire);
        std::mem::swap(
            &mut self.taken,
            &mut *self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()),
        );
        for t in self.taken.drain(..) {
            let mut samples = Vec::with_capacity(usize::from(t.len));
            t.law
                .decode_into(&t.payload[..usize::from(t.len)], &mut samples);
            self.sides[usize::from(!t.caller)].push(t.ssrc, t.timestamp, samples);
        }
        if ended {
            return true;
        }
        if !self.shared.live.load(Ordering::Acquire) {
            return false;
        }
        let (mut left, mut right) = ([0i16; FRAME], [0i16; FRAME]);
        for _ in 0..FRAMES_PER_TICK {
            self.sides[0].take_frame(&mut left);
            self.sides[1].take_frame(&mut right);
            if let Err(e) = frame(&mut self.writer, &left, &right) {
                self.failed = Some(e);
                return true;
            }
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(FLUSH_TICKS) {
            if let Err(e) = self.writer.flush() {
                self.failed = Some(e);
                return true;
            }
        }
        false
    }

    /// Ends the file: what is still queued belongs at the end.
    fn finish(self) {
        let Job {
            shared,
            mut writer,
            stats,
            path,
            sides,
            failed,
            ..
        } = self;
        shared.stopped.store(true, Ordering::Release);
        if !shared.live.load(Ordering::Acquire) {
            // Ended during the announcement: nothing was recorded, no file
            // is left (and its record gets no recording).
            drop(writer);
            let _ = std::fs::remove_file(&path);
            return;
        }
        let [caller, callee] = sides;
        let (caller, callee) = (caller.finish(), callee.finish());
        let failed = match failed {
            Some(e) => Some(e),
            None => tail(&mut writer, &caller, &callee).err(),
        }
        .or_else(|| writer.finalize().err());
        if let Some(e) = failed {
            stats.recording_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %path.display(), error = %e, "a call's recording stopped early");
        }
    }

    /// Gives the file up before anything was written.
    fn abandon(self) {
        self.shared.stopped.store(true, Ordering::Release);
        drop(self.writer);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn frame(w: &mut Writer, left: &[i16], right: &[i16]) -> Result<(), hound::Error> {
    // One frame of both channels at once (hound's checked per-sample
    // write costs more than the relaying of the call).
    let mut out = w.get_i16_writer(2 * left.len().min(right.len()) as u32);
    for (l, r) in left.iter().zip(right) {
        out.write_sample(*l);
        out.write_sample(*r);
    }
    out.flush()
}

fn tail(w: &mut Writer, left: &[i16], right: &[i16]) -> Result<(), hound::Error> {
    for i in 0..left.len().max(right.len()) {
        w.write_sample(left.get(i).copied().unwrap_or(0))?;
        w.write_sample(right.get(i).copied().unwrap_or(0))?;
    }
    Ok(())
}
