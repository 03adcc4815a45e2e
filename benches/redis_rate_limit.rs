//! Redis-backed rate limits and sign-in budgets against their memory-backed
//! twins and against the floor of one raw Redis round trip (`GET` on a
//! connection manager of its own), all measured in the same run on one
//! tokio runtime.
//!
//! Needs a `redis-server`: the bench starts one on a free loopback port
//! (without persistence) and stops it, or uses `TOWER_AUTH_REDIS_URL`.
//!
//! ```sh
//! cargo bench --bench redis_rate_limit --features redis,rate-limit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `floor/raw GET round trip`: one command, no script;
//! * `limiter check/…`: one GCRA decision ([`Limiter::check`] vs
//!   [`RedisRateLimiter::check`], one script);
//! * `layer/…`: one request through `RateLimitLayer` vs
//!   `RedisRateLimitLayer` (peer-IP key) into a trivial service;
//! * `sign-in hold+settle/…`: one untrusted sign-in attempt's three budgets
//!   held and given back ([`MemorySignInStore`] vs [`RedisSignInStore`]:
//!   one script to hold, one to settle).
//!
//! Every quota is large enough never to refuse.

#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::ServiceExt;
use tower_auth::rate_limit::sign_in::{Budget, BudgetKey, MemorySignInStore, SignInStore};
use tower_auth::rate_limit::{Limit, Limiter, PeerIp, Quota, RateLimitLayer};
use tower_auth::redis::{
    RedisConnection, RedisLimit, RedisRateLimitLayer, RedisRateLimiter, RedisSignInStore,
};
use tower_layer::Layer;

const SECRET: [u8; 32] = [3; 32];

fn request() -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 50_000)));
    req
}

fn bench(c: &mut Criterion) {
    let (url, _server) =
        redis_support::RedisServer::shared().expect("the bench needs redis-server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connection = || RedisConnection::open(url.as_str()).unwrap();
    let quota = Quota::per_second(1_000_000_000).unwrap();
    let prefix = format!("bench-{}:", std::process::id());

    let raw = rt.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .unwrap()
    });
    let mut g = c.benchmark_group("redis rate limit");
    g.bench_function("floor/raw GET round trip", |b| {
        b.iter(|| {
            let mut con = raw.clone();
            let value: Option<String> = rt
                .block_on(redis::cmd("GET").arg("bench:floor").query_async(&mut con))
                .unwrap();
            black_box(value)
        })
    });

    let local = Limiter::new(quota);
    let remote = RedisRateLimiter::new(connection(), SECRET, "bench", quota).prefix(&prefix);
    g.bench_function("limiter check/memory", |b| {
        b.iter(|| black_box(local.check(&b"alice"[..])))
    });
    g.bench_function("limiter check/redis", |b| {
        b.iter(|| black_box(rt.block_on(remote.check(b"alice")).unwrap()))
    });

    let inner = tower::service_fn(|_: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));
    let memory_layer = RateLimitLayer::new(Limit::new("per-ip", quota, PeerIp::new())).layer(inner);
    let redis_layer =
        RedisRateLimitLayer::new(RedisLimit::new(remote.clone(), PeerIp::new())).layer(inner);
    g.bench_function("layer/memory", |b| {
        b.iter(|| black_box(rt.block_on(memory_layer.clone().oneshot(request()))))
    });
    g.bench_function("layer/redis", |b| {
        b.iter(|| black_box(rt.block_on(redis_layer.clone().oneshot(request()))))
    });

    let memory_store = quotas(MemorySignInStore::builder(), quota);
    let redis_store = [Budget::Pair, Budget::Account, Budget::Client]
        .into_iter()
        .fold(
            RedisSignInStore::new(connection(), SECRET).prefix(&prefix),
            |store, budget| store.quota(budget, quota),
        );
    let keys = [
        BudgetKey {
            budget: Budget::Pair,
            key: b"4\xc0\x00\x02\x01\xffalice",
            network: None,
        },
        BudgetKey {
            budget: Budget::Account,
            key: b"alice",
            network: None,
        },
        BudgetKey {
            budget: Budget::Client,
            key: b"4\xc0\x00\x02\x01",
            network: None,
        },
    ];
    g.bench_function("sign-in hold+settle/memory", |b| {
        b.iter(|| {
            let held = rt.block_on(memory_store.hold(&keys)).unwrap();
            held.settle(false);
        })
    });
    g.bench_function("sign-in hold+settle/redis", |b| {
        b.iter(|| {
            // The settle is spawned on this runtime and runs while the next
            // iteration's hold waits for Redis: in the steady state each
            // iteration pays for both scripts (on one connection).
            let held = rt.block_on(redis_store.hold(&keys)).unwrap();
            held.settle(false);
        })
    });
    g.finish();
    // Let the last settles land before the runtime goes.
    rt.block_on(tokio::time::sleep(std::time::Duration::from_millis(100)));
}

fn quotas(
    builder: tower_auth::rate_limit::sign_in::MemorySignInStoreBuilder,
    quota: Quota,
) -> MemorySignInStore {
    [Budget::Pair, Budget::Account, Budget::Client]
        .into_iter()
        .fold(builder, |b, budget| b.quota(budget, quota))
        .build()
}

criterion_group!(benches, bench);
criterion_main!(benches);
