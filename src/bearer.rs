//! Authentication with opaque bearer tokens (RFC 6750), checked by a
//! [`TokenValidator`] of yours.
//!
//! [`BearerAuthenticator`] parses `Authorization: Bearer <token>` strictly:
//!
//! | request                                              | result                         |
//! |------------------------------------------------------|--------------------------------|
//! | no `Authorization`, or another scheme (`Basic ...`)  | no credentials (`401` if required) |
//! | `Bearer` in any letter case, one or more spaces, a token68 | the validator is called |
//! | two `Authorization` headers                          | `400 invalid_request`          |
//! | empty token, bytes outside visible ASCII, characters outside token68 | `400 invalid_request` |
//! | longer than the limit (8 KiB by default)             | `400 invalid_request`          |
//! | validator refuses                                    | `401 invalid_token`            |
//!
//! The `400`s are malformed *requests* (RFC 6750 §3.1); a token of the
//! right shape that your validator cannot read is a malformed *token*:
//! refuse it with [`AuthError::invalid_credentials`] (`401 invalid_token`),
//! so that clients which refresh on `401 invalid_token` do. An oversized
//! token is refused unread, as a malformed request: a refreshed one would
//! be refused the same way.
//!
//! For JSON Web Tokens use the `jwt` module (feature `jwt`) instead.
//!
//! # Example
//!
//! ```
//! use tower_auth::bearer::{BearerAuthenticator, BearerToken};
//! use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};
//!
//! #[derive(Clone, Debug)]
//! struct User { id: u64 }
//!
//! let auth = BearerAuthenticator::new(|token: BearerToken| async move {
//!     // Look the token up in a database or cache.
//!     if token.ct_eq("valid_token_123") {
//!         Ok(Authenticated::new(User { id: 1 }, Identity::new("1", Scheme::Bearer)))
//!     } else {
//!         Err(AuthError::invalid_credentials("invalid or expired token"))
//!     }
//! })
//! .realm("api");
//! let layer = AuthLayer::new(auth);
//! # let _ = layer;
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::request::Parts;

use crate::auth::{Authenticated, Authenticator};
use crate::credentials::{self, DEFAULT_MAX_LEN};
use crate::error::AuthError;
use crate::rejection::Challenge;
use crate::secret::Secret;

/// A bearer token taken from a request. `Debug` never prints it.
pub type BearerToken = Secret;

/// Checks opaque bearer tokens: a database lookup, a call to an
/// introspection endpoint, a cache.
///
/// Implemented for closures `Fn(BearerToken) -> impl Future<Output =
/// Result<Authenticated<P>, AuthError>>`.
pub trait TokenValidator: Send + Sync + 'static {
    /// The principal a valid token maps to.
    type Principal: Clone + Send + Sync + 'static;
    /// The future returned by [`validate`](TokenValidator::validate).
    type Future: Future<Output = Result<Authenticated<Self::Principal>, AuthError>> + Send + 'static;

    /// Checks `token`.
    ///
    /// # Errors
    ///
    /// [`AuthError::invalid_credentials`] for unknown, expired or revoked
    /// tokens, [`AuthError::unavailable`] when the backend fails.
    fn validate(&self, token: BearerToken) -> Self::Future;
}

impl<F, Fut, P> TokenValidator for F
where
    F: Fn(BearerToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Authenticated<P>, AuthError>> + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Principal = P;
    type Future = Fut;

    fn validate(&self, token: BearerToken) -> Fut {
        self(token)
    }
}

/// Authenticates `Authorization: Bearer <token>` with a [`TokenValidator`].
/// See the [module docs](crate::bearer).
pub struct BearerAuthenticator<V> {
    validator: Arc<V>,
    realm: Option<Arc<str>>,
    query_param: Option<Arc<str>>,
    max_len: usize,
}

