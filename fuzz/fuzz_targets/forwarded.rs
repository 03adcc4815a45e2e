//! Arbitrary `Forwarded` / `X-Forwarded-For` / `X-Real-IP` headers through
//! a `RateLimitLayer` keyed by `ClientIp` behind trusted proxies
//! (`10.0.0.0/8`, `fd00::/8`), the peer address in the request extensions
//! as a `SocketAddr` or axum's `ConnectInfo`.
//!
//! Input: one flag byte, then lines (`\n`): `f:` a `Forwarded` line, `x:`
//! an `X-Forwarded-For` line, `r:` an `X-Real-IP` line, anything else an
//! `X-Forwarded-For` line.
//!
//! Flags: bit 0 the peer is a trusted proxy, bit 1 read `Forwarded` (else
//! `X-Forwarded-For`), bit 2 peer as `ConnectInfo`, bit 3 IPv6 peer, bit 4
//! gRPC request.
//!
//! Invariants: behind an untrusted peer the headers change nothing; the
//! client IP is the peer or an address the headers name; `X-Real-IP` is
//! ignored; a fresh one-request budget lets the first request through and
//! refuses the identical second one with a well-formed `429`.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceBuilder;
use tower_auth::rate_limit::{
    ClientIp, ForwardedHeader, Limit, Limiter, Quota, RateLimitLayer, RequestHead, TrustedProxies,
};
use tower_auth_fuzz::*;

fn proxies() -> TrustedProxies {
    TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).expect("ranges")
}

fn key(forwarded: bool) -> ClientIp {
    let header = if forwarded {
        ForwardedHeader::Forwarded
    } else {
        ForwardedHeader::XForwardedFor
    };
    ClientIp::new(proxies()).header(header)
}

/// A one-request budget, new for each input.
fn app(forwarded: bool) -> App {
    let quota = Quota::per_hour(1).expect("quota");
    let limiter = Limiter::builder(quota).max_keys(16).build();
    boxed(
        ServiceBuilder::new()
            .layer(RateLimitLayer::new(Limit::new(
                "per-client",
                limiter,
                key(forwarded),
            )))
            .service_fn(ok),
    )
}

fn known() -> &'static Known {
    static K: OnceLock<Known> = OnceLock::new();
    K.get_or_init(|| {
        let a = app(false);
        let mut answers = Vec::new();
        for grpc in [false, true] {
            for _ in 0..2 {
                let mut req = Request::new(());
                req.extensions_mut().insert(peer());
                if grpc {
                    make_grpc(&mut req);
                }
                answers.push(send(&a, req));
            }
        }
        Known::new(&answers)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let trusted = flags & 1 != 0;
    let forwarded = flags & 2 != 0;
    let peer: SocketAddr = match (trusted, flags & 8 != 0) {
        (true, false) => "10.0.0.1:443".parse().expect("addr"),
        (false, false) => "198.51.100.9:443".parse().expect("addr"),
        (true, true) => "[fd00::1]:443".parse().expect("addr"),
        (false, true) => "[2001:db8::9]:443".parse().expect("addr"),
    };
    let mut req = Request::new(());
    let mut sent: Vec<&[u8]> = Vec::new();
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut real_ip = false;
    for line in rest.split(|b| *b == b'\n').take(16) {
        let (name, v) = match line {
            [b'f', b':', v @ ..] => ("forwarded", v),
            [b'x', b':', v @ ..] => ("x-forwarded-for", v),
            [b'r', b':', v @ ..] => ("x-real-ip", v),
            v => ("x-forwarded-for", v),
        };
        if append(req.headers_mut(), name, v) {
            sent.push(v);
            if name == "x-real-ip" {
                real_ip = true;
            } else if (name == "forwarded") == forwarded {
                lines.push(v);
            }
        }
    }
    if flags & 4 != 0 {
        req.extensions_mut().insert(ConnectInfo(peer));
    } else {
        req.extensions_mut().insert(peer);
    }
    if flags & 16 != 0 {
        make_grpc(&mut req);
    }
    let grpc = is_grpc(&req);

    // The key, read directly.
    let ip = key(forwarded)
        .client_ip(RequestHead::from(&req))
        .expect("a peer address is present");
    let peer_ip = peer.ip();
    if !trusted {
        assert_eq!(
            ip, peer_ip,
            "headers moved the key behind an untrusted peer"
        );
    }
    if ip != peer_ip {
        if let IpAddr::V4(v4) = ip {
            let text = v4.to_string();
            // Quoted-pair escapes (`\1.2.3.4`) and IPv4-mapped IPv6 in
            // hex (`::ffff:102:304`) name an address without its text.
            let named = lines.iter().any(|l| {
                let plain: Vec<u8> = l.iter().copied().filter(|b| *b != b'\\').collect();
                contains(&plain, text.as_bytes()) || contains(&l.to_ascii_lowercase(), b"ffff")
            });
            assert!(
                named,
                "client IP {ip} is neither the peer nor in the headers"
            );
        }
    }
    if real_ip {
        let mut without = Request::new(());
        *without.headers_mut() = req.headers().clone();
        without.headers_mut().remove("x-real-ip");
        without.extensions_mut().insert(peer);
        let again = key(forwarded)
            .client_ip(RequestHead::from(&without))
            .expect("a peer address is present");
        assert_eq!(ip, again, "X-Real-IP changed the client IP");
    }

    // Through the layer: one request per budget.
    let a = app(forwarded);
    let copy = |req: &Request<()>| {
        let mut r = Request::new(());
        *r.version_mut() = req.version();
        *r.headers_mut() = req.headers().clone();
        r.extensions_mut().insert(peer);
        r
    };
    let first = send(&a, copy(&req));
    assert!(
        first.is_ok(),
        "first request refused: {:?}",
        first.parts.status
    );
    let second = send(&a, req);
    check(&second, grpc, &[429], &sent, known());
    assert!(
        !second.is_ok(),
        "second request within a one-request budget passed"
    );
    if grpc {
        assert_eq!(
            second
                .parts
                .headers
                .get("grpc-status")
                .map(|v| v.as_bytes()),
            Some(&b"8"[..])
        );
    } else {
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    }
});
