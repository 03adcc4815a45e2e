//! A real OpenID provider for the end-to-end tests: panva's `oidc-provider`
//! (OpenID certified) run by Node.js from the harness in
//! `tests/oidc-provider/` (`server.mjs`, pinned in `package-lock.json`).
//! Each [`OidcProvider`] is a `node` process of the test's own, on a
//! loopback port, killed on drop; it can be killed and restarted on the
//! same port (same issuer) with other signing keys.
//!
//! The harness is `TOWER_AUTH_OIDC_PROVIDER` (relative to the crate root)
//! or `tests/oidc-provider`, installed with `npm ci --prefix <dir>` (as
//! `.ci/run` does); `NODE` names the node binary (default `node`). Without
//! node or the installed harness the tests skip with a loud message, unless
//! `TOWER_AUTH_REQUIRE_OIDC_PROVIDER` is set (as in CI): then they fail.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The installed harness and the node binary that runs it.
#[derive(Debug, Clone)]
pub struct Harness {
    dir: PathBuf,
    node: String,
}

/// Skips (returns `None`) only when CI does not require the provider.
fn unavailable(why: &str) -> Option<Harness> {
    if std::env::var_os("TOWER_AUTH_REQUIRE_OIDC_PROVIDER").is_some() {
        panic!("TOWER_AUTH_REQUIRE_OIDC_PROVIDER is set but {why}");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {why}. Install Node.js (>= 18) and run \
         `npm ci --prefix tests/oidc-provider` to run the end-to-end OpenID \
         provider tests; CI runs them. !!!!!!!!\n"
    );
    None
}

impl Harness {
    /// The harness, if node and the installed `oidc-provider` are there.
    pub async fn find() -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = match std::env::var_os("TOWER_AUTH_OIDC_PROVIDER") {
            Some(dir) => root.join(dir),
            None => root.join("tests/oidc-provider"),
        };
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        let runs = Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !runs {
            return unavailable(&format!("`{node} --version` does not run"));
        }
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            return unavailable(&format!(
                "oidc-provider is not installed in {}",
                dir.display()
            ));
        }
        Some(Harness { dir, node })
    }

    /// A fresh private RSA JWK (RS256) named `kid`, made by node's crypto.
    pub async fn key(&self, kid: &str) -> Value {
        self.jwk(kid, None).await
    }

    /// The private RSA key of the PEM file `pem` as a JWK named `kid`: a
    /// provider key the test can sign with too.
    pub async fn key_from_pem(&self, kid: &str, pem: &Path) -> Value {
        self.jwk(kid, Some(pem)).await
    }

    async fn jwk(&self, kid: &str, pem: Option<&Path>) -> Value {
        let mut command = Command::new(&self.node);
        command
            .arg(self.dir.join("server.mjs"))
            .args(["--genkey", kid]);
        if let Some(pem) = pem {
            command.arg("--from-pem").arg(pem);
        }
        let out = command
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("run node --genkey");
        assert!(out.status.success(), "node server.mjs --genkey failed");
        serde_json::from_slice(&out.stdout).expect("a JWK")
    }
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-auth-oidc-provider-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One provider process (or none, between [`kill`](Self::kill) and
/// [`restart`](Self::restart)).
#[derive(Debug)]
pub struct OidcProvider {
    harness: Harness,
    resources: Vec<String>,
    port: u16,
    issuer: String,
    child: Option<(Child, ChildStdout)>,
    scratch: Scratch,
    starts: usize,
}

impl OidcProvider {
    /// Starts a provider on a free port signing with the first of `keys`
    /// (private JWKs) and publishing all of them; `resources` are the
    /// accepted audiences, the first the default.
    pub async fn start(harness: &Harness, keys: &[Value], resources: &[&str]) -> Self {
        let mut provider = OidcProvider {
            harness: harness.clone(),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
            port: 0,
            issuer: String::new(),
            child: None,
            scratch: Scratch::new(),
            starts: 0,
        };
        provider.spawn(keys).await;
        provider
    }

    async fn spawn(&mut self, keys: &[Value]) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let jwks = self.scratch.0.join(format!("jwks-{}.json", self.starts));
        std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
        let log = self.scratch.0.join(format!("stderr-{}.log", self.starts));
        let mut command = Command::new(&self.harness.node);
        command
            .arg(self.harness.dir.join("server.mjs"))
            .arg("--jwks")
            .arg(&jwks)
            .args(["--port", &self.port.to_string()])
            .current_dir(&self.harness.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for resource in &self.resources {
            command.args(["--resource", resource]);
        }
        let mut child = command.spawn().expect("spawn node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), lines.read_line(&mut line)).await;
        let issuer = line.trim().strip_prefix("listening ").map(str::to_owned);
        let Some(issuer) = issuer.filter(|_| matches!(read, Ok(Ok(n)) if n > 0)) else {
            let _ = child.kill().await;
            panic!(
                "the OpenID provider did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        if self.port == 0 {
            self.port = issuer
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("issuer with a port");
            self.issuer = issuer;
        } else {
            assert_eq!(issuer, self.issuer, "restarted with the same issuer");
        }
        self.child = Some((child, lines.into_inner()));
    }

    /// The issuer, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Kills the provider (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills the provider and starts it again on the same port with `keys`.
    pub async fn restart(&mut self, keys: &[Value]) {
        self.kill().await;
        self.spawn(keys).await;
    }

    /// The token endpoint's answer to a client-credentials grant for
    /// `client` (secret `<client>-secret`), asking for `scope` and
    /// `resource` when given.
    pub async fn token_response(
        &self,
        client: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> (reqwest::StatusCode, Value) {
        let http = reqwest::Client::new();
        let discovery: Value = http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let endpoint = discovery["token_endpoint"]
            .as_str()
            .expect("token_endpoint");
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.map(|s| ("scope", s)));
        form.extend(resource.map(|r| ("resource", r)));
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let res = http
            .post(endpoint)
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    /// An access token for `client`: see [`token_response`](Self::token_response).
    pub async fn token(&self, client: &str, scope: Option<&str>, resource: Option<&str>) -> String {
        let (status, body) = self.token_response(client, scope, resource).await;
        assert_eq!(status, 200, "token endpoint: {body}");
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// `application/x-www-form-urlencoded` escaping of a value.
fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The decoded JOSE header of a compact JWS (unverified; for assertions).
pub fn header(token: &str) -> Value {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
