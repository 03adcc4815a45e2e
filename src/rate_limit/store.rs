//! A keyed GCRA state store with a hard cap on tracked keys.
//!
//! Keys are 64-bit keyed digests computed by the
//! [`Limiter`](super::Limiter) (the raw key is never stored), so the maps
//! use them as their own hash. The map is split into shards, each behind a
//! `parking_lot::RwLock`: known keys are updated under a read lock with a
//! compare-and-swap of the GCRA theoretical arrival time (TAT); a new key
//! takes the shard's write lock.
//!
//! A TAT at or before now is the same state as no state at all (see
//! [`Gcra`]), so such a key is *idle* and may be dropped at any time. Idle
//! keys are dropped:
//!
//! * one shard at a time, every `sweep_every` new or overflowing keys, so
//!   the sweeps cost O(1) amortized per new key, once the store holds
//!   three quarters of its cap, or since a key overflowed (its network or
//!   the store was full). Below that, idle keys cost nothing but their
//!   memory (bounded by the cap), while dropping them would make a client
//!   that comes back a new key again: a write lock and an insert instead
//!   of a read lock and a compare-and-swap;
//! * at the cap, from the shard of a new key, under the write lock that key
//!   already holds, before it is sent to the overflow budget. This happens
//!   at most once per `reclaim_every` per shard, so a flood of new keys at
//!   a cap that is genuinely full scans each shard at most once per
//!   interval, while a cap full of idle keys frees up for the first new key
//!   of each shard;
//! * all at once by [`Store::sweep_all`] (`Limiter::purge`).
//!
//! At the cap a new key is not inserted: it is measured against an overflow
//! state with its own quota, so a flood of distinct keys shares a single
//! budget while the keys already tracked keep their own.
//!
//! Keys may belong to a *network* (a 64-bit digest too, `0` for none: the
//! `/48` or `/24` of an IP key). A network holds at most `network_keys`
//! tracked keys; its further new keys, and its new keys at the global cap,
//! are measured against the network's own overflow state instead of the
//! shared one. So one network cannot fill the cap, and when the cap is
//! full anyway, the flood of one network only spends its own overflow
//! budget while new clients of other networks get theirs. Networks are
//! capped too (`max_networks`): past that cap a new key counts as having
//! no network. A network is dropped once it tracks no key, holds no
//! attempt and its overflow state is idle.
//!
//! Failed-attempts limiters *hold* units instead of taking them
//! ([`Store::attempt`]): the number of attempts in flight is kept beside the
//! TAT (in a small per-shard map, only while attempts are in flight) and an
//! attempt is admitted while the units held plus one fit in the budget. A
//! failure is recorded in the TAT when it is known ([`Store::settle`]); a
//! success only gives the held unit back. Nothing is ever subtracted from a
//! TAT, so no outcome can forgive a unit it did not take.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::quota::Quota;

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

/// The state of a tracked key.
pub(crate) struct Entry {
    tat: AtomicU64,
    /// The network the key is counted in, `0` for none.
    network: u64,
}

type Map = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// What a network holds: its tracked keys and its own overflow budget.
#[derive(Clone, Copy, Debug, Default)]
struct Network {
    /// Tracked keys counted in this network.
    keys: u32,
    /// Attempts in flight held in its overflow budget.
    held: u32,
    /// The TAT of its overflow budget.
    tat: u64,
}

type Networks = HashMap<u64, Network, BuildHasherDefault<PassThrough>>;
/// Attempts in flight per key.
type Held = HashMap<u64, u32, BuildHasherDefault<PassThrough>>;

/// Above this many keys per shard, the store uses more shards (at most
/// [`MAX_SHARDS`]).
const KEYS_PER_SHARD: usize = 1024;
const MAX_SHARDS: usize = 64;
/// Fewest new keys between two sweeps.
const MIN_SWEEP_EVERY: usize = 16;
/// Bounds of the interval between two sweeps of one shard at the cap: the
/// replenish interval, clamped to these.
const RECLAIM_EVERY_MIN: Duration = Duration::from_millis(100);
const RECLAIM_EVERY_MAX: Duration = Duration::from_secs(1);

/// governor's GCRA in nanoseconds since the limiter started. A TAT of `0`
/// stands for "no state yet"; a real TAT is never `0`.
///
/// A TAT at or before `now` is the same as no state: `take` works from
/// `max(tat, now)`, so both admit the whole burst and lead to the same TAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Weight of one unit.
    t: u64,
    /// Burst tolerance: `t × (burst - 1)`.
    tau: u64,
}

