//! [`Limiter`]: a governor keyed rate limiter over the bounded store.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock, QuantaClock, QuantaInstant, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::RateLimiter;

use super::quota::Quota;
use super::store::Store;

/// The default cap on tracked keys per limiter.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The clock of a [`Limiter`]: the fast monotonic clock governor uses by
/// default, or governor's [`FakeRelativeClock`] for tests.
///
/// ```
/// use std::time::Duration;
/// use tower_auth::rate_limit::governor::clock::FakeRelativeClock;
/// use tower_auth::rate_limit::{Limiter, LimiterClock, Quota};
///
/// let clock = FakeRelativeClock::default();
/// let limiter = Limiter::builder(Quota::per_minute(1).unwrap())
///     .clock(LimiterClock::fake(clock.clone()))
///     .build();
/// assert!(limiter.check("alice").is_ok());
/// assert!(limiter.check("alice").is_err());
/// clock.advance(Duration::from_secs(60));
/// assert!(limiter.check("alice").is_ok());
/// ```
#[derive(Clone)]
pub struct LimiterClock(ClockKind);

#[derive(Clone)]
enum ClockKind {
    Monotonic {
        clock: QuantaClock,
        origin: QuantaInstant,
    },
    Fake(FakeRelativeClock),
}

impl LimiterClock {
    /// governor's default clock (quanta: TSC-based where available, the OS
    /// monotonic clock otherwise).
    pub fn monotonic() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        LimiterClock(ClockKind::Monotonic { clock, origin })
    }

    /// A clock that only moves when you
    /// [`advance`](FakeRelativeClock::advance) it. Clones of a
    /// `FakeRelativeClock` share their time.
    pub fn fake(clock: FakeRelativeClock) -> Self {
        LimiterClock(ClockKind::Fake(clock))
    }
}

impl Default for LimiterClock {
    fn default() -> Self {
        Self::monotonic()
    }
}

impl From<FakeRelativeClock> for LimiterClock {
    fn from(clock: FakeRelativeClock) -> Self {
        Self::fake(clock)
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match &self.0 {
            ClockKind::Monotonic { clock, origin } => clock.now().duration_since(*origin),
            ClockKind::Fake(clock) => clock.now(),
        }
    }
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ClockKind::Monotonic { .. } => f.write_str("LimiterClock::Monotonic"),
            ClockKind::Fake(c) => f.debug_tuple("LimiterClock::Fake").field(c).finish(),
        }
    }
}

/// What a key has left: see [`Limiter::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyState {
    remaining: u32,
    next_in: Duration,
}

impl KeyState {
    /// How many more requests the key may make right now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the key has one more request available (zero when
    /// its whole burst is available).
    pub fn next_in(&self) -> Duration {
        self.next_in
    }
}

/// The outcome of a request over its key's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited, retry in {retry_after:?}")]
pub struct Denied {
    retry_after: Duration,
}

impl Denied {
    /// How long until the key may make one more request.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Builds a [`Limiter`]. See [`Limiter::builder`].
#[derive(Debug)]
pub struct LimiterBuilder {
    quota: Quota,
    max_keys: usize,
    clock: Option<LimiterClock>,
}

impl LimiterBuilder {
    /// Caps the number of keys the limiter tracks (default
    /// [`DEFAULT_MAX_KEYS`]). See [`Limiter`] for the behaviour at the cap.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Uses `clock` instead of the monotonic clock.
    pub fn clock(mut self, clock: impl Into<LimiterClock>) -> Self {
        self.clock = Some(clock.into());
        self
    }

    /// Builds the limiter.
    pub fn build(self) -> Limiter {
        let clock = self.clock.unwrap_or_default();
        let store = Store::new(self.max_keys);
        let governor = RateLimiter::<u64, Store, LimiterClock, NoOpMiddleware<Nanos>>::new(
            self.quota.to_governor(),
            store.clone(),
            clock,
        );
        // Read after governor took its own start time: our "now" is never
        // ahead of governor's, so sweeps and estimates err on the safe side.
        let start = governor.clock().now();
        let t = self.quota.replenish_interval().as_nanos() as u64;
        Limiter {
            inner: Arc::new(Inner {
                governor,
                store,
                hasher: RandomState::new(),
                quota: self.quota,
                start,
                t,
                tau: t.saturating_mul(u64::from(self.quota.burst()) - 1),
            }),
        }
    }
}

/// A keyed rate limiter: governor's GCRA over a state store with a hard cap
/// on tracked keys. Cloning is a reference-count increment; clones share
/// their state.
///
/// Keys are anything [`Hash`]: they are hashed with a per-limiter random
/// SipHash key, and only that 64-bit digest is kept, never the key itself
/// (an API key, a user id).
///
/// # Memory
///
/// At most [`max_keys`](LimiterBuilder::max_keys) keys are tracked (about
/// 40 bytes each at worst). A key whose state is the same as a fresh one
/// (idle for one replenish interval) is *idle* and may be dropped:
///
/// * every so many new keys (`max_keys / shards`, at least 16) one shard of
///   the store is swept of idle keys, on the request path; the cost is
///   O(1) amortized per new key;
/// * [`purge`](Limiter::purge) sweeps every shard; call it from a
///   background task if you want memory back during quiet periods;
/// * **at the cap**, a new key is not tracked: it shares one overflow
///   budget (the same quota) with every other untracked key until sweeps
///   free room. A flood of distinct keys therefore gets one key's quota in
///   total, keys already tracked keep their own budget, memory never grows
///   and nothing panics. The limit is never bypassed: evicting a busy key
///   would hand it a fresh budget, so busy keys are never evicted.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    governor: RateLimiter<u64, Store, LimiterClock, NoOpMiddleware<Nanos>>,
    store: Store,
    hasher: RandomState,
    quota: Quota,
    start: Nanos,
    /// Weight of one request, in nanoseconds.
    t: u64,
    /// Burst tolerance, in nanoseconds: `t × (burst - 1)`.
    tau: u64,
}

