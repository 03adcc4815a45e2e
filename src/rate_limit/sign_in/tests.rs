use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, Request, StatusCode};
use tokio::task::JoinSet;
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::rate_limit::Quota;

const KEY: [u8; 32] = [9; 32];

fn devices() -> DeviceCookies {
    DeviceCookies::new(DeviceKey::from_bytes(&KEY).unwrap())
}

fn limiter_with(store: MemorySignInStore) -> SignInLimiter {
    SignInLimiter::builder()
        .store(store)
        .device_cookies(devices())
        .build()
        .unwrap()
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A flood address: 100.64.0.0 onwards, 256 per `/24`.
fn flood_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i))
}

/// A user's usual address.
fn user_ip(u: u32) -> IpAddr {
    ip(192, 168, (u / 250) as u8, (u % 250) as u8 + 1)
}

fn cookie_headers(cookie: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(cookie) = cookie {
        let value = format!("other=1; __Host-device={cookie}");
        headers.insert(COOKIE, HeaderValue::try_from(value).unwrap());
    }
    headers
}

/// The value of the device cookie set by `parts`, if any.
fn set_cookie(parts: &response::Parts) -> Option<String> {
    let set = parts.headers.get(SET_COOKIE)?.to_str().ok()?;
    let pair = set.split(';').next()?;
    Some(pair.split_once('=')?.1.to_owned())
}

/// One sign-in through the limiter without a layer: how it was counted
/// and the device cookie issued, or the refusal.
async fn sign_in(
    limiter: &SignInLimiter,
    client: IpAddr,
    account: &str,
    correct: bool,
    cookie: Option<&str>,
) -> Result<(Trust, Option<String>), SignInRefused> {
    let handle = limiter.begin(IpKey::from(client), &cookie_headers(cookie), false);
    let trust = handle.attempt(account).await?;
    let (mut parts, ()) = Response::new(()).into_parts();
    let outcome = if correct {
        Outcome::Success
    } else {
        parts.status = StatusCode::UNAUTHORIZED;
        Outcome::Failure
    };
    handle.finish(Some(&mut parts), outcome).unwrap();
    Ok((trust, set_cookie(&parts)))
}

fn budget_of(refused: &SignInRefused) -> String {
    let limit = refused.response.headers()["ratelimit"].to_str().unwrap();
    limit
        .split(';')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

#[tokio::test]
async fn untrusted_pairs_get_the_seeds_5_per_15_minutes() {
    let clock = FakeRelativeClock::default();
    let limiter = limiter_with(MemorySignInStore::builder().clock(clock.clone()).build());
    let me = ip(192, 0, 2, 1);
    for _ in 0..5 {
        let (trust, cookie) = sign_in(&limiter, me, "alice", false, None).await.unwrap();
        assert_eq!((trust, cookie), (Trust::Untrusted, None));
    }
    let refused = sign_in(&limiter, me, "alice", true, None)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(900)));
    assert_eq!(budget_of(&refused), "sign-in");
    let headers = refused.response.headers();
    assert_eq!(headers["retry-after"], "900");
    assert_eq!(
        headers["ratelimit-policy"],
        r#""sign-in-device";q=5;w=4500, "sign-in-known";q=5;w=4500, "sign-in";q=5;w=4500, "sign-in-account";q=20;w=3600, "sign-in-client";q=100;w=900"#
    );
    // Same account, other case and spaces: the same budget.
    assert!(sign_in(&limiter, me, " ALICE ", true, None).await.is_err());
    // Another account from the same client, the same account from another.
    assert!(sign_in(&limiter, me, "bob", true, None).await.is_ok());
    assert!(sign_in(&limiter, ip(192, 0, 2, 2), "alice", true, None)
        .await
        .is_ok());
    clock.advance(Duration::from_secs(900));
    assert!(sign_in(&limiter, me, "alice", true, None).await.is_ok());
}

#[tokio::test]
async fn one_account_cannot_be_guessed_from_a_botnet() {
    let limiter = limiter_with(MemorySignInStore::new());
    for i in 0..20 {
        sign_in(&limiter, flood_ip(i * 256), "alice", false, None)
            .await
            .unwrap();
    }
    let refused = sign_in(&limiter, flood_ip(99_999), "alice", true, None)
        .await
        .unwrap_err();
    assert_eq!(budget_of(&refused), "sign-in-account");
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(180)));
}

