//! [`RedisRateLimiter`]: the GCRA of [`Limiter`](crate::rate_limit::Limiter)
//! evaluated atomically in Redis, shared by every instance of an app.

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use hmac::{Hmac, Mac};
use redis::Script;
use sha2::Sha256;

use super::sign_in::{hold, micros, Hold, RedisHeld, DEFAULT_HOLD_LEASE};
use super::{RedisConnection, RedisError, DEFAULT_PREFIX};
use crate::body::{self, ResponseBody};
use crate::rate_limit::headers::{self, RATELIMIT, RATELIMIT_POLICY};
use crate::rate_limit::{
    is_failed_attempt, Denied, KeyError, KeyExtractor, KeyState, Predicate, Quota, RequestHead,
};
use crate::rejection::{is_grpc, Rejection, RejectionHandler, RejectionKind, Rejections};
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
/// is rounded to the microsecond, and a quota's replenish interval is
/// taken in whole microseconds, at least one) and the time a request takes
/// to reach Redis (a loopback round trip, well under a millisecond). There is no
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
/// # async fn run() -> Result<(), tower_auth::BoxError> {
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

    /// Settles the attempt and waits until Redis has recorded it: a
    /// failure (`failed`) or the unit given back.
    pub async fn settle(self, failed: bool) {
        self.0.settle_now(failed).await;
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
        let mut mac = self.mac();
        mac.update(key);
        self.key_of_mac(mac)
    }

    /// The Redis key of what a [`KeyExtractor`] found: its `Hash` bytes,
    /// integers in little-endian order, so that every instance of one
    /// build computes the same key on any architecture.
    fn hashed_key<K: Hash + ?Sized>(&self, key: &K) -> String {
        let mut hasher = MacHasher(self.mac());
        key.hash(&mut hasher);
        self.key_of_mac(hasher.0)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = self.inner.mac.clone();
        mac.update(self.inner.name.as_bytes());
        mac.update(&[0]);
        mac
    }

    fn key_of_mac(&self, mac: Hmac<Sha256>) -> String {
        let digest = mac.finalize().into_bytes();
        let hex = super::hex(&digest[..16]);
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
        self.check_redis_key(self.redis_key(key)).await
    }

    async fn check_redis_key(
        &self,
        redis_key: String,
    ) -> Result<Result<KeyState, Denied>, BoxError> {
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
        self.attempt_redis_key(self.redis_key(key)).await
    }

    async fn attempt_redis_key(
        &self,
        tat: String,
    ) -> Result<Result<RedisAttempt, Denied>, BoxError> {
        let keys = vec![tat.clone(), format!("{tat}:held")];
        let inner = &*self.inner;
        let args = vec![inner.t, inner.tau];
        match hold(&inner.redis, inner.now, inner.lease, keys, args).await? {
            Hold::Held(held) => Ok(Ok(RedisAttempt(held))),
            Hold::Refused { retry_after, .. } => Ok(Err(Denied::new(retry_after))),
        }
    }
}

/// Feeds a key's `Hash` bytes to the HMAC, integers in little-endian
/// order (`Hash` writes them in native order by default).
struct MacHasher(Hmac<Sha256>);

impl Hasher for MacHasher {
    fn finish(&self) -> u64 {
        // Never read: the digest is taken from the HMAC.
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u16(&mut self, n: u16) {
        self.0.update(&n.to_le_bytes());
    }
    fn write_u32(&mut self, n: u32) {
        self.0.update(&n.to_le_bytes());
    }
    fn write_u64(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }
    fn write_u128(&mut self, n: u128) {
        self.0.update(&n.to_le_bytes());
    }
    fn write_usize(&mut self, n: usize) {
        self.0.update(&(n as u64).to_le_bytes());
    }
}

/// The key extractor of a [`RedisLimit`], type-erased so that limits with
/// different keys stack in one layer.
trait ErasedKey: Send + Sync + 'static {
    fn redis_key(
        &self,
        request: RequestHead<'_>,
        limiter: &RedisRateLimiter,
    ) -> Result<String, KeyError>;
}

impl<E: KeyExtractor> ErasedKey for E {
    fn redis_key(
        &self,
        request: RequestHead<'_>,
        limiter: &RedisRateLimiter,
    ) -> Result<String, KeyError> {
        Ok(limiter.hashed_key(&self.extract(request)?))
    }
}

/// One rate limit in Redis: a name (the policy of the `RateLimit`
/// headers), a [`RedisRateLimiter`] and a [`KeyExtractor`] (any of the
/// [local layer's](crate::rate_limit#) keys: peer or forwarded IP,
/// subject, API key header, route, closures, combinations). Clones share
/// the limiter.
#[derive(Clone)]
pub struct RedisLimit {
    inner: Arc<LimitInner>,
}

