//! The keyed hash of a [`Limiter`](super::Limiter)'s keys.
//!
//! Only the 64-bit digest of a key is stored (never the key), and the store
//! uses it as its own hash: so the digest must be keyed and random per
//! limiter, or clients could pick keys that collide (share a budget) or
//! fill one shard's buckets (hash flooding).
//!
//! * A key hashed as **one integer** (IP keys: one `u32` or `u128` write;
//!   `u64` ids) is hashed with two folded multiplications (the 128-bit
//!   product's halves xored, as foldhash and ahash do) with four random
//!   64-bit keys of the limiter. About ten instructions instead of a
//!   SipHash.
//! * Anything else (strings, tuples, several writes) is hashed with
//!   SipHash-1-3 under the limiter's random key ([`RandomState`]), on the
//!   same bytes as the standard `DefaultHasher` would see.
//!
//! Both keys come from the operating system's randomness (through
//! [`RandomState`], fresh per limiter).

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hash, Hasher};

/// The random keys of one limiter.
#[derive(Clone)]
pub(crate) struct Keys {
    sip: RandomState,
    fold: [u64; 4],
}

/// Domain separation of the derivation of the folded-multiply keys.
const FOLD_KEY_TAG: u64 = 0x746f_7765_722d_6175; // "tower-au"

impl Keys {
    /// Fresh random keys.
    pub(crate) fn random() -> Self {
        // A second, independent random state (dropped afterwards): its
        // SipHash of fixed inputs gives four unpredictable words.
        let seed = RandomState::new();
        let mut fold = [0u64, 1, 2, 3].map(|i| seed.hash_one((FOLD_KEY_TAG, i)));
        // A folded multiplication by zero is zero whatever the other
        // factor: with the top bit set, the factors `lo ^ k0` and
        // `hi ^ k1` are never zero for an IPv4 key (`hi` is 0, `lo` < 2^32)
        // nor for an IPv6 /64 (`lo` is 0), and only for a full-width key
        // equal to the secret keys otherwise; `k3 ^ width` is never zero.
        for k in [0, 1, 3] {
            fold[k] |= 1 << 63;
        }
        Keys {
            sip: RandomState::new(),
            fold,
        }
    }

    /// The digest of `key`.
    #[inline]
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        let mut hasher = KeyHasher {
            keys: self,
            first: None,
            sip: None,
        };
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// The keyed digest of one integer `value` of `width` bytes.
    #[inline]
    fn fold(&self, value: u128, width: u8) -> u64 {
        let [k0, k1, k2, k3] = self.fold;
        let a = folded_multiply(value as u64 ^ k0, (value >> 64) as u64 ^ k1);
        folded_multiply(a ^ k2, k3 ^ u64::from(width))
    }
}

/// The 128-bit product of `a` and `b`, its two halves xored.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The hasher of [`Keys::hash`]: holds a first integer write back, and
/// goes over to SipHash (replaying it) on any further write.
struct KeyHasher<'k> {
    keys: &'k Keys,
    /// The only write so far, if it was an integer: value and width.
    first: Option<(u128, u8)>,
    /// SipHash, once the key is more than one integer.
    sip: Option<DefaultHasher>,
}

impl KeyHasher<'_> {
    #[inline]
    fn integer(&mut self, value: u128, width: u8) {
        if self.sip.is_none() && self.first.is_none() {
            self.first = Some((value, width));
            return;
        }
        let sip = self.sip();
        match width {
            1 => sip.write_u8(value as u8),
            2 => sip.write_u16(value as u16),
            4 => sip.write_u32(value as u32),
            8 => sip.write_u64(value as u64),
            _ => sip.write_u128(value),
        }
    }

    /// The SipHash state, made on the first write that needs it, with the
    /// held-back integer written first.
    #[cold]
    fn sip(&mut self) -> &mut DefaultHasher {
        let first = &mut self.first;
        let keys = self.keys;
        self.sip.get_or_insert_with(|| {
            let mut sip = keys.sip.build_hasher();
            if let Some((value, width)) = first.take() {
                match width {
                    1 => sip.write_u8(value as u8),
                    2 => sip.write_u16(value as u16),
                    4 => sip.write_u32(value as u32),
                    8 => sip.write_u64(value as u64),
                    _ => sip.write_u128(value),
                }
            }
            sip
        })
    }
}

