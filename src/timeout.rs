//! Deadlines for backend calls: a store, validator or policy whose future
//! never resolves must not hold a request forever.
//!
//! Every layer that awaits a backend wraps the backend's future in
//! [`Deadline`]. The timer is tokio's; outside a tokio runtime (another
//! executor) there is no timer to arm, so the backend's future runs without
//! a deadline and a warning is logged once per process. Nothing panics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The default deadline of one backend call (store, validator, policy):
/// 5 seconds.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A backend call did not finish before its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    /// The deadline that passed.
    pub after: Duration,
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend call timed out after {:?}", self.after)
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// A future with a deadline: `Ok(output)` when `future` finishes first,
    /// `Err(Elapsed)` when the deadline passes first. Built by
    /// [`deadline`].
    pub(crate) struct Deadline<F> {
        #[pin]
        future: F,
        // Boxed so that `Deadline` stays `Unpin` when `F` is, and armed
        // lazily on the first poll so that building one costs nothing.
        sleep: Option<Pin<Box<Sleep>>>,
        after: Option<Duration>,
    }
}

impl<F> fmt::Debug for Deadline<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// `future` with a deadline of `after` from its first poll; `None` for no
/// deadline.
pub(crate) fn deadline<F: Future>(future: F, after: Option<Duration>) -> Deadline<F> {
    Deadline {
        future,
        sleep: None,
        after,
    }
}

static NO_RUNTIME_WARNED: AtomicBool = AtomicBool::new(false);

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let Some(after) = *this.after else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            if tokio::runtime::Handle::try_current().is_err() {
                if !NO_RUNTIME_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "tower-auth: no tokio runtime, backend calls run without their deadline"
                    );
                }
                *this.after = None;
                return Poll::Pending;
            }
            *this.sleep = Some(Box::pin(tokio::time::sleep(after)));
        }
        match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                crate::observe::backend_timeout();
                Poll::Ready(Err(Elapsed { after }))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_future_that_never_resolves_times_out() {
        let out = deadline(std::future::pending::<()>(), Some(Duration::from_secs(5))).await;
        assert_eq!(
            out,
            Err(Elapsed {
                after: Duration::from_secs(5)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_future_wins() {
        let out = deadline(async { 7 }, Some(Duration::from_millis(1))).await;
        assert_eq!(out, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_waits() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            1
        };
        assert_eq!(deadline(slow, None).await, Ok(1));
    }

    #[test]
    fn outside_a_runtime_the_future_runs_without_a_deadline() {
        // A hand-rolled executor: no tokio runtime, so no timer; the future
        // must still complete and nothing may panic.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut polls = 0;
        let fut = std::future::poll_fn(move |cx| {
            polls += 1;
            if polls < 3 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready("done")
            }
        });
        let mut fut = std::pin::pin!(deadline(fut, Some(Duration::from_millis(1))));
        let mut out = Poll::Pending;
        for _ in 0..3 {
            out = fut.as_mut().poll(&mut cx);
        }
        assert_eq!(out, Poll::Ready(Ok("done")));
    }
}
