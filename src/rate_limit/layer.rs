use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{response, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::failed::{is_failed_attempt, Predicate};
use super::future::{After, ResponseFuture, Then};
use super::headers::{self, RATELIMIT, RATELIMIT_POLICY};
use super::key::{KeyError, KeyExtractor, RequestHead};
use super::limiter::{Attempt, Denied, Hashed, Limiter};
use crate::body::ResponseBody;
use crate::rejection::{is_grpc, Prerendered, Rejection, RejectionHandler, Rejections};

/// The body message of a `500` for a request whose rate-limit key cannot be
/// found: fixed, so that it tells nothing of the configuration.
const KEY_UNAVAILABLE: &str = "the request cannot be rate-limited: server misconfiguration";

/// The key extractor of a [`Limit`], behind a trait object so limits with
/// different keys can be stacked in one layer.
trait ErasedKey: Send + Sync + 'static {
    fn hash(&self, request: RequestHead<'_>, limiter: &Limiter) -> Result<Hashed, KeyError>;
}

impl<E: KeyExtractor> ErasedKey for E {
    #[inline]
    fn hash(&self, request: RequestHead<'_>, limiter: &Limiter) -> Result<Hashed, KeyError> {
        let key = self.extract(request)?;
        Ok(Hashed {
            key: limiter.hash(&key),
            network: self.network(&key),
        })
    }
}

/// One rate limit: a name (the policy identifier of the `RateLimit` and
/// `RateLimit-Policy` headers), a [`Limiter`] and a [`KeyExtractor`].
///
/// Cloning is a reference-count increment: clones share the limiter, so
/// one `Limit` used by several layers or routes is one budget.
///
/// ```
/// use tower_auth::rate_limit::{Limit, Limiter, PeerIp, Quota, Subject};
///
/// # fn main() -> Result<(), tower_auth::rate_limit::QuotaError> {
/// let per_ip = Limit::new("per-ip", Quota::per_minute(100)?, PeerIp::new());
/// let per_user = Limit::new(
///     "per-user",
///     Limiter::builder(Quota::per_hour(1_000)?).max_keys(50_000).build(),
///     Subject,
/// );
/// # let _ = (per_ip, per_user);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Limit {
    inner: Arc<LimitInner>,
}

struct LimitInner {
    name: Box<str>,
    limiter: Limiter,
    key: Box<dyn ErasedKey>,
}

