//! Added cost of the sign-in limiter on one sign-in, against the
//! failed-attempts layer it replaces on the example server's sign-in
//! routes, measured in the same run.
//!
//! ```sh
//! cargo bench --bench sign_in --features rate-limit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `inner service alone`: the sign-in handler without a limiter (it
//!   reads the account from the body and answers; no password hash, so
//!   that only the limiters' cost shows);
//! * `failed_attempts layer`: `RateLimitLayer::failed_attempts` keyed by
//!   peer IP (the previous example server): one unit held per request;
//! * `SignInLayer success`: the new limiter on a correct password:
//!   untrusted budgets held, then given back, the (client, account)
//!   remembered and a device cookie issued (HMAC-SHA256, 16 random bytes);
//! * `SignInLayer success with device cookie`: the same with a device
//!   cookie for the account (tag check, device budget);
//! * `SignInLayer failure`: a wrong password (three budgets held, then a
//!   failure recorded in each), with quotas large enough never to refuse.
//!
//! Every request goes through the same current-thread tokio runtime
//! (`block_on`), since the new limiter's attempt is async.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_auth::rate_limit::sign_in::{
    Budget, DeviceCookies, DeviceKey, MemorySignInStore, SignIn, SignInLayer, SignInLimiter,
};
use tower_auth::rate_limit::{Limit, PeerIp, Quota, RateLimitLayer};

fn request(body: &'static str, cookie: Option<&str>) -> Request<&'static str> {
    let mut req = Request::new(body);
    req.extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 50_000)));
    if let Some(cookie) = cookie {
        req.headers_mut()
            .insert(http::header::COOKIE, cookie.try_into().unwrap());
    }
    req
}

/// `account:password`; `right` is the right password.
fn outcome(body: &str) -> (&str, StatusCode) {
    let (account, password) = body.split_once(':').unwrap_or_default();
    let status = if password == "right" {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    (account, status)
}

async fn plain(req: Request<&'static str>) -> Result<Response<()>, Infallible> {
    let (_, status) = outcome(req.body());
    Ok(Response::builder().status(status).body(()).unwrap())
}

async fn reported(req: Request<&'static str>) -> Result<Response<()>, Infallible> {
    let (account, status) = outcome(req.body());
    let sign_in = req.extensions().get::<SignIn>().unwrap();
    if let Err(refused) = sign_in.attempt(account).await {
        panic!("the bench quotas never refuse: {refused}");
    }
    Ok(Response::builder().status(status).body(()).unwrap())
}

fn limiter(store: MemorySignInStore) -> SignInLimiter {
    SignInLimiter::builder()
        .store(store)
        .device_cookies(DeviceCookies::new(DeviceKey::from_bytes(&[7; 32]).unwrap()))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("sign-in");

    let inner = service_fn(plain);
    group.bench_function("inner service alone", |b| {
        b.iter(|| rt.block_on(inner.oneshot(request("alice:right", None))))
    });

    let seed = Quota::with_period(Duration::from_secs(15 * 60))
        .unwrap()
        .allow_burst(5)
        .unwrap();
    let failed_attempts = ServiceBuilder::new()
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "sign-in",
            seed,
            PeerIp::new(),
        )))
        .service_fn(plain);
    group.bench_function("failed_attempts layer", |b| {
        b.iter(|| {
            let res = rt.block_on(
                failed_attempts
                    .clone()
                    .oneshot(request("alice:right", None)),
            );
            black_box(res.unwrap().status())
        })
    });

    let sign_in = ServiceBuilder::new()
        .layer(SignInLayer::new(limiter(MemorySignInStore::new())))
        .service_fn(reported);
    group.bench_function("SignInLayer success", |b| {
        b.iter(|| {
            let res = rt.block_on(sign_in.clone().oneshot(request("alice:right", None)));
            black_box(res.unwrap().status())
        })
    });

    let res = rt
        .block_on(sign_in.clone().oneshot(request("alice:right", None)))
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    group.bench_function("SignInLayer success with device cookie", |b| {
        b.iter(|| {
            let res = rt.block_on(
                sign_in
                    .clone()
                    .oneshot(request("alice:right", Some(&cookie))),
            );
            black_box(res.unwrap().status())
        })
    });

    let huge = Quota::per_second(1_000_000_000).unwrap();
    let mut store = MemorySignInStore::builder();
    for budget in Budget::ALL {
        store = store.quota(budget, huge);
    }
    let failing = ServiceBuilder::new()
        .layer(SignInLayer::new(limiter(store.build())))
        .service_fn(reported);
    group.bench_function("SignInLayer failure", |b| {
        b.iter(|| {
            let res = rt.block_on(failing.clone().oneshot(request("alice:wrong", None)));
            black_box(res.unwrap().status())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
