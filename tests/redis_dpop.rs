//! `RedisReplayStore` against a real `redis-server`: a DPoP proof used on
//! one instance is a replay on the other; Redis down fails closed.

mod redis_support;

use std::time::{SystemTime, UNIX_EPOCH};

use redis_support::RedisServer;
use tower_auth::dpop::ReplayStore;
use tower_auth::redis::{RedisConnection, RedisReplayStore};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_proof_seen_by_one_instance_is_a_replay_on_the_other() {
    let Some(mut server) = RedisServer::spawn() else {
        return;
    };
    let store = || RedisReplayStore::new(RedisConnection::open(server.url().as_str()).unwrap());
    let (a, b) = (store(), store());
    let now = now();
    assert!(a.insert([1; 32], now + 65, now).await.unwrap(), "new");
    assert!(
        !b.insert([1; 32], now + 65, now).await.unwrap(),
        "replayed on B"
    );
    assert!(
        !a.insert([1; 32], now + 65, now).await.unwrap(),
        "replayed on A"
    );
    assert!(
        b.insert([2; 32], now + 65, now).await.unwrap(),
        "another proof"
    );

    let key = format!("tower-auth:dpop:{{{}}}", "01".repeat(32));
    let ttl: i64 = server.command(redis::cmd("TTL").arg(&key));
    assert!(
        (60..=65).contains(&ttl),
        "kept only while the proof is fresh: {ttl}"
    );

    server.kill();
    let err = a.insert([3; 32], now + 65, now).await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
}
