//! AuthLayer and the extractors in a real axum Router, driven both with
//! `oneshot` and over TCP with reqwest.

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_auth::extract::Auth;
use tower_auth::rejection::Rejection;
use tower_auth::testing::{assert_rejected, TestRequest, TestResponse};
use tower_auth::{AuthLayer, Authenticator, Identity};

async fn me(Auth(user): Auth<User>, identity: Identity) -> Json<Value> {
    Json(json!({
        "name": user.name,
        "subject": identity.subject(),
        "scheme": identity.scheme().to_string(),
    }))
}

async fn posts(user: Option<Auth<User>>) -> Json<Value> {
    match user {
        Some(Auth(u)) => Json(json!({"posts": ["draft", "published"], "viewer": u.name})),
        None => Json(json!({"posts": ["published"]})),
    }
}

async fn whoami(identity: Option<Identity>) -> String {
    identity.map_or_else(|| "anonymous".into(), |i| i.subject().to_owned())
}

async fn unprotected(Auth(user): Auth<User>) -> String {
    user.name
}

fn app() -> Router {
    let protected = Router::new()
        .route("/me", get(me))
        .layer(AuthLayer::new(either()));
    let public = Router::new()
        .route("/posts", get(posts))
        .route("/whoami", get(whoami))
        .route("/optional-me", get(me))
        .layer(AuthLayer::optional(either()));
    let custom =
        Router::new()
            .route("/custom", get(me))
            .layer(AuthLayer::new(either()).on_rejection(|r: Rejection| {
                let mut res = r.into_response();
                *res.body_mut() = bytes::Bytes::from(
                    json!({"error": "Unauthorized", "message": "custom handler"}).to_string(),
                );
                res
            }));
    Router::new()
        .merge(protected)
        .merge(public)
        .merge(custom)
        .route("/misconfigured", get(unprotected))
}

async fn send(req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn get_with(uri: &str, headers: &[(&str, &[u8])]) -> Request<Body> {
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    req
}

#[tokio::test]
async fn bearer_token_reaches_the_handler() {
    let (status, _, body) = send(get_with(
        "/me",
        &[("authorization", b"Bearer valid_token_123")],
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"name": "Alice", "subject": "1", "scheme": "Bearer"})
    );
}

#[tokio::test]
async fn api_key_reaches_the_handler() {
    let (status, _, body) = send(get_with("/me", &[("x-api-key", b"key_12345")])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"name": "Bob", "subject": "2", "scheme": "ApiKey"})
    );
}

