//! The main example: every scenario of the seeds in one axum server, on
//! SQLite. See the README for a curl walkthrough.
//!
//! ```sh
//! cargo run --example server --features full
//! # with the tower_auth_* counters at /metrics:
//! METRICS_TOKEN=$(openssl rand -hex 32) cargo run --example server --features full,metrics
//! ```
//!
//! | route                         | who                         | what |
//! |-------------------------------|-----------------------------|------|
//! | `POST /auth/sign_up`          | anyone (10 / hour per IP)   | `{username, password}` → `201` user |
//! | `POST /auth/sign_in`          | anyone (sign-in budgets, below) | `{access_token, refresh_token, token_type, expires_in}`, `no-store` |
//! | `POST /auth/refresh`          | anyone                      | `{refresh_token}` → new pair (rotation; a reuse revokes the sign-in), `no-store` |
//! | `POST /auth/logout`           | bearer                      | `{refresh_token}`: ends the sign-in |
//! | `GET /me`                     | JWT, API key or session     | the user, roles, permissions |
//! | `GET /admin/users`            | admin                       | every user |
//! | `DELETE /admin/users/{id}`    | admin (not themselves)      | `204`; the user's sessions, tokens and API keys stop working at once |
//! | `POST /admin/api_keys`        | admin                       | `{name, user_id?}` → a key, shown once, `no-store` |
//! | `POST /posts`                 | signed in                   | `{title, body, published}` → `201` |
//! | `GET /posts`                  | anyone                      | anonymous: published posts, fewer fields |
//! | `GET/PUT/DELETE /posts/{id}`  | the author or an admin (moderators may delete) | |
//! | `GET/POST /session/login`     | anyone; the `POST` same-origin only (login CSRF); sign-in budgets shared with `/auth/sign_in` | HTML form / cookie sign-in |
//! | `POST /session/logout`        | session                     | ends the cookie session |
//! | `GET /healthz`                | anyone                      | liveness |
//! | `GET /openapi.json`           | anyone                      | OpenAPI 3.1: security schemes and each route's requirements |
//! | `GET /metrics`                | `Authorization: Bearer $METRICS_TOKEN` | Prometheus text: the `tower_auth_*` metrics (only when `METRICS_TOKEN` is set; counters need the `metrics` feature) |
//!
//! Limits and defences:
//!
//! * Over the limits above: `429` with `Retry-After`. The limits count per
//!   TCP peer address; behind a reverse proxy key them on `ClientIp` with
//!   the proxy's address in `TrustedProxies` instead of `PeerIp`.
//! * Both password sign-ins share one `SignInLimiter`
//!   (`tower_auth::rate_limit::sign_in`): failures only, 5 per 15 minutes
//!   per (address, account), 20 then 20 an hour per account from all
//!   addresses, 100 per 15 minutes per address for all accounts. A success
//!   sets a signed device cookie (`__Host-device`, 30 days) and remembers
//!   the address for that account: later attempts with the cookie, or from
//!   that address, have their own budget of 5 per 15 minutes, so floods
//!   against the account or the address do not lock the user out.
//! * Password hashing (argon2id, 19 MiB each) runs on the blocking pool, at
//!   most one hash per CPU at once; a sign-up or sign-in that waits more than
//!   5 seconds for its turn gets `503` `{"error": "unavailable", ...}` with
//!   `Retry-After`. Memory stays flat under any number of concurrent
//!   password requests.
//! * Responses carrying a token or key are `Cache-Control: no-store` (RFC
//!   6749 §5.1): no cache, proxy or browser history keeps them.
//! * Every authenticated request checks that its user still exists (one
//!   indexed SQLite lookup), and uses the user's current role: deleting a
//!   user ends their cookie sessions, access tokens and API keys at once,
//!   and their refresh tokens are refused (and their sign-in revoked) on the
//!   next refresh.
//! * Unsafe requests carrying cookies must be same-origin (`CsrfLayer`); so
//!   must the cookie sign-in, which carries no cookie yet, so that a
//!   cross-site form cannot sign a browser into the attacker's account.
//!
//! Configuration (environment): `PORT` (or `--addr ip:port`; default
//! 127.0.0.1:8080), `JWT_SECRET` (at least 32 bytes; random with a warning
//! when unset), `SESSION_KEY` (base64 of 64 bytes; random when unset),
//! `DATABASE` (SQLite file, default `server.db`, created on first run;
//! `:memory:` for none), `ADMIN_USERNAME` (this user is admin; the first
//! user always is), `DEVICE_KEY` (base64 of at least 32 bytes, signs the
//! device cookies; random when unset), `REDIS_URL` (with the `redis`
//! feature: sessions, revocations, rate limits and sign-in budgets live in
//! this Redis, so several instances with the same `JWT_SECRET`,
//! `SESSION_KEY`, `DEVICE_KEY` and `DATABASE` share them; see the README's
//! "Several instances with Redis"), `METRICS_TOKEN` (at least 32
//! characters: serves `/metrics` to scrapers presenting it as a bearer
//! token; no `/metrics` when unset), `LOG_FORMAT=json` (one JSON object per
//! log line, filtered by `RUST_LOG`, default `info`: every refused
//! authentication is an `INFO` event of target `tower_auth::decision`).
//! `--insecure-cookies` drops the
//! `Secure` cookie flag for plain-http hosts other than localhost
//! (development only).

