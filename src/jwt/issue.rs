//! Issuing access / refresh token pairs, refresh rotation with reuse
//! detection, and logout.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::authenticator::{unix_now, JwtAuthenticator};
use super::claims::FAMILY_CLAIM;
use super::config::ConfigError;
use super::jws::{self, JwtError};
use super::keys::{JwtKey, KeyError, KeySet};
use super::revocation::{
    BoxFut, MemoryRevocationStore, Redemption, Revocable, RevocationStore, SharedStore,
};
use crate::error::{AuthError, BoxError};
use crate::identity::Scheme;
use crate::timeout::{deadline, Elapsed, DEFAULT_BACKEND_TIMEOUT};

/// An access token and a refresh token, as returned by a sign-in or refresh
/// endpoint (`{"access_token", "refresh_token", "token_type": "bearer",
/// "expires_in"}`). `Debug` redacts the tokens.
#[derive(Clone, Serialize)]
pub struct TokenPair {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Always `"bearer"`.
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Errors of token issuing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The extra claims do not serialize to a JSON object.
    #[error("extra claims must serialize to a JSON object")]
    ClaimsNotObject,
    /// The extra claims set a claim the issuer owns (`exp`, `jti`, ...).
    #[error("extra claims may not set the reserved claim {0:?}")]
    ReservedClaim(String),
    /// Serialization failed.
    #[error("cannot serialize claims: {0}")]
    Json(#[from] serde_json::Error),
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The revocation store could not record the sign-in.
    #[error("the revocation store cannot record the sign-in: {0}")]
    Store(BoxError),
}

impl From<IssueError> for AuthError {
    fn from(e: IssueError) -> Self {
        AuthError::unavailable(e)
    }
}

/// What a redeemed refresh token grants: a new pair for the same subject
/// and family. See [`TokenIssuer::redeem`].
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    subject: String,
    family: String,
    generation: u64,
}

impl RefreshGrant {
    /// The subject of the refresh token.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The refresh family (one per sign-in).
    pub fn family(&self) -> &str {
        &self.family
    }
}

const RESERVED: [&str; 10] = [
    GENERATION_CLAIM,
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "typ",
    FAMILY_CLAIM,
];

/// Issues access / refresh token pairs and manages their life: refresh with
/// rotation and reuse detection, logout. Cloning is a reference-count
/// increment.
///
/// * Access tokens carry `sub`, `iat`, `exp`, a random `jti`, `typ:
///   "access"`, the family id `fam`, `iss` / `aud` when configured, and
///   your extra claims (roles, name...).
/// * Refresh tokens carry `sub`, `iat`, `exp`, `jti`, `typ: "refresh"` and
///   `fam`; [`authenticator`](TokenIssuer::authenticator) refuses them as
///   access tokens.
/// * [`redeem`](TokenIssuer::redeem) accepts each refresh token once. A
///   second use is a theft signal: the whole family (every refresh and
///   access token of that sign-in) is revoked.
/// * [`logout`](TokenIssuer::logout) revokes the family and deny-lists the
///   access token's `jti` until it expires.
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<IssuerInner>,
}

#[derive(Clone)]
struct IssuerInner {
    encoding: EncodingKey,
    header: Header,
    keys: KeySet,
    issuer: Option<String>,
    audience: Option<String>,
    access_ttl: u64,
    refresh_ttl: u64,
    leeway: u64,
    /// Seconds during which a redeemed refresh token may be redeemed again.
    reuse_interval: u64,
    store: SharedStore,
    /// The deadline of each revocation store call.
    backend_timeout: Option<Duration>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("TokenIssuer")
            .field("alg", &i.header.alg)
            .field("kid", &i.header.kid)
            .field("issuer", &i.issuer)
            .field("audience", &i.audience)
            .field("access_ttl", &i.access_ttl)
            .field("refresh_ttl", &i.refresh_ttl)
            .field("reuse_interval", &i.reuse_interval)
            .finish_non_exhaustive()
    }
}

/// The claims of a refresh token this module reads beyond the registered
/// ones: its generation in the family (0 for the token of a sign-in).
#[derive(serde::Deserialize, Clone)]
struct RefreshClaims {
    #[serde(default)]
    gen: u64,
}

