//! JSON Web Tokens: validation as an [`Authenticator`](crate::Authenticator),
//! key sets, issuing with refresh rotation and revocation, and a
//! verified-token cache.
//!
//! Built on [`jsonwebtoken`] (with its `aws_lc_rs` backend) for keys,
//! signatures and signing; the header, claims and their validation are
//! checked here, strictly:
//!
//! * **Algorithms**: an allow-list (by default, the algorithms of the
//!   configured keys). `none` is never accepted, in any casing. Each
//!   [`JwtKey`] is bound to its family (and usually to one algorithm), so an
//!   RSA public key can never serve as an HMAC secret (RS256 → HS256
//!   confusion).
//! * **Keys** come only from the [`KeySet`], chosen by `kid`; an unknown
//!   `kid` is refused, and `jwk` / `jku` / `x5u` / `x5c` headers are
//!   ignored. A `crit` header is refused. The header must be a JSON object
//!   (RFC 7515 §4; an array is not read by position), as must the claims
//!   set. Duplicate header members, and
//!   duplicates of the claims this module reads (registered, identity and
//!   required claims), are refused; claims types deriving `Deserialize`
//!   refuse duplicates of their own fields.
//! * **Claims**: `exp` required (by default) with a leeway (30 s), `nbf`,
//!   `iat` not in the future, `iss` allow-list, `aud` (string or array,
//!   any of; a token naming an audience is refused unless one is
//!   configured, RFC 7519 §4.1.3), token type (`typ`: checked as
//!   configured; by default anything but a refresh token passes, so a
//!   refresh token never passes as an access token), required claims, a
//!   custom check, and the subject.
//! * **Identity**: subject from `sub`, roles from `roles` / `role`,
//!   permissions from `permissions`, scopes from `scope` (space-separated)
//!   and `scp` (array); every claim name is configurable, and a
//!   [`ClaimMapping`] reads them at JSON pointers (Keycloak's
//!   `/realm_access/roles`...), with presets for Keycloak, Auth0, Entra ID,
//!   Okta and Cognito.
//! * **Identity providers**: [`JwtAuthenticator::from_issuers`] trusts
//!   several issuers, each bound to its own keys ([`Issuers`]: static
//!   [`KeySet`]s, or with the `oidc` feature remote key sets and
//!   discovered providers); the RFC 9068 access-token profile
//!   ([`JwtAuthenticator::access_token_profile`]); RFC 9728
//!   protected-resource metadata ([`ResourceMetadata`]) named in the
//!   challenge.
//! * **Sources**: `Authorization: Bearer` (default), a cookie, a query
//!   parameter (opt-in, for browser WebSockets). Tokens over 8 KiB are
//!   refused unread (`400 invalid_request`: a malformed *request*); a token
//!   that does not decode as a JWT (`a.b`, bad base64url or JSON) is a
//!   malformed *token*, `401 invalid_token` (RFC 6750 §3.1), like every
//!   other refused token. A repeated or mangled token cookie counts as no
//!   cookie.
//! * **Key sets**: [`KeySet::from_jwks_json`] loads public keys and refuses
//!   symmetric `oct` keys ([`KeyError::SymmetricKey`]) unless loaded with
//!   [`KeySet::from_jwks_json_allowing_symmetric`]; `Ed25519` (RFC 9864)
//!   is accepted as a name of EdDSA in headers and JWKs.
//! * **Long-lived connections**: with
//!   [`watch_credentials`](JwtAuthenticator::watch_credentials), requests
//!   carry a [`CredentialWatch`](crate::lifetime::CredentialWatch) that
//!   resolves at `exp` or when the token is revoked, so that a WebSocket
//!   opened with the token ends with it.
//! * **Configuration**: [`JwtAuthenticator::build`] and
//!   [`TokenIssuer::build`] (or `validate`) report at startup a
//!   configuration that would refuse every token ([`ConfigError`]).
//!
//! **Crypto backend**: `jsonwebtoken` is built with `aws_lc_rs` (AWS-LC:
//! constant-time, FIPS-validated builds available, and the fastest RSA and
//! ECDSA verification of the two backends). Every signature is made and
//! checked with that provider named explicitly, never with
//! `jsonwebtoken`'s process-wide default, so a build in which another crate
//! also enables `jsonwebtoken/rust_crypto` (no default can then be chosen,
//! and using it panics) works the same. The alternative `rust_crypto`
//! backend pulls the pure-Rust `rsa` crate, whose private-key operations
//! carry an unfixed timing side channel (RUSTSEC-2023-0071), which matters
//! to a token issuer signing RS256.
//!
//! **Where the work runs**: [`JwtFuture`] verifies when first polled, not
//! in `authenticate`, so a `tower::buffer::Buffer` around the layer does not
//! put every signature check on its one worker.
//!
//! **Speed**: the header is decoded once (raw `jsonwebtoken::decode` decodes
//! it twice), claims are read in one pass for validation and the
//! [`Identity`](crate::Identity), and a token in the `Authorization` header
//! is never copied. With [`JwtAuthenticator::cache`], a repeated token skips
//! signature verification; use `Arc<YourClaims>` as the claims type so a
//! cache hit clones a pointer (serde deserializes `Arc<T>`). See the
//! README's performance section for figures.
//!
//! [`TokenIssuer`] issues access + refresh pairs (`jti`, `iat`, `exp`,
//! `typ`), rotates refresh tokens with reuse detection, and logs out by
//! revoking the refresh family and deny-listing the access token until it
//! expires, in a [`RevocationStore`] ([`MemoryRevocationStore`] bounds its
//! memory, and each subject's open sign-ins, default
//! [`DEFAULT_FAMILIES_PER_SUBJECT`]). An optional
//! [`refresh_reuse_interval`](TokenIssuer::refresh_reuse_interval) lets a
//! retried refresh succeed for a few seconds (strict by default). Every
//! call to the store has a deadline
//! ([`backend_timeout`](TokenIssuer::backend_timeout), default 5 s) after
//! which the request fails with `503`.
//!
//! # Example
//!
//! ```
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//! use http::{header, Request, Response, StatusCode};
//! use serde::{Deserialize, Serialize};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::jwt::TokenIssuer;
//! use tower_auth::{AuthLayer, Identity};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Claims { sub: String, roles: Vec<String> }
//!
//! let issuer = TokenIssuer::hs256(b"an example secret of at least 32 bytes!")?
//!     .issuer("https://api.example.com")
//!     .build()?; // reports a key that cannot sign or verify its tokens
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(issuer.authenticator::<Claims>()))
//!     .service_fn(|req: Request<()>| async move {
//!         let id = req.extensions().get::<Identity>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", id.subject())))
//!     });
//!
//! #[derive(Serialize)]
//! struct Extra { roles: [&'static str; 1] }
//! let pair = issuer.issue("alice", &Extra { roles: ["admin"] })?;
//!
//! let req = Request::get("/")
//!     .header(header::AUTHORIZATION, format!("Bearer {}", pair.access_token))
//!     .body(())?;
//! assert_eq!(svc.clone().oneshot(req).await?.status(), StatusCode::OK);
//!
//! // A refresh token is not an access token.
//! let req = Request::get("/")
//!     .header(header::AUTHORIZATION, format!("Bearer {}", pair.refresh_token))
//!     .body(())?;
//! assert_eq!(svc.clone().oneshot(req).await?.status(), StatusCode::UNAUTHORIZED);
//!
//! // Rotation: each refresh token works once.
//! let grant = issuer.redeem(&pair.refresh_token).await?;
//! let rotated = issuer.issue_rotated(&grant, &Extra { roles: ["admin"] })?;
//! assert!(issuer.redeem(&pair.refresh_token).await.is_err()); // reuse: family revoked
//! assert!(issuer.redeem(&rotated.refresh_token).await.is_err());
//! # Ok(()) }
//! ```