#[path = "common/mod.rs"]
pub(crate) mod common;

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{FromRequest, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, RequestPartsExt, Router};
use http::request::Parts;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::authz::{permission, policy_fn, role, Denied, Policy, RequireLayer, RoleMap};
use tower_auth::extract::Auth;
use tower_auth::jwt::TokenIssuer;
use tower_auth::rate_limit::sign_in::{
    DeviceCookies, DeviceKey, SignIn, SignInLayer, SignInLimiter,
};
use tower_auth::rate_limit::{Limit, PeerIp, Quota, RateLimitLayer};
use tower_auth::session::{
    CsrfLayer, MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
};
use tower_auth::{AuthError, AuthLayer, Authenticated, Authenticator, Identity, Scheme};

use common::{Db, DbError, Post, User};

/// The seeds' roles and permissions: admin ⊇ moderator ⊇ user.
static ROLES: LazyLock<RoleMap> = LazyLock::new(|| {
    serde_json::from_str(
        r#"{
            "user":      ["posts:read", "posts:write"],
            "moderator": {"inherits": ["user"], "permissions": ["users:read", "posts:delete"]},
            "admin":     {"inherits": ["moderator"], "permissions": ["users:write", "users:delete"]}
        }"#,
    )
    .expect("the role table is valid")
});

/// The claims of this server's access tokens.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct AccessClaims {
    sub: String,
    username: String,
    role: String,
}

/// Shared state.
#[derive(Clone, Debug)]
pub(crate) struct App {
    db: Db,
    issuer: TokenIssuer,
    sessions: SessionAuthenticator<User>,
}

/// Settings a test or `main` chooses.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) jwt_secret: Vec<u8>,
    pub(crate) session_key: SessionKey,
    pub(crate) device_key: DeviceKey,
    pub(crate) secure_cookies: bool,
    /// With the `redis` feature: keep sessions, revocations, rate limits
    /// and sign-in budgets in this Redis, so that several instances share
    /// them (`REDIS_URL`). Ignored without the feature.
    pub(crate) redis_url: Option<String>,
}

/// 32 secret bytes for the HMAC of the Redis keys of the limits, the same
/// on every instance: derived from the JWT secret, which every instance
/// shares already (and separated from it by the label).
#[cfg(feature = "redis")]
fn redis_key_secret(jwt_secret: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tower-auth example: redis key hmac\0");
    h.update(jwt_secret);
    h.finalize().into()
}

/// A JSON error in the crate's shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    eprintln!("internal error: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
}

