//! Authentication with HTTP Basic (RFC 7617): a user id and a password in
//! `Authorization: Basic <base64(user-id ":" password)>`, checked by a
//! [`UserVerifier`] of yours or by [`PasswordUsers`] (argon2 hashes in a
//! [`UserStore`]).
//!
//! Basic suits internal tools, metrics scrapers and webhooks; only use it
//! over TLS, as the password travels in every request.
//!
//! [`BasicAuthenticator`] parses the header strictly:
//!
//! | request                                               | result                         |
//! |-------------------------------------------------------|--------------------------------|
//! | no `Authorization`, or another scheme (`Bearer ...`)  | no credentials (`401` if required) |
//! | `Basic` in any letter case, one or more spaces, base64 | the verifier is called        |
//! | two `Authorization` headers                           | `400 invalid_request`          |
//! | longer than the limit (4 KiB by default)              | `400 invalid_request`          |
//! | not canonical padded base64, not UTF-8                | `400 invalid_request`          |
//! | no `:`, an empty user id, control characters          | `400 invalid_request`          |
//! | the verifier refuses                                  | `401`                          |
//! | the verifier fails, or misses the layer's deadline    | `503`, fail closed             |
//!
//! The user id is everything before the first `:` (so it never contains
//! one); the password is the rest and may contain `:`. Every refusal carries
//! `WWW-Authenticate: Basic realm="…", charset="UTF-8"` (RFC 7617 §2.1), and
//! a JSON body that never echoes the user id or the password. The password
//! is a [`Secret`]: never printed, zeroed when dropped.
//!
//! # Passwords
//!
//! [`Passwords`] hashes and checks passwords with argon2id (through the
//! `password-hash` traits). A check always runs one argon2 computation,
//! against a dummy hash when the user does not exist, so the response time
//! does not tell whether a user id is known. The computations run on
//! tokio's blocking pool, at most [`max_concurrent`](Passwords::max_concurrent)
//! at a time (each holds the hash's memory cost, 19 MiB by default), so a
//! flood of Basic requests cannot exhaust memory: waiting requests hit the
//! [`AuthLayer`](crate::AuthLayer)'s deadline and get a `503`.
//!
//! Combine Basic with the failed-attempt limiter of the `rate-limit` feature
//! (`RateLimitLayer::failed_attempts`): a wrong password is a `401`, which it
//! counts by default.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{header, Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::basic::{self, BasicAuthenticator, MemoryUserStore, Passwords, PasswordUsers};
//! use tower_auth::{AuthLayer, Identity};
//!
//! # let passwords = Passwords::with_params(tower_auth::basic::argon2::Params::new(256, 1, 1, None).unwrap()).unwrap();
//! # /*
//! let passwords = Passwords::new();
//! # */
//! let users = MemoryUserStore::new();
//! let hash = passwords.hash("correct horse battery staple").unwrap();
//! users.insert("scraper", hash, (), Identity::new("scraper", basic::scheme()));
//!
//! let basic = BasicAuthenticator::new(PasswordUsers::new(users, passwords)).realm("metrics");
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(basic))
//!     .service_fn(|req: Request<()>| async move {
//!         let id = req.extensions().get::<Identity>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", id.subject())))
//!     });
//!
//! // "scraper:correct horse battery staple" in base64.
//! let req = Request::get("/metrics")
//!     .header(header::AUTHORIZATION, "Basic c2NyYXBlcjpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl")
//!     .body(())
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//!
//! let res = svc.oneshot(Request::get("/metrics").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Basic realm="metrics", charset="UTF-8""#);
//! # }
//! ```

mod password;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::auth::{Authenticated, Authenticator};
use crate::credentials::single_header;
use crate::error::AuthError;
use crate::identity::Scheme;
use crate::rejection::Challenge;
use crate::secret::Secret;

pub use argon2;
pub use password::{
    MemoryUserStore, PasswordError, PasswordUsers, PasswordUsersFuture, Passwords, StoredUser,
    UserStore,
};

/// Default limit on the size of the `Authorization` header: 4 KiB.
pub const DEFAULT_MAX_LEN: usize = 4 * 1024;

/// The message of every wrong user id or password: the same text whether
/// the user exists or not.
pub const INVALID_CREDENTIALS: &str = "invalid user id or password";

/// A user id and password taken from `Authorization: Basic`. `Debug` never
/// prints the password.
#[derive(Clone)]
pub struct BasicCredentials {
    user_id: Box<str>,
    password: Secret,
}

impl BasicCredentials {
    /// Credentials from their parts (for tests and custom extractors).
    pub fn new(user_id: impl Into<String>, password: impl Into<Secret>) -> Self {
        BasicCredentials {
            user_id: user_id.into().into_boxed_str(),
            password: password.into(),
        }
    }

