//! Session stores: the [`SessionStore`] trait and [`MemorySessionStore`].

use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::handle::SessionData;
use super::id::StoreKey;
use crate::error::BoxError;

/// A source of the current time. [`SystemClock`] unless you inject another
/// one, e.g. to test timeouts without sleeping.
///
/// Implemented for closures `Fn() -> SystemTime`.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// What a store keeps of one session, filed under its [`StoreKey`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's values.
    pub data: SessionData,
    /// When the session (its current id) was created: the absolute timeout
    /// counts from here.
    pub created_at: SystemTime,
    /// When the session was last saved or refreshed: the idle timeout counts
    /// from here.
    pub last_active: SystemTime,
    /// When the record expires: the earlier of the idle and the absolute
    /// deadline. Stores may drop the record from then on (a TTL); the
    /// [`SessionLayer`](super::SessionLayer) refuses it from then on whatever
    /// the store does.
    pub expires_at: SystemTime,
}

impl SessionRecord {
    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (CSRF tokens, user data): keys only.
        let mut keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        f.debug_struct("SessionRecord")
            .field("keys", &keys)
            .field("created_at", &self.created_at)
            .field("last_active", &self.last_active)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where sessions live: Redis, a database table, or [`MemorySessionStore`].
///
/// Stores file records under a [`StoreKey`] (a digest of the session id) and
/// never see session ids. Errors fail the request closed with `503`.
pub trait SessionStore: Send + Sync + 'static {
    /// The record filed under `key`, if any. A store may return an expired
    /// record; the layer refuses and deletes it.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn load(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send;

    /// Files `record` under `key`, replacing any record there. Called for new
    /// session ids. Stores with a TTL should use `record.expires_at`.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn save(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Replaces the record filed under `key` only if one is there, and says
    /// whether it was. Called for existing sessions, so that a request still
    /// running when the session is destroyed (logout in another tab) cannot
    /// bring it back.
    ///
    /// The default implementation loads, then saves; stores that can should
    /// do it atomically (Redis `SET ... XX`, SQL `UPDATE`).
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        async move {
            if self.load(key).await?.is_none() {
                return Ok(false);
            }
            self.save(key, record).await?;
            Ok(true)
        }
    }

    /// Deletes the record filed under `key`; deleting a missing record is
    /// not an error.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<S: SessionStore> SessionStore for Arc<S> {
    fn load(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
        (**self).load(key)
    }

    fn save(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).save(key, record)
    }

    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        (**self).update(key, record)
    }

    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).delete(key)
    }
}

/// The [`MemorySessionStore`] is full: [`max_sessions`](MemorySessionStore::max_sessions)
/// live sessions are stored.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory session store is full")]
pub struct StoreFull;

/// Fewest writes between two automatic purges of expired records.
const MIN_PURGE_INTERVAL: usize = 64;

/// An in-memory [`SessionStore`] for one process: sessions are lost when it
/// stops and are not shared between replicas. Cloning shares the sessions.
///
/// Expired records are never returned and are purged as requests go: a
/// lookup removes the expired record it finds, and a sweep over all records
/// runs once the number of writes since the last sweep reaches the number of
/// records then left (at least 64), so purging costs O(1) amortized per
/// write. [`purge_expired`](MemorySessionStore::purge_expired) sweeps on
/// demand, e.g. from a timer. [`max_sessions`](MemorySessionStore::max_sessions)
/// caps the number of live sessions.
///
/// ```
/// use std::time::Duration;
/// use tower_auth::session::MemorySessionStore;
///
/// let store = MemorySessionStore::new().max_sessions(100_000);
/// assert!(store.is_empty());
/// assert_eq!(store.purge_expired(), 0);
/// ```
#[derive(Clone)]
pub struct MemorySessionStore {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    max_sessions: Option<usize>,
}

#[derive(Default)]
struct Shared {
    records: RwLock<HashMap<StoreKey, SessionRecord>>,
    writes_since_purge: AtomicUsize,
    left_after_purge: AtomicUsize,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore {
            shared: Arc::default(),
            clock: Arc::new(SystemClock),
            max_sessions: None,
        }
    }
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("len", &self.len())
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

type Records = HashMap<StoreKey, SessionRecord>;

