//! HTTP Basic with argon2id through `AuthLayer`, against the bare argon2
//! verification of the same password measured in the same run.
//!
//! ```sh
//! cargo bench --bench basic --features basic -- --warm-up-time 2 --measurement-time 10
//! ```
//!
//! * `baseline_argon2_verify`: `Argon2::verify_password` of the right
//!   password on the calling thread (the default parameters: 19 MiB, 2
//!   passes, 1 lane).
//! * `layer_basic_argon2`: a request with `Authorization: Basic` through
//!   `AuthLayer<BasicAuthenticator<PasswordUsers<MemoryUserStore>>>` to an
//!   inner service, on a current-thread tokio runtime: header parsing,
//!   base64, the store lookup, the hop to the blocking pool and back, the
//!   layer. Target: at most 2 % over the baseline.
//! * `layer_basic_unknown_user`: the same for an unknown user (a dummy
//!   hash is verified): should cost the same as the known user.
//! * `interleaved_baseline` / `interleaved_layer`: both of the above run
//!   alternately in one loop, each bench timing its own half, so that both
//!   see the same machine load (the figures to compare on a busy machine).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{header, Request, Response, StatusCode};
use tower::{service_fn, ServiceExt};
use tower_auth::basic::{self, BasicAuthenticator, MemoryUserStore, PasswordUsers, Passwords};
use tower_auth::{AuthLayer, Identity};
use tower_layer::Layer;

const PASSWORD: &str = "correct horse battery staple";

fn basic(c: &mut Criterion) {
    let passwords = Passwords::new();
    let hash = passwords.hash(PASSWORD).unwrap();
    let users = MemoryUserStore::new();
    users.insert(
        "scraper",
        hash.clone(),
        (),
        Identity::new("scraper", basic::scheme()),
    );
    let layer = AuthLayer::new(BasicAuthenticator::new(PasswordUsers::new(
        users, passwords,
    )));
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = |credentials: &str| {
        use base64::Engine as _;
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        move || {
            Request::get("/metrics")
                .header(header::AUTHORIZATION, value.as_str())
                .body(())
                .unwrap()
        }
    };
    let known = request(&format!("scraper:{PASSWORD}"));
    let unknown = request(&format!("nobody:{PASSWORD}"));
    let argon2 = Argon2::default();
    let parsed = PasswordHash::new(&hash).unwrap();

    let mut g = c.benchmark_group("basic");
    g.sample_size(20);
    g.bench_function("baseline_argon2_verify", |b| {
        b.iter(|| {
            argon2
                .verify_password(black_box(PASSWORD.as_bytes()), black_box(&parsed))
                .unwrap()
        })
    });
    g.bench_function("layer_basic_argon2", |b| {
        b.iter(|| {
            let res = rt.block_on(svc.clone().oneshot(known())).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        })
    });
    g.bench_function("layer_basic_unknown_user", |b| {
        b.iter(|| {
            let res = rt.block_on(svc.clone().oneshot(unknown())).unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        })
    });
    // Paired: each iteration runs both, each bench times one of them.
    let mut interleaved = |name: &str, time_layer: bool| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    argon2
                        .verify_password(black_box(PASSWORD.as_bytes()), black_box(&parsed))
                        .unwrap();
                    let middle = Instant::now();
                    let res = rt.block_on(svc.clone().oneshot(known())).unwrap();
                    let done = Instant::now();
                    assert_eq!(res.status(), StatusCode::OK);
                    spent += if time_layer {
                        done - middle
                    } else {
                        middle - started
                    };
                }
                spent
            })
        });
    };
    interleaved("interleaved_baseline", false);
    interleaved("interleaved_layer", true);
    g.finish();
}

criterion_group!(benches, basic);
criterion_main!(benches);
