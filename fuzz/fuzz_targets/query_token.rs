//! Arbitrary URIs for the opt-in query token sources: the JWT
//! `access_token` parameter and the API key `api_key` parameter, alone and
//! as `jwt.or(api_key)`.
//!
//! Input: one flag byte (bits 0-1 the authenticator: 0 JWT, 1 API key, 2
//! both; bit 2 gRPC request), then the request target after `/`
//! (placeholders `{J}`, `{E}`, `{D}`, `{O}`, `{K}`, `{U}`, `{R}`, `{X}`
//! expanded).
//!
//! Invariants: only a valid credential in the (form-decoded) query
//! authenticates; a repeated parameter is `400`; refusals are well formed
//! and echo nothing of the query.

#![no_main]

use std::sync::OnceLock;

use http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::{AuthLayer, Authenticator};
use tower_auth_fuzz::*;

struct Fixture {
    apps: Vec<App>,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let jwt = jwt_authenticator().query_param("access_token");
        let key = ApiKeyAuthenticator::new(creds().store.clone()).query_param("api_key");
        let apps = vec![
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(jwt.clone()))
                    .service_fn(ok),
            ),
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(key.clone()))
                    .service_fn(ok),
            ),
            boxed(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(jwt.map_principal(|_| ()).or(key)))
                    .service_fn(ok),
            ),
        ];
        let known = known_for(&apps.iter().collect::<Vec<_>>());
        Fixture { apps, known }
    })
}

/// How many pairs of query `q` name `name`, as the crate reads them.
fn count(q: &[u8], name: &str) -> usize {
    q.split(|b| *b == b'&')
        .filter(|pair| {
            let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
            key.len() <= name.len() * 3
                && !key.contains(&b'%')
                && !key.contains(&b'+')
                && key == name.as_bytes()
        })
        .count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let c = creds();
    let which = usize::from(flags & 3) % 3;
    let input = expand(rest);
    let target = [b"/".as_slice(), &input].concat();
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let query = uri.query().unwrap_or_default().as_bytes().to_vec();
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    if flags & 4 != 0 {
        make_grpc(&mut req);
    }
    req.extensions_mut().insert(peer());
    let grpc = is_grpc(&req);
    let ans = send(&f.apps[which], req);
    check(&ans, grpc, &[400, 401], &[&query], &f.known);

    let decoded = form_decode(&query);
    let has = |k: &str| contains(&decoded, k.as_bytes());
    let jwt_ok = has(&c.jwt_hs) || has(&c.jwt_es) || has(&c.jwt_ed);
    let key_ok = has(&c.api_key) || has(&c.user_key);
    if ans.is_ok() {
        let valid = match which {
            0 => jwt_ok,
            1 => key_ok,
            _ => jwt_ok || key_ok,
        };
        assert!(
            valid,
            "authenticated without a valid credential in the query"
        );
    }
    let repeated = match which {
        0 => count(&query, "access_token") >= 2,
        1 => count(&query, "api_key") >= 2,
        _ => false,
    };
    if repeated && !grpc {
        assert_eq!(ans.status(), StatusCode::BAD_REQUEST, "repeated parameter");
    }
});
