//! [`KeySource`]: keys that change at run time (a remote JWKS).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use jsonwebtoken::Algorithm;

use super::keys::KeySet;
use crate::error::AuthError;

/// A refresh started by [`KeySource::refresh_unknown_kid`]; it resolves
/// once the refresh is over (successful or not).
pub type RefreshFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Keys that change at run time, such as an identity provider's JWKS
/// ([`RemoteJwks`](super::RemoteJwks) with the `oidc` feature), for
/// [`JwtAuthenticator::from_source`](super::JwtAuthenticator::from_source).
///
/// [`current`](Self::current) is called on every request: it must not wait
/// (no I/O, no lock held across a fetch).
pub trait KeySource: fmt::Debug + Send + Sync + 'static {
    /// The keys to verify with now.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] (normally [`AuthError::unavailable`], `503`) when
    /// the keys cannot be trusted any more, e.g. too stale.
    fn current(&self) -> Result<KeySet, AuthError>;

    /// Whether the keys may be trusted now, without fetching them: the
    /// check of a verified-token cache hit. Defaults to
    /// [`current`](Self::current).
    ///
    /// # Errors
    ///
    /// As [`current`](Self::current).
    fn usable(&self) -> Result<(), AuthError> {
        self.current().map(drop)
    }

    /// The generation of the keys: a number that changes whenever the key
    /// set may have lost a key. A verified-token cache remembers it with
    /// each token and verifies a cached token again once it changed, so a
    /// key the provider stopped publishing stops admitting cached tokens
    /// too. Defaults to `0` (keys that never change).
    fn epoch(&self) -> u64 {
        0
    }

    /// The algorithms tokens may use (an allow-list, never `none`).
    fn algorithms(&self) -> Vec<Algorithm>;

    /// A token names a `kid` the current keys lack: start a refresh if one
    /// is allowed now (rate-limited, one at a time) and return a future that
    /// resolves when it is over, or `None` to refuse the token at once.
    fn refresh_unknown_kid(&self) -> Option<RefreshFuture>;
}
