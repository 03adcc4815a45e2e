use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use pin_project_lite::pin_project;

use crate::error::AuthError;
use crate::identity::Identity;
use crate::rejection::Challenge;

/// A boxed authentication future, for authenticators that await I/O.
pub type BoxAuthFuture<P> =
    Pin<Box<dyn Future<Output = Result<Authenticated<P>, AuthError>> + Send + 'static>>;

/// The result of a successful authentication: the authenticator's typed
/// principal and the non-generic [`Identity`] derived from it.
///
/// Build it with [`Authenticated::new`]; an authenticator that read the
/// credentials from a cookie marks it with
/// [`from_cookie`](Authenticated::from_cookie), so that the
/// [`AuthLayer`](crate::AuthLayer) adds `Vary: Cookie` to the response.
#[derive(Clone, Debug)]
pub struct Authenticated<P> {
    /// The typed principal (a user, a key record, JWT claims...).
    pub principal: P,
    /// Subject, roles, permissions, scopes and scheme.
    pub identity: Identity,
    /// The credentials came from a cookie.
    from_cookie: bool,
    /// More values for the request extensions (e.g. a
    /// [`CredentialWatch`](crate::lifetime::CredentialWatch)).
    extensions: http::Extensions,
}

impl<P> Authenticated<P> {
    /// Pairs a principal with its identity.
    pub fn new(principal: P, identity: Identity) -> Self {
        Authenticated {
            principal,
            identity,
            from_cookie: false,
            extensions: http::Extensions::new(),
        }
    }

    /// Adds `value` to what the [`AuthLayer`](crate::AuthLayer) inserts into
    /// the request extensions besides the principal and the identity, e.g.
    /// the [`CredentialWatch`](crate::lifetime::CredentialWatch) of the
    /// credentials. [`map`](Authenticator::map) and
    /// [`and_then`](Authenticator::and_then) keep these values when their
    /// closure builds a new `Authenticated` without any.
    #[must_use]
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The values added with [`with_extension`](Self::with_extension).
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Takes the values added with [`with_extension`](Self::with_extension).
    pub fn take_extensions(&mut self) -> http::Extensions {
        std::mem::take(&mut self.extensions)
    }

    /// Marks the authentication as made from a cookie: the response then
    /// depends on the request's `Cookie` header, and the
    /// [`AuthLayer`](crate::AuthLayer) adds `Cookie` to its `Vary` header
    /// (merged with the `Vary` the inner service set, never duplicated), so
    /// that a shared cache does not serve one user's page to another.
    ///
    /// [`map`](Authenticator::map), [`map_principal`](Authenticator::map_principal)
    /// and [`and_then`](Authenticator::and_then) keep the mark, even when
    /// their closure builds a new `Authenticated`.
    #[must_use]
    pub fn from_cookie(mut self) -> Self {
        self.from_cookie = true;
        self
    }

    /// Whether the authentication was made from a cookie.
    pub fn is_from_cookie(&self) -> bool {
        self.from_cookie
    }

    /// Replaces the principal, keeping the identity and the cookie mark.
    pub fn map_principal<Q>(self, f: impl FnOnce(P) -> Q) -> Authenticated<Q> {
        Authenticated {
            principal: f(self.principal),
            identity: self.identity,
            from_cookie: self.from_cookie,
            extensions: self.extensions,
        }
    }
}

