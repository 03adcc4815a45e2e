//! A keyed governor state store with a hard cap on tracked keys.
//!
//! Keys are 64-bit keyed SipHash digests computed by the
//! [`Limiter`](super::Limiter) (the raw key is never stored), so the maps
//! use them as their own hash. The map is split into shards, each behind a
//! `parking_lot::RwLock`: known keys are updated under a read lock with a
//! compare-and-swap of governor's theoretical arrival time (TAT); a new key
//! takes the shard's write lock.
//!
//! At the cap a new key is not inserted: it is measured against one shared
//! overflow state, so a flood of distinct keys shares a single budget while
//! the keys already tracked keep their own. Idle keys (whose state is
//! indistinguishable from a fresh one) are swept one shard at a time, every
//! `sweep_every` new or overflowing keys, so the sweep costs O(1) amortized
//! per new key and the cap frees up as soon as keys go idle.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use governor::nanos::Nanos;
use governor::state::StateStore;
use parking_lot::RwLock;

/// The keys are already uniformly distributed keyed hashes: use them as is.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, AtomicU64, BuildHasherDefault<PassThrough>>;

/// Above this many keys per shard, the store uses more shards (at most
/// [`MAX_SHARDS`]).
const KEYS_PER_SHARD: usize = 1024;
const MAX_SHARDS: usize = 64;
/// Fewest new keys between two sweeps.
const MIN_SWEEP_EVERY: usize = 16;

/// The state store: cheap to clone, clones share the state.
#[derive(Clone)]
pub(crate) struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    shards: Box<[RwLock<Map>]>,
    /// `shards.len() - 1`; the shard of a key is taken from its bits 32..,
    /// the map buckets from its low bits, so they stay independent.
    shard_mask: usize,
    len: AtomicUsize,
    max_keys: usize,
    overflow: AtomicU64,
    overflowed: AtomicU64,
    misses: AtomicUsize,
    sweep_every: usize,
    sweep_due: AtomicBool,
    next_shard: AtomicUsize,
}

impl Store {
    pub(crate) fn new(max_keys: usize) -> Self {
        let shards = (max_keys / KEYS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        Store {
            shared: Arc::new(Shared {
                shards: (0..shards).map(|_| RwLock::new(Map::default())).collect(),
                shard_mask: shards - 1,
                len: AtomicUsize::new(0),
                max_keys,
                overflow: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
                misses: AtomicUsize::new(0),
                sweep_every: (max_keys / shards).max(MIN_SWEEP_EVERY),
                sweep_due: AtomicBool::new(false),
                next_shard: AtomicUsize::new(0),
            }),
        }
    }

    fn shard(&self, key: u64) -> &RwLock<Map> {
        let i = (key >> 32) as usize & self.shared.shard_mask;
        &self.shared.shards[i]
    }

    /// The number of tracked keys (the overflow state is not one).
    pub(crate) fn len(&self) -> usize {
        self.shared.len.load(Ordering::Acquire)
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.shared.max_keys
    }

    /// How many measurements went to the overflow state.
    pub(crate) fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// Whether enough new keys arrived since the last sweep; clears the flag.
    pub(crate) fn take_sweep_due(&self) -> bool {
        self.shared.sweep_due.load(Ordering::Relaxed)
            && self.shared.sweep_due.swap(false, Ordering::AcqRel)
    }

    /// Sweeps the next shard in turn.
    pub(crate) fn sweep_next(&self, drop_below: u64) -> usize {
        let i = self.shared.next_shard.fetch_add(1, Ordering::Relaxed) & self.shared.shard_mask;
        self.sweep_shard(i, drop_below)
    }

    /// Sweeps every shard.
    pub(crate) fn sweep_all(&self, drop_below: u64) -> usize {
        (0..self.shared.shards.len())
            .map(|i| self.sweep_shard(i, drop_below))
            .sum()
    }

    /// Removes the keys of shard `i` whose TAT is at or before `drop_below`:
    /// their state is the same as a fresh one.
    fn sweep_shard(&self, i: usize, drop_below: u64) -> usize {
        let mut map = self.shared.shards[i].write();
        let before = map.len();
        map.retain(|_, tat| tat.load(Ordering::Acquire) > drop_below);
        let removed = before - map.len();
        if removed > 0 {
            self.shared.len.fetch_sub(removed, Ordering::AcqRel);
        }
        if map.capacity() > 2 * KEYS_PER_SHARD && map.len() * 4 < map.capacity() {
            let keep = map.len() * 2;
            map.shrink_to(keep);
        }
        removed
    }

    /// The TAT of `key`: its own, or the overflow state's when the store is
    /// full and does not track it. `None` for a fresh key.
    pub(crate) fn tat(&self, key: u64) -> Option<u64> {
        if let Some(tat) = self.shard(key).read().get(&key) {
            return nonzero(tat.load(Ordering::Acquire));
        }
        if self.len() >= self.shared.max_keys {
            return nonzero(self.shared.overflow.load(Ordering::Acquire));
        }
        None
    }

    /// Gives one cell of weight `t` back to a tracked key. The overflow
    /// state is never refunded.
    pub(crate) fn refund(&self, key: u64, t: u64) {
        if let Some(tat) = self.shard(key).read().get(&key) {
            let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != 0).then(|| v.saturating_sub(t))
            });
        }
    }

    /// Reserves a slot for a new key; `false` at the cap.
    fn reserve(&self) -> bool {
        self.shared
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.shared.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    fn note_miss(&self) {
        let n = self.shared.misses.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.shared.sweep_every) {
            self.shared.sweep_due.store(true, Ordering::Release);
        }
    }

    #[cold]
    fn measure_new<T, F, E>(&self, key: u64, f: &F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.shard(key).write();
        if let Some(tat) = map.get(&key) {
            // Inserted by another request since the read lock was released.
            return measure(tat, f);
        }
        self.note_miss();
        if self.reserve() {
            return match f(None) {
                Ok((outcome, tat)) => {
                    map.insert(key, AtomicU64::new(tat.into()));
                    Ok(outcome)
                }
                Err(e) => {
                    self.shared.len.fetch_sub(1, Ordering::AcqRel);
                    Err(e)
                }
            };
        }
        drop(map);
        self.shared.overflowed.fetch_add(1, Ordering::Relaxed);
        measure(&self.shared.overflow, f)
    }
}

