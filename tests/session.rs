//! Cookie sessions over TCP: the `session` example's Router served on
//! 127.0.0.1:0 and driven with reqwest, cookies handled by hand so every
//! `Set-Cookie` is checked.

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/session.rs"]
mod session_example;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_auth::session::{
    MemorySessionStore, SessionKey, SessionLayer, SessionRecord, SessionStore, StoreKey,
    UpdateOutcome,
};
use tower_auth::BoxError;

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
}

async fn serve(sessions: SessionLayer) -> Server {
    let (listener, addr) = common::listener().await;
    let app = session_example::app(sessions);
    common::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server { addr, client }
}

async fn default_server() -> (Server, MemorySessionStore) {
    let store = MemorySessionStore::new();
    let layer =
        session_example::session_layer(store.clone(), SessionKey::generate().unwrap(), true);
    (serve(layer).await, store)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn set_cookie(&self) -> Option<String> {
        let all: Vec<_> = self.headers.get_all(SET_COOKIE).iter().collect();
        assert!(all.len() <= 1, "several Set-Cookie: {all:?}");
        all.first().map(|v| v.to_str().unwrap().to_owned())
    }

    /// The `name=value` part of the Set-Cookie.
    fn cookie(&self) -> String {
        let set = self.set_cookie().expect("a Set-Cookie");
        set.split(';').next().unwrap().to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.unwrap();
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        self.send(req).await
    }

    /// A form POST as a browser on the same origin sends it.
    async fn post_form(&self, path: &str, body: &str, cookie: Option<&str>) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", format!("http://{}", self.addr))
            .header("sec-fetch-site", "same-origin")
            .body(body.to_owned());
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        self.send(req).await
    }

    async fn login(&self, cookie: Option<&str>) -> Reply {
        self.post_form("/login", "username=alice&password=secret", cookie)
            .await
    }
}

#[tokio::test]
async fn login_sets_the_cookie_with_the_right_flags() {
    let (server, _) = default_server().await;
    let r = server.login(None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/");
    let set = r.set_cookie().unwrap();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("session="), "{set}");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=7200",
    ] {
        assert!(attrs.contains(&flag), "{flag} missing in {set}");
    }
    assert!(!set.contains("Domain"), "{set}");

    let me = server.get("/me", Some(&r.cookie())).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["username"], "alice");
    assert_eq!(me.json()["scheme"], "Cookie");
    // reading the session sets no cookie
    assert!(me.set_cookie().is_none());
}

