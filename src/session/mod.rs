//! Middleware that keeps cookie sessions: [`SessionLayer`], session stores,
//! signed or encrypted cookies, session authentication and CSRF defence.
//!
//! MODULE_DOCS_PLACEHOLDER

mod config;
mod cookie;
mod future;
mod handle;
mod id;
mod key;
mod layer;
mod service;
mod store;

pub use config::{
    MaxAge, SameSite, SessionConfigError, DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_COOKIE_NAME,
    DEFAULT_IDLE_TIMEOUT,
};
pub use future::ResponseFuture;
pub use handle::{Session, SessionData, SessionError};
pub use id::StoreKey;
pub use key::{KeyError, SessionKey, KEY_LEN};
pub use layer::{SessionLayer, SessionLayerBuilder};
pub use service::SessionService;
pub use store::{Clock, MemorySessionStore, SessionRecord, SessionStore, StoreFull, SystemClock};

mod authenticator;
mod csrf;
#[cfg(feature = "axum")]
mod extract;

pub use authenticator::SessionAuthenticator;
pub use csrf::{
    csrf_token, verify_csrf_token, CsrfFuture, CsrfLayer, CsrfService, InvalidOrigin,
    CSRF_TOKEN_HEADER, CSRF_TOKEN_KEY,
};
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;

#[cfg(test)]
mod tests;