/// Finds who made a request. Driven by [`AuthLayer`](crate::AuthLayer).
///
/// Authentication has two steps, so that authenticators compose with
/// [`or`](Authenticator::or) and so that the future owns what it needs:
///
/// 1. [`extract`](Authenticator::extract) looks at the request head (headers,
///    URI, extensions; never the body) synchronously and returns the
///    credentials it is responsible for: `Ok(None)` when there are none,
///    `Err` when they are present but malformed (`400`).
/// 2. [`authenticate`](Authenticator::authenticate) checks them, possibly
///    against a store, and returns the principal or an [`AuthError`].
///
/// Implementations are cheap to clone (state behind an `Arc`).
///
/// # Example
///
/// ```
/// use std::future::{ready, Ready};
/// use http::request::Parts;
/// use tower_auth::{AuthError, Authenticated, Authenticator, Identity, Scheme};
/// use tower_auth::rejection::Challenge;
///
/// /// Trusts an `x-user` header set by a gateway on a private network.
/// #[derive(Clone)]
/// struct GatewayUser;
///
/// impl Authenticator for GatewayUser {
///     type Credentials = String;
///     type Principal = String;
///     type Future = Ready<Result<Authenticated<String>, AuthError>>;
///
///     fn extract(&self, req: &Parts) -> Result<Option<String>, AuthError> {
///         match req.headers.get("x-user") {
///             None => Ok(None),
///             Some(v) => v
///                 .to_str()
///                 .map(|s| Some(s.to_owned()))
///                 .map_err(|_| AuthError::invalid_request("x-user is not visible ASCII")),
///         }
///     }
///
///     fn authenticate(&self, user: String) -> Self::Future {
///         let identity = Identity::new(user.clone(), Scheme::Other("Gateway".into()));
///         ready(Ok(Authenticated::new(user, identity)))
///     }
///
///     fn challenges(&self) -> Vec<Challenge> {
///         vec![Challenge::new("Gateway")]
///     }
/// }
/// ```
pub trait Authenticator: Clone + Send + Sync + 'static {
    /// The credentials taken from the request.
    type Credentials: Send + 'static;
    /// The typed principal put into request extensions.
    type Principal: Clone + Send + Sync + 'static;
    /// The future returned by [`authenticate`](Authenticator::authenticate).
    type Future: Future<Output = Result<Authenticated<Self::Principal>, AuthError>> + Send + 'static;

    /// Takes this authenticator's credentials from the request head.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] (usually [`AuthError::invalid_request`]) when the
    /// credentials are present but malformed.
    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError>;

    /// Checks the credentials.
    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future;

    /// The `WWW-Authenticate` challenges sent with a `401` when credentials
    /// are missing.
    fn challenges(&self) -> Vec<Challenge>;

    /// Runs both steps outside a layer: `Ok(None)` when the request carries
    /// none of this authenticator's credentials. Useful where the decision
    /// depends on the request body, e.g. per-method security in a JSON-RPC
    /// endpoint, or on a WebSocket upgrade.
    fn authenticate_request(&self, request: &Parts) -> AuthenticateRequest<Self::Future> {
        match self.extract(request) {
            Ok(Some(credentials)) => AuthenticateRequest::Pending {
                fut: self.authenticate(credentials),
            },
            Ok(None) => AuthenticateRequest::Done { error: None },
            Err(e) => AuthenticateRequest::Done { error: Some(e) },
        }
    }

    /// Tries `self`, and `other` when `self` finds no credentials of its own:
    /// the first authenticator whose credentials are present decides, so an
    /// invalid API key is a `401` even when a session cookie is present too.
    fn or<B>(self, other: B) -> Or<Self, B>
    where
        B: Authenticator<Principal = Self::Principal>,
    {
        Or {
            first_challenges: self.challenges().into(),
            second_challenges: other.challenges().into(),
            first: self,
            second: other,
        }
    }

    /// Maps the result of a successful authentication synchronously, e.g.
    /// to turn JWT claims and API key records into one user type so that
    /// they can be combined with [`or`](Authenticator::or), or to expand
    /// roles into permissions.
    fn map<F, P>(self, f: F) -> Map<Self, F>
    where
        F: Fn(Authenticated<Self::Principal>) -> Authenticated<P> + Send + Sync + 'static,
        P: Clone + Send + Sync + 'static,
    {
        Map {
            inner: self,
            f: Arc::new(f),
        }
    }

    /// Maps the principal only, keeping the identity.
    fn map_principal<F, P>(self, f: F) -> MapPrincipal<Self, F>
    where
        F: Fn(Self::Principal) -> P + Send + Sync + 'static,
        P: Clone + Send + Sync + 'static,
    {
        MapPrincipal {
            inner: self,
            f: Arc::new(f),
        }
    }

    /// Continues a successful authentication asynchronously, e.g. to load
    /// the user named by a token's `sub` from a database. An error from `f`
    /// rejects the request like any authentication error.
    fn and_then<F, Fut, P>(self, f: F) -> AndThen<Self, F>
    where
        F: Fn(Authenticated<Self::Principal>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Authenticated<P>, AuthError>> + Send + 'static,
        P: Clone + Send + Sync + 'static,
    {
        AndThen {
            inner: self,
            f: Arc::new(f),
        }
    }
}