#[tokio::test]
async fn one_client_cannot_spray_many_accounts() {
    let limiter = limiter_with(MemorySignInStore::new());
    let me = ip(192, 0, 2, 1);
    for i in 0..100 {
        sign_in(&limiter, me, &format!("user{i}"), false, None)
            .await
            .unwrap();
    }
    let refused = sign_in(&limiter, me, "user100", true, None)
        .await
        .unwrap_err();
    assert_eq!(budget_of(&refused), "sign-in-client");
}

#[tokio::test]
async fn a_device_cookie_is_not_locked_out_by_floods_but_by_its_own_failures() {
    let limiter = limiter_with(MemorySignInStore::new());
    let home = ip(192, 0, 2, 1);
    let (_, cookie) = sign_in(&limiter, home, "alice", true, None).await.unwrap();
    let cookie = cookie.expect("a device cookie on success");
    // A botnet spends alice's account budget; a spray from the café's
    // address spends that client's budget.
    for i in 0..20 {
        let _ = sign_in(&limiter, flood_ip(i * 256), "alice", false, None).await;
    }
    let cafe = ip(198, 51, 100, 7);
    for i in 0..100 {
        let _ = sign_in(&limiter, cafe, &format!("victim{i}"), false, None).await;
    }
    assert!(sign_in(&limiter, cafe, "alice", true, None).await.is_err());
    // Alice, from the café, with her device cookie.
    let (trust, renewed) = sign_in(&limiter, cafe, "alice", true, Some(&cookie))
        .await
        .unwrap();
    assert_eq!(trust, Trust::Device);
    let renewed = renewed.expect("a new device cookie on each success");
    assert_ne!(renewed, cookie);
    // Five failures with that cookie lock it out. Its success made the
    // café a known client of alice's: five more count there, then the
    // attempts are untrusted, whose budgets are spent.
    for expected in [Trust::Device, Trust::Known] {
        for _ in 0..5 {
            let (trust, _) = sign_in(&limiter, cafe, "alice", false, Some(&renewed))
                .await
                .unwrap();
            assert_eq!(trust, expected);
        }
    }
    let refused = sign_in(&limiter, cafe, "alice", true, Some(&renewed))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The older cookie is a device of its own.
    let (trust, _) = sign_in(&limiter, cafe, "alice", true, Some(&cookie))
        .await
        .unwrap();
    assert_eq!(trust, Trust::Device);
}

#[tokio::test]
async fn a_device_cookie_of_another_account_or_forged_is_untrusted() {
    let limiter = SignInLimiter::builder()
        .device_cookies(devices())
        .remember_clients(None)
        .build()
        .unwrap();
    let me = ip(192, 0, 2, 1);
    let (_, bobs) = sign_in(&limiter, me, "bob", true, None).await.unwrap();
    let bobs = bobs.unwrap();
    let (trust, _) = sign_in(&limiter, me, "bob", true, Some(&bobs))
        .await
        .unwrap();
    assert_eq!(trust, Trust::Device);
    let (trust, _) = sign_in(&limiter, me, "alice", false, Some(&bobs))
        .await
        .unwrap();
    assert_eq!(
        trust,
        Trust::Untrusted,
        "bob's cookie is no device of alice"
    );
    // Signed with another key.
    let other = DeviceKey::from_bytes(&[1; 32]).unwrap();
    let forged = other.seal(&[3; device::ID_LEN], device::unix_now() + 60, b"bob");
    let (trust, _) = sign_in(&limiter, me, "bob", false, Some(&forged))
        .await
        .unwrap();
    assert_eq!(trust, Trust::Untrusted);
    // Bob's cookie with one character changed.
    let mut tampered = bobs.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (trust, _) = sign_in(&limiter, me, "bob", false, Some(&tampered))
        .await
        .unwrap();
    assert_eq!(trust, Trust::Untrusted);
}

/// Someone with thousands of device cookies for their own account, each
/// failing once, cannot crowd the devices of other accounts out of the cap.
#[tokio::test]
async fn one_accounts_devices_cannot_fill_the_device_budget() {
    let limiter = SignInLimiter::builder()
        .store(MemorySignInStore::builder().max_keys(1_000).build())
        .device_cookies(devices())
        .remember_clients(None)
        .build()
        .unwrap();
    let (_, alices) = sign_in(&limiter, user_ip(1), "alice", true, None)
        .await
        .unwrap();
    let mallory = ip(203, 0, 113, 66);
    let mut cookies = Vec::new();
    for _ in 0..2_000 {
        let (_, cookie) = sign_in(&limiter, mallory, "mallory", true, None)
            .await
            .unwrap();
        cookies.push(cookie.unwrap());
    }
    for cookie in &cookies {
        let _ = sign_in(&limiter, mallory, "mallory", false, Some(cookie)).await;
    }
    let (trust, _) = sign_in(
        &limiter,
        ip(198, 51, 100, 3),
        "alice",
        true,
        alices.as_deref(),
    )
    .await
    .unwrap();
    assert_eq!(trust, Trust::Device);
}

