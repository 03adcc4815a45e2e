//! OAuth 2.0 protected-resource metadata (RFC 9728): the document, and a
//! middleware serving it at `/.well-known/oauth-protected-resource`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use serde::Serialize;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::rejection::Challenge;

/// The well-known path segment of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A resource identifier RFC 9728 refuses: not an absolute `https` URL
/// (`http` only for a loopback host), or with a query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a protected resource is an https URL without query or fragment")]
pub struct InvalidResource;

/// The metadata of a protected resource (an API) for OAuth clients (RFC
/// 9728 §2): which authorization servers issue its tokens, which scopes it
/// knows, how it takes bearer tokens. Serve it with
/// [`layer`](Self::layer) and name its [`url`](Self::url) in the
/// `WWW-Authenticate` challenge with
/// [`JwtAuthenticator::resource_metadata`](super::JwtAuthenticator::resource_metadata),
/// so that a client refused with `401` finds the authorization server
/// (RFC 9728 §5).
///
/// ```
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_auth::jwt::{JwtAuthenticator, JwtKey, KeySet, ResourceMetadata};
/// use tower_auth::AuthLayer;
///
/// let metadata = ResourceMetadata::new("https://api.example.com/orders")?
///     .authorization_servers(["https://login.example.com"])
///     .scopes_supported(["orders:read", "orders:write"]);
/// let key = JwtKey::hmac(tower_auth::jwt::Algorithm::HS256, &[7; 32])?;
/// let jwt = JwtAuthenticator::<serde_json::Value>::new(KeySet::single(key))
///     .resource_metadata(metadata.url());
///
/// let app = ServiceBuilder::new()
///     .layer(metadata.layer()) // public: outside the AuthLayer
///     .layer(AuthLayer::new(jwt))
///     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) });
///
/// let req = Request::get("/.well-known/oauth-protected-resource/orders").body(())?;
/// assert_eq!(app.clone().oneshot(req).await?.status(), StatusCode::OK);
/// let res = app.oneshot(Request::get("/orders").body(())?).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// assert!(res.headers()["www-authenticate"].to_str()?.contains(
///     r#"resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/orders""#
/// ));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ResourceMetadata {
    doc: Document,
    /// `scheme://authority` of the resource.
    origin: String,
    /// The resource's path without a trailing `/` (empty for the root).
    suffix: String,
}

#[derive(Clone, Debug, Serialize)]
struct Document {
    resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_tos_uri: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_client_certificate_bound_access_tokens: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dpop_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dpop_bound_access_tokens_required: bool,
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

impl ResourceMetadata {
    /// Metadata of the resource identified by `resource` (e.g.
    /// `https://api.example.com` or `https://api.example.com/orders`), with
    /// `bearer_methods_supported` `["header"]`.
    ///
    /// # Errors
    ///
    /// [`InvalidResource`] for anything but an absolute `https` URL (`http`
    /// is accepted for `localhost`, `127.0.0.1` and `[::1]`, for
    /// development) without query or fragment (RFC 9728 §1.2).
    pub fn new(resource: impl Into<String>) -> Result<Self, InvalidResource> {
        let resource = resource.into();
        if resource.contains('#') {
            return Err(InvalidResource);
        }
        let uri: Uri = resource.parse().map_err(|_| InvalidResource)?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(InvalidResource);
        };
        let secure = scheme == "https" || (scheme == "http" && is_loopback(authority.host()));
        if !secure || uri.query().is_some() || authority.as_str().contains('@') {
            return Err(InvalidResource);
        }
        Ok(ResourceMetadata {
            origin: format!("{scheme}://{authority}"),
            suffix: uri.path().trim_end_matches('/').to_owned(),
            doc: Document {
                resource,
                authorization_servers: Vec::new(),
                jwks_uri: None,
                scopes_supported: Vec::new(),
                bearer_methods_supported: vec!["header".into()],
                resource_signing_alg_values_supported: Vec::new(),
                resource_name: None,
                resource_documentation: None,
                resource_policy_uri: None,
                resource_tos_uri: None,
                tls_client_certificate_bound_access_tokens: false,
                dpop_signing_alg_values_supported: Vec::new(),
                dpop_bound_access_tokens_required: false,
            },
        })
    }

