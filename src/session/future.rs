use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, SET_COOKIE, VARY};
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::{Config, MaxAge};
use super::cookie;
use super::handle::{Session, SessionData};
use super::id::{SessionId, StoreKey};
use super::layer::{BoxStoreFuture, Changes, Ops, Shared, Write};
use super::store::SessionRecord;
use crate::body::{self, ResponseBody};
use crate::error::BoxError;
use crate::lifetime::CredentialWatch;
use crate::rejection::{Rejection, RejectionKind};

/// `t + d`, saturating far in the future instead of overflowing.
fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(t)
}

/// Whether `record` is past one of its deadlines at `now`, by the store's
/// `expires_at` or by the layer's current timeouts.
pub(crate) fn is_expired(config: &Config, record: &SessionRecord, now: SystemTime) -> bool {
    record.is_expired(now)
        || add(record.created_at, config.absolute_timeout) <= now
        || config
            .idle_timeout
            .is_some_and(|idle| add(record.last_active, idle) <= now)
}

/// Why a request is refused; rendered by the layer's [`Rejections`](crate::rejection::Rejections).
pub(crate) struct Refusal(RejectionKind, &'static str);

/// A live session loaded from the store.
struct Loaded {
    id: SessionId,
    key: StoreKey,
    created_at: SystemTime,
    last_active: SystemTime,
    expires_at: SystemTime,
    version: u64,
}

/// What the response says to the client's cookie.
enum CookieOut {
    Keep,
    Set {
        id: SessionId,
        expires_at: SystemTime,
    },
    Remove,
}

/// What a request learned about its session before the inner service ran.
pub(crate) struct Ctx {
    shared: Arc<Shared>,
    pub(crate) session: Session,
    loaded: Option<Loaded>,
    /// The request sent one or more cookies with the session's name: the
    /// response depends on them (`Vary: Cookie`).
    pub(crate) presented: bool,
    /// The request sent a cookie of ours, live or not (not several naming
    /// different sessions): an explicit destroy or clear removes it.
    pub(crate) removable: bool,
    /// An expired record to delete.
    expired: Option<StoreKey>,
    /// The cookie was sealed with a previous key.
    pub(crate) reissue: bool,
    grpc: bool,
    out: CookieOut,
    /// The planned write changes which session the client holds or its
    /// authentication (a new session, a login, a logout, a new id): if it
    /// fails, the response must fail too (`503`), or the client would
    /// believe it happened.
    strict: bool,
}

impl Ctx {
    pub(crate) fn new(shared: Arc<Shared>, grpc: bool) -> Self {
        Ctx {
            shared,
            session: Session::default(),
            loaded: None,
            presented: false,
            removable: false,
            expired: None,
            reissue: false,
            grpc,
            out: CookieOut::Keep,
            strict: false,
        }
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The [`CredentialWatch`] of the loaded session, when the layer hands
    /// them out: the absolute timeout, and a check that the record is still
    /// in the store and not expired.
    fn watch(&self) -> Option<CredentialWatch> {
        let every = self.config().watch?;
        let loaded = self.loaded.as_ref()?;
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let end = unix(add(loaded.created_at, self.config().absolute_timeout));
        let (shared, key) = (Arc::clone(&self.shared), loaded.key);
        let clock = Arc::clone(&self.shared);
        Some(
            CredentialWatch::new()
                .expires_at(end)
                .clock(move || unix(clock.config.clock.now()))
                .check_every(every, move || {
                    let shared = Arc::clone(&shared);
                    async move {
                        let timeout = shared.config.backend_timeout;
                        let record = Arc::clone(&shared.store).load(key, timeout).await?;
                        let now = shared.config.clock.now();
                        Ok(record.is_some_and(|r| !is_expired(&shared.config, &r, now)))
                    }
                }),
        )
    }

    /// Takes the store's answer for the cookie's id.
    fn loaded(&mut self, id: SessionId, key: StoreKey, record: Option<SessionRecord>) {
        let now = self.config().clock.now();
        match record {
            Some(r) if !is_expired(self.config(), &r, now) => {
                self.session = Session::with_data(r.data);
                self.loaded = Some(Loaded {
                    id,
                    key,
                    created_at: r.created_at,
                    last_active: r.last_active,
                    expires_at: r.expires_at,
                    version: r.version,
                });
            }
            // No removal cookie for a dead id: the browser may hold a newer
            // cookie by now (a login that rotated this id answered first),
            // which a removal would wipe. The dead cookie is just ignored.
            Some(_) => {
                tracing::debug!("session expired; record deleted, cookie ignored");
                self.expired = Some(key);
            }
            None => {
                tracing::debug!("session cookie names no stored session; ignored");
            }
        }
    }

    fn render<B>(&self, refusal: Refusal) -> Response<ResponseBody<B>> {
        let rejection = Rejection::new(refusal.0, refusal.1).with_grpc(self.grpc);
        body::rejection(self.config().rejections.respond(rejection))
    }

    fn unavailable<B>(&self, error: &BoxError) -> Response<ResponseBody<B>> {
        tracing::warn!(error = %error, "session store failed");
        self.render(Refusal(
            RejectionKind::Unavailable,
            "the session store is temporarily unavailable",
        ))
    }

    /// The record of a new session: a new absolute lifetime starts now.
    fn new_record(&self, data: SessionData, now: SystemTime) -> SessionRecord {
        let config = self.config();
        let absolute = add(now, config.absolute_timeout);
        let expires_at = config
            .idle_timeout
            .map_or(absolute, |idle| add(now, idle).min(absolute));
        SessionRecord {
            data,
            created_at: now,
            last_active: now,
            expires_at,
            version: 0,
        }
    }

    /// The record of the loaded session, saved now: its absolute lifetime
    /// still counts from its creation, whatever id it has.
    fn updated_record(&self, loaded: &Loaded, data: SessionData, now: SystemTime) -> SessionRecord {
        let config = self.config();
        let absolute = add(loaded.created_at, config.absolute_timeout);
        let expires_at = config
            .idle_timeout
            .map_or(absolute, |idle| add(now, idle).min(absolute));
        SessionRecord {
            data,
            created_at: loaded.created_at,
            last_active: now,
            expires_at,
            version: loaded.version.wrapping_add(1),
        }
    }

    /// A fresh session id.
    fn new_id(&self) -> Result<SessionId, Refusal> {
        SessionId::generate().map_err(|e| {
            tracing::error!(error = %e, "the random number generator failed");
            Refusal(
                RejectionKind::Unavailable,
                "a session could not be created, retry later",
            )
        })
    }

    /// Decides the store writes and the cookie once the handler answered.
    ///
    /// The client's cookie is removed only when the handler ended the
    /// session explicitly ([`Session::destroy`], [`Session::clear`]): a
    /// cookie naming no live session (unknown, expired, destroyed meanwhile,
    /// forged) is ignored, never removed, since by the time the response
    /// arrives the browser may hold a newer cookie.
    fn plan(&mut self) -> Result<Option<Ops>, Refusal> {
        let now = self.config().clock.now();
        let mut delete = self.expired.take();
        let had = self.loaded.take();
        let (changed, cycle, destroyed, ended, empty, changes) = {
            let state = self.session.lock();
            let changes = Changes {
                cleared: state.cleared,
                values: state
                    .dirty
                    .iter()
                    .map(|k| (k.clone(), state.data.get(k).cloned()))
                    .collect(),
            };
            (
                state.changed,
                state.cycle,
                state.destroyed,
                state.ended,
                state.data.is_empty(),
                changes,
            )
        };
        // A logout, login or new id must not be reported as done unless it
        // was stored.
        self.strict = destroyed || cycle || ended;
        let mut write = None;

        if empty {
            // Nothing to store: the loaded record goes if the handler
            // destroyed or emptied the session.
            if let Some(l) = &had {
                if changed {
                    delete = Some(l.key);
                }
            }
            if ended && self.removable {
                self.out = CookieOut::Remove;
            }
        } else if destroyed {
            // Destroyed, then given new data (a login): a new session, and
            // the old record goes whatever happened to it meanwhile.
            if let Some(l) = &had {
                delete = Some(l.key);
            }
            write = Some(self.create(now)?);
        } else if let Some(l) = had {
            if cycle {
                write = Some(self.relocate(l, now, changes)?);
            } else if changed {
                write = Some(self.update(l, now, changes));
            } else {
                let due = self.config().idle_timeout.is_some()
                    && add(l.last_active, self.config().refresh_after) <= now;
                if due {
                    write = Some(self.touch(l, now));
                } else if self.reissue {
                    // Sealed with a previous key: the same cookie, sealed
                    // with the current one; nothing to store.
                    self.out = CookieOut::Set {
                        id: l.id,
                        expires_at: l.expires_at,
                    };
                }
            }
        } else if changed {
            // Never adopt an id the client chose: new data, new id.
            self.strict = true;
            write = Some(self.create(now)?);
        }

        if delete.is_none() && write.is_none() {
            return Ok(None);
        }
        Ok(Some(Ops { delete, write }))
    }

    /// Plans a new session with a new id, and its cookie.
    fn create(&mut self, now: SystemTime) -> Result<Write, Refusal> {
        let id = self.new_id()?;
        let record = self.new_record(self.session.data(), now);
        let key = id.store_key();
        self.out = CookieOut::Set {
            expires_at: record.expires_at,
            id,
        };
        Ok(Write::Create(key, record))
    }

    /// Plans the move of the loaded session to a new id
    /// ([`Session::cycle_id`]), and the new cookie.
    fn relocate(
        &mut self,
        loaded: Loaded,
        now: SystemTime,
        changes: Changes,
    ) -> Result<Write, Refusal> {
        let id = self.new_id()?;
        let record = self.updated_record(&loaded, self.session.data(), now);
        let to = id.store_key();
        self.out = CookieOut::Set {
            expires_at: record.expires_at,
            id,
        };
        Ok(Write::Move {
            from: loaded.key,
            to,
            record,
            expected: loaded.version,
            changes,
        })
    }

    /// Plans an update of the loaded session, which keeps its id; the
    /// cookie is sent again when its `Max-Age` follows the expiry that moved,
    /// or when it must be sealed with the current key.
    fn update(&mut self, loaded: Loaded, now: SystemTime, changes: Changes) -> Write {
        let record = self.updated_record(&loaded, self.session.data(), now);
        let (key, expected) = (loaded.key, loaded.version);
        self.resend(loaded.id, record.expires_at);
        Write::Update {
            key,
            record,
            expected,
            changes,
        }
    }

    /// Plans the refresh of a session that was only read: its expiry moves,
    /// its data (this request's copy may be stale) is not written.
    fn touch(&mut self, loaded: Loaded, now: SystemTime) -> Write {
        let config = self.config();
        let absolute = add(loaded.created_at, config.absolute_timeout);
        let expires_at = config
            .idle_timeout
            .map_or(absolute, |idle| add(now, idle).min(absolute));
        let key = loaded.key;
        self.resend(loaded.id, expires_at);
        Write::Touch {
            key,
            last_active: now,
            expires_at,
        }
    }

    /// Re-sends the cookie of the loaded session when its `Max-Age` follows
    /// the expiry that moved, or when it must be sealed with the current key.
    fn resend(&mut self, id: SessionId, expires_at: SystemTime) {
        let follows_expiry = self.config().cookie.max_age == MaxAge::UntilExpiry
            && self.config().idle_timeout.is_some();
        if follows_expiry || self.reissue {
            self.out = CookieOut::Set { id, expires_at };
        }
    }

    /// Adds the planned `Set-Cookie` to `response`, and the caching headers
    /// a response that depends on a session needs.
    fn finish<B>(&mut self, mut response: Response<B>) -> Response<ResponseBody<B>> {
        let value = match std::mem::replace(&mut self.out, CookieOut::Keep) {
            CookieOut::Keep => None,
            CookieOut::Remove => Some(self.config().removal.clone()),
            CookieOut::Set { id, expires_at } => {
                let now = self.config().clock.now();
                let left = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
                let Some(value) = cookie::set_cookie(self.config(), &id, left) else {
                    tracing::error!("the session cookie could not be rendered");
                    return self.render(Refusal(
                        RejectionKind::Internal,
                        "the session cookie could not be rendered",
                    ));
                };
                Some(value)
            }
        };
        let headers = response.headers_mut();
        if let Some(value) = &value {
            headers.append(SET_COOKIE, value.clone());
            // A shared cache must not store a session cookie (it would hand
            // the session to everyone) nor a removal (it would log everyone
            // out), whatever the handler said.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if value.is_some() || self.presented {
            vary_on_cookie(headers);
        }
        body::wrap(response)
    }
}

/// Adds `Cookie` to the `Vary` header, keeping what is there.
fn vary_on_cookie(headers: &mut HeaderMap) {
    let covered = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("cookie"))
        })
    });
    if !covered {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

pin_project! {
    /// The response future of [`SessionService`](super::SessionService).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, S::Future, S::Response, ReqBody>,
        ctx: Ctx,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, R, ReqBody> {
        Loading {
            load: BoxStoreFuture<Option<SessionRecord>>,
            request: Option<(Parts, ReqBody, SessionId, StoreKey)>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            fut: F,
        },
        Saving {
            save: BoxStoreFuture<bool>,
            response: Option<R>,
        },
        Done,
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn loading(
        load: BoxStoreFuture<Option<SessionRecord>>,
        parts: Parts,
        body: ReqBody,
        inner: S,
        id: SessionId,
        key: StoreKey,
        ctx: Ctx,
    ) -> Self {
        ResponseFuture {
            state: State::Loading {
                load,
                request: Some((parts, body, id, key)),
                inner: Some(inner),
            },
            ctx,
        }
    }

    pub(crate) fn calling(fut: S::Future, ctx: Ctx) -> Self {
        ResponseFuture {
            state: State::Calling { fut },
            ctx,
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let ctx: &mut Ctx = this.ctx;
        loop {
            match this.state.as_mut().project() {
                StateProj::Loading {
                    load,
                    request,
                    inner,
                } => {
                    let result = ready!(load.as_mut().poll(cx));
                    let (Some((mut parts, body, id, key)), Some(mut svc)) =
                        (request.take(), inner.take())
                    else {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    match result {
                        Ok(record) => ctx.loaded(id, key, record),
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(ctx.unavailable(&e)));
                        }
                    }
                    parts.extensions.insert(ctx.session.clone());
                    if let Some(watch) = ctx.watch() {
                        parts.extensions.insert(watch);
                    }
                    let fut = svc.call(Request::from_parts(parts, body));
                    this.state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    match ctx.plan() {
                        Ok(None) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(ctx.finish(response)));
                        }
                        Ok(Some(ops)) => {
                            let save = Arc::clone(&ctx.shared.store)
                                .write(ops, ctx.config().backend_timeout);
                            this.state.set(State::Saving {
                                save,
                                response: Some(response),
                            });
                        }
                        Err(refusal) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(ctx.render(refusal)));
                        }
                    }
                }
                StateProj::Saving { save, response } => {
                    let result = ready!(save.as_mut().poll(cx));
                    let Some(response) = response.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(match result {
                        Ok(true) => ctx.finish(response),
                        Ok(false) => {
                            // Destroyed meanwhile (logout elsewhere, or a
                            // login that rotated the id): do not bring it
                            // back, and leave the cookie alone, since the
                            // browser may hold a newer one by now.
                            tracing::debug!("session vanished during the request; not saved");
                            ctx.out = CookieOut::Keep;
                            ctx.finish(response)
                        }
                        Err(e) if ctx.strict => ctx.unavailable(&e),
                        Err(e) => {
                            // The handler's work is done (a POST may have
                            // charged a card): answering 503 would invite
                            // the client to do it again. Only the session
                            // change is lost; the cookie is left alone.
                            tracing::warn!(
                                error = %e,
                                "session store failed after the handler answered; \
                                 the session change is lost, the response is kept"
                            );
                            ctx.out = CookieOut::Keep;
                            ctx.finish(response)
                        }
                    }));
                }
                StateProj::Done => return Poll::Ready(Ok(polled_after_completion())),
            }
        }
    }
}

fn polled_after_completion<B>() -> Response<ResponseBody<B>> {
    body::rejection(Rejection::internal("session future polled after completion").into_response())
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
