//! Arbitrary `Authorization` (and `x-api-key`) header values, one or
//! several, and an opt-in query parameter, through `AuthLayer` with a
//! `BearerAuthenticator` or an `ApiKeyAuthenticator`.
//!
//! Input: one flag byte, then lines (`\n`): a line starting with `?` is the
//! query string, every other line one header value. Placeholders (`{B}`,
//! `{K}`, ...) are expanded first, see the crate docs.
//!
//! Flags: bit 0 API key (else bearer), bit 1 query parameter enabled, bit 2
//! gRPC request, bit 3 optional layer.

#![no_main]

use std::sync::OnceLock;

use http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::api_key::ApiKeyAuthenticator;
use tower_auth::bearer::{BearerAuthenticator, BearerToken};
use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};
use tower_auth_fuzz::*;

struct Fixture {
    /// Indexed by the low 4 bits of the flags, minus the gRPC bit.
    apps: Vec<App>,
    known: Known,
}

fn layer<A: tower_auth::Authenticator>(auth: A, optional: bool) -> AuthLayer<A> {
    if optional {
        AuthLayer::optional(auth)
    } else {
        AuthLayer::new(auth)
    }
}

fn app(api_key: bool, query: bool, optional: bool) -> App {
    if api_key {
        let mut auth = ApiKeyAuthenticator::new(creds().store.clone());
        if query {
            auth = auth.query_param("api_key");
        }
        boxed(
            ServiceBuilder::new()
                .layer(layer(auth, optional))
                .service_fn(ok),
        )
    } else {
        let mut auth = BearerAuthenticator::new(|t: BearerToken| async move {
            if t.expose() == BEARER_TOKEN {
                Ok(Authenticated::new((), Identity::new("bob", Scheme::Bearer)))
            } else {
                Err(AuthError::invalid_credentials("unknown token"))
            }
        })
        .realm("api");
        if query {
            auth = auth.query_param("access_token");
        }
        boxed(
            ServiceBuilder::new()
                .layer(layer(auth, optional))
                .service_fn(ok),
        )
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut apps = Vec::new();
        for i in 0..8u8 {
            apps.push(app(i & 1 != 0, i & 2 != 0, i & 4 != 0));
        }
        let known = known_for(&apps.iter().collect::<Vec<_>>());
        Fixture { apps, known }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let api_key = flags & 1 != 0;
    let query_on = flags & 2 != 0;
    let optional = flags & 8 != 0;
    let app = &f.apps[usize::from((flags & 3) | ((flags & 8) >> 1))];
    let name = if api_key {
        "x-api-key"
    } else {
        "authorization"
    };
    // The live credentials (both API keys in the store are live).
    let real: &[&[u8]] = if api_key {
        &[creds().api_key.as_bytes(), creds().user_key.as_bytes()]
    } else {
        &[BEARER_TOKEN.as_bytes()]
    };

    let input = expand(rest);
    let mut req = Request::new(());
    let mut sent: Vec<&[u8]> = Vec::new();
    let mut query: Option<&[u8]> = None;
    let mut headers = 0;
    let mut credentials = 0;
    for line in input.split(|b| *b == b'\n').take(8) {
        if let (Some(b'?'), None) = (line.first(), query) {
            let uri = [b"/".as_slice(), line].concat();
            let Ok(uri) = http::Uri::try_from(uri) else {
                return;
            };
            *req.uri_mut() = uri;
            query = Some(line);
            sent.push(line);
            continue;
        }
        if append(req.headers_mut(), name, line) {
            headers += 1;
            sent.push(line);
            // A foreign scheme is not this authenticator's credential.
            let scheme = line.split(|b| *b == b' ').next().unwrap_or_default();
            if api_key || scheme.eq_ignore_ascii_case(b"bearer") {
                credentials += 1;
            }
        }
    }
    // What the request really carries (a `#` ends the query).
    let real_query = req.uri().query().map(|q| q.as_bytes().to_vec());
    let query = real_query.as_deref();
    if flags & 4 != 0 {
        make_grpc(&mut req);
    }
    let grpc = is_grpc(&req);
    let ans = send(app, req);
    check(&ans, grpc, &[400, 401], &sent, &f.known);

    let query_param = if api_key { "api_key" } else { "access_token" };
    let in_query = query_on && query.is_some_and(|q| query_has(q, query_param));
    if ans.is_ok() {
        let presented = real.iter().any(|r| {
            sent.iter().any(|s| contains(s, r))
                || query.is_some_and(|q| contains(&form_decode(q), r))
        });
        assert!(
            presented || (optional && credentials == 0 && !in_query),
            "authenticated without the real credential"
        );
        assert!(headers <= 1, "{headers} {name} headers accepted");
    }
    if headers >= 2 && !grpc {
        assert_eq!(ans.status(), StatusCode::BAD_REQUEST, "repeated {name}");
    }
    if headers <= 1 && credentials == 0 && !in_query && !optional && !grpc {
        assert_eq!(ans.status(), StatusCode::UNAUTHORIZED, "no credentials");
    }
});
