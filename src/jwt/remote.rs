//! Remote key sets (feature `oidc`): [`RemoteJwks`] and [`Discovery`].

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{CACHE_CONTROL, ETAG};
use http::{StatusCode, Uri};
use jsonwebtoken::Algorithm;

use super::keys::KeySet;
use super::source::{KeySource, RefreshFuture};
use crate::error::AuthError;
use crate::oidc::http::{checked_uri, HttpClient};
pub use crate::oidc::OidcError;

/// Configuration of a [`RemoteJwks`]; see the [`RemoteJwks`] docs.
#[derive(Debug, Clone)]
pub struct RemoteJwksBuilder {
    url: String,
    min_refresh: Duration,
    max_refresh: Duration,
    unknown_kid_interval: Duration,
    max_staleness: Duration,
    timeout: Duration,
    max_body: usize,
    max_keys: usize,
    allow_loopback_http: bool,
    algorithms: Vec<Algorithm>,
}

/// The asymmetric algorithms accepted by default.
const DEFAULT_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

impl RemoteJwksBuilder {
    /// Defaults: refresh after `max-age` clamped to 1 min ..= 1 day (5 min
    /// without one), at most one unknown-`kid` refresh per 30 s, keys kept
    /// 6 h after the last successful fetch, 10 s timeout, 256 KiB body,
    /// 64 keys, `https` only, algorithms RS*, PS*, ES256, ES384, EdDSA.
    pub fn new(url: impl Into<String>) -> Self {
        let mut algorithms = DEFAULT_ALGORITHMS.to_vec();
        algorithms.push(Algorithm::EdDSA);
        RemoteJwksBuilder {
            url: url.into(),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(24 * 3600),
            unknown_kid_interval: Duration::from_secs(30),
            max_staleness: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(10),
            max_body: 256 * 1024,
            max_keys: 64,
            allow_loopback_http: false,
            algorithms,
        }
    }

    /// Bounds of the background refresh interval: the response's
    /// `max-age` is clamped to `min ..= max` (`min` is also the retry
    /// delay after a failure and the interval without a `max-age`).
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max.max(min);
        self
    }

    /// At most one refresh triggered by unknown `kid`s per `interval`.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// How long the last good keys are used after refreshes start failing
    /// (counted from the last successful fetch); past it every token is
    /// answered `503`.
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// The deadline of one whole fetch (connect, headers and body).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body read, in bytes.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The most keys a JWKS may hold (a larger one is refused whole).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Allows plain `http` to a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`), for tests and sidecars. Other hosts stay `https` only.
    pub fn allow_loopback_http(mut self, allow: bool) -> Self {
        self.allow_loopback_http = allow;
        self
    }

    /// The algorithm allow-list (symmetric and `none` are never accepted).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = asymmetric(algorithms);
        self
    }

    /// Fetches the JWKS once and starts the background refresh (on the
    /// current tokio runtime; it stops when the last clone of the returned
    /// [`RemoteJwks`] is dropped).
    ///
    /// # Errors
    ///
    /// An [`OidcError`] when the URL is refused or the first fetch fails.
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime (the refresh task and the HTTP
    /// client need one).
    pub async fn start(self) -> Result<RemoteJwks, OidcError> {
        let uri = checked_uri(&self.url, self.allow_loopback_http)?;
        let fetcher = Fetcher::new(&self)?;
        let fetched = fetcher.jwks(&uri, None, self.max_keys).await?;
        let Fetched::Keys {
            keys,
            etag,
            max_age,
        } = fetched
        else {
            return Err(OidcError::Status(304));
        };
        let shared = Arc::new(Shared {
            uri,
            fetcher,
            snapshot: ArcSwap::from_pointee(Snapshot {
                keys,
                etag,
                fetched_at: Instant::now(),
                epoch: 0,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            last_kid_refresh: Mutex::new(None),
            config: self,
        });
        let next = shared.config.next_refresh(max_age);
        tokio::spawn(background(Arc::downgrade(&shared), next));
        Ok(RemoteJwks { shared })
    }

    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(Duration::from_secs(300))
            .clamp(self.min_refresh, self.max_refresh)
    }
}

fn asymmetric(algorithms: impl IntoIterator<Item = Algorithm>) -> Vec<Algorithm> {
    algorithms
        .into_iter()
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .collect()
}

/// An identity provider's JWK Set (feature `oidc`), fetched over HTTPS and
/// refreshed in the background: a [`KeySource`] for
/// [`JwtAuthenticator::from_source`](super::JwtAuthenticator::from_source),
/// found directly or by [`Discovery`] from an issuer (OpenID Connect
/// Discovery, RFC 8414). Cloning is a reference-count increment.
///
/// * Lookups never wait on a fetch: the key set is swapped atomically.
/// * Refresh in the background, after the response's `Cache-Control:
///   max-age` clamped to [`refresh_bounds`](RemoteJwksBuilder::refresh_bounds),
///   revalidated with `If-None-Match` when the server sent an `ETag`.
/// * A token with an unknown `kid` triggers one refresh at a time and at
///   most one per [`unknown_kid_interval`](RemoteJwksBuilder::unknown_kid_interval).
/// * Stale on error: the last good keys are kept for
///   [`max_staleness`](RemoteJwksBuilder::max_staleness), then every token
///   is answered `503` (fail closed).
/// * One malformed, unsupported or symmetric (`oct`) key is dropped alone;
///   responses are bounded in size and key count; requests time out;
///   `https` only, plain `http` only to a loopback host and only when
///   [`allow_loopback_http`](RemoteJwksBuilder::allow_loopback_http) says so.
///
/// The HTTP client is hyper-util's with rustls (the aws-lc-rs provider,
/// already built for `jwt` and `mtls`) and the Mozilla roots of
/// `webpki-roots`; certificates are always verified and redirects are never
/// followed.
///
/// # Example
///
/// ```no_run
/// use tower_auth::jwt::{Discovery, JwtAuthenticator};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = Discovery::new("https://login.example.com/realms/app")
///     .discover()
///     .await?;
/// let jwt = JwtAuthenticator::<serde_json::Value>::from_source(provider.jwks().clone())
///     .issuers([provider.issuer()])
///     .audiences(["my-api"])
///     .build()?;
/// # let _ = jwt;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    shared: Arc<Shared>,
}