impl Limit {
    /// A limit named `name` (printable ASCII; other characters are dropped
    /// from the headers) counting requests by `key` with `limiter` (or a
    /// [`Quota`](super::Quota), for a limiter with the default options).
    pub fn new(
        name: impl Into<String>,
        limiter: impl Into<Limiter>,
        key: impl KeyExtractor,
    ) -> Self {
        Limit {
            inner: Arc::new(LimitInner {
                name: name.into().into_boxed_str(),
                limiter: limiter.into(),
                key: Box::new(key),
            }),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The hashed key of `request`.
    #[inline]
    pub(crate) fn key_of(&self, request: RequestHead<'_>) -> Result<Hashed, KeyError> {
        self.inner.key.hash(request, &self.inner.limiter)
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("name", &self.name())
            .field("limiter", self.limiter())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Config {
    limits: Vec<Limit>,
    policy: HeaderValue,
    remaining_headers: bool,
    rejections: Rejections,
    /// Set for a failed-attempts limiter: only these responses count.
    is_failure: Option<Arc<Predicate>>,
    /// The `429` rendered once for HTTP and for gRPC, with the policy;
    /// `Retry-After` and `RateLimit` are replaced per refusal. `None` with
    /// a custom renderer, called for every refusal.
    too_many: Option<Arc<[Prerendered; 2]>>,
}

impl Config {
    /// The `RateLimit-Policy` value of the limits.
    fn policy(&self) -> HeaderValue {
        let mut list = String::new();
        for limit in &self.limits {
            headers::push_policy(&mut list, limit.name(), limit.limiter().quota());
        }
        headers::value(list)
    }

    /// Renders the policy and the fixed part of the `429` again after the
    /// limits or the renderer changed.
    fn prerender(&mut self) {
        self.policy = self.policy();
        let too_many = |grpc| {
            // Placeholders, replaced in place per refusal.
            let rejection = Rejection::too_many_requests(std::time::Duration::from_secs(1))
                .with_header(RATELIMIT_POLICY, self.policy.clone())
                .with_header(RATELIMIT, HeaderValue::from_static(""))
                .with_grpc(grpc);
            self.rejections.prerender(rejection)
        };
        self.too_many = match (too_many(false), too_many(true)) {
            (Some(http), Some(grpc)) => Some(Arc::new([http, grpc])),
            _ => None,
        };
    }

    /// The `RateLimit` items of `keys`, the keys of the first limits.
    fn limits_header(&self, keys: impl IntoIterator<Item = Hashed>) -> HeaderValue {
        let mut list = String::new();
        for (limit, key) in self.limits.iter().zip(keys) {
            let state = limit.limiter().state_of(key);
            headers::push_limit(&mut list, limit.name(), state.remaining(), state.next_in());
        }
        headers::value(list)
    }

    /// `429` for `denied` by `limit`: `Retry-After`, `RateLimit-Policy`
    /// and `RateLimit: "<name>";r=0;t=<Retry-After>`, gRPC status 8 for
    /// gRPC requests.
    #[cold]
    #[inline(never)]
    fn too_many_requests(
        &self,
        limit: &Limit,
        denied: Denied,
        request: RequestHead<'_>,
    ) -> Response<Bytes> {
        let seconds = headers::seconds(denied.retry_after()).max(1);
        let retry = std::time::Duration::from_secs(seconds);
        let mut item = String::new();
        headers::push_limit(&mut item, limit.name(), 0, retry);
        let grpc = is_grpc(request.version, request.headers);
        if let Some(too_many) = &self.too_many {
            let mut response = too_many[usize::from(grpc)].respond();
            let fields = response.headers_mut();
            fields.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
            fields.insert(RATELIMIT, headers::value(item));
            return response;
        }
        let rejection = Rejection::too_many_requests(retry)
            .with_header(RATELIMIT_POLICY, self.policy.clone())
            .with_header(RATELIMIT, headers::value(item))
            .with_grpc(grpc);
        self.rejections.respond(rejection)
    }

    /// `500` for a request whose key cannot be found: the stack is
    /// misconfigured, and skipping the limit would fail open. The body says
    /// so in fixed words; the limit's name and what was missing (e.g. no
    /// `ConnectInfo`) go to an `error` event only.
    #[cold]
    #[inline(never)]
    fn key_unavailable(
        &self,
        limit: &Limit,
        error: KeyError,
        request: RequestHead<'_>,
    ) -> Response<Bytes> {
        tracing::error!(limit = limit.name(), %error, "rate limit key unavailable");
        let rejection = Rejection::internal(KEY_UNAVAILABLE)
            .with_grpc(is_grpc(request.version, request.headers));
        self.rejections.respond(rejection)
    }

    /// Checks every limit in order with `take`: the refusal of the first
    /// one that refuses, or whose key cannot be found.
    #[inline]
    fn check_each(
        &self,
        request: RequestHead<'_>,
        mut take: impl FnMut(&Limiter, Hashed) -> Result<(), Denied>,
    ) -> Result<(), Box<Response<Bytes>>> {
        for limit in &self.limits {
            let refused = match limit.key_of(request) {
                Ok(key) => match take(limit.limiter(), key) {
                    Ok(()) => {
                        crate::observe::rate_limit(limit.name(), true); // observe
                        continue;
                    }
                    Err(denied) => {
                        crate::observe::rate_limit(limit.name(), false); // observe
                        self.too_many_requests(limit, denied, request)
                    }
                },
                Err(error) => self.key_unavailable(limit, error, request),
            };
            return Err(Box::new(refused));
        }
        Ok(())
    }
}

/// The attempts a request holds in a failed-attempts limiter (one per
/// limit), settled when its response is known. Dropped unsettled (the
/// response future was dropped), they count as failures.
pub(crate) struct Settle {
    config: Arc<Config>,
    attempts: Vec<Attempt>,
}

impl Settle {
    /// Records the attempts as failures if `response` is one, and gives
    /// their units back otherwise (an error, `None`, is not a failure).
    /// Returns the remaining-quota headers to add, if enabled.
    pub(crate) fn finish(self, response: Option<&response::Parts>) -> Option<[HeaderValue; 2]> {
        let config = &*self.config;
        let failed = match (response, &config.is_failure) {
            (Some(response), Some(is_failure)) => is_failure(response),
            _ => false,
        };
        // The keys for the remaining-quota headers (the attempts are consumed
        // below); no allocation when the headers are off.
        let keys = config.remaining_headers.then(|| {
            self.attempts
                .iter()
                .map(Attempt::key)
                .collect::<Vec<Hashed>>()
        });
        for attempt in self.attempts {
            if failed {
                attempt.fail();
            } else {
                attempt.release();
            }
        }
        keys.map(|keys| [config.policy.clone(), config.limits_header(keys)])
    }
}

/// Rate-limits requests with one or more [`Limit`]s. See the
/// [module docs](super).
///
/// * [`RateLimitLayer::new`] counts every request: the limits are checked
///   in order when the request arrives (never in `poll_ready`: axum does
///   not apply backpressure), and the first exhausted one answers `429`;
///   the limits before it have counted the request.
/// * [`RateLimitLayer::failed_attempts`] counts failed attempts only, such
///   as wrong passwords: once the budget is spent, requests are refused
///   with `429` before they reach the inner service.
///
/// # Failed attempts
///
/// Each request holds one unit of every limit while it runs
/// ([`Limiter::attempt`]), and the units count only if its response is a
/// failure (by default [`is_failed_attempt`](super::is_failed_attempt):
/// `401`, gRPC `UNAUTHENTICATED`, or the
/// [`FailedAttempt`](super::FailedAttempt) extension; see
/// [`failure_when`](RateLimitLayer::failure_when)); a failure counts from
/// the moment its response is known. So concurrent attempts cannot overrun
/// the budget: with 5 units left, at most 5 attempts are in flight, however
/// long they take. A success gives back the unit it held and nothing else,
/// so it can never forgive a failure. A request refused by one limit gives
/// back what it held in the others. A request whose future is dropped
/// before it completes counts as a failure; one whose inner service errors
/// does not.
///
/// Units are held and recorded where the key's budget is: its own, or the
/// limiter's shared overflow budget when the key was not tracked at the
/// cap (see [Memory](Limiter#memory)). At the cap, successful logins of
/// untracked clients therefore never use up the overflow budget; failed
/// ones do.
///
/// The seed's "5 failed logins per 15 minutes, then 429 until the window
/// passes" is `Quota::with_period(15 min)?.allow_burst(5)?`: five failures
/// in a row are allowed, then the client is refused for 15 minutes and
/// regains one attempt every 15 minutes (its whole budget after 75 quiet
/// minutes).
#[derive(Clone)]
pub struct RateLimitLayer {
    config: Arc<Config>,
}

impl RateLimitLayer {
    /// A layer counting every request against `limit`.
    pub fn new(limit: Limit) -> Self {
        Self::with(limit, None)
    }

    /// A layer counting only failed attempts against `limit`: by default
    /// the responses for which [`is_failed_attempt`](super::is_failed_attempt)
    /// holds. See [Failed attempts](RateLimitLayer#failed-attempts).
    pub fn failed_attempts(limit: Limit) -> Self {
        Self::with(limit, Some(Arc::new(is_failed_attempt)))
    }

    fn with(limit: Limit, is_failure: Option<Arc<Predicate>>) -> Self {
        let mut config = Config {
            limits: vec![limit],
            policy: HeaderValue::from_static(""),
            remaining_headers: false,
            rejections: Rejections::new(),
            is_failure,
            too_many: None,
        };
        config.prerender();
        RateLimitLayer {
            config: Arc::new(config),
        }
    }

    /// Also enforces `limit` (after the limits already added), e.g. per IP
    /// and per user.
    pub fn limit(mut self, limit: Limit) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.limits.push(limit);
        config.prerender();
        self
    }

    /// Counts only the responses for which `is_failure` returns `true`: a
    /// failed-attempts limiter with your own notion of failure.
    pub fn failure_when<F>(mut self, is_failure: F) -> Self
    where
        F: Fn(&response::Parts) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).is_failure = Some(Arc::new(is_failure));
        self
    }

    /// Adds `RateLimit-Policy` and `RateLimit` headers (remaining quota of
    /// every limit) to the responses that went through. Off by default:
    /// they tell clients about your capacity (draft §8.2) and cost a little
    /// per request. `429` responses always carry them.
    pub fn remaining_headers(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).remaining_headers = enabled;
        self
    }

