//! Arbitrary `Origin`, `Sec-Fetch-Site`, `Host`, `Referer`, method and
//! token headers through `SessionLayer` → `CsrfLayer` (allowed origin
//! `https://app.example.com`; with and without a required token).
//!
//! Input: one flag byte (bit 0 token required, bit 1 gRPC request), then
//! lines (`\n`): the first is the method, the others `name:value` headers
//! (`o` origin, `s` sec-fetch-site, `h` host, `r` referer, `t`
//! x-csrf-token, `c` cookie, or a full header name). Placeholders `{S}`
//! (the session cookie pair) and `{T}` (its CSRF token) are expanded.
//!
//! Invariant: an unsafe request carrying cookies that a browser marks
//! cross-site (or whose `Origin` names another host) never passes, unless
//! its origin is the allowed one; with tokens required, none passes
//! without the session's token.

#![no_main]

use std::sync::OnceLock;

use http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::session::CsrfLayer;
use tower_auth_fuzz::*;

const ALLOWED: &str = "https://app.example.com";

struct Fixture {
    plain: App,
    token: App,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let c = creds();
        let layer = CsrfLayer::new().allow_origin(ALLOWED).expect("origin");
        let plain = boxed(
            ServiceBuilder::new()
                .layer(c.sessions.clone())
                .layer(layer.clone())
                .service_fn(ok),
        );
        let token = boxed(
            ServiceBuilder::new()
                .layer(c.sessions.clone())
                .layer(layer.require_token(true))
                .service_fn(ok),
        );
        let known = known_for(&[&plain, &token]);
        Fixture {
            plain,
            token,
            known,
        }
    })
}

/// Finding 2 in NOTES-h11-fuzz.md: `CsrfLayer` drops a port that is not a
/// number (`https://app.example.com:evil`) and takes the origin for the
/// allowed one. Browsers only send numeric ports; set this to `true` once
/// such origins are refused.
const INVALID_PORT_REFUSED: bool = true;

/// `scheme://host[:port]`, lower-cased, default port dropped: the loosest
/// reading of an allowed origin.
fn normalized(origin: &[u8]) -> Vec<u8> {
    let o = origin.to_ascii_lowercase();
    if let Some(rest) = o.strip_prefix(b"https://") {
        if let Some(i) = rest.iter().rposition(|b| *b == b':') {
            let port = std::str::from_utf8(&rest[i + 1..])
                .ok()
                .and_then(|p| p.parse::<u16>().ok());
            if port == Some(443) || (port.is_none() && !INVALID_PORT_REFUSED) {
                return [b"https://".as_slice(), &rest[..i]].concat();
            }
        }
    }
    o
}

/// The authority of `scheme://authority[/...]`, `None` for anything else.
fn authority(origin: &[u8]) -> Option<&[u8]> {
    let i = origin.windows(3).position(|w| w == b"://")?;
    let scheme = &origin[..i];
    if scheme.is_empty() || !scheme.iter().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let rest = &origin[i + 3..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let c = creds();
    let input = expand(rest);
    let mut lines = input.split(|b| *b == b'\n');
    let Ok(method) = Method::from_bytes(lines.next().unwrap_or_default()) else {
        return;
    };
    let mut req = Request::new(());
    *req.method_mut() = method.clone();
    let mut sent: Vec<&[u8]> = Vec::new();
    for line in lines.take(12) {
        let Some(i) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, v) = (&line[..i], &line[i + 1..]);
        let name = match name {
            b"o" => "origin",
            b"s" => "sec-fetch-site",
            b"h" => "host",
            b"r" => "referer",
            b"t" => "x-csrf-token",
            b"c" => "cookie",
            other => match std::str::from_utf8(other) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        let name = name.to_ascii_lowercase();
        // Only credentials must never be echoed: the session cookie and
        // the CSRF token (a refusal may well say "cross-site").
        if append(req.headers_mut(), &name, v) && matches!(name.as_str(), "cookie" | "x-csrf-token")
        {
            sent.push(v);
        }
    }
    if flags & 2 != 0 {
        make_grpc(&mut req);
    }
    req.extensions_mut().insert(peer());
    let grpc = is_grpc(&req);
    let headers = req.headers().clone();
    let require_token = flags & 1 != 0;
    let app = if require_token { &f.token } else { &f.plain };
    let ans = send(app, req);
    check(&ans, grpc, &[403], &sent, &f.known);
    if !ans.is_ok() {
        return;
    }

    // It passed: was it allowed to?
    let safe = matches!(
        method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !headers.contains_key("cookie") {
        return;
    }
    let all =
        |name: &str| -> Vec<&[u8]> { headers.get_all(name).iter().map(|v| v.as_bytes()).collect() };
    let origins = all("origin");
    let sites = all("sec-fetch-site");
    let hosts = all("host");
    assert!(origins.len() <= 1, "passed with repeated Origin");
    assert!(sites.len() <= 1, "passed with repeated Sec-Fetch-Site");
    let origin = origins.first().copied();
    let allowed = origin.is_some_and(|o| normalized(o) == ALLOWED.as_bytes());
    match sites.first() {
        Some(&site) if site == b"same-origin" || site == b"none" => {}
        Some(&site) => assert!(
            allowed,
            "Sec-Fetch-Site {:?} passed with Origin {:?}",
            String::from_utf8_lossy(site),
            origin.map(String::from_utf8_lossy)
        ),
        None => {
            // Finding reported in NOTES-h11-fuzz.md: an `Origin` holding
            // obs-text bytes (0x80-0xFF) is read as no `Origin` at all, so
            // the request passes. Browsers only send ASCII origins; set this
            // to `true` once `CsrfLayer` refuses such requests.
            const NON_ASCII_ORIGIN_REFUSED: bool = true;
            let origin = origin.filter(|o| NON_ASCII_ORIGIN_REFUSED || o.is_ascii());
            if let Some(o) = origin {
                assert!(o != b"null", "Origin null passed");
                if let (Some(a), [host]) = (authority(o), hosts.as_slice()) {
                    assert!(
                        a.eq_ignore_ascii_case(host) || allowed,
                        "cross-origin {:?} passed for host {:?}",
                        String::from_utf8_lossy(o),
                        String::from_utf8_lossy(host)
                    );
                }
            }
        }
    }
    if require_token {
        let tokens = all("x-csrf-token");
        assert!(
            tokens.len() == 1 && contains(tokens[0], c.csrf_token.as_bytes()),
            "passed without the session's CSRF token"
        );
        assert!(
            all("cookie")
                .iter()
                .any(|v| contains(v, c.session_value.as_bytes())),
            "token accepted without the session cookie"
        );
    }
});