#[tokio::test]
async fn a_known_client_keeps_its_own_budget() {
    let limiter = limiter_with(MemorySignInStore::new());
    let home = ip(192, 0, 2, 1);
    sign_in(&limiter, home, "alice", true, None).await.unwrap();
    for i in 0..20 {
        let _ = sign_in(&limiter, flood_ip(i * 256), "alice", false, None).await;
    }
    assert!(sign_in(&limiter, ip(192, 0, 2, 9), "alice", true, None)
        .await
        .is_err());
    let (trust, _) = sign_in(&limiter, home, "alice", true, None).await.unwrap();
    assert_eq!(trust, Trust::Known);
    // Only alice is known from home.
    let (trust, _) = sign_in(&limiter, home, "bob", true, None).await.unwrap();
    assert_eq!(trust, Trust::Untrusted);
}

#[tokio::test]
async fn a_second_attempt_in_one_request_is_refused() {
    let limiter = limiter_with(MemorySignInStore::new());
    let handle = limiter.begin(IpKey::from(ip(192, 0, 2, 1)), &HeaderMap::new(), false);
    handle.attempt("alice").await.unwrap();
    let refused = handle.attempt("bob").await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // Dropping the handle unsettled counts the held attempt as a failure.
    drop(handle);
    for _ in 0..4 {
        sign_in(&limiter, ip(192, 0, 2, 1), "alice", false, None)
            .await
            .unwrap();
    }
    assert!(sign_in(&limiter, ip(192, 0, 2, 1), "alice", true, None)
        .await
        .is_err());
}

// ---- Through the layer -------------------------------------------------

/// The password check of the test handler.
const HASH_TIME: Duration = Duration::from_millis(100);

/// A sign-in handler: body `account:password`, right password `right`.
async fn handler(req: Request<String>) -> Result<Response<String>, Infallible> {
    let sign_in = req.extensions().get::<SignIn>().cloned().unwrap();
    let (account, password) = req.body().split_once(':').unwrap();
    if let Err(refused) = sign_in.attempt(account).await {
        let response = refused.into_http_response();
        return Ok(response.map(|b| String::from_utf8_lossy(&b).into_owned()));
    }
    tokio::time::sleep(HASH_TIME).await;
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

fn request(client: IpAddr, body: &str) -> Request<String> {
    let mut req = Request::new(body.to_owned());
    req.extensions_mut().insert(SocketAddr::new(client, 40_000));
    req
}

type Svc = tower::util::BoxCloneService<
    Request<String>,
    Response<crate::body::ResponseBody<String>>,
    Infallible,
>;

fn service(limiter: SignInLimiter) -> Svc {
    tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(SignInLayer::new(limiter))
            .service_fn(handler),
    )
}

/// Sends every request at once; the statuses.
async fn concurrently(svc: &Svc, requests: Vec<Request<String>>) -> Vec<StatusCode> {
    let mut set = JoinSet::new();
    for req in requests {
        let svc = svc.clone();
        set.spawn(async move { svc.oneshot(req).await.unwrap().status() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_wrong_attempts_overrun_no_budget() {
    let limiter = limiter_with(
        MemorySignInStore::builder()
            .quota(Budget::Client, Quota::per_hour(10).unwrap())
            .build(),
    );
    let svc = service(limiter);
    let me = ip(192, 0, 2, 1);
    // One account from one client: the pair's 5.
    let statuses = concurrently(&svc, (0..100).map(|_| request(me, "alice:x")).collect()).await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 5);
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 95);
    // Many accounts from another client: that client's 10.
    let other = ip(192, 0, 2, 2);
    let statuses = concurrently(
        &svc,
        (0..100)
            .map(|i| request(other, &format!("user{i}:x")))
            .collect(),
    )
    .await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 10);
    // One account from many clients: the account's 20.
    let statuses = concurrently(
        &svc,
        (0..100)
            .map(|i| request(flood_ip(i * 256), "bob:x"))
            .collect(),
    )
    .await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 20);
}