    /// Renders rejections with `handler`. See [`crate::rejection`].
    pub fn on_rejection(self, handler: impl RejectionHandler) -> Self {
        self.rejections(Rejections::custom(handler))
    }

    /// Uses a shared [`Rejections`] renderer.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.rejections = rejections;
        config.prerender();
        self
    }

    /// The limits, in the order they are checked.
    pub fn limits(&self) -> &[Limit] {
        &self.config.limits
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.config.limits)
            .field("failed_attempts", &self.config.is_failure.is_some())
            .field("remaining_headers", &self.config.remaining_headers)
            .field("rejections", &self.config.rejections)
            .finish()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RateLimitService<S> {
    /// Wraps `inner`, counting every request against `limit`.
    pub fn new(inner: S, limit: Limit) -> Self {
        RateLimitLayer::new(limit).layer(inner)
    }

    /// A layer for this service: same as [`RateLimitLayer::new`].
    pub fn layer(limit: Limit) -> RateLimitLayer {
        RateLimitLayer::new(limit)
    }

    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for RateLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The checks take the request head by reference in a separate,
        // non-generic function, so this one stays small enough to inline
        // and the request is not copied on its way to the inner service.
        match admit(&self.config, RequestHead::from(&req)) {
            Ok(after) => ResponseFuture::inner(self.inner.call(req), after),
            Err(refused) => ResponseFuture::rejected(refused),
        }
    }
}

