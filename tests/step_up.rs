//! Step-up authentication (RFC 9470) on JWTs: the `step_up` policy behind an
//! `AuthLayer` answers `401` with `insufficient_user_authentication`,
//! `acr_values` and `max_age` when the token's `acr` or `auth_time` does
//! not do.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::authz::{role, step_up, AuthContext, Policy, RequireLayer};
use tower_auth::jwt::TokenIssuer;
use tower_auth::{AuthLayer, Authenticator};

const MFA: &str = "urn:example:mfa";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn issuer() -> TokenIssuer {
    TokenIssuer::hs256(b"a step-up test secret of at least 32 bytes")
        .unwrap()
        .build()
        .unwrap()
}

#[derive(Serialize)]
struct Extra {
    roles: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
}

fn token(acr: Option<&'static str>, auth_time: Option<u64>) -> String {
    issuer()
        .issue(
            "alice",
            &Extra {
                roles: ["user"],
                acr,
                auth_time,
            },
        )
        .unwrap()
        .access_token
}

struct Reply {
    status: StatusCode,
    www: Vec<String>,
    headers: http::HeaderMap,
    body: String,
}

async fn send<A, P>(auth: AuthLayer<A>, policy: P, req: Request<()>) -> Reply
where
    A: Authenticator,
    P: Policy,
{
    let svc = ServiceBuilder::new()
        .layer(auth)
        .layer(RequireLayer::new(policy))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new("secret".to_owned()))
        });
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let www = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        www,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/account")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn jwt() -> AuthLayer<impl Authenticator<Principal = Value>> {
    AuthLayer::new(issuer().authenticator::<Value>())
}

fn policy() -> impl Policy {
    step_up::<Value>()
        .acr_values([MFA, "phr"])
        .max_age(Duration::from_secs(300))
}

const CHALLENGE: &str = r#"Bearer error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", acr_values="urn:example:mfa phr", max_age="300""#;

