//! End-to-end test in a real browser: headless Chromium, driven through
//! chromedriver with the W3C WebDriver protocol, logs in through the
//! `session` example's HTML form, uses the session across requests, checks
//! that `document.cookie` cannot read the `HttpOnly` session cookie, and
//! logs out.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages, which `.ci/run`
//! installs; run it with
//! `cargo test --all-features --test browser -- --ignored`.

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/session.rs"]
mod session_example;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tower_auth::session::{MemorySessionStore, SessionKey};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and its browser profile, removed on drop.
struct Driver {
    child: Child,
    base: String,
    profile: PathBuf,
    http: reqwest::Client,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let profile = std::env::temp_dir().join(format!(
            "tower-auth-chromium-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            profile,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok();
            if let Some(res) = ready {
                let status: Value = res.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            format!("--user-data-dir={}", driver.profile.display()),
                        ]
                    }
                }
            }
        });
        let created = driver.command("POST", "/session", caps).await;
        let id = created["sessionId"]
            .as_str()
            .expect("a WebDriver session id")
            .to_owned();
        driver.session = Some(id);
        driver
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let res = req.send().await.expect("chromedriver answers");
        let status = res.status();
        let value: Value = res.json().await.expect("chromedriver sends JSON");
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value["value"].clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap_or(""))
    }

    async fn goto(&self, url: &str) {
        self.command("POST", &self.path("/url"), json!({ "url": url }))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            &self.path("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                &self.path("/element"),
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT].as_str().expect("an element").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.command(
            "POST",
            &self.path(&format!("/element/{el}/value")),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.command(
            "POST",
            &self.path(&format!("/element/{el}/click")),
            json!({}),
        )
        .await;
    }

    /// Waits until the page's URL path is `path`.
    async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let current = self.script("return location.pathname").await;
            if current == path && self.script("return document.readyState").await == "complete" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {path}, at {current}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn quit(&mut self) {
        if let Some(id) = self.session.take() {
            self.command("DELETE", &format!("/session/{id}"), Value::Null)
                .await;
        }
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by .ci/run"]
async fn login_session_and_logout_in_headless_chromium() {
    // The example app, with Secure cookies: Chromium accepts them on
    // http://127.0.0.1, a secure context.
    let store = MemorySessionStore::new();
    let layer =
        session_example::session_layer(store.clone(), SessionKey::generate().unwrap(), true);
    let (listener, addr) = common::listener().await;
    let app = session_example::app(layer);
    common::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let site = format!("http://{addr}");

    let mut driver = Driver::start().await;

    // Sign in through the HTML form.
    driver.goto(&format!("{site}/login")).await;
    driver.type_into("input[name=username]", "alice").await;
    driver.type_into("input[name=password]", "secret").await;
    driver.click("#submit").await;
    driver.wait_for_path("/").await;
    let who = driver
        .script("return document.getElementById('who').textContent")
        .await;
    assert_eq!(who, "Signed in as Alice");
    assert_eq!(store.len(), 1);

    // The session works across requests.
    driver.goto(&format!("{site}/me")).await;
    let text = driver.script("return document.body.innerText").await;
    let me: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["scheme"], "Cookie");

    // The browser holds the cookie, HttpOnly and Secure...
    let cookies = driver
        .command("GET", &driver.path("/cookie"), Value::Null)
        .await;
    let session_cookie = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "session")
        .expect("the browser stored the session cookie");
    assert_eq!(session_cookie["httpOnly"], true);
    assert_eq!(session_cookie["secure"], true);
    assert_eq!(session_cookie["sameSite"], "Lax");
    // ... and scripts cannot read it.
    let visible = driver.script("return document.cookie").await;
    assert!(
        !visible.as_str().unwrap().contains("session"),
        "document.cookie exposes the session cookie: {visible}"
    );

    // Sign out with the form on the home page.
    driver.goto(&format!("{site}/")).await;
    driver.click("#logout").await;
    driver.wait_for_path("/login").await;
    assert!(store.is_empty());
    driver.goto(&format!("{site}/me")).await;
    let text = driver.script("return document.body.innerText").await;
    let refused: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(refused["error"], "unauthorized");
    let cookies = driver
        .command("GET", &driver.path("/cookie"), Value::Null)
        .await;
    assert!(
        cookies
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "session"),
        "the removal cookie cleared it: {cookies}"
    );

    driver.quit().await;
}
