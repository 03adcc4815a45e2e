//! Authentication with API keys.
//!
//! [`ApiKeyAuthenticator`] reads the key from a header (`x-api-key` by
//! default) or, when enabled, a query parameter, and checks it against an
//! [`ApiKeyStore`]:
//!
//! 1. A key in this crate's [format](GeneratedApiKey) whose checksum is wrong
//!    is refused (`401`) without a store lookup.
//! 2. The store finds the record by key id (the id embedded in the key, or
//!    the key's SHA-256 in hex for keys of any other form).
//! 3. The SHA-256 of the presented key is compared with the record's digest
//!    in constant time; then revocation and expiry are checked.
//!
//! Stores never see or keep keys: [`MemoryApiKeyStore`] holds digests only.
//! A missing or invalid key, an unknown key id and a wrong digest all get the
//! same `401` answer; only the holder of the right key learns that it was
//! revoked or expired.
//!
//! # Example
//!
//! ```
//! # async fn doc() {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
//! use tower_auth::{AuthLayer, Identity, Scheme};
//!
//! #[derive(Clone, Debug)]
//! struct Client { name: &'static str }
//!
//! let store = MemoryApiKeyStore::new();
//! let key = store
//!     .generate("tak", Client { name: "alice" }, Identity::new("alice", Scheme::ApiKey))
//!     .unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(ApiKeyAuthenticator::new(store)))
//!     .service_fn(|req: Request<()>| async move {
//!         let client = req.extensions().get::<Client>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("Hello, {}!", client.name)))
//!     });
//!
//! let req = Request::get("/protected")
//!     .header("x-api-key", key.expose())
//!     .body(())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```

mod key;
mod store;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::HeaderName;
use http::request::Parts;

pub use key::{key_id_of, ApiKeyError, GeneratedApiKey, KeyDigest};
pub use store::{ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore};

use crate::auth::{Authenticated, Authenticator, BoxAuthFuture};
use crate::credentials::{self, single_header, visible_ascii};
use crate::error::AuthError;
use crate::identity::Scheme;
use crate::rejection::Challenge;
use crate::secret::Secret;
use key::KeyShape;

/// Default limit on the size of a presented key.
const DEFAULT_MAX_LEN: usize = 512;

const INVALID_KEY: &str = "invalid API key";

/// Authenticates API keys against an [`ApiKeyStore`]. See the
/// [module docs](crate::api_key).
pub struct ApiKeyAuthenticator<S> {
    store: Arc<S>,
    header: HeaderName,
    query_param: Option<Arc<str>>,
    realm: Option<Arc<str>>,
    max_len: usize,
}

