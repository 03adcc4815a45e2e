//! HTTP Basic through `AuthLayer`: every malformed header gets a `400` with
//! the Basic challenge and a JSON body, wrong passwords and unknown users
//! the same `401`, a dead user store a `503` within the deadline; Basic
//! composes with API keys and feeds the failed-attempt limiter.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::User;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_auth::basic::argon2::Params;
use tower_auth::basic::{
    self, BasicAuthenticator, BasicCredentials, MemoryUserStore, PasswordUsers, Passwords,
    StoredUser, UserVerifier,
};
use tower_auth::rate_limit::{Global, Limit, Limiter, Quota, RateLimitLayer};
use tower_auth::{AuthError, AuthLayer, Authenticator, Identity};

const GOOD: &[u8] = b"scraper:correct horse: battery staple";

const CHALLENGE: &str = r#"Basic realm="metrics", charset="UTF-8""#;

fn passwords() -> Passwords {
    // Cheap parameters: the tests check behaviour, the bench measures cost.
    Passwords::with_params(Params::new(256, 1, 1, None).unwrap()).unwrap()
}

fn users(passwords: &Passwords) -> MemoryUserStore<User> {
    let store = MemoryUserStore::new();
    store.insert(
        "scraper",
        passwords.hash("correct horse: battery staple").unwrap(),
        User {
            id: "3".into(),
            name: "Scraper".into(),
        },
        Identity::new("scraper", basic::scheme()).with_roles(["metrics"]),
    );
    store
}

fn basic() -> BasicAuthenticator<PasswordUsers<MemoryUserStore<User>>> {
    let p = passwords();
    BasicAuthenticator::new(PasswordUsers::new(users(&p), p)).realm("metrics")
}

fn encode(credentials: &[u8]) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

struct Reply {
    status: StatusCode,
    www: Vec<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn send<A>(layer: AuthLayer<A>, req: Request<()>) -> Reply
where
    A: Authenticator<Principal = User>,
{
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<()>| async move {
            let user = req.extensions().get::<User>().map(|u| u.name.clone());
            Ok::<_, Infallible>(Response::new(user.unwrap_or_else(|| "anonymous".into())))
        });
    reply(svc.oneshot(req).await.unwrap()).await
}

async fn reply<B>(res: Response<B>) -> Reply
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = res.status();
    let www = res
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        www,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn with_auth(value: impl AsRef<[u8]>) -> Request<()> {
    Request::get("/metrics")
        .header(header::AUTHORIZATION, value.as_ref())
        .body(())
        .unwrap()
}

#[tokio::test]
async fn right_password_reaches_the_handler() {
    let r = send(AuthLayer::new(basic()), with_auth(encode(GOOD))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "Scraper");
}

#[tokio::test]
async fn missing_credentials_get_the_basic_challenge() {
    let r = send(AuthLayer::new(basic()), Request::new(())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.www, [CHALLENGE]);
    assert_eq!(r.json()["error"], "unauthorized");
}

