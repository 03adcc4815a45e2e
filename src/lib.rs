//! Composable [tower] middleware for authentication and authorization.
//!
//! `tower-auth` authenticates requests with API keys, opaque bearer tokens,
//! JWTs or cookie sessions, rate-limits them, and checks roles, permissions
//! and scopes. Every layer works with any tower-based server: axum, hyper,
//! tonic.
//!
//! * [`AuthLayer`] is the one authentication middleware. It is driven by an
//!   [`Authenticator`]; each credential type is one
//!   ([`api_key::ApiKeyAuthenticator`], [`bearer::BearerAuthenticator`], ...)
//!   and they compose: `jwt.or(api_key)`. An authenticated request carries
//!   the typed principal and an [`Identity`] in its extensions.
//! * `RequireLayer` (feature `authz`) enforces role, permission, scope and
//!   owner policies on the [`Identity`].
//! * `SessionLayer` (feature `session`) keeps cookie sessions, and
//!   `RateLimitLayer` (feature `rate-limit`) rate-limits per IP, user, key
//!   or route, with a failed-login limiter.
//! * [`rejection`] renders every refusal: JSON body, RFC 6750
//!   `WWW-Authenticate`, gRPC status for gRPC requests; you can replace it.
//! * `extract` (feature `axum`) has the `Auth<T>` and [`Identity`]
//!   extractors.
//! * [`lifetime`]: a [`CredentialWatch`](lifetime::CredentialWatch) tells
//!   a long-lived connection (WebSocket, gRPC stream) when its credentials
//!   expire or are revoked, so that it ends with them.
//! * [`ServiceBuilderExt`] adds the layers to a `tower::ServiceBuilder` by
//!   name: `.authenticate(jwt).require(role("admin"))`.
//!
//! A typical stack, outermost first: `RateLimitLayer` → `SessionLayer` →
//! `CsrfLayer` → `AuthLayer` → `RequireLayer` → handler.
//!
//! # Names shared with tower and tower-http
//!
//! Two names of this crate are also used by crates you probably depend on:
//!
//! * [`ServiceBuilderExt`] has the name of tower-http's extension trait.
//!   Both can be used at once: import them anonymously, as only their
//!   methods are needed.
//!
//!   ```
//!   use tower_auth::ServiceBuilderExt as _;
//!   // and, with tower-http: use tower_http::ServiceBuilderExt as _;
//!   ```
//! * `tower_auth::rate_limit::RateLimitLayer` has the name of tower's
//!   (`tower::limit::RateLimitLayer`, a fixed number of requests per
//!   interval for the whole service). Refer to this crate's through its
//!   module: `use tower_auth::rate_limit;` then
//!   `rate_limit::RateLimitLayer::new(...)`.
//!
//! The names are kept: renaming would break every user for a clash that an
//! import settles.
//!
//! # Features
//!
//! | feature   | what                                                  |
//! |-----------|-------------------------------------------------------|
//! | `api-key` | [`api_key`]: API keys, stores, key generation         |
//! | `bearer`  | [`bearer`]: opaque bearer tokens                      |
//! | `jwt`     | [`jwt`]: JWT validation, key sets, issuing, revocation |
//! | `session` | [`session`]: cookie sessions, stores, CSRF defence    |
//! | `authz`   | [`authz`]: role / permission / scope / owner policies |
//! | `rate-limit` | [`rate_limit`]: governor rate limits, failed-login limiter |
//! | `axum`    | [`extract`]: axum extractors                          |
//! | `basic`   | [`basic`]: HTTP Basic, argon2id password hashes       |
//! | `mtls`    | [`mtls`]: mutual-TLS client certificates, SPIFFE IDs  |
//! | `dpop`    | [`dpop`]: DPoP proofs and DPoP-bound tokens (RFC 9449) |
//! | `oidc`    | [`jwt::RemoteJwks`], [`jwt::Discovery`], [`oidc::Introspection`]: identity providers |
//! | `openapi` | [`openapi`]: security schemes and per-route requirements for utoipa |
//! | `full`    | all of the above                                      |
//! | `redis`   | [`redis`]: sessions, JWT revocations, rate limits in Redis (not in `full`) |
//! | `metrics` | [`observe`]: decision counters and latency through the `metrics` facade (not in `full`) |
//! | `test-util` | [`testing`]: fake identities, test tokens, request builders, rejection assertions (not in `full`) |
//!
//! No feature is on by default.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

pub mod auth;
pub mod body;
pub mod builder;
mod credentials;
mod error;
mod identity;
pub mod lifetime;
pub mod observe;
pub mod rejection;
mod secret;
mod timeout;
#[cfg(any(feature = "test-util", feature = "openapi"))]
mod www_authenticate;

#[cfg(feature = "api-key")]
pub mod api_key;
#[cfg(feature = "authz")]
pub mod authz;
#[cfg(feature = "basic")]
pub mod basic;
#[cfg(feature = "bearer")]
pub mod bearer;
#[cfg(feature = "dpop")]
pub mod dpop;
#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "mtls")]
pub mod mtls;
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "session")]
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;

/// The README's Rust examples are compiled and run as doc tests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use auth::{AuthLayer, AuthService, Authenticated, Authenticator};
pub use builder::ServiceBuilderExt;
pub use error::{AuthError, AuthErrorKind, BoxError};
pub use identity::{Identity, Scheme};
pub use secret::Secret;
pub use timeout::{Elapsed, DEFAULT_BACKEND_TIMEOUT};
