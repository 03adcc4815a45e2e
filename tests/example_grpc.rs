//! The tonic example: UNAUTHENTICATED without a token, PERMISSION_DENIED for
//! a user, SERVING for an admin, and a refresh token refused.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/grpc.rs"]
mod example;

use tonic::Code;
use tower_auth::jwt::TokenIssuer;

#[tokio::test]
async fn statuses_reach_the_client() {
    let issuer = TokenIssuer::hs256(b"a test secret that is long enough!!").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, issuer.clone()));

    let none = example::check(addr, None).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert_eq!(none.message(), "authentication required");

    let user = example::token(&issuer, "bob", &["user"]);
    let denied = example::check(addr, Some(&user)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(denied.message(), "role 'admin' required");

    let admin = example::token(&issuer, "alice", &["admin"]);
    assert_eq!(example::check(addr, Some(&admin)).await.unwrap(), 1);

    let forged = format!("{admin}x");
    let bad = example::check(addr, Some(&forged)).await.unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated);

    let refresh = issuer
        .issue("alice", &serde_json::json!({"roles": ["admin"]}))
        .unwrap()
        .refresh_token;
    let bad = example::check(addr, Some(&refresh)).await.unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated);
    assert_eq!(bad.message(), "token type not accepted");
}

/// The `Watch` server stream ends with UNAUTHENTICATED when the token that
/// opened it expires, or at once when it is revoked; another stream, whose
/// token is still valid, keeps going.
#[tokio::test]
async fn a_watch_stream_ends_with_its_token() {
    use std::time::{Duration, Instant};
    let issuer = TokenIssuer::hs256(b"a test secret that is long enough!!")
        .unwrap()
        .access_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, issuer.clone()));

    // Expiry.
    let started = Instant::now();
    let admin = example::token(&issuer, "alice", &["admin"]);
    let (statuses, end) = example::watch(addr, &admin, Duration::from_secs(6))
        .await
        .unwrap();
    assert_eq!(statuses.first(), Some(&1), "SERVING first");
    let end = end.expect("ended by the token's expiry");
    assert_eq!(end.code(), Code::Unauthenticated);
    assert_eq!(end.message(), "credentials expired");
    assert!(started.elapsed() <= Duration::from_millis(4500));

    // Revocation, while another stream stays open.
    let long = TokenIssuer::hs256(b"a test secret that is long enough!!")
        .unwrap()
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, long.clone()));
    let alice = example::token(&long, "alice", &["admin"]);
    let carol = example::token(&long, "carol", &["admin"]);
    let watching = tokio::spawn({
        let alice = alice.clone();
        async move { example::watch(addr, &alice, Duration::from_secs(10)).await }
    });
    let other =
        tokio::spawn(async move { example::watch(addr, &carol, Duration::from_secs(3)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revoked = Instant::now();
    long.logout(Some(&alice), None).await.unwrap();
    let (statuses, end) = watching.await.unwrap().unwrap();
    assert!(revoked.elapsed() < Duration::from_secs(3));
    assert_eq!(statuses.first(), Some(&1));
    let end = end.expect("ended by the revocation");
    assert_eq!(end.code(), Code::Unauthenticated);
    assert_eq!(end.message(), "credentials revoked");
    let (statuses, end) = other.await.unwrap().unwrap();
    assert_eq!(statuses.first(), Some(&1));
    assert!(
        end.is_none(),
        "a stream with a valid token stays open: {end:?}"
    );
}
