//! Sign-in protection against password guessing and credential stuffing
//! that does not lock real users out: per-account and per-client budgets,
//! device cookies, and trust for clients that signed in recently.
//!
//! [`SignInLayer`] goes on the sign-in routes. It reads the client address
//! and any device cookie from the request head and puts a [`SignIn`] handle
//! into the request extensions. The handler, once it has read the account
//! name from the body, calls [`SignIn::attempt`] *before* checking the
//! password: the attempt holds one unit of each budget it is counted in, or
//! is refused with `429`. The layer then reads the outcome from the
//! response (a `401` is a failure, a `2xx` or `3xx` a success, anything
//! else neither; or [`SignIn::succeeded`] / [`SignIn::failed`]), records a
//! failure or gives the units back, and on a success sets a new device
//! cookie.
//!
//! # Budgets
//!
//! An attempt is counted in the first of these that applies:
//!
//! | trust | when | budgets (defaults) |
//! |---|---|---|
//! | device | a valid [device cookie](DeviceCookies) for this account | [`Budget::Device`], per cookie: 5 failures, then 1 per 15 min |
//! | known client | no such cookie, but this client address signed in to this account within 30 days | [`Budget::Known`], per (client, account): 5, then 1 per 15 min |
//! | untrusted | everyone else | [`Budget::Pair`] per (client, account): 5, then 1 per 15 min (the seeds' rule); [`Budget::Account`] per account across clients: 20, then 1 per 3 min; [`Budget::Client`] per client across accounts: 100, then 1 per 9 s |
//!
//! * A botnet guessing one account gets 20 guesses, then 20 an hour, however
//!   many addresses it has ([`Budget::Account`]); one address spraying many
//!   accounts gets 100, then 400 an hour ([`Budget::Client`]); one address
//!   on one account gets the seeds' 5 per 15 minutes ([`Budget::Pair`]).
//! * A user who signed in before is not locked out by those floods: their
//!   device cookie, or their known address, has its own budget, which only
//!   their own failures (or a thief's) spend. Once it is spent (5 failures),
//!   the cookie or address is locked out and its attempts count as
//!   untrusted (OWASP's device-cookie lockout).
//! * A device cookie of another account, a forged, tampered or expired one
//!   is ignored: the attempt is untrusted.
//! * Budgets count failures only. A unit is held while the attempt runs, so
//!   100 concurrent wrong passwords cannot overrun any budget: at most the
//!   free units are in flight. When a budget is full only of attempts in
//!   flight (not of failures), a new attempt *waits* for them to settle, up
//!   to [`max_wait`](SignInLimiterBuilder::max_wait) (10 s), instead of
//!   being refused: so 64 concurrent correct sign-ins from one office
//!   address are all served. At most
//!   [`max_waiting`](SignInLimiterBuilder::max_waiting) attempts wait at
//!   once; past that they are refused at once.
//! * Caps: each budget tracks at most 100 000 keys, with per-network caps
//!   and overflow budgets of one key's quota (see
//!   [Memory](super::Limiter#memory)). A flood of a million failing
//!   addresses fills the untrusted budgets, never the device and known
//!   ones (only successes create trust), so users with a recent success
//!   keep being served. Trusted keys are also capped per account (a share
//!   of the cap for devices, 64 remembered addresses), so one account
//!   with many devices or addresses cannot crowd the others out.
//!
//! # Responses
//!
//! A refusal is `429` with `Retry-After`, `RateLimit-Policy` (every budget)
//! and `RateLimit` (the budget that refused), rendered by
//! [`crate::rejection`] (gRPC: status 8 `RESOURCE_EXHAUSTED`). With
//! [`remaining_headers`](SignInLimiterBuilder::remaining_headers), every
//! attempt's response carries both fields too. Budgets are
//! keyed by the account name as typed (trimmed, lower-cased), whether the
//! account exists or not, so a refusal tells nothing about the account;
//! answer unknown users and wrong passwords with the same `401` and the
//! same work (hash a dummy password). A store error is `503`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::rate_limit::sign_in::{DeviceCookies, DeviceKey, SignIn, SignInLayer, SignInLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = SignInLimiter::builder()
//!     .device_cookies(DeviceCookies::new(DeviceKey::generate()?))
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(SignInLayer::new(limiter))
//!     .service_fn(|req: Request<String>| async move {
//!         let sign_in = req.extensions().get::<SignIn>().cloned().expect("SignInLayer");
//!         // The account name comes from the body.
//!         let (user, password) = req.body().split_once(':').unwrap_or_default();
//!         if let Err(refused) = sign_in.attempt(user).await {
//!             return Ok::<_, Infallible>(refused.into_http_response().map(|_| String::new()));
//!         }
//!         let ok = password == "correct horse"; // hash check, dummy hash for unknown users
//!         let status = if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
//!         Ok(Response::builder().status(status).body(String::new()).unwrap())
//!     });
//!
//! let request = |body: &str| {
//!     let mut req = Request::new(body.to_owned());
//!     req.extensions_mut().insert(SocketAddr::from(([192, 0, 2, 1], 50_000)));
//!     req
//! };
//! let ok = svc.clone().oneshot(request("alice:correct horse")).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//! assert!(ok.headers()["set-cookie"].to_str()?.starts_with("__Host-device="));
//! for _ in 0..5 {
//!     let res = svc.clone().oneshot(request("bob:guess")).await?;
//!     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! }
//! let res = svc.oneshot(request("bob:guess")).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["ratelimit"], r#""sign-in";r=0;t=900"#);
//! # Ok(())
//! # }
//! ```

