//! DPoP (RFC 9449): access tokens bound to a key the client proves it holds,
//! with a signed proof (`DPoP` header) on every request.
//!
//! [`DpopBound`] wraps a token authenticator (a `JwtAuthenticator`):
//!
//! | request                                                         | answer |
//! |-----------------------------------------------------------------|--------|
//! | `Authorization: DPoP <token>` + a valid proof for this request, token `cnf.jkt` = proof key | the inner principal |
//! | no `DPoP` header, two of them, or a proof that does not verify: wrong `typ`, `alg` not allowed (never `none` or HMAC), a private or symmetric `jwk`, bad signature, `htm` / `htu` of another request, `iat` outside the window, `ath` of another token | `401`, `WWW-Authenticate: DPoP algs="…", error="invalid_dpop_proof"` |
//! | a proof replayed (same key and `jti` within the window)          | `401 invalid_dpop_proof` |
//! | token bound to another key                                      | `401 invalid_token` |
//! | a DPoP-bound token (`cnf.jkt`) sent as `Authorization: Bearer`   | `401 invalid_token` (no downgrade) |
//! | an unbound token sent as `Bearer`                               | the inner principal, unless [`require_binding`](DpopBound::require_binding) |
//! | an unbound token sent as `DPoP`                                 | `401 invalid_token` |
//!
//! The proof's key thumbprint (RFC 7638) is compared with the token's
//! `cnf.jkt` ([`JktConfirmation`]); `ath` (the base64url SHA-256 of the
//! access token) is required. Replays are refused by a [`ReplayStore`]
//! ([`MemoryReplayStore`]: bounded, fails closed when full of live entries).
//! With [`DpopBound::nonces`], proofs must also carry a server-provided
//! nonce (RFC 9449 §8): a proof without one, or with one that is forged or
//! older than the nonces' lifetime, gets `401` with
//! `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a fresh nonce in the
//! `DPoP-Nonce` response header, which the client puts in its next proof.
//! Nonces are stateless ([`DpopNonces`]: an HMAC of their issue time), so
//! every instance sharing the nonce key accepts them.
//!
//! The expected `htu` is `public_origin` + path when
//! [`DpopBound::public_origin`] is set (do set it in production: the
//! server then decides which URI proofs must name), else the request's
//! absolute URI when it has one (HTTP/2), else `https://` + `Host` + path,
//! where the client's `Host` header decides. Both sides are normalized (scheme and host
//! in lower case, default port dropped, query and fragment ignored).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{HeaderName, AUTHORIZATION, HOST};
use http::request::Parts;
use http::{HeaderValue, Method};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Authenticated, Authenticator, BoxAuthFuture};
use crate::credentials::single_header;
use crate::error::{AuthError, BoxError};
use crate::jwt::{Algorithm, JwtKey, KeySet};
use crate::rejection::Challenge;

const DPOP: HeaderName = HeaderName::from_static("dpop");
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The default lifetime of a [`DpopNonces`] nonce: 5 minutes.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Server-provided DPoP nonces (RFC 9449 §8), stateless: a nonce is the
/// base64url of its issue time (8 bytes) and a 16-byte HMAC-SHA256 tag of
/// that time under a key of at least 32 bytes, so every instance with the
/// same key issues and accepts the same nonces without shared state. A nonce
/// is accepted from its issue time until its lifetime has passed (5 s of
/// clock skew allowed), so a client refreshes it about every lifetime.
#[derive(Clone)]
pub struct DpopNonces {
    key: Arc<aws_lc_rs::hmac::Key>,
    lifetime: u64,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A [`DpopNonces`] key shorter than 32 bytes, or no randomness for one.
#[derive(Debug, thiserror::Error)]
#[error("a DPoP nonce key needs at least 32 random bytes")]
pub struct NonceKeyError;

impl DpopNonces {
    /// Nonces under `key` (at least 32 bytes; share it between instances).
    ///
    /// # Errors
    ///
    /// [`NonceKeyError`] for a shorter key.
    pub fn new(key: &[u8]) -> Result<Self, NonceKeyError> {
        if key.len() < 32 {
            return Err(NonceKeyError);
        }
        Ok(DpopNonces {
            key: Arc::new(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key)),
            lifetime: DEFAULT_NONCE_LIFETIME.as_secs(),
        })
    }

