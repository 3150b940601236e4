//! Audio as the media applications hold it: 16-bit linear PCM, mono, at
//! 8 kHz (what G.711 carries). WAV files come in and go out through
//! `hound`; anything else a customer uploads (another rate, stereo, 8/24/32
//! bits or float) is converted here on upload, once.
//!
//! The resampler is ours: a windowed-sinc low-pass and interpolation, forty
//! lines, enough for speech and music on a phone line (3.4 kHz). The
//! resampling crates do far more (and bring FFT libraries) for audio that a
//! phone then squeezes into G.711 anyway.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// Samples per second of everything here.
pub const RATE: u32 = 8000;
/// Samples in one 20 ms RTP frame.
pub const FRAME: usize = 160;

/// The longest audio a customer uploads: a greeting or music on hold
/// (five minutes: 4.8 MB as 8 kHz samples, while it plays).
pub const LONGEST_UPLOAD_S: u32 = 300;

/// Why audio was refused.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("not a WAV file we can read: {0}")]
    NotWav(String),
    #[error("the audio is longer than {max_s} s")]
    TooLong { max_s: u32 },
    #[error("the audio is empty")]
    Empty,
    #[error("unsupported WAV: {0}")]
    Unsupported(&'static str),
    #[error("cannot write the recording: {0}")]
    Write(String),
}

/// A piece of audio (a prompt, a greeting, music, a message), cheap to
/// share between calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip(Arc<[i16]>);

impl Clip {
    pub fn new(samples: Vec<i16>) -> Clip {
        Clip(samples.into())
    }

    pub fn samples(&self) -> &[i16] {
        &self.0
    }

    pub fn duration_ms(&self) -> u64 {
        self.0.len() as u64 * 1000 / u64::from(RATE)
    }

    /// A WAV file (any of the formats `hound` reads) as 8 kHz mono;
    /// refused beyond `max_s` seconds.
    pub fn from_wav(bytes: &[u8], max_s: u32) -> Result<Clip, AudioError> {
        let mut reader = hound::WavReader::new(Cursor::new(bytes))
            .map_err(|e| AudioError::NotWav(e.to_string()))?;
        let spec = reader.spec();
        if !(1..=2).contains(&spec.channels) {
            return Err(AudioError::Unsupported("more than two channels"));
        }
        if !(4000..=192_000).contains(&spec.sample_rate) {
            return Err(AudioError::Unsupported("sample rate"));
        }
        let frames = u64::from(reader.duration());
        if frames > u64::from(max_s) * u64::from(spec.sample_rate) {
            return Err(AudioError::TooLong { max_s });
        }
        let channels = usize::from(spec.channels);
        let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| AudioError::NotWav(e.to_string()))?,
            (hound::SampleFormat::Int, bits @ 8..=32) => {
                let scale = 1.0 / (1u64 << (bits - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| AudioError::NotWav(e.to_string()))?
            }
            _ => return Err(AudioError::Unsupported("sample format")),
        };
        let mono: Vec<f32> = interleaved
            .chunks_exact(channels)
            .map(|c| c.iter().sum::<f32>() / channels as f32)
            .collect();
        if mono.is_empty() {
            return Err(AudioError::Empty);
        }
        let at_8k = resample(&mono, spec.sample_rate, RATE);
        Ok(Clip::new(
            at_8k
                .iter()
                .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
                .collect(),
        ))
    }

    /// The clip as a WAV file (8 kHz, 16-bit, mono).
    pub fn to_wav(&self) -> Vec<u8> {
        wav_bytes(&self.0)
    }
}

/// 8 kHz mono 16-bit samples as the bytes of a WAV file.
pub fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    let spec = wav_spec();
    // Writing to a Vec cannot fail but for sizes beyond 4 GiB, which a
    // phone call's audio never reaches.
    if let Ok(mut w) = hound::WavWriter::new(Cursor::new(&mut out), spec) {
        for &s in samples {
            if w.write_sample(s).is_err() {
                break;
            }
        }
        let _ = w.finalize();
    }
    out
}

/// Writes samples to a WAV file at `path` (created or replaced).
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), AudioError> {
    let mut w =
        hound::WavWriter::create(path, wav_spec()).map_err(|e| AudioError::Write(e.to_string()))?;
    for &s in samples {
        w.write_sample(s)
            .map_err(|e| AudioError::Write(e.to_string()))?;
    }
    w.finalize().map_err(|e| AudioError::Write(e.to_string()))
}

