//! `RedisSignInStore` against a real `redis-server`: two limiter instances
//! (two connections) sharing budgets, units held across instances, leases,
//! remembered clients, and faults (Redis killed, restarted, stalled).

mod redis_support;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use redis_support::{command, RedisServer};
use tokio::task::JoinSet;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::body::ResponseBody;
use tower_auth::rate_limit::sign_in::{
    Budget, BudgetKey, HoldError, SignIn, SignInLayer, SignInLimiter, SignInStore,
};
use tower_auth::rate_limit::Quota;
use tower_auth::redis::{RedisConnection, RedisSignInStore};

const SECRET: [u8; 32] = [42; 32];

/// A unique prefix per test, so tests sharing CI's server never meet.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{nanos}:")
}

fn connection(url: &str, timeout: Duration) -> RedisConnection {
    RedisConnection::open(url).unwrap().timeout(timeout)
}

/// A store of one instance: its own connection, the shared secret and
/// prefix, the account budget `burst` failures per hour.
fn store(url: &str, prefix: &str, burst: u32) -> RedisSignInStore {
    RedisSignInStore::new(connection(url, Duration::from_millis(500)), SECRET)
        .prefix(prefix)
        .quota(
            Budget::Account,
            Quota::per_hour(1).unwrap().allow_burst(burst).unwrap(),
        )
}

fn key(budget: Budget, key: &[u8]) -> BudgetKey<'_> {
    BudgetKey {
        budget,
        key,
        network: None,
    }
}

type App = BoxCloneService<Request<String>, Response<String>, Infallible>;

/// Answers with the body collected, for the assertions.
async fn collect(res: Response<ResponseBody<String>>) -> Response<String> {
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Response::from_parts(parts, String::from_utf8_lossy(&bytes).into_owned())
}

/// A sign-in route: the body is `user:password`; `calls` counts the
/// attempts admitted (the password checks run).
fn app(limiter: SignInLimiter, calls: Arc<AtomicUsize>) -> App {
    let svc = ServiceBuilder::new()
        .layer(SignInLayer::new(limiter))
        .service_fn(move |req: Request<String>| {
            let calls = calls.clone();
            async move {
                let Some(sign_in) = req.extensions().get::<SignIn>().cloned() else {
                    panic!("no SignIn");
                };
                let (user, password) = req.body().split_once(':').unwrap_or_default();
                if let Err(refused) = sign_in.attempt(user).await {
                    return Ok::<_, Infallible>(
                        refused
                            .into_http_response()
                            .map(|b| String::from_utf8(b.to_vec()).unwrap_or_default()),
                    );
                }
                calls.fetch_add(1, Ordering::SeqCst);
                // The password check of a real app takes a while.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let status = if password == "right" {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                Ok(Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap())
            }
        });
    BoxCloneService::new(svc.and_then(|res| async move { Ok(collect(res).await) }))
}

fn request(client: IpAddr, body: &str) -> Request<String> {
    let mut req = Request::new(body.to_owned());
    req.extensions_mut().insert(SocketAddr::new(client, 50_000));
    req
}

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

