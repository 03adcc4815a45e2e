//! The cost of token introspection on the hot path, in one run so the
//! ratio is meaningful. Full `AuthLayer` requests:
//!
//! * `jwt_hs256`: a JWT verified with HS256 on every request, no cache
//!   (the baseline: the cheapest self-contained token);
//! * `introspection_cache_hit`: an opaque token answered from the
//!   introspection cache (the endpoint, a local server, was asked once
//!   when priming): an HMAC-SHA256 fingerprint and a map lookup.
//!
//! `cargo bench --bench introspection --features oidc -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::{service_fn, Layer, Service};
use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet};
use tower_auth::oidc::Introspection;
use tower_auth::AuthLayer;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Polls a future that completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited"),
    }
}

/// Serves an introspection endpoint on 127.0.0.1 that finds every token
/// active; returns its URL.
async fn serve(answer: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], answer)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({
        "sub": "user-42", "exp": exp, "scope": "read write", "roles": ["user"]
    });
    let mut answer = claims.clone();
    answer["active"] = true.into();
    let introspection = rt.block_on(async {
        let url = serve(answer.to_string()).await;
        Introspection::builder(url, "rs", "secret")
            .allow_loopback_http(true)
            .build()
            .unwrap()
    });
    let jwt = JwtAuthenticator::<serde_json::Value>::new(KeySet::single(
        JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
    ));
    let jwt_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    // An opaque token of a realistic length (32 random bytes, base64url).
    let opaque = "3q2-7wAAAAC6vsrwDQ3wDd4AAAC6vsrwDQ3wDd4AAAA";
    let header_of = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let request = |h: &HeaderValue| {
        let mut r = Request::new(());
        r.headers_mut().insert(header::AUTHORIZATION, h.clone());
        r
    };
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut jwt_layer = AuthLayer::new(jwt).layer(inner);
    let mut introspection_layer = AuthLayer::new(introspection).layer(inner);
    let jwt_header = header_of(&jwt_token);
    let opaque_header = header_of(opaque);

    let _guard = rt.enter();
    // Primes the cache (one real call), checks the setup.
    let primed = rt
        .block_on(introspection_layer.call(request(&opaque_header)))
        .unwrap();
    assert!(primed.status().is_success());
    assert!(now(jwt_layer.call(request(&jwt_header)))
        .unwrap()
        .status()
        .is_success());

    let mut g = c.benchmark_group("introspection");
    g.bench_function("jwt_hs256", |b| {
        b.iter_batched(
            || request(&jwt_header),
            |req| now(jwt_layer.call(req)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("introspection_cache_hit", |b| {
        b.iter_batched(
            || request(&opaque_header),
            |req| now(introspection_layer.call(req)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
