//! The cost of a remote key set on the hot path, all in one run so the
//! ratios are meaningful. One ES256 key, the same token:
//!
//! * `static_keyset`: a full `AuthLayer` request with a static `KeySet`
//!   (the baseline);
//! * `remote_jwks`: the same through a `RemoteJwks` fetched from a local
//!   server (target: at most 5 % over the baseline: the refresh is off the
//!   hot path, a lookup is one atomic load);
//! * `static_keyset_cache_hit` / `remote_jwks_cache_hit`: the same with the
//!   verified-token cache, token already cached (the remote one still
//!   checks the keys' staleness);
//! * `remote_unknown_kid`: a token with an unknown `kid` while the
//!   unknown-kid refresh interval blocks fetches: the cost of a flood.
//!
//! And token introspection (group `introspection`), full `AuthLayer`
//! requests too:
//!
//! * `jwt_hs256`: a JWT verified with HS256 on every request, no cache
//!   (the baseline: the cheapest self-contained token);
//! * `introspection_cache_hit`: an opaque token answered from the
//!   introspection cache (the local endpoint was asked once, when
//!   priming): an HMAC-SHA256 fingerprint and a map lookup.
//!
//! `issuers/ES256` compares, in one run, a one-issuer authenticator
//! (`one_issuer`, the baseline: `new(keys).issuers([ISS])`) with
//! `from_issuers` over two issuers, the token's being the second
//! (`two_issuers`: static key sets; `two_issuers_remote`: the second one a
//! `RemoteJwks`): the cost of routing by the unverified `iss`.
//!
//! `cargo bench --bench oidc --features oidc -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::{service_fn, Layer, Service};
use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet, RemoteJwks};
use tower_auth::oidc::Introspection;
use tower_auth::AuthLayer;

const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec256_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/keys/ec256_public.pem");
const ISS: &str = "https://idp.example";

/// Polls a future that completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited"),
    }
}

/// Serves `app` on 127.0.0.1 and returns the URL of `path`.
async fn serve(app: axum::Router, path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Serves the JWK Set `jwks` at `/jwks` and returns its URL.
async fn serve_jwks(jwks: String) -> String {
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { jwks }));
    serve(app, "/jwks").await
}

