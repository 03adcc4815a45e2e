//! `RedisRevocationStore` against a real `redis-server`: two instances
//! sharing logouts through their verified-token caches (pub/sub mirror),
//! refresh races over both, the per-subject cap, and faults.

mod redis_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{header, Request, Response, StatusCode};
use redis_support::RedisServer;
use serde::Deserialize;
use tower::{service_fn, Layer, ServiceExt};
use tower_auth::jwt::{Redemption, Revocable, RevocationStore, TokenIssuer, TokenPair};
use tower_auth::redis::{RedisConnection, RedisRevocationStore};
use tower_auth::AuthLayer;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-redis";

#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
}

fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{nanos}:")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn store(url: &str, prefix: &str) -> RedisRevocationStore {
    RedisRevocationStore::new(
        RedisConnection::open(url)
            .unwrap()
            .timeout(Duration::from_millis(300)),
    )
    .prefix(prefix)
}

/// Waits until the store's mirror is subscribed and loaded.
async fn live(store: &RedisRevocationStore) {
    store.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.mirror_is_live() {
        assert!(Instant::now() < deadline, "the mirror never went live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One app instance: its own store (connection, mirror), issuer and a JWT
/// layer with the verified-token cache.
struct Instance {
    store: RedisRevocationStore,
    issuer: TokenIssuer,
}

impl Instance {
    fn new(url: &str, prefix: &str) -> Self {
        let store = store(url, prefix);
        let issuer = TokenIssuer::hs256(SECRET)
            .unwrap()
            .revocation_store(store.clone())
            .backend_timeout(Some(Duration::from_millis(500)));
        Self { store, issuer }
    }

    async fn get(&self, token: &str) -> StatusCode {
        let auth = self
            .issuer
            .authenticator::<Arc<Claims>>()
            .cache(1024, Duration::from_secs(300));
        let svc = AuthLayer::new(auth).layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let req = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap().status()
    }
}

/// A layer kept across requests, so that its cache is warm.
fn cached_layer(
    issuer: &TokenIssuer,
) -> impl tower::Service<
    Request<()>,
    Response = Response<tower_auth::body::ResponseBody<String>>,
    Error = Infallible,
> + Clone {
    let auth = issuer
        .authenticator::<Arc<Claims>>()
        .cache(1024, Duration::from_secs(300));
    AuthLayer::new(auth).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }))
}

