use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use super::config::{Config, MaxAge, SameSite, SessionConfigError, Settings};
use super::handle::SessionData;
use super::id::StoreKey;
use super::key::SessionKey;
use super::service::SessionService;
use super::store::{Clock, SessionRecord, SessionStore, UpdateOutcome};
use crate::error::BoxError;
use crate::rejection::{RejectionHandler, Rejections};

pub(crate) type BoxStoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// The store writes that end a request.
pub(crate) struct Ops {
    /// A record to delete first, whatever else happens: the loaded record of
    /// a destroyed or emptied session, or an expired record.
    pub(crate) delete: Option<StoreKey>,
    /// The session's data to write.
    pub(crate) write: Option<Write>,
}

/// What the handler changed in its session, to apply again on top of a
/// record another request changed meanwhile.
#[derive(Default)]
pub(crate) struct Changes {
    /// [`Session::clear`](super::Session::clear): start from no data.
    pub(crate) cleared: bool,
    /// The keys written or removed, with their final value (`None`:
    /// removed).
    pub(crate) values: Vec<(String, Option<serde_json::Value>)>,
}

impl Changes {
    /// `base` with the handler's changes applied.
    fn apply(&self, mut base: SessionData) -> SessionData {
        if self.cleared {
            base.clear();
        }
        for (key, value) in &self.values {
            match value {
                Some(v) => {
                    base.insert(key.clone(), v.clone());
                }
                None => {
                    base.remove(key);
                }
            }
        }
        base
    }
}

/// How the session's data is written.
pub(crate) enum Write {
    /// A new session under a new id: `save`.
    Create(StoreKey, SessionRecord),
    /// The loaded session under its id: `update` if the stored version is
    /// still `expected`; on a conflict, the handler's `changes` are applied
    /// again on top of the current record.
    Update {
        key: StoreKey,
        record: SessionRecord,
        expected: u64,
        changes: Changes,
    },
    /// A session that was only read, due for a refresh: `touch`, which
    /// moves its expiry and never writes its (possibly stale) data.
    Touch {
        key: StoreKey,
        last_active: SystemTime,
        expires_at: SystemTime,
    },
    /// The loaded session under a new id ([`Session::cycle_id`](super::Session::cycle_id)):
    /// the handler's changes are applied on top of the current record, the
    /// old record is deleted, and the new one saved only if the old one was
    /// still there.
    Move {
        from: StoreKey,
        to: StoreKey,
        record: SessionRecord,
        expected: u64,
        changes: Changes,
    },
}

/// Attempts of a conditional update before giving up on a session other
/// requests keep changing.
const UPDATE_ATTEMPTS: usize = 4;

/// The store was still changed by other requests after
/// [`UPDATE_ATTEMPTS`] attempts.
#[derive(Debug, thiserror::Error)]
#[error("the session kept changing concurrently; update abandoned")]
pub(crate) struct KeptConflicting;

/// A [`SessionStore`] with its type erased, so that the service and its
/// future are not generic over the store. Every store call has the
/// layer's deadline.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn load(
        self: Arc<Self>,
        key: StoreKey,
        timeout: Option<Duration>,
    ) -> BoxStoreFuture<Option<SessionRecord>>;
    /// Runs `ops`; `Ok(false)` when the loaded record to update, touch or
    /// move was gone (destroyed meanwhile), in which case nothing was
    /// written.
    fn write(self: Arc<Self>, ops: Ops, timeout: Option<Duration>) -> BoxStoreFuture<bool>;
}

/// `future` with the deadline `after`; a missed deadline is a store error.
async fn timed<T>(
    future: impl Future<Output = Result<T, BoxError>>,
    after: Option<Duration>,
) -> Result<T, BoxError> {
    crate::timeout::deadline(future, after).await?
}

impl<S: SessionStore> DynStore for S {
    fn load(
        self: Arc<Self>,
        key: StoreKey,
        timeout: Option<Duration>,
    ) -> BoxStoreFuture<Option<SessionRecord>> {
        Box::pin(async move { timed(SessionStore::load(&*self, &key), timeout).await })
    }

