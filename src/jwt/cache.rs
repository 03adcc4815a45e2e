//! A bounded cache of verified tokens.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::identity::Identity;

/// What the cache keeps of a verified token: never the token itself.
pub(crate) struct Entry<C> {
    pub(crate) claims: C,
    pub(crate) identity: Identity,
    pub(crate) jti: Option<String>,
    pub(crate) fam: Option<String>,
    /// The token's `exp`, if any.
    pub(crate) exp: Option<i64>,
    /// When the cache stops trusting the entry.
    pub(crate) deadline: u64,
}

/// Verified tokens keyed by a 128-bit fingerprint: SipHash-1-3-128 under a
/// random key drawn when the cache is made. The fingerprint is a keyed PRF,
/// so a client cannot aim a token at another token's entry, and the cache
/// holds no token that could leak.
pub(crate) struct TokenCache<C> {
    map: RwLock<HashMap<u128, Arc<Entry<C>>, BuildFingerprint>>,
    key: (u64, u64),
    capacity: usize,
    ttl: u64,
}

/// The map's keys are already uniform 128-bit PRF outputs: hash them by
/// folding, not by hashing again.
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildFingerprint;

#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

impl BuildHasher for BuildFingerprint {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

/// A random SipHash key: from the OS CSPRNG, or, should it fail, from the
/// standard library's per-process random hasher keys.
fn random_key() -> (u64, u64) {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_ok() {
        let (k0, k1) = b.split_at(8);
        let k0 = u64::from_le_bytes(k0.try_into().unwrap_or_default());
        let k1 = u64::from_le_bytes(k1.try_into().unwrap_or_default());
        return (k0, k1);
    }
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(1u8), s.hash_one(2u8))
}

impl<C> TokenCache<C> {
    pub(crate) fn new(capacity: usize, ttl: u64) -> Self {
        TokenCache {
            map: RwLock::new(HashMap::with_hasher(BuildFingerprint)),
            key: random_key(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// An empty cache with the same limits (and a new key).
    pub(crate) fn emptied(&self) -> Self {
        Self::new(self.capacity, self.ttl)
    }

    pub(crate) fn fingerprint(&self, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }

    /// The entry for `fingerprint` if it is still trusted at `now`, given
    /// the verifier's `leeway` on `exp`.
    pub(crate) fn get(&self, fingerprint: u128, now: u64, leeway: u64) -> Option<Arc<Entry<C>>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(&fingerprint)?;
        let fresh = now < entry.deadline
            && entry
                .exp
                .is_none_or(|exp| i128::from(now) < i128::from(exp) + i128::from(leeway));
        fresh.then(|| Arc::clone(entry))
    }

    /// Caches a verified token until `now + ttl`, or its expiry if sooner.
    pub(crate) fn insert(&self, fingerprint: u128, mut entry: Entry<C>, now: u64) {
        entry.deadline = now.saturating_add(self.ttl);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&fingerprint) {
            map.retain(|_, e| {
                e.deadline > now && e.exp.is_none_or(|exp| i128::from(exp) > i128::from(now))
            });
            if map.len() >= self.capacity {
                // Evict an arbitrary eighth: the map's order is the order of
                // random fingerprints, so this is random eviction, amortized
                // O(1) per insert.
                let excess = map.len() + 1 - self.capacity + self.capacity / 8;
                let victims: Vec<u128> = map.keys().take(excess).copied().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        map.insert(fingerprint, Arc::new(entry));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scheme;

    fn entry(exp: Option<i64>) -> Entry<u32> {
        Entry {
            claims: 1,
            identity: Identity::new("s", Scheme::Bearer),
            jti: None,
            fam: None,
            exp,
            deadline: 0,
        }
    }

    #[test]
    fn hit_until_ttl_or_exp() {
        let cache = TokenCache::new(10, 60);
        let fp = cache.fingerprint("a.b.c");
        cache.insert(fp, entry(Some(1030)), 1000);
        assert!(cache.get(fp, 1000, 0).is_some());
        assert!(cache.get(fp, 1029, 0).is_some());
        assert!(cache.get(fp, 1030, 0).is_none(), "exp passed");
        assert!(cache.get(fp, 1035, 10).is_some(), "within leeway");
        let fp2 = cache.fingerprint("d.e.f");
        cache.insert(fp2, entry(None), 1000);
        assert!(cache.get(fp2, 1059, 0).is_some());
        assert!(cache.get(fp2, 1060, 0).is_none(), "ttl passed");
    }

    #[test]
    fn fingerprints_differ_and_are_keyed() {
        let a = TokenCache::<u32>::new(1, 1);
        let b = TokenCache::<u32>::new(1, 1);
        assert_ne!(a.fingerprint("x"), a.fingerprint("y"));
        assert_eq!(a.fingerprint("x"), a.fingerprint("x"));
        assert_ne!(
            a.fingerprint("x"),
            b.fingerprint("x"),
            "random keys per cache"
        );
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(100, 60);
        for i in 0..10_000 {
            let fp = cache.fingerprint(&i.to_string());
            cache.insert(fp, entry(None), 1000);
            assert!(cache.len() <= 100);
        }
    }
}