impl<S: ApiKeyStore> ApiKeyAuthenticator<S> {
    /// Reads keys from the `x-api-key` header and checks them against
    /// `store`.
    pub fn new(store: S) -> Self {
        ApiKeyAuthenticator {
            store: Arc::new(store),
            header: HeaderName::from_static("x-api-key"),
            query_param: None,
            realm: None,
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Reads keys from `header` instead of `x-api-key`.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Also accepts keys in query parameter `name`. Off by default: URLs
    /// end up in access logs, proxies and browser history. A key in both the
    /// header and the query is refused (`400`).
    pub fn query_param(mut self, name: impl Into<Arc<str>>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge.
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Limits the size of a presented key (default 512 bytes).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S> Clone for ApiKeyAuthenticator<S> {
    fn clone(&self) -> Self {
        ApiKeyAuthenticator {
            store: Arc::clone(&self.store),
            header: self.header.clone(),
            query_param: self.query_param.clone(),
            realm: self.realm.clone(),
            max_len: self.max_len,
        }
    }
}

impl<S> fmt::Debug for ApiKeyAuthenticator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("header", &self.header)
            .field("query_param", &self.query_param)
            .field("realm", &self.realm)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl<S: ApiKeyStore> Authenticator for ApiKeyAuthenticator<S> {
    type Credentials = Secret;
    type Principal = S::Principal;
    type Future = BoxAuthFuture<S::Principal>;

    fn extract(&self, request: &Parts) -> Result<Option<Secret>, AuthError> {
        let header = match single_header(&request.headers, &self.header)? {
            Some(v) => {
                let raw = visible_ascii(v, &self.header, self.max_len)?;
                let key = raw.trim();
                if key.is_empty() {
                    return Err(AuthError::invalid_request(format!(
                        "the {} header is empty",
                        self.header
                    )));
                }
                // The key inside the header, not copied.
                let start = raw.len() - raw.trim_start().len();
                Some(Secret::from_header(v.clone(), start..start + key.len()))
            }
            None => None,
        };
        let query = match &self.query_param {
            Some(name) => credentials::query_param(&request.uri, name, self.max_len)?,
            None => None,
        };
        match (header, query) {
            (Some(_), Some(_)) => Err(AuthError::invalid_request(
                "an API key was sent in both the header and the query",
            )),
            (Some(key), None) => Ok(Some(key)),
            (None, Some(key)) => {
                if key.expose().bytes().all(|b| (0x21..0x7f).contains(&b)) {
                    Ok(Some(key))
                } else {
                    Err(AuthError::invalid_request(
                        "the API key contains characters other than visible ASCII",
                    ))
                }
            }
            (None, None) => Ok(None),
        }
    }

    fn authenticate(&self, key: Secret) -> Self::Future {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            // One digest of the key: an opaque key's id is the hex of the
            // digest compared below. (A generated key's checksum, checked
            // by `shape`, refuses typos and forgeries before any lookup.)
            let (key_id, digest) = match key::shape(key.expose()) {
                KeyShape::Formatted { key_id } => (key_id, KeyDigest::of(key.expose())),
                KeyShape::Opaque => {
                    let digest = KeyDigest::of(key.expose());
                    (digest.to_hex(), digest)
                }
                KeyShape::BadChecksum => return Err(AuthError::invalid_credentials(INVALID_KEY)),
            };
            drop(key);
            let record = store
                .find(&key_id)
                .await
                .map_err(AuthError::unavailable)?
                .ok_or_else(|| AuthError::invalid_credentials(INVALID_KEY))?;
            if !record.digest.ct_eq(&digest) {
                return Err(AuthError::invalid_credentials(INVALID_KEY));
            }
            if record.revoked {
                return Err(AuthError::invalid_credentials("API key revoked"));
            }
            if record.expires_at.is_some_and(|at| at <= SystemTime::now()) {
                return Err(AuthError::invalid_credentials("API key expired"));
            }
            let identity = record.identity.with_scheme(Scheme::ApiKey);
            Ok(Authenticated::new(record.principal, identity))
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        vec![Challenge::new("ApiKey")
            .realm(self.realm.as_ref())
            .param("header", self.header.as_str().to_owned())]
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use http::{header, Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::error::BoxError;
    use crate::{AuthLayer, Identity};

    #[derive(Clone, Debug, PartialEq)]
    struct User(&'static str);

    fn setup() -> (MemoryApiKeyStore<User>, String) {
        let store = MemoryApiKeyStore::new();
        store.insert_key(
            "key_12345",
            User("alice"),
            Identity::new("1", Scheme::Bearer).with_roles(["admin"]),
        );
        let key = store
            .generate("tak", User("bob"), Identity::new("2", Scheme::ApiKey))
            .unwrap();
        (store, key.expose().to_owned())
    }

    async fn call<S: ApiKeyStore<Principal = User>>(
        auth: ApiKeyAuthenticator<S>,
        req: Request<()>,
    ) -> (StatusCode, String, Option<String>) {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(auth))
            .service_fn(|req: Request<()>| async move {
                let user = req.extensions().get::<User>().unwrap().0;
                let id = req.extensions().get::<Identity>().unwrap();
                Ok::<_, Infallible>(Response::new(format!(
                    "{user} {} {} {}",
                    id.subject(),
                    id.scheme(),
                    id.has_role("admin")
                )))
            });
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status();
        let www = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap(), www)
    }

    fn with_key(key: &str) -> Request<()> {
        Request::get("/").header("x-api-key", key).body(()).unwrap()
    }

    #[tokio::test]
    async fn opaque_and_generated_keys_authenticate() {
        let (store, key) = setup();
        let auth = ApiKeyAuthenticator::new(store);
        let (status, body, _) = call(auth.clone(), with_key("key_12345")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "alice 1 ApiKey true")
        );
        let (status, body, _) = call(auth, with_key(&key)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "bob 2 ApiKey false")
        );
    }

    #[tokio::test]
    async fn missing_key_is_401_with_challenge() {
        let (store, _) = setup();
        let (status, body, www) = call(
            ApiKeyAuthenticator::new(store).realm("api"),
            Request::new(()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(www.unwrap(), r#"ApiKey realm="api", header="x-api-key""#);
        assert!(body.contains("unauthorized"));
    }

    #[tokio::test]
    async fn unknown_and_wrong_keys_get_the_same_answer() {
        let (store, key) = setup();
        let auth = ApiKeyAuthenticator::new(store);
        let mut wrong_secret = key.clone().into_bytes();
        let i = wrong_secret.len() - 10;
        wrong_secret[i] = if wrong_secret[i] == b'x' { b'y' } else { b'x' };
        let wrong_secret = String::from_utf8(wrong_secret).unwrap();
        let mut answers = Vec::new();
        for k in ["key_54321", "key_12345 ", &wrong_secret, "nope"] {
            let (status, body, _) = call(auth.clone(), with_key(k)).await;
            answers.push((status, body));
        }
        // trailing whitespace is trimmed, so "key_12345 " is valid
        assert_eq!(answers[1].0, StatusCode::OK);
        for (status, body) in [&answers[0], &answers[2], &answers[3]] {
            assert_eq!(*status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                body,
                r#"{"error":"invalid_token","message":"invalid API key"}"#
            );
        }
    }

    #[tokio::test]
    async fn revoked_and_expired_keys_are_refused() {
        let (store, key) = setup();
        let auth = ApiKeyAuthenticator::new(store.clone());
        let id = key_id_of(&key).unwrap();
        assert!(store.revoke(&id));
        let (status, body, _) = call(auth.clone(), with_key(&key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("revoked"));

        let generated = GeneratedApiKey::generate("exp").unwrap();
        let (k, record) = generated.into_record(User("carol"), Identity::new("3", Scheme::ApiKey));
        store.insert(record.expires_at(SystemTime::now() - Duration::from_secs(1)));
        let (status, body, _) = call(auth.clone(), with_key(k.expose())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("expired"));
        assert_eq!(store.purge_expired(), 1);

        let generated = GeneratedApiKey::generate("live").unwrap();
        let (k, record) = generated.into_record(User("dave"), Identity::new("4", Scheme::ApiKey));
        store.insert(record.expires_in(Duration::from_secs(60)));
        let (status, _, _) = call(auth, with_key(k.expose())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(store.purge_expired(), 0);
    }

    #[tokio::test]
    async fn hostile_headers_are_400() {
        let (store, _) = setup();
        let auth = ApiKeyAuthenticator::new(store);
        let two = Request::get("/")
            .header("x-api-key", "key_12345")
            .header("x-api-key", "key_12345")
            .body(())
            .unwrap();
        let mut non_ascii = Request::new(());
        non_ascii.headers_mut().insert(
            "x-api-key",
            http::HeaderValue::from_bytes(b"key_\xff12345").unwrap(),
        );
        let huge = with_key(&"k".repeat(10_000));
        let empty = with_key("");
        for req in [two, non_ascii, huge, empty] {
            let (status, body, _) = call(auth.clone(), req).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.contains("invalid_request"));
        }
    }

    #[tokio::test]
    async fn query_parameter_is_opt_in() {
        let (store, _) = setup();
        let req = || Request::get("/?api_key=key_12345").body(()).unwrap();
        let (status, _, _) = call(ApiKeyAuthenticator::new(store.clone()), req()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let auth = ApiKeyAuthenticator::new(store).query_param("api_key");
        let (status, _, _) = call(auth.clone(), req()).await;
        assert_eq!(status, StatusCode::OK);
        let both = Request::get("/?api_key=key_12345")
            .header("x-api-key", "key_12345")
            .body(())
            .unwrap();
        let (status, _, _) = call(auth.clone(), both).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let spaced = Request::get("/?api_key=key%2012345").body(()).unwrap();
        let (status, _, _) = call(auth, spaced).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn custom_header_name() {
        let (store, _) = setup();
        let auth = ApiKeyAuthenticator::new(store).header(HeaderName::from_static("x-key"));
        let req = Request::get("/")
            .header("x-key", "key_12345")
            .body(())
            .unwrap();
        let (status, _, _) = call(auth, req).await;
        assert_eq!(status, StatusCode::OK);
    }

    struct DownStore;
    impl ApiKeyStore for DownStore {
        type Principal = User;
        async fn find(&self, _: &str) -> Result<Option<ApiKeyRecord<User>>, BoxError> {
            Err("connection refused".into())
        }
    }

    #[tokio::test]
    async fn store_failure_is_503_and_fails_closed() {
        let (status, body, _) =
            call(ApiKeyAuthenticator::new(DownStore), with_key("key_12345")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("connection refused"));
    }

    #[test]
    fn store_keeps_no_keys() {
        let (store, key) = setup();
        let dump = store.debug_records();
        assert!(!dump.contains("key_12345"));
        assert!(!dump.contains(&key));
        let listed = store.list();
        assert_eq!(listed.len(), 2);
    }
}
