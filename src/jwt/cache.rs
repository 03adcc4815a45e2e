//! A bounded cache of verified tokens.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::digest;
use zeroize::Zeroizing;

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
    /// The [`KeySource::epoch`](super::KeySource::epoch) of the keys that
    /// verified the token (`0` for static keys): a hit under another epoch
    /// is verified again.
    pub(crate) key_epoch: u64,
}

/// A token's fingerprint: HMAC-SHA256 of the token under the cache's key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 32]);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a uniform MAC output: its first 8 bytes are the hash.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Verified tokens keyed by a 256-bit fingerprint: HMAC-SHA256 (RFC 2104)
/// of the token under a random 512-bit key drawn (by AWS-LC, from the OS)
/// when the cache is made. The fingerprint is a vetted MAC, so a client
/// cannot aim a token at another token's entry without the key, and the
/// cache holds no token that could leak.
///
/// The map is split in shards, each behind its own lock and bounded to its
/// share of the capacity, so that concurrent requests rarely contend, and
/// an insert into a full shard evicts in O(1): no scan of the map under a
/// lock.
///
/// Eviction is first in, first out: the order of a hash map's iteration is
/// the order of its buckets, so "evict the first entry" would evict the
/// same low-hash tokens again and again, popular ones included.
pub(crate) struct TokenCache<C> {
    shards: Box<[RwLock<Shard<C>>]>,
    mac: Mac,
    capacity: usize,
    ttl: u64,
}

/// One shard: its entries, and their fingerprints in insertion order (each
/// key of `map` appears exactly once in `order`).
struct Shard<C> {
    map: HashMap<Fingerprint, Arc<Entry<C>>, BuildFingerprint>,
    order: VecDeque<Fingerprint>,
}

/// The number of shards of a large cache.
const SHARDS: usize = 16;

/// HMAC-SHA256 with its inner and outer hash states precomputed (the key
/// blocks XOR ipad / opad already absorbed), so a fingerprint costs the
/// hash of the token plus one block: AWS-LC's `hmac::sign` sets up a keyed
/// context per call, about twice the cost for a token. The output equals
/// `aws_lc_rs::hmac::sign` under the same key (tested).
struct Mac {
    inner: digest::Context,
    outer: digest::Context,
    #[cfg(test)]
    key: [u8; BLOCK],
}

/// SHA-256's block size, the HMAC key length used here.
const BLOCK: usize = 64;

impl Mac {
    fn new(key: &[u8; BLOCK]) -> Self {
        let pad = |byte: u8| {
            let mut block = [0u8; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b = k ^ byte;
            }
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(&block);
            ctx
        };
        Mac {
            inner: pad(0x36),
            outer: pad(0x5c),
            #[cfg(test)]
            key: *key,
        }
    }

    fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(message);
        let mut outer = self.outer.clone();
        outer.update(inner.finish().as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(outer.finish().as_ref());
        out
    }
}

/// The map's keys are already uniform MAC outputs: hash them by taking
/// their first word, not by hashing again.
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildFingerprint;

