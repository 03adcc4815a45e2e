//! Reading and writing the session cookie with the `cookie` crate.

use std::time::Duration;

use cookie::{Cookie, CookieJar};
use http::header::{HeaderMap, HeaderValue, COOKIE};

use super::config::{Config, CookieConfig, MaxAge};
use super::id::{SessionId, ENCODED_ID_LEN};
use super::key::SessionKey;

/// Longest cookie value worth verifying: a signed id is 87 bytes, an
/// encrypted one 96. Longer values are refused without any crypto.
const MAX_VALUE_LEN: usize = 160;

/// Most cookies with the session's name looked at in one request.
const MAX_CANDIDATES: usize = 8;

/// What the request's cookies say about the session.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// No cookie with the session's name.
    Absent,
    /// A cookie with the session's name that does not verify (tampered,
    /// forged, another key, garbage).
    Invalid,
    /// Several cookies with the session's name that verify and name different
    /// sessions (cookie tossing from a sibling domain): none is trusted.
    Ambiguous,
    /// One verified session id; `reissue` when it was signed with a previous
    /// key.
    Valid { id: SessionId, reissue: bool },
}

fn open(key: &SessionKey, private: bool, name: &str, value: &str) -> Option<SessionId> {
    let jar = CookieJar::new();
    let cookie = Cookie::new(name.to_owned(), value.to_owned());
    let opened = if private {
        jar.private(&key.0).decrypt(cookie)
    } else {
        jar.signed(&key.0).verify(cookie)
    }?;
    SessionId::decode(opened.value())
}

/// Finds and verifies the session cookie.
pub(crate) fn read(headers: &HeaderMap, config: &Config) -> Incoming {
    let name = &*config.cookie.name;
    let mut candidates = 0usize;
    let mut found: Option<(SessionId, bool)> = None;
    for header in headers.get_all(COOKIE) {
        // A Cookie header that is not visible ASCII cannot hold our cookie.
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let pair = pair.trim_matches(|c| c == ' ' || c == '\t');
            let Some((n, value)) = pair.split_once('=') else {
                continue;
            };
            if n.trim() != name {
                continue;
            }
            candidates += 1;
            if candidates > MAX_CANDIDATES {
                return Incoming::Ambiguous;
            }
            let value = value.trim().trim_matches('"');
            if value.len() > MAX_VALUE_LEN || value.len() < ENCODED_ID_LEN {
                continue;
            }
            let opened = open(&config.key, config.private, name, value)
                .map(|id| (id, false))
                .or_else(|| {
                    config
                        .previous_keys
                        .iter()
                        .find_map(|k| open(k, config.private, name, value))
                        .map(|id| (id, true))
                });
            let Some((id, reissue)) = opened else {
                continue;
            };
            match &found {
                Some((other, _)) if other.store_key() != id.store_key() => {
                    return Incoming::Ambiguous
                }
                Some(_) => {}
                None => found = Some((id, reissue)),
            }
        }
    }
    match found {
        Some((id, reissue)) => Incoming::Valid { id, reissue },
        None if candidates > 0 => Incoming::Invalid,
        None => Incoming::Absent,
    }
}

fn base(config: &CookieConfig, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(config.name.to_string(), value);
    c.set_http_only(config.http_only);
    c.set_secure(config.secure);
    c.set_same_site(config.same_site.to_cookie());
    c.set_path(config.path.to_string());
    if let Some(d) = &config.domain {
        c.set_domain(d.to_string());
    }
    c
}

fn seconds(d: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `Set-Cookie` value that hands `id` to the client; `time_left` is the
/// time until the session expires.
pub(crate) fn set_cookie(
    config: &Config,
    id: &SessionId,
    time_left: Duration,
) -> Option<HeaderValue> {
    let mut cookie = base(&config.cookie, id.encode());
    match config.cookie.max_age {
        MaxAge::UntilExpiry => {
            // Round up so the cookie never outlives the session by less than
            // a second, and never sends Max-Age=0 for a live session.
            let secs = time_left.as_secs() + u64::from(time_left.subsec_nanos() > 0);
            cookie.set_max_age(seconds(Duration::from_secs(secs.max(1))));
        }
        MaxAge::Fixed(d) => cookie.set_max_age(seconds(d)),
        MaxAge::BrowserSession => {}
    }
    let mut jar = CookieJar::new();
    if config.private {
        jar.private_mut(&config.key.0).add(cookie);
    } else {
        jar.signed_mut(&config.key.0).add(cookie);
    }
    let sealed = jar.get(&config.cookie.name)?;
    HeaderValue::try_from(sealed.to_string()).ok()
}

/// The `Set-Cookie` value that removes the session cookie: empty value,
/// `Max-Age=0`, an `Expires` in the past, and the same attributes as the
/// cookie (browsers only replace a cookie with the same name, path and
/// domain, and refuse a `__Host-` cookie without `Secure`).
pub(crate) fn removal(config: &CookieConfig) -> Option<HeaderValue> {
    let mut cookie = base(config, String::new());
    cookie.set_max_age(cookie::time::Duration::ZERO);
    cookie.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    HeaderValue::try_from(cookie.to_string()).ok()
}
