//! Token introspection (RFC 7662) through `AuthLayer`, against an in-test
//! axum introspection endpoint on 127.0.0.1 (plain http, explicitly
//! allowed for loopback): active and refused tokens, client
//! authentication, failures of the endpoint (500, hang, 10 MB, not JSON,
//! refused client credentials), the caches and their bounds, the limit on
//! calls in flight, and logs that never hold a token or the client secret.
//!
//! Every test token starts with `OPQ`, so the log test can look for it.

mod log_capture;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response as AxResponse};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{Discovery, RemoteJwks};
use tower_auth::oidc::{
    ClientAuth, IntrospectedToken, Introspection, IntrospectionBuilder, OidcError,
};
use tower_auth::{AuthLayer, Identity};

const CLIENT_ID: &str = "resource server";
const CLIENT_SECRET: &str = "s3cret:value";
const ISS: &str = "https://idp.test";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Error,
    Hang,
    Huge,
    NotJson,
    Slow,
}

/// What the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    form: HashMap<String, String>,
    authorization: Option<String>,
}

struct Endpoint {
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<HashMap<String, Value>>,
    base: Mutex<String>,
}

impl Endpoint {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn answers() -> HashMap<String, Value> {
    let active = json!({
        "active": true, "sub": "alice", "client_id": "app", "scope": "read write",
        "roles": ["admin"], "permissions": "posts:read posts:write",
        "iss": ISS, "aud": ["my-api", "other"], "token_type": "Bearer",
        "exp": now() + 600, "iat": now(),
    });
    let with = |k: &str, v: Value| {
        let mut a = active.clone();
        a[k] = v;
        a
    };
    let mut no_sub = active.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    HashMap::from([
        ("OPQactive".to_owned(), active.clone()),
        ("OPQinactive".to_owned(), json!({"active": false})),
        ("OPQnoactive".to_owned(), json!({"sub": "alice"})),
        ("OPQstringactive".to_owned(), with("active", json!("true"))),
        ("OPQexpired".to_owned(), with("exp", json!(now() - 120))),
        ("OPQfuture".to_owned(), with("nbf", json!(now() + 600))),
        (
            "OPQotheriss".to_owned(),
            with("iss", json!("https://evil.test")),
        ),
        ("OPQotheraud".to_owned(), with("aud", json!("someone-else"))),
        (
            "OPQrefresh".to_owned(),
            with("token_type", json!("refresh_token")),
        ),
        ("OPQnosub".to_owned(), no_sub),
        ("OPQbadexp".to_owned(), with("exp", json!("soon"))),
        ("OPQarray".to_owned(), json!([1, 2])),
    ])
}

/// Accepts the client either with HTTP Basic (form-encoded id and secret,
/// RFC 6749 §2.3.1) or with both in the form; otherwise `401`.
fn client_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(CLIENT_ID),
            enc(CLIENT_SECRET)
        ))
    );
    match headers.get(header::AUTHORIZATION) {
        Some(v) => v.as_bytes() == basic.as_bytes() && !form.contains_key("client_secret"),
        None => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
    }
}

