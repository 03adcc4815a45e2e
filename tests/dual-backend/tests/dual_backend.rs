//! tower-auth's JWT module in a build where `jsonwebtoken` has both its
//! `aws_lc_rs` and `rust_crypto` backends, so that its process-wide default
//! crypto provider cannot be chosen from the features and panics when used.
//! Issuing, verifying and refusing forged tokens must work (and a forged
//! token must be a `401`, not a panic), whatever the key type.

use std::convert::Infallible;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{Algorithm, EncodingKey, JwtAuthenticator, JwtKey, KeySet, TokenIssuer};
use tower_auth::{AuthLayer, Identity};

const SECRET: &[u8] = b"a dual-backend test secret of at least 32 bytes";
const RSA_PRIVATE: &[u8] = include_bytes!("../../keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../keys/rsa_public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../../keys/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("../../keys/ec256_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../../keys/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../../keys/ed25519_public.pem");

const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

fn make_issuer(alg: Algorithm) -> TokenIssuer {
    let (encoding, key) = match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(SECRET),
            JwtKey::hmac(alg, SECRET).unwrap(),
        ),
        Algorithm::RS256 | Algorithm::PS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKey::rsa_pem(alg, RSA_PUBLIC).unwrap(),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
            JwtKey::ec_pem(alg, EC256_PUBLIC).unwrap(),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
            JwtKey::ed_pem(ED_PUBLIC).unwrap(),
        ),
        other => panic!("not tested: {other:?}"),
    };
    TokenIssuer::new(alg, encoding, KeySet::single(key))
        .unwrap()
        .build()
        .unwrap()
}

async fn call(auth: JwtAuthenticator<Value>, token: &str) -> (StatusCode, Value) {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth))
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<Identity>().unwrap();
            let body = json!({ "subject": id.subject() });
            Ok::<_, Infallible>(Response::new(body.to_string()))
        });
    let req = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// The build really has both backends: jsonwebtoken's own default provider
/// panics here. Without this, the other tests could pass vacuously.
#[test]
fn jsonwebtoken_default_provider_is_ambiguous_in_this_build() {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let header = jsonwebtoken::Header::new(Algorithm::HS256);
    let outcome = std::panic::catch_unwind(|| jsonwebtoken::encode(&header, &json!({}), &key));
    assert!(
        outcome.is_err(),
        "jsonwebtoken chose a default provider: the test build lacks a backend"
    );
}

#[tokio::test]
async fn issues_and_verifies_every_key_type() {
    for alg in ALGORITHMS {
        let issuer = make_issuer(alg);
        let pair = issuer.issue("alice", &json!({"roles": ["admin"]})).unwrap();
        let (status, body) = call(issuer.authenticator(), &pair.access_token).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
        assert_eq!(body["subject"], "alice");
        // Refresh rotation signs and verifies too.
        let grant = issuer.redeem(&pair.refresh_token).await.unwrap();
        let rotated = issuer.issue_rotated(&grant, &()).unwrap();
        let (status, _) = call(issuer.authenticator(), &rotated.access_token).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}");
        // Verification outside a layer.
        let auth = issuer.authenticator::<Value>();
        assert!(auth.verify(&rotated.access_token).is_ok(), "{alg:?}");
        assert!(auth
            .keys()
            .verify_jws(&rotated.access_token, &[alg])
            .is_ok());
    }
}

/// Forged tokens (valid header and claims, a signature of the right size
/// made of zeros) for every asymmetric key type: refused with `401`, never a
/// panic (before the fix, jsonwebtoken's default provider panicked here).
#[tokio::test]
async fn forged_tokens_are_refused_not_panicking() {
    for (alg, sig_len) in [
        (Algorithm::RS256, 256),
        (Algorithm::PS256, 256),
        (Algorithm::ES256, 64),
        (Algorithm::EdDSA, 64),
        (Algorithm::HS256, 32),
    ] {
        let issuer = make_issuer(alg);
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg:?}","typ":"JWT"}}"#));
        let payload = URL_SAFE_NO_PAD.encode(
            json!({"sub": "admin", "exp": 4_000_000_000u64, "jti": "x", "typ": "access"})
                .to_string(),
        );
        let signature = URL_SAFE_NO_PAD.encode(vec![0u8; sig_len]);
        let forged = format!("{header}.{payload}.{signature}");
        let (status, body) = call(issuer.authenticator(), &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{alg:?}: {body}");
        assert_eq!(body["message"], "invalid token signature", "{alg:?}");
        // A plain authenticator on the same key refuses it too.
        let plain = JwtAuthenticator::<Value>::new(issuer.authenticator::<Value>().keys().clone());
        let (status, _) = call(plain, &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{alg:?}");
        // A token of another key type (RSA-signed, presented to an EdDSA
        // verifier...) is refused before any crypto.
        let other = make_issuer(if alg == Algorithm::RS256 {
            Algorithm::EdDSA
        } else {
            Algorithm::RS256
        });
        let token = other.issue("mallory", &()).unwrap().access_token;
        let (status, _) = call(issuer.authenticator(), &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{alg:?}");
    }
}
