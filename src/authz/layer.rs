use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::HeaderValue;
use tower_layer::Layer;

use super::service::RequireService;
use super::Policy;
use crate::rejection::{insufficient_privileges_header, Challenge, RejectionHandler, Rejections};
use crate::timeout::DEFAULT_BACKEND_TIMEOUT;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Set by [`RequireLayer::on_rejection`]; otherwise the renderer comes
    /// from the request (see [`render`](super::service::render)).
    pub(crate) rejections: Option<Rejections>,
    /// The scheme and parameters of `insufficient_scope` challenges.
    pub(crate) challenge: Challenge,
    /// `challenge` rendered for the `403`s of bearer tokens that no scope
    /// would lift (see [`Rejection::insufficient_privileges`]).
    ///
    /// [`Rejection::insufficient_privileges`]: crate::rejection::Rejection::insufficient_privileges
    pub(crate) privileges_challenge: Option<HeaderValue>,
    /// Set by [`RequireLayer::name_missing_rights`]; otherwise the
    /// renderer's setting.
    pub(crate) name_missing_rights: Option<bool>,
    /// The deadline of a pending policy's future; `None`: none.
    pub(crate) backend_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        static BEARER: LazyLock<Option<HeaderValue>> =
            LazyLock::new(|| insufficient_privileges_header(&Challenge::bearer()));
        Config {
            rejections: None,
            challenge: Challenge::bearer(),
            privileges_challenge: BEARER.clone(),
            name_missing_rights: None,
            backend_timeout: Some(DEFAULT_BACKEND_TIMEOUT),
        }
    }
}

/// Enforces a [`Policy`] on authenticated requests. See the
/// [module docs](crate::authz).
///
/// * no [`Identity`](crate::Identity) in the request extensions: `401`
///   (with the challenges of an optional [`AuthLayer`](crate::AuthLayer)
///   that let the request through anonymously);
/// * the policy denies: `403` (`insufficient_scope` for bearer tokens
///   lacking a permission or scope), or the `404` / `503` of a custom
///   policy;
/// * gRPC requests get `PERMISSION_DENIED` / `UNAUTHENTICATED` /
///   `NOT_FOUND` / `UNAVAILABLE`;
/// * an asynchronous policy that has not decided after the
///   [backend timeout](RequireLayer::backend_timeout) (5 s by default):
///   `503` `unavailable` (gRPC `14`), as if it had returned
///   [`Denied::unavailable`](super::Denied::unavailable). A dead backend
///   never holds a request, nor the inner service reserved for it, forever.
///
/// Place it after (inside) the [`AuthLayer`](crate::AuthLayer). With axum,
/// use `route_layer` so that it only runs for matched routes and path
/// parameters are available to policies.
#[derive(Clone, Debug)]
pub struct RequireLayer<P> {
    shared: Arc<Shared<P>>,
}

/// The policy and configuration of a layer and of all its services: cloning
/// a service (axum does it for each request) is one reference-count
/// increment, however large the policy.
#[derive(Clone, Debug)]
pub(crate) struct Shared<P> {
    pub(crate) policy: P,
    pub(crate) config: Config,
}

impl<P: Policy> RequireLayer<P> {
    /// Enforces `policy`.
    pub fn new(policy: P) -> Self {
        RequireLayer {
            shared: Arc::new(Shared {
                policy,
                config: Config::default(),
            }),
        }
    }

    /// Renders refusals with `handler`. Without it the layer uses, in order:
    /// a [`Rejections`] value in the request extensions (the
    /// [`AuthLayer`](crate::AuthLayer) puts its own there, so
    /// [`AuthLayer::on_rejection`](crate::AuthLayer::on_rejection) covers
    /// this layer too), the renderer of the optional `AuthLayer` that let
    /// an anonymous request through, the default rendering.
    pub fn on_rejection(self, handler: impl RejectionHandler) -> Self {
        self.rejections(Rejections::custom(handler))
    }

    /// Renders refusals with a shared [`Rejections`] renderer.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        Arc::make_mut(&mut self.shared).config.rejections = Some(rejections);
        self
    }

    /// Whether the `403` messages of this layer name the missing roles,
    /// permissions or scopes (`role 'admin' required`) rather than a
    /// generic `insufficient permissions`. Without this call, the setting
    /// of the renderer ([`Rejections::name_missing_rights`], off by
    /// default) decides.
    pub fn name_missing_rights(mut self, name: bool) -> Self {
        Arc::make_mut(&mut self.shared).config.name_missing_rights = Some(name);
        self
    }

    /// The challenge of `insufficient_scope` answers (`Bearer` without
    /// parameters by default), e.g. `Challenge::bearer().param("realm", "api")`.
    pub fn bearer_challenge(mut self, challenge: Challenge) -> Self {
        let config = &mut Arc::make_mut(&mut self.shared).config;
        config.privileges_challenge = insufficient_privileges_header(&challenge);
        config.challenge = challenge;
        self
    }

    /// The deadline of an asynchronous policy decision
    /// ([`Decision::Pending`](super::Decision::Pending), e.g. a database
    /// lookup): past it the request is refused with `503` `unavailable`
    /// (gRPC `14`) through the layer's renderer. Default
    /// [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT) (5 s);
    /// `None` waits forever.
    ///
    /// The timer is tokio's: outside a tokio runtime the policy runs
    /// without a deadline (a warning is logged once).
    pub fn backend_timeout(mut self, timeout: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.shared).config.backend_timeout = timeout;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.shared.policy
    }
}

impl<S, P: Policy> Layer<S> for RequireLayer<P> {
    type Service = RequireService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService::from_parts(inner, Arc::clone(&self.shared))
    }
}
