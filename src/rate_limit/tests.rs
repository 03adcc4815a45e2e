//! Tests of the layers, driven with `oneshot` and governor's fake clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::rejection::Rejection;
use crate::{Identity, Scheme};

type Res = Response<crate::body::ResponseBody<String>>;

fn limit(name: &str, quota: Quota, key: impl KeyExtractor, clock: &FakeRelativeClock) -> Limit {
    let limiter = Limiter::builder(quota).clock(clock.clone()).build();
    Limit::new(name, limiter, key)
}

fn from(ip: [u8; 4]) -> Request<()> {
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut().insert(SocketAddr::from((ip, 40_000)));
    req
}

/// An inner service counting its calls, answering with `status`.
fn counting(
    status: StatusCode,
) -> (
    impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::new(String::from("inner"));
        *res.status_mut() = status;
        std::future::ready(Ok::<_, Infallible>(res))
    });
    (svc, calls)
}

async fn send<S>(svc: &S, req: Request<()>) -> Res
where
    S: Service<Request<()>, Response = Res, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

async fn json(res: Res) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(res: &'a Res, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn quota_exhausted_is_429_with_retry_after_and_ratelimit_headers() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_minute(3).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .layer(inner);
    for _ in 0..3 {
        let res = send(&svc, from([192, 0, 2, 1])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
    clock.advance(Duration::from_millis(1500));
    let res = send(&svc, from([192, 0, 2, 1])).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("19"));
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=0;t=19"#));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""per-ip";q=3;w=60"#)
    );
    assert_eq!(header(&res, "content-type"), Some("application/json"));
    assert_eq!(json(res).await["error"], "too_many_requests");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a refused request reached the service"
    );

    // Another client is not affected.
    let res = send(&svc, from([192, 0, 2, 2])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn recovers_after_the_period_with_the_fake_clock() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_minute(2).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .layer(inner);
    let ip = [198, 51, 100, 1];
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_secs(29));
    let res = send(&svc, from(ip)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A whole window later the full burst is back.
    clock.advance(Duration::from_secs(60));
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn remaining_headers_on_success_when_enabled() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_minute(3).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .remaining_headers(true)
    .layer(inner);
    let res = send(&svc, from([10, 1, 1, 1])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=2;t=20"#));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""per-ip";q=3;w=60"#)
    );
    clock.advance(Duration::from_secs(5));
    let res = send(&svc, from([10, 1, 1, 1])).await;
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=1;t=15"#));
}

