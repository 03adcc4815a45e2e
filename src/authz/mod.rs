//! Middleware that authorizes authenticated requests: role, permission,
//! scope and owner policies, as a [`RequireLayer`] and as axum [`Guard`]s.
//!
//! A [`Policy`] looks at the [`Identity`](crate::Identity) that an
//! [`AuthLayer`](crate::AuthLayer) put into the request extensions, and at
//! the request head for resource checks. [`RequireLayer`] enforces one:
//!
//! | request                                   | response                                   |
//! |-------------------------------------------|--------------------------------------------|
//! | the policy allows                         | the inner service's                        |
//! | no identity (anonymous)                   | `401` with the `AuthLayer`'s challenges    |
//! | bearer token lacking a permission / scope | `403`, `WWW-Authenticate: Bearer error="insufficient_scope", scope="posts:delete"` |
//! | bearer token lacking a role, or refused by a custom policy | `403`, `WWW-Authenticate: Bearer error="insufficient_scope"` (no `scope`) |
//! | other identity lacking a role / permission | `403` `insufficient permissions`          |
//! | [`Denied::not_found`] from a policy       | `404`                                      |
//! | [`Denied::unavailable`] from a policy     | `503`, fail closed                         |
//! | a pending policy past the [timeout](RequireLayer::backend_timeout) (5 s) | `503`, fail closed |
//! | [`step_up`]: `acr` or `auth_time` not good enough (RFC 9470) | `401`, `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="…", max_age="…"` |
//! | gRPC request                              | `grpc-status` 16 / 7 / 5 / 14              |
//!
//! Refusals are rendered by [`crate::rejection`] (JSON body, challenges,
//! gRPC status), with the renderer of the [`AuthLayer`](crate::AuthLayer)
//! (it travels in the request extensions, so one
//! [`AuthLayer::on_rejection`](crate::AuthLayer::on_rejection) covers the
//! stack); [`RequireLayer::on_rejection`] replaces it for one layer.
//!
//! `403` messages name no role, permission or scope by default
//! (`insufficient permissions`): the names describe your authorization
//! model to whoever is refused. Turn naming on with
//! [`RequireLayer::name_missing_rights`] or
//! [`Rejections::name_missing_rights`](crate::rejection::Rejections::name_missing_rights)
//! (`role 'admin' required`). Role names never appear in a challenge; the
//! `scope` attribute names the missing permissions or scopes of a bearer
//! token, as RFC 6750 requires.
//!
//! Ready policies: [`role`], [`any_role`], [`permission`],
//! [`all_permissions`], [`scope`], [`all_scopes`], [`authenticated`],
//! [`step_up`] (RFC 9470: an `acr` and/or a maximum age of `auth_time`);
//! combine them with [`Policy::and`], [`Policy::or`], [`Policy::not`]; write
//! your own with [`policy_fn`] (async, for lookups) or [`sync_policy_fn`].
//! Role, permission and scope checks are decided in the layer's `call`
//! without allocating; only asynchronous policies take the slower path.
//! They fail closed: a policy built from an empty list of roles,
//! permissions or scopes allows nobody.
//!
//! A [`RoleMap`] maps roles to permissions with inheritance (the seeds'
//! admin ⊇ moderator ⊇ user), built in code or deserialized from a config
//! file, and checked for cycles, duplicate roles, malformed names and
//! [size](RoleMap#limits).
//!
//! With the `axum` feature, [`Guard<G>`](Guard) enforces a policy as a
//! handler argument, and [`guard_policy!`](crate::guard_policy) names one.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "bearer")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{body::Body, routing::{delete, get}, Router};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_auth::authz::{any_role, RequireLayer, RoleMap};
//! use tower_auth::bearer::{BearerAuthenticator, BearerToken};
//! use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};
//!
//! // The seeds' RBAC table: admin ⊇ moderator ⊇ user.
//! let roles: RoleMap = serde_json::from_str(r#"{
//!     "user":      ["posts:read", "posts:write"],
//!     "moderator": {"inherits": ["user"], "permissions": ["users:read", "posts:delete"]},
//!     "admin":     {"inherits": ["moderator"], "permissions": ["users:write", "users:delete"]}
//! }"#).unwrap();
//!
//! let bearer = BearerAuthenticator::new(|token: BearerToken| async move {
//!     // `ct_eq` compares in constant time; `match` on the token would not.
//!     let role = if token.ct_eq("alice-token") {
//!         "admin"
//!     } else if token.ct_eq("bob-token") {
//!         "user"
//!     } else {
//!         return Err(AuthError::invalid_credentials("invalid or expired token"));
//!     };
//!     Ok(Authenticated::new((), Identity::new(role, Scheme::Bearer).with_roles([role])))
//! });
//!
//! let app = Router::new()
//!     .route("/users", get(|| async { "users" }))
//!     .route_layer(RequireLayer::new(roles.permission("users:read")))
//!     .merge(
//!         Router::new()
//!             .route("/posts/{post_id}", delete(|| async { "deleted" }))
//!             .route_layer(RequireLayer::new(any_role(["admin", "moderator"]))),
//!     )
//!     .layer(AuthLayer::new(bearer));
//!
//! let get_users = |token: &str| {
//!     Request::get("/users")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(Body::empty())
//!         .unwrap()
//! };
//! let res = app.clone().oneshot(get_users("alice-token")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let res = app.clone().oneshot(get_users("bob-token")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer error="insufficient_scope", error_description="the access token lacks the required scope", scope="users:read""#
//! );
//!
//! let res = app.oneshot(Request::get("/users").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! # #[cfg(not(feature = "bearer"))]
//! # fn main() {}
//! ```

mod combinator;
mod future;
#[cfg(feature = "axum")]
mod guard;
mod layer;
mod policies;
mod policy;
mod role_map;
mod service;
mod step_up;

pub use combinator::{and, not, or, And, Not, NotFuture, Or, PairFuture};
pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub use guard::{Guard, GuardPolicy, GuardRejection};
pub use layer::RequireLayer;
pub use policies::{
    all_permissions, all_scopes, any_role, authenticated, permission, policy_fn, role, scope,
    sync_policy_fn, IsAuthenticated, Permission, PolicyFn, PolicyFnFuture, Role, Scope,
    SyncPolicyFn,
};
pub use policy::{Decision, Denied, DeniedKind, Immediate, IntoVerdict, Policy};
pub use role_map::{RoleMap, RoleMapBuilder, RoleMapError, RoleMapLimit};
pub use service::RequireService;
pub use step_up::{step_up, AuthContext, AuthContextClaims, StepUp};

#[cfg(test)]
mod tests;
