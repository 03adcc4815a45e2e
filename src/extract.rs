//! axum extractors for authenticated requests (feature `axum`).
//!
//! | extractor              | authenticated | anonymous (optional layer) | no [`AuthLayer`](crate::AuthLayer) |
//! |------------------------|---------------|----------------------------|---------------------|
//! | [`Auth<T>`]            | `Auth(principal)` | `401`                  | `500`               |
//! | `Option<Auth<T>>`      | `Some`        | `None`                     | `500`               |
//! | [`Identity`]           | the identity  | `401`                      | `500`               |
//! | `Option<Identity>`     | `Some`        | `None`                     | `500`               |
//!
//! `Auth<T>` on a request authenticated with a principal of another type
//! than `T` is a `500` too ("principal type mismatch"; the expected type is
//! logged at `error` level).
//!
//! A missing layer is a bug in the application, so it is a `500` naming the
//! layer rather than a `401` that would hide it. The `401` carries the
//! challenges of the layer and is rendered by its rejection handler.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_auth::extract::Auth;
//! use tower_auth::Identity;
//!
//! #[derive(Clone)]
//! struct User { name: String }
//!
//! async fn me(Auth(user): Auth<User>) -> String {
//!     format!("hello {}", user.name)
//! }
//!
//! async fn posts(identity: Option<Identity>) -> &'static str {
//!     if identity.is_some() { "all posts" } else { "published posts" }
//! }
//!
//! let app: Router = Router::new().route("/me", get(me)).route("/posts", get(posts));
//! # let _ = app;
//! ```

use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::auth::Anonymous;
use crate::identity::Identity;
use crate::rejection::{is_grpc, Rejection, Rejections};

/// The principal `T` put into request extensions by an
/// [`AuthLayer`](crate::AuthLayer). See the [module docs](crate::extract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth<T>(pub T);

impl<T> std::ops::Deref for Auth<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The rejection of this module's extractors: `401` for anonymous
/// requests, `500` when no [`AuthLayer`](crate::AuthLayer) ran.
pub struct AuthRejection {
    rejection: Rejection,
    rejections: Rejections,
}

impl AuthRejection {
    /// The rejection to render.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }

    pub(crate) fn from_parts(
        parts: &Parts,
        rejection_if_anonymous: impl FnOnce(&Anonymous) -> Rejection,
    ) -> Self {
        let grpc = is_grpc(parts.version, &parts.headers);
        match parts.extensions.get::<Anonymous>() {
            Some(anonymous) => AuthRejection {
                rejection: rejection_if_anonymous(anonymous).with_grpc(grpc),
                rejections: anonymous.rejections.clone(),
            },
            None => {
                tracing::error!(
                    "an authentication extractor found neither a principal nor the marker of an AuthLayer: \
                     add AuthLayer (or AuthLayer::optional) to this route"
                );
                AuthRejection {
                    rejection: Rejection::internal(
                        "authentication is not configured for this route (missing AuthLayer)",
                    )
                    .with_grpc(grpc),
                    rejections: Rejections::new(),
                }
            }
        }
    }

    fn unauthenticated(parts: &Parts) -> Self {
        Self::from_parts(parts, |a| Rejection::unauthenticated(a.challenges()))
    }

    /// `Auth<T>` on an authenticated request without a `T`: the
    /// authenticator's principal is of another type. A bug in the
    /// application, so a `500` naming the mismatch; the type name is logged
    /// (it is not a secret, but it is of no use to the client).
    fn principal_type_mismatch<T>(parts: &Parts) -> Self {
        tracing::error!(
            expected = std::any::type_name::<T>(),
            "Auth<T> found an authenticated Identity but no principal of type T: the \
             AuthLayer's authenticator produces another principal type (use the \
             authenticator's Principal type, or map_principal to this one)"
        );
        AuthRejection {
            rejection: Rejection::internal(
                "the authenticated principal is not of the type this route expects \
                 (principal type mismatch)",
            )
            .with_grpc(is_grpc(parts.version, &parts.headers)),
            rejections: parts
                .extensions
                .get::<Rejections>()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The rejection of `Auth<T>` when the request has no `T`.
    fn no_principal<T>(parts: &Parts) -> Self {
        if parts.extensions.get::<Identity>().is_some() {
            Self::principal_type_mismatch::<T>(parts)
        } else {
            Self::unauthenticated(parts)
        }
    }
}

impl fmt::Debug for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRejection")
            .field("rejection", &self.rejection)
            .finish()
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.rejections
            .respond(self.rejection)
            .map(axum_core::body::Body::from)
    }
}

/// Whether the request went through an [`AuthLayer`](crate::AuthLayer)
/// without credentials.
fn is_anonymous(parts: &Parts) -> bool {
    parts.extensions.get::<Anonymous>().is_some()
}

impl<S, T> FromRequestParts<S> for Auth<T>
where
    S: Send + Sync,
    T: Clone + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<T>() {
            Some(t) => Ok(Auth(t.clone())),
            None => Err(AuthRejection::no_principal::<T>(parts)),
        }
    }
}

impl<S, T> OptionalFromRequestParts<S> for Auth<T>
where
    S: Send + Sync,
    T: Clone + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<T>() {
            Some(t) => Ok(Some(Auth(t.clone()))),
            None if is_anonymous(parts) => Ok(None),
            None => Err(AuthRejection::no_principal::<T>(parts)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(id) => Ok(id.clone()),
            None => Err(AuthRejection::unauthenticated(parts)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(id) => Ok(Some(id.clone())),
            None if is_anonymous(parts) => Ok(None),
            None => Err(AuthRejection::unauthenticated(parts)),
        }
    }
}