struct LimitInner {
    limiter: RedisRateLimiter,
    key: Box<dyn ErasedKey>,
}

impl RedisLimit {
    /// A limit counting requests by `key` in `limiter` (its name is the
    /// policy's name).
    pub fn new(limiter: RedisRateLimiter, key: impl KeyExtractor) -> Self {
        Self {
            inner: Arc::new(LimitInner {
                limiter,
                key: Box::new(key),
            }),
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &RedisRateLimiter {
        &self.inner.limiter
    }
}

impl fmt::Debug for RedisLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimit")
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Config {
    limits: Vec<RedisLimit>,
    policy: HeaderValue,
    remaining_headers: bool,
    rejections: Rejections,
    is_failure: Option<Arc<Predicate>>,
}

impl Config {
    fn policy(&self) -> HeaderValue {
        let mut list = String::new();
        for limit in &self.limits {
            headers::push_policy(&mut list, limit.limiter().name(), limit.limiter().quota());
        }
        headers::value(list)
    }

    fn too_many_requests(&self, limit: &RedisLimit, denied: Denied, grpc: bool) -> Response<Bytes> {
        let retry = Duration::from_secs(headers::seconds(denied.retry_after()).max(1));
        let mut item = String::new();
        headers::push_limit(&mut item, limit.limiter().name(), 0, retry);
        let rejection = Rejection::too_many_requests(retry)
            .with_header(RATELIMIT_POLICY, self.policy.clone())
            .with_header(RATELIMIT, headers::value(item))
            .with_grpc(grpc);
        self.rejections.respond(rejection)
    }

    fn unavailable(&self, limit: &RedisLimit, error: &BoxError, grpc: bool) -> Response<Bytes> {
        tracing::error!(limit = limit.limiter().name(), %error, "rate limit store unavailable");
        let rejection = Rejection::new(
            RejectionKind::Unavailable,
            "rate limiting is unavailable, retry later",
        )
        .with_grpc(grpc);
        self.rejections.respond(rejection)
    }

    fn key_unavailable(&self, limit: &RedisLimit, error: &KeyError, grpc: bool) -> Response<Bytes> {
        tracing::error!(limit = limit.limiter().name(), %error, "rate limit key unavailable");
        let rejection =
            Rejection::internal("the request cannot be rate-limited: server misconfiguration")
                .with_grpc(grpc);
        self.rejections.respond(rejection)
    }

    /// Takes one unit of every limit in order: the `RateLimit` items, or
    /// the refusal of the first limit that refuses or cannot answer.
    async fn check(&self, keys: Vec<String>, grpc: bool) -> Result<String, Response<Bytes>> {
        let mut list = String::new();
        for (limit, key) in self.limits.iter().zip(keys) {
            match limit.limiter().check_redis_key(key).await {
                Ok(Ok(state)) => headers::push_limit(
                    &mut list,
                    limit.limiter().name(),
                    state.remaining(),
                    state.next_in(),
                ),
                Ok(Err(denied)) => return Err(self.too_many_requests(limit, denied, grpc)),
                Err(error) => return Err(self.unavailable(limit, &error, grpc)),
            }
        }
        Ok(list)
    }

    /// Holds one unit of every limit in order; what was held is given back
    /// when a later limit refuses.
    async fn hold(
        &self,
        keys: Vec<String>,
        grpc: bool,
    ) -> Result<Vec<RedisAttempt>, Response<Bytes>> {
        let mut held = Vec::with_capacity(keys.len());
        for (limit, key) in self.limits.iter().zip(keys) {
            let refused = match limit.limiter().attempt_redis_key(key).await {
                Ok(Ok(attempt)) => {
                    held.push(attempt);
                    continue;
                }
                Ok(Err(denied)) => self.too_many_requests(limit, denied, grpc),
                Err(error) => self.unavailable(limit, &error, grpc),
            };
            held.into_iter().for_each(RedisAttempt::release);
            return Err(refused);
        }
        Ok(held)
    }
}

/// [`RateLimitLayer`](crate::rate_limit::RateLimitLayer)'s twin with
/// budgets in Redis ([`RedisRateLimiter`]), shared by every instance: the
/// same `429` responses, `Retry-After`, `RateLimit` and `RateLimit-Policy`
/// headers, gRPC statuses and failed-attempt semantics, one Redis round
/// trip per limit per request. Redis down or slow: `503` (gRPC `14`),
/// nothing admitted.
///
/// A separate layer rather than a backend of `RateLimitLayer`, so that the
/// local layer keeps its synchronous, allocation-free path (and its
/// `!Send` services): this one needs `Send + 'static` services and boxes
/// its future. Put a local per-IP `RateLimitLayer` in front of it to keep
/// floods off Redis.
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_auth::rate_limit::{PeerIp, Quota};
/// use tower_auth::redis::{RedisConnection, RedisLimit, RedisRateLimitLayer, RedisRateLimiter};
///
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let per_ip = RedisRateLimiter::new(redis, [7; 32], "per-ip", Quota::per_minute(100)?);
/// let layer = RedisRateLimitLayer::new(RedisLimit::new(per_ip, PeerIp::new()));
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRateLimitLayer {
    config: Arc<Config>,
}

impl RedisRateLimitLayer {
    /// A layer counting every request against `limit`.
    pub fn new(limit: RedisLimit) -> Self {
        Self::with(limit, None)
    }

    /// A layer counting failed attempts only (by default the responses
    /// [`is_failed_attempt`] holds for): each request holds a unit of every
    /// limit while it runs, on every instance, and it counts only if the
    /// response is a failure. See
    /// [`RateLimitLayer::failed_attempts`](crate::rate_limit::RateLimitLayer::failed_attempts).
    pub fn failed_attempts(limit: RedisLimit) -> Self {
        Self::with(limit, Some(Arc::new(is_failed_attempt)))
    }

    fn with(limit: RedisLimit, is_failure: Option<Arc<Predicate>>) -> Self {
        let mut config = Config {
            limits: vec![limit],
            policy: HeaderValue::from_static(""),
            remaining_headers: false,
            rejections: Rejections::new(),
            is_failure,
        };
        config.policy = config.policy();
        Self {
            config: Arc::new(config),
        }
    }

    /// Also enforces `limit`, after the ones already added.
    #[must_use]
    pub fn limit(mut self, limit: RedisLimit) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.limits.push(limit);
        config.policy = config.policy();
        self
    }

    /// Counts only the responses for which `is_failure` returns `true`.
    #[must_use]
    pub fn failure_when<F>(mut self, is_failure: F) -> Self
    where
        F: Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).is_failure = Some(Arc::new(is_failure));
        self
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to the responses that went
    /// through (counting layers only; off by default).
    #[must_use]
    pub fn remaining_headers(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).remaining_headers = enabled;
        self
    }

    /// Renders rejections with `handler`. See [`crate::rejection`].
    #[must_use]
    pub fn on_rejection(mut self, handler: impl RejectionHandler) -> Self {
        Arc::make_mut(&mut self.config).rejections = Rejections::custom(handler);
        self
    }
}

