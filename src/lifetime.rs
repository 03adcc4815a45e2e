//! Long-lived connections end when their credentials do: a
//! [`CredentialWatch`] handed to the handler with the principal.
//!
//! A WebSocket or a gRPC stream is authenticated once, when it opens, and
//! may then live for hours. Without more, it outlives the access token that
//! opened it, the user's logout, the destroyed session. A
//! [`CredentialWatch`] says when the credentials of a connection end:
//!
//! * at their expiry (a JWT's `exp`, a session's expiry);
//! * when they are revoked: a periodic check (a session still in its
//!   store, a token not in the deny-list), woken at once by a broadcast
//!   when the store has one (the JWT revocation stores publish every
//!   revocation, see `jwt::RevocationStore::subscribe`);
//! * when the check cannot be answered ([`Ended::Unavailable`]): the
//!   connection fails closed, as a request would get `503`.
//!
//! When asked to, the JWT authenticator and the session layer insert one
//! into the request extensions, next to the principal or the session:
//! `JwtAuthenticator::watch_credentials` (feature `jwt`) and
//! `SessionLayerBuilder::watch_sessions` (feature `session`). Build your
//! own for other credentials with [`CredentialWatch::expires_at`] and
//! [`CredentialWatch::check_every`] (e.g. an API key still in its store),
//! and hand it over with `Authenticated::with_extension`. Read it with `req.extensions().get::<CredentialWatch>()`, or
//! axum's `Extension<CredentialWatch>`.
//!
//! Then end the connection with it:
//!
//! * [`CredentialWatch::run_until_ended`] races any future (a WebSocket's
//!   receive loop) against the end of the credentials;
//! * [`Ended::close_code`] and [`Ended::reason`] are the WebSocket Close
//!   frame to send: `1008` (policy violation) or, with
//!   [`CloseCodes::Application`], `4001` (expired) / `4003` (revoked); `1013`
//!   (try again later) when the check was unavailable;
//! * [`CredentialWatch::guard_stream`] ends a server stream (a tonic
//!   streaming response) with one last item, e.g.
//!   `Err(Status::unauthenticated(ended.reason()))` ([`Ended::grpc_code`]
//!   is `16` UNAUTHENTICATED).
//!
//! Memory stays bounded: a watch is a few reference-counted pointers, and it
//! registers nothing anywhere. A wait subscribes to the store's broadcast
//! (a bounded ring buffer shared by all subscribers) only while it is
//! polled; dropping the connection's future drops the subscription.
//!
//! # Example
//!
//! ```
//! # async fn doc() {
//! use std::time::Duration;
//! use tower_auth::lifetime::{CloseCodes, CredentialWatch, Ended};
//!
//! // Normally inserted by the authenticator; built by hand here.
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)
//!     .unwrap()
//!     .as_secs();
//! let watch = CredentialWatch::new().expires_at(now + 3600).check_every(
//!     Duration::from_secs(30),
//!     || async { Ok(true) }, // e.g. "is the session still in the store?"
//! );
//!
//! let serve_socket = async { /* the receive loop */ };
//! match watch.run_until_ended(serve_socket).await {
//!     Ok(()) => {} // the client left
//!     Err(ended) => {
//!         // Send Close(ended.close_code(CloseCodes::Policy), ended.reason())
//!         assert_eq!(ended, Ended::Expired);
//!     }
//! }
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::BoxError;

/// A boxed `Send` future.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// Whether the credentials still hold: `Ok(false)` when they were revoked.
type CheckFn = dyn Fn() -> BoxFuture<Result<bool, BoxError>> + Send + Sync;
/// A wait for a hint that the credentials may have ended (a revocation was
/// broadcast); `None` when there is nothing to subscribe to.
type WakeFn = dyn Fn() -> Option<BoxFuture<()>> + Send + Sync;
type Clock = dyn Fn() -> u64 + Send + Sync;

/// The longest single sleep before the expiry is looked at again, so that a
/// clock set forward is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The default interval of the validity check.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Why the credentials of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ended {
    /// They expired (a JWT's `exp`, a session's expiry).
    Expired,
    /// They were revoked: a logout or sign-out, a revoked token or refresh
    /// family, a destroyed session.
    Revoked,
    /// Whether they still hold could not be checked (the store failed or
    /// missed its deadline): the connection fails closed.
    Unavailable,
}

