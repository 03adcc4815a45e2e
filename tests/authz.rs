//! RequireLayer and Guard in a real axum Router: the seeds' RBAC table
//! (admin ⊇ moderator ⊇ user), owner-or-admin checks on path parameters,
//! 401 vs 403 vs 404, custom error handlers and gRPC statuses.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Extension, Json, RequestPartsExt, Router};
use bytes::Bytes;
use common::{api_key, User};
use http::request::Parts;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_auth::authz::{
    authenticated, policy_fn, role, Denied, Guard, Permission, Policy, RequireLayer, Role, RoleMap,
};
use tower_auth::extract::Auth;
use tower_auth::rejection::{Rejection, Rejections};
use tower_auth::testing::{
    assert_rejected, FakeAuthLayer, StaticAuthenticator, TestRequest, TestResponse,
};
use tower_auth::{guard_policy, AuthLayer, Authenticator, Identity, Scheme};

/// The seeds' `ROLE_PERMISSIONS`, with inheritance instead of repetition.
const SEED_RBAC: &str = r#"{
    "user":      ["posts:read", "posts:write"],
    "moderator": {"inherits": ["user"], "permissions": ["users:read", "posts:delete"]},
    "admin":     {"inherits": ["moderator"], "permissions": ["users:write", "users:delete"]}
}"#;

static ROLES: LazyLock<RoleMap> = LazyLock::new(|| serde_json::from_str(SEED_RBAC).unwrap());

guard_policy!(Admin: Role = role("admin"));
guard_policy!(CanDeleteUsers: Permission = ROLES.permission("users:delete"));

#[derive(Clone, Debug)]
struct Post {
    title: String,
    author_id: String,
}

#[derive(Default)]
struct Db {
    posts: Mutex<HashMap<String, Post>>,
    lookups: AtomicUsize,
}

impl Db {
    fn seeded() -> Arc<Db> {
        let db = Db::default();
        {
            let mut posts = db.posts.lock().unwrap();
            for (id, author) in [("1", "1"), ("2", "2")] {
                posts.insert(
                    id.into(),
                    Post {
                        title: format!("Post {id}"),
                        author_id: author.into(),
                    },
                );
            }
        }
        Arc::new(db)
    }

    fn author_of(&self, post_id: &str) -> Option<String> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let posts = self.posts.lock().ok()?;
        posts.get(post_id).map(|p| p.author_id.clone())
    }
}

/// Bearer tokens for the seeds' users: alice (admin), carol (moderator),
/// bob (user), and ghost (a user whose identity has an empty subject).
fn bearer() -> StaticAuthenticator<User> {
    let user = |id: &str, name: &str, role: &str| {
        let identity = Identity::new(id, Scheme::Bearer).with_roles([role]);
        let user = User {
            id: id.into(),
            name: name.into(),
        };
        (user, identity)
    };
    [
        (ALICE, user("1", "Alice", "admin")),
        (BOB, user("2", "Bob", "user")),
        (CAROL, user("3", "Carol", "moderator")),
        (GHOST, user("", "Ghost", "user")),
    ]
    .into_iter()
    .fold(
        StaticAuthenticator::bearer().realm("api"),
        |auth, (token, (user, identity))| auth.token(token, user, identity),
    )
}

/// The seeds' `authorized_post`: the post's author or an admin; `404` for
/// unknown posts. Admins are decided by the role check, without a lookup.
fn owner_or_admin(db: Arc<Db>) -> impl Policy {
    role("admin").or(policy_fn(move |identity: Identity, head: &Parts| {
        let db = db.clone();
        let mut head = head.clone();
        async move {
            let Ok(Path(post_id)) = head.extract::<Path<String>>().await else {
                return Err(Denied::not_found("post not found"));
            };
            match db.author_of(&post_id) {
                None => Err(Denied::not_found("post not found")),
                // An identity without a subject owns nothing, not even
                // posts whose author is empty.
                Some(author) if !identity.subject().is_empty() && author == identity.subject() => {
                    Ok(())
                }
                Some(_) => Err(Denied::forbidden("you can only edit your own posts")),
            }
        }
    }))
}

