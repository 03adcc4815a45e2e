//! [`RedisReplayStore`]: DPoP proof replay detection shared by instances.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{RedisConnection, DEFAULT_PREFIX};
use crate::dpop::ReplayStore;
use crate::BoxError;

/// The DPoP [`ReplayStore`] in Redis: a proof's digest (of its key and
/// `jti`) is recorded with `SET … NX EXAT <expiry>`, one atomic command, so
/// a proof replayed on another instance is refused too. Keys:
/// `<prefix>dpop:{<hex digest>}`, gone when the proof could no longer be
/// fresh. Errors and passed deadlines fail closed (`503`).
#[derive(Clone, Debug)]
pub struct RedisReplayStore {
    redis: RedisConnection,
    prefix: Arc<str>,
}

impl RedisReplayStore {
    /// A store on `redis`, keys under the default prefix `tower-auth:`.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            prefix: Arc::from(format!("{DEFAULT_PREFIX}dpop:")),
        }
    }

    /// Keys under `prefix` + `dpop:`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(format!("{prefix}dpop:"));
        self
    }
}

impl ReplayStore for RedisReplayStore {
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'static>> {
        let key = format!("{}{{{}}}", self.prefix, super::hex(&key));
        let redis = self.redis.clone();
        // An entry must outlive `now` by at least a second to be stored.
        let expires_at = expires_at.max(now.saturating_add(1));
        Box::pin(async move {
            let set: Option<String> = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(1)
                            .arg("NX")
                            .arg("EXAT")
                            .arg(expires_at)
                            .query_async(&mut con)
                            .await
                    })
                })
                .await?;
            Ok(set.is_some())
        })
    }
}
