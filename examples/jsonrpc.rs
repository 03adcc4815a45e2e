//! JSON-RPC 2.0 over HTTP and WebSocket with per-method security: the seeds'
//! OpenRPC "Authentication" and "Authorization" guides.
//!
//! ```sh
//! cargo run --example jsonrpc --features full
//! curl -s localhost:8080/api/v1 -d '{"jsonrpc":"2.0","id":1,"method":"sign_up","params":["email@test.com","password"]}'
//! curl -s localhost:8080/api/v1 -d '{"jsonrpc":"2.0","id":2,"method":"sign_in","params":["email@test.com","password"]}'
//! curl -s localhost:8080/api/v1 -H "Authorization: Bearer $TOKEN" -d '{"jsonrpc":"2.0","id":3,"method":"require_token","params":[]}'
//! ```
//!
//! Methods (positional or named parameters):
//!
//! | method          | params                 | security | result |
//! |-----------------|------------------------|----------|--------|
//! | `sign_up`       | `username`, `password` | none     | `{"username"}` |
//! | `sign_in`       | `username`, `password` | none     | `{"access_token", "token_type"}` |
//! | `require_token` |                        | bearer   | `{"username"}` |
//!
//! The endpoint is `/api/v1` (with or without a trailing slash): `POST` for
//! HTTP, `GET` with an upgrade for WebSocket. A WebSocket is authenticated
//! once, when it connects, from its `Authorization` header or, for browsers,
//! its `access_token` query parameter. Calls that need a token and have none
//! (or a bad one) get a JSON-RPC error, never a 401, so that the other
//! methods of the same endpoint keep working.
//!
//! Error codes besides the standard ones: `-32001` a bearer token is needed
//! (missing or refused), `-32002` sign-up or sign-in refused, `-32003` every
//! password-hashing slot stayed busy (argon2id runs at most once per CPU at
//! a time; retry shortly). HTTP answers are `Cache-Control: no-store`: they
//! may carry an access token (RFC 6749 §5.1).
//!
//! Listens on 127.0.0.1:8080, or `PORT`, or `--addr <ip:port>`. Users live
//! in SQLite (`DATABASE` env, default `jsonrpc.db`; `:memory:` for none).

#[path = "common/mod.rs"]
pub(crate) mod common;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_auth::jwt::{JwtAuthenticator, TokenIssuer};
use tower_auth::{AuthError, Authenticated, Authenticator};

use common::{Db, DbError};

/// The claims of our access tokens.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Claims {
    sub: String,
}

/// The shared state.
#[derive(Clone, Debug)]
pub(crate) struct App {
    db: Db,
    issuer: TokenIssuer,
    auth: JwtAuthenticator<Claims>,
}

impl App {
    /// An app over `db`, signing HS256 tokens with `secret`.
    pub(crate) fn new(db: Db, secret: &[u8]) -> Self {
        let issuer = TokenIssuer::hs256(secret)
            .expect("a JWT secret of at least 32 bytes")
            .access_ttl(std::time::Duration::from_secs(3600));
        // Browsers cannot set headers on a WebSocket: accept ?access_token=.
        let auth = issuer.authenticator::<Claims>().query_param("access_token");
        App { db, issuer, auth }
    }
}

/// Who is calling: authenticated, anonymous, or with credentials that were
/// refused (kept, so that only methods that need a token fail).
type Caller = Result<Option<Authenticated<Claims>>, AuthError>;

/// A JSON-RPC error object.
#[derive(Debug, Serialize)]
struct RpcError {
    code: i64,
    message: String,
}

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// Server error: the method needs a valid bearer token.
const UNAUTHORIZED: i64 = -32001;
/// Server error: sign-up or sign-in refused.
const AUTH_FAILED: i64 = -32002;
/// Server error: every password-hashing slot is busy; retry shortly.
const BUSY: i64 = -32003;

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
    }
}

/// Security requirement of a method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    None,
    Bearer,
}

/// The method table: name, parameter names, security.
const METHODS: &[(&str, &[&str], Security)] = &[
    ("sign_up", &["username", "password"], Security::None),
    ("sign_in", &["username", "password"], Security::None),
    ("require_token", &[], Security::Bearer),
];

/// Reads positional or named parameters into strings.
fn params(names: &[&str], params: Option<&Value>) -> Result<Vec<String>, RpcError> {
    let invalid = || {
        error(
            INVALID_PARAMS,
            format!("expected parameters {names:?} (strings)"),
        )
    };
    let values: Vec<&Value> = match params {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Object(o)) => {
            if o.keys().any(|k| !names.contains(&k.as_str())) {
                return Err(invalid());
            }
            names.iter().filter_map(|n| o.get(*n)).collect()
        }
        Some(_) => return Err(invalid()),
    };
    if values.len() != names.len() {
        return Err(invalid());
    }
    values
        .into_iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
        .collect()
}

fn db_error(e: DbError) -> RpcError {
    match e {
        DbError::Conflict => error(AUTH_FAILED, "username already taken"),
        DbError::Busy => error(BUSY, "too many password checks in progress; retry shortly"),
        other => {
            eprintln!("database error: {other}");
            error(INTERNAL_ERROR, "internal error")
        }
    }
}

