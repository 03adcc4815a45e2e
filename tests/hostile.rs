//! Randomized hostile input through the whole stack: rate limit (behind a
//! trusted proxy) → session → CSRF → `AuthLayer(jwt.or(api_key).or(session))`
//! → `RequireLayer(role("admin"))`.
//!
//! A deterministic generator (fixed seeds, so a failure replays) produces
//! mutated credentials and random requests. Whatever arrives:
//!
//! * nothing panics;
//! * a mutated credential never authenticates;
//! * every refusal has the right shape: a known status, a JSON body
//!   `{"error","message"}` (or `grpc-status` for gRPC requests), a
//!   `WWW-Authenticate` challenge on `401`;
//! * no refusal echoes what the client sent in its credential headers.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::authz::role;
use tower_auth::jwt::TokenIssuer;
use tower_auth::rate_limit::{ClientIp, Limit, Limiter, Quota, TrustedProxies};
use tower_auth::session::{
    MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
};
use tower_auth::{Authenticator, Identity, Scheme, ServiceBuilderExt};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One byte a header value may hold, biased towards the characters
    /// parsers care about.
    fn byte(&mut self) -> u8 {
        const SPECIAL: &[u8] = b" \t,;=\"'.:/\\[]%+-_~!";
        const TOKEN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        match self.below(10) {
            0..=5 => *self.pick(TOKEN),
            6 | 7 => *self.pick(SPECIAL),
            8 => 0x80 + self.below(0x80) as u8,
            _ => 0x21 + self.below(0x5e) as u8,
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.byte()).collect()
    }

    /// `original` changed by one or a few edits; never equal to it.
    fn mutate(&mut self, original: &[u8]) -> Vec<u8> {
        loop {
            let mut out = original.to_vec();
            for _ in 0..=self.below(3) {
                let at = self.below(out.len() + 1);
                match self.below(7) {
                    0 if at < out.len() => out[at] = self.byte(),
                    1 if at < out.len() => {
                        out.remove(at);
                    }
                    2 => out.insert(at, self.byte()),
                    3 => out.truncate(at),
                    4 if at < out.len() => {
                        // Flip one bit of a base64 character into another
                        // valid one: the subtle case.
                        const B64: &[u8] =
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                        out[at] = *self.pick(B64);
                    }
                    5 => {
                        let tail = out.split_off(at);
                        out.extend_from_slice(&tail);
                        out.extend_from_slice(&tail);
                    }
                    _ => {
                        let junk = self.bytes(6);
                        out.splice(at..at, junk);
                    }
                }
            }
            if out != original {
                return out;
            }
        }
    }
}

/// A header value from `bytes`, or `None` when http refuses it.
fn value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

struct Fixture<S> {
    app: S,
    access_token: String,
    admin_key: String,
    user_key: String,
    session_cookie: String,
}

/// The peer every request comes from: a trusted proxy, so that
/// `X-Forwarded-For` is parsed.
fn trusted_proxy() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 443))
}

async fn fixture() -> Fixture<
    impl Service<
            Request<()>,
            Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
            Error = Infallible,
        > + Clone,
