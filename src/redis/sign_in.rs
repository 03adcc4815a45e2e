//! [`RedisSignInStore`]: the sign-in limiter's budgets in Redis.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::Script;
use sha2::Sha256;

use super::{RedisConnection, RedisError, DEFAULT_PREFIX};
use crate::rate_limit::sign_in::{
    Budget, BudgetKey, HeldUnits, HoldError, Limited, SignInStore, StoreError, StoreFuture,
};
use crate::rate_limit::Quota;
use crate::BoxError;

/// How long a held unit stays held by default when its attempt never
/// settles (its server crashed, or Redis could not be reached to settle
/// it): 60 s. Then it counts as a failure, as a dropped attempt does.
pub const DEFAULT_HOLD_LEASE: Duration = Duration::from_secs(60);

/// The default cap on remembered clients per account group and instance.
pub const DEFAULT_KNOWN_PER_GROUP: u32 = 64;

// Times are microseconds of the Redis server's clock (`TIME`), so that the
// instances of a fleet need no synchronized clocks; tests may pass their
// own `now` (ARGV[1], empty for the server's clock). Lua numbers are
// doubles: microseconds since the epoch (about 2^51) are exact.
//
// Per budget key: `KEYS[2i-1]` the GCRA theoretical arrival time (a
// string, with a TTL when it is back in the past), `KEYS[2i]` the units
// held (a sorted set: hold id -> lease expiry). A lease that expired is a
// failure recorded at its expiry, exactly once: the hold is removed by
// whichever comes first, the settle or the purge.
const PRELUDE: &str = r"
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function expire(key, at_us)
  redis.call('PEXPIREAT', key, math.floor(at_us / 1000) + 1)
end
-- Reads the TAT of key i, counting the leases expired by now as failures.
local function tat_of(tk, hk, t, tau)
  local tat = tonumber(redis.call('GET', tk) or '0')
  local expired = redis.call('ZRANGEBYSCORE', hk, '-inf', now, 'WITHSCORES')
  if #expired > 0 then
    for j = 2, #expired, 2 do
      tat = math.max(tat, tonumber(expired[j])) + t
    end
    redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
    redis.call('SET', tk, string.format('%.0f', tat))
    expire(tk, tat)
  end
  return tat
end
";

/// `ARGV`: now, lease (µs), hold id, then per key t and tau (µs).
/// Returns `{0}` when every key held one unit, else `{i, wait µs, busy}`
/// for the first key that refused (nothing held).
pub(super) static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{PRELUDE}
local lease = tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local t = tonumber(ARGV[2 + 2 * i])
  local tau = tonumber(ARGV[3 + 2 * i])
  local tat = tat_of(KEYS[2 * i - 1], KEYS[2 * i], t, tau)
  local held = redis.call('ZCARD', KEYS[2 * i])
  local base = math.max(tat, now)
  local earliest = base + t * held - tau
  if earliest > now then
    local busy = 0
    if base - tau <= now then busy = 1 end
    return {{i, string.format('%.0f', earliest - now), busy}}
  end
end
for i = 1, n do
  local t = tonumber(ARGV[2 + 2 * i])
  local tau = tonumber(ARGV[3 + 2 * i])
  redis.call('ZADD', KEYS[2 * i], now + lease, ARGV[3])
  expire(KEYS[2 * i], now + lease + tau + t)
end
return {{0}}"
    ))
});

/// `ARGV`: now, failed (0 or 1), hold id, then per key t and tau (µs).
pub(super) static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{PRELUDE}
local n = #KEYS / 2
for i = 1, n do
  local t = tonumber(ARGV[2 + 2 * i])
  local tau = tonumber(ARGV[3 + 2 * i])
  local tat = tat_of(KEYS[2 * i - 1], KEYS[2 * i], t, tau)
  if redis.call('ZREM', KEYS[2 * i], ARGV[3]) == 1 and ARGV[2] == '1' then
    tat = math.max(tat, now) + t
    redis.call('SET', KEYS[2 * i - 1], string.format('%.0f', tat))
    expire(KEYS[2 * i - 1], tat)
  end
