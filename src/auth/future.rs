use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::Config;
use super::service::share_rejections;
use super::{vary_on_cookie, Authenticator};
use crate::body::{self, ResponseBody};
use crate::error::AuthError;
use crate::rejection::{is_grpc, Rejection};
use crate::timeout::{deadline, Deadline};

pin_project! {
    /// The response future of [`AuthService`](super::AuthService).
    pub struct ResponseFuture<A, S, ReqBody>
    where
        A: Authenticator,
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<A::Future, S, S::Future, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<AF, S, F, ReqBody> {
        Authenticating {
            #[pin]
            auth: Deadline<AF>,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            config: Arc<Config>,
            start: crate::observe::Start, // observe
        },
        Calling {
            #[pin]
            fut: F,
            // The principal was authenticated from a cookie: `Vary: Cookie`.
            from_cookie: bool,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<A, S, ReqBody> ResponseFuture<A, S, ReqBody>
where
    A: Authenticator,
    S: Service<Request<ReqBody>>,
{
    pub(super) fn authenticating(
        auth: A::Future,
        request: Request<ReqBody>,
        inner: S,
        config: Arc<Config>,
        start: crate::observe::Start, // observe
    ) -> Self {
        ResponseFuture {
            state: State::Authenticating {
                auth: deadline(auth, config.backend_timeout),
                request: Some(request),
                inner: Some(inner),
                config,
                start, // observe
            },
        }
    }

    pub(super) fn calling(fut: S::Future, from_cookie: bool) -> Self {
        ResponseFuture {
            state: State::Calling { fut, from_cookie },
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

impl<A, S, ReqBody, ResBody> Future for ResponseFuture<A, S, ReqBody>
where
    A: Authenticator,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    request,
                    inner,
                    config,
                    start, // observe
                } => {
                    let result = ready!(auth.poll(cx)).unwrap_or_else(|elapsed| {
                        // The backend did not answer in time: fail closed.
                        Err(AuthError::unavailable(elapsed))
                    });
                    let (Some(mut request), Some(mut svc)) = (request.take(), inner.take()) else {
                        // Only reachable if polled again after a panic.
                        let r =
                            Rejection::internal("authentication future polled after completion");
                        return Poll::Ready(Ok(body::rejection(r.into_response())));
                    };
                    match result {
                        Ok(mut authenticated) => {
                            crate::observe::authenticated(
                                &config.observe,
                                &authenticated.identity,
                                *start,
                            ); // observe
                            let from_cookie = authenticated.is_from_cookie();
                            let extensions = request.extensions_mut();
                            extensions.extend(authenticated.take_extensions());
                            extensions.insert(authenticated.principal);
                            extensions.insert(authenticated.identity);
                            share_rejections(extensions, config);
                            let fut = svc.call(request);
                            state.set(State::Calling { fut, from_cookie });
                        }
                        Err(error) => {
                            crate::observe::refused(
                                &config.observe,
                                &error,
                                &config.challenges,
                                *start,
                            ); // observe
                            if error.kind() == crate::AuthErrorKind::Unavailable {
                                tracing::warn!(
                                    error = %error,
                                    source = ?std::error::Error::source(&error),
                                    "authentication backend failed"
                                );
                            }
                            let from_cookie = error.is_from_cookie();
                            let rejection = Rejection::from_auth_error(error, &config.challenges)
                                .with_grpc(is_grpc(request.version(), request.headers()));
                            let mut response = config.rejections.respond(rejection);
                            if from_cookie {
                                vary_on_cookie(response.headers_mut());
                            }
                            return Poll::Ready(Ok(body::rejection(response)));
                        }
                    }
                }
                StateProj::Calling { fut, from_cookie } => {
                    let mut response = ready!(fut.poll(cx))?;
                    if *from_cookie {
                        vary_on_cookie(response.headers_mut());
                    }
                    return Poll::Ready(Ok(body::wrap(response)));
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

impl<A, S, ReqBody> fmt::Debug for ResponseFuture<A, S, ReqBody>
where
    A: Authenticator,
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