#[tokio::test]
async fn strong_and_recent_authentication_passes() {
    let r = send(jwt(), policy(), bearer(&token(Some(MFA), Some(now() - 10)))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "secret");
    let r = send(jwt(), policy(), bearer(&token(Some("phr"), Some(now())))).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn weak_old_or_missing_authentication_asks_for_a_step_up() {
    let cases = [
        ("weaker acr", token(Some("pwd"), Some(now()))),
        ("no acr", token(None, Some(now()))),
        (
            "acr differing in case",
            token(Some("URN:EXAMPLE:MFA"), Some(now())),
        ),
        ("too old", token(Some(MFA), Some(now() - 301))),
        ("no auth_time", token(Some(MFA), None)),
        (
            "auth_time in the future",
            token(Some(MFA), Some(now() + 600)),
        ),
    ];
    for (what, token) in cases {
        let r = send(jwt(), policy(), bearer(&token)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.www, [CHALLENGE], "{what}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "insufficient_user_authentication", "{what}");
        assert_eq!(
            body["message"],
            "a stronger or more recent authentication is required"
        );
    }
}

#[tokio::test]
async fn acr_only_and_max_age_only_challenges_name_only_their_requirement() {
    let r = send(
        jwt(),
        step_up::<Value>().acr_values([MFA]),
        bearer(&token(Some("pwd"), None)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.www,
        [
            r#"Bearer error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", acr_values="urn:example:mfa""#
        ]
    );
    // acr alone: any auth_time, even none, will do.
    let r = send(
        jwt(),
        step_up::<Value>().acr_values([MFA]),
        bearer(&token(Some(MFA), None)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = send(
        jwt(),
        step_up::<Value>().max_age(Duration::from_secs(60)),
        bearer(&token(None, Some(now() - 3600))),
    )
    .await;
    assert_eq!(
        r.www,
        [
            r#"Bearer error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", max_age="60""#
        ]
    );
}

#[tokio::test]
async fn the_clock_decides_the_age() {
    let at = 1_000_000;
    let policy = |now: u64| {
        step_up::<Value>()
            .max_age(Duration::from_secs(300))
            .leeway(Duration::from_secs(5))
            .clock(move || now)
    };
    let tok = token(None, Some(at));
    for (now, status) in [
        (at + 300, StatusCode::OK),
        (at + 301, StatusCode::UNAUTHORIZED),
        (at - 5, StatusCode::OK),
        (at - 6, StatusCode::UNAUTHORIZED),
    ] {
        let r = send(jwt(), policy(now), bearer(&tok)).await;
        assert_eq!(r.status, status, "now = at {:+}", now as i64 - at as i64);
    }
}

#[tokio::test]
async fn anonymous_requests_get_the_auth_layers_challenge() {
    let auth = AuthLayer::optional(issuer().authenticator::<Value>().realm("api"));
    let r = send(auth, policy(), Request::get("/").body(()).unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.www, [r#"Bearer realm="api""#]);
}

#[tokio::test]
async fn other_principals_fail_closed_without_a_bearer_challenge() {
    // An API key carries no acr / auth_time: refused, and not told to
    // present a bearer token it does not have.
    let req = Request::get("/")
        .header("x-api-key", common::API_KEY)
        .body(())
        .unwrap();
    let r = send(AuthLayer::new(common::api_key()), policy(), req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www.is_empty());
}

#[tokio::test]
async fn combinators_keep_the_step_up_answer() {
    let tok = token(Some("pwd"), Some(now()));
    // `and`: the role passes, the step-up decides.
    let r = send(jwt(), role("user").and(policy()), bearer(&tok)).await;
    assert_eq!(r.www, [CHALLENGE]);
    // `or` with a refused role reports the step-up: the client can act on it.
    let r = send(jwt(), role("admin").or(policy()), bearer(&tok)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.www, [CHALLENGE]);
    // `not` never turns a missing step-up into an allow.
    let r = send(jwt(), policy().not(), bearer(&tok)).await;
    assert_ne!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn grpc_requests_get_unauthenticated() {
    let mut req = bearer(&token(Some("pwd"), Some(now())));
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    req.headers_mut()
        .insert(header::TE, "trailers".parse().unwrap());
    let r = send(jwt(), policy(), req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["grpc-status"], "16");
}

#[derive(Clone, Debug, Deserialize)]
struct Claims {
    sub: String,
    acr: Option<String>,
    auth_time: Option<u64>,
}

impl AuthContext for Claims {
    fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }
    fn auth_time(&self) -> Option<u64> {
        self.auth_time
    }
}

#[tokio::test]
async fn typed_claims_behind_an_arc_work_too() {
    let auth = AuthLayer::new(issuer().authenticator::<Arc<Claims>>());
    let policy = step_up::<Arc<Claims>>().acr_values([MFA]);
    let r = send(
        auth.clone(),
        policy.clone(),
        bearer(&token(Some(MFA), None)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(auth, policy, bearer(&token(Some("pwd"), None))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let _unused = |c: Claims| c.sub;
}

#[tokio::test]
async fn custom_policies_can_ask_for_a_step_up() {
    use http::request::Parts;
    use tower_auth::authz::{sync_policy_fn, Denied};
    use tower_auth::Identity;

    // e.g. a transfer above a limit needs a fresh sign-in.
    let policy = sync_policy_fn(|_: &Identity, head: &Parts| {
        if head.uri.query() == Some("amount=big") {
            Err(Denied::insufficient_user_authentication(
                Some("urn:example:mfa".into()),
                Some(0),
            ))
        } else {
            Ok(())
        }
    });
    let tok = token(None, None);
    let req = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {tok}"))
            .body(())
            .unwrap()
    };
    let r = send(jwt(), policy.clone(), req("/transfer?amount=small")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(jwt(), policy, req("/transfer?amount=big")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.www,
        [
            r#"Bearer error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required", acr_values="urn:example:mfa", max_age="0""#
        ]
    );
}