pin_project! {
    /// The future of [`Authenticator::authenticate_request`].
    #[project = AuthenticateRequestProj]
    #[allow(missing_docs)] // fields of variants: the future, the error
    pub enum AuthenticateRequest<F> {
        /// Waiting for the authenticator.
        Pending { #[pin] fut: F },
        /// No credentials (`error: None`), or malformed ones.
        Done { error: Option<AuthError> },
    }
}

impl<F> fmt::Debug for AuthenticateRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .finish_non_exhaustive()
    }
}

impl<F, P> Future for AuthenticateRequest<F>
where
    F: Future<Output = Result<Authenticated<P>, AuthError>>,
{
    type Output = Result<Option<Authenticated<P>>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthenticateRequestProj::Pending { fut } => fut.poll(cx).map(|r| r.map(Some)),
            AuthenticateRequestProj::Done { error } => Poll::Ready(match error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            }),
        }
    }
}

/// Credentials of an [`Or`]: whose they are.
#[derive(Debug)]
pub enum Either<L, R> {
    /// The first authenticator's.
    Left(L),
    /// The second authenticator's.
    Right(R),
}

/// Two authenticators, tried in order. See [`Authenticator::or`].
#[derive(Clone, Debug)]
pub struct Or<A, B> {
    first: A,
    second: B,
    first_challenges: Arc<[Challenge]>,
    second_challenges: Arc<[Challenge]>,
}

impl<A, B> Authenticator for Or<A, B>
where
    A: Authenticator,
    B: Authenticator<Principal = A::Principal>,
{
    type Credentials = Either<A::Credentials, B::Credentials>;
    type Principal = A::Principal;
    type Future = OrFuture<A::Future, B::Future>;

    /// Malformed credentials carry the challenges of the branch that found
    /// them, so that e.g. two `x-api-key` headers are not answered with a
    /// `Bearer error="invalid_request"` challenge.
    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        let first = self.first.extract(request);
        if let Some(c) = first.map_err(|e| e.or_challenges(&self.first_challenges))? {
            return Ok(Some(Either::Left(c)));
        }
        let second = self.second.extract(request);
        Ok(second
            .map_err(|e| e.or_challenges(&self.second_challenges))?
            .map(Either::Right))
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        match credentials {
            Either::Left(c) => OrFuture::Left {
                fut: self.first.authenticate(c),
                challenges: Arc::clone(&self.first_challenges),
            },
            Either::Right(c) => OrFuture::Right {
                fut: self.second.authenticate(c),
                challenges: Arc::clone(&self.second_challenges),
            },
        }
    }

    fn challenges(&self) -> Vec<Challenge> {
        let mut c = self.first_challenges.to_vec();
        for other in self.second_challenges.iter() {
            if !c.contains(other) {
                c.push(other.clone());
            }
        }
        c
    }
}

pin_project! {
    /// The future of an [`Or`]: errors carry the challenges of the branch
    /// that decided.
    #[project = OrFutureProj]
    #[derive(Debug)]
    #[allow(missing_docs)] // fields of variants: the future and the branch's challenges

    pub enum OrFuture<L, R> {
        /// The first authenticator's future.
        Left {
            #[pin]
            fut: L,
            challenges: Arc<[Challenge]>,
        },
        /// The second authenticator's future.
        Right {
            #[pin]
            fut: R,
            challenges: Arc<[Challenge]>,
        },
    }
}

impl<L, R, T> Future for OrFuture<L, R>
where
    L: Future<Output = Result<T, AuthError>>,
    R: Future<Output = Result<T, AuthError>>,
{
    type Output = Result<T, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (result, challenges) = match self.project() {
            OrFutureProj::Left { fut, challenges } => (ready!(fut.poll(cx)), challenges),
            OrFutureProj::Right { fut, challenges } => (ready!(fut.poll(cx)), challenges),
        };
        Poll::Ready(result.map_err(|e| e.or_challenges(challenges)))
    }
}

/// See [`Authenticator::map`].
pub struct Map<A, F> {
    inner: A,
    f: Arc<F>,
}

