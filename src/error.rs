//! [`AuthError`]: why an authenticator refused a request.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::rejection::Challenge;

/// A boxed error, as used by stores and user validators.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kind of an [`AuthError`]; it decides the response status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials were presented: `401` without an error code.
    Missing,
    /// Credentials were presented but malformed (two `Authorization`
    /// headers, bad characters, too long): `400`, `error="invalid_request"`.
    InvalidRequest,
    /// Credentials were well formed but are not valid (unknown, expired,
    /// revoked, bad signature): `401`, `error="invalid_token"`.
    InvalidCredentials,
    /// The credentials are valid but may not be used here: `403`.
    Forbidden,
    /// A backend (store, key set, database) could not answer: `503`. The
    /// request fails closed.
    Unavailable,
    /// The stack is misconfigured, e.g. an authenticator that needs a layer
    /// which did not run: `500`. The request fails closed.
    Misconfigured,
}

impl AuthErrorKind {
    /// The HTTP status this kind maps to.
    pub fn status(self) -> StatusCode {
        match self {
            AuthErrorKind::Missing | AuthErrorKind::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AuthErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            AuthErrorKind::Forbidden => StatusCode::FORBIDDEN,
            AuthErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AuthErrorKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for AuthErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthErrorKind::Missing => "missing credentials",
            AuthErrorKind::InvalidRequest => "malformed credentials",
            AuthErrorKind::InvalidCredentials => "invalid credentials",
            AuthErrorKind::Forbidden => "forbidden",
            AuthErrorKind::Unavailable => "authentication backend unavailable",
            AuthErrorKind::Misconfigured => "authentication misconfigured",
        })
    }
}

/// Why an [`Authenticator`](crate::Authenticator) refused a request.
///
/// The message is shown to the client (in the JSON body and in
/// `error_description`), so it must never contain the credential itself:
/// the constructors take a `&'static str` or an owned string the caller
/// wrote, and the source error of [`AuthError::unavailable`] is logged, never
/// sent.
///
/// ```
/// use tower_auth::{AuthError, AuthErrorKind};
/// use http::StatusCode;
///
/// let err = AuthError::invalid_credentials("token expired");
/// assert_eq!(err.kind(), AuthErrorKind::InvalidCredentials);
/// assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(err.message(), "token expired");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AuthError {
    kind: AuthErrorKind,
    message: Cow<'static, str>,
    challenges: Option<Arc<[Challenge]>>,
    /// The refused credentials came from a cookie.
    from_cookie: bool,
    /// Response headers the refusal must carry (a DPoP `DPoP-Nonce`).
    headers: Option<Box<http::HeaderMap>>,
    #[source]
    source: Option<BoxError>,
}

impl AuthError {
    /// An error of `kind` with a client-visible `message`.
    pub fn new(kind: AuthErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        AuthError {
            kind,
            message: message.into(),
            challenges: None,
            from_cookie: false,
            headers: None,
            source: None,
        }
    }

    /// No credentials were presented.
    pub fn missing() -> Self {
        Self::new(AuthErrorKind::Missing, "authentication required")
    }

    /// The credentials are malformed (`400 Bad Request`).
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidRequest, message)
    }

    /// The credentials are not valid (`401 Unauthorized`).
    pub fn invalid_credentials(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidCredentials, message)
    }

    /// The credentials are valid but not allowed here (`403 Forbidden`).
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Forbidden, message)
    }

    /// A backend failed (`503 Service Unavailable`). `source` is logged at
    /// `warn` level and never sent to the client.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        AuthError {
            kind: AuthErrorKind::Unavailable,
            message: Cow::Borrowed("authentication is temporarily unavailable"),
            challenges: None,
            from_cookie: false,
            headers: None,
            source: Some(source.into()),
        }
    }

    /// The stack is misconfigured (`500 Internal Server Error`), e.g. an
    /// authenticator whose layer is missing. `what` names the missing piece
    /// and is shown to the client, so it must not hold secrets.
    pub fn misconfigured(what: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Misconfigured, what)
    }

    /// Attaches a challenge of the scheme that failed, so that the
    /// `WWW-Authenticate` header of the response names it rather than every
    /// scheme of the layer. [`Or`](crate::auth::Or) attaches the challenges
    /// of the branch that decided.
    pub fn with_challenge(mut self, challenge: Challenge) -> Self {
        let mut all: Vec<Challenge> = self.challenges.as_deref().unwrap_or_default().to_vec();
        all.push(challenge);
        self.challenges = Some(all.into());
        self
    }

    /// Adds a response header to the refusal (e.g. the `DPoP-Nonce` a
    /// client must use next, RFC 9449 §8). The layer's renderer copies it
    /// into the rejection. Never put a credential in it.
    #[must_use]
    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .append(name, value);
        self
    }

    /// The response headers added with [`with_header`](Self::with_header).
    pub fn headers(&self) -> Option<&http::HeaderMap> {
        self.headers.as_deref()
    }

    pub(crate) fn take_headers(&mut self) -> Option<Box<http::HeaderMap>> {
        self.headers.take()
    }

    /// Marks the refused credentials as read from a cookie: the
    /// [`AuthLayer`](crate::AuthLayer) adds `Vary: Cookie` to the rejection,
    /// as it does for an [`Authenticated::from_cookie`](crate::Authenticated::from_cookie).
    #[must_use]
    pub fn from_cookie(mut self) -> Self {
        self.from_cookie = true;
        self
    }

    /// Whether the refused credentials were read from a cookie.
    pub fn is_from_cookie(&self) -> bool {
        self.from_cookie
    }

    /// Attaches `challenges` unless some are attached already.
    pub(crate) fn or_challenges(mut self, challenges: &Arc<[Challenge]>) -> Self {
        if self.challenges.is_none() {
            self.challenges = Some(Arc::clone(challenges));
        }
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The client-visible message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of the rejection.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The challenges attached to the error (empty when none are).
    pub fn challenges(&self) -> &[Challenge] {
        self.challenges.as_deref().unwrap_or_default()
    }

    pub(crate) fn into_parts(self) -> (AuthErrorKind, Cow<'static, str>, Option<Arc<[Challenge]>>) {
        (self.kind, self.message, self.challenges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(AuthError::missing().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::invalid_request("x").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            AuthError::invalid_credentials("x").status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(AuthError::forbidden("x").status(), StatusCode::FORBIDDEN);
        assert_eq!(
            AuthError::unavailable("db down").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AuthError::misconfigured("missing layer").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn unavailable_hides_its_source_from_the_message() {
        let err = AuthError::unavailable("connection to 10.0.0.5 refused: password=hunter2");
        assert!(!err.message().contains("hunter2"));
        assert!(std::error::Error::source(&err).is_some());
    }
}
