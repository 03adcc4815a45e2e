//! Our layers and the peers doing the same work, in one criterion run, so
//! that every ratio compares figures measured side by side.
//!
//! ```sh
//! ./run.sh            # or: cargo bench --bench peers -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Every group has a baseline measured in the same run; `README.md` lists
//! what each contender checks. Requests are built outside the timed part
//! (`iter_batched`), responses dropped outside it too; futures are polled
//! once with a no-op waker: none of them waits.

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use http::{header, HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tower::{Layer, Service};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::{AuthLayer, Identity, Scheme};
use tower_auth_compare as common;

/// Polls a future that completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited"),
    }
}

/// Benches one request built by `request` through `svc`, after checking
/// that it gets `status`.
fn run<S, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    request: impl Fn() -> Request<Body> + Copy,
    status: StatusCode,
) where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let res = now(svc.call(request())).expect("infallible");
    assert_eq!(res.status(), status, "{name}");
    g.bench_function(name, |b| {
        b.iter_batched(
            request,
            |req| now(svc.call(req)).expect("infallible"),
            BatchSize::SmallInput,
        )
    });
}

fn with_header(name: header::HeaderName, value: HeaderValue) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    req.headers_mut().insert(name, value);
    req
}

fn bearer_and_refusals(c: &mut Criterion) {
    let valid = || with_header(header::AUTHORIZATION, common::bearer(common::STATIC_TOKEN));
    let none = || Request::new(Body::empty());

    let mut g = c.benchmark_group("bearer, valid static token");
    run(
        &mut g,
        "inner service alone",
        common::inner(),
        valid,
        StatusCode::OK,
    );
    run(
        &mut g,
        "tower-http ValidateRequestHeaderLayer::bearer",
        common::tower_http_bearer().layer(common::inner()),
        valid,
        StatusCode::OK,
    );
    run(
        &mut g,
        "tower-http custom validator doing our work",
        common::tower_http_equal_work().layer(common::inner()),
        valid,
        StatusCode::OK,
    );
    run(
        &mut g,
        "tower-auth AuthLayer<BearerAuthenticator>",
        AuthLayer::new(common::our_static_bearer()).layer(common::inner()),
        valid,
        StatusCode::OK,
    );
    g.finish();

    let mut g = c.benchmark_group("401 without credentials");
    run(
        &mut g,
        "tower-http ValidateRequestHeaderLayer::bearer",
        common::tower_http_bearer().layer(common::inner()),
        none,
        StatusCode::UNAUTHORIZED,
    );
    run(
        &mut g,
        "tower-http custom validator doing our work",
        common::tower_http_equal_work().layer(common::inner()),
        none,
        StatusCode::UNAUTHORIZED,
    );
    run(
        &mut g,
        "tower-auth AuthLayer<BearerAuthenticator>",
        AuthLayer::new(common::our_static_bearer()).layer(common::inner()),
        none,
        StatusCode::UNAUTHORIZED,
    );
    run(
        &mut g,
        "tower-auth AuthLayer<JwtAuthenticator>",
        AuthLayer::new(common::our_jwt()).layer(common::inner()),
        none,
        StatusCode::UNAUTHORIZED,
    );
    let store = MemoryApiKeyStore::new();
    let api_key = ApiKeyAuthenticator::new(store.clone());
    run(
        &mut g,
        "tower-auth AuthLayer<ApiKeyAuthenticator>",
        AuthLayer::new(api_key.clone()).layer(common::inner()),
        none,
        StatusCode::UNAUTHORIZED,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let jwt_authorizer = rt.block_on(common::jwt_authorizer_layer(false));
    // Its service answers with axum 0.7 responses: an axum 0.7 inner one.
    let inner07 = tower::service_fn(|_req: Request<Body>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
            axum07::body::Body::empty(),
        )))
    });
    run(
        &mut g,
        "jwt-authorizer AuthorizationLayer",
        jwt_authorizer.layer(inner07),
        none,
        StatusCode::UNAUTHORIZED,
    );
    g.finish();

    let mut g = c.benchmark_group("api key, valid");
    let generated = store
        .generate("tak", common::Service, Identity::new("svc", Scheme::ApiKey))
        .expect("random");
    let opaque = "an-opaque-key-of-some-length-0123456789";
    store.insert_key(
        opaque,
        common::Service,
        Identity::new("svc2", Scheme::ApiKey),
    );
    let generated = HeaderValue::from_str(generated.expose()).expect("ASCII");
    let opaque = HeaderValue::from_static(opaque);
    let layered = AuthLayer::new(api_key).layer(common::inner());
    run(
        &mut g,
        "inner service alone",
        common::inner(),
        none,
        StatusCode::OK,
    );
    let x_api_key = header::HeaderName::from_static("x-api-key");
    {
        let (h, v) = (x_api_key.clone(), generated.clone());
        let request = move || with_header(h.clone(), v.clone());
        bench_owned(
            &mut g,
            "tower-auth generated key (tak_…)",
            layered.clone(),
            request,
        );
    }
    {
        let (h, v) = (x_api_key.clone(), opaque.clone());
        let request = move || with_header(h.clone(), v.clone());
        bench_owned(&mut g, "tower-auth opaque key", layered.clone(), request);
    }
    g.finish();
}