#[tokio::test(start_paused = true)]
async fn sixty_four_concurrent_correct_sign_ins_from_one_address_are_all_served() {
    let limiter = limiter_with(
        MemorySignInStore::builder()
            // Smaller than 64 on purpose: correct attempts wait for the
            // units in flight instead of being refused.
            .quota(Budget::Client, Quota::per_hour(16).unwrap())
            .build(),
    );
    let svc = service(limiter);
    let office = ip(203, 0, 113, 1);
    let started = tokio::time::Instant::now();
    let statuses = concurrently(
        &svc,
        (0..64)
            .map(|i| request(office, &format!("user{i}:right")))
            .collect(),
    )
    .await;
    assert_eq!(count(&statuses, StatusCode::OK), 64, "{statuses:?}");
    // The same account 64 times at once (5 in flight at a time).
    let statuses = concurrently(
        &svc,
        (0..64).map(|_| request(office, "alice:right")).collect(),
    )
    .await;
    assert_eq!(count(&statuses, StatusCode::OK), 64, "{statuses:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn waiting_is_bounded() {
    let limiter = SignInLimiter::builder().max_waiting(0).build().unwrap();
    let svc = service(limiter);
    let me = ip(192, 0, 2, 1);
    let statuses = concurrently(&svc, (0..8).map(|_| request(me, "alice:right")).collect()).await;
    assert_eq!(count(&statuses, StatusCode::OK), 5);
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 3);
}

