//! A hash map split into independently locked shards, so that messages of
//! different calls never wait for each other.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;

pub struct ShardedMap<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: RandomState,
    len: AtomicUsize,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
        }
    }
}

impl<K: Hash + Eq, V: Clone> ShardedMap<K, V> {
    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.shard(key).get(key).cloned()
    }

    /// Inserts unless the key is present; returns false if it was.
    pub fn insert_new(&self, key: K, value: V) -> bool {
        let mut shard = self.shard(&key);
        if shard.contains_key(&key) {
            return false;
        }
        shard.insert(key, value);
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn insert(&self, key: K, value: V) {
        if self.shard(&key).insert(key, value).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        let removed = self.shard(key).remove(key);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Applies `f` to the value of `key` under its shard's lock, making it
    /// with `make` when absent, unless the map holds `cap` entries already:
    /// then nothing is added and None is returned.
    pub fn upsert<R>(
        &self,
        key: K,
        cap: usize,
        make: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(&key);
        if let Some(v) = shard.get_mut(&key) {
            return Some(f(v));
        }
        if self.len.load(Ordering::Relaxed) >= cap {
            return None;
        }
        let v = shard.entry(key).or_insert_with(make);
        self.len.fetch_add(1, Ordering::Relaxed);
        Some(f(v))
    }

    /// Applies `f` to the value under its shard's lock.
    pub fn update<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(key).get_mut(key).map(f)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Removes every entry for which `keep` is false.
    pub fn retain_quietly(&self, mut keep: impl FnMut(&V) -> bool) {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, v| keep(v));
            removed += before - shard.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Removes every entry for which `keep` is false; returns them.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) -> Vec<V> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, v| {
                let k = keep(v);
                if !k {
                    removed.push(v.clone());
                }
                k
            });
        }
        self.len.fetch_sub(removed.len(), Ordering::Relaxed);
        removed
    }
}
