//! Call recording in the relay (as rtpengine records for Kamailio): what
//! the relay forwards of a recorded call is copied, without waiting, to a
//! writer task that puts both sides back in order and writes them to a
//! stereo WAV file, the caller left and the callee right, 8 kHz 16-bit.
//!
//! The writer runs on its own 20 ms clock and takes one frame of each side
//! per tick (silence where a side sent nothing), so the two channels stay
//! aligned through loss, silence suppression, hold and a restarted stream.
//! The file's header is brought up to date every few seconds: a node that
//! dies mid-call leaves a file that plays up to then. A write that fails
//! (a full disk) ends the recording, never the call.

use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audio::{FRAME, RATE};
use crate::g711::Law;
use crate::jitter::{Inbound, Keep};
use crate::relay::RelayStats;

/// Packets waiting for the writer, per call: two seconds of both sides.
/// A writer that falls further behind loses packets (counted), never
/// holds up the relay.
const QUEUE: usize = 200;
/// 60 ms of reordering is put right; at most 200 ms wait per side.
const WINDOW: u32 = 480;
const MOST: usize = 1600;
/// Ticks between header updates (5 s).
const FLUSH_TICKS: u32 = 250;

/// One forwarded packet of a recorded call.
#[derive(Debug)]
struct Tapped {
    caller: bool,
    ssrc: u32,
    timestamp: u32,
    samples: Vec<i16>,
}

/// The relay's end of a recording: copies packets to its writer. Dropping
/// every copy (the call's media ends) finishes the file.
#[derive(Debug, Clone)]
pub struct Tap {
    tx: mpsc::Sender<Tapped>,
    stats: Arc<RelayStats>,
}

impl Tap {
    /// An RTP packet one side sent (`caller`: the caller's side). Only
    /// G.711 is recorded; DTMF events and other payloads are left out.
    pub fn packet(&self, caller: bool, data: &[u8]) {
        let Some((h, _, payload)) = crate::rtp::parse(data) else {
            return;
        };
        let Some(law) = Law::of_payload_type(h.payload_type) else {
            return;
        };
        let mut samples = Vec::with_capacity(payload.len());
        law.decode_into(payload, &mut samples);
        let tapped = Tapped {
            caller,
            ssrc: h.ssrc,
            timestamp: h.timestamp,
            samples,
        };
        if self.tx.try_send(tapped).is_err() {
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
    let (tx, rx) = mpsc::channel(QUEUE);
    stats.recordings_started.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(write(rx, writer, stats.clone(), path.display().to_string()));
    Ok(Tap { tx, stats })
}

type Writer = hound::WavWriter<BufWriter<std::fs::File>>;

async fn write(
    mut rx: mpsc::Receiver<Tapped>,
    mut writer: Writer,
    stats: Arc<RelayStats>,
    name: String,
) {
    let mut sides = [
        Inbound::new(WINDOW, Keep::Latest(MOST)),
        Inbound::new(WINDOW, Keep::Latest(MOST)),
    ];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut ticks = 0u32;
    let (mut left, mut right) = ([0i16; FRAME], [0i16; FRAME]);
    let failed = loop {
        tokio::select! {
            tapped = rx.recv() => match tapped {
                Some(t) => {
                    let side = &mut sides[usize::from(!t.caller)];
                    side.push(t.ssrc, t.timestamp, t.samples);
                }
                None => break None,
            },
            _ = tick.tick() => {
                sides[0].take_frame(&mut left);
                sides[1].take_frame(&mut right);
                if let Err(e) = frame(&mut writer, &left, &right) {
                    break Some(e);
                }
                ticks += 1;
                if ticks.is_multiple_of(FLUSH_TICKS) {
                    if let Err(e) = writer.flush() {
                        break Some(e);
                    }
                }
            }
        }
    };
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
        tracing::warn!(file = %name, error = %e, "a call's recording stopped early");
    }
}

fn frame(w: &mut Writer, left: &[i16], right: &[i16]) -> Result<(), hound::Error> {
    for (l, r) in left.iter().zip(right) {
        w.write_sample(*l)?;
        w.write_sample(*r)?;
    }
    Ok(())
}

fn tail(w: &mut Writer, left: &[i16], right: &[i16]) -> Result<(), hound::Error> {
    for i in 0..left.len().max(right.len()) {
        w.write_sample(left.get(i).copied().unwrap_or(0))?;
        w.write_sample(right.get(i).copied().unwrap_or(0))?;
    }
    Ok(())
}