mod device;
mod layer;
mod store;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, SET_COOKIE};
use http::{response, Response};
use parking_lot::Mutex;

use super::headers::{self, RATELIMIT, RATELIMIT_POLICY};
use super::key::IpKey;
use crate::rejection::{Rejection, RejectionKind, Rejections};
use crate::timeout::{deadline, DEFAULT_BACKEND_TIMEOUT};
use device::DeviceCandidate;

pub use device::{DeviceCookies, DeviceKey, DeviceKeyError, SameSite, DEFAULT_DEVICE_LIFETIME};
pub use layer::{SignInFuture, SignInLayer, SignInService};
pub use store::{
    Budget, BudgetKey, HeldUnits, HoldError, Limited, MemorySignInStore, MemorySignInStoreBuilder,
    SignInStore, StoreError, StoreFuture, DEFAULT_KNOWN_PER_ACCOUNT, DEFAULT_SIGN_IN_KEYS,
};

/// How long a successful (client, account) pair is trusted by default.
pub const DEFAULT_REMEMBER: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long an attempt waits by default for attempts in flight to settle.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);
/// How many attempts may wait at once by default.
pub const DEFAULT_MAX_WAITING: usize = 1024;

/// The first pause of a waiting attempt; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A sign-in limiter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid sign-in limiter: {0}")]
pub struct SignInConfigError(&'static str);

/// How an attempt was counted: see [Budgets](self#budgets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A valid device cookie for the account.
    Device,
    /// A client that signed in to the account recently.
    Known,
    /// Neither.
    Untrusted,
}

/// The budgets and trust rules of sign-in attempts: see the
/// [module docs](self). Cloning is a reference-count increment; clones
/// share the budgets, so one limiter on several sign-in routes (a token
/// sign-in and a cookie sign-in) is one set of budgets.
#[derive(Clone)]
pub struct SignInLimiter {
    inner: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn SignInStore>,
    devices: Option<DeviceCookies>,
    remember: Option<Duration>,
    max_wait: Duration,
    max_waiting: usize,
    waiting: AtomicUsize,
    policy: HeaderValue,
    remaining_headers: bool,
    /// Keys the account groups of trusted budgets.
    groups: RandomState,
}

/// Builds a [`SignInLimiter`].
#[derive(Debug)]
pub struct SignInLimiterBuilder {
    store: Option<Arc<dyn SignInStore>>,
    devices: Option<DeviceCookies>,
    remember: Option<Duration>,
    max_wait: Duration,
    max_waiting: usize,
    remaining_headers: bool,
}

impl SignInLimiterBuilder {
    /// Adds `RateLimit-Policy` and `RateLimit` (what each budget the
    /// attempt was counted in has left, failures only) to the responses of
    /// attempts, e.g. for "3 attempts left" on a login page. Off by
    /// default: they tell a guesser how much is left. `429` responses
    /// always carry them. Needs a store that can tell
    /// ([`SignInStore::remaining`]).
    pub fn remaining_headers(mut self, enabled: bool) -> Self {
        self.remaining_headers = enabled;
        self
    }

