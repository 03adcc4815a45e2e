//! Shared pieces of the fuzz targets: one runtime per process, services
//! boxed behind one type, the credentials the fixtures hold, and the checks
//! every answer must pass.
//!
//! Inputs may name the fixtures' real credentials with placeholders, so that
//! seeds (written before the process made its keys) can hold valid
//! credentials and the fuzzer can mutate around them:
//!
//! | placeholder | expands to                                             |
//! |-------------|--------------------------------------------------------|
//! | `{B}`       | the valid opaque bearer token                          |
//! | `{K}`       | the valid API key (roles `admin`)                      |
//! | `{U}`       | a valid API key without roles                          |
//! | `{R}`       | a revoked API key                                      |
//! | `{X}`       | an expired API key                                     |
//! | `{J}`       | a valid HS256 access token (roles `admin`)             |
//! | `{E}`       | a valid ES256 access token                             |
//! | `{D}`       | a valid EdDSA access token                             |
//! | `{O}`       | an expired HS256 access token (signed by us)           |
//! | `{S}`       | the session cookie pair `session=...` of a logged-in user |
//! | `{V}`       | the value of that session cookie                       |
//! | `{T}`       | the CSRF token of that session                         |

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_auth::api_key::{ApiKeyRecord, GeneratedApiKey, MemoryApiKeyStore};
use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet};
use tower_auth::session::{
    csrf_token, MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
};
use tower_auth::{Identity, Scheme};

/// The status, headers and body of an answer.
#[derive(Debug)]
pub struct Answer {
    /// Status and headers.
    pub parts: http::response::Parts,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.parts.status
    }

    /// The inner service answered: `200`, body `ok`, no gRPC status.
    pub fn is_ok(&self) -> bool {
        self.parts.status == StatusCode::OK
            && !self.parts.headers.contains_key("grpc-status")
            && self.body.as_ref() == b"ok"
    }

    /// Headers and body as one text, for echo searches.
    fn text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.parts.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// Every fixture service, boxed: requests without a body, answers collected.
pub type App = BoxCloneSyncService<Request<()>, Answer, Infallible>;

/// Boxes `svc`, collecting the body of its answers.
pub fn boxed<S, B>(svc: S) -> App
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Debug,
{
    BoxCloneSyncService::new(svc.and_then(|res: Response<B>| async move {
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Ok(Answer { parts, body })
    }))
}

/// The inner service of every fixture: `200 ok`.
pub async fn ok(_req: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("ok".to_owned()))
}

/// The process's single-threaded runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs `fut` to completion on the process's runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// Sends `req` to `app`.
pub fn send(app: &App, req: Request<()>) -> Answer {
    block_on(app.clone().oneshot(req)).expect("infallible")
}

/// The address requests come from unless a target says otherwise.
pub fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10], 40_000))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// Keys and credentials

/// The HMAC secret of the HS256 key (kid `hs`).
pub const HS_SECRET: &[u8] = b"fuzz-hs256-secret-0123456789abcdef-0123456789abcdef";
/// The ES256 private key (kid `es`).
pub const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec256_private.pem");
/// The ES256 public key.
pub const EC_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec256_public.pem");
/// The Ed25519 private key (kid `ed`).
pub const ED_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ed25519_private.pem");
/// The Ed25519 public key.
pub const ED_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ed25519_public.pem");
/// The opaque bearer token the bearer validator accepts.
pub const BEARER_TOKEN: &str = "tok_7f3a9c2e8b1d4f6a0e5c3b9d7a1f2e4c";

/// One of our signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OurKey {
    /// HS256, kid `hs`.
    Hs,
    /// ES256, kid `es`.
    Es,
    /// EdDSA, kid `ed`.
    Ed,
}

impl OurKey {
    /// All of them.
    pub const ALL: [OurKey; 3] = [OurKey::Hs, OurKey::Es, OurKey::Ed];

    /// The algorithm the key is bound to.
    pub fn alg(self) -> Algorithm {
        match self {
            OurKey::Hs => Algorithm::HS256,
            OurKey::Es => Algorithm::ES256,
            OurKey::Ed => Algorithm::EdDSA,
        }
    }

