//! Verification keys: [`JwtKey`] and [`KeySet`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// The smallest HMAC secret accepted: 256 bits (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// Errors loading keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An HMAC secret shorter than 256 bits.
    #[error("an HMAC secret must be at least {MIN_HMAC_SECRET_LEN} bytes")]
    SecretTooShort,
    /// The algorithm does not belong to the key's family.
    #[error("algorithm {alg:?} cannot be used with a {family:?} key")]
    AlgorithmMismatch {
        /// The algorithm asked for.
        alg: Algorithm,
        /// The key's family.
        family: AlgorithmFamily,
    },
    /// The key material could not be parsed.
    #[error("invalid key: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The JWK Set could not be parsed.
    #[error("invalid JWK Set: {0}")]
    Jwks(#[from] serde_json::Error),
    /// The key file could not be read.
    #[error("cannot read key file: {0}")]
    Io(#[from] std::io::Error),
    /// A JWK of a type or curve this crate does not verify (e.g. P-521).
    #[error("unsupported JWK: {0}")]
    Unsupported(&'static str),
    /// The key set has no usable key.
    #[error("the key set has no signature verification key")]
    Empty,
    /// Two keys share a `kid`.
    #[error("two keys share the kid {0:?}")]
    DuplicateKid(String),
    /// A symmetric (`oct`) key in a JWK Set loaded as a set of public keys
    /// ([`KeySet::from_jwks_json`], [`KeySet::from_jwks_file`]): a published
    /// HMAC secret lets anyone sign tokens. Load a set of your own secrets
    /// with [`KeySet::from_jwks_json_allowing_symmetric`].
    #[error("symmetric (oct) JWK {0:?} in a public key set")]
    SymmetricKey(Option<String>),
}

/// One verification key, bound to one algorithm family and optionally to
/// one algorithm: an RSA key never verifies an HMAC token, so the classic
/// RS256 → HS256 confusion (the public key used as an HMAC secret) cannot
/// happen.
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<Arc<str>>,
    family: AlgorithmFamily,
    alg: Option<Algorithm>,
    key: DecodingKey,
    /// HMAC keys with their pads precomputed, for HS256 / HS384 / HS512
    /// (those the key may verify): saves hashing the secret per token.
    hmac: Option<Arc<[Option<aws_lc_rs::hmac::Key>; 3]>>,
}

fn hmac_slot(alg: Algorithm) -> Option<(usize, aws_lc_rs::hmac::Algorithm)> {
    use aws_lc_rs::hmac::{HMAC_SHA256, HMAC_SHA384, HMAC_SHA512};
    match alg {
        Algorithm::HS256 => Some((0, HMAC_SHA256)),
        Algorithm::HS384 => Some((1, HMAC_SHA384)),
        Algorithm::HS512 => Some((2, HMAC_SHA512)),
        _ => None,
    }
}

impl JwtKey {
    fn new(key: DecodingKey, alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let family = key.family();
        if let Some(alg) = alg {
            if alg.family() != family {
                return Err(KeyError::AlgorithmMismatch { alg, family });
            }
        }
        let hmac = match (family, key.try_get_as_bytes()) {
            (AlgorithmFamily::Hmac, Ok(secret)) => {
                let mut keys: [Option<aws_lc_rs::hmac::Key>; 3] = [None, None, None];
                for a in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                    if let (Some((i, h)), true) = (hmac_slot(a), alg.is_none_or(|b| b == a)) {
                        keys[i] = Some(aws_lc_rs::hmac::Key::new(h, secret));
                    }
                }
                Some(Arc::new(keys))
            }
            _ => None,
        };
        Ok(JwtKey {
            kid: None,
            family,
            alg,
            key,
            hmac,
        })
    }

    /// An HMAC secret for `alg` (HS256, HS384 or HS512), at least 256 bits.
    ///
    /// # Errors
    ///
    /// [`KeyError::SecretTooShort`], [`KeyError::AlgorithmMismatch`].
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyError::SecretTooShort);
        }
        Self::new(DecodingKey::from_secret(secret), Some(alg))
    }

    /// An RSA public key in PEM, for `alg` (RS* or PS*).
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`], [`KeyError::AlgorithmMismatch`].
    pub fn rsa_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_rsa_pem(pem)?, Some(alg))
    }

    /// An RSA public key from its base64url modulus and exponent.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`], [`KeyError::AlgorithmMismatch`].
    pub fn rsa_components(alg: Algorithm, n: &str, e: &str) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_rsa_components(n, e)?, Some(alg))
    }

    /// An RSA public key in DER (PKCS#1), for `alg`.
    ///
    /// # Errors
    ///
    /// [`KeyError::AlgorithmMismatch`].
    pub fn rsa_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_rsa_der(der), Some(alg))
    }

    /// An EC public key in PEM, for ES256 (P-256) or ES384 (P-384).
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`], [`KeyError::AlgorithmMismatch`].
    pub fn ec_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_ec_pem(pem)?, Some(alg))
    }

    /// An EC public key in DER, for `alg`.
    ///
    /// # Errors
    ///
    /// [`KeyError::AlgorithmMismatch`].
    pub fn ec_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_ec_der(der), Some(alg))
    }

    /// An Ed25519 public key in PEM, for EdDSA.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`].
    pub fn ed_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_ed_pem(pem)?, Some(Algorithm::EdDSA))
    }

    /// An Ed25519 public key in DER, for EdDSA.
    ///
    /// # Errors
    ///
    /// Never fails today; kept fallible like the other constructors.
    pub fn ed_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::new(DecodingKey::from_ed_der(der), Some(Algorithm::EdDSA))
    }

    /// A key from a JWK. The algorithm is the JWK's `alg` when present;
    /// otherwise EC keys are bound to the algorithm of their curve, Ed25519
    /// keys to EdDSA, and RSA / `oct` keys to their whole family.
    ///
    /// # Errors
    ///
    /// [`KeyError::Unsupported`] for encryption keys and unsupported types or
    /// curves, [`KeyError::Invalid`] for bad key material,
    /// [`KeyError::SecretTooShort`] for short `oct` keys.
    pub fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Self, KeyError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError::Unsupported("encryption key (use=enc)"));
        }
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(jwk_algorithm(a)?),
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) => {
                let curve_alg = match p.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => {
                        return Err(KeyError::Unsupported(
                            "elliptic curve other than P-256/P-384",
                        ))
                    }
                };
                if declared.is_some_and(|a| a != curve_alg) {
                    return Err(KeyError::Unsupported("JWK alg does not match its curve"));
                }
                Some(curve_alg)
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(KeyError::Unsupported("OKP curve other than Ed25519"));
                }
                Some(Algorithm::EdDSA)
            }
            AlgorithmParameters::OctetKey(p) => {
                use base64::Engine;
                let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&p.value)
                    .map_err(|_| KeyError::Unsupported("oct key is not base64url"))?;
                if secret.len() < MIN_HMAC_SECRET_LEN {
                    return Err(KeyError::SecretTooShort);
                }
                declared
            }
            AlgorithmParameters::RSA(_) => declared,
            _ => return Err(KeyError::Unsupported("key type")),
        };
        let mut key = Self::new(DecodingKey::from_jwk(jwk)?, alg)?;
        key.kid = jwk.common.key_id.as_deref().map(Arc::from);
        Ok(key)
    }

    /// Sets the key id matched against the token header's `kid`.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the key is bound to, if it is bound to one.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The family of algorithms the key belongs to.
    pub fn family(&self) -> AlgorithmFamily {
        self.family
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|a| a == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// The precomputed HMAC key for `alg`, if this is an HMAC key for it.
    pub(crate) fn hmac_key(&self, alg: Algorithm) -> Option<&aws_lc_rs::hmac::Key> {
        let (i, _) = hmac_slot(alg)?;
        self.hmac.as_ref()?[i].as_ref()
    }
}

