//! API key format, generation and digests.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the public key id.
pub(crate) const ID_LEN: usize = 12;
/// Length of the secret part: 43 base62 characters carry 256 bits.
pub(crate) const SECRET_LEN: usize = 43;
/// Length of the checksum: 32 bits in 6 base62 characters.
pub(crate) const CHECKSUM_LEN: usize = 6;
const MAX_PREFIX_LEN: usize = 16;

/// The SHA-256 digest of an API key: what stores keep instead of the key.
///
/// Compared in constant time. `Debug` prints only its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `key`.
    pub fn of(key: &str) -> Self {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// Wraps a digest loaded from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyDigest(bytes)
    }

    /// Parses a digest from 64 hex characters (as stored in a database).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(KeyDigest(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, for storage.
    pub fn to_hex(&self) -> String {
        // By hand rather than `write!("{b:02x}")`: an opaque key's id is
        // this hex, computed on every request, and the formatter cost
        // twice the SHA-256 itself.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", &self.to_hex()[..8])
    }
}

/// Errors of API key generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The prefix is not 1 to 16 lower-case ASCII letters or digits.
    #[error("an API key prefix must be 1 to 16 lower-case ASCII letters or digits")]
    InvalidPrefix,
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// A freshly generated API key: show [`key`](GeneratedApiKey::key) to its
/// owner once, store only [`key_id`](GeneratedApiKey::key_id) and
/// [`digest`](GeneratedApiKey::digest).
///
/// The format is `<prefix>_<id>_<secret><checksum>`:
///
/// * `prefix`: 1 to 16 lower-case letters or digits of your choice, so keys
///   are recognizable (`tak_`, `live_`, `test_`);
/// * `id`: 12 random base62 characters, the public lookup id;
/// * `secret`: 43 random base62 characters from the OS CSPRNG (256 bits);
/// * `checksum`: 6 base62 characters of a SHA-256 over the rest, so typos
///   and truncated keys are refused without a store lookup and secret
///   scanners can recognize real keys.
#[derive(Debug)]
pub struct GeneratedApiKey {
    key: Secret,
    key_id: String,
    digest: KeyDigest,
}

impl GeneratedApiKey {
    /// Generates a key with `prefix`.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::InvalidPrefix`] for a bad prefix,
    /// [`ApiKeyError::Random`] if the OS random number generator fails.
    pub fn generate(prefix: &str) -> Result<Self, ApiKeyError> {
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX_LEN
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ApiKeyError::InvalidPrefix);
        }
        let id = random_base62(ID_LEN)?;
        let secret = random_base62(SECRET_LEN)?;
        let mut key = format!("{prefix}_{id}_{secret}");
        let checksum = checksum(&key);
        key.extend(checksum.iter().map(|b| char::from(*b)));
        let digest = KeyDigest::of(&key);
        Ok(GeneratedApiKey {
            key: Secret::new(key),
            key_id: id,
            digest,
        })
    }

    /// The full key. Show it once; never store or log it.
    pub fn key(&self) -> &Secret {
        &self.key
    }

    /// The public key id, for lookups and for listing keys to their owner.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The digest to store.
    pub fn digest(&self) -> KeyDigest {
        self.digest
    }

    /// Splits into the key (to show) and the record to store.
    pub fn into_record<P>(
        self,
        principal: P,
        identity: crate::Identity,
    ) -> (Secret, super::ApiKeyRecord<P>) {
        let record = super::ApiKeyRecord::new(self.key_id, self.digest, principal, identity);
        (self.key, record)
    }
}

fn random_base62(len: usize) -> Result<String, ApiKeyError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(ApiKeyError::Random)?;
        // 248 = 4 * 62: rejecting larger bytes keeps the draw uniform.
        for &b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::digest(body.as_bytes());
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// How a presented key is looked up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyShape {
    /// A key in this crate's format: look it up by its id.
    Formatted { key_id: String },
    /// A key in this crate's format whose checksum is wrong: refuse it.
    BadChecksum,
    /// Any other key: look it up by its digest, in hex.
    Opaque,
}