/// The claim holding a refresh token's generation.
const GENERATION_CLAIM: &str = "gen";

/// Time added to revocation lifetimes beyond the verifier's leeway, so that
/// a revocation outlives every token it concerns.
const REVOCATION_MARGIN: u64 = 60;

impl TokenIssuer {
    /// Signs with `encoding` using `alg`, verifies with `keys`. Tokens live
    /// 15 minutes (access) and 30 days (refresh); revocations are kept in
    /// a [`MemoryRevocationStore`] unless you set another store.
    ///
    /// # Errors
    ///
    /// [`KeyError::AlgorithmMismatch`] when `alg` does not match `encoding`.
    pub fn new(alg: Algorithm, encoding: EncodingKey, keys: KeySet) -> Result<Self, KeyError> {
        if encoding.family() != alg.family() {
            return Err(KeyError::AlgorithmMismatch {
                alg,
                family: encoding.family(),
            });
        }
        Ok(TokenIssuer {
            inner: Arc::new(IssuerInner {
                encoding,
                header: Header::new(alg),
                keys,
                issuer: None,
                audience: None,
                access_ttl: 15 * 60,
                refresh_ttl: 30 * 24 * 3600,
                leeway: 30,
                reuse_interval: 0,
                store: Arc::new(MemoryRevocationStore::new()),
                backend_timeout: Some(DEFAULT_BACKEND_TIMEOUT),
                clock: Arc::new(unix_now),
            }),
        })
    }

