//! [`JwtAuthenticator`]: JWT validation as an [`Authenticator`].

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, COOKIE};
use http::request::Parts;
use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;

use super::cache::{Entry, TokenCache};
use super::claims::{media_type_eq, Registered, Rules};
use super::config::ConfigError;
use super::issuers::{self, IssuerEntry, Issuers, MAX_ISSUERS};
use super::jws::{self, JwtError};
use super::keys::KeySet;
use super::mapping::{ClaimMapping, TARGET_PERMISSIONS, TARGET_ROLES, TARGET_SCOPES};
use super::revocation::{self, RevocationStore, SharedStore};
use super::source::KeySource;
use crate::auth::{Authenticated, Authenticator, BoxAuthFuture};
use crate::credentials::{self, HeaderToken};
use crate::error::AuthError;
use crate::identity::{Identity, Scheme};
use crate::lifetime::CredentialWatch;
use crate::rejection::Challenge;
use crate::secret::Secret;
use crate::timeout::deadline;

/// Default limit on the size of a token: 8 KiB.
const DEFAULT_MAX_LEN: usize = 8 * 1024;

type Check<C> = dyn Fn(&C) -> Result<(), AuthError> + Send + Sync;
type Clock = dyn Fn() -> u64 + Send + Sync;

/// Validates JWTs and yields their typed claims `C` as the principal. See
/// the [module docs](crate::jwt).
pub struct JwtAuthenticator<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    keys: KeySet,
    /// Keys that change at run time; `keys` is then empty.
    source: Option<Arc<dyn KeySource>>,
    /// [`JwtAuthenticator::any_issuer`]: a key source without issuers.
    any_issuer: bool,
    /// [`JwtAuthenticator::from_issuers`]: keys chosen by `iss`; `keys` is
    /// then empty and `source` `None`.
    issuers: Option<Arc<[IssuerEntry]>>,
    /// The RFC 9728 metadata URL named in the challenge.
    resource_metadata: Option<Arc<str>>,
    algorithms: Vec<Algorithm>,
    rules: Rules,
    max_len: usize,
    header: bool,
    cookie: Option<Box<str>>,
    query: Option<Box<str>>,
    realm: Option<Arc<str>>,
    clock: Arc<Clock>,
    check: Option<Arc<Check<C>>>,
    cache: Option<Arc<TokenCache<C>>>,
    revocation: Option<SharedStore>,
    /// The deadline of a revocation store call.
    backend_timeout: Option<Duration>,
    /// [`JwtAuthenticator::watch_credentials`]: the interval of the
    /// revocation check of a [`CredentialWatch`].
    watch: Option<Duration>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for Inner<C> {
    fn clone(&self) -> Self {
        Inner {
            keys: self.keys.clone(),
            source: self.source.clone(),
            any_issuer: self.any_issuer,
            issuers: self.issuers.clone(),
            resource_metadata: self.resource_metadata.clone(),
            algorithms: self.algorithms.clone(),
            rules: self.rules.clone(),
            max_len: self.max_len,
            header: self.header,
            cookie: self.cookie.clone(),
            query: self.query.clone(),
            realm: self.realm.clone(),
            clock: self.clock.clone(),
            check: self.check.clone(),
            cache: self.cache.clone(),
            revocation: self.revocation.clone(),
            backend_timeout: self.backend_timeout,
            watch: self.watch,
            _claims: PhantomData,
        }
    }
}

impl<C> Clone for JwtAuthenticator<C> {
    fn clone(&self) -> Self {
        JwtAuthenticator {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for JwtAuthenticator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("JwtAuthenticator")
            .field("keys", &i.keys)
            .field("source", &i.source)
            .field("issuers", &i.issuers)
            .field("algorithms", &i.algorithms)
            .field("rules", &i.rules)
            .field("max_len", &i.max_len)
            .field("cookie", &i.cookie)
            .field("query", &i.query)
            .field("cache", &i.cache.is_some())
            .field("revocation", &i.revocation.is_some())
            .finish_non_exhaustive()
    }
}

/// The credentials of a [`JwtAuthenticator`]: the token and where it was
/// found. `Debug` does not print the token.
pub struct JwtCredentials {
    token: Token,
    scheme: Scheme,
}

/// A token in the `Authorization` header is not copied: the header value is
/// a reference-counted buffer.
enum Token {
    Header(HeaderToken),
    Owned(Secret),
}

impl JwtCredentials {
    fn token(&self) -> &str {
        match &self.token {
            Token::Header(t) => t.as_str(),
            Token::Owned(s) => s.expose(),
        }
    }
}

impl fmt::Debug for JwtCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtCredentials")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// The algorithms the keys of `keys` are bound to (all of its family for
/// a key bound to none), in order.
pub(crate) fn algorithms_of(keys: &KeySet) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for key in keys.keys() {
        let algs = match key.algorithm() {
            Some(a) => vec![a],
            None => key.family().algorithms().to_vec(),
        };
        for a in algs {
            if !algorithms.contains(&a) {
                algorithms.push(a);
            }
        }
    }
    algorithms
}

