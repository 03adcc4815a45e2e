//! Several identity providers in one authenticator, through `AuthLayer`,
//! against two in-test axum providers on 127.0.0.1: each issuer's tokens
//! verify with its own remote key set only, an unknown issuer triggers no
//! fetch, a token claiming one issuer signed with another's key is refused,
//! and one provider's outage does not affect the other.

mod oidc_keys;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::{header, Request, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{Discovery, Issuers, JwtAuthenticator, RemoteJwks, RemoteJwksBuilder};
use tower_auth::AuthLayer;

use oidc_keys::{jwk, token};

struct Provider {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    base: Mutex<String>,
}

/// Starts a provider with `keys` at `/jwks` and a discovery document for
/// the issuer `<base>/realm`; returns it and its base URL.
async fn provider(keys: Vec<Value>) -> (Arc<Provider>, String) {
    let p = Arc::new(Provider {
        keys: Mutex::new(keys),
        fetches: AtomicUsize::new(0),
        base: Mutex::new(String::new()),
    });
    let app = Router::new()
        .route(
            "/jwks",
            get(|State(p): State<Arc<Provider>>| async move {
                p.fetches.fetch_add(1, Ordering::SeqCst);
                json!({"keys": *p.keys.lock().unwrap()}).to_string()
            }),
        )
        .route(
            "/realm/.well-known/openid-configuration",
            get(|State(p): State<Arc<Provider>>| async move {
                let base = p.base.lock().unwrap().clone();
                axum::Json(
                    json!({"issuer": format!("{base}/realm"), "jwks_uri": format!("{base}/jwks")}),
                )
            }),
        )
        .with_state(Arc::clone(&p));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *p.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, base)
}

fn settings(base: &str) -> RemoteJwksBuilder {
    RemoteJwks::builder(format!("{base}/jwks"))
        .allow_loopback_http(true)
        .refresh_bounds(Duration::from_secs(3600), Duration::from_secs(3600))
        .unknown_kid_interval(Duration::from_millis(1))
        .timeout(Duration::from_millis(500))
}

async fn call(auth: &JwtAuthenticator<Value>, token: &str) -> (StatusCode, Value) {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth.clone()))
        .service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new("{}".to_owned()))
        });
    let req = Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

const ISS_A: &str = "https://a.idp.test";
const ISS_B: &str = "https://b.idp.test";

struct Two {
    a: Arc<Provider>,
    b: Arc<Provider>,
    jwks_b: RemoteJwks,
    auth: JwtAuthenticator<Value>,
}

/// Provider A signs RS256 with kid `a1`, provider B ES256 with kid `b1`.
async fn two(staleness_b: Duration) -> Two {
    let (a, base_a) = provider(vec![jwk(Algorithm::RS256, "a1")]).await;
    let (b, base_b) = provider(vec![jwk(Algorithm::ES256, "b1")]).await;
    let jwks_a = settings(&base_a).start().await.unwrap();
    let jwks_b = settings(&base_b)
        .max_staleness(staleness_b)
        .start()
        .await
        .unwrap();
    let auth = JwtAuthenticator::from_issuers(
        Issuers::new()
            .source(ISS_A, jwks_a)
            .source(ISS_B, jwks_b.clone()),
    )
    .build()
    .unwrap();
    Two { a, b, jwks_b, auth }
}

fn fetches(p: &Provider) -> usize {
    p.fetches.load(Ordering::SeqCst)
}

#[tokio::test]
async fn each_provider_verifies_its_own_tokens() {
    let t = two(Duration::from_secs(3600)).await;
    assert_eq!(
        call(&t.auth, &token(Algorithm::RS256, "a1", ISS_A)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&t.auth, &token(Algorithm::ES256, "b1", ISS_B)).await.0,
        StatusCode::OK
    );
    assert_eq!((fetches(&t.a), fetches(&t.b)), (1, 1));
}