fn db_error(e: DbError) -> Response {
    match e {
        DbError::Conflict => error(StatusCode::CONFLICT, "conflict", "username already taken"),
        DbError::Busy => {
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many password checks in progress; retry shortly",
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        other => internal(other),
    }
}

/// `Cache-Control: no-store` (and `Pragma: no-cache` for HTTP/1.0 caches)
/// on responses that carry a token or key (RFC 6749 §5.1), whatever their
/// status.
async fn no_store(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// `{username, password}` of the sign-up and sign-in forms.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// `None` when valid, else the `422` to answer.
    fn invalid(&self) -> Option<Response> {
        let name_ok = (3..=64).contains(&self.username.len())
            && self
                .username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
        if !name_ok {
            return Some(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "username: 3 to 64 letters, digits or . _ @ -",
            ));
        }
        if !(8..=1024).contains(&self.password.len()) {
            return Some(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "password: 8 to 1024 characters",
            ));
        }
        None
    }
}

fn access_claims(user: &User) -> Value {
    json!({"username": user.username, "role": user.role})
}

async fn sign_up(State(app): State<App>, Json(c): Json<Credentials>) -> Response {
    if let Some(res) = c.invalid() {
        return res;
    }
    match app.db.create_user(&c.username, &c.password).await {
        Ok(user) => (StatusCode::CREATED, Json(json!(user))).into_response(),
        Err(e) => db_error(e),
    }
}

/// `401` for a wrong username or password, the same for both (and the same
/// work: an unknown user verifies a dummy hash); the sign-in limiter counts
/// these against the account named, whether it exists or not.
async fn sign_in(State(app): State<App>, sign_in: SignIn, Json(c): Json<Credentials>) -> Response {
    if let Err(refused) = sign_in.attempt(&c.username).await {
        return refused.into_response();
    }
    match app.db.check_password(&c.username, &c.password).await {
        Ok(Some(user)) => match app
            .issuer
            .issue(&user.id.to_string(), &access_claims(&user))
        {
            Ok(pair) => Json(json!(pair)).into_response(),
            Err(e) => internal(e),
        },
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "invalid username or password",
        ),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(State(app): State<App>, Json(r): Json<RefreshRequest>) -> Response {
    let grant = match app.issuer.redeem(&r.refresh_token).await {
        Ok(grant) => grant,
        Err(e) => return error(e.status(), "invalid_token", e.message()),
    };
    let user = match grant.subject().parse().map(|id| app.db.user(id)) {
        Ok(lookup) => match lookup.await {
            Ok(Some(user)) => user,
            Ok(None) => {
                // A deleted user: end the whole sign-in, so that the access
                // tokens of this family are refused too.
                if let Err(e) = app.issuer.logout(None, Some(&r.refresh_token)).await {
                    eprintln!("revoking a deleted user's sign-in failed: {}", e.message());
                }
                return error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown user");
            }
            Err(e) => return db_error(e),
        },
        Err(_) => return error(StatusCode::UNAUTHORIZED, "invalid_token", "invalid subject"),
    };
    // The new access token carries the user's current role.
    match app.issuer.issue_rotated(&grant, &access_claims(&user)) {
        Ok(pair) => Json(json!(pair)).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct LogoutRequest {
    refresh_token: Option<String>,
}

/// Behind the JWT `AuthLayer`: revokes the sign-in (the refresh family) and
/// deny-lists the presented access token until it expires.
async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    body: Option<Json<LogoutRequest>>,
) -> Response {
    let access = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim()));
    let refresh = body.as_ref().and_then(|b| b.refresh_token.as_deref());
    match app.issuer.logout(access, refresh).await {
        Ok(()) => Json(json!({"message": "Logged out successfully"})).into_response(),
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
            error(e.status(), "unavailable", e.message())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request", e.message()),
    }
}

async fn me(Auth(user): Auth<User>, identity: Identity) -> Json<Value> {
    Json(json!({
        "user": user,
        "scheme": identity.scheme().to_string(),
        "roles": identity.roles().collect::<Vec<_>>(),
        "permissions": identity.permissions().collect::<Vec<_>>(),
    }))
}

async fn admin_users(State(app): State<App>) -> Response {
    match app.db.users().await {
        Ok(users) => Json(json!({ "users": users })).into_response(),
        Err(e) => db_error(e),
    }
}

