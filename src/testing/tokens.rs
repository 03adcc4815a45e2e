//! [`TestIssuer`]: valid and deliberately broken JWTs for every algorithm
//! this crate verifies, with keys generated once per test process.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::jwt::{JwtAuthenticator, KeySet};

/// The issuer (`iss`) of a [`TestIssuer`]'s tokens unless set.
pub const TEST_ISSUER: &str = "https://issuer.test";
/// The audience (`aud`) of a [`TestIssuer`]'s tokens unless set.
pub const TEST_AUDIENCE: &str = "test-api";

/// A key pair (or HMAC secret) generated for this process.
struct TestKey {
    encoding: EncodingKey,
    /// The public JWK members (`kty`, `n`/`e`, `crv`/`x`/`y`, or `k` for
    /// an HMAC secret), without `kid` and `alg`.
    jwk: Map<String, Value>,
    /// What an attacker uses as an HMAC secret in an algorithm confusion:
    /// the PEM text of the public key (for HMAC keys, the secret itself).
    public_pem: Vec<u8>,
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

fn b64u(bytes: &[u8]) -> Value {
    Value::String(URL_SAFE_NO_PAD.encode(bytes))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Key generation never fails on a working AWS-LC; if it does, the test
/// cannot run.
fn generated<T, E: fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("testing: cannot generate the test {what} key: {e:?}"))
}

fn hmac_key() -> TestKey {
    let mut secret = [0u8; 64];
    generated("HMAC", getrandom::fill(&mut secret));
    TestKey {
        encoding: EncodingKey::from_secret(&secret),
        jwk: object(json!({"kty": "oct", "k": b64u(&secret)})),
        public_pem: secret.to_vec(),
    }
}

fn rsa_key() -> TestKey {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let pair = generated("RSA", KeyPair::generate(KeySize::Rsa2048));
    let pkcs8: Pkcs8V1Der<'static> = generated("RSA", pair.as_der());
    let encoding = generated(
        "RSA",
        EncodingKey::from_rsa_pem(&pem("PRIVATE KEY", pkcs8.as_ref())),
    );
    let public = pair.public_key();
    let spki: PublicKeyX509Der<'static> = generated("RSA", public.as_der());
    TestKey {
        encoding,
        jwk: object(json!({
            "kty": "RSA",
            "n": b64u(public.modulus().big_endian_without_leading_zero()),
            "e": b64u(public.exponent().big_endian_without_leading_zero()),
        })),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

fn ec_key(p384: bool) -> TestKey {
    let (alg, crv, what) = if p384 {
        (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "P-384")
    } else {
        (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "P-256")
    };
    let pair = generated(what, EcdsaKeyPair::generate(alg));
    let pkcs8 = generated(what, pair.to_pkcs8v1());
    let point = pair.public_key().as_ref();
    // Uncompressed: 0x04 || x || y.
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    let spki: PublicKeyX509Der<'static> = generated(what, pair.public_key().as_der());
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: object(json!({"kty": "EC", "crv": crv, "x": b64u(x), "y": b64u(y)})),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

fn ed_key() -> TestKey {
    let pair = generated("Ed25519", Ed25519KeyPair::generate());
    let pkcs8 = generated("Ed25519", pair.to_pkcs8());
    let spki: PublicKeyX509Der<'static> = generated("Ed25519", pair.public_key().as_der());
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: object(json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(pair.public_key().as_ref())})),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

/// The process's key for `alg`, generated on first use (an RSA key takes
/// a moment; every RS* / PS* issuer shares one).
fn key_for(alg: Algorithm) -> &'static TestKey {
    static HMAC: OnceLock<TestKey> = OnceLock::new();
    static RSA: OnceLock<TestKey> = OnceLock::new();
    static P256: OnceLock<TestKey> = OnceLock::new();
    static P384: OnceLock<TestKey> = OnceLock::new();
    static ED: OnceLock<TestKey> = OnceLock::new();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => HMAC.get_or_init(hmac_key),
        Algorithm::ES256 => P256.get_or_init(|| ec_key(false)),
        Algorithm::ES384 => P384.get_or_init(|| ec_key(true)),
        Algorithm::EdDSA => ED.get_or_init(ed_key),
        // RS256..512, PS256..512.
        _ => RSA.get_or_init(rsa_key),
    }
}

