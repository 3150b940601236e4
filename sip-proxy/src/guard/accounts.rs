//! Accounts (a customer's SIP user name) under attack from many sources at
//! once: their wrong digests counted across sources, the sources each
//! device registered from (its known sources), and the protections in force
//! — while an account is protected it authenticates only from sources it
//! registered from before, so a distributed guess that finds the password
//! still gets nothing, while the phones already on the desk keep working.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use pbx_store::net::Source;
use pbx_store::{CustomerId, DeviceId, Millis};

use crate::sharded::ShardedMap;

/// Accounts whose wrong digests are counted at once, at most.
const MAX_ACCOUNTS: usize = 100_000;
/// Wrong digests remembered per account: enough for the highest threshold.
const FAILURES_KEPT: usize = pbx_store::abuse::MAX_ACCOUNT_FAILURES as usize;
/// Sources remembered per device (the most recent).
const KNOWN_PER_DEVICE: usize = 4;

/// A protection in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    pub customer: CustomerId,
    pub sip_user: String,
    pub until: Millis,
}

/// Wrong digests for one account within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub failures: u32,
    /// From how many sources.
    pub sources: u32,
}

/// A customer's SIP user name.
type Account = (CustomerId, String);

#[derive(Default)]
pub struct Accounts {
    /// When, and from where, each recent wrong digest came.
    failures: Mutex<HashMap<Account, VecDeque<(Millis, Source)>>>,
    known: ShardedMap<DeviceId, Vec<(Source, Millis)>>,
    protected: RwLock<HashMap<DeviceId, Protection>>,
    /// Entries of `protected`: nothing to look up while nobody is attacked.
    count: AtomicUsize,
    /// Decided here and not yet seen back from the store.
    pending: Mutex<HashSet<DeviceId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Accounts {
    /// Counts a wrong digest for `customer`'s `user` from `source`.
    pub fn fail(
        &self,
        customer: CustomerId,
        user: &str,
        source: Source,
        now: Millis,
        window: Millis,
    ) -> Counted {
        let mut all = lock(&self.failures);
        let key = (customer, user.to_owned());
        if !all.contains_key(&key) && all.len() >= MAX_ACCOUNTS {
            all.retain(|_, f| f.back().is_some_and(|(t, _)| now - *t < window));
            if all.len() >= MAX_ACCOUNTS {
                return Counted {
                    failures: 0,
                    sources: 0,
                };
            }
        }
        let f = all.entry(key).or_default();
        while f.front().is_some_and(|(t, _)| now - *t >= window) {
            f.pop_front();
        }
        if f.len() >= FAILURES_KEPT {
            f.pop_front();
        }
        f.push_back((now, source));
        let sources: HashSet<Source> = f.iter().map(|(_, s)| *s).collect();
        Counted {
            failures: f.len() as u32,
            sources: sources.len() as u32,
        }
    }

    /// Protects `device` until `until`; false if it already is.
    pub fn protect(&self, device: DeviceId, protection: Protection, now: Millis) -> bool {
        let mut protected = write(&self.protected);
        if protected.get(&device).is_some_and(|p| p.until > now) {
            return false;
        }
        let key = (protection.customer, protection.sip_user.clone());
        protected.insert(device, protection);
        self.count.store(protected.len(), Ordering::Relaxed);
        lock(&self.pending).insert(device);
        // What led here is dealt with; a new wave counts from zero.
        lock(&self.failures).remove(&key);
        true
    }

    pub fn is_protected(&self, device: DeviceId, now: Millis) -> bool {
        self.count.load(Ordering::Relaxed) > 0
            && read(&self.protected)
                .get(&device)
                .is_some_and(|p| p.until > now)
    }

    pub fn protected_len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether `device` registered from `source` within `memory`.
    pub fn knows(&self, device: DeviceId, source: Source, now: Millis, memory: Millis) -> bool {
        self.known
            .get(&device)
            .is_some_and(|k| k.iter().any(|(s, at)| *s == source && now - *at < memory))
    }

    /// `device` registered from `source`.
    pub fn remember(&self, device: DeviceId, source: Source, now: Millis) {
        // Devices are bounded by the directory, so the map needs no cap of its own.
        self.known.upsert(device, usize::MAX, Vec::new, |k| {
            match k.iter_mut().find(|(s, _)| *s == source) {
                Some(entry) => entry.1 = now,
                None => {
                    if k.len() >= KNOWN_PER_DEVICE {
                        if let Some(oldest) = k
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, (_, at))| *at)
                            .map(|(i, _)| i)
                        {
                            k.swap_remove(oldest);
                        }
                    }
                    // Most devices register from one place: no spare room.
                    k.reserve_exact(1);
                    k.push((source, now));
                }
            }
        });
    }

    /// The store has this node's protection of `device` now.
    pub fn stored(&self, device: DeviceId) {
        lock(&self.pending).remove(&device);
    }

    /// Takes the store's view of the protections in force; keeps those
    /// decided here and not stored yet. Returns the protections that ended
    /// (lifted by an admin, or over).
    pub fn replace(
        &self,
        known: Vec<(DeviceId, Protection)>,
        now: Millis,
    ) -> Vec<(DeviceId, Protection)> {
        let pending = lock(&self.pending).clone();
        let mut protected = write(&self.protected);
        let mut fresh: HashMap<DeviceId, Protection> =
            known.into_iter().filter(|(_, p)| p.until > now).collect();
        for d in &pending {
            if let Some(p) = protected.get(d) {
                fresh.entry(*d).or_insert_with(|| p.clone());
            }
        }
        let gone: Vec<(DeviceId, Protection)> = protected
            .iter()
            .filter(|(d, _)| !fresh.contains_key(d))
            .map(|(d, p)| (*d, p.clone()))
            .collect();
        *protected = fresh;
        self.count.store(protected.len(), Ordering::Relaxed);
        drop(protected);
        let mut failures = lock(&self.failures);
        for (_, p) in &gone {
            failures.remove(&(p.customer, p.sip_user.clone()));
        }
        gone
    }

    /// Forgets protections that ended, failures past the window and known
    /// sources past `memory`.
    pub fn sweep(&self, now: Millis, window: Millis, memory: Millis) {
        {
            let mut protected = write(&self.protected);
            protected.retain(|_, p| p.until > now);
            self.count.store(protected.len(), Ordering::Relaxed);
        }
        lock(&self.failures).retain(|_, f| f.back().is_some_and(|(t, _)| now - *t < window));
        self.known
            .retain_quietly(|k| k.iter().any(|(_, at)| now - *at < memory));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;

    fn protection(until: Millis) -> Protection {
        Protection {
            customer: CustomerId(1),
            sip_user: "103".into(),
            until,
        }
    }

    #[test]
    fn failures_from_many_sources_add_up_per_account() {
        let a = Accounts::default();
        for i in 0..9u32 {
            let c = a.fail(
                CustomerId(1),
                "103",
                Source::V4(i),
                i64::from(i) * 1000,
                HOUR,
            );
            assert_eq!(c.failures, i + 1);
            assert_eq!(c.sources, i + 1);
        }
        let other = a.fail(CustomerId(2), "103", Source::V4(1), 10_000, HOUR);
        assert_eq!(
            other.failures, 1,
            "another customer's 103 is another account"
        );
        let tenth = a.fail(CustomerId(1), "103", Source::V4(0), 10_000, HOUR);
        assert_eq!((tenth.failures, tenth.sources), (10, 9));
        let late = a.fail(CustomerId(1), "103", Source::V4(0), HOUR + 5_500, HOUR);
        assert_eq!(late.failures, 5, "the first six fell out of the hour");
    }

    #[test]
    fn a_protected_device_knows_only_where_it_registered_from() {
        let a = Accounts::default();
        let d = DeviceId(7);
        let office = Source::V4(10);
        a.remember(d, office, 0);
        assert!(!a.is_protected(d, 0));
        assert!(a.protect(d, protection(HOUR), 0));
        assert!(
            !a.protect(d, protection(2 * HOUR), 1),
            "once while it lasts"
        );
        assert!(a.is_protected(d, HOUR - 1));
        assert!(!a.is_protected(d, HOUR));
        assert!(a.knows(d, office, 1000, 30 * 24 * HOUR));
        assert!(!a.knows(d, Source::V4(11), 1000, 30 * 24 * HOUR));
        assert!(
            !a.knows(d, office, 31 * 24 * HOUR, 30 * 24 * HOUR),
            "forgotten after a month"
        );
        // Only the most recent few sources are kept.
        for i in 0..10 {
            a.remember(d, Source::V4(100 + i), 2000 + i64::from(i));
        }
        assert!(!a.knows(d, office, 3000, 30 * 24 * HOUR));
        assert!(a.knows(d, Source::V4(109), 3000, 30 * 24 * HOUR));
    }

    #[test]
    fn the_stores_view_lifts_protections_and_keeps_pending_ones() {
        let a = Accounts::default();
        a.protect(DeviceId(1), protection(HOUR), 0);
        a.protect(DeviceId(2), protection(HOUR), 0);
        a.stored(DeviceId(2));
        let gone = a.replace(vec![(DeviceId(3), protection(HOUR))], 10);
        assert_eq!(
            gone,
            vec![(DeviceId(2), protection(HOUR))],
            "stored, then lifted"
        );
        assert!(a.is_protected(DeviceId(1), 10), "pending");
        assert!(a.is_protected(DeviceId(3), 10), "another node's");
        assert!(!a.is_protected(DeviceId(2), 10));
        a.sweep(HOUR, HOUR, HOUR);
        assert_eq!(a.protected_len(), 0);
    }
}
