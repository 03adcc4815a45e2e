use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::AuthService;
use super::Authenticator;
use crate::rejection::{Challenge, Prerendered, Rejection, RejectionHandler, Rejections};
use crate::timeout::DEFAULT_BACKEND_TIMEOUT;

/// Whether requests without credentials are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Required,
    Optional,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) challenges: Arc<[Challenge]>,
    pub(crate) rejections: Rejections,
    /// Whether `rejections` was set with [`AuthLayer::on_rejection`] or
    /// [`AuthLayer::rejections`]: it then replaces a renderer already in the
    /// request extensions; the default one does not.
    pub(crate) custom_rejections: bool,
    /// The deadline of the authenticator's future; `None`: none.
    pub(crate) backend_timeout: Option<Duration>,
    /// The `401` for a request without credentials, rendered once for HTTP
    /// and for gRPC; `None` with a custom renderer, called every time.
    pub(crate) missing: Option<Arc<[Prerendered; 2]>>,
    /// observe: the layer's name and tracing settings.
    pub(crate) observe: crate::observe::Observer,
}

impl Config {
    /// Renders the fixed refusals again after the renderer changed.
    fn prerender(&mut self) {
        let missing = |grpc| {
            self.rejections
                .prerender(Rejection::unauthenticated(&self.challenges).with_grpc(grpc))
        };
        self.missing = match (missing(false), missing(true)) {
            (Some(http), Some(grpc)) => Some(Arc::new([http, grpc])),
            _ => None,
        };
    }

    /// The `401` for a request without credentials.
    pub(crate) fn missing(&self, grpc: bool) -> Option<http::Response<bytes::Bytes>> {
        self.missing
            .as_ref()
            .map(|missing| missing[usize::from(grpc)].respond())
    }
}

/// Authenticates requests with an [`Authenticator`]. See the
/// [module docs](crate::auth).
///
/// * credentials found and valid: the principal and its
///   [`Identity`](crate::Identity) go into the request extensions and the
///   request goes on;
/// * no credentials: `401` ([`AuthLayer::new`]), or the request goes on
///   anonymously ([`AuthLayer::optional`]);
/// * credentials present but malformed or invalid: `400` / `401`, in both
///   modes: a bad token never silently becomes anonymous;
/// * backend error: `503`, fail closed;
/// * backend too slow: an authenticator future (key store, token
///   validator, session store...) that has not resolved after the
///   [backend timeout](AuthLayer::backend_timeout) (5 s by default) is
///   dropped and the request gets `503` `unavailable` (gRPC `14`), so a
///   dead backend never holds a request, nor the inner service that
///   `poll_ready` reserved for it, forever.
#[derive(Clone, Debug)]
pub struct AuthLayer<A> {
    authenticator: A,
    config: Arc<Config>,
}

impl<A: Authenticator> AuthLayer<A> {
    /// Requires credentials: a request without any gets `401`.
    pub fn new(authenticator: A) -> Self {
        Self::with_mode(authenticator, Mode::Required)
    }

    /// Accepts requests without credentials, which reach the inner service
    /// with no principal (and an [`Anonymous`](super::Anonymous) marker).
    /// Invalid credentials are still refused.
    pub fn optional(authenticator: A) -> Self {
        Self::with_mode(authenticator, Mode::Optional)
    }

    fn with_mode(authenticator: A, mode: Mode) -> Self {
        let challenges = authenticator.challenges().into();
        let mut config = Config {
            mode,
            challenges,
            rejections: Rejections::new(),
            custom_rejections: false,
            backend_timeout: Some(DEFAULT_BACKEND_TIMEOUT),
            missing: None,
            observe: Default::default(),
        };
        config.prerender();
        AuthLayer {
            authenticator,
            config: Arc::new(config),
        }
    }

    /// Renders rejections with `handler` instead of the default JSON /
    /// gRPC rendering. See [`crate::rejection`].
    ///
    /// The renderer covers the stack: the layer puts it into the request
    /// extensions of the requests it lets through, where
    /// `RequireLayer` (feature `authz`), `Guard` and the axum
    /// extractors find it, so that their `403`s and `401`s are rendered the
    /// same way as this layer's.
    pub fn on_rejection(self, handler: impl RejectionHandler) -> Self {
        self.rejections(Rejections::custom(handler))
    }

    /// Uses a shared [`Rejections`] renderer, which also covers the layers
    /// inside this one (see [`on_rejection`](AuthLayer::on_rejection)).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.rejections = rejections;
        config.custom_rejections = true;
        config.prerender();
        self
    }

    /// The deadline of one authentication: how long the authenticator's
    /// future (an API-key store lookup, a bearer validator, a session
    /// store...) may take before the request is refused with `503`
    /// `unavailable` (gRPC `14`) through the layer's renderer. Default
    /// [`DEFAULT_BACKEND_TIMEOUT`](crate::DEFAULT_BACKEND_TIMEOUT) (5 s);
    /// `None` waits forever.
    ///
    /// The timer is tokio's: outside a tokio runtime the future runs
    /// without a deadline (a warning is logged once).
    pub fn backend_timeout(mut self, timeout: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.config).backend_timeout = timeout;
        self
    }

    /// Names the layer in metrics and traces (the `layer` label; default
    /// `"default"`). See [`crate::observe`].
    pub fn name(mut self, name: &'static str) -> Self {
        Arc::make_mut(&mut self.config).observe.name = name;
        self
    }

    /// Puts the subject of each authenticated request into its tracing
    /// event, as a keyed hash (off by default). See [`crate::observe`].
    pub fn trace_subject(mut self, subject: crate::observe::SubjectInTraces) -> Self {
        Arc::make_mut(&mut self.config).observe.subject = subject;
        self
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &A {
        &self.authenticator
    }
}

impl<S, A: Authenticator> Layer<S> for AuthLayer<A> {
    type Service = AuthService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::from_parts(inner, self.authenticator.clone(), Arc::clone(&self.config))
    }
}
