//! A real `redis-server` for the Redis tests: spawned on a free loopback
//! port, without persistence, killed on drop. Tests that only need *a*
//! server use the one `.ci/run` started (`TOWER_AUTH_REDIS_URL`) when set;
//! fault tests always spawn their own, since they kill and stall it.
//!
//! Without `redis-server` on the machine the tests skip with a loud
//! message, unless `TOWER_AUTH_REQUIRE_REDIS` is set (as in CI): then they
//! fail.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

fn binary() -> Option<String> {
    let path = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let found = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some(path)
}

/// Skips (returns `None`) only when no server can be had and CI does not
/// require one.
fn unavailable(why: &str) -> Option<RedisServer> {
    if std::env::var_os("TOWER_AUTH_REQUIRE_REDIS").is_some() {
        panic!("TOWER_AUTH_REQUIRE_REDIS is set but {why}");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {why}. Install Debian's redis-server (or set \
         REDIS_SERVER) to run the Redis tests; CI runs them. !!!!!!!!\n"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A server of this test's own.
    pub fn spawn() -> Option<Self> {
        if binary().is_none() {
            return unavailable("redis-server is not installed");
        }
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.start();
        Some(server)
    }

    /// The URL of a server the test may share with others (never kill it):
    /// the one CI started, or one of this test's own.
    pub fn shared() -> Option<(String, Option<Self>)> {
        if let Ok(url) = std::env::var("TOWER_AUTH_REDIS_URL") {
            return Some((url, None));
        }
        let server = Self::spawn()?;
        Some((server.url(), Some(server)))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again, on the same port, empty) and waits until
    /// it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary().expect("redis-server"))
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut con).is_ok()
    }

    /// Runs one command on a connection of its own (for `CLIENT PAUSE`,
    /// `KEYS`, `PTTL`).
    pub fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        cmd.query(&mut con).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command against `url` on a fresh connection.
pub fn command<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    cmd.query(&mut con).unwrap()
}