async fn call(
    app: &App,
    caller: &Caller,
    method: &str,
    raw: Option<&Value>,
) -> Result<Value, RpcError> {
    let Some((_, names, security)) = METHODS.iter().find(|(name, _, _)| *name == method) else {
        return Err(error(METHOD_NOT_FOUND, "method not found"));
    };
    let args = params(names, raw)?;
    let claims = match (security, caller) {
        (Security::None, _) => None,
        (Security::Bearer, Ok(Some(a))) => Some(&a.principal),
        (Security::Bearer, Ok(None)) => return Err(error(UNAUTHORIZED, "authentication required")),
        (Security::Bearer, Err(e)) => return Err(error(UNAUTHORIZED, e.message())),
    };
    match method {
        "sign_up" => {
            let (username, password) = (&args[0], &args[1]);
            if username.is_empty() || password.len() < 8 {
                return Err(error(
                    INVALID_PARAMS,
                    "username required, password of at least 8 characters",
                ));
            }
            let user = app
                .db
                .create_user(username, password)
                .await
                .map_err(db_error)?;
            Ok(json!({ "username": user.username }))
        }
        "sign_in" => {
            let user = app
                .db
                .check_password(&args[0], &args[1])
                .await
                .map_err(db_error)?
                .ok_or_else(|| error(AUTH_FAILED, "Authentication failed."))?;
            let pair = app
                .issuer
                .issue(&user.username, &())
                .map_err(|_| error(INTERNAL_ERROR, "internal error"))?;
            Ok(json!({ "access_token": pair.access_token, "token_type": "bearer" }))
        }
        "require_token" => {
            let claims = claims.ok_or_else(|| error(UNAUTHORIZED, "authentication required"))?;
            let user = app
                .db
                .user_by_name(&claims.sub)
                .await
                .map_err(db_error)?
                .ok_or_else(|| error(UNAUTHORIZED, "unknown user"))?;
            Ok(json!({ "username": user.username }))
        }
        _ => Err(error(METHOD_NOT_FOUND, "method not found")),
    }
}

/// Answers one request object; `None` for notifications.
async fn handle_one(app: &App, caller: &Caller, request: &Value) -> Option<Value> {
    let Some(obj) = request.as_object() else {
        return Some(
            json!({"jsonrpc": "2.0", "error": error(INVALID_REQUEST, "invalid request"), "id": null}),
        );
    };
    let id = obj.get("id").cloned();
    let valid_id = matches!(
        id,
        None | Some(Value::Null | Value::Number(_) | Value::String(_))
    );
    let method = obj.get("method").and_then(Value::as_str);
    let (Some(method), true, Some("2.0")) =
        (method, valid_id, obj.get("jsonrpc").and_then(Value::as_str))
    else {
        return Some(
            json!({"jsonrpc": "2.0", "error": error(INVALID_REQUEST, "invalid request"), "id": null}),
        );
    };
    let result = call(app, caller, method, obj.get("params")).await;
    let id = id?; // a notification gets no answer
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(e) => json!({"jsonrpc": "2.0", "error": e, "id": id}),
    })
}

/// Answers a JSON-RPC payload (a request or a batch); `None` when there is
/// nothing to send back.
async fn handle(app: &App, caller: &Caller, payload: &[u8]) -> Option<Value> {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return Some(
            json!({"jsonrpc": "2.0", "error": error(PARSE_ERROR, "parse error"), "id": null}),
        );
    };
    match value {
        Value::Array(batch) if batch.is_empty() => Some(
            json!({"jsonrpc": "2.0", "error": error(INVALID_REQUEST, "empty batch"), "id": null}),
        ),
        Value::Array(batch) => {
            let mut out = Vec::new();
            for request in &batch {
                out.extend(handle_one(app, caller, request).await);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        single => handle_one(app, caller, &single).await,
    }
}

async fn http_rpc(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let caller = app.auth.authenticate_request(&parts).await;
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )
            .into_response();
    };
    match handle(&app, &caller, &body).await {
        Some(answer) => (
            [
                (CONTENT_TYPE, "application/json"),
                (CACHE_CONTROL, "no-store"),
            ],
            answer.to_string(),
        )
            .into_response(),
        None => axum::http::StatusCode::NO_CONTENT.into_response(),
    }
}

async fn ws_rpc(State(app): State<App>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let caller = app.auth.authenticate_request(&parts).await;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade.on_upgrade(move |socket| serve_socket(app, caller, socket))
}

async fn serve_socket(app: App, caller: Caller, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let payload = match &message {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            Message::Close(_) => break,
            _ => continue,
        };
        if let Some(answer) = handle(&app, &caller, payload).await {
            if socket
                .send(Message::Text(answer.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// The router: `/api/v1` and `/api/v1/`, POST for HTTP, GET for WebSocket.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1", get(ws_rpc).post(http_rpc))
        .route("/api/v1/", get(ws_rpc).post(http_rpc))
        .with_state(app)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::var("DATABASE").unwrap_or_else(|_| "jsonrpc.db".into());
    let db = Db::open(&path, None).map_err(std::io::Error::other)?;
    let app = App::new(db, &common::jwt_secret());
    let addr = common::listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "JSON-RPC on http://{}/api/v1 (database: {path})",
        listener.local_addr()?
    );
    axum::serve(listener, router(app)).await
}