impl Hasher for KeyHasher<'_> {
    #[inline]
    fn finish(&self) -> u64 {
        match (&self.sip, self.first) {
            (Some(sip), _) => sip.finish(),
            (None, Some((value, width))) => self.keys.fold(value, width),
            // No write at all (`()`): width 0 sets it apart.
            (None, None) => self.keys.fold(0, 0),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.sip().write(bytes);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.integer(i.into(), 1);
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.integer(i.into(), 2);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.integer(i.into(), 4);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.integer(i.into(), 8);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.integer(i, 16);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        // The same bytes as the integer of the same width.
        match usize::BITS {
            32 => self.write_u32(i as u32),
            _ => self.write_u64(i as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn integers_of_different_widths_and_values_differ() {
        let keys = Keys::random();
        let digests = [
            keys.hash(&()),
            keys.hash(&0u8),
            keys.hash(&0u16),
            keys.hash(&0u32),
            keys.hash(&0u64),
            keys.hash(&0u128),
            keys.hash(&1u32),
            keys.hash(&1u128),
            keys.hash(&(1u128 << 64)),
        ];
        let distinct: HashSet<_> = digests.iter().collect();
        assert_eq!(distinct.len(), digests.len(), "{digests:x?}");
        assert_eq!(keys.hash(&7u32), keys.hash(&7u32));
    }

    /// Keys of several writes are SipHash of the same bytes as
    /// `DefaultHasher` under the same key, the held-back first integer
    /// included.
    #[test]
    fn longer_keys_are_siphash_of_the_same_writes() {
        let keys = Keys::random();
        for key in [(1u32, 2u64), (0, 0), (u32::MAX, 5)] {
            assert_eq!(keys.hash(&key), keys.sip.hash_one(key));
        }
        assert_eq!(keys.hash("alice"), keys.sip.hash_one("alice"));
        assert_eq!(
            keys.hash(&[1u8, 2, 3][..]),
            keys.sip.hash_one(&[1u8, 2, 3][..])
        );
        assert_eq!(keys.hash(&(9u128, "x")), keys.sip.hash_one((9u128, "x")));
    }

    /// Another limiter, another key: the same key has unrelated digests.
    #[test]
    fn digests_are_keyed_per_limiter() {
        let (a, b) = (Keys::random(), Keys::random());
        assert_ne!(a.fold, b.fold);
        // Never a zero factor for IPv4 and IPv6 /64 keys.
        assert!([0, 1, 3].iter().all(|&k| a.fold[k] >> 63 == 1));
        assert_ne!(a.hash(&7u32), b.hash(&7u32));
        assert_ne!(a.hash("alice"), b.hash("alice"));
    }

    /// The store takes the shard from bits 32.. and the buckets from the
    /// low bits of the digest: consecutive addresses (a /16) spread evenly
    /// over both, and never collide.
    #[test]
    fn consecutive_addresses_spread_over_shards_and_buckets() {
        let keys = Keys::random();
        let digests: Vec<u64> = (0..65_536u32)
            .map(|i| keys.hash(&(0x0a00_0000 | i)))
            .collect();
        assert_eq!(digests.iter().collect::<HashSet<_>>().len(), digests.len());
        for (name, bits) in [("shard", 32), ("bucket", 0), ("tag", 57)] {
            let mut counts = [0u32; 64];
            for d in &digests {
                counts[((d >> bits) & 63) as usize] += 1;
            }
            // 1 024 expected per value; a skewed mix would leave some empty.
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(*min > 850 && *max < 1_200, "{name}: {min}..{max}");
        }
    }
}