#[tokio::test]
async fn grpc_requests_get_resource_exhausted() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit("rpc", Quota::per_second(1).unwrap(), Global, &clock))
        .layer(inner);
    let grpc = || {
        Request::post("/grpc.health.v1.Health/Check")
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(())
            .unwrap()
    };
    assert_eq!(send(&svc, grpc()).await.status(), StatusCode::OK);
    let res = send(&svc, grpc()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "grpc-status"), Some("8"));
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(header(&res, "ratelimit"), Some(r#""rpc";r=0;t=1"#));
}

#[tokio::test]
async fn spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let key = ClientIp::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let svc = RateLimitLayer::new(limit(
        "per-client",
        Quota::per_hour(2).unwrap(),
        key,
        &clock,
    ))
    .layer(inner);
    let mut statuses = Vec::new();
    for i in 0..4u8 {
        let mut req = from([203, 0, 113, 5]);
        let spoof = format!("198.51.100.{i}");
        req.headers_mut()
            .insert("x-forwarded-for", spoof.parse().unwrap());
        statuses.push(send(&svc, req).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
}

#[tokio::test]
async fn trusted_proxy_chain_is_parsed_right_to_left() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let key = ClientIp::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let svc = RateLimitLayer::new(limit(
        "per-client",
        Quota::per_hour(1).unwrap(),
        key,
        &clock,
    ))
    .layer(inner);
    let via_proxy = |chain: &str| {
        let mut req = from([10, 0, 0, 1]);
        req.headers_mut()
            .insert("x-forwarded-for", chain.parse().unwrap());
        req
    };
    // Two clients behind the same proxies get their own budgets; what the
    // client wrote on the left does not matter.
    let a1 = send(&svc, via_proxy("6.6.6.1, 198.51.100.1, 10.0.0.2")).await;
    let b1 = send(&svc, via_proxy("6.6.6.1, 198.51.100.2, 10.0.0.2")).await;
    let a2 = send(&svc, via_proxy("7.7.7.7, 198.51.100.1, 10.0.0.2")).await;
    assert_eq!(a1.status(), StatusCode::OK);
    assert_eq!(b1.status(), StatusCode::OK);
    assert_eq!(a2.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn per_ip_and_per_user_limits_stack() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_hour(3).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .limit(limit(
        "per-user",
        Quota::per_hour(2).unwrap(),
        Subject,
        &clock,
    ))
    .remaining_headers(true)
    .layer(inner);
    let as_user = |ip: [u8; 4], user: &str| {
        let mut req = from(ip);
        req.extensions_mut()
            .insert(Identity::new(user, Scheme::Bearer));
        req
    };
    let res = send(&svc, as_user([1, 1, 1, 1], "alice")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""per-ip";q=3;w=3600, "per-user";q=2;w=3600"#)
    );
    assert_eq!(
        header(&res, "ratelimit"),
        Some(r#""per-ip";r=2;t=1200, "per-user";r=1;t=1800"#)
    );
    // alice from another IP: her user budget is shared across IPs.
    assert_eq!(
        send(&svc, as_user([2, 2, 2, 2], "alice")).await.status(),
        StatusCode::OK
    );
    let res = send(&svc, as_user([3, 3, 3, 3], "alice")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-user";r=0;t=1800"#));
    // Other users from alice's first IP: fresh user budgets, but the IP's
    // budget (3) runs out.
    assert_eq!(
        send(&svc, as_user([1, 1, 1, 1], "bob")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, as_user([1, 1, 1, 1], "carol")).await.status(),
        StatusCode::OK
    );
    let res = send(&svc, as_user([1, 1, 1, 1], "dave")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=0;t=1200"#));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn missing_key_fails_closed_unless_a_fallback_is_given() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_hour(5).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .layer(inner.clone());
    let res = send(&svc, Request::new(())).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = json(res).await;
    assert_eq!(body["error"], "internal_error");
    // A fixed message: neither the limit's name nor what was missing.
    assert_eq!(
        body["message"],
        "the request cannot be rate-limited: server misconfiguration"
    );
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("per-ip") && !message.contains("ConnectInfo"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Anonymous requests fall back to their IP.
    let svc = RateLimitLayer::new(limit(
        "per-user",
        Quota::per_hour(1).unwrap(),
        Subject.or(PeerIp::new()),
        &clock,
    ))
    .layer(inner);
    assert_eq!(
        send(&svc, from([5, 5, 5, 5])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, from([5, 5, 5, 5])).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&svc, from([5, 5, 5, 6])).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn custom_rejection_handler_keeps_the_headers() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit("g", Quota::per_hour(1).unwrap(), Global, &clock))
        .on_rejection(|r: Rejection| {
            let mut res = r.into_response();
            *res.body_mut() = Bytes::from_static(b"slow down");
            res
        })
        .layer(inner);
    send(&svc, Request::new(())).await;
    let res = send(&svc, Request::new(())).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("3600"));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "slow down");
}

#[tokio::test]
async fn api_key_and_route_keys() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-key-route",
        Quota::per_hour(1).unwrap(),
        (Header::api_key(), Route),
        &clock,
    ))
    .layer(inner);
    let req = |key: &str, path: &str| {
        Request::get(path)
            .header("x-api-key", key)
            .body(())
            .unwrap()
    };
    assert_eq!(send(&svc, req("k1", "/a")).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, req("k1", "/b")).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, req("k2", "/a")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, req("k1", "/a")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Through the layer: 20 000 distinct clients against a cap of 1 000.
#[tokio::test]
async fn key_cap_is_respected_through_the_layer() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let limiter = Limiter::builder(Quota::per_hour(5).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build();
    let limit = Limit::new("per-ip", limiter.clone(), PeerIp::new());
    let svc = RateLimitLayer::new(limit).layer(inner);
    let mut refused = 0;
    for i in 0..20_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        let res = send(&svc, from([10, a, b, c])).await;
        refused += usize::from(res.status() == StatusCode::TOO_MANY_REQUESTS);
        assert!(limiter.len() <= 1_000);
    }
    // The clients are 79 IPv4 /24s (78 whole, then 32 addresses). A /24
    // holds at most 64 keys (1 000 / 16, at least 64), then its new
    // clients share its own overflow budget of 16 × 5 = 80; from the 16th
    // /24 on the cap of 1 000 is full, and every new client shares its
    // /24's overflow budget.
    //   /24s 0-14: 64 tracked + 80;  /24 15: 40 tracked + 80;
    //   /24s 16-77: 80 each;         /24 78: its 32 addresses.
    let allowed = 15 * (64 + 80) + (40 + 80) + 62 * 80 + 32;
    assert_eq!(calls.load(Ordering::SeqCst), allowed);
    assert_eq!(refused, 20_000 - allowed);
    assert!(limiter.networks() <= 1_000);
    // Once the tracked keys are idle, new clients take their room at once,
    // without a purge.
    clock.advance(Duration::from_secs(3600));
    let overflowed = limiter.overflowed();
    // (From 100 /24s: one /24 would hold only 64 of them.)
    for i in 0..100u8 {
        let res = send(&svc, from([10, 200, i, 1])).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(limiter.overflowed(), overflowed);
    assert!(limiter.len() <= 1_000);
}

/// The seed's quota: 5 failed logins, then one more every 15 minutes.
fn login_quota() -> Quota {
    Quota::with_period(Duration::from_secs(15 * 60))
        .unwrap()
        .allow_burst(5)
        .unwrap()
}

fn login_limit(clock: &FakeRelativeClock) -> Limit {
    limit("login", login_quota(), PeerIp::new(), clock)
}

#[tokio::test]
async fn failed_attempts_counts_only_failures_then_locks_until_the_window_passes() {
    let clock = FakeRelativeClock::default();
    let (ok, ok_calls) = counting(StatusCode::OK);
    let (bad, bad_calls) = counting(StatusCode::UNAUTHORIZED);
    let layer = RateLimitLayer::failed_attempts(login_limit(&clock));
    let good_login = layer.layer(ok);
    let bad_login = layer.layer(bad);
    let ip = [192, 0, 2, 50];

    // Successful logins never count.
    for _ in 0..10 {
        assert_eq!(send(&good_login, from(ip)).await.status(), StatusCode::OK);
    }
    for _ in 0..5 {
        assert_eq!(
            send(&bad_login, from(ip)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Budget spent: 429 before the handler, even with the right password.
    let res = send(&good_login, from(ip)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("900"));
    assert_eq!(header(&res, "ratelimit"), Some(r#""login";r=0;t=900"#));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""login";q=5;w=4500"#)
    );
    assert_eq!(
        send(&bad_login, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        (
            ok_calls.load(Ordering::SeqCst),
            bad_calls.load(Ordering::SeqCst)
        ),
        (10, 5)
    );
    // Another client is unaffected.
    assert_eq!(
        send(&bad_login, from([192, 0, 2, 51])).await.status(),
        StatusCode::UNAUTHORIZED
    );

    clock.advance(Duration::from_secs(15 * 60 - 1));
    let res = send(&good_login, from(ip)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(&good_login, from(ip)).await.status(), StatusCode::OK);
    // One more failure is allowed per window.
    assert_eq!(
        send(&bad_login, from(ip)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&bad_login, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn concurrent_attempts_cannot_overrun_the_budget() {
    let clock = FakeRelativeClock::default();
    let (bad, calls) = counting(StatusCode::UNAUTHORIZED);
    let mut svc = RateLimitLayer::failed_attempts(login_limit(&clock)).layer(bad);
    // Start 20 attempts before any completes.
    let mut pending = Vec::new();
    for _ in 0..20 {
        svc.ready().await.unwrap();
        pending.push(svc.call(from([192, 0, 2, 60])));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let mut statuses = Vec::new();
    for fut in pending {
        statuses.push(fut.await.unwrap().status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
}

#[tokio::test]
async fn failure_predicate_and_marker_extension() {
    let clock = FakeRelativeClock::default();
    // A login handler answering 200 with a FailedAttempt marker.
    let marked = service_fn(|_: Request<()>| async {
        let mut res = Response::new(String::from(r#"{"ok":false}"#));
        res.extensions_mut().insert(FailedAttempt);
        Ok::<_, Infallible>(res)
    });
    let svc = RateLimitLayer::failed_attempts(limit(
        "login",
        Quota::per_hour(2).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .layer(marked);
    let ip = [192, 0, 2, 70];
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // A custom predicate: 403 counts, 401 does not.
    let (forbidden, _) = counting(StatusCode::FORBIDDEN);
    let (unauthorized, _) = counting(StatusCode::UNAUTHORIZED);
    let layer = RateLimitLayer::failed_attempts(limit(
        "x",
        Quota::per_hour(1).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .failure_when(|res: &http::response::Parts| res.status == StatusCode::FORBIDDEN);
    let (f, u) = (layer.layer(forbidden), layer.layer(unauthorized));
    for _ in 0..3 {
        assert_eq!(send(&u, from(ip)).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(send(&f, from(ip)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&u, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn grpc_unauthenticated_counts_as_a_failure() {
    let clock = FakeRelativeClock::default();
    let grpc_denied = service_fn(|_: Request<()>| async {
        let res = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "16")
            .body(String::new())
            .unwrap();
        Ok::<_, Infallible>(res)
    });
    let svc = RateLimitLayer::failed_attempts(limit(
        "login",
        Quota::per_hour(1).unwrap(),
        Global,
        &clock,
    ))
    .layer(grpc_denied);
    let grpc = || {
        Request::post("/auth.Login/Login")
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(())
            .unwrap()
    };
    assert_eq!(header(&send(&svc, grpc()).await, "grpc-status"), Some("16"));
    let res = send(&svc, grpc()).await;
    assert_eq!(header(&res, "grpc-status"), Some("8"));
}

#[tokio::test]
async fn inner_errors_do_not_count() {
    let clock = FakeRelativeClock::default();
    let failing = service_fn(|_: Request<()>| async { Err::<Response<String>, _>("boom") });
    let svc = RateLimitLayer::failed_attempts(limit(
        "login",
        Quota::per_hour(1).unwrap(),
        Global,
        &clock,
    ))
    .layer(failing);
    for _ in 0..3 {
        assert_eq!(
            svc.clone().oneshot(Request::new(())).await.unwrap_err(),
            "boom"
        );
    }
}

#[tokio::test]
async fn failed_attempts_with_two_limits_refunds_what_a_refused_request_took() {
    let clock = FakeRelativeClock::default();
    let (bad, calls) = counting(StatusCode::UNAUTHORIZED);
    let (good, _) = counting(StatusCode::OK);
    let layer = RateLimitLayer::failed_attempts(limit(
        "ip",
        Quota::per_hour(3).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .limit(limit(
        "account",
        Quota::per_hour(2).unwrap(),
        Header::new(header::HeaderName::from_static("x-user")),
        &clock,
    ))
    .remaining_headers(true);
    let (bad, good) = (layer.layer(bad), layer.layer(good));
    let login = |user: &str| {
        let mut req = from([192, 0, 2, 80]);
        req.headers_mut().insert("x-user", user.parse().unwrap());
        req
    };

    let res = send(&good, login("alice")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A success gives its units back: both budgets are full.
    assert_eq!(
        header(&res, "ratelimit"),
        Some(r#""ip";r=3;t=0, "account";r=2;t=0"#)
    );
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""ip";q=3;w=3600, "account";q=2;w=3600"#)
    );
    let res = send(&bad, login("alice")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&res, "ratelimit"),
        Some(r#""ip";r=2;t=1200, "account";r=1;t=1800"#)
    );
    assert_eq!(
        send(&bad, login("alice")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // alice's account is locked; the IP unit this request took is given back.
    let res = send(&bad, login("alice")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "ratelimit"), Some(r#""account";r=0;t=1800"#));
    // So the IP has one failure left, for bob.
    assert_eq!(
        send(&bad, login("bob")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = send(&bad, login("carol")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "ratelimit"), Some(r#""ip";r=0;t=1200"#));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// `t` is the time until more quota is made available (draft -10 §4.1.2),
/// not until the whole quota is back: 100 per minute gives one request back
/// every 0.6 s.
#[tokio::test]
async fn ratelimit_t_is_the_time_until_more_quota_not_until_a_full_reset() {
    let clock = FakeRelativeClock::default();
    let (inner, _) = counting(StatusCode::OK);
    let svc = RateLimitLayer::new(limit(
        "per-ip",
        Quota::per_minute(100).unwrap(),
        PeerIp::new(),
        &clock,
    ))
    .remaining_headers(true)
    .layer(inner);
    let ip = [192, 0, 2, 90];
    for _ in 0..2 {
        send(&svc, from(ip)).await;
    }
    // Three spent: back to whole in 1.8 s, but one more in 0.6 s.
    let res = send(&svc, from(ip)).await;
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=97;t=1"#));
    for _ in 0..97 {
        assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
    }
    // On a 429, Retry-After and t agree: rounded up, never early.
    clock.advance(Duration::from_millis(100));
    let res = send(&svc, from(ip)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-ip";r=0;t=1"#));
    clock.advance(Duration::from_millis(499));
    assert_eq!(
        send(&svc, from(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(send(&svc, from(ip)).await.status(), StatusCode::OK);
}

fn login_limiter(clock: &FakeRelativeClock, max_keys: usize) -> Limiter {
    Limiter::builder(login_quota())
        .max_keys(max_keys)
        .clock(clock.clone())
        .build()
}

/// Review finding (high): at the key cap, successful logins of untracked
/// clients used up the shared overflow budget (they were never refunded
/// there), locking every new client out: [200 × 5, 429 × 5].
#[tokio::test]
async fn at_the_key_cap_successful_logins_never_lock_new_clients_out() {
    let clock = FakeRelativeClock::default();
    let (ok, ok_calls) = counting(StatusCode::OK);
    let (bad, _) = counting(StatusCode::UNAUTHORIZED);
    let limiter = login_limiter(&clock, 16);
    let layer =
        RateLimitLayer::failed_attempts(Limit::new("login", limiter.clone(), PeerIp::new()));
    let (good_login, bad_login) = (layer.layer(ok), layer.layer(bad));
    for i in 0..16 {
        let res = send(&bad_login, from([198, 51, 100, i])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(limiter.len(), 16);

    let mut statuses = Vec::new();
    for i in 0..200 {
        for _ in 0..2 {
            let res = send(&good_login, from([203, 0, 113, i])).await;
            statuses.push(res.status().as_u16());
        }
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(ok_calls.load(Ordering::SeqCst), 400);
    assert_eq!(limiter.len(), 16);
    assert!(limiter.overflowed() >= 400);
}

/// At the cap, failures of untracked clients count against the overflow
/// budget, successes hold a unit only while they run.
#[tokio::test]
async fn at_the_key_cap_only_failures_spend_the_overflow_budget() {
    let clock = FakeRelativeClock::default();
    let (ok, _) = counting(StatusCode::OK);
    let (bad, _) = counting(StatusCode::UNAUTHORIZED);
    let limiter = Limiter::builder(login_quota())
        .max_keys(1)
        .overflow_quota(login_quota())
        .clock(clock.clone())
        .build();
    let layer = RateLimitLayer::failed_attempts(Limit::new("login", limiter, PeerIp::new()));
    let (good_login, bad_login) = (layer.layer(ok), layer.layer(bad));
    send(&bad_login, from([198, 51, 100, 1])).await;

    let mut statuses = Vec::new();
    for i in 0..8u8 {
        statuses.push(
            send(&good_login, from([203, 0, 113, i]))
                .await
                .status()
                .as_u16(),
        );
        statuses.push(
            send(&bad_login, from([203, 0, 113, i]))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 401, 200, 401, 200, 401, 200, 401, 200, 401, 429, 429, 429, 429, 429, 429]
    );
}

/// An inner service whose response waits for `gate`.
fn gated(
    status: StatusCode,
    gate: Arc<tokio::sync::Notify>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(move |_: Request<()>| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            let mut res = Response::new(String::new());
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    })
}

/// Review finding (low): a successful login held across a refill, then
/// five failures, then the success's refund forgave one of them:
/// [401 × 6, 429] against a burst of 5.
#[tokio::test]
async fn a_slow_success_cannot_forgive_a_failure() {
    let clock = FakeRelativeClock::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let (bad, _) = counting(StatusCode::UNAUTHORIZED);
    let layer = RateLimitLayer::failed_attempts(login_limit(&clock));
    let mut slow_login = layer.layer(gated(StatusCode::OK, gate.clone()));
    let bad_login = layer.layer(bad);
    let ip = [192, 0, 2, 99];

    slow_login.ready().await.unwrap();
    let slow = slow_login.call(from(ip));
    clock.advance(Duration::from_secs(75 * 60));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(&bad_login, from(ip)).await.status().as_u16());
    }
    gate.notify_one();
    assert_eq!(slow.await.unwrap().status(), StatusCode::OK);
    for _ in 0..2 {
        statuses.push(send(&bad_login, from(ip)).await.status().as_u16());
    }
    // The slow login held one of the five units while it ran.
    assert_eq!(statuses, [401, 401, 401, 401, 429, 401, 429]);
}

/// A request whose response future is dropped counts as a failure.
#[tokio::test]
async fn a_dropped_attempt_counts_as_a_failure() {
    let clock = FakeRelativeClock::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let limiter = login_limiter(&clock, 10);
    let mut svc =
        RateLimitLayer::failed_attempts(Limit::new("login", limiter.clone(), PeerIp::new()))
            .layer(gated(StatusCode::OK, gate));
    for _ in 0..2 {
        svc.ready().await.unwrap();
        drop(svc.call(from([192, 0, 2, 98])));
    }
    let ip = std::net::IpAddr::from([192, 0, 2, 98]);
    assert_eq!(limiter.state(&IpKey::from(ip)).remaining(), 3);
}

/// A request from an IPv6 address.
fn from_v6(ip: u128) -> Request<()> {
    let mut req = Request::get("/").body(()).unwrap();
    let ip = std::net::Ipv6Addr::from(ip);
    req.extensions_mut().insert(SocketAddr::from((ip, 40_000)));
    req
}

/// `2001:db8:<net>::/48`, subnet `/64` number `subnet`, host 1.
fn v6(net: u16, subnet: u16) -> u128 {
    (0x2001_0db8_u128 << 96) | (u128::from(net) << 80) | (u128::from(subnet) << 64) | 1
}

/// Review finding (issue "Hardening II"): keys are per /64 under one global
/// cap, so a single /48 cycling through its /64s filled the cap and spent
/// the shared overflow budget: every new client of every other network was
/// refused. A /48 now holds at most a sixteenth of the cap, then spends its
/// own overflow budget only.
#[tokio::test]
async fn a_48_flood_cannot_starve_other_networks() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let limiter = Limiter::builder(Quota::per_hour(5).unwrap())
        .max_keys(5_000)
        .clock(clock.clone())
        .build();
    let limit = Limit::new("per-ip", limiter.clone(), PeerIp::new());
    let svc = RateLimitLayer::new(limit).layer(inner);

    // 20 000 /64s of 2001:db8:bad::/48, no time passing.
    for subnet in 0..20_000u16 {
        let _ = send(&svc, from_v6(v6(0xbad, subnet))).await;
        assert!(limiter.len() <= 5_000 / 16);
    }
    // 312 tracked /64s (5 000 / 16), then the /48's own overflow budget of
    // 16 × 5.
    assert_eq!(calls.load(Ordering::SeqCst), 312 + 80);
    assert_eq!(limiter.len(), 312);
    let res = send(&svc, from_v6(v6(0xbad, 60_000))).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // 1 000 clients of other /48s, and IPv4 clients, keep their own budget
    // of 5 each.
    for net in 0..1_000u16 {
        for n in 0..5 {
            let res = send(&svc, from_v6(v6(net, 1))).await;
            assert_eq!(res.status(), StatusCode::OK, "/48 {net}, request {n}");
        }
        let res = send(&svc, from_v6(v6(net, 1))).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    for n in 0..5 {
        let res = send(&svc, from([192, 0, 2, 7])).await;
        assert_eq!(res.status(), StatusCode::OK, "IPv4 request {n}");
    }
    assert!(limiter.len() <= 5_000);
}

/// When many networks fill the cap anyway, each flooding network spends its
/// own overflow budget: a client of a new network still gets through.
#[tokio::test]
async fn at_a_full_cap_each_network_has_its_own_overflow_budget() {
    let clock = FakeRelativeClock::default();
    let (inner, calls) = counting(StatusCode::OK);
    let limiter = Limiter::builder(Quota::per_hour(5).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build();
    let limit = Limit::new("per-ip", limiter.clone(), PeerIp::new());
    let svc = RateLimitLayer::new(limit).layer(inner);

    // 200 /48s × 200 /64s: the cap (1 000, 64 per /48) is full after 16 of
    // them, and every flooding /48 exhausts its overflow budget.
    for net in 0..200u16 {
        for subnet in 0..200u16 {
            let _ = send(&svc, from_v6(v6(net, subnet))).await;
        }
    }
    assert_eq!(limiter.len(), 1_000);
    let flood = calls.load(Ordering::SeqCst);
    assert_eq!(flood, 1_000 + 200 * 80);
    for net in [0, 15, 16, 199] {
        let res = send(&svc, from_v6(v6(net, 9_999))).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "/48 {net}");
    }

    // A new client of a new network: untracked (the cap is full), but its
    // network's overflow budget is whole.
    for n in 0..5 {
        let res = send(&svc, from_v6(v6(0xcafe, 1))).await;
        assert_eq!(res.status(), StatusCode::OK, "request {n}");
    }
    let res = send(&svc, from([198, 51, 100, 1])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(limiter.networks() <= 1_000);
}

/// A million distinct /64s over 50 000 /48s, with and without time
/// passing: the tracked keys and networks, counted entry by entry, never
/// exceed the documented caps (`max_keys` each), and everything idle is
/// dropped once the flood is over.
#[test]
fn a_million_key_flood_keeps_keys_and_networks_under_the_cap() {
    const CAP: usize = 5_000;
    let clock = FakeRelativeClock::default();
    let limiter = Limiter::builder(Quota::per_second(5).unwrap())
        .max_keys(CAP)
        .clock(clock.clone())
        .build();
    let peer = PeerIp::new();
    let check = |ip: u128| {
        let key = peer.key(std::net::Ipv6Addr::from(ip).into());
        let hashed = super::limiter::Hashed {
            key: limiter.hash(&key),
            network: peer.network(&key),
        };
        limiter.check_hashed(hashed).is_ok()
    };
    let mut allowed = 0usize;
    for i in 0u32..1_000_000 {
        let net = (i % 50_000) as u16;
        let subnet = (i / 50_000) as u16;
        allowed += usize::from(check(v6(net, subnet)));
        assert!(limiter.len() <= CAP && limiter.networks() <= CAP);
        if i % 100_000 == 99_999 {
            let (keys, networks) = limiter.counted();
            assert_eq!((keys, networks), (limiter.len(), limiter.networks()));
            assert!(keys <= CAP && networks <= CAP);
            if i < 500_000 {
                clock.advance(Duration::from_secs(1));
            }
        }
    }
    assert!(allowed > CAP, "allowed {allowed}");
    assert!(allowed < 1_000_000 / 2, "allowed {allowed}");
    clock.advance(Duration::from_secs(60));
    limiter.purge();
    assert!(limiter.is_empty());
    assert_eq!(limiter.networks(), 0);
    assert_eq!(limiter.counted(), (0, 0));
}