/// Deletes a user with their posts and API keys. Nothing else is needed to
/// end their sessions and tokens: the authenticator checks on every request
/// that the user still exists (see [`authenticator`]). An admin cannot
/// delete their own account here (`409`), so the last admin cannot lock
/// everyone out by accident.
async fn admin_delete_user(
    State(app): State<App>,
    Auth(admin): Auth<User>,
    Path(id): Path<i64>,
) -> Response {
    if id == admin.id {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete your own account",
        );
    }
    match app.db.delete_user(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such user"),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct NewApiKey {
    name: Option<String>,
    user_id: Option<i64>,
}

/// Creates an API key for the admin or for `user_id`; the key is in this
/// response only (the database keeps its SHA-256).
async fn admin_api_keys(
    State(app): State<App>,
    Auth(admin): Auth<User>,
    body: Option<Json<NewApiKey>>,
) -> Response {
    let (name, user_id) = body.map_or((None, None), |Json(b)| (b.name, b.user_id));
    let user_id = user_id.unwrap_or(admin.id);
    match app.db.user(user_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such user"),
        Err(e) => return db_error(e),
    }
    let name = name.unwrap_or_else(|| "api key".into());
    match app.db.create_api_key(user_id, name).await {
        Ok((key, key_id)) => (
            StatusCode::CREATED,
            Json(json!({
                "key_id": key_id,
                "api_key": key.expose(),
                "user_id": user_id,
                "note": "this key is shown once; store it now",
            })),
        )
            .into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct NewPost {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    published: bool,
}

async fn create_post(
    State(app): State<App>,
    Auth(user): Auth<User>,
    Json(p): Json<NewPost>,
) -> Response {
    if p.title.trim().is_empty() || p.title.len() > 200 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "title: 1 to 200 characters",
        );
    }
    match app
        .db
        .create_post(user.id, p.title, p.body, p.published)
        .await
    {
        Ok(post) => (StatusCode::CREATED, Json(json!(post))).into_response(),
        Err(e) => db_error(e),
    }
}

/// Anonymous callers see published posts with fewer fields; signed-in
/// users see published posts and their own drafts; admins see everything.
async fn list_posts(State(app): State<App>, user: Option<Auth<User>>) -> Response {
    let posts = match app.db.posts().await {
        Ok(posts) => posts,
        Err(e) => return db_error(e),
    };
    let visible = |p: &Post| match &user {
        None => p.published,
        Some(Auth(u)) => p.published || p.author_id == u.id || u.role == "admin",
    };
    let posts: Vec<Value> = posts
        .iter()
        .filter(|p| visible(p))
        .map(|p| match user {
            None => json!({"id": p.id, "title": p.title, "published": p.published}),
            Some(_) => json!(p),
        })
        .collect();
    Json(json!({ "posts": posts })).into_response()
}

async fn get_post(State(app): State<App>, Path(id): Path<i64>) -> Response {
    match app.db.post(id).await {
        Ok(Some(post)) => Json(json!(post)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "post not found"),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct PostUpdate {
    title: Option<String>,
    body: Option<String>,
    published: Option<bool>,
}

async fn update_post(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(u): Json<PostUpdate>,
) -> Response {
    if u.title
        .as_ref()
        .is_some_and(|t| t.trim().is_empty() || t.len() > 200)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "title: 1 to 200 characters",
        );
    }
    match app.db.update_post(id, u.title, u.body, u.published).await {
        Ok(Some(post)) => Json(json!(post)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "post not found"),
        Err(e) => db_error(e),
    }
}

async fn delete_post(State(app): State<App>, Path(id): Path<i64>) -> Response {
    match app.db.delete_post(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "post not found"),
        Err(e) => db_error(e),
    }
}

/// The author of the post named by the path, checked against the caller:
/// `404` for an unknown post, `403` for someone else's.
fn post_owner(db: Db) -> impl Policy {
    policy_fn(move |identity: Identity, head: &Parts| {
        let db = db.clone();
        let mut head = head.clone();
        async move {
            let Ok(Path(id)) = head.extract::<Path<i64>>().await else {
                return Err(Denied::not_found("post not found"));
            };
            match db.post(id).await {
                Ok(Some(post)) if post.author_id.to_string() == identity.subject() => Ok(()),
                Ok(Some(_)) => Err(Denied::forbidden("you can only change your own posts")),
                Ok(None) => Err(Denied::not_found("post not found")),
                Err(e) => Err(Denied::unavailable(e)),
            }
        }
    })
}