/// See [`Authenticator::map_principal`].
pub struct MapPrincipal<A, F> {
    inner: A,
    f: Arc<F>,
}

/// See [`Authenticator::and_then`].
pub struct AndThen<A, F> {
    inner: A,
    f: Arc<F>,
}

macro_rules! combinator_impls {
    ($name:ident) => {
        impl<A: Clone, F> Clone for $name<A, F> {
            fn clone(&self) -> Self {
                $name {
                    inner: self.inner.clone(),
                    f: Arc::clone(&self.f),
                }
            }
        }

        impl<A: fmt::Debug, F> fmt::Debug for $name<A, F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .finish_non_exhaustive()
            }
        }
    };
}

combinator_impls!(Map);
combinator_impls!(MapPrincipal);
combinator_impls!(AndThen);

impl<A, F, P> Authenticator for Map<A, F>
where
    A: Authenticator,
    F: Fn(Authenticated<A::Principal>) -> Authenticated<P> + Send + Sync + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Credentials = A::Credentials;
    type Principal = P;
    type Future = MapFuture<A::Future, F>;

    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        self.inner.extract(request)
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        MapFuture {
            fut: self.inner.authenticate(credentials),
            f: Arc::clone(&self.f),
        }
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.inner.challenges()
    }
}

impl<A, F, P> Authenticator for MapPrincipal<A, F>
where
    A: Authenticator,
    F: Fn(A::Principal) -> P + Send + Sync + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Credentials = A::Credentials;
    type Principal = P;
    type Future = MapPrincipalFuture<A::Future, F>;

    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        self.inner.extract(request)
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        MapPrincipalFuture {
            fut: self.inner.authenticate(credentials),
            f: Arc::clone(&self.f),
        }
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.inner.challenges()
    }
}

impl<A, F, Fut, P> Authenticator for AndThen<A, F>
where
    A: Authenticator,
    F: Fn(Authenticated<A::Principal>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Authenticated<P>, AuthError>> + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    type Credentials = A::Credentials;
    type Principal = P;
    type Future = BoxAuthFuture<P>;

    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        self.inner.extract(request)
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        let fut = self.inner.authenticate(credentials);
        let f = Arc::clone(&self.f);
        Box::pin(async move {
            let authenticated = fut.await?;
            let from_cookie = authenticated.from_cookie;
            let extensions = authenticated.extensions.clone();
            match f(authenticated).await {
                Ok(mut next) => {
                    next.from_cookie |= from_cookie;
                    if next.extensions.is_empty() {
                        next.extensions = extensions;
                    }
                    Ok(next)
                }
                Err(e) if from_cookie => Err(e.from_cookie()),
                Err(e) => Err(e),
            }
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.inner.challenges()
    }
}

pin_project! {
    /// The future of a [`Map`].
    pub struct MapFuture<Fut, F> {
        #[pin]
        fut: Fut,
        f: Arc<F>,
    }
}

impl<Fut, F, P, Q> Future for MapFuture<Fut, F>
where
    Fut: Future<Output = Result<Authenticated<P>, AuthError>>,
    F: Fn(Authenticated<P>) -> Authenticated<Q>,
{
    type Output = Result<Authenticated<Q>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        Poll::Ready(result.map(|a| {
            let from_cookie = a.from_cookie;
            let extensions = a.extensions.clone();
            let mut next = (this.f)(a);
            next.from_cookie |= from_cookie;
            if next.extensions.is_empty() {
                next.extensions = extensions;
            }
            next
        }))
    }
}

impl<Fut, F> fmt::Debug for MapFuture<Fut, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of a [`MapPrincipal`].
    pub struct MapPrincipalFuture<Fut, F> {
        #[pin]
        fut: Fut,
        f: Arc<F>,
    }
}

impl<Fut, F, P, Q> Future for MapPrincipalFuture<Fut, F>
where
    Fut: Future<Output = Result<Authenticated<P>, AuthError>>,
    F: Fn(P) -> Q,
{
    type Output = Result<Authenticated<Q>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        Poll::Ready(result.map(|a| a.map_principal(&**this.f)))
    }
}

impl<Fut, F> fmt::Debug for MapPrincipalFuture<Fut, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapPrincipalFuture").finish_non_exhaustive()
    }
}
