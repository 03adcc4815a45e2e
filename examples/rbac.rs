//! Role, permission and owner checks on axum: the seeds' "Role-Based Access
//! Control", "Permission-Based Access" and "Owner-Based Access" sections.
//!
//! ```sh
//! cargo run --example rbac --features full
//! curl -i localhost:8080/users -H 'Authorization: Bearer carol-token'       # moderator: 200
//! curl -i localhost:8080/users -H 'Authorization: Bearer bob-token'         # user: 403 insufficient_scope
//! curl -i -X DELETE localhost:8080/users/2 -H 'Authorization: Bearer alice-token'
//! curl -i -X PUT localhost:8080/posts/2 -H 'Authorization: Bearer bob-token' \
//!      -H 'content-type: application/json' -d '{"title": "mine"}'          # owner: 200
//! curl -i -X PUT localhost:8080/posts/1 -H 'Authorization: Bearer bob-token' \
//!      -H 'content-type: application/json' -d '{"title": "not mine"}'      # 403
//! curl -i -X PUT localhost:8080/posts/9 -H 'Authorization: Bearer bob-token' \
//!      -H 'content-type: application/json' -d '{}'                         # 404
//! curl -i localhost:8080/admin/users                                       # 401
//! ```
//!
//! Listens on 127.0.0.1:8080, or on `PORT`, or on `--addr <ip:port>`.

#[path = "util/addr.rs"]
mod util;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use axum::extract::{Path, State};
use axum::routing::{delete, get, put};
use axum::{Json, RequestPartsExt, Router};
use bytes::Bytes;
use http::request::Parts;
use http::StatusCode;
use serde_json::{json, Value};
use tower_auth::authz::{
    policy_fn, role, Denied, Guard, Permission, Policy, RequireLayer, RoleMap,
};
use tower_auth::bearer::{BearerAuthenticator, BearerToken, TokenValidator};
use tower_auth::rejection::{Rejection, Rejections};
use tower_auth::{guard_policy, AuthError, AuthLayer, Authenticated, Identity, Scheme};

/// The seeds' `ROLE_PERMISSIONS`, with inheritance: admin ⊇ moderator ⊇ user.
/// In production, read it from a config file.
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

guard_policy!(DeleteUsers: Permission = ROLES.permission("users:delete"));

/// post id -> (title, author id)
type Posts = Arc<RwLock<HashMap<String, (String, String)>>>;

fn bearer() -> BearerAuthenticator<impl TokenValidator<Principal = ()>> {
    BearerAuthenticator::new(|token: BearerToken| async move {
        // In production: verify a JWT or look the token up.
        // Compared in constant time (`match token.expose()` would not be).
        const TOKENS: [(&str, &str, &str); 3] = [
            ("alice-token", "1", "admin"),
            ("bob-token", "2", "user"),
            ("carol-token", "3", "moderator"),
        ];
        let Some(&(_, id, role)) = TOKENS.iter().find(|(t, _, _)| token.ct_eq(t)) else {
            return Err(AuthError::invalid_credentials("invalid or expired token"));
        };
        Ok(Authenticated::new(
            (),
            Identity::new(id, Scheme::Bearer).with_roles([role]),
        ))
    })
    .realm("example")
}

/// The seeds' `authorized_post`: the author or an admin; `404` for unknown
/// posts. Admins pass on the role check alone, without a lookup.
fn author_or_admin(posts: Posts) -> impl Policy {
    role("admin").or(policy_fn(move |identity: Identity, head: &Parts| {
        let posts = posts.clone();
        let mut head = head.clone();
        async move {
            let Ok(Path(post_id)) = head.extract::<Path<String>>().await else {
                return Err(Denied::not_found("post not found"));
            };
            let posts = posts
                .read()
                .map_err(|_| Denied::unavailable("lock poisoned"))?;
            match posts.get(&post_id) {
                None => Err(Denied::not_found("post not found")),
                // An identity without a subject owns nothing.
                Some((_, author))
                    if !identity.subject().is_empty() && author == identity.subject() =>
                {
                    Ok(())
                }
                Some(_) => Err(Denied::forbidden("you can only edit your own posts")),
            }
        }
    }))
}

async fn list_users() -> Json<Value> {
    Json(json!({"users": [{"id": "1"}, {"id": "2"}, {"id": "3"}]}))
}

async fn delete_user(_: Guard<DeleteUsers>, Path(user_id): Path<String>) -> Json<Value> {
    Json(json!({"message": format!("user {user_id} deleted")}))
}

async fn delete_post() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn update_post(
    State(posts): State<Posts>,
    Path(post_id): Path<String>,
    Json(update): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let mut posts = posts
        .write()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let (title, author) = posts.get_mut(&post_id).ok_or(StatusCode::NOT_FOUND)?;
    if let Some(new) = update["title"].as_str() {
        *title = new.to_owned();
    }
    Ok(Json(
        json!({"id": post_id, "title": title, "author_id": author}),
    ))
}

/// The seeds' `@app.error_handler(403)`.
fn error_handler() -> Rejections {
    Rejections::custom(|rejection: Rejection| {
        if rejection.is_grpc() || rejection.status() != StatusCode::FORBIDDEN {
            return rejection.into_response();
        }
        let body = json!({"error": "Forbidden", "message": rejection.message()});
        let mut res = rejection.into_response();
        *res.body_mut() = Bytes::from(body.to_string());
        res
    })
}

pub(crate) fn app() -> Router {
    let posts: Posts = Arc::new(RwLock::new(HashMap::from([
        ("1".into(), ("Post 1".into(), "1".into())),
        ("2".into(), ("Post 2".into(), "2".into())),
    ])));
    let admin = Router::new()
        .route("/admin/users", get(list_users))
        .route_layer(RequireLayer::new(role("admin")));
    let users = Router::new()
        .route("/users", get(list_users))
        .route_layer(RequireLayer::new(ROLES.permission("users:read")))
        .route("/users/{user_id}", delete(delete_user));
    let moderation = Router::new()
        .route("/posts/{post_id}", delete(delete_post))
        .route_layer(RequireLayer::new(ROLES.role("moderator")));
    let editing = Router::new()
        .route("/posts/{post_id}", put(update_post))
        .route_layer(RequireLayer::new(author_or_admin(posts.clone())));
    Router::new()
        .merge(admin)
        .merge(users)
        .merge(moderation)
        .merge(editing)
        .with_state(posts)
        .layer(axum::Extension(error_handler()))
        .layer(AuthLayer::new(bearer()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(util::listen_addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()).await
}
