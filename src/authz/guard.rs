//! axum guard extractors (features `authz` and `axum`).

use std::fmt;
use std::marker::PhantomData;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use super::layer::Config;
use super::service::render;
use super::{Decision, Denied, Policy};
use crate::extract::AuthRejection;
use crate::identity::Identity;
use crate::timeout::{deadline, DEFAULT_BACKEND_TIMEOUT};

/// Names a policy for a [`Guard`]: implement it on a unit struct, or let
/// [`guard_policy!`](crate::guard_policy) write it.
///
/// [`policy`](GuardPolicy::policy) is called for each request: keep it
/// cheap (the macro builds the policy once and clones it).
pub trait GuardPolicy: Send + Sync + 'static {
    /// The policy enforced.
    type Policy: Policy;

    /// The policy to enforce.
    fn policy() -> Self::Policy;
}

/// An extractor that enforces the policy named by `G` in a handler, and
/// gives the [`Identity`] it checked.
///
/// | request                                   | result                      |
/// |-------------------------------------------|-----------------------------|
/// | the policy allows                         | `Guard`                     |
/// | the policy denies                         | `403` / `404` / `503`, as [`RequireLayer`](super::RequireLayer) |
/// | anonymous (optional `AuthLayer`)          | `401` with its challenges   |
/// | no `AuthLayer` on the route               | `500` naming the layer      |
///
/// Refusals are rendered by the [`Rejections`](crate::rejection::Rejections)
/// in the request extensions (the `AuthLayer` puts its own there; add
/// another with `axum::Extension` outside it), else by the default
/// rendering. Whether `403` messages name the missing rights is that
/// renderer's [`name_missing_rights`](crate::rejection::Rejections::name_missing_rights).
///
/// # Example
///
/// ```
/// use axum::{routing::delete, Router};
/// use tower_auth::authz::{any_role, role, Guard, Role};
/// use tower_auth::guard_policy;
///
/// guard_policy!(Admin: Role = role("admin"));
/// guard_policy!(Moderator: Role = any_role(["admin", "moderator"]));
///
/// async fn delete_user(guard: Guard<Admin>) -> String {
///     format!("deleted by {}", guard.identity().subject())
/// }
///
/// async fn delete_post(_: Guard<Moderator>) -> &'static str {
///     "deleted"
/// }
///
/// let app: Router = Router::new()
///     .route("/users/{user_id}", delete(delete_user))
///     .route("/posts/{post_id}", delete(delete_post));
/// # let _ = app;
/// ```
pub struct Guard<G> {
    identity: Identity,
    _policy: PhantomData<fn() -> G>,
}

impl<G> Guard<G> {
    /// The identity the policy allowed.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Unwraps the identity.
    pub fn into_identity(self) -> Identity {
        self.identity
    }
}

impl<G> Clone for Guard<G> {
    fn clone(&self) -> Self {
        Guard {
            identity: self.identity.clone(),
            _policy: PhantomData,
        }
    }
}

impl<G> fmt::Debug for Guard<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("policy", &std::any::type_name::<G>())
            .field("identity", &self.identity)
            .finish()
    }
}

/// The rejection of [`Guard`].
pub struct GuardRejection(Inner);

enum Inner {
    /// No identity: the rejection of the `Identity` extractor.
    Unauthenticated(AuthRejection),
    /// The policy denied.
    Denied(Response),
}

impl fmt::Debug for GuardRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Unauthenticated(r) => f.debug_tuple("GuardRejection").field(r).finish(),
            Inner::Denied(r) => f.debug_tuple("GuardRejection").field(&r.status()).finish(),
        }
    }
}

impl IntoResponse for GuardRejection {
    fn into_response(self) -> Response {
        match self.0 {
            Inner::Unauthenticated(r) => r.into_response(),
            Inner::Denied(r) => r,
        }
    }
}

impl<S, G> FromRequestParts<S> for Guard<G>
where
    S: Send + Sync,
    G: GuardPolicy,
{
    type Rejection = GuardRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let identity = <Identity as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map_err(|r| GuardRejection(Inner::Unauthenticated(r)))?;
        let result = match G::policy().check(&identity, parts) {
            Decision::Allow => Ok(()),
            Decision::Deny(denied) => Err(denied),
            // The layer's default deadline: a dead backend must not hold
            // the request forever.
            Decision::Pending(check) => deadline(check, Some(DEFAULT_BACKEND_TIMEOUT))
                .await
                .unwrap_or_else(|elapsed| {
                    tracing::warn!(%elapsed, "authorization policy timed out");
                    Err(Denied::unavailable(elapsed))
                }),
        };
        match result {
            Ok(()) => Ok(Guard {
                identity,
                _policy: PhantomData,
            }),
            Err(denied) => {
                let response = render(parts, Some(denied), &Config::default());
                Err(GuardRejection(Inner::Denied(
                    response.map(axum_core::body::Body::from),
                )))
            }
        }
    }
}

/// Declares a unit struct naming a policy for [`Guard`](crate::authz::Guard).
/// The policy is built once, on first use, and cloned for each request.
///
/// ```
/// use tower_auth::authz::{permission, role, Guard, Or, Permission, Policy, Role};
/// use tower_auth::guard_policy;
///
/// guard_policy!(pub Admin: Role = role("admin"));
/// guard_policy!(
///     /// Moderators, or anyone allowed to delete posts.
///     pub CanDeletePosts: Or<Role, Permission> = role("moderator").or(permission("posts:delete"))
/// );
///
/// async fn handler(_: Guard<CanDeletePosts>) {}
/// ```
#[macro_export]
macro_rules! guard_policy {
    ($(#[$meta:meta])* $vis:vis $name:ident : $ty:ty = $policy:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        $vis struct $name;

        impl $crate::authz::GuardPolicy for $name {
            type Policy = $ty;

            fn policy() -> $ty {
                static POLICY: ::std::sync::LazyLock<$ty> = ::std::sync::LazyLock::new(|| $policy);
                ::std::clone::Clone::clone(&*POLICY)
            }
        }
    };
}
