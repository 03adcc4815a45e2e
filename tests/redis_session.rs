//! `RedisSessionStore` against a real `redis-server`: the store contract,
//! two app instances sharing sessions over TCP, and faults (Redis killed,
//! restarted, stalled).

mod common;
mod redis_support;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/session.rs"]
mod session_example;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_support::{command, RedisServer};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tower_auth::redis::{RedisConnection, RedisSessionStore};
use tower_auth::session::{SessionKey, SessionRecord, SessionStore, StoreKey, UpdateOutcome};

/// A unique prefix per test, so tests sharing CI's server never meet.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{nanos}:")
}

fn ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A record with whole-millisecond times (the store keeps milliseconds).
fn record(version: u64, user: &str, expires_in: Duration) -> SessionRecord {
    let now = now_ms();
    let mut data = HashMap::new();
    data.insert("user".to_owned(), json!(user));
    SessionRecord {
        data,
        created_at: ms(now),
        last_active: ms(now),
        expires_at: ms(now + u64::try_from(expires_in.as_millis()).unwrap()),
        version,
    }
}

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes([n; 32])
}

#[tokio::test]
async fn the_store_contract_holds_in_redis() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let store = RedisSessionStore::new(RedisConnection::open(url.as_str()).unwrap())
        .prefix(&prefix("contract"));
    let k = key(1);

    assert_eq!(store.load(&k).await.unwrap(), None);
    let first = record(0, "alice", Duration::from_secs(60));
    store.save(&k, &first).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), Some(first.clone()));

    // Compare-and-swap: the expected version wins once.
    let second = record(1, "bob", Duration::from_secs(60));
    assert_eq!(
        store.update(&k, &second, 0).await.unwrap(),
        UpdateOutcome::Updated
    );
    let stale = record(1, "mallory", Duration::from_secs(60));
    assert_eq!(
        store.update(&k, &stale, 0).await.unwrap(),
        UpdateOutcome::Conflict
    );
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.data["user"], "bob");

    // Touch keeps the later deadline and leaves data and version alone.
    let later = second.expires_at + Duration::from_secs(30);
    assert!(store.touch(&k, later, later).await.unwrap());
    let earlier = second.expires_at - Duration::from_secs(30);
    assert!(store.touch(&k, earlier, earlier).await.unwrap());
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, later);
    assert_eq!(loaded.last_active, later);
    assert_eq!((loaded.version, &loaded.data), (1, &second.data));

    // Delete answers from the removal; afterwards nothing comes back.
    assert!(store.delete(&k).await.unwrap());
    assert!(!store.delete(&k).await.unwrap());
    assert!(
        !store.touch(&k, later, later).await.unwrap(),
        "touch never creates"
    );
    assert_eq!(
        store
            .update(&k, &record(2, "bob", Duration::from_secs(60)), 1)
            .await
            .unwrap(),
        UpdateOutcome::Gone,
        "an update never recreates a destroyed session"
    );
    assert_eq!(store.load(&k).await.unwrap(), None);
}

