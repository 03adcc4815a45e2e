//! [`Limiter`]: governor's GCRA, keyed, over the bounded store.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock, QuantaClock, QuantaInstant, Reference};
use governor::nanos::Nanos;

use super::hash::Keys;
use super::key::IpKey;
use super::quota::Quota;
use super::store::{Caps, Place, Store};

/// The default cap on tracked keys per limiter.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// By default a network (an IPv6 `/48`, an IPv4 `/24`) holds at most
/// this fraction of [`max_keys`](LimiterBuilder::max_keys):
/// `max_keys / DEFAULT_NETWORK_SHARE`, and at least 64 (or `max_keys` if
/// lower). See [`LimiterBuilder::max_keys_per_network`].
pub const DEFAULT_NETWORK_SHARE: usize = 16;

/// By default the overflow budget is this many times a key's quota: this
/// many times the burst, replenished this many times faster.
pub const DEFAULT_OVERFLOW_FACTOR: u32 = 16;

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
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(remaining: u32, next_in: Duration) -> Self {
        KeyState { remaining, next_in }
    }

    /// How many more requests the key may make right now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the key has one more request available (zero when
    /// its whole burst is available). This is the `t` of the `RateLimit`
    /// header: see the [module docs](super#headers).
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
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(retry_after: Duration) -> Self {
        Denied { retry_after }
    }

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
    network_keys: Option<usize>,
    overflow_quota: Option<Quota>,
    clock: Option<LimiterClock>,
}

impl LimiterBuilder {
    /// Caps the number of keys the limiter tracks (default
    /// [`DEFAULT_MAX_KEYS`]).
    ///
    /// At the cap, a key that is not tracked yet is measured against the
    /// shared [overflow budget](LimiterBuilder::overflow_quota) instead of
    /// its own, after the limiter tried to make room by dropping idle keys;
    /// keys already tracked keep their own budget. See
    /// [Memory](Limiter#memory).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Caps the number of keys one network may have tracked: by default
    /// `max_keys / 16` ([`DEFAULT_NETWORK_SHARE`]), at least 64 (or
    /// `max_keys` if lower). A network is what the key extractor says a
    /// key belongs to ([`KeyExtractor::network`]): the IPv6 `/48` or the
    /// IPv4 `/24` of [`PeerIp`] and [`ClientIp`] keys.
    ///
    /// A network at its cap, or any network when the limiter is at its
    /// global cap, measures its new keys against its *own*
    /// [overflow budget](LimiterBuilder::overflow_quota), not the one
    /// shared by all. So one `/48` cycling through its 65 536 `/64`s cannot
    /// fill the cap, nor spend the overflow budget of the clients of other
    /// networks. Keys without a network (users, API keys) are not
    /// affected. See [Memory](Limiter#memory).
    ///
    /// [`KeyExtractor::network`]: super::KeyExtractor::network
    /// [`PeerIp`]: super::PeerIp
    /// [`ClientIp`]: super::ClientIp
    pub fn max_keys_per_network(mut self, max: usize) -> Self {
        self.network_keys = Some(max);
        self
    }

    /// The budget shared by the keys that are not tracked because the
    /// limiter is at its [cap](LimiterBuilder::max_keys). By default
    /// [`DEFAULT_OVERFLOW_FACTOR`] (16) times the key quota: 16 times the
    /// burst, replenished 16 times faster.
    ///
    /// A larger overflow budget serves more new clients while the cap is
    /// full; a smaller one gives less to whoever filled the cap (who can
    /// spend it too). `overflow_quota(quota)` makes it one key's quota, the
    /// strictest choice, e.g. for failed logins where every unit is a
    /// password guess.
    pub fn overflow_quota(mut self, quota: Quota) -> Self {
        self.overflow_quota = Some(quota);
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
        let overflow_quota = self
            .overflow_quota
            .unwrap_or_else(|| self.quota.times(DEFAULT_OVERFLOW_FACTOR));
        let start = clock.now();
        let max_keys = self.max_keys;
        let network_keys = self.network_keys.unwrap_or_else(|| {
            (max_keys / DEFAULT_NETWORK_SHARE).max(max_keys.min(DEFAULT_MIN_NETWORK_KEYS))
        });
        let caps = Caps {
            max_keys,
            network_keys,
            // A network tracks at least one key, or an overflow budget.
            max_networks: max_keys,
        };
        Limiter {
            inner: Arc::new(Inner {
                store: Store::new(caps, self.quota, overflow_quota),
                clock,
                start,
                keys: Keys::random(),
                quota: self.quota,
                overflow_quota,
            }),
        }
    }
}