/// Which WebSocket close codes [`Ended::close_code`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CloseCodes {
    /// `1008` policy violation (RFC 6455 §7.4.1) for expired and revoked
    /// credentials: the standard code, understood by every client.
    #[default]
    Policy,
    /// Application codes (RFC 6455 §7.4.2, 4000-4999) a client can act on:
    /// `4001` expired (sign in or refresh, then reconnect), `4003` revoked.
    Application,
}

impl Ended {
    /// A short client-visible reason, under the 123 bytes a WebSocket Close
    /// frame allows. Never contains the credentials.
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Expired => "credentials expired",
            Ended::Revoked => "credentials revoked",
            Ended::Unavailable => "credentials could not be checked",
        }
    }

    /// The WebSocket close code: see [`CloseCodes`]. [`Ended::Unavailable`]
    /// is `1013` (try again later) either way.
    pub fn close_code(self, codes: CloseCodes) -> u16 {
        match (self, codes) {
            (Ended::Unavailable, _) => 1013,
            (_, CloseCodes::Policy) => 1008,
            (Ended::Expired, CloseCodes::Application) => 4001,
            (Ended::Revoked, CloseCodes::Application) => 4003,
        }
    }

    /// The gRPC status code that ends a stream: `16` UNAUTHENTICATED, or
    /// `14` UNAVAILABLE for [`Ended::Unavailable`].
    pub fn grpc_code(self) -> u8 {
        match self {
            Ended::Unavailable => 14,
            _ => 16,
        }
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Says when the credentials of a connection end. See the
/// [module docs](crate::lifetime).
///
/// Cloning is a few reference-count increments; each clone waits
/// independently.
#[derive(Clone)]
pub struct CredentialWatch {
    expires_at: Option<u64>,
    check: Option<Arc<CheckFn>>,
    check_every: Duration,
    wake: Option<Arc<WakeFn>>,
    clock: Arc<Clock>,
}

impl fmt::Debug for CredentialWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialWatch")
            .field("expires_at", &self.expires_at)
            .field("check", &self.check.is_some())
            .field("check_every", &self.check_every)
            .field("wake", &self.wake.is_some())
            .finish()
    }
}

impl Default for CredentialWatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the Unix epoch, from the system clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CredentialWatch {
    /// A watch that never ends by itself: add an expiry, a check, or both.
    pub fn new() -> Self {
        CredentialWatch {
            expires_at: None,
            check: None,
            check_every: DEFAULT_CHECK_INTERVAL,
            wake: None,
            clock: Arc::new(unix_now),
        }
    }

    /// Ends with [`Ended::Expired`] once the clock reaches `unix_secs`
    /// (seconds since the Unix epoch; the earlier of two expiries holds).
    pub fn expires_at(mut self, unix_secs: u64) -> Self {
        self.expires_at = Some(self.expires_at.map_or(unix_secs, |e| e.min(unix_secs)));
        self
    }

    /// Checks every `interval` (at least one second) whether the
    /// credentials still hold: `Ok(true)` they do, `Ok(false)` they were
    /// revoked ([`Ended::Revoked`]), `Err` the check failed
    /// ([`Ended::Unavailable`]). The first check runs when the wait starts,
    /// so a revocation made between the authentication and the wait is not
    /// missed.
    pub fn check_every<F, Fut>(mut self, interval: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
    {
        self.check = Some(Arc::new(move || Box::pin(check()) as BoxFuture<_>));
        self.check_every = interval.max(Duration::from_secs(1));
        self
    }

    /// Runs the check at once, instead of at the next interval, whenever a
    /// future `subscribe` returned completes (a broadcast revocation). The
    /// subscription is taken before each check, so nothing published in
    /// between is lost.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn wake_on(
        mut self,
        subscribe: impl Fn() -> Option<BoxFuture<()>> + Send + Sync + 'static,
    ) -> Self {
        self.wake = Some(Arc::new(subscribe));
        self
    }

    /// Uses `clock` (seconds since the Unix epoch) for the expiry, instead
    /// of the system clock.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn shared_clock(mut self, clock: Arc<Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The expiry, in seconds since the Unix epoch.
    pub fn expiry(&self) -> Option<u64> {
        self.expires_at
    }

    /// The interval of the validity check, when there is one.
    pub fn check_interval(&self) -> Option<Duration> {
        self.check.as_ref().map(|_| self.check_every)
    }

