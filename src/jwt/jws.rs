//! Compact JWS parsing and signature verification (RFC 7515).

use std::borrow::Cow;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Deserialize;

use super::keys::KeySet;
use crate::error::AuthError;

/// Longest `kid` accepted.
const MAX_KID_LEN: usize = 256;

/// Why a token was refused. The `Display` texts are the client-visible
/// messages: fixed, and never containing the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts, bad base64, bad JSON: `401
    /// invalid_token` (a malformed *token*, RFC 6750 §3.1).
    #[error("malformed token")]
    Malformed,
    /// The token is longer than the configured limit: `400
    /// invalid_request` (refused unread, see [`AuthError`]'s conversion).
    #[error("token too long")]
    TooLong,
    /// `alg` is `none`, unknown, or not allowed.
    #[error("token algorithm not accepted")]
    Algorithm,
    /// No key for the header's `kid`, or a key of another family.
    #[error("unknown token signing key")]
    UnknownKey,
    /// The header has a `crit` parameter this verifier does not understand.
    #[error("unsupported critical token header")]
    Critical,
    /// The signature does not verify.
    #[error("invalid token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A required claim is missing.
    #[error("token lacks a required claim")]
    MissingClaim,
    /// A claim has the wrong type (e.g. a string `exp`).
    #[error("token has an invalid claim")]
    InvalidClaim,
    /// `iss` is not accepted.
    #[error("token issuer not accepted")]
    Issuer,
    /// `aud` is not accepted.
    #[error("token audience not accepted")]
    Audience,
    /// The token type is not an access token (e.g. a refresh token).
    #[error("token type not accepted")]
    TokenType,
    /// The token (or its family) was revoked.
    #[error("token revoked")]
    Revoked,
    /// A refresh token was used twice: its family is now revoked.
    #[error("refresh token reuse detected")]
    RefreshReuse,
    /// With the JWT access-token profile (RFC 9068): the header `typ` is
    /// not `at+jwt` (e.g. an ID token presented as an access token).
    #[error("token is not a JWT access token (header typ must be at+jwt)")]
    NotAccessToken,
    /// With the JWT access-token profile (RFC 9068): a claim it requires
    /// is missing.
    #[error(
        "access token lacks a claim RFC 9068 requires (iss, exp, aud, sub, client_id, iat, jti)"
    )]
    ProfileClaim,
}

/// How a refused token is answered (RFC 6750 §3.1):
///
/// * a token that is not a decodable JWS ([`JwtError::Malformed`]: wrong
///   segment count, bad base64url, a header that is not JSON) is an
///   *invalid token*: `401`, `error="invalid_token"`, so that a client
///   which refreshes on `401 invalid_token` does so;
/// * a token over the size limit ([`JwtError::TooLong`]) is an *invalid
///   request*: `400`, `error="invalid_request"`. It is refused before it is
///   read, like any oversized credential; a refreshed token would be
///   refused the same way, so the client must not be told to retry with
///   one;
/// * every other refusal (signature, algorithm, key, claims, revocation)
///   is `401 invalid_token`.
///
/// Malformed *requests* (two `Authorization` headers, a token in both the
/// header and the query, bytes outside token68) are `400` before any token
/// is looked at.
impl From<JwtError> for AuthError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::TooLong => AuthError::invalid_request(e.to_string()),
            _ => AuthError::invalid_credentials(e.to_string()),
        }
    }
}

/// The parts of a JOSE header this verifier reads. Other members (`jwk`,
/// `jku`, `x5u`, `x5c`, ...) are ignored: keys come from the [`KeySet`]
/// only.
#[derive(Deserialize)]
pub(crate) struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    /// Whether `crit` is present, whatever its value (even `null`).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

impl RawHeader<'_> {
    /// The header's `typ`.
    pub(crate) fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A verified compact JWS.
