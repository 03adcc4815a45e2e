//! End to end against a real, certified OpenID provider (panva's
//! `oidc-provider` on Node.js, see `tests/oidc_provider_support`): the `oidc`
//! example discovers it, tokens come from its token endpoint by client
//! credentials, its signing keys rotate, it goes down and comes back, and a
//! second provider (an untrusted issuer with the same keys) is refused.
//!
//! `.ci/run` installs the provider; locally, without it, the tests skip
//! loudly (`npm ci --prefix tests/oidc-provider` to run them).

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/oidc.rs"]
mod example;

mod oidc_provider_support;

use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oidc_provider_support::{header, Harness, OidcProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tower_auth::jwt::OidcError;

const API: &str = "https://api.example.test";
const OTHER_API: &str = "https://other.example.test";

/// The example's settings for `issuer`, read as from the environment.
fn config(issuer: &str, extra: &[(&str, &str)]) -> example::Config {
    let mut vars = vec![
        ("OIDC_ISSUER", issuer),
        ("OIDC_AUDIENCE", API),
        ("OIDC_ALLOW_HTTP_LOOPBACK", "1"),
        ("OIDC_TOKEN_TYPES", "at+jwt"),
    ];
    vars.extend_from_slice(extra);
    example::Config::from_vars(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

/// Runs the example on a free port; its base URL.
async fn serve(config: &example::Config) -> String {
    let app = example::app(config).await.expect("discovery");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = res.text().await.unwrap();
        if let Some(token) = token {
            assert!(!text.contains(token), "a response echoed the token");
        }
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, challenge, body)
    }

    async fn status(&self, path: &str, token: &str) -> StatusCode {
        self.get(path, Some(token)).await.0
    }
}

const RSA_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa_private.pem");

/// An admin token for `issuer` and our audience signed with the key of
/// `tests/keys/rsa_private.pem` under `kid`, with the header `typ` and
/// lifetime given.
fn signed(issuer: &str, kid: &str, typ: &str, exp_in: i64) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    h.typ = Some(typ.into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = EncodingKey::from_rsa_pem(&std::fs::read(RSA_PEM).unwrap()).unwrap();
    let claims = json!({"iss": issuer, "aud": API, "sub": "admin", "client_id": "admin",
        "roles": ["admin"], "iat": now, "exp": now + exp_in});
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

/// A token for the provider's issuer and our audience, signed by a key the
/// provider never published.
fn forged(issuer: &str) -> String {
    signed(issuer, "forged", "at+jwt", 600)
}

/// Polls `path` with `token` until it answers `want` (every answer before
/// it must be `before`); the time it took.
async fn until(
    api: &Api,
    path: &str,
    token: &str,
    before: StatusCode,
    want: StatusCode,
    deadline: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let status = api.status(path, token).await;
        if status == want {
            return start.elapsed();
        }
        assert_eq!(status, before, "while waiting for {want}");
        assert!(
            start.elapsed() < deadline,
            "still {status} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_policies_key_rotation_and_provider_outage() {
    let Some(harness) = Harness::find().await else {
        return;
    };
    let (k1, k2) = (harness.key("k1").await, harness.key("k2").await);
    let mut idp = OidcProvider::start(&harness, std::slice::from_ref(&k1), &[API, OTHER_API]).await;
    // Keys refreshed every second, kept 4 s when the provider is down.
    let config = config(
        idp.issuer(),
        &[
            ("OIDC_REFRESH_MIN", "1"),
            ("OIDC_REFRESH_MAX", "1"),
            ("OIDC_UNKNOWN_KID_INTERVAL", "0.1"),
            ("OIDC_MAX_STALENESS", "4"),
        ],
    );
    let api = Api {
        http: reqwest::Client::new(),
        base: serve(&config).await,
    };

    // (a) Tokens by client credentials, and the example's policies.
    let (status, _, body) = api.get("/public", None).await;
    assert_eq!(
        (status, body["message"].is_string()),
        (StatusCode::OK, true)
    );

    let (status, challenge, body) = api.get("/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer realm=\"api\""), "{challenge}");
    assert!(
        !challenge.contains("error="),
        "no error code without a token"
    );
    assert_eq!(body["error"], "unauthorized");

    let (status, challenge, body) = api.get("/me", Some("not.a.token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token");

    let reader = idp.token("reader", Some("reports:read"), None).await;
    assert_eq!(header(&reader)["kid"], "k1");
    assert_eq!(header(&reader)["typ"], "at+jwt");
    let (status, _, me) = api.get("/me", Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["sub"], "reader");
    assert_eq!(me["client_id"], "reader");
    assert_eq!(me["roles"], json!(["user"]));
    assert_eq!(me["scopes"], json!(["reports:read"]));
    assert_eq!(api.status("/reports", &reader).await, StatusCode::OK);
    let (status, challenge, body) = api.get("/admin", Some(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "forbidden");

    let admin = idp.token("admin", Some("reports:read"), None).await;
    let (status, _, body) = api.get("/admin", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "hello admin admin");

    // A client without roles or API scopes (the provider refuses it the
    // scope): valid, but neither admin nor reader.
    let (status, body) = idp
        .token_response("robot", Some("reports:read"), None)
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_scope"))
    );
    let robot = idp.token("robot", None, None).await;
    let (status, _, me) = api.get("/me", Some(&robot)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["roles"].clone(), me["scopes"].clone()),
        (json!([]), json!([]))
    );
    assert_eq!(api.status("/admin", &robot).await, StatusCode::FORBIDDEN);
    assert_eq!(api.status("/reports", &robot).await, StatusCode::FORBIDDEN);

    // A token of the same provider for another API.
    let elsewhere = idp.token("admin", None, Some(OTHER_API)).await;
    let (status, challenge, _) = api.get("/me", Some(&elsewhere)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");

    // (b) Rotation, as providers do it: publish the new key beside the old
    // one and sign with it ...
    idp.restart(&[k2.clone(), k1.clone()]).await;
    let rotated = idp.token("admin", Some("reports:read"), None).await;
    assert_eq!(header(&rotated)["kid"], "k2");
    // ... the running example learns the new key (an unknown-kid refresh,
    // or the background refresh if it came first) ...
    assert_eq!(api.status("/admin", &rotated).await, StatusCode::OK);
    assert_eq!(api.status("/admin", &admin).await, StatusCode::OK);
    // ... then retire the old one: once refreshed (within a second here),
    // its tokens are refused while the new key's keep working.
    idp.restart(std::slice::from_ref(&k2)).await;
    let took = until(
        &api,
        "/admin",
        &admin,
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(8),
    )
    .await;
    eprintln!("a retired key's tokens refused {took:?} after the provider dropped it");
    assert_eq!(api.status("/admin", &rotated).await, StatusCode::OK);

    // (d) The provider goes down: the last good keys keep serving ...
    idp.kill().await;
    let down = Instant::now();
    assert_eq!(api.status("/admin", &rotated).await, StatusCode::OK);
    // ... a token signed by a key they lack is refused (the refresh it
    // triggers fails), not let through ...
    let (status, challenge, _) = api.get("/me", Some(&forged(idp.issuer()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // ... and past the maximum staleness (4 s after the last successful
    // refresh, at most a second before the outage) every token gets 503.
    until(
        &api,
        "/me",
        &rotated,
        StatusCode::OK,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let stale_after = down.elapsed();
    eprintln!("stale keys refused with 503 {stale_after:?} after the provider went down");
    assert!(
        stale_after >= Duration::from_secs(2),
        "503 too early: {stale_after:?}"
    );
    let (_, _, body) = api.get("/me", Some(&rotated)).await;
    assert_eq!(body["error"], "unavailable");
    // Stale keys decide nothing: an unknown key's token gets 503 too.
    let (status, _, body) = api.get("/me", Some(&forged(idp.issuer()))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "unavailable");

    // The provider comes back: the background refresh picks it up.
    idp.restart(&[k2]).await;
    until(
        &api,
        "/me",
        &rotated,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::OK,
        Duration::from_secs(8),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_issuer_with_the_same_keys_is_refused_and_bad_discovery_stops_startup() {
    let Some(harness) = Harness::find().await else {
        return;
    };
    // A provider key the test holds too, to sign tokens the provider would
    // not issue.
    let key = harness.key_from_pem("shared", Path::new(RSA_PEM)).await;
    let idp = OidcProvider::start(&harness, std::slice::from_ref(&key), &[API]).await;
    // An untrusted provider publishing the very same key under the same kid.
    let rogue = OidcProvider::start(&harness, &[key], &[API]).await;
    assert_ne!(idp.issuer(), rogue.issuer());
    let api = Api {
        http: reqwest::Client::new(),
        base: serve(&config(idp.issuer(), &[])).await,
    };

    let trusted = idp.token("admin", None, None).await;
    assert_eq!(api.status("/admin", &trusted).await, StatusCode::OK);
    let untrusted = rogue.token("admin", None, None).await;
    assert_eq!(header(&untrusted)["kid"], "shared");
    let (status, challenge, body) = api.get("/admin", Some(&untrusted)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token");

    // With the provider's own key: an access token (`at+jwt`) passes, the
    // same claims typed as an ID token or any other JWT do not, nor does
    // an expired one (beyond the 30 s leeway).
    let issuer = idp.issuer();
    let own = signed(issuer, "shared", "at+jwt", 600);
    assert_eq!(api.status("/admin", &own).await, StatusCode::OK);
    for token in [
        signed(issuer, "shared", "JWT", 600),
        signed(issuer, "shared", "at+jwt", -120),
    ] {
        let (status, challenge, _) = api.get("/admin", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    // Startup refuses a provider whose discovery document names another
    // issuer (the same server, reached as `localhost`) ...
    let aliased = idp.issuer().replace("127.0.0.1", "localhost");
    let err = example::app(&config(&aliased, &[])).await.unwrap_err();
    assert!(
        matches!(
            err,
            example::StartError::Discovery(OidcError::IssuerMismatch)
        ),
        "{err}"
    );
    // ... plain http unless allowed for loopback ...
    let err = example::app(&config(idp.issuer(), &[("OIDC_ALLOW_HTTP_LOOPBACK", "0")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, example::StartError::Discovery(OidcError::InsecureUrl)),
        "{err}"
    );
    // ... and a provider that is not there.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = example::app(&config(&gone, &[])).await.unwrap_err();
    assert!(
        matches!(err, example::StartError::Discovery(OidcError::Http(_))),
        "{err}"
    );
}

#[test]
fn example_configuration_names_what_is_missing_or_malformed() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let err = example::Config::from_vars(vars(&[("OIDC_AUDIENCE", "a")])).unwrap_err();
    assert_eq!(err, "OIDC_ISSUER is required");
    let err = example::Config::from_vars(vars(&[("OIDC_ISSUER", "https://i")])).unwrap_err();
    assert_eq!(err, "OIDC_AUDIENCE is required");
    let err = example::Config::from_vars(vars(&[
        ("OIDC_ISSUER", "https://i"),
        ("OIDC_AUDIENCE", "a"),
        ("OIDC_MAX_STALENESS", "soon"),
    ]))
    .unwrap_err();
    assert!(err.starts_with("OIDC_MAX_STALENESS must be"), "{err}");
    let c = example::Config::from_vars(vars(&[
        ("OIDC_ISSUER", "https://i"),
        ("OIDC_AUDIENCE", "a"),
        ("OIDC_ROLES_CLAIMS", "groups, cognito:groups"),
        ("OIDC_UNKNOWN_KID_INTERVAL", "0.5"),
    ]))
    .unwrap();
    assert_eq!(c.roles_claims, ["groups", "cognito:groups"]);
    assert_eq!(c.unknown_kid_interval, Duration::from_millis(500));
    assert!(!c.allow_http_loopback);
    assert_eq!(c.token_types, None);
    assert_eq!(c.max_staleness, Duration::from_secs(6 * 3600));
    assert_eq!(c.claim_mapping, None);
    let err = example::Config::from_vars(vars(&[
        ("OIDC_ISSUER", "https://i"),
        ("OIDC_AUDIENCE", "a"),
        ("OIDC_CLAIM_MAPPING", "keycloak"),
    ]))
    .unwrap_err();
    assert!(err.starts_with("OIDC_CLAIM_MAPPING must be"), "{err}");
    for preset in [
        "keycloak:orders-api",
        "auth0:https://example.com",
        "entra",
        "okta",
        "cognito",
    ] {
        let pairs: &'static [(&str, &str)] = Box::leak(Box::new([
            ("OIDC_ISSUER", "https://i"),
            ("OIDC_AUDIENCE", "a"),
            ("OIDC_CLAIM_MAPPING", preset),
        ]));
        let c = example::Config::from_vars(vars(pairs)).unwrap();
        assert_eq!(c.claim_mapping.as_deref(), Some(preset));
    }
}
