//! What the benches and the loopback stack test share: one HS256 key, one
//! token, and each contender's layers built the way its documentation
//! shows, doing the same work (see `README.md` for every difference).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_auth::authz::{role, RequireLayer};
use tower_auth::bearer::{BearerAuthenticator, BearerToken};
use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet};
use tower_auth::rate_limit::{Limit, Limiter, PeerIp, Quota, RateLimitLayer};
use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};

/// The HS256 secret of every JWT contender.
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The static bearer token of the bearer contenders.
pub const STATIC_TOKEN: &str = "s3cr3t-t0ken-0123456789abcdef";
/// Requests per second each rate limit allows: never reached.
pub const RATE: u32 = 1_000_000_000;
/// The issuer every JWT contender checks.
pub const ISSUER: &str = "https://issuer.example";
/// The audience every JWT contender checks (axum-jwt-auth requires one).
pub const AUDIENCE: &str = "https://api.example";

/// The claims every JWT contender deserializes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub roles: Vec<String>,
}

impl Claims {
    /// Whether the claims grant `admin`: the peers' role check.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HS256 token valid for an hour, with role `admin`.
pub fn token() -> String {
    let now = unix_now();
    let claims = Claims {
        sub: "user-42".into(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        exp: now + 3600,
        iat: now,
        roles: vec!["admin".into(), "user".into()],
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("HS256 signs")
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("visible ASCII")
}

/// The principal of the static-bearer contender.
#[derive(Clone, Debug)]
pub struct Service;

/// Our static bearer token, as the `bearer` docs write it: a constant-time
/// comparison and an identity built once (a clone is a reference count).
pub fn our_static_bearer() -> BearerAuthenticator<
    impl Fn(BearerToken) -> Ready<Result<Authenticated<Service>, AuthError>> + Clone,
> {
    let identity = Identity::new("service", Scheme::Bearer);
    BearerAuthenticator::new(move |token: BearerToken| {
        ready(if token.ct_eq(STATIC_TOKEN) {
            Ok(Authenticated::new(Service, identity.clone()))
        } else {
            Err(AuthError::invalid_credentials("unknown token"))
        })
    })
}

/// Our JWT authenticator: HS256 only, `exp` required, issuer and audience
/// checked.
pub fn our_jwt() -> JwtAuthenticator<Claims> {
    let key = JwtKey::hmac(Algorithm::HS256, SECRET).expect("HMAC key");
    JwtAuthenticator::<Claims>::new(KeySet::single(key))
        .issuers([ISSUER])
        .audiences([AUDIENCE])
}

/// Our per-peer-IP rate limit, able to track `keys` addresses.
pub fn our_rate_limit(keys: usize) -> RateLimitLayer {
    let quota = Quota::per_second(RATE).expect("valid quota");
    let limiter = Limiter::builder(quota).max_keys(keys).build();
    RateLimitLayer::new(Limit::new("per-ip", limiter, PeerIp::new()))
}

/// tower_governor's per-peer-IP limit at the same rate.
pub fn governor_layer() -> tower_governor::GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
    axum::body::Body,
> {
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(Duration::from_nanos(1))
        .burst_size(RATE)
        .finish()
        .expect("valid governor config");
    tower_governor::GovernorLayer::new(config)
}

/// tower-http's bearer check: `Authorization` equal to `Bearer <token>`
/// (`==` on the header value), `401` with an empty body otherwise.
/// Deprecated in tower-http 0.6 as "too basic", yet what people reach for:
/// the floor of a bearer check.
#[allow(deprecated)]
pub fn tower_http_bearer() -> tower_http::validate_request::ValidateRequestHeaderLayer<
    tower_http::auth::require_authorization::Bearer<axum::body::Body>,
> {
    tower_http::validate_request::ValidateRequestHeaderLayer::bearer(STATIC_TOKEN)
}

/// The identity the equal-work tower-http contenders insert.
static SERVICE_IDENTITY: std::sync::LazyLock<Identity> =
    std::sync::LazyLock::new(|| Identity::new("service", Scheme::Bearer));

/// The `401` our bearer layer sends (JSON body, `WWW-Authenticate`), built
/// as a tower-http user would: static header values, a static body.
pub fn tower_http_refusal() -> Response<axum::body::Body> {
    let mut res = Response::new(axum::body::Body::from(
        r#"{"error":"unauthorized","message":"authentication required"}"#,
    ));
    *res.status_mut() = http::StatusCode::UNAUTHORIZED;
    let headers = res.headers_mut();
    headers.insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"api\""),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A tower-http validator doing our work for the bearer cases: the same
/// `401` as ours (body and challenge) and, on success, the two inserts.
#[derive(Clone, Copy, Debug)]
pub struct TowerHttpEqualWork;

impl tower_http::validate_request::ValidateRequest<axum::body::Body> for TowerHttpEqualWork {
    type ResponseBody = axum::body::Body;

    fn validate(
        &mut self,
        req: &mut Request<axum::body::Body>,
    ) -> Result<(), Response<Self::ResponseBody>> {
        let expected = expected_bearer();
        match req.headers().get(http::header::AUTHORIZATION) {
            Some(v) if v.as_bytes() == expected.as_bytes() => {
                req.extensions_mut().insert(Service);
                req.extensions_mut().insert(SERVICE_IDENTITY.clone());
                Ok(())
            }
            _ => Err(tower_http_refusal()),
        }
    }
}

/// `Bearer <STATIC_TOKEN>`, built once.
fn expected_bearer() -> &'static HeaderValue {
    static VALUE: std::sync::LazyLock<HeaderValue> =
        std::sync::LazyLock::new(|| bearer(STATIC_TOKEN));
    &VALUE
}

/// tower-http's `ValidateRequestHeaderLayer::custom` with [`TowerHttpEqualWork`].
pub fn tower_http_equal_work(
) -> tower_http::validate_request::ValidateRequestHeaderLayer<TowerHttpEqualWork> {
    tower_http::validate_request::ValidateRequestHeaderLayer::custom(TowerHttpEqualWork)
}

/// The handler of every stack.
pub async fn hello() -> &'static str {
    "hello"
}

/// Bare axum: the baseline of the loopback test.
pub fn bare_router() -> Router {
    Router::new().route("/", get(hello))
}

/// Our stack: per-IP rate limit, JWT HS256, role `admin`.
pub fn our_router(cache: bool) -> Router {
    let jwt = if cache {
        our_jwt().cache(10_000, Duration::from_secs(300))
    } else {
        our_jwt()
    };
    Router::new().route("/", get(hello)).layer(
        ServiceBuilder::new()
            .layer(our_rate_limit(100_000))
            .layer(AuthLayer::new(jwt))
            .layer(RequireLayer::new(role("admin"))),
    )
}

/// Our stack with the verified-token cache and `Arc<Claims>` as the
/// principal, as the cache's docs recommend: a hit clones a pointer, not
/// the claims' strings.
pub fn our_router_arc_cached() -> Router {
    let key = JwtKey::hmac(Algorithm::HS256, SECRET).expect("HMAC key");
    let jwt = JwtAuthenticator::<std::sync::Arc<Claims>>::new(KeySet::single(key))
        .issuers([ISSUER])
        .audiences([AUDIENCE])
        .cache(10_000, Duration::from_secs(300));
    Router::new().route("/", get(hello)).layer(
        ServiceBuilder::new()
            .layer(our_rate_limit(100_000))
            .layer(AuthLayer::new(jwt))
            .layer(RequireLayer::new(role("admin"))),
    )
}

/// jwt-authorizer's layer: HS256 (its default algorithms for a secret are
/// HS256, HS384 and HS512), the issuer checked, and with `admin` a claims
/// check for the role (`403` otherwise).
pub async fn jwt_authorizer_layer(
    admin: bool,
) -> jwt_authorizer::layer::AuthorizationLayer<Claims> {
    let builder = jwt_authorizer::JwtAuthorizer::<Claims>::from_secret(
        std::str::from_utf8(SECRET).expect("ASCII secret"),
    )
    .validation(
        jwt_authorizer::Validation::new()
            .iss(&[ISSUER])
            .aud(&[AUDIENCE]),
    );
    let builder = if admin {
        builder.check(Claims::is_admin)
    } else {
        builder
    };
    let authorizer = builder.build().await.expect("jwt-authorizer builds");
    jwt_authorizer::IntoLayer::into_layer(authorizer)
}

/// The claims jwt-authorizer put into the extensions.
pub type JwtAuthorizerClaims = jsonwebtoken9::TokenData<Claims>;

/// `router` behind jwt-authorizer's layer. Its service answers with axum
/// 0.7 responses (it is built on axum 0.7): the inner responses are
/// converted to axum 0.7 bodies on the way in and back to axum 0.8 on the
/// way out (two boxed bodies per request; see README.md).
pub fn behind_jwt_authorizer(
    router: Router,
    layer: jwt_authorizer::layer::AuthorizationLayer<Claims>,
) -> Router {
    router.layer(
        ServiceBuilder::new()
            .map_response(|res: Response<axum07::body::Body>| res.map(axum::body::Body::new))
            .layer(layer)
            .map_response(|res: axum::response::Response| res.map(axum07::body::Body::new)),
    )
}

/// The handler of the peers' stack: reads the claims jwt-authorizer left.
pub async fn hello_jwt_authorizer(req: Request<axum::body::Body>) -> &'static str {
    match req.extensions().get::<JwtAuthorizerClaims>() {
        Some(_) => "hello",
        None => "no claims",
    }
}

/// The peers' stack: tower_governor per IP, jwt-authorizer HS256 with a
/// claims check for the role.
pub async fn peer_router() -> Router {
    let router = Router::new().route("/", get(hello_jwt_authorizer));
    behind_jwt_authorizer(router, jwt_authorizer_layer(true).await).layer(governor_layer())
}

/// A trivial inner service for the per-layer benches.
pub fn inner() -> impl tower::Service<
    Request<axum::body::Body>,
    Response = Response<axum::body::Body>,
    Error = Infallible,
    Future = Ready<Result<Response<axum::body::Body>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: Request<axum::body::Body>| {
        ready(Ok::<_, Infallible>(
            Response::new(axum::body::Body::empty()),
        ))
    })
}

/// A request from `peer`, as axum's `into_make_service_with_connect_info`
/// delivers it.
pub fn request_from(peer: SocketAddr) -> Request<axum::body::Body> {
    let mut req = Request::new(axum::body::Body::empty());
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

/// Lets `n` rate-limit keys pass (distinct IPv4 peers).
pub fn peers(n: u32) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 | i), 40_000)))
        .collect()
}