const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
  <h1>Sign in</h1>
  <form method="post" action="/session/login">
    <label>Username <input id="username" name="username" autocomplete="username" required></label>
    <label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
    <button id="submit" type="submit">Sign in</button>
  </form>
</body>
</html>
"#;

async fn login_page() -> Html<&'static str> {
    Html(LOGIN_PAGE)
}

/// Cookie sign-in from the HTML form (redirects to `/me`) or from JSON.
async fn session_login(
    State(app): State<App>,
    session: Session,
    sign_in: SignIn,
    request: axum::extract::Request,
) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    let credentials: Credentials = if is_form {
        match Form::<Credentials>::from_request(request, &()).await {
            Ok(Form(c)) => c,
            Err(rejection) => return rejection.into_response(),
        }
    } else {
        match Json::<Credentials>::from_request(request, &()).await {
            Ok(Json(c)) => c,
            Err(rejection) => return rejection.into_response(),
        }
    };
    if let Err(refused) = sign_in.attempt(&credentials.username).await {
        return refused.into_response();
    }
    let user = match app
        .db
        .check_password(&credentials.username, &credentials.password)
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid username or password",
            )
        }
        Err(e) => return db_error(e),
    };
    if let Err(e) = app.sessions.login(&session, &user) {
        return internal(e);
    }
    if is_form {
        Redirect::to("/me").into_response()
    } else {
        Json(json!({"message": "Logged in successfully", "user": user})).into_response()
    }
}