impl Gcra {
    pub(crate) fn new(quota: Quota) -> Self {
        let t = u64::try_from(quota.replenish_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Gcra {
            t,
            tau: t.saturating_mul(u64::from(quota.burst()) - 1),
        }
    }

    /// Whether `held + 1` units fit at `now`: `Err` carries the earliest
    /// time they would.
    #[inline]
    fn fits(self, tat: u64, now: u64, held: u32) -> Result<(), u64> {
        let earliest = tat
            .max(now)
            .saturating_add(self.t.saturating_mul(u64::from(held)))
            .saturating_sub(self.tau);
        if earliest > now {
            Err(earliest)
        } else {
            Ok(())
        }
    }

    /// The TAT once one more unit is spent at `now`.
    #[inline]
    fn record(self, tat: u64, now: u64) -> u64 {
        tat.max(now).saturating_add(self.t)
    }

    /// Takes one unit: the new TAT, or the earliest time one fits.
    #[inline]
    fn take(self, tat: u64, now: u64) -> Result<u64, u64> {
        self.fits(tat, now, 0)?;
        Ok(self.record(tat, now))
    }

    /// The units left at `now` (at most the burst) and the nanoseconds
    /// until one more is available (`0` when the whole burst is).
    pub(crate) fn remaining(self, tat: u64, now: u64) -> (u64, u64) {
        let burst = self.tau / self.t + 1;
        // A unit fits while `now >= tat - tau`; each `t` more adds one.
        let slack = now
            .saturating_add(self.tau)
            .saturating_add(self.t)
            .saturating_sub(tat);
        let remaining = (slack / self.t).min(burst);
        if remaining >= burst {
            (burst, 0)
        } else {
            (remaining, self.t - slack % self.t)
        }
    }
}

/// Where an attempt holds its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The key's own budget (tracked, or fresh with room to track it).
    Key,
    /// The shared overflow budget: the key was not tracked at the cap.
    Overflow,
    /// The overflow budget of the key's network: the key was not tracked
    /// because the network or the cap was full.
    Network(u64),
}

/// A new key's slot in its network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// One of the network's slots is reserved for the key.
    Reserved,
    /// The network holds its maximum of keys: the key overflows.
    Full,
    /// No network (none given, or no room to track one).
    None,
}

struct Shard {
    map: RwLock<Map>,
    held: Mutex<Held>,
    /// When this shard was last swept at the cap (see [`Store::reclaim`]).
    reclaimed_at: AtomicU64,
    /// The networks whose digest falls in this shard. Locked after `map`
    /// (never the other way round).
    networks: Mutex<Networks>,
}

/// The budget shared by the keys that are not tracked at the cap.
struct Overflow {
    gcra: Gcra,
    tat: AtomicU64,
    held: Mutex<u32>,
}