#[derive(Debug)]
pub struct VerifiedJws {
    /// The algorithm of the signature.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

/// The crypto provider of every signature this crate makes or checks:
/// AWS-LC, named explicitly. `jsonwebtoken`'s process-wide default is never
/// consulted: when another crate in the build also enables its
/// `rust_crypto` backend, that default cannot be chosen from the features
/// and panics on first use.
fn provider() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
}

/// Signs `message` with `key` for `alg`, returning the base64url signature.
pub(crate) fn sign(
    message: &[u8],
    key: &EncodingKey,
    alg: Algorithm,
) -> Result<String, jsonwebtoken::errors::Error> {
    let signer = (provider().signer_factory)(&alg, key)?;
    if signer.algorithm() != alg {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into());
    }
    Ok(URL_SAFE_NO_PAD.encode(signer.try_sign(message)?))
}

/// Whether `signature_b64` is `key`'s signature of `message` under `alg`.
fn verify_signature(
    signature_b64: &str,
    message: &[u8],
    key: &DecodingKey,
    alg: Algorithm,
) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return false;
    };
    match (provider().verifier_factory)(&alg, key) {
        Ok(verifier) => verifier.algorithm() == alg && verifier.verify(message, &signature).is_ok(),
        Err(_) => false,
    }
}

/// Whether a JSON text is an object: RFC 7515 §4 requires the JOSE header
/// to be one, and RFC 7519 §7.2 the claims set. Derived deserializers would
/// also read an array by position (`["HS256"]`).
pub(crate) fn is_json_object(json: &[u8]) -> bool {
    json.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// Splits `token` into exactly three non-empty-signature parts.
fn split(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !s.is_empty() => Ok((h, p, s)),
        (Some(_), Some(_), Some(""), None) => Err(JwtError::Signature),
        _ => Err(JwtError::Malformed),
    }
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

/// The algorithm named by a header's `alg`. `Ed25519` (the fully-specified
/// name of RFC 9864) is EdDSA over Ed25519, the only EdDSA curve this crate
/// verifies, so both names select the same algorithm and the same keys.
/// Names are case-sensitive (RFC 7515 §4.1.1): `none`, `eddsa`, `ED25519`
/// are refused.
pub(crate) fn parse_alg(name: &str) -> Result<Algorithm, JwtError> {
    if name == "Ed25519" {
        return Ok(Algorithm::EdDSA);
    }
    Algorithm::from_str(name).map_err(|_| JwtError::Algorithm)
}

/// Verifies a compact JWS against `keys`, accepting only `algorithms`.
///
/// The header is decoded and checked before any key is touched: `alg`
/// must be one of `algorithms` (so `none`, in any casing, never is), `crit`
/// must be absent, and the key chosen by `kid` must belong to the family of
/// `alg` (and be bound to `alg` when it is bound to one algorithm).
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    algorithms: &[Algorithm],
    max_len: usize,
) -> Result<VerifiedJws, JwtError> {
    let read = |header: &RawHeader<'_>| {
        (
            header.kid.as_deref().map(str::to_owned),
            header.typ.as_deref().map(str::to_owned),
        )
    };
    verify_reading(token, keys, algorithms, max_len, read, |checked| {
        let (kid, typ) = checked.read;
        Ok(VerifiedJws {
            alg: checked.alg,
            kid,
            typ,
            payload: checked.payload.to_vec(),
        })
    })
}

/// A verified compact JWS, as the authenticator reads it: what `read`
/// took from the header (nothing is copied out of it unless asked), the
/// algorithm and the decoded payload (on the stack when small).
pub(crate) struct Checked<'p, T> {
    pub(crate) alg: Algorithm,
    pub(crate) payload: &'p [u8],
    pub(crate) read: T,
}