> {
    let issuer = TokenIssuer::hs256(SECRET).unwrap();
    let pair = issuer
        .issue("alice", &json!({ "roles": ["admin"] }))
        .unwrap();

    let store = MemoryApiKeyStore::new();
    let admin_key = store
        .generate(
            "tak",
            (),
            Identity::new("svc-admin", Scheme::ApiKey).with_roles(["admin"]),
        )
        .unwrap();
    let user_key = store
        .generate("tak", (), Identity::new("svc-user", Scheme::ApiKey))
        .unwrap();

    let users = SessionAuthenticator::new("user", |u: &String| {
        Identity::new(u, Scheme::Cookie).with_roles(["admin"])
    });
    let sessions = SessionLayer::new(MemorySessionStore::new(), SessionKey::generate().unwrap());

    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let limit = Limit::new(
        "per-client",
        Limiter::new(Quota::per_second(1_000_000).unwrap()),
        ClientIp::new(proxies),
    );
    let authenticator = issuer
        .authenticator::<Value>()
        .map_principal(|_| ())
        .or(ApiKeyAuthenticator::new(store))
        .or(users.clone().map_principal(|_| ()));

    let app = ServiceBuilder::new()
        .limit_requests(limit)
        .layer(sessions.clone())
        .csrf()
        .authenticate(authenticator)
        .require(role("admin"))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok".to_owned()))
        });

    // A logged-in session cookie, from a login route on the same store.
    let login = ServiceBuilder::new()
        .layer(sessions)
        .service_fn(move |req: Request<()>| {
            let users = users.clone();
            async move {
                let session = req.extensions().get::<Session>().cloned();
                let session = session.expect("behind SessionLayer");
                users.login(&session, &"carol".to_owned()).expect("login");
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        });
    let res = login.oneshot(Request::new(())).await.unwrap();
    let set_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    let session_cookie = set_cookie.split(';').next().unwrap().to_owned();

    Fixture {
        app,
        access_token: pair.access_token,
        admin_key: admin_key.expose().to_owned(),
        user_key: user_key.expose().to_owned(),
        session_cookie,
    }
}

/// The status, headers and body of `app`'s answer to `req`.
async fn send<S, B>(app: &S, mut req: Request<()>) -> (http::response::Parts, Bytes)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    req.extensions_mut().insert(trusted_proxy());
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Checks the shape of a refusal and that it echoes none of `sent`.
fn assert_refusal(parts: &http::response::Parts, body: &[u8], grpc: bool, sent: &[Vec<u8>]) {
    let body_text = String::from_utf8_lossy(body);
    for secret in sent.iter().filter(|s| s.len() >= 12) {
        let secret = String::from_utf8_lossy(secret);
        assert!(
            !body_text.contains(&*secret),
            "body echoes {secret:?}: {body_text}"
        );
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(&*secret), "{name} echoes {secret:?}");
        }
    }
    if grpc {
        assert_eq!(parts.status, StatusCode::OK, "gRPC refusals are HTTP 200");
        let code = parts.headers["grpc-status"].to_str().unwrap();
        assert!(
            ["3", "7", "8", "13", "14", "16"].contains(&code),
            "grpc-status {code}"
        );
        assert!(parts.headers.contains_key("grpc-message"));
        return;
    }
    let allowed = [400, 401, 403, 429];
    assert!(
        allowed.contains(&parts.status.as_u16()),
        "status {}",
        parts.status
    );
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "status {}: body is not JSON ({e}): {body_text}",
            parts.status
        )
    });
    assert!(
        json["error"].is_string() && json["message"].is_string(),
        "{json}"
    );
    if parts.status == StatusCode::UNAUTHORIZED {
        assert!(parts.headers.contains_key(header::WWW_AUTHENTICATE));
    }
}

fn is_allowed(parts: &http::response::Parts, body: &[u8]) -> bool {
    parts.status == StatusCode::OK && !parts.headers.contains_key("grpc-status") && body == b"ok"
}

#[tokio::test]
async fn valid_credentials_are_accepted() {
    let f = fixture().await;
    let cases = [
        (header::AUTHORIZATION, format!("Bearer {}", f.access_token)),
        (
            header::HeaderName::from_static("x-api-key"),
            f.admin_key.clone(),
        ),
        (header::COOKIE, f.session_cookie.clone()),
    ];
    for (name, value) in cases {
        let req = Request::get("/").header(&name, value).body(()).unwrap();
        let (parts, body) = send(&f.app, req).await;
        assert!(is_allowed(&parts, &body), "{name}: {}", parts.status);
    }
    let req = Request::get("/")
        .header("x-api-key", &f.user_key)
        .body(())
        .unwrap();
    let (parts, body) = send(&f.app, req).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_refusal(&parts, &body, false, &[f.user_key.into_bytes()]);
}

