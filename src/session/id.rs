//! Session ids and the store keys derived from them.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Bytes of randomness in a session id: 256 bits.
pub(crate) const ID_LEN: usize = 32;

/// Length of a session id encoded as unpadded base64url.
pub(crate) const ENCODED_ID_LEN: usize = 43;

/// A session id: 256 bits from the operating system's CSPRNG.
///
/// It only ever lives in the cookie (signed or encrypted) and in memory while
/// a request is served; stores see its [`StoreKey`]. `Debug` never prints it
/// and it is zeroed when dropped.
pub(crate) struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// A fresh random id.
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; ID_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(SessionId(bytes))
    }

    /// Decodes the unpadded base64url text of a cookie; `None` for anything
    /// that is not exactly 43 characters encoding 32 bytes.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        if text.len() != ENCODED_ID_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_LEN) => Some(SessionId(bytes)),
            _ => {
                bytes.zeroize();
                None
            }
        }
    }

    /// The unpadded base64url text that goes into the cookie.
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key the session is filed under in a store.
    pub(crate) fn store_key(&self) -> StoreKey {
        StoreKey(Sha256::digest(self.0).into())
    }
}

impl Drop for SessionId {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// The key a session is filed under in a [`SessionStore`](super::SessionStore):
/// the SHA-256 digest of the session id.
///
/// A store, its backups and its logs never hold a session id: someone who
/// reads them cannot present a stolen key as a cookie, since the id is the
/// digest's preimage (and the cookie is also signed or encrypted).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest in lower-case hex (64 characters), e.g. for a Redis key.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A key from digest bytes, e.g. read back from a database.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        StoreKey(bytes)
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_256_bits_and_distinct() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(a.encode().len(), ENCODED_ID_LEN);
    }

    #[test]
    fn decode_round_trips_and_rejects_garbage() {
        let id = SessionId::generate().unwrap();
        let text = id.encode();
        assert_eq!(SessionId::decode(&text).unwrap().0, id.0);
        assert!(SessionId::decode("").is_none());
        assert!(SessionId::decode(&text[1..]).is_none());
        assert!(SessionId::decode(&format!("{text}A")).is_none());
        assert!(SessionId::decode(&"!".repeat(ENCODED_ID_LEN)).is_none());
        // 43 characters whose last one has non-zero trailing bits
        let mut bad = text[..42].to_owned();
        bad.push('/');
        assert!(SessionId::decode(&bad).is_none());
    }

    #[test]
    fn store_key_is_the_sha256_of_the_id_not_the_id() {
        let id = SessionId::generate().unwrap();
        let key = id.store_key();
        assert_ne!(key.as_bytes(), &id.0);
        assert_eq!(key.as_bytes()[..], Sha256::digest(id.0)[..]);
        assert_eq!(key.to_hex().len(), 64);
        assert!(!key.to_hex().contains(&id.encode()));
    }

    #[test]
    fn debug_never_prints_the_id() {
        let id = SessionId::generate().unwrap();
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
