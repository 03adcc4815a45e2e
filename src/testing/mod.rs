//! Helpers for testing applications built on this crate (feature
//! `test-util`; add it in `[dev-dependencies]`).
//!
//! * **An identity without credentials**: [`FakeAuthLayer`] authenticates
//!   every request as a principal and [`Identity`](crate::Identity) of your
//!   choice. It is the production [`AuthLayer`](crate::AuthLayer) driven by
//!   a [`FakeAuthenticator`], so extractors (`Auth<T>`, `Identity`),
//!   `RequireLayer`, `Guard` and the rejection renderer behave exactly as in
//!   production. [`FakeAuthenticator::anonymous`] and
//!   [`FakeAuthenticator::refusing`] test the anonymous and failure paths.
//! * **Fixed test tokens**: [`StaticAuthenticator`] maps bearer tokens or
//!   header values (API keys) to principals.
//! * **JWTs** (with feature `jwt`): [`TestIssuer`] signs valid tokens with
//!   keys generated for the test process, for every algorithm this crate
//!   verifies, gives the matching [`KeySet`](crate::jwt::KeySet), JWKS JSON
//!   and [`JwtAuthenticator`](crate::jwt::JwtAuthenticator), and mints
//!   [`Broken`] tokens: expired, not yet valid, wrong audience or issuer,
//!   bad signature, `alg: none`, algorithm confusion, unknown `kid`,
//!   truncated, refresh token. [`TestDpopKey`] signs DPoP proofs and binds
//!   tokens to its key ([`TokenBuilder::dpop_bound`]).
//! * **Requests**: [`TestRequest`] sets each kind of credentials: bearer,
//!   API key header or query parameter, cookie, Basic, DPoP, gRPC.
//! * **Assertions**: [`TestResponse`] / [`assert_rejected`] check a
//!   rejection's status, JSON `error` code, `WWW-Authenticate` challenges
//!   and parameters, gRPC status, and that no credential is echoed, with
//!   panic messages that show the response.
//!
//! Everything here lets requests in without real credentials or accepts
//! keys made for tests: never use it outside tests.
//!
//! # Example: testing an axum handler
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "authz"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{body::Body, routing::get, Router};
//! use http::StatusCode;
//! use tower::ServiceExt;
//! use tower_auth::authz::{role, RequireLayer};
//! use tower_auth::extract::Auth;
//! use tower_auth::testing::{assert_rejected, FakeAuthLayer, TestRequest, TestResponse};
//! use tower_auth::{Identity, Scheme};
//!
//! #[derive(Clone)]
//! struct User { name: String }
//!
//! async fn dashboard(Auth(user): Auth<User>) -> String {
//!     format!("welcome {}", user.name)
//! }
//!
//! // The application's routes and policies, without its authentication.
//! fn routes() -> Router {
//!     Router::new()
//!         .route("/admin", get(dashboard))
//!         .route_layer(RequireLayer::new(role("admin")))
//! }
//!
//! // An admin gets in.
//! let admin = Identity::new("u1", Scheme::Bearer).with_roles(["admin"]);
//! let app = routes().layer(FakeAuthLayer::new(User { name: "Ada".into() }, admin));
//! let res = app.oneshot(TestRequest::get("/admin").build::<Body>()).await.unwrap();
//! let res = TestResponse::read(res).await;
//! res.assert_status(StatusCode::OK);
//! assert_eq!(res.text(), "welcome Ada");
//!
//! // A user without the role gets a bearer 403.
//! let user = Identity::new("u2", Scheme::Bearer).with_roles(["user"]);
//! let app = routes().layer(FakeAuthLayer::new(User { name: "Bob".into() }, user));
//! let res = app.oneshot(TestRequest::get("/admin").build::<Body>()).await.unwrap();
//! assert_rejected(res, StatusCode::FORBIDDEN, "forbidden")
//!     .await
//!     .assert_challenge_param("Bearer", "error", "insufficient_scope");
//! # }
//! # #[cfg(not(all(feature = "axum", feature = "authz")))]
//! # fn main() {}
//! ```
//!
//! # Example: JWTs of every algorithm, valid and broken
//!
//! ```
//! # #[cfg(feature = "jwt")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use http::StatusCode;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::testing::{assert_rejected, TestIssuer, TestRequest};
//! use tower_auth::AuthLayer;
//!
//! for issuer in TestIssuer::every_algorithm() {
//!     let svc = ServiceBuilder::new()
//!         .layer(AuthLayer::new(issuer.authenticator::<serde_json::Value>()))
//!         .service_fn(|_req: http::Request<String>| async {
//!             Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!         });
//!
//!     let token = issuer.token("alice").roles(["admin"]).sign();
//!     let res = svc.clone().oneshot(TestRequest::get("/").bearer(&token).build()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::OK);
//!
//!     for (broken, token) in issuer.broken_tokens("alice") {
//!         let req = TestRequest::get("/").bearer(&token).build();
//!         let res = svc.clone().oneshot(req).await.unwrap();
//!         assert_rejected(res, StatusCode::UNAUTHORIZED, "invalid_token")
//!             .await
//!             .assert_challenge_param("Bearer", "error", "invalid_token")
//!             .assert_not_echoed(&token);
//!         # let _ = broken;
//!     }
//! }
//! # }
//! # #[cfg(not(feature = "jwt"))]
//! # fn main() {}
//! ```

mod fake;
mod request;
mod response;
#[cfg(feature = "jwt")]
mod tokens;

pub use fake::{FakeAuthLayer, FakeAuthenticator, StaticAuthenticator};
pub use request::TestRequest;
pub use response::{assert_rejected, ParsedChallenge, TestResponse};
#[cfg(feature = "jwt")]
pub use tokens::{Broken, TestDpopKey, TestIssuer, TokenBuilder, TEST_AUDIENCE, TEST_ISSUER};

#[cfg(test)]
mod tests;
