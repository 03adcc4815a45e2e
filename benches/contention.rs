//! Lock contention on the JWT hot path: 8 tasks on a multi-threaded tokio
//! runtime send requests through one `AuthLayer` over a `JwtAuthenticator`
//! with the verified-token cache and the issuer's revocation store.
//!
//! Each batch is 8 tasks × 512 requests: 7 in 8 requests carry one of 64
//! hot tokens (cache hits), 1 in 8 one of 8 192 cold tokens (misses that
//! verify the signature and insert into a full cache). Every request is
//! checked against the revocation store (its `jti` and its family), and
//! every 32nd request of a task also writes a revocation (a logout), so
//! readers and writers meet on the store as on a busy server.
//!
//! `cargo bench --bench contention --features full -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{header, HeaderValue, Request, Response};
use serde::Deserialize;
use tower::{service_fn, Layer, Service};
use tower_auth::jwt::{MemoryRevocationStore, Revocable, RevocationStore, TokenIssuer};
use tower_auth::AuthLayer;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const TASKS: usize = 8;
const REQUESTS: usize = 512;
const HOT: usize = 64;
const COLD: usize = 8192;

#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
}

fn bench(c: &mut Criterion) {
    let store = MemoryRevocationStore::new();
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .revocation_store(store.clone());
    let auth = issuer
        .authenticator::<Arc<Claims>>()
        .cache(1024, Duration::from_secs(300));
    let header = |i: usize| {
        let pair = issuer.issue(&format!("user-{i}"), &()).unwrap();
        HeaderValue::from_str(&format!("Bearer {}", pair.access_token)).unwrap()
    };
    let hot: Arc<Vec<HeaderValue>> = Arc::new((0..HOT).map(header).collect());
    let cold: Arc<Vec<HeaderValue>> = Arc::new((0..COLD).map(|i| header(HOT + i)).collect());
    let inner =
        service_fn(
            |_req: Request<()>| async move { Ok::<_, Infallible>(Response::new(String::new())) },
        );
    let service = AuthLayer::new(auth).layer(inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TASKS)
        .enable_all()
        .build()
        .unwrap();
    let logouts = Arc::new(AtomicU64::new(0));
    let far = jsonwebtoken::get_current_timestamp() + 3600;

    c.bench_function("contention/jwt_cache_and_revocation", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let (hot, cold) = (hot.clone(), cold.clone());
                        let (mut svc, store) = (service.clone(), store.clone());
                        let logouts = logouts.clone();
                        tokio::spawn(async move {
                            for i in 0..REQUESTS {
                                let value = if i % 8 == 7 {
                                    &cold[(t * REQUESTS + i * 131) % COLD]
                                } else {
                                    &hot[(t * 7 + i) % HOT]
                                };
                                let mut req = Request::new(());
                                req.headers_mut()
                                    .insert(header::AUTHORIZATION, value.clone());
                                let res = svc.call(req).await.unwrap();
                                assert!(res.status().is_success());
                                if i % 32 == 31 {
                                    let n = logouts.fetch_add(1, Ordering::Relaxed);
                                    store
                                        .revoke(Revocable::Token(&format!("gone-{n}")), far)
                                        .await
                                        .unwrap();
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