/// As [`verify`], handing the header to `read` (before the signature is
/// checked: `read` only takes note, the caller decides once the token is
/// verified) instead of copying its `kid` and `typ`, and the verified
/// token to `then` (the payload is decoded into a stack buffer when it
/// fits).
pub(crate) fn verify_reading<T, R, E: From<JwtError>>(
    token: &str,
    keys: &KeySet,
    algorithms: &[Algorithm],
    max_len: usize,
    read: impl FnOnce(&RawHeader<'_>) -> T,
    then: impl FnOnce(Checked<'_, T>) -> Result<R, E>,
) -> Result<R, E> {
    let (header_b64, payload_b64, signature_b64) = split_checked(token, max_len)?;
    let (alg, read) = with_header(header_b64, |header| {
        let alg = check_header(header, algorithms)?;
        check_signature(
            token,
            header_b64,
            payload_b64,
            signature_b64,
            header,
            keys,
            alg,
        )?;
        Ok::<_, JwtError>((alg, read(header)))
    })?;
    with_decoded(payload_b64, |payload| then(Checked { alg, payload, read }))
}

/// As [`verify_reading`], for keys chosen by the (still unverified)
/// payload: the header is checked against `algorithms` first, then `route`
/// reads the decoded payload and returns the keys and the algorithms they
/// may verify (a subset of `algorithms`), or refuses the token.
pub(crate) fn verify_routed<'r, T, R, E, F>(
    token: &str,
    algorithms: &[Algorithm],
    max_len: usize,
    read: impl FnOnce(&RawHeader<'_>) -> T,
    route: F,
    then: impl FnOnce(Checked<'_, T>) -> Result<R, E>,
) -> Result<R, E>
where
    E: From<JwtError>,
    F: FnOnce(&[u8]) -> Result<(Cow<'r, KeySet>, &'r [Algorithm]), E>,
{
    let (header_b64, payload_b64, signature_b64) = split_checked(token, max_len)?;
    with_header(header_b64, |header| {
        let alg = check_header(header, algorithms)?;
        with_decoded(payload_b64, |payload| {
            let (keys, routed_algorithms) = route(payload)?;
            if !routed_algorithms.contains(&alg) {
                return Err(JwtError::Algorithm.into());
            }
            check_signature(
                token,
                header_b64,
                payload_b64,
                signature_b64,
                header,
                &keys,
                alg,
            )?;
            then(Checked {
                alg,
                payload,
                read: read(header),
            })
        })
    })
}

/// Longest base64url header decoded on the stack; longer ones (up to the
/// token's size limit) are decoded onto the heap.
const STACK_HEADER_B64: usize = 512;

/// Longest base64url payload decoded on the stack (1.5 KiB of JSON).
const STACK_PAYLOAD_B64: usize = 2048;

/// Decodes the base64url header, which must be a JSON object, and hands
/// it to `f`. A header of common size is decoded into a stack buffer: no
/// allocation.
fn with_header<R, E: From<JwtError>>(
    header_b64: &str,
    f: impl FnOnce(&RawHeader<'_>) -> Result<R, E>,
) -> Result<R, E> {
    let mut stack = [0u8; STACK_HEADER_B64 / 4 * 3];
    let heap;
    let json: &[u8] = if header_b64.len() <= STACK_HEADER_B64 {
        let n = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut stack)
            .map_err(|_| JwtError::Malformed)?;
        &stack[..n]
    } else {
        heap = b64(header_b64)?;
        &heap
    };
    if !is_json_object(json) {
        return Err(JwtError::Malformed.into());
    }
    let header: RawHeader<'_> = serde_json::from_slice(json).map_err(|_| JwtError::Malformed)?;
    f(&header)
}

/// Decodes a base64url part and hands it to `f`: into a stack buffer when
/// it fits, else onto the heap.
fn with_decoded<R, E: From<JwtError>>(
    part: &str,
    f: impl FnOnce(&[u8]) -> Result<R, E>,
) -> Result<R, E> {
    if part.len() > STACK_PAYLOAD_B64 {
        return f(&b64(part)?);
    }
    let mut stack = [0u8; STACK_PAYLOAD_B64 / 4 * 3];
    let n = URL_SAFE_NO_PAD
        .decode_slice(part, &mut stack)
        .map_err(|_| JwtError::Malformed)?;
    f(&stack[..n])
}

/// The three parts of a token within the size limit.
fn split_checked(token: &str, max_len: usize) -> Result<(&str, &str, &str), JwtError> {
    if token.len() > max_len {
        return Err(JwtError::TooLong);
    }
    split(token)
}

/// The header's algorithm, allowed by `algorithms`, without `crit` and
/// with a `kid` of sane length.
fn check_header(header: &RawHeader<'_>, algorithms: &[Algorithm]) -> Result<Algorithm, JwtError> {
    let alg = parse_alg(&header.alg)?;
    if !algorithms.contains(&alg) {
        return Err(JwtError::Algorithm);
    }
    if header.crit {
        return Err(JwtError::Critical);
    }
    if header.kid.as_deref().is_some_and(|k| k.len() > MAX_KID_LEN) {
        return Err(JwtError::Malformed);
    }
    Ok(alg)
}

/// Selects the key by `kid` and checks the signature with it.
fn check_signature(
    token: &str,
    header_b64: &str,
    payload_b64: &str,
    signature_b64: &str,
    header: &RawHeader<'_>,
    keys: &KeySet,
    alg: Algorithm,
) -> Result<(), JwtError> {
    let key = keys
        .select(header.kid.as_deref())
        .ok_or(JwtError::UnknownKey)?;
    if !key.accepts(alg) {
        return Err(JwtError::UnknownKey);
    }
    let message_len = header_b64.len() + 1 + payload_b64.len();
    let message = &token.as_bytes()[..message_len];
    let valid = match key.hmac_key(alg) {
        // HMAC with the precomputed key; the comparison is constant-time.
        Some(hmac) => {
            let mut tag = [0u8; 64];
            match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut tag) {
                Ok(n) => aws_lc_rs::hmac::verify(hmac, message, &tag[..n]).is_ok(),
                Err(_) => false,
            }
        }
        None => verify_signature(signature_b64, message, key.decoding_key(), alg),
    };
    if valid {
        Ok(())
    } else {
        Err(JwtError::Signature)
    }
}

/// The decoded payload of a compact JWS, unverified (to find which keys
/// verify it).
pub(crate) fn unverified_payload(token: &str) -> Option<Vec<u8>> {
    let (_, payload_b64, _) = split(token).ok()?;
    b64(payload_b64).ok()
}

/// Whether `token` looks like a compact JWS this verifier could read: three
/// base64url parts, a non-empty signature, and a header that decodes to a
/// JSON object naming an `alg`. Signatures and claims are not checked. Used
/// to tell a cookie holding a token from an unrelated or mangled cookie of
/// the same name.
pub(crate) fn is_well_formed(token: &str) -> bool {
    let Ok((header_b64, payload_b64, signature_b64)) = split(token) else {
        return false;
    };
    let base64url = |part: &str| {
        part.len() % 4 != 1
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !base64url(payload_b64) || !base64url(signature_b64) {
        return false;
    }
    let Ok(header_json) = b64(header_b64) else {
        return false;
    };
    is_json_object(&header_json) && serde_json::from_slice::<RawHeader<'_>>(&header_json).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::keys::JwtKey;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> KeySet {
        KeySet::single(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
    }

    fn sign(header: &str, payload: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let msg = format!("{h}.{p}");
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        let sig = super::sign(msg.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{msg}.{sig}")
    }

    fn check(token: &str) -> Result<VerifiedJws, JwtError> {
        verify(token, &keys(), &[Algorithm::HS256], 8192)
    }

    #[test]
    fn accepts_a_valid_token() {
        let t = sign(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"sub":"1"}"#);
        let v = check(&t).unwrap();
        assert_eq!(v.alg, Algorithm::HS256);
        assert_eq!(v.payload, br#"{"sub":"1"}"#);
        assert_eq!(v.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn structural_errors() {
        let t = sign(r#"{"alg":"HS256"}"#, "{}");
        assert_eq!(check("a.b").unwrap_err(), JwtError::Malformed);
        assert_eq!(check("a.b.c.d").unwrap_err(), JwtError::Malformed);
        assert_eq!(check(".b.c").unwrap_err(), JwtError::Malformed);
        assert_eq!(check("!!!.b.c").unwrap_err(), JwtError::Malformed);
        // signature stripped
        let stripped = format!("{}.", t.rsplit_once('.').unwrap().0);
        assert_eq!(check(&stripped).unwrap_err(), JwtError::Signature);
        // padded base64 is not base64url without padding
        let (h, rest) = t.split_once('.').unwrap();
        assert_eq!(
            check(&format!("{h}=.{rest}")).unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            verify(&t, &keys(), &[Algorithm::HS256], 10).unwrap_err(),
            JwtError::TooLong
        );
    }

    #[test]
    fn none_in_any_casing_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            let p = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
            for token in [format!("{h}.{p}."), format!("{h}.{p}.c2ln")] {
                assert!(check(&token).is_err(), "{alg}");
            }
        }
    }

    #[test]
    fn algorithms_outside_the_allow_list_are_refused() {
        let t = sign(r#"{"alg":"HS256"}"#, "{}");
        assert_eq!(
            verify(&t, &keys(), &[Algorithm::RS256], 8192).unwrap_err(),
            JwtError::Algorithm
        );
        let t = sign(r#"{"alg":"hs256"}"#, "{}");
        assert_eq!(check(&t).unwrap_err(), JwtError::Algorithm);
    }

    #[test]
    fn precomputed_hmac_agrees_with_jsonwebtoken() {
        // Every HMAC algorithm, a key bound to one and a key of the family.
        let secret = [7u8; 64];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let msg = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg:?}"}}"#)),
                URL_SAFE_NO_PAD.encode("{}")
            );
            let key = jsonwebtoken::EncodingKey::from_secret(&secret);
            let sig = super::sign(msg.as_bytes(), &key, alg).unwrap();
            let token = format!("{msg}.{sig}");
            for k in [
                JwtKey::hmac(alg, &secret).unwrap(),
                JwtKey::from_jwk(
                    &serde_json::from_value(serde_json::json!({
                        "kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)
                    }))
                    .unwrap(),
                )
                .unwrap(),
            ] {
                assert!(k.hmac_key(alg).is_some());
                let keys = KeySet::single(k);
                assert!(verify(&token, &keys, &[alg], 8192).is_ok(), "{alg:?}");
                // A truncated, extended or flipped tag fails.
                let (m, s) = token.rsplit_once('.').unwrap();
                for bad in [
                    &s[..s.len() - 2],
                    &format!("{s}AA")[..],
                    &format!("A{}", &s[1..])[..],
                ] {
                    if bad == s {
                        continue;
                    }
                    assert_eq!(
                        verify(&format!("{m}.{bad}"), &keys, &[alg], 8192).unwrap_err(),
                        JwtError::Signature
                    );
                }
                // An oversized tag does not overflow the buffer.
                let huge = "A".repeat(400);
                assert_eq!(
                    verify(&format!("{m}.{huge}"), &keys, &[alg], 8192).unwrap_err(),
                    JwtError::Signature
                );
            }
        }
        // A key bound to HS256 has no HS512 key.
        assert!(JwtKey::hmac(Algorithm::HS256, &secret)
            .unwrap()
            .hmac_key(Algorithm::HS512)
            .is_none());
    }

    #[test]
    fn crit_is_refused() {
        for crit in [r#"["exp"]"#, "[]", "null", "1"] {
            let t = sign(&format!(r#"{{"alg":"HS256","crit":{crit},"exp":1}}"#), "{}");
            assert_eq!(check(&t).unwrap_err(), JwtError::Critical, "{crit}");
        }
    }

    #[test]
    fn a_header_must_be_a_json_object() {
        // Validly signed, but the header is an array: a derived deserializer
        // would read it by position.
        for header in [
            r#"["HS256"]"#,
            r#"["HS256","kid","JWT"]"#,
            r#" ["HS256"]"#,
            "\"HS256\"",
        ] {
            let t = sign(header, r#"{"sub":"1"}"#);
            assert_eq!(check(&t).unwrap_err(), JwtError::Malformed, "{header}");
            assert!(!is_well_formed(&t), "{header}");
        }
        let t = sign(" \r\n{\"alg\":\"HS256\"}", r#"{"sub":"1"}"#);
        assert!(check(&t).is_ok());
        assert!(is_well_formed(&t));
    }

    #[test]
    fn headers_of_any_size_get_the_same_checks() {
        // Around and past the stack buffer (512 base64url characters, 384
        // bytes of JSON).
        let base = r#"{"alg":"HS256","p":""}"#.len();
        for n in (base..base + 8).chain(378..392).chain([600, 2000]) {
            let pad = "x".repeat(n - base);
            let t = sign(
                &format!(r#"{{"alg":"HS256","p":"{pad}"}}"#),
                r#"{"sub":"1"}"#,
            );
            assert_eq!(check(&t).unwrap().alg, Algorithm::HS256, "{n}");
            let t = sign(
                &format!(r#"{{"alg":"none","p":"{pad}"}}"#),
                r#"{"sub":"1"}"#,
            );
            assert_eq!(check(&t).unwrap_err(), JwtError::Algorithm, "{n}");
            let t = sign(&format!(r#"["HS256","{pad}"]"#), r#"{"sub":"1"}"#);
            assert_eq!(check(&t).unwrap_err(), JwtError::Malformed, "{n}");
            let t = sign(
                &format!(r#"{{"alg":"HS256","p":"{pad}"}}"#),
                r#"{"sub":"1"}"#,
            );
            let (h, rest) = t.split_once('.').unwrap();
            assert_eq!(
                check(&format!("{h}!.{rest}")).unwrap_err(),
                JwtError::Malformed,
                "{n}"
            );
        }
    }

    #[test]
    fn payloads_of_any_size_are_decoded_whole() {
        // Around and past the stack buffer (2 048 base64url characters,
        // 1 536 bytes of JSON).
        let base = r#"{"p":""}"#.len();
        for n in (base..base + 4).chain(1530..1542).chain([4000]) {
            let payload = format!(r#"{{"p":"{}"}}"#, "y".repeat(n - base));
            let t = sign(r#"{"alg":"HS256"}"#, &payload);
            assert_eq!(check(&t).unwrap().payload, payload.as_bytes(), "{n}");
            let (h, rest) = t.split_once('.').unwrap();
            let (p, sig) = rest.split_once('.').unwrap();
            assert_eq!(
                check(&format!("{h}.{p}*.{sig}")).unwrap_err(),
                JwtError::Signature,
                "{n}: the signature is checked first"
            );
        }
    }

    #[test]
    fn well_formed_tokens() {
        let t = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"1"}"#);
        assert!(is_well_formed(&t));
        for bad in [
            "garbage",
            "a.b",
            "a.b.",
            "e30.e30.c2ln",
            "x.y.z.w",
            "!!.e30.c2ln",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
        let (m, _) = t.rsplit_once('.').unwrap();
        assert!(!is_well_formed(&format!("{m}.a+b/")));
    }

    #[test]
    fn duplicate_header_members_are_malformed() {
        let t = sign(r#"{"alg":"HS256","alg":"none"}"#, "{}");
        assert_eq!(check(&t).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let t = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"user"}"#);
        let (h, rest) = t.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#));
        assert_eq!(check(&forged).unwrap_err(), JwtError::Signature);
        let mut sig = s.to_owned();
        sig.replace_range(0..1, if s.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            check(&format!("{h}.{}.{sig}", rest.split_once('.').unwrap().0)).unwrap_err(),
            JwtError::Signature
        );
    }
}
