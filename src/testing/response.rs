//! [`TestResponse`]: a read response and assertions on rejections.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use crate::www_authenticate::parse_challenges;
pub use crate::www_authenticate::ParsedChallenge;

/// A response read to the end, with assertions for the rejections of this
/// crate: status, JSON `error` code, `WWW-Authenticate` challenges, gRPC
/// status, and that no credential is echoed.
///
/// Each assertion panics with a message showing the status, the
/// challenges and the body, and returns `&Self` so that they chain.
///
/// ```
/// # async fn doc() {
/// use http::{Response, StatusCode};
/// use tower_auth::testing::TestResponse;
///
/// let res = Response::builder()
///     .status(401)
///     .header("www-authenticate", r#"Bearer realm="api", error="invalid_token""#)
///     .body(r#"{"error":"invalid_token","message":"token expired"}"#.to_owned())
///     .unwrap();
/// TestResponse::read(res)
///     .await
///     .assert_rejected(StatusCode::UNAUTHORIZED, "invalid_token")
///     .assert_challenge_param("Bearer", "error", "invalid_token")
///     .assert_challenge_param("Bearer", "realm", "api");
/// # }
/// ```
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for TestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl TestResponse {
    /// Reads `response`'s body to the end.
    ///
    /// # Panics
    ///
    /// When the body fails.
    pub async fn read<B>(response: Response<B>) -> Self
    where
        B: http_body::Body,
        B::Error: fmt::Display,
    {
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => panic!("TestResponse: the response body failed: {e}"),
        };
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The JSON body's `error` code.
    pub fn error_code(&self) -> Option<String> {
        self.json()?.get("error")?.as_str().map(str::to_owned)
    }

    /// The JSON body's `message`.
    pub fn message(&self) -> Option<String> {
        self.json()?.get("message")?.as_str().map(str::to_owned)
    }

    /// Every `WWW-Authenticate` challenge, in order.
    ///
    /// # Panics
    ///
    /// When a `WWW-Authenticate` value does not parse.
    pub fn challenges(&self) -> Vec<ParsedChallenge> {
        let mut out = Vec::new();
        for value in self.headers.get_all(WWW_AUTHENTICATE) {
            let parsed = value
                .to_str()
                .ok()
                .and_then(parse_challenges)
                .unwrap_or_else(|| self.fail(&format!("unparsable WWW-Authenticate {value:?}")));
            out.extend(parsed);
        }
        out
    }

    /// The challenge of `scheme` (case-insensitive), if any.
    pub fn challenge(&self, scheme: &str) -> Option<ParsedChallenge> {
        self.challenges()
            .into_iter()
            .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        let challenges: Vec<_> = self
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        panic!(
            "{what}\n  status: {}\n  WWW-Authenticate: {challenges:?}\n  content-type: {:?}\n  body: {}",
            self.status,
            self.headers.get(CONTENT_TYPE),
            self.text()
        )
    }

    /// Asserts the status.
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Self {
        if self.status != status {
            self.fail(&format!("expected status {status}, got {}", self.status));
        }
        self
    }

    /// Asserts a rejection rendered by this crate's default renderer:
    /// `status`, `content-type: application/json` and the JSON `error`
    /// code (`"unauthorized"`, `"invalid_token"`, `"forbidden"`,
    /// `"insufficient_scope"`, `"too_many_requests"`, `"unavailable"`...;
    /// see [`RejectionKind::code`](crate::rejection::RejectionKind::code)).
    #[track_caller]
    pub fn assert_rejected(&self, status: StatusCode, error: &str) -> &Self {
        self.assert_status(status);
        let json = self
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !json {
            self.fail("expected a JSON rejection body (content-type: application/json)");
        }
        match self.error_code() {
            Some(code) if code == error => self,
            Some(code) => self.fail(&format!("expected error {error:?}, got {code:?}")),
            None => self.fail(&format!(
                "expected error {error:?}, the body has no \"error\""
            )),
        }
    }

    /// Asserts a challenge of `scheme` (case-insensitive).
    #[track_caller]
    pub fn assert_challenge(&self, scheme: &str) -> &Self {
        if self.challenge(scheme).is_none() {
            self.fail(&format!(
                "expected a {scheme} challenge in WWW-Authenticate"
            ));
        }
        self
    }

    /// Asserts that the challenge of `scheme` has `name="value"`.
    #[track_caller]
    pub fn assert_challenge_param(&self, scheme: &str, name: &str, value: &str) -> &Self {
        let Some(challenge) = self.challenge(scheme) else {
            self.fail(&format!(
                "expected a {scheme} challenge in WWW-Authenticate"
            ));
        };
        match challenge.param(name) {
            Some(v) if v == value => self,
            Some(v) => self.fail(&format!(
                "expected {scheme} {name}={value:?}, got {name}={v:?}"
            )),
            None => self.fail(&format!("expected {scheme} {name}={value:?}, it is absent")),
        }
    }

    /// Asserts that the challenge of `scheme` has no parameter `name`, e.g.
    /// no `error` when credentials were absent (RFC 6750 §3.1).
    #[track_caller]
    pub fn assert_no_challenge_param(&self, scheme: &str, name: &str) -> &Self {
        let Some(challenge) = self.challenge(scheme) else {
            self.fail(&format!(
                "expected a {scheme} challenge in WWW-Authenticate"
            ));
        };
        if let Some(v) = challenge.param(name) {
            self.fail(&format!("expected no {scheme} {name}, got {name}={v:?}"));
        }
        self
    }

    /// Asserts that there is no `WWW-Authenticate` header.
    #[track_caller]
    pub fn assert_no_challenge(&self) -> &Self {
        if self.headers.contains_key(WWW_AUTHENTICATE) {
            self.fail("expected no WWW-Authenticate header");
        }
        self
    }

    /// Asserts a gRPC rejection: HTTP `200` with `grpc-status: <code>`
    /// (`16` UNAUTHENTICATED, `7` PERMISSION_DENIED, `8`
    /// RESOURCE_EXHAUSTED, `14` UNAVAILABLE).
    #[track_caller]
    pub fn assert_grpc_status(&self, code: u8) -> &Self {
        self.assert_status(StatusCode::OK);
        match self.headers.get("grpc-status").map(|v| v.as_bytes()) {
            Some(v) if v == code.to_string().as_bytes() => self,
            Some(v) => self.fail(&format!(
                "expected grpc-status {code}, got {}",
                String::from_utf8_lossy(v)
            )),
            None => self.fail(&format!("expected grpc-status {code}, it is absent")),
        }
    }

    /// Asserts that `secret` (a token, key, password or session id) appears
    /// in no header value and not in the body. The panic message does not
    /// show it.
    #[track_caller]
    pub fn assert_not_echoed(&self, secret: &str) -> &Self {
        if secret.is_empty() {
            return self;
        }
        let needle = secret.as_bytes();
        let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        if let Some((name, _)) = self
            .headers
            .iter()
            .find(|(_, value)| contains(value.as_bytes()))
        {
            panic!("a credential is echoed in the {name} header");
        }
        if contains(&self.body) {
            panic!("a credential is echoed in the response body");
        }
        self
    }
}