#[tokio::test]
async fn records_expire_with_a_ttl_under_hashed_keys() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("ttl");
    let store =
        RedisSessionStore::new(RedisConnection::open(url.as_str()).unwrap()).prefix(&prefix);
    let k = key(2);
    store
        .save(&k, &record(0, "alice", Duration::from_secs(100)))
        .await
        .unwrap();
    let redis_key = store.redis_key(&k);
    assert_eq!(redis_key, format!("{prefix}session:{{{}}}", k.to_hex()));
    let keys: Vec<String> = command(&url, redis::cmd("KEYS").arg(format!("{prefix}*")));
    assert_eq!(keys, std::slice::from_ref(&redis_key));
    let ttl: i64 = command(&url, redis::cmd("PTTL").arg(&redis_key));
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");

    // An expired record is gone for update and touch even before Redis
    // drops it (the caller's clock decides, as the layer's does).
    let expired = record(0, "alice", Duration::ZERO);
    let k2 = key(3);
    store.save(&k2, &expired).await.unwrap();
    assert!(!store
        .touch(&k2, ms(now_ms()), ms(now_ms() + 60_000))
        .await
        .unwrap());
    assert_eq!(
        store
            .update(&k2, &record(1, "x", Duration::from_secs(60)), 0)
            .await
            .unwrap(),
        UpdateOutcome::Gone
    );

    // A record too large is refused, not written.
    let small = store.clone().max_record_bytes(64);
    let mut big = record(0, "alice", Duration::from_secs(60));
    big.data.insert("blob".into(), json!("x".repeat(100)));
    let err = small.save(&key(4), &big).await.unwrap_err();
    assert_eq!(err.to_string(), "session record too large");
    assert_eq!(store.load(&key(4)).await.unwrap(), None);

    // Corrupt data fails closed rather than reading as a session.
    command::<i64>(
        &url,
        redis::cmd("HSET")
            .arg(&redis_key)
            .arg("v")
            .arg("not a number"),
    );
    assert!(store.load(&k).await.is_err());
}

#[tokio::test]
async fn racing_instances_have_exactly_one_winner() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("race");
    // Two instances: two connections, as two processes would have.
    let a = RedisSessionStore::new(RedisConnection::open(url.as_str()).unwrap()).prefix(&prefix);
    let b = RedisSessionStore::new(RedisConnection::open(url.as_str()).unwrap()).prefix(&prefix);
    let k = key(5);
    a.save(&k, &record(0, "alice", Duration::from_secs(60)))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .update(
                    &k,
                    &record(1, &format!("writer-{i}"), Duration::from_secs(60)),
                    0,
                )
                .await
                .unwrap()
        }));
    }
    let mut updated = 0;
    for task in tasks {
        match task.await.unwrap() {
            UpdateOutcome::Updated => updated += 1,
            UpdateOutcome::Conflict => {}
            UpdateOutcome::Gone => panic!("the session is there"),
        }
    }
    assert_eq!(updated, 1, "compare-and-swap admits one writer per version");

    let mut deletes = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        deletes.push(tokio::spawn(async move { store.delete(&k).await.unwrap() }));
    }
    let mut removed = 0;
    for task in deletes {
        removed += usize::from(task.await.unwrap());
    }
    assert_eq!(removed, 1, "one delete answers true");
}

/// One instance of the `session` example on its own port and Redis
/// connection.
struct Instance {
    addr: SocketAddr,
    client: reqwest::Client,
}