    fn write(self: Arc<Self>, ops: Ops, t: Option<Duration>) -> BoxStoreFuture<bool> {
        Box::pin(async move {
            if let Some(key) = ops.delete {
                timed(self.delete(&key), t).await?;
            }
            match ops.write {
                Some(Write::Create(key, record)) => {
                    timed(self.save(&key, &record), t).await.map(|()| true)
                }
                Some(Write::Update {
                    key,
                    mut record,
                    mut expected,
                    changes,
                }) => {
                    for _ in 0..UPDATE_ATTEMPTS {
                        match timed(self.update(&key, &record, expected), t).await? {
                            UpdateOutcome::Updated => return Ok(true),
                            UpdateOutcome::Gone => return Ok(false),
                            UpdateOutcome::Conflict => {}
                        }
                        // Changed by another request: apply this request's
                        // changes again on top of what is stored now.
                        let Some(current) = timed(SessionStore::load(&*self, &key), t).await?
                        else {
                            return Ok(false);
                        };
                        record.data = changes.apply(current.data);
                        if record.data.is_empty() {
                            timed(self.delete(&key), t).await?;
                            return Ok(true);
                        }
                        expected = current.version;
                        record.version = current.version.wrapping_add(1);
                    }
                    Err(KeptConflicting.into())
                }
                Some(Write::Touch {
                    key,
                    last_active,
                    expires_at,
                }) => timed(self.touch(&key, last_active, expires_at), t).await,
                Some(Write::Move {
                    from,
                    to,
                    mut record,
                    expected,
                    changes,
                }) => {
                    // Carry over what other requests stored since the load
                    // (a role change), under this request's changes.
                    let Some(current) = timed(SessionStore::load(&*self, &from), t).await? else {
                        return Ok(false);
                    };
                    if current.version != expected {
                        record.data = changes.apply(current.data);
                        record.version = current.version.wrapping_add(1);
                    }
                    // Delete first: the store's answer says whether the
                    // session still existed, and a full store has room.
                    if !timed(self.delete(&from), t).await? {
                        return Ok(false);
                    }
                    timed(self.save(&to, &record), t).await.map(|()| true)
                }
                None => Ok(true),
            }
        })
    }
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn DynStore>,
    pub(crate) config: Config,
}

