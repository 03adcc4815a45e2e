//! Rate limits on a real axum server (peer address from
//! `into_make_service_with_connect_info`) driven with reqwest, and on a
//! tonic server: the seed's "5 failed logins per 15 minutes" scenario,
//! spoofed and trusted `X-Forwarded-For`, per-IP and per-user limits
//! stacked around `AuthLayer`, and gRPC `RESOURCE_EXHAUSTED`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use tokio_stream::wrappers::TcpListenerStream;
use tower_auth::rate_limit::governor::clock::FakeRelativeClock;
use tower_auth::rate_limit::{
    ClientIp, KeyExtractor, Limit, Limiter, PeerIp, Quota, RateLimitLayer, Subject, TrustedProxies,
};
use tower_auth::{AuthLayer, Identity};

async fn serve(app: Router) -> String {
    let (listener, addr) = listener().await;
    spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

fn limiter(quota: Quota, clock: &FakeRelativeClock) -> Limiter {
    Limiter::builder(quota).clock(clock.clone()).build()
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn per_ip_limit_over_tcp_with_headers() {
    let clock = FakeRelativeClock::default();
    let per_ip = Limit::new(
        "per-ip",
        limiter(Quota::per_minute(2).unwrap(), &clock),
        PeerIp::new(),
    );
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(per_ip).remaining_headers(true));
    let base = serve(app).await;
    let client = reqwest::Client::new();

    let res = client.get(&base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "ratelimit").as_deref(),
        Some(r#""per-ip";r=1;t=30"#)
    );
    assert_eq!(res.text().await.unwrap(), "hello");
    client.get(&base).send().await.unwrap();

    let res = client.get(&base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("30"));
    assert_eq!(
        header(&res, "ratelimit").as_deref(),
        Some(r#""per-ip";r=0;t=30"#)
    );
    assert_eq!(
        header(&res, "ratelimit-policy").as_deref(),
        Some(r#""per-ip";q=2;w=60"#)
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");

    clock.advance(Duration::from_secs(30));
    let res = client.get(&base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn spoofed_forwarded_for_is_ignored_and_trusted_proxies_are_read() {
    let clock = FakeRelativeClock::default();
    let untrusted = ClientIp::new(TrustedProxies::none());
    let trusted = ClientIp::new(TrustedProxies::new(["127.0.0.1/32", "::1"]).unwrap());
    let app = Router::new()
        .route(
            "/direct",
            get(|| async { "ok" }).layer(RateLimitLayer::new(Limit::new(
                "direct",
                limiter(Quota::per_hour(1).unwrap(), &clock),
                untrusted,
            ))),
        )
        .route(
            "/proxied",
            get(|| async { "ok" }).layer(RateLimitLayer::new(Limit::new(
                "proxied",
                limiter(Quota::per_hour(1).unwrap(), &clock),
                trusted,
            ))),
        );
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let get = |path: &str, xff: &str| {
        client
            .get(format!("{base}{path}"))
            .header("x-forwarded-for", xff)
            .send()
    };

    // 127.0.0.1 is not trusted: rotating X-Forwarded-For gets nowhere.
    assert_eq!(get("/direct", "198.51.100.1").await.unwrap().status(), 200);
    assert_eq!(get("/direct", "198.51.100.2").await.unwrap().status(), 429);

    // 127.0.0.1 is our proxy: each client has its own budget, read from the
    // right; what the client wrote on the left is ignored.
    assert_eq!(
        get("/proxied", "6.6.6.6, 198.51.100.1")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(get("/proxied", "198.51.100.2").await.unwrap().status(), 200);
    assert_eq!(
        get("/proxied", "7.7.7.7, 198.51.100.1")
            .await
            .unwrap()
            .status(),
        429
    );
}

/// The seed (`rate_limit_login`): 5 failed logins per 15 minutes per
/// client, then 429 until the window passes.
#[tokio::test]
async fn five_failed_logins_per_15_minutes_then_429() {
    let clock = FakeRelativeClock::default();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let login = move |Json(body): Json<Value>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if body["email"] == "alice@example.com" && body["password"] == "secret" {
                Json(json!({"access_token": "t", "token_type": "bearer"})).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "Invalid credentials"})),
                )
                    .into_response()
            }
        }
    };
    let quota = Quota::with_period(Duration::from_secs(15 * 60))
        .unwrap()
        .allow_burst(5)
        .unwrap();
    let app = Router::new()
        .route("/login", post(login))
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "login",
            limiter(quota, &clock),
            PeerIp::new(),
        )));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let attempt = |password: &'static str| {
        client
            .post(format!("{base}/login"))
            .json(&json!({"email": "alice@example.com", "password": password}))
            .send()
    };

    // Successful logins do not count.
    for _ in 0..3 {
        assert_eq!(attempt("secret").await.unwrap().status(), 200);
    }
    for _ in 0..5 {
        let res = attempt("wrong").await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"],
            "Invalid credentials"
        );
    }
    // Locked: even the right password gets 429, without reaching the handler.
    let res = attempt("secret").await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("900"));
    assert_eq!(
        header(&res, "ratelimit").as_deref(),
        Some(r#""login";r=0;t=900"#)
    );
    assert_eq!(handled.load(Ordering::SeqCst), 8);

    clock.advance(Duration::from_secs(14 * 60));
    let res = attempt("wrong").await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("60"));

    clock.advance(Duration::from_secs(60));
    assert_eq!(attempt("secret").await.unwrap().status(), 200);
    assert_eq!(handled.load(Ordering::SeqCst), 9);
}