mod authenticator;
mod cache;
mod claims;
mod config;
mod issue;
mod issuers;
mod jws;
mod keys;
mod mapping;
#[cfg(feature = "oidc")]
mod remote;
mod resource_metadata;
mod revocation;
mod source;

pub use authenticator::{JwtAuthenticator, JwtCredentials, JwtFuture};
pub use config::ConfigError;
pub use issue::{IssueError, RefreshGrant, TokenIssuer, TokenPair};
pub use issuers::{Issuers, MAX_ISSUERS};
pub use jws::{JwtError, VerifiedJws};
pub use keys::{JwtKey, KeyError, KeySet, MIN_HMAC_SECRET_LEN};
pub use mapping::{ClaimMapping, MAX_CLAIM_POINTERS, MAX_POINTER_DEPTH};
#[cfg(feature = "oidc")]
pub use remote::{Discovered, Discovery, OidcError, RemoteJwks, RemoteJwksBuilder};
pub use resource_metadata::{
    InvalidResource, ResourceMetadata, ResourceMetadataFuture, ResourceMetadataLayer,
    ResourceMetadataService, WELL_KNOWN,
};
pub use revocation::{
    MemoryRevocationStore, MemoryStoreError, Redemption, Revocable, RevocationBroadcast,
    RevocationEvent, RevocationReceiver, RevocationStore, Revoked, DEFAULT_BROADCAST_CAPACITY,
    DEFAULT_FAMILIES_PER_SUBJECT,
};
pub use source::{KeySource, RefreshFuture};

pub use jsonwebtoken::{Algorithm, EncodingKey};

pub(crate) use authenticator::unix_now;
/// The verified-token cache, shared with token introspection.
#[cfg(feature = "oidc")]
pub(crate) use cache::{Entry as CacheEntry, Fingerprint, TokenCache};
