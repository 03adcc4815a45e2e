//! Smoke tests of the smaller examples (`basic`, `rbac`, `rate_limit`),
//! each served on 127.0.0.1:0 and driven with reqwest.

// Each example includes the shared `examples/util/addr.rs` on its own.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/basic.rs"]
mod basic;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/rbac.rs"]
mod rbac;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/rate_limit.rs"]
mod rate_limit;

use std::net::SocketAddr;

use axum::Router;
use serde_json::{json, Value};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn basic_api_keys_bearer_and_optional_auth() {
    let base = serve(basic::app()).await;
    let c = reqwest::Client::new();
    let res = c
        .get(format!("{base}/protected"))
        .header("x-api-key", "key_12345")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "Hello, Alice!"
    );
    let res = c.get(format!("{base}/protected")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = c
        .get(format!("{base}/profile"))
        .bearer_auth("valid_token_123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["roles"],
        json!(["admin"])
    );
    let res = c
        .get(format!("{base}/me"))
        .header("x-api-key", "key_67890")
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["user"]["name"], "Bob");
    let anon: Value = c
        .get(format!("{base}/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anon["posts"].as_array().unwrap().len(), 1);
    assert!(anon["posts"][0].get("body").is_none());
    let authed: Value = c
        .get(format!("{base}/posts"))
        .header("x-api-key", "key_12345")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(authed["posts"].as_array().unwrap().len(), 2);
    let res = c
        .get(format!("{base}/posts"))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn rbac_roles_permissions_and_owners() {
    let base = serve(rbac::app()).await;
    let c = reqwest::Client::new();
    let get = |path: &str, token: &str| c.get(format!("{base}{path}")).bearer_auth(token).send();
    assert_eq!(get("/users", "carol-token").await.unwrap().status(), 200);
    let res = get("/users", "bob-token").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        get("/admin/users", "alice-token").await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/admin/users", "carol-token").await.unwrap().status(),
        403
    );
    assert_eq!(
        c.get(format!("{base}/admin/users"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let put = |path: &str, token: &str| {
        c.put(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&json!({"title": "edited"}))
            .send()
    };
    assert_eq!(put("/posts/2", "bob-token").await.unwrap().status(), 200);
    assert_eq!(put("/posts/1", "bob-token").await.unwrap().status(), 403);
    assert_eq!(put("/posts/9", "bob-token").await.unwrap().status(), 404);
    assert_eq!(put("/posts/1", "alice-token").await.unwrap().status(), 200);
}

#[tokio::test]
async fn rate_limit_failed_logins_and_headers() {
    let base = serve(rate_limit::app().unwrap()).await;
    let c = reqwest::Client::new();
    let login = || {
        c.post(format!("{base}/login"))
            .json(&json!({"email": "alice@example.com", "password": "nope"}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(login().await.unwrap().status(), 401);
    }
    let res = login().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let res = c
        .get(format!("{base}/me"))
        .bearer_auth("valid_token_123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // One field line per layer; together a Structured Field list.
    let policy: Vec<_> = res
        .headers()
        .get_all("ratelimit-policy")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let policy = policy.join(", ");
    assert!(
        policy.contains("\"per-ip\"") && policy.contains("\"per-user\""),
        "{policy}"
    );
}
