//! Real audio for media tests: tones written as WAV files for phones to
//! send, and a check of which tone a recording holds (Goertzel).

use std::path::Path;

/// Writes `seconds` of a `freq` Hz sine at 8 kHz, 16-bit mono PCM.
pub fn write_tone(path: &Path, freq: f64, seconds: u32) {
    let rate = 8000u32;
    let n = rate * seconds;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = (2.0 * std::f64::consts::PI * freq * f64::from(i) / f64::from(rate)).sin();
        data.extend_from_slice(&((v * 10_000.0) as i16).to_le_bytes());
    }
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("write tone");
}

/// Samples (first channel) and sample rate of a 16-bit PCM WAV file.
pub fn read_wav(path: &Path) -> Option<(Vec<f64>, u32)> {
    read_channel(path, 0).map(|(samples, rate, _)| (samples, rate))
}

/// Samples of channel `channel` (from 0), sample rate and channel count of
/// a 16-bit PCM WAV file.
pub fn read_channel(path: &Path, channel: usize) -> Option<(Vec<f64>, u32, usize)> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let (mut at, mut rate, mut channels) = (12usize, 8000u32, 1usize);
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let mut len = u32::from_le_bytes(b[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"data" && (len == 0 || at + 8 + len > b.len()) {
            // A recorder stopped before it wrote the final length.
            len = b.len() - at - 8;
        }
        let body = &b[at + 8..(at + 8 + len).min(b.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]])).max(1);
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
        }
        if id == b"data" {
            let at = 2 * channel.min(channels - 1);
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| f64::from(i16::from_le_bytes([c[at], c[at + 1]])))
                .collect();
            return Some((samples, rate, channels));
        }
        at += 8 + len + (len & 1);
    }
    None
}

/// Power of `freq` in `samples` (Goertzel), normalised per sample.
fn power(samples: &[f64], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// What a recording holds: its loudness and which of `tones` dominates.
#[derive(Debug)]
pub struct Heard {
    pub rms: f64,
    /// Each tone's share of the signal's energy (0..1).
    pub shares: Vec<(f64, f64)>,
}

impl Heard {
    /// Whether `freq` is clearly there: audible, and most of the energy.
    pub fn has(&self, freq: f64) -> bool {
        self.rms > 300.0
            && self
                .shares
                .iter()
                .any(|(f, share)| (*f - freq).abs() < 1.0 && *share > 0.5)
    }
}

/// Listens in 50 ms blocks, so gaps and jitter in what was received do
/// not blur the tones.
pub fn listen(path: &Path, tones: &[f64]) -> Heard {
    match read_wav(path) {
        Some((samples, rate)) => listen_to(&samples, rate, tones),
        None => listen_to(&[], 8000, tones),
    }
}

/// Like [`listen`], to one channel of a stereo recording.
pub fn listen_channel(path: &Path, channel: usize, tones: &[f64]) -> Heard {
    match read_channel(path, channel) {
        Some((samples, rate, _)) => listen_to(&samples, rate, tones),
        None => listen_to(&[], 8000, tones),
    }
}

/// Like [`listen`], to the `seconds` before the recording's last half
/// second (what was heard once everything had settled).
pub fn listen_tail(path: &Path, tones: &[f64], seconds: f64) -> Heard {
    let (samples, rate) = read_wav(path).unwrap_or((Vec::new(), 8000));
    let end = samples.len().saturating_sub(rate as usize / 2);
    let start = end.saturating_sub((seconds * f64::from(rate)) as usize);
    listen_to(&samples[start..end], rate, tones)
}

/// Like [`listen`], to the recording from `from_s` to `to_s` seconds.
pub fn listen_span(path: &Path, tones: &[f64], from_s: f64, to_s: f64) -> Heard {
    let (samples, rate) = read_wav(path).unwrap_or((Vec::new(), 8000));
    let at = |s: f64| ((s * f64::from(rate)) as usize).min(samples.len());
    let (start, end) = (at(from_s), at(to_s));
    listen_to(&samples[start..end.max(start)], rate, tones)
}

fn listen_to(samples: &[f64], rate: u32, tones: &[f64]) -> Heard {
    let total: f64 = samples.iter().map(|x| x * x).sum();
    let rms = (total / samples.len().max(1) as f64).sqrt();
    let block = (rate / 20).max(1) as usize;
    let shares = tones
        .iter()
        .map(|&f| {
            let tone: f64 = samples.chunks(block).map(|b| 2.0 * power(b, rate, f)).sum();
            (f, if total > 0.0 { tone / total } else { 0.0 })
        })
        .collect();
    Heard { rms, shares }
}

/// The share (0 to 1) of `clip`'s 20 ms frames with sound in them that the
/// recording at `path` holds sample for sample once `clip` has passed
/// through G.711 (either law, as a phone decodes it): proof that a phone
/// heard that very announcement, not just some speech.
pub fn share_of_clip_heard(path: &Path, clip: &[i16]) -> f64 {
    use pbx_media::g711::Law;
    use std::collections::HashMap;
    const FRAME: usize = 160;
    const KEY: usize = 8;
    let heard: Vec<i16> = read_wav(path)
        .map(|(s, _)| s.iter().map(|x| *x as i16).collect())
        .unwrap_or_default();
    // Where each run of KEY samples of the recording starts.
    let mut starts: HashMap<&[i16], Vec<usize>> = HashMap::new();
    for (at, window) in heard.windows(KEY).enumerate() {
        starts.entry(window).or_default().push(at);
    }
    let mut best = 0.0f64;
    for law in [Law::Mu, Law::A] {
        let passed: Vec<i16> = clip.iter().map(|&s| law.decode(law.encode(s))).collect();
        let frames: Vec<&[i16]> = passed
            .chunks_exact(FRAME)
            .filter(|f| f.iter().map(|s| i64::from(*s).abs()).sum::<i64>() > 100 * FRAME as i64)
            .collect();
        let found = frames
            .iter()
            .filter(|f| {
                starts.get(&f[..KEY]).is_some_and(|ats| {
                    ats.iter()
                        .any(|&at| heard.get(at..at + FRAME).is_some_and(|h| h == **f))
                })
            })
            .count();
        best = best.max(found as f64 / frames.len().max(1) as f64);
    }
    best
}