async fn introspect(
    State(e): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: String,
) -> AxResponse {
    e.calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    e.seen.lock().unwrap().push(Seen {
        form: form.clone(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
    });
    let mode = *e.mode.lock().unwrap();
    match mode {
        Mode::Normal => {}
        Mode::Error => return AxStatus::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Mode::Huge => return vec![b' '; 10 * 1024 * 1024].into_response(),
        Mode::NotJson => return "<html>maintenance</html>".into_response(),
        Mode::Slow => tokio::time::sleep(Duration::from_millis(300)).await,
    }
    if !client_ok(&headers, &form) {
        return (
            AxStatus::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = e
        .answers
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    axum::Json(answer).into_response()
}

/// Starts the endpoint (and a discovery document naming it).
async fn endpoint() -> (Arc<Endpoint>, String) {
    log_capture::install();
    let e = Arc::new(Endpoint {
        mode: Mutex::new(Mode::Normal),
        calls: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
        answers: Mutex::new(answers()),
        base: Mutex::new(String::new()),
    });
    let app = Router::new()
        .route("/introspect", post(introspect))
        .route(
            "/realms/app/.well-known/openid-configuration",
            get(|State(e): State<Arc<Endpoint>>| async move {
                let base = e.base.lock().unwrap().clone();
                axum::Json(json!({
                    "issuer": format!("{base}/realms/app"),
                    "jwks_uri": format!("{base}/jwks"),
                    "introspection_endpoint": format!("{base}/introspect"),
                }))
            }),
        )
        .route("/jwks", get(|| async { axum::Json(jwks()) }))
        .with_state(Arc::clone(&e));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *e.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (e, base)
}

fn jwks() -> Value {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("keys/rsa_private.pem")).unwrap();
    let jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = json!("k1");
    json!({ "keys": [jwk] })
}

fn builder(base: &str) -> IntrospectionBuilder {
    Introspection::builder(format!("{base}/introspect"), CLIENT_ID, CLIENT_SECRET)
        .allow_loopback_http(true)
        .timeout(Duration::from_millis(500))
        .realm("api")
}

struct Answer {
    status: StatusCode,
    www: String,
    body: String,
}

/// One request through `AuthLayer`; the handler echoes the identity and
/// the principal's `client_id`.
async fn call(auth: &Introspection, token: &str) -> Answer {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth.clone()))
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<Identity>().unwrap();
            let token = req.extensions().get::<IntrospectedToken>().unwrap();
            let body = format!(
                "{}|{}|{}|{}|{}",
                id.subject(),
                id.scopes().collect::<Vec<_>>().join(","),
                id.roles().collect::<Vec<_>>().join(","),
                id.permissions().collect::<Vec<_>>().join(","),
                token.client_id().unwrap_or("-"),
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
    let mut req = Request::builder();
    if !token.is_empty() {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = svc.oneshot(req.body(()).unwrap()).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(!body.contains("OPQ"), "the token is echoed: {body}");
    assert!(!www.contains("OPQ"), "the token is echoed: {www}");
    Answer { status, www, body }
}

async fn status(auth: &Introspection, token: &str) -> StatusCode {
    call(auth, token).await.status
}

#[tokio::test]
async fn active_token_maps_subject_scopes_roles_permissions_and_client() {
    let (e, base) = endpoint().await;
    let auth = builder(&base)
        .issuer(ISS)
        .audiences(["my-api"])
        .token_types(["bearer"])
        .build()
        .unwrap();
    let a = call(&auth, "OPQactive").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "alice|read,write|admin|posts:read,posts:write|app");
    assert_eq!(e.calls(), 1);
}

#[tokio::test]
async fn client_secret_basic_is_the_default_and_sends_the_hint() {
    let (e, base) = endpoint().await;
    let auth = builder(&base).build().unwrap();
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    let seen = e.last();
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc(CLIENT_ID),
        enc(CLIENT_SECRET)
    ));
    assert_eq!(seen.authorization, Some(format!("Basic {expected}")));
    assert_eq!(
        seen.form.get("token").map(String::as_str),
        Some("OPQactive")
    );
    assert_eq!(
        seen.form.get("token_type_hint").map(String::as_str),
        Some("access_token")
    );
    assert!(!seen.form.contains_key("client_secret"));
    assert!(!seen.form.contains_key("client_id"));
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let (e, base) = endpoint().await;
    let auth = builder(&base)
        .client_auth(ClientAuth::ClientSecretPost)
        .build()
        .unwrap();
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    let seen = e.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(
        seen.form.get("client_id").map(String::as_str),
        Some(CLIENT_ID)
    );
    assert_eq!(
        seen.form.get("client_secret").map(String::as_str),
        Some(CLIENT_SECRET)
    );
    assert_eq!(
        seen.form.get("token").map(String::as_str),
        Some("OPQactive")
    );
}

#[tokio::test]
async fn inactive_or_unproven_tokens_are_401_invalid_token() {
    let (_e, base) = endpoint().await;
    let auth = builder(&base)
        .issuer(ISS)
        .audiences(["my-api"])
        .token_types(["Bearer"])
        .leeway(Duration::from_secs(30))
        .build()
        .unwrap();
    for (token, why) in [
        ("OPQinactive", "not active"),
        ("OPQnoactive", "not active"),
        ("OPQstringactive", "not active"),
        ("OPQunknown", "not active"),
        ("OPQexpired", "expired"),
        ("OPQfuture", "not valid yet"),
        ("OPQotheriss", "another issuer"),
        ("OPQotheraud", "another audience"),
        ("OPQrefresh", "another type"),
        ("OPQnosub", "no subject"),
    ] {
        let a = call(&auth, token).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{token}");
        assert!(
            a.www
                .starts_with(r#"Bearer realm="api", error="invalid_token""#),
            "{token}: {}",
            a.www
        );
        assert!(a.www.contains(why), "{token}: {}", a.www);
        let body: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["error"], "invalid_token", "{token}");
    }
}

