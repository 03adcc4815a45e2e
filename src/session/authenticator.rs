//! [`SessionAuthenticator`]: the user stored in the session becomes the
//! principal of an [`AuthLayer`](crate::AuthLayer).

use std::fmt;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;

use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::csrf::CSRF_TOKEN_KEY;
use super::handle::{to_value, Session, SessionError};
use crate::auth::{Authenticated, Authenticator};
use crate::error::AuthError;
use crate::identity::{Identity, Scheme};
use crate::rejection::Challenge;

type IdentityFn<U> = dyn Fn(&U) -> Identity + Send + Sync;

/// The realm of the default challenge.
const DEFAULT_REALM: &str = "session";

/// `Cookie realm="<realm>"`.
fn default_challenge(realm: &str) -> Challenge {
    Challenge::new("Cookie").param("realm", realm.to_owned())
}

/// Authenticates requests by the user stored in their [`Session`] under a
/// key. Put [`SessionLayer`](super::SessionLayer) outside (before) the
/// [`AuthLayer`](crate::AuthLayer).
///
/// | request                                       | result                              |
/// |-----------------------------------------------|-------------------------------------|
/// | session holds a user under the key            | the user is the principal, [`Scheme::Cookie`] |
/// | no session cookie, or no user in the session  | no credentials: `401` with `WWW-Authenticate: Cookie realm="session"` (see [`realm`](SessionAuthenticator::realm)), or the next authenticator of an [`or`](Authenticator::or) |
/// | the stored user does not deserialize          | `401 invalid_token`                 |
/// | no [`SessionLayer`](super::SessionLayer) ran  | `500`, naming the missing layer     |
///
/// So `bearer.or(session)` authenticates API clients by token and browsers
/// by cookie. [`login`](SessionAuthenticator::login) and
/// [`logout`](SessionAuthenticator::logout) write and clear the user.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tower_auth::session::SessionAuthenticator;
/// use tower_auth::{AuthLayer, Identity, Scheme};
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// struct User { id: u64, admin: bool }
///
/// let session = SessionAuthenticator::new("user", |u: &User| {
///     let roles: &[&str] = if u.admin { &["admin"] } else { &[] };
///     Identity::new(u.id.to_string(), Scheme::Cookie).with_roles(roles.iter().copied())
/// });
/// let layer = AuthLayer::new(session);
/// # let _ = layer;
/// ```
pub struct SessionAuthenticator<U> {
    key: Arc<str>,
    identity: Arc<IdentityFn<U>>,
    challenges: Arc<[Challenge]>,
    _user: PhantomData<fn() -> U>,
}

