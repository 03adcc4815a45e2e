//! Middleware that authenticates requests: the one generic [`AuthLayer`].
//!
//! Every credential type of this crate (API keys, opaque bearer tokens, JWTs,
//! session cookies) is an [`Authenticator`] plugged into [`AuthLayer`]. On
//! success the layer inserts two values into the request extensions:
//!
//! * the authenticator's typed principal (`A::Principal`), read by handlers
//!   with [`Auth<T>`](crate::extract::Auth) (axum) or
//!   `req.extensions().get::<T>()` (hyper, tonic);
//! * an [`Identity`](crate::Identity) (subject, roles, permissions, scopes,
//!   scheme), read by policies and by handlers that do not care about the
//!   principal type.
//!
//! | request                           | [`AuthLayer::new`] | [`AuthLayer::optional`] |
//! |-----------------------------------|--------------------|-------------------------|
//! | valid credentials                 | inner service      | inner service           |
//! | no credentials                    | `401`              | inner service, anonymous|
//! | malformed credentials             | `400`              | `400`                   |
//! | invalid credentials               | `401`              | `401`                   |
//! | store / backend error             | `503`              | `503`                   |
//! | backend silent past the [timeout](AuthLayer::backend_timeout) (5 s) | `503` | `503` |
//!
//! Rejections are rendered by [`crate::rejection`]: JSON body,
//! `WWW-Authenticate`, gRPC status for gRPC requests. The layer also puts
//! its renderer ([`AuthLayer::on_rejection`]) into the request extensions
//! of the requests it lets through, so that the authorization layers,
//! guards and extractors inside it render their refusals the same way.
//!
//! An authenticator that reads a cookie marks its results with
//! [`Authenticated::from_cookie`] (and its refusals with
//! [`AuthError::from_cookie`](crate::AuthError::from_cookie)): the layer
//! then adds `Cookie` to the response's `Vary` header, so that shared
//! caches keep one user's page from another.
//!
//! Authenticators compose: `jwt.or(api_key)` tries the JWT authenticator and,
//! when the request carries no bearer token, the API key one. The first
//! authenticator whose credentials are present decides.
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "api-key", feature = "bearer"))]
//! # async fn doc() {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
//! use tower_auth::bearer::{BearerAuthenticator, BearerToken};
//! use tower_auth::{AuthError, AuthLayer, Authenticated, Authenticator, Identity, Scheme};
//!
//! #[derive(Clone, Debug)]
//! struct User { name: String }
//!
//! // Opaque bearer tokens, checked by a closure (a database lookup in real life).
//! let bearer = BearerAuthenticator::new(|token: BearerToken| async move {
//!     if token.ct_eq("valid_token_123") {
//!         let user = User { name: "alice".into() };
//!         Ok(Authenticated::new(user, Identity::new("alice", Scheme::Bearer)))
//!     } else {
//!         Err(AuthError::invalid_credentials("unknown token"))
//!     }
//! });
//!
//! // API keys, stored as SHA-256 digests only.
//! let store = MemoryApiKeyStore::new();
//! store.insert_key("key_12345", User { name: "bob".into() }, Identity::new("bob", Scheme::ApiKey));
//! let api_key = ApiKeyAuthenticator::new(store);
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(bearer.or(api_key)))
//!     .service_fn(|req: Request<()>| async move {
//!         let user = req.extensions().get::<User>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", user.name)))
//!     });
//!
//! let req = Request::get("/").header("x-api-key", "key_12345").body(()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let req = Request::get("/").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

mod authenticator;
mod future;
mod layer;
mod service;

use std::sync::Arc;

pub use authenticator::{
    AndThen, AuthenticateRequest, Authenticated, Authenticator, BoxAuthFuture, Either, Map,
    MapFuture, MapPrincipal, MapPrincipalFuture, Or, OrFuture,
};
pub use future::ResponseFuture;
pub use layer::AuthLayer;
pub use service::AuthService;

use http::header::{HeaderMap, HeaderValue, VARY};

use crate::rejection::{Challenge, Rejections};