fn alg_name(alg: Algorithm) -> String {
    // `Algorithm` serializes as its JOSE name.
    match serde_json::to_value(alg) {
        Ok(Value::String(name)) => name,
        _ => format!("{alg:?}"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A random `jti`: 128 bits, base64url; `fallback()` (unique enough for a
/// test) if the OS source fails.
fn random_id(fallback: impl FnOnce() -> String) -> String {
    let mut bytes = [0u8; 16];
    match getrandom::fill(&mut bytes) {
        Ok(()) => URL_SAFE_NO_PAD.encode(bytes),
        Err(_) => fallback(),
    }
}

/// Signs `header.payload` with `key` for `alg`, through AWS-LC named
/// explicitly (as the crate's own signing does).
fn sign(signing_input: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let signer = (provider.signer_factory)(&alg, key)
        .unwrap_or_else(|e| panic!("testing: no {alg:?} signer for the test key: {e}"));
    let signature = signer
        .try_sign(signing_input.as_bytes())
        .unwrap_or_else(|e| panic!("testing: signing with {alg:?} failed: {e}"));
    URL_SAFE_NO_PAD.encode(signature)
}

fn compact(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Issues JWTs for tests, valid ([`token`](Self::token)) and deliberately
/// broken ([`broken`](Self::broken)), for any algorithm this crate verifies:
/// HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA.
///
/// Keys are generated once per test process (none is bundled, so none can
/// end up trusted in production); [`key_set`](Self::key_set) and
/// [`jwks_json`](Self::jwks_json) give the matching verification keys, and
/// [`authenticator`](Self::authenticator) a [`JwtAuthenticator`] configured
/// for this issuer's tokens. Tokens carry `iss` ([`TEST_ISSUER`]), `aud`
/// ([`TEST_AUDIENCE`]), `sub`, `iat`, `exp` (in 10 minutes), a random
/// `jti`, and a `kid` header.
///
/// **For tests only.**
///
/// ```
/// # async fn doc() {
/// use jsonwebtoken::Algorithm;
/// use tower_auth::testing::{Broken, TestIssuer};
///
/// let issuer = TestIssuer::new(Algorithm::ES256);
/// let jwt = issuer.authenticator::<serde_json::Value>();
///
/// let token = issuer.token("alice").roles(["admin"]).scopes(["read", "write"]).sign();
/// let ok = jwt.verify(&token).unwrap();
/// assert_eq!(ok.identity.subject(), "alice");
/// assert!(ok.identity.has_scope("write"));
///
/// for broken in Broken::ALL {
///     assert!(jwt.verify(&issuer.broken("alice", broken)).is_err(), "{broken:?}");
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct TestIssuer {
    alg: Algorithm,
    key: &'static TestKey,
    kid: Arc<str>,
    issuer: Arc<str>,
    audience: Arc<str>,
    ttl: Duration,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// An issuer signing with `alg`, its key generated on first use in this
    /// process (shared by all issuers of the same key type), `kid`
    /// `test-<alg>`.
    pub fn new(alg: Algorithm) -> Self {
        TestIssuer {
            alg,
            key: key_for(alg),
            kid: Arc::from(format!("test-{}", alg_name(alg).to_ascii_lowercase())),
            issuer: Arc::from(TEST_ISSUER),
            audience: Arc::from(TEST_AUDIENCE),
            ttl: Duration::from_secs(600),
        }
    }

    /// Every algorithm this crate verifies, one issuer each.
    pub fn every_algorithm() -> Vec<TestIssuer> {
        use Algorithm::*;
        [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ]
        .into_iter()
        .map(Self::new)
        .collect()
    }

    /// Sets the `iss` of the tokens.
    pub fn issuer(mut self, issuer: impl AsRef<str>) -> Self {
        self.issuer = Arc::from(issuer.as_ref());
        self
    }

    /// Sets the `aud` of the tokens.
    pub fn audience(mut self, audience: impl AsRef<str>) -> Self {
        self.audience = Arc::from(audience.as_ref());
        self
    }

    /// Sets the `kid` header and the key id in the key set.
    pub fn kid(mut self, kid: impl AsRef<str>) -> Self {
        self.kid = Arc::from(kid.as_ref());
        self
    }

    /// Sets the lifetime of valid tokens (default 10 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` of the tokens.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The `iss` of the tokens.
    pub fn issuer_name(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of the tokens.
    pub fn audience_name(&self) -> &str {
        &self.audience
    }

    fn jwk(&self) -> Value {
        let mut jwk = self.key.jwk.clone();
        jwk.insert("kid".into(), Value::String(self.kid.to_string()));
        jwk.insert("alg".into(), Value::String(alg_name(self.alg)));
        jwk.insert("use".into(), Value::String("sig".into()));
        Value::Object(jwk)
    }

    /// The verification key as a JWK Set (`{"keys": [...]}`), to serve
    /// from a mock JWKS endpoint. For an HMAC issuer it holds the secret
    /// as an `oct` key, loadable with
    /// [`KeySet::from_jwks_json_allowing_symmetric`] only.
    pub fn jwks_json(&self) -> String {
        json!({"keys": [self.jwk()]}).to_string()
    }

    /// The verification key set.
    ///
    /// # Panics
    ///
    /// Never for the generated keys (a bug otherwise).
    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks_json_allowing_symmetric(&self.jwks_json())
            .unwrap_or_else(|e| panic!("testing: the test key does not load: {e}"))
    }

    /// A [`JwtAuthenticator`] for this issuer's tokens: its key set, its
    /// algorithm only, its issuer and audience; the other defaults of
    /// [`JwtAuthenticator::new`].
    pub fn authenticator<C>(&self) -> JwtAuthenticator<C>
    where
        C: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        JwtAuthenticator::new(self.key_set())
            .algorithms([self.alg])
            .issuers([&*self.issuer])
            .audiences([&*self.audience])
    }

    /// A token for `subject`, to complete and [`sign`](TokenBuilder::sign).
    pub fn token(&self, subject: &str) -> TokenBuilder {
        let now = now();
        let jti = random_id(|| format!("jti-{now}-{subject}"));
        let claims = json!({
            "iss": &*self.issuer,
            "aud": &*self.audience,
            "sub": subject,
            "iat": now,
            "exp": now.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
            "jti": jti,
        });
        TokenBuilder {
            issuer: self.clone(),
            header: object(json!({"alg": alg_name(self.alg), "typ": "JWT", "kid": &*self.kid})),
            claims: object(claims),
        }
    }

    /// A token for `subject` broken in the way `broken` says; every one is
    /// refused by [`authenticator`](Self::authenticator) with `401
    /// invalid_token`.
    pub fn broken(&self, subject: &str, broken: Broken) -> String {
        let token = self.token(subject);
        let now = now();
        match broken {
            Broken::Expired => token
                .claim("exp", now - 3600)
                .claim("iat", now - 7200)
                .sign(),
            Broken::NotYetValid => token.claim("nbf", now + 3600).sign(),
            Broken::WrongAudience => token.claim("aud", "another-api").sign(),
            Broken::WrongIssuer => token.claim("iss", "https://evil.test").sign(),
            Broken::MissingExp => token.without("exp").sign(),
            Broken::RefreshToken => token.claim("typ", "refresh").sign(),
            Broken::UnknownKid => token.header("kid", "no-such-key").sign(),
            Broken::BadSignature => {
                let good = token.sign();
                let (input, signature) = good.rsplit_once('.').unwrap_or((&good, ""));
                let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
                if let Some(b) = bytes.first_mut() {
                    *b ^= 0x01;
                }
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            Broken::AlgNone => {
                let mut t = token.header("alg", "none");
                t.header.remove("kid");
                format!(
                    "{}.",
                    compact(&Value::Object(t.header), &Value::Object(t.claims))
                )
            }
            Broken::AlgorithmConfusion => {
                // Asymmetric issuers: HS256 with the public key's PEM as the
                // secret (RS256 → HS256). HMAC issuers: an RS256 header
                // over an HMAC signature.
                let (alg, name) = if self.key.jwk.get("kty") == Some(&json!("oct")) {
                    (Algorithm::HS256, "RS256")
                } else {
                    (Algorithm::HS256, "HS256")
                };
                let t = token.header("alg", name);
                let input = compact(&Value::Object(t.header), &Value::Object(t.claims));
                let secret = EncodingKey::from_secret(&self.key.public_pem);
                format!("{input}.{}", sign(&input, &secret, alg))
            }
            Broken::Truncated => {
                let good = token.sign();
                let signature_start = good.rfind('.').map_or(0, |i| i + 1);
                let cut = signature_start + (good.len() - signature_start) / 2;
                good[..cut].to_owned()
            }
        }
    }

    /// Every [`Broken`] variant for `subject`, for table tests.
    pub fn broken_tokens(&self, subject: &str) -> Vec<(Broken, String)> {
        Broken::ALL
            .into_iter()
            .map(|b| (b, self.broken(subject, b)))
            .collect()
    }
}

/// How a [`TestIssuer::broken`] token is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Broken {
    /// `exp` an hour ago (past any leeway).
    Expired,
    /// `nbf` in an hour.
    NotYetValid,
    /// `aud` of another API.
    WrongAudience,
    /// `iss` of another issuer.
    WrongIssuer,
    /// No `exp` (required by default).
    MissingExp,
    /// `typ: "refresh"`: a refresh token used as an access token.
    RefreshToken,
    /// A `kid` the key set does not have.
    UnknownKid,
    /// One bit of the signature flipped.
    BadSignature,
    /// `alg: "none"` and no signature.
    AlgNone,
    /// Algorithm confusion: HS256 signed with the public key as the HMAC
    /// secret (for an HMAC issuer: an RS256 header on an HMAC signature).
    AlgorithmConfusion,
    /// Cut in the middle of the signature.
    Truncated,
}

impl Broken {
    /// Every variant.
    pub const ALL: [Broken; 11] = [
        Broken::Expired,
        Broken::NotYetValid,
        Broken::WrongAudience,
        Broken::WrongIssuer,
        Broken::MissingExp,
        Broken::RefreshToken,
        Broken::UnknownKid,
        Broken::BadSignature,
        Broken::AlgNone,
        Broken::AlgorithmConfusion,
        Broken::Truncated,
    ];
}

/// A token being built by [`TestIssuer::token`].
#[derive(Clone)]
pub struct TokenBuilder {
    issuer: TestIssuer,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl fmt::Debug for TokenBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBuilder")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish()
    }
}

impl TokenBuilder {
    /// Sets claim `name` (replacing a default one: `exp`, `aud`...).
    ///
    /// # Panics
    ///
    /// When `value` does not serialize to JSON.
    pub fn claim(mut self, name: &str, value: impl serde::Serialize) -> Self {
        let value = serde_json::to_value(value)
            .unwrap_or_else(|e| panic!("testing: claim {name:?} does not serialize: {e}"));
        self.claims.insert(name.to_owned(), value);
        self
    }

    /// Removes claim `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets header member `name` (`typ`, `kid`...). The signature is made
    /// with the issuer's key and algorithm whatever `alg` says.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.header
            .insert(name.to_owned(), Value::String(value.to_owned()));
        self
    }

    /// `roles`: an array.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(self, roles: I) -> Self {
        let roles: Vec<String> = roles.into_iter().map(Into::into).collect();
        self.claim("roles", roles)
    }

    /// `permissions`: an array.
    pub fn permissions<I: IntoIterator<Item = S>, S: Into<String>>(self, permissions: I) -> Self {
        let permissions: Vec<String> = permissions.into_iter().map(Into::into).collect();
        self.claim("permissions", permissions)
    }

    /// `scope`: space-separated (OAuth 2.0).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(self, scopes: I) -> Self {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.claim("scope", scopes.join(" "))
    }

    /// Expires `ttl` from now instead of the issuer's lifetime.
    pub fn expires_in(self, ttl: Duration) -> Self {
        let exp = now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        self.claim("exp", exp)
    }

    /// The signed compact JWS.
    pub fn sign(self) -> String {
        let input = compact(&Value::Object(self.header), &Value::Object(self.claims));
        let signature = sign(&input, &self.issuer.key.encoding, self.issuer.alg);
        format!("{input}.{signature}")
    }
}

