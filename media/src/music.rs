//! Music on hold: what a held party hears while the other side holds the
//! call. The relay plays it into the held party's leg (as rtpengine plays
//! media for Kamailio), in the codec that leg speaks, in place of what the
//! holding phone sends.
//!
//! The default tune is made here, not recorded: a slow, quiet melody of
//! bell-like notes on a pentatonic scale, so it is ours to ship (no
//! licence, no file) and pleasant to wait on. A customer's own music
//! replaces it.

use std::sync::{Arc, OnceLock};

use crate::audio::RATE;
use crate::g711::Law;

/// The notes the default tune uses, in Hz (C major pentatonic).
pub const DEFAULT_NOTES: [f64; 5] = [523.25, 587.33, 659.25, 783.99, 880.0];

/// The order the default tune plays its notes in (indices of
/// [`DEFAULT_NOTES`]), one every [`NOTE_MS`].
const MELODY: [usize; 16] = [0, 2, 3, 4, 3, 2, 1, 2, 0, 2, 3, 2, 1, 0, 1, 2];
const NOTE_MS: usize = 450;

/// The default tune, made once: about seven seconds, looped.
pub fn default_tune() -> Arc<[i16]> {
    static TUNE: OnceLock<Arc<[i16]>> = OnceLock::new();
    TUNE.get_or_init(|| make_tune().into()).clone()
}

fn make_tune() -> Vec<i16> {
    let note_len = RATE as usize * NOTE_MS / 1000;
    let mut out = vec![0f64; note_len * MELODY.len() + note_len];
    for (n, &i) in MELODY.iter().enumerate() {
        let freq = DEFAULT_NOTES[i];
        let start = n * note_len;
        // A bell: a quick rise, then a decay that rings into the next note.
        for k in 0..note_len * 2 {
            let t = k as f64 / f64::from(RATE);
            let attack = (t / 0.01).min(1.0);
            let decay = (-t * 3.0).exp();
            let v = (2.0 * std::f64::consts::PI * freq * t).sin() * attack * decay;
            if let Some(slot) = out.get_mut(start + k) {
                *slot += v;
            }
        }
    }
    // The ring of the last note wraps into the start of the loop.
    let tail: Vec<f64> = out.split_off(note_len * MELODY.len());
    for (slot, v) in out.iter_mut().zip(tail) {
        *slot += v;
    }
    let peak = out.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-9);
    // Quiet: a third of full scale at its loudest.
    out.iter()
        .map(|v| (v / peak * 0.33 * 32767.0) as i16)
        .collect()
}

/// Plays a tune frame by frame, from where it stopped, looping.
#[derive(Debug, Clone)]
pub struct Player {
    tune: Arc<[i16]>,
    at: usize,
}

impl Player {
    pub fn new(tune: Arc<[i16]>) -> Player {
        Player { tune, at: 0 }
    }

    /// The next `samples` of the tune, encoded in `law` into `out`.
    pub fn next_frame(&mut self, law: Law, samples: usize, out: &mut Vec<u8>) {
        out.clear();
        if self.tune.is_empty() {
            out.resize(samples, law.silence());
            return;
        }
        for _ in 0..samples {
            let s = self.tune[self.at];
            self.at = (self.at + 1) % self.tune.len();
            out.push(law.encode(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone_power;

    #[test]
    fn the_default_tune_is_its_notes_quietly_and_loops_smoothly() {
        let tune = default_tune();
        let seconds = tune.len() as f64 / f64::from(RATE);
        assert!((6.0..10.0).contains(&seconds), "{seconds} s");
        let peak = tune.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((8_000..=11_000).contains(&peak), "quiet: peak {peak}");
        let notes: f64 = DEFAULT_NOTES.iter().map(|&f| tone_power(&tune, f)).sum();
        let other = tone_power(&tune, 440.0) + tone_power(&tune, 1000.0);
        assert!(notes > 100.0 * other, "its notes: {notes} against {other}");
        // No click where the loop starts again.
        let jump = (i32::from(tune[0]) - i32::from(tune[tune.len() - 1])).abs();
        assert!(jump < 3000, "loop joint jumps by {jump}");
    }

    #[test]
    fn the_player_loops_and_encodes() {
        let mut p = Player::new(Arc::from(vec![1000i16, -1000, 0]));
        let mut out = Vec::new();
        p.next_frame(Law::Mu, 7, &mut out);
        let decoded: Vec<i16> = out.iter().map(|&b| Law::Mu.decode(b)).collect();
        assert_eq!(decoded.len(), 7);
        assert_eq!(decoded[0], decoded[3]);
        assert_eq!(decoded[1], decoded[4]);
        let mut silent = Player::new(Arc::from(Vec::new()));
        silent.next_frame(Law::A, 4, &mut out);
        assert_eq!(out, vec![Law::A.silence(); 4]);
    }
}