async fn session_logout(State(app): State<App>, session: Session) -> Json<Value> {
    app.sessions.logout(&session);
    Json(json!({"message": "Logged out successfully"}))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// JWT (`Authorization: Bearer`), API key (`x-api-key`) or session cookie,
/// the first present deciding; then the user is loaded from the database,
/// so that a deleted user is refused at once (`401`) and a changed role
/// applies at once, whatever the token or session says; roles expanded
/// into permissions.
fn authenticator(app: &App) -> impl Authenticator<Principal = User> {
    let jwt = app
        .issuer
        .authenticator::<AccessClaims>()
        .map(|a: Authenticated<AccessClaims>| {
            let c = a.principal;
            let user = User {
                id: c.sub.parse().unwrap_or_default(),
                username: c.username,
                role: c.role,
            };
            Authenticated::new(user, a.identity)
        });
    let db = app.db.clone();
    jwt.or(ApiKeyAuthenticator::new(app.db.clone()))
        .or(app.sessions.clone())
        .and_then(move |a: Authenticated<User>| {
            let db = db.clone();
            async move {
                match db.user(a.principal.id).await {
                    // Ids are never reused; the name check also covers a
                    // database created before `AUTOINCREMENT`.
                    Ok(Some(user)) if user.username == a.principal.username => {
                        let identity = user.identity(a.identity.scheme().clone());
                        Ok(Authenticated::new(user, identity))
                    }
                    Ok(_) => Err(AuthError::invalid_credentials("unknown user")),
                    Err(e) => Err(AuthError::unavailable(e)),
                }
            }
        })
        .map(ROLES.expander())
}

/// `GET /openapi.json`: the security of every route, for API clients and
/// gateways. The schemes are read from the authenticator's challenges
/// (JWT bearer, API key header, session cookie), the requirements follow
/// the policies below.
fn openapi_json(auth: &impl Authenticator, secure_cookies: bool) -> String {
    use axum::http::Method;
    use tower_auth::openapi::{Requirement, RouteSecurity, SecuritySchemes};
    use utoipa::openapi::{Info, OpenApi, Paths};
    use utoipa::Modify;

    let session_cookie = if secure_cookies {
        "__Host-session"
    } else {
        "session"
    };
    let schemes = SecuritySchemes::from_authenticator(auth)
        .bearer_format("JWT")
        .session_cookie("session", session_cookie);
    let signed_in = || Requirement::any_of(["bearer", "apiKey", "session"]);
    let routes = RouteSecurity::new()
        .public(Method::POST, "/auth/sign_up")
        .public(Method::POST, "/auth/sign_in")
        .public(Method::POST, "/auth/refresh")
        .public(Method::GET, "/session/login")
        .public(Method::POST, "/session/login")
        .public(Method::POST, "/session/logout")
        .public(Method::GET, "/healthz")
        .public(Method::GET, "/openapi.json")
        .route(Method::POST, "/auth/logout", Requirement::scheme("bearer"))
        .route(Method::GET, "/me", signed_in())
        .route(Method::GET, "/posts", signed_in().or_anonymous())
        .route(Method::POST, "/posts", signed_in())
        // The author or an admin (moderators may delete): an owner check
        // OpenAPI cannot name; `403` for the others.
        .route(Method::GET, "/posts/{id}", signed_in())
        .route(Method::PUT, "/posts/{id}", signed_in())
        .route(Method::DELETE, "/posts/{id}", signed_in())
        // Roles, as OpenAPI 3.1 lets non-OAuth requirements list them.
        .route(Method::GET, "/admin/users", signed_in().scopes(["admin"]))
        .route(
            Method::DELETE,
            "/admin/users/{id}",
            signed_in().scopes(["admin"]),
        )
        .route(
            Method::POST,
            "/admin/api_keys",
            signed_in().scopes(["admin"]),
        );
    let mut doc = OpenApi::new(
        Info::new("tower-auth example server", "1.0.0"),
        Paths::new(),
    );
    schemes.modify(&mut doc);
    routes.modify(&mut doc);
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

/// The whole application. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (the sign-in
/// limiter counts per client IP).
pub(crate) fn app(
    db: Db,
    settings: Settings,
) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    // `build` checks the configuration now (the key can sign and verify its
    // own tokens) instead of refusing every token later.
    #[cfg(feature = "redis")]
    let redis = match &settings.redis_url {
        Some(url) => Some(tower_auth::redis::RedisConnection::open(url.as_str())?),
        None => None,
    };
    #[cfg(not(feature = "redis"))]
    if settings.redis_url.is_some() {
        eprintln!("warning: REDIS_URL is set but the `redis` feature is not compiled in; state stays in this process");
    }
    let issuer = TokenIssuer::hs256(&settings.jwt_secret)?.access_ttl(Duration::from_secs(15 * 60));
    // Several instances: logouts and refresh rotation in Redis, with a
    // local mirror of the deny-list fed by pub/sub.
    #[cfg(feature = "redis")]
    let issuer = match &redis {
        Some(redis) => {
            issuer.revocation_store(tower_auth::redis::RedisRevocationStore::new(redis.clone()))
        }
        None => issuer,
    };
    let issuer = issuer.build()?;
    let sessions = SessionAuthenticator::new("user", |u: &User| u.identity(Scheme::Cookie));
    let state = App {
        db: db.clone(),
        issuer,
        sessions,
    };
    let auth = authenticator(&state);
    let openapi: std::sync::Arc<str> = openapi_json(&auth, settings.secure_cookies).into();

    // Failed sign-ins per (address, account), per account and per address,
    // with device cookies and known addresses keeping real users in (see
    // the module docs of `rate_limit::sign_in`). One limiter for both
    // password forms (token and cookie sign-in): a guesser locked out of
    // one must not switch to the other.
    let device_cookies = if settings.secure_cookies {
        DeviceCookies::new(settings.device_key)
    } else {
        DeviceCookies::new(settings.device_key)
            .secure(false)
            .name("device")
    };
    let limiter = SignInLimiter::builder().device_cookies(device_cookies);
    // Several instances: the budgets in Redis, so that a guesser gains
    // nothing by spreading attempts over them.
    #[cfg(feature = "redis")]
    let limiter = match &redis {
        Some(redis) => limiter.store(tower_auth::redis::RedisSignInStore::new(
            redis.clone(),
            redis_key_secret(&settings.jwt_secret),
        )),
        None => limiter,
    };
    let failed_sign_ins = SignInLayer::new(limiter.build()?);
    // Each sign-up costs an argon2id hash: ten per client IP and hour,
    // counting every attempt (a taken name or an invalid form too).
    let sign_up_quota = Quota::per_hour(10)?;
    let sign_up_route = post(sign_up);
    #[cfg(feature = "redis")]
    let sign_up_route = match &redis {
        Some(redis) => {
            use tower_auth::redis::{RedisLimit, RedisRateLimitLayer, RedisRateLimiter};
            let limiter = RedisRateLimiter::new(
                redis.clone(),
                redis_key_secret(&settings.jwt_secret),
                "sign-up",
                sign_up_quota,
            );
            sign_up_route.route_layer(RedisRateLimitLayer::new(RedisLimit::new(
                limiter,
                PeerIp::new(),
            )))
        }
        None => sign_up_route.route_layer(RateLimitLayer::new(Limit::new(
            "sign-up",
            sign_up_quota,
            PeerIp::new(),
        ))),
    };
    #[cfg(not(feature = "redis"))]
    let sign_up_route = sign_up_route.route_layer(RateLimitLayer::new(Limit::new(
        "sign-up",
        sign_up_quota,
        PeerIp::new(),
    )));
    // Login CSRF: the sign-in form carries no cookie yet, so the global
    // CsrfLayer lets it through; without this a cross-site form could sign
    // the victim's browser into the attacker's account. Outside the limiter:
    // a refused cross-site post costs the real user no attempt.
    let login_csrf = CsrfLayer::new().check_without_cookies(true);

    let public = Router::new()
        .route("/auth/sign_up", sign_up_route)
        .route(
            "/auth/sign_in",
            post(sign_in)
                .route_layer(failed_sign_ins.clone())
                .route_layer(map_response(no_store)),
        )
        .route(
            "/auth/refresh",
            post(refresh).route_layer(map_response(no_store)),
        )
        .route(
            "/session/login",
            get(login_page).merge(
                post(session_login)
                    .route_layer(failed_sign_ins)
                    .route_layer(login_csrf),
            ),
        )
        .route("/session/logout", post(session_logout))
        .route("/healthz", get(healthz))
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        body.to_string(),
                    )
                }
            }),
        );

    let logout_route = Router::new()
        .route("/auth/logout", post(logout))
        .route_layer(AuthLayer::new(state.issuer.authenticator::<AccessClaims>()).name("logout"));

    let signed_in = Router::new()
        .route("/me", get(me))
        .route("/posts", post(create_post))
        .merge(
            Router::new()
                .route("/posts/{id}", get(get_post).put(update_post))
                .route_layer(RequireLayer::new(role("admin").or(post_owner(db.clone())))),
        )
        .merge(
            Router::new()
                .route("/posts/{id}", delete(delete_post))
                .route_layer(RequireLayer::new(
                    permission("posts:delete").or(post_owner(db.clone())),
                )),
        )
        .merge(
            Router::new()
                .route("/admin/users", get(admin_users))
                .route("/admin/users/{id}", delete(admin_delete_user))
                .route(
                    "/admin/api_keys",
                    post(admin_api_keys).route_layer(map_response(no_store)),
                )
                .route_layer(RequireLayer::new(role("admin"))),
        )
        .route_layer(AuthLayer::new(auth.clone()).name("api"));

    let optional = Router::new()
        .route("/posts", get(list_posts))
        .route_layer(AuthLayer::optional(auth).name("api_optional"));

    let router = Router::new()
        .merge(public)
        .merge(logout_route)
        .merge(signed_in)
        .merge(optional)
        .with_state(state)
        // Cookie-carrying unsafe requests must be same-origin.
        .layer(CsrfLayer::new());
    // Several instances: sessions in Redis.
    #[cfg(feature = "redis")]
    if let Some(redis) = redis {
        let store = tower_auth::redis::RedisSessionStore::new(redis);
        let sessions_layer = SessionLayer::builder(store, settings.session_key)
            .secure(settings.secure_cookies)
            .build()?;
        return Ok(router.layer(sessions_layer));
    }
    let sessions_layer = SessionLayer::builder(MemorySessionStore::new(), settings.session_key)
        .secure(settings.secure_cookies)
        .build()?;
    Ok(router.layer(sessions_layer))
}