    /// The `alg` header value.
    pub fn alg_name(self) -> &'static str {
        match self {
            OurKey::Hs => "HS256",
            OurKey::Es => "ES256",
            OurKey::Ed => "EdDSA",
        }
    }

    /// The key id.
    pub fn kid(self) -> &'static str {
        match self {
            OurKey::Hs => "hs",
            OurKey::Es => "es",
            OurKey::Ed => "ed",
        }
    }

    /// The signing key.
    pub fn encoding(self) -> EncodingKey {
        match self {
            OurKey::Hs => EncodingKey::from_secret(HS_SECRET),
            OurKey::Es => EncodingKey::from_ec_pem(EC_PRIVATE).expect("EC key"),
            OurKey::Ed => EncodingKey::from_ed_pem(ED_PRIVATE).expect("Ed key"),
        }
    }

    /// The verification key.
    pub fn decoding(self) -> jsonwebtoken::DecodingKey {
        match self {
            OurKey::Hs => jsonwebtoken::DecodingKey::from_secret(HS_SECRET),
            OurKey::Es => jsonwebtoken::DecodingKey::from_ec_pem(EC_PUBLIC).expect("EC key"),
            OurKey::Ed => jsonwebtoken::DecodingKey::from_ed_pem(ED_PUBLIC).expect("Ed key"),
        }
    }
}

/// The key set of every JWT fixture: HS256 `hs`, ES256 `es`, EdDSA `ed`.
pub fn key_set() -> KeySet {
    KeySet::from_keys([
        JwtKey::hmac(Algorithm::HS256, HS_SECRET)
            .expect("HS key")
            .with_kid("hs"),
        JwtKey::ec_pem(Algorithm::ES256, EC_PUBLIC)
            .expect("EC key")
            .with_kid("es"),
        JwtKey::ed_pem(ED_PUBLIC).expect("Ed key").with_kid("ed"),
    ])
    .expect("key set")
}

/// A JWT authenticator over [`key_set`] with the defaults.
pub fn jwt_authenticator() -> JwtAuthenticator<Value> {
    JwtAuthenticator::new(key_set())
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, signed by `key` whatever the header says.
pub fn sign_raw(key: OurKey, header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding(), key.alg())
        .expect("signing");
    format!("{message}.{sig}")
}

/// A well-formed access token of `key` for `sub`, expiring at `exp`.
pub fn token(key: OurKey, sub: &str, exp: u64) -> String {
    let header = json!({ "alg": key.alg_name(), "typ": "JWT", "kid": key.kid() });
    let claims = json!({
        "sub": sub,
        "exp": exp,
        "iat": now(),
        "jti": "fuzz-jti",
        "typ": "access",
        "roles": ["admin"],
    });
    sign_raw(
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// Whether `token` carries a signature one of our keys made over its first
/// two parts, under the algorithm its header names: the reference check,
/// independent of the authenticator.
pub fn signed_by_us(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(header) = URL_SAFE_NO_PAD.decode(h) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Value>(&header) else {
        return false;
    };
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return false;
    };
    let message = format!("{h}.{p}");
    OurKey::ALL.iter().any(|k| {
        k.alg_name() == alg
            && jsonwebtoken::crypto::verify(s, message.as_bytes(), &k.decoding(), k.alg())
                .unwrap_or(false)
    })
}

/// The fixtures' credentials, made once per process.
pub struct Credentials {
    /// `{K}`: API key with role `admin`.
    pub api_key: String,
    /// `{U}`: API key without roles.
    pub user_key: String,
    /// `{R}`: revoked API key.
    pub revoked_key: String,
    /// `{X}`: expired API key.
    pub expired_key: String,
    /// The store holding them.
    pub store: MemoryApiKeyStore<()>,
    /// `{J}`, `{E}`, `{D}`: valid access tokens.
    pub jwt_hs: String,
    /// ES256 token.
    pub jwt_es: String,
    /// EdDSA token.
    pub jwt_ed: String,
    /// `{O}`: expired token.
    pub jwt_expired: String,
    /// The session layer holding the session below.
    pub sessions: SessionLayer,
    /// Logs users in and out of sessions.
    pub users: SessionAuthenticator<String>,
    /// `{S}`: `session=<value>`.
    pub session_cookie: String,
    /// `{V}`: the cookie's value.
    pub session_value: String,
    /// `{T}`: the session's CSRF token.
    pub csrf_token: String,
}

/// The process's credentials.
pub fn creds() -> &'static Credentials {
    static CREDS: OnceLock<Credentials> = OnceLock::new();
    CREDS.get_or_init(make_credentials)
}

