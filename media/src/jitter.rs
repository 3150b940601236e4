//! Puts a received stream back in order for what records or mixes it:
//! frames are held for a short window, released by RTP timestamp, gaps
//! (lost packets, silence suppression) filled with silence, late and
//! repeated packets dropped. A timestamp jump beyond [`MAX_GAP`] (a new
//! stream, or a hostile one) restarts the timeline instead of filling
//! minutes of silence.

use std::collections::{BTreeMap, VecDeque};

/// The longest gap filled with silence, in samples (10 s at 8 kHz).
pub const MAX_GAP: u64 = 80_000;

#[derive(Debug)]
pub struct JitterBuffer {
    /// How long a frame is held before it is released (samples).
    window: u64,
    frames: BTreeMap<u64, Vec<i16>>,
    /// Extended timestamp of the next sample to release.
    next: Option<u64>,
    /// The newest timestamp seen, extended past wraps.
    newest: Option<(u32, u64)>,
    /// What a restart released, handed out at the next `pop_ready`.
    pending_restart: Option<Vec<i16>>,
}

impl JitterBuffer {
    /// A buffer holding frames for `window` samples (800 = 100 ms at 8 kHz).
    pub fn new(window: u32) -> JitterBuffer {
        JitterBuffer {
            window: u64::from(window),
            frames: BTreeMap::new(),
            next: None,
            newest: None,
            pending_restart: None,
        }
    }

    /// The timestamp extended past 32-bit wraps, relative to the newest one.
    fn extend(&mut self, ts: u32) -> u64 {
        match self.newest {
            None => {
                // Start well above zero so that slightly older frames fit.
                let ext = (1u64 << 32) + u64::from(ts);
                self.newest = Some((ts, ext));
                ext
            }
            Some((last, last_ext)) => {
                let diff = i64::from(ts.wrapping_sub(last) as i32);
                let ext = (last_ext as i64 + diff).max(0) as u64;
                if diff > 0 {
                    self.newest = Some((ts, ext));
                }
                ext
            }
        }
    }

    /// A frame of decoded samples with RTP timestamp `ts`.
    pub fn push(&mut self, ts: u32, samples: Vec<i16>) {
        let previous = self.newest.map(|(_, ext)| ext);
        let ext = self.extend(ts);
        if self.next.is_some_and(|next| ext < next) {
            return; // late: its place was already released
        }
        if previous.is_some_and(|p| ext > p + MAX_GAP) {
            // A jump: release what is held and go on from here.
            self.restart_at(ext);
        }
        self.frames.entry(ext).or_insert(samples);
    }

    /// A new stream (another SSRC): what is held is released, and the
    /// timeline starts again at the new stream's first frame.
    pub fn new_stream(&mut self) {
        let mut held = self.pending_restart.take().unwrap_or_default();
        self.drain(&mut held);
        self.pending_restart = Some(held);
        self.next = None;
        self.newest = None;
    }

    fn restart_at(&mut self, ext: u64) {
        let mut held = self.pending_restart.take().unwrap_or_default();
        self.drain(&mut held);
        self.pending_restart = Some(held);
        self.next = Some(ext);
    }

    /// Appends what is older than the window to `out`.
    pub fn pop_ready(&mut self, out: &mut Vec<i16>) {
        if let Some(held) = self.pending_restart.take() {
            out.extend(held);
        }
        let Some((_, newest)) = self.newest else {
            return;
        };
        let horizon = newest.saturating_sub(self.window);
        self.release(out, Some(horizon));
    }

    /// Appends everything held to `out` (the stream ended).
    pub fn drain(&mut self, out: &mut Vec<i16>) {
        if let Some(held) = self.pending_restart.take() {
            out.extend(held);
        }
        self.release(out, None);
    }

    fn release(&mut self, out: &mut Vec<i16>, before: Option<u64>) {
        while let Some((&ts, _)) = self.frames.first_key_value() {
            if before.is_some_and(|h| ts >= h) {
                break;
            }
            let Some((ts, frame)) = self.frames.pop_first() else {
                break;
            };
            let next = *self.next.get_or_insert(ts);
            if ts > next {
                let gap = (ts - next).min(MAX_GAP);
                out.extend(std::iter::repeat_n(0, gap as usize));
            }
            // An overlapping frame (a sender that changed its packet size)
            // gives only what is new.
            let skip = next.saturating_sub(ts) as usize;
            if skip < frame.len() {
                out.extend_from_slice(&frame[skip..]);
                self.next = Some(ts + frame.len() as u64);
            }
        }
    }
}

