//! Policy evaluation cost, against hand-written baselines measured in the
//! same run.
//!
//! ```sh
//! cargo bench --bench authz --features authz -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `permission_100`: an identity with 100 permissions; `permission()` vs
//!   `Identity::has_permission` and a `HashSet<String>` lookup.
//! * `role_map_3`: the seeds' 3-role table (admin, moderator, user);
//!   `RoleMap::permission()` vs the seeds' dict-of-lists and a
//!   `HashMap<String, HashSet<String>>`.
//! * `layer`: `RequireLayer` oneshot vs the bare inner service oneshot.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use http::request::Parts;
use http::{Request, Response};
use tower::{service_fn, ServiceExt};
use tower_auth::authz::{
    all_permissions, permission, policy_fn, role, Decision, Policy, RequireLayer, RoleMap,
};
use tower_auth::{Identity, Scheme};
use tower_layer::Layer;

/// Polls a future that is ready without waiting (all of this bench's).
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn allowed<P: Policy>(policy: &P, identity: &Identity, head: &Parts) -> bool {
    match policy.check(identity, head) {
        Decision::Allow => true,
        Decision::Deny(_) => false,
        Decision::Pending(fut) => now(fut).is_ok(),
    }
}

fn head() -> Parts {
    Request::get("/posts/1").body(()).unwrap().into_parts().0
}

fn hundred() -> Vec<String> {
    (0..100).map(|i| format!("perm:{i:03}")).collect()
}

fn permission_100(c: &mut Criterion) {
    let perms = hundred();
    let identity = Identity::new("u", Scheme::ApiKey).with_permissions(perms.iter().cloned());
    let set: HashSet<String> = perms.iter().cloned().collect();
    let head = head();
    let hit = permission("perm:063");
    let miss = permission("perm:100");
    let three = all_permissions(["perm:007", "perm:063", "perm:099"]);

    let mut g = c.benchmark_group("permission_100");
    g.bench_function("baseline_identity_has_permission", |b| {
        b.iter(|| black_box(&identity).has_permission(black_box("perm:063")))
    });
    g.bench_function("baseline_hashset_contains", |b| {
        b.iter(|| black_box(&set).contains(black_box("perm:063")))
    });
    g.bench_function("policy_permission_allow", |b| {
        b.iter(|| allowed(black_box(&hit), black_box(&identity), &head))
    });
    g.bench_function("policy_permission_deny", |b| {
        b.iter(|| allowed(black_box(&miss), black_box(&identity), &head))
    });
    g.bench_function("policy_all_permissions_3_allow", |b| {
        b.iter(|| allowed(black_box(&three), black_box(&identity), &head))
    });
    g.finish();
}

const SEED: &[(&str, &[&str])] = &[
    (
        "admin",
        &[
            "users:read",
            "users:write",
            "users:delete",
            "posts:read",
            "posts:write",
            "posts:delete",
        ],
    ),
    (
        "moderator",
        &["users:read", "posts:read", "posts:write", "posts:delete"],
    ),
    ("user", &["posts:read", "posts:write"]),
];

fn role_map_3(c: &mut Criterion) {
    // The seeds' flat table, as written there.
    let roles = SEED
        .iter()
        .fold(RoleMap::builder(), |b, (role, perms)| {
            b.role(*role, perms.iter().copied())
        })
        .build()
        .unwrap();
    // The seeds' `ROLE_PERMISSIONS.get(role, [])` + `in` on a list.
    let dict: HashMap<&str, Vec<&str>> = SEED.iter().map(|(r, p)| (*r, p.to_vec())).collect();
    let sets: HashMap<String, HashSet<String>> = SEED
        .iter()
        .map(|(r, p)| (r.to_string(), p.iter().map(|s| s.to_string()).collect()))
        .collect();
    let moderator = Identity::new("3", Scheme::Bearer).with_roles(["moderator"]);
    let user = Identity::new("2", Scheme::Bearer).with_roles(["user"]);
    let head = head();
    let delete_posts = roles.permission("posts:delete");
    let moderators = roles.role("moderator");

    let baseline = |identity: &Identity| {
        identity
            .roles()
            .any(|r| dict.get(r).is_some_and(|p| p.contains(&"posts:delete")))
    };
    let mut g = c.benchmark_group("role_map_3");
    g.bench_function("baseline_seeds_dict_of_lists", |b| {
        b.iter(|| baseline(black_box(&moderator)))
    });
    g.bench_function("baseline_hashmap_of_hashsets", |b| {
        b.iter(|| {
            black_box(&moderator)
                .roles()
                .any(|r| sets.get(r).is_some_and(|p| p.contains("posts:delete")))
        })
    });
    g.bench_function("role_map_has_permission", |b| {
        b.iter(|| roles.has_permission(black_box(&moderator), black_box("posts:delete")))
    });
    g.bench_function("policy_role_map_permission_allow", |b| {
        b.iter(|| allowed(black_box(&delete_posts), black_box(&moderator), &head))
    });
    g.bench_function("policy_role_map_permission_deny", |b| {
        b.iter(|| allowed(black_box(&delete_posts), black_box(&user), &head))
    });
    g.bench_function("policy_role_map_inherited_role", |b| {
        let admin = Identity::new("1", Scheme::Bearer).with_roles(["admin"]);
        b.iter(|| allowed(black_box(&moderators), black_box(&admin), &head))
    });
    g.bench_function("expand_identity_per_request", |b| {
        b.iter(|| roles.expand(black_box(moderator.clone())))
    });
    g.finish();
}

async fn inner(_: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

fn request(identity: &Identity) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(identity.clone());
    req
}

fn layer(c: &mut Criterion) {
    let identity = Identity::new("1", Scheme::Bearer)
        .with_roles(["admin"])
        .with_permissions(hundred());
    let svc = service_fn(inner);
    let with_role = RequireLayer::new(role("admin")).layer(svc);
    let combined = RequireLayer::new(role("moderator").or(permission("perm:063"))).layer(svc);
    let denied = RequireLayer::new(role("moderator")).layer(svc);
    let async_policy =
        RequireLayer::new(policy_fn(|_: Identity, _: &Parts| ready(true))).layer(svc);

    let mut g = c.benchmark_group("layer");
    g.bench_function("baseline_bare_service", |b| {
        b.iter(|| now(svc.oneshot(request(&identity))).map(|r| r.status()))
    });
    g.bench_function("require_role", |b| {
        b.iter(|| now(with_role.clone().oneshot(request(&identity))).map(|r| r.status()))
    });
    g.bench_function("require_role_or_permission", |b| {
        b.iter(|| now(combined.clone().oneshot(request(&identity))).map(|r| r.status()))
    });
    g.bench_function("require_async_policy_fn", |b| {
        b.iter(|| now(async_policy.clone().oneshot(request(&identity))).map(|r| r.status()))
    });
    g.bench_function("require_denied_403", |b| {
        b.iter(|| now(denied.clone().oneshot(request(&identity))).map(|r| r.status()))
    });
    g.finish();
}

criterion_group!(benches, permission_100, role_map_3, layer);
criterion_main!(benches);
