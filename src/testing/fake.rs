//! Authenticators for tests: [`FakeAuthLayer`] / [`FakeAuthenticator`]
//! (an identity without credentials) and [`StaticAuthenticator`] (fixed
//! test tokens).

use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::request::Parts;
use tower_layer::Layer;

use crate::auth::{AuthLayer, AuthService, Authenticated, Authenticator};
use crate::credentials::{bearer_token, single_header, visible_ascii, DEFAULT_MAX_LEN};
use crate::error::AuthError;
use crate::identity::{Identity, Scheme};
use crate::rejection::{Challenge, RejectionHandler, Rejections};
use crate::secret::Secret;

/// What a [`FakeAuthenticator`] answers for every request.
enum Outcome<P> {
    Authenticated(Authenticated<P>),
    /// No credentials: `401` behind [`AuthLayer::new`], anonymous behind
    /// [`AuthLayer::optional`].
    Anonymous,
    /// A refusal built anew for each request (an [`AuthError`] is not
    /// `Clone`).
    Refused(fn() -> AuthError),
}

/// An [`Authenticator`] that authenticates every request as one fixed
/// principal and [`Identity`], without reading any credentials; or treats
/// every request as anonymous, or refuses every one with a given error.
///
/// It runs inside the real [`AuthLayer`], so the principal and the identity
/// reach the request extensions exactly as in production: `Auth<T>`,
/// `Identity`, `RequireLayer`, `Guard` and the layer's rejection renderer
/// see no difference. [`FakeAuthLayer`] is the layer built on it.
///
/// **For tests only**: it lets everyone in.
pub struct FakeAuthenticator<P> {
    outcome: Arc<Outcome<P>>,
    challenge: Arc<[Challenge]>,
}

impl<P> Clone for FakeAuthenticator<P> {
    fn clone(&self) -> Self {
        FakeAuthenticator {
            outcome: self.outcome.clone(),
            challenge: self.challenge.clone(),
        }
    }
}

impl<P> fmt::Debug for FakeAuthenticator<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &*self.outcome {
            Outcome::Authenticated(a) => format!("authenticated as {:?}", a.identity.subject()),
            Outcome::Anonymous => "anonymous".to_owned(),
            Outcome::Refused(_) => "refused".to_owned(),
        };
        f.debug_struct("FakeAuthenticator")
            .field("outcome", &outcome)
            .finish()
    }
}

fn challenge_for(scheme: &Scheme) -> Arc<[Challenge]> {
    let challenge = match scheme {
        Scheme::Bearer => Challenge::bearer(),
        other => Challenge::new(other.as_str().to_owned()),
    };
    Arc::from([challenge])
}

impl<P: Clone + Send + Sync + 'static> FakeAuthenticator<P> {
    /// Authenticates every request as `principal` with `identity`.
    pub fn new(principal: P, identity: Identity) -> Self {
        Self::authenticated(Authenticated::new(principal, identity))
    }

    /// Authenticates every request with `authenticated`: use
    /// [`Authenticated::with_extension`] to add values (a
    /// [`CredentialWatch`](crate::lifetime::CredentialWatch)...) and
    /// [`Authenticated::from_cookie`] to test `Vary: Cookie`.
    pub fn authenticated(authenticated: Authenticated<P>) -> Self {
        let challenge = challenge_for(authenticated.identity.scheme());
        FakeAuthenticator {
            outcome: Arc::new(Outcome::Authenticated(authenticated)),
            challenge,
        }
    }

    /// Finds no credentials in any request: behind [`AuthLayer::optional`]
    /// requests go on anonymously, behind [`AuthLayer::new`] they get
    /// `401` with a `Bearer` challenge.
    pub fn anonymous() -> Self {
        FakeAuthenticator {
            outcome: Arc::new(Outcome::Anonymous),
            challenge: challenge_for(&Scheme::Bearer),
        }
    }

    /// Refuses every request with the error `error` builds, e.g.
    /// `|| AuthError::unavailable("store down")` to test the `503` of a
    /// backend outage.
    pub fn refusing(error: fn() -> AuthError) -> Self {
        FakeAuthenticator {
            outcome: Arc::new(Outcome::Refused(error)),
            challenge: challenge_for(&Scheme::Bearer),
        }
    }
}

impl FakeAuthenticator<Identity> {
    /// Authenticates every request with `identity`, which is also the
    /// principal (`Auth<Identity>`).
    pub fn identity(identity: Identity) -> Self {
        Self::new(identity.clone(), identity)
    }
}

