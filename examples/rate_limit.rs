//! Rate limits on axum: the seed's "Implement Rate Limiting" section (5
//! failed logins per 15 minutes per client), a per-IP limit on every route
//! and a per-user limit behind bearer authentication.
//!
//! ```sh
//! cargo run --example rate_limit --features full
//! for i in 1 2 3 4 5 6; do
//!   curl -s -o /dev/null -w '%{http_code}\n' localhost:8080/login \
//!     -H 'content-type: application/json' -d '{"email":"alice@example.com","password":"nope"}'
//! done                                   # 401 ×5, then 429 + Retry-After: 900
//! curl -i localhost:8080/me -H 'Authorization: Bearer valid_token_123'
//!                                        # RateLimit / RateLimit-Policy headers
//! ```
//!
//! Listens on 127.0.0.1:8080, or on `PORT`, or on `--addr <ip:port>`.

#[path = "util/addr.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_auth::bearer::{BearerAuthenticator, BearerToken};
use tower_auth::rate_limit::{Limit, PeerIp, Quota, QuotaError, RateLimitLayer, Subject};
use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};

async fn login(Json(body): Json<Value>) -> impl IntoResponse {
    // In production: look the user up and verify a password hash.
    if body["email"] == "alice@example.com" && body["password"] == "secret" {
        Json(json!({"access_token": "valid_token_123", "token_type": "bearer"})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Invalid credentials"})),
        )
            .into_response()
    }
}

async fn me(identity: Identity) -> Json<Value> {
    Json(json!({ "user_id": identity.subject() }))
}

pub(crate) fn app() -> Result<Router, QuotaError> {
    let bearer = BearerAuthenticator::new(|token: BearerToken| async move {
        if token.ct_eq("valid_token_123") {
            Ok(Authenticated::new((), Identity::new("1", Scheme::Bearer)))
        } else {
            Err(AuthError::invalid_credentials("invalid or expired token"))
        }
    });

    // 5 failed logins, then 429 for 15 minutes (one more try every 15
    // minutes after that). Only 401 responses count.
    let failed_logins = Quota::with_period(Duration::from_secs(15 * 60))?.allow_burst(5)?;
    let login = Router::new()
        .route("/login", post(login))
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "login",
            failed_logins,
            PeerIp::new(),
        )));

    // 1000 requests per hour per user, counted after authentication.
    let api = Router::new()
        .route("/me", get(me))
        .layer(
            RateLimitLayer::new(Limit::new("per-user", Quota::per_hour(1000)?, Subject))
                .remaining_headers(true),
        )
        .layer(AuthLayer::new(bearer));

    // 100 requests per minute per client IP, in front of everything.
    let per_ip = Limit::new("per-ip", Quota::per_minute(100)?, PeerIp::new());
    Ok(Router::new()
        .merge(login)
        .merge(api)
        .layer(RateLimitLayer::new(per_ip).remaining_headers(true)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(util::listen_addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // The per-IP limits read the peer address from ConnectInfo.
    let app = app()?.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