#[tokio::test]
async fn unknown_issuer_is_refused_without_any_fetch() {
    let t = two(Duration::from_secs(3600)).await;
    for iss in ["https://evil.test", "https://a.idp.test/", ""] {
        // An unknown kid too: no source is asked to refresh.
        let (status, body) = call(&t.auth, &token(Algorithm::RS256, "zz", iss)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{iss}");
        assert_eq!(body["message"], "token issuer not accepted");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((fetches(&t.a), fetches(&t.b)), (1, 1));
}

#[tokio::test]
async fn a_token_claiming_b_signed_with_a_key_is_refused() {
    let t = two(Duration::from_secs(3600)).await;
    // A's key and kid, B's issuer: B's key set does not hold `a1`; B may
    // refresh once, A is never asked.
    let (status, body) = call(&t.auth, &token(Algorithm::RS256, "a1", ISS_B)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(fetches(&t.a), 1);
    // B publishes a key under A's kid (a compromised or careless B): A's
    // tokens still verify with A's keys only, and a token claiming B
    // signed with A's key under B's kid is refused by B's key.
    t.b.keys.lock().unwrap().push(jwk(Algorithm::ES256, "a1"));
    t.jwks_b.refresh().await.unwrap();
    let (status, _) = call(&t.auth, &token(Algorithm::RS256, "b1", ISS_B)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&t.auth, &token(Algorithm::RS256, "a1", ISS_A)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rotation_refreshes_only_the_issuer_named() {
    let t = two(Duration::from_secs(3600)).await;
    t.b.keys.lock().unwrap().push(jwk(Algorithm::RS256, "b2"));
    assert_eq!(
        call(&t.auth, &token(Algorithm::RS256, "b2", ISS_B)).await.0,
        StatusCode::OK
    );
    assert_eq!((fetches(&t.a), fetches(&t.b)), (1, 2));
}

#[tokio::test]
async fn one_stale_provider_fails_closed_alone() {
    let t = two(Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = call(&t.auth, &token(Algorithm::ES256, "b1", ISS_B)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "unavailable");
    assert_eq!(
        call(&t.auth, &token(Algorithm::RS256, "a1", ISS_A)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn stale_keys_refuse_cached_tokens_of_their_issuer_only() {
    let t = two(Duration::from_millis(300)).await;
    let auth = t.auth.clone().cache(100, Duration::from_secs(60));
    let (ta, tb) = (
        token(Algorithm::RS256, "a1", ISS_A),
        token(Algorithm::ES256, "b1", ISS_B),
    );
    assert_eq!(call(&auth, &ta).await.0, StatusCode::OK);
    assert_eq!(call(&auth, &tb).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&auth, &tb).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call(&auth, &ta).await.0, StatusCode::OK);
}

#[tokio::test]
async fn discovered_providers_plug_in() {
    let (a, base_a) = provider(vec![jwk(Algorithm::RS256, "a1")]).await;
    let (_b, base_b) = provider(vec![jwk(Algorithm::ES256, "b1")]).await;
    let discover = |base: &str| {
        Discovery::new(format!("{base}/realm"))
            .jwks_settings(settings(base))
            .discover()
    };
    let (da, db) = (
        discover(&base_a).await.unwrap(),
        discover(&base_b).await.unwrap(),
    );
    let auth = JwtAuthenticator::from_issuers(Issuers::new().discovered(&da).discovered(&db))
        .build()
        .unwrap();
    let iss_a = format!("{base_a}/realm");
    let iss_b = format!("{base_b}/realm");
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "a1", &iss_a)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&auth, &token(Algorithm::ES256, "b1", &iss_b)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "a1", &iss_b)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // One provider: `from_discovered` binds its issuer.
    let single: JwtAuthenticator<Value> = JwtAuthenticator::from_discovered(&da).build().unwrap();
    assert_eq!(
        call(&single, &token(Algorithm::RS256, "a1", &iss_a))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&single, &token(Algorithm::RS256, "a1", "https://evil.test"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fetches(&a), 1);
}
