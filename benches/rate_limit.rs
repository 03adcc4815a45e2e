//! Cost of the rate-limit check per request, through `RateLimitLayer` and
//! with governor's own keyed limiter, with 1 key and with 100 000 keys.
//!
//! ```sh
//! cargo bench --bench rate_limit --features rate-limit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `governor keyed check_key`: `RateLimiter::keyed(quota).check_key(&ip)`
//!   with governor's default keyed store in this build: the baseline;
//! * `Limiter::check`: this crate's limiter (capped store) on the same keys,
//!   as the layer hashes them (`IpKey`: one integer, not an `IpAddr`);
//! * `RateLimitLayer oneshot`: one request through the layer (peer IP from
//!   the extensions, key hash, check, inner call, body wrapping) into a
//!   trivial inner service;
//! * `bare governor layer oneshot`: the thinnest hand-written tower layer
//!   around governor's own keyed limiter (peer IP from the extensions,
//!   `check_key`, forward, wrap the body): what the same job costs with
//!   governor alone;
//! * `pass-through layer oneshot`: a layer that only wraps the response
//!   body, as every layer of this crate does;
//! * `inner service alone`: the same request into the inner service.
//!
//! The layer's overhead is `RateLimitLayer - inner service alone`; compare
//! it with `governor keyed check_key` and with
//! `bare governor layer - inner service alone`.
//!
//! Requests are built once and recycled: the inner service stashes each
//! request it receives and the next iteration reuses it, with the next key
//! written into its peer address. Neither building nor dropping requests
//! is measured: both are the server's cost, not the layer's, and their
//! allocations would drown the differences in noise. Futures are polled in
//! place. Every quota is large enough never to refuse.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use futures_util::future::{Either, MapOk};
use futures_util::TryFutureExt;
use http::{Request, Response};
use tower::util::MapResponseLayer;
use tower::{service_fn, Service, ServiceExt};
use tower_auth::body::ResponseBody;
use tower_auth::rate_limit::governor;
use tower_auth::rate_limit::{IpKey, Limit, Limiter, PeerIp, Quota, RateLimitLayer};
use tower_layer::Layer;

const PER_SECOND: u32 = 1_000_000_000;

type Stash = Rc<Cell<Option<Request<()>>>>;
type Wrapped = Response<ResponseBody<()>>;

/// The thinnest rate-limiting layer over governor's own keyed limiter.
struct BareGovernor<S> {
    inner: S,
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl<S> Service<Request<()>> for BareGovernor<S>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    type Response = Wrapped;
    type Error = Infallible;
    type Future =
        Either<MapOk<S::Future, fn(Response<()>) -> Wrapped>, Ready<Result<Wrapped, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let ip = req.extensions().get::<SocketAddr>().map(SocketAddr::ip);
        match ip.map(|ip| self.limiter.check_key(&ip)) {
            Some(Ok(())) => {
                let wrap: fn(Response<()>) -> Wrapped = |res| res.map(ResponseBody::inner);
                Either::Left(self.inner.call(req).map_ok(wrap))
            }
            _ => {
                let mut res = Response::new(ResponseBody::empty());
                *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
                Either::Right(ready(Ok(res)))
            }
        }
    }
}

fn keys(n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)))
        .collect()
}

/// Cycles through `keys`.
fn cycle(keys: &[IpAddr]) -> impl FnMut() -> IpAddr + '_ {
    let mut i = 0;
    move || {
        let key = keys[i];
        i = (i + 1) % keys.len();
        key
    }
}

/// A trivial service that keeps the request for the next iteration.
fn inner(
    stash: &Stash,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    let stash = stash.clone();
    service_fn(move |req: Request<()>| {
        stash.set(Some(req));
        ready(Ok::<_, Infallible>(Response::new(())))
    })
}

/// Sends requests from the `keys` in turn through `svc` with `oneshot`.
fn run<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    stash: &Stash,
    keys: &[IpAddr],
) where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut next = cycle(keys);
    let mut cx = Context::from_waker(Waker::noop());
    stash.set(Some(Request::new(())));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut req = stash.take().unwrap_or_default();
            req.extensions_mut().insert(SocketAddr::new(next(), 40_000));
            let fut = pin!((&mut svc).oneshot(req));
            if let Poll::Ready(Ok(res)) = fut.poll(&mut cx) {
                black_box(res);
            }
        })
    });
}

fn bench(c: &mut Criterion) {
    let quota = Quota::per_second(PER_SECOND).expect("valid quota");
    let governor_quota =
        governor::Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"));

    for n in [1, 100_000] {
        let keys = keys(n);
        let mut group = c.benchmark_group(format!("rate_limit/{n} keys"));

        let bare = governor::RateLimiter::keyed(governor_quota);
        for k in &keys {
            let _ = bare.check_key(k);
        }
        let mut next = cycle(&keys);
        group.bench_function("governor keyed check_key", |b| {
            b.iter(|| bare.check_key(black_box(&next())).is_ok())
        });

        let limiter = Limiter::builder(quota).max_keys(2 * n as usize).build();
        for k in &keys {
            let _ = limiter.check(&IpKey::from(*k));
        }
        let mut next = cycle(&keys);
        group.bench_function("Limiter::check", |b| {
            b.iter(|| limiter.check(black_box(&IpKey::from(next()))).is_ok())
        });

        let stash = Stash::default();
        let limit = Limit::new("per-ip", limiter.clone(), PeerIp::new());
        let layered = RateLimitLayer::new(limit).layer(inner(&stash));
        run(&mut group, "RateLimitLayer oneshot", layered, &stash, &keys);
        let bare_layer = BareGovernor {
            inner: inner(&stash),
            limiter: governor::RateLimiter::keyed(governor_quota),
        };
        run(
            &mut group,
            "bare governor layer oneshot",
            bare_layer,
            &stash,
            &keys,
        );
        let wrap = |res: Response<()>| res.map(ResponseBody::inner);
        let pass_through = MapResponseLayer::new(wrap).layer(inner(&stash));
        run(
            &mut group,
            "pass-through layer oneshot",
            pass_through,
            &stash,
            &keys,
        );
        run(
            &mut group,
            "inner service alone",
            inner(&stash),
            &stash,
            &keys,
        );
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
