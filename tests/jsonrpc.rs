//! The JSON-RPC example end to end: over HTTP with reqwest, over WebSocket
//! with tokio-tungstenite, and (ignored by default; run by `.ci/run`) the
//! seeds' Python client, unchanged, against port 8080.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/jsonrpc.rs"]
mod jsonrpc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"a test secret that is long enough!!";

async fn serve(addr: &str) -> std::net::SocketAddr {
    serve_db(addr, jsonrpc::common::Db::open(":memory:", None).unwrap()).await
}

async fn serve_db(addr: &str, db: jsonrpc::common::Db) -> std::net::SocketAddr {
    let app = jsonrpc::App::new(db, SECRET);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, jsonrpc::router(app)).await.unwrap() });
    addr
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn raw(&self, body: String, token: Option<&str>) -> (u16, Option<Value>) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).ok())
    }

    async fn call(&self, method: &str, params: Value, token: Option<&str>) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let (status, answer) = self.raw(body.to_string(), token).await;
        assert_eq!(status, 200);
        let answer = answer.unwrap();
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["id"], 7);
        answer
    }
}

async fn client() -> Client {
    let addr = serve("127.0.0.1:0").await;
    Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/api/v1"),
    }
}

#[tokio::test]
async fn answers_are_not_stored() {
    let c = client().await;
    c.call("sign_up", json!(["alice", "correct horse"]), None)
        .await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "sign_in", "params": ["alice", "correct horse"]});
    let res = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let answer: Value = res.json().await.unwrap();
    assert!(answer["result"]["access_token"].is_string());
}

#[tokio::test]
async fn busy_password_hashing_is_a_json_rpc_error() {
    let db = jsonrpc::common::Db::open(":memory:", None)
        .unwrap()
        .hash_limit(1, std::time::Duration::from_millis(50));
    let permits = db.hash_permits();
    let addr = serve_db("127.0.0.1:0", db).await;
    let c = Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/api/v1"),
    };
    c.call("sign_up", json!(["alice", "correct horse"]), None)
        .await;
    let held = permits.clone().acquire_owned().await.unwrap();
    for method in ["sign_up", "sign_in"] {
        let busy = c
            .call(method, json!(["alice", "correct horse"]), None)
            .await;
        assert_eq!(busy["error"]["code"], -32003, "{method}");
        assert_eq!(
            busy["error"]["message"],
            "too many password checks in progress; retry shortly"
        );
    }
    drop(held);
    let ok = c
        .call("sign_in", json!(["alice", "correct horse"]), None)
        .await;
    assert!(ok["result"]["access_token"].is_string());
}

