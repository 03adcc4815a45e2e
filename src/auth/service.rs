use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{Config, Mode};
use super::{vary_on_cookie, Anonymous, AuthLayer, Authenticator};
use crate::body::ResponseBody;
use crate::error::AuthError;
use crate::rejection::{is_grpc, Rejection};

/// The service of [`AuthLayer`]. See the [module docs](crate::auth).
#[derive(Clone, Debug)]
pub struct AuthService<S, A> {
    inner: S,
    authenticator: A,
    config: Arc<Config>,
}

impl<S, A: Authenticator> AuthService<S, A> {
    /// Wraps `inner`, requiring credentials.
    pub fn new(inner: S, authenticator: A) -> Self {
        AuthLayer::new(authenticator).layer_into(inner)
    }

    /// A layer for this service: same as [`AuthLayer::new`].
    pub fn layer(authenticator: A) -> AuthLayer<A> {
        AuthLayer::new(authenticator)
    }

    pub(crate) fn from_parts(inner: S, authenticator: A, config: Arc<Config>) -> Self {
        AuthService {
            inner,
            authenticator,
            config,
        }
    }

    inner_service_accessors!();
}

impl<A: Authenticator> AuthLayer<A> {
    fn layer_into<S>(&self, inner: S) -> AuthService<S, A> {
        tower_layer::Layer::layer(self, inner)
    }
}

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticator,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<A, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let start = crate::observe::Start::now(); // observe
        let error = match self.authenticator.extract(&parts) {
            Ok(Some(credentials)) => {
                // The authenticator may await: move the service that
                // `poll_ready` made ready into the future, keep a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let auth = self.authenticator.authenticate(credentials);
                return ResponseFuture::authenticating(
                    auth,
                    Request::from_parts(parts, body),
                    inner,
                    Arc::clone(&self.config),
                    start, // observe
                );
            }
            Ok(None) if self.config.mode == Mode::Optional => {
                crate::observe::anonymous(&self.config.observe, start); // observe
                parts.extensions.insert(Anonymous {
                    challenges: self.config.challenges.clone(),
                    rejections: self.config.rejections.clone(),
                });
                share_rejections(&mut parts.extensions, &self.config);
                let fut = self.inner.call(Request::from_parts(parts, body));
                return ResponseFuture::calling(fut, false);
            }
            Ok(None) => {
                let error = AuthError::missing();
                let grpc = is_grpc(parts.version, &parts.headers);
                if let Some(response) = self.config.missing(grpc) {
                    crate::observe::refused(
                        &self.config.observe,
                        &error,
                        &self.config.challenges,
                        start,
                    ); // observe
                    return ResponseFuture::rejected(response);
                }
                error
            }
            Err(e) => e,
        };
        crate::observe::refused(&self.config.observe, &error, &self.config.challenges, start); // observe
        let from_cookie = error.is_from_cookie();
        let rejection = Rejection::from_auth_error(error, &self.config.challenges)
            .with_grpc(is_grpc(parts.version, &parts.headers));
        let mut response = self.config.rejections.respond(rejection);
        if from_cookie {
            vary_on_cookie(response.headers_mut());
        }
        ResponseFuture::rejected(response)
    }
}

/// Puts the layer's renderer into the extensions of a request it lets
/// through, for the layers and extractors inside it. A renderer set on the
/// layer replaces one already there. The default one is not inserted: the
/// layers and extractors inside render with the default when they find
/// none, so an insertion (an allocation per request) would change nothing.
pub(super) fn share_rejections(extensions: &mut http::Extensions, config: &Config) {
    if config.custom_rejections {
        extensions.insert(config.rejections.clone());
    }
}