async fn list_posts(State(db): State<Arc<Db>>, user: Option<Auth<User>>) -> Json<Value> {
    let count = db.posts.lock().map(|p| p.len()).unwrap_or(0);
    Json(json!({"posts": count, "viewer": user.map(|Auth(u)| u.name)}))
}

async fn update_post(
    State(db): State<Arc<Db>>,
    Path(post_id): Path<String>,
    Json(update): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let mut posts = db
        .posts
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let post = posts.get_mut(&post_id).ok_or(StatusCode::NOT_FOUND)?;
    if let Some(title) = update["title"].as_str() {
        post.title = title.to_owned();
    }
    Ok(Json(
        json!({"id": post_id, "title": post.title, "author_id": post.author_id}),
    ))
}

async fn delete_post() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn list_users() -> Json<Value> {
    Json(json!({"users": ["1", "2", "3"]}))
}

async fn delete_user(guard: Guard<CanDeleteUsers>, Path(user_id): Path<String>) -> Json<Value> {
    Json(json!({"deleted": user_id, "by": guard.identity().subject()}))
}

async fn admin_stats(_: Guard<Admin>) -> &'static str {
    "stats"
}

async fn profile(Auth(user): Auth<User>) -> String {
    user.name
}

/// The routes and their policies, without authentication.
fn routes(db: Arc<Db>) -> Router {
    let posts = Router::new()
        .route(
            "/posts/{post_id}",
            get(|| async { "post" }).put(update_post),
        )
        .route_layer(RequireLayer::new(owner_or_admin(db.clone())))
        .merge(
            Router::new()
                .route("/posts/{post_id}/delete", delete(delete_post))
                .route_layer(RequireLayer::new(ROLES.role("moderator"))),
        );
    let users = Router::new()
        .route("/users", get(list_users))
        .route_layer(RequireLayer::new(ROLES.permission("users:read")))
        .route("/users/{user_id}", delete(delete_user));
    let admin = Router::new()
        .route("/admin/users", get(list_users))
        .route_layer(RequireLayer::new(role("admin")))
        .route("/admin/stats", get(admin_stats));
    let profile = Router::new()
        .route("/profile", get(profile))
        .route_layer(RequireLayer::new(authenticated()));
    Router::new()
        .route("/posts", get(list_posts))
        .merge(posts)
        .merge(users)
        .merge(admin)
        .merge(profile)
        .with_state(db)
}

fn app(db: Arc<Db>) -> Router {
    routes(db).layer(AuthLayer::optional(bearer().or(api_key())))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn answer(res: Response<Body>) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        headers,
        body,
    }
}

/// `who`: a bearer token, `key:<api key>`, or "" for anonymous.
fn request(method: &str, uri: &str, who: &str, body: Option<Value>) -> Request<Body> {
    let mut req = TestRequest::new(method.parse().unwrap(), uri);
    if let Some(key) = who.strip_prefix("key:") {
        req = req.api_key(key);
    } else if !who.is_empty() {
        req = req.bearer(who);
    }
    match body {
        Some(b) => req.json().body(Body::from(b.to_string())),
        None => req.build(),
    }
}

async fn send(app: &Router, method: &str, uri: &str, who: &str) -> Answer {
    answer(
        app.clone()
            .oneshot(request(method, uri, who, None))
            .await
            .unwrap(),
    )
    .await
}

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const CAROL: &str = "carol-token";
const GHOST: &str = "ghost-token";

#[tokio::test]
async fn seed_rbac_table() {
    let app = app(Db::seeded());
    let cases: &[(&str, &str, [u16; 4])] = &[
        // method, path, [admin, moderator, user, anonymous]
        ("GET", "/users", [200, 200, 403, 401]),
        ("DELETE", "/users/2", [200, 403, 403, 401]),
        ("DELETE", "/posts/1/delete", [204, 204, 403, 401]),
        ("GET", "/admin/users", [200, 403, 403, 401]),
        ("GET", "/admin/stats", [200, 403, 403, 401]),
        ("GET", "/profile", [200, 200, 200, 401]),
        ("GET", "/posts", [200, 200, 200, 200]),
    ];
    for (method, path, expected) in cases {
        for (who, status) in [ALICE, CAROL, BOB, ""].into_iter().zip(expected) {
            let got = send(&app, method, path, who).await;
            assert_eq!(got.status, *status, "{method} {path} as {who:?}");
        }
    }
}

