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

use super::authenticator::{unix_now, JwtAuthenticator, Refusal};
use super::claims::FAMILY_CLAIM;
use super::jws::JwtError;
use super::keys::{JwtKey, KeyError, KeySet};
use super::revocation::{MemoryRevocationStore, Revocable, RevocationStore, SharedStore};
use crate::error::AuthError;
use crate::identity::Scheme;

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

const RESERVED: [&str; 9] = [
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
    store: SharedStore,
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
            .finish_non_exhaustive()
    }
}

/// Raw claims of a refresh token.
#[derive(serde::Deserialize, Clone)]
struct RefreshClaims {}

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
                store: Arc::new(MemoryRevocationStore::new()),
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

    /// Keeps revocations and used refresh tokens in `store` (share one
    /// store between server instances).
    pub fn revocation_store(self, store: impl RevocationStore) -> Self {
        let store: SharedStore = Arc::new(store);
        self.edit(|i| i.store = store)
    }

    /// Uses `clock` (seconds since the Unix epoch) instead of the system
    /// clock, for tests.
    pub fn clock(self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.edit(|i| i.clock = Arc::new(clock))
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
    /// required.
    pub fn authenticator<C>(&self) -> JwtAuthenticator<C>
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let i = &self.inner;
        let mut auth = JwtAuthenticator::new(i.keys.clone())
            .algorithms([i.header.alg])
            .token_type("access", true)
            .required_claims(["jti"])
            .shared_revocation(Arc::clone(&i.store))
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

    /// Issues a new pair for `subject`, starting a new refresh family.
    /// `extra` (a struct or map serializing to a JSON object, or `()`) is
    /// added to the access token's claims.
    ///
    /// # Errors
    ///
    /// [`IssueError`].
    pub fn issue<E: Serialize>(&self, subject: &str, extra: &E) -> Result<TokenPair, IssueError> {
        let family = random_id()?;
        self.issue_in_family(subject, &family, extra)
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
        self.issue_in_family(&grant.subject, &grant.family, extra)
    }

    fn issue_in_family<E: Serialize>(
        &self,
        subject: &str,
        family: &str,
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
        let refresh = registered("refresh", i.refresh_ttl)?;
        Ok(TokenPair {
            access_token: jsonwebtoken::encode(&i.header, &access, &i.encoding)?,
            refresh_token: jsonwebtoken::encode(&i.header, &refresh, &i.encoding)?,
            token_type: "bearer",
            expires_in: i.access_ttl,
        })
    }

    /// Redeems a refresh token: verifies it (signature, `typ: "refresh"`,
    /// expiry, issuer, audience), checks that its family is not revoked and
    /// marks it used. Pass the grant to
    /// [`issue_rotated`](TokenIssuer::issue_rotated) for the new pair.
    ///
    /// # Errors
    ///
    /// `401` ([`AuthErrorKind::InvalidCredentials`](crate::AuthErrorKind))
    /// for invalid, expired, revoked or reused tokens (a reuse also revokes
    /// the whole family), `400` for malformed ones, `503` when the store
    /// fails.
    pub async fn redeem(&self, refresh_token: &str) -> Result<RefreshGrant, AuthError> {
        let verifier = self.refresh_verifier();
        let v = verifier
            .verify_parts(refresh_token, Scheme::Bearer)
            .map_err(AuthError::from)?;
        let (Some(jti), Some(family)) = (v.jti, v.fam) else {
            return Err(JwtError::MissingClaim.into());
        };
        let store = &self.inner.store;
        let family_until = self.now().saturating_add(self.inner.refresh_ttl);
        if store
            .is_revoked_dyn(Revocable::Family(&family))
            .await
            .map_err(AuthError::unavailable)?
        {
            return Err(JwtError::Revoked.into());
        }
        let until = expiry_bound(v.exp, family_until);
        let first_use = store
            .consume_dyn(&jti, until)
            .await
            .map_err(AuthError::unavailable)?;
        if !first_use {
            tracing::warn!(
                subject = v.identity.subject(),
                "refresh token reuse detected: revoking its family"
            );
            store
                .revoke_dyn(Revocable::Family(&family), family_until)
                .await
                .map_err(AuthError::unavailable)?;
            return Err(JwtError::RefreshReuse.into());
        }
        Ok(RefreshGrant {
            subject: v.identity.subject().to_owned(),
            family,
        })
    }

    /// Logs out: revokes the refresh family of either token and deny-lists
    /// the access token's `jti` until it expires. Expired tokens need no
    /// revocation and are accepted silently.
    ///
    /// # Errors
    ///
    /// `401` for tokens that are invalid (bad signature, wrong type...),
    /// `503` when the store fails: a logout that could not be recorded is
    /// never reported as done.
    pub async fn logout(
        &self,
        access_token: Option<&str>,
        refresh_token: Option<&str>,
    ) -> Result<(), AuthError> {
        let store = &self.inner.store;
        let family_until = self.now().saturating_add(self.inner.refresh_ttl);
        let mut families = Vec::new();
        if let Some(token) = access_token {
            match self
                .authenticator::<RefreshClaims>()
                .verify_parts(token, Scheme::Bearer)
            {
                Ok(v) => {
                    if let Some(jti) = &v.jti {
                        let until = expiry_bound(v.exp, self.now() + self.inner.access_ttl);
                        store
                            .revoke_dyn(Revocable::Token(jti), until)
                            .await
                            .map_err(AuthError::unavailable)?;
                    }
                    families.extend(v.fam);
                }
                Err(Refusal::Jwt(JwtError::Expired)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(token) = refresh_token {
            match self.refresh_verifier().verify_parts(token, Scheme::Bearer) {
                Ok(v) => families.extend(v.fam),
                Err(Refusal::Jwt(JwtError::Expired)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for family in families {
            store
                .revoke_dyn(Revocable::Family(&family), family_until)
                .await
                .map_err(AuthError::unavailable)?;
        }
        Ok(())
    }
}

/// The time until which a revocation must hold: the token's `exp` plus a
/// margin for the verifier's leeway, or `fallback` when there is no `exp`.
fn expiry_bound(exp: Option<i64>, fallback: u64) -> u64 {
    exp.and_then(|e| u64::try_from(e).ok())
        .map_or(fallback, |e| e.saturating_add(300))
}

/// 128 random bits, base64url.
fn random_id() -> Result<String, IssueError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(IssueError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}