#[tokio::test]
async fn no_credentials_is_401_with_both_challenges() {
    let (status, headers, body) = send(get_with("/me", &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = headers.get_all(header::WWW_AUTHENTICATE).iter().collect();
    assert_eq!(
        challenges,
        [
            r#"Bearer realm="api""#,
            r#"ApiKey realm="api", header="x-api-key""#
        ]
    );
    assert_eq!(
        body,
        json!({"error": "unauthorized", "message": "authentication required"})
    );
}

/// Request headers, expected status, expected error code.
type Case<'a> = (Vec<(&'a str, &'a [u8])>, StatusCode, &'a str);

#[tokio::test]
#[allow(clippy::type_complexity)]
async fn hostile_inputs_get_clear_errors() {
    let huge = format!("Bearer {}", "a".repeat(20_000));
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer b"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("authorization", b"Basic YTpi")],
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            vec![("authorization", huge.as_bytes())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("authorization", b"Bearer \xff\xfe")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("authorization", b"Bearer ")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("authorization", b"Bearer wrong")],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            vec![("x-api-key", b"\x80key")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("x-api-key", b"k1"), ("x-api-key", b"k2")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (headers, status, code) in cases {
        let (got, www, body) = send(get_with("/me", &headers)).await;
        assert_eq!(got, status, "{headers:?}");
        assert_eq!(body["error"], code, "{headers:?}");
        assert!(!body.to_string().contains("aaaa"));
        if got == StatusCode::BAD_REQUEST {
            let challenges: Vec<_> = www
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            // Only the scheme whose credentials were malformed is named.
            if headers[0].0 == "authorization" {
                assert_eq!(challenges.len(), 1, "{headers:?}");
                assert!(
                    challenges[0].starts_with(r#"Bearer realm="api", error="invalid_request""#),
                    "{challenges:?}"
                );
            } else {
                assert_eq!(
                    challenges,
                    [r#"ApiKey realm="api", header="x-api-key""#],
                    "{headers:?}"
                );
            }
        }
    }
}

/// Two `x-api-key` headers are the API key's problem: no `Bearer`
/// challenge, whichever the order of the authenticators.
#[tokio::test]
async fn malformed_api_key_gets_no_bearer_challenge() {
    async fn refuse(layer: AuthLayer<impl tower_auth::Authenticator<Principal = User>>) {
        let app = Router::new().route("/me", get(me)).layer(layer);
        let req = TestRequest::get("/me")
            .api_key("k1")
            .api_key("k2")
            .build::<Body>();
        let res = app.oneshot(req).await.unwrap();
        let res = assert_rejected(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        let schemes: Vec<_> = res.challenges().into_iter().map(|c| c.scheme).collect();
        assert_eq!(schemes, ["ApiKey"]);
        res.assert_challenge_param("ApiKey", "realm", "api")
            .assert_challenge_param("ApiKey", "header", "x-api-key")
            .assert_not_echoed("k1")
            .assert_not_echoed("k2");
    }
    refuse(AuthLayer::new(bearer().or(api_key()))).await;
    refuse(AuthLayer::new(api_key().or(bearer()))).await;
    refuse(AuthLayer::optional(bearer().or(api_key()))).await;
    refuse(AuthLayer::new(api_key())).await;
}

/// `Auth<T>` on a route whose authenticator produces another principal
/// type: a `500` that says so, not "missing AuthLayer", and that does not
/// echo the credentials.
#[tokio::test]
async fn auth_extractor_of_the_wrong_type_names_the_mismatch() {
    async fn wrong(Auth(n): Auth<u64>) -> String {
        n.to_string()
    }
    async fn wrong_optional(n: Option<Auth<u64>>) -> String {
        format!("{:?}", n.map(|Auth(n)| n))
    }
    let app = Router::new()
        .route("/wrong", get(wrong))
        .route("/wrong-optional", get(wrong_optional))
        .layer(AuthLayer::optional(either()));
    for path in ["/wrong", "/wrong-optional"] {
        for credentials in [
            ("authorization", &b"Bearer valid_token_123"[..]),
            ("x-api-key", &b"key_12345"[..]),
        ] {
            let res = app
                .clone()
                .oneshot(get_with(path, &[credentials]))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"], "internal_error");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("principal type mismatch"), "{message}");
            assert!(!message.contains("missing AuthLayer"), "{message}");
            assert!(!text.contains("valid_token_123") && !text.contains("key_12345"));
        }
        // Anonymous requests are still a 401 (or `None`).
        let res = app.clone().oneshot(get_with(path, &[])).await.unwrap();
        let expected = if path == "/wrong" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(res.status(), expected, "{path}");
    }
}

/// The refusals of the extractors never echo the credentials that came
/// with the request.
#[tokio::test]
async fn missing_principal_rejections_never_echo_credentials() {
    // Wrong credentials on an optional route, then an extractor that needs
    // a principal on a route without a layer.
    for req in [
        TestRequest::get("/optional-me").cookie("session", "s3cr3t-cookie"),
        TestRequest::get("/misconfigured").bearer("s3cr3t-token"),
        TestRequest::get("/misconfigured").api_key("s3cr3t-key"),
    ] {
        let res = TestResponse::read(app().oneshot(req.build::<Body>()).await.unwrap()).await;
        assert!(res.status().is_client_error() || res.status().is_server_error());
        res.assert_not_echoed("s3cr3t");
    }
}

#[tokio::test]
async fn optional_routes_serve_anonymous_and_authenticated() {
    let (_, _, anon) = send(get_with("/posts", &[])).await;
    assert_eq!(anon, json!({"posts": ["published"]}));
    let (_, _, authed) = send(get_with("/posts", &[("x-api-key", b"key_12345")])).await;
    assert_eq!(authed["viewer"], "Bob");
    let (_, _, who) = send(get_with("/whoami", &[])).await;
    assert_eq!(who, "anonymous");
}

#[tokio::test]
async fn optional_route_still_refuses_invalid_credentials() {
    let (status, _, body) = send(get_with("/posts", &[("authorization", b"Bearer nope")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn required_extractor_on_optional_route_is_401() {
    let (status, headers, body) = send(get_with("/optional-me", &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(headers.get_all(header::WWW_AUTHENTICATE).iter().count(), 2);
}

#[tokio::test]
async fn extractor_without_layer_is_500() {
    let (status, _, body) = send(get_with("/misconfigured", &[("x-api-key", b"key_12345")])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["message"].as_str().unwrap().contains("AuthLayer"));
}

#[tokio::test]
async fn custom_rejection_handler_keeps_headers() {
    let (status, headers, body) = send(get_with("/custom", &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        body,
        json!({"error": "Unauthorized", "message": "custom handler"})
    );
}

#[tokio::test]
async fn over_tcp_with_reqwest() {
    let (listener, addr) = listener().await;
    spawn(async move {
        axum::serve(listener, app()).await.unwrap();
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/me");

    let res = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "Alice");

    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");

    let mut two = reqwest::header::HeaderMap::new();
    two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
    two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    let res = client.get(&url).headers(two).send().await.unwrap();
    assert_eq!(res.status(), 400);

    let res = client
        .get(&url)
        .header(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xc3\xa9t\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // A header far above any sane size is refused before or by the layer,
    // never accepted, and the server keeps serving.
    let res = client
        .get(&url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", "a".repeat(200_000)),
        )
        .send()
        .await
        .unwrap();
    assert!(
        res.status() == 400 || res.status() == 431,
        "{}",
        res.status()
    );
    let res = client
        .get(&url)
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Backend deadlines (issue "Hardening II"): an authenticator whose future
/// never resolves (a dead database connection) must not hold the request,
/// nor the inner service that `poll_ready` reserved for it, forever.
mod backend_timeout {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tokio::time::Instant;
    use tower::limit::ConcurrencyLimitLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};
    use tower_auth::api_key::{ApiKeyAuthenticator, ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore};
    use tower_auth::bearer::{BearerAuthenticator, BearerToken};
    use tower_auth::{AuthError, AuthLayer, Authenticated, BoxError, Identity, Scheme};

    use super::common::{User, API_KEY};

    /// A store that never answers while `hang` is set, and otherwise
    /// answers like the shared fixture's.
    #[derive(Clone)]
    struct DeadStore {
        hang: Arc<AtomicBool>,
        inner: MemoryApiKeyStore<User>,
    }

    impl ApiKeyStore for DeadStore {
        type Principal = User;

        async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord<User>>, BoxError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.inner.find(key_id).await
        }
    }

    fn dead_store(hang: bool) -> (ApiKeyAuthenticator<DeadStore>, Arc<AtomicBool>) {
        let inner = MemoryApiKeyStore::new();
        inner.insert_key(
            API_KEY,
            User {
                id: "2".into(),
                name: "Bob".into(),
            },
            Identity::new("2", Scheme::ApiKey),
        );
        let flag = Arc::new(AtomicBool::new(hang));
        let store = DeadStore {
            hang: Arc::clone(&flag),
            inner,
        };
        (ApiKeyAuthenticator::new(store), flag)
    }

    /// A bearer validator that never answers.
    fn dead_validator(
    ) -> BearerAuthenticator<impl tower_auth::bearer::TokenValidator<Principal = User>> {
        BearerAuthenticator::new(|_: BearerToken| {
            std::future::pending::<Result<Authenticated<User>, AuthError>>()
        })
    }

    async fn hello(req: Request<String>) -> Result<Response<String>, Infallible> {
        let who = req
            .extensions()
            .get::<User>()
            .map_or("anonymous".to_owned(), |u| u.name.clone());
        Ok(Response::new(who))
    }

    async fn body_json<B>(res: Response<B>) -> Value
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn with_key(key: &str) -> Request<String> {
        Request::get("/")
            .header("x-api-key", key)
            .body(String::new())
            .unwrap()
    }

    /// The bound of these tests: far beyond any backend timeout, so a
    /// request that hangs fails the test instead of hanging it (time is
    /// paused: tokio jumps to the next timer when everything is idle).
    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_dead_api_key_store_gets_503_after_5_s_and_frees_the_inner_service() {
        let (auth, hang) = dead_store(true);
        let mut svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth))
            .layer(ConcurrencyLimitLayer::new(1))
            .service_fn(hello);

        let start = Instant::now();
        let call = svc.ready().await.unwrap().call(with_key(API_KEY));
        let res = tokio::time::timeout(NEVER, call)
            .await
            .expect("the request hung on the dead store")
            .unwrap();
        assert_eq!(start.elapsed(), tower_auth::DEFAULT_BACKEND_TIMEOUT);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
        let body = body_json(res).await;
        assert_eq!(body["error"], "unavailable");
        assert!(!body.to_string().contains(API_KEY));

        // The concurrency permit reserved for the timed-out request is
        // back: the next request gets through once the store answers.
        hang.store(false, Ordering::SeqCst);
        let next = async {
            let res = svc.ready().await.unwrap().call(with_key(API_KEY)).await;
            res.unwrap()
        };
        let res = tokio::time::timeout(NEVER, next)
            .await
            .expect("inner service still held");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "Bob");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_bearer_validator_times_out_as_configured_with_grpc_status_14() {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(dead_validator()).backend_timeout(Some(Duration::from_secs(1))))
            .service_fn(hello);

        let start = Instant::now();
        let req = Request::get("/")
            .header(header::AUTHORIZATION, "Bearer some-token")
            .body(String::new())
            .unwrap();
        let res = tokio::time::timeout(NEVER, svc.clone().oneshot(req))
            .await
            .expect("the request hung on the dead validator")
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(res).await["error"], "unavailable");

        let req = Request::post("/pkg.Service/Method")
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .header(header::AUTHORIZATION, "Bearer some-token")
            .body(String::new())
            .unwrap();
        let res = tokio::time::timeout(NEVER, svc.oneshot(req))
            .await
            .expect("the gRPC request hung on the dead validator")
            .unwrap();
        assert_eq!(res.headers()["grpc-status"], "14");
        let message = res
            .headers()
            .get("grpc-message")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(!message.unwrap_or_default().contains("some-token"));
    }

    /// Credentials sent to an optional layer whose backend is dead are
    /// refused, never turned into an anonymous request.
    #[tokio::test(start_paused = true)]
    async fn an_optional_layer_fails_closed_on_a_dead_backend() {
        let (auth, _hang) = dead_store(true);
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::optional(auth))
            .service_fn(hello);
        let res = tokio::time::timeout(NEVER, svc.clone().oneshot(with_key(API_KEY)))
            .await
            .expect("hung")
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Without credentials the backend is not asked.
        let res = svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// `None` disables the deadline: the request waits for the backend.
    #[tokio::test(start_paused = true)]
    async fn no_backend_timeout_waits_for_the_backend() {
        let (auth, _hang) = dead_store(true);
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth).backend_timeout(None))
            .service_fn(hello);
        let waited = tokio::time::timeout(NEVER, svc.oneshot(with_key(API_KEY))).await;
        assert!(waited.is_err(), "answered without the backend");
    }
}