fn jwk_algorithm(a: KeyAlgorithm) -> Result<Algorithm, KeyError> {
    Ok(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => {
            return Err(KeyError::Unsupported(
                "JWK alg is not a signature algorithm",
            ))
        }
    })
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys tokens are verified with, selected by the header's `kid`.
///
/// * A token with a `kid` is verified with the key of that id only; an
///   unknown `kid` is refused (the `kid` is a map key, never a path or URL).
/// * A token without a `kid` is accepted only when the set holds exactly
///   one key.
/// * Keys embedded in or pointed to by the token (`jwk`, `jku`, `x5u`,
///   `x5c`) are ignored.
///
/// Cloning is a reference-count increment.
#[derive(Clone, Default)]
pub struct KeySet {
    inner: Arc<Keys>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<Arc<str>, JwtKey>,
    /// Keys without a kid.
    anonymous: Vec<JwtKey>,
}

impl KeySet {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key set of one key.
    pub fn single(key: JwtKey) -> Self {
        let mut set = Keys::default();
        match key.kid.clone() {
            Some(kid) => {
                set.by_kid.insert(kid, key);
            }
            None => set.anonymous.push(key),
        }
        KeySet {
            inner: Arc::new(set),
        }
    }

    /// A key set of `keys`.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateKid`] when two keys share a `kid`,
    /// [`KeyError::Empty`] when there is no key.
    pub fn from_keys(keys: impl IntoIterator<Item = JwtKey>) -> Result<Self, KeyError> {
        let mut set = Keys::default();
        for key in keys {
            match key.kid.clone() {
                Some(kid) => {
                    if set.by_kid.contains_key(&kid) {
                        return Err(KeyError::DuplicateKid(kid.to_string()));
                    }
                    set.by_kid.insert(kid, key);
                }
                None => set.anonymous.push(key),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeySet {
            inner: Arc::new(set),
        })
    }

    /// Loads a JWK Set of public keys (`{"keys": [...]}`), such as an
    /// identity provider's. Encryption keys and keys of unsupported types or
    /// curves are skipped (and logged at `debug`); malformed supported keys
    /// are errors. `alg` may name `EdDSA` or its fully-specified name
    /// `Ed25519` (RFC 9864).
    ///
    /// A symmetric (`oct`) signing key refuses the whole set: in a published
    /// set it is an HMAC secret anyone can read, hence sign with. Use
    /// [`from_jwks_json_allowing_symmetric`](Self::from_jwks_json_allowing_symmetric)
    /// for a set of your own secrets.
    ///
    /// # Errors
    ///
    /// [`KeyError::Jwks`] for invalid JSON, [`KeyError::SymmetricKey`],
    /// [`KeyError::Empty`] when no usable key remains, and the errors of
    /// [`JwtKey::from_jwk`].
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        Self::parse_jwks(json, false)
    }

