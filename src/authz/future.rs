use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::Shared;
use super::service::render_config;
use super::{Denied, Policy};
use crate::body::{self, ResponseBody};
use crate::rejection::Rejection;
use crate::timeout::{deadline, Deadline};

pin_project! {
    /// The response future of [`RequireService`](super::RequireService).
    pub struct ResponseFuture<P, S, ReqBody>
    where
        P: Policy,
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<P, P::Future, S, S::Future, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<P, PF, S, F, ReqBody> {
        Checking {
            #[pin]
            check: Deadline<PF>,
            // Boxed so that the future of a synchronous policy, which never
            // is in this state, stays as small as the inner future.
            held: Option<Box<Held<P, S, ReqBody>>>,
        },
        Calling {
            #[pin]
            fut: F,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

/// What the future holds while an asynchronous policy decides.
struct Held<P, S, ReqBody> {
    parts: Parts,
    body: ReqBody,
    /// The inner service that `poll_ready` made ready.
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<P, S, ReqBody> ResponseFuture<P, S, ReqBody>
where
    P: Policy,
    S: Service<Request<ReqBody>>,
{
    pub(super) fn checking(
        check: P::Future,
        parts: Parts,
        body: ReqBody,
        inner: S,
        shared: Arc<Shared<P>>,
    ) -> Self {
        let after = shared.config.backend_timeout;
        ResponseFuture {
            state: State::Checking {
                check: deadline(check, after),
                held: Some(Box::new(Held {
                    parts,
                    body,
                    inner,
                    shared,
                })),
            },
        }
    }

    pub(super) fn calling(fut: S::Future) -> Self {
        ResponseFuture {
            state: State::Calling { fut },
        }
    }

    pub(super) fn rejected(response: Response<Bytes>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<P, S, ReqBody, ResBody> Future for ResponseFuture<P, S, ReqBody>
where
    P: Policy,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking { check, held } => {
                    let result = ready!(check.poll(cx)).unwrap_or_else(|elapsed| {
                        // The policy's backend did not answer in time: fail
                        // closed.
                        tracing::warn!(%elapsed, "authorization policy timed out");
                        Err(Denied::unavailable(elapsed))
                    });
                    let Some(held) = held.take() else {
                        // Only reachable if polled again after a panic.
                        let r = Rejection::internal("authorization future polled after completion");
                        return Poll::Ready(Ok(body::rejection(r.into_response())));
                    };
                    let Held {
                        parts,
                        body,
                        mut inner,
                        shared,
                    } = *held;
                    match result {
                        Ok(()) => {
                            let fut = inner.call(Request::from_parts(parts, body));
                            state.set(State::Calling { fut });
                        }
                        Err(denied) => {
                            let response = render_config(&parts, denied, &shared.config);
                            return Poll::Ready(Ok(body::rejection(response)));
                        }
                    }
                }
                StateProj::Calling { fut } => {
                    return fut.poll(cx).map_ok(body::wrap);
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(|| {
                        Rejection::internal("response future polled after completion")
                            .into_response()
                    });
                    return Poll::Ready(Ok(body::rejection(response)));
                }
            }
        }
    }
}

impl<P, S, ReqBody> fmt::Debug for ResponseFuture<P, S, ReqBody>
where
    P: Policy,
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