/// A client's DPoP key for tests (RFC 9449): signs proofs for requests and
/// gives the thumbprint that binds a token to it
/// ([`TokenBuilder::dpop_bound`]). An ES256 key generated for this
/// process.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use tower_auth::testing::{TestDpopKey, TestIssuer, TestRequest};
///
/// let issuer = TestIssuer::new(Algorithm::ES256);
/// let client = TestDpopKey::new();
/// let token = issuer.token("alice").dpop_bound(&client).sign();
/// let proof = client.proof("GET", "https://api.example.com/me", Some(&token));
/// let req: http::Request<()> = TestRequest::get("https://api.example.com/me")
///     .dpop(&token, &proof)
///     .build();
/// # let _ = req;
/// ```
#[derive(Clone, Copy)]
pub struct TestDpopKey {
    key: &'static TestKey,
}

impl fmt::Debug for TestDpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDpopKey")
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl Default for TestDpopKey {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDpopKey {
    /// The process's DPoP client key (ES256), generated on first use.
    pub fn new() -> Self {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        TestDpopKey {
            key: KEY.get_or_init(|| ec_key(false)),
        }
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> Value {
        Value::Object(self.key.jwk.clone())
    }

    /// The RFC 7638 SHA-256 thumbprint (base64url): a bound token's
    /// `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let member = |name: &str| self.key.jwk.get(name).cloned().unwrap_or(Value::Null);
        // The required members in lexicographic order, no whitespace.
        let canonical = json!({
            "crv": member("crv"),
            "kty": member("kty"),
            "x": member("x"),
            "y": member("y"),
        })
        .to_string();
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A fresh proof (`typ: dpop+jwt`, the public `jwk`, a random `jti`,
    /// `iat` now) for `method` on `url` (absolute; query and fragment are
    /// ignored by the server), with `ath` when `access_token` is given.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let now = now();
        let jti = random_id(|| format!("jti-{now}-{method}-{url}"));
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()});
        let mut claims = json!({"jti": jti, "htm": method, "htu": url, "iat": now});
        if let (Some(token), Value::Object(map)) = (access_token, &mut claims) {
            map.insert("ath".into(), b64u(&Sha256::digest(token.as_bytes())));
        }
        let input = compact(&header, &claims);
        format!(
            "{input}.{}",
            sign(&input, &self.key.encoding, Algorithm::ES256)
        )
    }
}

impl TokenBuilder {
    /// Binds the token to `key` (`cnf.jkt`, RFC 9449 §6.1).
    pub fn dpop_bound(self, key: &TestDpopKey) -> Self {
        self.claim("cnf", json!({"jkt": key.thumbprint()}))
    }
}
