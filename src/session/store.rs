//! Session stores: the [`SessionStore`] trait and [`MemorySessionStore`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::{ready, Future};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
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
    /// When the session was created: the absolute timeout counts from here.
    /// [`Session::cycle_id`](super::Session::cycle_id) keeps it; a login
    /// starts a new session and a new creation time.
    pub created_at: SystemTime,
    /// When the session was last saved or refreshed: the idle timeout counts
    /// from here.
    pub last_active: SystemTime,
    /// When the record expires: the earlier of the idle and the absolute
    /// deadline. Stores may drop the record from then on (a TTL); the
    /// [`SessionLayer`](super::SessionLayer) refuses it from then on whatever
    /// the store does.
    pub expires_at: SystemTime,
    /// The version of [`data`](SessionRecord::data): `0` for a new record,
    /// one more on every [`update`](SessionStore::update). Stores keep it as
    /// given and compare it in `update` (a compare-and-swap); a
    /// [`touch`](SessionStore::touch) does not change it. Records stored by
    /// earlier releases, without it, read as version `0`.
    #[serde(default)]
    pub version: u64,
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
            .field("version", &self.version)
            .finish()
    }
}

/// What a conditional [`SessionStore::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateOutcome {
    /// The stored version was the expected one: the record was replaced.
    Updated,
    /// A live record is there, but another request changed it since it was
    /// loaded (its version differs): nothing was written.
    Conflict,
    /// No live record is there (destroyed by a logout, expired): nothing was
    /// written, and the record must not be recreated.
    Gone,
}