#[tokio::test]
async fn a_budget_shared_by_two_instances_admits_at_most_n_under_concurrency() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("shared-budget");
    const N: usize = 7;
    let calls = Arc::new(AtomicUsize::new(0));
    let instances: Vec<App> = (0..2)
        .map(|_| {
            let limiter = SignInLimiter::builder()
                .store(store(&url, &prefix, N as u32))
                .max_wait(Duration::from_secs(5))
                .build()
                .unwrap();
            app(limiter, calls.clone())
        })
        .collect();
    // 100 concurrent wrong passwords for one account from 100 addresses,
    // spread over both instances: the account budget (N) is the limit.
    let mut tasks = JoinSet::new();
    for i in 0..100u32 {
        let svc = instances[i as usize % 2].clone();
        tasks.spawn(async move {
            svc.oneshot(request(client(i), "alice:wrong"))
                .await
                .unwrap()
        });
    }
    let mut statuses = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let res = res.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                res.headers()["ratelimit"],
                r#""sign-in-account";r=0;t=3600"#
            );
            assert!(res.headers().contains_key("retry-after"));
        }
        statuses.push(res.status());
    }
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(calls.load(Ordering::SeqCst), N, "admitted across both");
    assert_eq!((failed, refused), (N, 100 - N));
    // And later attempts on either instance stay refused.
    for svc in &instances {
        let res = svc
            .clone()
            .oneshot(request(client(500), "alice:right"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(calls.load(Ordering::SeqCst), N);

    // Keys are hashed, under the prefix and one hash tag, with TTLs.
    let keys: Vec<String> = command(&url, redis::cmd("KEYS").arg(format!("{prefix}*")));
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            k.starts_with(&format!("{prefix}sign-in:{{sign-in}}:")),
            "{k}"
        );
        assert!(!k.contains("alice") && !k.contains("10.0.0"), "{k}");
        let ttl: i64 = command(&url, redis::cmd("PTTL").arg(k));
        assert!(
            ttl > 0 && ttl <= 3_600_000 * N as i64 + 60_000,
            "{k}: {ttl}"
        );
    }
}

#[tokio::test]
async fn units_held_in_flight_block_the_other_instance_until_settled() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("held");
    let a = store(&url, &prefix, 2);
    let b = store(&url, &prefix, 2);
    let keys = [key(Budget::Pair, b"p"), key(Budget::Account, b"bob")];

    let first = a.hold(&keys).await.unwrap();
    let second = b.hold(&keys).await.unwrap();
    // The account budget (2) is full of attempts in flight: busy.
    let Err(HoldError::Limited(limited)) = b.hold(&keys).await else {
        panic!("a third unit was held");
    };
    assert_eq!(limited.budget, Budget::Account);
    assert!(limited.busy);
    assert_eq!(limited.retry_after, Duration::from_secs(3600));
    // The pair unit was not held by the refused attempt (all or none).
    let pair_only = [key(Budget::Pair, b"p")];
    let held: Vec<_> = [
        a.hold(&pair_only).await.unwrap(),
        a.hold(&pair_only).await.unwrap(),
        a.hold(&pair_only).await.unwrap(),
    ]
    .into();
    held.into_iter().for_each(|h| h.settle(false));

    // A success gives its unit back, on the other instance too.
    first.settle(false);
    let third = eventually(|| b.hold(&keys)).await;
    // Two failures: the budget is spent, not busy.
    second.settle(true);
    third.settle(true);
    let limited = eventually_refused(&a, &keys, false).await;
    assert_eq!(limited.budget, Budget::Account);
    assert!(limited.retry_after > Duration::from_secs(3590));
}