#[tokio::test]
async fn wrong_password_sets_no_cookie() {
    let (server, store) = default_server().await;
    for body in [
        "username=alice&password=wrong",
        "username=mallory&password=secret",
        "username=alice&password=",
    ] {
        let r = server.post_form("/login", body, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(r.body.contains("Invalid username or password"));
        assert!(r.set_cookie().is_none());
    }
    assert!(store.is_empty());
}

#[tokio::test]
async fn the_id_changes_on_login() {
    let (server, store) = default_server().await;
    let first = server.login(None).await.cookie();
    // logging in again on the same browser (or with an id an attacker
    // planted) issues a new id and kills the old one
    let second = server.login(Some(&first)).await.cookie();
    assert_ne!(first, second);
    assert_eq!(store.len(), 1);
    assert_eq!(
        server.get("/me", Some(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.get("/me", Some(&second)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_clears_the_session() {
    let (server, store) = default_server().await;
    let cookie = server.login(None).await.cookie();
    let r = server.post_form("/logout", "", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let set = r.set_cookie().unwrap();
    assert!(set.starts_with("session=;"), "{set}");
    assert!(set.contains("Max-Age=0"), "{set}");
    assert!(set.contains("Secure") && set.contains("Path=/"), "{set}");
    assert!(store.is_empty());
    let r = server.get("/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tampered_and_forged_cookies_are_rejected() {
    let (server, _) = default_server().await;
    let cookie = server.login(None).await.cookie();
    let value = cookie.strip_prefix("session=").unwrap();
    let mut tampered = value.as_bytes().to_vec();
    tampered[50] = if tampered[50] == b'a' { b'b' } else { b'a' };
    let tampered = format!("session={}", String::from_utf8(tampered).unwrap());
    let random_id = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let forged_unsigned = format!("session={random_id}");
    let forged_mac = format!("session={}{random_id}", &value[..44]);
    for bad in [
        tampered,
        forged_unsigned,
        forged_mac,
        "session=1".to_owned(),
    ] {
        let r = server.get("/me", Some(&bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r.json()["error"], "unauthorized");
        // ignored, not removed: a removal could wipe a newer, valid cookie
        assert!(r.set_cookie().is_none(), "{bad}");
    }
}

#[tokio::test]
async fn the_store_never_sees_raw_ids() {
    let (server, store) = default_server().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let cookie = server.login(None).await.cookie();
        let value = cookie.strip_prefix("session=").unwrap().to_owned();
        ids.push(URL_SAFE_NO_PAD.decode(&value[44..]).unwrap());
    }
    let keys = store.keys();
    assert_eq!(keys.len(), 3);
    for id in &ids {
        assert_eq!(id.len(), 32, "256-bit ids");
        let digest = StoreKey::from_bytes(Sha256::digest(id).into());
        assert!(keys.contains(&digest), "filed under the SHA-256 of the id");
        for key in &keys {
            assert_ne!(&key.as_bytes()[..], &id[..]);
        }
    }
}

#[tokio::test]
async fn bearer_or_session_on_the_api() {
    let (server, _) = default_server().await;
    let r = server
        .send(
            server
                .client
                .get(server.url("/me"))
                .bearer_auth("valid_token_123"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["scheme"], "Bearer");
    assert!(r.set_cookie().is_none());
    let r = server.get("/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(
        challenges,
        [r#"Bearer realm="example""#, r#"Cookie realm="session""#]
    );
    // a bad token decides even when a good cookie is present
    let cookie = server.login(None).await.cookie();
    let r = server
        .send(
            server
                .client
                .get(server.url("/me"))
                .bearer_auth("stolen")
                .header(COOKIE, &cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn csrf_accept_and_reject() {
    let (server, store) = default_server().await;
    let cookie = server.login(None).await.cookie();
    let cross_site = |origin: &str, site: Option<&str>| {
        let mut req = server
            .client
            .post(server.url("/logout"))
            .header(COOKIE, &cookie)
            .header("origin", origin);
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req
    };
    for (origin, site) in [
        ("https://evil.example", Some("cross-site")),
        ("https://evil.example", None),
        ("null", None),
        (&*format!("http://{}", server.addr), Some("same-site")),
    ] {
        let r = server.send(cross_site(origin, site)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin} {site:?}");
        assert_eq!(r.json()["error"], "csrf_rejected");
        assert!(r.set_cookie().is_none());
    }
    // the session survived every attempt
    assert_eq!(store.len(), 1);
    assert_eq!(
        server.get("/me", Some(&cookie)).await.status,
        StatusCode::OK
    );

    // login CSRF: a cross-site login form is refused too
    let r = server
        .send(
            server
                .client
                .post(server.url("/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body("username=alice&password=secret"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // a non-browser client (no Origin, no Sec-Fetch-Site) and a same-origin
    // browser request pass
    let r = server
        .send(
            server
                .client
                .post(server.url("/logout"))
                .header(COOKIE, &cookie)
                .header("origin", format!("http://{}", server.addr)),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(store.is_empty());
}

#[tokio::test]
async fn concurrent_requests_on_one_session() {
    let (server, store) = default_server().await;
    let cookie = server.login(None).await.cookie();
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let server = Arc::clone(&server);
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            server.get("/me", Some(&cookie)).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["username"], "alice");
        assert!(r.set_cookie().is_none());
    }
    // a logout racing with reads: afterwards the session is gone for good
    let logout = server.post_form("/logout", "", Some(&cookie));
    let read = server.get("/me", Some(&cookie));
    let (logout, _) = tokio::join!(logout, read);
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert!(store.is_empty());
    assert_eq!(
        server.get("/me", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn idle_timeout_over_the_wire() {
    let now = Arc::new(Mutex::new(SystemTime::now()));
    let clock = {
        let now = Arc::clone(&now);
        move || *now.lock().unwrap()
    };
    let store = MemorySessionStore::new().clock(clock.clone());
    let layer = SessionLayer::builder(store.clone(), SessionKey::generate().unwrap())
        .idle_timeout(Some(Duration::from_secs(60)))
        .clock(clock)
        .build()
        .unwrap();
    let server = serve(layer).await;
    let cookie = server.login(None).await.cookie();
    *now.lock().unwrap() += Duration::from_secs(59);
    assert_eq!(
        server.get("/me", Some(&cookie)).await.status,
        StatusCode::OK
    );
    *now.lock().unwrap() += Duration::from_secs(61);
    let r = server.get("/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // the record is deleted; the cookie (past its Max-Age in a browser) is
    // ignored, not removed
    assert!(r.set_cookie().is_none());
    assert!(store.is_empty());
}

/// A store whose backend is down.
struct Down;

impl SessionStore for Down {
    fn load(
        &self,
        _: &StoreKey,
    ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
        std::future::ready(Err("connection refused".into()))
    }
    fn save(
        &self,
        _: &StoreKey,
        _: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        std::future::ready(Err("connection refused".into()))
    }
    fn update(
        &self,
        _: &StoreKey,
        _: &SessionRecord,
        _: u64,
    ) -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send {
        std::future::ready(Err("connection refused".into()))
    }
    fn touch(
        &self,
        _: &StoreKey,
        _: SystemTime,
        _: SystemTime,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::ready(Err("connection refused".into()))
    }
    fn delete(&self, _: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::ready(Err("connection refused".into()))
    }
}

#[tokio::test]
async fn a_store_outage_fails_closed() {
    let key = SessionKey::generate().unwrap();
    let working = serve(SessionLayer::new(MemorySessionStore::new(), key.clone())).await;
    let cookie = working.login(None).await.cookie();
    let down = serve(SessionLayer::new(Down, key)).await;
    let r = down.get("/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "unavailable");
    assert!(!r.body.contains("refused"));
    let r = down.login(None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.set_cookie().is_none());
}

/// RFC 9110 §11.6.1: a `401` carries a `WWW-Authenticate`, also when the
/// only way in is a session cookie.
#[tokio::test]
async fn a_session_only_401_has_a_challenge() {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_auth::extract::Auth;
    use tower_auth::session::SessionAuthenticator;
    use tower_auth::{AuthLayer, Identity, Scheme};

    async fn me(Auth(user): Auth<String>) -> String {
        user
    }
    let users = || SessionAuthenticator::new("user", |u: &String| Identity::new(u, Scheme::Cookie));
    for (auth, challenge) in [
        (users(), r#"Cookie realm="session""#),
        (users().realm("shop"), r#"Cookie realm="shop""#),
    ] {
        let app = axum::Router::new()
            .route("/me", get(me))
            .layer(AuthLayer::new(auth))
            .layer(SessionLayer::new(
                MemorySessionStore::new(),
                SessionKey::generate().unwrap(),
            ));
        let req = http::Request::get("/me").body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = res.headers().get_all("www-authenticate").iter().collect();
        assert_eq!(challenges, [challenge]);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "unauthorized", "message": "authentication required"})
        );
    }
}

/// A page authenticated by the session cookie varies on it, once.
#[tokio::test]
async fn cookie_authenticated_responses_vary_on_cookie_once() {
    let (server, _) = default_server().await;
    let cookie = server.login(None).await.cookie();
    let r = server.get("/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    let vary: Vec<_> = r.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["Cookie"]);
}

/// Issue "Hardening II", item 5: a WebSocket handshake is a `GET`, and
/// `CsrfLayer` let a cookie-authenticated one be opened cross-site (CSWSH).
/// A real handshake through axum, with a tokio-tungstenite client.
#[tokio::test]
async fn cross_site_websocket_handshakes_are_refused() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::get;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{self, Error as WsError};
    use tower_auth::session::{CsrfLayer, Session};

    let store = MemorySessionStore::new();
    let sessions = SessionLayer::builder(store.clone(), SessionKey::generate().unwrap())
        .secure(false)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/login",
            get(|session: axum::Extension<Session>| async move {
                session.insert("user", "alice").unwrap();
                "ok"
            }),
        )
        .route(
            "/ws",
            get(
                |ws: WebSocketUpgrade, session: axum::Extension<Session>| async move {
                    let user: String = session.get("user").unwrap().unwrap_or_default();
                    ws.on_upgrade(move |mut socket| async move {
                        let _ = socket.send(Message::Text(user.into())).await;
                    })
                },
            ),
        )
        .layer(CsrfLayer::new())
        .layer(sessions);
    let (listener, addr) = common::listener().await;
    common::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });

    let res = reqwest::get(format!("http://{addr}/login")).await.unwrap();
    let cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let handshake = |origin: String| {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };

    // cross-site: refused before the upgrade
    match handshake("https://evil.example".to_owned()).await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "csrf_rejected");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a cross-site WebSocket was opened with the user's cookie"),
    }

    // same-origin: upgraded, and the socket belongs to the session
    let (mut socket, res) = handshake(format!("http://{addr}")).await.unwrap();
    assert_eq!(res.status(), 101);
    match socket.next().await {
        Some(Ok(tungstenite::Message::Text(text))) => assert_eq!(text.as_str(), "alice"),
        other => panic!("unexpected message: {other:?}"),
    }
}
