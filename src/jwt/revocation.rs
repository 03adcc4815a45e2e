//! Revocation: a deny-list of token ids (`jti`) and refresh families, and
//! the one-time use of refresh tokens.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::BoxError;

/// What is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Revocable<'a> {
    /// One token, by its `jti`.
    Token(&'a str),
    /// Every token of a refresh family (a login session): the refresh tokens
    /// rotated from one sign-in and the access tokens issued with them.
    Family(&'a str),
}

/// Where revocations live: [`MemoryRevocationStore`], or Redis / a database
/// for several server instances.
///
/// Every entry carries the time (seconds since the epoch) after which it is
/// useless, because the tokens it concerns have expired; stores drop
/// entries after that time, which bounds their size.
pub trait RevocationStore: Send + Sync + 'static {
    /// Revokes `what` until `until`.
    ///
    /// # Errors
    ///
    /// A backend failure. Callers fail closed: a logout that could not be
    /// recorded is an error, never a silent success.
    fn revoke(
        &self,
        what: Revocable<'_>,
        until: u64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Whether `what` is revoked.
    ///
    /// # Errors
    ///
    /// A backend failure; the request is refused with `503`.
    fn is_revoked(
        &self,
        what: Revocable<'_>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Records that refresh token number `generation` of `family` was
    /// redeemed, atomically: `true` when `generation` is above every
    /// generation recorded for the family (the token was never used), else
    /// `false` (a reuse). One entry per family, kept until `until`, so the
    /// store grows with sign-ins, not with refreshes.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn advance(
        &self,
        family: &str,
        generation: u64,
        until: u64,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Like [`advance`](RevocationStore::advance), with a reuse interval:
    /// redeeming the family's most recently redeemed generation again
    /// within `grace` seconds of its first redemption is a
    /// [`Redemption::Retry`], not a reuse. Called by
    /// [`TokenIssuer::redeem`](super::TokenIssuer::redeem) only when a
    /// [`refresh_reuse_interval`](super::TokenIssuer::refresh_reuse_interval)
    /// is set. Must be atomic like `advance`, and must not move the time of
    /// the first redemption on a retry (the window does not slide).
    ///
    /// The default implementation has no window: it calls `advance`
    /// (`true` is [`Redemption::First`], `false` [`Redemption::Reuse`]), so
    /// stores written before this method keep working, strictly.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn advance_with_grace(
        &self,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        let _ = grace;
        async move {
            Ok(if self.advance(family, generation, until).await? {
                Redemption::First
            } else {
                Redemption::Reuse
            })
        }
    }

    /// Records a sign-in: `subject` opened refresh `family`, whose tokens
    /// are useless after `until`. Called by
    /// [`TokenIssuer::issue`](super::TokenIssuer::issue), which is
    /// synchronous, hence so is this method.
    ///
    /// A store that tracks sign-ins (like [`MemoryRevocationStore`]) bounds
    /// them per subject and refuses, in
    /// [`advance_for`](RevocationStore::advance_for), families it does not
    /// hold open. The default does nothing: stores written before this
    /// method keep their behaviour.
    ///
    /// # Errors
    ///
    /// A backend failure; the sign-in fails with `503`.
    fn open_family(&self, subject: &str, family: &str, until: u64) -> Result<(), BoxError> {
        let _ = (subject, family, until);
        Ok(())
    }

    /// Whether this store tracks sign-ins: [`open_family`] records them,
    /// [`advance_for`] answers [`Redemption::Unknown`] for a family not
    /// open, and revoking a family closes it. Then a family's deny-list
    /// entry only needs to outlive its access tokens, and
    /// [`TokenIssuer`](super::TokenIssuer) keeps it that long (minutes)
    /// instead of the refresh lifetime (days), so logouts do not pile up.
    /// Default `false`.
    ///
    /// [`open_family`]: RevocationStore::open_family
    /// [`advance_for`]: RevocationStore::advance_for
    fn tracks_sign_ins(&self) -> bool {
        false
    }

    /// Records the redemption of refresh token number `generation` of
    /// `subject`'s `family`: what
    /// [`TokenIssuer::redeem`](super::TokenIssuer::redeem) calls. `grace`
    /// is the reuse interval in seconds (0: strict).
    ///
    /// The default ignores the subject: it calls
    /// [`advance`](RevocationStore::advance) when `grace` is 0, else
    /// [`advance_with_grace`](RevocationStore::advance_with_grace). A store
    /// that tracks sign-ins answers [`Redemption::Unknown`] for a family it
    /// does not hold open for `subject`.
    ///
    /// # Errors
    ///
    /// A backend failure.
    fn advance_for(
        &self,
        subject: &str,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        let _ = subject;
        async move {
            if grace == 0 {
                Ok(if self.advance(family, generation, until).await? {
                    Redemption::First
                } else {
                    Redemption::Reuse
                })
            } else {
                self.advance_with_grace(family, generation, until, grace)
                    .await
            }
        }
    }

    /// Answers [`is_revoked`](RevocationStore::is_revoked) without awaiting,
    /// when the store can (an in-memory store can; a network store cannot and
    /// returns `None`, the default). Lets the authenticator skip allocating a
    /// future on the hot path.
    fn is_revoked_now(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        let _ = what;
        None
    }

    /// A receiver of the revocations recorded from now on, so that
    /// long-lived connections ([`CredentialWatch`](crate::lifetime::CredentialWatch))
    /// end at once when their token or family is revoked. `None` (the
    /// default): the store cannot notify, and watches find revocations by
    /// asking [`is_revoked`](RevocationStore::is_revoked) periodically.
    ///
    /// A store keeps one [`RevocationBroadcast`] and publishes into it
    /// every revocation it records; a store shared by several instances
    /// (Redis) also publishes each revocation on a channel of the backend,
    /// and feeds what it hears there into its broadcast, so that every
    /// instance's connections learn of every instance's revocations.
    fn subscribe(&self) -> Option<RevocationReceiver> {
        None
    }
}

/// A revoked token or family, as broadcast to subscribers (see
/// [`RevocationStore::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// A token, by its `jti`.
    Token(Arc<str>),
    /// A refresh family, by its id (`fam`).
    Family(Arc<str>),
}