/// The `WWW-Authenticate` of a bearer token refused for another reason
/// than a missing scope (RFC 6750 §3): no `scope`, no role name.
const NO_SCOPE_CHALLENGE: &str = r#"Bearer error="insufficient_scope", error_description="the access token does not grant access to this resource""#;

#[tokio::test]
async fn forbidden_bodies_name_no_right_by_default() {
    let app = app(Db::seeded());
    // RequireLayer (role), Guard (role): bearer tokens get the challenge.
    for (method, path, who) in [
        ("DELETE", "/posts/1/delete", BOB),
        ("GET", "/admin/users", CAROL),
        ("GET", "/admin/stats", CAROL),
    ] {
        let res = send(&app, method, path, who).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            res.body,
            json!({"error": "forbidden", "message": "insufficient permissions"}),
            "{path}"
        );
        let challenges: Vec<_> = res
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, [NO_SCOPE_CHALLENGE], "{path}");
    }
    // An API key gets no challenge.
    let key = format!("key:{}", common::API_KEY);
    let res = send(&app, "GET", "/admin/users", &key).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body["message"], "insufficient permissions");
    assert!(res.headers.get(header::WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn naming_the_missing_rights_is_one_setting_for_the_stack() {
    let app = Router::new()
        .route("/admin/users", get(list_users))
        .route_layer(RequireLayer::new(role("admin")))
        .route("/admin/stats", get(admin_stats))
        .layer(
            AuthLayer::new(bearer().or(common::api_key()))
                .rejections(Rejections::new().name_missing_rights(true)),
        );
    for path in ["/admin/users", "/admin/stats"] {
        let res = send(&app, "GET", path, CAROL).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(
            res.body,
            json!({"error": "forbidden", "message": "role 'admin' required"})
        );
        // Never in the challenge.
        let www = res.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(www, NO_SCOPE_CHALLENGE);
    }
}

#[tokio::test]
async fn bearer_lacking_a_permission_gets_insufficient_scope() {
    let app = app(Db::seeded());
    for (path, scope) in [("/users", "users:read"), ("/users/1", "users:delete")] {
        let method = if path == "/users" { "GET" } else { "DELETE" };
        let res = app
            .clone()
            .oneshot(request(method, path, BOB, None))
            .await
            .unwrap();
        assert_rejected(res, StatusCode::FORBIDDEN, "insufficient_scope")
            .await
            .assert_challenge_param("Bearer", "error", "insufficient_scope")
            .assert_challenge_param("Bearer", "scope", scope);
    }
}

#[tokio::test]
async fn api_key_lacking_a_permission_gets_a_plain_403() {
    let app = app(Db::seeded());
    let res = send(&app, "GET", "/users", &format!("key:{}", common::API_KEY)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(
        res.body,
        json!({"error": "forbidden", "message": "insufficient permissions"})
    );
}

#[tokio::test]
async fn unauthenticated_is_401_with_challenges_and_bad_tokens_never_reach_policies() {
    let app = app(Db::seeded());
    for path in ["/users", "/admin/stats", "/posts/1"] {
        let res = send(&app, "GET", path, "").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(res.body["error"], "unauthorized");
        let challenges: Vec<_> = res
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            [
                r#"Bearer realm="api""#,
                r#"ApiKey realm="api", header="x-api-key""#
            ],
            "{path}"
        );
    }
    let req = request("GET", "/users", "stolen-token", None);
    assert_rejected(
        app.oneshot(req).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await
    .assert_challenge_param("Bearer", "error", "invalid_token")
    .assert_not_echoed("stolen-token");
}

#[tokio::test]
async fn owner_or_admin_on_path_parameters() {
    let db = Db::seeded();
    let app = app(db.clone());
    let put = |who: &str, post: &str, title: &str| {
        let req = request(
            "PUT",
            &format!("/posts/{post}"),
            who,
            Some(json!({"title": title})),
        );
        let app = app.clone();
        async move { answer(app.oneshot(req).await.unwrap()).await }
    };

    // bob wrote post 2
    let res = put(BOB, "2", "edited by bob").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.body,
        json!({"id": "2", "title": "edited by bob", "author_id": "2"})
    );

    // but not post 1
    let res = put(BOB, "1", "hijack").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        res.body,
        json!({"error": "forbidden", "message": "you can only edit your own posts"})
    );
    assert_eq!(res.headers[header::WWW_AUTHENTICATE], NO_SCOPE_CHALLENGE);
    assert_eq!(db.posts.lock().unwrap()["1"].title, "Post 1");

    // a moderator is not an owner either
    assert_eq!(put(CAROL, "2", "x").await.status, StatusCode::FORBIDDEN);

    // unknown posts are 404 for everyone
    let res = put(BOB, "99", "x").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.body,
        json!({"error": "not_found", "message": "post not found"})
    );
    assert_eq!(put(ALICE, "99", "x").await.status, StatusCode::NOT_FOUND);

    // admins edit any post, without the owner lookup
    let lookups = db.lookups.load(Ordering::SeqCst);
    let res = put(ALICE, "1", "edited by admin").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["title"], "edited by admin");
    assert_eq!(db.lookups.load(Ordering::SeqCst), lookups);

    // anonymous: 401, the body never parsed
    assert_eq!(put("", "2", "x").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_identity_without_subject_owns_nothing() {
    let db = Db::seeded();
    db.posts.lock().unwrap().insert(
        "3".into(),
        Post {
            title: "Post 3".into(),
            author_id: String::new(),
        },
    );
    let app = app(db.clone());
    let req = |who: &str| request("PUT", "/posts/3", who, Some(json!({"title": "mine"})));

    let res = answer(app.clone().oneshot(req(GHOST)).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body["message"], "you can only edit your own posts");
    assert_eq!(db.posts.lock().unwrap()["3"].title, "Post 3");
    // Nor anybody else's post.
    let res = send(&app, "PUT", "/posts/2", GHOST).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Admins still may.
    let res = answer(app.oneshot(req(ALICE)).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn empty_requirement_lists_allow_nobody() {
    let none = Vec::<String>::new;
    let app = Router::new()
        .route("/all-permissions", get(|| async { "ok" }))
        .route_layer(RequireLayer::new(
            tower_auth::authz::all_permissions(none()),
        ))
        .merge(
            Router::new()
                .route("/all-scopes", get(|| async { "ok" }))
                .route_layer(RequireLayer::new(tower_auth::authz::all_scopes(none()))),
        )
        .merge(
            Router::new()
                .route("/any-role", get(|| async { "ok" }))
                .route_layer(RequireLayer::new(tower_auth::authz::any_role(none()))),
        )
        .merge(
            Router::new()
                .route("/map-all-permissions", get(|| async { "ok" }))
                .route_layer(RequireLayer::new(ROLES.all_permissions(none()))),
        )
        .merge(
            Router::new()
                .route("/map-any-role", get(|| async { "ok" }))
                .route_layer(RequireLayer::new(ROLES.any_role(none()))),
        )
        .layer(AuthLayer::optional(bearer()));
    for path in [
        "/all-permissions",
        "/all-scopes",
        "/any-role",
        "/map-all-permissions",
        "/map-any-role",
    ] {
        for who in [ALICE, CAROL, BOB, GHOST] {
            let res = send(&app, "GET", path, who).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} as {who}");
            assert_eq!(
                res.body,
                json!({"error": "forbidden", "message": "access denied"}),
                "{path} as {who}"
            );
            assert!(res.headers.get(header::WWW_AUTHENTICATE).is_none());
        }
        assert_eq!(send(&app, "GET", path, "").await.status, 401, "{path}");
    }
}

#[tokio::test]
async fn grpc_requests_get_grpc_statuses() {
    let app = app(Db::seeded());
    for (who, code) in [(Some(BOB), 7), (None, 16)] {
        let mut req = TestRequest::delete("/posts/1/delete").grpc();
        if let Some(token) = who {
            req = req.bearer(token);
        }
        let res = app.clone().oneshot(req.build::<Body>()).await.unwrap();
        TestResponse::read(res).await.assert_grpc_status(code);
    }
    // `application/grpc+proto` is gRPC too.
    let mut req: Request<Body> = TestRequest::put("/posts/99").grpc().bearer(BOB).build();
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/grpc+proto".parse().unwrap(),
    );
    let res = app.oneshot(req).await.unwrap();
    TestResponse::read(res).await.assert_grpc_status(5);
}

/// The RBAC table again, with identities injected by `FakeAuthLayer`:
/// policies and guards are tested without any credentials.
#[tokio::test]
async fn policies_see_injected_identities_as_authenticated_ones() {
    let cases: &[(&str, &str, [u16; 3])] = &[
        // method, path, [admin, moderator, user]
        ("GET", "/users", [200, 200, 403]),
        ("DELETE", "/users/2", [200, 403, 403]),
        ("DELETE", "/posts/1/delete", [204, 204, 403]),
        ("GET", "/admin/stats", [200, 403, 403]),
        ("GET", "/profile", [200, 200, 200]),
    ];
    for (method, path, expected) in cases {
        for (role, status) in ["admin", "moderator", "user"].into_iter().zip(expected) {
            let user = User {
                id: "9".into(),
                name: role.into(),
            };
            let identity = Identity::new("9", Scheme::Bearer).with_roles([role]);
            let app = routes(Db::seeded()).layer(FakeAuthLayer::new(user, identity));
            let res = app.oneshot(request(method, path, "", None)).await.unwrap();
            TestResponse::read(res)
                .await
                .assert_status(StatusCode::from_u16(*status).unwrap());
        }
    }
}

/// The seeds' `@app.error_handler(403)`: `{"error": "Forbidden", "message": ...}`.
fn seeds_error_handler() -> Rejections {
    Rejections::custom(|rejection: Rejection| {
        let title = match rejection.status() {
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            _ => return rejection.into_response(),
        };
        let body = json!({"error": title, "message": rejection.message()}).to_string();
        let mut res = rejection.into_response();
        *res.body_mut() = Bytes::from(body);
        res
    })
}

#[tokio::test]
async fn one_error_handler_for_layers_and_guards() {
    let app = app(Db::seeded()).layer(Extension(seeds_error_handler()));
    let expected = |message: &str| json!({"error": "Forbidden", "message": message});

    // RequireLayer
    let res = send(&app, "GET", "/admin/users", BOB).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, expected("insufficient permissions"));
    // Guard
    let res = send(&app, "GET", "/admin/stats", BOB).await;
    assert_eq!(res.body, expected("insufficient permissions"));
    // policy_fn
    let req = request("PUT", "/posts/1", BOB, Some(json!({"title": "x"})));
    let res = answer(app.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(res.body, expected("you can only edit your own posts"));
    // insufficient_scope keeps its header
    let res = send(&app, "GET", "/users", BOB).await;
    assert_eq!(res.body["error"], "Forbidden");
    assert!(res.headers.contains_key(header::WWW_AUTHENTICATE));
    // 401 from the RequireLayer
    let res = send(&app, "GET", "/profile", "").await;
    assert_eq!(res.body["error"], "Unauthorized");
}

/// A renderer set only on the `AuthLayer` renders the `403`s and `401`s of
/// the `RequireLayer`s and guards inside it: one error format per stack.
#[tokio::test]
async fn the_auth_layers_renderer_covers_the_require_layers() {
    let db = Db::seeded();
    let app = Router::new()
        .route("/posts", get(list_posts))
        .route(
            "/users",
            get(list_users).route_layer(RequireLayer::new(ROLES.permission("users:read"))),
        )
        .route(
            "/admin/users",
            get(list_users).route_layer(RequireLayer::new(role("admin"))),
        )
        .route("/admin/stats", get(admin_stats))
        .route(
            "/profile",
            get(profile).route_layer(RequireLayer::new(authenticated())),
        )
        .with_state(db)
        .layer(AuthLayer::optional(bearer().or(api_key())).rejections(seeds_error_handler()));
    let expected = |message: &str| json!({"error": "Forbidden", "message": message});

    // The AuthLayer's own 401.
    let res = send(&app, "GET", "/admin/users", "nope").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body["error"], "Unauthorized");
    // RequireLayer 403s: role, and insufficient_scope (the header kept).
    let res = send(&app, "GET", "/admin/users", BOB).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, expected("insufficient permissions"));
    assert_eq!(res.headers[header::WWW_AUTHENTICATE], NO_SCOPE_CHALLENGE);
    let res = send(&app, "GET", "/users", BOB).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body["error"], "Forbidden");
    assert!(res.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .ends_with(r#"scope="users:read""#));
    // An API key's 403.
    let key = format!("key:{}", common::API_KEY);
    let res = send(&app, "GET", "/admin/users", &key).await;
    assert_eq!(res.body, expected("insufficient permissions"));
    // Guard.
    let res = send(&app, "GET", "/admin/stats", CAROL).await;
    assert_eq!(res.body, expected("insufficient permissions"));
    // The RequireLayer's 401 for an anonymous request.
    let res = send(&app, "GET", "/profile", "").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body["error"], "Unauthorized");

    // A RequireLayer with its own renderer keeps it.
    let app = Router::new()
        .route("/admin/users", get(list_users))
        .route_layer(
            RequireLayer::new(role("admin")).on_rejection(|r: Rejection| {
                let mut res = r.into_response();
                *res.body_mut() = Bytes::from_static(b"own");
                res
            }),
        )
        .layer(AuthLayer::new(bearer()).rejections(seeds_error_handler()));
    let res = send(&app, "GET", "/admin/users", BOB).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, "own");
}