impl Limiter {
    /// A limiter with the default options.
    pub fn new(quota: Quota) -> Self {
        Self::builder(quota).build()
    }

    /// A builder, to set the key cap or the clock.
    pub fn builder(quota: Quota) -> LimiterBuilder {
        LimiterBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            clock: None,
        }
    }

    /// Lets one request of `key` through, or says how long to wait.
    ///
    /// # Errors
    ///
    /// [`Denied`] when the key's quota is spent.
    #[inline]
    pub fn check<K: Hash + ?Sized>(&self, key: &K) -> Result<(), Denied> {
        self.check_hashed(self.hash(key))
    }

    /// What `key` has left, without consuming anything.
    pub fn state<K: Hash + ?Sized>(&self, key: &K) -> KeyState {
        self.state_of(self.hash(key))
    }

    /// Gives back the unit a request of `key` consumed, e.g. when a login
    /// attempt turned out to succeed. Untracked keys are not refunded.
    pub fn refund<K: Hash + ?Sized>(&self, key: &K) {
        self.refund_hashed(self.hash(key));
    }

    /// Drops every idle key now. The request path already does this
    /// incrementally; see [Memory](Limiter#memory).
    pub fn purge(&self) -> usize {
        self.inner.store.sweep_all(self.drop_below())
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap on tracked keys.
    pub fn max_keys(&self) -> usize {
        self.inner.store.max_keys()
    }

    /// How many checks were measured against the shared overflow budget
    /// because the store was full.
    pub fn overflowed(&self) -> u64 {
        self.inner.store.overflowed()
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    #[inline]
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    /// The hot path: no state is read back after the decision.
    #[inline]
    pub(crate) fn check_hashed(&self, key: u64) -> Result<(), Denied> {
        let inner = &*self.inner;
        let outcome = inner.governor.check_key(&key);
        if inner.store.take_sweep_due() {
            inner.store.sweep_next(self.drop_below());
        }
        outcome.map_err(|not_until| Denied {
            retry_after: not_until.wait_time_from(inner.governor.clock().now()),
        })
    }

    pub(crate) fn refund_hashed(&self, key: u64) {
        self.inner.store.refund(key, self.inner.t);
    }

    /// What `key` has left right now, read back from the store.
    pub(crate) fn state_of(&self, key: u64) -> KeyState {
        let inner = &*self.inner;
        let burst = inner.quota.burst();
        let Some(tat) = inner.store.tat(key) else {
            return KeyState {
                remaining: burst,
                next_in: Duration::ZERO,
            };
        };
        let now = self.elapsed();
        // GCRA: a request conforms while `now >= tat - tau`; each `t` more
        // adds one to what is left, up to the burst.
        let slack = now
            .saturating_add(inner.tau)
            .saturating_add(inner.t)
            .saturating_sub(tat);
        let remaining = (slack / inner.t).min(u64::from(burst)) as u32;
        let next_in = if remaining >= burst {
            Duration::ZERO
        } else {
            Duration::from_nanos(inner.t - slack % inner.t)
        };
        KeyState { remaining, next_in }
    }

    /// Nanoseconds since the limiter was built, never ahead of governor's
    /// own reading.
    fn elapsed(&self) -> u64 {
        let now = self.inner.governor.clock().now();
        now.duration_since(self.inner.start).into()
    }

    /// Keys whose TAT is at or before this are idle.
    fn drop_below(&self) -> u64 {
        self.elapsed().saturating_sub(self.inner.t)
    }
}

impl From<Quota> for Limiter {
    fn from(quota: Quota) -> Self {
        Limiter::new(quota)
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("quota", &self.inner.quota)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(quota: Quota, max_keys: usize) -> (Limiter, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::builder(quota)
            .max_keys(max_keys)
            .clock(clock.clone())
            .build();
        (limiter, clock)
    }

    #[test]
    fn burst_then_denied_then_recovers_with_the_fake_clock() {
        let (limiter, clock) = fake(Quota::per_minute(3).unwrap(), 10);
        let remaining: Vec<_> = (0..3)
            .map(|_| {
                limiter.check("k").unwrap();
                limiter.state("k").remaining()
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let denied = limiter.check("k").unwrap_err();
        assert_eq!(denied.retry_after(), Duration::from_secs(20));
        clock.advance(Duration::from_secs(19));
        assert!(limiter.check("k").is_err());
        clock.advance(Duration::from_secs(1));
        limiter.check("k").unwrap();
        assert_eq!(limiter.state("k").remaining(), 0);
        // other keys are independent
        assert_eq!(limiter.state("other").remaining(), 3);
    }

    #[test]
    fn next_in_is_exact() {
        let (limiter, clock) = fake(Quota::per_minute(3).unwrap(), 10);
        let state = |l: &Limiter| {
            let s = l.state("k");
            (s.remaining(), s.next_in())
        };
        assert_eq!(state(&limiter), (3, Duration::ZERO));
        limiter.check("k").unwrap();
        assert_eq!(state(&limiter), (2, Duration::from_secs(20)));
        clock.advance(Duration::from_secs(5));
        limiter.check("k").unwrap();
        assert_eq!(state(&limiter), (1, Duration::from_secs(15)));
        clock.advance(Duration::from_secs(16));
        limiter.check("k").unwrap();
        assert_eq!(state(&limiter), (1, Duration::from_secs(19)));
        clock.advance(Duration::from_secs(600));
        assert_eq!(state(&limiter), (3, Duration::ZERO));
        limiter.check("k").unwrap();
        assert_eq!(state(&limiter), (2, Duration::from_secs(20)));
    }

    #[test]
    fn refund_restores_a_unit() {
        let (limiter, _clock) = fake(Quota::per_hour(2).unwrap(), 10);
        limiter.check("k").unwrap();
        limiter.check("k").unwrap();
        assert!(limiter.check("k").is_err());
        limiter.refund("k");
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_err());
    }

    #[test]
    fn purge_drops_idle_keys() {
        let (limiter, clock) = fake(Quota::per_second(10).unwrap(), 100);
        for i in 0..50 {
            limiter.check(&i).unwrap();
        }
        assert_eq!(limiter.len(), 50);
        assert_eq!(limiter.purge(), 0);
        clock.advance(Duration::from_millis(200));
        assert_eq!(limiter.purge(), 50);
        assert!(limiter.is_empty());
    }

    /// A flood of a million distinct keys while no time passes: the store
    /// never tracks more than the cap, the flood shares one overflow budget,
    /// the key tracked before the flood keeps its own, nothing panics.
    #[test]
    fn a_million_distinct_keys_stay_under_the_cap() {
        const CAP: usize = 5_000;
        let (limiter, _clock) = fake(Quota::per_hour(5).unwrap(), CAP);
        limiter.check("regular").unwrap();
        assert_eq!(limiter.state("regular").remaining(), 4);

        let mut allowed = 0usize;
        for i in 0u64..1_000_000 {
            allowed += usize::from(limiter.check(&i).is_ok());
            assert!(limiter.len() <= CAP);
        }
        assert_eq!(limiter.len(), CAP);
        // CAP - 1 tracked flood keys, then 5 from the shared overflow budget.
        assert_eq!(allowed, CAP - 1 + 5);
        assert_eq!(limiter.overflowed(), 1_000_000 - (CAP as u64 - 1));
        limiter.check("regular").unwrap();
        assert_eq!(limiter.state("regular").remaining(), 3);
    }

    /// The same flood while time passes: sweeps recycle idle keys, so new
    /// keys are tracked again, and the store still never exceeds the cap.
    #[test]
    fn a_million_distinct_keys_over_time_recycle_idle_keys() {
        const CAP: usize = 5_000;
        let (limiter, clock) = fake(Quota::per_second(5).unwrap(), CAP);
        let mut allowed = 0usize;
        for i in 0u64..1_000_000 {
            allowed += usize::from(limiter.check(&i).is_ok());
            assert!(limiter.len() <= CAP);
            if i % 100_000 == 99_999 {
                clock.advance(Duration::from_secs(1));
            }
        }
        // About CAP new keys tracked per second (10 seconds), plus the
        // overflow budget: far more than the cap over the whole flood, far
        // fewer than the flood.
        assert!(allowed > 5 * CAP, "allowed {allowed}");
        assert!(allowed < 20 * CAP, "allowed {allowed}");
        clock.advance(Duration::from_secs(1));
        limiter.purge();
        assert!(limiter.is_empty());
    }
}