/// Adds `Cookie` to the `Vary` header of a response that depends on the
/// request's cookies, keeping the values there: nothing is added when a
/// `Vary` value already names `Cookie` (in any letter case) or is `*`.
pub(crate) fn vary_on_cookie(headers: &mut HeaderMap) {
    let covered = headers.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|field| {
            let field = field.trim_ascii();
            field == b"*" || field.eq_ignore_ascii_case(b"cookie")
        })
    });
    if !covered {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

/// Marks a request that went through an optional [`AuthLayer`] without
/// credentials. Extractors and policies use its challenges to answer `401`
/// with the right `WWW-Authenticate` header.
#[derive(Clone, Debug)]
pub struct Anonymous {
    pub(crate) challenges: Arc<[Challenge]>,
    pub(crate) rejections: Rejections,
}

impl Anonymous {
    /// The challenges of the layer that let the request through.
    pub fn challenges(&self) -> &[Challenge] {
        &self.challenges
    }

    /// The rejection renderer of the layer that let the request through, so
    /// that later refusals (policies, extractors) are rendered the same way.
    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{ready, Ready};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::request::Parts;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceBuilder, ServiceExt};
    use tower_service::Service;

    use super::*;
    use crate::{AuthError, Identity, Scheme};

    /// Accepts `x-token: good`; `x-token: down` is a backend failure.
    #[derive(Clone)]
    struct Header(&'static str);

    impl Authenticator for Header {
        type Credentials = String;
        type Principal = String;
        type Future = Ready<Result<Authenticated<String>, AuthError>>;

        fn extract(&self, req: &Parts) -> Result<Option<String>, AuthError> {
            req.headers
                .get(self.0)
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| AuthError::invalid_request("not ascii"))
                })
                .transpose()
        }

        fn authenticate(&self, token: String) -> Self::Future {
            ready(match token.as_str() {
                "good" => Ok(Authenticated::new(
                    format!("{}-user", self.0),
                    Identity::new(self.0, Scheme::Bearer),
                )),
                "down" => Err(AuthError::unavailable("store down")),
                _ => Err(AuthError::invalid_credentials("bad token")),
            })
        }

        fn challenges(&self) -> Vec<Challenge> {
            vec![Challenge::new(self.0)]
        }
    }

    async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
        let principal = req.extensions().get::<String>().cloned();
        let anonymous = req.extensions().get::<Anonymous>().is_some();
        Ok(Response::new(format!(
            "{}|{}",
            principal.unwrap_or_default(),
            anonymous
        )))
    }

    async fn body_string<B: http_body::Body<Data = Bytes>>(b: B) -> String
    where
        B::Error: std::fmt::Debug,
    {
        String::from_utf8(b.collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn req(token: Option<&str>) -> Request<()> {
        let mut b = Request::get("/");
        if let Some(t) = token {
            b = b.header("x-token", t);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn valid_credentials_reach_the_service_with_principal() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(echo);
        let res = svc.oneshot(req(Some("good"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_string(res.into_body()).await, "x-token-user|false");
    }

    #[tokio::test]
    async fn required_without_credentials_is_401_with_challenge() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(echo);
        let res = svc.oneshot(req(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "x-token");
        let body: serde_json::Value =
            serde_json::from_str(&body_string(res.into_body()).await).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }

    #[tokio::test]
    async fn optional_without_credentials_passes_anonymous() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::optional(Header("x-token")))
            .service_fn(echo);
        let res = svc.oneshot(req(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_string(res.into_body()).await, "|true");
    }

    #[tokio::test]
    async fn invalid_credentials_are_401_in_both_modes() {
        for layer in [
            AuthLayer::new(Header("x-token")),
            AuthLayer::optional(Header("x-token")),
        ] {
            let svc = ServiceBuilder::new().layer(layer).service_fn(echo);
            let res = svc.oneshot(req(Some("bad"))).await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let body = body_string(res.into_body()).await;
            assert!(!body.contains("bad\""), "token echoed: {body}");
        }
    }

    #[tokio::test]
    async fn malformed_credentials_are_400_in_both_modes() {
        for layer in [
            AuthLayer::new(Header("x-token")),
            AuthLayer::optional(Header("x-token")),
        ] {
            let svc = ServiceBuilder::new().layer(layer).service_fn(echo);
            let mut r = req(None);
            r.headers_mut().insert(
                "x-token",
                http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            );
            let res = svc.oneshot(r).await.unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[tokio::test]
    async fn backend_error_is_503() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::optional(Header("x-token")))
            .service_fn(echo);
        let res = svc.oneshot(req(Some("down"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn or_first_present_decides() {
        let auth = Header("x-a").or(Header("x-b"));
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth))
            .service_fn(echo);

        // only b present
        let r = Request::get("/").header("x-b", "good").body(()).unwrap();
        let res = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "x-b-user|false");

        // a present but invalid, b valid: a decides -> 401 naming a only
        let r = Request::get("/")
            .header("x-a", "bad")
            .header("x-b", "good")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, ["x-a"]);

        // none: both challenges
        let res = svc.oneshot(Request::new(())).await.unwrap();
        let challenges: Vec<_> = res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, ["x-a", "x-b"]);
    }

    #[tokio::test]
    async fn map_and_and_then_transform_the_principal() {
        let auth = Header("x-token")
            .map_principal(|s: String| s.len())
            .and_then(|a: Authenticated<usize>| async move {
                if a.principal > 100 {
                    return Err(AuthError::forbidden("too long"));
                }
                Ok(Authenticated::new(a.principal * 2, a.identity))
            });
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth))
            .service_fn(|req: Request<()>| async move {
                let n = *req.extensions().get::<usize>().unwrap();
                Ok::<_, Infallible>(Response::new(n.to_string()))
            });
        let res = svc.oneshot(req(Some("good"))).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "24");
    }

    #[tokio::test]
    async fn authenticate_request_outside_a_layer() {
        let auth = Header("x-token");
        let parts = |r: Request<()>| r.into_parts().0;
        let ok = auth.authenticate_request(&parts(req(Some("good")))).await;
        assert_eq!(ok.unwrap().unwrap().principal, "x-token-user");
        assert!(auth
            .authenticate_request(&parts(req(None)))
            .await
            .unwrap()
            .is_none());
        let bad = auth.authenticate_request(&parts(req(Some("bad")))).await;
        assert_eq!(
            bad.unwrap_err().kind(),
            crate::AuthErrorKind::InvalidCredentials
        );
        let mut r = req(None);
        r.headers_mut()
            .insert("x-token", http::HeaderValue::from_bytes(b"\xff").unwrap());
        let malformed = auth.authenticate_request(&parts(r)).await;
        assert_eq!(
            malformed.unwrap_err().kind(),
            crate::AuthErrorKind::InvalidRequest
        );
    }

    #[tokio::test]
    async fn grpc_requests_get_grpc_status() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(echo);
        let r = Request::post("/grpc.health.v1.Health/Check")
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");

        // A gRPC content type alone (HTTP/1.1, as a REST client or a
        // forward-auth subrequest sends it) cannot turn the refusal into a
        // `200`.
        let r = Request::post("/api")
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(())
            .unwrap();
        let res = svc.oneshot(r).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(!res.headers().contains_key("grpc-status"));
    }

    #[tokio::test]
    async fn custom_rejection_handler() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")).on_rejection(
                |r: crate::rejection::Rejection| {
                    Response::builder()
                        .status(r.status())
                        .body(Bytes::from(format!("custom {}", r.code())))
                        .unwrap()
                },
            ))
            .service_fn(echo);
        let res = svc.oneshot(req(Some("bad"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_string(res.into_body()).await, "custom invalid_token");
    }

    /// A service whose readiness is a single permit: calling it without
    /// `poll_ready` first, or calling the same instance twice, panics.
    #[derive(Default)]
    struct OnePermit {
        ready: bool,
        calls: Arc<AtomicUsize>,
    }

    impl Clone for OnePermit {
        fn clone(&self) -> Self {
            OnePermit {
                ready: false,
                calls: self.calls.clone(),
            }
        }
    }

    impl tower_service::Service<Request<()>> for OnePermit {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            self.ready = true;
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            assert!(self.ready, "called without poll_ready");
            self.ready = false;
            self.calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok(Response::new(String::new())))
        }
    }

    #[tokio::test]
    async fn the_ready_service_is_the_one_called() {
        let inner = OnePermit::default();
        let calls = inner.calls.clone();
        let mut svc = AuthLayer::new(Header("x-token").and_then(|a| async move {
            tokio::task::yield_now().await;
            Ok(a)
        }))
        .layer_service(inner);
        for _ in 0..3 {
            let res = svc
                .ready()
                .await
                .unwrap()
                .call(req(Some("good")))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    impl<A: Authenticator> AuthLayer<A> {
        fn layer_service<S>(&self, s: S) -> AuthService<S, A> {
            tower_layer::Layer::layer(self, s)
        }
    }

    #[tokio::test]
    async fn works_with_service_fn_and_any_body() {
        let svc = AuthLayer::new(Header("x-token")).layer_service(service_fn(
            |_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("ok"))) },
        ));
        let r = Request::get("/")
            .header("x-token", "good")
            .body(String::from("payload"))
            .unwrap();
        let res = svc.oneshot(r).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "ok");
    }

    /// Reads `cookie: sid=<token>`; `sid=good` is alice, `sid=down` a
    /// backend failure, anything else invalid. Marks its results as made
    /// from a cookie.
    #[derive(Clone)]
    struct CookieAuth;

    impl Authenticator for CookieAuth {
        type Credentials = String;
        type Principal = String;
        type Future = Ready<Result<Authenticated<String>, AuthError>>;

        fn extract(&self, req: &Parts) -> Result<Option<String>, AuthError> {
            let cookies = req.headers.get_all(header::COOKIE).iter();
            let sid = cookies
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix("sid="));
            Ok(sid.map(str::to_owned))
        }

        fn authenticate(&self, sid: String) -> Self::Future {
            ready(match sid.as_str() {
                "good" => Ok(Authenticated::new(
                    "alice".to_owned(),
                    Identity::new("alice", Scheme::Cookie),
                )
                .from_cookie()),
                "down" => Err(AuthError::unavailable("store down").from_cookie()),
                _ => Err(AuthError::invalid_credentials("unknown session").from_cookie()),
            })
        }

        fn challenges(&self) -> Vec<Challenge> {
            vec![Challenge::new("Cookie")]
        }
    }

    type VaryEcho = Ready<Result<Response<String>, Infallible>>;
    type VaryEchoService = tower::util::ServiceFn<fn(Request<()>) -> VaryEcho>;

    /// Answers with the `Vary` values of its `x-vary` request headers.
    fn vary_echo(req: Request<()>) -> VaryEcho {
        let mut res = Response::new(String::from("ok"));
        for v in req.headers().get_all("x-vary") {
            res.headers_mut().append(header::VARY, v.clone());
        }
        ready(Ok(res))
    }

    fn varies(res: &Response<impl Sized>) -> Vec<&str> {
        res.headers()
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn cookie_authentication_adds_vary_cookie() {
        fn svc<A: Authenticator>(auth: A) -> AuthService<VaryEchoService, A> {
            AuthLayer::optional(auth).layer_service(service_fn(vary_echo as fn(_) -> _))
        }
        let cookie_req = |sid: &str, vary: &[&'static str]| {
            let mut b = Request::get("/").header(header::COOKIE, format!("a=b; sid={sid}"));
            for v in vary {
                b = b.header("x-vary", *v);
            }
            b.body(()).unwrap()
        };
        let cases: &[(&[&'static str], &[&str])] = &[
            (&[], &["Cookie"]),
            (&["Accept-Encoding"], &["Accept-Encoding", "Cookie"]),
            (&["accept-encoding, COOKIE"], &["accept-encoding, COOKIE"]),
            (&["Origin", "cookie"], &["Origin", "cookie"]),
            (&["*"], &["*"]),
        ];
        for (inner, expected) in cases {
            let res = svc(CookieAuth)
                .oneshot(cookie_req("good", inner))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(varies(&res), *expected, "{inner:?}");
        }

        // The mark survives map_principal, map and and_then, even when the
        // closure builds a new Authenticated.
        let mapped = CookieAuth
            .map_principal(|s: String| s.len().to_string())
            .map(|a: Authenticated<String>| Authenticated::new(a.principal, a.identity))
            .and_then(|a: Authenticated<String>| async move {
                Ok(Authenticated::new(a.principal, a.identity))
            });
        let res = svc(mapped).oneshot(cookie_req("good", &[])).await.unwrap();
        assert_eq!(varies(&res), ["Cookie"]);

        // Refusals of cookie credentials vary on the cookie too.
        for (sid, status) in [
            ("nope", StatusCode::UNAUTHORIZED),
            ("down", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let res = svc(CookieAuth).oneshot(cookie_req(sid, &[])).await.unwrap();
            assert_eq!(res.status(), status);
            assert_eq!(varies(&res), ["Cookie"], "{sid}");
        }

        // Credentials from a header: no Vary added.
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(vary_echo);
        let res = svc.clone().oneshot(req(Some("good"))).await.unwrap();
        assert!(varies(&res).is_empty());
        let res = svc.oneshot(req(Some("bad"))).await.unwrap();
        assert!(varies(&res).is_empty());
    }

    #[tokio::test]
    async fn the_renderer_travels_in_the_request_extensions() {
        async fn renderer_of(req: Request<()>) -> Result<Response<String>, Infallible> {
            let r = req.extensions().get::<Rejections>().map(|r| {
                r.respond(crate::rejection::Rejection::forbidden("x"))
                    .status()
                    .as_u16()
            });
            Ok(Response::new(format!("{r:?}")))
        }
        let teapot = || {
            Rejections::custom(|r: crate::rejection::Rejection| {
                let mut res = r.into_response();
                *res.status_mut() = StatusCode::IM_A_TEAPOT;
                res
            })
        };
        // Authenticated and anonymous requests carry the layer's renderer.
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::optional(Header("x-token")).rejections(teapot()))
            .service_fn(renderer_of);
        for r in [req(Some("good")), req(None)] {
            let res = svc.clone().oneshot(r).await.unwrap();
            assert_eq!(body_string(res.into_body()).await, "Some(418)");
        }
        // A default renderer does not replace one set outside...
        let svc = ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(
                move |mut r: Request<()>| {
                    r.extensions_mut().insert(teapot());
                    r
                },
            ))
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(renderer_of);
        let res = svc.oneshot(req(Some("good"))).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "Some(418)");
        // ...and is not inserted when there is none: the layers inside
        // render with the default when they find no renderer.
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(Header("x-token")))
            .service_fn(renderer_of);
        let res = svc.oneshot(req(Some("good"))).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "None");
    }
}
