//! [`RedisRevocationStore`]: the JWT deny-list and refresh families in
//! Redis, with a local mirror of the deny-list fed by pub/sub.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::Script;
use sha2::{Digest, Sha256};

use super::{hex, RedisConnection, RedisError, DEFAULT_PREFIX};
use crate::jwt::{Redemption, Revocable, RevocationBroadcast, RevocationReceiver, RevocationStore};
use crate::BoxError;

/// The default cap of open sign-ins (refresh families) per subject in
/// [`RedisRevocationStore`]: 100, as in the memory store.
pub const DEFAULT_REDIS_FAMILIES_PER_SUBJECT: usize = 100;

/// The default cap of the local mirror of the deny-list: 1 000 000 entries
/// (about 60 MB at worst). Past it the mirror switches itself off and
/// every check asks Redis.
pub const DEFAULT_MIRROR_CAPACITY: usize = 1_000_000;

/// `KEYS[1]` deny key; `ARGV`: until (s), now (s), channel, message.
/// Keeps the later expiry of an existing entry; publishes the revocation.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then return 0 end
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[1])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1",
    )
});

/// `KEYS[1]` family key; `ARGV`: generation, until (s), grace (s), now (s),
/// subject digest or ''. Returns 0 first (known family), 1 retry, 2 reuse,
/// 3 first (new family), 4 unknown (the family belongs to another subject).
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local s = redis.call('HMGET', KEYS[1], 'g', 't', 's')
if s[3] and ARGV[5] ~= '' and s[3] ~= ARGV[5] then return 4 end
local gen = tonumber(ARGV[1])
if s[1] and gen <= tonumber(s[1]) then
  if gen == tonumber(s[1]) and tonumber(ARGV[4]) < tonumber(s[2]) + tonumber(ARGV[3]) then return 1 end
  return 2
end
redis.call('HSET', KEYS[1], 'g', ARGV[1], 't', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 's', ARGV[5]) end
if s[1] then
  if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) - tonumber(ARGV[4]) then
    redis.call('EXPIREAT', KEYS[1], ARGV[2])
  end
  return 0
end
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 3",
    )
});

/// `KEYS[1]` the subject's sorted set of families; `ARGV`: family digest,
/// now (s), until (s), cap. Returns the families evicted past the cap.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
local n = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
local evicted = {}
if n > 0 then
  for _, e in ipairs(redis.call('ZPOPMIN', KEYS[1], n)) do table.insert(evicted, e) end
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[3]) - tonumber(ARGV[2]) then
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
local out = {}
for i = 1, #evicted, 2 do table.insert(out, evicted[i]) end
return out",
    )
});

/// The JWT revocation store in Redis, shared by every instance: the
/// deny-list of tokens (`jti`) and refresh families (logouts), and refresh
/// rotation with reuse detection, each one atomic script, so two instances
/// racing on one refresh token cannot both succeed.
///
/// **No round trip per request.** Each store keeps a local mirror of the
/// deny-list: it subscribes to a Redis channel on which every revocation is
/// published (by the same script that records it), loads the deny-list
/// once subscribed, and answers [`is_revoked_now`](RevocationStore::is_revoked_now)
/// from memory. A logout on one instance reaches the others' mirrors (and
/// their verified-token caches, which consult the store) within the
/// pub/sub delay, about a millisecond on loopback. While the subscription
/// is down (Redis restarting, network failure) the mirror is off and every
/// check asks Redis, so a check fails closed (`503`) rather than trusting a
/// stale mirror; it resyncs and resumes by itself. The subscription is
/// also checked with a `PING` every second.
///
/// **Refresh families.** [`TokenIssuer::issue`](crate::jwt::TokenIssuer::issue)
/// is synchronous, so the store cannot record a sign-in when it is issued
/// ([`tracks_sign_ins`](RevocationStore::tracks_sign_ins) is `false`): a
/// family is recorded at its first refresh, and a subject's families are
/// capped at that point ([`families_per_subject`](Self::families_per_subject),
/// oldest revoked first). Sign-ins that never refresh cost Redis nothing.
///
/// **Keys** (prefix `tower-auth:` by default; ids are SHA-256 digests, so
/// keys are short and name no token):
/// - `<prefix>revoked:t:{<jti digest>}` and `<prefix>revoked:f:{<family digest>}`:
///   the deny-list, value and `EXPIREAT` = the time after which the entry is
///   useless;
/// - `<prefix>family:{<family digest>}`: a hash of the latest redeemed
///   generation, its first redemption time and the subject digest;
/// - `<prefix>subject:{<subject digest>}`: a sorted set of the subject's
///   families by first refresh;
/// - channel `<prefix>revocations`.
///
/// Every script touches one key, so the layout works on Redis Cluster; the
/// per-subject cap is a second script after a first refresh (a crash
/// between the two leaves one family over the cap until the next one).
#[derive(Clone)]
pub struct RedisRevocationStore {
    redis: RedisConnection,
    prefix: Arc<str>,
    per_subject: usize,
    mirror: Arc<Mirror>,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("prefix", &self.prefix)
            .field("per_subject", &self.per_subject)
            .field("mirror_live", &self.mirror.is_live())
            .finish_non_exhaustive()
    }
}

