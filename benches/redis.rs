//! Redis-backed sessions and JWT revocation checks against their
//! memory-backed twins and against the floor of one raw Redis round trip (`HMGET` of the same hash on a
//! connection manager of its own), all measured in the same run on a
//! tokio runtime.
//!
//! Needs a `redis-server`: the bench starts one on a free loopback port
//! (without persistence) and stops it, or uses `TOWER_AUTH_REDIS_URL`.
//!
//! ```sh
//! cargo bench --bench redis --features redis,session,jwt -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response};
use tower::ServiceExt;
use tower_auth::jwt::{MemoryRevocationStore, TokenIssuer};
use tower_auth::redis::{RedisConnection, RedisRevocationStore, RedisSessionStore};
use tower_auth::session::{MemorySessionStore, Session, SessionKey, SessionLayer, SessionStore};
use tower_auth::AuthLayer;
use tower_layer::Layer;

struct Server(Option<Child>, String);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn server() -> Server {
    if let Ok(url) = std::env::var("TOWER_AUTH_REDIS_URL") {
        return Server(None, url);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("the redis bench needs redis-server (Debian package redis-server)");
    let url = format!("redis://127.0.0.1:{port}/");
    // Owned by the guard from here on: killed and reaped on every path.
    let server = Server(Some(child), url);
    let client = redis::Client::open(server.1.as_str()).unwrap();
    for _ in 0..500 {
        if let Ok(mut con) = client.get_connection() {
            if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                return server;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start");
}

fn request(cookie: &str) -> Request<()> {
    Request::get("/").header(COOKIE, cookie).body(()).unwrap()
}

/// A layer over a handler reading `user`, and the cookie of a signed-in
/// session in its store.
async fn layer_and_cookie(
    store: impl SessionStore + Clone,
    key: &SessionKey,
) -> (
    impl tower::Service<
            Request<()>,
            Response = Response<tower_auth::body::ResponseBody<String>>,
            Error = Infallible,
        > + Clone,
    String,
) {
    let layer = SessionLayer::new(store, key.clone());
    let login = layer.layer(tower::service_fn(|req: Request<()>| {
        let s = req.extensions().get::<Session>().unwrap();
        s.insert("user", "alice").unwrap();
        ready(Ok::<_, Infallible>(Response::new(String::new())))
    }));
    let res = login
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let read = layer.layer(tower::service_fn(|req: Request<()>| {
        let user = req
            .extensions()
            .get::<Session>()
            .and_then(|s| s.get::<String>("user").ok().flatten())
            .unwrap_or_default();
        ready(Ok::<_, Infallible>(Response::new(user)))
    }));
    (read, cookie)
}

fn bench(c: &mut Criterion) {
    let server = server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SessionKey::generate().unwrap();
    let redis_store =
        RedisSessionStore::new(RedisConnection::open(server.1.as_str()).unwrap()).prefix("bench:");
    let (redis_layer, redis_cookie) = rt.block_on(layer_and_cookie(redis_store.clone(), &key));
    let (memory_layer, memory_cookie) =
        rt.block_on(layer_and_cookie(MemorySessionStore::new(), &key));

    // The request really reads the session from Redis.
    let res = rt
        .block_on(redis_layer.clone().oneshot(request(&redis_cookie)))
        .unwrap();
    assert_eq!(res.status(), 200);

    let raw = rt.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(server.1.as_str()).unwrap())
            .await
            .unwrap()
    });
    let keys: Vec<String> = {
        let client = redis::Client::open(server.1.as_str()).unwrap();
        let mut con = client.get_connection().unwrap();
        redis::cmd("KEYS").arg("bench:*").query(&mut con).unwrap()
    };
    let hash = keys[0].clone();

    let mut g = c.benchmark_group("redis");
    g.bench_function("floor/raw HMGET round trip", |b| {
        b.iter(|| {
            let mut con = raw.clone();
            let fields: Vec<Option<Vec<u8>>> = rt
                .block_on(
                    redis::cmd("HMGET")
                        .arg(&hash)
                        .arg(&["v", "d", "c", "a", "x"])
                        .query_async(&mut con),
                )
                .unwrap();
            black_box(fields)
        })
    });
    g.bench_function("session layer read/memory store", |b| {
        b.iter(|| black_box(rt.block_on(memory_layer.clone().oneshot(request(&memory_cookie)))))
    });
    g.bench_function("session layer read/redis store", |b| {
        b.iter(|| black_box(rt.block_on(redis_layer.clone().oneshot(request(&redis_cookie)))))
    });

    // JWT with the verified-token cache: the revocation check of a cache
    // hit is answered by the Redis store's local mirror (no round trip).
    let redis_revocations =
        RedisRevocationStore::new(RedisConnection::open(server.1.as_str()).unwrap())
            .prefix("bench:");
    // The mirror's subscription task runs on the bench's runtime (while it
    // is driven by `block_on`).
    rt.block_on(async {
        redis_revocations.start();
        while !redis_revocations.mirror_is_live() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    for (name, issuer) in [
        (
            "jwt cache hit/memory revocation store",
            TokenIssuer::hs256(SECRET)
                .unwrap()
                .revocation_store(MemoryRevocationStore::new()),
        ),
        (
            "jwt cache hit/redis revocation store",
            TokenIssuer::hs256(SECRET)
                .unwrap()
                .revocation_store(redis_revocations.clone()),
        ),
    ] {
        let pair = issuer.issue("alice", &()).unwrap();
        let auth = issuer
            .authenticator::<Claims>()
            .cache(1024, Duration::from_secs(300));
        let svc = AuthLayer::new(auth).layer(tower::service_fn(|_req: Request<()>| {
            ready(Ok::<_, Infallible>(Response::new(String::new())))
        }));
        let bearer = format!("Bearer {}", pair.access_token);
        let jwt_request = || {
            Request::get("/")
                .header(http::header::AUTHORIZATION, bearer.as_str())
                .body(())
                .unwrap()
        };
        let res = rt.block_on(svc.clone().oneshot(jwt_request())).unwrap();
        assert_eq!(res.status(), 200);
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(svc.clone().oneshot(jwt_request()))))
        });
    }
    g.finish();
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[derive(Clone, Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
}

criterion_group!(benches, bench);
criterion_main!(benches);