/// The benches' runtime: one worker thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A provider publishing the ES256 key of `EC_PRIVATE` as `k1`, and a
/// `RemoteJwks` on it whose unknown-kid refresh is spent for an hour after
/// its first use.
fn es256_provider(rt: &tokio::runtime::Runtime) -> RemoteJwks {
    let enc = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = "k1".into();
    rt.block_on(async {
        let url = serve_jwks(serde_json::json!({ "keys": [jwk] }).to_string()).await;
        RemoteJwks::builder(url)
            .allow_loopback_http(true)
            .unknown_kid_interval(Duration::from_secs(3600))
            .start()
            .await
            .unwrap()
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let enc = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let remote = es256_provider(&rt);
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({"sub": "user-42", "iss": ISS, "exp": exp, "roles": ["user"]});
    let token_for = |kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, &enc).unwrap()
    };
    let static_keys = KeySet::single(
        JwtKey::ec_pem(Algorithm::ES256, EC_PUBLIC)
            .unwrap()
            .with_kid("k1"),
    );
    let static_auth = JwtAuthenticator::<serde_json::Value>::new(static_keys)
        .issuers([ISS])
        .build()
        .unwrap();
    let remote_auth = JwtAuthenticator::<serde_json::Value>::from_source(remote)
        .issuers([ISS])
        .build()
        .unwrap();
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let cache =
        |a: &JwtAuthenticator<serde_json::Value>| a.clone().cache(10_000, Duration::from_secs(300));
    let layers = [
        (
            "static_keyset",
            AuthLayer::new(static_auth.clone()).layer(inner),
        ),
        (
            "remote_jwks",
            AuthLayer::new(remote_auth.clone()).layer(inner),
        ),
        (
            "static_keyset_cache_hit",
            AuthLayer::new(cache(&static_auth)).layer(inner),
        ),
        (
            "remote_jwks_cache_hit",
            AuthLayer::new(cache(&remote_auth)).layer(inner),
        ),
    ];
    let header_of = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let good = header_of(&token_for("k1"));
    let unknown = header_of(&token_for("unknown"));
    let request = |h: &HeaderValue| {
        let mut r = Request::new(());
        r.headers_mut().insert(header::AUTHORIZATION, h.clone());
        r
    };
    // Use up the unknown-kid refresh so the flood case is refused at once.
    let _guard = rt.enter();
    rt.block_on(layers[1].1.clone().call(request(&unknown)))
        .unwrap();

    let mut g = c.benchmark_group("oidc/ES256");
    for (name, layer) in &layers {
        // Primes the caches, checks the setup.
        assert!(now(layer.clone().call(request(&good)))
            .unwrap()
            .status()
            .is_success());
        g.bench_function(*name, |b| {
            let mut svc = layer.clone();
            b.iter_batched(
                || request(&good),
                |req| now(svc.call(req)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("remote_unknown_kid", |b| {
        let mut svc = layers[1].1.clone();
        b.iter_batched(
            || request(&unknown),
            |req| {
                let res = now(svc.call(req)).unwrap();
                assert_eq!(res.status(), 401);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_introspection(c: &mut Criterion) {
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    let rt = runtime();
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({
        "sub": "user-42", "exp": exp, "scope": "read write", "roles": ["user"]
    });
    let mut answer = claims.clone();
    answer["active"] = true.into();
    let introspection = rt.block_on(async {
        let answer = axum::Json(answer);
        let endpoint = axum::routing::post(move || async move { answer });
        let url = serve(
            axum::Router::new().route("/introspect", endpoint),
            "/introspect",
        )
        .await;
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
    // An opaque token of a realistic length (32 bytes, base64url).
    let opaque = "3q2-7wAAAAC6vsrwDQ3wDd4AAAC6vsrwDQ3wDd4AAAA";
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let request = |token: &str| {
        let mut r = Request::new(());
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        r.headers_mut().insert(header::AUTHORIZATION, value);
        r
    };
    let mut jwt_layer = AuthLayer::new(jwt).layer(inner);
    let mut introspection_layer = AuthLayer::new(introspection).layer(inner);
    let _guard = rt.enter();
    // Primes the cache (one real call), checks the setup.
    let primed = rt
        .block_on(introspection_layer.call(request(opaque)))
        .unwrap();
    assert!(primed.status().is_success());
    assert!(now(jwt_layer.call(request(&jwt_token)))
        .unwrap()
        .status()
        .is_success());

    let mut g = c.benchmark_group("introspection");
    g.bench_function("jwt_hs256", |b| {
        b.iter_batched(
            || request(&jwt_token),
            |req| now(jwt_layer.call(req)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("introspection_cache_hit", |b| {
        b.iter_batched(
            || request(opaque),
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
    targets = bench, bench_introspection, issuers
}
criterion_main!(benches);

/// One issuer vs two (see the module docs).
fn issuers(c: &mut Criterion) {
    use tower_auth::jwt::Issuers;
    let rt = runtime();
    let enc = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let remote = es256_provider(&rt);
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = serde_json::json!({"sub": "user-42", "iss": ISS, "exp": exp, "roles": ["user"]});
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&h, &claims, &enc).unwrap();
    let keys = || {
        KeySet::single(
            JwtKey::ec_pem(Algorithm::ES256, EC_PUBLIC)
                .unwrap()
                .with_kid("k1"),
        )
    };
    let other = KeySet::single(JwtKey::hmac(Algorithm::HS256, &[7; 32]).unwrap());
    let one = JwtAuthenticator::<serde_json::Value>::new(keys())
        .issuers([ISS])
        .build()
        .unwrap();
    let two = JwtAuthenticator::<serde_json::Value>::from_issuers(
        Issuers::new()
            .keys("https://other.example", other.clone())
            .keys(ISS, keys()),
    )
    .build()
    .unwrap();
    let two_remote = JwtAuthenticator::<serde_json::Value>::from_issuers(
        Issuers::new()
            .keys("https://other.example", other)
            .source(ISS, remote),
    )
    .build()
    .unwrap();
    // HS256: the cheapest signature, so the routing cost shows most.
    let secret = [9u8; 32];
    let hs_key = || KeySet::single(JwtKey::hmac(Algorithm::HS256, &secret).unwrap());
    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let hs_one = JwtAuthenticator::<serde_json::Value>::new(hs_key())
        .issuers([ISS])
        .build()
        .unwrap();
    let hs_two = JwtAuthenticator::<serde_json::Value>::from_issuers(
        Issuers::new()
            .keys("https://other.example", keys())
            .keys(ISS, hs_key()),
    )
    .build()
    .unwrap();
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let _guard = rt.enter();
    for (group, token, cases) in [
        (
            "issuers/ES256",
            token,
            vec![
                ("one_issuer", one),
                ("two_issuers", two),
                ("two_issuers_remote", two_remote),
            ],
        ),
        (
            "issuers/HS256",
            hs_token,
            vec![("one_issuer", hs_one), ("two_issuers", hs_two)],
        ),
    ] {
        let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let mut g = c.benchmark_group(group);
        for (name, auth) in cases {
            let layer = AuthLayer::new(auth).layer(inner);
            let request = || {
                let mut r = Request::new(());
                r.headers_mut()
                    .insert(header::AUTHORIZATION, header.clone());
                r
            };
            assert!(now(layer.clone().call(request()))
                .unwrap()
                .status()
                .is_success());
            g.bench_function(name, |b| {
                let mut svc = layer.clone();
                b.iter_batched(
                    request,
                    |req| now(svc.call(req)).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}