/// `GET /metrics` in Prometheus text, for scrapers presenting `token` as a
/// bearer token (compared in constant time; a refusal is counted like any
/// other, under the layer name `metrics`). The recorder behind `handle`
/// must be installed (`PrometheusBuilder::install_recorder`).
pub(crate) fn metrics_router(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    token: &str,
) -> Result<Router, &'static str> {
    use tower_auth::bearer::{BearerAuthenticator, BearerToken};
    if token.len() < 32 {
        return Err("METRICS_TOKEN must be at least 32 characters");
    }
    let token: std::sync::Arc<tower_auth::Secret> = std::sync::Arc::new(token.into());
    let scraper = BearerAuthenticator::new(move |presented: BearerToken| {
        let valid = presented.ct_eq(token.expose());
        async move {
            if valid {
                Ok(Authenticated::new(
                    (),
                    Identity::new("metrics", Scheme::Bearer),
                ))
            } else {
                Err(AuthError::invalid_credentials("invalid token"))
            }
        }
    })
    .realm("metrics");
    Ok(Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = handle.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route_layer(AuthLayer::new(scraper).name("metrics")))
}

/// JSON logs when `LOG_FORMAT=json`, filtered by `RUST_LOG` (default
/// `info`).
fn init_logs() {
    use tracing_subscriber::EnvFilter;
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .init();
    }
}