fn make_credentials() -> Credentials {
    let store = MemoryApiKeyStore::new();
    let admin = store
        .generate(
            "tak",
            (),
            Identity::new("svc-admin", Scheme::ApiKey).with_roles(["admin"]),
        )
        .expect("key");
    let user = store
        .generate("tak", (), Identity::new("svc-user", Scheme::ApiKey))
        .expect("key");
    let revoked = GeneratedApiKey::generate("tak").expect("key");
    let revoked_id = revoked.key_id().to_owned();
    let (revoked, record) = revoked.into_record((), Identity::new("svc-revoked", Scheme::ApiKey));
    store.insert(record);
    assert!(store.revoke(&revoked_id));
    let (expired, record) = GeneratedApiKey::generate("tak")
        .expect("key")
        .into_record((), Identity::new("svc-expired", Scheme::ApiKey));
    let record: ApiKeyRecord<()> = record.expires_at(UNIX_EPOCH + Duration::from_secs(1));
    store.insert(record);

    let far = now() + 10 * 365 * 24 * 3600;
    let users = SessionAuthenticator::new("user", |u: &String| {
        Identity::new(u, Scheme::Cookie).with_roles(["admin"])
    });
    let sessions = SessionLayer::new(
        MemorySessionStore::new(),
        SessionKey::generate().expect("session key"),
    );
    let (session_cookie, csrf) = login(&sessions, &users);
    let session_value = session_cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .expect("cookie pair");
    Credentials {
        api_key: admin.expose().to_owned(),
        user_key: user.expose().to_owned(),
        revoked_key: revoked.expose().to_owned(),
        expired_key: expired.expose().to_owned(),
        store,
        jwt_hs: token(OurKey::Hs, "alice", far),
        jwt_es: token(OurKey::Es, "alice", far),
        jwt_ed: token(OurKey::Ed, "alice", far),
        jwt_expired: token(OurKey::Hs, "alice", now() - 3600),
        sessions,
        users,
        session_cookie,
        session_value,
        csrf_token: csrf,
    }
}

