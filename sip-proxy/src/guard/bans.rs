//! The sources this node drops without reading: bans it decided itself and
//! bans any other node decided (through the store), with the history that
//! makes a returning source's next ban longer.
//!
//! The check runs for every datagram before it is parsed, so it is one
//! atomic load while nothing is banned and a read-locked hash lookup when
//! something is.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use pbx_store::net::Source;
use pbx_store::Millis;

/// A ban in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub until: Millis,
    /// 1 for a first ban, 2 for the next within the escalation window, …
    pub level: u32,
}

/// A ban as the store holds it (this node's or another's).
pub use pbx_store::abuse::BanInForce as Known;

#[derive(Default)]
pub struct Bans {
    active: RwLock<HashMap<Source, Active>>,
    /// Entries of `active`, so that the common case (nobody banned) costs
    /// one atomic load per packet.
    count: AtomicUsize,
    /// When each source was banned, within the escalation window (lifted
    /// bans are forgotten: an unbanned office starts afresh).
    history: Mutex<HashMap<Source, Vec<Millis>>>,
    /// Decided here and not yet seen back from the store.
    pending: Mutex<HashSet<Source>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bans {
    /// Whether `source` is banned at `now`.
    pub fn holds(&self, source: Source, now: Millis) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        read(&self.active)
            .get(&source)
            .is_some_and(|a| a.until > now)
    }

