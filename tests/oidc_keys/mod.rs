//! Signing keys and tokens of the in-test identity providers of
//! `tests/oidc.rs` and `tests/oidc_issuers.rs`: one RSA and one P-256 key
//! (`tests/keys/`), their public JWKs, tokens signed with them.
#![allow(unreachable_pub)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../keys/ec256_private.pem");

/// The private key of `alg`: P-256 for `ES256`, RSA for the rest.
pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    }
}

/// The public JWK of `alg`'s key, with `kid`.
pub fn jwk(alg: Algorithm, kid: &str) -> Value {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding_key(alg), alg).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

/// A token for `alice` from `iss`, signed with `alg`'s key under `kid`,
/// valid for ten minutes.
pub fn token(alg: Algorithm, kid: &str, iss: &str) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &h,
        &json!({"sub": "alice", "iss": iss, "exp": exp}),
        &encoding_key(alg),
    )
    .unwrap()
}