    /// Resolves when the credentials end; never, when the watch has neither
    /// an expiry nor a check. Cancel-safe: drop it to stop watching.
    ///
    /// The timers are tokio's: outside a tokio runtime the watch cannot
    /// keep time and resolves at once with [`Ended::Unavailable`] (fail
    /// closed, never a panic).
    pub async fn ended(&self) -> Ended {
        let timed = self.expires_at.is_some() || self.check.is_some();
        if timed && tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("a CredentialWatch needs a tokio runtime: the connection ends");
            return Ended::Unavailable;
        }
        let mut expiry = pin!(self.expiry_reached());
        let mut revoked = pin!(self.revoked());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(e) = expiry.as_mut().poll(cx) {
                return Poll::Ready(e);
            }
            revoked.as_mut().poll(cx)
        })
        .await
    }

    async fn expiry_reached(&self) -> Ended {
        let Some(at) = self.expires_at else {
            return std::future::pending().await;
        };
        loop {
            let left = at.saturating_sub((self.clock)());
            if left == 0 {
                return Ended::Expired;
            }
            tokio::time::sleep(Duration::from_secs(left).min(MAX_SLEEP)).await;
        }
    }

    async fn revoked(&self) -> Ended {
        let Some(check) = &self.check else {
            return std::future::pending().await;
        };
        loop {
            // Subscribe first: a revocation published during the check
            // wakes the wait below.
            let wake = self.wake.as_ref().and_then(|subscribe| subscribe());
            match check().await {
                Ok(true) => {}
                Ok(false) => return Ended::Revoked,
                Err(e) => {
                    tracing::warn!(error = %e, "credential check failed: the connection ends");
                    return Ended::Unavailable;
                }
            }
            let mut sleep = pin!(tokio::time::sleep(self.check_every));
            match wake {
                Some(mut wake) => {
                    std::future::poll_fn(|cx| {
                        if sleep.as_mut().poll(cx).is_ready() || wake.as_mut().poll(cx).is_ready() {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    })
                    .await;
                }
                None => sleep.await,
            }
        }
    }

    /// Runs `future` until it completes (`Ok`) or the credentials end
    /// (`Err`, and `future` is dropped): wrap a WebSocket's receive loop in
    /// it, then send the Close frame of the [`Ended`].
    ///
    /// # Errors
    ///
    /// The [`Ended`] when the credentials ended first.
    pub async fn run_until_ended<F: Future>(&self, future: F) -> Result<F::Output, Ended> {
        let mut future = pin!(future);
        let mut ended = pin!(self.ended());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            ended.as_mut().poll(cx).map(Err)
        })
        .await
    }

    /// Ends `stream` when the credentials end: the stream yields its items
    /// until then, then one last item, `last(ended)`, and ends. For a tonic
    /// server stream: `watch.guard_stream(stream, |e|
    /// Err(Status::unauthenticated(e.reason())))`.
    pub fn guard_stream<S, F>(&self, stream: S, last: F) -> GuardedStream<S, F>
    where
        S: futures_core::Stream,
        F: FnOnce(Ended) -> S::Item,
    {
        let watch = self.clone();
        GuardedStream {
            stream,
            ended: Some(Box::pin(async move { watch.ended().await })),
            last: Some(last),
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream that ends when the credentials do: see
    /// [`CredentialWatch::guard_stream`].
    pub struct GuardedStream<S, F> {
        #[pin]
        stream: S,
        ended: Option<BoxFuture<Ended>>,
        last: Option<F>,
    }
}

impl<S, F> fmt::Debug for GuardedStream<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("ended", &self.ended.is_none())
            .finish_non_exhaustive()
    }
}