#[tokio::test]
async fn identity_expanded_by_the_role_map_works_with_plain_permissions() {
    let app = Router::new()
        .route("/posts/{post_id}", delete(delete_post))
        .route_layer(RequireLayer::new(tower_auth::authz::permission(
            "posts:delete",
        )))
        .layer(AuthLayer::new(bearer().map(ROLES.expander())));
    assert_eq!(send(&app, "DELETE", "/posts/1", CAROL).await.status, 204);
    assert_eq!(send(&app, "DELETE", "/posts/1", ALICE).await.status, 204);
    assert_eq!(send(&app, "DELETE", "/posts/1", BOB).await.status, 403);
}

#[tokio::test]
async fn guard_without_an_auth_layer_is_a_500() {
    let app: Router = Router::new().route("/admin/stats", get(admin_stats));
    let res = send(&app, "GET", "/admin/stats", ALICE).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.body["message"].as_str().unwrap().contains("AuthLayer"));
}

#[tokio::test]
async fn require_layer_outside_the_auth_layer_fails_closed() {
    // Wrong order: the policy runs before authentication.
    let app = Router::new()
        .route("/admin/users", get(list_users))
        .layer(AuthLayer::new(bearer()))
        .layer(RequireLayer::new(role("admin")));
    let res = send(&app, "GET", "/admin/users", ALICE).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tonic_clients_see_permission_denied() {
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::metadata::MetadataValue;
    use tonic::transport::{Channel, Server};
    use tonic::Code;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let (listener, addr) = common::listener().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    common::spawn(async move {
        Server::builder()
            .layer(AuthLayer::optional(bearer()))
            .layer(RequireLayer::new(role("admin")))
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
    let check = |token: Option<&str>| {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(t) = token {
            let value = MetadataValue::try_from(format!("Bearer {t}")).unwrap();
            req.metadata_mut().insert("authorization", value);
        }
        req
    };

    assert_eq!(
        client
            .check(check(Some(ALICE)))
            .await
            .unwrap()
            .into_inner()
            .status,
        1
    );
    let status = client.check(check(Some(BOB))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "insufficient permissions");
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// Backend deadlines (issue "Hardening II"): a policy whose lookup never
/// resolves (a dead database connection) must not hold the request, nor
/// the inner service reserved for it, forever.
mod backend_timeout {
    use std::convert::Infallible;
    use std::future::Pending;
    use std::time::Duration;

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http::request::Parts;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tokio::time::Instant;
    use tower::limit::ConcurrencyLimitLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};
    use tower_auth::authz::{Decision, Denied, Guard, Policy, RequireLayer};
    use tower_auth::{guard_policy, Identity, Scheme};

    /// A policy stuck on a dead backend, except for admins (decided
    /// without a lookup).
    #[derive(Clone, Copy, Debug)]
    struct Stuck;

    impl Policy for Stuck {
        type Future = Pending<Result<(), Denied>>;

        fn check(&self, identity: &Identity, _: &Parts) -> Decision<Self::Future> {
            if identity.has_role("admin") {
                Decision::Allow
            } else {
                Decision::Pending(std::future::pending())
            }
        }
    }

    guard_policy!(StuckGuard: Stuck = Stuck);

    const NEVER: Duration = Duration::from_secs(3600);

    fn as_user(role: &str) -> Request<String> {
        let mut req = Request::new(String::new());
        req.extensions_mut()
            .insert(Identity::new("7", Scheme::Bearer).with_roles([role]));
        req
    }

    async fn ok(_: Request<String>) -> Result<Response<String>, Infallible> {
        Ok(Response::new("ok".to_owned()))
    }

    async fn json<B>(res: Response<B>) -> Value
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_policy_gets_503_after_5_s_and_frees_the_inner_service() {
        let mut svc = ServiceBuilder::new()
            .layer(RequireLayer::new(Stuck))
            .layer(ConcurrencyLimitLayer::new(1))
            .service_fn(ok);

        let start = Instant::now();
        let call = svc.ready().await.unwrap().call(as_user("user"));
        let res = tokio::time::timeout(NEVER, call)
            .await
            .expect("the request hung on the stuck policy")
            .unwrap();
        assert_eq!(start.elapsed(), tower_auth::DEFAULT_BACKEND_TIMEOUT);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(res).await["error"], "unavailable");

        // The permit the stuck request held is back.
        let next = async { svc.ready().await.unwrap().call(as_user("admin")).await };
        let res = tokio::time::timeout(NEVER, next)
            .await
            .expect("inner service still held")
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn the_policy_deadline_is_configurable_and_grpc_gets_status_14() {
        let svc = ServiceBuilder::new()
            .layer(RequireLayer::new(Stuck).backend_timeout(Some(Duration::from_millis(250))))
            .service_fn(ok);
        let mut req = as_user("user");
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut()
            .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
        req.headers_mut()
            .insert(header::TE, "trailers".parse().unwrap());
        let start = Instant::now();
        let res = tokio::time::timeout(NEVER, svc.oneshot(req))
            .await
            .expect("hung")
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(res.headers()["grpc-status"], "14");
    }

    #[tokio::test(start_paused = true)]
    async fn no_policy_deadline_waits() {
        let svc = ServiceBuilder::new()
            .layer(RequireLayer::new(Stuck).backend_timeout(None))
            .service_fn(ok);
        let waited = tokio::time::timeout(NEVER, svc.oneshot(as_user("user"))).await;
        assert!(waited.is_err(), "answered without the policy");
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_on_a_stuck_policy_gets_503() {
        async fn handler(_: Guard<StuckGuard>) -> &'static str {
            "ok"
        }
        let app: Router = Router::new().route("/", get(handler));
        let req = Request::get("/")
            .extension(Identity::new("7", Scheme::Bearer).with_roles(["user"]))
            .body(Body::empty())
            .unwrap();
        let start = Instant::now();
        let res = tokio::time::timeout(NEVER, app.oneshot(req))
            .await
            .expect("the guard hung on the stuck policy")
            .unwrap();
        assert_eq!(start.elapsed(), tower_auth::DEFAULT_BACKEND_TIMEOUT);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(res).await["error"], "unavailable");
    }
}