/// Seconds since the Unix epoch, from the system clock.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<C> JwtAuthenticator<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Validates tokens signed by one of `keys`. The accepted algorithms are
    /// those the keys are bound to (narrow them with
    /// [`algorithms`](Self::algorithms)). Defaults: token from
    /// `Authorization: Bearer`, `exp` required, 30 s leeway, any token type
    /// but a refresh token (see [`token_type`](Self::token_type)), `aud`
    /// refused unless configured, 8 KiB size limit, no cache, no revocation
    /// check.
    ///
    /// A configuration that can accept no token (an empty key set, an
    /// allowed algorithm no key verifies...) is not an error here: call
    /// [`build`](Self::build) or [`validate`](Self::validate) at startup to
    /// have it reported.
    pub fn new(keys: KeySet) -> Self {
        let algorithms = algorithms_of(&keys);
        JwtAuthenticator {
            inner: Arc::new(Inner {
                keys,
                source: None,
                any_issuer: false,
                issuers: None,
                resource_metadata: None,
                algorithms,
                rules: Rules::default(),
                max_len: DEFAULT_MAX_LEN,
                header: true,
                cookie: None,
                query: None,
                realm: None,
                clock: Arc::new(unix_now),
                check: None,
                cache: None,
                revocation: None,
                backend_timeout: Some(crate::timeout::DEFAULT_BACKEND_TIMEOUT),
                watch: None,
                _claims: PhantomData,
            }),
        }
    }

    /// Validates tokens signed by the keys of `source` (such as a
    /// [`RemoteJwks`](super::RemoteJwks)), accepting the algorithms it
    /// allows. Defaults as for [`new`](Self::new); such an authenticator
    /// requires [`issuers`](Self::issuers) or an explicit
    /// [`any_issuer`](Self::any_issuer) (see [`build`](Self::build)).
    ///
    /// A token whose `kid` the current keys lack may trigger one refresh of
    /// the source (rate-limited by it) and is checked again after it.
    pub fn from_source(source: impl KeySource) -> Self {
        let algorithms = source.algorithms();
        let mut this = Self::new(KeySet::new());
        let inner = Arc::make_mut(&mut this.inner);
        inner.algorithms = algorithms;
        inner.source = Some(Arc::new(source));
        this
    }

    /// Validates tokens of several identity providers, each issuer bound to
    /// its own keys: a token's `iss` chooses the keys and must name one of
    /// `issuers` exactly (see [`Issuers`]). The accepted algorithms are
    /// those of all the issuers' keys (narrow them with
    /// [`algorithms`](Self::algorithms)); each issuer's tokens may use only
    /// its own keys' algorithms. Defaults as for [`new`](Self::new).
    /// [`issuers`](Self::issuers) may still narrow the accepted issuers
    /// further; [`any_issuer`](Self::any_issuer) has no effect.
    ///
    /// [`build`](Self::build) reports an empty or oversized set
    /// ([`ConfigError::NoIssuers`], at most [`MAX_ISSUERS`]), a repeated
    /// issuer, and each static key set as [`new`](Self::new) would.
    pub fn from_issuers(issuers: Issuers) -> Self {
        let entries = issuers.into_entries();
        let mut algorithms = Vec::new();
        for a in entries.iter().flat_map(|e| e.own_algorithms()) {
            if !algorithms.contains(a) {
                algorithms.push(*a);
            }
        }
        let mut this = Self::new(KeySet::new());
        let inner = Arc::make_mut(&mut this.inner);
        inner.algorithms = algorithms;
        inner.issuers = Some(entries);
        this
    }

    /// Validates tokens of the provider found by a
    /// [`Discovery`](super::Discovery): its key set, and only its verified
    /// issuer. Shorthand for
    /// `from_source(provider.jwks().clone()).issuers([provider.issuer()])`;
    /// for several providers use [`from_issuers`](Self::from_issuers) with
    /// [`Issuers::discovered`].
    #[cfg(feature = "oidc")]
    pub fn from_discovered(provider: &super::Discovered) -> Self {
        Self::from_source(provider.jwks().clone()).issuers([provider.issuer()])
    }

    /// With a [`KeySource`] ([`from_source`](Self::from_source)): accept
    /// tokens of any issuer, on purpose. Without it (or
    /// [`issuers`](Self::issuers)) [`build`](Self::build) refuses the
    /// configuration.
    pub fn any_issuer(self) -> Self {
        self.edit(|i| i.any_issuer = true)
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        f(inner);
        // A cache holds tokens verified under the old configuration (other
        // audiences, token type, checks...): a changed authenticator, which
        // may be a copy of one still in use, starts with its own empty cache.
        if let Some(cache) = &inner.cache {
            inner.cache = cache.emptied().map(Arc::new);
        }
        self
    }

    /// Accepts only `algorithms` (still only with keys of their family).
    pub fn algorithms(self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let algorithms: Vec<Algorithm> = algorithms.into_iter().collect();
        self.edit(|i| {
            if let Some(entries) = &i.issuers {
                i.issuers = Some(issuers::narrow(entries, &algorithms));
            }
            i.algorithms = algorithms;
        })
    }

    /// Tolerance on `exp`, `nbf` and `iat` for clock skew (default 30 s).
    pub fn leeway(self, leeway: Duration) -> Self {
        self.edit(|i| i.rules.leeway = leeway.as_secs())
    }

    /// Whether `exp` is required (default `true`).
    pub fn require_exp(self, required: bool) -> Self {
        self.edit(|i| i.rules.require_exp = required)
    }

    /// Accepts only tokens whose `iss` is one of `issuers`.
    pub fn issuers<I, S>(self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let issuers = issuers.into_iter().map(Into::into).collect();
        self.edit(|i| i.rules.issuers = Some(issuers))
    }

    /// Accepts only tokens whose `aud` (a string or an array) names one of
    /// `audiences`.
    pub fn audiences<I, S>(self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let audiences = audiences.into_iter().map(Into::into).collect();
        self.edit(|i| i.rules.audiences = Some(audiences))
    }

    /// The token type accepted, read from the [`token_type_claim`]: a token
    /// stating another type is refused, and with `required` so is a token
    /// stating none.
    ///
    /// Unconfigured (the default), the type is not checked except that a
    /// refresh token (`"refresh"` in any casing: this crate's, Keycloak's
    /// `"Refresh"`) is refused; Keycloak access tokens (`"Bearer"`) and
    /// tokens without a type pass. [`TokenIssuer::authenticator`] configures
    /// `token_type("access", true)`.
    ///
    /// [`TokenIssuer::authenticator`]: super::TokenIssuer::authenticator
    ///
    /// [`token_type_claim`]: Self::token_type_claim
    pub fn token_type(self, expected: impl Into<Box<str>>, required: bool) -> Self {
        let expected = expected.into();
        self.edit(|i| {
            i.rules.token_type = Some(expected);
            i.rules.require_token_type = required;
        })
    }

    /// The claim holding the token type (default `typ`; the seeds use
    /// `type`).
    pub fn token_type_claim(self, name: impl Into<Box<str>>) -> Self {
        let name = name.into();
        self.edit(|i| i.rules.names.token_type = name)
    }

    /// Explicit typing (RFC 8725 §3.11): accepts only tokens whose JOSE
    /// header `typ` is one of `types`, e.g. `["at+jwt"]` for OAuth access
    /// tokens (RFC 9068). Tokens without a `typ` header are refused. Media
    /// types compare without regard to case, with or without the
    /// `application/` prefix. By default the header `typ` is not checked
    /// (the token type claim is: see [`token_type`](Self::token_type)).
    pub fn header_types<I, S>(self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let types = types.into_iter().map(Into::into).take(64).collect();
        self.edit(|i| i.rules.header_types = Some(types))
    }

    /// Claims that must be present (up to 64), e.g. `["jti"]`.
    pub fn required_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let names: Vec<Box<str>> = names.into_iter().map(Into::into).take(64).collect();
        self.edit(|i| i.rules.required = names)
    }

    /// The claim holding the subject (default `sub`; the seeds use
    /// `user_id` or `username`). It is required and must not be empty: an
    /// identity without a subject could match an empty owner field.
    pub fn subject_claim(self, name: impl Into<Box<str>>) -> Self {
        let name = name.into();
        self.edit(|i| i.rules.names.subject = name)
    }

    /// Claims holding roles, as a string or an array (default `roles` and
    /// `role`).
    pub fn roles_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.edit(|i| i.rules.names.mapping.set_top_level(TARGET_ROLES, names))
    }

    /// Claims holding permissions, as an array or a space-separated string
    /// (default `permissions`).
    pub fn permissions_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.edit(|i| {
            i.rules
                .names
                .mapping
                .set_top_level(TARGET_PERMISSIONS, names)
        })
    }

    /// Claims holding scopes, as a space-separated string or an array
    /// (default `scope` and `scp`).
    pub fn scopes_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.edit(|i| i.rules.names.mapping.set_top_level(TARGET_SCOPES, names))
    }

    /// Where roles, permissions and scopes are read from, as JSON pointers
    /// (see [`ClaimMapping`], with presets for Keycloak, Auth0, Entra ID,
    /// Okta and Cognito). Replaces the [`roles_claims`](Self::roles_claims),
    /// [`permissions_claims`](Self::permissions_claims) and
    /// [`scopes_claims`](Self::scopes_claims) settings (and is replaced in
    /// part by them when they are called after it).
    pub fn claim_mapping(self, mapping: ClaimMapping) -> Self {
        self.edit(|i| i.rules.names.mapping = mapping)
    }

    /// The JWT profile for OAuth 2.0 access tokens (RFC 9068): the header
    /// `typ` must be `at+jwt` (or `application/at+jwt`, in any casing), so
    /// that an ID token or another JWT of the provider is not taken for an
    /// access token ([`JwtError::NotAccessToken`]), and `iss`, `exp`,
    /// `aud`, `sub`, `client_id`, `iat` and `jti` are required
    /// ([`JwtError::ProfileClaim`]); both are `401 invalid_token`.
    ///
    /// The profile requires the audience and the issuer to be checked:
    /// [`build`](Self::build) refuses it without
    /// [`audiences`](Self::audiences), and without
    /// [`issuers`](Self::issuers) or [`from_issuers`](Self::from_issuers)
    /// ([`ConfigError::AccessTokenProfile`]).
    pub fn access_token_profile(self) -> Self {
        self.edit(|i| {
            i.rules.access_token_profile = true;
            i.rules.require_exp = true;
        })
    }

    /// Names the RFC 9728 protected-resource metadata of this API in the
    /// `WWW-Authenticate` challenge (`resource_metadata="<url>"`), so that
    /// a client refused with `401` can discover the authorization server.
    /// `url` is normally [`ResourceMetadata::url`](super::ResourceMetadata::url),
    /// served by a [`ResourceMetadataLayer`](super::ResourceMetadataLayer).
    pub fn resource_metadata(self, url: impl Into<Arc<str>>) -> Self {
        let url = url.into();
        self.edit(|i| i.resource_metadata = Some(url))
    }

    /// A custom check on the typed claims, run after every standard check.
    pub fn check(
        self,
        check: impl Fn(&C) -> Result<(), AuthError> + Send + Sync + 'static,
    ) -> Self {
        self.edit(|i| i.check = Some(Arc::new(check)))
    }

    /// Also reads the token from cookie `name` (after the `Authorization`
    /// header). Cookie-carried tokens need a CSRF defence on unsafe methods.
    ///
    /// A cookie of that name that is repeated, too long, or does not hold a
    /// compact JWS (three base64url parts, a JSON object header) is treated
    /// as absent, as `SessionLayer` treats a mangled
    /// session cookie: a sibling subdomain planting such a cookie cannot
    /// turn every request into a `400`, and `jwt.or(other)` falls through
    /// to `other`. A well-formed token that fails verification is still a
    /// `401`.
    pub fn cookie(self, name: impl Into<Box<str>>) -> Self {
        let name = name.into();
        self.edit(|i| i.cookie = Some(name))
    }

    /// Also reads the token from query parameter `name` (e.g.
    /// `access_token`), for browser WebSockets that cannot set headers. Off
    /// by default: URLs end up in logs. A token in both the header and the
    /// query is refused (`400`).
    pub fn query_param(self, name: impl Into<Box<str>>) -> Self {
        let name = name.into();
        self.edit(|i| i.query = Some(name))
    }

    /// Stops reading the `Authorization` header (cookie or query only).
    pub fn without_header(self) -> Self {
        self.edit(|i| i.header = false)
    }

    /// Limits the size of a token (default 8 KiB).
    pub fn max_len(self, max_len: usize) -> Self {
        self.edit(|i| i.max_len = max_len)
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge.
    pub fn realm(self, realm: impl Into<Arc<str>>) -> Self {
        let realm = realm.into();
        self.edit(|i| i.realm = Some(realm))
    }

    /// Refuses tokens whose `jti`, or whose refresh family (`fam`), is
    /// revoked in `store`.
    pub fn revocation(self, store: impl RevocationStore) -> Self {
        let store: SharedStore = Arc::new(store);
        self.edit(|i| i.revocation = Some(store))
    }

    /// The deadline of a revocation store call (default
    /// [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT), 5 s;
    /// `None`: no deadline). A store that misses it gets the request
    /// refused with `503`, rather than held forever. Stores answering at
    /// once (like [`MemoryRevocationStore`](super::MemoryRevocationStore))
    /// arm no timer.
    pub fn backend_timeout(self, timeout: Option<Duration>) -> Self {
        self.edit(|i| i.backend_timeout = timeout)
    }

    /// Hands every request it authenticates a
    /// [`CredentialWatch`](crate::lifetime::CredentialWatch) in its
    /// extensions, for long-lived connections (WebSockets, gRPC streams) to
    /// end when the token does: at its `exp`, or when the token or its
    /// refresh family is revoked in the [revocation store](Self::revocation)
    /// (a logout). The store is asked every `check_every` (and at once when
    /// the watch starts); a store that broadcasts its revocations
    /// ([`RevocationStore::subscribe`], as
    /// [`MemoryRevocationStore`](super::MemoryRevocationStore) does) wakes
    /// the watch as soon as one concerns the token. A store failure or a
    /// missed [deadline](Self::backend_timeout) ends it
    /// ([`Ended::Unavailable`](crate::lifetime::Ended::Unavailable)).
    ///
    /// Off by default: short requests have no use for it, and it costs an
    /// allocation per request.
    pub fn watch_credentials(self, check_every: Duration) -> Self {
        self.edit(|i| i.watch = Some(check_every))
    }

    pub(crate) fn shared_revocation(self, store: SharedStore) -> Self {
        self.edit(|i| i.revocation = Some(store))
    }

    /// Caches up to `capacity` verified tokens for at most `ttl`. A cached
    /// token is still refused once its `exp` passes and is still checked
    /// against the revocation store on every request. The cache keeps an
    /// HMAC-SHA256 of each token under a random per-cache key, never the
    /// token. The cache is split in independently locked shards (from 1 024
    /// entries); a full shard evicts its oldest entry, in constant time.
    ///
    /// A hit clones the claims: with `C = Arc<YourClaims>` that is a
    /// reference-count increment.
    pub fn cache(self, capacity: usize, ttl: Duration) -> Self {
        let cache = TokenCache::new(capacity, ttl.as_secs()).map(Arc::new);
        if cache.is_none() {
            tracing::warn!("no random key for the JWT cache: every token is verified");
        }
        self.edit(|i| i.cache = cache)
    }

    /// Uses `clock` (seconds since the Unix epoch) instead of the system
    /// clock, for tests.
    pub fn clock(self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.edit(|i| i.clock = Arc::new(clock))
    }

    pub(crate) fn shared_clock(self, clock: Arc<Clock>) -> Self {
        self.edit(|i| i.clock = clock)
    }

    /// Checks that this configuration can accept a token at all: the key
    /// set is not empty, some algorithm is allowed, every allowed algorithm
    /// has a key that verifies it, and every key can be selected. Call it
    /// (or [`build`](Self::build)) at startup: these mistakes otherwise
    /// show only as every request refused with `401`.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let i = &*self.inner;
        if let Some(pointer) = i.rules.names.mapping.invalid() {
            return Err(ConfigError::ClaimPointer(pointer.into()));
        }
        if i.rules.access_token_profile {
            if i.rules.audiences.is_none() {
                return Err(ConfigError::AccessTokenProfile("audiences(...)"));
            }
            if i.rules.issuers.is_none() && i.issuers.is_none() {
                return Err(ConfigError::AccessTokenProfile("issuers(...)"));
            }
        }
        if let Some(entries) = &i.issuers {
            return validate_issuers(entries, &i.algorithms);
        }
        if i.source.is_some() {
            if i.algorithms.is_empty() {
                return Err(ConfigError::NoAlgorithms);
            }
            if i.rules.issuers.is_none() && !i.any_issuer {
                return Err(ConfigError::IssuerRequired);
            }
            // The keys rotate: which algorithms they verify is checked per
            // token.
            return Ok(());
        }
        validate_keys(&i.keys, &i.algorithms)
    }

    /// [`validate`](Self::validate)s the configuration and returns it:
    /// `JwtAuthenticator::new(keys).issuers([...]).build()?`.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// The key set (empty for an authenticator built
    /// [`from_source`](Self::from_source)).
    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
    }

    /// Verifies `token` (signature, header, claims, custom check) without
    /// the revocation check, as if it came in an `Authorization` header.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] saying why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Authenticated<C>, AuthError> {
        self.verify_parts(token, Scheme::Bearer)
            .map(|v| Authenticated::new(v.claims, v.identity))
            .map_err(Into::into)
    }

    pub(crate) fn verify_parts(&self, token: &str, scheme: Scheme) -> Result<Verified<C>, Refusal> {
        let i = &*self.inner;
        // The header `typ` is judged while the header is at hand (nothing
        // copied out of it); the verdict is reported once the signature
        // is verified, as before any other claim check.
        let header_type = |header: &jws::RawHeader<'_>| self.check_header_type(header.typ());
        // Set by the routing below, read once the token is verified.
        let routed: Cell<Option<&IssuerEntry>> = Cell::new(None);
        let routed = &routed;
        let then = move |jws: jws::Checked<'_, Result<(), JwtError>>| {
            self.verified(jws, routed.get(), scheme)
        };
        match (&i.source, &i.issuers) {
            (None, None) => {
                jws::verify_reading(token, &i.keys, &i.algorithms, i.max_len, header_type, then)
            }
            (Some(source), _) => {
                let keys = source.current().map_err(Refusal::Custom)?;
                jws::verify_reading(token, &keys, &i.algorithms, i.max_len, header_type, then)
            }
            (None, Some(entries)) => jws::verify_routed(
                token,
                &i.algorithms,
                i.max_len,
                header_type,
                |payload| {
                    // Unverified: chooses the keys, nothing else.
                    let iss = issuers::peek_issuer(payload)?.ok_or(JwtError::Issuer)?;
                    let entry = issuers::find(entries, &iss).ok_or(JwtError::Issuer)?;
                    routed.set(Some(entry));
                    let keys = entry.current().map_err(Refusal::Custom)?;
                    Ok::<_, Refusal>((keys, &entry.allowed[..]))
                },
                then,
            ),
        }
    }

    /// The claims checks of a token whose signature is verified, and its
    /// principal and [`Identity`].
    fn verified(
        &self,
        jws: jws::Checked<'_, Result<(), JwtError>>,
        routed: Option<&IssuerEntry>,
        scheme: Scheme,
    ) -> Result<Verified<C>, Refusal> {
        let i = &*self.inner;
        jws.read?;
        let registered = match routed.and_then(|e| e.mapping.as_ref()) {
            None => Registered::parse(jws.payload, &i.rules)?,
            Some(mapping) => Registered::parse_mapped(jws.payload, &i.rules, mapping)?,
        };
        registered.validate(&i.rules, (i.clock)())?;
        // The verified `iss` is the one the keys were chosen by.
        if let Some(entry) = routed {
            if registered.iss.as_deref() != Some(&*entry.issuer) {
                return Err(JwtError::Issuer.into());
            }
        }
        let claims: C = serde_json::from_slice(jws.payload).map_err(|_| JwtError::InvalidClaim)?;
        if let Some(check) = &i.check {
            check(&claims).map_err(Refusal::Custom)?;
        }
        let Registered {
            sub,
            jti,
            fam,
            exp,
            roles,
            permissions,
            scopes,
            ..
        } = registered;
        let identity =
            Identity::from_claims(sub.unwrap_or_default(), scheme, roles, permissions, scopes);
        Ok(Verified {
            claims,
            identity,
            jti,
            fam,
            exp,
        })
    }

    /// The checks of the JOSE header `typ`: the access-token profile's
    /// `at+jwt`, then the configured [`header_types`](Self::header_types).
    fn check_header_type(&self, typ: Option<&str>) -> Result<(), JwtError> {
        let rules = &self.inner.rules;
        if rules.access_token_profile && !typ.is_some_and(|typ| media_type_eq(typ, "at+jwt")) {
            return Err(JwtError::NotAccessToken);
        }
        if let Some(types) = &rules.header_types {
            if !typ.is_some_and(|typ| types.iter().any(|t| media_type_eq(typ, t))) {
                return Err(JwtError::TokenType);
            }
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// The token in cookie `name`, if there is exactly one such cookie and
    /// it holds something shaped like a compact JWS. Anything else (a
    /// repeated cookie, bad characters, an oversized value, not a JWS) is
    /// no credential, not an error: cookies are shared with sibling sites,
    /// which may set one of the same name. Other cookies are not looked at
    /// beyond their names.
    fn cookie_token(&self, headers: &HeaderMap, name: &str) -> Option<Secret> {
        let mut found: Option<&[u8]> = None;
        for value in headers.get_all(COOKIE) {
            for pair in value.as_bytes().split(|b| *b == b';') {
                let pair = pair.trim_ascii();
                let (k, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                if k != name.as_bytes() {
                    continue;
                }
                if found.is_some() {
                    tracing::debug!(cookie = name, "repeated JWT cookie ignored");
                    return None;
                }
                found = Some(v);
            }
        }
        let v = found?;
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        if v.is_empty() {
            return None;
        }
        let usable = v.len() <= self.inner.max_len
            && std::str::from_utf8(v)
                .is_ok_and(|t| credentials::is_token68(t) && jws::is_well_formed(t));
        if !usable {
            tracing::debug!(cookie = name, "JWT cookie without a usable token ignored");
            return None;
        }
        std::str::from_utf8(v).ok().map(Secret::new)
    }
}

/// The checks of [`JwtAuthenticator::validate`] on a static key set.
fn validate_keys(keys: &KeySet, algorithms: &[Algorithm]) -> Result<(), ConfigError> {
    if keys.is_empty() {
        return Err(ConfigError::EmptyKeySet);
    }
    if algorithms.is_empty() {
        return Err(ConfigError::NoAlgorithms);
    }
    if let Some(alg) = algorithms
        .iter()
        .find(|alg| !keys.keys().any(|k| k.accepts(**alg)))
    {
        return Err(ConfigError::AlgorithmWithoutKey(*alg));
    }
    if keys.len() > 1 && keys.keys().any(|k| k.kid().is_none()) {
        return Err(ConfigError::UnreachableKey(keys.len()));
    }
    Ok(())
}

/// The checks of [`JwtAuthenticator::validate`] with
/// [`from_issuers`](JwtAuthenticator::from_issuers).
fn validate_issuers(entries: &[IssuerEntry], algorithms: &[Algorithm]) -> Result<(), ConfigError> {
    if entries.is_empty() {
        return Err(ConfigError::NoIssuers);
    }
    if entries.len() > MAX_ISSUERS {
        return Err(ConfigError::TooManyIssuers(entries.len()));
    }
    if algorithms.is_empty() {
        return Err(ConfigError::NoAlgorithms);
    }
    for (n, entry) in entries.iter().enumerate() {
        if entry.issuer.is_empty() || entries[..n].iter().any(|e| e.issuer == entry.issuer) {
            return Err(ConfigError::InvalidIssuer(entry.issuer.to_string()));
        }
        if entry.allowed.is_empty() {
            return Err(ConfigError::IssuerWithoutAlgorithms(
                entry.issuer.to_string(),
            ));
        }
        if let Some(pointer) = entry.mapping.as_ref().and_then(ClaimMapping::invalid) {
            return Err(ConfigError::ClaimPointer(pointer.into()));
        }
        if let issuers::IssuerKeys::Static(keys) = &entry.keys {
            validate_keys(keys, &entry.allowed)?;
        }
    }
    Ok(())
}

fn scheme_of(credentials: &JwtCredentials) -> Scheme {
    credentials.scheme.clone()
}

/// A verified token's parts.
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    pub(crate) identity: Identity,
    pub(crate) jti: Option<String>,
    pub(crate) fam: Option<String>,
    pub(crate) exp: Option<i64>,
}

/// Why a token was refused: a standard reason or the custom check's error.
#[derive(Debug)]
pub(crate) enum Refusal {
    Jwt(JwtError),
    Custom(AuthError),
}

impl From<JwtError> for Refusal {
    fn from(e: JwtError) -> Self {
        Refusal::Jwt(e)
    }
}

impl From<Refusal> for AuthError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Jwt(e) => e.into(),
            Refusal::Custom(e) => e,
        }
    }
}

