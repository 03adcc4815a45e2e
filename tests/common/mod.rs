//! Shared fixtures of the integration tests: one user type, a bearer
//! validator and an API key store, and helpers to run servers on
//! 127.0.0.1:0.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
use tower_auth::bearer::{BearerAuthenticator, BearerToken, TokenValidator};
use tower_auth::{AuthError, Authenticated, Authenticator, Identity, Scheme};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
}

pub const TOKEN: &str = "valid_token_123";
pub const API_KEY: &str = "key_12345";

fn alice() -> User {
    User {
        id: "1".into(),
        name: "Alice".into(),
    }
}

fn bob() -> User {
    User {
        id: "2".into(),
        name: "Bob".into(),
    }
}

pub fn bearer() -> BearerAuthenticator<impl TokenValidator<Principal = User>> {
    BearerAuthenticator::new(|token: BearerToken| async move {
        if token.expose() == TOKEN {
            Ok(Authenticated::new(
                alice(),
                Identity::new("1", Scheme::Bearer).with_roles(["admin"]),
            ))
        } else {
            Err(AuthError::invalid_credentials("invalid or expired token"))
        }
    })
    .realm("api")
}

pub fn api_key() -> ApiKeyAuthenticator<MemoryApiKeyStore<User>> {
    let store = MemoryApiKeyStore::new();
    store.insert_key(
        API_KEY,
        bob(),
        Identity::new("2", Scheme::ApiKey).with_roles(["user"]),
    );
    ApiKeyAuthenticator::new(store).realm("api")
}

/// Bearer token or API key, the first present deciding.
pub fn either() -> impl Authenticator<Principal = User> {
    bearer().or(api_key())
}

pub async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

pub fn spawn<F: Future<Output = ()> + Send + 'static>(f: F) {
    tokio::spawn(f);
}

/// Sends raw bytes as an HTTP/1.1 request and returns the raw response
/// (the connection is closed by `Connection: close`).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

pub fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}