#[tokio::test]
async fn sign_up_sign_in_and_require_token() {
    let c = client().await;
    let up = c
        .call("sign_up", json!(["email@test.com", "password"]), None)
        .await;
    assert_eq!(up["result"], json!({"username": "email@test.com"}));
    assert!(
        !up.to_string().contains("argon2"),
        "no password hash in results"
    );

    let signed = c
        .call("sign_in", json!(["email@test.com", "password"]), None)
        .await;
    assert_eq!(signed["result"]["token_type"], "bearer");
    let token = signed["result"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let me = c.call("require_token", json!([]), Some(&token)).await;
    assert_eq!(me["result"], json!({"username": "email@test.com"}));
    // Named parameters and the trailing slash work too.
    let c2 = Client {
        http: c.http.clone(),
        url: format!("{}/", c.url),
    };
    let named = c2
        .call(
            "sign_in",
            json!({"username": "email@test.com", "password": "password"}),
            None,
        )
        .await;
    assert!(named["result"]["access_token"].is_string());
}

#[tokio::test]
async fn per_method_security() {
    let c = client().await;
    let missing = c.call("require_token", json!([]), None).await;
    assert_eq!(missing["error"]["code"], -32001);
    assert_eq!(missing["error"]["message"], "authentication required");

    let forged = c
        .call(
            "require_token",
            json!([]),
            Some("eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),
        )
        .await;
    assert_eq!(forged["error"]["code"], -32001);
    assert_eq!(forged["error"]["message"], "invalid token signature");

    // A bad token does not break methods that need none.
    c.call("sign_up", json!(["bob", "password1"]), None).await;
    let ok = c
        .call(
            "sign_in",
            json!(["bob", "password1"]),
            Some("garbage.token.here"),
        )
        .await;
    assert!(ok["result"]["access_token"].is_string());
}

#[tokio::test]
async fn sign_in_and_sign_up_failures() {
    let c = client().await;
    c.call("sign_up", json!(["alice", "correct horse"]), None)
        .await;
    let dup = c
        .call("sign_up", json!(["alice", "another one"]), None)
        .await;
    assert_eq!(dup["error"]["message"], "username already taken");
    let wrong = c
        .call("sign_in", json!(["alice", "wrong password"]), None)
        .await;
    let unknown = c
        .call("sign_in", json!(["nobody", "wrong password"]), None)
        .await;
    assert_eq!(wrong["error"], unknown["error"], "no user enumeration");
    assert_eq!(wrong["error"]["code"], -32002);
    let short = c.call("sign_up", json!(["carol", "short"]), None).await;
    assert_eq!(short["error"]["code"], -32602);
}

#[tokio::test]
async fn protocol_errors() {
    let c = client().await;
    let (status, parse) = c.raw("{not json".into(), None).await;
    assert_eq!(status, 200);
    assert_eq!(parse.unwrap()["error"]["code"], -32700);
    let (_, invalid) = c
        .raw(
            r#"{"jsonrpc":"1.0","id":1,"method":"sign_in"}"#.into(),
            None,
        )
        .await;
    assert_eq!(invalid.unwrap()["error"]["code"], -32600);
    let unknown = c.call("drop_tables", json!([]), None).await;
    assert_eq!(unknown["error"]["code"], -32601);
    let params = c.call("sign_in", json!(["only-one"]), None).await;
    assert_eq!(params["error"]["code"], -32602);
    let params = c
        .call(
            "sign_in",
            json!({"username": "a", "password": "b", "extra": 1}),
            None,
        )
        .await;
    assert_eq!(params["error"]["code"], -32602);
    // Notification: no answer.
    let (status, body) = c
        .raw(
            r#"{"jsonrpc":"2.0","method":"sign_up","params":["notified","notified1"]}"#.into(),
            None,
        )
        .await;
    assert_eq!((status, body), (204, None));
    // Batch.
    let (_, batch) = c
        .raw(
            json!([
                {"jsonrpc": "2.0", "id": 1, "method": "sign_in", "params": ["notified", "notified1"]},
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                {"jsonrpc": "2.0", "method": "nope"}
            ])
            .to_string(),
            None,
        )
        .await;
    let batch = batch.unwrap();
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert!(batch[0]["result"]["access_token"].is_string());
    assert_eq!(batch[1]["error"]["code"], -32601);
    let (_, empty) = c.raw("[]".into(), None).await;
    assert_eq!(empty.unwrap()["error"]["code"], -32600);
}

async fn ws_call(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    messages: &[Value],
) -> Vec<Value> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut answers = Vec::new();
    for m in messages {
        ws.send(Message::Text(m.to_string().into())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        answers.push(serde_json::from_str(reply.to_text().unwrap()).unwrap());
    }
    ws.close(None).await.ok();
    answers
}

#[tokio::test]
async fn websocket_with_header_or_query_token() {
    let addr = serve("127.0.0.1:0").await;
    let rpc = |id: u64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let answers = ws_call(
        addr,
        "/api/v1/",
        None,
        &[
            rpc(1, "sign_up", json!(["ws-user", "password"])),
            rpc(2, "sign_in", json!(["ws-user", "password"])),
            rpc(3, "require_token", json!([])),
        ],
    )
    .await;
    assert_eq!(answers[0]["result"]["username"], "ws-user");
    let token = answers[1]["result"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The socket was opened without a token.
    assert_eq!(answers[2]["error"]["code"], -32001);

    let answers = ws_call(
        addr,
        "/api/v1",
        Some(&token),
        &[rpc(4, "require_token", json!([]))],
    )
    .await;
    assert_eq!(answers[0]["result"]["username"], "ws-user");
    let answers = ws_call(
        addr,
        &format!("/api/v1?access_token={token}"),
        None,
        &[rpc(5, "require_token", json!([]))],
    )
    .await;
    assert_eq!(answers[0]["result"]["username"], "ws-user");
    let answers = ws_call(
        addr,
        "/api/v1",
        Some("bad.token.value"),
        &[rpc(6, "require_token", json!([]))],
    )
    .await;
    assert_eq!(answers[0]["error"]["code"], -32001);
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Signs `name` up and in; returns the access token.
async fn token_for(c: &Client, name: &str) -> String {
    let up = c.call("sign_up", json!([name, "password"]), None).await;
    assert_eq!(up["result"]["username"], name, "{up}");
    let signed = c.call("sign_in", json!([name, "password"]), None).await;
    signed["result"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_oversized_body_gets_a_json_rpc_error() {
    let c = client().await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"sign_up","params":["{}","password"]}}"#,
        "a".repeat(jsonrpc::MAX_MESSAGE)
    );
    let res = c
        .http
        .post(&c.url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/json");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["message"], "request body larger than 1 MiB");
}

#[tokio::test]
async fn query_token_authenticates_the_websocket_upgrade_only() {
    let c = client().await;
    let token = token_for(&c, "alice").await;
    // A plain POST with ?access_token= is not authenticated...
    let q = Client {
        http: c.http.clone(),
        url: format!("{}?access_token={token}", c.url),
    };
    let me = q.call("require_token", json!([]), None).await;
    assert_eq!(me["error"]["code"], -32001);
    assert_eq!(me["error"]["message"], "authentication required");
    // ...the header is.
    let me = q.call("require_token", json!([]), Some(&token)).await;
    assert_eq!(me["result"]["username"], "alice");
}

#[tokio::test]
async fn every_input_field_is_bounded() {
    let c = client().await;
    let long_name = "u".repeat(65);
    let long_password = "p".repeat(1025);
    for (name, password) in [
        (long_name.as_str(), "password"),
        ("ab", "password"),
        ("with space", "password"),
        ("caf\u{e9}", "password"),
        ("carol", "short"),
        ("carol", long_password.as_str()),
    ] {
        let r = c.call("sign_up", json!([name, password]), None).await;
        assert_eq!(r["error"]["code"], -32602, "{name:?}: {r}");
    }
    let r = c
        .call("sign_up", json!(["u".repeat(64), "p".repeat(1024)]), None)
        .await;
    assert!(r["result"]["username"].is_string(), "{r}");
    // Sign-in: oversized fields are refused before the database or argon2.
    let huge = "x".repeat(100_000);
    for params in [json!([huge, "password"]), json!(["carol", huge])] {
        let r = c.call("sign_in", params, None).await;
        assert_eq!(r["error"]["code"], -32602, "{r}");
    }
    // A batch is bounded too.
    let batch: Vec<Value> = (0..=jsonrpc::MAX_BATCH as u64)
        .map(|i| rpc(i, "require_token", json!([])))
        .collect();
    let (status, answer) = c.raw(Value::Array(batch).to_string(), None).await;
    assert_eq!(status, 200);
    assert_eq!(answer.unwrap()["error"]["code"], -32600);
}

#[tokio::test]
async fn role_protected_method_over_http() {
    let c = client().await;
    let admin = token_for(&c, "alice").await; // the first user is an admin
    let user = token_for(&c, "bob").await;
    let ok = c.call("list_users", json!([]), Some(&admin)).await;
    assert_eq!(ok["result"]["users"], json!(["alice", "bob"]));
    // 403-equivalent: a valid token without the role.
    let denied = c.call("list_users", json!([]), Some(&user)).await;
    assert_eq!(denied["error"]["code"], -32004);
    assert_eq!(denied["error"]["message"], "the admin role is required");
    // 401-equivalent: no token, or a refused one.
    let missing = c.call("list_users", json!([]), None).await;
    assert_eq!(missing["error"]["code"], -32001);
    let forged = c
        .call("list_users", json!([]), Some(&format!("{user}x")))
        .await;
    assert_eq!(forged["error"]["code"], -32001);
}

#[tokio::test]
async fn sign_out_revokes_the_token() {
    let c = client().await;
    let token = token_for(&c, "alice").await;
    let out = c.call("sign_out", json!([]), Some(&token)).await;
    assert_eq!(out["result"], json!({"signed_out": true}));
    let me = c.call("require_token", json!([]), Some(&token)).await;
    assert_eq!(me["error"]["code"], -32001);
    assert_eq!(me["error"]["message"], "token revoked");
    let again = c.call("sign_out", json!([]), None).await;
    assert_eq!(again["error"]["code"], -32001);
}

#[tokio::test]
async fn role_protected_method_over_websocket() {
    let addr = serve("127.0.0.1:0").await;
    let c = Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/api/v1"),
    };
    let admin = token_for(&c, "alice").await;
    let user = token_for(&c, "bob").await;
    let answers = ws_call(
        addr,
        "/api/v1",
        Some(&admin),
        &[rpc(1, "list_users", json!([]))],
    )
    .await;
    assert_eq!(answers[0]["result"]["users"], json!(["alice", "bob"]));
    let answers = ws_call(
        addr,
        &format!("/api/v1?access_token={user}"),
        None,
        &[
            rpc(2, "list_users", json!([])),
            rpc(3, "require_token", json!([])),
        ],
    )
    .await;
    assert_eq!(answers[0]["error"]["code"], -32004);
    assert_eq!(answers[1]["result"]["username"], "bob");
    let answers = ws_call(addr, "/api/v1", None, &[rpc(4, "list_users", json!([]))]).await;
    assert_eq!(answers[0]["error"]["code"], -32001);
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let addr = serve("127.0.0.1:0").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1"))
        .await
        .unwrap();
    // A message under the limit is answered.
    ws.send(Message::Text(rpc(1, "nope", json!([])).to_string().into()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("-32601"));
    let big = "x".repeat(jsonrpc::MAX_MESSAGE + 1);
    ws.send(Message::Text(big.into())).await.ok();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Close(frame)) = m {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed in time")
    .expect("a Close frame, not a dropped connection");
    assert_eq!(closed.code, CloseCode::Size);
    assert_eq!(u16::from(closed.code), 1009);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_open(addr: std::net::SocketAddr, token: &str) -> Ws {
    let mut request = format!("ws://{addr}/api/v1").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// One call on an open socket.
async fn ws_rpc(ws: &mut Ws, request: Value) -> Value {
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}

/// The Close frame the server sends within `bound` (`None`: none came).
async fn close_within(
    ws: &mut Ws,
    bound: std::time::Duration,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
    tokio::time::timeout(bound, async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => {}
                Err(e) => panic!("the connection dropped without a Close frame: {e}"),
            }
        }
        panic!("the connection ended without a Close frame")
    })
    .await
    .ok()
    .flatten()
}

async fn serve_app(app: jsonrpc::App) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, jsonrpc::router(app)).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_websocket_closes_when_its_token_expires() {
    let db = jsonrpc::common::Db::open(":memory:", None).unwrap();
    let ttl = std::time::Duration::from_secs(2);
    let addr = serve_app(jsonrpc::App::with_ttl(db, SECRET, ttl)).await;
    let c = Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/api/v1"),
    };
    let token = token_for(&c, "alice").await;
    let issued = std::time::Instant::now();
    let mut ws = ws_open(addr, &token).await;
    let me = ws_rpc(&mut ws, rpc(1, "require_token", json!([]))).await;
    assert_eq!(me["result"]["username"], "alice");
    // `exp` is at most `ttl` after the sign-in; the watch's clock has whole
    // seconds, so it fires within a second of `exp`.
    let frame = close_within(&mut ws, std::time::Duration::from_secs(6))
        .await
        .expect("closed after exp");
    let elapsed = issued.elapsed();
    assert!(
        // One second of clock granularity, plus scheduling slack.
        elapsed <= ttl + std::time::Duration::from_millis(2500),
        "{elapsed:?}"
    );
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason, "credentials expired");
}

