//! Cookie sessions on axum: an HTML login form, a page that needs the
//! session, logout, and an API route that takes a bearer token or the
//! session cookie (the seeds' "Session-Based Authentication").
//!
//! ```sh
//! cargo run --example session --features full
//! # then open http://127.0.0.1:8080/login and sign in as alice / secret
//! curl -i 127.0.0.1:8080/me -H 'Authorization: Bearer valid_token_123'
//! curl -i 127.0.0.1:8080/me                       # 401
//! ```
//!
//! Listens on 127.0.0.1:8080, or on `PORT`, or on `--addr <ip:port>`. The
//! session key comes from `SESSION_KEY` (base64 of 64 random bytes, e.g.
//! from `SessionKey::generate()?.to_base64()`); without it a fresh key is
//! generated and sessions end when the process stops.
//!
//! With `REDIS_URL` (and the `redis` feature) sessions live in Redis, so
//! several instances started with the same `SESSION_KEY` share them:
//!
//! ```sh
//! redis-server --port 6379 --save '' &
//! export SESSION_KEY=$(head -c 64 /dev/urandom | base64 -w0) REDIS_URL=redis://127.0.0.1:6379/
//! cargo run --example session --all-features -- --addr 127.0.0.1:8081 &
//! cargo run --example session --all-features -- --addr 127.0.0.1:8082 &
//! # sign in on :8081, and the same cookie works on :8082
//! ```
//!
//! Cookies are `Secure`: Chromium and Firefox accept `Secure` cookies from
//! `http://127.0.0.1` and `http://localhost`, which count as secure
//! contexts. For another plain-http host pass `--insecure-cookies`, which
//! switches `Secure` off explicitly. Never do that in production.

#[path = "util/addr.rs"]
mod util;

use axum::extract::{Form, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_auth::bearer::{BearerAuthenticator, BearerToken, TokenValidator};
use tower_auth::extract::Auth;
use tower_auth::session::{
    CsrfLayer, MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
    SessionStore,
};
use tower_auth::{AuthError, AuthLayer, Authenticated, Authenticator, Identity, Scheme};

/// The principal of this example: kept in the session, or found by token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Display name.
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
}

/// The demo accounts: username, password, display name, role. A real
/// application keeps password hashes (argon2, scrypt) in a database.
const ACCOUNTS: [(&str, &str, &str, &str); 2] = [
    ("alice", "secret", "Alice", "admin"),
    ("bob", "builder", "Bob", "user"),
];

fn identity(user: &User) -> Identity {
    Identity::new(user.username.clone(), Scheme::Cookie).with_roles([user.role.clone()])
}

/// The user whose password matches, comparing digests in constant time and
/// doing the same work for unknown users.
fn check_password(username: &str, password: &str) -> Option<User> {
    let presented = Sha256::digest(password.as_bytes());
    let mut found = None;
    for (name, pass, display, role) in ACCOUNTS {
        let expected = Sha256::digest(pass.as_bytes());
        let user_matches = name.as_bytes().ct_eq(username.as_bytes());
        let pass_matches = expected.ct_eq(&presented);
        if bool::from(user_matches & pass_matches) {
            found = Some(User {
                username: name.into(),
                name: display.into(),
                role: role.into(),
            });
        }
    }
    found
}

fn users() -> SessionAuthenticator<User> {
    SessionAuthenticator::new("user", identity)
}

fn bearer() -> BearerAuthenticator<impl TokenValidator<Principal = User>> {
    BearerAuthenticator::new(|token: BearerToken| async move {
        if token.ct_eq("valid_token_123") {
            let user = User {
                username: "alice".into(),
                name: "Alice".into(),
                role: "admin".into(),
            };
            let id = identity(&user).with_scheme(Scheme::Bearer);
            Ok(Authenticated::new(user, id))
        } else {
            Err(AuthError::invalid_credentials("invalid or expired token"))
        }
    })
    .realm("example")
}