/// The failed-login limiter at its key cap, behind a trusted proxy: once
/// the cap is full of clients who failed, new clients who log in
/// successfully are never refused (their attempts do not spend the shared
/// overflow budget), while failures of new clients do.
#[tokio::test]
async fn failed_login_limiter_at_its_key_cap_still_lets_good_logins_in() {
    let clock = FakeRelativeClock::default();
    let login = |Json(body): Json<Value>| async move {
        if body["password"] == "secret" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    };
    let quota = Quota::with_period(Duration::from_secs(15 * 60))
        .unwrap()
        .allow_burst(5)
        .unwrap();
    let limiter = Limiter::builder(quota)
        .max_keys(16)
        .overflow_quota(quota)
        .clock(clock.clone())
        .build();
    let proxies = TrustedProxies::new(["127.0.0.1/32", "::1"]).unwrap();
    let app = Router::new()
        .route("/login", post(login))
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "login",
            limiter.clone(),
            ClientIp::new(proxies),
        )));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let attempt = |client_ip: String, password: &'static str| {
        client
            .post(format!("{base}/login"))
            .header("x-forwarded-for", client_ip)
            .json(&json!({"password": password}))
            .send()
    };

    for i in 0..16 {
        let res = attempt(format!("198.51.100.{i}"), "wrong").await.unwrap();
        assert_eq!(res.status(), 401);
    }
    assert_eq!(limiter.len(), 16);
    for i in 0..30 {
        let res = attempt(format!("203.0.113.{i}"), "secret").await.unwrap();
        assert_eq!(res.status(), 200, "new client {i}");
    }
    // Failures of untracked clients share one budget of 5.
    let mut statuses = Vec::new();
    for i in 30..37 {
        let res = attempt(format!("203.0.113.{i}"), "wrong").await.unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    // The tracked clients' failures are idle after 75 minutes: their room
    // goes to new clients at once.
    clock.advance(Duration::from_secs(75 * 60));
    let res = attempt("192.0.2.1".into(), "wrong").await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(limiter.len(), 1);
}

/// Plain hyper: the per-connection service inserts the peer address.
#[tokio::test]
async fn plain_hyper_inserts_the_peer_address() {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let layer = RateLimitLayer::new(Limit::new(
        "per-ip",
        Quota::per_hour(1).unwrap(),
        PeerIp::new(),
    ));
    let (listener, addr) = listener().await;
    spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(peer);
                    req
                })
                .layer(layer.clone())
                .service_fn(|_: http::Request<Incoming>| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(bytes::Bytes::from("hi"))))
                });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let first = raw_http(addr, request).await;
    assert_eq!((status_of(&first), body_of(&first)), (200, "hi"));
    // A new connection from the same IP shares the budget.
    let second = raw_http(addr, request).await;
    assert_eq!(status_of(&second), 429);
    assert!(second
        .to_ascii_lowercase()
        .contains("\r\nretry-after: 3600\r\n"));
}

async fn whoami(identity: Option<Identity>) -> String {
    identity.map_or_else(|| "anonymous".into(), |i| i.subject().to_owned())
}

