//! Decision events and metrics under attack-style requests: every decision
//! is traced with its outcome, and no token, key, password or session id
//! ever reaches a tracing event or span, nor a metric label.

mod log_capture;

use log_capture::log;

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{header, Request, Response, StatusCode};
use jsonwebtoken::Algorithm;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::basic::{self, BasicAuthenticator, MemoryUserStore, PasswordUsers, Passwords};
use tower_auth::observe::SubjectInTraces;
use tower_auth::session::{
    MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
};
use tower_auth::testing::{TestIssuer, TestRequest};
use tower_auth::{AuthLayer, Identity, Scheme};

const API_KEY: &str = "k9f8e7d6c5b4a39281706f5e4d3c2b1a0ZqW";
const WRONG_KEYS: [&str; 3] = [
    "kguess000000000000000000000000000000",
    "k9f8e7d6c5b4a39281706f5e4d3c2b1a0ZqX",
    "' OR 1=1 --",
];
const PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORDS: [&str; 2] = ["hunter2-attempt", "correct horse battery stapler"];
const FORGED_SESSION: &str = "forgedSessionIdAAAAAAAAAAAAAAAAAAAAAAAAAAA";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs the capturing subscriber and the Prometheus recorder once,
/// serializes the tests (they share the log) and clears the log.
async fn setup() -> (
    tokio::sync::MutexGuard<'static, ()>,
    &'static PrometheusHandle,
) {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        log_capture::install();
        PrometheusBuilder::new().install_recorder().unwrap()
    });
    let guard = SERIAL.lock().await;
    log_capture::clear();
    (guard, handle)
}

/// The decision events of the log.
fn decisions(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("tower_auth::decision"))
        .collect()
}

fn assert_absent(log: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!log.contains(secret), "{secret:?} was logged:\n{log}");
    }
}

async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let who = req
        .extensions()
        .get::<Identity>()
        .map_or("anonymous".to_owned(), |i| i.subject().to_owned());
    Ok(Response::new(who))
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_jwts_are_traced_as_refusals_without_the_token() {
    let (_serial, _) = setup().await;
    let issuer = TestIssuer::new(Algorithm::HS256);
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(issuer.authenticator::<Value>()).name("api"))
        .service(service_fn(echo));

    let broken = issuer.broken_tokens("mallory");
    assert!(broken.len() > 3);
    for (kind, token) in &broken {
        let res = svc
            .clone()
            .oneshot(TestRequest::get("/").bearer(token).build())
            .await
            .unwrap();
        assert!(
            res.status() == StatusCode::UNAUTHORIZED || res.status() == StatusCode::BAD_REQUEST,
            "{kind:?}: {}",
            res.status()
        );
    }
    let good = issuer.token("alice").sign();
    let res = svc
        .clone()
        .oneshot(TestRequest::get("/").bearer(&good).build())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = log();
    let events = decisions(&log);
    let refused: Vec<_> = events
        .iter()
        .filter(|l| l.contains("message=refused"))
        .collect();
    assert_eq!(refused.len(), broken.len(), "one event per refusal:\n{log}");
    for line in &refused {
        assert!(line.contains("layer=\"api\""), "{line}");
        assert!(line.contains("scheme=\"Bearer\""), "{line}");
        assert!(
            line.contains("outcome=\"invalid_token\"")
                || line.contains("outcome=\"invalid_request\""),
            "{line}"
        );
        assert!(line.contains("reason="), "{line}");
    }
    let accepted: Vec<_> = events
        .iter()
        .filter(|l| l.contains("outcome=\"authenticated\""))
        .collect();
    assert_eq!(accepted.len(), 1, "{log}");
    assert!(!accepted[0].contains("subject"), "subject is opt-in: {log}");
    // Neither the tokens nor their signatures (the part an attacker or a
    // log reader could replay) appear.
    let mut secrets: Vec<&str> = broken.iter().map(|(_, t)| t.as_str()).collect();
    secrets.push(&good);
    let signatures: Vec<&str> = secrets
        .iter()
        .filter_map(|t| t.rsplit('.').next())
        .filter(|s| s.len() > 8)
        .collect();
    assert_absent(&log, &secrets);
    assert_absent(&log, &signatures);
    assert!(!log.contains("mallory") && !log.contains("alice"), "{log}");
}

#[tokio::test]
async fn wrong_api_keys_are_refused_and_traced_without_the_key() {
    let (_serial, _) = setup().await;
    let store = MemoryApiKeyStore::new();
    assert!(store
        .insert_key(API_KEY, (), Identity::new("svc-billing", Scheme::ApiKey))
        .is_some());
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(ApiKeyAuthenticator::new(store)).name("keys"))
        .service(service_fn(echo));
    for key in WRONG_KEYS {
        let res = svc
            .clone()
            .oneshot(TestRequest::get("/").api_key(key).build())
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{key}: {}", res.status());
    }
    let res = svc
        .clone()
        .oneshot(TestRequest::get("/").api_key(API_KEY).build())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.oneshot(TestRequest::get("/").build()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let log = log();
    let events = decisions(&log);
    assert_eq!(events.len(), WRONG_KEYS.len() + 2, "{log}");
    assert_eq!(
        events
            .iter()
            .filter(|l| l.contains("layer=\"keys\"") && l.contains("scheme=\"ApiKey\""))
            .count(),
        events.len(),
        "{log}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|l| l.contains("outcome=\"unauthorized\""))
            .count(),
        1,
        "no key: unauthorized\n{log}"
    );
    assert_absent(&log, &WRONG_KEYS);
    assert_absent(&log, &[API_KEY, &API_KEY[4..]]);
}

