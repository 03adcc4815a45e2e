//! Shared state in Redis (or Valkey) for several instances of one app.
//!
//! One [`RedisConnection`] is shared by every Redis-backed store of a
//! process: it wraps the `redis` crate's tokio
//! [`ConnectionManager`], one multiplexed
//! connection that reconnects by itself after Redis restarts or a network
//! failure, so the app recovers without a restart.
//!
//! - [`RedisSessionStore`] (with the `session` feature) implements the
//!   [`SessionStore`](crate::session::SessionStore) contract: versioned
//!   compare-and-swap updates, `touch` and `delete` are each one Lua script
//!   or command, so concurrent requests on different instances cannot lose
//!   an update or bring a destroyed session back.
//! - [`RedisRevocationStore`] (with the `jwt` feature) implements the
//!   [`RevocationStore`](crate::jwt::RevocationStore): the deny-list and
//!   refresh rotation in Redis, and a local mirror of the deny-list fed by
//!   pub/sub, so revocation checks (verified-token cache hits included)
//!   cost no round trip.
//! - [`RedisReplayStore`] (with the `dpop` feature): DPoP proof replay
//!   detection shared by every instance (`SET NX EXAT`).
//!
//! # Failing closed, never hanging
//!
//! Every call has a deadline ([`RedisConnection::timeout`], default
//! [`DEFAULT_REDIS_TIMEOUT`]); the connection attempt has the same one. An
//! error or a passed deadline fails the store call, which the layers turn
//! into `503` `unavailable` (gRPC `14`). Nothing is admitted when Redis
//! cannot answer. The first failure after a success is logged as a warning
//! (the kind of error only, never a key or a value) and the recovery as an
//! info event, so a burst of failures logs once, not once per request.
//!
//! # Key layout
//!
//! Every key starts with a configurable prefix (default `tower-auth:`) and
//! names no secret: session records live under
//! `<prefix>session:{<hex SHA-256 of the session id>}` (the
//! [`StoreKey`](crate::session::StoreKey)); revocations as described on
//! `RedisRevocationStore`. Every script touches one key, so
//! the layout works on Redis Cluster as is; the braces are a hash tag that
//! keeps any future per-session key on the same slot.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "session")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tower_auth::redis::{RedisConnection, RedisSessionStore};
//! use tower_auth::session::{SessionKey, SessionLayer};
//!
//! let redis = RedisConnection::open("redis://127.0.0.1:6379/")?.timeout(Duration::from_millis(500));
//! let store = RedisSessionStore::new(redis).prefix("my-app:");
//! let layer = SessionLayer::new(store, SessionKey::from_bytes(&[7; 64])?);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

// The stores are what call into the connection; with `redis` alone there
// is only the connection type to configure.
#![cfg_attr(not(any(feature = "session", feature = "jwt")), allow(dead_code))]

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo};

use crate::timeout::{deadline, Elapsed};
use crate::BoxError;

#[cfg(feature = "rate-limit")]
mod rate_limit;
#[cfg(feature = "dpop")]
mod replay;
#[cfg(feature = "jwt")]
mod revocation;
#[cfg(feature = "session")]
mod session;
#[cfg(feature = "rate-limit")]
mod sign_in;

#[cfg(feature = "rate-limit")]
pub use rate_limit::{
    RedisAttempt, RedisLimit, RedisRateLimitFuture, RedisRateLimitLayer, RedisRateLimitService,
    RedisRateLimiter,
};
#[cfg(feature = "dpop")]
pub use replay::RedisReplayStore;
#[cfg(feature = "jwt")]
pub use revocation::{
    RedisRevocationStore, DEFAULT_MIRROR_CAPACITY, DEFAULT_REDIS_FAMILIES_PER_SUBJECT,
};
#[cfg(feature = "session")]
pub use session::{RedisSessionStore, DEFAULT_MAX_RECORD_BYTES};
#[cfg(feature = "rate-limit")]
pub use sign_in::{RedisSignInStore, DEFAULT_HOLD_LEASE, DEFAULT_KNOWN_PER_GROUP};

/// The default deadline of one Redis call: 500 ms. Loopback round trips
/// take well under a millisecond; a call this slow means Redis is down,
/// stalled or overloaded, and the request is better refused (`503`) than
/// held.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The default prefix of every key: `tower-auth:`.
pub const DEFAULT_PREFIX: &str = "tower-auth:";