impl<U> SessionAuthenticator<U>
where
    U: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Reads the user stored under `key`; `identity` derives its
    /// [`Identity`] (its scheme is set to [`Scheme::Cookie`]).
    pub fn new(
        key: impl Into<Arc<str>>,
        identity: impl Fn(&U) -> Identity + Send + Sync + 'static,
    ) -> Self {
        SessionAuthenticator {
            key: key.into(),
            identity: Arc::new(identity),
            challenges: Arc::new([default_challenge(DEFAULT_REALM)]),
            _user: PhantomData,
        }
    }

    /// Sets the `realm` of the challenge (default `session`): the `401` of
    /// a request without a logged-in user says
    /// `WWW-Authenticate: Cookie realm="<realm>"`.
    ///
    /// RFC 9110 §11.6.1 requires a `WWW-Authenticate` header on every
    /// `401`, and no registered scheme describes a login form and a
    /// cookie, so the challenge uses the scheme `Cookie`: it tells the
    /// client how to authenticate (sign in to get the session cookie), and
    /// browsers show no login dialog for schemes they do not know (only
    /// for `Basic`, `Digest`, `Negotiate` and `NTLM`).
    pub fn realm(self, realm: impl Into<Arc<str>>) -> Self {
        let realm: Arc<str> = realm.into();
        self.challenge(default_challenge(&realm))
    }

    /// Replaces the challenge sent in the `WWW-Authenticate` header of
    /// `401`s when no user is logged in (default `Cookie realm="session"`,
    /// see [`realm`](SessionAuthenticator::realm)).
    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenges = Arc::new([challenge]);
        self
    }

    /// The session key the user is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Logs `user` in on a clean session: whatever the session held before
    /// is dropped (an anonymous visitor's data, a CSRF token issued before
    /// login, or the data of another user whose cookie ended up in this
    /// browser through a shared computer or a cookie planted by a sibling
    /// subdomain), its record is deleted, and the user is stored alone under
    /// a new id (against session fixation) with a new absolute lifetime.
    /// [`csrf_token`](super::csrf_token) creates a new CSRF token on demand.
    ///
    /// To carry values such as a shopping cart over, use
    /// [`login_keeping`](SessionAuthenticator::login_keeping).
    ///
    /// # Errors
    ///
    /// The user does not serialize; the session is then left untouched.
    pub fn login(&self, session: &Session, user: &U) -> Result<(), SessionError> {
        self.login_keeping(session, user, &[])
    }

    /// Like [`login`](SessionAuthenticator::login), but carries the values
    /// under the keys `keep` (those present) over to the new session, e.g.
    /// `&["cart"]`. Keep only harmless data: the previous session may have
    /// belonged to someone else, so never keep anything that grants rights
    /// (a passed second factor, a role, a "recently authenticated" stamp).
    /// The user's own key and the CSRF token are never carried over.
    ///
    /// ```
    /// use tower_auth::session::{Session, SessionAuthenticator};
    /// use tower_auth::{Identity, Scheme};
    ///
    /// let users = SessionAuthenticator::new("user", |u: &String| Identity::new(u, Scheme::Cookie));
    /// let session = Session::default();
    /// session.insert("cart", ["apple"]).unwrap();
    /// session.insert("mfa_ok", true).unwrap();
    /// users.login_keeping(&session, &"alice".to_owned(), &["cart"]).unwrap();
    /// assert!(session.contains_key("cart"));
    /// assert!(!session.contains_key("mfa_ok"));
    /// assert_eq!(users.user(&session).unwrap().as_deref(), Some("alice"));
    /// ```
    ///
    /// # Errors
    ///
    /// The user does not serialize; the session is then left untouched.
    pub fn login_keeping(
        &self,
        session: &Session,
        user: &U,
        keep: &[&str],
    ) -> Result<(), SessionError> {
        let user = to_value(&self.key, user)?;
        let kept: Vec<(&str, serde_json::Value)> = keep
            .iter()
            .filter(|k| **k != &*self.key && **k != CSRF_TOKEN_KEY)
            .filter_map(|k| session.get_value(k).map(|v| (*k, v)))
            .collect();
        session.destroy();
        for (k, v) in kept {
            session.insert_value(k, v);
        }
        session.insert_value(&self.key, user);
        Ok(())
    }

    /// Logs out: destroys the whole session (record and cookie).
    pub fn logout(&self, session: &Session) {
        session.destroy();
    }

    /// The logged-in user of `session`, if any.
    ///
    /// # Errors
    ///
    /// The stored value does not deserialize into `U`.
    pub fn user(&self, session: &Session) -> Result<Option<U>, SessionError> {
        session.get(&self.key)
    }
}

impl<U> Clone for SessionAuthenticator<U> {
    fn clone(&self) -> Self {
        SessionAuthenticator {
            key: Arc::clone(&self.key),
            identity: Arc::clone(&self.identity),
            challenges: Arc::clone(&self.challenges),
            _user: PhantomData,
        }
    }
}

impl<U> fmt::Debug for SessionAuthenticator<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionAuthenticator")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<U> Authenticator for SessionAuthenticator<U>
where
    U: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Credentials = U;
    type Principal = U;
    type Future = Ready<Result<Authenticated<U>, AuthError>>;

    fn extract(&self, request: &Parts) -> Result<Option<U>, AuthError> {
        let Some(session) = request.extensions.get::<Session>() else {
            tracing::error!(
                "SessionAuthenticator found no Session in the request extensions: \
                 add SessionLayer outside (before) the AuthLayer"
            );
            return Err(AuthError::misconfigured(
                "session authentication is not configured for this route (missing SessionLayer)",
            ));
        };
        session.get::<U>(&self.key).map_err(|e| {
            // The error names the key and the kind of failure, never the value.
            tracing::warn!(error = %e, "the session's user does not deserialize");
            AuthError::invalid_credentials("invalid session").from_cookie()
        })
    }

    /// The result is marked [`from_cookie`](Authenticated::from_cookie):
    /// the response gets `Vary: Cookie` (the `SessionLayer` adds it as
    /// well; the two are merged).
    fn authenticate(&self, user: U) -> Self::Future {
        let identity = (self.identity)(&user).with_scheme(Scheme::Cookie);
        ready(Ok(Authenticated::new(user, identity).from_cookie()))
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.challenges.to_vec()
    }
}