    /// Keeps the budgets in `store` (default: a [`MemorySignInStore`] with
    /// the default quotas).
    pub fn store(self, store: impl SignInStore) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Keeps the budgets in a store you keep a handle to, e.g. to read the
    /// sizes of a [`MemorySignInStore`].
    pub fn shared_store(mut self, store: Arc<dyn SignInStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Issues and trusts device cookies (off by default: they need a key).
    pub fn device_cookies(mut self, devices: DeviceCookies) -> Self {
        self.devices = Some(devices);
        self
    }

    /// How long a client address that signed in to an account is trusted
    /// for that account ([`DEFAULT_REMEMBER`]); `None` trusts device
    /// cookies only.
    pub fn remember_clients(mut self, remember: Option<Duration>) -> Self {
        self.remember = remember;
        self
    }

    /// How long an attempt may wait for attempts in flight to settle
    /// ([`DEFAULT_MAX_WAIT`]); zero refuses at once.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many attempts may wait at once ([`DEFAULT_MAX_WAITING`]).
    pub fn max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = max_waiting;
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`SignInConfigError`] for invalid [`DeviceCookies`] settings.
    pub fn build(self) -> Result<SignInLimiter, SignInConfigError> {
        if let Some(devices) = &self.devices {
            devices.validate().map_err(SignInConfigError)?;
        }
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemorySignInStore::new()));
        let mut policy = String::new();
        for budget in Budget::ALL {
            let used = match budget {
                Budget::Device => self.devices.is_some(),
                Budget::Known => self.remember.is_some(),
                _ => true,
            };
            if used {
                headers::push_policy(&mut policy, budget.name(), store.quota(budget));
            }
        }
        Ok(SignInLimiter {
            inner: Arc::new(Shared {
                store,
                devices: self.devices,
                remember: self.remember,
                max_wait: self.max_wait,
                max_waiting: self.max_waiting,
                waiting: AtomicUsize::new(0),
                policy: headers::value(policy),
                remaining_headers: self.remaining_headers,
                groups: RandomState::new(),
            }),
        })
    }
}

impl SignInLimiter {
    /// A builder: memory store, default quotas, known clients trusted for
    /// 30 days, no device cookies until you give a key.
    pub fn builder() -> SignInLimiterBuilder {
        SignInLimiterBuilder {
            store: None,
            devices: None,
            remember: Some(DEFAULT_REMEMBER),
            max_wait: DEFAULT_MAX_WAIT,
            max_waiting: DEFAULT_MAX_WAITING,
            remaining_headers: false,
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn SignInStore {
        &*self.inner.store
    }

    /// The `RateLimit-Policy` value of the budgets in use.
    pub fn policy(&self) -> &HeaderValue {
        &self.inner.policy
    }

    /// A handle for one sign-in request from `client`, carrying the
    /// `Cookie` headers `headers` (device cookies are read from them).
    /// [`SignInLayer`] does this for every request; call it yourself where
    /// there is no layer (a gRPC method, a test).
    pub fn begin(&self, client: IpKey, headers: &http::HeaderMap, grpc: bool) -> SignIn {
        self.start(client, headers, grpc, Rejections::new())
    }

    /// [`begin`](SignInLimiter::begin) rendering refusals with `rejections`.
    pub(crate) fn start(
        &self,
        client: IpKey,
        headers: &http::HeaderMap,
        grpc: bool,
        rejections: Rejections,
    ) -> SignIn {
        let devices = match &self.inner.devices {
            Some(d) => device::candidates(headers, &d.name, device::unix_now()),
            None => Vec::new(),
        };
        SignIn {
            inner: Arc::new(Request {
                limiter: self.clone(),
                rejections,
                client,
                devices,
                grpc,
                phase: Mutex::new(Phase::Fresh),
            }),
        }
    }
}

impl fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("SignInLimiter")
            .field("store", &inner.store)
            .field("device_cookies", &inner.devices.is_some())
            .field("remember", &inner.remember)
            .field("max_wait", &inner.max_wait)
            .finish_non_exhaustive()
    }
}

/// The handle of one sign-in request: see the [module docs](self). Found
/// in the request extensions behind a [`SignInLayer`] (with axum, extract
/// it: `sign_in: SignIn`). Clones share the attempt.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<Request>,
}

struct Request {
    limiter: SignInLimiter,
    rejections: Rejections,
    client: IpKey,
    devices: Vec<DeviceCandidate>,
    grpc: bool,
    phase: Mutex<Phase>,
}

