use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::cookie::{self, Incoming};
use super::future::{Ctx, ResponseFuture};
use super::handle::Session;
use super::layer::{SessionLayer, Shared};
use crate::body::ResponseBody;
use crate::rejection::is_grpc;

/// The service of [`SessionLayer`]. See the [module docs](super).
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SessionService<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        SessionService { inner, shared }
    }

    /// Wraps `inner` with `layer`'s settings.
    pub fn new(inner: S, layer: &SessionLayer) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    inner_service_accessors!();
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let mut ctx = Ctx::new(
            Arc::clone(&self.shared),
            is_grpc(parts.version, &parts.headers),
        );
        match cookie::read(&parts.headers, &self.shared.config) {
            Incoming::Valid { id, reissue } => {
                // Loading awaits the store: move the service that
                // `poll_ready` made ready into the future, keep a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ctx.reissue = reissue;
                ctx.presented = true;
                ctx.removable = true;
                let key = id.store_key();
                let load =
                    Arc::clone(&self.shared.store).load(key, self.shared.config.backend_timeout);
                ResponseFuture::loading(load, parts, body, inner, id, key, ctx)
            }
            incoming => {
                match incoming {
                    Incoming::Invalid => {
                        tracing::debug!("session cookie failed verification; ignored");
                        ctx.presented = true;
                        ctx.removable = true;
                    }
                    Incoming::Ambiguous => {
                        tracing::debug!(
                            "several session cookies name different sessions; all ignored"
                        );
                        ctx.presented = true;
                    }
                    _ => {}
                }
                let session = Session::default();
                parts.extensions.insert(session.clone());
                ctx.session = session;
                let fut = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::calling(fut, ctx)
            }
        }
    }
}