    /// Nonces under a random key (one instance, or nonces that only need to
    /// survive until the process restarts).
    ///
    /// # Errors
    ///
    /// [`NonceKeyError`] when the system has no randomness.
    pub fn generate() -> Result<Self, NonceKeyError> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key).map_err(|_| NonceKeyError)?;
        Self::new(&*key)
    }

    /// How long a nonce is accepted (default [`DEFAULT_NONCE_LIFETIME`],
    /// at least one second).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.as_secs().max(1);
        self
    }

    fn tag(&self, issued: u64) -> aws_lc_rs::hmac::Tag {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(b"tower-auth dpop nonce\0");
        ctx.update(&issued.to_be_bytes());
        ctx.sign()
    }

    /// A nonce issued at `now` (Unix seconds).
    pub fn issue(&self, now: u64) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(now).as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued with this key and is still fresh at `now`.
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        if nonce.len() != 32 {
            return false;
        }
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(issued) = <[u8; 8]>::try_from(&raw[..8]) else {
            return false;
        };
        let issued = u64::from_be_bytes(issued);
        let tag_ok = bool::from(self.tag(issued).as_ref()[..16].ct_eq(&raw[8..]));
        tag_ok && issued <= now.saturating_add(5) && now.saturating_sub(issued) < self.lifetime
    }
}

/// The default limit on a proof's size: 8 KiB.
const MAX_PROOF_LEN: usize = 8 * 1024;
/// The longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// The token's confirmation of a DPoP key: `cnf.jkt`, the RFC 7638 SHA-256
/// thumbprint of the public key (base64url).
///
/// Implemented for `serde_json::Value`, `Arc<T>` and `Box<T>`; for your
/// claims type, return its `cnf.jkt`.
pub trait JktConfirmation {
    /// `cnf.jkt`, when the token is DPoP-bound.
    fn jkt(&self) -> Option<&str>;
}

impl<T: JktConfirmation + ?Sized> JktConfirmation for Arc<T> {
    fn jkt(&self) -> Option<&str> {
        (**self).jkt()
    }
}

impl<T: JktConfirmation + ?Sized> JktConfirmation for Box<T> {
    fn jkt(&self) -> Option<&str> {
        (**self).jkt()
    }
}

impl JktConfirmation for Value {
    fn jkt(&self) -> Option<&str> {
        self.get("cnf")?.get("jkt")?.as_str()
    }
}

/// Remembers the proofs seen within the freshness window so that none is
/// accepted twice. Share one store between instances (e.g. in Redis) so a
/// replay to another instance is refused too.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` (a digest of the proof key and `jti`) until
    /// `expires_at` (Unix seconds): `Ok(true)` when it was new, `Ok(false)`
    /// for a replay.
    ///
    /// # Errors
    ///
    /// A backend failure (the request fails closed with `503`).
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'static>>;
}

/// A [`ReplayStore`] in memory, holding at most `capacity` live proofs;
/// when full of live ones it refuses new proofs (`503`) rather than forget
/// one that could then be replayed.
#[derive(Clone, Debug)]
pub struct MemoryReplayStore {
    inner: Arc<Mutex<HashMap<[u8; 32], u64>>>,
    capacity: usize,
}

impl MemoryReplayStore {
    /// A store of at most `capacity` live proofs.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            inner: Arc::default(),
            capacity: capacity.max(1),
        }
    }
}

impl Default for MemoryReplayStore {
    /// 100 000 proofs.
    fn default() -> Self {
        Self::new(100_000)
    }
}

/// The replay store is full of live proofs.
#[derive(Debug, thiserror::Error)]
#[error("the DPoP replay store is full")]
struct ReplayStoreFull;

impl ReplayStore for MemoryReplayStore {
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'static>> {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let result = if seen.get(&key).is_some_and(|exp| *exp >= now) {
            Ok(false)
        } else {
            if seen.len() >= self.capacity {
                seen.retain(|_, exp| *exp >= now);
            }
            if seen.len() >= self.capacity {
                Err(Box::new(ReplayStoreFull) as BoxError)
            } else {
                seen.insert(key, expires_at);
                Ok(true)
            }
        };
        Box::pin(std::future::ready(result))
    }
}

type Clock = dyn Fn() -> u64 + Send + Sync;

#[derive(Clone)]
struct Config {
    algorithms: Vec<Algorithm>,
    max_age: u64,
    leeway: u64,
    origin: Option<String>,
    require_binding: bool,
    replay: Arc<dyn ReplayStore>,
    clock: Arc<Clock>,
    challenge: Challenge,
    nonces: Option<DpopNonces>,
}

