//! [`RedisRateLimiter`]: the GCRA of [`Limiter`](crate::rate_limit::Limiter)
//! evaluated atomically in Redis, shared by every instance of an app.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::Script;
use sha2::Sha256;

use super::sign_in::{hold, micros, Hold, RedisHeld, DEFAULT_HOLD_LEASE};
use super::{RedisConnection, RedisError, DEFAULT_PREFIX};
use crate::rate_limit::{Denied, KeyState, Quota};
use crate::BoxError;

/// `KEYS[1]` the key's theoretical arrival time (µs); `ARGV`: now (empty
/// for the server's clock), t, tau (µs). Returns `{1, remaining, next in
/// µs}` when the request is admitted (one unit taken), `{0, wait µs}`
/// when it is not (nothing changed). The same arithmetic as the local
/// limiter's GCRA; the key expires when its TAT passes (then it is the
/// same as no state).
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local t = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
if base - tau > now then
  return {0, string.format('%.0f', base - tau - now)}
end
tat = base + t
redis.call('SET', KEYS[1], string.format('%.0f', tat))
redis.call('PEXPIREAT', KEYS[1], math.floor(tat / 1000) + 1)
local burst = math.floor(tau / t) + 1
local slack = now + tau + t - tat
local remaining = math.min(math.floor(slack / t), burst)
local next_in = 0
if remaining < burst then next_in = t - (slack % t) end
return {1, remaining, string.format('%.0f', next_in)}",
    )
});

/// One rate limit's GCRA in Redis: every instance of an app that uses the
/// same Redis, prefix, name and secret counts against one budget per key.
/// Each [`check`](Self::check) is one Lua script (one round trip) that
/// decides and records atomically, so `N` instances together admit what
/// one [`Limiter`](crate::rate_limit::Limiter) would.
///
/// # Decisions
///
/// The script runs the local limiter's arithmetic (governor's GCRA) in
/// microseconds of the Redis server's clock (`TIME`): instances need no
/// synchronized clocks, and the decisions are those of a local limiter
/// fed the same arrivals at the moments Redis runs the scripts. The only
/// differences are the clock's resolution (1 µs instead of 1 ns: a wait
/// is rounded to the microsecond) and the time a request takes to reach
/// Redis (a loopback round trip, well under a millisecond). There is no
/// key cap: memory is bounded by TTLs instead (a key expires once its
/// budget is whole again, when the local limiter would drop it as idle),
/// so a flood of distinct keys costs Redis at most one small string per key
/// for one window. Pair it with a local per-IP [`Limiter`](crate::rate_limit::Limiter)
/// in front to keep such floods off Redis.
///
/// [`attempt`](Self::attempt) holds a unit for an attempt whose outcome is
/// not known yet (the failed-attempts semantics of
/// [`RateLimitLayer::failed_attempts`](crate::rate_limit::RateLimitLayer::failed_attempts)),
/// with the leases of [`RedisSignInStore`](super::RedisSignInStore).
///
/// # Keys
///
/// `<prefix>rate-limit:{<name>:<hmac>}` (and `…:held` for attempts): the
/// key is a keyed HMAC-SHA256 of the request key (never the key itself),
/// and the braces make each key its own hash tag, so on Redis Cluster the
/// keys spread over the slots and every script touches one slot.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_auth::rate_limit::Quota;
/// use tower_auth::redis::{RedisConnection, RedisRateLimiter};
///
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let limiter = RedisRateLimiter::new(redis, [7; 32], "per-user", Quota::per_minute(100)?);
/// match limiter.check(b"alice").await? {
///     Ok(state) => println!("{} left", state.remaining()),
///     Err(denied) => println!("retry in {:?}", denied.retry_after()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisConnection,
    mac: Hmac<Sha256>,
    prefix: String,
    name: String,
    quota: Quota,
    t: u64,
    tau: u64,
    lease: Duration,
    now: Option<fn() -> u64>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("name", &self.inner.name)
            .field("quota", &self.inner.quota)
            .field("redis", &self.inner.redis)
            .finish_non_exhaustive()
    }
}

/// A unit of a [`RedisRateLimiter`] held by an attempt in flight: see
/// [`RedisRateLimiter::attempt`]. Dropping it counts as a failure.
#[must_use = "dropping a RedisAttempt counts it as a failure"]
pub struct RedisAttempt(RedisHeld);

impl RedisAttempt {
    /// The attempt did not fail: the unit is given back (in the
    /// background).
    pub fn release(mut self) {
        self.0.send(false);
    }