impl<P: Clone + Send + Sync + 'static> Authenticator for FakeAuthenticator<P> {
    type Credentials = ();
    type Principal = P;
    type Future = Ready<Result<Authenticated<P>, AuthError>>;

    fn extract(&self, _request: &Parts) -> Result<Option<()>, AuthError> {
        match &*self.outcome {
            Outcome::Anonymous => Ok(None),
            _ => Ok(Some(())),
        }
    }

    fn authenticate(&self, (): ()) -> Self::Future {
        ready(match &*self.outcome {
            Outcome::Authenticated(a) => Ok(a.clone()),
            Outcome::Refused(error) => Err(error()),
            Outcome::Anonymous => Err(AuthError::missing()),
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.challenge.to_vec()
    }
}

/// A layer that authenticates every request as a fixed principal and
/// [`Identity`], without credentials: the production [`AuthLayer`] driven
/// by a [`FakeAuthenticator`], so what handlers and policies see is what
/// they see in production. See the [module docs](crate::testing).
///
/// **For tests only**: it lets everyone in.
pub struct FakeAuthLayer<P> {
    inner: AuthLayer<FakeAuthenticator<P>>,
}

impl<P> Clone for FakeAuthLayer<P> {
    fn clone(&self) -> Self {
        FakeAuthLayer {
            inner: self.inner.clone(),
        }
    }
}

impl<P: Clone + Send + Sync + 'static> fmt::Debug for FakeAuthLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAuthLayer")
            .field("authenticator", self.inner.authenticator())
            .finish()
    }
}

impl<P: Clone + Send + Sync + 'static> FakeAuthLayer<P> {
    /// Authenticates every request as `principal` with `identity`.
    pub fn new(principal: P, identity: Identity) -> Self {
        Self::from_authenticator(FakeAuthenticator::new(principal, identity))
    }

    /// Wraps any [`FakeAuthenticator`] (anonymous, refusing...) in a
    /// required [`AuthLayer`].
    pub fn from_authenticator(authenticator: FakeAuthenticator<P>) -> Self {
        FakeAuthLayer {
            inner: AuthLayer::new(authenticator).backend_timeout(None::<Duration>),
        }
    }

    /// Renders rejections of the layers inside (`RequireLayer`, guards,
    /// extractors) with `handler`, as [`AuthLayer::on_rejection`] does.
    pub fn on_rejection(self, handler: impl RejectionHandler) -> Self {
        self.rejections(Rejections::custom(handler))
    }

    /// Uses `rejections` for the layers inside, as
    /// [`AuthLayer::rejections`] does.
    pub fn rejections(self, rejections: Rejections) -> Self {
        FakeAuthLayer {
            inner: self.inner.rejections(rejections),
        }
    }

    /// The [`AuthLayer`] inside.
    pub fn into_inner(self) -> AuthLayer<FakeAuthenticator<P>> {
        self.inner
    }
}

impl FakeAuthLayer<Identity> {
    /// Authenticates every request with `identity`, which is also the
    /// principal (`Auth<Identity>`).
    pub fn identity(identity: Identity) -> Self {
        Self::from_authenticator(FakeAuthenticator::identity(identity))
    }
}

impl<S, P: Clone + Send + Sync + 'static> Layer<S> for FakeAuthLayer<P> {
    type Service = AuthService<S, FakeAuthenticator<P>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(inner)
    }
}

/// Where a [`StaticAuthenticator`] reads its tokens.
#[derive(Clone, Debug)]
enum Source {
    Bearer,
    Header(HeaderName),
}

struct StaticInner<P> {
    source: Source,
    realm: Option<Arc<str>>,
    entries: Vec<(Secret, Authenticated<P>)>,
}

/// An [`Authenticator`] for tests that maps fixed tokens to principals:
/// `Authorization: Bearer <token>` ([`bearer`](Self::bearer)) or a header
/// such as `x-api-key` ([`header`](Self::header)).
///
/// Credentials are parsed as strictly as by the production authenticators
/// (one header, visible ASCII, 8 KiB at most, token68 for bearer tokens:
/// otherwise `400`); an unknown token is `401 invalid_token`. Tokens are
/// compared in constant time, but they are kept in memory as given:
/// **for tests only**.
///
/// ```
/// use tower_auth::testing::StaticAuthenticator;
/// use tower_auth::{Identity, Scheme};
///
/// let auth = StaticAuthenticator::bearer()
///     .realm("api")
///     .identity("alice-token", Identity::new("alice", Scheme::Bearer).with_roles(["admin"]))
///     .identity("bob-token", Identity::new("bob", Scheme::Bearer));
/// # let _ = auth;
/// ```
pub struct StaticAuthenticator<P> {
    inner: Arc<StaticInner<P>>,
}

