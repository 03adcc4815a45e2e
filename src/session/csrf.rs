//! Middleware that refuses cross-site requests made with the user's cookies:
//! [`CsrfLayer`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, ORIGIN, UPGRADE};
use http::{Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use super::handle::Session;
use crate::body::{self, ResponseBody};
use crate::rejection::{is_grpc, Rejection, RejectionHandler, RejectionKind, Rejections};

/// The session key of the synchronizer token.
pub const CSRF_TOKEN_KEY: &str = "tower_auth.csrf_token";

/// The default header carrying the synchronizer token.
pub const CSRF_TOKEN_HEADER: &str = "x-csrf-token";

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The synchronizer token of `session`, created (256 random bits) and stored
/// on first use. Render it into pages and send it back in the
/// [`CSRF_TOKEN_HEADER`] header (or check a form field with
/// [`verify_csrf_token`]).
///
/// # Errors
///
/// The operating system's random number generator failed.
pub fn csrf_token(session: &Session) -> Result<String, getrandom::Error> {
    if let Some(serde_json::Value::String(token)) = session.get_value(CSRF_TOKEN_KEY) {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    session.insert_value(CSRF_TOKEN_KEY, serde_json::Value::String(token.clone()));
    Ok(token)
}

/// Whether `presented` is the synchronizer token of `session`, compared in
/// constant time. `false` when the session has no token.
pub fn verify_csrf_token(session: &Session, presented: &str) -> bool {
    match session.get_value(CSRF_TOKEN_KEY) {
        Some(serde_json::Value::String(token)) => {
            token.len() == presented.len()
                && bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
        }
        _ => false,
    }
}

/// An origin that may not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an allowed origin must be scheme://host[:port] with scheme http or https, without path, query or user info")]
pub struct InvalidOrigin;

/// `scheme://host[:port]` in lower case, without the scheme's default port.
fn normalize_origin(text: &str) -> Option<String> {
    let uri: Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    if uri.query().is_some() || !matches!(uri.path(), "" | "/") || text.ends_with('/') {
        return None;
    }
    // A port that is present must be a number: `https://app.example:evil`
    // or a dangling `:` is no origin (it must not match `https://app.example`).
    // (`http` parses such an authority, with no port.)
    let after_host = authority.as_str().get(authority.host().len()..)?;
    let port_ok = match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(digits) => {
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && authority.port_u16().is_some()
        }
    };
    if !port_ok {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request
/// was sent to (`Host`, `host[:port]`): same host, and the same port, a
/// `Host` without a port standing for the origin scheme's default port. The
/// scheme cannot be checked: `Host` does not say it.
fn same_host(origin: &str, host: &str) -> bool {
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    let Ok(host) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    if host.as_str().contains('@') {
        return false;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let expected = match host.port_u16() {
        Some(port) => format!("{scheme}://{}:{port}", host.host()),
        None => format!("{scheme}://{}", host.host()),
    };
    // The same normalization on both sides (lower case, default port
    // dropped).
    normalize_origin(&expected).is_some_and(|h| h == format!("{scheme}://{rest}"))
}

/// Whether the request asks to switch protocols: a WebSocket (or other)
/// upgrade over HTTP/1.1 (`Upgrade`, `Connection: upgrade`), or an HTTP/2
/// or HTTP/3 extended `CONNECT` (`:protocol`, RFC 8441). Such a `GET` is not
/// safe: the connection it opens carries the user's cookies.
fn is_upgrade<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    headers.contains_key(UPGRADE)
        || headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
        || *req.method() == Method::CONNECT
}

#[derive(Clone)]
struct Config {
    /// The public origins of this application, when set: `Origin` is
    /// compared to them instead of `Host`.
    public: Vec<String>,
    allowed: Vec<String>,
    require_token: bool,
    token_header: HeaderName,
    check_without_cookies: bool,
    rejections: Rejections,
}

/// Refuses cross-site requests with unsafe methods (anything but `GET`,
/// `HEAD`, `OPTIONS` and `TRACE`), and cross-site protocol upgrades
/// (WebSocket handshakes: a `GET` with `Upgrade` or `Connection: upgrade`,
/// or an HTTP/2 extended `CONNECT`), that carry cookies, with `403` and a JSON
/// body `{"error": "csrf_rejected", "message": ...}`. See the
/// [module docs](super#csrf).
///
/// For each such request:
///
/// 1. `Sec-Fetch-Site` (sent by every current browser): `same-origin` or
///    `none` (typed URL, bookmark) pass; `same-site` and `cross-site` pass
///    only when `Origin` is an [allowed origin](CsrfLayer::allow_origin).
/// 2. Without it, `Origin`: passes when it is one of the
///    [public origins](CsrfLayer::public_origin) (scheme, host and port),
///    or, when none is set, when its host and port match the `Host` the
///    request was sent to (the scheme is not checked); or when it is an
///    allowed origin. `Origin: null` is refused.
/// 3. Without either header the request did not come from a current browser
///    (curl, server-to-server) and passes: browsers are the only clients that
///    attach a victim's cookies on their own.
/// 4. With [`require_token`](CsrfLayer::require_token), the request must also
///    send the session's [`csrf_token`] in the `x-csrf-token` header
///    (compared in constant time). This needs a
///    [`SessionLayer`](super::SessionLayer) outside this layer.
///
/// Requests without a `Cookie` header (bearer tokens, API keys) are not
/// checked: they carry no credential a browser sends by itself. Use
/// [`check_without_cookies`](CsrfLayer::check_without_cookies) on login
/// forms to stop login CSRF too.
#[derive(Clone)]
pub struct CsrfLayer {
    config: Arc<Config>,
}

impl Default for CsrfLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CsrfLayer {
    /// Same-origin requests only, no token.
    pub fn new() -> Self {
        CsrfLayer {
            config: Arc::new(Config {
                public: Vec::new(),
                allowed: Vec::new(),
                require_token: false,
                token_header: HeaderName::from_static(CSRF_TOKEN_HEADER),
                check_without_cookies: false,
                rejections: Rejections::new(),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Also accepts requests from `origin` (`https://app.example.com`), e.g.
    /// a front end on another subdomain.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `origin` is not `scheme://host[:port]` with
    /// scheme `http` or `https`.
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let origin = normalize_origin(origin).ok_or(InvalidOrigin)?;
        self.config_mut().allowed.push(origin);
        Ok(self)
    }

    /// Declares `origin` (`https://app.example.com`) an origin this
    /// application is served from, as browsers see it; call it once per
    /// origin. Behind a proxy that rewrites `Host` (to `backend:8080`), or
    /// to check the scheme, set every public origin: a request's `Origin`
    /// is then compared to them (scheme, host and port exactly, default
    /// ports normalized) instead of to `Host`, so `http://app.example.com`
    /// is refused when only `https://app.example.com` is public.
    ///
    /// Without a public origin, the `Origin` fallback (browsers that send no
    /// `Sec-Fetch-Site`) compares the host and port of `Origin` with the
    /// request's `Host` only: `Host` does not carry the scheme, and a proxy
    /// that rewrites it makes same-origin requests fail.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `origin` is not `scheme://host[:port]` with
    /// scheme `http` or `https`.
    pub fn public_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let origin = normalize_origin(origin).ok_or(InvalidOrigin)?;
        self.config_mut().public.push(origin);
        Ok(self)
    }

    /// Also requires the session's synchronizer token (see [`csrf_token`])
    /// in the token header. Default off. Protocol upgrades (WebSockets) are
    /// checked by origin only: browsers cannot add a header to them.
    pub fn require_token(mut self, on: bool) -> Self {
        self.config_mut().require_token = on;
        self
    }

    /// The header carrying the token (default `x-csrf-token`).
    pub fn token_header(mut self, name: HeaderName) -> Self {
        self.config_mut().token_header = name;
        self
    }

    /// Also checks unsafe requests that carry no cookie. Turn it on for
    /// sign-in forms: without it, a cross-site page can post the attacker's
    /// credentials to the form, and the victim's browser, which has no
    /// session cookie yet, is signed in to the attacker's account (login
    /// CSRF; see the [module docs](super#login-csrf)). Default off.
    ///
    /// Clients that send neither `Origin` nor `Sec-Fetch-Site` (not
    /// browsers) still pass. Cross-origin API clients using bearer tokens
    /// from a browser need an [allowed origin](CsrfLayer::allow_origin) on
    /// the routes where it is on.
    pub fn check_without_cookies(mut self, on: bool) -> Self {
        self.config_mut().check_without_cookies = on;
        self
    }

    /// Renders rejections with `handler`. See [`crate::rejection`].
    pub fn on_rejection(mut self, handler: impl RejectionHandler) -> Self {
        self.config_mut().rejections = Rejections::custom(handler);
        self
    }

    /// Uses a shared [`Rejections`] renderer.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.config_mut().rejections = rejections;
        self
    }
}

impl fmt::Debug for CsrfLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfLayer")
            .field("public_origins", &self.config.public)
            .field("allowed_origins", &self.config.allowed)
            .field("require_token", &self.config.require_token)
            .field("token_header", &self.config.token_header)
            .field("check_without_cookies", &self.config.check_without_cookies)
            .finish()
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`CsrfLayer`].
#[derive(Clone)]
pub struct CsrfService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> CsrfService<S> {
    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for CsrfService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// One header value, `Err` when repeated.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, ()> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    match all.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl Config {
    fn allowed(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.allowed.contains(&o))
    }

    /// `Err((kind, message))` when the request must be refused.
    fn check<B>(&self, req: &Request<B>) -> Result<(), (RejectionKind, &'static str)> {
        const REPEATED: &str = "repeated Origin or Sec-Fetch-Site header";
        let upgrade = is_upgrade(req);
        if is_safe(req.method()) && !upgrade {
            return Ok(());
        }
        let headers = req.headers();
        if !self.check_without_cookies && !headers.contains_key(COOKIE) {
            return Ok(());
        }
        let csrf = RejectionKind::Csrf;
        let origin = single(headers, &ORIGIN).map_err(|()| (csrf, REPEATED))?;
        // An `Origin` that is present but not visible ASCII is no origin
        // we can match, and not an absent one either: refuse it.
        let origin = match origin {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| (csrf, "cross-origin request refused"))?,
            ),
            None => None,
        };
        match single(headers, &SEC_FETCH_SITE).map_err(|()| (csrf, REPEATED))? {
            Some(site) if site == "same-origin" || site == "none" => {}
            Some(_) => {
                if !origin.is_some_and(|o| self.allowed(o)) {
                    return Err((csrf, "cross-site request refused"));
                }
            }
            None => match origin {
                None => {}
                Some(o) => {
                    let same = if self.public.is_empty() {
                        let host = single(headers, &HOST)
                            .ok()
                            .flatten()
                            .and_then(|h| h.to_str().ok())
                            .or_else(|| req.uri().authority().map(|a| a.as_str()));
                        host.is_some_and(|h| same_host(o, h))
                    } else {
                        normalize_origin(o).is_some_and(|o| self.public.contains(&o))
                    };
                    if !same && !self.allowed(o) {
                        return Err((csrf, "cross-origin request refused"));
                    }
                }
            },
        }
        if upgrade {
            // No header can be added to a browser's WebSocket handshake:
            // the origin check above is the defence.
            return Ok(());
        }
        if self.require_token {
            let Some(session) = req.extensions().get::<Session>() else {
                tracing::error!(
                    "CsrfLayer::require_token found no Session in the request extensions: \
                     add SessionLayer outside (before) the CsrfLayer"
                );
                return Err((
                    RejectionKind::Internal,
                    "CSRF tokens are not configured for this route (missing SessionLayer)",
                ));
            };
            let presented = single(headers, &self.token_header)
                .map_err(|()| (csrf, "repeated CSRF token header"))?
                .and_then(|v| v.to_str().ok());
            match presented {
                None => return Err((csrf, "missing CSRF token")),
                Some(t) if !verify_csrf_token(session, t) => {
                    return Err((csrf, "invalid CSRF token"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CsrfService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = CsrfFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.config.check(&req) {
            Ok(()) => CsrfFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err((kind, message)) => {
                tracing::debug!(method = %req.method(), reason = message, "CSRF check refused a request");
                let rejection =
                    Rejection::new(kind, message).with_grpc(is_grpc(req.version(), req.headers()));
                CsrfFuture {
                    kind: Kind::Rejected {
                        response: Some(self.config.rejections.respond(rejection)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`CsrfService`].
    pub struct CsrfFuture<F> {
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
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<F, B, E> Future for CsrfFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_ok(body::wrap),
            KindProj::Rejected { response } => {
                let response = response.take().unwrap_or_else(|| {
                    Rejection::internal("response future polled after completion").into_response()
                });
                Poll::Ready(Ok(body::rejection(response)))
            }
        }
    }
}

impl<F> fmt::Debug for CsrfFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    use super::*;

    async fn ok(_: Request<()>) -> Result<Response<String>, Infallible> {
        Ok(Response::new("ok".to_owned()))
    }

    async fn call(layer: &CsrfLayer, req: Request<()>) -> (StatusCode, String) {
        let res = layer.layer(service_fn(ok)).oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post("/transfer").header(HOST, "bank.example");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn layer() -> CsrfLayer {
        CsrfLayer::new()
            .allow_origin("https://app.bank.example")
            .unwrap()
    }

    async fn assert_refused(layer: &CsrfLayer, req: Request<()>, message: &str) {
        let (status, body) = call(layer, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "csrf_rejected");
        assert_eq!(json["message"], message);
    }

    #[tokio::test]
    async fn safe_methods_and_cookieless_requests_pass() {
        let l = layer();
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            let req = Request::builder()
                .method(m)
                .header(COOKIE, "session=x")
                .header("sec-fetch-site", "cross-site")
                .body(())
                .unwrap();
            assert_eq!(call(&l, req).await.0, StatusCode::OK);
        }
        // a bearer-token client calling cross-origin: no cookie, no check
        let req = post(&[
            ("authorization", "Bearer t"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(call(&l, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn fetch_metadata_decides_for_cookie_requests() {
        let l = layer();
        for site in ["same-origin", "none"] {
            let req = post(&[(COOKIE.as_str(), "session=x"), ("sec-fetch-site", site)]);
            assert_eq!(call(&l, req).await.0, StatusCode::OK, "{site}");
        }
        for site in ["cross-site", "same-site", "bogus"] {
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                let mut req = post(&[
                    (COOKIE.as_str(), "session=x"),
                    ("sec-fetch-site", site),
                    ("origin", "https://evil.example"),
                ]);
                *req.method_mut() = method;
                assert_refused(&l, req, "cross-site request refused").await;
            }
        }
        // an allowed origin may send cross-site requests
        let req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.bank.example"),
        ]);
        assert_eq!(call(&l, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn origin_is_checked_when_fetch_metadata_is_missing() {
        let l = layer();
        let cases = [
            (Some("https://bank.example"), true),
            (Some("http://BANK.example"), true),
            (Some("https://app.bank.example"), true),
            (Some("https://evil.example"), false),
            (Some("https://bank.example.evil.example"), false),
            (Some("null"), false),
            (None, true),
        ];
        for (origin, pass) in cases {
            let mut headers = vec![(COOKIE.as_str(), "session=x")];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            if pass {
                assert_eq!(
                    call(&l, post(&headers)).await.0,
                    StatusCode::OK,
                    "{origin:?}"
                );
            } else {
                assert_refused(&l, post(&headers), "cross-origin request refused").await;
            }
        }
    }

    /// Found by the `csrf` fuzz target: an `Origin` with obs-text bytes was
    /// read as no `Origin` at all, and let through.
    #[tokio::test]
    async fn an_origin_that_is_not_ascii_is_refused() {
        let l = layer();
        for origin in [&b"https://bank.examp\xede"[..], b"https://evil.example\x80"] {
            let mut req = post(&[(COOKIE.as_str(), "session=x")]);
            req.headers_mut()
                .insert("origin", http::HeaderValue::from_bytes(origin).unwrap());
            assert_refused(&l, req, "cross-origin request refused").await;
        }
    }

    /// Found by the `csrf` fuzz target: a port that is not a number was
    /// dropped, so `https://app.bank.example:evil` matched the allowed
    /// `https://app.bank.example`.
    #[tokio::test]
    async fn an_origin_whose_port_is_not_a_number_matches_nothing() {
        let l = layer();
        for origin in [
            "https://app.bank.example:evil",
            "https://app.bank.example:",
            "HTTPS://APP.BANK.EXAMPLE:4PLE.43",
        ] {
            let req = post(&[
                (COOKIE.as_str(), "session=x"),
                ("sec-fetch-site", "same-site"),
                ("origin", origin),
            ]);
            assert_refused(&l, req, "cross-site request refused").await;
            let req = post(&[(COOKIE.as_str(), "session=x"), ("origin", origin)]);
            assert_refused(&l, req, "cross-origin request refused").await;
        }
        assert!(CsrfLayer::new().allow_origin("https://a.example:").is_err());
        assert!(CsrfLayer::new()
            .allow_origin("https://a.example:x")
            .is_err());
    }

    /// A WebSocket handshake (`GET` + `Upgrade`) with `headers`.
    fn upgrade(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws")
            .header(HOST, "bank.example")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn cross_site_websocket_handshakes_are_refused() {
        let l = layer();
        let cookie = (COOKIE.as_str(), "session=x");
        // cross-site, by Origin or by Fetch Metadata
        assert_refused(
            &l,
            upgrade(&[cookie, ("origin", "https://evil.example")]),
            "cross-origin request refused",
        )
        .await;
        assert_refused(
            &l,
            upgrade(&[
                cookie,
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ]),
            "cross-site request refused",
        )
        .await;
        // `Connection: keep-alive, Upgrade` alone marks an upgrade too
        let req = Request::get("/ws")
            .header(HOST, "bank.example")
            .header("connection", "keep-alive, Upgrade")
            .header(COOKIE, "session=x")
            .header("origin", "https://evil.example")
            .body(())
            .unwrap();
        assert_refused(&l, req, "cross-origin request refused").await;
        // HTTP/2 extended CONNECT (RFC 8441)
        let req = Request::connect("https://bank.example/ws")
            .version(http::Version::HTTP_2)
            .header(COOKIE, "session=x")
            .header("origin", "https://evil.example")
            .body(())
            .unwrap();
        assert_refused(&l, req, "cross-origin request refused").await;
        // same-origin and allowed origins open
        for origin in ["https://bank.example", "https://app.bank.example"] {
            let req = upgrade(&[cookie, ("origin", origin)]);
            assert_eq!(call(&l, req).await.0, StatusCode::OK, "{origin}");
        }
        let req = upgrade(&[
            cookie,
            ("origin", "https://bank.example"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(call(&l, req).await.0, StatusCode::OK);
        // no token can be sent on a handshake: origin only, even in token mode
        let tokens = layer().require_token(true);
        let req = upgrade(&[cookie, ("origin", "https://bank.example")]);
        assert_eq!(call(&tokens, req).await.0, StatusCode::OK);
        // a plain GET is still not checked
        let req = Request::get("/page")
            .header(COOKIE, "session=x")
            .header("origin", "https://evil.example")
            .body(())
            .unwrap();
        assert_eq!(call(&l, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn public_origins_check_the_scheme_and_survive_a_rewritten_host() {
        let l = CsrfLayer::new()
            .public_origin("https://app.example.com")
            .unwrap()
            .public_origin("https://www.example.com:8443")
            .unwrap();
        let send = |origin: &'static str, host: &'static str| {
            Request::post("/transfer")
                .header(HOST, host)
                .header(COOKIE, "session=x")
                .header("origin", origin)
                .body(())
                .unwrap()
        };
        // the proxy rewrote Host: the public origin still matches
        let r = call(&l, send("https://app.example.com", "backend:8080")).await;
        assert_eq!(r.0, StatusCode::OK);
        let r = call(&l, send("https://APP.example.com:443", "backend:8080")).await;
        assert_eq!(r.0, StatusCode::OK, "default port normalized");
        let r = call(&l, send("https://www.example.com:8443", "backend")).await;
        assert_eq!(r.0, StatusCode::OK);
        // scheme and port are compared exactly
        for origin in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://www.example.com",
        ] {
            assert_refused(
                &l,
                send(origin, "app.example.com"),
                "cross-origin request refused",
            )
            .await;
        }
        // Host is no longer trusted once public origins are set
        assert_refused(
            &l,
            send("https://backend:8080", "backend:8080"),
            "cross-origin request refused",
        )
        .await;
        // without public origins, a rewritten Host fails same-origin
        // requests (documented), and the scheme is not checked
        let plain = CsrfLayer::new();
        assert_refused(
            &plain,
            send("https://app.example.com", "backend:8080"),
            "cross-origin request refused",
        )
        .await;
        let r = call(&plain, send("http://app.example.com", "app.example.com")).await;
        assert_eq!(r.0, StatusCode::OK);
        // ports: a Host without a port is the origin scheme's default one
        let r = call(
            &plain,
            send("https://app.example.com", "app.example.com:443"),
        )
        .await;
        assert_eq!(r.0, StatusCode::OK);
        assert_refused(
            &plain,
            send("https://app.example.com:8443", "app.example.com"),
            "cross-origin request refused",
        )
        .await;
        assert!(CsrfLayer::new().public_origin("app.example.com").is_err());
        assert!(CsrfLayer::new()
            .public_origin("https://app.example.com/path")
            .is_err());
    }

    #[tokio::test]
    async fn repeated_headers_are_refused() {
        let l = layer();
        let req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("origin", "https://bank.example"),
            ("origin", "https://evil.example"),
        ]);
        assert_refused(&l, req, "repeated Origin or Sec-Fetch-Site header").await;
        let req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_refused(&l, req, "repeated Origin or Sec-Fetch-Site header").await;
    }

    #[tokio::test]
    async fn login_csrf_is_stopped_when_cookieless_requests_are_checked() {
        let l = layer().check_without_cookies(true);
        let req = post(&[("sec-fetch-site", "cross-site")]);
        assert_refused(&l, req, "cross-site request refused").await;
        let req = post(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(call(&l, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn tokens_are_checked_against_the_session() {
        let l = layer().require_token(true);
        let session = Session::default();
        let token = csrf_token(&session).unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(csrf_token(&session).unwrap(), token, "stable per session");

        let with = |value: Option<&str>| {
            let mut req = post(&[
                (COOKIE.as_str(), "session=x"),
                ("sec-fetch-site", "same-origin"),
            ]);
            if let Some(v) = value {
                req.headers_mut()
                    .insert(CSRF_TOKEN_HEADER, HeaderValue::from_str(v).unwrap());
            }
            req.extensions_mut().insert(session.clone());
            req
        };
        assert_eq!(call(&l, with(Some(&token))).await.0, StatusCode::OK);
        assert_refused(&l, with(None), "missing CSRF token").await;
        assert_refused(&l, with(Some("wrong")), "invalid CSRF token").await;
        let mut flipped = token.clone().into_bytes();
        flipped[0] ^= 1;
        let flipped = String::from_utf8(flipped).unwrap();
        assert_refused(&l, with(Some(&flipped)), "invalid CSRF token").await;
        // the origin check still runs first
        let mut req = with(Some(&token));
        req.headers_mut()
            .insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_refused(&l, req, "cross-site request refused").await;
        // a session without a token
        let mut req = with(Some(&token));
        req.extensions_mut().insert(Session::default());
        assert_refused(&l, req, "invalid CSRF token").await;
    }

    #[tokio::test]
    async fn token_mode_without_session_layer_is_a_500() {
        let l = layer().require_token(true);
        let req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("sec-fetch-site", "same-origin"),
        ]);
        let (status, body) = call(&l, req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("missing SessionLayer"));
    }

    #[tokio::test]
    async fn grpc_requests_get_permission_denied() {
        let l = layer();
        let mut req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]);
        *req.version_mut() = http::Version::HTTP_2;
        let res = l.layer(service_fn(ok)).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "7");
    }

    #[tokio::test]
    async fn custom_rejection_handler() {
        let l = layer().on_rejection(|r: Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from_static(b"nope"))
                .unwrap()
        });
        let req = post(&[
            (COOKIE.as_str(), "session=x"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(
            call(&l, req).await,
            (StatusCode::FORBIDDEN, "nope".to_owned())
        );
    }

    #[test]
    fn allowed_origins_are_validated_and_normalized() {
        for good in [
            "https://a.example",
            "http://localhost:8080",
            "HTTPS://A.Example:443",
        ] {
            assert!(CsrfLayer::new().allow_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "a.example",
            "https://a.example/",
            "https://a.example/path",
            "https://a.example?q",
            "ftp://a.example",
            "https://user@a.example",
            "",
        ] {
            assert_eq!(
                CsrfLayer::new().allow_origin(bad).unwrap_err(),
                InvalidOrigin,
                "{bad}"
            );
        }
        assert_eq!(
            normalize_origin("HTTPS://A.Example:443").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            normalize_origin("http://a.example:8080").as_deref(),
            Some("http://a.example:8080")
        );
    }

    #[test]
    fn verify_is_false_without_a_token() {
        let s = Session::default();
        assert!(!verify_csrf_token(&s, ""));
        s.insert(CSRF_TOKEN_KEY, 42).unwrap();
        assert!(!verify_csrf_token(&s, "42"));
    }
}
