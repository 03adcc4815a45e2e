//! Remote JWKS and OIDC discovery through `AuthLayer`, against an in-test
//! axum identity provider on 127.0.0.1 (plain http, explicitly allowed for
//! loopback): rotation, 500s, hangs, huge bodies, bad keys, a lying
//! discovery document and floods of random `kid`s.

mod oidc_keys;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response as AxResponse};
use axum::routing::get;
use axum::Router;
use http::{header, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{
    ConfigError, Discovery, JwtAuthenticator, OidcError, RemoteJwks, RemoteJwksBuilder,
};
use tower_auth::AuthLayer;

use oidc_keys::{jwk, token};

const ISSUER_PATH: &str = "/realms/app";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Error,
    Hang,
    Huge,
    HugeStream,
}

struct Provider {
    keys: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    fetches: AtomicUsize,
    not_modified: AtomicUsize,
    cache_control: Mutex<Option<&'static str>>,
    /// The issuer the discovery document claims; `None`: the true one.
    claimed_issuer: Mutex<Option<String>>,
    algs: Mutex<Option<Vec<&'static str>>>,
    base: Mutex<String>,
}

async fn jwks(State(p): State<Arc<Provider>>, headers: HeaderMap) -> AxResponse {
    p.fetches.fetch_add(1, Ordering::SeqCst);
    let mode = *p.mode.lock().unwrap();
    match mode {
        Mode::Normal => {}
        Mode::Error => return AxStatus::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return AxStatus::OK.into_response();
        }
        Mode::Huge => return vec![b' '; 10 * 1024 * 1024].into_response(),
        Mode::HugeStream => {
            let chunks = (0..160).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
            return Body::from_stream(futures_util::stream::iter(chunks)).into_response();
        }
    }
    let body = json!({"keys": *p.keys.lock().unwrap()}).to_string();
    let etag = format!("\"{}\"", body.len());
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        p.not_modified.fetch_add(1, Ordering::SeqCst);
        AxStatus::NOT_MODIFIED.into_response()
    } else {
        ([(header::ETAG, etag)], body).into_response()
    };
    if let Some(cc) = *p.cache_control.lock().unwrap() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    response
}

async fn discovery(State(p): State<Arc<Provider>>) -> AxResponse {
    let base = p.base.lock().unwrap().clone();
    let issuer = p
        .claimed_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!("{base}{ISSUER_PATH}"));
    let mut doc = json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks")});
    if let Some(algs) = &*p.algs.lock().unwrap() {
        doc["id_token_signing_alg_values_supported"] = json!(algs);
    }
    axum::Json(doc).into_response()
}