enum Phase {
    /// No attempt yet.
    Fresh,
    /// [`SignIn::attempt`] is deciding.
    Started,
    /// Units are held.
    Held(Box<Holding>),
    /// Settled, or refused.
    Done,
}

struct Holding {
    units: Box<dyn HeldUnits>,
    material: Material,
    device: Option<[u8; device::ID_LEN]>,
    trust: Trust,
    outcome: Option<bool>,
}

/// The key material of one attempt.
struct Material {
    /// The account name as budgets key it.
    account: Box<[u8]>,
    /// The client and the account.
    pair: Box<[u8]>,
    client: Vec<u8>,
    /// The client's network.
    network: Option<IpKey>,
    /// The account's group, for trusted keys: they are capped per group
    /// (a "network" of the store, with its own overflow budget), so that
    /// someone with many device cookies or addresses for their own account
    /// cannot crowd out other accounts'.
    group: Option<IpKey>,
}

impl Material {
    /// The keys of the budgets an attempt counted as `trust` holds;
    /// `device` is the device id, for [`Trust::Device`].
    fn keys<'a>(&'a self, trust: Trust, device: &'a [u8]) -> Vec<BudgetKey<'a>> {
        let key = |budget, key, network| BudgetKey {
            budget,
            key,
            network,
        };
        match trust {
            Trust::Device => vec![key(Budget::Device, device, self.group)],
            Trust::Known => vec![key(Budget::Known, &self.pair, self.group)],
            Trust::Untrusted => vec![
                key(Budget::Pair, &self.pair, self.network),
                key(Budget::Account, &self.account, None),
                key(Budget::Client, &self.client, self.network),
            ],
        }
    }
}

/// What a response says about the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Neither,
}

/// A refused sign-in attempt: the response to send (`429` with
/// `Retry-After` and `RateLimit` headers, `503` when the store is down,
/// `500` when misused), already rendered.
pub struct SignInRefused {
    response: Response<Bytes>,
    retry_after: Option<Duration>,
}

impl SignInRefused {
    /// The status: `429`, `503` or `500`.
    pub fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    /// How long until one more attempt fits, for a `429`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The response to send.
    pub fn into_http_response(self) -> Response<Bytes> {
        self.response
    }
}

impl fmt::Debug for SignInRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInRefused")
            .field("status", &self.status())
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl fmt::Display for SignInRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sign-in attempt refused ({})", self.status())
    }
}

