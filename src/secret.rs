//! [`Secret`]: a credential that is never printed and is compared in
//! constant time.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A credential (token, key, session id) taken from a request.
///
/// * `Debug` and `Display` print `[redacted]`.
/// * Comparisons take a time that does not depend on where the values
///   differ: `==` between two `Secret`s, `==` with a `str`, and
///   [`Secret::ct_eq`]. Only the length can show (values of different
///   lengths are told apart at once): compare fixed-length values, e.g.
///   digests, when the length matters. Comparing [`expose`](Secret::expose)d
///   strings with `==` or `match` is *not* constant time; use
///   [`ct_eq`](Secret::ct_eq).
/// * The buffer this value owns is zeroed when it is dropped. Copies are
///   not: a `String` made with `expose().to_owned()`, a value serialized by
///   serde, the request header the credential was read from, and the old
///   buffers an allocator left behind when a `String` grew before it became
///   a `Secret` all stay in memory until they are reused.
///
/// ```
/// use tower_auth::Secret;
///
/// let token = Secret::new("valid_token_123");
/// assert!(token.ct_eq("valid_token_123"));
/// assert!(token == *"valid_token_123");
/// assert!(!token.ct_eq("valid_token_124"));
/// assert_eq!(format!("{token:?}"), "Secret([redacted])");
/// ```
#[derive(Clone)]
pub struct Secret(Repr);

#[derive(Clone)]
enum Repr {
    /// A copy, zeroed when dropped.
    Owned(Box<str>),
    /// Bytes `range` of a request header, checked to be visible ASCII
    /// when it was parsed: not copied (a header value is a
    /// reference-counted buffer that the request holds anyway).
    Header {
        value: http::HeaderValue,
        range: std::ops::Range<usize>,
    },
}

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Repr::Owned(value.into().into_boxed_str()))
    }

    /// Bytes `range` of a header value, without a copy. They must be
    /// visible ASCII (an empty secret stands in otherwise).
    pub(crate) fn from_header(value: http::HeaderValue, range: std::ops::Range<usize>) -> Self {
        Secret(Repr::Header { value, range })
    }

    /// The credential itself. Never log it, and compare it with
    /// [`ct_eq`](Secret::ct_eq), not `==`.
    pub fn expose(&self) -> &str {
        match &self.0 {
            Repr::Owned(s) => s,
            Repr::Header { value, range } => value
                .as_bytes()
                .get(range.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
        }
    }

    /// Whether the credential equals `other`, in a time that depends on
    /// the lengths only, not on the position of the first difference.
    pub fn ct_eq(&self, other: impl AsRef<[u8]>) -> bool {
        ct_eq_bytes(self.bytes(), other.as_ref())
    }

    /// The bytes of [`expose`](Secret::expose), without its UTF-8 check.
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(s) => s.as_bytes(),
            Repr::Header { value, range } => {
                let bytes = value.as_bytes().get(range.clone()).unwrap_or_default();
                // What `expose` shows: nothing if the bytes are not text
                // (ASCII, the only bytes ever put there, is checked fast).
                if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
                    bytes
                } else {
                    &[]
                }
            }
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the credential is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// Whether `a == b`, in a time that depends on the lengths only: the
/// differences of 8-byte words are OR-ed together without a branch on the
/// data, and only the folded word goes through `subtle`'s optimization
/// barrier (one barrier, not one per byte as a byte-wise `subtle` loop has).
pub(crate) fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a_words.remainder(), b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
        diff |= x ^ y;
    }
    for (x, y) in a_tail.iter().zip(b_tail) {
        diff |= u64::from(x ^ y);
    }
    bool::from(diff.ct_eq(&0))
}

/// Constant time: see [`Secret::ct_eq`].
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.bytes())
    }
}

impl Eq for Secret {}

/// Constant time: see [`Secret::ct_eq`].
impl PartialEq<str> for Secret {
    fn eq(&self, other: &str) -> bool {
        self.ct_eq(other)
    }
}

/// Constant time: see [`Secret::ct_eq`].
impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.ct_eq(other)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        if let Repr::Owned(s) = &mut self.0 {
            s.zeroize();
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_inside_a_header_is_not_copied_but_reads_the_same() {
        let value = http::HeaderValue::from_static("Bearer  tok3n ");
        let s = Secret::from_header(value.clone(), 8..13);
        assert_eq!(s.expose(), "tok3n");
        assert!(s.ct_eq("tok3n"));
        assert!(!s.ct_eq("tok3n "));
        assert_eq!((s.len(), s.is_empty()), (5, false));
        assert!(s == Secret::new("tok3n"));
        assert!(Secret::new("tok3n") == s);
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        // A range outside the value reads as an empty secret.
        let outside = Secret::from_header(value, 8..99);
        assert_eq!(outside.expose(), "");
        assert!(outside.is_empty());
        assert!(outside.ct_eq("") && !outside.ct_eq("tok3n"));
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn word_wise_comparison_finds_a_difference_at_every_position() {
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(ct_eq_bytes(&a, &a.clone()), "{len}");
            for at in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[at] ^= 1 << bit;
                    assert!(!ct_eq_bytes(&a, &b), "{len} {at} {bit}");
                    assert!(!ct_eq_bytes(&b, &a), "{len} {at} {bit}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!ct_eq_bytes(&a, &longer) && !ct_eq_bytes(&longer, &a));
        }
    }

    #[test]
    fn constant_time_comparisons() {
        let s = Secret::new("valid_token_123");
        assert!(s.ct_eq("valid_token_123"));
        assert!(s.ct_eq(b"valid_token_123"));
        assert!(!s.ct_eq("valid_token_124"));
        assert!(!s.ct_eq("valid_token_12"));
        assert!(!s.ct_eq(""));
        assert!(s == Secret::new("valid_token_123"));
        assert!(s != Secret::new("Valid_token_123"));
        assert!(s == "valid_token_123");
        assert!(s == *"valid_token_123");
        assert!(s != "valid_token_1234");
        assert!(Secret::new("").ct_eq(""));
    }
}
