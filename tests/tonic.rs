//! AuthLayer in front of a tonic server (the standard gRPC health service):
//! rejections reach the client as real gRPC statuses.

mod common;

use common::*;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_auth::AuthLayer;

async fn serve() -> HealthClient<Channel> {
    let (listener, addr) = listener().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    spawn(async move {
        Server::builder()
            .layer(AuthLayer::new(either()))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn check(metadata: &[(&'static str, &str)]) -> Request<HealthCheckRequest> {
    let mut req = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    for (k, v) in metadata {
        req.metadata_mut()
            .append(*k, MetadataValue::try_from(*v).unwrap());
    }
    req
}

#[tokio::test]
async fn valid_bearer_and_api_key() {
    let mut client = serve().await;
    let res = client
        .check(check(&[("authorization", "Bearer valid_token_123")]))
        .await
        .unwrap();
    assert_eq!(res.into_inner().status, 1); // SERVING
    let res = client
        .check(check(&[("x-api-key", API_KEY)]))
        .await
        .unwrap();
    assert_eq!(res.into_inner().status, 1);
}

#[tokio::test]
async fn missing_credentials_is_unauthenticated() {
    let mut client = serve().await;
    let status = client.check(check(&[])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "authentication required");
}

#[tokio::test]
async fn invalid_credentials_are_unauthenticated_without_echo() {
    let mut client = serve().await;
    let status = client
        .check(check(&[("authorization", "Bearer not-the-token")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid or expired token");
    let status = client
        .check(check(&[("x-api-key", "wrong-key")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(!status.message().contains("wrong-key"));
}

#[tokio::test]
async fn malformed_credentials_are_unauthenticated() {
    let mut client = serve().await;
    let status = client
        .check(check(&[
            ("authorization", "Bearer a"),
            ("authorization", "Bearer b"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("more than one"));
}
