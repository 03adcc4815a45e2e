//! OAuth 2.0 Token Introspection (RFC 7662) as an [`Authenticator`]: see
//! [`Introspection`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::request::Parts;
use http::{HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::http::{checked_uri, HttpClient, OidcError};
use crate::auth::{Authenticated, Authenticator, BoxAuthFuture};
use crate::credentials::{self, HeaderToken, DEFAULT_MAX_LEN};
use crate::error::AuthError;
use crate::identity::{Identity, Scheme};
use crate::jwt::{unix_now, CacheEntry, Fingerprint, TokenCache};
use crate::rejection::Challenge;
use crate::secret::Secret;

/// How the resource server authenticates itself to the introspection
/// endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret
    /// (the default; every provider accepts it).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Configuration of an [`Introspection`] authenticator; see its docs.
#[derive(Clone, Debug)]
pub struct IntrospectionBuilder {
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    client_auth: ClientAuth,
    timeout: Duration,
    max_body: usize,
    allow_loopback_http: bool,
    issuer: Option<String>,
    audiences: Vec<String>,
    token_types: Vec<String>,
    leeway: Duration,
    cache: (usize, Duration),
    negative_cache: (usize, Duration),
    max_in_flight: usize,
    subject_claim: String,
    roles_claims: Vec<String>,
    permissions_claims: Vec<String>,
    realm: Option<Arc<str>>,
}

impl IntrospectionBuilder {
    /// Introspection at `endpoint` for the client `client_id` /
    /// `client_secret` (the resource server's own credentials at the
    /// provider). Defaults: `client_secret_basic`, 5 s timeout, 64 KiB
    /// answers, `https` only, 30 s leeway on `exp` / `nbf`, 10 000 active
    /// tokens cached for 60 s, 10 000 refused tokens cached for 10 s, 64
    /// calls in flight, subject from `sub`, roles from `roles`,
    /// permissions from `permissions`, scopes from `scope`.
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        IntrospectionBuilder {
            endpoint: endpoint.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            client_auth: ClientAuth::default(),
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            allow_loopback_http: false,
            issuer: None,
            audiences: Vec::new(),
            token_types: Vec::new(),
            leeway: Duration::from_secs(30),
            cache: (10_000, Duration::from_secs(60)),
            negative_cache: (10_000, Duration::from_secs(10)),
            max_in_flight: 64,
            subject_claim: "sub".into(),
            roles_claims: vec!["roles".into()],
            permissions_claims: vec!["permissions".into()],
            realm: None,
        }
    }

    /// How the client authenticates to the endpoint.
    pub fn client_auth(mut self, method: ClientAuth) -> Self {
        self.client_auth = method;
        self
    }

    /// The deadline of one introspection call (connect, headers and body).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest answer read, in bytes; a larger one is a `503`.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Allows plain `http` to a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`), for tests and sidecars. Other hosts stay `https` only.
    pub fn allow_loopback_http(mut self, allow: bool) -> Self {
        self.allow_loopback_http = allow;
        self
    }

    /// Requires the answer's `iss` to equal `issuer` exactly.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires the answer's `aud` (a string or an array) to name one of
    /// `audiences`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Requires the answer's `token_type` to be one of `types` (compared
    /// ignoring ASCII case, e.g. `Bearer`).
    pub fn token_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.token_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The clock skew tolerated on `exp` and `nbf` (whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Caches up to `capacity` active tokens for `ttl` (whole seconds),
    /// never past their `exp`. A zero `ttl` turns the cache off.
    pub fn cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.cache = (capacity, ttl);
        self
    }

    /// Caches up to `capacity` refused tokens (inactive, expired, wrong
    /// issuer...) for `ttl` (whole seconds; keep it short). This cache is
    /// separate from the one of active tokens, so a flood of random tokens
    /// never evicts a good one. A zero `ttl` turns it off.
    pub fn negative_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.negative_cache = (capacity, ttl);
        self
    }

    /// The most tokens being introspected at once (requests with the same
    /// token share one call); past it, requests with an uncached token are
    /// answered `503` at once instead of queueing on the provider.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// The member holding the subject (default `sub`). It is required and
    /// must be a non-empty string: a token without one is refused.
    pub fn subject_claim(mut self, name: impl Into<String>) -> Self {
        self.subject_claim = name.into();
        self
    }

    /// Members holding roles, as an array or a space-separated string
    /// (default `roles`). A name starting with `/` is a JSON pointer, e.g.
    /// `/realm_access/roles` for Keycloak.
    pub fn roles_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// Members holding permissions, like [`roles_claims`](Self::roles_claims)
    /// (default `permissions`).
    pub fn permissions_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge.
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Checks the endpoint URL and builds the authenticator (no request is
    /// made).
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidUrl`] / [`OidcError::InsecureUrl`] for a refused
    /// endpoint, [`OidcError::InvalidCredentials`] for a client id or secret
    /// that cannot be sent, [`OidcError::Tls`] or [`OidcError::Random`] when
    /// the system cannot provide TLS or randomness.
    pub fn build(self) -> Result<Introspection, OidcError> {
        let endpoint = checked_uri(&self.endpoint, self.allow_loopback_http)?;
        let http = HttpClient::new(self.timeout, self.max_body)?;
        let basic = match self.client_auth {
            ClientAuth::ClientSecretBasic => {
                Some(basic_credentials(&self.client_id, &self.client_secret)?)
            }
            ClientAuth::ClientSecretPost => None,
        };
        let (capacity, ttl) = self.cache;
        let positive = TokenCache::new(capacity, ttl.as_secs()).ok_or(OidcError::Random)?;
        let (capacity, ttl) = self.negative_cache;
        let negative = TokenCache::new(capacity, ttl.as_secs()).ok_or(OidcError::Random)?;
        Ok(Introspection {
            inner: Arc::new(Inner {
                endpoint,
                http,
                basic,
                leeway: self.leeway.as_secs(),
                positive,
                negative,
                flights: Mutex::new(HashMap::new()),
                refused: Identity::new("", Scheme::Bearer),
                config: self,
            }),
        })
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1),
/// marked sensitive so that HTTP tooling does not print it.
fn basic_credentials(id: &str, secret: &Secret) -> Result<HeaderValue, OidcError> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = Zeroizing::new(format!(
        "{}:{}",
        encode(id),
        Zeroizing::new(encode(secret.expose())).as_str()
    ));
    let value = Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ));
    let mut value =
        HeaderValue::from_str(value.as_str()).map_err(|_| OidcError::InvalidCredentials)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Authenticates opaque bearer tokens (`Authorization: Bearer <token>`)
/// by asking the identity provider's token introspection endpoint
/// (RFC 7662, feature `oidc`). See the [module docs](crate::oidc).
///
/// Cloning is a reference-count increment; clones share the caches.
#[derive(Clone)]
pub struct Introspection {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Uri,
    http: HttpClient,
    /// The `Authorization` header for `client_secret_basic`.
    basic: Option<HeaderValue>,
    leeway: u64,
    positive: TokenCache<IntrospectedToken>,
    /// Refused tokens, with the reason sent to the client.
    negative: TokenCache<&'static str>,
    /// The calls under way, by token fingerprint: one per token.
    flights: Mutex<HashMap<Fingerprint, Arc<Flight>>>,
    /// The identity stored with refused tokens (never handed out).
    refused: Identity,
    config: IntrospectionBuilder,
}

type Flight = OnceCell<Outcome>;

/// What one introspection call concluded.
#[derive(Clone)]
enum Outcome {
    Active(IntrospectedToken, Identity),
    Refused(&'static str),
    Unavailable(Arc<str>),
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("Introspection")
            .field("endpoint", &self.inner.endpoint)
            .field("client_id", &c.client_id)
            .field("client_auth", &c.client_auth)
            .field("issuer", &c.issuer)
            .field("audiences", &c.audiences)
            .finish_non_exhaustive()
    }
}

impl Introspection {
    /// Configures introspection at `endpoint` (e.g. from
    /// [`Discovered::introspection_endpoint`](crate::jwt::Discovered::introspection_endpoint))
    /// with the resource server's client credentials.
    pub fn builder(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> IntrospectionBuilder {
        IntrospectionBuilder::new(endpoint, client_id, client_secret)
    }
}

/// A bearer token taken from a request for [`Introspection`]. `Debug`
/// never prints it.
pub struct IntrospectionCredentials(HeaderToken);

impl fmt::Debug for IntrospectionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntrospectionCredentials([redacted])")
    }
}

impl Authenticator for Introspection {
    type Credentials = IntrospectionCredentials;
    type Principal = IntrospectedToken;
    type Future = IntrospectionFuture;

    fn extract(&self, request: &Parts) -> Result<Option<IntrospectionCredentials>, AuthError> {
        Ok(
            credentials::bearer_token_in(&request.headers, DEFAULT_MAX_LEN)?
                .map(IntrospectionCredentials),
        )
    }

    fn authenticate(&self, credentials: IntrospectionCredentials) -> IntrospectionFuture {
        let i = &*self.inner;
        let token = credentials.0.as_str();
        let now = unix_now();
        let fingerprint = i.positive.fingerprint(token);
        if let Some(hit) = i.positive.get(fingerprint, now, i.leeway) {
            crate::observe::cache("introspection", true);
            let found = Authenticated::new(hit.claims.clone(), hit.identity.clone());
            return IntrospectionFuture(Kind::Ready(Some(Ok(found))));
        }
        let refused = i.negative.fingerprint(token);
        if let Some(hit) = i.negative.get(refused, now, 0) {
            crate::observe::cache("introspection", true);
            let error = AuthError::invalid_credentials(hit.claims);
            return IntrospectionFuture(Kind::Ready(Some(Err(error))));
        }
        crate::observe::cache("introspection", false);
        let inner = Arc::clone(&self.inner);
        IntrospectionFuture(Kind::Call(Box::pin(async move {
            inner.introspect(&credentials, fingerprint, refused).await
        })))
    }

    fn challenges(&self) -> Vec<Challenge> {
        vec![Challenge::bearer().realm(self.inner.config.realm.as_ref())]
    }
}

/// The future of [`Introspection`]: ready at once on a cache hit, else the
/// introspection call.
pub struct IntrospectionFuture(Kind);

enum Kind {
    Ready(Option<Result<Authenticated<IntrospectedToken>, AuthError>>),
    Call(BoxAuthFuture<IntrospectedToken>),
}

impl fmt::Debug for IntrospectionFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            Kind::Ready(_) => "cached",
            Kind::Call(_) => "calling",
        };
        f.debug_tuple("IntrospectionFuture").field(&state).finish()
    }
}

impl Future for IntrospectionFuture {
    type Output = Result<Authenticated<IntrospectedToken>, AuthError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Kind::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(AuthError::misconfigured(
                    "introspection future polled after completion",
                ))
            })),
            Kind::Call(call) => call.as_mut().poll(cx),
        }
    }
}

/// Removes a finished (or abandoned) call from the map of calls under way,
/// unless another call replaced it.
struct Landing<'a> {
    inner: &'a Inner,
    fingerprint: Fingerprint,
    flight: &'a Arc<Flight>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.fingerprint)
            .is_some_and(|f| Arc::ptr_eq(f, self.flight))
        {
            flights.remove(&self.fingerprint);
        }
    }
}

impl Inner {
    /// Joins the call under way for this token, or starts one if fewer
    /// than the limit are under way.
    async fn introspect(
        &self,
        credentials: &IntrospectionCredentials,
        fingerprint: Fingerprint,
        refused: Fingerprint,
    ) -> Result<Authenticated<IntrospectedToken>, AuthError> {
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&fingerprint) {
                Some(flight) => (Arc::clone(flight), false),
                None if flights.len() >= self.config.max_in_flight => {
                    return Err(AuthError::unavailable(
                        "token introspection: too many calls in flight",
                    ));
                }
                None => {
                    let flight = Arc::new(Flight::new());
                    flights.insert(fingerprint, Arc::clone(&flight));
                    (flight, true)
                }
            }
        };
        let _landing = leader.then(|| Landing {
            inner: self,
            fingerprint,
            flight: &flight,
        });
        let outcome = flight
            .get_or_init(|| self.ask(credentials.0.as_str(), fingerprint, refused))
            .await;
        match outcome {
            Outcome::Active(token, identity) => {
                Ok(Authenticated::new(token.clone(), identity.clone()))
            }
            Outcome::Refused(why) => Err(AuthError::invalid_credentials(*why)),
            Outcome::Unavailable(why) => Err(AuthError::unavailable(why.to_string())),
        }
    }

    /// One call to the endpoint, its verdict cached.
    async fn ask(&self, token: &str, fingerprint: Fingerprint, refused: Fingerprint) -> Outcome {
        let outcome = match self.call(token).await {
            Ok(answer) => self.judge(answer),
            Err(why) => Outcome::Unavailable(why.into()),
        };
        let now = unix_now();
        match &outcome {
            Outcome::Active(token, identity) => {
                let entry = CacheEntry {
                    claims: token.clone(),
                    identity: identity.clone(),
                    jti: None,
                    fam: None,
                    exp: token.exp(),
                    deadline: 0,
                    key_epoch: 0,
                };
                self.positive.insert(fingerprint, entry, now);
            }
            Outcome::Refused(why) => {
                let entry = CacheEntry {
                    claims: *why,
                    identity: self.refused.clone(),
                    jti: None,
                    fam: None,
                    exp: None,
                    deadline: 0,
                    key_epoch: 0,
                };
                self.negative.insert(refused, entry, now);
            }
            Outcome::Unavailable(_) => {}
        }
        outcome
    }

    /// POSTs the token; the answer's JSON object, or why there is none
    /// (never naming the token).
    async fn call(&self, token: &str) -> Result<Map<String, Value>, String> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token)
                .append_pair("token_type_hint", "access_token");
            if self.basic.is_none() {
                form.append_pair("client_id", &self.config.client_id)
                    .append_pair("client_secret", self.config.client_secret.expose());
            }
            form.finish()
        };
        let (parts, body) = self
            .http
            .post_form(&self.endpoint, form, self.basic.as_ref())
            .await
            .map_err(|e| format!("token introspection at {}: {e}", self.endpoint))?;
        match parts.status {
            StatusCode::OK => {}
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                tracing::error!(
                    endpoint = %self.endpoint,
                    client_id = %self.config.client_id,
                    status = status.as_u16(),
                    "the introspection endpoint refused this resource server's client \
                     credentials: check the client id, secret and authentication method",
                );
                return Err(format!(
                    "token introspection at {}: client credentials refused ({status})",
                    self.endpoint
                ));
            }
            status => {
                return Err(format!(
                    "token introspection at {}: unexpected status {status}",
                    self.endpoint
                ))
            }
        }
        match serde_json::from_slice(&body) {
            Ok(Value::Object(answer)) => Ok(answer),
            _ => Err(format!(
                "token introspection at {}: the answer is not a JSON object",
                self.endpoint
            )),
        }
    }

    /// The verdict on an answer: RFC 7662 §2.2 `active`, then the checks
    /// configured.
    fn judge(&self, answer: Map<String, Value>) -> Outcome {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Outcome::Refused("the token is not active");
        }
        let c = &self.config;
        let token = match IntrospectedToken::read(answer) {
            Ok(token) => token,
            Err(member) => {
                return Outcome::Unavailable(
                    format!("token introspection: malformed `{member}` in the answer").into(),
                )
            }
        };
        let t = &token.0;
        if c.issuer.is_some() && t.iss != c.issuer {
            return Outcome::Refused("the token comes from another issuer");
        }
        if !c.audiences.is_empty() && !t.aud.iter().any(|a| c.audiences.contains(a)) {
            return Outcome::Refused("the token is meant for another audience");
        }
        if !c.token_types.is_empty()
            && !t
                .token_type
                .as_deref()
                .is_some_and(|tt| c.token_types.iter().any(|w| w.eq_ignore_ascii_case(tt)))
        {
            return Outcome::Refused("the token is of another type");
        }
        let now = i128::from(unix_now());
        let leeway = i128::from(self.leeway);
        if t.exp.is_some_and(|exp| now >= i128::from(exp) + leeway) {
            return Outcome::Refused("the token has expired");
        }
        if t.nbf.is_some_and(|nbf| i128::from(nbf) > now + leeway) {
            return Outcome::Refused("the token is not valid yet");
        }
        let subject = match t.claims.get(&c.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Outcome::Refused("the token names no subject"),
        };
        let identity = Identity::new(subject, Scheme::Bearer)
            .with_scopes(t.scopes.iter().cloned())
            .with_roles(members(&t.claims, &c.roles_claims))
            .with_permissions(members(&t.claims, &c.permissions_claims));
        Outcome::Active(token, identity)
    }
}

/// The strings under `names` (members, or JSON pointers when starting
/// with `/`): array items, or the words of a space-separated string.
fn members(claims: &Map<String, Value>, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let value = match name.strip_prefix('/') {
            Some(pointer) => {
                let (first, rest) = pointer.split_once('/').unwrap_or((pointer, ""));
                let first = first.replace("~1", "/").replace("~0", "~");
                claims.get(&first).and_then(|v| {
                    if rest.is_empty() {
                        Some(v)
                    } else {
                        v.pointer(&format!("/{rest}"))
                    }
                })
            }
            None => claims.get(name),
        };
        match value {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    out
}

/// An active token as the introspection endpoint described it: the typed
/// principal of [`Introspection`]. Cloning is a reference-count increment.
///
/// The standard members of RFC 7662 §2.2 have accessors; every member of
/// the answer (including provider extensions) is in
/// [`claims`](IntrospectedToken::claims). The token itself is not kept.
#[derive(Clone)]
pub struct IntrospectedToken(Arc<Fields>);

struct Fields {
    sub: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    token_type: Option<String>,
    iss: Option<String>,
    jti: Option<String>,
    scopes: Vec<String>,
    aud: Vec<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    claims: Map<String, Value>,
}

impl fmt::Debug for IntrospectedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectedToken")
            .field("sub", &self.0.sub)
            .field("client_id", &self.0.client_id)
            .field("scopes", &self.0.scopes)
            .field("exp", &self.0.exp)
            .finish_non_exhaustive()
    }
}

impl IntrospectedToken {
    /// Reads the standard members; `Err` names one of the wrong type.
    fn read(claims: Map<String, Value>) -> Result<Self, &'static str> {
        let text = |key: &'static str| match claims.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(key),
        };
        let time = |key: &'static str| match claims.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or(key),
            Some(_) => Err(key),
        };
        let aud = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or("aud"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("aud"),
        };
        let scopes = text("scope")?
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(IntrospectedToken(Arc::new(Fields {
            sub: text("sub")?,
            client_id: text("client_id")?,
            username: text("username")?,
            token_type: text("token_type")?,
            iss: text("iss")?,
            jti: text("jti")?,
            scopes,
            aud,
            exp: time("exp")?,
            iat: time("iat")?,
            nbf: time("nbf")?,
            claims,
        })))
    }

    /// `sub`: the resource owner.
    pub fn sub(&self) -> Option<&str> {
        self.0.sub.as_deref()
    }

    /// `client_id`: the client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// `username`: a human-readable name of the resource owner.
    pub fn username(&self) -> Option<&str> {
        self.0.username.as_deref()
    }

    /// `scope`, split on spaces.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// `token_type`, e.g. `Bearer`.
    pub fn token_type(&self) -> Option<&str> {
        self.0.token_type.as_deref()
    }

    /// `iss`.
    pub fn iss(&self) -> Option<&str> {
        self.0.iss.as_deref()
    }

    /// `aud` (a single string becomes one item).
    pub fn aud(&self) -> &[String] {
        &self.0.aud
    }

    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.0.jti.as_deref()
    }

    /// `exp`, seconds since the Unix epoch.
    pub fn exp(&self) -> Option<i64> {
        self.0.exp
    }

    /// `iat`, seconds since the Unix epoch.
    pub fn iat(&self) -> Option<i64> {
        self.0.iat
    }

    /// `nbf`, seconds since the Unix epoch.
    pub fn nbf(&self) -> Option<i64> {
        self.0.nbf
    }

    /// Every member of the answer.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn members_read_arrays_strings_and_pointers() {
        let claims = object(json!({
            "roles": ["a", "b", 3],
            "permissions": "p:read p:write",
            "realm_access": {"roles": ["admin"]},
            "a/b": ["slash"],
        }));
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(members(&claims, &names(&["roles"])), ["a", "b"]);
        assert_eq!(
            members(&claims, &names(&["permissions", "missing"])),
            ["p:read", "p:write"]
        );
        assert_eq!(
            members(&claims, &names(&["/realm_access/roles"])),
            ["admin"]
        );
        assert_eq!(members(&claims, &names(&["/a~1b"])), ["slash"]);
        assert!(members(&claims, &names(&["/realm_access/nope"])).is_empty());
    }

    #[test]
    fn standard_members_of_the_wrong_type_are_reported() {
        let ok = IntrospectedToken::read(object(json!({
            "active": true, "sub": "s", "aud": ["x", "y"], "exp": 1.7e9, "scope": "a  b"
        })))
        .unwrap();
        assert_eq!(ok.aud(), ["x", "y"]);
        assert_eq!(ok.exp(), Some(1_700_000_000));
        assert_eq!(ok.scopes(), ["a", "b"]);
        for (bad, member) in [
            (json!({"exp": "soon"}), "exp"),
            (json!({"aud": [1]}), "aud"),
            (json!({"aud": {}}), "aud"),
            (json!({"sub": 5}), "sub"),
            (json!({"scope": ["a"]}), "scope"),
        ] {
            assert_eq!(
                IntrospectedToken::read(object(bad)).err(),
                Some(member),
                "{member}"
            );
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let v = basic_credentials("my client", &Secret::new("p@ss:wörd")).unwrap();
        assert!(v.is_sensitive());
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(decoded, b"my+client:p%40ss%3Aw%C3%B6rd");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let auth = Introspection::builder("https://idp.example/introspect", "rs", "s3cr3t")
            .build()
            .unwrap();
        let mut req = http::Request::new(());
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer opaque-token-value"),
        );
        let (parts, ()) = req.into_parts();
        let creds = auth.extract(&parts).unwrap().unwrap();
        assert_eq!(format!("{creds:?}"), "IntrospectionCredentials([redacted])");
        let printed = format!("{auth:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }
}
