//! Middleware that rate-limits requests with [governor]'s GCRA: keyed limits
//! per client IP, user, API key or route, `429` with the IETF `RateLimit`
//! headers, bounded memory, and a failed-login limiter.
//!
//! [`RateLimitLayer`] enforces one or more [`Limit`]s. A limit is a name, a
//! [`Quota`] (governor's GCRA: a burst, replenished at a steady rate) kept
//! per key by a [`Limiter`], and a [`KeyExtractor`] that says what a
//! request is counted under:
//!
//! | key                | counts requests by                                     |
//! |--------------------|--------------------------------------------------------|
//! | [`PeerIp`]         | the TCP peer's IP (IPv6 per `/64`)                     |
//! | [`ClientIp`]       | the client IP behind your [`TrustedProxies`] (`X-Forwarded-For` or `Forwarded`, read right to left) |
//! | [`Subject`]        | the authenticated [`Identity`](crate::Identity)'s subject |
//! | [`Header`]         | a header's value, e.g. [`Header::api_key`] (only a keyed hash is kept) |
//! | [`Route`]          | method and route (axum's `MatchedPath`, or the path)   |
//! | [`Global`]         | nothing: one budget for all                            |
//! | [`key_fn`]         | your closure                                           |
//! | `a.or(b)`, `(a, b)`| `a`, falling back to `b`; both together                |
//!
//! A request over its limit gets `429 Too Many Requests`, rendered by
//! [`crate::rejection`] (JSON body, or gRPC status 8 `RESOURCE_EXHAUSTED`
//! for gRPC requests), with `Retry-After` and the `RateLimit` /
//! `RateLimit-Policy` fields of [draft-ietf-httpapi-ratelimit-headers-10]
//! as Structured Field lists:
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! retry-after: 17
//! ratelimit-policy: "per-ip";q=100;w=60, "per-user";q=1000;w=3600
//! ratelimit: "per-ip";r=0;t=17
//! ```
//!
//! # Headers
//!
//! * `q` is the burst: how many requests a key may make at once.
//! * `w` is the seconds an exhausted key takes to get its whole burst back
//!   (`q` times the replenish interval). It is not a fixed window: the
//!   budget refills one request every `w / q` seconds, so up to `2q - 1`
//!   requests can pass within `w` seconds (a whole burst, then one per
//!   interval), while the long-run rate is `q` per `w`.
//! * `r` is the requests the key may make right now.
//! * `t` is the seconds until more quota is made available: one more
//!   request, rounded up (`0` when the whole burst is there). That is the
//!   meaning draft -10 gives this parameter (§4.1.2), and it warns clients
//!   not to expect their whole quota back at that moment. Drafts up to -09
//!   described it as the time until the quota resets; -10 changed that
//!   (working group issue #149) for algorithms like GCRA, where quota comes
//!   back gradually. The whole burst is back `(q - r - 1) × w / q` seconds
//!   after `t`.
//! * On a `429`, `Retry-After` is the seconds until the request would be
//!   admitted, rounded up and at least 1 (never early), and `t` equals it,
//!   as draft -10 §6 asks (`Retry-After` no earlier than `t`).
//!
//! With [`remaining_headers`](RateLimitLayer::remaining_headers),
//! successful responses carry both fields too. No partition key (`pk`) is
//! sent: it would echo client data.
//!
//! # Missing keys
//!
//! A request whose key cannot be found (no peer address, no identity) is
//! refused with `500`: the stack is misconfigured, and letting it through
//! would fail open. Give a fallback with [`or`](KeyExtractor::or) where
//! keyless requests are expected, e.g. `Subject.or(PeerIp::new())` behind
//! an optional [`AuthLayer`](crate::AuthLayer).
//!
//! # Placement
//!
//! * Per-IP limits go first, before authentication, so floods never reach
//!   the key store or the password hash.
//! * Per-user limits ([`Subject`]) go after the `AuthLayer` (inside it).
//! * Several limits are either several layers or one layer with
//!   [`RateLimitLayer::limit`]; one layer renders all the policies in one
//!   header.
//!
//! # Peer address
//!
//! [`PeerIp`] reads the connection's address from the request extensions:
//! axum's `ConnectInfo<SocketAddr>` (feature `axum`; serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`), a
//! [`SocketAddr`](std::net::SocketAddr) you insert yourself with plain
//! hyper, or anything else through [`PeerIp::from_fn`] (tonic's
//! `TcpConnectInfo`).
//!
//! # Memory
//!
//! Each [`Limiter`] tracks at most [`max_keys`](LimiterBuilder::max_keys)
//! keys (100 000 by default), as 64-bit keyed hashes. A key whose budget is
//! whole again is idle and may be dropped: idle keys are swept
//! incrementally on the request path once the store is three quarters
//! full (no background task, no runtime needed), and at the cap a new key first sweeps its shard of idle keys
//! (at most once per interval), so the room of idle keys is reused as soon
//! as it is needed; [`Limiter::purge`] sweeps them all.
//!
//! When the cap is full of busy keys, new keys are not tracked: they share
//! one [overflow budget](LimiterBuilder::overflow_quota) (by default 16
//! times a key's quota). A flood of distinct keys gets that budget in
//! total, memory does not grow, clients already tracked keep their own
//! budget, and no request bypasses the limit. Whoever fills the cap can
//! spend the overflow budget too, so new clients may then be refused until
//! keys go idle: size `max_keys` for your real clients. See [`Limiter`].
//!
//! IP keys ([`PeerIp`], [`ClientIp`]) also belong to a network, the IPv6
//! `/48` or IPv4 `/24` ([`KeyExtractor::network`]). One network may hold at
//! most [a sixteenth of the cap](LimiterBuilder::max_keys_per_network), and
//! has its own overflow budget: a `/48` cycling through its `/64`s neither
//! fills the cap nor spends the overflow budget of other networks' clients.
//!
//! # Failed attempts
//!
//! [`RateLimitLayer::failed_attempts`] counts only failed attempts (by
//! default `401` responses) and, once a key's budget is spent, answers `429`
//! before the request reaches the login handler; see
//! [Failed attempts](RateLimitLayer#failed-attempts). Each request holds a
//! unit while it runs, so successes never count and never give back more
//! than they held. [`Limiter::attempt`] does the same inside a handler.
//!
//! For sign-in pages, [`sign_in`] goes further: budgets per (client,
//! account), per account and per client, device cookies and trust for
//! known clients, so that floods of guesses neither succeed nor lock real
//! users out.
//!
//! ```
//! use std::time::Duration;
//! use tower_auth::rate_limit::{Limit, PeerIp, Quota, RateLimitLayer};
//!
//! # fn main() -> Result<(), tower_auth::rate_limit::QuotaError> {
//! // 5 failed logins, then 429 for 15 minutes; one more try every 15 minutes.
//! let quota = Quota::with_period(Duration::from_secs(15 * 60))?.allow_burst(5)?;
//! let layer = RateLimitLayer::failed_attempts(Limit::new("login", quota, PeerIp::new()));
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::rate_limit::{Limit, PeerIp, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(Limit::new(
//!         "per-ip",
//!         Quota::per_minute(2)?,
//!         PeerIp::new(),
//!     )))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("hello")) });
//!
//! // hyper: insert the connection's address; axum does it with ConnectInfo.
//! let request = || {
//!     let mut req = Request::new(());
//!     req.extensions_mut().insert(SocketAddr::from(([192, 0, 2, 1], 50_000)));
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request()).await?.status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(request()).await?.status(), StatusCode::OK);
//!
//! let res = svc.oneshot(request()).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "30");
//! assert_eq!(res.headers()["ratelimit"], r#""per-ip";r=0;t=30"#);
//! assert_eq!(res.headers()["ratelimit-policy"], r#""per-ip";q=2;w=60"#);
//! # Ok(())
//! # }
//! ```
//!
//! [governor]: https://docs.rs/governor
//! [draft-ietf-httpapi-ratelimit-headers-10]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/10/

mod failed;
mod forwarded;
mod future;
mod hash;
pub(crate) mod headers;
mod key;
mod layer;
mod limiter;
mod quota;
pub mod sign_in;
mod store;

/// The governor crate this module is built on, e.g. for
/// [`FakeRelativeClock`](governor::clock::FakeRelativeClock) in tests.
pub use governor;

#[cfg(feature = "redis")]
pub(crate) use failed::Predicate;
pub use failed::{is_failed_attempt, FailedAttempt};
pub use forwarded::{ClientIp, ForwardedHeader, InvalidProxy, TrustedProxies};
pub use future::ResponseFuture;
pub use key::{
    key_fn, Global, Header, HeaderValues, IpKey, KeyError, KeyExtractor, KeyFn, Or, OrKey, PeerIp,
    RequestHead, Route, Subject,
};
pub use layer::{Limit, RateLimitLayer, RateLimitService};
pub use limiter::{
    Attempt, Denied, KeyState, Limiter, LimiterBuilder, LimiterClock, DEFAULT_MAX_KEYS,
    DEFAULT_NETWORK_SHARE, DEFAULT_OVERFLOW_FACTOR,
};
pub use quota::{Quota, QuotaError};

#[cfg(test)]
mod tests;