/// Starts the provider; returns it and its base URL.
async fn provider(keys: Vec<Value>) -> (Arc<Provider>, String) {
    let p = Arc::new(Provider {
        keys: Mutex::new(keys),
        mode: Mutex::new(Mode::Normal),
        fetches: AtomicUsize::new(0),
        not_modified: AtomicUsize::new(0),
        cache_control: Mutex::new(None),
        claimed_issuer: Mutex::new(None),
        algs: Mutex::new(None),
        base: Mutex::new(String::new()),
    });
    let app = Router::new()
        .route("/jwks", get(jwks))
        .route(
            &format!("{ISSUER_PATH}/.well-known/openid-configuration"),
            get(discovery),
        )
        // An RFC 8414-only server: the well-known segment before the path.
        .route(
            "/.well-known/oauth-authorization-server/as",
            get(|State(p): State<Arc<Provider>>| async move {
                let base = p.base.lock().unwrap().clone();
                axum::Json(
                    json!({"issuer": format!("{base}/as"), "jwks_uri": format!("{base}/jwks")}),
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
        .timeout(Duration::from_millis(500))
}

async fn call(auth: &JwtAuthenticator<Value>, token: &str) -> StatusCode {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth.clone()))
        .service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
    let req = Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

fn authenticator(jwks: RemoteJwks) -> JwtAuthenticator<Value> {
    JwtAuthenticator::from_source(jwks)
        .issuers(["https://idp.test"])
        .build()
        .unwrap()
}

const ISS: &str = "https://idp.test";

#[tokio::test]
async fn rotation_new_kid_accepted_after_one_refresh_old_kid_removed() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base)
        .unknown_kid_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap();
    let auth = authenticator(jwks.clone());
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);
    // The provider adds k2: the first token naming it triggers one refresh.
    p.keys.lock().unwrap().push(jwk(Algorithm::ES256, "k2"));
    assert_eq!(
        call(&auth, &token(Algorithm::ES256, "k2", ISS)).await,
        StatusCode::OK
    );
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        call(&auth, &token(Algorithm::ES256, "k2", ISS)).await,
        StatusCode::OK
    );
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2, "known kid: no fetch");
    // The provider removes k1: after the next refresh k1 tokens are refused.
    p.keys.lock().unwrap().remove(0);
    jwks.refresh().await.unwrap();
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&auth, &token(Algorithm::ES256, "k2", ISS)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn etag_revalidation_keeps_keys_on_304() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base).start().await.unwrap();
    jwks.refresh().await.unwrap();
    assert_eq!(p.not_modified.load(Ordering::SeqCst), 1);
    let auth = authenticator(jwks);
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn background_refresh_follows_clamped_max_age() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    *p.cache_control.lock().unwrap() = Some("max-age=0");
    let _jwks = settings(&base)
        .refresh_bounds(Duration::from_millis(100), Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fetches = p.fetches.load(Ordering::SeqCst);
    // max-age=0 is clamped up to 100 ms: a few refreshes, not a busy loop
    // (and not the 5 min used without a max-age).
    assert!((3..=10).contains(&fetches), "{fetches} fetches");
}

#[tokio::test]
async fn server_error_keeps_stale_keys_then_503_after_max_staleness() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base)
        .max_staleness(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let auth = authenticator(jwks.clone());
    *p.mode.lock().unwrap() = Mode::Error;
    assert!(matches!(jwks.refresh().await, Err(OidcError::Status(500))));
    let t = token(Algorithm::RS256, "k1", ISS);
    assert_eq!(call(&auth, &t).await, StatusCode::OK, "stale keys kept");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&auth, &t).await, StatusCode::SERVICE_UNAVAILABLE);
    // The provider recovers: keys are fresh again.
    *p.mode.lock().unwrap() = Mode::Normal;
    jwks.refresh().await.unwrap();
    assert_eq!(call(&auth, &t).await, StatusCode::OK);
}