/// Requires DPoP proofs for the tokens of an inner authenticator. See the
/// [module docs](crate::dpop).
pub struct DpopBound<A> {
    inner: A,
    config: Arc<Config>,
}

impl<A> DpopBound<A> {
    /// Checks DPoP proofs for `inner`'s tokens: ES256, ES384, EdDSA, RS256
    /// and PS256 proofs, `iat` at most 60 s old (and 5 s in the future),
    /// replays refused by a [`MemoryReplayStore`].
    pub fn new(inner: A) -> Self {
        let algorithms = vec![
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::RS256,
            Algorithm::PS256,
        ];
        DpopBound {
            inner,
            config: Arc::new(Config {
                challenge: challenge(&algorithms),
                algorithms,
                max_age: 60,
                leeway: 5,
                origin: None,
                require_binding: false,
                replay: Arc::new(MemoryReplayStore::default()),
                clock: Arc::new(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                }),
                nonces: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The proof algorithms accepted (asymmetric ones only: HMAC and `none`
    /// are dropped).
    pub fn algorithms(self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let algorithms: Vec<Algorithm> = algorithms
            .into_iter()
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        self.edit(|c| {
            c.challenge = challenge(&algorithms);
            c.algorithms = algorithms;
        })
    }

    /// The origin (`https://api.example.com`) of the `htu` a proof must
    /// name, for servers behind a proxy.
    pub fn public_origin(self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        self.edit(|c| c.origin = Some(origin))
    }

    /// Also refuses unbound tokens (sent as `Bearer`).
    pub fn require_binding(self, require: bool) -> Self {
        self.edit(|c| c.require_binding = require)
    }

    /// Shares the replay store (e.g. between instances).
    pub fn replay_store(self, store: impl ReplayStore) -> Self {
        self.edit(|c| c.replay = Arc::new(store))
    }

    /// Replaces the clock (Unix seconds), for tests.
    pub fn clock(self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.edit(|c| c.clock = Arc::new(clock))
    }

    /// Requires server-provided nonces in proofs (RFC 9449 §8): see the
    /// [module docs](crate::dpop). Off by default.
    pub fn nonces(self, nonces: DpopNonces) -> Self {
        self.edit(|c| c.nonces = Some(nonces))
    }

    /// The maximum age of a proof's `iat`, in seconds (default 60).
    pub fn max_age(self, seconds: u64) -> Self {
        self.edit(|c| c.max_age = seconds)
    }
}

fn challenge(algorithms: &[Algorithm]) -> Challenge {
    let algs: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    Challenge::new("DPoP").param("algs", algs.join(" "))
}

impl<A: Clone> Clone for DpopBound<A> {
    fn clone(&self) -> Self {
        DpopBound {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for DpopBound<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopBound")
            .field("inner", &self.inner)
            .field("algorithms", &self.config.algorithms)
            .field("origin", &self.config.origin)
            .finish_non_exhaustive()
    }
}

/// The credentials of a [`DpopBound`]: the inner authenticator's, and what
/// the proof check needs from the request.
pub struct DpopCredentials<C> {
    inner: C,
    dpop_scheme: bool,
    token_hash: String,
    proof: Option<String>,
    method: Method,
    htu: Option<String>,
}

impl<C> fmt::Debug for DpopCredentials<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopCredentials")
            .field("dpop_scheme", &self.dpop_scheme)
            .field("method", &self.method)
            .field("htu", &self.htu)
            .finish_non_exhaustive()
    }
}

/// A verified proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopProof {
    /// The RFC 7638 thumbprint of the proof key.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: u64,
}

fn invalid_proof(challenge: &Challenge, why: &'static str) -> AuthError {
    AuthError::invalid_credentials(why)
        .with_challenge(challenge.clone().param("error", "invalid_dpop_proof"))
}

/// Normalizes an absolute URI for `htu` comparison: lower-case scheme and
/// host, no default port, no query or fragment.
fn normalize_htu(uri: &str) -> Option<String> {
    let uri: http::Uri = uri.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let port = match (scheme.as_str(), authority.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    Some(format!("{scheme}://{host}{port}{path}"))
}

fn expected_htu(request: &Parts, origin: Option<&str>) -> Option<String> {
    let path = request.uri.path();
    if let Some(origin) = origin {
        return normalize_htu(&format!("{}{path}", origin.trim_end_matches('/')));
    }
    if request.uri.scheme().is_some() && request.uri.authority().is_some() {
        return normalize_htu(&request.uri.to_string());
    }
    let host = request.headers.get(HOST)?.to_str().ok()?;
    normalize_htu(&format!("https://{host}{path}"))
}

/// The RFC 7638 thumbprint of a public JWK, from its required members only.
fn thumbprint(jwk: &serde_json::Map<String, Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k)?.as_str();
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            Value::from(s("crv")?),
            Value::from(s("x")?),
            Value::from(s("y")?)
        ),
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            Value::from(s("crv")?),
            Value::from(s("x")?)
        ),
        "RSA" => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            Value::from(s("e")?),
            Value::from(s("n")?)
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Members of a private or symmetric JWK: a proof carrying one is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl Config {
    /// Records a verified proof; a replay is refused.
    async fn remember(&self, checked: &DpopProof) -> Result<(), AuthError> {
        let now = (self.clock)();
        let mut key = Sha256::new();
        key.update(checked.jkt.as_bytes());
        key.update([0]);
        key.update(checked.jti.as_bytes());
        let expires = checked.iat.saturating_add(self.max_age + self.leeway);
        let fresh = self
            .replay
            .insert(key.finalize().into(), expires, now)
            .await
            .map_err(AuthError::unavailable)?;
        if fresh {
            Ok(())
        } else {
            Err(invalid_proof(
                &self.challenge,
                "the DPoP proof was replayed",
            ))
        }
    }

    /// Checks `proof` for a request (`ath` against `token_hash` when
    /// given); the replay check is [`remember`](Config::remember).
    fn check_proof(
        &self,
        proof: &str,
        method: &Method,
        htu: Option<&str>,
        token_hash: Option<&str>,
    ) -> Result<DpopProof, AuthError> {
        let bad = |why| invalid_proof(&self.challenge, why);
        if proof.len() > MAX_PROOF_LEN {
            return Err(bad("the DPoP proof is too long"));
        }
        let header_b64 = proof.split('.').next().unwrap_or_default();
        let header: Value = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| bad("the DPoP proof is malformed"))?;
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(bad("the DPoP proof is not of type dpop+jwt"));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<Algorithm>().ok())
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| bad("the DPoP proof algorithm is not accepted"))?;
        let mut jwk = header
            .get("jwk")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| bad("the DPoP proof has no jwk"))?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(bad("the DPoP proof jwk is not a public key"));
        }
        let jkt = thumbprint(&jwk).ok_or_else(|| bad("the DPoP proof jwk is not supported"))?;
        jwk.remove("kid");
        let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(Value::Object(jwk))
            .ok()
            .and_then(|j| JwtKey::from_jwk(&j).ok())
            .ok_or_else(|| bad("the DPoP proof jwk is not supported"))?;
        let verified = KeySet::single(key)
            .verify_jws(proof, &[alg])
            .map_err(|_| bad("the DPoP proof signature is invalid"))?;
        let claims: Value = serde_json::from_slice(&verified.payload)
            .map_err(|_| bad("the DPoP proof is malformed"))?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str);
        let jti = claim("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or_else(|| bad("the DPoP proof has no valid jti"))?;
        if claim("htm") != Some(method.as_str()) {
            return Err(bad("the DPoP proof is for another HTTP method"));
        }
        let proof_htu = claim("htu").and_then(normalize_htu);
        if proof_htu.is_none() || proof_htu.as_deref() != htu {
            return Err(bad("the DPoP proof is for another URI"));
        }
        let now = (self.clock)();
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("the DPoP proof has no iat"))?;
        if iat > now.saturating_add(self.leeway) || now.saturating_sub(iat) > self.max_age {
            return Err(bad("the DPoP proof is not fresh"));
        }
        let ath_ok = match token_hash {
            Some(hash) => {
                claim("ath").is_some_and(|a| bool::from(a.as_bytes().ct_eq(hash.as_bytes())))
            }
            None => true,
        };
        if !ath_ok {
            return Err(bad("the DPoP proof is for another access token"));
        }
        if let Some(nonces) = &self.nonces {
            if !claim("nonce").is_some_and(|n| nonces.accepts(n, now)) {
                let fresh = HeaderValue::from_str(&nonces.issue(now))
                    .map_err(|_| bad("the DPoP proof is malformed"))?;
                return Err(AuthError::invalid_credentials(
                    "the DPoP proof needs a fresh server nonce",
                )
                .with_challenge(self.challenge.clone().param("error", "use_dpop_nonce"))
                .with_header(DPOP_NONCE, fresh));
            }
        }
        Ok(DpopProof {
            jkt,
            jti: jti.to_owned(),
            iat,
        })
    }
}

