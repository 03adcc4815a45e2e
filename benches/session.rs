//! Session load / save through `SessionLayer` with the memory store, against
//! baselines measured in the same run: the bare inner service, and direct
//! memory store calls. Also a new session offered to a full memory store of
//! 100k sessions, refused or evicting an anonymous one.
//!
//! ```sh
//! cargo bench --bench session --features full -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response};
use tower::ServiceExt;
use tower_auth::session::{
    MemorySessionStore, Session, SessionKey, SessionLayer, SessionRecord, SessionStore, StoreKey,
};
use tower_layer::Layer;

/// Reads `user` from the session, or writes `n` when the path is `/write`.
fn handle(counter: &AtomicU64, req: &Request<()>) -> Response<String> {
    let body = match req.extensions().get::<Session>() {
        Some(s) if req.uri().path() == "/write" => {
            let _ = s.insert("n", counter.fetch_add(1, Ordering::Relaxed));
            String::new()
        }
        Some(s) => s.get::<String>("user").ok().flatten().unwrap_or_default(),
        None => String::new(),
    };
    Response::new(body)
}

fn request(path: &str, cookie: Option<&str>) -> Request<()> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(COOKIE, c);
    }
    b.body(()).unwrap()
}

fn bench(c: &mut Criterion) {
    let store = MemorySessionStore::new().max_sessions(usize::MAX);
    let layer = SessionLayer::new(store.clone(), SessionKey::generate().unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    let handler = tower::service_fn(move |req: Request<()>| {
        ready(Ok::<_, Infallible>(handle(&counter, &req)))
    });
    let svc = layer.layer(handler.clone());

    // Log in once to get a cookie, with 100k other sessions in the store.
    let login = layer.layer(tower::service_fn(|req: Request<()>| {
        let s = req.extensions().get::<Session>().unwrap();
        s.insert("user", "alice").unwrap();
        ready(Ok::<_, Infallible>(Response::new(String::new())))
    }));
    for _ in 0..100_000 {
        login.clone().oneshot(request("/", None)).now_or_never();
    }
    let res = login
        .oneshot(request("/", None))
        .now_or_never()
        .unwrap()
        .unwrap();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(store.len(), 100_001);

    // A record to load and update directly.
    let key: StoreKey = store.keys()[0];
    let record: SessionRecord = store.get(&key).unwrap();

    // The layer does what is measured: reads load the session, writes save it.
    for (path, sets_cookie) in [("/", false), ("/write", true)] {
        let res = svc
            .clone()
            .oneshot(request(path, Some(&cookie)))
            .now_or_never();
        let res = res.unwrap().unwrap();
        assert_eq!(
            res.headers().contains_key(SET_COOKIE),
            sets_cookie,
            "{path}"
        );
    }

    let mut g = c.benchmark_group("session");
    g.bench_function("baseline/inner service", |b| {
        b.iter(|| {
            let res = handler
                .clone()
                .oneshot(request("/", Some(&cookie)))
                .now_or_never();
            black_box(res)
        })
    });
    g.bench_function("baseline/store load+update", |b| {
        b.iter(|| {
            let loaded = store.load(&key).now_or_never();
            // same version in and out: the compare-and-swap always matches
            let updated = store.update(&key, &record, record.version).now_or_never();
            black_box((loaded, updated))
        })
    });
    for (name, path, cookie) in [
        ("layer/no cookie", "/", None),
        ("layer/read session", "/", Some(cookie.as_str())),
        ("layer/write session", "/write", Some(cookie.as_str())),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(svc.clone().oneshot(request(path, cookie)).now_or_never()))
        });
    }

    // A full store: a new session is refused (every stored session has a
    // user), or evicts an anonymous one.
    let cap = 100_000u32;
    let full = MemorySessionStore::new().max_sessions(cap as usize);
    let evicting = MemorySessionStore::new().max_sessions(cap as usize);
    let mut anonymous = record.clone();
    anonymous.data.remove("user");
    anonymous.data.insert("cart".into(), "apple".into());
    for i in 0..cap {
        full.save(&numbered(i), &record)
            .now_or_never()
            .unwrap()
            .unwrap();
        evicting
            .save(&numbered(i), &anonymous)
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    // What is measured: refused, and accepted by evicting.
    assert!(full
        .save(&numbered(u32::MAX), &anonymous)
        .now_or_never()
        .unwrap()
        .is_err());
    evicting
        .save(&numbered(u32::MAX), &anonymous)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(evicting.len(), cap as usize);
    let next = AtomicU64::new(u64::from(cap));
    g.bench_function("store at cap/refused save", |b| {
        b.iter(|| {
            let key = numbered(next.fetch_add(1, Ordering::Relaxed) as u32);
            black_box(full.save(&key, &anonymous).now_or_never())
        })
    });
    g.bench_function("store at cap/evicting save", |b| {
        b.iter(|| {
            let key = numbered(next.fetch_add(1, Ordering::Relaxed) as u32);
            black_box(evicting.save(&key, &anonymous).now_or_never())
        })
    });
    assert_eq!(evicting.len(), cap as usize);
    g.finish();
}

fn numbered(i: u32) -> StoreKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_le_bytes());
    StoreKey::from_bytes(k)
}

criterion_group!(benches, bench);
criterion_main!(benches);