/// Where sessions live: Redis, a database table, or [`MemorySessionStore`].
///
/// Stores file records under a [`StoreKey`] (a digest of the session id) and
/// never see session ids. Errors fail the request closed with `503` (see
/// the [module docs](super#store-errors) for errors after the handler ran).
///
/// # Concurrency contract
///
/// Requests on one session run concurrently, so every method but `load` is
/// one atomic step of the backend, never a load followed by a write:
///
/// * [`update`](SessionStore::update) is a compare-and-swap on
///   [`SessionRecord::version`]: it replaces the record only if the stored
///   version is the expected one, and answers [`UpdateOutcome::Conflict`]
///   when another request changed the record meanwhile, or
///   [`UpdateOutcome::Gone`] when there is no live record. Redis: a Lua
///   script (`EVAL`) or `WATCH`/`MULTI`/`EXEC` comparing a `version` field;
///   SQL: `UPDATE sessions SET ..., version = ? WHERE key = ? AND version = ?
///   AND expires_at > now()`, then, when no row changed, a `SELECT` of the
///   key tells `Conflict` from `Gone` (a row may vanish in between: either
///   answer is safe, as neither writes).
/// * [`touch`](SessionStore::touch) moves the expiry of a live record and
///   nothing else (Redis: a Lua script setting the two fields and
///   `PEXPIREAT`, guarded by `EXISTS`; SQL: `UPDATE ... SET last_active,
///   expires_at WHERE key = ?`). It never creates a record.
/// * [`delete`](SessionStore::delete) answers from the removal itself.
///
/// With these, a request that only read its session pushes the expiry back
/// without writing its stale copy of the data, so a concurrent logout stays
/// a logout and a concurrent role change stays; a request that changed its
/// session and lost the race reloads the record and applies its own
/// changes again on top (the [`SessionLayer`](super::SessionLayer) does it,
/// a few times at most); a destroyed session is never recreated.
///
/// ```
/// use std::collections::HashMap;
/// use std::future::{ready, Future};
/// use std::sync::Mutex;
/// use std::time::SystemTime;
/// use tower_auth::session::{SessionRecord, SessionStore, StoreKey, UpdateOutcome};
/// use tower_auth::BoxError;
///
/// /// Sessions in a map behind one lock: every method is one step under it.
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<StoreKey, SessionRecord>>);
///
/// impl SessionStore for MapStore {
///     fn load(&self, key: &StoreKey)
///         -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
///         ready(Ok(self.0.lock().unwrap().get(key).cloned()))
///     }
///     fn save(&self, key: &StoreKey, record: &SessionRecord)
///         -> impl Future<Output = Result<(), BoxError>> + Send {
///         self.0.lock().unwrap().insert(*key, record.clone());
///         ready(Ok(()))
///     }
///     fn update(&self, key: &StoreKey, record: &SessionRecord, expected_version: u64)
///         -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send {
///         let mut map = self.0.lock().unwrap();
///         let outcome = match map.get_mut(key) {
///             None => UpdateOutcome::Gone,
///             Some(r) if r.is_expired(SystemTime::now()) => UpdateOutcome::Gone,
///             Some(r) if r.version != expected_version => UpdateOutcome::Conflict,
///             Some(r) => {
///                 *r = record.clone();
///                 UpdateOutcome::Updated
///             }
///         };
///         ready(Ok(outcome))
///     }
///     fn touch(&self, key: &StoreKey, last_active: SystemTime, expires_at: SystemTime)
///         -> impl Future<Output = Result<bool, BoxError>> + Send {
///         let mut map = self.0.lock().unwrap();
///         let found = map.get_mut(key).map(|r| {
///             r.last_active = r.last_active.max(last_active);
///             r.expires_at = r.expires_at.max(expires_at);
///         });
///         ready(Ok(found.is_some()))
///     }
///     fn delete(&self, key: &StoreKey)
///         -> impl Future<Output = Result<bool, BoxError>> + Send {
///         ready(Ok(self.0.lock().unwrap().remove(key).is_some()))
///     }
/// }
/// # let _ = MapStore::default();
/// ```
///
/// There is no default `update`, `touch` or `delete` to forget:
///
/// ```compile_fail,E0046
/// # use std::future::{ready, Future};
/// # use tower_auth::session::{SessionRecord, SessionStore, StoreKey};
/// # use tower_auth::BoxError;
/// struct LoadSaveDelete;
///
/// impl SessionStore for LoadSaveDelete {
///     fn load(&self, _: &StoreKey)
///         -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
///         ready(Ok(None))
///     }
///     fn save(&self, _: &StoreKey, _: &SessionRecord)
///         -> impl Future<Output = Result<(), BoxError>> + Send {
///         ready(Ok(()))
///     }
///     fn delete(&self, _: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send {
///         ready(Ok(false))
///     }
/// }
/// ```
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
    /// session ids (random, so nothing is there). Stores with a TTL should
    /// use `record.expires_at`.
    ///
    /// # Errors
    ///
    /// A backend failure, no room for a new session, a record too large.
    fn save(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Replaces the record filed under `key` with `record` only if a live
    /// record is there **and** its [`version`](SessionRecord::version) is
    /// `expected_version` (the version the request loaded). `record`
    /// carries the new version (`expected_version + 1`); store it as given.
    ///
    /// **Atomicity contract:** the check and the write are one step of the
    /// backend (see the [trait docs](SessionStore#concurrency-contract)).
    /// A store may treat a record past its `expires_at` as absent.
    ///
    /// # Errors
    ///
    /// A backend failure, a record too large.
    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send;

    /// Moves the idle deadline of the live record filed under `key`: sets
    /// its `last_active` and `expires_at` (a store should keep the later of
    /// the stored and the given values) and leaves its data and version
    /// alone. Says whether a live record was there; **never creates one**,
    /// so that a refresh racing a logout cannot bring the session back.
    /// Stores with a TTL move it to `expires_at`.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn touch(
        &self,
        key: &StoreKey,
        last_active: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Deletes the record filed under `key` and says whether one was there;
    /// deleting a missing record is not an error.
    ///
    /// **Atomicity contract:** the answer must come from the removal itself
    /// (Redis `DEL`'s count, SQL `DELETE`'s affected rows, the removed map
    /// entry), so that of several concurrent deletes of one record at most
    /// one answers `true`. The layer relies on it for
    /// [`Session::cycle_id`](super::Session::cycle_id): the data moves to
    /// the new id only if the old record was still there. A store may answer
    /// `false` for a record past its `expires_at`.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send;
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
        expected_version: u64,
    ) -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send {
        (**self).update(key, record, expected_version)
    }

    fn touch(
        &self,
        key: &StoreKey,
        last_active: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        (**self).touch(key, last_active, expires_at)
    }

    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send {
        (**self).delete(key)
    }
}

