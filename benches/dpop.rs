//! A DPoP-bound ES256 access token with its ES256 proof through
//! `AuthLayer<DpopBound<JwtAuthenticator>>`, against the same ES256 token
//! as a plain bearer token through `AuthLayer<JwtAuthenticator>`, measured
//! in the same run.
//!
//! ```sh
//! cargo bench --bench dpop --features dpop -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `baseline_bearer_es256`: one ES256 signature check (the token), claims,
//!   layer.
//! * `layer_dpop_es256`: the token, then the proof: header and JWK parse, a
//!   second ES256 check, claims, `htu` normalization, RFC 7638 thumbprint,
//!   replay store insert. Each request has a fresh proof, signed outside the
//!   timed part. Expected near 2×: two signature checks instead of one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::{service_fn, Service, ServiceExt};
use tower_auth::dpop::{DpopBound, MemoryReplayStore};
use tower_auth::jwt::{Algorithm, JwtKey, KeySet, TokenIssuer};
use tower_auth::AuthLayer;
use tower_layer::Layer;

/// Polls a future that is ready without waiting (all of this bench's).
fn now_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A P-256 key: its signing key and public JWK.
fn p256() -> (EncodingKey, Value) {
    let key = KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    (EncodingKey::from_ec_der(&key.serialize_der()), jwk)
}

fn jkt(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
        jwk["x"], jwk["y"]
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn dpop(c: &mut Criterion) {
    let (server_key, server_jwk) = p256();
    let verify_key = JwtKey::from_jwk(&serde_json::from_value(server_jwk).unwrap()).unwrap();
    let issuer = TokenIssuer::new(Algorithm::ES256, server_key, KeySet::single(verify_key))
        .unwrap()
        .build()
        .unwrap();
    let (client_key, client_jwk) = p256();
    let token = issuer
        .issue("alice", &json!({"cnf": {"jkt": jkt(&client_jwk)}}))
        .unwrap()
        .access_token;
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let proof_header: Header =
        serde_json::from_value(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client_jwk}))
            .unwrap();
    let mut counter = 0u64;
    let mut proof = move || {
        counter += 1;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "jti": counter.to_string(), "htm": "GET",
            "htu": "https://api.example.com/r", "iat": iat, "ath": ath,
        });
        jsonwebtoken::encode(&proof_header, &claims, &client_key).unwrap()
    };

    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut bearer = AuthLayer::new(issuer.authenticator::<Value>()).layer(inner);
    let mut bound = AuthLayer::new(
        DpopBound::new(issuer.authenticator::<Value>())
            .replay_store(MemoryReplayStore::new(10_000_000)),
    )
    .layer(inner);
    let request = |scheme: &str, proof: Option<String>| {
        let mut req = Request::get("/r")
            .header("host", "api.example.com")
            .header(header::AUTHORIZATION, format!("{scheme} {token}"));
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        req.body(()).unwrap()
    };

    let mut g = c.benchmark_group("dpop");
    g.bench_function("baseline_bearer_es256", |b| {
        b.iter_batched(
            || request("Bearer", None),
            |req| {
                let svc = now_ready(bearer.ready()).unwrap();
                let res = now_ready(svc.call(req)).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("layer_dpop_es256", |b| {
        b.iter_batched(
            || request("DPoP", Some(proof())),
            |req| {
                let svc = now_ready(bound.ready()).unwrap();
                let res = now_ready(svc.call(req)).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, dpop);
criterion_main!(benches);
