//! Long-lived connections end with their credentials: a WebSocket opened
//! with a cookie session closes when the session is destroyed (a logout in
//! another request) or expires, and stays open while it lives; a JWT watch
//! ends on revocation through the memory store's broadcast; a tonic server
//! stream ends with UNAUTHENTICATED.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower_auth::jwt::{MemoryRevocationStore, RevocationStore, TokenIssuer};
use tower_auth::lifetime::{CloseCodes, CredentialWatch, Ended};
use tower_auth::session::{MemorySessionStore, Session, SessionKey, SessionLayer};
use tower_auth::Authenticator;

/// Echoes text messages until the credentials end, then closes with the
/// application code (4001 / 4003) and the reason.
async fn echo(mut socket: WebSocket, watch: CredentialWatch) {
    let served = watch
        .run_until_ended(async {
            while let Some(Ok(m)) = socket.recv().await {
                if let AxumMessage::Text(t) = m {
                    if socket.send(AxumMessage::Text(t)).await.is_err() {
                        break;
                    }
                }
            }
        })
        .await;
    if let Err(ended) = served {
        let frame = CloseFrame {
            code: ended.close_code(CloseCodes::Application),
            reason: ended.reason().into(),
        };
        let _ = socket.send(AxumMessage::Close(Some(frame))).await;
    }
}

async fn ws(
    upgrade: WebSocketUpgrade,
    watch: Option<Extension<CredentialWatch>>,
    session: Session,
) -> axum::response::Response {
    // Only a signed-in session may open the socket.
    let (Some(Extension(watch)), true) = (watch, session.contains_key("user")) else {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    };
    upgrade.on_upgrade(move |socket| echo(socket, watch))
}

fn app(store: MemorySessionStore, absolute: Duration) -> Router {
    let layer = SessionLayer::builder(store, SessionKey::generate().unwrap())
        .secure(false)
        .absolute_timeout(absolute)
        .watch_sessions(Duration::from_secs(1))
        .build()
        .unwrap();
    Router::new()
        .route(
            "/login",
            post(|session: Session| async move {
                session.insert("user", "alice").unwrap();
                "ok"
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.destroy();
                "bye"
            }),
        )
        .route("/ws", get(ws))
        .layer(layer)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Signs in; returns the `Cookie` header to send.
async fn login(addr: SocketAddr) -> String {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr, cookie: &str) -> Ws {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::Text("ping".into())).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.to_text().unwrap(), "ping");
    ws
}

async fn close_within(
    ws: &mut Ws,
    bound: Duration,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
    tokio::time::timeout(bound, async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => {}
                Err(e) => panic!("dropped without a Close frame: {e}"),
            }
        }
        panic!("ended without a Close frame")
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn a_websocket_closes_when_its_session_is_destroyed() {
    let store = MemorySessionStore::new();
    let addr = serve(app(store.clone(), Duration::from_secs(3600))).await;
    let alice = login(addr).await;
    let other = login(addr).await;
    let mut ws = open(addr, &alice).await;
    let mut other_ws = open(addr, &other).await;
    assert_eq!(store.len(), 2);

    // Logout from another request (another tab).
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/logout"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let destroyed = Instant::now();
    let frame = close_within(&mut ws, Duration::from_secs(5))
        .await
        .expect("closed after the session was destroyed");
    // One check interval, plus scheduling.
    assert!(destroyed.elapsed() < Duration::from_millis(3500));
    assert_eq!(u16::from(frame.code), 4003);
    assert_eq!(frame.reason, "credentials revoked");

    // The other session's socket stays open.
    assert!(close_within(&mut other_ws, Duration::from_millis(1500))
        .await
        .is_none());
    other_ws.send(Message::Text("still".into())).await.unwrap();
    let echo = other_ws.next().await.unwrap().unwrap();
    assert_eq!(echo.to_text().unwrap(), "still");
}

#[tokio::test]
async fn a_websocket_closes_at_the_session_expiry() {
    let store = MemorySessionStore::new();
    let addr = serve(app(store, Duration::from_secs(2))).await;
    let started = Instant::now();
    let cookie = login(addr).await;
    let mut ws = open(addr, &cookie).await;
    let frame = close_within(&mut ws, Duration::from_secs(6))
        .await
        .expect("closed at the absolute timeout");
    assert!(started.elapsed() <= Duration::from_millis(4500));
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason, "credentials expired");
}

