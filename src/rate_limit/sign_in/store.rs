//! The sign-in limiter's store: the [`SignInStore`] trait a shared backend
//! (Redis) can implement, and [`MemorySignInStore`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Future};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use parking_lot::Mutex;

use super::super::key::IpKey;
use super::super::limiter::{Attempt, Hashed, Limiter, LimiterClock};
use super::super::quota::Quota;

/// A boxed future of a [`SignInStore`].
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The budgets of the sign-in limiter. See the [module docs](super).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Budget {
    /// Attempts carrying a valid device cookie for the account: per device.
    Device,
    /// Attempts for an account from a client that signed in to it
    /// recently, without a device cookie: per (client, account).
    Known,
    /// Untrusted attempts: per (client, account).
    Pair,
    /// Untrusted attempts: per account, from every client.
    Account,
    /// Untrusted attempts: per client, for every account.
    Client,
}

impl Budget {
    /// Every budget.
    pub const ALL: [Budget; 5] = [
        Budget::Device,
        Budget::Known,
        Budget::Pair,
        Budget::Account,
        Budget::Client,
    ];

    /// The policy name in the `RateLimit` headers.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Device => "sign-in-device",
            Budget::Known => "sign-in-known",
            Budget::Pair => "sign-in",
            Budget::Account => "sign-in-account",
            Budget::Client => "sign-in-client",
        }
    }

    /// The default quota: see the [module docs](super#budgets).
    pub fn default_quota(self) -> Quota {
        let (burst, every) = match self {
            // The seed's "5 failures per 15 minutes".
            Budget::Device | Budget::Known | Budget::Pair => (5, 15 * 60),
            // 20 failures, then one every 3 minutes (20 an hour).
            Budget::Account => (20, 3 * 60),
            // 100 failures, then one every 9 seconds (100 per 15 minutes).
            Budget::Client => (100, 9),
        };
        Quota::with_period(Duration::from_secs(every))
            .and_then(|q| q.allow_burst(burst))
            .expect("the default quotas are valid")
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One key of one budget, as the limiter hands it to the store.
///
/// `key` is the raw key material (it may contain the account name and the
/// client address): a store must keep only a keyed hash of it, never the
/// bytes. `network` groups keys for per-group caps (see
/// [`max_keys_per_network`](super::super::LimiterBuilder::max_keys_per_network)):
/// the IPv6 `/48` or IPv4 `/24` of client-keyed budgets ([`Budget::Pair`],
/// [`Budget::Client`]), and a keyed group of the account for trusted
/// budgets ([`Budget::Device`], [`Budget::Known`]), so that one account's
/// devices cannot fill the cap.
#[derive(Clone, Copy, Debug)]
pub struct BudgetKey<'a> {
    /// The budget.
    pub budget: Budget,
    /// The key material.
    pub key: &'a [u8],
    /// The group of the key, if any.
    pub network: Option<IpKey>,
}

/// A budget refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The budget that refused.
    pub budget: Budget,
    /// How long until one more attempt fits (assuming the attempts in
    /// flight fail).
    pub retry_after: Duration,
    /// The failures recorded leave room: only attempts in flight fill the
    /// budget, so the attempt may wait for them to settle.
    pub busy: bool,
}

/// The store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("sign-in store unavailable: {0}")]
pub struct StoreError(pub Box<dyn std::error::Error + Send + Sync>);

/// Why [`SignInStore::hold`] held nothing.
#[derive(Debug)]
pub enum HoldError {
    /// A budget is spent.
    Limited(Limited),
    /// The store could not answer: the attempt is refused (`503`).
    Unavailable(StoreError),
}

/// Units held by an attempt in flight, one per budget key. Settle them
/// once the outcome is known; dropping them unsettled must count as a
/// failure (fail closed).
pub trait HeldUnits: Send + Sync + fmt::Debug {
    /// Records a failure in every budget (`failed`), or gives the units
    /// back. A remote store may send this in the background.
    fn settle(self: Box<Self>, failed: bool);
}

/// Where the sign-in limiter keeps its budgets and the clients that signed
/// in recently. [`MemorySignInStore`] keeps them in this process; a shared
/// backend (Redis: a Lua script holding the units of every key at once,
/// with a TTL on held units so that a crashed server frees them) implements
/// the same trait, so that every server of a fleet counts the same
/// attempts.
///
/// Every method must be bounded in time: the limiter refuses with `503`
/// when a future fails, never lets an attempt through.
pub trait SignInStore: Send + Sync + fmt::Debug + 'static {
    /// The quota of `budget`.
    fn quota(&self, budget: Budget) -> Quota;

    /// Holds one unit of each key, all or none, in order: the first budget
    /// that cannot fit one more unit (its failures plus the units in
    /// flight) refuses, and the units held so far are given back.
    fn hold<'a>(
        &'a self,
        keys: &'a [BudgetKey<'a>],
    ) -> StoreFuture<'a, Result<Box<dyn HeldUnits>, HoldError>>;

    /// Remembers that `key` (a client and an account) signed in
    /// successfully, for `ttl`. A store may forget entries early to stay
    /// bounded (the client is then untrusted again: fail safe).
    fn remember(&self, key: &[u8], ttl: Duration);

    /// Whether `key` signed in successfully within its `ttl`.
    fn is_known<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>>;
}