/// The future of [`JwtAuthenticator`]. Verification (signature, claims,
/// cache lookup) runs when it is first polled, not in
/// [`authenticate`](Authenticator::authenticate): `AuthService::call` only
/// builds it, so behind a `tower::buffer::Buffer` the signature checks run
/// on the tasks driving the responses, not on the buffer's single worker.
/// It is then ready at once unless the revocation store has to be asked
/// over the network.
pub struct JwtFuture<C> {
    state: FutureState<C>,
    /// The token came from the cookie source: the result is marked so that
    /// the `AuthLayer` adds `Vary: Cookie` to the response.
    from_cookie: bool,
}

enum FutureState<C> {
    /// Not polled yet: the token has not been looked at.
    Verify(Option<(JwtAuthenticator<C>, JwtCredentials)>),
    Ready(Option<Result<Authenticated<C>, AuthError>>),
    Waiting(BoxAuthFuture<C>),
}

impl<C> fmt::Debug for JwtFuture<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtFuture").finish_non_exhaustive()
    }
}

// No state is pinned structurally: the authenticator, credentials and
// result are moved out, the boxed future is pinned on the heap.
impl<C> Unpin for JwtFuture<C> {}

impl<C> Future for JwtFuture<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Output = Result<Authenticated<C>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let FutureState::Verify(pending) = &mut this.state {
            let Some((auth, credentials)) = pending.take() else {
                return Poll::Ready(Err(AuthError::invalid_credentials("token already checked")));
            };
            this.state = auth.start(&credentials).state;
        }
        let result =
            match &mut this.state {
                FutureState::Ready(r) => Poll::Ready(r.take().unwrap_or_else(|| {
                    Err(AuthError::invalid_credentials("token already checked"))
                })),
                FutureState::Waiting(f) => f.as_mut().poll(cx),
                // `start` never returns a future still to verify.
                FutureState::Verify(_) => {
                    Poll::Ready(Err(AuthError::invalid_credentials("token already checked")))
                }
            };
        if !this.from_cookie {
            return result;
        }
        result.map(|r| {
            r.map(Authenticated::from_cookie)
                .map_err(AuthError::from_cookie)
        })
    }
}

