//! The cost of `JwtAuthenticator::watch_credentials` per request, in one run
//! so that the ratios are meaningful:
//!
//! * `layer`: an `AuthLayer` request with `TokenIssuer::authenticator()`
//!   (HS256, memory revocation store), the baseline;
//! * `layer_watch`: the same authenticator with `watch_credentials`: each
//!   request also gets a `CredentialWatch` (the token's `exp`, `jti` and
//!   family) in its extensions;
//! * `layer_cache_hit` / `layer_cache_hit_watch`: the same two with the
//!   verified-token cache, token already cached (where the watch's share of
//!   the work is largest);
//! * `layer_again`: the baseline again, last, as the first benchmark of a
//!   run is often slowed down by the machine warming up.
//!
//! `cargo bench --bench lifetime --features jwt -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, HeaderValue, Request, Response};
use serde::Deserialize;
use tower::{service_fn, Layer, Service};
use tower_auth::jwt::{JwtAuthenticator, TokenIssuer};
use tower_auth::lifetime::CredentialWatch;
use tower_auth::AuthLayer;

#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
}

/// Polls a future that completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited"),
    }
}

/// One request through `svc`: whether it passed.
fn ok<S>(svc: &mut S, req: Request<()>) -> bool
where
    S: Service<Request<()>, Response = Response<tower_auth::body::ResponseBody<String>>>,
    S::Error: std::fmt::Debug,
{
    now(svc.call(req)).unwrap().status().is_success()
}

fn bench(c: &mut Criterion) {
    let issuer = TokenIssuer::hs256(b"0123456789abcdef0123456789abcdef")
        .unwrap()
        .build()
        .unwrap();
    let token = issuer.issue("user-42", &()).unwrap().access_token;
    let authorization = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let plain: JwtAuthenticator<Claims> = issuer.authenticator();
    let watched = plain.clone().watch_credentials(Duration::from_secs(30));
    let cache = |a: &JwtAuthenticator<Claims>| a.clone().cache(10_000, Duration::from_secs(300));

    let inner = service_fn(|req: Request<()>| async move {
        debug_assert!(req.extensions().get::<Claims>().is_some());
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let watched_inner = service_fn(|req: Request<()>| async move {
        assert!(req.extensions().get::<CredentialWatch>().is_some());
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let request = || {
        let mut r = Request::new(());
        r.headers_mut()
            .insert(header::AUTHORIZATION, authorization.clone());
        r
    };
    let mut g = c.benchmark_group("lifetime/HS256");
    let mut run = |name: &str, mut svc: Box<dyn FnMut(Request<()>) -> bool>| {
        // Primes the cache, and checks the request passes.
        assert!(svc(request()));
        g.bench_function(name, |b| {
            b.iter_batched(request, &mut svc, BatchSize::SmallInput)
        });
    };
    let mut layer = AuthLayer::new(plain.clone()).layer(inner);
    run("layer", Box::new(move |r| ok(&mut layer, r)));
    let mut layer = AuthLayer::new(watched.clone()).layer(watched_inner);
    run("layer_watch", Box::new(move |r| ok(&mut layer, r)));
    let mut layer = AuthLayer::new(cache(&plain)).layer(inner);
    run("layer_cache_hit", Box::new(move |r| ok(&mut layer, r)));
    let mut layer = AuthLayer::new(cache(&watched)).layer(watched_inner);
    run(
        "layer_cache_hit_watch",
        Box::new(move |r| ok(&mut layer, r)),
    );
    // The baseline again, last: the first benchmark of a run is often
    // slowed down by the machine warming up.
    let mut layer = AuthLayer::new(plain.clone()).layer(inner);
    run("layer_again", Box::new(move |r| ok(&mut layer, r)));
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
