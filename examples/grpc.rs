//! tower-auth in front of a tonic gRPC server: a bearer JWT authenticates,
//! a role policy authorizes, and refusals reach the client as real gRPC
//! statuses (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
//!
//! The service is the standard gRPC health service (no protoc needed). Only
//! the `admin` role may call it.
//!
//! ```sh
//! cargo run --example grpc --features full
//! ```
//!
//! The example starts the server, calls it three times as a client (no
//! token, a `user` token, an `admin` token), prints the answers, and keeps
//! serving.
//!
//! `Watch`, the health service's server stream, lives as long as the token
//! it was opened with: a `CredentialWatch` ends it with `UNAUTHENTICATED`
//! (`credentials expired` / `credentials revoked`) when the token expires
//! or is revoked. The example shows it last: it opens a `Watch` with the
//! admin token, logs the token out, and prints how the stream ended. Listens on 127.0.0.1:8080, or `PORT`, or `--addr <ip:port>`;
//! `JWT_SECRET` sets the signing secret.

#[path = "util/addr.rs"]
mod util;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;
use tower_auth::authz::{role, RequireLayer};
use tower_auth::jwt::TokenIssuer;
use tower_auth::lifetime::{CredentialWatch, Ended};
use tower_auth::AuthLayer;

/// The typed claims: none beyond what the `Identity` carries (subject and
/// roles), which is all the role policy needs.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Claims {}

/// Serves the health service on `listener`: `AuthLayer` (JWT) outside,
/// `RequireLayer(role("admin"))` inside. This internal service names the
/// missing role in its `PERMISSION_DENIED` message (off by default).
pub(crate) async fn serve(listener: tokio::net::TcpListener, issuer: TokenIssuer) {
    let (reporter, _) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let health = WatchedHealth {
        inner: HealthService::from_health_reporter(reporter),
    };
    // Every authenticated request carries a CredentialWatch; the `Watch`
    // stream ends with it. The issuer's memory store broadcasts
    // revocations: the periodic check is a fallback.
    let auth = issuer
        .authenticator::<Claims>()
        .watch_credentials(Duration::from_secs(30));
    let result = Server::builder()
        .layer(AuthLayer::new(auth))
        .layer(RequireLayer::new(role("admin")).name_missing_rights(true))
        .add_service(HealthServer::new(health))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await;
    if let Err(e) = result {
        eprintln!("gRPC server stopped: {e}");
    }
}

/// The standard health service, whose `Watch` stream also ends when the
/// caller's credentials do.
pub(crate) struct WatchedHealth {
    inner: HealthService,
}

/// The status a stream ends with when the credentials end.
fn ended_status(ended: Ended) -> Status {
    Status::new(Code::from(i32::from(ended.grpc_code())), ended.reason())
}

#[tonic::async_trait]
impl Health for WatchedHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let Some(watch) = request.extensions().get::<CredentialWatch>().cloned() else {
            return Err(Status::internal(
                "no credential watch: is the AuthLayer installed?",
            ));
        };
        let statuses = self.inner.watch(request).await?.into_inner();
        let guarded = watch.guard_stream(statuses, |ended| Err(ended_status(ended)));
        Ok(Response::new(Box::pin(guarded)))
    }
}

/// Calls `Watch` with a bearer token: the statuses received, up to and
/// including the error that ended the stream (`None` if it ended without
/// one or `bound` passed).
pub(crate) async fn watch(
    addr: SocketAddr,
    token: &str,
    bound: Duration,
) -> Result<(Vec<i32>, Option<Status>), Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut client = HealthClient::new(channel);
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Status::invalid_argument("token is not valid metadata"))?;
    request.metadata_mut().insert("authorization", value);
    let mut stream = client.watch(request).await?.into_inner();
    let mut statuses = Vec::new();
    let read = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(r) => statuses.push(r.status),
                Err(e) => return Some(e),
            }
        }
        None
    };
    let end = tokio::time::timeout(bound, read).await.ok().flatten();
    Ok((statuses, end))
}

/// Calls `Check` with an optional bearer token; the serving status or the
/// gRPC error.
pub(crate) async fn check(addr: SocketAddr, token: Option<&str>) -> Result<i32, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = HealthClient::new(channel);
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| tonic::Status::invalid_argument("token is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
    }
    client.check(request).await.map(|r| r.into_inner().status)
}

/// Issues a token for `subject` with `roles`.
pub(crate) fn token(issuer: &TokenIssuer, subject: &str, roles: &[&str]) -> String {
    issuer
        .issue(subject, &serde_json::json!({ "roles": roles }))
        .map(|pair| pair.access_token)
        .unwrap_or_default()
}

fn describe(result: &Result<i32, tonic::Status>) -> String {
    match result {
        Ok(status) => format!("OK, serving status {status}"),
        Err(s) if s.code() == Code::Unauthenticated || s.code() == Code::PermissionDenied => {
            format!("{:?}: {}", s.code(), s.message())
        }
        Err(s) => format!("unexpected {:?}: {}", s.code(), s.message()),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("JWT_SECRET")
        .ok()
        .filter(|s| s.len() >= 32)
        .unwrap_or_else(|| {
            eprintln!("warning: JWT_SECRET unset or shorter than 32 bytes; using a demo secret");
            "a demo secret for the gRPC example only".to_owned()
        });
    let issuer = TokenIssuer::hs256(secret.as_bytes())
        .map_err(std::io::Error::other)?
        .build()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(util::listen_addr()).await?;
    let addr = listener.local_addr()?;
    println!("gRPC health service on http://{addr} (role admin required)");
    let server = tokio::spawn(serve(listener, issuer.clone()));

    let user = token(&issuer, "bob", &["user"]);
    let admin = token(&issuer, "alice", &["admin"]);
    for (who, token) in [
        ("no token", None),
        ("user token", Some(user.as_str())),
        ("admin token", Some(admin.as_str())),
    ] {
        println!(
            "  Check with {who}: {}",
            describe(&check(addr, token).await)
        );
    }
    // A Watch stream lives until the token that opened it is revoked.
    let watching = tokio::spawn({
        let admin = admin.clone();
        async move { watch(addr, &admin, Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(e) = issuer.logout(Some(&admin), None).await {
        eprintln!("logout failed: {e}");
    }
    match watching.await.map_err(std::io::Error::other)? {
        Ok((statuses, Some(end))) => println!(
            "  Watch with admin token, then logout: statuses {statuses:?}, ended {:?}: {}",
            end.code(),
            end.message()
        ),
        Ok((statuses, None)) => println!("  Watch: statuses {statuses:?}, not ended"),
        Err(e) => println!("  Watch failed: {:?}: {}", e.code(), e.message()),
    }
    println!("serving until interrupted");
    server.await.map_err(std::io::Error::other)
}