async fn instance(store: RedisSessionStore, key: &SessionKey) -> Instance {
    let (listener, addr) = common::listener().await;
    let layer = session_example::session_layer(store, key.clone(), true);
    let app = session_example::app(layer);
    common::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Instance { addr, client }
}

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signs alice in and returns the `name=value` of the session cookie.
    async fn login(&self) -> String {
        let res = self
            .client
            .post(self.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", format!("http://{}", self.addr))
            .header("sec-fetch-site", "same-origin")
            .body("username=alice&password=secret")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let set = res.headers()[SET_COOKIE].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    async fn logout(&self, cookie: &str) -> StatusCode {
        self.client
            .post(self.url("/logout"))
            .header("origin", format!("http://{}", self.addr))
            .header("sec-fetch-site", "same-origin")
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `GET /me` with the cookie: status and JSON body.
    async fn me(&self, cookie: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(self.url("/me"))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn two_instances_share_sign_ins_and_logouts() {
    let Some((url, _server)) = RedisServer::shared() else {
        return;
    };
    let prefix = prefix("instances");
    let key = SessionKey::generate().unwrap();
    let store =
        |url: &str| RedisSessionStore::new(RedisConnection::open(url).unwrap()).prefix(&prefix);
    let a = instance(store(&url), &key).await;
    let b = instance(store(&url), &key).await;

    let cookie = a.login().await;
    let (status, body) = b.me(&cookie).await;
    assert_eq!(status, StatusCode::OK, "a session made on A works on B");
    assert_eq!(body["username"], "alice", "{body}");

    // Redis never sees the session id: no key or value holds it.
    let id = cookie.split_once('=').unwrap().1;
    let keys: Vec<String> = command(&url, redis::cmd("KEYS").arg(format!("{prefix}*")));
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains(id));
    let fields: Vec<String> = command(&url, redis::cmd("HVALS").arg(&keys[0]));
    assert!(fields.iter().all(|f| !f.contains(id)));

    assert_eq!(b.logout(&cookie).await, StatusCode::SEE_OTHER);
    let (status, body) = a.me(&cookie).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a logout on B ends it on A"
    );
    assert_eq!(body["error"], "unauthorized");
}

#[tokio::test]
async fn redis_killed_then_restarted_fails_closed_then_recovers() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let key = SessionKey::generate().unwrap();
    let timeout = Duration::from_millis(300);
    let redis = RedisConnection::open(server.url().as_str())
        .unwrap()
        .timeout(timeout);
    let app = instance(RedisSessionStore::new(redis), &key).await;
    let cookie = app.login().await;
    assert_eq!(app.me(&cookie).await.0, StatusCode::OK);

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = app.me(&cookie).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "unavailable");
        assert!(!body.to_string().contains(cookie.split_once('=').unwrap().1));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // Signing in needs the store too: no session is handed out.
    let res = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", format!("http://{}", app.addr))
        .header("sec-fetch-site", "same-origin")
        .body("username=alice&password=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(SET_COOKIE).is_none());

    // Back up (empty: no persistence): the same app, not rebuilt, recovers.
    server.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (status, _) = app.me(&cookie).await;
        if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old session died with Redis"
    );
    let cookie = app.login().await;
    assert_eq!(app.me(&cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_redis_answers_503_after_the_timeout_not_a_hang() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let key = SessionKey::generate().unwrap();
    let timeout = Duration::from_millis(300);
    let redis = RedisConnection::open(server.url().as_str())
        .unwrap()
        .timeout(timeout);
    let app = instance(RedisSessionStore::new(redis), &key).await;
    let cookie = app.login().await;

    // Every client's commands wait for 2 s.
    let () = server.command(redis::cmd("CLIENT").arg("PAUSE").arg(2000).arg("ALL"));
    let started = Instant::now();
    let (status, body) = app.me(&cookie).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(took >= timeout - Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // Once the pause ends the same connection serves again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = app.me(&cookie).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the stall: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The number of commands the server ran since the last `CONFIG RESETSTAT`
/// (scripts count as one `evalsha`), without the `INFO` asking and the `CONFIG RESETSTAT`.
fn commands_run(server: &RedisServer) -> u64 {
    let info: String = server.command(redis::cmd("INFO").arg("commandstats"));
    info.lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| !l.starts_with("cmdstat_info:") && !l.starts_with("cmdstat_config"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn a_session_read_is_one_round_trip_and_a_write_two_at_most() {
    let Some(server) = RedisServer::spawn() else {
        return;
    };
    let key = SessionKey::generate().unwrap();
    let redis = RedisConnection::open(server.url().as_str()).unwrap();
    let app = instance(RedisSessionStore::new(redis), &key).await;
    let cookie = app.login().await;
    assert_eq!(app.me(&cookie).await.0, StatusCode::OK);

    let () = server.command(&redis::cmd("CONFIG").arg("RESETSTAT").clone());
    for _ in 0..10 {
        assert_eq!(app.me(&cookie).await.0, StatusCode::OK);
    }
    let info: String = server.command(redis::cmd("INFO").arg("commandstats"));
    assert_eq!(commands_run(&server), 10, "one HMGET per read: {info}");

    let () = server.command(&redis::cmd("CONFIG").arg("RESETSTAT").clone());
    assert_eq!(app.logout(&cookie).await, StatusCode::SEE_OTHER);
    let n = commands_run(&server);
    assert!(n <= 2, "a logout loads and deletes: {n} commands");
}