#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
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
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl BuildHasher for BuildFingerprint {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

impl<C> TokenCache<C> {
    /// A cache with a fresh random key, or `None` when no random key can be
    /// drawn (the caller then verifies every token: slower, never weaker).
    pub(crate) fn new(capacity: usize, ttl: u64) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; BLOCK]);
        aws_lc_rs::rand::fill(&mut key[..]).ok()?;
        let capacity = capacity.max(1);
        // Small caches keep one shard, so that their capacity is exact.
        let shards = if capacity >= SHARDS * 64 { SHARDS } else { 1 };
        Some(TokenCache {
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::with_hasher(BuildFingerprint),
                        order: VecDeque::new(),
                    })
                })
                .collect(),
            mac: Mac::new(&key),
            capacity,
            ttl,
        })
    }

    /// An empty cache with the same limits (and a new key).
    pub(crate) fn emptied(&self) -> Option<Self> {
        Self::new(self.capacity, self.ttl)
    }

    pub(crate) fn fingerprint(&self, token: &str) -> Fingerprint {
        Fingerprint(self.mac.sign(token.as_bytes()))
    }

    /// The shard of `fingerprint`: chosen by a word of the MAC other than
    /// the one hashing within the shard.
    fn shard(&self, fingerprint: &Fingerprint) -> &RwLock<Shard<C>> {
        let word = u64::from_le_bytes([
            fingerprint.0[8],
            fingerprint.0[9],
            fingerprint.0[10],
            fingerprint.0[11],
            fingerprint.0[12],
            fingerprint.0[13],
            fingerprint.0[14],
            fingerprint.0[15],
        ]);
        // `as usize` of a value below the shard count: lossless.
        &self.shards[(word % self.shards.len() as u64) as usize]
    }

    /// The bound of each shard: its share of the capacity.
    fn shard_capacity(&self) -> usize {
        (self.capacity / self.shards.len()).max(1)
    }

    /// The entry for `fingerprint` if it is still trusted at `now`, given
    /// the verifier's `leeway` on `exp`.
    pub(crate) fn get(
        &self,
        fingerprint: Fingerprint,
        now: u64,
        leeway: u64,
    ) -> Option<Arc<Entry<C>>> {
        let shard = self
            .shard(&fingerprint)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.map.get(&fingerprint)?;
        let fresh = now < entry.deadline
            && entry
                .exp
                .is_none_or(|exp| i128::from(now) < i128::from(exp) + i128::from(leeway));
        fresh.then(|| Arc::clone(entry))
    }

    /// Caches a verified token until `now + ttl`, or its expiry if sooner.
    /// A full shard evicts its oldest entry, in O(1).
    pub(crate) fn insert(&self, fingerprint: Fingerprint, mut entry: Entry<C>, now: u64) {
        entry.deadline = now.saturating_add(self.ttl);
        let bound = self.shard_capacity();
        let mut shard = self
            .shard(&fingerprint)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Shard { map, order } = &mut *shard;
        if let Some(slot) = map.get_mut(&fingerprint) {
            *slot = Arc::new(entry);
            return;
        }
        while map.len() >= bound {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
        map.insert(fingerprint, Arc::new(entry));
        order.push_back(fingerprint);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
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
            key_epoch: 0,
        }
    }

    #[test]
    fn hit_until_ttl_or_exp() {
        let cache = TokenCache::new(10, 60).unwrap();
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
        let a = TokenCache::<u32>::new(1, 1).unwrap();
        let b = TokenCache::<u32>::new(1, 1).unwrap();
        assert!(a.fingerprint("x") != a.fingerprint("y"));
        assert!(a.fingerprint("x") == a.fingerprint("x"));
        assert!(
            a.fingerprint("x") != b.fingerprint("x"),
            "random keys per cache"
        );
        // The fingerprint is HMAC-SHA256 of the token under the cache key.
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &a.mac.key);
        for token in ["", "x", "a.b.c", &"t".repeat(64), &"long".repeat(300)] {
            let tag = hmac::sign(&key, token.as_bytes());
            assert_eq!(&a.fingerprint(token).0[..], tag.as_ref(), "{token:.8}");
        }
        // RFC 4231 test case 1, with its key zero-padded to a block (HMAC
        // pads shorter keys with zeros).
        let mut key = [0u8; BLOCK];
        key[..20].copy_from_slice(&[0x0b; 20]);
        let expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        let tag = Mac::new(&key).sign(b"Hi There");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(100, 60).unwrap();
        for i in 0..10_000 {
            let fp = cache.fingerprint(&i.to_string());
            cache.insert(fp, entry(None), 1000);
            assert!(cache.len() <= 100);
        }
    }

    #[test]
    fn a_sharded_cache_stays_within_its_capacity_and_evicts_the_oldest_entry() {
        let cache = TokenCache::new(SHARDS * 64, 60).unwrap();
        assert_eq!(cache.shards.len(), SHARDS);
        for i in 0..100_000 {
            let fp = cache.fingerprint(&i.to_string());
            cache.insert(fp, entry(None), 1000);
            assert!(cache.len() <= SHARDS * 64);
        }
        // First in, first out: the oldest entry goes, whatever its hash.
        let small = TokenCache::new(4, 60).unwrap();
        let fps: Vec<_> = (0..6)
            .map(|i| small.fingerprint(&format!("k{i}")))
            .collect();
        for fp in &fps {
            small.insert(*fp, entry(None), 1000);
            // Re-inserting a cached token does not duplicate it.
            small.insert(*fp, entry(None), 1000);
        }
        assert_eq!(small.len(), 4);
        for (i, fp) in fps.iter().enumerate() {
            assert_eq!(small.get(*fp, 1000, 0).is_some(), i >= 2, "{i}");
        }
    }
}