/// The default cap on tracked keys per budget, and on remembered clients.
pub const DEFAULT_SIGN_IN_KEYS: usize = 100_000;

/// Shards of the remembered clients.
const KNOWN_SHARDS: usize = 16;

/// [`SignInStore`] in this process: one [`Limiter`] per budget (GCRA,
/// units held while attempts run, a hard cap on tracked keys with
/// per-network caps and overflow budgets), and a bounded table of the
/// clients that signed in recently.
///
/// ```
/// use tower_auth::rate_limit::sign_in::{Budget, MemorySignInStore};
/// use tower_auth::rate_limit::Quota;
///
/// # fn main() -> Result<(), tower_auth::rate_limit::QuotaError> {
/// let store = MemorySignInStore::builder()
///     .quota(Budget::Account, Quota::per_hour(10)?)
///     .max_keys(50_000)
///     .build();
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MemorySignInStore {
    limiters: [Limiter; 5],
    known: Known,
}

/// Builds a [`MemorySignInStore`].
#[derive(Debug)]
pub struct MemorySignInStoreBuilder {
    quotas: [Quota; 5],
    max_keys: usize,
    max_known: usize,
    clock: LimiterClock,
}

impl MemorySignInStoreBuilder {
    /// The quota of `budget` (defaults: [`Budget::default_quota`]).
    pub fn quota(mut self, budget: Budget, quota: Quota) -> Self {
        self.quotas[budget.index()] = quota;
        self
    }

    /// The cap on tracked keys of each budget (default
    /// [`DEFAULT_SIGN_IN_KEYS`]). At the cap, new keys share overflow
    /// budgets of one key's quota (per network for client keys).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The cap on remembered (client, account) successes (default
    /// [`DEFAULT_SIGN_IN_KEYS`]). Only successes are remembered, so a
    /// flood of failures cannot push them out; at the cap the entry closest
    /// to expiry of its shard is forgotten.
    pub fn max_known(mut self, max_known: usize) -> Self {
        self.max_known = max_known;
        self
    }

    /// The clock of the budgets and of the remembered successes, e.g.
    /// governor's `FakeRelativeClock` in tests.
    pub fn clock(mut self, clock: impl Into<LimiterClock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemorySignInStore {
        let limiter = |budget: Budget| {
            let quota = self.quotas[budget.index()];
            Limiter::builder(quota)
                .max_keys(self.max_keys)
                // Every unit is a password guess: the overflow budget is one
                // key's quota, not sixteen.
                .overflow_quota(quota)
                .clock(self.clock.clone())
                .build()
        };
        MemorySignInStore {
            limiters: Budget::ALL.map(limiter),
            known: Known::new(self.max_known, self.clock),
        }
    }
}

impl Default for MemorySignInStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySignInStore {
    /// A store with the default quotas and caps.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> MemorySignInStoreBuilder {
        MemorySignInStoreBuilder {
            quotas: Budget::ALL.map(Budget::default_quota),
            max_keys: DEFAULT_SIGN_IN_KEYS,
            max_known: DEFAULT_SIGN_IN_KEYS,
            clock: LimiterClock::default(),
        }
    }

    /// The limiter of `budget`, e.g. to read its size.
    pub fn limiter(&self, budget: Budget) -> &Limiter {
        &self.limiters[budget.index()]
    }

    /// How many (client, account) successes are remembered.
    pub fn known_len(&self) -> usize {
        self.known.len()
    }

    /// [`SignInStore::hold`], synchronously.
    fn hold_now(&self, keys: &[BudgetKey<'_>]) -> Result<MemoryHeld, Limited> {
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            let limiter = self.limiter(key.budget);
            let hashed = Hashed {
                key: limiter.hash(key.key),
                network: key.network,
            };
            match limiter.attempt_hashed(hashed) {
                Ok(attempt) => held.push(attempt),
                Err(denied) => {
                    held.into_iter().for_each(Attempt::release);
                    return Err(Limited {
                        budget: key.budget,
                        retry_after: denied.retry_after(),
                        busy: limiter.state_of(hashed).remaining() > 0,
                    });
                }
            }
        }
        Ok(MemoryHeld(held))
    }
}

impl SignInStore for MemorySignInStore {
    fn quota(&self, budget: Budget) -> Quota {
        self.limiter(budget).quota()
    }