/// The session layer of the example. `secure_cookies` is `false` only for
/// plain-http development on a host browsers do not treat as secure.
pub fn session_layer(
    store: impl SessionStore,
    key: SessionKey,
    secure_cookies: bool,
) -> SessionLayer {
    let builder = SessionLayer::builder(store, key).secure(secure_cookies);
    match builder.build() {
        Ok(layer) => layer,
        // The settings above are always valid.
        Err(e) => panic!("invalid session settings: {e}"),
    }
}

/// The application: pages, forms and the `/me` API.
pub fn app(sessions: SessionLayer) -> Router {
    let api = Router::new()
        .route("/me", get(me))
        .layer(AuthLayer::new(bearer().or(users())));
    let pages = Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .layer(AuthLayer::optional(users()))
        .with_state(users());
    // Layers run outside in: sessions first, then the CSRF check (login
    // forms included: login CSRF), then authentication.
    Router::new()
        .merge(api)
        .merge(pages)
        .layer(CsrfLayer::new().check_without_cookies(true))
        .layer(sessions)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

async fn home(user: Option<Auth<User>>) -> Html<String> {
    match user {
        Some(Auth(u)) => page(
            "Home",
            &format!(
                "<p id=\"who\">Signed in as {}</p>\
                 <p><a href=\"/me\">/me</a></p>\
                 <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
                escape(&u.name)
            ),
        ),
        None => page("Home", "<p id=\"who\">Not signed in</p><p><a href=\"/login\">Sign in</a></p>"),
    }
}

fn login_page(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{error}<form method=\"post\" action=\"/login\">\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button id=\"submit\" type=\"submit\">Sign in</button></form>"
        ),
    )
}

async fn login_form() -> Html<String> {
    login_page(None)
}

/// The fields of the login form.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    State(users): State<SessionAuthenticator<User>>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Response {
    match check_password(&form.username, &form.password) {
        Some(user) => match users.login(&session, &user) {
            // A clean session under a new id: nothing of the session before
            // login (an id planted by an attacker, another user's data)
            // carries over.
            Ok(()) => Redirect::to("/").into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        None => (
            StatusCode::UNAUTHORIZED,
            login_page(Some("Invalid username or password")),
        )
            .into_response(),
    }
}

async fn logout(State(users): State<SessionAuthenticator<User>>, session: Session) -> Redirect {
    users.logout(&session);
    Redirect::to("/login")
}

async fn me(Auth(user): Auth<User>, identity: Identity) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "username": user.username,
            "name": user.name,
            "role": user.role,
            "scheme": identity.scheme().to_string(),
        })),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = match std::env::var("SESSION_KEY") {
        Ok(text) => SessionKey::from_base64(&text)?,
        Err(_) => {
            eprintln!(
                "SESSION_KEY not set: using a fresh key, sessions end when the process stops"
            );
            SessionKey::generate()?
        }
    };
    let secure = !std::env::args().any(|a| a == "--insecure-cookies");
    let app = match std::env::var("REDIS_URL") {
        // Several instances share sessions through Redis (with the `redis`
        // feature); start each with the same SESSION_KEY.
        #[cfg(feature = "redis")]
        Ok(url) => {
            let redis = tower_auth::redis::RedisConnection::open(url.as_str())?;
            println!("sessions in Redis");
            app(session_layer(
                tower_auth::redis::RedisSessionStore::new(redis),
                key,
                secure,
            ))
        }
        #[cfg(not(feature = "redis"))]
        Ok(_) => return Err("REDIS_URL needs the `redis` feature".into()),
        // Bounded by default (100 000 sessions of at most 64 KiB); when
        // full, anonymous sessions (no "user") are evicted first, never
        // signed-in ones.
        Err(_) => {
            let store = MemorySessionStore::new().evict_anonymous("user");
            app(session_layer(store, key, secure))
        }
    };
    let addr = util::listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
