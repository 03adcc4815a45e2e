//! What counts as a failed attempt for
//! [`RateLimitLayer::failed_attempts`](super::RateLimitLayer::failed_attempts).

use http::{response, StatusCode};

/// A response extension marking a failed attempt, for handlers that answer
/// a failed login with something else than `401`:
/// `response.extensions_mut().insert(FailedAttempt)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailedAttempt;

/// The default failure predicate of
/// [`RateLimitLayer::failed_attempts`](super::RateLimitLayer::failed_attempts): a `401`
/// response (what [`AuthLayer`](crate::AuthLayer) answers to missing or
/// invalid credentials, and what login handlers answer to a wrong
/// password), a gRPC `UNAUTHENTICATED` (`grpc-status: 16`) response, or a
/// response carrying the [`FailedAttempt`] extension.
pub fn is_failed_attempt(response: &response::Parts) -> bool {
    response.status == StatusCode::UNAUTHORIZED
        || response.extensions.get::<FailedAttempt>().is_some()
        || response
            .headers
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes() == b"16")
}

/// A failure predicate of a failed-attempts limiter.
pub(crate) type Predicate = dyn Fn(&response::Parts) -> bool + Send + Sync;
