//! The plain-hyper example end to end over TCP.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/hyper.rs"]
mod example;

use serde_json::{json, Value};

async fn start() -> String {
    let db = example::common::Db::open(":memory:", None).unwrap();
    let issuer =
        tower_auth::jwt::TokenIssuer::hs256(b"a test secret that is long enough!!").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, db, issuer));
    format!("http://{addr}")
}

#[tokio::test]
async fn sign_up_sign_in_me_and_api_keys() {
    let base = start().await;
    let c = reqwest::Client::new();
    let creds = json!({"username": "alice", "password": "correct horse"});

    let res = c
        .post(format!("{base}/sign_up"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["role"], "admin", "the first user is admin");
    let res = c
        .post(format!("{base}/sign_up"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    let res = c
        .post(format!("{base}/sign_in"))
        .json(&json!({"username": "alice", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = c
        .post(format!("{base}/sign_in"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pair: Value = res.json().await.unwrap();
    assert_eq!(pair["token_type"], "bearer");
    let token = pair["access_token"].as_str().unwrap();

    let me: Value = c
        .get(format!("{base}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["scheme"], "Bearer");

    let res = c
        .post(format!("{base}/api_keys"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let key: Value = res.json().await.unwrap();
    let key = key["api_key"].as_str().unwrap();
    assert!(key.starts_with("tak_"));
    let me: Value = c
        .get(format!("{base}/me"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["scheme"], "ApiKey");

    // The refresh token is not an access token.
    let res = c
        .get(format!("{base}/me"))
        .bearer_auth(pair["refresh_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn refusals() {
    let base = start().await;
    let c = reqwest::Client::new();
    let res = c.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenges: Vec<_> = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(challenges, ["Bearer", "ApiKey header=\"x-api-key\""]);
    let res = c
        .get(format!("{base}/me"))
        .header("x-api-key", "tak_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = c
        .post(format!("{base}/sign_in"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = c.get(format!("{base}/nothing-here")).send().await.unwrap();
    assert_eq!(res.status(), 401, "unknown routes are behind the layer");
}
