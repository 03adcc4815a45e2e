//! Password hashing with argon2id, user stores, and [`PasswordUsers`], the
//! [`UserVerifier`] that ties them together.

use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::sync::{Arc, PoisonError, RwLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Params};
use tokio::sync::Semaphore;

use super::{BasicCredentials, UserVerifier, INVALID_CREDENTIALS};
use crate::auth::{Authenticated, BoxAuthFuture};
use crate::error::AuthError;
use crate::identity::Identity;
use crate::secret::Secret;

/// Hashing a password failed (bad parameters, no system randomness).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The argon2 parameters are invalid.
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes and checks passwords with argon2id (PHC strings such as
/// `$argon2id$v=19$m=19456,t=2,p=1$…`), without telling by its timing
/// whether a user exists. See the [module docs](crate::basic#passwords).
///
/// Cloning is a reference-count increment; clones share the limit on
/// concurrent computations.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    /// A hash with the configured parameters, checked when the user is
    /// unknown, so that every check costs one computation.
    dummy: String,
    permits: Semaphore,
    max_concurrent: usize,
}

impl Passwords {
    /// argon2id with the parameters recommended by OWASP and the `argon2`
    /// crate's defaults: 19 MiB, 2 passes, 1 lane. At most as many
    /// computations run at once as the machine has cores.
    pub fn new() -> Self {
        let argon2 = Argon2::default();
        // The default parameters and the fixed salt are valid, so the dummy
        // hash cannot fail; should it, an unknown user still costs one
        // computation (of an unparsable hash: refused, no timing promise).
        let dummy = dummy_hash(&argon2).unwrap_or_default();
        Self::build(argon2, dummy, default_concurrency())
    }

    /// argon2id with `params` (memory in KiB, passes, lanes).
    ///
    /// # Errors
    ///
    /// [`PasswordError`] when a hash cannot be made with `params`.
    pub fn with_params(params: Params) -> Result<Self, PasswordError> {
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let dummy = dummy_hash(&argon2)?;
        Ok(Self::build(argon2, dummy, default_concurrency()))
    }

    fn build(argon2: Argon2<'static>, dummy: String, max_concurrent: usize) -> Self {
        Passwords {
            inner: Arc::new(Inner {
                argon2,
                dummy,
                permits: Semaphore::new(max_concurrent),
                max_concurrent,
            }),
        }
    }

    /// Runs at most `n` (at least 1) computations at once; the others wait
    /// for their turn under the [`AuthLayer`](crate::AuthLayer)'s deadline.
    /// Each computation holds the memory cost of its hash.
    pub fn max_concurrent(self, n: usize) -> Self {
        let n = n.max(1);
        Self::build(self.inner.argon2.clone(), self.inner.dummy.clone(), n)
    }

    /// Hashes `password` with a random salt into a PHC string to store.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Hash`] when the system has no randomness.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.inner
            .argon2
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(PasswordError::Hash)
    }

    /// Whether `password` matches `stored` (a PHC string; `None` when the
    /// user is unknown), on the calling thread.
    ///
    /// One argon2 computation runs either way: against `stored`, or
    /// against a dummy hash with this value's parameters when `stored` is
    /// `None` or not a valid PHC string, so an unknown user takes as long
    /// as a known one (when the stored hashes use the same parameters).
    /// Argon2 is slow by design: in async code use
    /// [`verify`](Passwords::verify), which runs this on the blocking pool.
    pub fn verify_blocking(&self, password: &[u8], stored: Option<&str>) -> bool {
        let argon2 = &self.inner.argon2;
        let parsed = stored.map(PasswordHash::new);
        match parsed {
            Some(Ok(hash)) => match argon2.verify_password(password, &hash) {
                Ok(()) => true,
                Err(argon2::password_hash::Error::PasswordInvalid) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "a stored password hash cannot be checked");
                    false
                }
            },
            Some(Err(_)) | None => {
                if parsed.is_some() {
                    tracing::warn!("a stored password hash is not a valid PHC string");
                }
                let _ = argon2.verify_password(password, self.inner.dummy.as_str());
                false
            }
        }
    }

    /// [`verify_blocking`](Passwords::verify_blocking) on tokio's blocking
    /// pool, after waiting for one of the
    /// [`max_concurrent`](Passwords::max_concurrent) turns. Outside a tokio
    /// runtime it runs on the calling thread.
    ///
    /// # Errors
    ///
    /// [`AuthError::unavailable`] when the blocking task fails.
    pub async fn verify(
        &self,
        password: Secret,
        stored: Option<String>,
    ) -> Result<bool, AuthError> {
        let _turn = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(AuthError::unavailable)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(self.verify_blocking(password.expose().as_bytes(), stored.as_deref()));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.verify_blocking(password.expose().as_bytes(), stored.as_deref())
        })
        .await
        .map_err(AuthError::unavailable)
    }

    /// The argon2 parameters of new hashes.
    pub fn params(&self) -> &Params {
        self.inner.argon2.params()
    }
}

