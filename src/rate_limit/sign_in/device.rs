//! Device cookies (OWASP "slow down online guessing attacks with device
//! cookies"): a signed cookie binding a random device id to an account,
//! issued after a successful sign-in.
//!
//! Value: `<id>.<expiry>.<tag>`, where `id` is 16 random bytes (base64url),
//! `expiry` the Unix time in seconds after which the cookie is void, and
//! `tag` the HMAC-SHA256 of the id, the expiry and the account under the
//! server's [`DeviceKey`]. The account is not in the cookie: it is bound by
//! the tag only, so a cookie tells nothing of who signed in, and a cookie
//! of one account checked against another fails like a forged one.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a device id.
pub(crate) const ID_LEN: usize = 16;
/// Bytes of a tag.
const TAG_LEN: usize = 32;
/// Fewest bytes of a [`DeviceKey`].
const MIN_KEY_LEN: usize = 32;
/// Longest lifetime of a device cookie: what browsers keep at most
/// (RFC 6265bis caps `Max-Age` at 400 days).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 60 * 60);
/// Most device cookies of the right name read from one request (cookie
/// tossing may add some); the rest are ignored.
pub(crate) const MAX_CANDIDATES: usize = 4;
/// Domain separation of the tag.
const TAG_CONTEXT: &[u8] = b"tower-auth sign-in device v1\0";

/// The secret key signing device cookies (HMAC-SHA256). Keep it stable
/// across restarts and servers, or device cookies stop being trusted (which
/// fails safe: their holders get the untrusted budget until they sign in
/// again). Its `Debug` output hides the key.
#[derive(Clone)]
pub struct DeviceKey {
    mac: HmacSha256,
}

/// A [`DeviceKey`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceKeyError {
    /// The key has fewer than 32 bytes.
    #[error("a device cookie key needs at least 32 bytes")]
    TooShort,
    /// The operating system's random number generator failed.
    #[error("no randomness for a device cookie key: {0}")]
    Random(getrandom::Error),
}

