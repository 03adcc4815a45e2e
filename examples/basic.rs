//! API keys and bearer tokens on axum: the seeds' "API Key Authentication",
//! "Bearer Token Authentication" and "Optional Authentication" sections.
//!
//! ```sh
//! cargo run --example basic --features full
//! curl -i localhost:8080/protected -H 'x-api-key: key_12345'
//! curl -i localhost:8080/profile -H 'Authorization: Bearer valid_token_123'
//! curl -i localhost:8080/me -H 'x-api-key: key_67890'
//! curl -i localhost:8080/posts                     # anonymous: published posts only
//! curl -i localhost:8080/posts -H 'x-api-key: key_12345'
//! curl -i localhost:8080/protected                 # 401 + WWW-Authenticate
//! ```
//!
//! Listens on 127.0.0.1:8080, or on `PORT`, or on `--addr <ip:port>`.

#[path = "util/addr.rs"]
mod util;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::bearer::{BearerAuthenticator, BearerToken};
use tower_auth::extract::Auth;
use tower_auth::{AuthError, AuthLayer, Authenticated, Authenticator, Identity, Scheme};

/// The principal every authenticator of this example yields.
#[derive(Clone, Debug)]
struct User {
    user_id: String,
    name: String,
}

fn api_keys() -> ApiKeyAuthenticator<MemoryApiKeyStore<User>> {
    let store = MemoryApiKeyStore::new();
    for (key, id, name) in [("key_12345", "1", "Alice"), ("key_67890", "2", "Bob")] {
        let user = User {
            user_id: id.into(),
            name: name.into(),
        };
        // Only the SHA-256 digest of the key is kept.
        store.insert_key(key, user, Identity::new(id, Scheme::ApiKey));
    }
    ApiKeyAuthenticator::new(store).realm("example")
}

fn bearer() -> BearerAuthenticator<impl tower_auth::bearer::TokenValidator<Principal = User>> {
    BearerAuthenticator::new(|token: BearerToken| async move {
        // In production: look the token up in a database or cache.
        if token.ct_eq("valid_token_123") {
            let user = User {
                user_id: "1".into(),
                name: "Alice".into(),
            };
            let identity = Identity::new("1", Scheme::Bearer).with_roles(["admin"]);
            Ok(Authenticated::new(user, identity))
        } else {
            Err(AuthError::invalid_credentials("invalid or expired token"))
        }
    })
    .realm("example")
}

async fn protected(Auth(user): Auth<User>) -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}!", user.name), "user_id": user.user_id }))
}

async fn profile(Auth(user): Auth<User>, identity: Identity) -> Json<Value> {
    Json(json!({
        "user": { "id": user.user_id, "name": user.name },
        "roles": identity.roles().collect::<Vec<_>>(),
        "scheme": identity.scheme().to_string(),
    }))
}

async fn posts(user: Option<Auth<User>>) -> Json<Value> {
    let all = [
        json!({"id": "1", "title": "Post 1", "author_id": "1", "published": true, "body": "..."}),
        json!({"id": "2", "title": "Draft", "author_id": "2", "published": false, "body": "..."}),
    ];
    match user {
        Some(_) => Json(json!({ "posts": all })),
        None => Json(json!({
            "posts": all
                .iter()
                .filter(|p| p["published"] == true)
                .map(|p| json!({"id": p["id"], "title": p["title"], "published": true}))
                .collect::<Vec<_>>()
        })),
    }
}

pub(crate) fn app() -> Router {
    Router::new()
        .merge(
            Router::new()
                .route("/protected", get(protected))
                .layer(AuthLayer::new(api_keys())),
        )
        .merge(
            Router::new()
                .route("/profile", get(profile))
                .layer(AuthLayer::new(bearer())),
        )
        .merge(
            Router::new()
                .route("/me", get(profile))
                .layer(AuthLayer::new(bearer().or(api_keys()))),
        )
        .merge(
            Router::new()
                .route("/posts", get(posts))
                .layer(AuthLayer::optional(bearer().or(api_keys()))),
        )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = util::listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()).await
}