/// The state store of one [`Limiter`](super::Limiter).
pub(crate) struct Store {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`; the shard of a key is taken from its bits 32..,
    /// the map buckets from its low bits, so they stay independent.
    shard_mask: usize,
    gcra: Gcra,
    len: AtomicUsize,
    max_keys: usize,
    overflow: Overflow,
    overflowed: AtomicU64,
    misses: AtomicUsize,
    sweep_every: usize,
    /// Incremental sweeps run from this many tracked keys on...
    sweep_from: usize,
    /// ...or once a key overflowed since the last sweep was due.
    pressure: AtomicBool,
    sweep_due: AtomicBool,
    next_shard: AtomicUsize,
    reclaim_every: u64,
    reclaims: AtomicU64,
    /// Most tracked keys per network.
    network_keys: u32,
    max_networks: usize,
    networks_len: AtomicUsize,
}

/// The caps of a [`Store`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) max_keys: usize,
    pub(crate) network_keys: usize,
    pub(crate) max_networks: usize,
}

impl Store {
    pub(crate) fn new(caps: Caps, quota: Quota, overflow: Quota) -> Self {
        let max_keys = caps.max_keys;
        let shards = (max_keys / KEYS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let reclaim_every = quota
            .replenish_interval()
            .clamp(RECLAIM_EVERY_MIN, RECLAIM_EVERY_MAX)
            .as_nanos() as u64;
        Store {
            shards: (0..shards)
                .map(|_| Shard {
                    map: RwLock::new(Map::default()),
                    held: Mutex::new(Held::default()),
                    reclaimed_at: AtomicU64::new(0),
                    networks: Mutex::new(Networks::default()),
                })
                .collect(),
            shard_mask: shards - 1,
            gcra: Gcra::new(quota),
            len: AtomicUsize::new(0),
            max_keys,
            overflow: Overflow {
                gcra: Gcra::new(overflow),
                tat: AtomicU64::new(0),
                held: Mutex::new(0),
            },
            overflowed: AtomicU64::new(0),
            misses: AtomicUsize::new(0),
            sweep_every: (max_keys / shards).max(MIN_SWEEP_EVERY),
            sweep_from: max_keys - max_keys / 4,
            pressure: AtomicBool::new(false),
            sweep_due: AtomicBool::new(false),
            next_shard: AtomicUsize::new(0),
            reclaim_every,
            reclaims: AtomicU64::new(0),
            network_keys: u32::try_from(caps.network_keys).unwrap_or(u32::MAX),
            max_networks: caps.max_networks,
            networks_len: AtomicUsize::new(0),
        }
    }

    /// The networks of `network`'s shard, locked.
    #[inline]
    fn networks(&self, network: u64) -> parking_lot::MutexGuard<'_, Networks> {
        self.shard(network).networks.lock()
    }

    /// The number of tracked networks.
    pub(crate) fn networks_len(&self) -> usize {
        self.networks_len.load(Ordering::Acquire)
    }

    /// The entry of `network` in `networks` (its shard's, locked), made if
    /// there is room for one more network.
    fn network_entry<'n>(
        &self,
        networks: &'n mut Networks,
        network: u64,
    ) -> Option<&'n mut Network> {
        use std::collections::hash_map::Entry as HashEntry;
        match networks.entry(network) {
            HashEntry::Occupied(entry) => Some(entry.into_mut()),
            HashEntry::Vacant(entry) => {
                let room = self
                    .networks_len
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_networks).then_some(n + 1)
                    })
                    .is_ok();
                room.then(|| entry.insert(Network::default()))
            }
        }
    }

    /// Reserves one of `network`'s key slots for a new key.
    fn reserve_in_network(&self, network: u64) -> Slot {
        if network == 0 {
            return Slot::None;
        }
        let mut networks = self.networks(network);
        match self.network_entry(&mut networks, network) {
            Some(n) if n.keys >= self.network_keys => Slot::Full,
            Some(n) => {
                n.keys += 1;
                Slot::Reserved
            }
            None => Slot::None,
        }
    }

    /// Whether `network` holds its maximum of keys.
    fn network_full(&self, network: u64) -> bool {
        network != 0
            && self
                .networks(network)
                .get(&network)
                .is_some_and(|n| n.keys >= self.network_keys)
    }

    /// Gives back a key slot of `network`.
    fn release_in_network(&self, network: u64, now: u64) {
        let mut networks = self.networks(network);
        if let Some(n) = networks.get_mut(&network) {
            n.keys = n.keys.saturating_sub(1);
            if is_idle(n, now) {
                networks.remove(&network);
                self.networks_len.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Drops the networks of `shard` that hold nothing.
    fn drop_idle_networks(&self, shard: &Shard, now: u64) {
        let mut networks = shard.networks.lock();
        let before = networks.len();
        networks.retain(|_, n| !is_idle(n, now));
        let removed = before - networks.len();
        if removed > 0 {
            self.networks_len.fetch_sub(removed, Ordering::AcqRel);
        }
        if networks.capacity() > 2 * KEYS_PER_SHARD && networks.len() * 4 < networks.capacity() {
            let keep = networks.len() * 2;
            networks.shrink_to(keep);
        }
    }

    /// Takes one unit of the overflow budget of `network`, or of the shared
    /// one without a network (or room for it).
    fn take_overflow(&self, network: u64, now: u64) -> Result<(), u64> {
        self.note_overflow();
        let gcra = self.overflow.gcra;
        if network != 0 {
            let mut networks = self.networks(network);
            if let Some(n) = self.network_entry(&mut networks, network) {
                n.tat = gcra.take(n.tat, now)?;
                return Ok(());
            }
        }
        update(&self.overflow.tat, |v| gcra.take(v, now))
    }

    /// Records one failure in the overflow budget of `network`, or in the
    /// shared one.
    fn record_overflow(&self, network: u64, now: u64) {
        self.note_overflow();
        let gcra = self.overflow.gcra;
        if network != 0 {
            let mut networks = self.networks(network);
            if let Some(n) = self.network_entry(&mut networks, network) {
                n.tat = gcra.record(n.tat, now);
                return;
            }
        }
        let _held = self.overflow.held.lock();
        record(gcra, &self.overflow.tat, now);
    }

    /// Holds one unit of the overflow budget of `network`, or of the shared
    /// one.
    fn hold_overflow(&self, network: u64, now: u64) -> Result<Place, u64> {
        let gcra = self.overflow.gcra;
        if network != 0 {
            let mut networks = self.networks(network);
            if let Some(n) = self.network_entry(&mut networks, network) {
                gcra.fits(n.tat, now, n.held)?;
                n.held = n.held.saturating_add(1);
                self.note_overflow();
                return Ok(Place::Network(network));
            }
        }
        let mut held = self.overflow.held.lock();
        hold(gcra, &self.overflow.tat, &mut held, now)?;
        self.note_overflow();
        Ok(Place::Overflow)
    }

    #[inline]
    fn shard(&self, key: u64) -> &Shard {
        let i = (key >> 32) as usize & self.shard_mask;
        &self.shards[i]
    }

    /// The number of tracked keys (the overflow state is not one).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// How many measurements went to the overflow state.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// The entries really held: keys in the maps, networks in theirs.
    #[cfg(test)]
    pub(crate) fn counted(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(keys, networks), shard| {
            (
                keys + shard.map.read().len(),
                networks + shard.networks.lock().len(),
            )
        })
    }

    /// How many times a shard was swept to make room at the cap.
    #[cfg(test)]
    pub(crate) fn reclaims(&self) -> u64 {
        self.reclaims.load(Ordering::Relaxed)
    }

    /// Whether enough new keys arrived since the last sweep; clears the flag.
    #[inline]
    pub(crate) fn take_sweep_due(&self) -> bool {
        self.sweep_due.load(Ordering::Relaxed) && self.sweep_due.swap(false, Ordering::AcqRel)
    }

    /// Sweeps the next shard in turn.
    #[cold]
    pub(crate) fn sweep_next(&self, now: u64) -> usize {
        let i = self.next_shard.fetch_add(1, Ordering::Relaxed) & self.shard_mask;
        let shard = &self.shards[i];
        let removed = self.drop_idle(&mut shard.map.write(), now);
        self.drop_idle_networks(shard, now);
        removed
    }

    /// Sweeps every shard.
    pub(crate) fn sweep_all(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let removed = self.drop_idle(&mut shard.map.write(), now);
                self.drop_idle_networks(shard, now);
                removed
            })
            .sum()
    }

    /// Removes the keys of `map` (a shard under its write lock) that are
    /// idle at `now`.
    fn drop_idle(&self, map: &mut Map, now: u64) -> usize {
        let before = map.len();
        let mut gone = Vec::new();
        map.retain(|_, entry| {
            let keep = entry.tat.load(Ordering::Acquire) > now;
            if !keep && entry.network != 0 {
                gone.push(entry.network);
            }
            keep
        });
        let removed = before - map.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::AcqRel);
        }
        // Under the map's write lock, then each network's: the lock order.
        for network in gone {
            self.release_in_network(network, now);
        }
        if map.capacity() > 2 * KEYS_PER_SHARD && map.len() * 4 < map.capacity() {
            let keep = map.len() * 2;
            map.shrink_to(keep);
        }
        removed
    }

    /// At the cap: sweeps `shard` (whose write lock the caller holds as
    /// `map`) unless it was swept less than `reclaim_every` ago. Whether
    /// keys were dropped.
    fn reclaim(&self, shard: &Shard, map: &mut Map, now: u64) -> bool {
        let last = shard.reclaimed_at.load(Ordering::Relaxed);
        if now < last.saturating_add(self.reclaim_every) {
            return false;
        }
        // Under the write lock: no other thread updates this shard's stamp.
        shard.reclaimed_at.store(now, Ordering::Relaxed);
        self.reclaims.fetch_add(1, Ordering::Relaxed);
        self.drop_idle(map, now) > 0
    }

    /// Reserves a slot for a new key; `false` at the cap.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Reserves a slot for a new key of `shard`, sweeping the shard first
    /// at the cap (see [`Store::reclaim`]).
    fn make_room(&self, shard: &Shard, map: &mut Map, now: u64) -> bool {
        self.reserve() || (self.reclaim(shard, map, now) && self.reserve())
    }

    /// Counts a new key; every `sweep_every` of them a sweep is due if the
    /// store fills up or keys overflowed meanwhile (see the module docs).
    fn note_miss(&self) {
        let n = self.misses.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.sweep_every)
            && (self.len() >= self.sweep_from || self.pressure.swap(false, Ordering::AcqRel))
        {
            self.sweep_due.store(true, Ordering::Release);
        }
    }

    /// A key was measured against an overflow budget.
    fn note_overflow(&self) {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        if !self.pressure.load(Ordering::Relaxed) {
            self.pressure.store(true, Ordering::Release);
        }
    }

    /// Takes one unit of `key` (of the network `network()` gives, `0` for
    /// none; only asked for a key not tracked yet) at `now`, or says when
    /// one fits (`Err` carries that time). The hot path: a known key is one
    /// read lock and one compare-and-swap.
    #[inline]
    pub(crate) fn take(
        &self,
        key: u64,
        network: impl FnOnce() -> u64,
        now: u64,
    ) -> Result<(), u64> {
        if let Some(entry) = self.shard(key).map.read().get(&key) {
            return update(&entry.tat, |v| self.gcra.take(v, now));
        }
        self.take_new(key, network(), now)
    }

    #[cold]
    #[inline(never)]
    fn take_new(&self, key: u64, network: u64, now: u64) -> Result<(), u64> {
        let shard = self.shard(key);
        let mut map = shard.map.write();
        if let Some(entry) = map.get(&key) {
            // Inserted by another request since the read lock was released.
            return update(&entry.tat, |v| self.gcra.take(v, now));
        }
        self.note_miss();
        let slot = self.reserve_in_network(network);
        if slot != Slot::Full && self.make_room(shard, &mut map, now) {
            // A fresh key always has its whole burst.
            let tat = AtomicU64::new(self.gcra.record(0, now));
            let network = if slot == Slot::Reserved { network } else { 0 };
            map.insert(key, Entry { tat, network });
            return Ok(());
        }
        drop(map);
        let outcome = self.take_overflow(network, now);
        if slot == Slot::Reserved {
            self.release_in_network(network, now);
        }
        outcome
    }

    /// Holds one unit of `key` (of `network`) for an attempt whose outcome
    /// is not known yet: admitted while the attempts in flight plus this
    /// one fit in the budget. `Err` carries the earliest time one more
    /// would fit if the attempts in flight all failed.
    pub(crate) fn attempt(&self, key: u64, network: u64, now: u64) -> Result<Place, u64> {
        let shard = self.shard(key);
        {
            let map = shard.map.read();
            let entry = map.get(&key);
            if entry.is_some() {
                return self.hold(shard, key, entry, now);
            }
            if self.network_full(network) {
                drop(map);
                return self.hold_overflow(network, now);
            }
            if self.len() < self.max_keys {
                return self.hold(shard, key, entry, now);
            }
        }
        // Not tracked, at the cap: make room if the shard has idle keys.
        let mut map = shard.map.write();
        let room = map.contains_key(&key)
            || self.len() < self.max_keys
            || (self.reclaim(shard, &mut map, now) && self.len() < self.max_keys);
        if room {
            return self.hold(shard, key, map.get(&key), now);
        }
        drop(map);
        self.hold_overflow(network, now)
    }

    /// Holds a unit of `key`'s own budget; the caller holds a lock of the
    /// shard's map, so `entry` stays put.
    fn hold(&self, shard: &Shard, key: u64, entry: Option<&Entry>, now: u64) -> Result<Place, u64> {
        let fresh = AtomicU64::new(0);
        let tat = entry.map_or(&fresh, |e| &e.tat);
        let mut held = shard.held.lock();
        let count = held.entry(key).or_insert(0);
        let admitted = hold(self.gcra, tat, count, now);
        if *count == 0 {
            held.remove(&key);
        }
        admitted.map(|()| Place::Key)
    }

    /// Ends an attempt held at `place`: a failure is recorded in the budget
    /// at `now`, then the held unit is given back.
    pub(crate) fn settle(&self, key: u64, network: u64, place: Place, failed: bool, now: u64) {
        match (place, failed) {
            (Place::Overflow, _) => {
                let mut held = self.overflow.held.lock();
                if failed {
                    record(self.overflow.gcra, &self.overflow.tat, now);
                }
                *held = held.saturating_sub(1);
            }
            (Place::Network(network), _) => {
                let mut networks = self.networks(network);
                match networks.get_mut(&network) {
                    Some(n) => {
                        if failed {
                            n.tat = self.overflow.gcra.record(n.tat, now);
                        }
                        n.held = n.held.saturating_sub(1);
                    }
                    // Unreachable: a network holding attempts is kept.
                    // Fail closed anyway.
                    None if failed => {
                        drop(networks);
                        self.record_overflow(0, now);
                    }
                    None => {}
                }
            }
            (Place::Key, false) => release(&mut self.shard(key).held.lock(), key),
            (Place::Key, true) => self.record_failure(key, network, now),
        }
    }

    #[cold]
    fn record_failure(&self, key: u64, network: u64, now: u64) {
        let shard = self.shard(key);
        if let Some(entry) = shard.map.read().get(&key) {
            return self.record_held(shard, key, &entry.tat, now);
        }
        // A fresh key (or one swept since it was admitted): track it.
        let mut map = shard.map.write();
        if !map.contains_key(&key) {
            self.note_miss();
            let slot = self.reserve_in_network(network);
            if slot == Slot::Full || !self.make_room(shard, &mut map, now) {
                // The network or the cap filled up while the attempt ran:
                // the failure counts against the overflow budget.
                drop(map);
                self.record_overflow(network, now);
                if slot == Slot::Reserved {
                    self.release_in_network(network, now);
                }
                return release(&mut shard.held.lock(), key);
            }
            // No state yet; only seen under this write lock.
            let network = if slot == Slot::Reserved { network } else { 0 };
            map.insert(
                key,
                Entry {
                    tat: AtomicU64::new(0),
                    network,
                },
            );
        }
        if let Some(entry) = map.get(&key) {
            self.record_held(shard, key, &entry.tat, now);
        }
    }

    /// Records a failure of `key` in `tat` and gives back the unit it held,
    /// under the shard's held lock so that admissions see both at once.
    fn record_held(&self, shard: &Shard, key: u64, tat: &AtomicU64, now: u64) {
        let mut held = shard.held.lock();
        record(self.gcra, tat, now);
        release(&mut held, key);
    }

    /// The TAT that applies to `key` (of `network`) and its GCRA: its own,
    /// or an overflow state's when it is not tracked because its network
    /// or the store is full. `0` for a fresh key.
    pub(crate) fn state(&self, key: u64, network: u64) -> (u64, Gcra) {
        if let Some(entry) = self.shard(key).map.read().get(&key) {
            return (entry.tat.load(Ordering::Acquire), self.gcra);
        }
        let full = self.len() >= self.max_keys;
        if network != 0 {
            if let Some(n) = self.networks(network).get(&network) {
                if full || n.keys >= self.network_keys {
                    return (n.tat, self.overflow.gcra);
                }
            } else if full && self.networks_len() < self.max_networks {
                // Its overflow state would be made fresh.
                return (0, self.overflow.gcra);
            }
        }
        if full {
            return (
                self.overflow.tat.load(Ordering::Acquire),
                self.overflow.gcra,
            );
        }
        (0, self.gcra)
    }
}

/// Whether a network holds nothing: no key, no attempt, an idle overflow
/// budget.
fn is_idle(n: &Network, now: u64) -> bool {
    n.keys == 0 && n.held == 0 && n.tat <= now
}

/// Runs the decision `f` on `tat` and stores the new TAT with a
/// compare-and-swap, retrying when another request changed it meanwhile.
#[inline]
fn update(tat: &AtomicU64, f: impl Fn(u64) -> Result<u64, u64>) -> Result<(), u64> {
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let next = f(current)?;
        match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

/// Adds one held unit to `count` if it fits with the others in `tat`.
fn hold(gcra: Gcra, tat: &AtomicU64, count: &mut u32, now: u64) -> Result<(), u64> {
    gcra.fits(tat.load(Ordering::Acquire), now, *count)?;
    *count = count.saturating_add(1);
    Ok(())
}

/// Spends one unit of `tat` at `now`, whatever is left.
fn record(gcra: Gcra, tat: &AtomicU64, now: u64) {
    let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(gcra.record(v, now))
    });
}

/// Gives back one unit held by `key`. The map only holds keys with
/// attempts in flight; its memory goes back once a burst of them is over.
fn release(held: &mut Held, key: u64) {
    if let Some(count) = held.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            held.remove(&key);
            if held.is_empty() && held.capacity() > KEYS_PER_SHARD {
                held.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// 10 per 10 seconds (`t` = 1 s), overflow: 2 per 2 seconds.
    fn store(max_keys: usize) -> Store {
        let quota = Quota::new(10, Duration::from_secs(10)).unwrap();
        let overflow = Quota::new(2, Duration::from_secs(2)).unwrap();
        Store::new(
            Caps {
                max_keys,
                network_keys: max_keys,
                max_networks: max_keys,
            },
            quota,
            overflow,
        )
    }

    fn takes(store: &Store, key: u64, now: u64) -> usize {
        (0..100)
            .take_while(|_| store.take(key, || 0, now).is_ok())
            .count()
    }

    #[test]
    fn gcra_matches_governor_arithmetic() {
        let g = Gcra::new(Quota::new(3, Duration::from_secs(3)).unwrap());
        assert_eq!(g.take(0, 5 * S), Ok(6 * S));
        assert_eq!(g.take(6 * S, 5 * S), Ok(7 * S));
        assert_eq!(g.take(7 * S, 5 * S), Ok(8 * S));
        // tat - tau = 6 s > now: refused until then.
        assert_eq!(g.take(8 * S, 5 * S), Err(6 * S));
        // A TAT in the past is a full budget, like no state at all.
        assert_eq!(g.take(2 * S, 5 * S), g.take(0, 5 * S));
        assert_eq!(g.remaining(2 * S, 5 * S), (3, 0));
        assert_eq!(g.remaining(8 * S, 5 * S), (0, S));
        assert_eq!(g.remaining(7 * S, 5 * S + S / 2), (1, S / 2));
        // Two held units leave room for one more.
        assert_eq!(g.fits(0, 5 * S, 2), Ok(()));
        assert_eq!(g.fits(0, 5 * S, 3), Err(6 * S));
    }

    #[test]
    fn tracks_keys_up_to_the_cap_then_shares_the_overflow() {
        let store = store(3);
        for k in 0..3u64 {
            assert_eq!(store.take(k << 32, || 0, S), Ok(()));
        }
        assert_eq!(store.len(), 3);
        // More keys go to the overflow state, with its own quota (2).
        assert_eq!(takes(&store, 99, S), 2);
        assert_eq!(store.take(100, || 0, S), Err(2 * S));
        assert_eq!(store.len(), 3);
        assert_eq!(store.overflowed(), 4);
        // Tracked keys keep their own state.
        assert_eq!(store.state(0, 0), (2 * S, store.gcra));
        assert_eq!(store.state(99, 0), (3 * S, store.overflow.gcra));
    }

    #[test]
    fn sweep_removes_idle_keys_only_and_idle_means_tat_not_after_now() {
        let store = store(100);
        store.take(1, || 0, 0).unwrap(); // tat 1 s
        store.take(2, || 0, 5 * S).unwrap(); // tat 6 s
        assert_eq!(store.sweep_all(S - 1), 0);
        // At its TAT a key is idle: its state is the same as a fresh one.
        assert_eq!(store.sweep_all(S), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.state(1, 0), (0, store.gcra));
        assert_eq!(store.state(2, 0), (6 * S, store.gcra));
    }

    #[test]
    fn sweep_becomes_due_after_enough_new_keys() {
        let store = store(10);
        for k in 0..MIN_SWEEP_EVERY as u64 - 1 {
            let _ = store.take(k, || 0, 0);
        }
        assert!(!store.take_sweep_due());
        let _ = store.take(1000, || 0, 0);
        assert!(store.take_sweep_due());
        assert!(!store.take_sweep_due());
    }

    /// Below three quarters of the cap, without overflows, idle keys are
    /// kept: a client coming back is still tracked. From there on, or
    /// once a key overflowed, sweeps are due again.
    #[test]
    fn sweeps_start_at_three_quarters_of_the_cap_or_on_overflow() {
        let store = store(64);
        let every = store.sweep_every as u64;
        assert_eq!(every, 64);
        // 64 new keys, but the store never holds more than 40: not due.
        for k in 0..40 {
            store.take(k, || 0, 0).unwrap();
        }
        assert_eq!(store.sweep_all(10 * S), 40);
        for k in 40..64 {
            store.take(k, || 0, 10 * S).unwrap();
        }
        assert_eq!(store.len(), 24);
        assert!(!store.take_sweep_due());
        // 64 more: at the 128th the store holds 64 keys (>= 48): due.
        store.sweep_all(20 * S);
        for k in 64..128 {
            store.take(k, || 0, 20 * S).unwrap();
        }
        assert_eq!(store.len(), 64);
        assert!(store.take_sweep_due());

        // Few keys, but one overflows in a full network.
        let quota = Quota::new(10, Duration::from_secs(10)).unwrap();
        let caps = Caps {
            max_keys: 64,
            network_keys: 1,
            max_networks: 64,
        };
        let store = Store::new(caps, quota, quota);
        let net = 7 << 32;
        store.take(1, || net, 0).unwrap();
        // 20 more keys of the full network overflow (into its budget).
        for k in 2..22 {
            let _ = store.take(k, || net, 0);
        }
        assert_eq!(store.overflowed(), 20);
        for k in 22..every {
            store.take(k << 32, || 0, 0).unwrap();
            assert!(!store.take_sweep_due());
        }
        assert!(store.len() < 48);
        store.take(every << 32, || 0, 0).unwrap(); // the 64th new key
        assert!(store.take_sweep_due(), "the overflows make a sweep due");
    }

    /// At the cap, a new key sweeps its shard before it overflows, so a cap
    /// full of idle keys frees up at once; without idle keys the sweep is
    /// not repeated within `reclaim_every` (1 s here).
    #[test]
    fn a_new_key_at_a_full_cap_reclaims_idle_keys_once_per_interval() {
        let store = store(4);
        for k in 0..4 {
            for _ in 0..5 {
                store.take(k, || 0, 0).unwrap(); // tat 5 s
            }
        }
        // All busy: the sweep finds nothing, the new key overflows.
        assert_eq!(store.take(10, || 0, 1_500_000_000), Ok(()));
        assert_eq!((store.reclaims(), store.overflowed()), (1, 1));
        assert_eq!(store.take(11, || 0, 2 * S), Ok(()));
        assert_eq!(store.reclaims(), 1, "swept again within the interval");
        // Idle from 5 s on: the next new key is tracked at once.
        assert_eq!(store.take(12, || 0, 5 * S), Ok(()));
        assert_eq!((store.reclaims(), store.overflowed()), (2, 2));
        assert_eq!(store.len(), 1);
        assert_eq!(store.state(12, 0), (6 * S, store.gcra));
    }

    #[test]
    fn attempts_hold_units_until_settled() {
        let store = store(10);
        let places: Vec<_> = (0..11).map(|_| store.attempt(7, 0, 0)).collect();
        assert!(places[..10].iter().all(|p| *p == Ok(Place::Key)));
        assert_eq!(places[10], Err(S));
        // Nothing is recorded while they run, and the key is not tracked.
        assert_eq!(store.state(7, 0), (0, store.gcra));
        assert_eq!(store.len(), 0);
        for _ in 0..9 {
            store.settle(7, 0, Place::Key, false, 0);
        }
        store.settle(7, 0, Place::Key, true, 0);
        assert_eq!(store.state(7, 0), (S, store.gcra));
        assert_eq!(store.len(), 1);
        assert!(store.shard(7).held.lock().is_empty());
        // Nine units are back; the failure counts.
        let more: Vec<_> = (0..10).map(|_| store.attempt(7, 0, 0).is_ok()).collect();
        assert_eq!(more.iter().filter(|ok| **ok).count(), 9);
    }

    #[test]
    fn attempts_at_the_cap_hold_and_record_in_the_overflow() {
        let store = store(1);
        store.take(1, || 0, 0).unwrap();
        assert_eq!(store.attempt(2, 0, 0), Ok(Place::Overflow));
        assert_eq!(store.attempt(3, 0, 0), Ok(Place::Overflow));
        assert_eq!(store.attempt(4, 0, 0), Err(S));
        store.settle(2, 0, Place::Overflow, false, 0);
        store.settle(3, 0, Place::Overflow, true, 0);
        assert_eq!(store.state(4, 0), (S, store.overflow.gcra));
        assert_eq!(*store.overflow.held.lock(), 0);
        assert_eq!(store.attempt(4, 0, 0), Ok(Place::Overflow));
        assert_eq!(store.attempt(5, 0, 0), Err(S));
    }

    #[test]
    fn a_failure_of_a_key_admitted_below_the_cap_goes_to_the_overflow_once_full() {
        let store = store(1);
        assert_eq!(store.attempt(2, 0, 0), Ok(Place::Key));
        store.take(1, || 0, 0).unwrap(); // fills the cap meanwhile
        store.settle(2, 0, Place::Key, true, 0);
        assert_eq!(store.len(), 1);
        assert_eq!(store.overflow.tat.load(Ordering::Relaxed), S);
        assert!(store.shard(2).held.lock().is_empty());
    }

    /// A network holds at most `network_keys` keys, then its own overflow
    /// budget, for checks and for attempts alike; other networks and keys
    /// without a network are not affected.
    #[test]
    fn a_full_network_overflows_into_its_own_budget() {
        let quota = Quota::new(10, Duration::from_secs(10)).unwrap();
        let overflow = Quota::new(2, Duration::from_secs(2)).unwrap();
        let caps = Caps {
            max_keys: 100,
            network_keys: 2,
            max_networks: 100,
        };
        let store = Store::new(caps, quota, overflow);
        let (net, other) = (7 << 32, 8 << 32);
        assert_eq!(store.take(1, || net, 0), Ok(()));
        assert_eq!(store.take(2, || net, 0), Ok(()));
        // Full: new keys of `net` share its overflow budget of 2.
        assert_eq!(store.take(3, || net, 0), Ok(()));
        assert_eq!(store.take(4, || net, 0), Ok(()));
        assert_eq!(store.take(5, || net, 0), Err(S));
        assert_eq!(store.state(6, net), (2 * S, store.overflow.gcra));
        assert_eq!(store.attempt(6, net, 0), Err(S));
        // Another network, and keys without one, keep their own budgets.
        assert_eq!(takes(&store, 10, 0), 10);
        assert_eq!(store.take(11, || other, 0), Ok(()));
        assert_eq!(store.len(), 4);
        assert_eq!(store.networks_len(), 2);
        assert_eq!(store.overflow.tat.load(Ordering::Relaxed), 0);

        // Attempts hold units of the network's budget, kept while held.
        let later = 10 * S;
        assert_eq!(store.sweep_all(later), 4);
        assert_eq!(store.networks_len(), 0);
        store.take(1, || net, later).unwrap();
        store.take(2, || net, later).unwrap();
        let place = store.attempt(3, net, later);
        assert_eq!(place, Ok(Place::Network(net)));
        assert_eq!(store.attempt(4, net, later), Ok(Place::Network(net)));
        assert_eq!(store.attempt(5, net, later), Err(later + S));
        store.sweep_all(20 * S);
        assert_eq!(store.networks_len(), 1, "dropped while attempts held it");
        store.settle(3, net, Place::Network(net), true, 20 * S);
        store.settle(4, net, Place::Network(net), false, 20 * S);
        assert_eq!(store.state(5, net), (0, store.gcra));
        store.sweep_all(21 * S);
        assert_eq!(store.networks_len(), 0);
        assert_eq!(store.counted(), (0, 0));
    }
}