#[tokio::test]
async fn no_watch_without_a_live_session() {
    let addr = serve(app(MemorySessionStore::new(), Duration::from_secs(3600))).await;
    let request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

/// The watch of a JWT ends when the memory store broadcasts the revocation
/// of its token, and its wait leaves no subscription behind.
#[tokio::test]
async fn a_jwt_watch_ends_on_revocation_and_unsubscribes() {
    let store = MemoryRevocationStore::new();
    let issuer = TokenIssuer::hs256(b"a test secret that is long enough!!")
        .unwrap()
        .revocation_store(store.clone())
        .build()
        .unwrap();
    let auth = issuer
        .authenticator::<serde_json::Value>()
        .watch_credentials(Duration::from_secs(3600));
    let pair = issuer.issue("alice", &()).unwrap();
    let other = issuer.issue("bob", &()).unwrap();
    let watch_of = |token: &str| {
        let req = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let auth = auth.clone();
        async move {
            let a = auth.authenticate_request(&parts).await.unwrap().unwrap();
            a.extensions().get::<CredentialWatch>().cloned().unwrap()
        }
    };
    let watch = watch_of(&pair.access_token).await;
    let bob = watch_of(&other.access_token).await;
    assert!(watch.expiry().is_some());
    let waiting = tokio::spawn(async move { watch.ended().await });
    let bob_waiting = tokio::spawn(async move { bob.ended().await });
    // Both waits subscribe to the store's broadcast.
    tokio::time::timeout(Duration::from_secs(5), async {
        while store.broadcast().subscriber_count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both watches subscribed");
    let started = Instant::now();
    issuer.logout(Some(&pair.access_token), None).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("woken by the broadcast, not the hourly check")
        .unwrap();
    assert_eq!(ended, Ended::Revoked);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Bob's watch still waits; dropping it unsubscribes.
    assert!(!bob_waiting.is_finished());
    assert_eq!(store.broadcast().subscriber_count(), 1);
    bob_waiting.abort();
    let _ = bob_waiting.await;
    assert_eq!(store.broadcast().subscriber_count(), 0);
    // A store revocation of a family ends the watches of its tokens too.
    let pair = issuer.issue("carol", &()).unwrap();
    let watch = watch_of(&pair.access_token).await;
    let family = serde_json::from_slice::<serde_json::Value>(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            pair.access_token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap()["fam"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = tokio::spawn(async move { watch.ended().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store
        .revoke(tower_auth::jwt::Revocable::Family(&family), u64::MAX)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ended::Revoked);
}

/// Many connections opened and closed leave nothing registered: memory
/// stays bounded.
#[tokio::test]
async fn finished_watches_leave_no_subscription() {
    let store = MemoryRevocationStore::new();
    let issuer = TokenIssuer::hs256(b"a test secret that is long enough!!")
        .unwrap()
        .revocation_store(store.clone())
        .build()
        .unwrap();
    let auth = issuer
        .authenticator::<serde_json::Value>()
        .watch_credentials(Duration::from_secs(3600));
    let pair = issuer.issue("alice", &()).unwrap();
    let req = http::Request::get("/")
        .header("authorization", format!("Bearer {}", pair.access_token))
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    for _ in 0..1000 {
        let a = auth.authenticate_request(&parts).await.unwrap().unwrap();
        let watch = a.extensions().get::<CredentialWatch>().cloned().unwrap();
        // A connection that ends by itself before its credentials.
        let r = watch
            .run_until_ended(tokio::time::sleep(Duration::from_millis(1)))
            .await;
        assert_eq!(r, Ok(()));
    }
    assert_eq!(store.broadcast().subscriber_count(), 0);
    assert!(store.denied_len() == 0);
}

/// A tonic server stream guarded by a watch ends with UNAUTHENTICATED.
#[tokio::test]
async fn a_guarded_tonic_stream_ends_unauthenticated() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let watch = CredentialWatch::new().expires_at(now + 1);
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
        Duration::from_millis(100),
    ))
    .map(|_| Ok::<_, tonic::Status>("tick"));
    let guarded = watch.guard_stream(ticks, |ended| {
        Err(tonic::Status::unauthenticated(ended.reason()))
    });
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(5), guarded.collect::<Vec<_>>())
        .await
        .expect("the stream ended with the credentials");
    let (last, before) = items.split_last().unwrap();
    assert!(!before.is_empty() && before.iter().all(Result::is_ok));
    let status = last.as_ref().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "credentials expired");
    assert_eq!(
        Ended::Expired.grpc_code(),
        tonic::Code::Unauthenticated as u8
    );
}
