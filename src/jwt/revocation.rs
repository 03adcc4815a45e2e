//! Revocation: a deny-list of token ids (`jti`) and refresh families, and
//! the one-time use of refresh tokens.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
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

    /// Answers [`is_revoked`](RevocationStore::is_revoked) without awaiting,
    /// when the store can (an in-memory store can; a network store cannot and
    /// returns `None`, the default). Lets the authenticator skip allocating a
    /// future on the hot path.
    fn is_revoked_now(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        let _ = what;
        None
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
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// Object-safe view of a [`RevocationStore`], so authenticators need no
/// type parameter for it.
pub(crate) trait DynRevocationStore: Send + Sync + 'static {
    fn revoke_dyn<'a>(&'a self, what: Revocable<'a>, until: u64) -> BoxFut<'a, ()>;
    fn is_revoked_dyn<'a>(&'a self, what: Revocable<'a>) -> BoxFut<'a, bool>;
    fn advance_dyn<'a>(&'a self, family: &'a str, generation: u64, until: u64) -> BoxFut<'a, bool>;
    fn advance_with_grace_dyn<'a>(
        &'a self,
        family: &'a str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> BoxFut<'a, Redemption>;
    fn is_revoked_now_dyn(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>>;
}

impl<S: RevocationStore> DynRevocationStore for S {
    fn revoke_dyn<'a>(&'a self, what: Revocable<'a>, until: u64) -> BoxFut<'a, ()> {
        Box::pin(self.revoke(what, until))
    }
    fn is_revoked_dyn<'a>(&'a self, what: Revocable<'a>) -> BoxFut<'a, bool> {
        Box::pin(self.is_revoked(what))
    }
    fn advance_dyn<'a>(&'a self, family: &'a str, generation: u64, until: u64) -> BoxFut<'a, bool> {
        Box::pin(self.advance(family, generation, until))
    }
    fn advance_with_grace_dyn<'a>(
        &'a self,
        family: &'a str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> BoxFut<'a, Redemption> {
        Box::pin(self.advance_with_grace(family, generation, until, grace))
    }
    fn is_revoked_now_dyn(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        self.is_revoked_now(what)
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

/// An in-memory [`RevocationStore`] for one server instance.
///
/// Memory is bounded: entries are dropped once the tokens they concern have
/// expired (checked on every write once the store reaches half its
/// capacity), and a store full of live entries refuses new ones with an
/// error rather than forgetting a revocation: a logout then fails (`503`)
/// instead of silently leaving a token valid. The default capacity is one
/// million entries (about 100 MB at worst).
///
/// Cloning shares the same entries.
#[derive(Clone)]
pub struct MemoryRevocationStore {
    inner: Arc<Mutex<Entries>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// Revoked tokens and revoked families (each mapped to the time after which
/// the entry is useless), and the last redeemed refresh generation of each
/// family.
struct Entries {
    revoked: [HashMap<Box<str>, u64>; 2],
    generations: HashMap<Box<str>, Generation>,
    capacity: usize,
    /// Writes since the last purge.
    writes: usize,
}

/// A family's latest redeemed refresh generation.
struct Generation {
    last: u64,
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

impl Entries {
    fn len(&self) -> usize {
        self.revoked.iter().map(HashMap::len).sum::<usize>() + self.generations.len()
    }

    fn purge(&mut self, now: u64) {
        for map in &mut self.revoked {
            map.retain(|_, until| *until > now);
        }
        self.generations.retain(|_, g| g.until > now);
        self.writes = 0;
    }

    /// Makes room for one entry, purging expired ones when worthwhile;
    /// `Err` when the store is full of live entries.
    fn reserve(&mut self, now: u64) -> Result<(), MemoryStoreError> {
        self.writes += 1;
        let capacity = self.capacity;
        // Purge when the store is large and enough writes happened since the
        // last purge to pay for the scan (amortized O(1) per write).
        if self.len() >= capacity / 2 && self.writes >= capacity / 4 {
            self.purge(now);
        }
        if self.len() >= capacity {
            self.purge(now);
            if self.len() >= capacity {
                return Err(MemoryStoreError::Full(capacity));
            }
        }
        Ok(())
    }
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRevocationStore {
    /// A store with room for one million live entries.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000)
    }

    /// A store with room for `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryRevocationStore {
            inner: Arc::new(Mutex::new(Entries {
                revoked: Default::default(),
                generations: HashMap::new(),
                capacity: capacity.max(1),
                writes: 0,
            })),
            clock: Arc::new(super::unix_now),
        }
    }

    /// Uses `clock` (seconds since the epoch) instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of entries, expired ones included until the next purge.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries and returns how many were dropped.
    pub fn purge_expired(&self) -> usize {
        let now = (self.clock)();
        let mut entries = self.lock();
        let before = entries.len();
        entries.purge(now);
        before - entries.len()
    }

    fn revoke_now(&self, what: Revocable<'_>, until: u64) -> Result<(), MemoryStoreError> {
        let now = (self.clock)();
        let (map, key) = slot(what);
        let mut entries = self.lock();
        if let Some(existing) = entries.revoked[map].get_mut(key) {
            if *existing > now {
                *existing = until.max(*existing);
                return Ok(());
            }
        }
        entries.reserve(now)?;
        entries.revoked[map].insert(key.into(), until);
        Ok(())
    }

    fn advance_now(
        &self,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> Result<Redemption, MemoryStoreError> {
        let now = (self.clock)();
        let mut entries = self.lock();
        if let Some(g) = entries.generations.get_mut(family) {
            if g.until > now {
                if generation > g.last {
                    g.last = generation;
                    g.at = now;
                    g.until = until.max(g.until);
                    return Ok(Redemption::First);
                }
                let retry = generation == g.last && now < g.at.saturating_add(grace);
                return Ok(if retry {
                    Redemption::Retry
                } else {
                    Redemption::Reuse
                });
            }
        }
        entries.reserve(now)?;
        entries.generations.insert(
            family.into(),
            Generation {
                last: generation,
                at: now,
                until,
            },
        );
        Ok(Redemption::First)
    }

    fn revoked(&self, what: Revocable<'_>) -> bool {
        let now = (self.clock)();
        let (map, key) = slot(what);
        self.lock().revoked[map]
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
            self.advance_now(family, generation, until, 0)
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
            self.advance_now(family, generation, until, grace)
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
}