/// Hashed before a network, so that its digest differs from a key's.
const NETWORK_TAG: u32 = 0x006e_6574;

/// The default cap of keys per network is at least this.
const DEFAULT_MIN_NETWORK_KEYS: usize = 64;

/// A request's key as the store sees it: the keyed hash of the key, and
/// its network, hashed only when the store needs it (a key it does not
/// track yet), so that known keys cost one hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hashed {
    pub(crate) key: u64,
    pub(crate) network: Option<IpKey>,
}

/// A keyed rate limiter: governor's GCRA (generic cell rate algorithm,
/// with governor's [`Quota`] and clocks) over a state store with a hard
/// cap on tracked keys. Cloning is a reference-count increment; clones
/// share their state.
///
/// Keys are anything [`Hash`]: they are hashed with per-limiter random
/// keys, and only that 64-bit digest is kept, never the key itself (an API
/// key, a user id). Keys hashed as one integer (IP keys) take a keyed
/// folded multiplication (foldhash-style, a few instructions), any other
/// key SipHash-1-3.
///
/// [`check`](Limiter::check) takes one unit per request;
/// [`attempt`](Limiter::attempt) holds one while an attempt whose outcome
/// is not known yet runs, and counts it only if the attempt fails.
///
/// # Memory
///
/// At most [`max_keys`](LimiterBuilder::max_keys) keys are tracked, and at
/// most as many networks (about 60 bytes each at worst, for keys and for
/// networks: 12 MB for the default 100 000 keys). A key whose budget is whole again (no unit
/// spent that has not been replenished) is *idle*: its state is the same
/// as a fresh one, and it may be dropped at any time.
///
/// * Every so many new keys (`max_keys / shards`, at least 16) one shard of
///   the store is swept of idle keys, on the request path, once the store
///   holds three quarters of `max_keys` or since a key went to an overflow
///   budget; the cost is O(1) amortized per new key. Below that, idle keys
///   are kept (within the cap): a client that comes back is then still
///   tracked, and costs a read lock instead of a write lock and an insert.
/// * **At the cap**, a new key first sweeps its own shard of idle keys (at
///   most once per replenish interval per shard, clamped to 0.1-1 s, so a
///   flood of new keys against a cap full of busy keys does not rescan
///   the shard each time), and is tracked if that made room. So the room
///   held by keys that went idle is reused as soon as new keys need it.
/// * Otherwise the new key is not tracked: it shares the
///   [overflow budget](LimiterBuilder::overflow_quota) (by default 16 times
///   the key quota) with every other untracked key. A flood of distinct
///   keys therefore gets that one budget in total, keys already tracked
///   keep their own, memory never grows and nothing panics. The limit is
///   never bypassed: busy keys are never evicted, since that would hand
///   them a fresh budget. Whoever fills the cap with busy keys can also
///   spend the overflow budget, and then new clients are refused until keys
///   go idle: size `max_keys` for your real number of clients per window.
/// * Keys that belong to a network (IP keys: the IPv6 `/48` or IPv4 `/24`)
///   are capped per network too
///   ([`max_keys_per_network`](LimiterBuilder::max_keys_per_network), 1/16
///   of the cap by default), and each network has its own overflow budget
///   (same quota): past its own cap, or at the global cap, a network's new
///   keys share *its* overflow budget. So one network cannot fill the cap
///   alone, and a network that floods only exhausts its own overflow
///   budget, while new clients of other networks get theirs. Networks are
///   capped at `max_keys`; past that, new keys count as having no
///   network.
/// * [`purge`](Limiter::purge) sweeps every shard; call it from a
///   background task if you want memory back during quiet periods.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: LimiterClock,
    start: Nanos,
    keys: Keys,
    quota: Quota,
    overflow_quota: Quota,
}

impl Limiter {
    /// A limiter with the default options.
    pub fn new(quota: Quota) -> Self {
        Self::builder(quota).build()
    }

    /// A builder, to set the key cap, the overflow budget or the clock.
    pub fn builder(quota: Quota) -> LimiterBuilder {
        LimiterBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            network_keys: None,
            overflow_quota: None,
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
        self.check_hashed(self.hashed(key))
    }