impl<A> Authenticator for DpopBound<A>
where
    A: Authenticator,
    A::Principal: JktConfirmation,
{
    type Credentials = DpopCredentials<A::Credentials>;
    type Principal = A::Principal;
    type Future = BoxAuthFuture<A::Principal>;

    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        let Some(value) = single_header(&request.headers, &AUTHORIZATION)? else {
            return Ok(None);
        };
        let raw = value.as_bytes();
        let scheme_len = raw.iter().position(|b| *b == b' ').unwrap_or(raw.len());
        let dpop_scheme = raw[..scheme_len].eq_ignore_ascii_case(b"dpop");
        let inner = if dpop_scheme {
            // The inner authenticator reads bearer tokens: hand it the
            // token under that scheme.
            let mut bearer = raw.to_vec();
            bearer.splice(..scheme_len, b"Bearer".iter().copied());
            let mut head = http::Request::new(());
            *head.method_mut() = request.method.clone();
            *head.uri_mut() = request.uri.clone();
            *head.version_mut() = request.version;
            *head.headers_mut() = request.headers.clone();
            let value = HeaderValue::from_bytes(&bearer)
                .map_err(|_| AuthError::invalid_request("malformed DPoP authorization"))?;
            head.headers_mut().insert(AUTHORIZATION, value);
            self.inner.extract(&head.into_parts().0)
        } else {
            self.inner.extract(request)
        };
        let Some(inner) = inner? else {
            return Ok(None);
        };
        let token = std::str::from_utf8(&raw[scheme_len..])
            .unwrap_or_default()
            .trim_start_matches(' ');
        let proof = match single_header(&request.headers, &DPOP)? {
            Some(p) => Some(
                p.to_str()
                    .map_err(|_| {
                        invalid_proof(&self.config.challenge, "the DPoP proof is malformed")
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Some(DpopCredentials {
            inner,
            dpop_scheme,
            token_hash: URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
            proof,
            method: request.method.clone(),
            htu: expected_htu(request, self.config.origin.as_deref()),
        }))
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        let fut = self.inner.authenticate(credentials.inner);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let authenticated: Authenticated<A::Principal> = fut.await?;
            let bound = authenticated.principal.jkt().map(str::to_owned);
            let Some(bound) = bound else {
                if credentials.dpop_scheme || config.require_binding {
                    return Err(AuthError::invalid_credentials(
                        "the access token is not DPoP-bound",
                    ));
                }
                return Ok(authenticated);
            };
            if !credentials.dpop_scheme {
                return Err(AuthError::invalid_credentials(
                    "a DPoP-bound access token must be sent with the DPoP scheme",
                ));
            }
            let proof = credentials
                .proof
                .as_deref()
                .ok_or_else(|| invalid_proof(&config.challenge, "a DPoP proof is required"))?;
            let checked = config.check_proof(
                proof,
                &credentials.method,
                credentials.htu.as_deref(),
                Some(&credentials.token_hash),
            )?;
            if !bool::from(checked.jkt.as_bytes().ct_eq(bound.as_bytes())) {
                return Err(AuthError::invalid_credentials(
                    "the access token is bound to another key",
                ));
            }
            config.remember(&checked).await?;
            Ok(authenticated)
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        let mut c = vec![self.config.challenge.clone()];
        c.extend(self.inner.challenges());
        c
    }
}

/// Checks the DPoP proof of `request` outside a layer, replay included,
/// e.g. at a token endpoint: with `access_token: None` no `ath` is
/// required. Returns the proof's key thumbprint for the `cnf.jkt` of the
/// token to issue.
///
/// # Errors
///
/// `401` with the `invalid_dpop_proof` challenge when the proof does not
/// verify for this request or was replayed; `503` when the replay store
/// fails.
pub async fn verify_proof<A>(
    bound: &DpopBound<A>,
    request: &Parts,
    access_token: Option<&str>,
) -> Result<DpopProof, AuthError> {
    let config = &bound.config;
    let proof = single_header(&request.headers, &DPOP)?
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid_proof(&config.challenge, "a DPoP proof is required"))?;
    let htu = expected_htu(request, config.origin.as_deref());
    let hash = access_token.map(|t| URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
    let checked = config.check_proof(proof, &request.method, htu.as_deref(), hash.as_deref())?;
    config.remember(&checked).await?;
    Ok(checked)
}