#[tokio::test]
async fn optional_layer_lets_anonymous_requests_through_but_not_bad_ones() {
    let r = send(AuthLayer::optional(basic()), Request::new(())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "anonymous");
    let r = send(
        AuthLayer::optional(basic()),
        with_auth(encode(b"scraper:wrong")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let wrong = send(AuthLayer::new(basic()), with_auth(encode(b"scraper:wrong"))).await;
    let unknown = send(
        AuthLayer::new(basic()),
        with_auth(encode(b"nobody:correct horse: battery staple")),
    )
    .await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.www, [CHALLENGE]);
        assert_eq!(r.json()["error"], "invalid_token");
        assert_eq!(r.json()["message"], "invalid user id or password");
    }
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn every_malformed_header_is_a_400_with_the_challenge() {
    let long = encode(&[b'a'; 4000]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"Basic".to_vec(), "the Basic credentials are empty"),
        (b"Basic    ".to_vec(), "the Basic credentials are empty"),
        (
            b"Basic c2NyYXBlcjp4eA".to_vec(),
            "the Basic credentials are not valid base64",
        ),
        (
            b"Basic c2NyYXBlcjp4eA==x".to_vec(),
            "the Basic credentials are not valid base64",
        ),
        (
            encode(b"scraper").into_bytes(),
            "the Basic credentials have no ':' between user id and password",
        ),
        (
            encode(b":password").into_bytes(),
            "the Basic user id is empty",
        ),
        (
            encode(b"scr\x00aper:pw").into_bytes(),
            "the Basic credentials contain control characters",
        ),
        (
            encode(b"scraper:\xc3\x28").into_bytes(),
            "the Basic credentials are not UTF-8",
        ),
        (
            long.into_bytes(),
            "the authorization header is longer than 4096 bytes",
        ),
    ];
    for (value, message) in cases {
        let r = send(AuthLayer::new(basic()), with_auth(&value)).await;
        let shown = String::from_utf8_lossy(&value);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{shown}");
        assert_eq!(r.www, [CHALLENGE], "{shown}");
        assert_eq!(r.json()["error"], "invalid_request", "{shown}");
        assert_eq!(r.json()["message"], message, "{shown}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_a_400() {
    let req = Request::get("/")
        .header(header::AUTHORIZATION, encode(b"scraper:x"))
        .header(header::AUTHORIZATION, encode(b"scraper:y"))
        .body(())
        .unwrap();
    let r = send(AuthLayer::new(basic()), req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "more than one authorization header");
}

#[tokio::test]
async fn rejections_never_echo_the_password_or_user_id() {
    for value in [
        encode(b"scraper:hunter2-secret"),
        encode(b"hunter2-user:x"),
        encode(b"hunter2-user"),
    ] {
        let r = send(AuthLayer::new(basic()), with_auth(&value)).await;
        assert!(!r.body.contains("hunter2"), "{}", r.body);
        assert!(!r.www.concat().contains("hunter2"));
    }
}

#[tokio::test]
async fn basic_or_api_key_the_present_credentials_decide() {
    let layer = || AuthLayer::new(basic().or(common::api_key()));
    let r = send(layer(), Request::new(())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.www,
        [CHALLENGE, r#"ApiKey realm="api", header="x-api-key""#]
    );

    let by_key = Request::get("/")
        .header("x-api-key", common::API_KEY)
        .body(())
        .unwrap();
    assert_eq!(send(layer(), by_key).await.body, "Bob");

    let r = send(layer(), with_auth(encode(GOOD))).await;
    assert_eq!(r.body, "Scraper");

    // A wrong password is refused with the Basic challenge only, even
    // with a valid API key beside it: the first credentials present decide.
    let both = Request::get("/")
        .header(header::AUTHORIZATION, encode(b"scraper:wrong"))
        .header("x-api-key", common::API_KEY)
        .body(())
        .unwrap();
    let r = send(layer(), both).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.www, [CHALLENGE]);
}

#[tokio::test]
async fn bearer_or_basic_leaves_each_scheme_to_its_authenticator() {
    let layer = || AuthLayer::new(common::bearer().or(basic()));
    let r = send(layer(), with_auth(format!("Bearer {}", common::TOKEN))).await;
    assert_eq!(r.body, "Alice");
    let r = send(layer(), with_auth(encode(GOOD))).await;
    assert_eq!(r.body, "Scraper");
    let r = send(layer(), with_auth(encode(b"scraper"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.www, [CHALLENGE]);
}

#[tokio::test]
async fn a_failing_user_store_is_503_and_hides_the_cause() {
    let store = |_user: String| async {
        Err::<Option<StoredUser<User>>, _>(AuthError::unavailable("db at 10.0.0.5: password=x"))
    };
    let basic = BasicAuthenticator::new(PasswordUsers::new(store, passwords()));
    let r = send(AuthLayer::new(basic), with_auth(encode(b"a:b"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.www.is_empty());
    assert!(!r.body.contains("10.0.0.5"));
}

#[tokio::test(start_paused = true)]
async fn a_hung_user_store_gets_503_at_the_layer_deadline() {
    let store = |_user: String| async {
        std::future::pending::<Result<Option<StoredUser<User>>, AuthError>>().await
    };
    let basic = BasicAuthenticator::new(PasswordUsers::new(store, passwords()));
    let layer = AuthLayer::new(basic).backend_timeout(Some(Duration::from_secs(2)));
    let started = tokio::time::Instant::now();
    let r = send(layer, with_auth(encode(b"a:b"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn a_closure_verifier_sees_the_parsed_credentials() {
    let verifier = |c: BasicCredentials| async move {
        if c.user_id() == "hook" && c.password().ct_eq("pa:ss") {
            Ok(tower_auth::Authenticated::new(
                User {
                    id: "9".into(),
                    name: "Webhook".into(),
                },
                Identity::new("hook", basic::scheme()),
            ))
        } else {
            Err(AuthError::invalid_credentials(
                "invalid user id or password",
            ))
        }
    };
    fn assert_verifier<V: UserVerifier>(_: &V) {}
    assert_verifier(&verifier);
    let r = send(
        AuthLayer::new(BasicAuthenticator::new(verifier)),
        with_auth(encode(b"hook:pa:ss")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "Webhook");
}

#[tokio::test]
async fn failed_logins_are_counted_by_the_failed_attempt_limiter() {
    let quota = Quota::with_period(Duration::from_secs(900))
        .unwrap()
        .allow_burst(3)
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RateLimitLayer::failed_attempts(Limit::new(
            "basic-login",
            Limiter::builder(quota).build(),
            Global,
        )))
        .layer(AuthLayer::new(basic()))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    async fn status_of<S, B>(svc: &mut S, value: &[u8]) -> Response<B>
    where
        S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    {
        svc.ready()
            .await
            .unwrap()
            .call(with_auth(value))
            .await
            .unwrap()
    }
    let ok = encode(GOOD).into_bytes();
    let bad = encode(b"scraper:wrong").into_bytes();
    // Successes do not count.
    for _ in 0..3 {
        assert_eq!(status_of(&mut svc, &ok).await.status(), StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(
            status_of(&mut svc, &bad).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The budget of failures is spent: even the right password waits.
    let res = status_of(&mut svc, &ok).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
}