    /// HS256 with `secret` (at least 32 bytes) for signing and verifying.
    ///
    /// # Errors
    ///
    /// [`KeyError::SecretTooShort`].
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let key = JwtKey::hmac(Algorithm::HS256, secret)?;
        Self::new(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            KeySet::single(key),
        )
    }

    fn edit(mut self, f: impl FnOnce(&mut IssuerInner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// Puts `kid` in the token headers.
    pub fn kid(self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        self.edit(|i| i.header.kid = Some(kid))
    }

    /// Sets `iss` (and requires it when verifying).
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.edit(|i| i.issuer = Some(issuer))
    }

    /// Sets `aud` (and requires it when verifying).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.edit(|i| i.audience = Some(audience))
    }

    /// Lifetime of access tokens (default 15 minutes).
    pub fn access_ttl(self, ttl: Duration) -> Self {
        self.edit(|i| i.access_ttl = ttl.as_secs().max(1))
    }

    /// Lifetime of refresh tokens (default 30 days).
    pub fn refresh_ttl(self, ttl: Duration) -> Self {
        self.edit(|i| i.refresh_ttl = ttl.as_secs().max(1))
    }

    /// Tolerance on `exp`, `nbf` and `iat` when verifying (default 30 s).
    /// Revocations are kept this long (plus a minute) past the expiry of the
    /// tokens they concern.
    pub fn leeway(self, leeway: Duration) -> Self {
        self.edit(|i| i.leeway = leeway.as_secs())
    }

    /// A reuse interval for refresh tokens (default zero: strict). Within
    /// `interval` of a refresh token's first redemption, redeeming that
    /// same token again succeeds (and issues another pair) instead of
    /// revoking the family, so that a client retrying a refresh whose
    /// response it lost, or two browser tabs refreshing at once, do not
    /// end the sign-in. Only the family's latest redeemed token gets this:
    /// an older one is a reuse as always.
    ///
    /// **Risk**: within the interval, a thief redeeming a stolen refresh
    /// token right after its owner (or before) is not detected, and both
    /// hold a valid pair. Keep it to seconds (e.g. 10–30 s). A custom
    /// [`RevocationStore`] must implement
    /// [`advance_with_grace`](RevocationStore::advance_with_grace) for the
    /// interval to apply; its default implementation stays strict.
    pub fn refresh_reuse_interval(self, interval: Duration) -> Self {
        self.edit(|i| i.reuse_interval = interval.as_secs())
    }

    /// Keeps revocations and used refresh tokens in `store` (share one
    /// store between server instances).
    pub fn revocation_store(self, store: impl RevocationStore) -> Self {
        let store: SharedStore = Arc::new(store);
        self.edit(|i| i.store = store)
    }

    /// The deadline of each revocation store call made by
    /// [`redeem`](Self::redeem), [`logout`](Self::logout) and the
    /// [`authenticator`](Self::authenticator)s made afterwards (default
    /// [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT), 5 s;
    /// `None`: no deadline). A call that misses it fails with `503`: a
    /// store that never answers does not hold requests forever.
    pub fn backend_timeout(self, timeout: Option<Duration>) -> Self {
        self.edit(|i| i.backend_timeout = timeout)
    }

    /// Uses `clock` (seconds since the Unix epoch) instead of the system
    /// clock, for tests.
    pub fn clock(self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.edit(|i| i.clock = Arc::new(clock))
    }

    /// Checks at startup that this issuer can work: its key signs with its
    /// algorithm, and its key set accepts the tokens it signs (right public
    /// key, `kid`, algorithm). Signs and verifies one probe token.
    ///
    /// # Errors
    ///
    /// [`ConfigError::CannotSign`], [`ConfigError::EmptyKeySet`],
    /// [`ConfigError::OwnTokensRefused`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let i = &*self.inner;
        let alg = i.header.alg;
        let claims: Map<String, Value> = Map::new();
        let probe =
            encode(&i.header, &claims, &i.encoding).map_err(|e| ConfigError::CannotSign {
                alg,
                reason: e.to_string(),
            })?;
        if i.keys.is_empty() {
            return Err(ConfigError::EmptyKeySet);
        }
        jws::verify(&probe, &i.keys, &[alg], usize::MAX).map_err(ConfigError::OwnTokensRefused)?;
        Ok(())
    }

    /// [`validate`](Self::validate)s the issuer and returns it:
    /// `TokenIssuer::new(alg, key, keys)?.kid("k1").build()?`.
    ///
    /// # Errors
    ///
    /// See [`validate`](Self::validate).
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// Lifetime of access tokens in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.inner.access_ttl
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// A [`JwtAuthenticator`] for this issuer's access tokens: same keys,
    /// `iss`, `aud`, clock and revocation store; token type `access`
    /// required. Keep its leeway at or below the issuer's
    /// ([`TokenIssuer::leeway`]): revocations last that long past expiry.
    pub fn authenticator<C>(&self) -> JwtAuthenticator<C>
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let i = &self.inner;
        let mut auth = JwtAuthenticator::new(i.keys.clone())
            .algorithms([i.header.alg])
            .token_type("access", true)
            .required_claims(["jti"])
            .leeway(Duration::from_secs(i.leeway))
            .shared_revocation(Arc::clone(&i.store))
            .backend_timeout(i.backend_timeout)
            .shared_clock(Arc::clone(&i.clock));
        if let Some(iss) = &i.issuer {
            auth = auth.issuers([iss.as_str()]);
        }
        if let Some(aud) = &i.audience {
            auth = auth.audiences([aud.as_str()]);
        }
        auth
    }

    fn refresh_verifier(&self) -> JwtAuthenticator<RefreshClaims> {
        self.authenticator::<RefreshClaims>()
            .token_type("refresh", true)
            .required_claims(["jti", FAMILY_CLAIM])
    }

    /// Until when a revocation must hold for a token expiring at `exp`.
    fn revocation_until(&self, exp: Option<i64>) -> u64 {
        let margin = self.inner.leeway.saturating_add(REVOCATION_MARGIN);
        let exp = exp
            .and_then(|e| u64::try_from(e).ok())
            .unwrap_or_else(|| self.now().saturating_add(self.inner.refresh_ttl));
        exp.saturating_add(margin)
    }

    /// Until when a family revocation must hold: past the expiry of any
    /// refresh token the family may still have.
    fn family_until(&self) -> u64 {
        self.now()
            .saturating_add(self.inner.refresh_ttl)
            .saturating_add(self.inner.leeway)
            .saturating_add(REVOCATION_MARGIN)
    }

    /// Until when a family's deny-list entry must hold. A store that tracks
    /// sign-ins refuses the family's refresh tokens once it is closed, so
    /// the entry only has to outlive the family's access tokens (all issued
    /// before now); otherwise it must outlive its refresh tokens too.
    fn family_revoked_until(&self) -> u64 {
        if !self.inner.store.tracks_sign_ins_dyn() {
            return self.family_until();
        }
        self.now()
            .saturating_add(self.inner.access_ttl)
            .saturating_add(self.inner.leeway)
            .saturating_add(REVOCATION_MARGIN)
    }

    /// Issues a new pair for `subject`, starting a new refresh family.
    /// `extra` (a struct or map serializing to a JSON object, or `()`) is
    /// added to the access token's claims.
    ///
    /// # Errors
    ///
    /// [`IssueError`].
    /// The sign-in is recorded in the revocation store
    /// ([`RevocationStore::open_family`]); with the default
    /// [`MemoryRevocationStore`], a subject's sign-ins beyond its cap close
    /// its oldest one.
    pub fn issue<E: Serialize>(&self, subject: &str, extra: &E) -> Result<TokenPair, IssueError> {
        let family = random_id()?;
        let pair = self.issue_in_family(subject, &family, 0, extra)?;
        self.inner
            .store
            .open_family_dyn(subject, &family, self.family_until())
            .map_err(IssueError::Store)?;
        Ok(pair)
    }

    /// Awaits one revocation store call under the backend deadline.
    async fn call<T>(&self, call: BoxFut<'_, T>) -> Result<T, AuthError> {
        match deadline(call, self.inner.backend_timeout).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(AuthError::unavailable(e)),
            Err(elapsed) => Err(timed_out(elapsed)),
        }
    }

    /// Issues the pair that replaces a redeemed refresh token: same subject
    /// and family.
    ///
    /// # Errors
    ///
    /// [`IssueError`].
    pub fn issue_rotated<E: Serialize>(
        &self,
        grant: &RefreshGrant,
        extra: &E,
    ) -> Result<TokenPair, IssueError> {
        self.issue_in_family(
            &grant.subject,
            &grant.family,
            grant.generation.saturating_add(1),
            extra,
        )
    }

    fn issue_in_family<E: Serialize>(
        &self,
        subject: &str,
        family: &str,
        generation: u64,
        extra: &E,
    ) -> Result<TokenPair, IssueError> {
        let i = &*self.inner;
        let now = self.now();
        let mut access = match serde_json::to_value(extra)? {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(IssueError::ClaimsNotObject),
        };
        if let Some(reserved) = RESERVED.iter().find(|r| access.contains_key(**r)) {
            return Err(IssueError::ReservedClaim((*reserved).to_owned()));
        }
        let registered = |typ: &str, ttl: u64| -> Result<Map<String, Value>, IssueError> {
            let mut m = Map::new();
            if let Some(iss) = &i.issuer {
                m.insert("iss".into(), iss.as_str().into());
            }
            m.insert("sub".into(), subject.into());
            if let Some(aud) = &i.audience {
                m.insert("aud".into(), aud.as_str().into());
            }
            m.insert("iat".into(), now.into());
            m.insert("exp".into(), now.saturating_add(ttl).into());
            m.insert("jti".into(), random_id()?.into());
            m.insert("typ".into(), typ.into());
            m.insert(FAMILY_CLAIM.into(), family.into());
            Ok(m)
        };
        access.extend(registered("access", i.access_ttl)?);
        let mut refresh = registered("refresh", i.refresh_ttl)?;
        refresh.insert(GENERATION_CLAIM.into(), generation.into());
        Ok(TokenPair {
            access_token: encode(&i.header, &access, &i.encoding)?,
            refresh_token: encode(&i.header, &refresh, &i.encoding)?,
            token_type: "bearer",
            expires_in: i.access_ttl,
        })
    }

    /// Redeems a refresh token: verifies it (signature, `typ: "refresh"`,
    /// expiry, issuer, audience), checks that its family is not revoked and
    /// records its generation as used. Pass the grant to
    /// [`issue_rotated`](TokenIssuer::issue_rotated) for the new pair.
    ///
    /// # Errors
    ///
    /// `401` ([`AuthErrorKind::InvalidCredentials`](crate::AuthErrorKind))
    /// for invalid, expired, revoked or reused tokens (a reuse also revokes
    /// the whole family), `400` for malformed ones, `503` when the store
    /// fails or misses its [deadline](Self::backend_timeout).
    pub async fn redeem(&self, refresh_token: &str) -> Result<RefreshGrant, AuthError> {
        let v = self
            .refresh_verifier()
            .verify_parts(refresh_token, Scheme::Bearer)
            .map_err(AuthError::from)?;
        let Some(family) = v.fam else {
            return Err(JwtError::MissingClaim.into());
        };
        let store = &self.inner.store;
        if self
            .call(store.is_revoked_dyn(Revocable::Family(&family)))
            .await?
        {
            return Err(JwtError::Revoked.into());
        }
        let generation = v.claims.gen;
        let grace = self.inner.reuse_interval;
        let subject = v.identity.subject();
        let redemption = self
            .call(store.advance_for_dyn(subject, &family, generation, self.family_until(), grace))
            .await?;
        match redemption {
            Redemption::First => {}
            Redemption::Unknown => {
                tracing::debug!(subject, "refresh token of a closed sign-in");
                return Err(JwtError::Revoked.into());
            }
            Redemption::Retry => tracing::debug!(
                subject = v.identity.subject(),
                "refresh token redeemed again within the reuse interval"
            ),
            // A reuse (and, failing closed, any outcome added later).
            _ => {
                tracing::warn!(
                    subject = v.identity.subject(),
                    "refresh token reuse detected: revoking its family"
                );
                self.call(
                    store.revoke_dyn(Revocable::Family(&family), self.family_revoked_until()),
                )
                .await?;
                return Err(JwtError::RefreshReuse.into());
            }
        }
        Ok(RefreshGrant {
            subject: v.identity.subject().to_owned(),
            family,
            generation,
        })
    }

    /// Logs out: revokes the refresh family of either token and deny-lists
    /// the access token's `jti` until it expires. Tokens are verified
    /// (signature, type, issuer, audience) but may be expired: a client whose
    /// access token timed out can still end its session.
    ///
    /// # Errors
    ///
    /// `401` for tokens that are invalid (bad signature, wrong type...),
    /// `503` when the store fails or misses its
    /// [deadline](Self::backend_timeout): a logout that could not be
    /// recorded is never reported as done.
    pub async fn logout(
        &self,
        access_token: Option<&str>,
        refresh_token: Option<&str>,
    ) -> Result<(), AuthError> {
        // Expired tokens still name the family to revoke.
        let ignore_expiry = Duration::from_secs(u64::MAX);
        let store = &self.inner.store;
        let mut families = Vec::new();
        if let Some(token) = access_token {
            let v = self
                .authenticator::<RefreshClaims>()
                .leeway(ignore_expiry)
                .verify_parts(token, Scheme::Bearer)
                .map_err(AuthError::from)?;
            let until = self.revocation_until(v.exp);
            if let (Some(jti), true) = (&v.jti, until > self.now()) {
                self.call(store.revoke_dyn(Revocable::Token(jti), until))
                    .await?;
            }
            families.extend(v.fam);
        }
        if let Some(token) = refresh_token {
            let v = self
                .refresh_verifier()
                .leeway(ignore_expiry)
                .verify_parts(token, Scheme::Bearer)
                .map_err(AuthError::from)?;
            families.extend(v.fam);
        }
        for family in families {
            self.call(store.revoke_dyn(Revocable::Family(&family), self.family_revoked_until()))
                .await?;
        }
        Ok(())
    }
}

/// A compact JWS of `claims`, signed with the crate's crypto provider
/// (never `jsonwebtoken`'s process-wide default: see [`jws::sign`]).
fn encode(
    header: &Header,
    claims: &Map<String, Value>,
    key: &EncodingKey,
) -> Result<String, IssueError> {
    if key.family() != header.alg.family() {
        return Err(jsonwebtoken::errors::Error::from(
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm,
        )
        .into());
    }
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = jws::sign(token.as_bytes(), key, header.alg)?;
    token.push('.');
    token.push_str(&signature);
    Ok(token)
}

/// A revocation store call that missed its deadline: `503`.
pub(crate) fn timed_out(elapsed: Elapsed) -> AuthError {
    tracing::warn!(%elapsed, "revocation store call timed out");
    AuthError::unavailable(elapsed)
}

/// 128 random bits, base64url.
fn random_id() -> Result<String, IssueError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(IssueError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}
