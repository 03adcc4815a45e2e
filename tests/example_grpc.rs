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