struct Shared {
    uri: Uri,
    config: RemoteJwksBuilder,
    fetcher: Fetcher,
    snapshot: ArcSwap<Snapshot>,
    /// Held during a fetch: one refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// When the last unknown-`kid` refresh was allowed.
    last_kid_refresh: Mutex<Option<Instant>>,
}

struct Snapshot {
    keys: KeySet,
    etag: Option<http::HeaderValue>,
    /// The last time the server confirmed these keys (200 or 304).
    fetched_at: Instant,
    /// Bumped by each new key set (a `200`), not by a `304`.
    epoch: u64,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("uri", &self.shared.uri)
            .field("keys", &self.shared.snapshot.load().keys)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Configures a remote JWKS at `url`.
    pub fn builder(url: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(url)
    }

    /// The keys held now (even if stale).
    pub fn keys(&self) -> KeySet {
        self.shared.snapshot.load().keys.clone()
    }

    /// Fetches the JWKS now (waiting for a refresh already under way
    /// instead of starting a second one).
    ///
    /// # Errors
    ///
    /// Why the fetch failed; the last good keys are kept.
    pub async fn refresh(&self) -> Result<(), OidcError> {
        self.shared.refresh(Instant::now()).await.map(|_| ())
    }
}

impl Shared {
    /// Fetches unless a fetch that started after `asked` already succeeded
    /// (single flight). Returns the `max-age` of the answer.
    async fn refresh(&self, asked: Instant) -> Result<Option<Duration>, OidcError> {
        let _guard = self.refreshing.lock().await;
        let current = self.snapshot.load_full();
        if current.fetched_at > asked {
            return Ok(None);
        }
        let started = Instant::now();
        let fetched = self
            .fetcher
            .jwks(&self.uri, current.etag.as_ref(), self.config.max_keys)
            .await;
        match fetched {
            Ok(Fetched::NotModified { max_age }) => {
                crate::observe::key_refresh(crate::observe::KeyRefresh::NotModified);
                self.snapshot.store(Arc::new(Snapshot {
                    keys: current.keys.clone(),
                    etag: current.etag.clone(),
                    fetched_at: started,
                    epoch: current.epoch,
                }));
                Ok(max_age)
            }
            Ok(Fetched::Keys {
                keys,
                etag,
                max_age,
            }) => {
                crate::observe::key_refresh(crate::observe::KeyRefresh::Updated);
                self.snapshot.store(Arc::new(Snapshot {
                    keys,
                    etag,
                    fetched_at: started,
                    epoch: current.epoch.wrapping_add(1),
                }));
                Ok(max_age)
            }
            Err(e) => {
                crate::observe::key_refresh(crate::observe::KeyRefresh::Error);
                tracing::warn!(uri = %self.uri, error = %e, "JWKS refresh failed; keeping the last good keys");
                Err(e)
            }
        }
    }
}

