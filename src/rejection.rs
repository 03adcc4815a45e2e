//! The one place where refused requests become responses.
//!
//! Every layer of this crate turns a refusal into a [`Rejection`] and hands
//! it to a [`Rejections`] value, which renders it with the default rendering
//! below or with a [`RejectionHandler`] you install (the seeds'
//! `error_handler(401)`).
//!
//! # Default rendering
//!
//! * HTTP: the status, a JSON body `{"error": "<code>", "message": "<text>"}`
//!   (`content-type: application/json`), and for `401` (and bearer `400` /
//!   `403`) an RFC 7235 / RFC 6750 `WWW-Authenticate` header:
//!   `Bearer realm="api", error="invalid_token", error_description="token expired"`.
//!   When credentials were absent there is no `error` attribute (RFC 6750
//!   §3.1). Messages are fixed texts written by the authenticators: a token,
//!   key, password or session id is never echoed.
//! * gRPC (an HTTP/2 request with `te: trailers` and `content-type:
//!   application/grpc`, see [`is_grpc`]): HTTP `200` with
//!   `content-type: application/grpc`, `grpc-status` (`16`
//!   UNAUTHENTICATED, `7` PERMISSION_DENIED, `5` NOT_FOUND, `8`
//!   RESOURCE_EXHAUSTED, `14` UNAVAILABLE, `13` INTERNAL) and a
//!   percent-encoded `grpc-message`, so tonic
//!   clients see a real [`Status`](https://docs.rs/tonic/latest/tonic/struct.Status.html).
//!
//! # Customizing
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use tower_auth::rejection::{Rejection, Rejections};
//!
//! // Keep the default headers (WWW-Authenticate, Retry-After, gRPC status)
//! // but use a plain-text body for HTTP clients.
//! let rejections = Rejections::custom(|rejection: Rejection| {
//!     if rejection.is_grpc() {
//!         return rejection.into_response();
//!     }
//!     let mut res = rejection.into_response();
//!     *res.body_mut() = Bytes::from(format!("{}\n", res.status()));
//!     res.headers_mut().insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
//!     res
//! });
//! # let _ = rejections;
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use crate::error::{AuthError, AuthErrorKind};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// One `WWW-Authenticate` challenge: a scheme and its parameters
/// (RFC 7235 §2.1), e.g. `Bearer realm="api"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: Cow<'static, str>,
    params: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl Challenge {
    /// A challenge for `scheme` without parameters. The scheme must be an
    /// RFC 7230 token; other characters are dropped when rendered.
    pub fn new(scheme: impl Into<Cow<'static, str>>) -> Self {
        Challenge {
            scheme: scheme.into(),
            params: Vec::new(),
        }
    }

    /// `Bearer` (RFC 6750).
    pub fn bearer() -> Self {
        Self::new("Bearer")
    }

    /// Adds a parameter, e.g. `("realm", "api")`.
    pub fn param(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds `realm="<realm>"` when `realm` is set.
    pub fn realm(self, realm: Option<&Arc<str>>) -> Self {
        match realm {
            Some(realm) => self.param("realm", realm.to_string()),
            None => self,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether this is a `Bearer` challenge (compared case-insensitively).
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }

    fn render(&self, extra: &[(&str, &str)]) -> Option<HeaderValue> {
        let mut out = String::with_capacity(64);
        out.extend(self.scheme.chars().filter(|c| is_tchar(*c)));
        if out.is_empty() {
            return None;
        }
        let params = self
            .params
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain(extra.iter().copied());
        for (i, (name, value)) in params.enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.extend(name.chars().filter(|c| is_tchar(*c)));
            out.push('=');
            push_quoted(&mut out, value);
        }
        HeaderValue::from_str(&out).ok()
    }
}

/// Appends `value` as an RFC 9110 quoted-string, which is also the
/// RFC 9651 Structured Field String syntax: `"` and `\` escaped, characters
/// other than printable ASCII dropped.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

/// The `WWW-Authenticate` value of
/// [`Rejection::insufficient_privileges`] for `challenge`: rendered once per
/// layer, as it does not depend on the request.
pub(crate) fn insufficient_privileges_header(challenge: &Challenge) -> Option<HeaderValue> {
    const DESCRIPTION: &str = "the access token does not grant access to this resource";
    challenge.render(&[
        ("error", "insufficient_scope"),
        ("error_description", DESCRIPTION),
    ])
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// What kind of refusal a [`Rejection`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials (`401`).
    Unauthenticated,
    /// Malformed credentials (`400`).
    InvalidRequest,
    /// Invalid credentials (`401`).
    InvalidCredentials,
    /// Authenticated, but lacking a right (`403`).
    Forbidden,
    /// Authenticated with a bearer token lacking a scope (`403`,
    /// `error="insufficient_scope"`).
    InsufficientScope,
    /// A cross-site request refused by the CSRF defence (`403`).
    Csrf,
    /// A policy looked the resource up and found nothing (`404`), e.g. an
    /// owner check on an unknown post.
    NotFound,
    /// Authenticated, but not strongly or recently enough for this resource
    /// (`401`, RFC 9470 step-up: `error="insufficient_user_authentication"`).
    InsufficientUserAuthentication,
    /// A rate limit was hit (`429`).
    TooManyRequests,
    /// A backend could not answer (`503`).
    Unavailable,
    /// The stack is misconfigured, e.g. an extractor without its layer (`500`).
    Internal,
}

impl RejectionKind {
    /// The status of the default rendering.
    pub fn status(self) -> StatusCode {
        match self {
            RejectionKind::Unauthenticated
            | RejectionKind::InvalidCredentials
            | RejectionKind::InsufficientUserAuthentication => StatusCode::UNAUTHORIZED,
            RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
            RejectionKind::Forbidden | RejectionKind::InsufficientScope | RejectionKind::Csrf => {
                StatusCode::FORBIDDEN
            }
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error` of the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            RejectionKind::Unauthenticated => "unauthorized",
            RejectionKind::InvalidRequest => "invalid_request",
            RejectionKind::InvalidCredentials => "invalid_token",
            RejectionKind::Forbidden => "forbidden",
            RejectionKind::InsufficientScope => "insufficient_scope",
            RejectionKind::InsufficientUserAuthentication => "insufficient_user_authentication",
            RejectionKind::Csrf => "csrf_rejected",
            RejectionKind::NotFound => "not_found",
            RejectionKind::TooManyRequests => "too_many_requests",
            RejectionKind::Unavailable => "unavailable",
            RejectionKind::Internal => "internal_error",
        }
    }

    /// The gRPC status code of the rendering for gRPC requests.
    pub fn grpc_code(self) -> u8 {
        match self {
            RejectionKind::Unauthenticated
            | RejectionKind::InvalidRequest
            | RejectionKind::InvalidCredentials
            | RejectionKind::InsufficientUserAuthentication => 16,
            RejectionKind::Forbidden | RejectionKind::InsufficientScope | RejectionKind::Csrf => 7,
            RejectionKind::NotFound => 5,
            RejectionKind::TooManyRequests => 8,
            RejectionKind::Unavailable => 14,
            RejectionKind::Internal => 13,
        }
    }
}

/// A refused request, before it is rendered into a response.
///
/// Layers build one and pass it to [`Rejections::respond`]; a custom
/// [`RejectionHandler`] receives it and may call
/// [`into_response`](Rejection::into_response) for the default rendering.
#[derive(Clone, Debug)]
pub struct Rejection {
    kind: RejectionKind,
    message: Cow<'static, str>,
    headers: HeaderMap,
    grpc: bool,
}

impl Rejection {
    /// A rejection of `kind` with a client-visible `message`.
    pub fn new(kind: RejectionKind, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            kind,
            message: message.into(),
            headers: HeaderMap::new(),
            grpc: false,
        }
    }

    /// No credentials: `401` with every challenge and no error code.
    pub fn unauthenticated(challenges: &[Challenge]) -> Self {
        let mut r = Self::new(RejectionKind::Unauthenticated, "authentication required");
        for c in challenges {
            r.push_challenge(c, &[]);
        }
        r
    }

    /// The rejection for an authenticator's error. `challenges` are the
    /// layer's challenges, used when the error carries none of its own.
    pub fn from_auth_error(mut err: AuthError, challenges: &[Challenge]) -> Self {
        let headers = err.take_headers();
        let mut r = Self::from_auth_error_inner(err, challenges);
        for (name, value) in headers.into_iter().flat_map(|h| *h) {
            if let Some(name) = name {
                r = r.with_header(name, value);
            }
        }
        r
    }

    fn from_auth_error_inner(err: AuthError, challenges: &[Challenge]) -> Self {
        let (kind, message, own) = err.into_parts();
        let kind = match kind {
            AuthErrorKind::Missing => return Self::unauthenticated(challenges),
            AuthErrorKind::InvalidRequest => RejectionKind::InvalidRequest,
            AuthErrorKind::InvalidCredentials => RejectionKind::InvalidCredentials,
            AuthErrorKind::Forbidden => RejectionKind::Forbidden,
            AuthErrorKind::Unavailable => RejectionKind::Unavailable,
            AuthErrorKind::Misconfigured => RejectionKind::Internal,
        };
        let mut r = Self::new(kind, message);
        let code = match kind {
            RejectionKind::InvalidRequest => "invalid_request",
            RejectionKind::InvalidCredentials => "invalid_token",
            _ => return r,
        };
        let description = r.message.clone();
        for c in own.as_deref().unwrap_or(challenges) {
            if c.is_bearer() {
                r.push_challenge(c, &[("error", code), ("error_description", &description)]);
            } else {
                r.push_challenge(c, &[]);
            }
        }
        r
    }

    /// Authenticated but lacking a right: `403`.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::Forbidden, message)
    }

    /// A bearer-authenticated request lacking `scope` (one scope, or several
    /// separated by single spaces): `403` with
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"`.
    ///
    /// The `scope` attribute is left out when `scope` is not a list of
    /// RFC 6749 scope tokens (printable ASCII but `"` and `\`, no spaces
    /// inside a scope): a client doing step-up authorization must never be
    /// told about a different scope than the one required. The JSON body
    /// still says a scope is missing.
    pub fn insufficient_scope(challenge: &Challenge, scope: &str) -> Self {
        let valid = scope.split(' ').all(is_scope_token);
        Self::insufficient(challenge, valid.then_some(scope))
    }

    /// Like [`insufficient_scope`](Rejection::insufficient_scope) for
    /// several scopes, each of which must be a scope token (a name with a
    /// space would read as two scopes): otherwise the `scope` attribute is
    /// left out.
    pub fn insufficient_scopes<I, S>(challenge: &Challenge, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = String::new();
        let mut valid = true;
        for scope in scopes {
            let scope = scope.as_ref();
            valid &= is_scope_token(scope);
            if !list.is_empty() {
                list.push(' ');
            }
            list.push_str(scope);
        }
        valid &= !list.is_empty();
        Self::insufficient(challenge, valid.then_some(list.as_str()))
    }

    /// A bearer-authenticated request refused for a reason other than a
    /// missing scope (a role, an ownership check): `403` with `message`, and
    /// `WWW-Authenticate: Bearer error="insufficient_scope"` with
    /// `challenge`'s scheme and parameters and no `scope` attribute, since
    /// no scope would help (RFC 6750 §3.1: the token does not grant
    /// enough). The kind stays [`RejectionKind::Forbidden`].
    pub fn insufficient_privileges(
        challenge: &Challenge,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::forbidden_with_challenge(message, insufficient_privileges_header(challenge))
    }

    /// A `403` with a rendered `WWW-Authenticate` value, e.g. one that
    /// [`insufficient_privileges_header`] rendered once for a layer.
    pub(crate) fn forbidden_with_challenge(
        message: impl Into<Cow<'static, str>>,
        challenge: Option<HeaderValue>,
    ) -> Self {
        let mut r = Self::forbidden(message);
        if let Some(v) = challenge {
            r.headers.append(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    fn insufficient(challenge: &Challenge, scope: Option<&str>) -> Self {
        const DESCRIPTION: &str = "the access token lacks the required scope";
        let mut r = Self::new(RejectionKind::InsufficientScope, DESCRIPTION);
        let mut params = vec![
            ("error", "insufficient_scope"),
            ("error_description", DESCRIPTION),
        ];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        r.push_challenge(challenge, &params);
        r
    }

    /// A rate limit was hit: `429` with `Retry-After` in whole seconds
    /// (rounded up, at least 1).
    pub fn too_many_requests(retry_after: Duration) -> Self {
        let mut r = Self::new(
            RejectionKind::TooManyRequests,
            "too many requests, retry later",
        );
        let secs = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
            .max(1);
        r.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        r
    }

    /// The resource does not exist: `404` (`grpc-status` 5 NOT_FOUND).
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::NotFound, message)
    }

    /// The stack is misconfigured: `500`. `what` names the missing piece.
    pub fn internal(what: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::Internal, what)
    }

    fn push_challenge(&mut self, challenge: &Challenge, extra: &[(&str, &str)]) {
        if let Some(v) = challenge.render(extra) {
            self.headers.append(header::WWW_AUTHENTICATE, v);
        }
    }

    /// Marks the rejection as answering a gRPC request (or not).
    pub fn with_grpc(mut self, grpc: bool) -> Self {
        self.grpc = grpc;
        self
    }

    /// Adds a header to the rendering (e.g. `RateLimit-Policy`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The kind of refusal.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status of the default rendering.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The machine-readable code (`"invalid_token"`, `"forbidden"`, ...).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The client-visible message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The headers of the rendering: `WWW-Authenticate`, `Retry-After`, ...
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whether the request was a gRPC request.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The default rendering; see the [module docs](crate::rejection).
    pub fn into_response(self) -> Response<Bytes> {
        if self.grpc {
            let mut res = Response::new(Bytes::new());
            let headers = res.headers_mut();
            *headers = self.headers;
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(
                GRPC_STATUS,
                HeaderValue::from(u16::from(self.kind.grpc_code())),
            );
            if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&self.message)) {
                headers.insert(GRPC_MESSAGE, v);
            }
            return res;
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
        }
        let body = serde_json::to_vec(&Body {
            error: self.kind.code(),
            message: &self.message,
        })
        .unwrap_or_else(|_| br#"{"error":"internal_error","message":"internal error"}"#.to_vec());
        let mut res = Response::new(Bytes::from(body));
        *res.status_mut() = self.kind.status();
        *res.headers_mut() = self.headers;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

impl Rejection {
    /// The user must authenticate again, more strongly or more recently
    /// (RFC 9470 step-up): `401`, and with a `challenge` (a bearer one)
    /// `WWW-Authenticate: Bearer error="insufficient_user_authentication",
    /// error_description="…", acr_values="…", max_age="…"`. `acr_values`
    /// (space separated, in order of preference) is left out when it is
    /// not a list of visible-ASCII tokens without quotes or backslashes.
    pub fn insufficient_user_authentication(
        challenge: Option<&Challenge>,
        message: impl Into<Cow<'static, str>>,
        acr_values: Option<&str>,
        max_age: Option<u64>,
    ) -> Self {
        let mut r = Self::new(RejectionKind::InsufficientUserAuthentication, message);
        if let Some(challenge) = challenge {
            let description = r.message.clone();
            let max_age = max_age.map(|s| s.to_string());
            let mut extra: Vec<(&str, &str)> = vec![
                ("error", "insufficient_user_authentication"),
                ("error_description", &description),
            ];
            if let Some(acr) = acr_values.filter(|a| a.split(' ').all(is_scope_token)) {
                extra.push(("acr_values", acr));
            }
            if let Some(max_age) = &max_age {
                extra.push(("max_age", max_age));
            }
            r.push_challenge(challenge, &extra);
        }
        r
    }
}

/// Whether a request is a gRPC request, to be refused with a gRPC status
/// (HTTP `200` and `grpc-status`) rather than an HTTP status: HTTP/2,
/// `te: trailers`, and `content-type: application/grpc` (or
/// `application/grpc+proto`, `application/grpc;...`), as every gRPC client
/// sends them.
///
/// Everything else gets an HTTP status: a REST client (or a status-only
/// forward-auth proxy such as nginx `auth_request`, which speaks HTTP/1)
/// cannot turn a refusal into a `200` by sending a gRPC content type.
/// gRPC-Web (`application/grpc-web`, often over HTTP/1.1) gets HTTP statuses
/// too, which gRPC-Web clients map to gRPC codes.
pub fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    if version != Version::HTTP_2 {
        return false;
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let grpc_content = content_type.is_some_and(|v| {
        v.len() >= GRPC.len()
            && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
            && matches!(v.get(GRPC.len()), None | Some(b'+' | b';'))
    });
    grpc_content
        && headers.get_all(header::TE).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        })
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 protocol asks: bytes
/// outside `0x20..=0x7E`, and `%`.
fn grpc_percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Renders [`Rejection`]s into responses: implement it (or pass a closure)
/// to customize every rejection of a layer.
pub trait RejectionHandler: Send + Sync + 'static {
    /// Turns a rejection into a response.
    fn respond(&self, rejection: Rejection) -> Response<Bytes>;
}

impl<F> RejectionHandler for F
where
    F: Fn(Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// The rejection renderer a layer uses: the default one, or a
/// [`RejectionHandler`] of yours. Cloning is a reference-count increment.
///
/// An [`AuthLayer`](crate::AuthLayer) puts a renderer of yours into the
/// extensions of the requests it lets through, so one renderer set there
/// covers the `RequireLayer`s (feature `authz`), guards and extractors
/// inside it; they render with the default when they find none.
#[derive(Clone, Default)]
pub struct Rejections {
    handler: Option<Arc<dyn RejectionHandler>>,
    name_missing_rights: bool,
}

impl Rejections {
    /// Renders with [`Rejection::into_response`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders with `handler`.
    pub fn custom(handler: impl RejectionHandler) -> Self {
        Rejections {
            handler: Some(Arc::new(handler)),
            name_missing_rights: false,
        }
    }

    /// Whether authorization refusals name the roles, permissions or scopes
    /// that were missing in their message (`role 'admin' required`), rather
    /// than a generic `insufficient permissions` (the default).
    ///
    /// Off by default: the names describe your authorization model to
    /// anybody who gets refused. The `scope` attribute of a bearer
    /// `insufficient_scope` challenge names the missing permissions and
    /// scopes either way (RFC 6750 §3.1: the client needs it to ask for a
    /// token with more scope); role names are never put there.
    /// `RequireLayer::name_missing_rights` (feature `authz`)
    /// overrides this per layer.
    pub fn name_missing_rights(mut self, name: bool) -> Self {
        self.name_missing_rights = name;
        self
    }

    /// See [`name_missing_rights`](Rejections::name_missing_rights).
    pub fn names_missing_rights(&self) -> bool {
        self.name_missing_rights
    }

    /// Renders `rejection`, logging it at `debug` level (kind and fixed
    /// message only, never credentials).
    pub fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        log_rejection(rejection.kind, &rejection.message);
        match &self.handler {
            Some(h) => h.respond(rejection),
            None => rejection.into_response(),
        }
    }

    /// Renders `rejection` once, for a layer that refuses the same way
    /// many times (a request without credentials): `None` with a custom
    /// handler, which is called for every refusal.
    pub(crate) fn prerender(&self, rejection: Rejection) -> Option<Prerendered> {
        if self.handler.is_some() {
            return None;
        }
        let kind = rejection.kind;
        let message = rejection.message.clone();
        let (parts, body) = rejection.into_response().into_parts();
        Some(Prerendered {
            kind,
            message,
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The `debug` event of every refusal: kind and fixed message only.
fn log_rejection(kind: RejectionKind, message: &str) {
    crate::observe::rejection(kind); // observe
    tracing::debug!(
        kind = ?kind,
        status = kind.status().as_u16(),
        message,
        "request rejected"
    );
}

/// A refusal rendered once by [`Rejections::prerender`] and answered many
/// times: an answer clones the status, the header values and the body
/// (reference counts), so a flood of refusals renders nothing and
/// allocates only the response's header map.
#[derive(Clone, Debug)]
pub(crate) struct Prerendered {
    kind: RejectionKind,
    message: Cow<'static, str>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Prerendered {
    /// The response, logged like [`Rejections::respond`] logs.
    pub(crate) fn respond(&self) -> Response<Bytes> {
        log_rejection(self.kind, &self.message);
        let mut res = Response::new(self.body.clone());
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

impl fmt::Debug for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejections")
            .field("custom", &self.handler.is_some())
            .field("name_missing_rights", &self.name_missing_rights)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www(r: &Response<Bytes>) -> Vec<String> {
        r.headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn json(r: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn missing_credentials_have_no_error_code() {
        let c = [
            Challenge::bearer().param("realm", "api"),
            Challenge::new("ApiKey"),
        ];
        let res = Rejection::unauthenticated(&c).into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(www(&res), ["Bearer realm=\"api\"", "ApiKey"]);
        assert_eq!(json(&res)["error"], "unauthorized");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn invalid_token_names_the_failing_scheme_only() {
        let all = [Challenge::bearer(), Challenge::new("ApiKey")];
        let err = AuthError::invalid_credentials("token expired")
            .with_challenge(Challenge::bearer().param("realm", "api"));
        let res = Rejection::from_auth_error(err, &all).into_response();
        assert_eq!(
            www(&res),
            [r#"Bearer realm="api", error="invalid_token", error_description="token expired""#]
        );
        assert_eq!(json(&res)["message"], "token expired");
    }

    #[test]
    fn malformed_is_400_with_invalid_request() {
        let res =
            Rejection::from_auth_error(AuthError::invalid_request("bad"), &[Challenge::bearer()])
                .into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            www(&res),
            [r#"Bearer error="invalid_request", error_description="bad""#]
        );
    }

    #[test]
    fn non_bearer_challenges_get_no_rfc6750_attributes() {
        let res = Rejection::from_auth_error(
            AuthError::invalid_credentials("unknown key"),
            &[Challenge::new("ApiKey").param("header", "x-api-key")],
        )
        .into_response();
        assert_eq!(www(&res), [r#"ApiKey header="x-api-key""#]);
    }

    #[test]
    fn quoted_values_are_escaped_and_control_chars_dropped() {
        let c = Challenge::bearer().param("realm", "a\"b\\c\r\nd\u{e9}");
        let res = Rejection::unauthenticated(&[c]).into_response();
        assert_eq!(www(&res), [r#"Bearer realm="a\"b\\cd""#]);
    }

    #[test]
    fn unavailable_has_no_challenge() {
        let res = Rejection::from_auth_error(AuthError::unavailable("x"), &[Challenge::bearer()])
            .into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(www(&res).is_empty());
        assert_eq!(json(&res)["error"], "unavailable");
    }

    #[test]
    fn insufficient_scope_names_only_valid_scope_tokens() {
        let www = |r: Rejection| {
            let res = r.into_response();
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        let bearer = Challenge::bearer();
        let ok = www(Rejection::insufficient_scope(
            &bearer,
            "posts:read posts:write",
        ));
        assert!(ok.ends_with(r#"scope="posts:read posts:write""#), "{ok}");
        let ok = www(Rejection::insufficient_scopes(&bearer, ["a", "b:c"]));
        assert!(ok.ends_with(r#"scope="a b:c""#), "{ok}");
        // Non-ASCII would be dropped into another scope name; a space inside
        // one name would read as two scopes; quotes, backslashes, empty.
        for bad in [
            Rejection::insufficient_scope(&bearer, "données:lire"),
            Rejection::insufficient_scope(&bearer, "a  b"),
            Rejection::insufficient_scope(&bearer, ""),
            Rejection::insufficient_scope(&bearer, "a\"b"),
            Rejection::insufficient_scopes(&bearer, ["a b"]),
            Rejection::insufficient_scopes(&bearer, ["ok", "back\\slash"]),
            Rejection::insufficient_scopes(&bearer, Vec::<String>::new()),
        ] {
            let value = www(bad);
            assert!(value.contains(r#"error="insufficient_scope""#), "{value}");
            assert!(!value.contains("scope=\""), "{value}");
        }
    }

    #[test]
    fn insufficient_scope() {
        let res =
            Rejection::insufficient_scope(&Challenge::bearer(), "posts:write").into_response();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            www(&res),
            [
                r#"Bearer error="insufficient_scope", error_description="the access token lacks the required scope", scope="posts:write""#
            ]
        );
    }

    #[test]
    fn grpc_rendering() {
        for (r, code) in [
            (Rejection::unauthenticated(&[]), "16"),
            (Rejection::forbidden("no"), "7"),
            (Rejection::not_found("no such post"), "5"),
            (
                Rejection::too_many_requests(Duration::from_millis(1500)),
                "8",
            ),
            (
                Rejection::from_auth_error(AuthError::unavailable("x"), &[]),
                "14",
            ),
            (Rejection::internal("x"), "13"),
        ] {
            let res = r.with_grpc(true).into_response();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["grpc-status"], code);
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
            assert!(res.body().is_empty());
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("100% sûr\n"), "100%25 s%C3%BBr%0A");
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = Rejection::too_many_requests(Duration::from_millis(1001));
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = Rejection::too_many_requests(Duration::ZERO);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn custom_handler_is_used() {
        let rejections = Rejections::custom(|r: Rejection| {
            let mut res = r.into_response();
            *res.status_mut() = StatusCode::IM_A_TEAPOT;
            res
        });
        let res = rejections.respond(Rejection::forbidden("x"));
        assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    }

    #[test]
    fn is_grpc_needs_http2_te_trailers_and_a_grpc_content_type() {
        let headers = |content_type: &'static str, te: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if !te.is_empty() {
                h.insert(header::TE, HeaderValue::from_static(te));
            }
            h
        };
        let h2 = Version::HTTP_2;
        assert!(!is_grpc(h2, &HeaderMap::new()));
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc(h2, &headers(grpc, "trailers")), "{grpc}");
            assert!(is_grpc(h2, &headers(grpc, "gzip, Trailers")), "{grpc}");
            // Not HTTP/2, or no `te: trailers`: an HTTP client.
            assert!(!is_grpc(Version::HTTP_11, &headers(grpc, "trailers")));
            assert!(!is_grpc(Version::HTTP_10, &headers(grpc, "trailers")));
            assert!(!is_grpc(h2, &headers(grpc, "")));
            assert!(!is_grpc(h2, &headers(grpc, "gzip")));
        }
        for other in [
            "application/json",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/grp",
        ] {
            assert!(!is_grpc(h2, &headers(other, "trailers")), "{other}");
        }
    }
}