/// The [`MemorySessionStore`] is full: [`max_sessions`](MemorySessionStore::max_sessions)
/// live sessions are stored and none of them is anonymous (all have a user
/// under the [`evict_anonymous`](MemorySessionStore::evict_anonymous) key).
#[derive(Debug, thiserror::Error)]
#[error("the in-memory session store is full")]
pub struct StoreFull;

/// A record is larger than the [`MemorySessionStore`]'s
/// [`max_record_bytes`](MemorySessionStore::max_record_bytes) once
/// serialized: it is not stored (the size is in the error, never the data).
#[derive(Debug, thiserror::Error)]
#[error("a session record of {size} bytes exceeds the limit of {max} bytes")]
pub struct RecordTooLarge {
    /// The serialized size of the session's data, in bytes.
    pub size: usize,
    /// The limit.
    pub max: usize,
}

/// The default cap of a [`MemorySessionStore`]: 100 000 records.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// The default size cap of one [`MemorySessionStore`] record: 64 KiB of
/// data serialized as JSON.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// The default session key that marks a signed-in user for
/// [`MemorySessionStore::evict_anonymous`]: `"user"`.
pub const DEFAULT_USER_KEY: &str = "user";

/// An in-memory [`SessionStore`] for one process: sessions are lost when it
/// stops and are not shared between replicas. Cloning shares the sessions.
///
/// Expired records are never returned and are purged as requests go: the
/// store keeps its records ordered by expiry, and every write first removes
/// the records whose deadline has passed. Purging costs O(log n) per expired
/// record, whatever the number of live ones, so a full store refuses a new
/// session in O(log n) too. [`purge_expired`](MemorySessionStore::purge_expired)
/// purges on demand, e.g. from a timer.
///
/// # Memory bound
///
/// The store is bounded by default: at most
/// [`DEFAULT_MAX_SESSIONS`] (100 000) records
/// ([`max_sessions`](MemorySessionStore::max_sessions)) of at most
/// [`DEFAULT_MAX_RECORD_BYTES`] (64 KiB) of JSON data each
/// ([`max_record_bytes`](MemorySessionStore::max_record_bytes)). When a new
/// session does not fit, expired records are purged first; then the
/// anonymous session (one without a value under the
/// [`evict_anonymous`](MemorySessionStore::evict_anonymous) key, `"user"`
/// by default) that expires soonest is evicted; if every stored session has
/// a user, the new session is refused. So a flood of anonymous page views
/// (every [`csrf_token`](super::csrf_token) stores a session) churns
/// anonymous sessions but never signs anyone out. Updates of existing
/// sessions are never refused for room.
///
/// A refused or oversized write is a store error ([`StoreFull`],
/// [`RecordTooLarge`]): a new session fails with `503`; a change to an
/// existing one is handled as the layer handles failed saves after the
/// handler ran (see the [module docs](super#store-errors)).
///
/// ```
/// use tower_auth::session::MemorySessionStore;
///
/// let store = MemorySessionStore::new()
///     .max_sessions(10_000)
///     .max_record_bytes(16 * 1024)
///     .evict_anonymous("account");
/// assert!(store.is_empty());
/// assert_eq!(store.purge_expired(), 0);
/// ```
#[derive(Clone)]
pub struct MemorySessionStore {
    shared: Arc<RwLock<Records>>,
    clock: Arc<dyn Clock>,
    max_sessions: usize,
    max_record_bytes: usize,
}

