//! What callers key: a number or PIN ended by `#` (or a pause), and who
//! keyed too many wrong PINs lately. Shared by the conference door and
//! the voicemail login (`*98`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::media::Ended;
use crate::Run;

/// How long a caller may pause between keys before what it keyed counts.
pub const KEY_PAUSE: Duration = Duration::from_secs(5);
/// The most keys taken for one entry (a PIN, a number).
const LONGEST: usize = 16;

/// Plays `prompt` (a key cuts it short and counts) and takes keys until
/// `#`, a pause or [`LONGEST`]; None when the caller hung up.
pub(crate) async fn entry(run: &mut Run, prompt: &[i16]) -> Option<String> {
    let mut keyed = String::new();
    match run.media.play(prompt, &mut run.events, true).await {
        Ended::Hangup => return None,
        Ended::Key(k) => keyed.push(k),
        Ended::Done => {}
    }
    while !keyed.ends_with('#') && keyed.len() <= LONGEST {
        match run.media.wait_key(KEY_PAUSE, &mut run.events).await {
            Ended::Hangup => return None,
            Ended::Key(k) => keyed.push(k),
            Ended::Done => break,
        }
    }
    Some(keyed.trim_end_matches('#').to_owned())
}

/// Wrong PINs one caller may key for one target within [`WINDOW`] (over as
/// many calls as it likes); then its tries fail unchecked until the window
/// has passed. Per caller, so that one guesser locks out nobody else.
pub const FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Callers tracked at once; beyond, the oldest entries are forgotten.
const TRACKED: usize = 10_000;

/// Who keyed wrong PINs lately, by (target, caller).
pub struct Guesses<K> {
    wrong: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K> Default for Guesses<K> {
    fn default() -> Self {
        Guesses {
            wrong: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Hash + Eq> Guesses<K> {
    /// Whether `who` keyed too many wrong PINs lately.
    pub fn locked_out(&self, who: &K) -> bool {
        lock(&self.wrong)
            .get(who)
            .is_some_and(|(n, since)| *n >= FAILURES && since.elapsed() < WINDOW)
    }

    /// Counts a wrong PIN of `who`.
    pub fn wrong(&self, who: K) {
        let mut wrong = lock(&self.wrong);
        if wrong.len() >= TRACKED {
            wrong.retain(|_, (_, since)| since.elapsed() < WINDOW);
            if wrong.len() >= TRACKED {
                wrong.clear();
            }
        }
        let entry = wrong.entry(who).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_guesser_is_locked_out_alone() {
        let guesses = Guesses::default();
        for _ in 0..FAILURES {
            assert!(!guesses.locked_out(&(3, "101")));
            guesses.wrong((3, "101"));
        }
        assert!(guesses.locked_out(&(3, "101")));
        assert!(!guesses.locked_out(&(3, "102")), "others may still try");
        assert!(!guesses.locked_out(&(4, "101")), "other targets too");
    }
}