end
return 1"
    ))
});

/// `KEYS[1]` the remembered pair, `KEYS[2]` its group (a sorted set: pair
/// key -> expiry ms); `ARGV`: ttl ms, cap. The group keeps its newest
/// `cap` pairs: the older ones are forgotten.
static REMEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
redis.call('SET', KEYS[1], '1', 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - cap
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  for _, k in ipairs(old) do redis.call('DEL', k) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1",
    )
});

/// The sign-in limiter's budgets in Redis, shared by every instance of an
/// app: implements [`SignInStore`] with one Lua script per operation, so
/// that one attempt holds a unit of each of its budgets all or none, and
/// `N` concurrent attempts spread over any number of instances never
/// overrun a budget.
///
/// # Semantics
///
/// The same as [`MemorySignInStore`](crate::rate_limit::sign_in::MemorySignInStore)'s:
/// GCRA budgets that count failures only, a unit held while an attempt
/// runs (so held units plus failures never exceed the burst), a success
/// giving back only its own unit. Times come from the Redis server's clock
/// (`TIME`), so instances need no synchronized clocks.
///
/// * A held unit has a lease ([`hold_lease`](Self::hold_lease), default
///   [`DEFAULT_HOLD_LEASE`]): if its attempt never settles (the instance
///   crashed, Redis was unreachable when it settled) the unit counts as a
///   failure when its lease ends, like a dropped attempt, exactly once.
/// * Settling is sent in the background (the trait's `settle` is
///   synchronous); until it lands, the unit stays held, and a waiting
///   attempt on any instance waits for it.
/// * [`remember`](SignInStore::remember) is sent in the background too;
///   if it fails, the client is simply not trusted (fail safe).
/// * Quotas must be the same on every instance (the scripts get them with
///   each call).
/// * [`SignInStore::remaining`] needs a round trip, so it is not offered:
///   the `remaining_headers` option adds nothing with this store (the
///   `429` responses still carry `RateLimit`).
///
/// # Keys
///
/// Keys never contain an account name or an address: each is a keyed
/// HMAC-SHA256 (the secret given to [`new`](Self::new), the same on every
/// instance) of the budget and the key material, 128 bits in hex. Under
/// the prefix (default `tower-auth:`):
///
/// | key | type | TTL |
/// |---|---|---|
/// | `sign-in:{sign-in}:<budget>:<hmac>` | GCRA TAT (µs) | until the budget is whole again |
/// | `sign-in:{sign-in}:<budget>:<hmac>:held` | hold id → lease end | lease + one unit + burst |
/// | `sign-in:{sign-in}:known:<hmac>` | remembered success | the `remember` time |
/// | `sign-in:{sign-in}:group:<hmac>` | an account's remembered pairs | the `remember` time |
///
/// So Redis memory is bounded by the TTLs: a key vanishes once its budget
/// is whole again, exactly when it would be idle in memory.
///
/// All sign-in keys share the hash tag `{sign-in}`, so on Redis Cluster
/// they live in one hash slot and every script (an untrusted attempt
/// touches three budgets: pair, account and client) stays one atomic step.
/// Sign-in attempts are rare next to ordinary requests (at most a few
/// hundred per second even under a credential-stuffing flood, since every
/// one costs a password hash), which one slot serves easily.
///
/// # Example
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_auth::rate_limit::sign_in::SignInLimiter;
/// use tower_auth::redis::{RedisConnection, RedisSignInStore};
///
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// // The same 32 secret bytes on every instance (from your secret store).
/// let store = RedisSignInStore::new(redis, [7; 32]).prefix("my-app:");
/// let limiter = SignInLimiter::builder().store(store).build()?;
/// # let _ = limiter;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSignInStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisConnection,
    mac: Hmac<Sha256>,
    prefix: String,
    quotas: [Quota; 5],
    lease: Duration,
    known_per_group: u32,
    /// Tests pass their own clock (µs since the epoch).
    now: Option<fn() -> u64>,
}