#[tokio::test]
async fn mutated_credentials_never_authenticate() {
    let f = fixture().await;
    let token = f.access_token.as_bytes();
    let cookie = f.session_cookie.as_bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tried = 0;
    for i in 0..6_000 {
        let (name, sent) = match i % 3 {
            0 => {
                let mut v = b"Bearer ".to_vec();
                v.extend(rng.mutate(token));
                (header::AUTHORIZATION, v)
            }
            1 => (
                header::HeaderName::from_static("x-api-key"),
                rng.mutate(f.admin_key.as_bytes()),
            ),
            _ => (header::COOKIE, rng.mutate(cookie)),
        };
        let Some(v) = value(&sent) else { continue };
        tried += 1;
        let req = Request::get("/").header(&name, v).body(()).unwrap();
        let (parts, body) = send(&f.app, req).await;
        assert!(
            !is_allowed(&parts, &body),
            "mutated {name} accepted: {:?}",
            String::from_utf8_lossy(&sent)
        );
        assert_refusal(&parts, &body, false, &[sent]);
    }
    assert!(
        tried > 5_000,
        "only {tried} mutations were valid header values"
    );
}

#[tokio::test]
async fn random_requests_fail_closed() {
    let f = fixture().await;
    let credentials = [
        f.access_token.as_bytes(),
        f.admin_key.as_bytes(),
        f.session_cookie.as_bytes(),
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for _ in 0..4_000 {
        let method = rng
            .pick(&[
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
            ])
            .clone();
        let grpc = rng.chance(15);
        let mut req = Request::builder().method(method).uri("/");
        if grpc {
            req = req
                .version(http::Version::HTTP_2)
                .header(header::CONTENT_TYPE, "application/grpc")
                .header(header::TE, "trailers");
        } else if rng.chance(10) {
            // A gRPC content type on HTTP/1.1: still an HTTP client.
            req = req.header(header::CONTENT_TYPE, "application/grpc");
        }
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut add = |req: http::request::Builder, name: &'static str, bytes: Vec<u8>| {
            let req = match value(&bytes) {
                Some(v) => req.header(name, v),
                None => req,
            };
            sent.push(bytes);
            req
        };
        // Credentials: none, random, mutated or valid, sometimes twice.
        for (name, prefix, valid) in [
            ("authorization", &b"Bearer "[..], credentials[0]),
            ("x-api-key", &b""[..], credentials[1]),
            ("cookie", &b""[..], credentials[2]),
        ] {
            for _ in 0..rng.below(3) {
                let mut v = if rng.chance(50) {
                    prefix.to_vec()
                } else {
                    Vec::new()
                };
                match rng.below(4) {
                    0 => v.extend(rng.bytes(80)),
                    1 => v.extend(rng.mutate(valid)),
                    2 => v.extend_from_slice(valid),
                    _ => v.extend(rng.bytes(9_000)),
                }
                req = add(req, name, v);
            }
        }
        // Proxy and browser headers.
        for name in [
            "x-forwarded-for",
            "forwarded",
            "origin",
            "sec-fetch-site",
            "host",
        ] {
            if rng.chance(30) {
                let v = match rng.below(3) {
                    0 => b"203.0.113.7, 10.0.0.2".to_vec(),
                    1 => b"for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3".to_vec(),
                    _ => rng.bytes(120),
                };
                if let Some(v) = value(&v) {
                    req = req.header(name, v);
                }
            }
        }
        let req = req.body(()).unwrap();
        let valid_present = credentials.iter().any(|c| {
            req.headers()
                .values()
                .any(|v| v.as_bytes().windows(c.len()).any(|w| w == *c))
        });
        let (parts, body) = send(&f.app, req).await;
        if is_allowed(&parts, &body) {
            assert!(
                valid_present,
                "a request without valid credentials got through"
            );
        } else {
            let secrets: Vec<Vec<u8>> = sent
                .into_iter()
                .chain(credentials.iter().map(|c| c.to_vec()))
                .collect();
            assert_refusal(&parts, &body, grpc, &secrets);
        }
    }
}
