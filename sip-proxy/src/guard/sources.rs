//! What the guard knows of each source (an IPv4 address or an IPv6 /64): its
//! recent wrong digests, whether a device authenticated from it lately (then
//! it is an office or a home, not a stranger), its budget of new requests (a
//! token bucket in exact integer arithmetic), and the accounts locked from it.
//!
//! Bounded: at most [`MAX_SOURCES`] records; idle ones are swept. A source
//! that finds no room is not limited (the guard fails open and counts it)
//! rather than making every newcomer wait for the sweep.

use std::collections::VecDeque;

use pbx_store::net::Source;
use pbx_store::Millis;

use crate::sharded::ShardedMap;

/// Records kept at most.
pub const MAX_SOURCES: usize = 200_000;
/// Wrong digests remembered per source: enough for the highest threshold
/// from a trusted source (three times it).
const FAILURES_KEPT: usize = 3 * pbx_store::abuse::MAX_AUTH_FAILURES as usize;

#[derive(Debug, Clone)]
pub struct Record {
    /// When, and for which account (a hash), each recent wrong digest came.
    failures: VecDeque<(Millis, u64)>,
    /// A device authenticated from here; until then the source is trusted.
    trusted_until: Millis,
    /// Thousandths of a request.
    tokens: i64,
    refilled_at: Millis,
    /// Accounts this (trusted) source may not try any more, and until when.
    locks: Vec<(u64, Millis)>,
    /// Challenges sent to requests without credentials since `challenged_since`.
    challenges: u32,
    challenged_since: Millis,
}

/// A request budget: `rate` new requests a second, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub rate: u32,
    pub burst: u32,
}

impl Budget {
    fn full(&self) -> i64 {
        i64::from(self.burst) * 1000
    }
}

impl Record {
    fn new(now: Millis, budget: Budget) -> Record {
        Record {
            failures: VecDeque::new(),
            trusted_until: 0,
            tokens: budget.full(),
            refilled_at: now,
            locks: Vec::new(),
            challenges: 0,
            challenged_since: now,
        }
    }

    fn refill(&mut self, now: Millis, budget: Budget) {
        let elapsed = (now - self.refilled_at).max(0);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(i64::from(budget.rate)))
            .min(budget.full());
        self.refilled_at = now;
    }

    /// Takes one request from the budget; false when it is spent.
    fn spend(&mut self, now: Millis, budget: Budget) -> bool {
        self.refill(now, budget);
        if self.tokens < 1000 {
            return false;
        }
        self.tokens -= 1000;
        true
    }

    fn idle(&self, now: Millis, window: Millis, budget: Budget) -> bool {
        let refilled = self.tokens.saturating_add(
            (now - self.refilled_at)
                .max(0)
                .saturating_mul(i64::from(budget.rate)),
        );
        self.trusted_until <= now
            && refilled >= budget.full()
            && self.failures.back().is_none_or(|(t, _)| now - *t >= window)
            && self.locks.iter().all(|(_, until)| *until <= now)
            && (self.challenges == 0 || now - self.challenged_since >= window)
    }
}

/// What a request's budget said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Granted,
    /// Spent; whether the source is trusted (throttled, not banned).
    Spent {
        trusted: bool,
    },
    /// No room to track the source; granted from the budget all untracked
    /// sources share.
    Untracked,
    /// No room to track the source, and the shared budget is spent.
    Overflowing,
}

/// A wrong digest counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// From this source within the window.
    pub total: u32,
    /// From this source for the same account within the window.
    pub for_account: u32,
    pub trusted: bool,
    /// Accounts locked from this source right now.
    pub locked_accounts: u32,
}

#[derive(Default)]
pub struct Sources {
    map: ShardedMap<Source, Record>,
    /// The one budget of every source the map has no room for: filling the
    /// map with made-up sources (an IPv6 /48 holds 65,536 /64s) must not
    /// buy them unlimited requests.
    overflow: std::sync::Mutex<Option<Record>>,
}

