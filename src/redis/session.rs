//! [`RedisSessionStore`]: the session store contract in Redis.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{RedisConnection, RedisError, DEFAULT_PREFIX};
use crate::session::{SessionData, SessionRecord, SessionStore, StoreKey, UpdateOutcome};
use crate::BoxError;

/// The default largest session record [`RedisSessionStore`] writes: 64 KiB
/// of serialized session values.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

// Each record is one hash: `v` version, `d` the values as JSON, `c`
// created, `a` last active, `x` expires (milliseconds since the Unix epoch),
// with a TTL at `x`. The scripts take the caller's clock (`now`) so that a
// record the layer would refuse as expired is also absent to the scripts.

/// `KEYS[1]`; `ARGV`: v, d, c, a, x. Replaces whatever is there.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'c', ARGV[3], 'a', ARGV[4], 'x', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return 1",
    )
});

/// `KEYS[1]`; `ARGV`: expected v, new v, d, c, a, x, now.
/// Returns 0 gone, 1 conflict, 2 updated.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local s = redis.call('HMGET', KEYS[1], 'v', 'x')
if not s[1] or not s[2] or tonumber(s[2]) <= tonumber(ARGV[7]) then return 0 end
if s[1] ~= ARGV[1] then return 1 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 'c', ARGV[4], 'a', ARGV[5], 'x', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 2",
    )
});

/// `KEYS[1]`; `ARGV`: last active, expires, now. Keeps the later of the
/// stored and given values; never creates. Returns 1 when a live record
/// was there.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local s = redis.call('HMGET', KEYS[1], 'a', 'x')
if not s[1] or not s[2] or tonumber(s[2]) <= tonumber(ARGV[3]) then return 0 end
if tonumber(ARGV[1]) > tonumber(s[1]) then redis.call('HSET', KEYS[1], 'a', ARGV[1]) end
if tonumber(ARGV[2]) > tonumber(s[2]) then
  redis.call('HSET', KEYS[1], 'x', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1",
    )
});

/// Sessions in Redis, shared by every instance of an app: implements the
/// [`SessionStore`] contract (see its concurrency section) with one Lua
/// script per operation, so the version check and the write of an
/// [`update`](SessionStore::update) are one atomic step and a
/// [`touch`](SessionStore::touch) never recreates a destroyed session.
///
/// Records are Redis hashes under `<prefix>session:{<hex store key>}` (the
/// [`StoreKey`] is a SHA-256 of the session id: Redis never sees an id)
/// with a TTL at the record's expiry. Times are kept to the millisecond.
/// Errors and passed deadlines fail the request closed (`503`); see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct RedisSessionStore {
    redis: RedisConnection,
    prefix: Arc<str>,
    max_record_bytes: usize,
}

impl RedisSessionStore {
    /// A store on `redis`, keys under the default prefix `tower-auth:`.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            prefix: Arc::from(format!("{DEFAULT_PREFIX}session:")),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Keys under `prefix` + `session:` (say `my-app:` to share a Redis
    /// between apps).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(format!("{prefix}session:"));
        self
    }

    /// The largest serialized session values written (default
    /// [`DEFAULT_MAX_RECORD_BYTES`]); a larger save or update fails (the
    /// layer answers `503` for a new session and keeps the response of an
    /// update, per its save-failure rules).
    #[must_use]
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        format!("{}{{{}}}", self.prefix, key.to_hex())
    }

    /// The script arguments of `record`: version, values (size-checked),
    /// created, last active, expires.
    fn args(&self, record: &SessionRecord) -> Result<RecordArgs, BoxError> {
        let data = serde_json::to_string(&record.data)?;
        if data.len() > self.max_record_bytes {
            return Err("session record too large".into());
        }
        Ok((
            record.version,
            data,
            millis(record.created_at),
            millis(record.last_active),
            millis(record.expires_at),
        ))
    }
}

type RecordArgs = (u64, String, u64, u64, u64);

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time(field: Option<Vec<u8>>) -> Result<SystemTime, RedisError> {
    let ms: u64 = field
        .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok())
        .ok_or(RedisError::reply("session record has a bad time"))?;
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

fn record(fields: Vec<Option<Vec<u8>>>) -> Result<Option<SessionRecord>, BoxError> {
    let mut fields = fields.into_iter();
    let mut next = || fields.next().flatten();
    let Some(version) = next() else {
        return Ok(None);
    };
    let version = std::str::from_utf8(&version)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(RedisError::reply("session record has a bad version"))?;
    let data: SessionData =
        serde_json::from_slice(&next().ok_or(RedisError::reply("session record without values"))?)?;
    Ok(Some(SessionRecord {
        data,
        created_at: time(next())?,
        last_active: time(next())?,
        expires_at: time(next())?,
        version,
    }))
}

impl SessionStore for RedisSessionStore {
    fn load(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<SessionRecord>, BoxError>> + Send {
        let key = self.redis_key(key);
        let redis = self.redis.clone();
        async move {
            let fields: Vec<Option<Vec<u8>>> = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        redis::cmd("HMGET")
                            .arg(&key)
                            .arg(&["v", "d", "c", "a", "x"])
                            .query_async(&mut con)
                            .await
                    })
                })
                .await?;
            record(fields)
        }
    }

    fn save(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let key = self.redis_key(key);
        let redis = self.redis.clone();
        let args = self.args(record);
        async move {
            let (v, d, c, a, x) = args?;
            let _: i64 = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        SAVE.key(&key)
                            .arg(v)
                            .arg(d)
                            .arg(c)
                            .arg(a)
                            .arg(x)
                            .invoke_async(&mut con)
                            .await
                    })
                })
                .await?;
            Ok(())
        }
    }

    fn update(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<UpdateOutcome, BoxError>> + Send {
        let key = self.redis_key(key);
        let redis = self.redis.clone();
        let args = self.args(record);
        let now = millis(SystemTime::now());
        async move {
            let (v, d, c, a, x) = args?;
            let outcome: i64 = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        UPDATE
                            .key(&key)
                            .arg(expected_version)
                            .arg(v)
                            .arg(d)
                            .arg(c)
                            .arg(a)
                            .arg(x)
                            .arg(now)
                            .invoke_async(&mut con)
                            .await
                    })
                })
                .await?;
            match outcome {
                0 => Ok(UpdateOutcome::Gone),
                1 => Ok(UpdateOutcome::Conflict),
                2 => Ok(UpdateOutcome::Updated),
                _ => Err(RedisError::reply("session update script").into()),
            }
        }
    }

    fn touch(
        &self,
        key: &StoreKey,
        last_active: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let key = self.redis_key(key);
        let redis = self.redis.clone();
        let (a, x, now) = (
            millis(last_active),
            millis(expires_at),
            millis(SystemTime::now()),
        );
        async move {
            let live: i64 = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        TOUCH
                            .key(&key)
                            .arg(a)
                            .arg(x)
                            .arg(now)
                            .invoke_async(&mut con)
                            .await
                    })
                })
                .await?;
            Ok(live == 1)
        }
    }

    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let key = self.redis_key(key);
        let redis = self.redis.clone();
        async move {
            let removed: i64 = redis
                .run(move |mut con| {
                    Box::pin(async move { redis::cmd("DEL").arg(&key).query_async(&mut con).await })
                })
                .await?;
            Ok(removed > 0)
        }
    }
}