/// Per IP before authentication, per user after it: anonymous requests
/// fall back to their IP for the per-user limit.
#[tokio::test]
async fn per_ip_and_per_user_limits_around_auth_layer() {
    let clock = FakeRelativeClock::default();
    let per_ip = Limit::new(
        "per-ip",
        limiter(Quota::per_hour(6).unwrap(), &clock),
        PeerIp::new(),
    );
    let per_user = Limit::new(
        "per-user",
        limiter(Quota::per_hour(2).unwrap(), &clock),
        Subject.or(PeerIp::new()),
    );
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(RateLimitLayer::new(per_user))
        .layer(AuthLayer::optional(bearer()))
        .layer(RateLimitLayer::new(per_ip));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let alice = || {
        client
            .get(format!("{base}/whoami"))
            .bearer_auth(TOKEN)
            .send()
    };
    let anonymous = || client.get(format!("{base}/whoami")).send();

    assert_eq!(alice().await.unwrap().text().await.unwrap(), "1");
    assert_eq!(alice().await.unwrap().status(), 200);
    let res = alice().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(
        header(&res, "ratelimit").as_deref(),
        Some(r#""per-user";r=0;t=1800"#)
    );

    // Anonymous requests have their own per-user budget (by IP).
    assert_eq!(
        anonymous().await.unwrap().text().await.unwrap(),
        "anonymous"
    );
    assert_eq!(anonymous().await.unwrap().status(), 200);
    assert_eq!(anonymous().await.unwrap().status(), 429);

    // Six requests from this IP so far: the per-IP limit now answers first,
    // even for an invalid token (before authentication).
    let res = client
        .get(format!("{base}/whoami"))
        .bearer_auth("bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(
        header(&res, "ratelimit").as_deref(),
        Some(r#""per-ip";r=0;t=600"#)
    );
}

/// A tonic server: the second call gets RESOURCE_EXHAUSTED, keyed by the
/// peer address from tonic's connect info.
#[tokio::test]
async fn grpc_clients_get_resource_exhausted() {
    use tonic::transport::server::TcpConnectInfo;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let peer = PeerIp::from_fn(|ext| {
        ext.get::<TcpConnectInfo>()?
            .remote_addr()
            .map(|addr| addr.ip())
    });
    let layer = RateLimitLayer::new(Limit::new("rpc", Quota::per_hour(1).unwrap(), peer));
    let (listener, addr) = listener().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = || {
        tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        })
    };
    assert!(client.check(check()).await.is_ok());
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "too many requests, retry later");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "3600");
}

/// Issue "Hardening II": a /48 cycling through its /64s with wrong
/// passwords can neither fill the failed-login limiter's key cap nor spend
/// the overflow budget of other networks: its /64s share its own overflow
/// budget once it holds its share of the cap, and clients of other /48s
/// keep their own budgets.
#[tokio::test]
async fn a_48_of_failed_logins_cannot_lock_out_other_networks() {
    let clock = FakeRelativeClock::default();
    let login = |Json(body): Json<Value>| async move {
        if body["password"] == "secret" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    };
    let quota = Quota::with_period(Duration::from_secs(15 * 60))
        .unwrap()
        .allow_burst(5)
        .unwrap();
    let limiter = Limiter::builder(quota)
        .max_keys(64)
        .max_keys_per_network(8)
        .overflow_quota(quota)
        .clock(clock.clone())
        .build();
    let proxies = TrustedProxies::new(["127.0.0.1/32", "::1"]).unwrap();
    let app = Router::new()
        .route("/login", post(login))
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "login",
            limiter.clone(),
            ClientIp::new(proxies),
        )));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let attempt = |client_ip: String, password: &'static str| {
        client
            .post(format!("{base}/login"))
            .header("x-forwarded-for", client_ip)
            .json(&json!({"password": password}))
            .send()
    };

    // 100 /64s of one /48, one wrong password each: 8 tracked, then 5
    // failures from the /48's own overflow budget.
    let mut failed = 0;
    for subnet in 0..100 {
        let res = attempt(format!("2001:db8:bad:{subnet:x}::1"), "wrong")
            .await
            .unwrap();
        failed += usize::from(res.status() == 401);
    }
    assert_eq!(failed, 8 + 5);
    assert_eq!(limiter.len(), 8);

    // Other /48s: their own 5 failures, then 429; and good logins pass.
    for net in 0..20 {
        let ip = format!("2001:db8:{net:x}::1");
        assert_eq!(attempt(ip.clone(), "secret").await.unwrap().status(), 200);
        for _ in 0..5 {
            assert_eq!(attempt(ip.clone(), "wrong").await.unwrap().status(), 401);
        }
        assert_eq!(attempt(ip, "wrong").await.unwrap().status(), 429);
    }
    assert!(limiter.len() <= 64);
    assert!(limiter.networks() <= 64);
}