/// The Prometheus recorder and `/metrics` when `METRICS_TOKEN` is set.
fn with_metrics(router: Router) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    let Some(token) = std::env::var("METRICS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        return Ok(router);
    };
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    // Histograms are drained into their summaries by the upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(router.merge(metrics_router(handle, &token)?))
}

fn session_key() -> SessionKey {
    match std::env::var("SESSION_KEY")
        .ok()
        .map(|k| SessionKey::from_base64(&k))
    {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            eprintln!("warning: SESSION_KEY is invalid ({e}); using a random key");
            SessionKey::generate().expect("the OS random number generator works")
        }
        None => {
            eprintln!("warning: SESSION_KEY is not set; using a random key (sessions end with the process)");
            SessionKey::generate().expect("the OS random number generator works")
        }
    }
}

fn device_key() -> DeviceKey {
    use base64::Engine;
    let configured = std::env::var("DEVICE_KEY").ok().map(|k| {
        base64::engine::general_purpose::STANDARD
            .decode(k.trim())
            .map_err(|e| e.to_string())
            .and_then(|bytes| DeviceKey::from_bytes(&bytes).map_err(|e| e.to_string()))
    });
    match configured {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            eprintln!("warning: DEVICE_KEY is invalid ({e}); using a random key");
            DeviceKey::generate().expect("the OS random number generator works")
        }
        None => {
            eprintln!("warning: DEVICE_KEY is not set; using a random key (device cookies end with the process)");
            DeviceKey::generate().expect("the OS random number generator works")
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_logs();
    let path = std::env::var("DATABASE").unwrap_or_else(|_| "server.db".into());
    let db = Db::open(&path, std::env::var("ADMIN_USERNAME").ok())?;
    let settings = Settings {
        jwt_secret: common::jwt_secret(),
        session_key: session_key(),
        device_key: device_key(),
        secure_cookies: !std::env::args().any(|a| a == "--insecure-cookies"),
        redis_url: std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()),
    };
    let shared = if settings.redis_url.is_some() && cfg!(feature = "redis") {
        "shared through Redis"
    } else {
        "in this process"
    };
    let router = with_metrics(app(db, settings)?)?;
    println!("sessions, revocations, rate limits and sign-in budgets: {shared}");
    let listener = tokio::net::TcpListener::bind(common::listen_addr()).await?;
    println!(
        "listening on http://{} (database: {path})",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