    #[cfg(test)]
    pub fn get(&self, source: Source) -> Option<Active> {
        read(&self.active).get(&source).copied()
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Bans `source` from `now` for the step of `steps` its history calls
    /// for (the last step repeats); returns the ban.
    pub fn ban(&self, source: Source, now: Millis, steps: &[Millis], window: Millis) -> Active {
        let level = {
            let mut history = lock(&self.history);
            let past = history.entry(source).or_default();
            past.retain(|t| now - *t < window);
            past.push(now);
            past.len() as u32
        };
        let step = steps
            .get(level as usize - 1)
            .or(steps.last())
            .copied()
            .unwrap_or(15 * 60_000);
        let ban = Active {
            until: now.saturating_add(step),
            level,
        };
        let mut active = write(&self.active);
        active.insert(source, ban);
        self.count.store(active.len(), Ordering::Relaxed);
        lock(&self.pending).insert(source);
        ban
    }

    /// The store has this node's ban of `source` now.
    pub fn stored(&self, source: Source) {
        lock(&self.pending).remove(&source);
    }

    /// Takes the store's view: `known` holds every ban not lifted that ended
    /// within the escalation window (so also those in force). Bans decided
    /// here and not yet stored are kept. Returns the sources no longer
    /// banned (lifted, or expired), whose accounting starts afresh.
    pub fn replace(&self, known: &[Known], now: Millis) -> Vec<Source> {
        let pending = lock(&self.pending).clone();
        {
            let mut history = lock(&self.history);
            history.retain(|s, _| pending.contains(s));
            for k in known {
                let times = history.entry(k.source).or_default();
                if !times.contains(&k.banned_at) {
                    times.push(k.banned_at);
                }
            }
        }
        let mut active = write(&self.active);
        let mut fresh: HashMap<Source, Active> = known
            .iter()
            .filter(|k| k.until > now)
            .map(|k| {
                (
                    k.source,
                    Active {
                        until: k.until,
                        level: k.level,
                    },
                )
            })
            .collect();
        for s in &pending {
            if let Some(a) = active.get(s) {
                fresh.entry(*s).or_insert(*a);
            }
        }
        let gone = active
            .keys()
            .filter(|s| !fresh.contains_key(s))
            .copied()
            .collect();
        *active = fresh;
        self.count.store(active.len(), Ordering::Relaxed);
        gone
    }

    /// Forgets bans that ran out and history past the window; returns the
    /// sources whose ban ended.
    pub fn sweep(&self, now: Millis, window: Millis) -> Vec<Source> {
        let ended: Vec<Source> = {
            let active = read(&self.active);
            active
                .iter()
                .filter(|(_, a)| a.until <= now)
                .map(|(s, _)| *s)
                .collect()
        };
        if !ended.is_empty() {
            let mut active = write(&self.active);
            active.retain(|_, a| a.until > now);
            self.count.store(active.len(), Ordering::Relaxed);
        }
        let mut history = lock(&self.history);
        history.retain(|_, times| {
            times.retain(|t| now - *t < window);
            !times.is_empty()
        });
        ended
    }

    /// Lifts a ban here at once (the operator's unban, seen back from the
    /// store, does it on every node).
    pub fn lift(&self, source: Source) {
        let mut active = write(&self.active);
        active.remove(&source);
        self.count.store(active.len(), Ordering::Relaxed);
        lock(&self.history).remove(&source);
        lock(&self.pending).remove(&source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    const STEPS: [Millis; 3] = [15 * MIN, 60 * MIN, 24 * 60 * MIN];
    const WEEK: Millis = 7 * 24 * 60 * MIN;

    #[test]
    fn bans_escalate_within_the_window_and_expire() {
        let bans = Bans::default();
        let s = Source::V4(1);
        assert!(!bans.holds(s, 0));
        let first = bans.ban(s, 0, &STEPS, WEEK);
        assert_eq!(
            first,
            Active {
                until: 15 * MIN,
                level: 1
            }
        );
        assert!(bans.holds(s, 15 * MIN - 1));
        assert!(!bans.holds(s, 15 * MIN), "over when it ends");
        assert_eq!(bans.sweep(15 * MIN, WEEK), vec![s]);
        assert_eq!(bans.len(), 0);
        let second = bans.ban(s, 20 * MIN, &STEPS, WEEK);
        assert_eq!(second.level, 2);
        assert_eq!(second.until, 80 * MIN);
        let third = bans.ban(s, 100 * MIN, &STEPS, WEEK);
        assert_eq!(third.until, 100 * MIN + 24 * 60 * MIN);
        let fourth = bans.ban(s, 2 * 24 * 60 * MIN, &STEPS, WEEK);
        assert_eq!(fourth.level, 4);
        assert_eq!(
            fourth.until,
            2 * 24 * 60 * MIN + 24 * 60 * MIN,
            "the last step repeats"
        );
        // A week later the slate is clean.
        bans.sweep(10 * 24 * 60 * MIN, WEEK);
        assert_eq!(bans.ban(s, 10 * 24 * 60 * MIN, &STEPS, WEEK).level, 1);
        assert!(!bans.holds(Source::V4(2), 10 * 24 * 60 * MIN));
    }

    #[test]
    fn the_stores_view_replaces_all_but_bans_not_yet_stored() {
        let bans = Bans::default();
        let mine = Source::V4(1);
        let lifted = Source::V4(2);
        let theirs = Source::V4(3);
        bans.ban(mine, 0, &STEPS, WEEK);
        bans.ban(lifted, 0, &STEPS, WEEK);
        bans.stored(lifted);
        let known = [Known {
            source: theirs,
            banned_at: 0,
            until: 60 * MIN,
            level: 2,
        }];
        let gone = bans.replace(&known, MIN);
        assert_eq!(
            gone,
            vec![lifted],
            "stored, then no longer in the store: lifted"
        );
        assert!(bans.holds(mine, MIN), "not stored yet: kept");
        assert!(bans.holds(theirs, MIN), "another node's");
        assert_eq!(bans.get(theirs).map(|a| a.level), Some(2));
        // The lifted source starts again at the first step.
        assert_eq!(bans.ban(lifted, 2 * MIN, &STEPS, WEEK).level, 1);
        // Another node's past ban counts towards the next one here.
        assert_eq!(bans.ban(theirs, 2 * MIN, &STEPS, WEEK).level, 2);
        bans.lift(mine);
        assert!(!bans.holds(mine, 2 * MIN));
    }
}
