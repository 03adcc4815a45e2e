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
//! | method          | params                 | security       | result |
//! |-----------------|------------------------|----------------|--------|
//! | `sign_up`       | `username`, `password` | none           | `{"username"}` |
//! | `sign_in`       | `username`, `password` | none           | `{"access_token", "token_type"}` |
//! | `require_token` |                        | bearer         | `{"username"}` |
//! | `sign_out`      |                        | bearer         | `{"signed_out": true}`: the token is revoked |
//! | `list_users`    |                        | bearer + `admin` role | `{"users": [...]}` |
//!
//! The first user signed up is an admin. Usernames are 3 to 64 letters,
//! digits or `. _ @ -`; passwords 8 to 1024 bytes.
//!
//! The endpoint is `/api/v1` (with or without a trailing slash): `POST` for
//! HTTP, `GET` with an upgrade for WebSocket. A WebSocket is authenticated
//! when it connects, from its `Authorization` header or, for browsers, its
//! `access_token` query parameter (accepted on the upgrade only: a plain
//! HTTP call must use the header). Calls that need a token and have none
//! (or a bad one) get a JSON-RPC error, never a 401, so that the other
//! methods of the same endpoint keep working.
//!
//! Error codes besides the standard ones: `-32001` a bearer token is needed
//! (missing or refused: the 401 of HTTP), `-32002` sign-up or sign-in
//! refused, `-32003` every password-hashing slot stayed busy (argon2id runs
//! at most once per CPU at a time; retry shortly), `-32004` the token is
//! valid but lacks the role the method needs (the 403 of HTTP). HTTP answers
//! are `Cache-Control: no-store`: they may carry an access token (RFC 6749
//! §5.1).
//!
//! A WebSocket ends with its credentials: when the token it was opened with
//! expires or is revoked (`sign_out`, over HTTP or on the socket itself),
//! the server closes it with `1008` (policy violation) and the reason
//! (`credentials expired`, `credentials revoked`). Anonymous sockets stay
//! open.
//!
//! Limits: an HTTP body or a WebSocket message is at most 1 MiB (a larger
//! body gets `413` with a JSON-RPC error object; a larger message closes the
//! socket with `1009`, RFC 6455 §7.4.1), a batch at most 32 calls.
//!
//! Listens on 127.0.0.1:8080, or `PORT`, or `--addr <ip:port>`. Users live
//! in SQLite (`DATABASE` env, default `jsonrpc.db`; `:memory:` for none).

#[path = "common/mod.rs"]
pub(crate) mod common;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_auth::jwt::{JwtAuthenticator, TokenIssuer};
use tower_auth::lifetime::{CloseCodes, CredentialWatch};
use tower_auth::{AuthError, Authenticated, Authenticator};

use common::{Db, DbError};

/// The largest HTTP body or WebSocket message: 1 MiB.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// The most calls in one batch: each may hash a password.
pub(crate) const MAX_BATCH: usize = 32;

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
    /// For HTTP calls: the `Authorization` header only.
    auth: JwtAuthenticator<Claims>,
    /// For the WebSocket upgrade: the header, or `?access_token=` for
    /// browsers, which cannot set headers on a WebSocket.
    ws_auth: JwtAuthenticator<Claims>,
}

impl App {
    /// An app over `db`, signing HS256 tokens with `secret`.
    pub(crate) fn new(db: Db, secret: &[u8]) -> Self {
        Self::with_ttl(db, secret, std::time::Duration::from_secs(3600))
    }

    /// An app whose access tokens live `ttl`.
    pub(crate) fn with_ttl(db: Db, secret: &[u8], ttl: std::time::Duration) -> Self {
        let issuer = TokenIssuer::hs256(secret)
            .expect("a JWT secret of at least 32 bytes")
            .access_ttl(ttl)
            .build()
            .expect("a valid token issuer");
        let auth = issuer.authenticator::<Claims>();
        // A WebSocket lives on after its upgrade: it gets a CredentialWatch,
        // which ends it when the token expires or is revoked (sign-out). The
        // issuer's memory revocation store broadcasts revocations, so a
        // sign-out closes the socket at once; the periodic check is a
        // fallback.
        let ws_auth = auth
            .clone()
            .query_param("access_token")
            .watch_credentials(std::time::Duration::from_secs(30));
        App {
            db,
            issuer,
            auth,
            ws_auth,
        }
    }
}