impl Sources {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes one new request from `source`'s budget.
    pub fn take(&self, source: Source, now: Millis, budget: Budget) -> Taken {
        self.map
            .upsert(
                source,
                MAX_SOURCES,
                || Record::new(now, budget),
                |r| {
                    if r.spend(now, budget) {
                        Taken::Granted
                    } else {
                        Taken::Spent {
                            trusted: r.trusted_until > now,
                        }
                    }
                },
            )
            .unwrap_or_else(|| {
                let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
                let shared = overflow.get_or_insert_with(|| Record::new(now, budget));
                if shared.spend(now, budget) {
                    Taken::Untracked
                } else {
                    Taken::Overflowing
                }
            })
    }

    /// Counts a wrong digest for `account` (a hash) from `source`; None when
    /// the source cannot be tracked.
    pub fn fail(
        &self,
        source: Source,
        account: u64,
        now: Millis,
        window: Millis,
        budget: Budget,
    ) -> Option<Failures> {
        self.map.upsert(
            source,
            MAX_SOURCES,
            || Record::new(now, budget),
            |r| {
                while r.failures.front().is_some_and(|(t, _)| now - *t >= window) {
                    r.failures.pop_front();
                }
                if r.failures.len() >= FAILURES_KEPT {
                    r.failures.pop_front();
                }
                r.failures.push_back((now, account));
                r.locks.retain(|(_, until)| *until > now);
                Failures {
                    total: r.failures.len() as u32,
                    for_account: r.failures.iter().filter(|(_, a)| *a == account).count() as u32,
                    trusted: r.trusted_until > now,
                    locked_accounts: r.locks.len() as u32,
                }
            },
        )
    }

    /// Counts a challenge to a request without credentials from `source`:
    /// how many within the window, and whether the source is trusted. None
    /// when the source cannot be tracked.
    pub fn challenged(
        &self,
        source: Source,
        now: Millis,
        window: Millis,
        budget: Budget,
    ) -> Option<(u32, bool)> {
        self.map.upsert(
            source,
            MAX_SOURCES,
            || Record::new(now, budget),
            |r| {
                if now - r.challenged_since >= window {
                    r.challenges = 0;
                    r.challenged_since = now;
                }
                r.challenges = r.challenges.saturating_add(1);
                (r.challenges, r.trusted_until > now)
            },
        )
    }

    /// Locks `account` from `source` until `until`; its wrong digests for
    /// that account are forgotten (they led to the lock).
    pub fn lock(&self, source: Source, account: u64, until: Millis) {
        self.map.update(&source, |r| {
            r.locks.retain(|(a, _)| *a != account);
            r.locks.push((account, until));
            r.failures.retain(|(_, a)| *a != account);
        });
    }

    pub fn locked(&self, source: Source, account: u64, now: Millis) -> bool {
        self.map
            .update(&source, |r| {
                r.locks
                    .iter()
                    .any(|(a, until)| *a == account && *until > now)
            })
            .unwrap_or(false)
    }

    /// A device authenticated from `source`: trusted until `until`.
    pub fn trust(&self, source: Source, now: Millis, until: Millis, budget: Budget) {
        self.map.upsert(
            source,
            MAX_SOURCES,
            || Record::new(now, budget),
            |r| r.trusted_until = r.trusted_until.max(until),
        );
    }

    pub fn trusted(&self, source: Source, now: Millis) -> bool {
        self.map
            .update(&source, |r| r.trusted_until > now)
            .unwrap_or(false)
    }

    /// Forgets `source`'s wrong digests and locks (its ban ended or was lifted).
    pub fn reset(&self, source: Source) {
        self.map.update(&source, |r| {
            r.failures.clear();
            r.locks.clear();
            r.challenges = 0;
        });
    }

    /// Removes records with nothing left to remember.
    pub fn sweep(&self, now: Millis, window: Millis, budget: Budget) {
        self.map.retain_quietly(|r| !r.idle(now, window, budget));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        rate: 10,
        burst: 20,
    };
    const WINDOW: Millis = 600_000;