struct Mirror {
    /// Whether `entries` holds the whole deny-list: subscribed and loaded.
    live: AtomicBool,
    started: AtomicBool,
    /// Digest of `t:<jti>` / `f:<family>` → until (s).
    entries: RwLock<HashMap<[u8; 32], u64>>,
    capacity: usize,
    broadcast: RevocationBroadcast,
}

impl Mirror {
    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    fn entries(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], u64>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        self.live.store(false, Ordering::Release);
        self.entries().clear();
    }

    /// Records an entry; switches the mirror off when it is full of live
    /// entries (checks then ask Redis).
    fn insert(&self, digest: [u8; 32], until: u64, now: u64) -> bool {
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            entries.retain(|_, u| *u > now);
            if entries.len() >= self.capacity {
                drop(entries);
                tracing::warn!(
                    capacity = self.capacity,
                    "revocation mirror full: checking revocations in redis"
                );
                self.stop();
                return false;
            }
        }
        let slot = entries.entry(digest).or_insert(0);
        *slot = (*slot).max(until);
        true
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn digest(kind: &str, id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(id.as_bytes());
    h.finalize().into()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn kind(what: Revocable<'_>) -> (&'static str, &str) {
    match what {
        Revocable::Token(jti) => ("t", jti),
        Revocable::Family(family) => ("f", family),
    }
}

impl RedisRevocationStore {
    /// A store on `redis`, keys under the default prefix `tower-auth:`.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            prefix: Arc::from(DEFAULT_PREFIX),
            per_subject: DEFAULT_REDIS_FAMILIES_PER_SUBJECT,
            mirror: Arc::new(Mirror {
                live: AtomicBool::new(false),
                started: AtomicBool::new(false),
                entries: RwLock::new(HashMap::new()),
                capacity: DEFAULT_MIRROR_CAPACITY,
                broadcast: RevocationBroadcast::default(),
            }),
        }
    }

    /// Keys and the channel under `prefix` (every instance of one app must
    /// use the same). Set it before the store is first used.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The most open sign-ins (refresh families) one subject keeps (default
    /// [`DEFAULT_REDIS_FAMILIES_PER_SUBJECT`], at least 1); a new one past
    /// the cap revokes that subject's oldest.
    #[must_use]
    pub fn families_per_subject(mut self, cap: usize) -> Self {
        self.per_subject = cap.max(1);
        self
    }

    /// The most entries the local mirror of the deny-list holds (default
    /// [`DEFAULT_MIRROR_CAPACITY`]); `0` turns the mirror off, so every
    /// check is a Redis round trip. Set it before the store is first used.
    #[must_use]
    pub fn mirror_capacity(self, capacity: usize) -> Self {
        Self {
            mirror: Arc::new(Mirror {
                live: AtomicBool::new(false),
                started: AtomicBool::new(false),
                entries: RwLock::new(HashMap::new()),
                capacity,
                broadcast: self.mirror.broadcast.clone(),
            }),
            ..self
        }
    }

    /// Whether the local mirror is subscribed and loaded, so revocation
    /// checks are answered without Redis.
    pub fn mirror_is_live(&self) -> bool {
        self.mirror.is_live()
    }

    /// Starts the subscription that feeds the local mirror, if not yet
    /// started (the first revocation check starts it too). Needs a tokio
    /// runtime; outside one nothing starts and checks ask Redis.
    pub fn start(&self) {
        if self.mirror.capacity == 0 || self.mirror.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.mirror.started.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(follow(
            self.redis.clone(),
            self.prefix.clone(),
            Arc::downgrade(&self.mirror),
        ));
    }

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    fn deny_key(&self, what: Revocable<'_>) -> String {
        let (k, id) = kind(what);
        format!("{}revoked:{k}:{{{}}}", self.prefix, hex(&digest(k, id)))
    }

    fn family_key(&self, family: &str) -> String {
        format!("{}family:{{{}}}", self.prefix, hex(&digest("f", family)))
    }

    fn subject_key(&self, subject: &str) -> String {
        format!("{}subject:{{{}}}", self.prefix, hex(&digest("s", subject)))
    }

    async fn revoke_key(&self, what: Revocable<'_>, until: u64) -> Result<(), BoxError> {
        let (k, id) = kind(what);
        let key = self.deny_key(what);
        let (channel, message) = (self.channel(), format!("{k}:{until}:{id}"));
        let now = now();
        let _: i64 = self
            .redis
            .run(move |mut con| {
                Box::pin(async move {
                    REVOKE
                        .key(&key)
                        .arg(until)
                        .arg(now)
                        .arg(channel)
                        .arg(message)
                        .invoke_async(&mut con)
                        .await
                })
            })
            .await?;
        // This instance's own mirror learns it at once, not only when the
        // published message comes back: a request right after a logout
        // here is refused here.
        if until > now && self.mirror.is_live() {
            self.mirror.insert(digest(k, id), until, now);
        }
        Ok(())
    }

    async fn advance_in_redis(
        &self,
        subject: Option<&str>,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> Result<Redemption, BoxError> {
        let key = self.family_key(family);
        let subject_digest = subject.map_or_else(String::new, |s| hex(&digest("s", s)));
        let now = now();
        let outcome: i64 = self
            .redis
            .run(move |mut con| {
                Box::pin(async move {
                    ADVANCE
                        .key(&key)
                        .arg(generation)
                        .arg(until)
                        .arg(grace)
                        .arg(now)
                        .arg(subject_digest)
                        .invoke_async(&mut con)
                        .await
                })
            })
            .await?;
        match outcome {
            0 => Ok(Redemption::First),
            1 => Ok(Redemption::Retry),
            2 => Ok(Redemption::Reuse),
            3 => {
                if let Some(subject) = subject {
                    self.admit(subject, family, until).await?;
                }
                Ok(Redemption::First)
            }
            4 => Ok(Redemption::Unknown),
            _ => Err(RedisError::reply("refresh script").into()),
        }
    }

    /// Adds a new family to its subject's set and revokes the families
    /// evicted past the cap.
    async fn admit(&self, subject: &str, family: &str, until: u64) -> Result<(), BoxError> {
        let key = self.subject_key(subject);
        let member = family.to_owned();
        let (now, cap) = (now(), self.per_subject);
        let evicted: Vec<String> = self
            .redis
            .run(move |mut con| {
                Box::pin(async move {
                    ADMIT
                        .key(&key)
                        .arg(member)
                        .arg(now)
                        .arg(until)
                        .arg(cap)
                        .invoke_async(&mut con)
                        .await
                })
            })
            .await?;
        for old in evicted {
            tracing::debug!("sign-in cap reached: revoking the subject's oldest sign-in");
            self.revoke_key(Revocable::Family(&old), until).await?;
        }
        Ok(())
    }
}

