//! Configuration of [`SessionLayer`](super::SessionLayer): cookie attributes,
//! timeouts, keys.

use std::sync::Arc;
use std::time::Duration;

use super::key::SessionKey;
use super::store::{Clock, SystemClock};
use crate::rejection::Rejections;

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations with a
    /// safe method (following a link). The default.
    Lax,
    /// Sent on every request, cross-site included; requires `Secure`.
    None,
}

impl SameSite {
    pub(crate) fn to_cookie(self) -> cookie::SameSite {
        match self {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        }
    }
}

/// How long the browser keeps the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaxAge {
    /// `Max-Age` is the time left until the session expires (the earlier of
    /// the idle and absolute deadlines), refreshed whenever the server
    /// extends the session. The default.
    UntilExpiry,
    /// No `Max-Age`: the browser drops the cookie when it closes. The server
    /// still enforces the timeouts.
    BrowserSession,
    /// A fixed `Max-Age`, sent when the cookie is set. The server still
    /// enforces the timeouts.
    Fixed(Duration),
}

/// A [`SessionLayer`](super::SessionLayer) configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionConfigError {
    /// The cookie name is empty or has characters outside an RFC 6265 token.
    #[error("the session cookie name must be a non-empty RFC 6265 token")]
    InvalidCookieName,
    /// A `__Host-` cookie must be `Secure`, have `Path=/` and no `Domain`
    /// (browsers refuse it otherwise).
    #[error("a __Host- cookie must be Secure, have Path=/ and no Domain")]
    HostPrefix,
    /// A `__Secure-` cookie must be `Secure`.
    #[error("a __Secure- cookie must be Secure")]
    SecurePrefix,
    /// `SameSite=None` requires `Secure` (browsers refuse it otherwise).
    #[error("SameSite=None requires Secure")]
    SameSiteNoneNeedsSecure,
    /// The path does not start with `/` or has characters that are not
    /// allowed in a cookie attribute (`;`, control characters).
    #[error("the cookie path must start with '/' and must not contain ';' or control characters")]
    InvalidPath,
    /// The domain is empty or has characters that are not allowed.
    #[error("the cookie domain must be a non-empty host name")]
    InvalidDomain,
    /// A timeout (idle, absolute, backend) is zero, or the refresh interval
    /// is not shorter than the idle timeout.
    #[error("timeouts must be positive and the refresh interval shorter than the idle timeout")]
    InvalidTimeout,
}

/// Default idle timeout: 2 hours.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// Default absolute timeout: 24 hours.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cookie name (`__Host-session` with the `__Host-` prefix).
pub const DEFAULT_COOKIE_NAME: &str = "session";

#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    /// The full name, prefix included.
    pub(crate) name: Arc<str>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: Arc<str>,
    pub(crate) domain: Option<Arc<str>>,
    pub(crate) max_age: MaxAge,
}

pub(crate) struct Config {
    pub(crate) cookie: CookieConfig,
    pub(crate) key: SessionKey,
    pub(crate) previous_keys: Vec<SessionKey>,
    pub(crate) private: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) absolute_timeout: Duration,
    pub(crate) refresh_after: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rejections: Rejections,
    /// The deadline of each store call.
    pub(crate) backend_timeout: Option<Duration>,
    /// [`watch_sessions`](super::SessionLayerBuilder::watch_sessions): the
    /// interval of a session's [`CredentialWatch`](crate::lifetime::CredentialWatch)
    /// check.
    pub(crate) watch: Option<Duration>,
    /// The removal cookie, rendered once.
    pub(crate) removal: http::HeaderValue,
}

/// The settings a builder collects before [`Config`] is validated.
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) host_prefix: bool,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: MaxAge,
    pub(crate) key: SessionKey,
    pub(crate) previous_keys: Vec<SessionKey>,
    pub(crate) private: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) absolute_timeout: Duration,
    pub(crate) refresh_after: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rejections: Rejections,
    pub(crate) backend_timeout: Option<Duration>,
    pub(crate) watch: Option<Duration>,
}

impl Settings {
    pub(crate) fn new(key: SessionKey) -> Self {
        Settings {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            host_prefix: false,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age: MaxAge::UntilExpiry,
            key,
            previous_keys: Vec::new(),
            private: false,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            absolute_timeout: DEFAULT_ABSOLUTE_TIMEOUT,
            refresh_after: None,
            clock: Arc::new(SystemClock),
            rejections: Rejections::new(),
            backend_timeout: Some(crate::timeout::DEFAULT_BACKEND_TIMEOUT),
            watch: None,
        }
    }

    pub(crate) fn validate(self) -> Result<Config, SessionConfigError> {
        let is_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        };
        if !is_token(&self.name) {
            return Err(SessionConfigError::InvalidCookieName);
        }
        let name = if self.host_prefix && !self.name.starts_with("__Host-") {
            format!("__Host-{}", self.name)
        } else {
            self.name
        };
        if name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(SessionConfigError::HostPrefix);
        }
        if name.starts_with("__Secure-") && !self.secure {
            return Err(SessionConfigError::SecurePrefix);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(SessionConfigError::SameSiteNoneNeedsSecure);
        }
        let attr_ok = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';');
        if !self.path.starts_with('/') || !attr_ok(&self.path) {
            return Err(SessionConfigError::InvalidPath);
        }
        if let Some(d) = &self.domain {
            let ok = !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(SessionConfigError::InvalidDomain);
            }
        }
        if self.absolute_timeout.is_zero()
            || self.idle_timeout.is_some_and(|d| d.is_zero())
            || self.backend_timeout.is_some_and(|d| d.is_zero())
        {
            return Err(SessionConfigError::InvalidTimeout);
        }
        let refresh_after = match (self.idle_timeout, self.refresh_after) {
            (Some(idle), Some(r)) if r >= idle => return Err(SessionConfigError::InvalidTimeout),
            (_, Some(r)) => r,
            (Some(idle), None) => idle / 10,
            (None, None) => Duration::MAX,
        };
        let cookie = CookieConfig {
            name: name.into(),
            secure: self.secure,
            http_only: self.http_only,
            same_site: self.same_site,
            path: self.path.into(),
            domain: self.domain.map(Into::into),
            max_age: self.max_age,
        };
        let removal =
            super::cookie::removal(&cookie).ok_or(SessionConfigError::InvalidCookieName)?;
        // Signed cookies: one key per cookie name, so that a value signed
        // for another cookie with the same key does not verify here.
        // Encrypted cookies already authenticate their name.
        let bind = |k: SessionKey| {
            if self.private {
                k
            } else {
                k.for_cookie_name(&cookie.name)
            }
        };
        let key = bind(self.key.clone());
        let previous_keys = self.previous_keys.iter().cloned().map(bind).collect();
        Ok(Config {
            cookie,
            key,
            previous_keys,
            private: self.private,
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            refresh_after,
            clock: self.clock,
            rejections: self.rejections,
            backend_timeout: self.backend_timeout,
            watch: self.watch,
            removal,
        })
    }
}
