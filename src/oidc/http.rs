//! The one HTTP client of the `oidc` feature: hyper-util's pooled client
//! over rustls, with certificate verification always on, a deadline on
//! every exchange, a cap on every response body, `https` only (plain `http`
//! only to a loopback host, when allowed) and no redirects followed.
//!
//! The remote key set, discovery and token introspection all go through
//! [`HttpClient`], so the rules live in one place.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, IF_NONE_MATCH};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Errors talking to an identity provider: fetching a JWKS or a discovery
/// document, building an introspection client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The URL does not parse or has no host.
    #[error("invalid URL")]
    InvalidUrl,
    /// The URL is not `https` (plain `http` is allowed only to a loopback
    /// host, with
    /// [`RemoteJwksBuilder::allow_loopback_http`](crate::jwt::RemoteJwksBuilder::allow_loopback_http)
    /// or
    /// [`IntrospectionBuilder::allow_loopback_http`](crate::oidc::IntrospectionBuilder::allow_loopback_http)).
    #[error("refusing a non-https URL")]
    InsecureUrl,
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Connecting, sending or reading failed.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The server answered a status other than 200 (or 304).
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// No complete answer within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The response body is larger than the limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not the expected JSON document.
    #[error("invalid document: {0}")]
    Json(String),
    /// The JWKS holds more keys than the limit.
    #[error("JWKS holds more than {0} keys")]
    TooManyKeys(usize),
    /// The JWKS holds no usable key.
    #[error("JWKS holds no usable key")]
    NoUsableKey,
    /// The discovery document's `issuer` is not the configured issuer.
    #[error("discovery document names another issuer")]
    IssuerMismatch,
    /// None of the provider's advertised signing algorithms is allowed.
    #[error("no advertised signing algorithm is allowed")]
    NoAlgorithms,
    /// The operating system gave no randomness for a cache key.
    #[error("no randomness available for the cache key")]
    Random,
    /// A client credential cannot be sent in an HTTP header.
    #[error("the client credentials cannot be sent in a header")]
    InvalidCredentials,
}

/// A bounded, timed HTTPS client (see the module docs). Cloning shares the
/// connection pool.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

/// A response: its head and its bounded body (empty unless the status is
/// 200: other bodies are never read).
pub(crate) type Answer = (http::response::Parts, Bytes);

impl HttpClient {
    /// A client whose exchanges (connect, headers and body) end within
    /// `timeout` and whose response bodies are at most `max_body` bytes.
    ///
    /// # Errors
    ///
    /// [`OidcError::Tls`] when rustls cannot be configured.
    pub(crate) fn new(timeout: Duration, max_body: usize) -> Result<Self, OidcError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OidcError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            max_body,
        })
    }

    /// GETs a JSON document, revalidating with `If-None-Match` when an
    /// `etag` is given.
    pub(crate) async fn get(
        &self,
        uri: &Uri,
        etag: Option<&HeaderValue>,
    ) -> Result<Answer, OidcError> {
        let mut request = Request::get(uri.clone()).header(ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        self.send(request.body(Full::default())).await
    }

    /// POSTs an `application/x-www-form-urlencoded` body, with an
    /// `Authorization` header when one is given.
    pub(crate) async fn post_form(
        &self,
        uri: &Uri,
        form: String,
        authorization: Option<&HeaderValue>,
    ) -> Result<Answer, OidcError> {
        let mut request = Request::post(uri.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        self.send(request.body(Full::new(Bytes::from(form)))).await
    }

    /// Sends `request`: the status, headers and the bounded body of the
    /// answer, within the timeout.
    async fn send(
        &self,
        request: Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<Answer, OidcError> {
        let request = request.map_err(|e| OidcError::Http(e.to_string()))?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| OidcError::Http(e.to_string()))?;
            let (parts, body) = response.into_parts();
            if parts.status != StatusCode::OK {
                return Ok((parts, Bytes::new()));
            }
            let too_large = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|len| len > self.max_body as u64);
            if too_large {
                return Err(OidcError::TooLarge(self.max_body));
            }
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        OidcError::TooLarge(self.max_body)
                    } else {
                        OidcError::Http(e.to_string())
                    }
                })?
                .to_bytes();
            Ok((parts, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| OidcError::Timeout)?
    }
}

/// The URL if its scheme is allowed: `https`, or plain `http` to a loopback
/// host when `allow_loopback_http`.
pub(crate) fn checked_uri(url: &str, allow_loopback_http: bool) -> Result<Uri, OidcError> {
    let uri: Uri = url.parse().map_err(|_| OidcError::InvalidUrl)?;
    let host = uri.host().ok_or(OidcError::InvalidUrl)?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_loopback_http && is_loopback(host) => Ok(uri),
        Some("http") => Err(OidcError::InsecureUrl),
        _ => Err(OidcError::InvalidUrl),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_allowed_loopback_http() {
        assert!(checked_uri("https://idp.example.com/jwks", false).is_ok());
        assert!(matches!(
            checked_uri("http://idp.example.com/jwks", true),
            Err(OidcError::InsecureUrl)
        ));
        assert!(matches!(
            checked_uri("http://127.0.0.1:8080/jwks", false),
            Err(OidcError::InsecureUrl)
        ));
        assert!(checked_uri("http://127.0.0.1:8080/jwks", true).is_ok());
        assert!(checked_uri("http://[::1]:8080/jwks", true).is_ok());
        assert!(checked_uri("http://localhost/jwks", true).is_ok());
        assert!(matches!(
            checked_uri("ftp://127.0.0.1/jwks", true),
            Err(OidcError::InvalidUrl)
        ));
        assert!(matches!(
            checked_uri("not a url", true),
            Err(OidcError::InvalidUrl)
        ));
    }
}