    #[test]
    fn sources_beyond_the_table_share_one_budget() {
        let s = Sources::default();
        let mut n = 0u32;
        while s.len() < MAX_SOURCES {
            assert_eq!(s.take(Source::V4(n), 0, BUDGET), Taken::Granted);
            n += 1;
        }
        // Made-up sources after that: one burst among all of them, then
        // dropped until the shared budget refills; the tracked ones go on.
        let fresh = |i: u32| Source::V4(n + i);
        let untracked = (0..100)
            .filter(|i| s.take(fresh(*i), 0, BUDGET) == Taken::Untracked)
            .count();
        assert_eq!(untracked, 20);
        assert_eq!(s.take(fresh(1_000), 0, BUDGET), Taken::Overflowing);
        assert_eq!(s.take(fresh(1_001), 100, BUDGET), Taken::Untracked);
        assert_eq!(s.take(Source::V4(0), 0, BUDGET), Taken::Granted);
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_the_burst() {
        let s = Sources::default();
        let a = Source::V4(1);
        let granted = (0..30)
            .filter(|_| s.take(a, 0, BUDGET) == Taken::Granted)
            .count();
        assert_eq!(granted, 20, "the burst");
        // 10 a second: 100 ms buys one request.
        assert_eq!(s.take(a, 99, BUDGET), Taken::Spent { trusted: false });
        assert_eq!(s.take(a, 100, BUDGET), Taken::Granted);
        assert_eq!(s.take(a, 100, BUDGET), Taken::Spent { trusted: false });
        // A long pause refills to the burst, not beyond.
        let later = (0..30)
            .filter(|_| s.take(a, 3_600_000, BUDGET) == Taken::Granted)
            .count();
        assert_eq!(later, 20);
        s.trust(a, 3_600_000, 3_700_000, BUDGET);
        assert_eq!(s.take(a, 3_600_000, BUDGET), Taken::Spent { trusted: true });
    }

    #[test]
    fn failures_count_within_the_window_per_source_and_account() {
        let s = Sources::default();
        let a = Source::V4(1);
        let f = |account, at| s.fail(a, account, at, WINDOW, BUDGET).expect("tracked");
        assert_eq!(f(7, 0).total, 1);
        assert_eq!(f(7, 1_000).for_account, 2);
        let third = f(8, 2_000);
        assert_eq!((third.total, third.for_account), (3, 1));
        // The first two fall out of the window.
        let later = f(7, WINDOW + 1_500);
        assert_eq!((later.total, later.for_account), (2, 1));
        s.lock(a, 7, WINDOW + 60_000);
        assert!(s.locked(a, 7, WINDOW + 2_000));
        assert!(!s.locked(a, 8, WINDOW + 2_000));
        assert!(!s.locked(a, 7, WINDOW + 60_000), "the lock ends");
        assert_eq!(f(9, WINDOW + 3_000).locked_accounts, 1);
        s.reset(a);
        assert_eq!(f(9, WINDOW + 4_000).total, 1);
    }

    #[test]
    fn idle_sources_are_swept_and_the_map_is_bounded() {
        let s = Sources::default();
        s.take(Source::V4(1), 0, BUDGET);
        s.fail(Source::V4(2), 1, 0, WINDOW, BUDGET);
        s.trust(Source::V4(3), 0, 10 * WINDOW, BUDGET);
        s.sweep(50, WINDOW, BUDGET);
        assert_eq!(
            s.len(),
            3,
            "the bucket is not full again yet, a failure is recent, one is trusted"
        );
        s.sweep(WINDOW, WINDOW, BUDGET);
        assert_eq!(s.len(), 1, "only the trusted one is left");
        for i in 0..MAX_SOURCES as u32 {
            s.take(Source::V4(100 + i), 0, BUDGET);
        }
        assert_eq!(s.len(), MAX_SOURCES);
        assert_eq!(s.take(Source::V6(1), 0, BUDGET), Taken::Untracked);
    }
}