fn ready<C>(r: Result<Authenticated<C>, AuthError>) -> JwtFuture<C> {
    JwtFuture {
        state: FutureState::Ready(Some(r)),
        from_cookie: false,
    }
}

impl<C> JwtAuthenticator<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Verifies the credentials (or finds them in the cache) and starts the
    /// revocation check: the first poll of a [`JwtFuture`].
    fn start(&self, credentials: &JwtCredentials) -> JwtFuture<C> {
        let token = credentials.token();
        let scheme = credentials.scheme.clone();
        let Some(cache) = &self.inner.cache else {
            return match self.verify_parts(token, scheme) {
                Ok(v) => self.finish(
                    v.claims,
                    v.identity,
                    v.jti.as_deref(),
                    v.fam.as_deref(),
                    v.exp,
                ),
                Err(e) => self.refused(e, token, scheme_of(credentials)),
            };
        };
        let now = self.now();
        let fingerprint = cache.fingerprint(token);
        let source = self.source_of(token);
        // Read before verifying: keys that change meanwhile leave an older
        // epoch in the entry, so the next hit verifies again.
        let key_epoch = source.map_or(0, |s| s.epoch());
        let hit = cache
            .get(fingerprint, now, self.inner.rules.leeway)
            // Keys that changed since the token was verified (a key the
            // provider stopped publishing must stop admitting it): a miss.
            .filter(|hit| hit.key_epoch == key_epoch);
        crate::observe::cache("jwt", hit.is_some());
        if let Some(hit) = hit {
            // Keys too stale to trust refuse cached tokens too (fail closed).
            if let Some(Err(e)) = source.map(|s| s.usable()) {
                return ready(Err(e));
            }
            let identity = if *hit.identity.scheme() == scheme {
                hit.identity.clone()
            } else {
                hit.identity.clone().with_scheme(scheme)
            };
            return self.finish(
                hit.claims.clone(),
                identity,
                hit.jti.as_deref(),
                hit.fam.as_deref(),
                hit.exp,
            );
        }
        match self.verify_parts(token, scheme) {
            Ok(v) => {
                let future = self.finish(
                    v.claims.clone(),
                    v.identity.clone(),
                    v.jti.as_deref(),
                    v.fam.as_deref(),
                    v.exp,
                );
                cache.insert(
                    fingerprint,
                    Entry {
                        claims: v.claims,
                        identity: v.identity,
                        jti: v.jti,
                        fam: v.fam,
                        exp: v.exp,
                        deadline: 0,
                        key_epoch,
                    },
                    now,
                );
                future
            }
            Err(e) => self.refused(e, token, scheme_of(credentials)),
        }
    }

    /// A refused token: when its `kid` is unknown to a [`KeySource`] that
    /// agrees to refresh, checked again once the refresh is over.
    fn refused(&self, refusal: Refusal, token: &str, scheme: Scheme) -> JwtFuture<C> {
        let (Refusal::Jwt(JwtError::UnknownKey), Some(source)) = (&refusal, self.source_of(token))
        else {
            return ready(Err(refusal.into()));
        };
        let Some(refresh) = source.refresh_unknown_kid() else {
            return ready(Err(refusal.into()));
        };
        let this = self.clone();
        let token = Secret::from(token.to_owned());
        JwtFuture {
            from_cookie: false,
            state: FutureState::Waiting(Box::pin(async move {
                refresh.await;
                match this.verify_parts(token.expose(), scheme) {
                    Ok(v) => {
                        this.finish(
                            v.claims,
                            v.identity,
                            v.jti.as_deref(),
                            v.fam.as_deref(),
                            v.exp,
                        )
                        .await
                    }
                    Err(e) => Err(e.into()),
                }
            })),
        }
    }

    /// The [`KeySource`] `token` is verified with, if any: the one source,
    /// or with [`from_issuers`](Self::from_issuers) the source of the
    /// issuer the token names (unverified: only to refresh or check that
    /// source).
    fn source_of(&self, token: &str) -> Option<&Arc<dyn KeySource>> {
        let i = &*self.inner;
        if let Some(source) = &i.source {
            return Some(source);
        }
        let entries = i.issuers.as_ref()?;
        if entries.iter().all(|e| e.source().is_none()) {
            return None;
        }
        let payload = jws::unverified_payload(token)?;
        let iss = issuers::peek_issuer(&payload).ok()??;
        issuers::find(entries, &iss)?.source()
    }

    /// The principal of a verified token, with its [`CredentialWatch`] when
    /// asked for.
    fn authenticated(
        &self,
        claims: C,
        identity: Identity,
        jti: Option<&str>,
        fam: Option<&str>,
        exp: Option<i64>,
    ) -> Authenticated<C> {
        let authenticated = Authenticated::new(claims, identity);
        match self.inner.watch {
            Some(every) => authenticated.with_extension(self.watch(every, jti, fam, exp)),
            None => authenticated,
        }
    }

    /// The [`CredentialWatch`] of a token: its `exp`, and its `jti` and
    /// family in the revocation store.
    fn watch(
        &self,
        every: Duration,
        jti: Option<&str>,
        fam: Option<&str>,
        exp: Option<i64>,
    ) -> CredentialWatch {
        let i = &*self.inner;
        let mut watch = CredentialWatch::new().shared_clock(Arc::clone(&i.clock));
        if let Some(exp) = exp {
            watch = watch.expires_at(u64::try_from(exp).unwrap_or(0));
        }
        let Some(store) = &i.revocation else {
            return watch;
        };
        if jti.is_none() && fam.is_none() {
            return watch;
        }
        let ids: Arc<(Option<String>, Option<String>)> =
            Arc::new((jti.map(str::to_owned), fam.map(str::to_owned)));
        let (check_store, check_ids, after) =
            (Arc::clone(store), Arc::clone(&ids), i.backend_timeout);
        let wake_store = Arc::clone(store);
        watch
            .check_every(every, move || {
                let (store, ids) = (Arc::clone(&check_store), Arc::clone(&check_ids));
                async move {
                    match deadline(
                        revocation::check(store, ids.0.clone(), ids.1.clone()),
                        after,
                    )
                    .await
                    {
                        Ok(Ok(revoked)) => Ok(!revoked),
                        Ok(Err(e)) => Err(e),
                        Err(elapsed) => Err(elapsed.into()),
                    }
                }
            })
            .wake_on(move || {
                let receiver = wake_store.subscribe_dyn()?;
                let ids = Arc::clone(&ids);
                Some(Box::pin(async move {
                    receiver
                        .concerning(ids.0.as_deref(), ids.1.as_deref())
                        .await;
                }))
            })
    }

    /// Runs the revocation check for a verified token.
    fn finish(
        &self,
        claims: C,
        identity: Identity,
        jti: Option<&str>,
        fam: Option<&str>,
        exp: Option<i64>,
    ) -> JwtFuture<C> {
        let Some(store) = &self.inner.revocation else {
            return ready(Ok(self.authenticated(claims, identity, jti, fam, exp)));
        };
        let mut sync_answer = Some(false);
        for what in jti
            .map(revocation::Revocable::Token)
            .into_iter()
            .chain(fam.map(revocation::Revocable::Family))
        {
            match store.is_revoked_now_dyn(what) {
                Some(Ok(true)) => return ready(Err(JwtError::Revoked.into())),
                Some(Ok(false)) => {}
                Some(Err(e)) => return ready(Err(AuthError::unavailable(e))),
                None => sync_answer = None,
            }
        }
        if sync_answer.is_some() {
            return ready(Ok(self.authenticated(claims, identity, jti, fam, exp)));
        }
        // Built before the wait, which owns no borrow of `self`.
        let authenticated = self.authenticated(claims, identity, jti, fam, exp);
        let store = Arc::clone(store);
        let (jti, fam) = (jti.map(str::to_owned), fam.map(str::to_owned));
        let after = self.inner.backend_timeout;
        JwtFuture {
            from_cookie: false,
            state: FutureState::Waiting(Box::pin(async move {
                match deadline(revocation::check(store, jti, fam), after).await {
                    Ok(Ok(false)) => Ok(authenticated),
                    Ok(Ok(true)) => Err(JwtError::Revoked.into()),
                    Ok(Err(e)) => Err(AuthError::unavailable(e)),
                    Err(elapsed) => Err(super::issue::timed_out(elapsed)),
                }
            })),
        }
    }
}