/// [`run`] for a request closure that owns its values.
fn bench_owned<S, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    request: impl Fn() -> Request<Body> + Clone,
) where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let res = now(svc.call(request())).expect("infallible");
    assert_eq!(res.status(), StatusCode::OK, "{name}");
    g.bench_function(name, |b| {
        b.iter_batched(
            request.clone(),
            |req| now(svc.call(req)).expect("infallible"),
            BatchSize::SmallInput,
        )
    });
}

fn rate_limits(c: &mut Criterion) {
    for n in [1u32, 100_000] {
        let peers = Arc::new(common::peers(n));
        let mut g = c.benchmark_group(format!("rate limit per peer IP, {n} keys"));
        let next = {
            let peers = Arc::clone(&peers);
            let i = std::cell::Cell::new(0usize);
            move || {
                let peer: SocketAddr = peers[i.get()];
                i.set((i.get() + 1) % peers.len());
                common::request_from(peer)
            }
        };
        let ours = common::our_rate_limit(2 * n as usize).layer(common::inner());
        let governor = common::governor_layer().layer(common::inner());
        // Every key seen once, as in a warm server.
        for _ in 0..n {
            let _ = now(ours.clone().call(next()));
            let _ = now(governor.clone().call(next()));
        }
        rate_run(&mut g, "inner service alone", common::inner(), &next);
        rate_run(&mut g, "tower_governor GovernorLayer", governor, &next);
        rate_run(&mut g, "tower-auth RateLimitLayer", ours, &next);
        g.finish();
    }
}

fn rate_run<S, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    next: &impl Fn() -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    assert_eq!(now(svc.call(next())).expect("ok").status(), StatusCode::OK);
    g.bench_function(name, |b| {
        b.iter_batched(
            next,
            |req| now(svc.call(req)).expect("infallible"),
            BatchSize::SmallInput,
        )
    });
}

/// Reads the claims by reference, as the peers' handlers do.
async fn ours_handler(req: Request<Body>) -> &'static str {
    match req.extensions().get::<common::Claims>() {
        Some(_) => "hello",
        None => "no claims",
    }
}

async fn axum_jwt_auth_handler(claims: axum_jwt_auth::Claims<common::Claims>) -> String {
    claims.claims.sub
}

fn jwt(c: &mut Criterion) {
    let token = common::token();
    let authorization = common::bearer(&token);
    let request = move || {
        let mut req = Request::get("/").body(Body::empty()).expect("request");
        req.headers_mut()
            .insert(header::AUTHORIZATION, authorization.clone());
        req
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("JWT HS256 through an axum Router");

    let key = DecodingKey::from_secret(common::SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[common::ISSUER]);
    validation.set_audience(&[common::AUDIENCE]);
    g.bench_function("raw jsonwebtoken::decode (baseline)", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<common::Claims>(black_box(&token), &key, &validation)
                .expect("valid")
        })
    });
    bench_owned(
        &mut g,
        "axum Router, no authentication",
        Router::new().route("/", get(common::hello)),
        request.clone(),
    );
    bench_owned(
        &mut g,
        "tower-auth AuthLayer<JwtAuthenticator>",
        Router::new()
            .route("/", get(ours_handler))
            .layer(AuthLayer::new(common::our_jwt())),
        request.clone(),
    );
    bench_owned(
        &mut g,
        "tower-auth, verified-token cache",
        Router::new()
            .route("/", get(ours_handler))
            .layer(AuthLayer::new(
                common::our_jwt().cache(10_000, Duration::from_secs(300)),
            )),
        request.clone(),
    );
    bench_owned(
        &mut g,
        "jwt-authorizer layer (+ axum 0.7 body conversions)",
        common::behind_jwt_authorizer(
            Router::new().route("/", get(common::hello_jwt_authorizer)),
            rt.block_on(common::jwt_authorizer_layer(false)),
        ),
        request.clone(),
    );
    let mut validation = jsonwebtoken10::Validation::new(jsonwebtoken10::Algorithm::HS256);
    validation.set_issuer(&[common::ISSUER]);
    validation.set_audience(&[common::AUDIENCE]);
    let decoder = axum_jwt_auth::LocalDecoder::builder()
        .keys(vec![jsonwebtoken10::DecodingKey::from_secret(
            common::SECRET,
        )])
        .validation(validation)
        .build()
        .expect("axum-jwt-auth decoder");
    let state: axum_jwt_auth::Decoder<common::Claims> = Arc::new(decoder);
    bench_owned(
        &mut g,
        "axum-jwt-auth Claims<Claims> extractor",
        Router::new()
            .route("/", get(axum_jwt_auth_handler))
            .with_state(state),
        request,
    );
    g.finish();
}

