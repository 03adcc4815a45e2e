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
/// **One key per purpose.** Give this key to session cookies only, never to
/// other signed cookies, CSRF tokens or JWTs. The layer signs each cookie
/// name with its own key derived from this one (HMAC-SHA-512 of the name),
/// and encrypted cookies authenticate their name, so a value signed or
/// sealed for one cookie name is refused under another; but separate keys
/// keep a weakness in one use from reaching the others. Changing from this
/// release's derivation invalidates signed cookies issued by earlier ones.
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

impl SessionKey {
    /// The key that signs the cookie named `name`: HMAC-SHA-512 of the name,
    /// keyed with this key, under a label of its own.
    ///
    /// The `cookie` crate's signed cookies authenticate the value only, so a
    /// value signed for one cookie name would verify under another name
    /// signed with the same key. Signing each name with its own derived key
    /// binds the name into the MAC. (Encrypted cookies need no derivation:
    /// the crate authenticates their name as AES-GCM associated data.)
    pub(crate) fn for_cookie_name(&self, name: &str) -> SessionKey {
        const LABEL: &[u8] = b"tower-auth session cookie signing v1\0";
        let derived = Zeroizing::new(hmac_sha512(self.0.master(), &[LABEL, name.as_bytes()]));
        // 64 bytes: always a valid key.
        SessionKey(cookie::Key::from(&derived[..]))
    }
}

/// HMAC-SHA-512 (RFC 2104) of the concatenation of `parts`, keyed with `key`.
fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    const BLOCK: usize = 128;
    let mut block = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        block[..64].copy_from_slice(&Sha512::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha512::new();
    inner.update(&Zeroizing::new(block.map(|b| b ^ 0x36))[..]);
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = Sha512::new();
    outer.update(&Zeroizing::new(block.map(|b| b ^ 0x5c))[..]);
    outer.update(inner);
    outer.finalize().into()
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
    fn hmac_sha512_matches_rfc_4231_case_2() {
        let mac = hmac_sha512(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn each_cookie_name_gets_its_own_signing_key() {
        let k = SessionKey::generate().unwrap();
        assert_ne!(k.for_cookie_name("a"), k.for_cookie_name("b"));
        assert_eq!(k.for_cookie_name("a"), k.for_cookie_name("a"));
        assert_ne!(k.for_cookie_name("a"), k);
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
