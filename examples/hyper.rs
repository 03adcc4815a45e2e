//! tower-auth on a plain hyper 1.x server, no framework: JWT or API key on
//! the protected routes, principals read from request extensions.
//!
//! ```sh
//! cargo run --example hyper --features full
//! curl -s localhost:8080/sign_up -d '{"username":"alice","password":"correct horse"}'
//! TOKEN=$(curl -s localhost:8080/sign_in -d '{"username":"alice","password":"correct horse"}' | jq -r .access_token)
//! curl -s localhost:8080/me -H "Authorization: Bearer $TOKEN"
//! curl -s -X POST localhost:8080/api_keys -H "Authorization: Bearer $TOKEN"   # returns a key once
//! curl -s localhost:8080/me -H "x-api-key: $KEY"
//! curl -si localhost:8080/me                                                  # 401
//! ```
//!
//! Listens on 127.0.0.1:8080, or `PORT`, or `--addr <ip:port>`. Users live in
//! SQLite (`DATABASE`, default `hyper.db`).

#[path = "common/mod.rs"]
pub(crate) mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::body::ResponseBody;
use tower_auth::jwt::TokenIssuer;
use tower_auth::{AuthError, Authenticated, Authenticator, Identity, Scheme, ServiceBuilderExt};

use common::{Db, User};

/// Access token claims.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Claims {
    sub: String,
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

type Body = Full<Bytes>;

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("valid header"),
    );
    res
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        json!({"error": status.canonical_reason(), "message": message}),
    )
}

async fn read_credentials(req: Request<Incoming>) -> Result<Credentials, Response<Body>> {
    let body = Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected {\"username\": ..., \"password\": ...}",
        )
    })
}

/// Routes that need no credentials.
async fn public(db: Db, issuer: TokenIssuer, req: Request<Incoming>) -> Response<Body> {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/healthz") => json(StatusCode::OK, json!({"status": "ok"})),
        (Method::POST, "/sign_up") => {
            let c = match read_credentials(req).await {
                Ok(c) => c,
                Err(res) => return res,
            };
            if c.username.is_empty() || c.password.len() < 8 {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "username required, password of at least 8 characters",
                );
            }
            match db.create_user(&c.username, &c.password).await {
                Ok(user) => json(StatusCode::CREATED, json!(user)),
                Err(common::DbError::Conflict) => {
                    error(StatusCode::CONFLICT, "username already taken")
                }
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            }
        }
        (Method::POST, "/sign_in") => {
            let c = match read_credentials(req).await {
                Ok(c) => c,
                Err(res) => return res,
            };
            match db.check_password(&c.username, &c.password).await {
                Ok(Some(user)) => {
                    match issuer.issue(&user.id.to_string(), &json!({"role": user.role})) {
                        Ok(pair) => json(StatusCode::OK, json!(pair)),
                        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                    }
                }
                Ok(None) => error(StatusCode::UNAUTHORIZED, "invalid credentials"),
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Routes behind `AuthLayer`: the user is in the request extensions.
async fn protected(db: Db, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (Some(user), Some(identity)) = (
        req.extensions().get::<User>().cloned(),
        req.extensions().get::<Identity>().cloned(),
    ) else {
        // Unreachable behind a required AuthLayer; fail closed anyway.
        return Ok(error(StatusCode::UNAUTHORIZED, "authentication required"));
    };
    Ok(match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/me") => json(
            StatusCode::OK,
            json!({"user": user, "scheme": identity.scheme().to_string()}),
        ),
        (Method::POST, "/api_keys") => {
            match db.create_api_key(user.id, "hyper example".into()).await {
                Ok((key, key_id)) => json(
                    StatusCode::CREATED,
                    json!({"key_id": key_id, "api_key": key.expose(), "note": "shown once; store it now"}),
                ),
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    })
}

/// JWT (`Authorization: Bearer`) or API key (`x-api-key`), both yielding
/// the user from the database.
pub(crate) fn authenticator(db: Db, issuer: &TokenIssuer) -> impl Authenticator<Principal = User> {
    let users = db.clone();
    let jwt = issuer
        .authenticator::<Claims>()
        .and_then(move |a: Authenticated<Claims>| {
            let users = users.clone();
            async move {
                let id = a
                    .principal
                    .sub
                    .parse()
                    .map_err(|_| AuthError::invalid_credentials("bad subject"))?;
                match users.user(id).await {
                    Ok(Some(user)) => Ok(Authenticated::new(
                        user.clone(),
                        user.identity(Scheme::Bearer),
                    )),
                    Ok(None) => Err(AuthError::invalid_credentials("unknown user")),
                    Err(e) => Err(AuthError::unavailable(e)),
                }
            }
        });
    jwt.or(ApiKeyAuthenticator::new(db))
}

/// The whole service: public routes, else the protected ones behind
/// `AuthLayer` (added with `ServiceBuilderExt::authenticate`).
pub(crate) fn service(
    db: Db,
    issuer: TokenIssuer,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ResponseBody<Body>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let protected = ServiceBuilder::new()
        .authenticate(authenticator(db.clone(), &issuer))
        .service_fn({
            let db = db.clone();
            move |req| protected(db.clone(), req)
        });
    service_fn(move |req: Request<Incoming>| {
        let (db, issuer, protected) = (db.clone(), issuer.clone(), protected.clone());
        async move {
            let path = req.uri().path();
            if matches!(path, "/healthz" | "/sign_up" | "/sign_in") {
                Ok(public(db, issuer, req).await.map(ResponseBody::inner))
            } else {
                protected.oneshot(req).await
            }
        }
    })
}

/// Accepts connections on `listener` forever.
pub(crate) async fn serve(listener: tokio::net::TcpListener, db: Db, issuer: TokenIssuer) {
    let svc = service(db, issuer);
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::var("DATABASE").unwrap_or_else(|_| "hyper.db".into());
    let db =
        Db::open(&path, std::env::var("ADMIN_USERNAME").ok()).map_err(std::io::Error::other)?;
    let issuer = TokenIssuer::hs256(&common::jwt_secret())
        .map_err(std::io::Error::other)?
        .build()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(common::listen_addr()).await?;
    println!(
        "listening on http://{} (database: {path})",
        listener.local_addr()?
    );
    serve(listener, db, issuer).await;
    Ok(())
}
