//! Identity providers (feature `oidc`): one HTTP-client room serving the
//! remote key set and discovery ([`crate::jwt::RemoteJwks`],
//! [`crate::jwt::Discovery`]) and token introspection ([`Introspection`]).
//!
//! Every call to a provider goes through one client: hyper-util's pooled
//! client over rustls (the aws-lc-rs provider, already built for `jwt`),
//! the Mozilla roots of `webpki-roots`, certificates always verified,
//! `https` only (plain `http` only to a loopback host, when explicitly
//! allowed), a deadline on every exchange, a cap on every answer's size,
//! and redirects never followed.
//!
//! # Token introspection (RFC 7662)
//!
//! [`Introspection`] authenticates opaque `Authorization: Bearer` tokens by
//! POSTing them (`token`, `token_type_hint=access_token`) to the provider's
//! introspection endpoint, authenticated as a client with
//! `client_secret_basic` (default) or `client_secret_post`
//! ([`ClientAuth`]); the client secret is a [`Secret`](crate::Secret),
//! never printed.
//!
//! | answer or failure                                        | result                     |
//! |----------------------------------------------------------|----------------------------|
//! | `"active": true`, checks pass                            | principal [`IntrospectedToken`] + `Identity` |
//! | `"active": false`, `active` missing or not `true`        | `401 invalid_token`        |
//! | `exp` passed / `nbf` ahead (with leeway), another `iss`, `aud` or `token_type` (when configured), no subject | `401 invalid_token` |
//! | endpoint down, timeout, a status other than 200, a body that is not a JSON object or is too large, a standard member of the wrong type | `503` (fail closed) |
//! | endpoint answers `401` / `403` (our client credentials are wrong) | `503` and an `error` log line: an operator's mistake, not the caller's |
//! | more distinct tokens being introspected than [`max_in_flight`](IntrospectionBuilder::max_in_flight) | `503` at once |
//!
//! **Identity**: subject from `sub` (required; configurable), scopes from
//! `scope`, roles and permissions from configurable members or JSON
//! pointers (`/realm_access/roles`).
//!
//! **Caching**: active tokens are cached for a TTL that never runs past
//! their `exp`; refused tokens in a second, separate cache with a shorter
//! TTL, so that a flood of random tokens only churns that cache (memory
//! bounded by its capacity) and never evicts a good token. Both are keyed
//! by HMAC-SHA256 of the token under a random per-process key: the token
//! itself is never stored, nor logged. Concurrent requests with the same
//! uncached token share one call.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_auth::oidc::{ClientAuth, Introspection};
//! use tower_auth::AuthLayer;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let introspection = Introspection::builder(
//!     "https://login.example.com/oauth2/introspect",
//!     "my-api",
//!     std::env::var("INTROSPECTION_SECRET")?,
//! )
//! .client_auth(ClientAuth::ClientSecretBasic)
//! .issuer("https://login.example.com")
//! .audiences(["my-api"])
//! .cache(10_000, Duration::from_secs(120))
//! .build()?;
//! let layer = AuthLayer::new(introspection);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

pub(crate) mod http;
mod introspection;

pub use self::http::OidcError;
pub use introspection::{
    ClientAuth, IntrospectedToken, Introspection, IntrospectionBuilder, IntrospectionCredentials,
    IntrospectionFuture,
};