#[tokio::test]
async fn cached_tokens_are_refused_once_their_key_is_retired() {
    let (p, base) = provider(vec![
        jwk(Algorithm::RS256, "k1"),
        jwk(Algorithm::ES256, "k2"),
    ])
    .await;
    let jwks = settings(&base).start().await.unwrap();
    let auth = authenticator(jwks.clone()).cache(100, Duration::from_secs(3600));
    let old = token(Algorithm::RS256, "k1", ISS);
    let new = token(Algorithm::ES256, "k2", ISS);
    assert_eq!(call(&auth, &old).await, StatusCode::OK);
    assert_eq!(call(&auth, &new).await, StatusCode::OK);
    // A revalidation (304) changes nothing: cached tokens stay hits.
    jwks.refresh().await.unwrap();
    assert_eq!(p.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(call(&auth, &old).await, StatusCode::OK);
    // The provider retires k1 (a compromised key): the cached k1 token is
    // verified again and refused; the k2 token still passes.
    p.keys.lock().unwrap().remove(0);
    jwks.refresh().await.unwrap();
    assert_eq!(call(&auth, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&auth, &new).await, StatusCode::OK);
    assert_eq!(call(&auth, &old).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cached_tokens_are_refused_too_once_keys_are_too_stale() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base)
        .max_staleness(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let auth = authenticator(jwks).cache(100, Duration::from_secs(60));
    let t = token(Algorithm::RS256, "k1", ISS);
    assert_eq!(call(&auth, &t).await, StatusCode::OK);
    *p.mode.lock().unwrap() = Mode::Error;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&auth, &t).await, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn hanging_server_times_out() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base)
        .unknown_kid_interval(Duration::from_millis(1))
        .timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let auth = authenticator(jwks.clone());
    *p.mode.lock().unwrap() = Mode::Hang;
    let started = std::time::Instant::now();
    // While a refresh hangs, lookups of known keys do not wait on it.
    let hanging = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refresh().await }
    });
    while p.fetches.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = std::time::Instant::now();
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
    assert!(during.elapsed() < Duration::from_millis(500));
    assert!(!hanging.is_finished());
    assert!(matches!(hanging.await.unwrap(), Err(OidcError::Timeout)));
    // An unknown kid waits for the (timed-out) refresh only, then 401.
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "new", ISS)).await,
        StatusCode::UNAUTHORIZED
    );
    // Known keys never wait.
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = std::time::Instant::now();
    assert!(matches!(
        settings(&base)
            .timeout(Duration::from_millis(200))
            .start()
            .await,
        Err(OidcError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn ten_megabyte_body_is_refused() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    for mode in [Mode::Huge, Mode::HugeStream] {
        *p.mode.lock().unwrap() = mode;
        assert!(matches!(
            settings(&base).max_body(64 * 1024).start().await,
            Err(OidcError::TooLarge(65536))
        ));
    }
}

#[tokio::test]
async fn unsupported_and_malformed_keys_are_dropped_alone() {
    let mut broken = jwk(Algorithm::RS256, "broken");
    broken["n"] = json!("!!!not base64!!!");
    let keys = vec![
        json!({"kty": "XYZ", "kid": "alien", "x": "y"}),
        json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj"}),
        broken,
        json!("not even an object"),
        jwk(Algorithm::RS256, "k1"),
    ];
    let (_p, base) = provider(keys).await;
    let jwks = settings(&base).start().await.unwrap();
    assert_eq!(jwks.keys().len(), 1);
    let auth = authenticator(jwks);
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn too_many_keys_or_no_usable_key_is_refused() {
    let (p, base) = provider(vec![json!({"kty": "oct", "kid": "s", "k": "AAAA"})]).await;
    assert!(matches!(
        settings(&base).start().await,
        Err(OidcError::NoUsableKey)
    ));
    *p.keys.lock().unwrap() = (0..5)
        .map(|i| jwk(Algorithm::RS256, &format!("k{i}")))
        .collect();
    assert!(matches!(
        settings(&base).max_keys(4).start().await,
        Err(OidcError::TooManyKeys(4))
    ));
}

#[tokio::test]
async fn flood_of_random_kids_fetches_at_most_once_per_interval() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base)
        .unknown_kid_interval(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let auth = authenticator(jwks);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                call(&auth, &token(Algorithm::RS256, &format!("random-{i}"), ISS)).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // One after the other too (no refresh to join): still no new fetch.
    for i in 0..20 {
        let t = token(Algorithm::RS256, &format!("again-{i}"), ISS);
        assert_eq!(call(&auth, &t).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2, "initial + one refresh");
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", ISS)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn key_source_requires_issuers_or_explicit_any_issuer() {
    let (_p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base).start().await.unwrap();
    assert_eq!(
        JwtAuthenticator::<Value>::from_source(jwks.clone())
            .build()
            .unwrap_err(),
        ConfigError::IssuerRequired
    );
    let any = JwtAuthenticator::<Value>::from_source(jwks.clone())
        .any_issuer()
        .build()
        .unwrap();
    assert_eq!(
        call(&any, &token(Algorithm::RS256, "k1", "https://other")).await,
        StatusCode::OK
    );
    // With issuers, another issuer is refused.
    let auth = authenticator(jwks);
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", "https://other")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn https_only_unless_loopback_http_allowed() {
    let (_p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    assert!(matches!(
        RemoteJwks::builder(format!("{base}/jwks")).start().await,
        Err(OidcError::InsecureUrl)
    ));
}

#[tokio::test]
async fn discovery_follows_jwks_uri_and_intersects_algorithms() {
    let (p, base) = provider(vec![
        jwk(Algorithm::RS256, "k1"),
        jwk(Algorithm::ES256, "k2"),
    ])
    .await;
    *p.algs.lock().unwrap() = Some(vec!["RS256", "HS256", "none"]);
    let issuer = format!("{base}{ISSUER_PATH}");
    let found = Discovery::new(issuer.clone())
        .jwks_settings(settings(""))
        .discover()
        .await
        .unwrap();
    assert_eq!(found.issuer(), issuer);
    let auth = JwtAuthenticator::<Value>::from_source(found.jwks().clone())
        .issuers([found.issuer()])
        .build()
        .unwrap();
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", &issuer)).await,
        StatusCode::OK
    );
    // ES256 is not advertised: refused although the key is in the set.
    assert_eq!(
        call(&auth, &token(Algorithm::ES256, "k2", &issuer)).await,
        StatusCode::UNAUTHORIZED
    );
    *p.algs.lock().unwrap() = Some(vec!["HS256"]);
    assert!(matches!(
        Discovery::new(issuer)
            .jwks_settings(settings(""))
            .discover()
            .await,
        Err(OidcError::NoAlgorithms)
    ));
}

#[tokio::test]
async fn discovery_document_with_another_issuer_is_refused() {
    let (p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let issuer = format!("{base}{ISSUER_PATH}");
    for claimed in [
        format!("{issuer}/"),
        "https://evil.example/realms/app".to_owned(),
        issuer.to_uppercase(),
    ] {
        *p.claimed_issuer.lock().unwrap() = Some(claimed);
        assert!(matches!(
            Discovery::new(issuer.clone())
                .jwks_settings(settings(""))
                .discover()
                .await,
            Err(OidcError::IssuerMismatch)
        ));
    }
    // Without a discovery document at either well-known path: 404.
    assert!(matches!(
        Discovery::new(format!("{base}/nowhere"))
            .jwks_settings(settings(""))
            .discover()
            .await,
        Err(OidcError::Status(404))
    ));
}

#[tokio::test]
async fn rfc8414_metadata_is_found_when_there_is_no_openid_configuration() {
    let (_p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let issuer = format!("{base}/as");
    let found = Discovery::new(issuer.clone())
        .jwks_settings(settings(""))
        .discover()
        .await
        .unwrap();
    let auth = JwtAuthenticator::<Value>::from_source(found.jwks().clone())
        .issuers([found.issuer()])
        .build()
        .unwrap();
    assert_eq!(
        call(&auth, &token(Algorithm::RS256, "k1", &issuer)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hs256_token_signed_with_the_published_rsa_key_is_refused() {
    let (_p, base) = provider(vec![jwk(Algorithm::RS256, "k1")]).await;
    let jwks = settings(&base).start().await.unwrap();
    let auth = authenticator(jwks);
    let public = include_bytes!("keys/rsa_public.pem");
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &json!({"sub": "mallory", "iss": ISS, "exp": u64::MAX / 2}),
        &EncodingKey::from_secret(public),
    )
    .unwrap();
    assert_eq!(call(&auth, &forged).await, StatusCode::UNAUTHORIZED);
}

/// A TLS server on 127.0.0.1 with a self-signed certificate: the client
/// must refuse it (certificate verification is always on).
#[tokio::test]
async fn self_signed_https_provider_is_refused() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&handshakes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            // Drives the handshake until the client gives up.
            while conn.is_handshaking() {
                if conn.complete_io(&mut stream).is_err() {
                    break;
                }
            }
        }
    });
    let result = RemoteJwks::builder(format!("https://{addr}/jwks"))
        .timeout(Duration::from_secs(5))
        .start()
        .await;
    assert!(matches!(result, Err(OidcError::Http(_))), "{result:?}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "a TLS handshake was tried"
    );
}