impl DeviceKey {
    /// A key of `bytes` (at least 32, e.g. from your secret store).
    ///
    /// # Errors
    ///
    /// [`DeviceKeyError::TooShort`] below 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceKeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(DeviceKeyError::TooShort);
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| DeviceKeyError::TooShort)?;
        Ok(DeviceKey { mac })
    }

    /// A random key: device cookies then last as long as the process.
    ///
    /// # Errors
    ///
    /// [`DeviceKeyError::Random`] if the OS has no randomness to give.
    pub fn generate() -> Result<Self, DeviceKeyError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; MIN_KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(DeviceKeyError::Random)?;
        Self::from_bytes(&bytes[..])
    }

    fn tagger(&self, id: &[u8; ID_LEN], expiry: u64, account: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(TAG_CONTEXT);
        mac.update(id);
        mac.update(&expiry.to_be_bytes());
        mac.update(account);
        mac
    }

    /// The cookie value binding `id` to `account` until `expiry`.
    pub(crate) fn seal(&self, id: &[u8; ID_LEN], expiry: u64, account: &[u8]) -> String {
        let tag = self.tagger(id, expiry, account).finalize().into_bytes();
        format!(
            "{}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Whether `cookie` is a device cookie of `account` (constant-time tag
    /// check).
    pub(crate) fn opens(&self, cookie: &DeviceCandidate, account: &[u8]) -> bool {
        self.tagger(&cookie.id, cookie.expiry, account)
            .verify_slice(&cookie.tag)
            .is_ok()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

/// A well-formed, unexpired device cookie read from a request, not yet
/// checked against an account.
#[derive(Clone)]
pub(crate) struct DeviceCandidate {
    pub(crate) id: [u8; ID_LEN],
    expiry: u64,
    tag: [u8; TAG_LEN],
}

impl fmt::Debug for DeviceCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCandidate").finish_non_exhaustive()
    }
}

/// The Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses one cookie value; `None` if malformed or expired at `now`.
pub(crate) fn parse(value: &str, now: u64) -> Option<DeviceCandidate> {
    let mut parts = value.split('.');
    let (id, expiry, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id.len() > 24 || tag.len() > 44 || expiry.len() > 20 {
        return None;
    }
    let expiry: u64 = expiry.parse().ok()?;
    if expiry <= now {
        return None;
    }
    let mut candidate = DeviceCandidate {
        id: [0; ID_LEN],
        expiry,
        tag: [0; TAG_LEN],
    };
    let id = URL_SAFE_NO_PAD.decode(id).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    candidate.id = id.try_into().ok()?;
    candidate.tag = tag.try_into().ok()?;
    Some(candidate)
}

/// The device cookies named `name` in the `Cookie` headers, at most
/// [`MAX_CANDIDATES`], well-formed and unexpired.
pub(crate) fn candidates(headers: &HeaderMap, name: &str, now: u64) -> Vec<DeviceCandidate> {
    let mut found = Vec::new();
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'));
    for pair in pairs {
        let Some((n, v)) = pair.trim().split_once('=') else {
            continue;
        };
        if n == name {
            if let Some(candidate) = parse(v.trim_matches('"'), now) {
                found.push(candidate);
                if found.len() == MAX_CANDIDATES {
                    break;
                }
            }
        }
    }
    found
}

/// `SameSite` of the device cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests only (the default): the sign-in form is
    /// on your own site.
    #[default]
    Strict,
    /// Also sent on top-level cross-site navigations.
    Lax,
}

/// How device cookies are issued: see the [module docs](super).
///
/// Defaults: name `__Host-device`, `Secure`, `HttpOnly`, `SameSite=Strict`,
/// `Path=/`, no `Domain`, 30 days.
#[derive(Clone, Debug)]
pub struct DeviceCookies {
    pub(crate) key: DeviceKey,
    /// Keys of cookies issued before a key rotation: still trusted.
    previous: Vec<DeviceKey>,
    pub(crate) name: Box<str>,
    pub(crate) secure: bool,
    pub(crate) lifetime: Duration,
    pub(crate) same_site: SameSite,
}

/// The default lifetime of a device cookie.
pub const DEFAULT_DEVICE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl DeviceCookies {
    /// Device cookies signed with `key`, with the secure defaults.
    pub fn new(key: DeviceKey) -> Self {
        DeviceCookies {
            key,
            previous: Vec::new(),
            name: "__Host-device".into(),
            secure: true,
            lifetime: DEFAULT_DEVICE_LIFETIME,
            same_site: SameSite::Strict,
        }
    }

    /// Also trusts cookies signed with `key`, the key before a rotation
    /// (new cookies are signed with the current key only). Drop it once
    /// the cookies it signed have expired.
    pub fn previous_key(mut self, key: DeviceKey) -> Self {
        self.previous.push(key);
        self
    }

    /// Whether `cookie` is a device cookie of `account` under the current
    /// key or a previous one.
    pub(crate) fn opens(&self, cookie: &DeviceCandidate, account: &[u8]) -> bool {
        std::iter::once(&self.key)
            .chain(&self.previous)
            .any(|key| key.opens(cookie, account))
    }

    /// The cookie name (a token; `__Host-` and `__Secure-` names need
    /// [`secure`](DeviceCookies::secure)).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into().into_boxed_str();
        self
    }

    /// Whether the cookie is `Secure` (sent over HTTPS only). On by
    /// default; turn it off for plain-HTTP development only, with a name
    /// without the `__Host-` prefix.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// How long a device cookie is trusted (its `Max-Age`, and the expiry
    /// signed into it): at most 400 days.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The `SameSite` attribute.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let token = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err("the device cookie name must be a non-empty token");
        }
        if !self.secure && (self.name.starts_with("__Host-") || self.name.starts_with("__Secure-"))
        {
            return Err("a __Host- or __Secure- device cookie must be Secure");
        }
        if self.lifetime.as_secs() == 0 || self.lifetime > MAX_LIFETIME {
            return Err("the device cookie lifetime must be 1 s to 400 days");
        }
        Ok(())
    }

    /// The `Set-Cookie` value of a new device cookie for `account`, or
    /// `None` when no randomness is available (the sign-in still succeeds,
    /// without a device cookie).
    pub(crate) fn issue(&self, account: &[u8]) -> Option<HeaderValue> {
        let mut id = [0u8; ID_LEN];
        if let Err(error) = getrandom::fill(&mut id) {
            tracing::warn!(%error, "no randomness for a device cookie");
            return None;
        }
        let expiry = unix_now().saturating_add(self.lifetime.as_secs());
        let value = self.key.seal(&id, expiry, account);
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Max-Age={}; Path=/; HttpOnly; SameSite={same_site}{secure}",
            self.name,
            self.lifetime.as_secs()
        );
        HeaderValue::try_from(cookie).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DeviceKey {
        DeviceKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_sealed_cookie_opens_for_its_account_only() {
        let key = key();
        let value = key.seal(&[1; ID_LEN], unix_now() + 60, b"alice");
        let cookie = parse(&value, unix_now()).unwrap();
        assert!(key.opens(&cookie, b"alice"));
        assert!(!key.opens(&cookie, b"bob"));
        let other = DeviceKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!other.opens(&cookie, b"alice"));
    }

    #[test]
    fn tampered_malformed_or_expired_cookies_are_refused() {
        let key = key();
        let now = unix_now();
        let value = key.seal(&[1; ID_LEN], now + 60, b"alice");
        // A longer expiry under the same tag.
        let (id, rest) = value.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let forged = format!("{id}.{}.{tag}", now + 6_000);
        assert!(!key.opens(&parse(&forged, now).unwrap(), b"alice"));
        // Another id under the same tag.
        let forged = format!(
            "{}.{}.{tag}",
            URL_SAFE_NO_PAD.encode([2u8; ID_LEN]),
            now + 60
        );
        assert!(!key.opens(&parse(&forged, now).unwrap(), b"alice"));
        for bad in [
            "",
            "a.b.c",
            "...",
            &format!("{value}.x"),
            &format!("{id}.notanumber.{tag}"),
            &format!("{id}.{}.{tag}", u128::MAX),
        ] {
            assert!(parse(bad, now).is_none(), "{bad}");
        }
        let expired = key.seal(&[1; ID_LEN], now - 1, b"alice");
        assert!(parse(&expired, now).is_none());
    }

    #[test]
    fn candidates_are_read_from_every_cookie_header_and_bounded() {
        let key = key();
        let value = key.seal(&[1; ID_LEN], unix_now() + 60, b"alice");
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; __Host-device=junk"));
        let many = vec![format!("__Host-device={value}"); 10].join("; ");
        headers.append(COOKIE, HeaderValue::try_from(many).unwrap());
        let found = candidates(&headers, "__Host-device", unix_now());
        assert_eq!(found.len(), MAX_CANDIDATES);
        assert!(candidates(&headers, "other", unix_now()).is_empty());
    }

    #[test]
    fn issued_cookies_have_secure_attributes_and_validate() {
        let cookies = DeviceCookies::new(key());
        assert!(cookies.validate().is_ok());
        let set = cookies.issue(b"alice").unwrap();
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-device="), "{set}");
        for attribute in [
            "; Max-Age=2592000",
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Strict",
            "; Secure",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Domain"));
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert!(cookies
            .key
            .opens(&parse(value, unix_now()).unwrap(), b"alice"));

        assert!(DeviceCookies::new(key()).secure(false).validate().is_err());
        assert!(DeviceCookies::new(key())
            .secure(false)
            .name("device")
            .validate()
            .is_ok());
        assert!(DeviceCookies::new(key()).name("a b").validate().is_err());
        assert!(DeviceCookies::new(key())
            .lifetime(MAX_LIFETIME * 2)
            .validate()
            .is_err());
        assert!(matches!(
            DeviceKey::from_bytes(&[0; 31]),
            Err(DeviceKeyError::TooShort)
        ));
        assert!(format!("{:?}", key()).contains(".."));
    }

    #[test]
    fn cookies_of_a_previous_key_are_trusted_after_a_rotation() {
        let old = key();
        let value = old.seal(&[1; ID_LEN], unix_now() + 60, b"alice");
        let cookie = parse(&value, unix_now()).unwrap();
        let new = DeviceKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!DeviceCookies::new(new.clone()).opens(&cookie, b"alice"));
        let rotated = DeviceCookies::new(new).previous_key(old);
        assert!(rotated.opens(&cookie, b"alice"));
        assert!(!rotated.opens(&cookie, b"bob"));
    }
}
