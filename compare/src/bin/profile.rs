//! A driver for instruction counts: runs one scenario `n` times, so that
//! `valgrind --tool=callgrind` (whose counts do not depend on the load of
//! the machine) measures it. Only the loop is counted (after one warm-up
//! request); instructions per request are the count over `n`, and
//! `profile.sh` does the arithmetic.
//!
//! ```sh
//! cargo build --release --bin profile
//! valgrind --tool=callgrind --toggle-collect='profile::measured*' \
//!     ../target/release/profile bearer-ours 20000
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use http::{header, HeaderValue, Request, Response};
use tower::{Layer, Service};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::{AuthLayer, Identity, Scheme};
use tower_auth_compare as common;

fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the profiled future waited"),
    }
}

/// One warm-up request (lazy initialisations such as the clock's
/// calibration happen there), then `n` counted ones in [`measured`].
fn drive<S, B>(mut svc: S, n: usize, request: impl Fn(usize) -> Request<Body>)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let res = now(svc.call(request(usize::MAX / 2))).expect("infallible");
    black_box(res.status());
    measured(&mut svc, n, &request);
}

/// The loop callgrind counts: `--toggle-collect='profile::measured*'`.
#[inline(never)]
fn measured<S, B>(svc: &mut S, n: usize, request: &impl Fn(usize) -> Request<Body>)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..n {
        let res = now(svc.call(request(i))).expect("infallible");
        black_box(res.status());
    }
}

/// `svc` after one request from each of `peers`: every key is known.
fn warmed<S, B>(mut svc: S, peers: &[std::net::SocketAddr]) -> S
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for peer in peers {
        black_box(now(svc.call(common::request_from(*peer))).expect("infallible"));
    }
    svc
}

/// A request of the loopback stack test: `GET /` with the bearer JWT, from
/// `peer` (as `into_make_service_with_connect_info` delivers it).
fn stack_request(peer: std::net::SocketAddr, authorization: &HeaderValue) -> Request<Body> {
    let mut req = common::request_from(peer);
    req.headers_mut()
        .insert(header::AUTHORIZATION, authorization.clone());
    req
}

/// Raw `jsonwebtoken::decode` (HS256, issuer and audience checked) of the
/// request's bearer token as a service: the floor of the JWT contenders.
fn raw_decode() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<Response<Body>, std::convert::Infallible>>,
> {
    let key = jsonwebtoken::DecodingKey::from_secret(common::SECRET);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[common::ISSUER]);
    validation.set_audience(&[common::AUDIENCE]);
    tower::service_fn(move |req: Request<Body>| {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("a bearer token");
        let data = jsonwebtoken::decode::<common::Claims>(token, &key, &validation)
            .expect("a valid token");
        black_box(data);
        std::future::ready(Ok(Response::new(Body::empty())))
    })
}

fn with(name: header::HeaderName, value: &HeaderValue) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    req.headers_mut().insert(name, value.clone());
    req
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let valid = common::bearer(common::STATIC_TOKEN);
    let auth = header::AUTHORIZATION;
    let x_api_key = header::HeaderName::from_static("x-api-key");
    let store = MemoryApiKeyStore::new();
    let generated = store
        .generate("tak", common::Service, Identity::new("svc", Scheme::ApiKey))
        .expect("random");
    let generated = HeaderValue::from_str(generated.expose()).expect("ASCII");
    let opaque = HeaderValue::from_static("an-opaque-key-of-some-length-0123456789");
    store.insert_key(
        opaque.to_str().expect("ASCII"),
        common::Service,
        Identity::new("svc2", Scheme::ApiKey),
    );
    let api_key = AuthLayer::new(ApiKeyAuthenticator::new(store));
    let one_peer = common::peers(1)[0];
    let peers = common::peers(100_000);
    let jwt = common::bearer(&common::token());

    match scenario.as_str() {
        "inner" => drive(common::inner(), n, |_| with(auth.clone(), &valid)),
        "bearer-tower-http" => drive(
            common::tower_http_bearer().layer(common::inner()),
            n,
            |_| with(auth.clone(), &valid),
        ),
        "bearer-tower-http-equal" => drive(
            common::tower_http_equal_work().layer(common::inner()),
            n,
            |_| with(auth.clone(), &valid),
        ),
        "401-tower-http-equal" => drive(
            common::tower_http_equal_work().layer(common::inner()),
            n,
            |_| Request::new(Body::empty()),
        ),
        "bearer-ours" => drive(
            AuthLayer::new(common::our_static_bearer()).layer(common::inner()),
            n,
            |_| with(auth.clone(), &valid),
        ),
        "401-tower-http" => drive(
            common::tower_http_bearer().layer(common::inner()),
            n,
            |_| Request::new(Body::empty()),
        ),
        "401-ours" => drive(
            AuthLayer::new(common::our_static_bearer()).layer(common::inner()),
            n,
            |_| Request::new(Body::empty()),
        ),
        "api-key-generated" => drive(api_key.layer(common::inner()), n, |_| {
            with(x_api_key.clone(), &generated)
        }),
        "api-key-opaque" => drive(api_key.layer(common::inner()), n, |_| {
            with(x_api_key.clone(), &opaque)
        }),
        "rate-inner" => drive(common::inner(), n, |_| common::request_from(one_peer)),
        "rate-ours-1" => drive(common::our_rate_limit(2).layer(common::inner()), n, |_| {
            common::request_from(one_peer)
        }),
        "rate-governor-1" => drive(common::governor_layer().layer(common::inner()), n, |_| {
            common::request_from(one_peer)
        }),
        "rate-ours-100k" => drive(
            warmed(
                common::our_rate_limit(200_000).layer(common::inner()),
                &peers,
            ),
            n,
            |i| common::request_from(peers[i % peers.len()]),
        ),
        "rate-governor-100k" => drive(
            warmed(common::governor_layer().layer(common::inner()), &peers),
            n,
            |i| common::request_from(peers[i % peers.len()]),
        ),
        "stack-bare" => drive(common::bare_router(), n, |_| stack_request(one_peer, &jwt)),
        "stack-ours" => drive(common::our_router(false), n, |_| {
            stack_request(one_peer, &jwt)
        }),
        "stack-ours-cached" => drive(common::our_router(true), n, |_| {
            stack_request(one_peer, &jwt)
        }),
        "stack-ours-cached-arc" => drive(common::our_router_arc_cached(), n, |_| {
            stack_request(one_peer, &jwt)
        }),
        "jwt-raw-decode" => drive(raw_decode(), n, |_| stack_request(one_peer, &jwt)),
        other => {
            eprintln!("unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}