/// Logs `carol` in through `sessions`; returns the cookie pair and the
/// session's CSRF token.
fn login(sessions: &SessionLayer, users: &SessionAuthenticator<String>) -> (String, String) {
    let users = users.clone();
    let token = Arc::new(std::sync::Mutex::new(String::new()));
    let out = Arc::clone(&token);
    let svc = ServiceBuilder::new()
        .layer(sessions.clone())
        .service_fn(move |req: Request<()>| {
            let users = users.clone();
            let out = Arc::clone(&out);
            async move {
                let session = req.extensions().get::<Session>().cloned();
                let session = session.expect("behind SessionLayer");
                users.login(&session, &"carol".to_owned()).expect("login");
                *out.lock().expect("lock") = csrf_token(&session).expect("csrf token");
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        });
    let res = block_on(svc.oneshot(Request::new(()))).expect("infallible");
    let set_cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ASCII cookie");
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let token = token.lock().expect("lock").clone();
    (cookie, token)
}

/// Replaces the placeholders of the module docs with the real credentials.
pub fn expand(input: &[u8]) -> Vec<u8> {
    if !input.contains(&b'{') {
        return input.to_vec();
    }
    let c = creds();
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'{' && input.get(i + 2) == Some(&b'}') {
            let with: Option<&str> = match input[i + 1] {
                b'B' => Some(BEARER_TOKEN),
                b'K' => Some(&c.api_key),
                b'U' => Some(&c.user_key),
                b'R' => Some(&c.revoked_key),
                b'X' => Some(&c.expired_key),
                b'J' => Some(&c.jwt_hs),
                b'E' => Some(&c.jwt_es),
                b'D' => Some(&c.jwt_ed),
                b'O' => Some(&c.jwt_expired),
                b'S' => Some(&c.session_cookie),
                b'V' => Some(&c.session_value),
                b'T' => Some(&c.csrf_token),
                _ => None,
            };
            if let Some(with) = with {
                out.extend_from_slice(with.as_bytes());
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Whether `haystack` holds `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `application/x-www-form-urlencoded` decoding, lenient: bad escapes stay.
pub fn form_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Requests

/// A header value from `bytes`, or `None` when `http` refuses it.
pub fn value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// Turns `req` into a gRPC request (HTTP/2, `content-type:
/// application/grpc`, `te: trailers`).
pub fn make_grpc(req: &mut Request<()>) {
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    req.headers_mut()
        .insert(header::TE, HeaderValue::from_static("trailers"));
}

/// Whether `req` is a gRPC request by the crate's definition.
pub fn is_grpc(req: &Request<()>) -> bool {
    tower_auth::rejection::is_grpc(req.version(), req.headers())
}

// ---------------------------------------------------------------------------
// Checks

/// Texts the crate writes on its own (rejection messages, header names,
/// challenges): an 8-byte run a credential shares with them is no echo.
pub struct Known(HashSet<[u8; 8]>);

impl Known {
    /// The runs of every text of `answers` plus a fixed vocabulary.
    pub fn new<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> Self {
        let mut set = HashSet::new();
        let mut add = |text: &[u8]| {
            for w in text.windows(8) {
                set.insert(<[u8; 8]>::try_from(w).expect("8 bytes"));
            }
        };
        for a in answers {
            add(&a.text());
        }
        for text in VOCABULARY {
            add(text.as_bytes());
        }
        Known(set)
    }
}

/// Fixed texts of the crate's answers beyond those the baselines show.
const VOCABULARY: &[&str] = &[
    "content-type: application/json\n",
    "content-type: application/grpc\n",
    "www-authenticate: Bearer realm=\"api\", error=\"invalid_token\", error_description=\"",
    "www-authenticate: Bearer error=\"invalid_request\", error_description=\"",
    "www-authenticate: ApiKey header=\"x-api-key\"\n",
    "www-authenticate: Cookie\n",
    "grpc-status: 16\ngrpc-message: ",
    "{\"error\":\"unauthorized\",\"message\":\"",
    "{\"error\":\"invalid_request\",\"message\":\"",
    "{\"error\":\"invalid_token\",\"message\":\"",
    "{\"error\":\"forbidden\",\"message\":\"",
    "{\"error\":\"insufficient_scope\",\"message\":\"",
    "{\"error\":\"csrf_rejected\",\"message\":\"",
    "{\"error\":\"too_many_requests\",\"message\":\"",
    "{\"error\":\"internal_error\",\"message\":\"",
    "retry-after: ",
    "ratelimit-policy: ",
    "ratelimit: ",
    "vary: cookie\n",
    "cache-control: no-store\n",
    "x-api-key authorization cookie x-csrf-token access_token api_key",
    "more than one authorization header",
    "more than one x-api-key header",
    "more than one cookie header",
];

/// The answer does not contain an 8-byte run of any of `sent` that the crate
/// does not write on its own.
pub fn assert_no_echo(answer: &Answer, sent: &[&[u8]], known: &Known) {
    let text = answer.text();
    if text.len() < 8 {
        return;
    }
    let runs: HashSet<[u8; 8]> = text
        .windows(8)
        .map(|w| <[u8; 8]>::try_from(w).expect("8 bytes"))
        .filter(|w| !known.0.contains(w))
        .collect();
    if runs.is_empty() {
        return;
    }
    for s in sent {
        for w in s.windows(8) {
            let w = <[u8; 8]>::try_from(w).expect("8 bytes");
            assert!(
                !runs.contains(&w),
                "the answer echoes {:?} of a credential: {}",
                String::from_utf8_lossy(&w),
                String::from_utf8_lossy(&text)
            );
        }
    }
}

/// Checks a refusal: never 2xx for HTTP, a status of `allowed`, a JSON body
/// `{"error","message"}` and `WWW-Authenticate` on `401`; for gRPC, HTTP 200
/// with a known `grpc-status` and a `grpc-message`.
pub fn assert_refusal(answer: &Answer, grpc: bool, allowed: &[u16]) {
    assert_refusal_with(answer, grpc, allowed, true);
}

/// [`assert_refusal`], with `WWW-Authenticate` on `401` required or not
/// (`SessionAuthenticator` sends no challenge unless given one).
pub fn assert_refusal_with(answer: &Answer, grpc: bool, allowed: &[u16], challenge: bool) {
    let parts = &answer.parts;
    assert!(!answer.is_ok(), "not a refusal");
    if grpc {
        assert_eq!(parts.status, StatusCode::OK, "gRPC refusals are HTTP 200");
        let code = parts
            .headers
            .get("grpc-status")
            .expect("grpc-status on a gRPC refusal")
            .to_str()
            .expect("ASCII grpc-status");
        assert!(
            ["3", "5", "7", "8", "13", "14", "16"].contains(&code),
            "grpc-status {code}"
        );
        assert!(parts.headers.contains_key("grpc-message"));
        assert_eq!(
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..])
        );
        return;
    }
    assert!(
        !parts.status.is_success(),
        "HTTP refusal with status {}",
        parts.status
    );
    assert!(
        allowed.contains(&parts.status.as_u16()),
        "undocumented status {} (allowed here: {allowed:?})",
        parts.status
    );
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "status {}: body is not JSON ({e}): {:?}",
            parts.status,
            String::from_utf8_lossy(&answer.body)
        )
    });
    let obj = json.as_object().expect("a JSON object");
    assert!(
        obj.get("error").is_some_and(Value::is_string)
            && obj.get("message").is_some_and(Value::is_string),
        "{json}"
    );
    assert_eq!(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    if challenge && parts.status == StatusCode::UNAUTHORIZED {
        assert!(
            parts.headers.contains_key(header::WWW_AUTHENTICATE),
            "401 without WWW-Authenticate"
        );
    }
    if parts.status == StatusCode::TOO_MANY_REQUESTS {
        let secs: u64 = parts
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After seconds on 429");
        assert!(secs >= 1, "Retry-After 0");
    }
}