impl fmt::Debug for RedisRateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitLayer")
            .field("limits", &self.config.limits)
            .field("failed_attempts", &self.config.is_failure.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RedisRateLimitLayer {
    type Service = RedisRateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimitService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`RedisRateLimitLayer`].
#[derive(Clone)]
pub struct RedisRateLimitService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for RedisRateLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The response future of [`RedisRateLimitService`].
pub type RedisRateLimitFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RedisRateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RedisRateLimitFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = Arc::clone(&self.config);
        let head = RequestHead::from(&req);
        let grpc = is_grpc(head.version, head.headers);
        let mut keys = Vec::with_capacity(config.limits.len());
        for limit in &config.limits {
            match limit.inner.key.redis_key(head, limit.limiter()) {
                Ok(key) => keys.push(key),
                Err(error) => {
                    let refused = config.key_unavailable(limit, &error, grpc);
                    return Box::pin(std::future::ready(Ok(body::rejection(refused))));
                }
            }
        }
        // The ready service goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if config.is_failure.is_some() {
                let held = match config.hold(keys, grpc).await {
                    Ok(held) => held,
                    Err(refused) => return Ok(body::rejection(refused)),
                };
                let (parts, body) = match inner.call(req).await {
                    Ok(response) => response.into_parts(),
                    Err(error) => {
                        // An error is not a failed attempt.
                        held.into_iter().for_each(RedisAttempt::release);
                        return Err(error);
                    }
                };
                let failed = config.is_failure.as_ref().is_some_and(|f| f(&parts));
                // Settled before the response goes out, so that the
                // client's next request sees it on any instance.
                for attempt in held {
                    attempt.settle(failed).await;
                }
                return Ok(body::wrap(Response::from_parts(parts, body)));
            }
            let list = match config.check(keys, grpc).await {
                Ok(list) => list,
                Err(refused) => return Ok(body::rejection(refused)),
            };
            let mut response = inner.call(req).await?;
            if config.remaining_headers {
                let fields = response.headers_mut();
                fields.append(RATELIMIT_POLICY, config.policy.clone());
                fields.append(RATELIMIT, headers::value(list));
            }
            Ok(body::wrap(response))
        })
    }
}