impl MemorySessionStore {
    /// An empty store without a cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses new sessions (the request gets `503`) while `max` live
    /// sessions are stored, so that memory stays bounded even if an
    /// application creates sessions for anonymous visitors. Existing sessions
    /// keep working.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Uses `clock` to decide expiry (tests inject a manual clock; give the
    /// [`SessionLayer`](super::SessionLayer) the same one).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.shared
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every expired record and returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut records = self.write();
        self.purge_locked(&mut records, now)
    }

    fn purge_locked(&self, records: &mut Records, now: SystemTime) -> usize {
        let before = records.len();
        records.retain(|_, r| !r.is_expired(now));
        self.shared.writes_since_purge.store(0, Ordering::Relaxed);
        self.shared
            .left_after_purge
            .store(records.len(), Ordering::Relaxed);
        before - records.len()
    }

    /// Counts a write and sweeps when enough writes have happened.
    fn after_write(&self, records: &mut Records, now: SystemTime) {
        let writes = self
            .shared
            .writes_since_purge
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let threshold = self
            .shared
            .left_after_purge
            .load(Ordering::Relaxed)
            .max(MIN_PURGE_INTERVAL);
        if writes >= threshold {
            self.purge_locked(records, now);
        }
    }

    /// The number of records, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.shared
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of the stored records (digests, never session ids), e.g. to
    /// audit what the store holds.
    pub fn keys(&self) -> Vec<StoreKey> {
        self.shared
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// The record filed under `key`, expired or not, without side effects.
    pub fn get(&self, key: &StoreKey) -> Option<SessionRecord> {
        self.shared
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn load_now(&self, key: &StoreKey) -> Option<SessionRecord> {
        let now = self.clock.now();
        {
            let records = self
                .shared
                .records
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match records.get(key) {
                None => return None,
                Some(r) if !r.is_expired(now) => return Some(r.clone()),
                Some(_) => {}
            }
        }
        let mut records = self.write();
        if records.get(key).is_some_and(|r| r.is_expired(now)) {
            records.remove(key);
        }
        None
    }

    fn save_now(&self, key: &StoreKey, record: &SessionRecord) -> Result<(), StoreFull> {
        let now = self.clock.now();
        let mut records = self.write();
        if let Some(max) = self.max_sessions {
            if !records.contains_key(key) && records.len() >= max {
                self.purge_locked(&mut records, now);
                if records.len() >= max {
                    return Err(StoreFull);
                }
            }
        }
        records.insert(*key, record.clone());
        self.after_write(&mut records, now);
        Ok(())
    }

    fn update_now(&self, key: &StoreKey, record: &SessionRecord) -> bool {
        let now = self.clock.now();
        let mut records = self.write();
        let updated = match records.get_mut(key) {
            Some(r) if !r.is_expired(now) => {
                r.clone_from(record);
                true
            }
            Some(_) => {
                records.remove(key);
                false
            }
            None => false,
        };
        if updated {
            self.after_write(&mut records, now);
        }
        updated
    }
}

impl SessionStore for MemorySessionStore {
    fn load(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
        ready(Ok(self.load_now(key)))
    }

    fn save(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        ready(self.save_now(key, record).map_err(BoxError::from))
    }

    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        ready(Ok(self.update_now(key, record)))
    }

    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), BoxError>> + Send {
        self.write().remove(key);
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    fn clock() -> (Arc<Mutex<SystemTime>>, impl Clock) {
        let now = Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        ));
        let c = Arc::clone(&now);
        (now, move || *c.lock().unwrap())
    }

    fn record(now: SystemTime, ttl: u64) -> SessionRecord {
        SessionRecord {
            data: SessionData::from([("k".into(), serde_json::Value::from(1))]),
            created_at: now,
            last_active: now,
            expires_at: now + Duration::from_secs(ttl),
        }
    }

    fn key(n: u8) -> StoreKey {
        StoreKey::from_bytes([n; 32])
    }

    #[test]
    fn save_load_update_delete() {
        let store = MemorySessionStore::new();
        let now = SystemTime::now();
        assert!(store
            .load(&key(1))
            .now_or_never()
            .unwrap()
            .unwrap()
            .is_none());
        assert!(!store
            .update(&key(1), &record(now, 60))
            .now_or_never()
            .unwrap()
            .unwrap());
        store
            .save(&key(1), &record(now, 60))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(
            store.load(&key(1)).now_or_never().unwrap().unwrap(),
            Some(record(now, 60))
        );
        assert!(store
            .update(&key(1), &record(now, 90))
            .now_or_never()
            .unwrap()
            .unwrap());
        assert_eq!(store.get(&key(1)), Some(record(now, 90)));
        store.delete(&key(1)).now_or_never().unwrap().unwrap();
        assert!(store.is_empty());
        // deleting again is fine
        store.delete(&key(1)).now_or_never().unwrap().unwrap();
    }

    #[test]
    fn expired_records_are_never_returned_and_are_removed() {
        let (now, c) = clock();
        let store = MemorySessionStore::new().clock(c);
        let t0 = *now.lock().unwrap();
        store
            .save(&key(1), &record(t0, 10))
            .now_or_never()
            .unwrap()
            .unwrap();
        *now.lock().unwrap() = t0 + Duration::from_secs(10);
        assert!(store
            .load(&key(1))
            .now_or_never()
            .unwrap()
            .unwrap()
            .is_none());
        assert!(store.is_empty());
        store
            .save(&key(2), &record(t0, 10))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert!(!store
            .update(&key(2), &record(t0, 60))
            .now_or_never()
            .unwrap()
            .unwrap());
        assert!(store.is_empty());
    }

    #[test]
    fn purge_expired_sweeps() {
        let (now, c) = clock();
        let store = MemorySessionStore::new().clock(c);
        let t0 = *now.lock().unwrap();
        for n in 0..10 {
            store
                .save(&key(n), &record(t0, u64::from(n) + 1))
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        *now.lock().unwrap() = t0 + Duration::from_secs(5);
        assert_eq!(store.purge_expired(), 5);
        assert_eq!(store.len(), 5);
    }

    #[test]
    fn writes_purge_automatically_so_memory_stays_bounded() {
        let (now, c) = clock();
        let store = MemorySessionStore::new().clock(c);
        let t0 = *now.lock().unwrap();
        for i in 0..10_000u32 {
            *now.lock().unwrap() = t0 + Duration::from_secs(u64::from(i));
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            let rec = record(*now.lock().unwrap(), 100);
            store
                .save(&StoreKey::from_bytes(k), &rec)
                .now_or_never()
                .unwrap()
                .unwrap();
            // never more than live records + one sweep interval
            assert!(
                store.len() <= 100 + MIN_PURGE_INTERVAL.max(200),
                "{}",
                store.len()
            );
        }
    }

    #[test]
    fn max_sessions_refuses_new_sessions_but_not_existing_ones() {
        let (now, c) = clock();
        let store = MemorySessionStore::new().clock(c).max_sessions(2);
        let t0 = *now.lock().unwrap();
        store
            .save(&key(1), &record(t0, 10))
            .now_or_never()
            .unwrap()
            .unwrap();
        store
            .save(&key(2), &record(t0, 100))
            .now_or_never()
            .unwrap()
            .unwrap();
        let err = store.save(&key(3), &record(t0, 10)).now_or_never().unwrap();
        assert!(err.unwrap_err().is::<StoreFull>());
        store
            .save(&key(2), &record(t0, 50))
            .now_or_never()
            .unwrap()
            .unwrap();
        // once one expires, there is room again
        *now.lock().unwrap() = t0 + Duration::from_secs(10);
        store
            .save(&key(3), &record(t0, 100))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn record_debug_hides_values() {
        let mut r = record(SystemTime::now(), 1);
        r.data.insert("csrf".into(), "s3cr3t".into());
        let text = format!("{r:?}");
        assert!(text.contains("csrf") && !text.contains("s3cr3t"));
    }

    /// A store that only implements the required methods gets a working
    /// `update`.
    struct Minimal(MemorySessionStore);

    impl SessionStore for Minimal {
        fn load(
            &self,
            key: &StoreKey,
        ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
            self.0.load(key)
        }
        fn save(
            &self,
            key: &StoreKey,
            record: &SessionRecord,
        ) -> impl Future<Output = Result<(), BoxError>> + Send {
            self.0.save(key, record)
        }
        fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<(), BoxError>> + Send {
            self.0.delete(key)
        }
    }

    #[test]
    fn default_update_only_replaces_existing_records() {
        let store = Arc::new(Minimal(MemorySessionStore::new()));
        let now = SystemTime::now();
        assert!(!store
            .update(&key(1), &record(now, 5))
            .now_or_never()
            .unwrap()
            .unwrap());
        assert!(store.0.is_empty());
        store
            .save(&key(1), &record(now, 5))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert!(store
            .update(&key(1), &record(now, 6))
            .now_or_never()
            .unwrap()
            .unwrap());
        assert_eq!(store.0.get(&key(1)), Some(record(now, 6)));
    }
}
