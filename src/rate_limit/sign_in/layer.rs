//! [`SignInLayer`]: puts a [`SignIn`] handle into each request and settles
//! its attempt from the response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{response, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::super::failed::{is_failed_attempt, Predicate};
use super::super::key::{IpKey, KeyError, KeyExtractor, PeerIp, RequestHead};
use super::{Outcome, SignIn, SignInLimiter};
use crate::body::{self, ResponseBody};
use crate::rejection::{is_grpc, Rejection, RejectionHandler, Rejections};

/// The fixed body of a `500` for a request whose client address cannot be
/// found.
const CLIENT_UNAVAILABLE: &str = "the request cannot be rate-limited: server misconfiguration";
/// The fixed body of a `500` for a failed sign-in that never reported its
/// account.
const NOT_REPORTED: &str = "the sign-in attempt was not reported: server misconfiguration";

type ClientKey = dyn Fn(RequestHead<'_>) -> Result<IpKey, KeyError> + Send + Sync;

#[derive(Clone)]
struct Config {
    limiter: SignInLimiter,
    client: Arc<ClientKey>,
    is_failure: Arc<Predicate>,
    rejections: Rejections,
}

/// Protects sign-in routes with a [`SignInLimiter`]: see the
/// [module docs](super).
///
/// Clients are keyed by [`PeerIp`] unless you give another address key
/// ([`client_key`](SignInLayer::client_key), e.g. [`ClientIp`] behind
/// your proxies). A request whose address cannot be found is refused with
/// `500` (misconfiguration: serve with `ConnectInfo`). A failure response
/// from a handler that never called [`SignIn::attempt`] is turned into a
/// `500` too, so that a route that forgets to report the account fails
/// loudly instead of letting guesses through uncounted.
///
/// [`ClientIp`]: super::super::ClientIp
#[derive(Clone)]
pub struct SignInLayer {
    config: Arc<Config>,
}

impl SignInLayer {
    /// A layer over `limiter`, keyed by the peer address.
    pub fn new(limiter: SignInLimiter) -> Self {
        let peer = PeerIp::new();
        SignInLayer {
            config: Arc::new(Config {
                limiter,
                client: Arc::new(move |request: RequestHead<'_>| peer.extract(request)),
                is_failure: Arc::new(is_failed_attempt),
                rejections: Rejections::new(),
            }),
        }
    }

    /// Keys clients by `key`, an address key ([`PeerIp`] or
    /// [`ClientIp`](super::super::ClientIp)).
    pub fn client_key<E>(mut self, key: E) -> Self
    where
        E: for<'a> KeyExtractor<Key<'a> = IpKey>,
    {
        self.config_mut().client = Arc::new(move |request: RequestHead<'_>| key.extract(request));
        self
    }

    /// Counts the responses for which `is_failure` holds as failures
    /// (default [`is_failed_attempt`]: `401`, gRPC `UNAUTHENTICATED`, the
    /// [`FailedAttempt`](super::super::FailedAttempt) extension).
    pub fn failure_when<F>(mut self, is_failure: F) -> Self
    where
        F: Fn(&response::Parts) -> bool + Send + Sync + 'static,
    {
        self.config_mut().is_failure = Arc::new(is_failure);
        self
    }

    /// Renders refusals with `handler`. See [`crate::rejection`].
    pub fn on_rejection(self, handler: impl RejectionHandler) -> Self {
        self.rejections(Rejections::custom(handler))
    }

    /// Uses a shared [`Rejections`] renderer.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.config_mut().rejections = rejections;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &SignInLimiter {
        &self.config.limiter
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }
}

impl fmt::Debug for SignInLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInLayer")
            .field("limiter", &self.config.limiter)
            .field("rejections", &self.config.rejections)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SignInLayer {
    type Service = SignInService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignInService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`SignInLayer`].
#[derive(Clone)]
pub struct SignInService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SignInService<S> {
    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for SignInService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SignInService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = SignInFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let head = RequestHead::from(&req);
        let grpc = is_grpc(head.version, head.headers);
        let client = match (config.client)(head) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "sign-in limiter: client address unavailable");
                let rejection = Rejection::internal(CLIENT_UNAVAILABLE).with_grpc(grpc);
                return SignInFuture::rejected(config.rejections.respond(rejection));
            }
        };
        let handle = config
            .limiter
            .start(client, req.headers(), grpc, config.rejections.clone());
        req.extensions_mut().insert(handle.clone());
        SignInFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
                handle: Some(handle),
                config: Arc::clone(&self.config),
            },
        }
    }
}

pin_project! {
    /// The response future of [`SignInService`].
    pub struct SignInFuture<F> {
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
            handle: Option<SignIn>,
            config: Arc<Config>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<F> SignInFuture<F> {
    fn rejected(response: Response<Bytes>) -> Self {
        SignInFuture {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

/// What a response says about the attempt, by default.
fn outcome(parts: &response::Parts, is_failure: &Predicate) -> Outcome {
    if is_failure(parts) {
        Outcome::Failure
    } else if parts.status.is_success() || parts.status.is_redirection() {
        Outcome::Success
    } else {
        Outcome::Neither
    }
}

impl<F, B, E> Future for SignInFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                fut,
                handle,
                config,
            } => {
                let result = ready!(fut.poll(cx));
                let Some(handle) = handle.take() else {
                    return Poll::Ready(result.map(body::wrap));
                };
                let response = match result {
                    Ok(response) => response,
                    Err(error) => {
                        // An error is not a failure: the units are given back.
                        let _ = handle.finish(None, Outcome::Neither);
                        return Poll::Ready(Err(error));
                    }
                };
                let (mut parts, body) = response.into_parts();
                let outcome = outcome(&parts, &*config.is_failure);
                if handle.finish(Some(&mut parts), outcome).is_err() {
                    tracing::error!(
                        "a sign-in failure without SignIn::attempt: the handler must report the account"
                    );
                    let rejection = Rejection::internal(NOT_REPORTED).with_grpc(handle.inner.grpc);
                    let refused = config.rejections.respond(rejection);
                    return Poll::Ready(Ok(body::rejection(refused)));
                }
                Poll::Ready(Ok(body::wrap(Response::from_parts(parts, body))))
            }
            KindProj::Rejected { response } => {
                let response = response.take().unwrap_or_else(|| {
                    Rejection::internal("response future polled after completion").into_response()
                });
                Poll::Ready(Ok(body::rejection(response)))
            }
        }
    }
}

impl<F> fmt::Debug for SignInFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInFuture").finish_non_exhaustive()
    }
}