    /// The user id: never empty, never contains `:` or control characters.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The password. Compare it with [`Secret::ct_eq`] or check it with
    /// [`Passwords::verify`]; never log it.
    pub fn password(&self) -> &Secret {
        &self.password
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user_id", &self.user_id)
            .field("password", &self.password)
            .finish()
    }
}

/// Checks a user id and password: a lookup in a user table, an LDAP bind.
///
/// Implemented for closures `Fn(BasicCredentials) -> impl Future<Output =
/// Result<Authenticated<P>, AuthError>>`, and by [`PasswordUsers`] for
/// argon2 hashes in a [`UserStore`].
///
/// Answer a wrong password and an unknown user with the same
/// [`AuthError::invalid_credentials`] (e.g. [`INVALID_CREDENTIALS`]) and in
/// the same time; [`Passwords::verify`] does the latter.
pub trait UserVerifier: Send + Sync + 'static {
    /// The principal of a verified user.
    type Principal: Clone + Send + Sync + 'static;
    /// The future returned by [`verify`](UserVerifier::verify).
    type Future: Future<Output = Result<Authenticated<Self::Principal>, AuthError>> + Send + 'static;

    /// Checks `credentials`.
    ///
    /// # Errors
    ///
    /// [`AuthError::invalid_credentials`] for an unknown user or a wrong
    /// password, [`AuthError::unavailable`] when the backend fails.
    fn verify(&self, credentials: BasicCredentials) -> Self::Future;
}

impl<F, Fut, P> UserVerifier for F
where
    F: Fn(BasicCredentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Authenticated<P>, AuthError>> + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Principal = P;
    type Future = Fut;

    fn verify(&self, credentials: BasicCredentials) -> Fut {
        self(credentials)
    }
}

/// Authenticates `Authorization: Basic` with a [`UserVerifier`]. See the
/// [module docs](crate::basic).
pub struct BasicAuthenticator<V> {
    verifier: Arc<V>,
    challenge: Arc<[Challenge]>,
    max_len: usize,
}

/// The [`Scheme`] of identities authenticated with Basic: `Basic`.
pub fn scheme() -> Scheme {
    Scheme::Other("Basic".into())
}

fn challenge(realm: &str) -> Arc<[Challenge]> {
    Arc::new([Challenge::new("Basic")
        .param("realm", realm.to_owned())
        .param("charset", "UTF-8")])
}

