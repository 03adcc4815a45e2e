//! [`TestRequest`]: requests carrying each kind of credentials.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::{Method, Request, Uri, Version};

/// A request builder with one method per credential type of this crate.
///
/// Credentials are set verbatim, so that a test can send malformed ones
/// too; a value that is not a valid header value (a line break...) panics
/// with a message naming it, since that is a bug in the test.
///
/// ```
/// use http::Request;
/// use tower_auth::testing::TestRequest;
///
/// let req: Request<()> = TestRequest::get("/posts").bearer("a-token").build();
/// assert_eq!(req.headers()["authorization"], "Bearer a-token");
///
/// let req: Request<()> = TestRequest::get("/ws?room=1").query("access_token", "t k").build();
/// assert_eq!(req.uri(), "/ws?room=1&access_token=t%20k");
///
/// let req: Request<()> = TestRequest::post("/login").basic("alice", "s3cret").build();
/// assert_eq!(req.headers()["authorization"], "Basic YWxpY2U6czNjcmV0");
/// ```
pub struct TestRequest {
    method: Method,
    uri: String,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    cookies: Vec<String>,
}

impl fmt::Debug for TestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials: names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TestRequest")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("headers", &names)
            .field("cookies", &self.cookies.len())
            .finish()
    }
}

fn header_value(what: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| panic!("TestRequest: the {what} is not a valid header value"))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TestRequest {
    /// A request with `method` to `uri` (a path and query, or an absolute
    /// URI).
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        TestRequest {
            method,
            uri: uri.into(),
            version: Version::HTTP_11,
            headers: Vec::new(),
            cookies: Vec::new(),
        }
    }

    /// `GET uri`.
    pub fn get(uri: impl Into<String>) -> Self {
        Self::new(Method::GET, uri)
    }

    /// `POST uri`.
    pub fn post(uri: impl Into<String>) -> Self {
        Self::new(Method::POST, uri)
    }

    /// `PUT uri`.
    pub fn put(uri: impl Into<String>) -> Self {
        Self::new(Method::PUT, uri)
    }

    /// `DELETE uri`.
    pub fn delete(uri: impl Into<String>) -> Self {
        Self::new(Method::DELETE, uri)
    }

    /// Appends a header (repeated names are kept: `header(a).header(a)`
    /// sends two values).
    ///
    /// # Panics
    ///
    /// When `name` or `value` is invalid.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name)
            .unwrap_or_else(|_| panic!("TestRequest: {name:?} is not a header name"));
        let value = header_value(name.as_str(), value);
        self.headers.push((name, value));
        self
    }

    /// `Authorization: Bearer <token>` (opaque tokens, JWTs).
    pub fn bearer(self, token: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// `x-api-key: <key>`, the API key authenticator's default header.
    pub fn api_key(self, key: &str) -> Self {
        self.header("x-api-key", key)
    }

    /// `Authorization: Basic base64(<user>:<password>)` (RFC 7617).
    pub fn basic(self, user: &str, password: &str) -> Self {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        self.header(AUTHORIZATION.as_str(), &format!("Basic {encoded}"))
    }

    /// `Authorization: DPoP <token>` and `DPoP: <proof>` (RFC 9449).
    pub fn dpop(self, token: &str, proof: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), &format!("DPoP {token}"))
            .header("dpop", proof)
    }

    /// Adds a cookie `name=value` to the `Cookie` header (a session
    /// cookie, a JWT in a cookie...). Cookies are sent in one header.
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push(format!("{name}={value}"));
        self
    }

    /// Appends `name=value` to the query string, percent-encoded (an API
    /// key or a bearer token in a query parameter).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        let separator = if self.uri.contains('?') { '&' } else { '?' };
        self.uri = format!(
            "{}{separator}{}={}",
            self.uri,
            encode_component(name),
            encode_component(value)
        );
        self
    }

    /// `content-type: application/json`.
    pub fn json(self) -> Self {
        self.header(CONTENT_TYPE.as_str(), "application/json")
    }

    /// Makes it a gRPC request (HTTP/2, `content-type: application/grpc`,
    /// `te: trailers`): rejections are then rendered as gRPC statuses.
    pub fn grpc(mut self) -> Self {
        self.version = Version::HTTP_2;
        self.header(CONTENT_TYPE.as_str(), "application/grpc")
            .header("te", "trailers")
    }

    /// The request with an empty (default) body.
    ///
    /// # Panics
    ///
    /// When the URI is invalid.
    pub fn build<B: Default>(self) -> Request<B> {
        self.body(B::default())
    }

    /// The request with `body`.
    ///
    /// # Panics
    ///
    /// When the URI is invalid.
    pub fn body<B>(self, body: B) -> Request<B> {
        let uri: Uri = self
            .uri
            .parse()
            .unwrap_or_else(|e| panic!("TestRequest: invalid URI {:?}: {e}", self.uri));
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        let headers = req.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        if !self.cookies.is_empty() {
            headers.insert(COOKIE, header_value("cookie", &self.cookies.join("; ")));
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_lands_where_the_authenticators_read_it() {
        let req: Request<()> = TestRequest::delete("/x?a=1")
            .api_key("k")
            .cookie("session", "s1")
            .cookie("token", "t1")
            .query("api_key", "q/+")
            .dpop("tok", "proof")
            .build();
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(req.uri(), "/x?a=1&api_key=q%2F%2B");
        assert_eq!(req.headers()["x-api-key"], "k");
        assert_eq!(req.headers()[COOKIE], "session=s1; token=t1");
        assert_eq!(req.headers()[AUTHORIZATION], "DPoP tok");
        assert_eq!(req.headers()["dpop"], "proof");
    }

    #[test]
    fn repeated_headers_are_kept() {
        let req: Request<()> = TestRequest::get("/").bearer("a").bearer("b").build();
        assert_eq!(req.headers().get_all(AUTHORIZATION).iter().count(), 2);
    }

    #[test]
    fn grpc_requests_are_http2() {
        let req: Request<()> = TestRequest::post("/pkg.Svc/Call").grpc().build();
        assert_eq!(req.version(), Version::HTTP_2);
        assert!(crate::rejection::is_grpc(req.version(), req.headers()));
    }

    #[test]
    #[should_panic(expected = "the authorization is not a valid header value")]
    fn invalid_values_panic_without_echoing_them() {
        let _ = TestRequest::get("/").bearer("line\nbreak");
    }
}
