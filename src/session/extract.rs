//! The axum extractor of [`Session`] (features `session` and `axum`).

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use super::handle::Session;
use crate::rejection::{is_grpc, Rejection};

/// The rejection of the [`Session`] extractor: no
/// [`SessionLayer`](super::SessionLayer) ran, a bug in the application, so
/// `500` naming the layer.
pub struct MissingSessionLayer {
    grpc: bool,
}

impl fmt::Debug for MissingSessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MissingSessionLayer")
    }
}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        Rejection::internal("sessions are not configured for this route (missing SessionLayer)")
            .with_grpc(self.grpc)
            .into_response()
            .map(axum_core::body::Body::from)
    }
}

/// Extracts the request's [`Session`], put there by
/// [`SessionLayer`](super::SessionLayer).
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Session>() {
            Some(session) => Ok(session.clone()),
            None => {
                tracing::error!(
                    "the Session extractor found no session: add SessionLayer to this route"
                );
                Err(MissingSessionLayer {
                    grpc: is_grpc(parts.version, &parts.headers),
                })
            }
        }
    }
}