    /// Like [`from_jwks_json`](Self::from_jwks_json), also accepting
    /// symmetric (`oct`) keys: for a JWK Set of your own HMAC secrets, kept
    /// as private as the secrets themselves. Never use it for a key set
    /// published by an identity provider.
    ///
    /// # Errors
    ///
    /// As [`from_jwks_json`](Self::from_jwks_json), but for
    /// [`KeyError::SymmetricKey`].
    pub fn from_jwks_json_allowing_symmetric(json: &str) -> Result<Self, KeyError> {
        Self::parse_jwks(json, true)
    }

    /// Like [`from_jwks_file`](Self::from_jwks_file), also accepting
    /// symmetric (`oct`) keys: see
    /// [`from_jwks_json_allowing_symmetric`](Self::from_jwks_json_allowing_symmetric).
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`] and the errors of
    /// [`from_jwks_json_allowing_symmetric`](Self::from_jwks_json_allowing_symmetric).
    pub fn from_jwks_file_allowing_symmetric(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::parse_jwks(&std::fs::read_to_string(path)?, true)
    }

    /// RFC 9864: `Ed25519` is the fully-specified name of EdDSA over
    /// Ed25519; jsonwebtoken only knows `EdDSA`.
    fn rename_ed25519(key: &mut serde_json::Value) {
        let okp = key.get("kty").and_then(|k| k.as_str()) == Some("OKP");
        if let (true, Some(alg)) = (okp, key.get_mut("alg")) {
            if alg.as_str() == Some("Ed25519") {
                *alg = serde_json::Value::from("EdDSA");
            }
        }
    }

    /// A provider's JWK Set, leniently: each key that is malformed, of an
    /// unsupported type, symmetric (`oct`), for encryption, or whose `kid`
    /// repeats an earlier one is dropped alone. Returns the keys and the
    /// number dropped.
    #[cfg(feature = "oidc")]
    pub(crate) fn from_provider_jwks(keys: Vec<serde_json::Value>) -> (Self, usize) {
        let mut by_kid = HashMap::new();
        let mut anonymous = Vec::new();
        let mut dropped = 0;
        for mut key in keys {
            Self::rename_ed25519(&mut key);
            let jwk: Result<jsonwebtoken::jwk::Jwk, _> = serde_json::from_value(key);
            let parsed = match jwk {
                Ok(jwk) if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) => {
                    tracing::warn!(kid = ?jwk.common.key_id, "refusing a symmetric key in a provider's JWKS");
                    None
                }
                Ok(jwk) if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) => {
                    None
                }
                Ok(jwk) => match JwtKey::from_jwk(&jwk) {
                    Ok(key) => Some(key),
                    Err(e) => {
                        tracing::debug!(kid = ?jwk.common.key_id, error = %e, "dropping a JWK");
                        None
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "dropping a malformed or unsupported JWK");
                    None
                }
            };
            match parsed {
                Some(key) => match key.kid.clone() {
                    Some(kid) if by_kid.contains_key(&kid) => dropped += 1,
                    Some(kid) => {
                        by_kid.insert(kid, key);
                    }
                    None => anonymous.push(key),
                },
                None => dropped += 1,
            }
        }
        let set = KeySet {
            inner: Arc::new(Keys { by_kid, anonymous }),
        };
        (set, dropped)
    }

    fn parse_jwks(json: &str, allow_symmetric: bool) -> Result<Self, KeyError> {
        let mut value: serde_json::Value = serde_json::from_str(json)?;
        if let Some(keys) = value.get_mut("keys").and_then(|k| k.as_array_mut()) {
            keys.iter_mut().for_each(Self::rename_ed25519);
        }
        let jwks: JwkSet = serde_json::from_value(value)?;
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            let symmetric = matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_));
            let encryption = matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
            if symmetric && !encryption && !allow_symmetric {
                return Err(KeyError::SymmetricKey(jwk.common.key_id.clone()));
            }
            match JwtKey::from_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err(KeyError::Unsupported(why)) => {
                    tracing::debug!(kid = ?jwk.common.key_id, why, "skipping JWK");
                }
                Err(e) => return Err(e),
            }
        }
        Self::from_keys(keys)
    }

    /// Loads a JWK Set of public keys from a file: see
    /// [`from_jwks_json`](Self::from_jwks_json) (symmetric keys are
    /// refused).
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`] and the errors of [`KeySet::from_jwks_json`].
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_jwks_json(&std::fs::read_to_string(path)?)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.inner.by_kid.len() + self.inner.anonymous.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &JwtKey> {
        self.inner.by_kid.values().chain(&self.inner.anonymous)
    }

    /// Verifies a compact JWS (any payload, not only JWT claims) with these
    /// keys, accepting only `algorithms`: the header checks and key
    /// selection of [`JwtAuthenticator`](super::JwtAuthenticator) without
    /// the claims checks. Tokens over 64 KiB are refused.
    ///
    /// # Errors
    ///
    /// A [`JwtError`](super::JwtError) saying why the signature is refused.
    pub fn verify_jws(
        &self,
        token: &str,
        algorithms: &[Algorithm],
    ) -> Result<super::jws::VerifiedJws, super::JwtError> {
        super::jws::verify(token, self, algorithms, 64 * 1024)
    }

    /// The key for a token header's `kid`, as described on [`KeySet`].
    pub fn select(&self, kid: Option<&str>) -> Option<&JwtKey> {
        let keys = &self.inner;
        match kid {
            Some(kid) => keys.by_kid.get(kid).or_else(|| {
                // A lone key without an id verifies tokens whatever their kid.
                (keys.by_kid.is_empty() && keys.anonymous.len() == 1).then(|| &keys.anonymous[0])
            }),
            None => (self.len() == 1).then(|| self.keys().next()).flatten(),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(matches!(
            JwtKey::hmac(Algorithm::HS256, b"short"),
            Err(KeyError::SecretTooShort)
        ));
    }

    #[test]
    fn algorithm_must_match_the_key_family() {
        assert!(matches!(
            JwtKey::hmac(Algorithm::RS256, SECRET),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
        let k = JwtKey::hmac(Algorithm::HS256, SECRET).unwrap();
        assert!(k.accepts(Algorithm::HS256));
        assert!(!k.accepts(Algorithm::HS512));
        assert!(!k.accepts(Algorithm::RS256));
    }

    #[test]
    fn selection_by_kid() {
        let a = JwtKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .with_kid("a");
        let b = JwtKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .with_kid("b");
        let set = KeySet::from_keys([a, b]).unwrap();
        assert_eq!(set.select(Some("a")).unwrap().kid(), Some("a"));
        assert!(set.select(Some("../../etc/passwd")).is_none());
        assert!(set.select(None).is_none(), "two keys: a kid is required");

        let lone = KeySet::single(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap());
        assert!(lone.select(None).is_some());
        assert!(lone.select(Some("anything")).is_some());
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let a = JwtKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .with_kid("a");
        assert!(matches!(
            KeySet::from_keys([a.clone(), a]),
            Err(KeyError::DuplicateKid(_))
        ));
        assert!(matches!(KeySet::from_keys([]), Err(KeyError::Empty)));
    }

    #[test]
    fn a_public_key_set_refuses_symmetric_keys() {
        let json = r#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","kid":"mac","alg":"HS256","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}
        ]}"#;
        assert!(matches!(
            KeySet::from_jwks_json(json),
            Err(KeyError::SymmetricKey(Some(kid))) if kid == "mac"
        ));
        // Without a kid, and without an alg.
        assert!(matches!(
            KeySet::from_jwks_json(
                r#"{"keys":[{"kty":"oct","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}]}"#
            ),
            Err(KeyError::SymmetricKey(None))
        ));
        let path = std::env::temp_dir().join(format!("jwks-oct-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        assert!(matches!(
            KeySet::from_jwks_file(&path),
            Err(KeyError::SymmetricKey(_))
        ));
        assert_eq!(
            KeySet::from_jwks_file_allowing_symmetric(&path)
                .unwrap()
                .len(),
            2
        );
        std::fs::remove_file(&path).ok();
        // The opt-in accepts them.
        let set = KeySet::from_jwks_json_allowing_symmetric(json).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.select(Some("mac")).unwrap().family(),
            AlgorithmFamily::Hmac
        );
    }

    #[test]
    fn jwk_alg_ed25519_is_eddsa() {
        for alg in ["Ed25519", "EdDSA"] {
            let json = format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"{alg}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}]}}"#
            );
            let set = KeySet::from_jwks_json(&json).unwrap();
            assert_eq!(
                set.select(Some("ed")).unwrap().algorithm(),
                Some(Algorithm::EdDSA),
                "{alg}"
            );
        }
        // Only for OKP keys: on an RSA key it is not a signature algorithm
        // this crate knows, so the key is skipped.
        let rsa = r#"{"keys":[{"kty":"RSA","alg":"Ed25519","n":"sXch","e":"AQAB"}]}"#;
        assert!(matches!(KeySet::from_jwks_json(rsa), Err(KeyError::Empty)));
    }

    #[test]
    fn jwks_loading_skips_unsupported_keys() {
        let json = r#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","kid":"enc","use":"enc","k":"AAPapAv4LbFbiVawEjagUBluYqN5rhna-8nuldDvOx8"},
            {"kty":"oct","kid":"mac","alg":"HS256","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}
        ]}"#;
        let set = KeySet::from_jwks_json_allowing_symmetric(json).unwrap();
        assert_eq!(set.len(), 2);
        let ec = set.select(Some("ec")).unwrap();
        assert_eq!(ec.algorithm(), Some(Algorithm::ES256));
        assert!(set.select(Some("enc")).is_none());
        assert_eq!(
            set.select(Some("mac")).unwrap().family(),
            AlgorithmFamily::Hmac
        );
    }

    #[test]
    fn jwks_errors() {
        assert!(matches!(
            KeySet::from_jwks_json("not json"),
            Err(KeyError::Jwks(_))
        ));
        assert!(matches!(
            KeySet::from_jwks_json(r#"{"keys":[]}"#),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            KeySet::from_jwks_json_allowing_symmetric(r#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#),
            Err(KeyError::SecretTooShort)
        ));
        assert!(matches!(
            KeySet::from_jwks_file("/nonexistent/jwks.json"),
            Err(KeyError::Io(_))
        ));
    }
}