    fn hold<'a>(
        &'a self,
        keys: &'a [BudgetKey<'a>],
    ) -> StoreFuture<'a, Result<Box<dyn HeldUnits>, HoldError>> {
        let held = self
            .hold_now(keys)
            .map(|held| Box::new(held) as Box<dyn HeldUnits>)
            .map_err(HoldError::Limited);
        Box::pin(ready(held))
    }

    fn remember(&self, key: &[u8], ttl: Duration) {
        self.known.insert(key, ttl);
    }

    fn is_known<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>> {
        Box::pin(ready(Ok(self.known.contains(key))))
    }
}

/// The units of a [`MemorySignInStore`]: dropping an [`Attempt`] counts
/// it as a failure.
#[derive(Debug)]
struct MemoryHeld(Vec<Attempt>);

impl HeldUnits for MemoryHeld {
    fn settle(self: Box<Self>, failed: bool) {
        for attempt in self.0 {
            if failed {
                attempt.fail();
            } else {
                attempt.release();
            }
        }
    }
}

/// Remembered successes: keyed hash -> expiry (nanoseconds of the clock).
type KnownMap = HashMap<u64, u64>;

struct Known {
    shards: Box<[Mutex<KnownMap>]>,
    per_shard: usize,
    hasher: RandomState,
    clock: LimiterClock,
    start: governor::nanos::Nanos,
}

impl Known {
    fn new(max: usize, clock: LimiterClock) -> Self {
        let start = clock.now();
        Known {
            shards: (0..KNOWN_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard: max.div_ceil(KNOWN_SHARDS),
            hasher: RandomState::new(),
            clock,
            start,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).into()
    }

    fn shard(&self, key: &[u8]) -> (u64, &Mutex<KnownMap>) {
        let hash = self.hasher.hash_one(key);
        // The low bits pick the shard; the map rehashes the whole digest.
        let shard = &self.shards[(hash as usize) % KNOWN_SHARDS];
        (hash, shard)
    }

    fn insert(&self, key: &[u8], ttl: Duration) {
        if self.per_shard == 0 {
            return;
        }
        let now = self.now();
        let expiry = now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
        let (hash, shard) = self.shard(key);
        let mut map = shard.lock();
        if !map.contains_key(&hash) && map.len() >= self.per_shard {
            map.retain(|_, until| *until > now);
            if map.len() >= self.per_shard {
                // Forget the entry closest to expiry.
                if let Some(oldest) = map.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(hash, expiry);
    }

    fn contains(&self, key: &[u8]) -> bool {
        let now = self.now();
        let (hash, shard) = self.shard(key);
        shard.lock().get(&hash).is_some_and(|until| *until > now)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

impl fmt::Debug for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Known")
            .field("len", &self.len())
            .field("max", &(self.per_shard * KNOWN_SHARDS))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn key(budget: Budget, key: &[u8]) -> BudgetKey<'_> {
        BudgetKey {
            budget,
            key,
            network: None,
        }
    }

    #[test]
    fn hold_is_all_or_nothing_and_says_which_budget_refused() {
        let store = MemorySignInStore::builder()
            .quota(Budget::Account, Quota::per_hour(1).unwrap())
            .clock(FakeRelativeClock::default())
            .build();
        let keys = [key(Budget::Pair, b"p"), key(Budget::Account, b"a")];
        let first = store.hold_now(&keys).unwrap();
        let refused = store.hold_now(&keys).unwrap_err();
        assert_eq!(refused.budget, Budget::Account);
        assert!(refused.busy, "only the attempt in flight fills it");
        // The pair unit taken before the refusal was given back.
        assert_eq!(store.limiter(Budget::Pair).state(&b"p"[..]).remaining(), 5);
        Box::new(first).settle(true);
        let refused = store.hold_now(&keys).unwrap_err();
        assert!(!refused.busy, "a failure is recorded now");
        assert_eq!(refused.retry_after, Duration::from_secs(3600));
        assert_eq!(store.limiter(Budget::Pair).state(&b"p"[..]).remaining(), 4);
    }

    #[test]
    fn known_entries_expire_and_stay_bounded() {
        let clock = FakeRelativeClock::default();
        let store = MemorySignInStore::builder()
            .max_known(32)
            .clock(clock.clone())
            .build();
        store.remember(b"alice", Duration::from_secs(60));
        assert!(store.known.contains(b"alice"));
        assert!(!store.known.contains(b"bob"));
        clock.advance(Duration::from_secs(61));
        assert!(!store.known.contains(b"alice"));
        for i in 0u32..10_000 {
            store.remember(&i.to_be_bytes(), Duration::from_secs(60));
        }
        assert!(store.known_len() <= 32, "{}", store.known_len());
        // The newest are kept.
        assert!(store.known.contains(&9_999u32.to_be_bytes()));
        let off = MemorySignInStore::builder().max_known(0).build();
        off.remember(b"alice", Duration::from_secs(60));
        assert!(!off.known.contains(b"alice"));
    }
}