/// The hash checked for unknown users: same parameters as new hashes, so
/// the same cost. Its password need not be secret: the result of checking
/// it is ignored.
fn dummy_hash(argon2: &Argon2<'static>) -> Result<String, PasswordError> {
    argon2
        .hash_password_with_salt(b"tower-auth dummy password", b"tower-auth dummy salt")
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.inner.argon2.params())
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish_non_exhaustive()
    }
}

/// A user found in a [`UserStore`]: the PHC string of the password hash and
/// what a successful sign-in yields. `Debug` does not print the hash.
#[derive(Clone)]
pub struct StoredUser<P> {
    /// The PHC string made by [`Passwords::hash`].
    pub password_hash: String,
    /// The principal and identity of the user.
    pub authenticated: Authenticated<P>,
}

impl<P> StoredUser<P> {
    /// A user with `password_hash`, `principal` and `identity`.
    pub fn new(password_hash: impl Into<String>, principal: P, identity: Identity) -> Self {
        StoredUser {
            password_hash: password_hash.into(),
            authenticated: Authenticated::new(principal, identity),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for StoredUser<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("password_hash", &"[redacted]")
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

/// Finds users by user id for [`PasswordUsers`]: a database table, a
/// config file.
///
/// Implemented for closures `Fn(String) -> impl Future<Output =
/// Result<Option<StoredUser<P>>, AuthError>>` and by [`MemoryUserStore`].
pub trait UserStore: Send + Sync + 'static {
    /// The principal of a user.
    type Principal: Clone + Send + Sync + 'static;
    /// The future returned by [`find`](UserStore::find).
    type Future: Future<Output = Result<Option<StoredUser<Self::Principal>>, AuthError>>
        + Send
        + 'static;

    /// Looks `user_id` up: `Ok(None)` when there is no such user (or it is
    /// disabled).
    ///
    /// # Errors
    ///
    /// [`AuthError::unavailable`] when the store fails.
    fn find(&self, user_id: &str) -> Self::Future;
}

impl<F, Fut, P> UserStore for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<StoredUser<P>>, AuthError>> + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Principal = P;
    type Future = Fut;

    fn find(&self, user_id: &str) -> Fut {
        self(user_id.to_owned())
    }
}

/// Users in memory, e.g. from a config file: metrics scrapers, webhook
/// senders. Cloning is a reference-count increment.
pub struct MemoryUserStore<P> {
    users: Arc<RwLock<HashMap<Box<str>, StoredUser<P>>>>,
}

impl<P> MemoryUserStore<P> {
    /// An empty store.
    pub fn new() -> Self {
        MemoryUserStore {
            users: Arc::default(),
        }
    }

    /// Adds or replaces `user_id` with `password_hash` (a PHC string made by
    /// [`Passwords::hash`]).
    pub fn insert(
        &self,
        user_id: impl Into<String>,
        password_hash: impl Into<String>,
        principal: P,
        identity: Identity,
    ) {
        let user = StoredUser::new(password_hash, principal, identity);
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user_id.into().into_boxed_str(), user);
    }

    /// Removes `user_id`; whether it was there.
    pub fn remove(&self, user_id: &str) -> bool {
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user_id)
            .is_some()
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<P> Default for MemoryUserStore<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Clone for MemoryUserStore<P> {
    fn clone(&self) -> Self {
        MemoryUserStore {
            users: Arc::clone(&self.users),
        }
    }
}

impl<P> fmt::Debug for MemoryUserStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUserStore")
            .field("users", &self.len())
            .finish()
    }
}

impl<P: Clone + Send + Sync + 'static> UserStore for MemoryUserStore<P> {
    type Principal = P;
    type Future = Ready<Result<Option<StoredUser<P>>, AuthError>>;

    fn find(&self, user_id: &str) -> Self::Future {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        ready(Ok(users.get(user_id).cloned()))
    }
}

/// The future of [`PasswordUsers`].
pub type PasswordUsersFuture<P> = BoxAuthFuture<P>;