/// Classifies a presented key.
pub(crate) fn shape(key: &str) -> KeyShape {
    let mut parts = key.rsplitn(3, '_');
    let (Some(tail), Some(id), Some(prefix)) = (parts.next(), parts.next(), parts.next()) else {
        return KeyShape::Opaque;
    };
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || id.len() != ID_LEN
        || tail.len() != SECRET_LEN + CHECKSUM_LEN
        || !is_base62(id)
        || !is_base62(tail)
    {
        return KeyShape::Opaque;
    }
    let (body, sum) = key.split_at(key.len() - CHECKSUM_LEN);
    if checksum(body)[..].ct_eq(sum.as_bytes()).into() {
        KeyShape::Formatted {
            key_id: id.to_owned(),
        }
    } else {
        KeyShape::BadChecksum
    }
}

/// The id a store files `key` under: the embedded id of a formatted key, or
/// the hex digest of any other key.
pub fn key_id_of(key: &str) -> Option<String> {
    match shape(key) {
        KeyShape::Formatted { key_id } => Some(key_id),
        KeyShape::BadChecksum => None,
        KeyShape::Opaque => Some(KeyDigest::of(key).to_hex()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = GeneratedApiKey::generate("tak").unwrap();
        let key = k.key().expose();
        assert!(key.starts_with("tak_"));
        assert_eq!(key.len(), 3 + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN);
        assert_eq!(
            shape(key),
            KeyShape::Formatted {
                key_id: k.key_id().to_owned()
            }
        );
        assert!(k.digest().ct_eq(&KeyDigest::of(key)));
        assert_eq!(key_id_of(key).as_deref(), Some(k.key_id()));
    }

    #[test]
    fn generated_keys_differ() {
        let a = GeneratedApiKey::generate("t").unwrap();
        let b = GeneratedApiKey::generate("t").unwrap();
        assert_ne!(a.key().expose(), b.key().expose());
        assert_ne!(a.key_id(), b.key_id());
    }

    #[test]
    fn any_changed_character_breaks_the_checksum() {
        let k = GeneratedApiKey::generate("live").unwrap();
        let key = k.key().expose();
        let mut bytes = key.as_bytes().to_vec();
        let i = key.len() - 10;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert_eq!(shape(&typo), KeyShape::BadChecksum);
        assert_eq!(key_id_of(&typo), None);
    }

    #[test]
    fn other_keys_are_opaque() {
        for k in ["key_12345", "abc", "a_b_c", "", "tak__x"] {
            assert_eq!(shape(k), KeyShape::Opaque, "{k}");
        }
        assert_eq!(
            key_id_of("key_12345").unwrap(),
            KeyDigest::of("key_12345").to_hex()
        );
    }

    #[test]
    fn prefixes_are_validated() {
        for p in ["", "UPPER", "has_underscore", "seventeen-chars-x", "é"] {
            assert!(matches!(
                GeneratedApiKey::generate(p),
                Err(ApiKeyError::InvalidPrefix)
            ));
        }
    }

    #[test]
    fn base62_draw_is_roughly_uniform() {
        let s = random_base62(62 * 200).unwrap();
        let mut counts = [0u32; 62];
        for b in s.bytes() {
            counts[BASE62.iter().position(|c| *c == b).unwrap()] += 1;
        }
        // Expected 200 each; a biased draw (plain `% 62`) skews the first
        // characters. Allow generous noise.
        assert!(counts.iter().all(|c| (100..320).contains(c)), "{counts:?}");
    }

    #[test]
    fn hex_round_trip() {
        // FIPS 180-2's first SHA-256 test vector, in lower-case hex.
        assert_eq!(
            KeyDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = KeyDigest::of("x");
        assert_eq!(KeyDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(KeyDigest::from_hex("zz"), None);
        assert!(!format!("{d:?}").contains(&d.to_hex()));
    }
}