#[tokio::test]
async fn missing_and_malformed_credentials() {
    let (e, base) = endpoint().await;
    let auth = builder(&base).build().unwrap();
    let a = call(&auth, "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.www, r#"Bearer realm="api""#);
    let a = call(&auth, "OPQa b").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.www.contains(r#"error="invalid_request""#));
    assert_eq!(e.calls(), 0, "nothing to ask the endpoint");
}

#[tokio::test]
async fn wrong_client_credentials_are_503_and_not_cached() {
    let (e, base) = endpoint().await;
    let auth = Introspection::builder(format!("{base}/introspect"), CLIENT_ID, "wrong")
        .allow_loopback_http(true)
        .build()
        .unwrap();
    for _ in 0..2 {
        let a = call(&auth, "OPQactive").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!a.body.contains("wrong") && !a.body.contains("credentials"));
    }
    assert_eq!(e.calls(), 2, "a failure is never cached");
    // The same with client_secret_post.
    let auth = Introspection::builder(format!("{base}/introspect"), CLIENT_ID, "wrong")
        .allow_loopback_http(true)
        .client_auth(ClientAuth::ClientSecretPost)
        .build()
        .unwrap();
    assert_eq!(
        status(&auth, "OPQactive").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn endpoint_failures_are_503_never_500_never_a_pass() {
    let (e, base) = endpoint().await;
    let auth = builder(&base).build().unwrap();
    for mode in [Mode::Error, Mode::Huge, Mode::NotJson] {
        e.set(mode);
        let a = call(&auth, "OPQactive").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["message"], "authentication is temporarily unavailable");
    }
    e.set(Mode::Normal);
    for token in ["OPQarray", "OPQbadexp"] {
        assert_eq!(
            status(&auth, token).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{token}"
        );
    }
    // Nothing of the failures was cached: the endpoint is back.
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
}

#[tokio::test]
async fn endpoint_down_is_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let auth = builder(&format!("http://{addr}")).build().unwrap();
    assert_eq!(
        status(&auth, "OPQactive").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn hanging_endpoint_times_out_with_503() {
    let (e, base) = endpoint().await;
    e.set(Mode::Hang);
    let auth = builder(&base).build().unwrap();
    let started = Instant::now();
    assert_eq!(
        status(&auth, "OPQactive").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn cache_hit_calls_the_endpoint_once_for_many_requests() {
    let (e, base) = endpoint().await;
    e.set(Mode::Slow);
    let auth = builder(&base).build().unwrap();
    // Concurrent requests with one uncached token share one call.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let auth = auth.clone();
        set.spawn(async move { status(&auth, "OPQactive").await });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    assert_eq!(e.calls(), 1, "single flight");
    for _ in 0..20 {
        assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    }
    assert_eq!(e.calls(), 1, "cache hits");
    // Clones share the cache.
    assert_eq!(status(&auth.clone(), "OPQactive").await, StatusCode::OK);
    assert_eq!(e.calls(), 1);
}

#[tokio::test]
async fn refused_tokens_are_cached_too_and_a_zero_ttl_turns_caching_off() {
    let (e, base) = endpoint().await;
    let auth = builder(&base).build().unwrap();
    for _ in 0..5 {
        assert_eq!(status(&auth, "OPQinactive").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(e.calls(), 1, "negative cache");
    let auth = builder(&base)
        .cache(100, Duration::ZERO)
        .negative_cache(100, Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(status(&auth, "OPQinactive").await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    }
    assert_eq!(e.calls(), 7);
}

#[tokio::test]
async fn cached_token_is_not_trusted_past_its_exp() {
    let (e, base) = endpoint().await;
    let exp = now() + 2;
    e.answers.lock().unwrap().insert(
        "OPQshort".into(),
        json!({"active": true, "sub": "bob", "exp": exp}),
    );
    let auth = builder(&base)
        .cache(100, Duration::from_secs(3600))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(status(&auth, "OPQshort").await, StatusCode::OK);
    assert_eq!(status(&auth, "OPQshort").await, StatusCode::OK);
    assert_eq!(e.calls(), 1);
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past `exp`, the cached entry is not used: the endpoint is asked
    // again, and its (stale) answer is refused on `exp`.
    assert_eq!(status(&auth, "OPQshort").await, StatusCode::UNAUTHORIZED);
    assert_eq!(e.calls(), 2);
}

#[tokio::test]
async fn cache_ttl_expires_entries() {
    let (e, base) = endpoint().await;
    let auth = builder(&base)
        .cache(100, Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    let start = now();
    while now() < start + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    assert_eq!(e.calls(), 2);
}

#[tokio::test]
async fn flood_of_random_tokens_stays_within_the_negative_cache_and_keeps_good_ones() {
    let (e, base) = endpoint().await;
    let auth = builder(&base)
        .negative_cache(50, Duration::from_secs(600))
        .build()
        .unwrap();
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    for i in 0..300 {
        assert_eq!(
            status(&auth, &format!("OPQrandom{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(e.calls(), 301);
    // The good token was not evicted by the flood.
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    assert_eq!(e.calls(), 301);
    // The latest refused tokens are cached, the oldest were evicted: the
    // negative cache holds at most its capacity.
    for i in 250..300 {
        assert_eq!(
            status(&auth, &format!("OPQrandom{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(e.calls(), 301);
    assert_eq!(status(&auth, "OPQrandom0").await, StatusCode::UNAUTHORIZED);
    assert_eq!(e.calls(), 302);
}

#[tokio::test]
async fn calls_in_flight_are_capped_with_503() {
    let (e, base) = endpoint().await;
    e.set(Mode::Slow);
    let auth = builder(&base).max_in_flight(2).build().unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..5 {
        let auth = auth.clone();
        set.spawn(async move { status(&auth, &format!("OPQslow{i}")).await });
    }
    let mut by_status: HashMap<StatusCode, usize> = HashMap::new();
    while let Some(s) = set.join_next().await {
        *by_status.entry(s.unwrap()).or_default() += 1;
    }
    assert_eq!(by_status.get(&StatusCode::SERVICE_UNAVAILABLE), Some(&3));
    assert_eq!(by_status.get(&StatusCode::UNAUTHORIZED), Some(&2));
    assert_eq!(e.calls(), 2);
    // Once they landed, new calls are allowed again.
    e.set(Mode::Normal);
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
}

#[tokio::test]
async fn https_only_unless_loopback_http_is_allowed() {
    let refused = |url: &str, allow: bool| {
        Introspection::builder(url, CLIENT_ID, CLIENT_SECRET)
            .allow_loopback_http(allow)
            .build()
            .unwrap_err()
    };
    assert!(matches!(
        refused("http://idp.example/introspect", true),
        OidcError::InsecureUrl
    ));
    assert!(matches!(
        refused("http://127.0.0.1:9/introspect", false),
        OidcError::InsecureUrl
    ));
    assert!(matches!(refused("introspect", true), OidcError::InvalidUrl));
    assert!(
        Introspection::builder("https://idp.example/introspect", CLIENT_ID, CLIENT_SECRET)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn discovery_names_the_introspection_endpoint() {
    let (e, base) = endpoint().await;
    let found = Discovery::new(format!("{base}/realms/app"))
        .jwks_settings(RemoteJwks::builder("").allow_loopback_http(true))
        .discover()
        .await
        .unwrap();
    let endpoint = found.introspection_endpoint().unwrap();
    assert_eq!(endpoint, format!("{base}/introspect"));
    let auth = Introspection::builder(endpoint, CLIENT_ID, CLIENT_SECRET)
        .allow_loopback_http(true)
        .build()
        .unwrap();
    assert_eq!(status(&auth, "OPQactive").await, StatusCode::OK);
    assert_eq!(e.calls(), 1);
}

#[tokio::test]
async fn logs_never_hold_a_token_or_the_client_secret() {
    let (e, base) = endpoint().await;
    let auth = Introspection::builder(format!("{base}/introspect"), CLIENT_ID, "wrong-OPQsecret")
        .allow_loopback_http(true)
        .build()
        .unwrap();
    assert_eq!(
        status(&auth, "OPQactive").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let auth = builder(&base).build().unwrap();
    for mode in [Mode::Error, Mode::NotJson, Mode::Normal] {
        e.set(mode);
        status(&auth, "OPQactive").await;
        status(&auth, "OPQinactive").await;
        status(&auth, "OPQbadexp").await;
    }
    let log = log_capture::log();
    assert!(
        log.contains("refused this resource server's client credentials"),
        "the operator is told: {log}"
    );
    assert!(!log.contains("OPQ"), "a token or secret was logged: {log}");
    assert!(!log.contains(CLIENT_SECRET), "the secret was logged: {log}");
    let printed = format!("{auth:?}");
    assert!(!printed.contains(CLIENT_SECRET), "{printed}");
}