/// Who is calling: authenticated, anonymous, or with credentials that were
/// refused (kept, so that only methods that need a token fail), and the
/// token itself, for `sign_out`.
pub(crate) struct Caller {
    auth: Result<Option<Authenticated<Claims>>, AuthError>,
    token: Option<String>,
}

impl Caller {
    /// Authenticates `parts` with `auth`; `query` says whether the token may
    /// come from `?access_token=` (the WebSocket upgrade).
    async fn new(auth: &JwtAuthenticator<Claims>, parts: &Parts, query: bool) -> Caller {
        let result = auth.authenticate_request(parts).await;
        let token = match &result {
            Ok(Some(_)) => presented_token(parts, query),
            _ => None,
        };
        Caller {
            auth: result,
            token,
        }
    }

    /// When the caller's credentials end (for a WebSocket).
    fn watch(&self) -> Option<CredentialWatch> {
        let authenticated = self.auth.as_ref().ok()?.as_ref()?;
        authenticated.extensions().get::<CredentialWatch>().cloned()
    }
}

/// The token an authenticated request presented: after the
/// `Bearer ` of its `Authorization` header, else (`query`) its
/// `access_token` parameter.
fn presented_token(parts: &Parts, query: bool) -> Option<String> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim_start().to_owned());
    }
    if !query {
        return None;
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .map(str::to_owned)
}

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
/// Server error: the method needs a valid bearer token (HTTP's 401).
const UNAUTHORIZED: i64 = -32001;
/// Server error: sign-up or sign-in refused.
const AUTH_FAILED: i64 = -32002;
/// Server error: every password-hashing slot is busy; retry shortly.
const BUSY: i64 = -32003;
/// Server error: the token is valid but lacks a role (HTTP's 403).
const FORBIDDEN: i64 = -32004;

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
    }
}

/// A response object without an id: the request could not be read.
fn error_response(code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": error(code, message), "id": null})
}

/// Security requirement of a method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    None,
    Bearer,
    Role(&'static str),
}