fn nonzero(tat: u64) -> Option<u64> {
    (tat != 0).then_some(tat)
}

/// Runs governor's decision `f` on `tat` and stores the new TAT with a
/// compare-and-swap, retrying when another request changed it meanwhile.
/// `0` stands for "no state yet" (a real TAT is never 0).
fn measure<T, F, E>(tat: &AtomicU64, f: &F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let (outcome, next) = f(NonZeroU64::new(current).map(|v| Nanos::from(v.get())))?;
        match tat.compare_exchange_weak(current, next.into(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(outcome),
            Err(actual) => current = actual,
        }
    }
}

impl StateStore for Store {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(tat) = self.shard(*key).read().get(key) {
            return measure(tat, &f);
        }
        self.measure_new(*key, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allows when the TAT is before `now`, and sets it to `now + 10`.
    fn at(now: u64) -> impl Fn(Option<Nanos>) -> Result<((), Nanos), ()> {
        move |tat| {
            let tat = tat.map_or(0, u64::from);
            if tat > now {
                Err(())
            } else {
                Ok(((), Nanos::from(now + 10)))
            }
        }
    }

    #[test]
    fn tracks_keys_up_to_the_cap_then_shares_the_overflow() {
        let store = Store::new(3);
        for k in 0..3u64 {
            assert_eq!(store.measure_and_replace(&(k << 32), at(1)), Ok(()));
        }
        assert_eq!(store.len(), 3);
        // A fourth key goes to the overflow state: allowed once, then shared.
        assert_eq!(store.measure_and_replace(&99, at(1)), Ok(()));
        assert_eq!(store.measure_and_replace(&100, at(1)), Err(()));
        assert_eq!(store.len(), 3);
        assert_eq!(store.overflowed(), 2);
        // Tracked keys keep their own state.
        assert_eq!(store.tat(0), Some(11));
        assert_eq!(store.tat(99), Some(11));
    }

    #[test]
    fn sweep_removes_idle_keys_only() {
        let store = Store::new(100);
        store.measure_and_replace(&1, at(0)).unwrap(); // tat 10
        store.measure_and_replace(&2, at(50)).unwrap(); // tat 60
        assert_eq!(store.sweep_all(10), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.tat(1), None);
        assert_eq!(store.tat(2), Some(60));
    }

    #[test]
    fn sweep_becomes_due_after_enough_new_keys() {
        let store = Store::new(10);
        for k in 0..MIN_SWEEP_EVERY as u64 - 1 {
            store.measure_and_replace(&k, at(0)).unwrap_or(());
        }
        assert!(!store.take_sweep_due());
        store.measure_and_replace(&1000, at(0)).unwrap_or(());
        assert!(store.take_sweep_due());
        assert!(!store.take_sweep_due());
    }

    #[test]
    fn refund_gives_a_cell_back() {
        let store = Store::new(10);
        store.measure_and_replace(&7, at(0)).unwrap();
        store.refund(7, 4);
        assert_eq!(store.tat(7), Some(6));
        store.refund(7, 100);
        assert_eq!(store.tat(7), None);
        store.refund(8, 4); // untracked: nothing happens
        assert_eq!(store.tat(8), None);
    }
}