impl std::error::Error for SignInRefused {}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for SignInRefused {
    fn into_response(self) -> axum_core::response::Response {
        self.response.map(axum_core::body::Body::from)
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for SignIn {
    type Rejection = SignInRefused;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<SignIn>() {
            Some(sign_in) => Ok(sign_in.clone()),
            None => {
                tracing::error!("SignIn extracted on a route without SignInLayer");
                Err(SignInRefused {
                    response: Rejection::internal("missing SignInLayer").into_response(),
                    retry_after: None,
                })
            }
        }
    }
}

/// The account name as budgets key it: trimmed and lower-cased, so that
/// `Alice` and `alice ` share one budget.
fn normalize(account: &str) -> Box<[u8]> {
    account
        .trim()
        .to_lowercase()
        .into_bytes()
        .into_boxed_slice()
}

/// The key material of a client address: a family tag, then the bytes.
fn client_bytes(client: IpKey) -> Vec<u8> {
    match client.ip() {
        std::net::IpAddr::V4(v4) => [&[4u8][..], &v4.octets()[..]].concat(),
        std::net::IpAddr::V6(v6) => [&[6u8][..], &v6.octets()[..]].concat(),
    }
}

/// The group of an account's trusted keys: 48 bits of a keyed hash of the
/// account, as the `/48` of an IPv6 address (the store's network key).
fn account_group(groups: &RandomState, account: &[u8]) -> IpKey {
    let hash = groups.hash_one(account);
    IpKey::from(IpAddr::V6(Ipv6Addr::from(u128::from(hash) << 64)))
}

/// Counts an attempt waiting for units in flight; dropping it leaves.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(shared: &'a Shared) -> Option<Self> {
        let entered = shared
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.max_waiting).then(|| n + 1)
            })
            .is_ok();
        entered.then(|| Waiting(&shared.waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SignIn {
    /// Starts the attempt to sign in to `account` (the name as typed; call
    /// it for unknown accounts too): holds one unit of each budget it is
    /// counted in, waiting up to `max_wait` when they are full only of
    /// attempts in flight. Call it once, before checking the password.
    ///
    /// # Errors
    ///
    /// [`SignInRefused`] to answer as is: `429` when a budget is spent,
    /// `503` when the store fails, `500` on a second call.
    pub async fn attempt(&self, account: &str) -> Result<Trust, SignInRefused> {
        {
            let mut phase = self.inner.phase.lock();
            if !matches!(*phase, Phase::Fresh) {
                drop(phase);
                tracing::error!("SignIn::attempt called twice for one request");
                return Err(
                    self.refusal(Rejection::internal("one sign-in attempt per request"), None)
                );
            }
            *phase = Phase::Started;
        }
        let shared = &*self.inner.limiter.inner;
        let account = normalize(account);
        let client = client_bytes(self.inner.client);
        let material = Material {
            pair: [&client[..], &[0xff_u8][..], &account[..]].concat().into(),
            group: Some(account_group(&shared.groups, &account)),
            network: Some(self.inner.client.network()),
            account,
            client,
        };
        let start = tokio::time::Instant::now();
        let mut waiting = None;
        let mut pause = FIRST_PAUSE;
        let result = loop {
            match self.hold(&material).await {
                Ok((units, trust, device)) => {
                    *self.inner.phase.lock() = Phase::Held(Box::new(Holding {
                        units,
                        material,
                        device,
                        trust,
                        outcome: None,
                    }));
                    return Ok(trust);
                }
                Err(HoldError::Limited(limited)) => {
                    let left = shared.max_wait.saturating_sub(start.elapsed());
                    let may_wait = limited.busy
                        && !left.is_zero()
                        && tokio::runtime::Handle::try_current().is_ok();
                    if may_wait && waiting.is_none() {
                        waiting = Waiting::enter(shared);
                    }
                    if may_wait && waiting.is_some() {
                        tokio::time::sleep(pause.min(left)).await;
                        pause = (pause * 2).min(MAX_PAUSE);
                        continue;
                    }
                    break self.too_many(limited);
                }
                Err(HoldError::Unavailable(error)) => {
                    tracing::error!(%error, "sign-in store unavailable");
                    break self.refusal(
                        Rejection::new(
                            RejectionKind::Unavailable,
                            "sign-in is unavailable, retry later",
                        ),
                        None,
                    );
                }
            }
        };
        *self.inner.phase.lock() = Phase::Done;
        Err(result)
    }

    /// Marks the attempt as a success whatever the response: a device
    /// cookie is issued and the client remembered.
    pub fn succeeded(&self) {
        self.set_outcome(true);
    }

    /// Marks the attempt as a failure whatever the response.
    pub fn failed(&self) {
        self.set_outcome(false);
    }

    fn set_outcome(&self, success: bool) {
        if let Phase::Held(holding) = &mut *self.inner.phase.lock() {
            holding.outcome = Some(success);
        }
    }

    /// How the attempt is counted, once [`attempt`](SignIn::attempt) held
    /// its units.
    pub fn trust(&self) -> Option<Trust> {
        match &*self.inner.phase.lock() {
            Phase::Held(holding) => Some(holding.trust),
            _ => None,
        }
    }

    /// Holds the units of the first trust level that applies: the units,
    /// the trust, and the device id for [`Trust::Device`].
    async fn hold(
        &self,
        material: &Material,
    ) -> Result<(Box<dyn HeldUnits>, Trust, Option<[u8; device::ID_LEN]>), HoldError> {
        let shared = &*self.inner.limiter.inner;
        let store = &*shared.store;
        let device = shared.devices.as_ref().and_then(|devices| {
            self.inner
                .devices
                .iter()
                .find(|candidate| devices.opens(candidate, &material.account))
        });
        if let Some(device) = device {
            let keys = material.keys(Trust::Device, &device.id);
            if let Some(held) = trusted(store, &keys).await? {
                return Ok((held, Trust::Device, Some(device.id)));
            }
        }
        if shared.remember.is_some() {
            let known = deadline(
                store.is_known(&material.pair),
                Some(DEFAULT_BACKEND_TIMEOUT),
            )
            .await
            .map_err(|e| HoldError::Unavailable(StoreError(Box::new(e))))?
            .map_err(HoldError::Unavailable)?;
            if known {
                let keys = material.keys(Trust::Known, &[]);
                if let Some(held) = trusted(store, &keys).await? {
                    return Ok((held, Trust::Known, None));
                }
            }
        }
        let keys = material.keys(Trust::Untrusted, &[]);
        Ok((hold_within(store, &keys).await?, Trust::Untrusted, None))
    }

    fn refusal(&self, rejection: Rejection, retry_after: Option<Duration>) -> SignInRefused {
        SignInRefused {
            response: self
                .inner
                .rejections
                .respond(rejection.with_grpc(self.inner.grpc)),
            retry_after,
        }
    }

    /// `429` for `limited`.
    fn too_many(&self, limited: Limited) -> SignInRefused {
        let retry = Duration::from_secs(headers::seconds(limited.retry_after).max(1));
        let mut item = String::new();
        headers::push_limit(&mut item, limited.budget.name(), 0, retry);
        let rejection = Rejection::too_many_requests(retry)
            .with_header(RATELIMIT_POLICY, self.inner.limiter.inner.policy.clone())
            .with_header(RATELIMIT, headers::value(item));
        self.refusal(rejection, Some(retry))
    }

    /// Settles the attempt from the response: see the
    /// [module docs](self). `Err` when the response is a failure and no
    /// attempt was made: the handler never reported the account.
    pub(crate) fn finish(
        &self,
        parts: Option<&mut response::Parts>,
        outcome: Outcome,
    ) -> Result<(), ()> {
        let phase = std::mem::replace(&mut *self.inner.phase.lock(), Phase::Done);
        let holding = match phase {
            Phase::Held(holding) => holding,
            Phase::Fresh | Phase::Started if outcome == Outcome::Failure => return Err(()),
            _ => return Ok(()),
        };
        let outcome = match holding.outcome {
            Some(true) => Outcome::Success,
            Some(false) => Outcome::Failure,
            None => outcome,
        };
        let Holding {
            units,
            material,
            device,
            trust,
            ..
        } = *holding;
        units.settle(outcome == Outcome::Failure);
        let shared = &*self.inner.limiter.inner;
        let mut parts = parts;
        if shared.remaining_headers {
            if let Some(parts) = parts.as_deref_mut() {
                let device = device.as_ref().map_or(&[][..], |d| &d[..]);
                let mut list = String::new();
                for key in material.keys(trust, device) {
                    if let Some(state) = shared.store.remaining(key) {
                        let name = key.budget.name();
                        headers::push_limit(&mut list, name, state.remaining(), state.next_in());
                    }
                }
                parts
                    .headers
                    .append(RATELIMIT_POLICY, shared.policy.clone());
                parts.headers.append(RATELIMIT, headers::value(list));
            }
        }
        if outcome != Outcome::Success {
            return Ok(());
        }
        if let Some(remember) = shared.remember {
            let known = material.keys(Trust::Known, &[]);
            for key in known {
                shared.store.remember(key, remember);
            }
        }
        let cookie = shared
            .devices
            .as_ref()
            .and_then(|d| d.issue(&material.account));
        if let (Some(parts), Some(cookie)) = (parts, cookie) {
            parts.headers.append(SET_COOKIE, cookie);
        }
        Ok(())
    }
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("device_cookies", &self.inner.devices.len())
            .field("trust", &self.trust())
            .finish_non_exhaustive()
    }
}

/// [`SignInStore::hold`] with the backend deadline.
async fn hold_within(
    store: &dyn SignInStore,
    keys: &[BudgetKey<'_>],
) -> Result<Box<dyn HeldUnits>, HoldError> {
    deadline(store.hold(keys), Some(DEFAULT_BACKEND_TIMEOUT))
        .await
        .map_err(|e| HoldError::Unavailable(StoreError(Box::new(e))))?
}

/// Holds a trusted budget: `None` when it is locked out (its own failures
/// spent it), so the attempt counts as untrusted. A budget full of its own
/// attempts in flight is a refusal to wait on, not a lockout.
async fn trusted(
    store: &dyn SignInStore,
    keys: &[BudgetKey<'_>],
) -> Result<Option<Box<dyn HeldUnits>>, HoldError> {
    match hold_within(store, keys).await {
        Ok(held) => Ok(Some(held)),
        Err(HoldError::Limited(limited)) if !limited.busy => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests;