    /// Holds one unit of `key` for an attempt whose outcome is not known
    /// yet, such as a login: the unit counts only if the attempt
    /// [fails](Attempt::fail), and is given back if it is
    /// [released](Attempt::release). Attempts in flight hold their units,
    /// so concurrent attempts cannot overrun the budget; a success never
    /// gives back more than the unit its own attempt held.
    ///
    /// This is what [`RateLimitLayer::failed_attempts`] does per request.
    ///
    /// ```
    /// use tower_auth::rate_limit::{Limiter, Quota};
    ///
    /// let limiter = Limiter::new(Quota::per_hour(2).unwrap());
    /// limiter.attempt("alice").unwrap().release(); // right password
    /// limiter.attempt("alice").unwrap().fail(); // wrong password
    /// let pending = limiter.attempt("alice").unwrap();
    /// assert!(limiter.attempt("alice").is_err()); // one failure + one in flight
    /// pending.release();
    /// assert!(limiter.attempt("alice").is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Denied`] when the failures recorded plus the attempts in flight
    /// use the whole budget; `retry_after` assumes the attempts in flight
    /// fail.
    ///
    /// [`RateLimitLayer::failed_attempts`]: super::RateLimitLayer::failed_attempts
    pub fn attempt<K: Hash + ?Sized>(&self, key: &K) -> Result<Attempt, Denied> {
        self.attempt_hashed(self.hashed(key))
    }

    /// What `key` has left, without consuming anything. For a key that is
    /// not tracked at the cap, what the overflow budget has left (at most
    /// the key's burst). Attempts in flight are not deducted.
    pub fn state<K: Hash + ?Sized>(&self, key: &K) -> KeyState {
        self.state_of(self.hashed(key))
    }

    /// Drops every idle key now. The request path already does this
    /// incrementally; see [Memory](Limiter#memory).
    pub fn purge(&self) -> usize {
        self.inner.store.sweep_all(self.now())
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

    /// How many networks are tracked (see
    /// [`max_keys_per_network`](LimiterBuilder::max_keys_per_network)):
    /// networks with tracked keys, attempts in flight or an overflow budget
    /// in use. At most [`max_keys`](Limiter::max_keys).
    pub fn networks(&self) -> usize {
        self.inner.store.networks_len()
    }

    /// How many checks and attempts were measured against an overflow
    /// budget (shared or of a network) because the store or the key's
    /// network was full.
    pub fn overflowed(&self) -> u64 {
        self.inner.store.overflowed()
    }

    /// The keys and networks really held, counted entry by entry.
    #[cfg(test)]
    pub(crate) fn counted(&self) -> (usize, usize) {
        self.inner.store.counted()
    }

    /// The quota of each key.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The quota of the overflow budget.
    pub fn overflow_quota(&self) -> Quota {
        self.inner.overflow_quota
    }

    #[inline]
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.inner.keys.hash(key)
    }

    /// `key` without a network.
    #[inline]
    fn hashed<K: Hash + ?Sized>(&self, key: &K) -> Hashed {
        Hashed {
            key: self.hash(key),
            network: None,
        }
    }

    /// The digest of a network: never `0`, which stands for none, and
    /// never that of the same value as a key.
    #[inline]
    fn hash_network(&self, network: Option<IpKey>) -> u64 {
        match network {
            Some(network) => self.inner.keys.hash(&(NETWORK_TAG, network)).max(1),
            None => 0,
        }
    }

    /// The hot path: no state is read back after the decision.
    #[inline]
    pub(crate) fn check_hashed(&self, key: Hashed) -> Result<(), Denied> {
        let store = &self.inner.store;
        let now = self.now();
        let outcome = store.take(key.key, || self.hash_network(key.network), now);
        if store.take_sweep_due() {
            store.sweep_next(now);
        }
        outcome.map_err(|earliest| denied(earliest, now))
    }

    pub(crate) fn attempt_hashed(&self, key: Hashed) -> Result<Attempt, Denied> {
        let now = self.now();
        let place = self
            .inner
            .store
            .attempt(key.key, self.hash_network(key.network), now)
            .map_err(|earliest| denied(earliest, now))?;
        Ok(Attempt {
            limiter: self.clone(),
            key,
            place,
            open: true,
        })
    }