#[tokio::test]
async fn the_layer_sets_a_device_cookie_on_success_only() {
    let svc = service(limiter_with(MemorySignInStore::new()));
    let me = ip(192, 0, 2, 1);
    let res = svc.clone().oneshot(request(me, "alice:x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(!res.headers().contains_key(SET_COOKIE));
    let res = svc
        .clone()
        .oneshot(request(me, "alice:right"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("__Host-device="), "{set}");
    assert!(set.ends_with("; Max-Age=2592000; Path=/; HttpOnly; SameSite=Strict; Secure"));
    // The cookie is sent back: the attempt is trusted.
    let cookie = set.split(';').next().unwrap().to_owned();
    let mut req = request(me, "alice:x");
    req.headers_mut()
        .insert(COOKIE, HeaderValue::try_from(cookie).unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn grpc_refusals_are_resource_exhausted() {
    let svc = service(limiter_with(MemorySignInStore::new()));
    let me = ip(192, 0, 2, 1);
    let grpc = || {
        let mut req = request(me, "alice:x");
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        req.headers_mut()
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
        req
    };
    for _ in 0..5 {
        svc.clone().oneshot(grpc()).await.unwrap();
    }
    let res = svc.oneshot(grpc()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "8");
}

#[tokio::test]
async fn a_failure_without_a_reported_account_is_a_500() {
    let svc = ServiceBuilder::new()
        .layer(SignInLayer::new(limiter_with(MemorySignInStore::new())))
        .service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(String::new())
                    .unwrap(),
            )
        });
    let res = svc
        .clone()
        .oneshot(request(ip(192, 0, 2, 1), ""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // No peer address: 500 before the handler.
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// A store that is down.
#[derive(Debug)]
struct Down;

impl SignInStore for Down {
    fn quota(&self, budget: Budget) -> Quota {
        budget.default_quota()
    }

    fn hold<'a>(
        &'a self,
        _: &'a [BudgetKey<'a>],
    ) -> StoreFuture<'a, Result<Box<dyn HeldUnits>, HoldError>> {
        Box::pin(async {
            Err(HoldError::Unavailable(StoreError(
                "connection refused".into(),
            )))
        })
    }

    fn remember(&self, _: BudgetKey<'_>, _: Duration) {}

    fn is_known<'a>(&'a self, _: &'a [u8]) -> StoreFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_or_hangs_is_a_503() {
    let limiter = SignInLimiter::builder()
        .store(Down)
        .remember_clients(None)
        .build()
        .unwrap();
    let svc = service(limiter);
    let res = svc
        .oneshot(request(ip(192, 0, 2, 1), "alice:right"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // `is_known` never answers: the backend deadline answers 503.
    let limiter = SignInLimiter::builder().store(Down).build().unwrap();
    let res = service(limiter)
        .oneshot(request(ip(192, 0, 2, 1), "alice:right"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---- Floods ------------------------------------------------------------

/// `addresses` addresses fail once each (half against the 100 users'
/// accounts, half against random names) while nothing replenishes; then
/// the 100 users, who signed in before, sign in again: half from a new
/// address with their device cookie, half from their usual address
/// without one. All must be served, and memory stays under the caps.
async fn flood(addresses: u32, cap: usize) {
    let clock = FakeRelativeClock::default();
    let store = Arc::new(
        MemorySignInStore::builder()
            .max_keys(cap)
            .max_known(cap)
            .clock(clock.clone())
            .build(),
    );
    let limiter = SignInLimiter::builder()
        .shared_store(store.clone())
        .device_cookies(devices())
        .build()
        .unwrap();
    let mut cookies = Vec::new();
    for u in 0..100 {
        let (_, cookie) = sign_in(&limiter, user_ip(u), &format!("user{u}"), true, None)
            .await
            .unwrap();
        cookies.push(cookie.unwrap());
    }
    let mut guesses = 0u32;
    for i in 0..addresses {
        let account = if i % 2 == 0 {
            format!("user{}", (i / 2) % 100)
        } else {
            format!("guess{i}")
        };
        guesses += u32::from(
            sign_in(&limiter, flood_ip(i), &account, false, None)
                .await
                .is_ok(),
        );
        clock.advance(Duration::from_nanos(1));
    }
    // Each user's account took at most its 20 guesses.
    assert!(guesses <= addresses / 2 + 100 * 20, "{guesses}");
    let untrusted = sign_in(&limiter, ip(198, 51, 100, 1), "user3", true, None).await;
    assert!(
        untrusted.is_err(),
        "the flooded accounts are closed to strangers"
    );

    for budget in Budget::ALL {
        assert!(store.limiter(budget).len() <= cap, "{budget:?}");
    }
    assert!(store.known_len() <= cap);
    let mut served = 0;
    for u in 0..100 {
        let result = if u % 2 == 0 {
            sign_in(
                &limiter,
                ip(198, 51, 100, 200),
                &format!("user{u}"),
                true,
                Some(&cookies[u as usize]),
            )
            .await
        } else {
            sign_in(&limiter, user_ip(u), &format!("user{u}"), true, None).await
        };
        served += usize::from(result.is_ok());
    }
    assert_eq!(served, 100);
}

#[tokio::test]
async fn a_flood_of_failing_addresses_does_not_lock_out_known_users() {
    flood(100_000, 10_000).await;
}

/// The issue's scenario at full size: one million addresses against the
/// default caps (about a minute in a debug build; run with `--ignored`).
#[tokio::test]
#[ignore = "a million addresses: run with --ignored"]
async fn a_million_failing_addresses_do_not_lock_out_known_users() {
    flood(1_000_000, DEFAULT_SIGN_IN_KEYS).await;
}

/// Behind a trusted proxy, clients are keyed by the forwarded address.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_keyed_by_their_forwarded_address() {
    use crate::rate_limit::{ClientIp, TrustedProxies};
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let svc = ServiceBuilder::new()
        .layer(
            SignInLayer::new(limiter_with(MemorySignInStore::new()))
                .client_key(ClientIp::new(proxies)),
        )
        .service_fn(handler);
    let via_proxy = |client: &'static str| {
        let mut req = request(ip(10, 0, 0, 1), "alice:x");
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_static(client));
        req
    };
    for _ in 0..5 {
        let res = svc.clone().oneshot(via_proxy("203.0.113.5")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = svc.clone().oneshot(via_proxy("203.0.113.5")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client of the same proxy has its own (client, account) budget.
    let res = svc.oneshot(via_proxy("198.51.100.9")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn remaining_headers_show_what_each_budget_of_the_attempt_has_left() {
    let clock = FakeRelativeClock::default();
    let limiter = SignInLimiter::builder()
        .store(MemorySignInStore::builder().clock(clock).build())
        .device_cookies(devices())
        .remaining_headers(true)
        .build()
        .unwrap();
    let svc = service(limiter);
    let me = ip(192, 0, 2, 1);
    let res = svc.clone().oneshot(request(me, "alice:x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["ratelimit"],
        r#""sign-in";r=4;t=900, "sign-in-account";r=19;t=180, "sign-in-client";r=99;t=9"#
    );
    assert!(res.headers().contains_key("ratelimit-policy"));
    let res = svc
        .clone()
        .oneshot(request(me, "alice:right"))
        .await
        .unwrap();
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let mut req = request(me, "alice:x");
    req.headers_mut()
        .insert(COOKIE, HeaderValue::try_from(cookie).unwrap());
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers()["ratelimit"], r#""sign-in-device";r=4;t=900"#);
    // Off by default.
    let quiet = service(limiter_with(MemorySignInStore::new()));
    let res = quiet.oneshot(request(me, "alice:x")).await.unwrap();
    assert!(!res.headers().contains_key("ratelimit"));
}
