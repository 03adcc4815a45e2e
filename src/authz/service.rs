use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{Config, Shared};
use super::{Decision, Denied, Policy, RequireLayer};
use crate::auth::Anonymous;
use crate::body::ResponseBody;
use crate::identity::Identity;
use crate::rejection::{is_grpc, Rejection, Rejections};

/// The service of [`RequireLayer`]. See the [module docs](crate::authz).
#[derive(Clone, Debug)]
pub struct RequireService<S, P> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S, P: Policy> RequireService<S, P> {
    /// Wraps `inner`, enforcing `policy`.
    pub fn new(inner: S, policy: P) -> Self {
        tower_layer::Layer::layer(&RequireLayer::new(policy), inner)
    }

    /// A layer for this service: same as [`RequireLayer::new`].
    pub fn layer(policy: P) -> RequireLayer<P> {
        RequireLayer::new(policy)
    }

    pub(crate) fn from_parts(inner: S, shared: Arc<Shared<P>>) -> Self {
        RequireService { inner, shared }
    }

    inner_service_accessors!();
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RequireService<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    P: Policy,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<P, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let decision = match parts.extensions.get::<Identity>() {
            Some(identity) => self.shared.policy.check(identity, &parts),
            None => {
                let response = render(&parts, None, &self.shared.config);
                return ResponseFuture::rejected(response);
            }
        };
        match decision {
            Decision::Allow => {
                ResponseFuture::calling(self.inner.call(Request::from_parts(parts, body)))
            }
            Decision::Deny(denied) => {
                let response = render_config(&parts, denied, &self.shared.config);
                ResponseFuture::rejected(response)
            }
            Decision::Pending(check) => {
                // The policy awaits: move the service that `poll_ready` made
                // ready into the future, keep a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, parts, body, inner, Arc::clone(&self.shared))
            }
        }
    }
}

/// Renders a denial with the layer's configuration.
pub(crate) fn render_config(parts: &Parts, denied: Denied, config: &Config) -> Response<Bytes> {
    render(parts, Some(denied), config)
}

/// Renders a refusal of an authorization check: `401` when the request has
/// no [`Identity`] (`denied` is then ignored), else the denial.
///
/// The renderer is, in order: `config`'s own, a [`Rejections`] in the
/// request extensions (an `AuthLayer` puts its own there), the one of the
/// optional `AuthLayer` that let an anonymous request through, the default.
/// Missing rights are named when `config` says so, else when the renderer
/// does.
pub(crate) fn render(parts: &Parts, denied: Option<Denied>, config: &Config) -> Response<Bytes> {
    let anonymous = parts.extensions.get::<Anonymous>();
    let identity = parts.extensions.get::<Identity>();
    let rejections = config
        .rejections
        .as_ref()
        .or_else(|| parts.extensions.get::<Rejections>())
        .or_else(|| anonymous.map(Anonymous::rejections));
    let rejection = match (identity, denied) {
        (Some(identity), Some(denied)) => {
            tracing::debug!(
                subject = identity.subject(),
                kind = ?denied.kind(),
                reason = %denied,
                "authorization denied"
            );
            let name = config
                .name_missing_rights
                .unwrap_or_else(|| rejections.is_some_and(Rejections::names_missing_rights));
            let privileges = config.privileges_challenge.as_ref();
            denied.render(Some(identity), &config.challenge, privileges, name)
        }
        _ => match anonymous {
            Some(anonymous) => Rejection::unauthenticated(anonymous.challenges()),
            None => {
                tracing::debug!(
                    "authorization refused a request without an Identity and without the \
                     marker of an optional AuthLayer: is the AuthLayer outside this layer?"
                );
                Rejection::unauthenticated(&[])
            }
        },
    }
    .with_grpc(is_grpc(parts.version, &parts.headers));
    match rejections {
        Some(r) => r.respond(rejection),
        None => Rejections::new().respond(rejection),
    }
}