/// A Redis call failed or did not answer in time. Its text names the kind
/// of failure only, never a key, a value or the connection URL's password.
#[derive(Debug)]
pub struct RedisError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Timeout(Duration),
    Redis(redis::RedisError),
    Reply(&'static str),
}

impl RedisError {
    /// Whether the call's deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout(_))
    }

    pub(crate) fn reply(what: &'static str) -> Self {
        Self {
            kind: ErrorKind::Reply(what),
        }
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Timeout(after) => write!(f, "redis did not answer within {after:?}"),
            // The category and code only: a redis error's detail can quote
            // a command's arguments.
            ErrorKind::Redis(e) => write!(f, "redis error ({:?})", e.kind()),
            ErrorKind::Reply(what) => write!(f, "unexpected reply from redis: {what}"),
        }
    }
}

impl std::error::Error for RedisError {}

/// A shared, self-reconnecting connection to one Redis server; cheap to
/// clone (an `Arc`). See the [module docs](self).
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    timeout: Duration,
    manager: OnceLock<ConnectionManager>,
    failing: AtomicBool,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisConnection")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// A connection to the server at `url` (`redis://host:port/db`,
    /// `redis://:password@host/`, `rediss://` needs the `redis` crate's TLS
    /// features). Nothing is connected yet: the first call connects, and
    /// an app can start while Redis is down (its requests get `503` until
    /// Redis is up).
    ///
    /// # Errors
    ///
    /// The URL cannot be parsed.
    pub fn open(url: impl IntoConnectionInfo) -> Result<Self, RedisError> {
        let client = Client::open(url).map_err(|e| RedisError {
            kind: ErrorKind::Redis(e),
        })?;
        Ok(Self::from_client(client))
    }

    /// A connection made with a `redis` client built by the caller (TLS,
    /// RESP3, credentials).
    pub fn from_client(client: Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                timeout: DEFAULT_REDIS_TIMEOUT,
                manager: OnceLock::new(),
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// The deadline of each call, connecting included (default
    /// [`DEFAULT_REDIS_TIMEOUT`]). Set it before the first call and before
    /// cloning: clones share the setting.
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            client: shared.client.clone(),
            timeout: shared.timeout,
            manager: OnceLock::new(),
            failing: AtomicBool::new(false),
        });
        Self {
            inner: Arc::new(Inner { timeout, ..inner }),
        }
    }

    /// The deadline of each call.
    pub fn call_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The `redis` client (for connections of their own, such as pub/sub).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(manager) = self.inner.manager.get() {
            return Ok(manager.clone());
        }
        let timeout = self.inner.timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection is retried on the next call rather than in a long
            // backoff loop, so a restarted Redis is used at once.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            .map_err(|e| RedisError {
                kind: ErrorKind::Redis(e),
            })?;
        Ok(self.inner.manager.get_or_init(|| manager).clone())
    }

    /// Runs one command or script invocation under the deadline.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        call: impl FnOnce(ConnectionManager) -> CallFuture<T>,
    ) -> Result<T, BoxError> {
        let result = match self.manager() {
            Ok(manager) => match deadline(call(manager), Some(self.inner.timeout)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(RedisError {
                    kind: ErrorKind::Redis(e),
                }),
                Err(Elapsed { after }) => Err(RedisError {
                    kind: ErrorKind::Timeout(after),
                }),
            },
            Err(e) => Err(e),
        };
        self.observe(result.as_ref().err());
        result.map_err(Into::into)
    }

    /// Logs the first failure of a burst and the recovery after it.
    fn observe(&self, error: Option<&RedisError>) {
        match error {
            Some(e) => {
                crate::observe::store_error("redis", e.is_timeout());
                if !self.inner.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unavailable: failing requests closed (503)");
                }
            }
            None => {
                if self.inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again");
                }
            }
        }
    }
}

/// Lower-case hex of `bytes`, for key names.
#[cfg_attr(not(any(feature = "jwt", feature = "rate-limit")), allow(dead_code))]
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The future of one call handed to [`RedisConnection::run`].
pub(crate) type CallFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = redis::RedisResult<T>> + Send>>;