/// The method table: name, parameter names, security.
const METHODS: &[(&str, &[&str], Security)] = &[
    ("sign_up", &["username", "password"], Security::None),
    ("sign_in", &["username", "password"], Security::None),
    ("require_token", &[], Security::Bearer),
    ("sign_out", &[], Security::Bearer),
    ("list_users", &[], Security::Role("admin")),
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

/// The caller's principal when `security` lets it call: `-32001` without
/// valid credentials, `-32004` without the role.
fn authorize(
    security: Security,
    caller: &Caller,
) -> Result<Option<&Authenticated<Claims>>, RpcError> {
    let authenticated = match (security, &caller.auth) {
        (Security::None, _) => return Ok(None),
        (_, Ok(Some(a))) => a,
        (_, Ok(None)) => return Err(error(UNAUTHORIZED, "authentication required")),
        (_, Err(e)) => return Err(error(UNAUTHORIZED, e.message())),
    };
    if let Security::Role(role) = security {
        if !authenticated.identity.has_role(role) {
            return Err(error(FORBIDDEN, format!("the {role} role is required")));
        }
    }
    Ok(Some(authenticated))
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
    let authenticated = authorize(*security, caller)?;
    let claims = authenticated.map(|a| &a.principal);
    match method {
        "sign_up" => {
            let (username, password) = (&args[0], &args[1]);
            common::check_sign_up(username, password).map_err(|m| error(INVALID_PARAMS, m))?;
            let user = app
                .db
                .create_user(username, password)
                .await
                .map_err(db_error)?;
            Ok(json!({ "username": user.username }))
        }
        "sign_in" => {
            common::check_sign_in(&args[0], &args[1]).map_err(|m| error(INVALID_PARAMS, m))?;
            let user = app
                .db
                .check_password(&args[0], &args[1])
                .await
                .map_err(db_error)?
                .ok_or_else(|| error(AUTH_FAILED, "Authentication failed."))?;
            let pair = app
                .issuer
                .issue(&user.username, &json!({ "role": user.role }))
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
        "sign_out" => {
            let token = caller
                .token
                .as_deref()
                .ok_or_else(|| error(UNAUTHORIZED, "authentication required"))?;
            app.issuer
                .logout(Some(token), None)
                .await
                .map_err(|e| match e.kind() {
                    tower_auth::AuthErrorKind::Unavailable => {
                        error(INTERNAL_ERROR, "sign-out could not be recorded; retry")
                    }
                    _ => error(UNAUTHORIZED, e.message()),
                })?;
            Ok(json!({ "signed_out": true }))
        }
        "list_users" => {
            let users = app.db.users().await.map_err(db_error)?;
            let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
            Ok(json!({ "users": names }))
        }
        _ => Err(error(METHOD_NOT_FOUND, "method not found")),
    }
}

/// Answers one request object; `None` for notifications.
async fn handle_one(app: &App, caller: &Caller, request: &Value) -> Option<Value> {
    let Some(obj) = request.as_object() else {
        return Some(error_response(INVALID_REQUEST, "invalid request"));
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
        return Some(error_response(INVALID_REQUEST, "invalid request"));
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
        return Some(error_response(PARSE_ERROR, "parse error"));
    };
    match value {
        Value::Array(batch) if batch.is_empty() => {
            Some(error_response(INVALID_REQUEST, "empty batch"))
        }
        Value::Array(batch) if batch.len() > MAX_BATCH => Some(error_response(
            INVALID_REQUEST,
            "batch of more than 32 calls",
        )),
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

fn json_answer(status: StatusCode, answer: &Value) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        answer.to_string(),
    )
        .into_response()
}

async fn http_rpc(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_MESSAGE).await else {
        return json_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_response(INVALID_REQUEST, "request body larger than 1 MiB"),
        );
    };
    let caller = Caller::new(&app.auth, &parts, false).await;
    match handle(&app, &caller, &body).await {
        Some(answer) => json_answer(StatusCode::OK, &answer),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn ws_rpc(State(app): State<App>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let caller = Caller::new(&app.ws_auth, &parts, true).await;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve_socket(app, caller, socket))
}

/// Whether a receive error is a message over the size limit.
fn too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    e.into_inner()
        .downcast_ref::<Error>()
        .is_some_and(|e| matches!(e, Error::Capacity(_)))
}

/// Close code 1009 (RFC 6455 §7.4.1): a message too big to process.
const MESSAGE_TOO_BIG: u16 = 1009;

/// Serves a WebSocket until the client leaves or, for an authenticated
/// one, until its token expires or is revoked: then it is closed with 1008
/// (policy violation) and the reason.
async fn serve_socket(app: App, caller: Caller, mut socket: WebSocket) {
    let Some(watch) = caller.watch() else {
        return serve_messages(&app, &caller, &mut socket).await;
    };
    let served = watch
        .run_until_ended(serve_messages(&app, &caller, &mut socket))
        .await;
    if let Err(ended) = served {
        let frame = CloseFrame {
            code: ended.close_code(CloseCodes::Policy),
            reason: ended.reason().into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

async fn serve_messages(app: &App, caller: &Caller, socket: &mut WebSocket) {
    while let Some(received) = socket.recv().await {
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                if too_big(e) {
                    let frame = CloseFrame {
                        code: MESSAGE_TOO_BIG,
                        reason: "message larger than 1 MiB".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                }
                break;
            }
        };
        let payload = match &message {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            Message::Close(_) => break,
            _ => continue,
        };
        if let Some(answer) = handle(app, caller, payload).await {
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