async fn background(shared: Weak<Shared>, mut next: Duration) {
    loop {
        tokio::time::sleep(next).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        next = match shared.refresh(Instant::now()).await {
            Ok(max_age) => shared.config.next_refresh(max_age),
            Err(_) => shared.config.min_refresh,
        };
    }
}

impl RemoteJwks {
    fn fresh(&self, snapshot: &Snapshot) -> Result<(), AuthError> {
        if snapshot.fetched_at.elapsed() > self.shared.config.max_staleness {
            return Err(AuthError::unavailable(
                "the identity provider's keys are too stale",
            ));
        }
        Ok(())
    }
}

impl KeySource for RemoteJwks {
    fn current(&self) -> Result<KeySet, AuthError> {
        let snapshot = self.shared.snapshot.load();
        self.fresh(&snapshot)?;
        Ok(snapshot.keys.clone())
    }

    fn usable(&self) -> Result<(), AuthError> {
        self.fresh(&self.shared.snapshot.load())
    }

    fn epoch(&self) -> u64 {
        self.shared.snapshot.load().epoch
    }

    fn algorithms(&self) -> Vec<Algorithm> {
        self.shared.config.algorithms.clone()
    }

    fn refresh_unknown_kid(&self) -> Option<RefreshFuture> {
        let now = Instant::now();
        {
            let mut last = self
                .shared
                .last_kid_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < self.shared.config.unknown_kid_interval)
            {
                return None;
            }
            *last = Some(now);
        }
        // Spawned: the refresh completes even if the request that started
        // it goes away.
        let shared = Arc::clone(&self.shared);
        let refresh = tokio::spawn(async move {
            let _ = shared.refresh(now).await;
        });
        Some(Box::pin(async move {
            let _ = refresh.await;
        }))
    }
}

enum Fetched {
    Keys {
        keys: KeySet,
        etag: Option<http::HeaderValue>,
        max_age: Option<Duration>,
    },
    NotModified {
        max_age: Option<Duration>,
    },
}

/// Fetches a JWKS through the `oidc` HTTP client.
#[derive(Clone)]
struct Fetcher {
    http: HttpClient,
}

impl Fetcher {
    fn new(config: &RemoteJwksBuilder) -> Result<Self, OidcError> {
        Ok(Fetcher {
            http: HttpClient::new(config.timeout, config.max_body)?,
        })
    }

    async fn jwks(
        &self,
        uri: &Uri,
        etag: Option<&http::HeaderValue>,
        max_keys: usize,
    ) -> Result<Fetched, OidcError> {
        let (parts, body) = self.http.get(uri, etag).await?;
        let max_age = max_age(&parts.headers);
        match parts.status {
            StatusCode::NOT_MODIFIED if etag.is_some() => {
                return Ok(Fetched::NotModified { max_age })
            }
            StatusCode::OK => {}
            other => return Err(OidcError::Status(other.as_u16())),
        }
        #[derive(serde::Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks =
            serde_json::from_slice(&body).map_err(|e| OidcError::Json(e.to_string()))?;
        if jwks.keys.len() > max_keys {
            return Err(OidcError::TooManyKeys(max_keys));
        }
        let (keys, dropped) = KeySet::from_provider_jwks(jwks.keys);
        if dropped > 0 {
            tracing::warn!(%uri, dropped, "dropped unusable keys from a JWKS");
        }
        if keys.is_empty() {
            return Err(OidcError::NoUsableKey);
        }
        Ok(Fetched::Keys {
            keys,
            etag: parts.headers.get(ETAG).cloned(),
            max_age,
        })
    }
}

/// `Cache-Control: max-age` (`no-cache` / `no-store` count as 0).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-cache")
                || directive.eq_ignore_ascii_case("no-store")
            {
                return Some(Duration::ZERO);
            }
            let Some((name, secs)) = directive.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("max-age") {
                found = secs
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    found
}

/// Finds an identity provider's JWKS from its issuer URL: OpenID Connect
/// Discovery (`/.well-known/openid-configuration`), then RFC 8414
/// (`/.well-known/oauth-authorization-server`). The document's `issuer` must
/// equal the configured one exactly, its `jwks_uri` obeys the same URL
/// rules, and its advertised signing algorithms are intersected with the
/// allow-list. See the [`RemoteJwks`] docs.
#[derive(Debug, Clone)]
pub struct Discovery {
    issuer: String,
    jwks: RemoteJwksBuilder,
}

/// The outcome of a [`Discovery`]: the verified issuer and its keys.
#[derive(Debug, Clone)]
pub struct Discovered {
    issuer: String,
    jwks: RemoteJwks,
    introspection_endpoint: Option<String>,
}