fn request(token: &str) -> Request<()> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn a_logout_on_one_instance_reaches_the_others_cache_quickly() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("logout");
    let a = Instance::new(&url, &prefix);
    let b = Instance::new(&url, &prefix);
    live(&a.store).await;
    live(&b.store).await;

    let pair: TokenPair = a.issuer.issue("alice", &()).unwrap();
    let b_layer = cached_layer(&b.issuer);
    // Warm B's cache: the token is verified once, then served from it.
    for _ in 0..3 {
        let res = b_layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    a.issuer
        .logout(Some(&pair.access_token), Some(&pair.refresh_token))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let res = b_layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        if res.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "B still accepts the token {:?} after the logout on A",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!(
        "logout on A honoured by B's cache after {:?}",
        started.elapsed()
    );
    // A refresh of the logged-out sign-in is refused on B too.
    assert!(b.issuer.redeem(&pair.refresh_token).await.is_err());
    assert_eq!(a.get(&pair.access_token).await, StatusCode::UNAUTHORIZED);

    // A new instance starting now loads the deny-list when it subscribes.
    let c = Instance::new(&url, &prefix);
    live(&c.store).await;
    assert!(!c
        .store
        .is_revoked_now(Revocable::Token("unknown"))
        .expect("a live mirror answers at once")
        .unwrap());
    assert_eq!(c.get(&pair.access_token).await, StatusCode::UNAUTHORIZED);
    let fresh = c.issuer.issue("bob", &()).unwrap();
    assert_eq!(c.get(&fresh.access_token).await, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_refreshes_over_two_instances_have_one_winner() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("refresh");
    let a = Arc::new(Instance::new(&url, &prefix));
    let b = Arc::new(Instance::new(&url, &prefix));
    let pair = a.issuer.issue("alice", &()).unwrap();

    let mut tasks = Vec::new();
    for i in 0..20 {
        let instance = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = pair.refresh_token.clone();
        tasks.push(tokio::spawn(
            async move { instance.issuer.redeem(&token).await },
        ));
    }
    let mut grants = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(grant) => grants.push(grant),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    tower_auth::AuthErrorKind::InvalidCredentials,
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(grants.len(), 1, "exactly one refresh succeeds");
    assert_eq!(refused, 19);

    // The replays revoked the family: the winner's new tokens are refused
    // too, on both instances.
    let rotated = a.issuer.issue_rotated(&grants[0], &()).unwrap();
    assert!(b.issuer.redeem(&rotated.refresh_token).await.is_err());
    live(&b.store).await;
    assert_eq!(b.get(&rotated.access_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.get(&pair.access_token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotation_and_the_per_subject_cap() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("cap");
    let store = store(&url, &prefix).families_per_subject(2);
    let until = now() + 600;

    // Rotation: each generation once; a retry within the grace is a retry.
    assert_eq!(
        store.advance_for("alice", "f1", 0, until, 0).await.unwrap(),
        Redemption::First
    );
    assert_eq!(
        store.advance_for("alice", "f1", 0, until, 0).await.unwrap(),
        Redemption::Reuse
    );
    assert_eq!(
        store.advance_for("alice", "f1", 1, until, 0).await.unwrap(),
        Redemption::First
    );
    assert_eq!(
        store
            .advance_for("alice", "f1", 1, until, 60)
            .await
            .unwrap(),
        Redemption::Retry
    );
    assert_eq!(
        store
            .advance_for("alice", "f1", 0, until, 60)
            .await
            .unwrap(),
        Redemption::Reuse
    );
    // A family redeemed under another subject is not theirs.
    assert_eq!(
        store
            .advance_for("mallory", "f1", 2, until, 0)
            .await
            .unwrap(),
        Redemption::Unknown
    );

    // Third sign-in of alice: her oldest (f1) is revoked, bob is untouched.
    assert_eq!(
        store.advance_for("bob", "b1", 0, until, 0).await.unwrap(),
        Redemption::First
    );
    assert_eq!(
        store.advance_for("alice", "f2", 0, until, 0).await.unwrap(),
        Redemption::First
    );
    assert!(!store.is_revoked(Revocable::Family("f1")).await.unwrap());
    assert_eq!(
        store.advance_for("alice", "f3", 0, until, 0).await.unwrap(),
        Redemption::First
    );
    assert!(store.is_revoked(Revocable::Family("f1")).await.unwrap());
    assert!(!store.is_revoked(Revocable::Family("f2")).await.unwrap());
    assert!(!store.is_revoked(Revocable::Family("b1")).await.unwrap());

    // Deny-list entries expire with the tokens they concern; a past one is
    // not recorded.
    store
        .revoke(Revocable::Token("old"), now() - 1)
        .await
        .unwrap();
    assert!(!store.is_revoked(Revocable::Token("old")).await.unwrap());
    store
        .revoke(Revocable::Token("j"), now() + 100)
        .await
        .unwrap();
    store
        .revoke(Revocable::Token("j"), now() + 50)
        .await
        .unwrap();
    let key = format!("{prefix}revoked:t:{{{}}}", sha_hex("t:j"));
    let ttl: i64 = redis_support::command(&url, redis::cmd("TTL").arg(&key));
    assert!((95..=100).contains(&ttl), "the later expiry is kept: {ttl}");
}

fn sha_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn redis_down_fails_closed_and_the_mirror_resyncs() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let url = server.url();
    let prefix = prefix("faults");
    let a = Instance::new(&url, &prefix);
    live(&a.store).await;
    let layer = cached_layer(&a.issuer);
    let pair = a.issuer.issue("alice", &()).unwrap();
    let res = layer
        .clone()
        .oneshot(request(&pair.access_token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    server.kill();
    // The subscription notices (its connection closes) and the mirror
    // goes off: checks ask Redis, which cannot answer: 503, not a stale 200.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.store.mirror_is_live() {
        assert!(
            Instant::now() < deadline,
            "mirror still live with redis dead"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let res = layer
        .clone()
        .oneshot(request(&pair.access_token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        a.issuer
            .logout(Some(&pair.access_token), None)
            .await
            .is_err(),
        "a logout that cannot be recorded is an error"
    );
    assert!(a.issuer.redeem(&pair.refresh_token).await.is_err());

    // Back (empty): the mirror resyncs by itself and requests are served.
    server.start();
    live(&a.store).await;
    let res = layer
        .clone()
        .oneshot(request(&pair.access_token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // And revocations flow again.
    a.issuer
        .logout(Some(&pair.access_token), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let res = layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        if res.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revocation not seen after the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_stalled_redis_times_out_instead_of_hanging() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let url = server.url();
    let a = Instance::new(&url, &prefix("stall"));
    let pair = a.issuer.issue("alice", &()).unwrap();
    // Writes wait for 2 s: refresh and logout answer 503 after the deadline.
    let () = server.command(redis::cmd("CLIENT").arg("PAUSE").arg(2000).arg("ALL"));
    let started = Instant::now();
    let err = a.issuer.redeem(&pair.refresh_token).await.unwrap_err();
    assert_eq!(err.kind(), tower_auth::AuthErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let grant = a.issuer.redeem(&pair.refresh_token).await.unwrap();
    assert_eq!(grant.subject(), "alice");
}

#[tokio::test]
async fn verified_tokens_cost_no_round_trip_with_a_live_mirror() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let a = Instance::new(&server.url(), &prefix("trips"));
    live(&a.store).await;
    let pair = a.issuer.issue("alice", &()).unwrap();
    let layer = cached_layer(&a.issuer);
    let () = server.command(&redis::cmd("CONFIG").arg("RESETSTAT").clone());
    for _ in 0..10 {
        let res = layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let info: String = server.command(redis::cmd("INFO").arg("commandstats"));
    let calls: u64 = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| {
            !["cmdstat_info", "cmdstat_config", "cmdstat_ping"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(calls, 0, "revocation checks answered by the mirror: {info}");
}

#[tokio::test]
async fn a_logout_on_one_instance_ends_connections_on_the_other() {
    use tower_auth::lifetime::{CredentialWatch, Ended};
    use tower_auth::Authenticator;

    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("watch");
    let a = Instance::new(&url, &prefix);
    let b = Instance::new(&url, &prefix);
    live(&b.store).await;
    let pair = a.issuer.issue("alice", &()).unwrap();
    let other = a.issuer.issue("bob", &()).unwrap();

    // B's WebSocket-style connections, checked hourly: only the broadcast
    // fed by Redis can end them early.
    let auth = b
        .issuer
        .authenticator::<serde_json::Value>()
        .watch_credentials(Duration::from_secs(3600));
    let watch_of = |token: &str| {
        let (parts, ()) = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts();
        let auth = auth.clone();
        async move {
            let a = auth.authenticate_request(&parts).await.unwrap().unwrap();
            a.extensions().get::<CredentialWatch>().cloned().unwrap()
        }
    };
    let alice = watch_of(&pair.access_token).await;
    let bob = watch_of(&other.access_token).await;
    let alice_ended = tokio::spawn(async move { alice.ended().await });
    let bob_ended = tokio::spawn(async move { bob.ended().await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    a.issuer
        .logout(Some(&pair.access_token), None)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), alice_ended)
        .await
        .expect("ended by the revocation published through Redis")
        .unwrap();
    assert_eq!(ended, Ended::Revoked);
    eprintln!(
        "connection on B ended {:?} after the logout on A",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !bob_ended.is_finished(),
        "another user's connection stays open"
    );
    bob_ended.abort();
}

#[tokio::test]
async fn a_logout_is_honoured_at_once_on_its_own_instance() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let a = Instance::new(&url, &prefix("own"));
    live(&a.store).await;
    let layer = cached_layer(&a.issuer);
    for _ in 0..20 {
        let pair = a.issuer.issue("alice", &()).unwrap();
        let res = layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        a.issuer
            .logout(Some(&pair.access_token), None)
            .await
            .unwrap();
        // No wait for the published message: the next request is refused.
        let res = layer
            .clone()
            .oneshot(request(&pair.access_token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
