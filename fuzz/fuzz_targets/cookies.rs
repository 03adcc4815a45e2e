//! Arbitrary `Cookie` headers through `SessionLayer` + `AuthLayer(session)`
//! and through the JWT cookie source (`JwtAuthenticator::cookie("jwt")`).
//!
//! Input: one flag byte (bit 0: gRPC request), then lines (`\n`), each one
//! `Cookie` header. Placeholders `{S}` (`session=<id>`), `{V}` (the id),
//! `{J}`, `{E}`, `{D}` (valid tokens) are expanded first.
//!
//! Invariants: only the real session cookie opens the session, only a
//! valid token passes the JWT source; every refusal is well formed and
//! echoes no cookie.

#![no_main]

use std::sync::OnceLock;

use http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::{AuthLayer, Authenticator};
use tower_auth_fuzz::*;

struct Fixture {
    session: App,
    jwt: App,
    either: App,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let c = creds();
        let session = boxed(
            ServiceBuilder::new()
                .layer(c.sessions.clone())
                .layer(AuthLayer::new(c.users.clone()))
                .service_fn(ok),
        );
        let jwt = boxed(
            ServiceBuilder::new()
                .layer(AuthLayer::new(
                    jwt_authenticator().cookie("jwt").without_header(),
                ))
                .service_fn(ok),
        );
        let either = boxed(
            ServiceBuilder::new()
                .layer(c.sessions.clone())
                .layer(AuthLayer::new(
                    jwt_authenticator()
                        .cookie("jwt")
                        .map_principal(|_| ())
                        .or(c.users.clone().map_principal(|_| ())),
                ))
                .service_fn(ok),
        );
        let known = known_for(&[&session, &jwt, &either]);
        Fixture {
            session,
            jwt,
            either,
            known,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let c = creds();
    let input = expand(rest);
    let mut sent: Vec<&[u8]> = Vec::new();
    let mut req = Request::new(());
    for line in input.split(|b| *b == b'\n').take(8) {
        if append(req.headers_mut(), "cookie", line) {
            sent.push(line);
        }
    }
    if flags & 1 != 0 {
        make_grpc(&mut req);
    }
    let grpc = is_grpc(&req);
    let has = |cred: &str| sent.iter().any(|s| contains(s, cred.as_bytes()));
    let valid_jwt = has(&c.jwt_hs) || has(&c.jwt_es) || has(&c.jwt_ed);
    let valid_session = has(&c.session_value);

    let clone = |req: &Request<()>| {
        let mut r = Request::new(());
        *r.version_mut() = req.version();
        *r.headers_mut() = req.headers().clone();
        r.extensions_mut().insert(peer());
        r
    };
    let ans = send(&f.session, clone(&req));
    check_session(&ans, grpc, &[400, 401], &sent, &f.known);
    assert!(
        !ans.is_ok() || valid_session,
        "session opened without its cookie"
    );

    let ans = send(&f.jwt, clone(&req));
    check(&ans, grpc, &[400, 401], &sent, &f.known);
    assert!(
        !ans.is_ok() || valid_jwt,
        "JWT cookie source accepted no valid token"
    );

    let ans = send(&f.either, req);
    check(&ans, grpc, &[400, 401], &sent, &f.known);
    assert!(
        !ans.is_ok() || valid_jwt || valid_session,
        "jwt.or(session) accepted no valid credential"
    );
});