    /// `authorization_servers`: the issuer identifiers of the
    /// authorization servers whose tokens the resource accepts.
    pub fn authorization_servers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.doc.authorization_servers = strings(issuers);
        self
    }

    /// `jwks_uri`: the resource's own public keys (for signed responses).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.doc.jwks_uri = Some(url.into());
        self
    }

    /// `scopes_supported`: the scopes a request may need.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.doc.scopes_supported = strings(scopes);
        self
    }

    /// `bearer_methods_supported` (default `["header"]`; add `"query"` only
    /// with [`JwtAuthenticator::query_param`](super::JwtAuthenticator::query_param)).
    pub fn bearer_methods_supported<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.doc.bearer_methods_supported = strings(methods);
        self
    }

    /// `resource_signing_alg_values_supported`.
    pub fn resource_signing_alg_values_supported<I, S>(mut self, algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.doc.resource_signing_alg_values_supported = strings(algorithms);
        self
    }

    /// `resource_name`: a human-readable name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.doc.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation`: a page for developers.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.doc.resource_documentation = Some(url.into());
        self
    }

    /// `resource_policy_uri`.
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.doc.resource_policy_uri = Some(url.into());
        self
    }

    /// `resource_tos_uri`.
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.doc.resource_tos_uri = Some(url.into());
        self
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705).
    pub fn tls_client_certificate_bound_access_tokens(mut self, bound: bool) -> Self {
        self.doc.tls_client_certificate_bound_access_tokens = bound;
        self
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449).
    pub fn dpop_signing_alg_values_supported<I, S>(mut self, algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.doc.dpop_signing_alg_values_supported = strings(algorithms);
        self
    }

    /// `dpop_bound_access_tokens_required` (RFC 9449).
    pub fn dpop_bound_access_tokens_required(mut self, required: bool) -> Self {
        self.doc.dpop_bound_access_tokens_required = required;
        self
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.doc.resource
    }

    /// The path the metadata is served at: [`WELL_KNOWN`] followed by the
    /// resource's path, if any (RFC 9728 §3.1), e.g.
    /// `/.well-known/oauth-protected-resource/orders` for
    /// `https://api.example.com/orders`.
    pub fn path(&self) -> String {
        format!("{WELL_KNOWN}{}", self.suffix)
    }

    /// The URL of the metadata, for the `resource_metadata` challenge
    /// parameter.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin, self.path())
    }

    /// A `Bearer` challenge naming the metadata (`resource_metadata=
    /// "<url>"`), e.g. for the `403 insufficient_scope` answers of
    /// `RequireLayer::bearer_challenge` (RFC 9728 §5.1). The
    /// authenticator's own challenge gets it from
    /// [`JwtAuthenticator::resource_metadata`](super::JwtAuthenticator::resource_metadata).
    pub fn challenge(&self) -> Challenge {
        Challenge::bearer().param("resource_metadata", self.url())
    }

    /// The metadata document (JSON).
    pub fn to_json(&self) -> String {
        // A struct of strings, vectors of strings and booleans always
        // serializes.
        serde_json::to_string(&self.doc).unwrap_or_default()
    }

    /// A middleware answering `GET` / `HEAD` [`path`](Self::path) with the
    /// document (`application/json`), other methods there with `405`,
    /// other paths under [`WELL_KNOWN`] with `404`, and passing every other
    /// request to the inner service. Put it outside the `AuthLayer`: the
    /// metadata is public.
    pub fn layer(&self) -> ResourceMetadataLayer {
        ResourceMetadataLayer {
            shared: Arc::new(Served {
                path: self.path().into(),
                json: Bytes::from(self.to_json()),
            }),
        }
    }
}

struct Served {
    path: Box<str>,
    json: Bytes,
}

/// Serves a [`ResourceMetadata`] document; see
/// [`ResourceMetadata::layer`].
#[derive(Clone)]
pub struct ResourceMetadataLayer {
    shared: Arc<Served>,
}

impl fmt::Debug for ResourceMetadataLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceMetadataLayer")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ResourceMetadataLayer {
    type Service = ResourceMetadataService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceMetadataService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of a [`ResourceMetadataLayer`].
