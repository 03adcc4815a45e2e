//! One whole stack, as an application would build it: rate limit (client IP
//! behind a trusted proxy) → session → CSRF →
//! `AuthLayer(jwt.or(api_key).or(session))` → `RequireLayer(role("admin"))`,
//! driven by arbitrary request heads: method, URI, version, any headers
//! (duplicates, non-UTF-8 bytes, long values), peer address.
//!
//! The input is decoded with `arbitrary` in a simple byte layout (so seeds
//! can be written by hand, see `fuzz/seeds.py`):
//!
//! ```text
//! method:u8 [if >= 9: len:u8 bytes] version:u8 peer:u8 uri_len:u8 uri
//! then per header: name:u8 [if >= NAMES.len(): len:u8 bytes]
//!                  repeat:u8 len:u8 value (placeholders expanded)
//! ```
//!
//! Invariants: nothing passes without a valid admin credential; an unsafe
//! request with a cookie marked cross-site never passes; every refusal is a
//! documented status with a JSON body (or gRPC status) that echoes none of
//! the credential headers.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Result, Unstructured};
use http::{HeaderName, Method, Request, Version};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::authz::role;
use tower_auth::rate_limit::{ClientIp, Limit, Limiter, Quota, TrustedProxies};
use tower_auth::{Authenticator, ServiceBuilderExt};
use tower_auth_fuzz::*;

const METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

const NAMES: &[&str] = &[
    "authorization",
    "x-api-key",
    "cookie",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "origin",
    "sec-fetch-site",
    "host",
    "referer",
    "x-csrf-token",
    "content-type",
    "te",
    "accept",
    "user-agent",
];

/// Headers whose values are credentials: never echoed.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "cookie", "x-csrf-token"];

#[derive(Debug)]
struct Head {
    method: Vec<u8>,
    version: Version,
    trusted_peer: bool,
    uri: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Arbitrary<'a> for Head {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let m = u.arbitrary::<u8>()?;
        let method = match METHODS.get(usize::from(m)) {
            Some(m) => m.as_str().as_bytes().to_vec(),
            None => {
                let len = u.arbitrary::<u8>()?;
                u.bytes(usize::from(len))?.to_vec()
            }
        };
        let version = match u.arbitrary::<u8>()? % 4 {
            0 => Version::HTTP_10,
            1 => Version::HTTP_11,
            2 => Version::HTTP_2,
            _ => Version::HTTP_3,
        };
        let trusted_peer = u.arbitrary::<u8>()? & 1 == 1;
        let len = u.arbitrary::<u8>()?;
        let uri = u.bytes(usize::from(len))?.to_vec();
        let mut headers = Vec::new();
        while !u.is_empty() && headers.len() < 32 {
            let n = u.arbitrary::<u8>()?;
            let name = match NAMES.get(usize::from(n)) {
                Some(n) => n.as_bytes().to_vec(),
                None => {
                    let len = u.arbitrary::<u8>()?;
                    u.bytes(usize::from(len))?.to_ascii_lowercase()
                }
            };
            let repeat = usize::from(u.arbitrary::<u8>()?) + 1;
            let len = u.arbitrary::<u8>()?;
            let value = expand(u.bytes(usize::from(len))?);
            // Long values: up to 256 copies (about 64 KiB at most).
            let value = value.repeat(repeat.min(256));
            headers.push((name, value));
        }
        Ok(Head {
            method,
            version,
            trusted_peer,
            uri,
            headers,
        })
    }
}

struct Fixture {
    app: App,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let c = creds();
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).expect("ranges");
        let limit = Limit::new(
            "per-client",
            Limiter::new(Quota::per_second(1_000_000).expect("quota")),
            ClientIp::new(proxies),
        );
        let authenticator = jwt_authenticator()
            .map_principal(|_| ())
            .or(ApiKeyAuthenticator::new(c.store.clone()))
            .or(c.users.clone().map_principal(|_| ()));
        let app = boxed(
            ServiceBuilder::new()
                .limit_requests(limit)
                .layer(c.sessions.clone())
                .csrf()
                .authenticate(authenticator)
                .require(role("admin"))
                .service_fn(ok),
        );
        let known = known_for(&[&app]);
        Fixture { app, known }
    })
}

fuzz_target!(|head: Head| {
    let f = fixture();
    let c = creds();
    // Bytes `http` refuses as a method or URI never reach a service: fall
    // back to an unsafe method and `/`, so the headers are still exercised.
    let method = Method::from_bytes(&head.method).unwrap_or(Method::POST);
    let uri =
        http::Uri::try_from(head.uri.as_slice()).unwrap_or_else(|_| http::Uri::from_static("/"));
    let mut req = Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = head.version;
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for (name, v) in &head.headers {
        let Ok(name) = HeaderName::from_bytes(name) else {
            continue;
        };
        let Some(v) = value(v) else { continue };
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            secrets.push(v.as_bytes().to_vec());
        }
        req.headers_mut().append(name, v);
    }
    if let Some(q) = req.uri().query() {
        secrets.push(q.as_bytes().to_vec());
    }
    let peer: SocketAddr = if head.trusted_peer {
        SocketAddr::from(([10, 0, 0, 1], 443))
    } else {
        SocketAddr::from(([198, 51, 100, 9], 443))
    };
    req.extensions_mut().insert(peer);
    let grpc = is_grpc(&req);
    let headers = req.headers().clone();
    let ans = send(&f.app, req);
    let secret_refs: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    check(&ans, grpc, &[400, 401, 403, 429], &secret_refs, &f.known);
    if !ans.is_ok() {
        return;
    }

    let in_header = |name: &str, cred: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| contains(v.as_bytes(), cred.as_bytes()))
    };
    let admin = in_header("authorization", &c.jwt_hs)
        || in_header("authorization", &c.jwt_es)
        || in_header("authorization", &c.jwt_ed)
        || in_header("x-api-key", &c.api_key)
        || in_header("cookie", &c.session_value);
    assert!(admin, "passed without a valid admin credential");

    let safe = matches!(
        method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe && headers.contains_key("cookie") {
        let sites: Vec<&[u8]> = headers
            .get_all("sec-fetch-site")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert!(
            !matches!(sites.as_slice(), [b"cross-site"] | [b"same-site"]),
            "an unsafe cross-site request with cookies passed"
        );
    }
});