impl<P> Clone for StaticAuthenticator<P> {
    fn clone(&self) -> Self {
        StaticAuthenticator {
            inner: self.inner.clone(),
        }
    }
}

impl<P> fmt::Debug for StaticAuthenticator<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticAuthenticator")
            .field("source", &self.inner.source)
            .field("realm", &self.inner.realm)
            .field("tokens", &self.inner.entries.len())
            .finish()
    }
}

impl<P: Clone + Send + Sync + 'static> StaticAuthenticator<P> {
    fn with_source(source: Source) -> Self {
        StaticAuthenticator {
            inner: Arc::new(StaticInner {
                source,
                realm: None,
                entries: Vec::new(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut StaticInner<P>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let mut inner = StaticInner {
                    source: self.inner.source.clone(),
                    realm: self.inner.realm.clone(),
                    entries: self.inner.entries.clone(),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Reads `Authorization: Bearer <token>`; challenge `Bearer`.
    pub fn bearer() -> Self {
        Self::with_source(Source::Bearer)
    }

    /// Reads the token from header `name` (e.g. `x-api-key`); challenge
    /// `ApiKey header="<name>"`, as the API key authenticator's.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name (a bug in the test).
    pub fn header(name: &str) -> Self {
        let name = HeaderName::try_from(name).unwrap_or_else(|_| {
            panic!("StaticAuthenticator::header: {name:?} is not a header name")
        });
        Self::with_source(Source::Header(name))
    }

    /// Adds `realm="<realm>"` to the challenge.
    pub fn realm(self, realm: impl AsRef<str>) -> Self {
        let realm = Arc::from(realm.as_ref());
        self.edit(|i| i.realm = Some(realm))
    }

    /// Accepts `token` for `principal` with `identity`.
    pub fn token(self, token: impl Into<String>, principal: P, identity: Identity) -> Self {
        self.authenticated(token, Authenticated::new(principal, identity))
    }

    /// Accepts `token` with a prepared [`Authenticated`] (extensions,
    /// cookie mark).
    pub fn authenticated(self, token: impl Into<String>, authenticated: Authenticated<P>) -> Self {
        let token = Secret::new(token.into());
        self.edit(|i| i.entries.push((token, authenticated)))
    }
}

impl StaticAuthenticator<Identity> {
    /// Accepts `token` with `identity`, which is also the principal.
    pub fn identity(self, token: impl Into<String>, identity: Identity) -> Self {
        self.token(token, identity.clone(), identity)
    }
}

impl<P: Clone + Send + Sync + 'static> Authenticator for StaticAuthenticator<P> {
    type Credentials = Secret;
    type Principal = P;
    type Future = Ready<Result<Authenticated<P>, AuthError>>;

    fn extract(&self, request: &Parts) -> Result<Option<Secret>, AuthError> {
        match &self.inner.source {
            Source::Bearer => bearer_token(&request.headers, DEFAULT_MAX_LEN),
            Source::Header(name) => match single_header(&request.headers, name)? {
                None => Ok(None),
                Some(value) => {
                    let text = visible_ascii(value, name, DEFAULT_MAX_LEN)?;
                    if text.is_empty() {
                        return Err(AuthError::invalid_request(format!("empty {name} header")));
                    }
                    Ok(Some(Secret::new(text)))
                }
            },
        }
    }

    fn authenticate(&self, token: Secret) -> Self::Future {
        // Every entry is compared, in constant time each.
        let mut found = None;
        for (known, authenticated) in &self.inner.entries {
            if known.ct_eq(token.expose()) && found.is_none() {
                found = Some(authenticated);
            }
        }
        ready(match found {
            Some(a) => Ok(a.clone()),
            None => Err(AuthError::invalid_credentials("invalid or expired token")),
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        let realm = self.inner.realm.as_ref();
        vec![match &self.inner.source {
            Source::Bearer => Challenge::bearer().realm(realm),
            Source::Header(name) => Challenge::new("ApiKey")
                .realm(realm)
                .param("header", name.as_str().to_owned()),
        }]
    }
}