#[derive(Clone)]
pub struct ResourceMetadataService<S> {
    inner: S,
    shared: Arc<Served>,
}

impl<S> fmt::Debug for ResourceMetadataService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceMetadataService")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of a [`ResourceMetadataService`].
    #[project = MetadataProj]
    #[allow(missing_docs)] // fields of variants: the inner future, the answer
    pub enum ResourceMetadataFuture<F, B> {
        /// The inner service answers.
        Inner {
            #[pin]
            future: F,
        },
        /// The metadata endpoint answers.
        Ready {
            response: Option<Response<ResponseBody<B>>>,
        },
    }
}

impl<F, B> fmt::Debug for ResourceMetadataFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceMetadataFuture")
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResourceMetadataFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            MetadataProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|res| res.map(ResponseBody::inner))),
            MetadataProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| status(StatusCode::INTERNAL_SERVER_ERROR)))),
        }
    }
}

fn status<B>(status: StatusCode) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = status;
    res
}

fn json_error<B>(code: StatusCode, error: &'static str) -> Response<ResponseBody<B>> {
    let body = format!(r#"{{"error":"{error}","message":"{error}"}}"#);
    let mut res = Response::new(ResponseBody::full(Bytes::from(body)));
    *res.status_mut() = code;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

impl Served {
    /// The answer to a request for a metadata path, or `None` for any other
    /// path.
    fn answer<B>(&self, method: &Method, path: &str) -> Option<Response<ResponseBody<B>>> {
        if path != &*self.path {
            let under = path
                .strip_prefix(WELL_KNOWN)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            return under.then(|| json_error(StatusCode::NOT_FOUND, "not_found"));
        }
        let mut res = match *method {
            Method::GET => Response::new(ResponseBody::full(self.json.clone())),
            Method::HEAD => Response::new(ResponseBody::empty()),
            _ => {
                let mut res = json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return Some(res);
            }
        };
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
        // Public, credential-free metadata: readable by browser clients of
        // any origin.
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        Some(res)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResourceMetadataService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResourceMetadataFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.shared.answer(req.method(), req.uri().path()) {
            Some(response) => ResourceMetadataFuture::Ready {
                response: Some(response),
            },
            None => ResourceMetadataFuture::Inner {
                future: self.inner.call(req),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_must_be_https_urls_without_query_or_fragment() {
        for bad in [
            "http://api.example.com",
            "https://api.example.com/a?x=1",
            "https://api.example.com/#f",
            "/orders",
            "api.example.com",
            "ftp://api.example.com",
            "https://user@api.example.com",
        ] {
            assert_eq!(
                ResourceMetadata::new(bad).unwrap_err(),
                InvalidResource,
                "{bad}"
            );
        }
        for good in [
            "https://api.example.com",
            "http://localhost:8080/api",
            "http://[::1]:8080",
        ] {
            assert!(ResourceMetadata::new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn urls_insert_the_well_known_segment_before_the_path() {
        let m = ResourceMetadata::new("https://api.example.com").unwrap();
        assert_eq!(m.path(), WELL_KNOWN);
        assert_eq!(
            m.url(),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
        let m = ResourceMetadata::new("https://api.example.com:8443/v1/orders/").unwrap();
        assert_eq!(m.path(), "/.well-known/oauth-protected-resource/v1/orders");
        assert_eq!(
            m.url(),
            "https://api.example.com:8443/.well-known/oauth-protected-resource/v1/orders"
        );
    }

    #[test]
    fn the_document_holds_the_configured_members_only() {
        let m = ResourceMetadata::new("https://api.example.com")
            .unwrap()
            .authorization_servers(["https://idp.example.com"])
            .scopes_supported(["read"])
            .resource_signing_alg_values_supported(["RS256"])
            .dpop_bound_access_tokens_required(true);
        let doc: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "resource": "https://api.example.com",
                "authorization_servers": ["https://idp.example.com"],
                "scopes_supported": ["read"],
                "bearer_methods_supported": ["header"],
                "resource_signing_alg_values_supported": ["RS256"],
                "dpop_bound_access_tokens_required": true,
            })
        );
    }
}
