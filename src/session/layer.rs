use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::config::{Config, MaxAge, SameSite, SessionConfigError, Settings};
use super::id::StoreKey;
use super::key::SessionKey;
use super::service::SessionService;
use super::store::{Clock, SessionRecord, SessionStore};
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

/// How the session's data is written.
pub(crate) enum Write {
    /// A new session under a new id: `save`.
    Create(StoreKey, SessionRecord),
    /// The loaded session under its id: `update`, only if it still exists.
    Update(StoreKey, SessionRecord),
    /// The loaded session under a new id ([`Session::cycle_id`](super::Session::cycle_id)):
    /// the old record is deleted, and the new one saved only if the old one
    /// was still there.
    Move {
        from: StoreKey,
        to: StoreKey,
        record: SessionRecord,
    },
}

/// A [`SessionStore`] with its type erased, so that the service and its
/// future are not generic over the store.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn load(self: Arc<Self>, key: StoreKey) -> BoxStoreFuture<Option<SessionRecord>>;
    /// Runs `ops`; `Ok(false)` when the loaded record to update or move was
    /// gone (destroyed meanwhile), in which case nothing was written.
    fn write(self: Arc<Self>, ops: Ops) -> BoxStoreFuture<bool>;
}

impl<S: SessionStore> DynStore for S {
    fn load(self: Arc<Self>, key: StoreKey) -> BoxStoreFuture<Option<SessionRecord>> {
        Box::pin(async move { SessionStore::load(&*self, &key).await })
    }

    fn write(self: Arc<Self>, ops: Ops) -> BoxStoreFuture<bool> {
        Box::pin(async move {
            if let Some(key) = ops.delete {
                self.delete(&key).await?;
            }
            match ops.write {
                Some(Write::Create(key, record)) => self.save(&key, &record).await.map(|()| true),
                Some(Write::Update(key, record)) => self.update(&key, &record).await,
                Some(Write::Move { from, to, record }) => {
                    // Delete first: the store's answer says whether the
                    // session still existed, and a full store has room.
                    if !self.delete(&from).await? {
                        return Ok(false);
                    }
                    self.save(&to, &record).await.map(|()| true)
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