/// Checks any answer: a pass is exactly the inner `200 ok`, anything else a
/// well-formed refusal that echoes none of `sent`.
pub fn check(answer: &Answer, grpc: bool, allowed: &[u16], sent: &[&[u8]], known: &Known) {
    if answer.is_ok() {
        return;
    }
    assert_refusal(answer, grpc, allowed);
    assert_no_echo(answer, sent, known);
}

/// [`check`] for a stack whose only authenticator is a
/// `SessionAuthenticator` without a challenge: `401` carries none.
pub fn check_session(answer: &Answer, grpc: bool, allowed: &[u16], sent: &[&[u8]], known: &Known) {
    if answer.is_ok() {
        return;
    }
    assert_refusal_with(answer, grpc, allowed, false);
    assert_no_echo(answer, sent, known);
}

/// Inserts `name: value` into `headers` when both are valid.
pub fn append(headers: &mut HeaderMap, name: &str, bytes: &[u8]) -> bool {
    match (HeaderName::from_bytes(name.as_bytes()), value(bytes)) {
        (Ok(n), Some(v)) => {
            headers.append(n, v);
            true
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Baselines

/// Hand-made JWTs that each trip one check of the verifier.
pub fn bad_tokens() -> Vec<String> {
    let far = now() + 3600;
    let claims = |extra: Value| {
        let mut c = json!({ "sub": "alice", "exp": far, "jti": "j", "typ": "access" });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c.to_string()
    };
    let hs = |header: Value, claims: String| {
        sign_raw(OurKey::Hs, header.to_string().as_bytes(), claims.as_bytes())
    };
    let base = json!({ "alg": "HS256", "kid": "hs" });
    let good = hs(base.clone(), claims(json!({})));
    let (msg, _) = good.rsplit_once('.').expect("three parts");
    vec![
        format!("{msg}.AAAA"),
        format!("{msg}."),
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims(json!({})).as_bytes())
        ),
        hs(json!({ "alg": "HS256", "kid": "nope" }), claims(json!({}))),
        hs(json!({ "alg": "HS384", "kid": "hs" }), claims(json!({}))),
        hs(json!({ "alg": "RS256", "kid": "hs" }), claims(json!({}))),
        hs(json!({ "alg": "ES256", "kid": "es" }), claims(json!({}))),
        hs(
            json!({ "alg": "HS256", "kid": "hs", "crit": ["exp"] }),
            claims(json!({})),
        ),
        hs(json!({ "alg": "HS256", "typ": "other" }), claims(json!({}))),
        hs(base.clone(), claims(json!({ "aud": "someone" }))),
        hs(base.clone(), claims(json!({ "nbf": far }))),
        hs(base.clone(), claims(json!({ "iat": far }))),
        hs(base.clone(), claims(json!({ "typ": "refresh" }))),
        hs(base.clone(), claims(json!({ "exp": "soon" }))),
        hs(base.clone(), claims(json!({ "sub": 7 }))),
        hs(
            base.clone(),
            claims(json!({ "roles": 7, "scope": 7, "scp": 7, "permissions": 7 })),
        ),
        hs(
            base.clone(),
            r#"{"sub":"a","sub":"b","exp":99999999999}"#.to_owned(),
        ),
        hs(base.clone(), r#"{"sub":"a"}"#.to_owned()),
        hs(base.clone(), "[]".to_owned()),
        hs(base.clone(), "not json".to_owned()),
        sign_raw(
            OurKey::Hs,
            br#"{"alg":"HS256","alg":"HS256"}"#,
            claims(json!({})).as_bytes(),
        ),
        sign_raw(OurKey::Hs, b"not json", claims(json!({})).as_bytes()),
        "a.b.c".to_owned(),
        "abc".to_owned(),
        "a.b.c.d.e".to_owned(),
        creds().jwt_expired.clone(),
    ]
}

/// A baseline request: target and headers.
type BaselineHead = (String, Vec<(&'static str, Vec<u8>)>);

/// Requests that between them trip most refusals of the crate.
pub fn baseline_requests() -> Vec<Request<()>> {
    let c = creds();
    let long = "a".repeat(9000);
    let mut heads: Vec<BaselineHead> = vec![
        ("/".into(), vec![]),
        (
            "/".into(),
            vec![("authorization", b"Bearer garbage-token-123".to_vec())],
        ),
        ("/".into(), vec![("authorization", b"Bearer a b".to_vec())]),
        ("/".into(), vec![("authorization", b"Bearer ".to_vec())]),
        (
            "/".into(),
            vec![("authorization", b"Bearer \x80\x81".to_vec())],
        ),
        (
            "/".into(),
            vec![("authorization", format!("Bearer {long}").into_bytes())],
        ),
        (
            "/".into(),
            vec![
                ("authorization", b"Bearer x".to_vec()),
                ("authorization", b"Bearer y".to_vec()),
            ],
        ),
        ("/".into(), vec![("x-api-key", b"junk-key-123".to_vec())]),
        (
            "/".into(),
            vec![(
                "x-api-key",
                b"tak_0000000000_00000000000000000000000000000000xxxxxx".to_vec(),
            )],
        ),
        ("/".into(), vec![("x-api-key", b" ".to_vec())]),
        ("/".into(), vec![("x-api-key", b"\x80".to_vec())]),
        ("/".into(), vec![("x-api-key", long.clone().into_bytes())]),
        (
            "/".into(),
            vec![("x-api-key", b"a".to_vec()), ("x-api-key", b"b".to_vec())],
        ),
        (
            "/".into(),
            vec![
                ("x-custom-key", b"a".to_vec()),
                ("x-custom-key", b"b".to_vec()),
            ],
        ),
        ("/".into(), vec![("x-custom-key", b" ".to_vec())]),
        ("/".into(), vec![("x-custom-key", b"\x80".to_vec())]),
        (
            "/".into(),
            vec![("x-custom-key", long.clone().into_bytes())],
        ),
        ("/?api_key=x".into(), vec![("x-custom-key", b"y".to_vec())]),
        (
            "/".into(),
            vec![("x-api-key", c.revoked_key.clone().into_bytes())],
        ),
        (
            "/".into(),
            vec![("x-api-key", c.expired_key.clone().into_bytes())],
        ),
        (
            "/".into(),
            vec![("x-api-key", c.user_key.clone().into_bytes())],
        ),
        (
            "/".into(),
            vec![("cookie", b"session=garbage; jwt=garbage".to_vec())],
        ),
        (
            "/".into(),
            vec![("cookie", b"a=b".to_vec()), ("cookie", b"c=d".to_vec())],
        ),
        (
            "/?access_token=x&access_token=y&api_key=x&api_key=y".into(),
            vec![],
        ),
        ("/?access_token=%zz&api_key=%zz".into(), vec![]),
        ("/?access_token=&api_key=".into(), vec![]),
        (format!("/?access_token={long}&api_key={long}"), vec![]),
        ("/?access_token=%80&api_key=%80".into(), vec![]),
        (
            "/?access_token=junk-token-1&api_key=junk-key-1".into(),
            vec![
                ("authorization", b"Bearer x".to_vec()),
                ("x-api-key", b"y".to_vec()),
            ],
        ),
        ("/?api_key=%20%20".into(), vec![]),
    ];
    // CSRF refusals: cookie-carrying unsafe requests from other sites.
    let session = c.session_cookie.clone().into_bytes();
    for extra in [
        vec![("sec-fetch-site", b"cross-site".to_vec())],
        vec![("sec-fetch-site", b"same-site".to_vec())],
        vec![
            ("sec-fetch-site", b"a".to_vec()),
            ("sec-fetch-site", b"b".to_vec()),
        ],
        vec![("origin", b"null".to_vec())],
        vec![
            ("origin", b"https://a.example".to_vec()),
            ("origin", b"https://b.example".to_vec()),
        ],
        vec![("sec-fetch-site", b"same-origin".to_vec())],
        vec![
            ("sec-fetch-site", b"same-origin".to_vec()),
            ("x-csrf-token", b"wrong".to_vec()),
        ],
        vec![
            ("sec-fetch-site", b"same-origin".to_vec()),
            ("x-csrf-token", b"a".to_vec()),
            ("x-csrf-token", b"b".to_vec()),
        ],
    ] {
        let mut h = vec![("cookie", session.clone())];
        h.extend(extra);
        heads.push(("/".into(), h));
    }
    for t in bad_tokens() {
        heads.push((
            "/".into(),
            vec![("authorization", format!("Bearer {t}").into_bytes())],
        ));
        heads.push((
            "/".into(),
            vec![("cookie", format!("jwt={t}").into_bytes())],
        ));
        heads.push((format!("/?access_token={t}"), vec![]));
    }
    let mut out = Vec::new();
    for (uri, headers) in heads {
        for method in [http::Method::GET, http::Method::POST] {
            for grpc in [false, true] {
                let mut req = Request::new(());
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri.parse().expect("baseline URI");
                for (name, v) in &headers {
                    append(req.headers_mut(), name, v);
                }
                if method == http::Method::POST {
                    append(req.headers_mut(), "origin", b"https://evil.example");
                }
                if grpc {
                    make_grpc(&mut req);
                }
                req.extensions_mut().insert(peer());
                out.push(req);
            }
        }
    }
    out
}

/// The texts `apps` answer to [`baseline_requests`].
pub fn known_for(apps: &[&App]) -> Known {
    let answers: Vec<Answer> = apps
        .iter()
        .flat_map(|app| baseline_requests().into_iter().map(|r| send(app, r)))
        .collect();
    Known::new(&answers)
}

/// Whether query string `q` (as `Uri::query` gives it, without the `?`
/// that starts it: a second `?` belongs to the first name) has a parameter
/// whose form-decoded name is `name`.
pub fn query_has(q: &[u8], name: &str) -> bool {
    q.split(|b| *b == b'&').any(|pair| {
        let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
        form_decode(key) == name.as_bytes()
    })
}