/// Checks every limit: what to do with the response, or the refusal.
fn admit(
    config_arc: &Arc<Config>,
    request: RequestHead<'_>,
) -> Result<After, Box<Response<Bytes>>> {
    let config = &**config_arc;
    if config.is_failure.is_some() {
        return admit_attempt(config_arc, request);
    }
    // Keys, for the remaining-quota headers; no allocation otherwise.
    let mut keys = config
        .remaining_headers
        .then(|| Vec::with_capacity(config.limits.len()));
    config.check_each(request, |limiter, key| {
        limiter.check_hashed(key)?;
        if let Some(keys) = &mut keys {
            keys.push(key);
        }
        Ok(())
    })?;
    Ok(keys.map(|keys| {
        Box::new(Then::Headers([
            config.policy.clone(),
            config.limits_header(keys),
        ]))
    }))
}

/// [`admit`] for a failed-attempts limiter: holds one unit of every limit.
#[cold]
#[inline(never)]
fn admit_attempt(
    config_arc: &Arc<Config>,
    request: RequestHead<'_>,
) -> Result<After, Box<Response<Bytes>>> {
    let config = &**config_arc;
    let mut attempts = Vec::with_capacity(config.limits.len());
    let checked = config.check_each(request, |limiter, key| {
        attempts.push(limiter.attempt_hashed(key)?);
        Ok(())
    });
    if let Err(refused) = checked {
        attempts.into_iter().for_each(Attempt::release);
        return Err(refused);
    }
    Ok(Some(Box::new(Then::Settle(Settle {
        config: Arc::clone(config_arc),
        attempts,
    }))))
}
