//! Extension methods for [`tower::ServiceBuilder`] that add this crate's
//! layers.
//!
//! [`ServiceBuilderExt`] is implemented for every `ServiceBuilder`; each
//! method is `.layer(SomeLayer::new(..))` with a shorter name, and each
//! exists only with the feature of its layer. Layers run in the order they
//! are added: outermost first.
//!
//! tower-http has a trait of the same name; import both anonymously
//! (`use tower_auth::ServiceBuilderExt as _;`,
//! `use tower_http::ServiceBuilderExt as _;`): the method names differ.
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "api-key", feature = "authz"))]
//! # async fn doc() {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
//! use tower_auth::authz::role;
//! use tower_auth::{Identity, Scheme};
//! use tower_auth::ServiceBuilderExt as _;
//!
//! let store = MemoryApiKeyStore::new();
//! let admin = store
//!     .generate("tak", (), Identity::new("alice", Scheme::ApiKey).with_roles(["admin"]))
//!     .unwrap();
//! let user = store
//!     .generate("tak", (), Identity::new("bob", Scheme::ApiKey))
//!     .unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .authenticate(ApiKeyAuthenticator::new(store))
//!     .require(role("admin"))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//!
//! let call = |key: &str| {
//!     let req = Request::get("/admin").header("x-api-key", key).body(()).unwrap();
//!     svc.clone().oneshot(req)
//! };
//! assert_eq!(call(admin.expose()).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(call(user.expose()).await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::auth::{AuthLayer, Authenticator};

mod sealed {
    pub trait Sealed<L> {}

    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds this crate's layers to a [`ServiceBuilder`]. See the
/// [module docs](self).
///
/// Import it as `use tower_auth::ServiceBuilderExt as _;`, so that it does
/// not clash with tower-http's `ServiceBuilderExt`.
///
/// The trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Requires credentials checked by `authenticator`:
    /// [`AuthLayer::new`].
    fn authenticate<A: Authenticator>(
        self,
        authenticator: A,
    ) -> ServiceBuilder<Stack<AuthLayer<A>, L>>;

    /// Checks credentials when there are some and lets anonymous requests
    /// through: [`AuthLayer::optional`].
    fn authenticate_optional<A: Authenticator>(
        self,
        authenticator: A,
    ) -> ServiceBuilder<Stack<AuthLayer<A>, L>>;

    /// Enforces `policy` on the identity an [`AuthLayer`] added:
    /// [`RequireLayer::new`](crate::authz::RequireLayer::new).
    #[cfg(feature = "authz")]
    fn require<P: crate::authz::Policy>(
        self,
        policy: P,
    ) -> ServiceBuilder<Stack<crate::authz::RequireLayer<P>, L>>;