/// Reads `response` and asserts a rejection with `status` and JSON `error`
/// code (see [`TestResponse::assert_rejected`]); returns the read response
/// for more assertions.
///
/// # Panics
///
/// When the response is not that rejection, with a message showing it.
pub async fn assert_rejected<B>(
    response: Response<B>,
    status: StatusCode,
    error: &str,
) -> TestResponse
where
    B: http_body::Body,
    B::Error: fmt::Display,
{
    let res = TestResponse::read(response).await;
    res.assert_rejected(status, error);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, www: Option<&str>, body: &str) -> Response<String> {
        let mut b = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json");
        if let Some(www) = www {
            b = b.header(WWW_AUTHENTICATE, www);
        }
        b.body(body.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn passing_assertions_chain() {
        let res = TestResponse::read(response(
            401,
            Some(r#"Bearer realm="api""#),
            r#"{"error":"unauthorized","message":"authentication required"}"#,
        ))
        .await;
        res.assert_rejected(StatusCode::UNAUTHORIZED, "unauthorized")
            .assert_challenge("bearer")
            .assert_no_challenge_param("Bearer", "error")
            .assert_challenge_param("Bearer", "realm", "api")
            .assert_not_echoed("the-token");
        assert_eq!(res.message().as_deref(), Some("authentication required"));
    }

    #[tokio::test]
    #[should_panic(expected = "expected error \"invalid_token\", got \"unauthorized\"")]
    async fn a_wrong_code_names_both() {
        let res = response(401, None, r#"{"error":"unauthorized","message":"m"}"#);
        assert_rejected(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected status 403 Forbidden, got 401 Unauthorized")]
    async fn a_wrong_status_shows_the_response() {
        let res = response(401, None, r#"{"error":"unauthorized","message":"m"}"#);
        TestResponse::read(res)
            .await
            .assert_status(StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    #[should_panic(expected = "a credential is echoed in the response body")]
    async fn echoed_secrets_are_caught_without_being_shown() {
        let res = response(401, None, r#"{"error":"x","message":"bad key sk_live_1"}"#);
        TestResponse::read(res).await.assert_not_echoed("sk_live_1");
    }

    #[tokio::test]
    #[should_panic(expected = "expected no Bearer error")]
    async fn an_unexpected_param_is_named() {
        let res = response(401, Some(r#"Bearer error="invalid_token""#), "{}");
        TestResponse::read(res)
            .await
            .assert_no_challenge_param("Bearer", "error");
    }
}