impl<S, F> futures_core::Stream for GuardedStream<S, F>
where
    S: futures_core::Stream,
    F: FnOnce(Ended) -> S::Item,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let Some(ended) = this.ended.as_mut() else {
            // The credentials ended: the last item was sent.
            return Poll::Ready(None);
        };
        if let Poll::Ready(why) = ended.as_mut().poll(cx) {
            *this.ended = None;
            return Poll::Ready(this.last.take().map(|last| last(why)));
        }
        this.stream.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    #[test]
    fn close_codes_and_reasons() {
        assert_eq!(Ended::Expired.close_code(CloseCodes::Policy), 1008);
        assert_eq!(Ended::Revoked.close_code(CloseCodes::Policy), 1008);
        assert_eq!(Ended::Expired.close_code(CloseCodes::Application), 4001);
        assert_eq!(Ended::Revoked.close_code(CloseCodes::Application), 4003);
        assert_eq!(Ended::Unavailable.close_code(CloseCodes::Policy), 1013);
        assert_eq!(Ended::Unavailable.close_code(CloseCodes::Application), 1013);
        assert_eq!(Ended::Expired.grpc_code(), 16);
        assert_eq!(Ended::Unavailable.grpc_code(), 14);
        for e in [Ended::Expired, Ended::Revoked, Ended::Unavailable] {
            assert!(e.reason().len() <= 123);
            assert_eq!(e.to_string(), e.reason());
        }
    }

    #[test]
    fn outside_a_runtime_it_fails_closed_without_panicking() {
        let watch = CredentialWatch::new().expires_at(u64::MAX);
        let mut ended = pin!(watch.ended());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(
            ended.as_mut().poll(&mut cx),
            Poll::Ready(Ended::Unavailable)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ends_at_the_expiry_of_a_test_clock() {
        let now = Arc::new(AtomicU64::new(1_000));
        let clock = Arc::clone(&now);
        let watch = CredentialWatch::new()
            .expires_at(1_010)
            .expires_at(1_005)
            .clock(move || clock.load(Ordering::SeqCst));
        assert_eq!(watch.expiry(), Some(1_005));
        let advance = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                now.fetch_add(1, Ordering::SeqCst);
            }
            std::future::pending::<()>().await
        };
        let r = watch.run_until_ended(advance).await;
        assert_eq!(r, Err(Ended::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_without_expiry_or_check_never_ends() {
        let watch = CredentialWatch::new();
        let r = tokio::time::timeout(Duration::from_secs(3600 * 24), watch.ended()).await;
        assert!(r.is_err());
        assert_eq!(watch.run_until_ended(async { 7 }).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_check_revokes_or_fails_closed() {
        let valid = Arc::new(AtomicBool::new(true));
        let v = Arc::clone(&valid);
        let watch = CredentialWatch::new().check_every(Duration::from_secs(5), move || {
            let ok = v.load(Ordering::SeqCst);
            async move { Ok(ok) }
        });
        assert_eq!(watch.check_interval(), Some(Duration::from_secs(5)));
        let start = tokio::time::Instant::now();
        let flip = async {
            tokio::time::sleep(Duration::from_secs(12)).await;
            valid.store(false, Ordering::SeqCst);
            std::future::pending::<()>().await
        };
        assert_eq!(watch.run_until_ended(flip).await, Err(Ended::Revoked));
        // Noticed at the next check (15 s), not later.
        assert_eq!(start.elapsed(), Duration::from_secs(15));

        let failing = CredentialWatch::new().check_every(Duration::from_secs(5), || async {
            Err::<bool, BoxError>("down".into())
        });
        assert_eq!(failing.ended().await, Ended::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_runs_the_check_at_once() {
        let (tx, _) = tokio::sync::broadcast::channel::<()>(4);
        let valid = Arc::new(AtomicBool::new(true));
        let v = Arc::clone(&valid);
        let sender = tx.clone();
        let watch = CredentialWatch::new()
            .check_every(Duration::from_secs(3600), move || {
                let ok = v.load(Ordering::SeqCst);
                async move { Ok(ok) }
            })
            .wake_on(move || {
                let mut rx = sender.subscribe();
                Some(Box::pin(async move {
                    let _ = rx.recv().await;
                }))
            });
        let start = tokio::time::Instant::now();
        let revoke = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            valid.store(false, Ordering::SeqCst);
            tx.send(()).unwrap();
            std::future::pending::<()>().await
        };
        assert_eq!(watch.run_until_ended(revoke).await, Err(Ended::Revoked));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // The subscription went with the wait.
        assert_eq!(tx.receiver_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_stream_ends_with_one_last_item() {
        struct Ticks(u32);
        impl futures_core::Stream for Ticks {
            type Item = Result<u32, &'static str>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0 += 1;
                Poll::Ready(Some(Ok(self.0)))
            }
        }
        async fn next<S: futures_core::Stream>(s: &mut Pin<Box<S>>) -> Option<S::Item> {
            std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await
        }
        let watch = CredentialWatch::new().expires_at(0);
        let mut s = Box::pin(watch.guard_stream(Ticks(0), |e| Err(e.reason())));
        assert_eq!(next(&mut s).await, Some(Err("credentials expired")));
        assert_eq!(next(&mut s).await, None);
        assert_eq!(next(&mut s).await, None);

        let never = CredentialWatch::new();
        let mut s = Box::pin(never.guard_stream(Ticks(0), |e| Err(e.reason())));
        assert_eq!(next(&mut s).await, Some(Ok(1)));
        assert_eq!(next(&mut s).await, Some(Ok(2)));
    }
}
