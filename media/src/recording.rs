//! Call recording in the relay (as rtpengine records for Kamailio): what
//! the relay forwards of a recorded call is copied, without waiting, to a
//! writer task that puts both sides back in order and writes them to a
//! stereo WAV file, the caller left and the callee right, 8 kHz 16-bit.
//!
//! The writer runs on its own clock: every 100 ms it takes what the relay
//! queued (the relay never wakes it: a wake-up per packet, or a tick per
//! frame, cost more than relaying the call) and writes five 20 ms frames
//! of each side (silence where a side sent nothing), so the two channels
//! stay aligned through loss, silence suppression, hold and a restarted
//! stream.
//! The file's header is brought up to date every few seconds: a node that
//! dies mid-call leaves a file that plays up to then. A write that fails
//! (a full disk) ends the recording, never the call.

use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Creates the file at `path` and starts its writer (on the current tokio
/// runtime). The error is the file's: nothing is recorded then.
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
    tokio::spawn(write(
        shared.clone(),
        writer,
        stats.clone(),
        path.to_owned(),
    ));
    Ok(Tap { shared, stats })
}

type Writer = hound::WavWriter<BufWriter<std::fs::File>>;

async fn write(
    shared: Arc<Shared>,
    mut writer: Writer,
    stats: Arc<RelayStats>,
    path: std::path::PathBuf,
) {
    let mut sides = [
        Inbound::new(WINDOW, Keep::Latest(MOST)),
        Inbound::new(WINDOW, Keep::Latest(MOST)),
    ];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut ticks = 0u32;
    let (mut left, mut right) = ([0i16; FRAME], [0i16; FRAME]);
    let mut taken = Vec::with_capacity(QUEUE);
    let failed = loop {
        tick.tick().await;
        let ended = shared.ended.load(Ordering::Acquire);
        std::mem::swap(
            &mut taken,
            &mut *shared.queue.lock().unwrap_or_else(|p| p.into_inner()),
        );
        for t in taken.drain(..) {
            let mut samples = Vec::with_capacity(usize::from(t.len));
            t.law
                .decode_into(&t.payload[..usize::from(t.len)], &mut samples);
            sides[usize::from(!t.caller)].push(t.ssrc, t.timestamp, samples);
        }
        if ended {
            break None;
        }
        if !shared.live.load(Ordering::Acquire) {
            continue;
        }
        let mut failed = None;
        for _ in 0..FRAMES_PER_TICK {
            sides[0].take_frame(&mut left);
            sides[1].take_frame(&mut right);
            if let Err(e) = frame(&mut writer, &left, &right) {
                failed = Some(e);
                break;
            }
        }
        if failed.is_some() {
            break failed;
        }
        ticks += 1;
        if ticks.is_multiple_of(FLUSH_TICKS) {
            if let Err(e) = writer.flush() {
                break Some(e);
            }
        }
    };
    shared.stopped.store(true, Ordering::Release);
    if !shared.live.load(Ordering::Acquire) {
        // Ended during the announcement: nothing was recorded, no file
        // is left (and its record gets no recording).
        drop(writer);
        let _ = std::fs::remove_file(&path);
        return;
    }
    // What is still queued belongs at the end.
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