/// Loads the session named by the request's cookie, puts a
/// [`Session`](super::Session) handle into the request extensions, and saves
/// it after the inner service answered, setting the cookie only when
/// needed. See the [module docs](super).
///
/// Cloning is a reference-count increment: clones share the store and the
/// configuration.
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// A layer with the default settings: signed cookie named `session`,
    /// `HttpOnly; Secure; SameSite=Lax; Path=/`, `Max-Age` until expiry,
    /// idle timeout 2 hours, absolute timeout 24 hours.
    pub fn new(store: impl SessionStore, key: SessionKey) -> Self {
        // The defaults are valid.
        let config = Settings::new(key).validate();
        match config {
            Ok(config) => SessionLayer {
                shared: Arc::new(Shared {
                    store: Arc::new(store),
                    config,
                }),
            },
            Err(e) => unreachable!("default session settings are invalid: {e}"),
        }
    }

    /// A builder to change the settings; [`SessionLayerBuilder::build`]
    /// checks them.
    pub fn builder(store: impl SessionStore, key: SessionKey) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: Arc::new(store),
            settings: Settings::new(key),
        }
    }

    /// The full name of the session cookie (with its prefix, if any).
    pub fn cookie_name(&self) -> &str {
        &self.shared.config.cookie.name
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.shared.config;
        f.debug_struct("SessionLayer")
            .field("cookie", &c.cookie)
            .field("private", &c.private)
            .field("idle_timeout", &c.idle_timeout)
            .field("absolute_timeout", &c.absolute_timeout)
            .field("refresh_after", &c.refresh_after)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// Settings of a [`SessionLayer`], checked by
/// [`build`](SessionLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use tower_auth::session::{MemorySessionStore, SameSite, SessionKey, SessionLayer};
///
/// let layer = SessionLayer::builder(MemorySessionStore::new(), SessionKey::generate().unwrap())
///     .host_prefix(true)                       // cookie name "__Host-session"
///     .same_site(SameSite::Strict)
///     .idle_timeout(Some(Duration::from_secs(30 * 60)))
///     .absolute_timeout(Duration::from_secs(7 * 24 * 60 * 60))
///     .private(true)                           // encrypt the cookie
///     .build()
///     .unwrap();
/// assert_eq!(layer.cookie_name(), "__Host-session");
///
/// // __Host- cookies must be Secure: refused at build time.
/// let err = SessionLayer::builder(MemorySessionStore::new(), SessionKey::generate().unwrap())
///     .host_prefix(true)
///     .secure(false)
///     .build();
/// assert!(err.is_err());
/// ```
pub struct SessionLayerBuilder {
    store: Arc<dyn DynStore>,
    settings: Settings,
}

impl SessionLayerBuilder {
    /// The cookie name, without prefix (default `session`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Prefixes the cookie name with `__Host-` (default off), so that the
    /// browser only accepts the cookie when it is `Secure`, has `Path=/` and
    /// no `Domain`: a sibling subdomain cannot set or shadow it.
    pub fn host_prefix(mut self, on: bool) -> Self {
        self.settings.host_prefix = on;
        self
    }

    /// The `Secure` attribute (default on). Switch it off only for local
    /// development over plain `http://` with a browser that refuses `Secure`
    /// cookies there (Chromium and Firefox accept them on `localhost` and
    /// `127.0.0.1`).
    pub fn secure(mut self, on: bool) -> Self {
        self.settings.secure = on;
        self
    }

    /// The `HttpOnly` attribute (default on): scripts cannot read the cookie.
    pub fn http_only(mut self, on: bool) -> Self {
        self.settings.http_only = on;
        self
    }

    /// The `SameSite` attribute (default [`SameSite::Lax`]).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.settings.same_site = same_site;
        self
    }

    /// The `Path` attribute (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings.path = path.into();
        self
    }

    /// The `Domain` attribute (default none: the cookie goes to the host
    /// that set it only, which is safer).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.settings.domain = Some(domain.into());
        self
    }

    /// The `Max-Age` attribute (default [`MaxAge::UntilExpiry`]).
    pub fn max_age(mut self, max_age: MaxAge) -> Self {
        self.settings.max_age = max_age;
        self
    }

    /// Ends sessions unused for `timeout` (default 2 hours); `None` for no
    /// idle timeout.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// Ends sessions `timeout` after their id was created (default 24
    /// hours), however active.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.settings.absolute_timeout = timeout;
        self
    }

    /// Hands every request with a live session a
    /// [`CredentialWatch`](crate::lifetime::CredentialWatch) in its
    /// extensions, for long-lived connections (WebSockets) to end with the
    /// session: at its absolute timeout, or when a check, every
    /// `check_every` (and when the watch starts), finds it gone from the
    /// store (destroyed by a logout in another request, expired idle,
    /// deleted by an administrator) or expired. A store failure or a missed
    /// [deadline](Self::backend_timeout) ends it too
    /// ([`Ended::Unavailable`](crate::lifetime::Ended::Unavailable)).
    ///
    /// Each check is one store `load` per open connection: choose the
    /// interval with the number of connections in mind. Off by default.
    pub fn watch_sessions(mut self, check_every: Duration) -> Self {
        self.settings.watch = Some(check_every);
        self
    }

    /// How long after its last save a session that was only read is saved
    /// again to push its idle deadline back (default a tenth of the idle
    /// timeout). Shorter means more store writes and `Set-Cookie` headers;
    /// a session may end up to this much before a full idle timeout after
    /// the last request.
    pub fn refresh_after(mut self, interval: Duration) -> Self {
        self.settings.refresh_after = Some(interval);
        self
    }

    /// Encrypts the cookie (AES-256-GCM) instead of signing it (HMAC-SHA256,
    /// the default). The session id is random either way; encryption also
    /// hides it from anyone who reads the cookie.
    pub fn private(mut self, on: bool) -> Self {
        self.settings.private = on;
        self
    }

    /// Also accepts cookies signed or encrypted with `key`, a key being
    /// retired; such a cookie is re-issued with the current key. Call it
    /// once per old key.
    pub fn previous_key(mut self, key: SessionKey) -> Self {
        self.settings.previous_keys.push(key);
        self
    }

    /// The clock deciding expiry (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// The deadline of each session store call (load, save, update, touch,
    /// delete); default [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT)
    /// (5 seconds), `None` for none. A store that does not answer in time
    /// (a dead connection) is a store error: `503` (gRPC status 14), so a
    /// request is never held forever. The deadline uses tokio's timer;
    /// outside a tokio runtime store calls run without one.
    pub fn backend_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.backend_timeout = timeout;
        self
    }

    /// Renders rejections (`503` when the store fails) with `handler`. See
    /// [`crate::rejection`].
    pub fn on_rejection(mut self, handler: impl RejectionHandler) -> Self {
        self.settings.rejections = Rejections::custom(handler);
        self
    }

    /// Uses a shared [`Rejections`] renderer.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.settings.rejections = rejections;
        self
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// A [`SessionConfigError`] for settings browsers would refuse or that
    /// cannot work: a `__Host-` cookie that is not `Secure`, has a `Domain`
    /// or another path, `SameSite=None` without `Secure`, an invalid name,
    /// path or domain, a zero timeout.
    pub fn build(self) -> Result<SessionLayer, SessionConfigError> {
        let config = self.settings.validate()?;
        Ok(SessionLayer {
            shared: Arc::new(Shared {
                store: self.store,
                config,
            }),
        })
    }
}

impl fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .finish_non_exhaustive()
    }
}