fn wav_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// `ms` of a sine at `freq` Hz (amplitude 0..1), with 5 ms fades so that
/// it does not click.
pub fn tone(freq: f64, ms: u32, amplitude: f64) -> Vec<i16> {
    let n = (RATE * ms / 1000) as usize;
    let fade = (RATE as usize * 5 / 1000).max(1);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let ramp = (i.min(n - 1 - i) as f64 / fade as f64).min(1.0);
            let v = (2.0 * std::f64::consts::PI * freq * t).sin() * amplitude * ramp;
            (v * 32767.0) as i16
        })
        .collect()
}

/// `ms` of silence.
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; (RATE * ms / 1000) as usize]
}

/// Converts `input` from `from` to `to` samples a second: a windowed-sinc
/// low-pass at the lower rate's Nyquist frequency, sampled at the output's
/// instants.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    // Half-width of the filter in input samples, wider when the cutoff is
    // lower (downsampling by a lot).
    let ratio = f64::from(to) / f64::from(from);
    let cutoff = ratio.min(1.0) * 0.95;
    let half = (16.0 / cutoff).ceil() as i64;
    let out_len = (input.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for j in 0..out_len {
        let centre = j as f64 / ratio;
        let first = (centre.floor() as i64 - half).max(0);
        let last = (centre.floor() as i64 + half).min(input.len() as i64 - 1);
        let (mut acc, mut weight) = (0.0f64, 0.0f64);
        for i in first..=last {
            let x = i as f64 - centre;
            let sinc = if x.abs() < 1e-9 {
                1.0
            } else {
                let a = std::f64::consts::PI * x * cutoff;
                a.sin() / a
            };
            // Blackman window over the filter's width.
            let w = 0.42
                + 0.5 * (std::f64::consts::PI * x / half as f64).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * x / half as f64).cos();
            let k = sinc * w.max(0.0);
            acc += f64::from(input[i as usize]) * k;
            weight += k;
        }
        out.push(if weight.abs() > 1e-9 {
            (acc / weight) as f32
        } else {
            0.0
        });
    }
    out
}

/// The power of `freq` in `samples` (Goertzel), per sample: what the tests
/// (and a recording's check) use to tell which tone a recording holds.
pub fn tone_power(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, bits: u16, seconds: f64, freq: f64) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Vec::new();
        let mut w = hound::WavWriter::new(Cursor::new(&mut out), spec).expect("writer");
        let n = (f64::from(rate) * seconds) as usize;
        let full = ((1i64 << (bits - 1)) - 1) as f64;
        for i in 0..n {
            let v = (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() * 0.5;
            for _ in 0..channels {
                w.write_sample((v * full) as i32).expect("sample");
            }
        }
        w.finalize().expect("finalize");
        out
    }

    #[test]
    fn uploads_of_other_rates_and_depths_become_8k_mono_with_their_tone() {
        for (rate, channels, bits) in [
            (8000, 1, 16),
            (44_100, 2, 16),
            (48_000, 1, 24),
            (16_000, 2, 8),
        ] {
            let clip = Clip::from_wav(&wav(rate, channels, bits, 1.0, 440.0), 10).expect("clip");
            let n = clip.samples().len();
            assert!((7990..=8000).contains(&n), "{rate}: {n} samples");
            let s = clip.samples();
            assert!(
                tone_power(s, 440.0) > 100.0 * tone_power(s, 1000.0),
                "{rate} Hz {channels} ch {bits} bit keeps its 440 Hz"
            );
        }
    }

    #[test]
    fn a_tone_above_the_phone_band_is_filtered_out() {
        let clip = Clip::from_wav(&wav(48_000, 1, 16, 1.0, 6000.0), 10).expect("clip");
        let rms = (clip
            .samples()
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / clip.samples().len() as f64)
            .sqrt();
        // 0.5 full scale would be ~11,600 RMS; no aliasing into the band.
        assert!(rms < 600.0, "rms {rms}");
    }

    #[test]
    fn bad_uploads_are_refused_clearly() {
        assert!(matches!(
            Clip::from_wav(b"not audio", 10),
            Err(AudioError::NotWav(_))
        ));
        assert!(matches!(
            Clip::from_wav(&wav(8000, 1, 16, 3.0, 440.0), 2),
            Err(AudioError::TooLong { max_s: 2 })
        ));
        assert!(matches!(
            Clip::from_wav(&wav(8000, 1, 16, 0.0, 440.0), 2),
            Err(AudioError::Empty)
        ));
    }

    #[test]
    fn a_clip_written_reads_back_the_same() {
        let samples = tone(1000.0, 200, 0.5);
        let clip = Clip::new(samples.clone());
        let back = Clip::from_wav(&clip.to_wav(), 10).expect("read back");
        assert_eq!(back.samples(), &samples[..]);
        assert_eq!(back.duration_ms(), 200);
    }
}
