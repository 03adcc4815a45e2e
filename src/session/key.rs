//! [`SessionKey`]: the secret that signs or encrypts session cookies.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

/// Length of a [`SessionKey`] in bytes: 512 bits (256 for HMAC-SHA256
/// signing, 256 for AES-256-GCM encryption).
pub const KEY_LEN: usize = 64;

/// Why a [`SessionKey`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key material is shorter than required.
    #[error("a session key needs at least {min} bytes, got {got}")]
    TooShort {
        /// Bytes required.
        min: usize,
        /// Bytes given.
        got: usize,
    },
    /// The text is not valid base64.
    #[error("the session key is not valid base64")]
    Base64,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// The secret that signs ([HMAC-SHA256]) or encrypts ([AES-256-GCM]) session
/// cookies, so that a client can neither forge nor alter a session id.
///
/// Generate one with [`SessionKey::generate`], store it with your other
/// secrets (e.g. as [`to_base64`](SessionKey::to_base64) text in an
/// environment variable) and load it with
/// [`from_base64`](SessionKey::from_base64). A key generated at start-up
/// invalidates every session when the process restarts.
///
/// `Debug` never prints the key; it is compared in constant time.
///
/// ```
/// use tower_auth::session::SessionKey;
///
/// let key = SessionKey::generate().unwrap();
/// let text = key.to_base64();
/// let again = SessionKey::from_base64(&text).unwrap();
/// assert_eq!(key, again);
/// assert_eq!(format!("{key:?}"), "SessionKey([redacted])");
/// ```
///
/// [HMAC-SHA256]: https://datatracker.ietf.org/doc/html/rfc2104
/// [AES-256-GCM]: https://csrc.nist.gov/pubs/sp/800/38/d/final
#[derive(Clone, PartialEq)]
pub struct SessionKey(pub(crate) cookie::Key);

impl SessionKey {
    /// A new random key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] when the random number generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(KeyError::Random)?;
        Self::from_bytes(&bytes[..])
    }

    /// A key from 64 (or more) random bytes, used as they are.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooShort`] for fewer than 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        cookie::Key::try_from(bytes)
            .map(SessionKey)
            .map_err(|_| KeyError::TooShort {
                min: KEY_LEN,
                got: bytes.len(),
            })
    }

    /// A key from the standard base64 text of 64 (or more) bytes, as written
    /// by [`to_base64`](SessionKey::to_base64). Surrounding whitespace is
    /// ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::Base64`] or [`KeyError::TooShort`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| KeyError::Base64)?);
        Self::from_bytes(&bytes)
    }

    /// The key as standard base64 text (88 characters), to store it. Treat
    /// the text as a secret.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.master())
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = SessionKey::generate().unwrap();
        let b = SessionKey::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_base64().len(), 88);
        assert_eq!(SessionKey::from_base64(&a.to_base64()).unwrap(), a);
    }

    #[test]
    fn short_or_bad_material_is_refused() {
        assert!(matches!(
            SessionKey::from_bytes(&[0; 63]),
            Err(KeyError::TooShort { min: 64, got: 63 })
        ));
        assert!(matches!(
            SessionKey::from_base64("not base64!"),
            Err(KeyError::Base64)
        ));
        assert!(matches!(
            SessionKey::from_base64("AAAA"),
            Err(KeyError::TooShort { .. })
        ));
    }
}