impl RevocationStore for RedisRevocationStore {
    fn revoke(
        &self,
        what: Revocable<'_>,
        until: u64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        self.revoke_key(what, until)
    }

    fn is_revoked(
        &self,
        what: Revocable<'_>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let key = self.deny_key(what);
        let redis = self.redis.clone();
        async move {
            let n: i64 = redis
                .run(move |mut con| {
                    Box::pin(
                        async move { redis::cmd("EXISTS").arg(&key).query_async(&mut con).await },
                    )
                })
                .await?;
            Ok(n > 0)
        }
    }

    fn is_revoked_now(&self, what: Revocable<'_>) -> Option<Result<bool, BoxError>> {
        if !self.mirror.is_live() {
            self.start();
            return None;
        }
        let (k, id) = kind(what);
        let d = digest(k, id);
        let entries = self
            .mirror
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let revoked = entries.get(&d).is_some_and(|until| *until > now());
        drop(entries);
        // Read after the lookup: a mirror that went down meanwhile may have
        // been cleared, so only a live mirror's "no" counts.
        if revoked || self.mirror.is_live() {
            Some(Ok(revoked))
        } else {
            None
        }
    }

    fn advance(
        &self,
        family: &str,
        generation: u64,
        until: u64,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let fut = self.advance_in_redis(None, family, generation, until, 0);
        async move { Ok(fut.await? == Redemption::First) }
    }