    /// The attempt failed: one unit is spent (in the background).
    pub fn fail(mut self) {
        self.0.send(true);
    }
}

impl fmt::Debug for RedisAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAttempt").finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limit named `name` (part of the Redis keys: the same on every
    /// instance) of `quota` per key, keys under `tower-auth:`. `secret`
    /// keys the HMAC of the Redis keys: the same random bytes on every
    /// instance.
    pub fn new(redis: RedisConnection, secret: [u8; 32], name: &str, quota: Quota) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        let t = micros(quota.replenish_interval());
        Self {
            inner: Arc::new(Inner {
                redis,
                mac,
                prefix: DEFAULT_PREFIX.to_owned(),
                name: name.to_owned(),
                quota,
                t,
                tau: t.saturating_mul(u64::from(quota.burst()).saturating_sub(1)),
                lease: DEFAULT_HOLD_LEASE,
                now: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
            return self;
        }
        let s = &*self.inner;
        let mut inner = Inner {
            redis: s.redis.clone(),
            mac: s.mac.clone(),
            prefix: s.prefix.clone(),
            name: s.name.clone(),
            quota: s.quota,
            t: s.t,
            tau: s.tau,
            lease: s.lease,
            now: s.now,
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Keys under `prefix` (say `my-app:`).
    #[must_use]
    pub fn prefix(self, prefix: &str) -> Self {
        self.edit(|inner| inner.prefix = prefix.to_owned())
    }

    /// How long an attempt's unit stays held if it never settles (default
    /// [`DEFAULT_HOLD_LEASE`]); then it counts as a failure.
    #[must_use]
    pub fn hold_lease(self, lease: Duration) -> Self {
        self.edit(|inner| inner.lease = lease)
    }

    /// Uses `now` (microseconds since the Unix epoch) instead of the Redis
    /// server's clock, e.g. a fake clock in tests.
    #[doc(hidden)]
    #[must_use]
    pub fn clock(self, now: fn() -> u64) -> Self {
        self.edit(|inner| inner.now = Some(now))
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &[u8]) -> String {
        let mut mac = self.inner.mac.clone();
        mac.update(self.inner.name.as_bytes());
        mac.update(&[0]);
        mac.update(key);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}rate-limit:{{{}:{hex}}}",
            self.inner.prefix, self.inner.name
        )
    }

    /// Takes one unit of `key`: `Ok(Ok(state))` with what it has left
    /// (the `RateLimit` header's `r` and `t`), `Ok(Err(denied))` when its
    /// quota is spent.
    ///
    /// # Errors
    ///
    /// Redis failed or did not answer in time: refuse the request (`503`).
    pub async fn check(&self, key: &[u8]) -> Result<Result<KeyState, Denied>, BoxError> {
        let redis_key = self.redis_key(key);
        let inner = &*self.inner;
        let now = inner.now.map(|now| now().to_string()).unwrap_or_default();
        let (t, tau) = (inner.t, inner.tau);
        let reply: Vec<u64> = inner
            .redis
            .run(move |mut con| {
                Box::pin(async move {
                    CHECK
                        .key(redis_key)
                        .arg(now)
                        .arg(t)
                        .arg(tau)
                        .invoke_async(&mut con)
                        .await
                })
            })
            .await?;
        match reply.as_slice() {
            [1, remaining, next_in] => Ok(Ok(KeyState::new(
                u32::try_from(*remaining).unwrap_or(u32::MAX),
                Duration::from_micros(*next_in),
            ))),
            [0, wait] => Ok(Err(Denied::new(Duration::from_micros(*wait)))),
            _ => Err(RedisError::reply("rate-limit script").into()),
        }
    }

    /// Holds one unit of `key` for an attempt whose outcome is not known
    /// yet: it counts only if the attempt [fails](RedisAttempt::fail).
    /// The failures recorded plus the attempts in flight, on every
    /// instance, never exceed the quota.
    ///
    /// # Errors
    ///
    /// Redis failed or did not answer in time: refuse the request (`503`).
    pub async fn attempt(&self, key: &[u8]) -> Result<Result<RedisAttempt, Denied>, BoxError> {
        let tat = self.redis_key(key);
        let keys = vec![tat.clone(), format!("{tat}:held")];
        let inner = &*self.inner;
        let args = vec![inner.t, inner.tau];
        match hold(&inner.redis, inner.now, inner.lease, keys, args).await? {
            Hold::Held(held) => Ok(Ok(RedisAttempt(held))),
            Hold::Refused { retry_after, .. } => Ok(Err(Denied::new(retry_after))),
        }
    }
}