impl fmt::Debug for RedisSignInStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the secret.
        f.debug_struct("RedisSignInStore")
            .field("redis", &self.inner.redis)
            .field("prefix", &self.inner.prefix)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

fn budget_tag(budget: Budget) -> &'static str {
    match budget {
        Budget::Device => "device",
        Budget::Known => "known-client",
        Budget::Pair => "pair",
        Budget::Account => "account",
        Budget::Client => "client",
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl RedisSignInStore {
    /// A store on `redis` with the default quotas
    /// ([`Budget::default_quota`]) and keys under `tower-auth:`. `secret`
    /// keys the HMAC of every Redis key: use the same random 32 bytes on
    /// every instance, and keep them secret (they stand between the keys
    /// and the account names and addresses they count).
    pub fn new(redis: RedisConnection, secret: [u8; 32]) -> Self {
        // HMAC accepts keys of any length: a 32-byte one cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Self {
            inner: Arc::new(Inner {
                redis,
                mac,
                prefix: DEFAULT_PREFIX.to_owned(),
                quotas: Budget::ALL.map(Budget::default_quota),
                lease: DEFAULT_HOLD_LEASE,
                known_per_group: DEFAULT_KNOWN_PER_GROUP,
                now: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let shared = &*self.inner;
                let mut inner = Inner {
                    redis: shared.redis.clone(),
                    mac: shared.mac.clone(),
                    prefix: shared.prefix.clone(),
                    quotas: shared.quotas,
                    lease: shared.lease,
                    known_per_group: shared.known_per_group,
                    now: shared.now,
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Keys under `prefix` (say `my-app:` to share a Redis between apps).
    #[must_use]
    pub fn prefix(self, prefix: &str) -> Self {
        self.edit(|inner| inner.prefix = prefix.to_owned())
    }

    /// The quota of `budget` (defaults: [`Budget::default_quota`]); the
    /// same on every instance.
    #[must_use]
    pub fn quota(self, budget: Budget, quota: Quota) -> Self {
        self.edit(|inner| inner.quotas[budget as usize] = quota)
    }

    /// How long a unit stays held when its attempt never settles (default
    /// [`DEFAULT_HOLD_LEASE`]); then it counts as a failure. Longer than
    /// your slowest sign-in request: an attempt still running when its
    /// lease ends is counted as a failure whatever its outcome.
    #[must_use]
    pub fn hold_lease(self, lease: Duration) -> Self {
        self.edit(|inner| inner.lease = lease)
    }

    /// The cap on remembered clients per account group (default
    /// [`DEFAULT_KNOWN_PER_GROUP`]): past it, the group's oldest are
    /// forgotten. The limiter's account groups are keyed per instance, so
    /// an account keeps at most this many per instance.
    #[must_use]
    pub fn max_known_per_group(self, cap: u32) -> Self {
        self.edit(|inner| inner.known_per_group = cap.max(1))
    }

    /// Uses `now` (microseconds since the Unix epoch) instead of the Redis
    /// server's clock, e.g. a fake clock in tests. Every instance must use
    /// the same clock.
    #[doc(hidden)]
    #[must_use]
    pub fn clock(self, now: fn() -> u64) -> Self {
        self.edit(|inner| inner.now = Some(now))
    }

    fn hex(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.inner.mac.clone();
        for part in parts {
            // Length-prefixed, so that no two lists of parts collide.
            mac.update(&u64::try_from(part.len()).unwrap_or(0).to_be_bytes());
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        super::hex(&digest[..16])
    }

    /// The Redis key of the GCRA state of `key` (the held units are at the
    /// same key + `:held`).
    pub fn redis_key(&self, key: &BudgetKey<'_>) -> String {
        let tag = budget_tag(key.budget);
        format!(
            "{}sign-in:{{sign-in}}:{tag}:{}",
            self.inner.prefix,
            self.hex(&[tag.as_bytes(), key.key])
        )
    }

    fn known_key(&self, key: &[u8]) -> String {
        format!(
            "{}sign-in:{{sign-in}}:known:{}",
            self.inner.prefix,
            self.hex(&[b"known", key])
        )
    }

    /// The keys and per-key arguments of a script over `keys`.
    fn script_args(&self, keys: &[BudgetKey<'_>]) -> (Vec<String>, Vec<u64>) {
        let mut redis_keys = Vec::with_capacity(keys.len() * 2);
        let mut args = Vec::with_capacity(keys.len() * 2);
        for key in keys {
            let tat = self.redis_key(key);
            redis_keys.push(format!("{tat}:held"));
            redis_keys.insert(redis_keys.len() - 1, tat);
            let quota = self.inner.quotas[key.budget as usize];
            let t = micros(quota.replenish_interval());
            args.push(t);
            args.push(t.saturating_mul(u64::from(quota.burst()).saturating_sub(1)));
        }
        (redis_keys, args)
    }

    async fn hold_keys(&self, keys: &[BudgetKey<'_>]) -> Result<Box<dyn HeldUnits>, HoldError> {
        let unavailable = |e: BoxError| HoldError::Unavailable(StoreError(e));
        let (redis_keys, args) = self.script_args(keys);
        let reply = hold(
            &self.inner.redis,
            self.inner.now,
            self.inner.lease,
            redis_keys,
            args,
        )
        .await
        .map_err(unavailable)?;
        match reply {
            Hold::Held(held) => Ok(Box::new(held)),
            Hold::Refused {
                index,
                retry_after,
                busy,
            } => {
                let budget = keys
                    .get(index)
                    .map(|k| k.budget)
                    .ok_or_else(|| unavailable(RedisError::reply("sign-in hold script").into()))?;
                Err(HoldError::Limited(Limited {
                    budget,
                    retry_after,
                    busy,
                }))
            }
        }
    }
}

fn now_arg(now: Option<fn() -> u64>) -> String {
    now.map(|now| now().to_string()).unwrap_or_default()
}

/// The outcome of [`hold`].
pub(super) enum Hold {
    /// One unit of every key is held.
    Held(RedisHeld),
    /// The key at `index` refused; nothing is held.
    Refused {
        index: usize,
        retry_after: Duration,
        busy: bool,
    },
}

/// Runs [`HOLD`] on `keys` (TAT and held keys, in pairs) with `args` (t
/// and tau of each pair, in µs).
pub(super) async fn hold(
    redis: &RedisConnection,
    now: Option<fn() -> u64>,
    lease: Duration,
    keys: Vec<String>,
    args: Vec<u64>,
) -> Result<Hold, BoxError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| -> BoxError { e.to_string().into() })?;
    let id = super::hex(&id);
    let lease = micros(lease);
    let (call_keys, call_args, call_id, call_now) =
        (keys.clone(), args.clone(), id.clone(), now_arg(now));
    let reply: Vec<u64> = redis
        .run(move |mut con| {
            Box::pin(async move {
                let mut call = HOLD.prepare_invoke();
                for key in &call_keys {
                    call.key(key);
                }
                call.arg(call_now).arg(lease).arg(call_id);
                for arg in &call_args {
                    call.arg(*arg);
                }
                call.invoke_async(&mut con).await
            })
        })
        .await?;
    match reply.as_slice() {
        [0] => Ok(Hold::Held(RedisHeld(Some(Held {
            redis: redis.clone(),
            now,
            keys,
            args,
            id,
        })))),
        [i, wait, busy] => Ok(Hold::Refused {
            index: usize::try_from(*i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .ok_or(RedisError::reply("hold script"))?,
            retry_after: Duration::from_micros(*wait),
            busy: *busy == 1,
        }),
        _ => Err(RedisError::reply("hold script").into()),
    }
}

/// Runs [`SETTLE`]; a failure is logged only: the lease ends the hold.
async fn settle(held: Held, failed: bool) {
    let Held {
        redis,
        now,
        keys,
        args,
        id,
    } = held;
    let now = now_arg(now);
    let result: Result<i64, BoxError> = redis
        .run(move |mut con| {
            Box::pin(async move {
                let mut call = SETTLE.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                call.arg(now).arg(u8::from(failed)).arg(id);
                for arg in &args {
                    call.arg(*arg);
                }
                call.invoke_async(&mut con).await
            })
        })
        .await;
    if let Err(error) = result {
        tracing::debug!(%error, "held units not settled; their lease will count them as failures");
    }
}

/// Units held in Redis by one attempt. Dropping them unsettled counts as
/// a failure, as the trait requires.
pub(super) struct RedisHeld(Option<Held>);

pub(super) struct Held {
    redis: RedisConnection,
    now: Option<fn() -> u64>,
    keys: Vec<String>,
    args: Vec<u64>,
    id: String,
}

impl RedisHeld {
    /// Settles now, waiting for Redis (a failure to settle is logged: the
    /// lease ends the hold as a failure).
    pub(super) async fn settle_now(mut self, failed: bool) {
        if let Some(held) = self.0.take() {
            settle(held, failed).await;
        }
    }

    /// Settles in the background: records a failure in every key
    /// (`failed`) or gives the units back.
    pub(super) fn send(&mut self, failed: bool) {
        let Some(held) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(settle(held, failed));
            }
            Err(_) => tracing::warn!(
                "sign-in units settled outside a tokio runtime: their lease will count them as failures"
            ),
        }
    }
}

impl fmt::Debug for RedisHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budgets = self.0.as_ref().map_or(0, |held| held.keys.len() / 2);
        f.debug_struct("RedisHeld")
            .field("budgets", &budgets)
            .finish_non_exhaustive()
    }
}

impl HeldUnits for RedisHeld {
    fn settle(mut self: Box<Self>, failed: bool) {
        self.send(failed);
    }
}

impl Drop for RedisHeld {
    fn drop(&mut self) {
        self.send(true);
    }
}

impl SignInStore for RedisSignInStore {
    fn quota(&self, budget: Budget) -> Quota {
        self.inner.quotas[budget as usize]
    }

    fn hold<'a>(
        &'a self,
        keys: &'a [BudgetKey<'a>],
    ) -> StoreFuture<'a, Result<Box<dyn HeldUnits>, HoldError>> {
        Box::pin(self.hold_keys(keys))
    }

    fn remember(&self, key: BudgetKey<'_>, ttl: Duration) {
        let known = self.known_key(key.key);
        let group = format!(
            "{}sign-in:{{sign-in}}:group:{}",
            self.inner.prefix,
            self.hex(&[b"group", format!("{:?}", key.network).as_bytes()])
        );
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cap = self.inner.known_per_group;
        let redis = self.inner.redis.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("sign-in success not remembered outside a tokio runtime");
            return;
        };
        runtime.spawn(async move {
            let result: Result<i64, BoxError> = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        REMEMBER
                            .key(known)
                            .key(group)
                            .arg(ttl)
                            .arg(cap)
                            .invoke_async(&mut con)
                            .await
                    })
                })
                .await;
            if let Err(error) = result {
                tracing::debug!(%error, "sign-in success not remembered");
            }
        });
    }

    fn is_known<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>> {
        let known = self.known_key(key);
        let redis = self.inner.redis.clone();
        Box::pin(async move {
            let found: i64 = redis
                .run(move |mut con| {
                    Box::pin(
                        async move { redis::cmd("EXISTS").arg(&known).query_async(&mut con).await },
                    )
                })
                .await
                .map_err(StoreError)?;
            Ok(found == 1)
        })
    }
}
