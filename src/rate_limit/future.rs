use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;
use pin_project_lite::pin_project;

use super::headers::{RATELIMIT, RATELIMIT_POLICY};
use super::layer::Settle;
use crate::body::{self, ResponseBody};
use crate::rejection::Rejection;

/// What to do with the inner service's response, if anything: boxed so
/// that the future stays one pointer bigger than the inner one (futures are
/// moved around, and large moves are slow).
pub(crate) type After = Option<Box<Then>>;

pub(crate) enum Then {
    /// Append `RateLimit-Policy` and `RateLimit` (remaining-quota headers).
    Headers([HeaderValue; 2]),
    /// Failed-attempts limiter: give the units back unless the response is
    /// a failure.
    Settle(Settle),
}

pin_project! {
    /// The response future of [`RateLimitService`](super::RateLimitService).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            fut: F,
            after: After,
        },
        Rejected {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F, after: After) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut, after },
        }
    }

    pub(crate) fn rejected(response: Box<Response<Bytes>>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut, after } => {
                let result = ready!(fut.poll(cx));
                let Some(then) = after.take() else {
                    return Poll::Ready(result.map(body::wrap));
                };
                let response = match *then {
                    Then::Headers([policy, limits]) => {
                        let mut response = result?;
                        let headers = response.headers_mut();
                        headers.append(RATELIMIT_POLICY, policy);
                        headers.append(RATELIMIT, limits);
                        response
                    }
                    Then::Settle(settle) => match result {
                        Ok(response) => {
                            let (mut parts, body) = response.into_parts();
                            if let Some([policy, limits]) = settle.finish(Some(&parts)) {
                                parts.headers.append(RATELIMIT_POLICY, policy);
                                parts.headers.append(RATELIMIT, limits);
                            }
                            Response::from_parts(parts, body)
                        }
                        Err(error) => {
                            settle.finish(None);
                            return Poll::Ready(Err(error));
                        }
                    },
                };
                Poll::Ready(Ok(body::wrap(response)))
            }
            KindProj::Rejected { response } => {
                let response = match response.take() {
                    Some(response) => *response,
                    None => Rejection::internal("response future polled after completion")
                        .into_response(),
                };
                Poll::Ready(Ok(body::rejection(response)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