    fn settle(&self, key: Hashed, place: Place, failed: bool) {
        let store = &self.inner.store;
        let now = self.now();
        store.settle(key.key, self.hash_network(key.network), place, failed, now);
        if store.take_sweep_due() {
            store.sweep_next(now);
        }
    }

    /// What `key` has left right now, read back from the store.
    pub(crate) fn state_of(&self, key: Hashed) -> KeyState {
        let (tat, gcra) = self
            .inner
            .store
            .state(key.key, self.hash_network(key.network));
        let (remaining, next_in) = gcra.remaining(tat, self.now());
        let burst = self.inner.quota.burst();
        // The overflow budget may be larger than a key's: report at most a
        // key's burst, which is then whole.
        match u32::try_from(remaining) {
            Ok(remaining) if remaining < burst => KeyState {
                remaining,
                next_in: Duration::from_nanos(next_in),
            },
            _ => KeyState {
                remaining: burst,
                next_in: Duration::ZERO,
            },
        }
    }

    /// Nanoseconds since the limiter was built.
    #[inline]
    fn now(&self) -> u64 {
        let inner = &*self.inner;
        inner.clock.now().duration_since(inner.start).into()
    }
}

fn denied(earliest: u64, now: u64) -> Denied {
    Denied {
        retry_after: Duration::from_nanos(earliest.saturating_sub(now)),
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
            .field("overflow_quota", &self.inner.overflow_quota)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

/// One unit of a [`Limiter`] held by an attempt in flight: see
/// [`Limiter::attempt`]. Settle it with [`release`](Attempt::release) or
/// [`fail`](Attempt::fail); dropping it counts as a failure (fail closed:
/// an attempt cancelled half-way may have been a wrong password).
///
/// The unit is held in the budget it was taken from (the key's own, or the
/// overflow budget when the key was not tracked at the cap), and settled
/// there.
#[must_use = "dropping an Attempt counts it as a failure"]
pub struct Attempt {
    limiter: Limiter,
    key: Hashed,
    place: Place,
    open: bool,
}

impl Attempt {
    /// The attempt did not fail (e.g. the password was right): the held
    /// unit is given back, and nothing is recorded.
    pub fn release(mut self) {
        self.settle(false);
    }

    /// The attempt failed: one unit is spent from now on.
    pub fn fail(mut self) {
        self.settle(true);
    }

    /// The hashed key, for the remaining-quota headers.
    pub(crate) fn key(&self) -> Hashed {
        self.key
    }

    fn settle(&mut self, failed: bool) {
        if std::mem::take(&mut self.open) {
            self.limiter.settle(self.key, self.place, failed);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.settle(true);
    }
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("overflow", &(self.place != Place::Key))
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

    /// The GCRA here makes governor's decisions: same outcome and same
    /// wait for a pseudo-random sequence of keys and clock steps.
    #[test]
    fn decisions_match_governors_keyed_limiter() {
        use std::num::NonZeroU32;

        let quota = Quota::per_second(7).unwrap().allow_burst(3).unwrap();
        let governor_quota = governor::Quota::with_period(quota.replenish_interval())
            .unwrap()
            .allow_burst(NonZeroU32::new(quota.burst()).unwrap());
        let clock = FakeRelativeClock::default();
        let theirs = governor::RateLimiter::hashmap_with_clock(governor_quota, clock.clone());
        let ours = Limiter::builder(quota).clock(clock.clone()).build();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut allowed = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 3;
            clock.advance(Duration::from_nanos((x >> 8) % 20_000_000));
            let expected = theirs
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(clock.now()));
            let got = ours.check(&key).map_err(|denied| denied.retry_after());
            assert_eq!(got, expected);
            allowed += usize::from(got.is_ok());
        }
        assert!((1_000..19_000).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn attempts_count_only_failures_and_hold_units_meanwhile() {
        let (limiter, clock) = fake(Quota::per_hour(2).unwrap(), 10);
        for _ in 0..5 {
            limiter.attempt("k").unwrap().release();
        }
        assert_eq!(limiter.state("k").remaining(), 2);
        let first = limiter.attempt("k").unwrap();
        let second = limiter.attempt("k").unwrap();
        let denied = limiter.attempt("k").unwrap_err();
        assert_eq!(denied.retry_after(), Duration::from_secs(1800));
        // Held units are not spent: a release gives one back, and only one.
        first.release();
        let third = limiter.attempt("k").unwrap();
        assert!(limiter.attempt("k").is_err());
        second.fail();
        third.release();
        assert_eq!(limiter.state("k").remaining(), 1);
        // A dropped attempt counts as a failure.
        drop(limiter.attempt("k").unwrap());
        assert_eq!(limiter.state("k").remaining(), 0);
        assert!(limiter.attempt("k").is_err());
        clock.advance(Duration::from_secs(1800));
        assert!(limiter.attempt("k").is_ok());
    }

    /// Review finding: a success held across a refill, then failures, then
    /// the success's refund forgave one of the failures (6 failures against
    /// a burst of 5). A held unit is not replenished and a release gives
    /// back only that unit.
    #[test]
    fn a_success_held_across_a_refill_cannot_forgive_a_failure() {
        let quota = Quota::with_period(Duration::from_secs(15 * 60))
            .unwrap()
            .allow_burst(5)
            .unwrap();
        let (limiter, clock) = fake(quota, 10);
        let slow_success = limiter.attempt("ip").unwrap();
        clock.advance(Duration::from_secs(75 * 60));
        let mut failures = 0;
        for _ in 0..5 {
            if let Ok(attempt) = limiter.attempt("ip") {
                attempt.fail();
                failures += 1;
            }
        }
        slow_success.release();
        while let Ok(attempt) = limiter.attempt("ip") {
            attempt.fail();
            failures += 1;
        }
        assert_eq!(failures, 5);
    }

    #[test]
    fn purge_drops_idle_keys_as_soon_as_their_budget_is_whole() {
        let (limiter, clock) = fake(Quota::per_second(10).unwrap(), 100);
        for i in 0..50 {
            limiter.check(&i).unwrap();
        }
        assert_eq!(limiter.len(), 50);
        clock.advance(Duration::from_millis(99));
        assert_eq!(limiter.purge(), 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.purge(), 50);
        assert!(limiter.is_empty());
    }

    /// Review finding: with the cap full of keys gone idle, new clients
    /// landed in the overflow budget until the incremental sweeps came
    /// round (1 525 of 2 000 refused). A new key at the cap now sweeps its
    /// shard first.
    #[test]
    fn new_clients_reuse_the_room_of_idle_keys_at_once() {
        let (limiter, clock) = fake(Quota::per_minute(5).unwrap(), DEFAULT_MAX_KEYS);
        for i in 0..DEFAULT_MAX_KEYS as u64 {
            limiter.check(&i).unwrap();
        }
        assert_eq!(limiter.len(), DEFAULT_MAX_KEYS);
        clock.advance(Duration::from_secs(3600));
        let refused = (0..2_000u64)
            .filter(|i| limiter.check(&(1_000_000 + i)).is_err())
            .count();
        assert_eq!(refused, 0);
        assert_eq!(limiter.overflowed(), 0);
        assert!(limiter.len() <= DEFAULT_MAX_KEYS);
    }

    /// The overflow budget has its own quota, 16 times the key's by
    /// default, and is reported to untracked keys as at most a key's
    /// burst.
    #[test]
    fn overflow_budget_has_its_own_quota() {
        let (limiter, clock) = fake(Quota::per_minute(2).unwrap(), 1);
        assert_eq!(limiter.overflow_quota().burst(), 32);
        limiter.check("tracked").unwrap();
        let allowed = (0..100).filter(|i| limiter.check(i).is_ok()).count();
        assert_eq!(allowed, 32);
        let denied = limiter.check("another").unwrap_err();
        assert_eq!(denied.retry_after(), Duration::from_millis(1875));
        clock.advance(Duration::from_secs(60));
        assert_eq!(limiter.state("untracked").remaining(), 2);

        let strict = Limiter::builder(Quota::per_minute(2).unwrap())
            .max_keys(0)
            .overflow_quota(Quota::per_minute(2).unwrap())
            .clock(clock.clone())
            .build();
        assert_eq!((0..10).filter(|i| strict.check(i).is_ok()).count(), 2);
        assert_eq!(strict.state("x").remaining(), 0);
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
        // CAP - 1 tracked flood keys, then 16 × 5 from the shared overflow
        // budget.
        assert_eq!(allowed, CAP - 1 + 80);
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
