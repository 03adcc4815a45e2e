//! The sign-in limiter's store: the [`SignInStore`] trait a shared backend
//! (Redis) can implement, and [`MemorySignInStore`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{ready, Future};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use parking_lot::Mutex;

use super::super::key::IpKey;
use super::super::limiter::{Attempt, Hashed, KeyState, Limiter, LimiterClock};
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

    /// Remembers that `key.key` (a client and an account) signed in
    /// successfully, for `ttl`. `key.network` is the account's group: a
    /// store should cap the entries of one group, so that one account
    /// cannot push the others out. A store may forget entries early to
    /// stay bounded (the client is then untrusted again: fail safe).
    fn remember(&self, key: BudgetKey<'_>, ttl: Duration);

    /// Whether `key` signed in successfully within its `ttl`.
    fn is_known<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>>;

    /// What `key` has left (failures only, units in flight not deducted),
    /// if the store can tell without a round trip: for
    /// [`remaining_headers`](super::SignInLimiterBuilder::remaining_headers).
    /// `None` by default.
    fn remaining(&self, key: BudgetKey<'_>) -> Option<KeyState> {
        let _ = key;
        None
    }
}

/// The default cap on tracked keys per budget, and on remembered clients.
pub const DEFAULT_SIGN_IN_KEYS: usize = 100_000;

/// The default cap on remembered addresses per account.
pub const DEFAULT_KNOWN_PER_ACCOUNT: usize = 64;

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
    known_per_account: usize,
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
    /// flood of failures cannot push them out; at the cap the expired
    /// entries, else the entry closest to expiry, are forgotten.
    pub fn max_known(mut self, max_known: usize) -> Self {
        self.max_known = max_known;
        self
    }

    /// The cap on remembered addresses per account (default
    /// [`DEFAULT_KNOWN_PER_ACCOUNT`]): past it, the account's oldest is
    /// forgotten. So someone signing in to their own account from very
    /// many addresses cannot push other accounts' addresses out.
    pub fn max_known_per_account(mut self, max: usize) -> Self {
        self.known_per_account = max;
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
            known: Known::new(self.max_known, self.known_per_account, self.clock),
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
            known_per_account: DEFAULT_KNOWN_PER_ACCOUNT,
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

    fn remember(&self, key: BudgetKey<'_>, ttl: Duration) {
        self.known.insert(key.key, key.network, ttl);
    }

    fn is_known<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>> {
        Box::pin(ready(Ok(self.known.contains(key))))
    }

    fn remaining(&self, key: BudgetKey<'_>) -> Option<KeyState> {
        let limiter = self.limiter(key.budget);
        Some(limiter.state_of(Hashed {
            key: limiter.hash(key.key),
            network: key.network,
        }))
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

/// A remembered success: its expiry (nanoseconds of the clock) and its
/// account group.
#[derive(Clone, Copy)]
struct KnownEntry {
    until: u64,
    group: u64,
}

/// Remembered successes, and per account group the keys in the order they
/// were first remembered. One lock: successes are rare next to attempts,
/// and a lookup is one hash.
#[derive(Default)]
struct KnownTable {
    entries: HashMap<u64, KnownEntry>,
    groups: HashMap<u64, VecDeque<u64>>,
}

impl KnownTable {
    fn remove(&mut self, key: u64) {
        let Some(entry) = self.entries.remove(&key) else {
            return;
        };
        if let Some(keys) = self.groups.get_mut(&entry.group) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.groups.remove(&entry.group);
            }
        }
    }

    /// Forgets the expired keys of `group`.
    fn purge_group(&mut self, group: u64, now: u64) {
        let expired: Vec<u64> = self.groups.get(&group).map_or_else(Vec::new, |keys| {
            keys.iter()
                .copied()
                .filter(|k| self.entries.get(k).is_none_or(|e| e.until <= now))
                .collect()
        });
        for key in expired {
            self.remove(key);
        }
    }
}

struct Known {
    table: Mutex<KnownTable>,
    max: usize,
    per_group: usize,
    hasher: RandomState,
    clock: LimiterClock,
    start: governor::nanos::Nanos,
}

impl Known {
    fn new(max: usize, per_group: usize, clock: LimiterClock) -> Self {
        let start = clock.now();
        Known {
            table: Mutex::new(KnownTable::default()),
            max,
            per_group,
            hasher: RandomState::new(),
            clock,
            start,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).into()
    }