#[tokio::test]
async fn a_websocket_closes_on_sign_out_and_a_valid_one_stays_open() {
    let addr = serve("127.0.0.1:0").await;
    let c = Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/api/v1"),
    };
    let alice = token_for(&c, "alice").await;
    let bob = token_for(&c, "bob").await;
    let mut alice_ws = ws_open(addr, &alice).await;
    let mut bob_ws = ws_open(addr, &bob).await;
    assert!(ws_rpc(&mut alice_ws, rpc(1, "require_token", json!([]))).await["result"].is_object());
    assert!(ws_rpc(&mut bob_ws, rpc(1, "require_token", json!([]))).await["result"].is_object());

    // Alice signs out over HTTP: her socket closes at once (the revocation
    // store broadcasts the revocation).
    let signed_out = std::time::Instant::now();
    let out = c.call("sign_out", json!([]), Some(&alice)).await;
    assert_eq!(out["result"]["signed_out"], true);
    let frame = close_within(&mut alice_ws, std::time::Duration::from_secs(5))
        .await
        .expect("closed after sign-out");
    assert!(signed_out.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason, "credentials revoked");

    // Bob's socket is still open and answers.
    assert!(
        close_within(&mut bob_ws, std::time::Duration::from_millis(1500))
            .await
            .is_none()
    );
    let me = ws_rpc(&mut bob_ws, rpc(2, "require_token", json!([]))).await;
    assert_eq!(me["result"]["username"], "bob");

    // Bob signs out on the socket itself: the answer, then the Close.
    let out = ws_rpc(&mut bob_ws, rpc(3, "sign_out", json!([]))).await;
    assert_eq!(out["result"]["signed_out"], true);
    let frame = close_within(&mut bob_ws, std::time::Duration::from_secs(5))
        .await
        .expect("closed after its own sign-out");
    assert_eq!(frame.reason, "credentials revoked");

    // An anonymous socket has no credentials to lose.
    let answers = ws_call(
        addr,
        "/api/v1",
        None,
        &[rpc(4, "sign_in", json!(["alice", "password"]))],
    )
    .await;
    assert!(answers[0]["result"]["access_token"].is_string());
}

/// The client of `shared/seeds/000_ea2162d4c9ede4ff.txt`, run unchanged
/// with python3 and httpx against `localhost:8080`.
#[tokio::test]
#[ignore = "needs port 8080, python3 and httpx; run by .ci/run"]
async fn seed_python_client_unchanged() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/seeds/000_ea2162d4c9ede4ff.txt"
    );
    let text = std::fs::read_to_string(seed).expect("../shared/seeds beside the repository");
    let client = text
        .split("```python\n")
        .last()
        .and_then(|b| b.split("```").next())
        .expect("the seed's last python block");
    assert!(client.contains("httpx.post") && client.contains("require_token"));
    let dir = std::env::temp_dir().join(format!("tower-auth-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.py");
    std::fs::write(&path, client).unwrap();

    serve("127.0.0.1:8080").await;
    let out = tokio::process::Command::new("python3")
        .arg(&path)
        .output()
        .await
        .expect("python3");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "client failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