/// The records, indexed by expiry.
struct Records {
    map: HashMap<StoreKey, SessionRecord>,
    /// `(expires_at, key)` of every record, soonest first.
    deadlines: BTreeSet<(SystemTime, StoreKey)>,
    /// With [`MemorySessionStore::evict_anonymous`]: the session key of the
    /// user, and `(expires_at, key)` of the records without it.
    anonymous: Option<(String, BTreeSet<(SystemTime, StoreKey)>)>,
    /// Index entries looked at by purges and evictions (tests check that a
    /// flood at the cap stays cheap).
    #[cfg(test)]
    visited: usize,
}

impl Default for Records {
    fn default() -> Self {
        Records {
            map: HashMap::new(),
            deadlines: BTreeSet::new(),
            anonymous: Some((DEFAULT_USER_KEY.to_owned(), BTreeSet::new())),
            #[cfg(test)]
            visited: 0,
        }
    }
}

impl Records {
    fn insert(&mut self, key: StoreKey, record: SessionRecord) {
        self.remove(&key);
        self.deadlines.insert((record.expires_at, key));
        if let Some((user_key, index)) = &mut self.anonymous {
            if !record.data.contains_key(user_key.as_str()) {
                index.insert((record.expires_at, key));
            }
        }
        self.map.insert(key, record);
    }

    fn remove(&mut self, key: &StoreKey) -> Option<SessionRecord> {
        let old = self.map.remove(key)?;
        let entry = (old.expires_at, *key);
        self.deadlines.remove(&entry);
        if let Some((_, index)) = &mut self.anonymous {
            index.remove(&entry);
        }
        Some(old)
    }

    /// Removes the records expired at `now`, soonest first.
    fn purge(&mut self, now: SystemTime) -> usize {
        let mut purged = 0;
        while let Some(&(deadline, key)) = self.deadlines.first() {
            #[cfg(test)]
            {
                self.visited += 1;
            }
            if deadline > now {
                break;
            }
            // Pop the entry itself, so that the loop always advances.
            self.deadlines.pop_first();
            if self.map.get(&key).is_some_and(|r| r.expires_at == deadline) {
                self.remove(&key);
                purged += 1;
            }
        }
        purged
    }