/// A request carrying `cookie`.
fn with_cookie(cookie: &HeaderValue) -> Request<Body> {
    with_header(header::COOKIE, cookie.clone())
}

/// The `name=value` part of a response's `Set-Cookie`.
fn cookie_of<B>(res: &Response<B>) -> HeaderValue {
    let set = res.headers()[header::SET_COOKIE].to_str().expect("ASCII");
    HeaderValue::from_str(set.split(';').next().expect("a pair")).expect("ASCII")
}

fn sessions(c: &mut Criterion) {
    use tower_auth::session::{MemorySessionStore, Session, SessionKey, SessionLayer};

    let mut g = c.benchmark_group("session read (signed cookie, memory store, 1 001 sessions)");
    run(
        &mut g,
        "inner service alone",
        common::inner(),
        || Request::new(Body::empty()),
        StatusCode::OK,
    );

    // Ours: a signed cookie (HMAC), the store keyed by the id's SHA-256.
    let layer = SessionLayer::new(
        MemorySessionStore::new(),
        SessionKey::generate().expect("key"),
    );
    let login = layer.layer(tower::service_fn(|req: Request<Body>| {
        let s = req.extensions().get::<Session>().expect("session layer");
        s.insert("user", "alice").expect("serializable");
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
            Body::empty(),
        )))
    }));
    for _ in 0..1_000 {
        let _ = now(login.clone().call(Request::new(Body::empty())));
    }
    let cookie = cookie_of(&now(login.clone().call(Request::new(Body::empty()))).expect("ok"));
    let read = layer.layer(tower::service_fn(|req: Request<Body>| {
        let s = req.extensions().get::<Session>().expect("session layer");
        let user: Option<String> = s.get("user").expect("readable");
        assert_eq!(user.as_deref(), Some("alice"));
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
            Body::empty(),
        )))
    }));
    let ours = cookie.clone();
    bench_owned(&mut g, "tower-auth SessionLayer", read, move || {
        with_cookie(&ours)
    });

    // tower-sessions: a signed cookie too, its memory store.
    let layer = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
        .with_secure(false)
        .with_signed(tower_sessions::cookie::Key::generate());
    let login = layer.layer(tower::service_fn(|req: Request<Body>| {
        let s = req
            .extensions()
            .get::<tower_sessions::Session>()
            .cloned()
            .expect("session layer");
        async move {
            s.insert("user", "alice").await.expect("serializable");
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }
    }));
    for _ in 0..1_000 {
        let _ = now(login.clone().call(Request::new(Body::empty())));
    }
    let cookie = cookie_of(&now(login.clone().call(Request::new(Body::empty()))).expect("ok"));
    let read = layer.layer(tower::service_fn(|req: Request<Body>| {
        let s = req
            .extensions()
            .get::<tower_sessions::Session>()
            .cloned()
            .expect("session layer");
        async move {
            let user: Option<String> = s.get("user").await.expect("readable");
            assert_eq!(user.as_deref(), Some("alice"));
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }
    }));
    bench_owned(
        &mut g,
        "tower-sessions SessionManagerLayer",
        read,
        move || with_cookie(&cookie),
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bearer_and_refusals, rate_limits, jwt, sessions
}
criterion_main!(benches);
