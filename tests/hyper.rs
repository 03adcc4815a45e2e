//! AuthLayer in front of a plain hyper 1.x server (no axum): the principal
//! is read from request extensions.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_auth::{AuthLayer, Identity};

async fn handler(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match (
        req.extensions().get::<User>(),
        req.extensions().get::<Identity>(),
    ) {
        (Some(user), Some(id)) => format!("hello {} ({})", user.name, id.scheme()),
        _ => "hello anonymous".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

async fn serve(optional: bool) -> std::net::SocketAddr {
    let (listener, addr) = listener().await;
    let layer = if optional {
        AuthLayer::optional(either())
    } else {
        AuthLayer::new(either())
    };
    let svc = ServiceBuilder::new().layer(layer).service_fn(handler);
    spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn request(extra: &[u8]) -> Vec<u8> {
    let mut r = b"GET /protected HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    r.extend_from_slice(extra);
    r.extend_from_slice(b"\r\n");
    r
}

#[tokio::test]
async fn valid_credentials() {
    let addr = serve(false).await;
    let raw = raw_http(addr, &request(b"Authorization: Bearer valid_token_123\r\n")).await;
    assert_eq!(status_of(&raw), 200);
    assert_eq!(body_of(&raw), "hello Alice (Bearer)");
    let raw = raw_http(addr, &request(b"X-Api-Key: key_12345\r\n")).await;
    assert_eq!(body_of(&raw), "hello Bob (ApiKey)");
}

#[tokio::test]
async fn missing_credentials() {
    let addr = serve(false).await;
    let raw = raw_http(addr, &request(b"")).await;
    assert_eq!(status_of(&raw), 401);
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("www-authenticate: bearer realm=\"api\"\r\n"));
    assert!(lower.contains("content-type: application/json"));
    assert_eq!(
        body_of(&raw),
        r#"{"error":"unauthorized","message":"authentication required"}"#
    );
}

#[tokio::test]
async fn optional_layer_lets_anonymous_through_but_not_bad_tokens() {
    let addr = serve(true).await;
    let raw = raw_http(addr, &request(b"")).await;
    assert_eq!(body_of(&raw), "hello anonymous");
    let raw = raw_http(addr, &request(b"Authorization: Bearer forged\r\n")).await;
    assert_eq!(status_of(&raw), 401);
    assert!(raw.contains(r#"error="invalid_token""#));
    assert!(!raw.contains("forged"));
}

#[tokio::test]
async fn raw_hostile_bytes() {
    let addr = serve(false).await;
    // Non-UTF-8 bytes in the token.
    let raw = raw_http(addr, &request(b"Authorization: Bearer \xff\xfe\xfd\r\n")).await;
    assert_eq!(status_of(&raw), 400);
    assert!(body_of(&raw).contains("invalid_request"));
    // Two Authorization headers.
    let raw = raw_http(
        addr,
        &request(b"Authorization: Bearer valid_token_123\r\nAuthorization: Bearer x\r\n"),
    )
    .await;
    assert_eq!(status_of(&raw), 400);
    // Wrong scheme.
    let raw = raw_http(addr, &request(b"Authorization: Digest username=\"a\"\r\n")).await;
    assert_eq!(status_of(&raw), 401);
    // Huge header within hyper's limits: refused by the layer.
    let mut huge = b"Authorization: Bearer ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 16_000));
    huge.extend_from_slice(b"\r\n");
    let raw = raw_http(addr, &request(&huge)).await;
    assert_eq!(status_of(&raw), 400);
    assert!(!raw.contains("aaaaaaaa"));
}