impl<C> Authenticator for JwtAuthenticator<C>
where
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Credentials = JwtCredentials;
    type Principal = C;
    type Future = JwtFuture<C>;

    fn extract(&self, request: &Parts) -> Result<Option<JwtCredentials>, AuthError> {
        let i = &*self.inner;
        let header = if i.header {
            credentials::bearer_token_in(
                &request.headers,
                i.max_len.saturating_add("Bearer ".len()),
            )?
        } else {
            None
        };
        let query = match &i.query {
            Some(name) => credentials::query_param(&request.uri, name, i.max_len)?,
            None => None,
        };
        if header.is_some() && query.is_some() {
            return Err(AuthError::invalid_request(
                "a token was sent in both the header and the query",
            ));
        }
        if let Some(token) = header {
            return Ok(Some(JwtCredentials {
                token: Token::Header(token),
                scheme: Scheme::Bearer,
            }));
        }
        if let Some(name) = &i.cookie {
            if let Some(token) = self.cookie_token(&request.headers, name) {
                return Ok(Some(JwtCredentials {
                    token: Token::Owned(token),
                    scheme: Scheme::Cookie,
                }));
            }
        }
        Ok(query.map(|token| JwtCredentials {
            token: Token::Owned(token),
            scheme: Scheme::Bearer,
        }))
    }

    fn authenticate(&self, credentials: JwtCredentials) -> Self::Future {
        // Lazy: the work happens in `JwtFuture::poll` (see its docs).
        JwtFuture {
            from_cookie: credentials.scheme == Scheme::Cookie,
            state: FutureState::Verify(Some((self.clone(), credentials))),
        }
    }

    fn challenges(&self) -> Vec<Challenge> {
        let challenge = Challenge::bearer().realm(self.inner.realm.as_ref());
        vec![match &self.inner.resource_metadata {
            Some(url) => challenge.param("resource_metadata", url.to_string()),
            None => challenge,
        }]
    }
}