impl Revoked {
    /// Whether this revocation concerns a token of id `jti` in family `fam`.
    pub fn concerns(&self, jti: Option<&str>, fam: Option<&str>) -> bool {
        match self {
            Revoked::Token(t) => jti == Some(&**t),
            Revoked::Family(f) => fam == Some(&**f),
        }
    }
}

impl From<Revocable<'_>> for Revoked {
    fn from(what: Revocable<'_>) -> Self {
        match what {
            Revocable::Token(t) => Revoked::Token(t.into()),
            Revocable::Family(f) => Revoked::Family(f.into()),
        }
    }
}

/// The default number of revocations a [`RevocationBroadcast`] buffers for
/// slow subscribers.
pub const DEFAULT_BROADCAST_CAPACITY: usize = 1024;

/// A broadcast of revocations: a store publishes each one it records, and
/// long-lived connections subscribe. The buffer is a ring shared by every
/// subscriber, so memory is bounded whatever their number: a subscriber
/// that falls more than `capacity` revocations behind is told it missed
/// some ([`RevocationEvent::Missed`]) and checks the store again.
///
/// Cloning shares the broadcast.
#[derive(Clone, Debug)]
pub struct RevocationBroadcast {
    tx: tokio::sync::broadcast::Sender<Revoked>,
}

impl Default for RevocationBroadcast {
    fn default() -> Self {
        Self::new(DEFAULT_BROADCAST_CAPACITY)
    }
}

