//! Arbitrary API keys, in headers and in the query, through
//! `ApiKeyAuthenticator` with a `MemoryApiKeyStore` holding generated keys
//! (one with role `admin`, one without, one revoked, one expired).
//!
//! Input: one flag byte, then lines (`\n`): `q:` a value for the `api_key`
//! query parameter (raw, joined with `&`), `?` a raw query string, anything
//! else one key header. Placeholders `{K}`, `{U}`, `{R}`, `{X}` expanded.
//!
//! Flags: bits 0-1 the authenticator (0 `x-api-key`; 1 `x-api-key` and the
//! `api_key` query parameter; 2 header `x-custom-key` and the query
//! parameter; 3 like 1 behind `AuthLayer::optional`), bit 2 gRPC request.
//!
//! Invariants: only the live keys authenticate (never a revoked, expired or
//! mutated one); repeated headers and a key in both places are `400`.

#![no_main]

use std::sync::OnceLock;

use http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::AuthLayer;
use tower_auth_fuzz::*;

struct Fixture {
    apps: Vec<App>,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let store = creds().store.clone();
        let base = ApiKeyAuthenticator::new(store);
        let with_query = base.clone().query_param("api_key");
        let custom = with_query
            .clone()
            .header(http::HeaderName::from_static("x-custom-key"));
        let apps = vec![
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(base))
                    .service_fn(ok),
            ),
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(with_query.clone()))
                    .service_fn(ok),
            ),
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(custom))
                    .service_fn(ok),
            ),
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::optional(with_query))
                    .service_fn(ok),
            ),
        ];
        let known = known_for(&apps.iter().collect::<Vec<_>>());
        Fixture { apps, known }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let c = creds();
    let which = usize::from(flags & 3);
    let header = if which == 2 {
        "x-custom-key"
    } else {
        "x-api-key"
    };
    let query_on = which != 0;
    let input = expand(rest);

    let mut req = Request::new(());
    let mut sent: Vec<&[u8]> = Vec::new();
    let mut query: Vec<u8> = Vec::new();
    let mut headers = 0;
    for line in input.split(|b| *b == b'\n').take(8) {
        if let Some(v) = line.strip_prefix(b"q:") {
            if !query.is_empty() {
                query.push(b'&');
            }
            query.extend_from_slice(b"api_key=");
            query.extend_from_slice(v);
            sent.push(v);
        } else if let Some(q) = line.strip_prefix(b"?") {
            if !query.is_empty() {
                query.push(b'&');
            }
            query.extend_from_slice(q);
            sent.push(q);
        } else if append(req.headers_mut(), header, line) {
            headers += 1;
            sent.push(line);
        }
    }
    if !query.is_empty() {
        let uri = [b"/?".as_slice(), &query].concat();
        let Ok(uri) = http::Uri::try_from(uri) else {
            return;
        };
        *req.uri_mut() = uri;
    }
    // What the request really carries (a `#` ends the query).
    let query = req.uri().query().unwrap_or_default().as_bytes().to_vec();
    if flags & 4 != 0 {
        make_grpc(&mut req);
    }
    req.extensions_mut().insert(peer());
    let grpc = is_grpc(&req);
    let in_query = query_on && query_has(&query, "api_key");
    let ans = send(&f.apps[which], req);
    check(&ans, grpc, &[400, 401], &sent, &f.known);

    if ans.is_ok() {
        let decoded = form_decode(&query);
        let live = |k: &str| {
            sent.iter().any(|s| contains(s, k.as_bytes())) || contains(&decoded, k.as_bytes())
        };
        let anonymous = which == 3 && headers == 0 && !in_query;
        assert!(
            live(&c.api_key) || live(&c.user_key) || anonymous,
            "authenticated without a live key"
        );
    }
    if !grpc {
        if headers >= 2 {
            assert_eq!(ans.status(), StatusCode::BAD_REQUEST, "repeated {header}");
        }
        if headers >= 1 && in_query {
            assert_eq!(
                ans.status(),
                StatusCode::BAD_REQUEST,
                "key in header and query"
            );
        }
        if headers == 0 && !in_query && which != 3 {
            assert_eq!(ans.status(), StatusCode::UNAUTHORIZED, "no key");
        }
    }
});