#[tokio::test]
async fn wrong_basic_passwords_are_traced_without_the_password() {
    let (_serial, _) = setup().await;
    let passwords =
        Passwords::with_params(basic::argon2::Params::new(256, 1, 1, None).unwrap()).unwrap();
    let users = MemoryUserStore::new();
    let hash = passwords.hash(PASSWORD).unwrap();
    users.insert(
        "scraper",
        hash,
        (),
        Identity::new("scraper", basic::scheme()),
    );
    let svc = ServiceBuilder::new()
        .layer(
            AuthLayer::new(BasicAuthenticator::new(PasswordUsers::new(
                users, passwords,
            )))
            .name("ops")
            .trace_subject(SubjectInTraces::hashed_with_key(&[42; 32])),
        )
        .service(service_fn(echo));
    for password in WRONG_PASSWORDS {
        let res = svc
            .clone()
            .oneshot(TestRequest::get("/").basic("scraper", password).build())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = svc
        .oneshot(TestRequest::get("/").basic("scraper", PASSWORD).build())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = log();
    let events = decisions(&log);
    assert_eq!(events.len(), 3, "{log}");
    assert!(events[..2]
        .iter()
        .all(|l| l.contains("outcome=\"invalid_token\"") && l.contains("scheme=\"Basic\"")));
    // Opted in: the subject appears, hashed, never in clear.
    let ok = events[2];
    assert!(ok.contains("outcome=\"authenticated\""), "{ok}");
    assert!(ok.contains("subject="), "{ok}");
    assert_absent(&log, &WRONG_PASSWORDS);
    assert_absent(&log, &[PASSWORD, "scraper:", "c2NyYXBlcj"]);
    assert!(!ok.contains("scraper"), "the subject in clear: {ok}");
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
}

#[tokio::test]
async fn session_cookies_never_reach_the_traces() {
    let (_serial, _) = setup().await;
    let users = SessionAuthenticator::new("user", |u: &User| {
        Identity::new(u.id.to_string(), Scheme::Cookie)
    });
    let sessions = SessionLayer::new(MemorySessionStore::new(), SessionKey::generate().unwrap());
    let login = ServiceBuilder::new().layer(sessions.clone()).service_fn({
        let users = users.clone();
        move |req: Request<String>| {
            let users = users.clone();
            async move {
                let session = req.extensions().get::<Session>().unwrap();
                users.login(session, &User { id: 7 }).unwrap();
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }
    });
    let res = login
        .oneshot(TestRequest::get("/login").build())
        .await
        .unwrap();
    let set_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (name, session_id) = cookie.split_once('=').unwrap();
    let (name, session_id) = (name.to_owned(), session_id.to_owned());

    let me = ServiceBuilder::new()
        .layer(sessions)
        .layer(AuthLayer::new(users).name("web"))
        .service(service_fn(echo));
    log_capture::clear();
    let forged = [
        FORGED_SESSION.to_owned(),
        format!("{session_id}x"),
        session_id[..session_id.len() - 2].to_owned(),
    ];
    for value in &forged {
        let res = me
            .clone()
            .oneshot(TestRequest::get("/me").cookie(&name, value).build())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{value}");
    }
    let res = me
        .oneshot(TestRequest::get("/me").cookie(&name, &session_id).build())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = log();
    let events = decisions(&log);
    assert_eq!(events.len(), forged.len() + 1, "{log}");
    assert_eq!(
        events
            .iter()
            .filter(|l| l.contains("layer=\"web\"") && l.contains("outcome=\"authenticated\""))
            .count(),
        1,
        "{log}"
    );
    let forged: Vec<&str> = forged.iter().map(String::as_str).collect();
    assert_absent(&log, &forged);
    assert_absent(&log, &[&session_id]);
}

#[tokio::test]
async fn decisions_move_bounded_counters() {
    let (_serial, handle) = setup().await;
    let store = MemoryApiKeyStore::new();
    assert!(store
        .insert_key(API_KEY, (), Identity::new("svc-metrics", Scheme::ApiKey))
        .is_some());
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::optional(ApiKeyAuthenticator::new(store)).name("counted"))
        .service(service_fn(echo));
    for req in [
        TestRequest::get("/").api_key(API_KEY).build(),
        TestRequest::get("/").api_key(WRONG_KEYS[0]).build(),
        TestRequest::get("/").build(),
    ] {
        svc.clone().oneshot(req).await.unwrap();
    }
    let text = handle.render();
    let line = |needle: &[&str]| {
        text.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
            .to_owned()
    };
    for outcome in ["authenticated", "invalid_token", "anonymous"] {
        let l = line(&[
            "tower_auth_decisions_total{",
            "layer=\"counted\"",
            &format!("outcome=\"{outcome}\""),
        ]);
        assert!(l.ends_with(" 1"), "{l}");
    }
    line(&["tower_auth_rejections_total{", "kind=\"invalid_token\""]);
    line(&["tower_auth_decision_seconds", "layer=\"counted\""]);
    assert_absent(&text, &[API_KEY, WRONG_KEYS[0], "svc-metrics"]);
}