impl<V: UserVerifier> BasicAuthenticator<V> {
    /// Checks credentials with `verifier`; the realm is `restricted` until
    /// set with [`realm`](BasicAuthenticator::realm).
    pub fn new(verifier: V) -> Self {
        BasicAuthenticator {
            verifier: Arc::new(verifier),
            challenge: challenge("restricted"),
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge (RFC 7617 makes
    /// it required; browsers show it in their login prompt).
    pub fn realm(mut self, realm: impl AsRef<str>) -> Self {
        self.challenge = challenge(realm.as_ref());
        self
    }

    /// Limits the size of the `Authorization` header (default
    /// [`DEFAULT_MAX_LEN`]); a longer one is refused with `400` before it is
    /// decoded.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &V {
        &self.verifier
    }
}

impl<V> Clone for BasicAuthenticator<V> {
    fn clone(&self) -> Self {
        BasicAuthenticator {
            verifier: Arc::clone(&self.verifier),
            challenge: Arc::clone(&self.challenge),
            max_len: self.max_len,
        }
    }
}

impl<V> fmt::Debug for BasicAuthenticator<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthenticator")
            .field("challenge", &self.challenge)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// The credentials of `Authorization: Basic`, parsed strictly; `Ok(None)`
/// when there is no `Authorization` header or it has another scheme.
pub(crate) fn basic_credentials(
    parts: &Parts,
    max_len: usize,
) -> Result<Option<BasicCredentials>, AuthError> {
    let Some(value) = single_header(&parts.headers, &AUTHORIZATION)? else {
        return Ok(None);
    };
    let raw = value.as_bytes();
    let scheme_len = raw.iter().position(|b| *b == b' ').unwrap_or(raw.len());
    if !raw[..scheme_len].eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    if raw.len() > max_len {
        return Err(AuthError::invalid_request(format!(
            "the {AUTHORIZATION} header is longer than {max_len} bytes"
        )));
    }
    let start = scheme_len + raw[scheme_len..].iter().take_while(|b| **b == b' ').count();
    let encoded = &raw[start..];
    if encoded.is_empty() {
        return Err(AuthError::invalid_request(
            "the Basic credentials are empty",
        ));
    }
    // STANDARD: the RFC 4648 alphabet with canonical padding; trailing
    // spaces, line breaks and non-canonical last characters are refused.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AuthError::invalid_request("the Basic credentials are not valid base64"))?;
    let text = String::from_utf8(decoded).map_err(|e| {
        // Zero the decoded bytes: they hold the password.
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        AuthError::invalid_request("the Basic credentials are not UTF-8")
    })?;
    let secret = Secret::new(text);
    let text = secret.expose();
    let Some(colon) = text.find(':') else {
        return Err(AuthError::invalid_request(
            "the Basic credentials have no ':' between user id and password",
        ));
    };
    let (user_id, password) = (&text[..colon], &text[colon + 1..]);
    if user_id.is_empty() {
        return Err(AuthError::invalid_request("the Basic user id is empty"));
    }
    // RFC 7617 §2: neither part may contain control characters.
    if text.chars().any(char::is_control) {
        return Err(AuthError::invalid_request(
            "the Basic credentials contain control characters",
        ));
    }
    Ok(Some(BasicCredentials::new(user_id, password)))
}

impl<V: UserVerifier> Authenticator for BasicAuthenticator<V> {
    type Credentials = BasicCredentials;
    type Principal = V::Principal;
    type Future = V::Future;

    fn extract(&self, request: &Parts) -> Result<Option<BasicCredentials>, AuthError> {
        basic_credentials(request, self.max_len)
    }

    fn authenticate(&self, credentials: BasicCredentials) -> Self::Future {
        self.verifier.verify(credentials)
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.challenge.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request};

    use super::*;
    use crate::AuthErrorKind;

    fn parse(values: &[&[u8]]) -> Result<Option<(String, String)>, AuthErrorKind> {
        let mut req = Request::new(());
        for v in values {
            req.headers_mut()
                .append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        let (parts, ()) = req.into_parts();
        basic_credentials(&parts, 128)
            .map(|c| c.map(|c| (c.user_id().to_owned(), c.password().expose().to_owned())))
            .map_err(|e| e.kind())
    }

    fn b64(s: &[u8]) -> Vec<u8> {
        let mut v = b"Basic ".to_vec();
        v.extend(base64::engine::general_purpose::STANDARD.encode(s).bytes());
        v
    }

    #[test]
    fn rfc7617_example_and_scheme_casing() {
        // RFC 7617 §2: "Aladdin" / "open sesame".
        for v in [
            &b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="[..],
            b"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            b"BASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        ] {
            assert_eq!(
                parse(&[v]),
                Ok(Some(("Aladdin".into(), "open sesame".into())))
            );
        }
    }

    #[test]
    fn rfc7617_utf8_example() {
        // RFC 7617 §2.1: "test" / "123£".
        assert_eq!(
            parse(&[b"Basic dGVzdDoxMjPCow=="]),
            Ok(Some(("test".into(), "123\u{a3}".into())))
        );
    }

    #[test]
    fn password_may_contain_colons_and_be_empty() {
        assert_eq!(
            parse(&[&b64(b"u:a:b:")]),
            Ok(Some(("u".into(), "a:b:".into())))
        );
        assert_eq!(parse(&[&b64(b"u:")]), Ok(Some(("u".into(), "".into()))));
    }

    #[test]
    fn absent_or_other_scheme_is_none() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[b"Bearer abc"]), Ok(None));
        assert_eq!(parse(&[b"Basicabc"]), Ok(None));
        assert_eq!(parse(&[b"Digest \xff"]), Ok(None));
    }

    #[test]
    fn malformed_is_invalid_request() {
        let bad: Vec<Vec<u8>> = vec![
            b"Basic".to_vec(),
            b"Basic ".to_vec(),
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ".to_vec(), // no padding
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== ".to_vec(), // trailing space
            b"Basic QWxh ZGRpbjpvcGVuIHNlc2FtZQ==".to_vec(),
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==".to_vec(), // non-canonical
            b"Basic !!!!".to_vec(),
            b64(b"no-colon"),
            b64(b":password"),
            b64(b"user\x01:pw"),
            b64(b"user:pw\r\n"),
            b64(b"user:\xff\xfe"),
            b64(&[b'a'; 100]),
        ];
        for v in bad {
            assert_eq!(
                parse(&[&v]),
                Err(AuthErrorKind::InvalidRequest),
                "{}",
                String::from_utf8_lossy(&v)
            );
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        assert_eq!(
            parse(&[&b64(b"a:b"), &b64(b"a:b")]),
            Err(AuthErrorKind::InvalidRequest)
        );
        assert_eq!(
            parse(&[&b64(b"a:b"), b"Bearer x"]),
            Err(AuthErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn debug_never_prints_the_password() {
        let c = BasicCredentials::new("alice", "hunter2");
        let s = format!("{c:?}");
        assert!(s.contains("alice"));
        assert!(!s.contains("hunter2"));
    }
}