impl Discovered {
    /// The issuer, exactly as configured and as the provider names itself:
    /// pass it to [`issuers`](super::JwtAuthenticator::issuers).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's key set.
    pub fn jwks(&self) -> &RemoteJwks {
        &self.jwks
    }

    /// The provider's token introspection endpoint (RFC 7662), when its
    /// document names one, for
    /// [`Introspection::builder`](crate::oidc::Introspection::builder).
    /// It was not checked against the URL rules yet: the builder does that.
    pub fn introspection_endpoint(&self) -> Option<&str> {
        self.introspection_endpoint.as_deref()
    }
}

impl Discovery {
    /// Discovery for `issuer` (e.g. `https://login.example.com/realms/app`),
    /// with the [`RemoteJwksBuilder`] defaults for the JWKS.
    pub fn new(issuer: impl Into<String>) -> Self {
        Discovery {
            issuer: issuer.into(),
            jwks: RemoteJwksBuilder::new(String::new()),
        }
    }

    /// Settings of the JWKS found (its URL is replaced by `jwks_uri`); the
    /// discovery requests obey the same timeout, size and scheme rules.
    pub fn jwks_settings(mut self, settings: RemoteJwksBuilder) -> Self {
        self.jwks = settings;
        self
    }

    /// Fetches the discovery document, checks it and starts the
    /// [`RemoteJwks`] it names.
    ///
    /// # Errors
    ///
    /// An [`OidcError`]: a refused URL, a failed fetch, an `issuer` that
    /// differs ([`OidcError::IssuerMismatch`]), no allowed algorithm.
    ///
    /// # Panics
    ///
    /// When polled outside a tokio runtime.
    pub async fn discover(self) -> Result<Discovered, OidcError> {
        let allow_http = self.jwks.allow_loopback_http;
        let base = checked_uri(&self.issuer, allow_http)?;
        let fetcher = Fetcher::new(&self.jwks)?;
        let trimmed = self.issuer.trim_end_matches('/');
        let oidc = format!("{trimmed}/.well-known/openid-configuration");
        // RFC 8414 §3: the well-known segment goes between host and path.
        let authority = base.authority().ok_or(OidcError::InvalidUrl)?;
        let path = base.path().trim_end_matches('/');
        let scheme = base.scheme_str().unwrap_or("https");
        let rfc8414 =
            format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}");
        let mut last = OidcError::Status(404);
        for url in [oidc, rfc8414] {
            let uri = checked_uri(&url, allow_http)?;
            let (parts, body) = fetcher.http.get(&uri, None).await?;
            if parts.status == StatusCode::NOT_FOUND {
                last = OidcError::Status(404);
                continue;
            }
            if parts.status != StatusCode::OK {
                return Err(OidcError::Status(parts.status.as_u16()));
            }
            return self.use_document(&body).await;
        }
        Err(last)
    }

    async fn use_document(self, body: &[u8]) -> Result<Discovered, OidcError> {
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: String,
            jwks_uri: String,
            #[serde(default)]
            id_token_signing_alg_values_supported: Option<Vec<String>>,
            #[serde(default)]
            introspection_endpoint: Option<String>,
        }
        let doc: Document =
            serde_json::from_slice(body).map_err(|e| OidcError::Json(e.to_string()))?;
        if doc.issuer != self.issuer {
            return Err(OidcError::IssuerMismatch);
        }
        let mut jwks = self.jwks;
        if let Some(advertised) = doc.id_token_signing_alg_values_supported {
            let advertised: Vec<Algorithm> = advertised
                .iter()
                .filter_map(|a| super::jws::parse_alg(a).ok())
                .collect();
            jwks.algorithms.retain(|a| advertised.contains(a));
        }
        if jwks.algorithms.is_empty() {
            return Err(OidcError::NoAlgorithms);
        }
        jwks.url = doc.jwks_uri;
        Ok(Discovered {
            issuer: self.issuer,
            jwks: jwks.start().await?,
            introspection_endpoint: doc.introspection_endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        let b = RemoteJwksBuilder::new("https://x")
            .refresh_bounds(Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(
            b.next_refresh(Some(Duration::ZERO)),
            Duration::from_secs(60)
        );
        assert_eq!(
            b.next_refresh(Some(Duration::from_secs(86400))),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn symmetric_algorithms_are_never_allowed() {
        let b =
            RemoteJwksBuilder::new("https://x").algorithms([Algorithm::HS256, Algorithm::RS256]);
        assert_eq!(b.algorithms, vec![Algorithm::RS256]);
    }
}