impl RevocationBroadcast {
    /// A broadcast buffering up to `capacity` revocations (at least 1).
    pub fn new(capacity: usize) -> Self {
        RevocationBroadcast {
            tx: tokio::sync::broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publishes a revocation to the current subscribers (none: nothing
    /// happens).
    pub fn publish(&self, revoked: impl Into<Revoked>) {
        // An error only means that no one subscribes.
        let _ = self.tx.send(revoked.into());
    }

    /// Subscribes to the revocations published from now on.
    pub fn subscribe(&self) -> RevocationReceiver {
        RevocationReceiver {
            rx: self.tx.subscribe(),
        }
    }

    /// The number of live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What a [`RevocationReceiver`] hears.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationEvent {
    /// A revocation.
    Revoked(Revoked),
    /// This many revocations were missed (the subscriber was too slow):
    /// check the store.
    Missed(u64),
}

/// A subscription to a [`RevocationBroadcast`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct RevocationReceiver {
    rx: tokio::sync::broadcast::Receiver<Revoked>,
}

impl RevocationReceiver {
    /// The next event; `None` once the broadcast is gone (every sender,
    /// i.e. the store, dropped).
    pub async fn recv(&mut self) -> Option<RevocationEvent> {
        use tokio::sync::broadcast::error::RecvError;
        match self.rx.recv().await {
            Ok(r) => Some(RevocationEvent::Revoked(r)),
            Err(RecvError::Lagged(n)) => Some(RevocationEvent::Missed(n)),
            Err(RecvError::Closed) => None,
        }
    }

    /// Resolves when a revocation concerning a token of id `jti` in family
    /// `fam` is heard, or when some were missed; never once the broadcast
    /// is gone.
    pub(crate) async fn concerning(mut self, jti: Option<&str>, fam: Option<&str>) {
        loop {
            match self.recv().await {
                Some(RevocationEvent::Revoked(r)) if !r.concerns(jti, fam) => {}
                Some(_) => return,
                None => return std::future::pending().await,
            }
        }
    }
}

/// The outcome of redeeming a refresh token: see
/// [`RevocationStore::advance_with_grace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redemption {
    /// The generation was never redeemed: it is now the family's latest.
    First,
    /// The family's latest generation, redeemed again within the reuse
    /// interval (a client retry, two tabs refreshing at once).
    Retry,
    /// An older generation, or the latest one after the interval: a reuse.
    Reuse,
    /// The family is not open in a store that tracks sign-ins (closed by a
    /// logout or a reuse, evicted by a newer sign-in of its subject,
    /// expired, or issued before the store was emptied): refused as
    /// revoked, without writing anything.
    Unknown,
}

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// Object-safe view of a [`RevocationStore`], so authenticators need no
/// type parameter for it.
pub(crate) trait DynRevocationStore: Send + Sync + 'static {
    fn revoke_dyn<'a>(&'a self, what: Revocable<'a>, until: u64) -> BoxFut<'a, ()>;
    fn is_revoked_dyn<'a>(&'a self, what: Revocable<'a>) -> BoxFut<'a, bool>;
    fn is_revoked_now_dyn(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>>;
    fn subscribe_dyn(&self) -> Option<RevocationReceiver>;
    fn open_family_dyn(&self, subject: &str, family: &str, until: u64) -> Result<(), BoxError>;
    fn tracks_sign_ins_dyn(&self) -> bool;
    fn advance_for_dyn<'a>(
        &'a self,
        subject: &'a str,
        family: &'a str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> BoxFut<'a, Redemption>;
}

impl<S: RevocationStore> DynRevocationStore for S {
    fn revoke_dyn<'a>(&'a self, what: Revocable<'a>, until: u64) -> BoxFut<'a, ()> {
        Box::pin(self.revoke(what, until))
    }
    fn is_revoked_dyn<'a>(&'a self, what: Revocable<'a>) -> BoxFut<'a, bool> {
        Box::pin(self.is_revoked(what))
    }
    fn is_revoked_now_dyn(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        self.is_revoked_now(what)
    }
    fn subscribe_dyn(&self) -> Option<RevocationReceiver> {
        self.subscribe()
    }
    fn open_family_dyn(&self, subject: &str, family: &str, until: u64) -> Result<(), BoxError> {
        self.open_family(subject, family, until)
    }
    fn tracks_sign_ins_dyn(&self) -> bool {
        self.tracks_sign_ins()
    }
    fn advance_for_dyn<'a>(
        &'a self,
        subject: &'a str,
        family: &'a str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> BoxFut<'a, Redemption> {
        Box::pin(self.advance_for(subject, family, generation, until, grace))
    }
}

pub(crate) type SharedStore = Arc<dyn DynRevocationStore>;

/// Checks the token and its family against `store`: synchronously when the
/// store can answer at once, else with one boxed future.
pub(crate) async fn check(
    store: SharedStore,
    jti: Option<String>,
    fam: Option<String>,
) -> Result<bool, BoxError> {
    for what in jti
        .as_deref()
        .map(Revocable::Token)
        .into_iter()
        .chain(fam.as_deref().map(Revocable::Family))
    {
        let revoked = match store.is_revoked_now_dyn(what) {
            Some(r) => r?,
            None => store.is_revoked_dyn(what).await?,
        };
        if revoked {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Errors of [`MemoryRevocationStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// The store holds its maximum number of live entries.
    #[error("the revocation store is full ({0} live entries)")]
    Full(usize),
}

/// The number of independently locked shards of each map of a large store.
const SHARDS: usize = 16;

/// Stores smaller than this (tests, tiny deployments) have one shard, so
/// that their capacity is exact.
const SHARDED_FROM: usize = SHARDS * 64;

/// The default cap on a subject's live sign-ins (refresh families).
pub const DEFAULT_FAMILIES_PER_SUBJECT: usize = 100;

/// An in-memory [`RevocationStore`] for one server instance.
///
/// It keeps two separate maps, each split in 16 independently locked shards
/// so that concurrent requests rarely wait on each other:
///
/// * the **deny-list** of revoked tokens (`jti`) and families, checked on
///   every request;
/// * the **open sign-ins**: every refresh family issued by a
///   [`TokenIssuer`](super::TokenIssuer) sharing this store, with its
///   subject and its latest redeemed generation. A refresh token is
///   redeemed only while its family is open here.
///
/// Memory is bounded: each map holds at most `capacity` entries (default
/// one million each, about 100 MB at worst per map). Entries are dropped
/// once the tokens they concern have expired (checked, amortized, when a
/// shard fills), and a shard full of live entries refuses new ones with an
/// error rather than forgetting a revocation: a logout then fails (`503`)
/// instead of silently leaving a token valid.
///
/// One subject cannot fill the store: it has at most
/// [`families_per_subject`](Self::families_per_subject) open sign-ins
/// (default [`DEFAULT_FAMILIES_PER_SUBJECT`]); a new sign-in beyond that
/// closes the subject's oldest one, whose refresh tokens are then refused
/// as revoked (its access tokens live until they expire).
///
/// Failing closed has a consequence: after a restart (an empty store),
/// refresh tokens issued before it are refused and users sign in again.
/// A store that forgot which sign-ins are open cannot tell a live refresh
/// token from a logged-out one; share a persistent store between instances
/// to keep sign-ins across restarts.
///
/// Cloning shares the same entries.
#[derive(Clone)]
pub struct MemoryRevocationStore {
    inner: Arc<Shared>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

struct Shared {
    hasher: RandomState,
    /// Revoked tokens and families, sharded by key.
    denied: Box<[Mutex<Denied>]>,
    /// Open families, sharded by family id.
    families: Box<[Mutex<Families>]>,
    /// Each subject's open families, oldest first, sharded by subject.
    subjects: Box<[Mutex<Subjects>]>,
    per_subject: usize,
    /// Every revocation recorded, for [`RevocationStore::subscribe`].
    broadcast: RevocationBroadcast,
}

/// Revoked tokens and revoked families, each mapped to the time after
/// which the entry is useless.
struct Denied {
    revoked: [HashMap<Box<str>, u64>; 2],
    capacity: usize,
    /// Writes since the last purge.
    writes: usize,
    /// The earliest expiry of an entry (`u64::MAX`: none): before it, a
    /// purge would drop nothing and is skipped.
    soonest: u64,
}

struct Families {
    map: HashMap<Box<str>, Family>,
    capacity: usize,
    writes: usize,
    soonest: u64,
}

struct Subjects {
    map: HashMap<Box<str>, VecDeque<Box<str>>>,
    capacity: usize,
    writes: usize,
}

/// An open family: its subject and latest redeemed refresh generation.
struct Family {
    /// The subject, when known (a family first seen by
    /// [`RevocationStore::advance`] has none).
    subject: Option<Box<str>>,
    /// The latest redeemed generation; `None` until the first refresh.
    last: Option<u64>,
    /// When `last` was first redeemed (store clock).
    at: u64,
    /// When the entry is useless.
    until: u64,
}

const TOKENS: usize = 0;
const FAMILIES: usize = 1;

fn slot(what: Revocable<'_>) -> (usize, &str) {
    match what {
        Revocable::Token(jti) => (TOKENS, jti),
        Revocable::Family(fam) => (FAMILIES, fam),
    }
}

/// Whether a map of `len` entries, `writes` writes after its last purge,
/// should be purged before one more write: when it is full, or large and
/// enough writes happened since the last purge to pay for the scan
/// (amortized O(1) per write).
fn should_purge(len: usize, writes: usize, capacity: usize) -> bool {
    len >= capacity || (len >= capacity / 2 && writes >= capacity / 4)
}

/// Drops the entries of `map` expired at `now`; returns the earliest expiry
/// left.
fn drop_expired<V>(map: &mut HashMap<Box<str>, V>, now: u64, until: impl Fn(&V) -> u64) -> u64 {
    let mut soonest = u64::MAX;
    map.retain(|_, v| {
        let u = until(v);
        soonest = soonest.min(u);
        u > now
    });
    soonest
}

impl Denied {
    fn len(&self) -> usize {
        self.revoked.iter().map(HashMap::len).sum()
    }

    fn purge(&mut self, now: u64) {
        let mut soonest = u64::MAX;
        for map in &mut self.revoked {
            soonest = soonest.min(drop_expired(map, now, |u| *u));
        }
        self.soonest = soonest;
        self.writes = 0;
    }

    /// Makes room for one entry expiring at `until`, purging expired ones
    /// first; `Err` when the shard is full of live entries.
    fn reserve(&mut self, now: u64, until: u64) -> Result<(), MemoryStoreError> {
        self.writes += 1;
        if now >= self.soonest && should_purge(self.len(), self.writes, self.capacity) {
            self.purge(now);
        }
        if self.len() >= self.capacity {
            return Err(MemoryStoreError::Full(self.capacity));
        }
        self.soonest = self.soonest.min(until);
        Ok(())
    }
}

impl Families {
    fn purge(&mut self, now: u64) {
        self.soonest = drop_expired(&mut self.map, now, |f| f.until);
        self.writes = 0;
    }

    /// Like [`Denied::reserve`].
    fn reserve(&mut self, now: u64, until: u64) -> Result<(), MemoryStoreError> {
        self.writes += 1;
        if now >= self.soonest && should_purge(self.map.len(), self.writes, self.capacity) {
            self.purge(now);
        }
        if self.map.len() >= self.capacity {
            return Err(MemoryStoreError::Full(self.capacity));
        }
        self.soonest = self.soonest.min(until);
        Ok(())
    }
}

/// Splits `capacity` over `shards` shards (shard `i` gets its share of the
/// remainder), at least one entry each.
fn shard_capacity(capacity: usize, shards: usize, i: usize) -> usize {
    (capacity / shards + usize::from(i < capacity % shards)).max(1)
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRevocationStore {
    /// A store with room for one million live entries in each map.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000)
    }

    /// A store with room for about `capacity` live entries in each map (at
    /// least one per shard).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let n = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        MemoryRevocationStore {
            inner: Arc::new(Shared {
                hasher: RandomState::new(),
                denied: (0..n)
                    .map(|i| {
                        Mutex::new(Denied {
                            revoked: Default::default(),
                            capacity: shard_capacity(capacity, n, i),
                            writes: 0,
                            soonest: u64::MAX,
                        })
                    })
                    .collect(),
                families: (0..n)
                    .map(|i| {
                        Mutex::new(Families {
                            map: HashMap::new(),
                            capacity: shard_capacity(capacity, n, i),
                            writes: 0,
                            soonest: u64::MAX,
                        })
                    })
                    .collect(),
                subjects: (0..n)
                    .map(|i| {
                        Mutex::new(Subjects {
                            map: HashMap::new(),
                            capacity: shard_capacity(capacity, n, i),
                            writes: 0,
                        })
                    })
                    .collect(),
                per_subject: DEFAULT_FAMILIES_PER_SUBJECT,
                broadcast: RevocationBroadcast::default(),
            }),
            clock: Arc::new(super::unix_now),
        }
    }

    /// Caps each subject's open sign-ins (refresh families) at `max`
    /// (default [`DEFAULT_FAMILIES_PER_SUBJECT`], at least 1). Call it
    /// when building the store, before cloning it: on a store already
    /// cloned it is ignored, with a warning.
    pub fn families_per_subject(mut self, max: usize) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.inner) {
            shared.per_subject = max.max(1);
        } else {
            tracing::warn!("families_per_subject on a shared store is ignored");
        }
        self
    }

    /// Uses `clock` (seconds since the epoch) instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn shard(&self, key: &str) -> usize {
        // The low bits of a SipHash under the store's random keys.
        (self.inner.hasher.hash_one(key) as usize) % self.inner.denied.len()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of entries of both maps, expired ones included until
    /// they are purged.
    pub fn len(&self) -> usize {
        self.denied_len() + self.families_len()
    }

    /// The number of deny-list entries (revoked tokens and families).
    pub fn denied_len(&self) -> usize {
        self.inner.denied.iter().map(|s| Self::lock(s).len()).sum()
    }

    /// The number of open sign-ins (refresh families) tracked.
    pub fn families_len(&self) -> usize {
        self.inner
            .families
            .iter()
            .map(|s| Self::lock(s).map.len())
            .sum()
    }

    #[cfg(test)]
    fn subjects_len(&self) -> usize {
        self.inner
            .subjects
            .iter()
            .map(|s| Self::lock(s).map.len())
            .sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries and returns how many were dropped.
    pub fn purge_expired(&self) -> usize {
        let now = (self.clock)();
        let mut dropped = 0;
        for shard in &self.inner.denied {
            let mut d = Self::lock(shard);
            let before = d.len();
            d.purge(now);
            dropped += before - d.len();
        }
        for shard in &self.inner.families {
            let mut f = Self::lock(shard);
            let before = f.map.len();
            f.purge(now);
            dropped += before - f.map.len();
        }
        for i in 0..self.inner.subjects.len() {
            self.purge_subjects(i);
        }
        dropped
    }

    /// Drops the subjects of shard `i` whose families are all closed, and
    /// the closed families from the others. Locks a subject shard, then
    /// family shards (the one lock order of this store).
    fn purge_subjects(&self, i: usize) {
        let mut subjects = Self::lock(&self.inner.subjects[i]);
        let Subjects { map, writes, .. } = &mut *subjects;
        map.retain(|subject, families| {
            families.retain(|f| self.is_open(f, subject));
            !families.is_empty()
        });
        *writes = 0;
    }

    /// Whether `family` is open for `subject` (takes a family shard lock).
    fn is_open(&self, family: &str, subject: &str) -> bool {
        let now = (self.clock)();
        let shard = Self::lock(&self.inner.families[self.shard(family)]);
        shard
            .map
            .get(family)
            .is_some_and(|f| f.until > now && f.subject.as_deref() == Some(subject))
    }

    fn close(&self, family: &str) {
        Self::lock(&self.inner.families[self.shard(family)])
            .map
            .remove(family);
    }

    fn revoke_now(&self, what: Revocable<'_>, until: u64) -> Result<(), MemoryStoreError> {
        let now = (self.clock)();
        let (map, key) = slot(what);
        if map == FAMILIES {
            // Its refresh tokens are refused from now on.
            self.close(key);
        }
        {
            let mut denied = Self::lock(&self.inner.denied[self.shard(key)]);
            let live = denied.revoked[map].get_mut(key).filter(|e| **e > now);
            if let Some(existing) = live {
                *existing = until.max(*existing);
            } else {
                denied.reserve(now, until)?;
                denied.revoked[map].insert(key.into(), until);
            }
        }
        // Published once recorded: a subscriber that checks the store on
        // hearing it finds it.
        self.inner.broadcast.publish(what);
        Ok(())
    }

    /// The broadcast of this store's revocations (what
    /// [`RevocationStore::subscribe`] subscribes to).
    pub fn broadcast(&self) -> &RevocationBroadcast {
        &self.inner.broadcast
    }

    /// Opens `family` for `subject`, closing the subject's oldest families
    /// beyond the cap.
    fn open_now(&self, subject: &str, family: &str, until: u64) -> Result<(), MemoryStoreError> {
        let now = (self.clock)();
        let s = self.shard(subject);
        let mut subjects = Self::lock(&self.inner.subjects[s]);
        subjects.writes += 1;
        if should_purge(subjects.map.len(), subjects.writes, subjects.capacity) {
            drop(subjects);
            self.purge_subjects(s);
            subjects = Self::lock(&self.inner.subjects[s]);
        }
        if !subjects.map.contains_key(subject) && subjects.map.len() >= subjects.capacity {
            return Err(MemoryStoreError::Full(subjects.capacity));
        }
        // Make room in the subject's list first, so that a subject at its
        // cap replaces its oldest sign-in even in a store sized to it.
        let per_subject = self.inner.per_subject;
        let list = subjects.map.entry(subject.into()).or_default();
        if list.len() >= per_subject {
            // Forget the families closed since (logout, reuse, expiry) before
            // closing live ones.
            list.retain(|f| self.is_open(f, subject));
        }
        while list.len() >= per_subject {
            if let Some(oldest) = list.pop_front() {
                self.close(&oldest);
            }
        }
        {
            let mut families = Self::lock(&self.inner.families[self.shard(family)]);
            families.reserve(now, until)?;
            families.map.insert(
                family.into(),
                Family {
                    subject: Some(subject.into()),
                    last: None,
                    at: now,
                    until,
                },
            );
        }
        subjects
            .map
            .entry(subject.into())
            .or_default()
            .push_back(family.into());
        Ok(())
    }

    fn advance_now(
        &self,
        subject: Option<&str>,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> Result<Redemption, MemoryStoreError> {
        let now = (self.clock)();
        let mut families = Self::lock(&self.inner.families[self.shard(family)]);
        match families.map.get_mut(family) {
            Some(f) if f.until > now => {
                if subject.is_some() && f.subject.is_some() && subject != f.subject.as_deref() {
                    return Ok(Redemption::Unknown);
                }
                match f.last {
                    Some(last) if generation <= last => {
                        let retry = generation == last && now < f.at.saturating_add(grace);
                        Ok(if retry {
                            Redemption::Retry
                        } else {
                            Redemption::Reuse
                        })
                    }
                    _ => {
                        f.last = Some(generation);
                        f.at = now;
                        f.until = until.max(f.until);
                        Ok(Redemption::First)
                    }
                }
            }
            // With a subject, the caller is a `TokenIssuer` sharing this
            // store, which opened the family when signing in: a family not
            // open here was closed (logout, reuse, eviction, expiry) or
            // issued before a restart. Fail closed.
            _ if subject.is_some() => Ok(Redemption::Unknown),
            // `advance` called directly (no subject): track the family from
            // its first redemption, as stores without sign-in tracking do.
            _ => {
                families.reserve(now, until)?;
                families.map.insert(
                    family.into(),
                    Family {
                        subject: None,
                        last: Some(generation),
                        at: now,
                        until,
                    },
                );
                Ok(Redemption::First)
            }
        }
    }

    fn revoked(&self, what: Revocable<'_>) -> bool {
        let now = (self.clock)();
        let (map, key) = slot(what);
        Self::lock(&self.inner.denied[self.shard(key)]).revoked[map]
            .get(key)
            .is_some_and(|until| *until > now)
    }
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn revoke(
        &self,
        what: Revocable<'_>,
        until: u64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        std::future::ready(self.revoke_now(what, until).map_err(Into::into))
    }

    fn is_revoked(
        &self,
        what: Revocable<'_>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::ready(Ok(self.revoked(what)))
    }

    fn advance(
        &self,
        family: &str,
        generation: u64,
        until: u64,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::ready(
            self.advance_now(None, family, generation, until, 0)
                .map(|r| r == Redemption::First)
                .map_err(Into::into),
        )
    }

    fn advance_with_grace(
        &self,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        std::future::ready(
            self.advance_now(None, family, generation, until, grace)
                .map_err(Into::into),
        )
    }

    fn open_family(&self, subject: &str, family: &str, until: u64) -> Result<(), BoxError> {
        self.open_now(subject, family, until).map_err(Into::into)
    }

    fn tracks_sign_ins(&self) -> bool {
        true
    }

    fn subscribe(&self) -> Option<RevocationReceiver> {
        Some(self.inner.broadcast.subscribe())
    }

    fn advance_for(
        &self,
        subject: &str,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        std::future::ready(
            self.advance_now(Some(subject), family, generation, until, grace)
                .map_err(Into::into),
        )
    }

    fn is_revoked_now(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        Some(Ok(self.revoked(what)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn clocked(capacity: usize) -> (MemoryRevocationStore, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1000));
        let n = now.clone();
        let store = MemoryRevocationStore::with_capacity(capacity)
            .with_clock(move || n.load(Ordering::SeqCst));
        (store, now)
    }

    #[tokio::test]
    async fn revoke_until_expiry() {
        let (store, now) = clocked(10);
        store.revoke(Revocable::Token("a"), 1100).await.unwrap();
        assert!(store.is_revoked(Revocable::Token("a")).await.unwrap());
        assert!(!store.is_revoked(Revocable::Family("a")).await.unwrap());
        now.store(1100, Ordering::SeqCst);
        assert!(!store.is_revoked(Revocable::Token("a")).await.unwrap());
        assert_eq!(store.purge_expired(), 1);
    }

    #[tokio::test]
    async fn generations_only_move_forward() {
        let (store, now) = clocked(10);
        assert!(store.advance("f1", 0, 2000).await.unwrap());
        assert!(!store.advance("f1", 0, 2000).await.unwrap(), "reuse");
        assert!(store.advance("f1", 1, 2000).await.unwrap());
        assert!(
            !store.advance("f1", 0, 2000).await.unwrap(),
            "an older token"
        );
        assert!(store.advance("f2", 0, 2000).await.unwrap());
        // one entry per family, whatever the number of refreshes
        for g in 2..100 {
            assert!(store.advance("f1", g, 2000).await.unwrap());
        }
        assert_eq!(store.len(), 2);
        now.store(2000, Ordering::SeqCst);
        assert_eq!(store.purge_expired(), 2);
    }

    #[tokio::test]
    async fn a_retry_of_the_latest_generation_within_the_interval() {
        let (store, now) = clocked(10);
        let grace = |g| store.advance_with_grace("f", g, 5000, 10);
        assert_eq!(grace(0).await.unwrap(), Redemption::First);
        now.store(1009, Ordering::SeqCst);
        assert_eq!(grace(0).await.unwrap(), Redemption::Retry);
        // The window does not slide with retries.
        now.store(1010, Ordering::SeqCst);
        assert_eq!(grace(0).await.unwrap(), Redemption::Reuse);
        assert_eq!(grace(1).await.unwrap(), Redemption::First);
        // An older generation is a reuse even within the interval.
        assert_eq!(grace(0).await.unwrap(), Redemption::Reuse);
        assert_eq!(grace(1).await.unwrap(), Redemption::Retry);
        // Without an interval, the same token twice is a reuse.
        assert!(store.advance("g", 0, 5000).await.unwrap());
        assert!(!store.advance("g", 0, 5000).await.unwrap());
        assert_eq!(
            store.advance_with_grace("g", 0, 5000, 0).await.unwrap(),
            Redemption::Reuse
        );
    }

    /// A store written before `advance_with_grace` existed: the default
    /// method is strict.
    struct Legacy(MemoryRevocationStore);

    impl RevocationStore for Legacy {
        fn revoke(
            &self,
            what: Revocable<'_>,
            until: u64,
        ) -> impl Future<Output = Result<(), BoxError>> + Send {
            self.0.revoke(what, until)
        }
        fn is_revoked(
            &self,
            what: Revocable<'_>,
        ) -> impl Future<Output = Result<bool, BoxError>> + Send {
            self.0.is_revoked(what)
        }
        fn advance(
            &self,
            family: &str,
            generation: u64,
            until: u64,
        ) -> impl Future<Output = Result<bool, BoxError>> + Send {
            self.0.advance(family, generation, until)
        }
    }

    #[tokio::test]
    async fn the_default_grace_method_is_strict() {
        let (store, _) = clocked(10);
        let legacy = Legacy(store);
        assert_eq!(
            legacy.advance_with_grace("f", 0, 5000, 60).await.unwrap(),
            Redemption::First
        );
        assert_eq!(
            legacy.advance_with_grace("f", 0, 5000, 60).await.unwrap(),
            Redemption::Reuse
        );
    }

    #[tokio::test]
    async fn full_store_fails_closed_and_recovers_after_expiry() {
        let (store, now) = clocked(4);
        for i in 0..4 {
            store
                .revoke(Revocable::Token(&i.to_string()), 1010)
                .await
                .unwrap();
        }
        assert!(store.revoke(Revocable::Token("x"), 1010).await.is_err());
        // every earlier revocation still holds
        for i in 0..4 {
            assert!(store
                .is_revoked(Revocable::Token(&i.to_string()))
                .await
                .unwrap());
        }
        now.store(1011, Ordering::SeqCst);
        store.revoke(Revocable::Token("x"), 2000).await.unwrap();
        assert!(store.len() <= 4);
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_a_flood() {
        let (store, now) = clocked(1000);
        for i in 0..100_000u64 {
            now.store(1000 + i, Ordering::SeqCst);
            store
                .revoke(Revocable::Token(&i.to_string()), 1000 + i + 10)
                .await
                .unwrap();
            assert!(store.len() <= 1000);
        }
    }

    #[tokio::test]
    async fn a_subject_keeps_at_most_its_cap_of_sign_ins() {
        let (store, _) = clocked(1000);
        let store = store.families_per_subject(3);
        for f in ["f0", "f1", "f2", "f3"] {
            store.open_family("alice", f, 5000).unwrap();
        }
        store.open_family("bob", "b0", 5000).unwrap();
        assert_eq!(store.families_len(), 4);
        // The oldest sign-in of alice was closed: fail closed.
        assert_eq!(
            store.advance_for("alice", "f0", 0, 5000, 0).await.unwrap(),
            Redemption::Unknown
        );
        for f in ["f1", "f2", "f3"] {
            assert_eq!(
                store.advance_for("alice", f, 0, 5000, 0).await.unwrap(),
                Redemption::First
            );
        }
        assert_eq!(
            store.advance_for("bob", "b0", 0, 5000, 0).await.unwrap(),
            Redemption::First
        );
        // Another subject cannot redeem alice's family.
        assert_eq!(
            store.advance_for("bob", "f1", 1, 5000, 0).await.unwrap(),
            Redemption::Unknown
        );
        // A family never opened (issued before a restart) is refused.
        assert_eq!(
            store.advance_for("bob", "old", 3, 5000, 0).await.unwrap(),
            Redemption::Unknown
        );
        // A revoked family is closed too.
        store.revoke(Revocable::Family("f2"), 5000).await.unwrap();
        assert_eq!(
            store.advance_for("alice", "f2", 1, 5000, 0).await.unwrap(),
            Redemption::Unknown
        );
    }

    /// A million distinct keys into each map of a small store: every map
    /// stays within its cap, one subject's flood never fills the store for
    /// others, and the deny-list evicts expired entries first.
    #[tokio::test]
    async fn each_map_stays_within_its_cap_under_a_million_key_flood() {
        const CAP: usize = 2048;
        let (store, now) = clocked(CAP);
        let store = store.families_per_subject(10);
        for i in 0..1_000_000u64 {
            now.store(1000 + i / 100, Ordering::SeqCst);
            let key = i.to_string();
            // Deny-list entries living 10 s: the store evicts expired ones.
            store
                .revoke(Revocable::Token(&key), 1000 + i / 100 + 10)
                .await
                .unwrap();
            // One subject signing in over and over, plus a few others.
            let subject = if i % 1000 == 0 { key.as_str() } else { "flood" };
            store.open_family(subject, &key, u64::MAX).unwrap();
            if i % 4096 == 0 {
                assert!(store.denied_len() <= CAP, "{}", store.denied_len());
                assert!(store.families_len() <= CAP, "{}", store.families_len());
                assert!(store.subjects_len() <= CAP, "{}", store.subjects_len());
            }
        }
        assert!(store.denied_len() <= CAP);
        assert!(store.families_len() <= CAP);
        assert!(store.subjects_len() <= CAP);
        // The flooding subject holds 10 sign-ins; the others theirs.
        assert_eq!(
            store
                .advance_for("flood", "999999", 0, u64::MAX, 0)
                .await
                .unwrap(),
            Redemption::First
        );
        assert_eq!(
            store
                .advance_for("flood", "999989", 0, u64::MAX, 0)
                .await
                .unwrap(),
            Redemption::Unknown
        );
        assert_eq!(
            store
                .advance_for("1000", "1000", 0, u64::MAX, 0)
                .await
                .unwrap(),
            Redemption::First
        );
    }

    #[tokio::test]
    async fn a_subject_at_its_cap_replaces_its_oldest_sign_in_in_a_store_sized_to_it() {
        let (store, _) = clocked(3);
        let store = store.families_per_subject(3);
        for i in 0..10 {
            store.open_family("alice", &i.to_string(), 5000).unwrap();
        }
        assert_eq!(store.families_len(), 3);
        assert_eq!(
            store.advance_for("alice", "9", 0, 5000, 0).await.unwrap(),
            Redemption::First
        );
    }

    #[test]
    fn large_stores_are_sharded_and_stay_within_their_cap() {
        let store = MemoryRevocationStore::with_capacity(SHARDED_FROM);
        assert_eq!(store.inner.denied.len(), SHARDS);
        let mut full = 0;
        for i in 0..2 * SHARDED_FROM {
            if store
                .revoke_now(Revocable::Token(&i.to_string()), u64::MAX)
                .is_err()
            {
                full += 1;
            }
        }
        assert!(store.denied_len() <= SHARDED_FROM);
        assert!(full >= SHARDED_FROM, "a full store refuses, fails closed");
    }
}