impl<V: TokenValidator> BearerAuthenticator<V> {
    /// Validates tokens with `validator`.
    pub fn new(validator: V) -> Self {
        BearerAuthenticator {
            validator: Arc::new(validator),
            realm: None,
            query_param: None,
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge.
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Also accepts the token in query parameter `name` (RFC 6750 §2.3 uses
    /// `access_token`), for clients that cannot set headers such as browser
    /// WebSockets. Off by default: URLs end up in logs and browser history.
    /// A token in both the header and the query is refused (`400`).
    pub fn query_param(mut self, name: impl Into<Arc<str>>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Limits the size of the `Authorization` header (default 8 KiB).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

impl<V> Clone for BearerAuthenticator<V> {
    fn clone(&self) -> Self {
        BearerAuthenticator {
            validator: Arc::clone(&self.validator),
            realm: self.realm.clone(),
            query_param: self.query_param.clone(),
            max_len: self.max_len,
        }
    }
}

impl<V> fmt::Debug for BearerAuthenticator<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthenticator")
            .field("realm", &self.realm)
            .field("query_param", &self.query_param)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// Takes a bearer token from the `Authorization` header or, when enabled,
/// from a query parameter; a token in both places is refused.
pub(crate) fn extract_bearer(
    request: &Parts,
    query_param: Option<&str>,
    max_len: usize,
) -> Result<Option<Secret>, AuthError> {
    let header = credentials::bearer_token(&request.headers, max_len)?;
    let Some(name) = query_param else {
        return Ok(header);
    };
    let query = credentials::query_param(&request.uri, name, max_len)?;
    match (header, query) {
        (Some(_), Some(_)) => Err(AuthError::invalid_request(
            "a bearer token was sent in both the header and the query",
        )),
        (Some(t), None) | (None, Some(t)) => {
            if credentials::is_token68(t.expose()) {
                Ok(Some(t))
            } else {
                Err(AuthError::invalid_request(
                    "the bearer token contains invalid characters",
                ))
            }
        }
        (None, None) => Ok(None),
    }
}

impl<V: TokenValidator> Authenticator for BearerAuthenticator<V> {
    type Credentials = BearerToken;
    type Principal = V::Principal;
    type Future = V::Future;

    fn extract(&self, request: &Parts) -> Result<Option<BearerToken>, AuthError> {
        extract_bearer(request, self.query_param.as_deref(), self.max_len)
    }

    fn authenticate(&self, token: BearerToken) -> Self::Future {
        self.validator.validate(token)
    }

    fn challenges(&self) -> Vec<Challenge> {
        vec![Challenge::bearer().realm(self.realm.as_ref())]
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{AuthLayer, Identity, Scheme};

    fn authenticator() -> BearerAuthenticator<impl TokenValidator<Principal = String>> {
        BearerAuthenticator::new(|t: BearerToken| {
            std::future::ready(match t.expose() {
                "valid_token_123" => Ok(Authenticated::new(
                    "alice".to_owned(),
                    Identity::new("1", Scheme::Bearer),
                )),
                "down" => Err(AuthError::unavailable("redis down")),
                _ => Err(AuthError::invalid_credentials("invalid or expired token")),
            })
        })
        .realm("api")
    }

    async fn call(
        auth: BearerAuthenticator<impl TokenValidator<Principal = String>>,
        req: Request<()>,
    ) -> (StatusCode, Vec<String>, String) {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth))
            .service_fn(|req: Request<()>| async move {
                let user = req.extensions().get::<String>().cloned().unwrap();
                Ok::<_, Infallible>(Response::new(user))
            });
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status();
        let www = res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body: Bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, www, String::from_utf8(body.to_vec()).unwrap())
    }

    fn with_auth(value: &str) -> Request<()> {
        Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn valid_token_is_accepted() {
        let (status, _, body) = call(authenticator(), with_auth("Bearer valid_token_123")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "alice");
    }

    #[tokio::test]
    async fn bearer_scheme_is_case_insensitive_in_prefix() {
        let (status, _, _) = call(authenticator(), with_auth("bEARER valid_token_123")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn token_is_case_sensitive() {
        let (status, www, _) = call(authenticator(), with_auth("Bearer VALID_TOKEN_123")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www,
            [
                r#"Bearer realm="api", error="invalid_token", error_description="invalid or expired token""#
            ]
        );
    }

    #[tokio::test]
    async fn missing_token_gets_a_bare_challenge() {
        let (status, www, body) = call(authenticator(), Request::new(())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(www, [r#"Bearer realm="api""#]);
        assert_eq!(
            body,
            r#"{"error":"unauthorized","message":"authentication required"}"#
        );
    }

    #[tokio::test]
    async fn wrong_scheme_is_treated_as_missing() {
        let (status, www, _) =
            call(authenticator(), with_auth("Basic YWxhZGRpbjpvcGVuc2VzYW1l")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(www, [r#"Bearer realm="api""#]);
    }

    #[tokio::test]
    async fn rejection_never_echoes_the_token() {
        let (_, www, body) = call(authenticator(), with_auth("Bearer sekrit-token-value")).await;
        assert!(!body.contains("sekrit"));
        assert!(!www.concat().contains("sekrit"));
    }

    #[tokio::test]
    async fn backend_failure_is_503() {
        let (status, _, body) = call(authenticator(), with_auth("Bearer down")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("redis"));
    }

    #[tokio::test]
    async fn query_parameter_is_opt_in() {
        let req = || {
            Request::get("/ws?access_token=valid_token_123")
                .body(())
                .unwrap()
        };
        let (status, _, _) = call(authenticator(), req()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = call(authenticator().query_param("access_token"), req()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "alice");
    }

    #[tokio::test]
    async fn token_in_header_and_query_is_refused() {
        let req = Request::get("/ws?access_token=valid_token_123")
            .header(header::AUTHORIZATION, "Bearer valid_token_123")
            .body(())
            .unwrap();
        let (status, _, _) = call(authenticator().query_param("access_token"), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn query_token_outside_token68_is_refused() {
        let req = Request::get("/ws?access_token=a%20b").body(()).unwrap();
        let (status, _, _) = call(authenticator().query_param("access_token"), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn header_limit_is_configurable() {
        let long = format!("Bearer {}", "a".repeat(200));
        let (status, www, _) = call(authenticator().max_len(100), with_auth(&long)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(www[0].contains(r#"error="invalid_request""#));
    }
}