/// A [`UserVerifier`] checking passwords against the argon2 hashes of a
/// [`UserStore`] with [`Passwords`]: an unknown user and a wrong password
/// get the same `401` ([`INVALID_CREDENTIALS`]) after the same work.
pub struct PasswordUsers<S> {
    store: Arc<S>,
    passwords: Passwords,
}

impl<S: UserStore> PasswordUsers<S> {
    /// Checks the users of `store` with `passwords`.
    pub fn new(store: S, passwords: Passwords) -> Self {
        PasswordUsers {
            store: Arc::new(store),
            passwords,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The password hasher.
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }
}

impl<S> Clone for PasswordUsers<S> {
    fn clone(&self) -> Self {
        PasswordUsers {
            store: Arc::clone(&self.store),
            passwords: self.passwords.clone(),
        }
    }
}

impl<S> fmt::Debug for PasswordUsers<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordUsers")
            .field("passwords", &self.passwords)
            .finish_non_exhaustive()
    }
}

impl<S: UserStore> UserVerifier for PasswordUsers<S> {
    type Principal = S::Principal;
    type Future = PasswordUsersFuture<S::Principal>;

    fn verify(&self, credentials: BasicCredentials) -> Self::Future {
        let lookup = self.store.find(credentials.user_id());
        let passwords = self.passwords.clone();
        Box::pin(async move {
            let (hash, user) = match lookup.await? {
                Some(u) => (Some(u.password_hash), Some(u.authenticated)),
                None => (None, None),
            };
            let matches = passwords.verify(credentials.password, hash).await?;
            match user {
                Some(user) if matches => Ok(user),
                _ => Err(AuthError::invalid_credentials(INVALID_CREDENTIALS)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Scheme;

    fn cheap() -> Passwords {
        Passwords::with_params(Params::new(256, 1, 1, None).unwrap()).unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let p = cheap();
        let hash = p.hash("s3cret:with colon").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
        assert!(p.verify_blocking(b"s3cret:with colon", Some(&hash)));
        assert!(!p.verify_blocking(b"s3cret:with colon ", Some(&hash)));
        assert!(!p.verify_blocking(b"", Some(&hash)));
        // Two hashes of one password differ (random salt).
        assert_ne!(hash, p.hash("s3cret:with colon").unwrap());
    }

    #[test]
    fn unknown_user_and_garbage_hash_are_refused() {
        let p = cheap();
        assert!(!p.verify_blocking(b"anything", None));
        assert!(!p.verify_blocking(b"anything", Some("not a hash")));
        assert!(!p.verify_blocking(b"anything", Some("$bcrypt$v=1$abc$def")));
        // Even the dummy hash's own password opens nothing.
        assert!(!p.verify_blocking(b"tower-auth dummy password", None));
    }

    #[test]
    fn hashes_from_other_parameters_still_verify() {
        let old = Passwords::with_params(Params::new(128, 2, 1, None).unwrap()).unwrap();
        let hash = old.hash("pw").unwrap();
        assert!(cheap().verify_blocking(b"pw", Some(&hash)));
    }

    #[tokio::test]
    async fn async_verify_runs_on_the_blocking_pool() {
        let p = cheap().max_concurrent(1);
        let hash = p.hash("pw").unwrap();
        assert!(p
            .verify(Secret::new("pw"), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!p.verify(Secret::new("pW"), Some(hash)).await.unwrap());
        assert!(!p.verify(Secret::new("pw"), None).await.unwrap());
    }

    #[tokio::test]
    async fn password_users_answer_unknown_and_wrong_alike() {
        let p = cheap();
        let store = MemoryUserStore::new();
        store.insert(
            "alice",
            p.hash("pw").unwrap(),
            7u32,
            Identity::new("alice", Scheme::Other("Basic".into())),
        );
        let users = PasswordUsers::new(store, p);
        let ok = users
            .verify(BasicCredentials::new("alice", "pw"))
            .await
            .unwrap();
        assert_eq!(ok.principal, 7);
        assert_eq!(ok.identity.subject(), "alice");
        let wrong = users
            .verify(BasicCredentials::new("alice", "nope"))
            .await
            .unwrap_err();
        let unknown = users
            .verify(BasicCredentials::new("bob", "pw"))
            .await
            .unwrap_err();
        assert_eq!(wrong.message(), unknown.message());
        assert_eq!(wrong.kind(), unknown.kind());
    }

    #[test]
    fn debug_hides_hashes() {
        let u = StoredUser::new(
            "$argon2id$secret-hash",
            (),
            Identity::new("a", Scheme::ApiKey),
        );
        assert!(!format!("{u:?}").contains("secret-hash"));
    }
}