    fn advance_with_grace(
        &self,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        self.advance_in_redis(None, family, generation, until, grace)
    }

    fn advance_for(
        &self,
        subject: &str,
        family: &str,
        generation: u64,
        until: u64,
        grace: u64,
    ) -> impl Future<Output = Result<Redemption, BoxError>> + Send {
        self.advance_in_redis(Some(subject), family, generation, until, grace)
    }

    fn subscribe(&self) -> Option<RevocationReceiver> {
        self.start();
        Some(self.mirror.broadcast.subscribe())
    }
}

/// Applies one published revocation (`t:<until>:<jti>` or
/// `f:<until>:<family>`) to the mirror and the local broadcast.
fn apply(mirror: &Mirror, payload: &str) -> bool {
    let mut parts = payload.splitn(3, ':');
    let (Some(k), Some(until), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(until) = until.parse::<u64>() else {
        return false;
    };
    let what = match k {
        "t" => Revocable::Token(id),
        "f" => Revocable::Family(id),
        _ => return false,
    };
    let applied = mirror.insert(digest(k, id), until, now());
    mirror.broadcast.publish(what);
    applied
}

/// Loads the whole deny-list into the mirror (after subscribing, so that
/// nothing revoked meanwhile is missed); `false` when it does not fit.
async fn load(redis: &RedisConnection, prefix: &str, mirror: &Mirror) -> Result<bool, BoxError> {
    let pattern = format!("{prefix}revoked:*");
    let mut cursor: u64 = 0;
    loop {
        let pattern = pattern.clone();
        let (next, keys): (u64, Vec<String>) = redis
            .run(move |mut con| {
                Box::pin(async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut con)
                        .await
                })
            })
            .await?;
        if !keys.is_empty() {
            let batch = keys.clone();
            let untils: Vec<Option<u64>> = redis
                .run(move |mut con| {
                    Box::pin(async move {
                        // One GET per key (a cluster refuses a cross-slot
                        // MGET), pipelined: one round trip.
                        let mut pipe = redis::pipe();
                        for key in &batch {
                            pipe.cmd("GET").arg(key);
                        }
                        pipe.query_async(&mut con).await
                    })
                })
                .await?;
            let now = now();
            for (key, until) in keys.iter().zip(untils) {
                let digest = key
                    .rsplit_once('{')
                    .and_then(|(_, rest)| rest.strip_suffix('}'))
                    .and_then(unhex);
                if let (Some(d), Some(until)) = (digest, until) {
                    if !mirror.insert(d, until, now) {
                        return Ok(false);
                    }
                }
            }
        }
        if next == 0 {
            return Ok(true);
        }
        cursor = next;
    }
}

/// The subscription feeding a mirror, until the store is dropped:
/// subscribe, load, apply messages and ping every second; on any failure
/// switch the mirror off and start again.
async fn follow(redis: RedisConnection, prefix: Arc<str>, mirror: Weak<Mirror>) {
    let channel = format!("{prefix}revocations");
    let timeout = redis.call_timeout();
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(m) = mirror.upgrade() else { return };
        m.stop();
        drop(m);
        let connected = tokio::time::timeout(timeout, async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        {
            let Some(m) = mirror.upgrade() else { return };
            match load(&redis, &prefix, &m).await {
                Ok(true) => {}
                // Full: stay off (checks ask Redis) and try again later.
                Ok(false) => {
                    m.stop();
                    drop(m);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    continue;
                }
                Err(_) => {
                    drop(m);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            m.live.store(true, Ordering::Release);
            tracing::debug!("revocation mirror live");
        }
        backoff = Duration::from_millis(50);
        loop {
            // A second of silence: check the subscription is still there.
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(Some(message)) => {
                    let Some(m) = mirror.upgrade() else { return };
                    let payload: String = message.get_payload().unwrap_or_default();
                    if !apply(&m, &payload) && !m.is_live() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if mirror.strong_count() == 0 {
                        return;
                    }
                    let answered = tokio::time::timeout(timeout, sink.ping::<String>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::warn!(
            "revocation subscription lost: checking revocations in redis until it is back"
        );
    }
}