    /// Counts every request against `limit`:
    /// [`RateLimitLayer::new`](crate::rate_limit::RateLimitLayer::new).
    /// (Not named `rate_limit`: `ServiceBuilder` has an inherent method of
    /// that name, tower's unkeyed limiter, which would win.)
    #[cfg(feature = "rate-limit")]
    fn limit_requests(
        self,
        limit: crate::rate_limit::Limit,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer, L>>;

    /// Counts failed attempts only (e.g. wrong passwords) against `limit`:
    /// [`RateLimitLayer::failed_attempts`](crate::rate_limit::RateLimitLayer::failed_attempts).
    #[cfg(feature = "rate-limit")]
    fn limit_failed_attempts(
        self,
        limit: crate::rate_limit::Limit,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer, L>>;

    /// Keeps cookie sessions in `store` with the default settings:
    /// [`SessionLayer::new`](crate::session::SessionLayer::new). Build the
    /// layer yourself and use `.layer(..)` to change them.
    #[cfg(feature = "session")]
    fn session(
        self,
        store: impl crate::session::SessionStore,
        key: crate::session::SessionKey,
    ) -> ServiceBuilder<Stack<crate::session::SessionLayer, L>>;

    /// Refuses cross-site unsafe requests (same-origin only, no token):
    /// [`CsrfLayer::new`](crate::session::CsrfLayer::new).
    #[cfg(feature = "session")]
    fn csrf(self) -> ServiceBuilder<Stack<crate::session::CsrfLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn authenticate<A: Authenticator>(
        self,
        authenticator: A,
    ) -> ServiceBuilder<Stack<AuthLayer<A>, L>> {
        self.layer(AuthLayer::new(authenticator))
    }

    fn authenticate_optional<A: Authenticator>(
        self,
        authenticator: A,
    ) -> ServiceBuilder<Stack<AuthLayer<A>, L>> {
        self.layer(AuthLayer::optional(authenticator))
    }

    #[cfg(feature = "authz")]
    fn require<P: crate::authz::Policy>(
        self,
        policy: P,
    ) -> ServiceBuilder<Stack<crate::authz::RequireLayer<P>, L>> {
        self.layer(crate::authz::RequireLayer::new(policy))
    }

    #[cfg(feature = "rate-limit")]
    fn limit_requests(
        self,
        limit: crate::rate_limit::Limit,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer, L>> {
        self.layer(crate::rate_limit::RateLimitLayer::new(limit))
    }

    #[cfg(feature = "rate-limit")]
    fn limit_failed_attempts(
        self,
        limit: crate::rate_limit::Limit,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer, L>> {
        self.layer(crate::rate_limit::RateLimitLayer::failed_attempts(limit))
    }

    #[cfg(feature = "session")]
    fn session(
        self,
        store: impl crate::session::SessionStore,
        key: crate::session::SessionKey,
    ) -> ServiceBuilder<Stack<crate::session::SessionLayer, L>> {
        self.layer(crate::session::SessionLayer::new(store, key))
    }

    #[cfg(feature = "session")]
    fn csrf(self) -> ServiceBuilder<Stack<crate::session::CsrfLayer, L>> {
        self.layer(crate::session::CsrfLayer::new())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{header, Request, Response, StatusCode};
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::ServiceBuilderExt;
    use crate::auth::{Authenticated, Authenticator};
    use crate::error::AuthError;
    use crate::identity::{Identity, Scheme};
    use crate::rejection::Challenge;

    /// Trusts an `x-user` header; `x-user: bad` is invalid.
    #[derive(Clone)]
    struct HeaderUser;

    impl Authenticator for HeaderUser {
        type Credentials = String;
        type Principal = String;
        type Future = std::future::Ready<Result<Authenticated<String>, AuthError>>;

        fn extract(&self, req: &http::request::Parts) -> Result<Option<String>, AuthError> {
            Ok(req
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned))
        }

        fn authenticate(&self, user: String) -> Self::Future {
            std::future::ready(if user == "bad" {
                Err(AuthError::invalid_credentials("unknown user"))
            } else {
                let identity =
                    Identity::new(user.clone(), Scheme::Other("User".into())).with_roles([&*user]);
                Ok(Authenticated::new(user, identity))
            })
        }

        fn challenges(&self) -> Vec<Challenge> {
            vec![Challenge::new("User")]
        }
    }

    /// Answers with the subject of the request's identity, or `-`.
    async fn whoami<B>(req: Request<B>) -> Result<Response<String>, Infallible> {
        let subject = req
            .extensions()
            .get::<Identity>()
            .map_or("-".to_owned(), |id| id.subject().to_owned());
        Ok(Response::new(subject))
    }

    fn request(user: Option<&str>) -> Request<()> {
        let mut req = Request::get("/");
        if let Some(user) = user {
            req = req.header("x-user", user);
        }
        req.body(()).unwrap()
    }

    async fn status<S, B>(svc: &S, req: Request<()>) -> StatusCode
    where
        S: Service<Request<()>, Response = Response<B>> + Clone,
        S::Error: std::fmt::Debug,
    {
        svc.clone().oneshot(req).await.unwrap().status()
    }

    async fn text<B: http_body::Body>(res: Response<B>) -> String
    where
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn authenticate_requires_credentials() {
        let svc = ServiceBuilder::new()
            .authenticate(HeaderUser)
            .service_fn(whoami);

        let res = svc.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "User");

        let res = svc.clone().oneshot(request(Some("bad"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

        let res = svc.oneshot(request(Some("alice"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "alice");
    }

    #[tokio::test]
    async fn authenticate_optional_lets_anonymous_through_but_not_bad_credentials() {
        let svc = ServiceBuilder::new()
            .authenticate_optional(HeaderUser)
            .service_fn(whoami);

        let res = svc.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "-");

        let res = svc.oneshot(request(Some("bad"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }

    #[cfg(feature = "authz")]
    #[tokio::test]
    async fn require_enforces_the_policy_after_authentication() {
        let svc = ServiceBuilder::new()
            .authenticate(HeaderUser)
            .require(crate::authz::role("admin"))
            .service_fn(whoami);

        let res = svc.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = svc.clone().oneshot(request(Some("bob"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = svc.oneshot(request(Some("admin"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "admin");
    }

    #[cfg(feature = "rate-limit")]
    fn from_peer(user: Option<&str>) -> Request<()> {
        let mut req = request(user);
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([192, 0, 2, 1], 4000)));
        req
    }

    #[cfg(feature = "rate-limit")]
    fn one_per_hour() -> crate::rate_limit::Limit {
        use crate::rate_limit::{Limit, Limiter, PeerIp, Quota};
        let quota = Quota::per_hour(1).unwrap();
        Limit::new("per-ip", Limiter::new(quota), PeerIp::new())
    }

    #[cfg(feature = "rate-limit")]
    #[tokio::test]
    async fn limit_requests_counts_every_request() {
        let svc = ServiceBuilder::new()
            .limit_requests(one_per_hour())
            .service_fn(whoami);

        assert_eq!(status(&svc, from_peer(None)).await, StatusCode::OK);
        let res = svc.oneshot(from_peer(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key(header::RETRY_AFTER));
    }

    #[cfg(feature = "rate-limit")]
    #[tokio::test]
    async fn limit_failed_attempts_counts_failures_only() {
        let svc = ServiceBuilder::new()
            .limit_failed_attempts(one_per_hour())
            .authenticate(HeaderUser)
            .service_fn(whoami);

        for _ in 0..3 {
            let ok = status(&svc, from_peer(Some("alice"))).await;
            assert_eq!(ok, StatusCode::OK);
        }
        let failed = status(&svc, from_peer(Some("bad"))).await;
        assert_eq!(failed, StatusCode::UNAUTHORIZED);
        let refused = status(&svc, from_peer(Some("alice"))).await;
        assert_eq!(refused, StatusCode::TOO_MANY_REQUESTS);
    }

    #[cfg(feature = "session")]
    #[tokio::test]
    async fn session_and_csrf() {
        use crate::session::{MemorySessionStore, Session, SessionKey};

        let svc = ServiceBuilder::new()
            .session(MemorySessionStore::new(), SessionKey::generate().unwrap())
            .csrf()
            .service_fn(|req: Request<()>| async move {
                let session = req.extensions().get::<Session>().cloned();
                if let Some(session) = session {
                    session.insert("seen", true).unwrap();
                }
                Ok::<_, Infallible>(Response::new(String::new()))
            });

        let res = svc.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("session="), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"));

        let cookie = cookie.split(';').next().unwrap().to_owned();
        let post = |site: &str| {
            Request::post("/")
                .header(header::COOKIE, &cookie)
                .header("sec-fetch-site", site)
                .body(())
                .unwrap()
        };

        // A cross-site POST carrying the session cookie is refused before
        // the handler runs.
        let res = svc.clone().oneshot(post("cross-site")).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!res.headers().contains_key(header::SET_COOKIE));

        let res = svc.oneshot(post("same-origin")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
