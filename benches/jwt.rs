//! Token validation cost, all in one run so ratios are meaningful:
//!
//! * `raw`: `jsonwebtoken::decode` with the same key and `exp` validation
//!   (the baseline);
//! * `authenticator`: `JwtAuthenticator::verify` (header checks, key
//!   selection, signature, claims validation, typed claims, `Identity`);
//! * `layer`: a full `AuthLayer` request (credentials parsing, verification,
//!   extensions, inner service call) with a trivial inner service;
//! * `layer_cache_hit`: the same request through an authenticator with the
//!   verified-token cache, token already cached;
//! * `layer_cache_hit_arc`: the same with `Arc<Claims>` as the principal (a
//!   hit clones a pointer instead of the claims).
//!
//! `cargo bench --bench jwt --features full -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use tower::{service_fn, Layer, Service};
use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet};
use tower_auth::AuthLayer;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../tests/keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec256_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/keys/ec256_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../tests/keys/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../tests/keys/ed25519_public.pem");

#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    name: String,
    exp: u64,
    iat: u64,
    roles: Vec<String>,
}

fn keys(alg: Algorithm) -> (EncodingKey, DecodingKey, JwtKey) {
    match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
            JwtKey::hmac(alg, SECRET).unwrap(),
        ),
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
            JwtKey::rsa_pem(alg, RSA_PUBLIC).unwrap(),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
            JwtKey::ec_pem(alg, EC_PUBLIC).unwrap(),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
            DecodingKey::from_ed_pem(ED_PUBLIC).unwrap(),
            JwtKey::ed_pem(ED_PUBLIC).unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// Polls a future that completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited"),
    }
}

fn bench(c: &mut Criterion) {
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({
        "sub": "user-42", "name": "Alice Example", "exp": exp, "iat": exp - 3600,
        "roles": ["user", "editor"]
    });
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let (enc, dec, key) = keys(alg);
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &enc).unwrap();
        let authorization = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let validation = Validation::new(alg);
        let auth = JwtAuthenticator::<Claims>::new(KeySet::single(key));
        let cached = auth.clone().cache(10_000, Duration::from_secs(300));
        // The recommended principal with the cache: `Arc<Claims>`, so a hit
        // clones a pointer rather than the claims' strings.
        let cached_arc = JwtAuthenticator::<Arc<Claims>>::new(KeySet::single(keys(alg).2))
            .cache(10_000, Duration::from_secs(300));

        let inner = service_fn(|req: Request<()>| async move {
            debug_assert!(req.extensions().get::<Claims>().is_some());
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let layer = AuthLayer::new(auth.clone()).layer(inner);
        let cached_layer = AuthLayer::new(cached).layer(inner);
        let arc_inner = service_fn(|req: Request<()>| async move {
            debug_assert!(req.extensions().get::<Arc<Claims>>().is_some());
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let cached_arc_layer = AuthLayer::new(cached_arc).layer(arc_inner);
        let request = || {
            let mut r = Request::new(());
            r.headers_mut()
                .insert(header::AUTHORIZATION, authorization.clone());
            r
        };
        // Prime the cache.
        assert!(now(cached_layer.clone().call(request()))
            .unwrap()
            .status()
            .is_success());
        assert!(now(cached_arc_layer.clone().call(request()))
            .unwrap()
            .status()
            .is_success());

        let mut g = c.benchmark_group(format!("jwt/{alg:?}"));
        g.bench_function("raw", |b| {
            b.iter(|| jsonwebtoken::decode::<Claims>(&token, &dec, &validation).unwrap())
        });
        g.bench_function("authenticator", |b| b.iter(|| auth.verify(&token).unwrap()));
        g.bench_function("layer", |b| {
            let mut svc = layer.clone();
            b.iter_batched(
                request,
                |req| now(svc.call(req)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("layer_cache_hit", |b| {
            let mut svc = cached_layer.clone();
            b.iter_batched(
                request,
                |req| now(svc.call(req)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("layer_cache_hit_arc", |b| {
            let mut svc = cached_arc_layer.clone();
            b.iter_batched(
                request,
                |req| now(svc.call(req)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