    /// Evicts the anonymous record that expires soonest; `false` when the
    /// policy is off or there is none.
    fn evict_anonymous(&mut self) -> bool {
        #[cfg(test)]
        {
            self.visited += 1;
        }
        let Some((_, index)) = &mut self.anonymous else {
            return false;
        };
        let Some((deadline, key)) = index.pop_first() else {
            return false;
        };
        if self.map.get(&key).is_some_and(|r| r.expires_at == deadline) {
            self.remove(&key);
        }
        true
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore {
            shared: Arc::default(),
            clock: Arc::new(SystemClock),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("len", &self.len())
            .field("max_sessions", &self.max_sessions)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl MemorySessionStore {
    /// An empty store with the default caps: [`DEFAULT_MAX_SESSIONS`]
    /// records of [`DEFAULT_MAX_RECORD_BYTES`] each, anonymous sessions
    /// (no `"user"`) evicted first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps the store at `max` records (default [`DEFAULT_MAX_SESSIONS`]).
    /// A new session that does not fit once expired records are purged
    /// evicts the anonymous session that expires soonest, or is refused
    /// (`503`) when every session has a user. Existing sessions keep
    /// working. `usize::MAX` lifts the cap (memory then grows with the
    /// number of live sessions, which any visitor can raise).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// Caps the size of one record's data, serialized as JSON, at `max`
    /// bytes (default [`DEFAULT_MAX_RECORD_BYTES`]). A larger save or update
    /// fails with [`RecordTooLarge`] and stores nothing.
    pub fn max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// Names the session key that marks a signed-in user (default
    /// [`DEFAULT_USER_KEY`], `"user"`; use the
    /// [`SessionAuthenticator`](super::SessionAuthenticator)'s key). When
    /// the store is full, a new session evicts the session that expires
    /// soonest among those holding no value under `user_key`. Sessions with
    /// a user are never evicted: a flood of anonymous sessions churns
    /// anonymous sessions (visitors' carts, the flood's own) but cannot log
    /// anyone out, and logins keep working.
    ///
    /// The policy belongs to the shared records: it applies to every clone
    /// of this store. Call it before the store holds many records (it
    /// indexes the existing ones).
    pub fn evict_anonymous(self, user_key: impl Into<String>) -> Self {
        let user_key = user_key.into();
        {
            let mut records = self.write();
            let index = records
                .map
                .iter()
                .filter(|(_, r)| !r.data.contains_key(user_key.as_str()))
                .map(|(k, r)| (r.expires_at, *k))
                .collect();
            records.anonymous = Some((user_key, index));
        }
        self
    }

    /// Uses `clock` to decide expiry (tests inject a manual clock; give the
    /// [`SessionLayer`](super::SessionLayer) the same one).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.shared.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Records> {
        self.shared.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every expired record and returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        self.write().purge(now)
    }

    /// The number of records, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of the stored records (digests, never session ids), e.g. to
    /// audit what the store holds.
    pub fn keys(&self) -> Vec<StoreKey> {
        self.read().map.keys().copied().collect()
    }

    /// The record filed under `key`, expired or not, without side effects.
    pub fn get(&self, key: &StoreKey) -> Option<SessionRecord> {
        self.read().map.get(key).cloned()
    }

    #[cfg(test)]
    fn visited(&self) -> usize {
        self.read().visited
    }

    fn load_now(&self, key: &StoreKey) -> Option<SessionRecord> {
        let now = self.clock.now();
        match self.read().map.get(key) {
            None => return None,
            Some(r) if !r.is_expired(now) => return Some(r.clone()),
            Some(_) => {}
        }
        let mut records = self.write();
        if records.map.get(key).is_some_and(|r| r.is_expired(now)) {
            records.remove(key);
        }
        None
    }

    /// Refuses data larger than the cap, counting its JSON bytes without
    /// keeping them.
    fn check_size(&self, record: &SessionRecord) -> Result<(), BoxError> {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 = self.0.saturating_add(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, &record.data)?;
        if count.0 > self.max_record_bytes {
            return Err(RecordTooLarge {
                size: count.0,
                max: self.max_record_bytes,
            }
            .into());
        }
        Ok(())
    }

    fn save_now(&self, key: &StoreKey, record: &SessionRecord) -> Result<(), BoxError> {
        self.check_size(record)?;
        let now = self.clock.now();
        let mut records = self.write();
        records.purge(now);
        while !records.map.contains_key(key) && records.map.len() >= self.max_sessions {
            if !records.evict_anonymous() {
                return Err(StoreFull.into());
            }
        }
        records.insert(*key, record.clone());
        Ok(())
    }

    fn update_now(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<UpdateOutcome, BoxError> {
        self.check_size(record)?;
        let now = self.clock.now();
        let mut records = self.write();
        records.purge(now);
        // Expired records were just purged: any record left is live.
        match records.map.get(key) {
            None => return Ok(UpdateOutcome::Gone),
            Some(r) if r.version != expected_version => return Ok(UpdateOutcome::Conflict),
            Some(_) => {}
        }
        records.insert(*key, record.clone());
        Ok(UpdateOutcome::Updated)
    }

    fn touch_now(&self, key: &StoreKey, last_active: SystemTime, expires_at: SystemTime) -> bool {
        let now = self.clock.now();
        let mut records = self.write();
        records.purge(now);
        let Some(current) = records.map.get(key) else {
            return false;
        };
        let mut record = current.clone();
        record.last_active = record.last_active.max(last_active);
        record.expires_at = record.expires_at.max(expires_at);
        // Re-filed so that the expiry indexes follow.
        records.insert(*key, record);
        true
    }

    fn delete_now(&self, key: &StoreKey) -> bool {
        let now = self.clock.now();
        let mut records = self.write();
        let live = records.remove(key).is_some_and(|r| !r.is_expired(now));
        records.purge(now);
        live
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
        ready(self.save_now(key, record))
    }

    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send {
        ready(self.update_now(key, record, expected_version))
    }

    fn touch(
        &self,
        key: &StoreKey,
        last_active: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        ready(Ok(self.touch_now(key, last_active, expires_at)))
    }

    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send {
        ready(Ok(self.delete_now(key)))
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
            version: 0,
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
        assert_eq!(
            store
                .update(&key(1), &record(now, 60), 0)
                .now_or_never()
                .unwrap()
                .unwrap(),
            UpdateOutcome::Gone
        );
        store
            .save(&key(1), &record(now, 60))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(
            store.load(&key(1)).now_or_never().unwrap().unwrap(),
            Some(record(now, 60))
        );
        let mut newer = record(now, 90);
        newer.version = 1;
        assert_eq!(
            store
                .update(&key(1), &newer, 0)
                .now_or_never()
                .unwrap()
                .unwrap(),
            UpdateOutcome::Updated
        );
        assert_eq!(store.get(&key(1)), Some(newer.clone()));
        // a writer that loaded version 0 lost the race: nothing written
        assert_eq!(
            store
                .update(&key(1), &record(now, 30), 0)
                .now_or_never()
                .unwrap()
                .unwrap(),
            UpdateOutcome::Conflict
        );
        assert_eq!(store.get(&key(1)), Some(newer));
        assert!(store.delete(&key(1)).now_or_never().unwrap().unwrap());
        assert!(store.is_empty());
        // deleting again is fine, and says the record was not there
        assert!(!store.delete(&key(1)).now_or_never().unwrap().unwrap());
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
        assert_eq!(
            store
                .update(&key(2), &record(t0, 60), 0)
                .now_or_never()
                .unwrap()
                .unwrap(),
            UpdateOutcome::Gone
        );
        assert!(store.is_empty());
        // deleting an expired record says it was not there
        store
            .save(&key(3), &record(t0, 10))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert!(!store.delete(&key(3)).now_or_never().unwrap().unwrap());
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
            // expired records are purged by every write: only the 100
            // live ones are left
            assert!(store.len() <= 100, "{}", store.len());
        }
    }

    #[test]
    fn max_sessions_refuses_new_sessions_but_not_existing_ones() {
        let (now, c) = clock();
        let store = MemorySessionStore::new().clock(c).max_sessions(2);
        let t0 = *now.lock().unwrap();
        store
            .save(&key(1), &with_user(record(t0, 10)))
            .now_or_never()
            .unwrap()
            .unwrap();
        store
            .save(&key(2), &with_user(record(t0, 100)))
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

    fn numbered(i: u32) -> StoreKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        StoreKey::from_bytes(k)
    }

    /// Regression: at the cap, every refused session used to sweep all
    /// records under the write lock (O(n) per request: 0.9 ms with 100k
    /// records). Now a refusal looks at one index entry.
    #[test]
    fn a_flood_at_the_cap_looks_at_one_index_entry_per_refusal() {
        let (now, c) = clock();
        let t0 = *now.lock().unwrap();
        let cap = 5_000;
        let store = MemorySessionStore::new().clock(c).max_sessions(cap);
        for i in 0..cap as u32 {
            store
                .save(&numbered(i), &with_user(record(t0, 3600)))
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        let before = store.visited();
        let flood = 10_000u32;
        for i in 0..flood {
            let refused = store
                .save(&numbered(1_000_000 + i), &with_user(record(t0, 3600)))
                .now_or_never()
                .unwrap();
            assert!(refused.unwrap_err().is::<StoreFull>());
        }
        let visited = store.visited() - before;
        // one peek at the soonest deadline and one eviction attempt each,
        // however many records are stored
        assert!(
            visited <= 2 * flood as usize,
            "{visited} index entries visited for {flood} refusals"
        );
        assert_eq!(store.len(), cap);
        // expired records make room, and purging them costs one visit each
        *now.lock().unwrap() = t0 + Duration::from_secs(3600);
        let before = store.visited();
        store
            .save(&key(0xee), &record(t0 + Duration::from_secs(3600), 60))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.visited() - before <= cap + 2);
    }

    fn with_user(mut r: SessionRecord) -> SessionRecord {
        r.data.insert("user".into(), "alice".into());
        r
    }

    #[test]
    fn evict_anonymous_evicts_the_soonest_anonymous_session_never_a_user() {
        let (now, c) = clock();
        let t0 = *now.lock().unwrap();
        let store = MemorySessionStore::new()
            .clock(c)
            .max_sessions(4)
            .evict_anonymous("user");
        let save = |k: StoreKey, r: SessionRecord| store.save(&k, &r).now_or_never().unwrap();
        // two users, expiring first, and two anonymous sessions
        save(key(1), with_user(record(t0, 10))).unwrap();
        save(key(2), with_user(record(t0, 20))).unwrap();
        save(key(3), record(t0, 300)).unwrap();
        save(key(4), record(t0, 200)).unwrap();
        // a flood of anonymous sessions churns anonymous ones only, soonest
        // to expire first, and never grows the store
        save(key(5), record(t0, 1000)).unwrap();
        assert!(store.get(&key(4)).is_none());
        for n in 6..100u8 {
            save(key(n), record(t0, 1000 + u64::from(n))).unwrap();
            assert_eq!(store.len(), 4);
            assert!(store.get(&key(1)).is_some() && store.get(&key(2)).is_some());
        }
        // a login still fits
        save(key(200), with_user(record(t0, 50))).unwrap();
        assert_eq!(store.len(), 4);
        // an anonymous session that logs in is no longer evictable
        save(key(99), with_user(record(t0, 2000))).unwrap();
        // full of users: refused
        let err = save(key(201), record(t0, 10)).unwrap_err();
        assert!(err.is::<StoreFull>());
        let err = save(key(202), with_user(record(t0, 10))).unwrap_err();
        assert!(err.is::<StoreFull>());
        // updates of existing sessions are never refused
        assert_eq!(
            store
                .update(&key(1), &with_user(record(t0, 30)), 0)
                .now_or_never()
                .unwrap()
                .unwrap(),
            UpdateOutcome::Updated
        );
        // a user that logs out (record rewritten without a user) is
        // evictable again
        save(key(2), record(t0, 20)).unwrap();
        save(key(203), record(t0, 100)).unwrap();
        assert!(store.get(&key(2)).is_none());
        // expired records go before anything is evicted: the user of key 1
        // expired, the anonymous key 203 stays
        *now.lock().unwrap() = t0 + Duration::from_secs(35);
        save(key(204), record(t0, 100)).unwrap();
        assert!(store.get(&key(1)).is_none());
        assert!(store.get(&key(203)).is_some(), "a live session was evicted");
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn evict_anonymous_indexes_existing_records() {
        let (now, c) = clock();
        let t0 = *now.lock().unwrap();
        let store = MemorySessionStore::new()
            .clock(c)
            .max_sessions(2)
            .evict_anonymous("k");
        let save = |s: &MemorySessionStore, k: StoreKey, r: SessionRecord| {
            s.save(&k, &r).now_or_never().unwrap()
        };
        // every record holds "k": none is anonymous for this store
        save(&store, key(1), record(t0, 100)).unwrap();
        save(&store, key(2), with_user(record(t0, 100))).unwrap();
        assert!(save(&store, key(3), record(t0, 100)).is_err());
        let store = store.evict_anonymous("user");
        save(&store, key(3), record(t0, 100)).unwrap();
        assert!(store.get(&key(1)).is_none() && store.get(&key(2)).is_some());
    }
}