/// Polls `hold` until it holds (settles are sent in the background).
async fn eventually<F, Fut, T>(hold: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, HoldError>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match hold().await {
            Ok(held) => return held,
            Err(e) => assert!(Instant::now() < deadline, "never held: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn eventually_refused(
    store: &RedisSignInStore,
    keys: &[BudgetKey<'_>],
    busy: bool,
) -> tower_auth::rate_limit::sign_in::Limited {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.hold(keys).await {
            Err(HoldError::Limited(limited)) if limited.busy == busy => return limited,
            Ok(held) => {
                drop(held);
                panic!("held a unit of a spent budget");
            }
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_unsettled_hold_counts_as_a_failure_when_its_lease_ends() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("lease");
    let a = store(&url, &prefix, 1).hold_lease(Duration::from_millis(200));
    let keys = [key(Budget::Account, b"carol")];
    let held = a.hold(&keys).await.unwrap();
    // The instance "crashes": nothing is ever settled.
    std::mem::forget(held);
    let limited = eventually_refused(&a, &keys, true).await;
    assert!(limited.busy);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Now a failure, not a unit in flight.
    let limited = eventually_refused(&a, &keys, false).await;
    assert!(limited.retry_after > Duration::from_secs(3590));

    // A dropped hold is a failure at once.
    let d = store(&url, &prefix, 1);
    let keys = [key(Budget::Account, b"dave")];
    drop(d.hold(&keys).await.unwrap());
    eventually_refused(&d, &keys, false).await;
}

#[tokio::test]
async fn a_success_remembered_on_one_instance_is_known_on_the_other() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("known");
    let a = store(&url, &prefix, 5);
    let b = store(&url, &prefix, 5);
    assert!(!b.is_known(b"client+erin").await.unwrap());
    a.remember(key(Budget::Known, b"client+erin"), Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.is_known(b"client+erin").await.unwrap() {
        assert!(Instant::now() < deadline, "never remembered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!b.is_known(b"client+frank").await.unwrap());
    // Another secret does not see it.
    let other = RedisSignInStore::new(connection(&url, Duration::from_millis(500)), [1; 32])
        .prefix(&prefix);
    assert!(!other.is_known(b"client+erin").await.unwrap());

    // At most `max_known_per_group` per group: the oldest are forgotten.
    let capped = store(&url, &prefix, 5).max_known_per_group(2);
    let group = Some(tower_auth::rate_limit::IpKey::from(client(1)));
    for name in [&b"one"[..], b"two", b"three"] {
        capped.remember(
            BudgetKey {
                budget: Budget::Known,
                key: name,
                network: group,
            },
            Duration::from_secs(60),
        );
        // One at a time, in order.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !capped.is_known(name).await.unwrap() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(!capped.is_known(b"one").await.unwrap());
    assert!(capped.is_known(b"two").await.unwrap());
    assert!(capped.is_known(b"three").await.unwrap());
}

#[tokio::test]
async fn redis_killed_then_restarted_refuses_with_503_then_recovers() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let store = RedisSignInStore::new(
        connection(&server.url(), Duration::from_millis(300)),
        SECRET,
    );
    let limiter = SignInLimiter::builder().store(store).build().unwrap();
    let svc = app(limiter, calls.clone());
    let res = svc
        .clone()
        .oneshot(request(client(1), "gina:wrong"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let res = svc
            .clone()
            .oneshot(request(client(1), "gina:right"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.body().contains("unavailable"), "{}", res.body());
        assert!(!res.body().contains("gina"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "nothing admitted while down"
    );

    // Back up: the same limiter, not rebuilt, serves again.
    server.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let res = svc
            .clone()
            .oneshot(request(client(1), "gina:right"))
            .await
            .unwrap();
        if res.status() != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break res.status();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_redis_refuses_with_503_after_the_timeout_not_a_hang() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let calls = Arc::new(AtomicUsize::new(0));
    let store = RedisSignInStore::new(connection(&server.url(), timeout), SECRET);
    let limiter = SignInLimiter::builder().store(store).build().unwrap();
    let svc = app(limiter, calls.clone());
    let res = svc
        .clone()
        .oneshot(request(client(1), "hal:wrong"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let () = server.command(redis::cmd("CLIENT").arg("PAUSE").arg(2000).arg("ALL"));
    let started = Instant::now();
    let res = svc
        .clone()
        .oneshot(request(client(1), "hal:right"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took >= timeout - Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = svc
            .clone()
            .oneshot(request(client(1), "hal:right"))
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", res.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- RedisRateLimiter: the GCRA of the local limiter, in Redis ----

use std::sync::atomic::AtomicU64;

use tower_auth::rate_limit::governor::clock::FakeRelativeClock;
use tower_auth::rate_limit::Limiter;
use tower_auth::redis::RedisRateLimiter;

/// The fake clock of the Redis scripts (µs since the epoch), shared with
/// the local limiter's fake clock by the test that uses it.
static FAKE_NOW: AtomicU64 = AtomicU64::new(0);

fn fake_now() -> u64 {
    FAKE_NOW.load(Ordering::SeqCst)
}

#[tokio::test]
async fn redis_gcra_makes_the_local_limiters_decisions_on_the_same_arrivals() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    // A replenish interval of whole microseconds: the scripts' clock
    // resolution; then decisions, waits and remaining quota are identical.
    let quota = Quota::with_period(Duration::from_millis(150))
        .unwrap()
        .allow_burst(3)
        .unwrap();
    let start = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    FAKE_NOW.store(start, Ordering::SeqCst);
    let clock = FakeRelativeClock::default();
    let local = Limiter::builder(quota).clock(clock.clone()).build();
    let prefix = prefix("gcra");
    // Two instances on two connections, alternating.
    let remote: Vec<RedisRateLimiter> = (0..2)
        .map(|_| {
            RedisRateLimiter::new(
                connection(&url, Duration::from_secs(2)),
                SECRET,
                "per-key",
                quota,
            )
            .prefix(&prefix)
            .clock(fake_now)
        })
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut allowed = 0;
    for i in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = [b'k', (x % 3) as u8];
        let step = (x >> 8) % 60_000; // µs
        clock.advance(Duration::from_micros(step));
        FAKE_NOW.fetch_add(step, Ordering::SeqCst);
        let expected = local
            .check(&key[..])
            .map(|()| local.state(&key[..]))
            .map_err(|d| d.retry_after());
        let got = remote[i % 2]
            .check(&key)
            .await
            .unwrap()
            .map_err(|d| d.retry_after());
        assert_eq!(got, expected, "arrival {i}");
        allowed += usize::from(got.is_ok());
    }
    assert!((200..1_900).contains(&allowed), "allowed {allowed}");

    // Keys: hashed, one hash tag each, with a TTL.
    let keys: Vec<String> = command(&url, redis::cmd("KEYS").arg(format!("{prefix}*")));
    assert_eq!(keys.len(), 3);
    for k in &keys {
        assert!(
            k.starts_with(&format!("{prefix}rate-limit:{{per-key:")),
            "{k}"
        );
        let ttl: i64 = command(&url, redis::cmd("PTTL").arg(k));
        assert!(ttl > 0, "{k}: {ttl}");
    }
}

#[tokio::test]
async fn a_redis_limit_shared_by_two_instances_admits_exactly_its_burst() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("shared-limit");
    let quota = Quota::per_hour(10).unwrap();
    let instances: Vec<RedisRateLimiter> = (0..2)
        .map(|_| {
            RedisRateLimiter::new(
                connection(&url, Duration::from_secs(2)),
                SECRET,
                "per-user",
                quota,
            )
            .prefix(&prefix)
        })
        .collect();
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let limiter = instances[i % 2].clone();
        tasks.spawn(async move { limiter.check(b"alice").await.unwrap() });
    }
    let mut admitted = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => admitted += 1,
            Err(denied) => assert!(denied.retry_after() > Duration::from_secs(350)),
        }
    }
    assert_eq!(admitted, 10);
    // Another key has its own budget.
    let state = instances[1].check(b"bob").await.unwrap().unwrap();
    assert_eq!(
        (state.remaining(), state.next_in()),
        (9, Duration::from_secs(360))
    );

    // Failed attempts: units held across instances, only failures count.
    let attempts = RedisRateLimiter::new(
        connection(&url, Duration::from_secs(2)),
        SECRET,
        "login",
        Quota::per_hour(2).unwrap(),
    )
    .prefix(&prefix);
    let other = RedisRateLimiter::new(
        connection(&url, Duration::from_secs(2)),
        SECRET,
        "login",
        Quota::per_hour(2).unwrap(),
    )
    .prefix(&prefix);
    let first = attempts.attempt(b"ip").await.unwrap().unwrap();
    let second = other.attempt(b"ip").await.unwrap().unwrap();
    assert!(
        other.attempt(b"ip").await.unwrap().is_err(),
        "two in flight"
    );
    first.release();
    second.fail();
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        if let Ok(held) = other.attempt(b"ip").await.unwrap() {
            break held;
        }
        assert!(Instant::now() < deadline, "the release never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    third.fail();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match attempts.attempt(b"ip").await.unwrap() {
            Err(denied) if denied.retry_after() > Duration::from_secs(1790) => break,
            Err(_) => {}
            Ok(held) => {
                held.release();
                panic!("a third attempt after two failures");
            }
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_redis_limit_fails_closed_when_redis_is_down_and_recovers() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let limiter = RedisRateLimiter::new(
        connection(&server.url(), Duration::from_millis(300)),
        SECRET,
        "per-ip",
        Quota::per_minute(100).unwrap(),
    );
    assert!(limiter.check(b"a").await.unwrap().is_ok());
    server.kill();
    let started = Instant::now();
    assert!(limiter.check(b"a").await.is_err());
    assert!(limiter.attempt(b"a").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    server.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter.check(b"a").await.is_err() {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- RedisRateLimitLayer: the local layer's twin over Redis ----

use tower_auth::rate_limit::{Header, Limit, PeerIp, RateLimitLayer};
use tower_auth::redis::{RedisLimit, RedisRateLimitLayer};

type Plain = BoxCloneService<Request<String>, Response<String>, Infallible>;

/// Answers `status` to every request, counting the calls.
#[derive(Clone)]
struct Handler {
    status: StatusCode,
    calls: Arc<AtomicUsize>,
}

impl tower::Service<Request<String>> for Handler {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::new(String::new());
        *res.status_mut() = self.status;
        std::future::ready(Ok(res))
    }
}

/// `layer` over a [`Handler`].
fn handler<L>(layer: L, status: StatusCode, calls: Arc<AtomicUsize>) -> Plain
where
    L: tower::Layer<Handler>,
    L::Service: tower::Service<
            Request<String>,
            Response = Response<ResponseBody<String>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<Request<String>>>::Future: Send + 'static,
{
    let svc = layer.layer(Handler { status, calls });
    BoxCloneService::new(svc.and_then(|res| async move { Ok(collect(res).await) }))
}

fn redis_limit(url: &str, prefix: &str, name: &str, quota: Quota) -> RedisRateLimiter {
    RedisRateLimiter::new(connection(url, Duration::from_secs(2)), SECRET, name, quota)
        .prefix(prefix)
}

fn headers_of(res: &Response<String>) -> Vec<(String, String)> {
    [
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "content-type",
    ]
    .iter()
    .filter_map(|h| {
        res.headers()
            .get(*h)
            .map(|v| ((*h).to_owned(), v.to_str().unwrap().to_owned()))
    })
    .collect()
}

#[tokio::test]
async fn the_redis_layer_answers_like_the_local_layer_across_two_instances() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("layer");
    let quota = Quota::per_minute(3).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let remote: Vec<Plain> = (0..2)
        .map(|_| {
            let layer = RedisRateLimitLayer::new(RedisLimit::new(
                redis_limit(&url, &prefix, "per-ip", quota),
                PeerIp::new(),
            ))
            .limit(RedisLimit::new(
                redis_limit(&url, &prefix, "per-key", Quota::per_minute(100).unwrap()),
                Header::api_key(),
            ))
            .remaining_headers(true);
            handler(layer, StatusCode::OK, calls.clone())
        })
        .collect();
    let local = handler(
        RateLimitLayer::new(Limit::new("per-ip", quota, PeerIp::new()))
            .limit(Limit::new(
                "per-key",
                Quota::per_minute(100).unwrap(),
                Header::api_key(),
            ))
            .remaining_headers(true),
        StatusCode::OK,
        Arc::new(AtomicUsize::new(0)),
    );
    let req = || {
        let mut req = request(client(7), "");
        req.headers_mut()
            .insert("x-api-key", "k-123".parse().unwrap());
        req
    };
    for i in 0..5 {
        let theirs = remote[i % 2].clone().oneshot(req()).await.unwrap();
        let ours = local.clone().oneshot(req()).await.unwrap();
        assert_eq!(theirs.status(), ours.status(), "request {i}");
        assert_eq!(headers_of(&theirs), headers_of(&ours), "request {i}");
        assert_eq!(theirs.body(), ours.body(), "request {i}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "3 per minute over both");

    // A request without the API key header: 500, never admitted.
    let res = remote[0]
        .clone()
        .oneshot(request(client(8), ""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_redis_layer_counts_failed_attempts_across_instances() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("layer-failed");
    let quota = Quota::per_hour(2).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = |url: &str| {
        RedisRateLimitLayer::failed_attempts(RedisLimit::new(
            redis_limit(url, &prefix, "login", quota),
            PeerIp::new(),
        ))
    };
    let ok = handler(layer(&url), StatusCode::OK, calls.clone());
    let wrong = handler(layer(&url), StatusCode::UNAUTHORIZED, calls.clone());
    // Successes never count.
    for _ in 0..5 {
        let res = ok.clone().oneshot(request(client(9), "")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Two failures on the other instance spend the budget (settles land
    // in the background: wait for them).
    for _ in 0..2 {
        let res = wrong.clone().oneshot(request(client(9), "")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let res = loop {
        let res = ok.clone().oneshot(request(client(9), "")).await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["ratelimit"], r#""login";r=0;t=1800"#);
    assert_eq!(res.headers()["retry-after"], "1800");
}

#[tokio::test]
async fn the_redis_layer_answers_503_when_redis_is_down_or_stalled() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let limiter = RedisRateLimiter::new(
        connection(&server.url(), Duration::from_millis(300)),
        SECRET,
        "per-ip",
        Quota::per_minute(100).unwrap(),
    );
    let svc = handler(
        RedisRateLimitLayer::new(RedisLimit::new(limiter, PeerIp::new())),
        StatusCode::OK,
        calls.clone(),
    );
    let status =
        |svc: Plain| async move { svc.oneshot(request(client(1), "")).await.unwrap().status() };
    assert_eq!(status(svc.clone()).await, StatusCode::OK);
    let () = server.command(redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL"));
    let started = Instant::now();
    assert_eq!(status(svc.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_millis(1200));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    server.kill();
    let res = svc.clone().oneshot(request(client(1), "")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.body().contains("unavailable"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nothing admitted");
    server.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(svc.clone()).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The calls of one command in `INFO commandstats` (`evalsha`: scripts).
fn calls_of(server: &RedisServer, command: &str) -> u64 {
    let info: String = server.command(redis::cmd("INFO").arg("commandstats"));
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_limited_request_is_one_script_per_limit_and_a_sign_in_two() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let url = server.url();
    let calls = Arc::new(AtomicUsize::new(0));
    let limiter = redis_limit(&url, "count:", "per-ip", Quota::per_minute(1_000).unwrap());
    let svc = handler(
        RedisRateLimitLayer::new(RedisLimit::new(limiter, PeerIp::new())),
        StatusCode::OK,
        calls.clone(),
    );
    // Loads the script (EVALSHA, then EVAL once).
    svc.clone().oneshot(request(client(1), "")).await.unwrap();
    let () = server.command(&redis::cmd("CONFIG").arg("RESETSTAT").clone());
    for i in 0..10 {
        let res = svc.clone().oneshot(request(client(i), "")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(calls_of(&server, "evalsha"), 10);
    assert_eq!(calls_of(&server, "eval"), 0);

    // A sign-in attempt: `EXISTS` (known client?), then hold and settle.
    let store = RedisSignInStore::new(connection(&url, Duration::from_secs(2)), SECRET);
    let limiter = SignInLimiter::builder().store(store).build().unwrap();
    let sign_in = app(limiter, Arc::new(AtomicUsize::new(0)));
    let wrong = || sign_in.clone().oneshot(request(client(2), "ivy:wrong"));
    assert_eq!(wrong().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let () = server.command(&redis::cmd("CONFIG").arg("RESETSTAT").clone());
    assert_eq!(wrong().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // The settle is sent in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls_of(&server, "evalsha") < 2 {
        assert!(Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls_of(&server, "evalsha"), 2);
    assert_eq!(calls_of(&server, "exists"), 1);
}