/// A received stream as what records or mixes it consumes: back in order
/// through a [`JitterBuffer`], a new SSRC starting a new timeline, the
/// samples released queued for the consumer's clock.
#[derive(Debug)]
pub struct Inbound {
    jitter: JitterBuffer,
    ssrc: Option<u32>,
    ready: VecDeque<i16>,
    keep: Keep,
}

/// How much of what was received is kept, and which.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// A recording of limited length: the first samples, up to its longest
    /// (timestamp jumps a sender invents are filled with silence, and must
    /// not grow it).
    First(usize),
    /// What a clock consumes frame by frame (a mixer, a call's recording):
    /// the newest samples, so that a sender faster than that clock cannot
    /// grow the queue (or the delay).
    Latest(usize),
}

impl Inbound {
    /// A stream held `window` samples in its jitter buffer.
    pub fn new(window: u32, keep: Keep) -> Inbound {
        Inbound {
            jitter: JitterBuffer::new(window),
            ssrc: None,
            ready: VecDeque::new(),
            keep,
        }
    }

    /// A packet's decoded samples.
    pub fn push(&mut self, ssrc: u32, timestamp: u32, samples: Vec<i16>) {
        if self.ssrc.is_some_and(|s| s != ssrc) {
            self.jitter.new_stream();
        }
        self.ssrc = Some(ssrc);
        self.jitter.push(timestamp, samples);
        match self.keep {
            Keep::First(cap) if self.ready.len() >= cap => {}
            Keep::First(cap) => {
                let mut out = Vec::new();
                self.jitter.pop_ready(&mut out);
                self.ready.extend(out);
                self.ready.truncate(cap);
            }
            Keep::Latest(most) => {
                let mut out = Vec::new();
                self.jitter.pop_ready(&mut out);
                self.ready.extend(out);
                let over = self.ready.len().saturating_sub(most);
                self.ready.drain(..over);
            }
        }
    }

    /// The next samples into `frame`; false (and silence) when nothing is
    /// there (lost, late, or the sender sends nothing).
    pub fn take_frame(&mut self, frame: &mut [i16]) -> bool {
        let n = frame.len().min(self.ready.len());
        for (slot, sample) in frame.iter_mut().zip(self.ready.drain(..n)) {
            *slot = sample;
        }
        frame[n..].fill(0);
        n > 0
    }

    /// Everything received, in order (the stream ended).
    pub fn finish(mut self) -> Vec<i16> {
        let mut held = Vec::new();
        self.jitter.drain(&mut held);
        self.ready.extend(held);
        Vec::from(self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Vec<i16> {
        vec![v; 160]
    }

    #[test]
    fn frames_come_out_in_order_with_gaps_filled() {
        let mut j = JitterBuffer::new(480);
        let mut out = Vec::new();
        // 1, 3, 2 arrive out of order; 4 is lost; 5 arrives.
        j.push(1000, frame(1));
        j.push(1320, frame(3));
        j.push(1160, frame(2));
        j.push(1160, frame(9)); // a repeat
        j.push(1640, frame(5));
        j.pop_ready(&mut out);
        assert_eq!(out.len(), 160, "only what is older than the window");
        j.drain(&mut out);
        let values: Vec<i16> = out.chunks(160).map(|c| c[0]).collect();
        assert_eq!(values, vec![1, 2, 3, 0, 5]);
        // A packet for a place already released is dropped.
        j.push(1480, frame(4));
        j.drain(&mut out);
        assert_eq!(out.len(), 5 * 160);
    }

    #[test]
    fn timestamps_wrap() {
        let mut j = JitterBuffer::new(0);
        let mut out = Vec::new();
        j.push(u32::MAX - 159, frame(1));
        j.push(0, frame(2));
        j.drain(&mut out);
        assert_eq!(out.len(), 320);
        assert_eq!(out[160], 2);
    }

    #[test]
    fn a_new_stream_starts_its_own_timeline() {
        let mut j = JitterBuffer::new(160);
        let mut out = Vec::new();
        j.push(50_000, frame(1));
        j.new_stream();
        j.push(10, frame(2));
        j.drain(&mut out);
        assert_eq!(out.len(), 320);
        assert_eq!(out[160], 2);
    }

    #[test]
    fn a_jump_restarts_instead_of_filling_silence() {
        let mut j = JitterBuffer::new(160);
        let mut out = Vec::new();
        j.push(0, frame(1));
        j.push(160, frame(2));
        j.pop_ready(&mut out);
        // A hostile sender jumps an hour ahead: no hour of silence.
        j.push(8000 * 3600, frame(3));
        j.pop_ready(&mut out);
        j.drain(&mut out);
        assert_eq!(out.len(), 3 * 160);
    }
}