    fn insert(&self, key: &[u8], group: Option<IpKey>, ttl: Duration) {
        if self.max == 0 || self.per_group == 0 {
            return;
        }
        let now = self.now();
        let until = now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
        let key = self.hasher.hash_one(key);
        let group = group.map_or(0, |g| self.hasher.hash_one((KNOWN_GROUP_TAG, g)));
        let mut table = self.table.lock();
        if let Some(entry) = table.entries.get_mut(&key) {
            entry.until = until;
            return;
        }
        // The account's own share: its oldest key makes room.
        if table
            .groups
            .get(&group)
            .is_some_and(|k| k.len() >= self.per_group)
        {
            table.purge_group(group, now);
            let oldest = table
                .groups
                .get(&group)
                .filter(|k| k.len() >= self.per_group)
                .and_then(|k| k.front().copied());
            if let Some(oldest) = oldest {
                table.remove(oldest);
            }
        }
        // The global cap: expired keys, else the key closest to expiry.
        if table.entries.len() >= self.max {
            let expired: Vec<u64> = table
                .entries
                .iter()
                .filter(|(_, e)| e.until <= now)
                .map(|(k, _)| *k)
                .collect();
            for k in expired {
                table.remove(k);
            }
            if table.entries.len() >= self.max {
                let closest = table.entries.iter().min_by_key(|(_, e)| e.until);
                if let Some(closest) = closest.map(|(k, _)| *k) {
                    table.remove(closest);
                }
            }
        }
        table.entries.insert(key, KnownEntry { until, group });
        table.groups.entry(group).or_default().push_back(key);
    }

    fn contains(&self, key: &[u8]) -> bool {
        let now = self.now();
        let key = self.hasher.hash_one(key);
        self.table
            .lock()
            .entries
            .get(&key)
            .is_some_and(|e| e.until > now)
    }

    fn len(&self) -> usize {
        self.table.lock().entries.len()
    }
}

/// Hashed before an account group, so that its digest differs from a key's.
const KNOWN_GROUP_TAG: u32 = 0x0067_7270;

impl fmt::Debug for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Known")
            .field("len", &self.len())
            .field("max", &self.max)
            .field("per_account", &self.per_group)
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
    fn known_entries_expire_and_stay_bounded_per_account_and_in_total() {
        use std::net::{IpAddr, Ipv6Addr};
        let group = |g: u128| Some(IpKey::from(IpAddr::V6(Ipv6Addr::from(g << 80))));
        let minute = Duration::from_secs(60);
        let clock = FakeRelativeClock::default();
        let store = MemorySignInStore::builder()
            .max_known(32)
            .max_known_per_account(8)
            .clock(clock.clone())
            .build();
        let known = &store.known;
        known.insert(b"alice", group(1), minute);
        assert!(known.contains(b"alice"));
        assert!(!known.contains(b"bob"));
        clock.advance(Duration::from_secs(61));
        assert!(!known.contains(b"alice"));
        // One account keeps at most 8: its oldest go first.
        for i in 0u32..100 {
            known.insert(&i.to_be_bytes(), group(2), minute);
        }
        let kept: Vec<u32> = (0u32..100)
            .filter(|i| known.contains(&i.to_be_bytes()))
            .collect();
        assert_eq!(kept, (92..100).collect::<Vec<_>>());
        // ... and did not push out another account's.
        known.insert(b"carol", group(3), minute);
        for i in 100u32..200 {
            known.insert(&i.to_be_bytes(), group(2), minute);
        }
        assert!(known.contains(b"carol"));
        // Many accounts: at most 32 in total, the newest kept.
        for i in 0u32..1_000 {
            known.insert(
                &(i + 10_000).to_be_bytes(),
                group(1_000 + u128::from(i)),
                minute,
            );
            assert!(known.len() <= 32);
        }
        assert!(known.contains(&10_999u32.to_be_bytes()));
        let table = known.table.lock();
        let in_groups: usize = table.groups.values().map(VecDeque::len).sum();
        assert_eq!(in_groups, table.entries.len(), "groups and entries agree");
        drop(table);
        let off = MemorySignInStore::builder().max_known(0).build();
        off.known.insert(b"alice", group(1), minute);
        assert!(!off.known.contains(b"alice"));
    }
}
