//! Middleware that keeps cookie sessions: [`SessionLayer`], session stores,
//! signed or encrypted cookies, session authentication and CSRF defence.
//!
//! [`SessionLayer`] reads the session cookie, loads the session from a
//! [`SessionStore`], and puts a [`Session`] handle into the request
//! extensions (an axum extractor too, with feature `axum`). Handlers read
//! and change it with typed `get` / `insert` / `remove` (serde). After the
//! inner service answered, the layer saves the session and sets the cookie,
//! only when something changed.
//!
//! ```text
//! request -> SessionLayer -> CsrfLayer -> AuthLayer<jwt.or(session)> -> handler
//!            loads session   403 cross-site  401 / principal
//! ```
//!
//! # Ids, keys and the store
//!
//! * A session id is 256 bits from the operating system's CSPRNG, created
//!   only when a session first holds data: requests that store nothing cost
//!   no write and set no cookie.
//! * The cookie holds the id signed with HMAC-SHA256 (default) or encrypted
//!   with AES-256-GCM ([`private`](SessionLayerBuilder::private)), under a
//!   [`SessionKey`] you supply. A tampered or forged cookie fails
//!   verification before any store lookup.
//! * Stores file sessions under a [`StoreKey`], the SHA-256 of the id, and
//!   never see the id itself: a leaked store or backup cannot be replayed as
//!   cookies.
//! * An id the client sent is never adopted: if it names no live session,
//!   data stored in that request gets a new id.
//!
//! # Cookies
//!
//! | attribute  | default                      | setting |
//! |------------|------------------------------|---------|
//! | name       | `session`                    | [`cookie_name`](SessionLayerBuilder::cookie_name), [`host_prefix`](SessionLayerBuilder::host_prefix) (`__Host-session`) |
//! | `HttpOnly` | on                           | [`http_only`](SessionLayerBuilder::http_only) |
//! | `Secure`   | on                           | [`secure`](SessionLayerBuilder::secure): switch off explicitly for plain-http development |
//! | `SameSite` | `Lax`                        | [`same_site`](SessionLayerBuilder::same_site) |
//! | `Path`     | `/`                          | [`path`](SessionLayerBuilder::path) |
//! | `Domain`   | none (this host only)        | [`domain`](SessionLayerBuilder::domain) |
//! | `Max-Age`  | time left until expiry       | [`max_age`](SessionLayerBuilder::max_age) |
//!
//! Settings browsers would refuse (a `__Host-` cookie that is not `Secure`,
//! `SameSite=None` without `Secure`, ...) are errors of
//! [`build`](SessionLayerBuilder::build).
//!
//! What the response does to the cookie:
//!
//! | request / handler                                         | store                    | `Set-Cookie` |
//! |-----------------------------------------------------------|--------------------------|--------------|
//! | no cookie, nothing stored                                 | -                        | none         |
//! | no cookie, data stored                                    | new record               | new id       |
//! | live session, only read                                   | -                        | none         |
//! | live session, read after [`refresh_after`](SessionLayerBuilder::refresh_after) | expiry pushed back ([`touch`](SessionStore::touch), data not written) | same id, new `Max-Age` |
//! | live session, data changed                                | record updated (compare-and-swap, merged on conflict) | same id, new `Max-Age` |
//! | [`SessionAuthenticator::login`], or [`Session::destroy`] then data stored | old deleted, new record with the new data only | new id |
//! | [`Session::cycle_id`] (privilege change, renewal)          | record moved to a new id, data and creation time kept | new id |
//! | [`Session::destroy`] (logout) or [`Session::clear`]       | deleted                  | removal (`Max-Age=0`) |
//! | last value removed                                        | deleted                  | none         |
//! | session destroyed by another request meanwhile            | not written back         | none         |
//! | cookie tampered, forged, unknown or expired               | expired record deleted   | none (ignored) |
//! | several valid cookies naming different sessions           | -                        | none (all ignored) |
//! | store error or timeout loading the session                | -                        | `503`, fail closed |
//! | store error or timeout saving, see [below](#store-errors)  | -                        | `503`, or the handler's response without `Set-Cookie` |
//!
//! Only an explicit [`destroy`](Session::destroy) or
//! [`clear`](Session::clear) removes the cookie. A cookie that names no live
//! session is ignored, not removed: by the time the response arrives the
//! browser may hold a newer cookie (a login answered meanwhile rotated the
//! id), which the removal would wipe, logging the user out; and a cookie
//! planted by a sibling subdomain could otherwise make a cross-site request
//! remove the real one. (Several cookies with the session's name, as planted
//! by a sibling subdomain, are all ignored; the `__Host-` prefix prevents
//! this.)
//!
//! # Caching
//!
//! A response carrying a session cookie must never be stored by a shared
//! cache (it would hand the session to the next visitor), nor one carrying a
//! removal (it would log everyone out). Whenever the layer sets the cookie it
//! replaces the response's `Cache-Control` with `no-store`. Responses to
//! requests that sent a session cookie get `Vary: Cookie`, added to any
//! `Vary` the handler set, so that caches do not serve a page rendered for
//! one session to another.
//!
//! # Timeouts
//!
//! A session ends [`idle_timeout`](SessionLayerBuilder::idle_timeout) (2
//! hours) after its last save and [`absolute_timeout`](SessionLayerBuilder::absolute_timeout)
//! (24 hours) after it was created, whichever comes first. The creation time
//! survives [`Session::cycle_id`], so renewing the id never extends a
//! session; a login ([`SessionAuthenticator::login`], or
//! [`Session::destroy`] then new data) starts a new session with a new
//! absolute lifetime. The layer checks both timeouts on every load with its
//! [`Clock`], whatever the store does; an expired session is refused and
//! deleted. To keep store writes rare, a session that is only read is saved
//! again (pushing its idle deadline back and re-sending the cookie) once a
//! tenth of the idle timeout has passed since its last save.
//! [`MemorySessionStore`] drops expired records on lookup and purges them on
//! every write.
//!
//! # Concurrent requests and disconnects
//!
//! Requests on one session run concurrently. A request that only read its
//! session never writes its copy of the data back: when the idle deadline
//! is due for a refresh it only moves the expiry ([`SessionStore::touch`]),
//! which never recreates a destroyed record. So a logout or a role change
//! made by a concurrent request stays. A request that changed its session
//! writes with a compare-and-swap on the record's version
//! ([`SessionStore::update`]); if another request changed the record
//! meanwhile, the layer reloads it and applies this request's own changes
//! (the keys it inserted or removed, or a [`clear`](Session::clear)) on
//! top, a few times at most, so neither change is lost. A session destroyed
//! by one request is never written back by another. A
//! [`cycle_id`](Session::cycle_id) carries over what other requests stored
//! before it, but a change landing between its reload and its delete is
//! lost (the window is one store round trip). The
//! store writes run in the response future, after the handler: if the
//! client disconnects and the server drops that future while an async
//! store is still writing, the write may not happen. For a logout, the
//! session then lives on until it expires (the client, gone, did not get
//! the removal cookie either); keep the idle timeout short if that matters.
//!
//! # Store errors
//!
//! Every store call has a deadline,
//! [`backend_timeout`](SessionLayerBuilder::backend_timeout) (default
//! [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT), 5 seconds):
//! a store that does not answer (a dead connection) is a store error, so a
//! request is never held forever.
//!
//! A store error while loading the session fails the request closed with
//! `503` (gRPC status 14 for gRPC requests) before the handler runs.
//!
//! A store error while saving comes after the handler ran, and its work
//! (a payment, a sent message) is done:
//!
//! * When the handler changed which session the client holds or its
//!   authentication (a new session, a login through
//!   [`destroy`](Session::destroy) or
//!   [`SessionAuthenticator::login`], a logout, [`clear`](Session::clear),
//!   [`cycle_id`](Session::cycle_id)), the response is replaced by `503`:
//!   the client must not believe it signed in or out when the store did not
//!   record it.
//! * Otherwise (a change to the data of an existing session, a refresh of
//!   its expiry), the handler's response is kept, without `Set-Cookie`, and
//!   a warning is logged (without ids or values): answering `503` would
//!   invite the client to repeat a request that succeeded. Only the session
//!   change is lost. This includes a record over the
//!   [`MemorySessionStore`]'s size cap, and an update that kept conflicting
//!   with concurrent ones.
//!
//! # Authentication
//!
//! [`SessionAuthenticator`] plugs sessions into [`AuthLayer`](crate::AuthLayer):
//! the user stored in the session is the principal, so `jwt.or(session)`
//! serves API clients and browsers alike. Its
//! [`login`](SessionAuthenticator::login) starts a clean session holding
//! only the user, under a new id (nothing of the previous session carries
//! over unless asked for with
//! [`login_keeping`](SessionAuthenticator::login_keeping));
//! [`logout`](SessionAuthenticator::logout) destroys the session.
//!
//! # CSRF
//!
//! Browsers attach cookies to cross-site requests, so a cookie-authenticated
//! `POST` needs a CSRF defence. [`CsrfLayer`] refuses unsafe requests that
//! carry cookies unless `Sec-Fetch-Site` says `same-origin` / `none` or
//! `Origin` matches the host or an allowed origin, with `403`
//! `{"error":"csrf_rejected", ...}`; it can also require a synchronizer
//! token ([`csrf_token`]) in a header. `SameSite=Lax` already keeps the
//! cookie off cross-site `POST`s in current browsers; this covers sibling
//! subdomains (`same-site`), older browsers and `SameSite=None`.
//!
//! ## Login CSRF
//!
//! A sign-in form is the one unsafe request a browser sends without a
//! session cookie, so the default check, which only looks at requests
//! carrying cookies, lets a cross-site sign-in through. An attacker's page
//! can then post the attacker's own username and password to your form: the
//! victim's browser comes back signed in to the attacker's account, and
//! whatever the victim does next (saves a card or an address, uploads a
//! file, types searches) lands in an account the attacker reads later.
//! `SameSite` does not help: the response *sets* the cookie, it does not
//! need one.
//!
//! Put [`CsrfLayer::check_without_cookies`] on the sign-in route (and on
//! sign-up, if it signs in): a cross-site `POST` then gets `403` before any
//! password is checked and no cookie is set, a same-origin form passes
//! (browsers send `Sec-Fetch-Site: same-origin` and `Origin` with form
//! posts), and clients that send neither header (curl, servers, mobile
//! apps) are unaffected. The layer can wrap only that route, next to a
//! global [`CsrfLayer::new`] for the rest:
//!
//! ```
//! # use tower_auth::session::CsrfLayer;
//! let global = CsrfLayer::new(); // cookie-carrying requests, every route
//! let login = CsrfLayer::new().check_without_cookies(true); // the login route
//! # let _ = (global, login);
//! ```
//!
//! A synchronizer token ([`csrf_token`]) works too, but needs a session
//! created when the form is served, before anyone signs in;
//! [`SessionAuthenticator::login`] then starts a new session under a new id,
//! so nothing from that pre-login session carries over.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{header, Request, Response, StatusCode};
//! use serde::{Deserialize, Serialize};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_auth::session::{
//!     CsrfLayer, MemorySessionStore, Session, SessionAuthenticator, SessionKey, SessionLayer,
//! };
//! use tower_auth::{AuthLayer, Identity, Scheme};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct User { id: u64, name: String }
//!
//! let users = SessionAuthenticator::new("user", |u: &User| {
//!     Identity::new(u.id.to_string(), Scheme::Cookie)
//! });
//! // In production: SessionKey::from_base64(&std::env::var("SESSION_KEY")?)
//! let sessions = SessionLayer::new(MemorySessionStore::new(), SessionKey::generate().unwrap());
//!
//! // POST /login: check the password (not shown), then log in.
//! let login = ServiceBuilder::new()
//!     .layer(sessions.clone())
//!     .layer(CsrfLayer::new())
//!     .service_fn({
//!         let users = users.clone();
//!         move |req: Request<()>| {
//!             let users = users.clone();
//!             async move {
//!                 let session = req.extensions().get::<Session>().unwrap();
//!                 users.login(session, &User { id: 1, name: "alice".into() }).unwrap();
//!                 Ok::<_, Infallible>(Response::new(String::new()))
//!             }
//!         }
//!     });
//! let res = login.oneshot(Request::post("/login").body(()).unwrap()).await.unwrap();
//! let set_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
//! assert!(set_cookie.contains("HttpOnly; SameSite=Lax; Secure; Path=/"));
//! let cookie = set_cookie.split(';').next().unwrap().to_owned();
//!
//! // GET /me: the session's user is the principal.
//! let me = ServiceBuilder::new()
//!     .layer(sessions)
//!     .layer(AuthLayer::new(users))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let user = req.extensions().get::<User>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", user.name)))
//!     }));
//! let req = Request::get("/me").header(header::COOKIE, &cookie).body(()).unwrap();
//! let res = me.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let res = me.oneshot(Request::get("/me").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

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
pub use handle::{Session, SessionData, SessionError, SessionErrorKind};
pub use id::StoreKey;
pub use key::{KeyError, SessionKey, KEY_LEN};
pub use layer::{SessionLayer, SessionLayerBuilder};
pub use service::SessionService;
pub use store::{
    Clock, MemorySessionStore, RecordTooLarge, SessionRecord, SessionStore, StoreFull, SystemClock,
    UpdateOutcome, DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_SESSIONS, DEFAULT_USER_KEY,
};

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
