//! The [`Policy`] trait, its [`Decision`] and the [`Denied`] refusal.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::combinator::{And, Not, Or};
use crate::error::BoxError;
use crate::identity::{Identity, Scheme};
use crate::rejection::{insufficient_privileges_header, Challenge, Rejection, RejectionKind};

/// Decides whether an authenticated request may go on. Enforced by
/// [`RequireLayer`](super::RequireLayer) and [`Guard`](super::Guard).
///
/// Checking has one synchronous step that may hand over an owned future,
/// like [`Authenticator`](crate::Authenticator): [`check`](Policy::check)
/// looks at the [`Identity`] and the request head and answers
/// [`Decision::Allow`], [`Decision::Deny`] or, when it must look something
/// up, [`Decision::Pending`] with a future that owns what it needs. Role,
/// permission and scope policies (and `and` / `or` / `not` of them) never
/// return `Pending`: the layer decides them in `call`, without allocating,
/// and only takes the asynchronous path for policies that need it.
///
/// Policies that always decide immediately use [`Immediate`] as their
/// future type. Implementations are cheap to clone (state behind an `Arc`):
/// axum clones the whole route service for each request.
///
/// # Example
///
/// ```
/// use http::request::Parts;
/// use tower_auth::authz::{Decision, Denied, Immediate, Policy};
/// use tower_auth::Identity;
///
/// /// Only allows read-only methods.
/// #[derive(Clone)]
/// struct ReadOnly;
///
/// impl Policy for ReadOnly {
///     type Future = Immediate;
///
///     fn check(&self, _: &Identity, request: &Parts) -> Decision<Immediate> {
///         if request.method.is_safe() {
///             Decision::Allow
///         } else {
///             Decision::Deny(Denied::forbidden("this API is read-only"))
///         }
///     }
/// }
/// ```
pub trait Policy: Clone + Send + Sync + 'static {
    /// The future of a [`Decision::Pending`]: [`Immediate`] for policies
    /// that never wait.
    type Future: Future<Output = Result<(), Denied>> + Send + 'static;

    /// Decides, or starts deciding, whether `identity` may make `request`.
    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Self::Future>;

    /// Both `self` and `other` must allow. Denials that need no waiting win
    /// first, then pending checks are awaited in order; the first denial is
    /// reported.
    fn and<B: Policy>(self, other: B) -> And<Self, B> {
        And::new(self, other)
    }

    /// `self` or `other` must allow. A synchronous allow on either side
    /// decides without awaiting the other side's future, so
    /// `role("admin").or(owner_check)` costs admins no lookup. When both
    /// deny, the more severe denial is reported (unavailable, then not
    /// found, then forbidden), the right one on a tie: put the cheap,
    /// general check first and the specific one last.
    fn or<B: Policy>(self, other: B) -> Or<Self, B> {
        Or::new(self, other)
    }

    /// Allows when `self` denies a right, and denies when `self` allows.
    /// `not` fails closed: a "not found" or "unavailable" denial stays a
    /// denial, and so does the denial of a policy built from an empty list
    /// of roles, permissions or scopes (`not(any_role([]))` allows nobody).
    fn not(self) -> Not<Self> {
        Not::new(self)
    }
}

/// The answer of [`Policy::check`].
#[derive(Debug)]
#[must_use = "a decision must be enforced"]
pub enum Decision<F> {
    /// The request may go on.
    Allow,
    /// The request is refused.
    Deny(Denied),
    /// The policy must wait, e.g. for a database lookup; the future decides.
    Pending(F),
}

impl<F> Decision<F> {
    /// Maps the future of a pending decision.
    pub fn map_future<G>(self, f: impl FnOnce(F) -> G) -> Decision<G> {
        match self {
            Decision::Allow => Decision::Allow,
            Decision::Deny(d) => Decision::Deny(d),
            Decision::Pending(fut) => Decision::Pending(f(fut)),
        }
    }
}

impl<F> From<Result<(), Denied>> for Decision<F> {
    fn from(result: Result<(), Denied>) -> Self {
        match result {
            Ok(()) => Decision::Allow,
            Err(denied) => Decision::Deny(denied),
        }
    }
}

impl<F> From<bool> for Decision<F> {
    /// `false` is a denial with the message "access denied".
    fn from(allowed: bool) -> Self {
        allowed.into_verdict().into()
    }
}

/// The future type of policies that always decide immediately. It has no
/// values, so the compiler removes the asynchronous path of the layer for
/// such policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immediate {}

impl Future for Immediate {
    type Output = Result<(), Denied>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match *self {}
    }
}

/// What a [`policy_fn`](super::policy_fn) closure may return: `bool`
/// (`false` is a `403` "access denied") or `Result<(), Denied>`.
pub trait IntoVerdict {
    /// `Ok(())` to allow, `Err` to deny.
    fn into_verdict(self) -> Result<(), Denied>;
}

impl IntoVerdict for bool {
    fn into_verdict(self) -> Result<(), Denied> {
        if self {
            Ok(())
        } else {
            Err(Denied::forbidden("access denied"))
        }
    }
}

impl IntoVerdict for Result<(), Denied> {
    fn into_verdict(self) -> Result<(), Denied> {
        self
    }
}

/// A sorted, de-duplicated list of role, permission or scope names;
/// cloning is a reference-count increment.
pub(crate) type Names = Arc<[Box<str>]>;

pub(crate) fn names<I, S>(items: I) -> Names
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    crate::identity::sorted(items).into()
}

/// The client-visible message of a step-up denial.
const STEP_UP_MESSAGE: &str = "a stronger or more recent authentication is required";

/// What a step-up denial asks for (RFC 9470 §3).
#[derive(Debug)]
pub(crate) struct StepUpRequirement {
    /// Acceptable `acr` values, space separated, in order of preference.
    pub(crate) acr_values: Option<Box<str>>,
    /// The maximum age of the authentication, in seconds.
    pub(crate) max_age: Option<u64>,
}

/// Why a [`Policy`] refused a request.
///
/// Built-in policies record which right was missing. The client gets a
/// generic `403` message (`insufficient permissions`) unless naming is
/// turned on with
/// [`RequireLayer::name_missing_rights`](super::RequireLayer::name_missing_rights)
/// or [`Rejections::name_missing_rights`](crate::rejection::Rejections::name_missing_rights)
/// (`permission 'posts:delete' required`); logs get the precise
/// [`message`](Denied::message). Bearer tokens lacking a permission or
/// scope get `WWW-Authenticate: Bearer error="insufficient_scope",
/// scope="posts:delete"` either way (RFC 6750 needs the scope), and other
/// `403`s of bearer tokens (a role, an ownership check) get
/// `Bearer error="insufficient_scope"` without `scope`.
/// Your policies can answer `404` for unknown resources
/// ([`Denied::not_found`]) and `503` when a lookup fails
/// ([`Denied::unavailable`]).
///
/// The messages of [`Denied::forbidden`] and [`Denied::not_found`] are
/// shown to the client: never put a credential in one.
pub struct Denied(Reason);

enum Reason {
    /// None of these roles (any one would do).
    Roles(Names),
    /// Not all of these permissions.
    Permissions(Names),
    /// Not all of these scopes.
    Scopes(Names),
    Forbidden(Cow<'static, str>),
    NotFound(Cow<'static, str>),
    Unavailable(BoxError),
    /// RFC 9470: the authentication is too weak or too old.
    StepUp(Arc<StepUpRequirement>),
}

/// The kind of a [`Denied`]: it decides the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeniedKind {
    /// The identity lacks a right: `403` (gRPC `PERMISSION_DENIED`).
    Forbidden,
    /// The resource the request is about does not exist: `404` (gRPC
    /// `NOT_FOUND`).
    NotFound,
    /// The policy could not decide, e.g. its database is down: `503`
    /// (gRPC `UNAVAILABLE`). The request fails closed.
    Unavailable,
    /// The user must authenticate again, more strongly or more recently
    /// (RFC 9470 step-up): `401` with
    /// `error="insufficient_user_authentication"` (gRPC `UNAUTHENTICATED`).
    InsufficientUserAuthentication,
}

impl Denied {
    /// The identity may not do this: `403` with `message`.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Denied(Reason::Forbidden(message.into()))
    }

    /// The resource does not exist: `404` with `message`.
    ///
    /// This hides which resources exist only if the policy also answers
    /// `404`, not `403`, for resources that exist but the caller may not
    /// see; otherwise the difference between the two statuses tells.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Denied(Reason::NotFound(message.into()))
    }

    /// The policy could not decide because a backend failed: `503`.
    /// `source` is logged at `warn` level and never sent to the client.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Denied(Reason::Unavailable(source.into()))
    }

    /// The user must authenticate again (RFC 9470 step-up): with one of
    /// `acr_values` (space separated, in order of preference) and/or no
    /// longer than `max_age` seconds ago. `401` with
    /// `WWW-Authenticate: Bearer error="insufficient_user_authentication",
    /// acr_values="…", max_age="…"` for bearer tokens. See
    /// [`step_up`](super::step_up).
    pub fn insufficient_user_authentication(
        acr_values: Option<String>,
        max_age: Option<u64>,
    ) -> Self {
        Denied(Reason::StepUp(Arc::new(StepUpRequirement {
            acr_values: acr_values.map(String::into_boxed_str),
            max_age,
        })))
    }

    pub(crate) fn step_up(required: &Arc<StepUpRequirement>) -> Self {
        Denied(Reason::StepUp(Arc::clone(required)))
    }

    /// The identity lacks `role`: `403`.
    pub fn missing_role(role: impl Into<String>) -> Self {
        Denied(Reason::Roles(names([role])))
    }

    /// The identity lacks `permission`: `403`, and for bearer tokens
    /// `error="insufficient_scope"` with `scope="<permission>"`.
    pub fn missing_permission(permission: impl Into<String>) -> Self {
        Denied(Reason::Permissions(names([permission])))
    }

    /// The identity lacks `scope`: `403`, and for bearer tokens
    /// `error="insufficient_scope"` with `scope="<scope>"`.
    pub fn missing_scope(scope: impl Into<String>) -> Self {
        Denied(Reason::Scopes(names([scope])))
    }

    pub(crate) fn roles(any_of: &Names) -> Self {
        Denied(Reason::Roles(Arc::clone(any_of)))
    }

    pub(crate) fn permissions(all_of: &Names) -> Self {
        Denied(Reason::Permissions(Arc::clone(all_of)))
    }

    pub(crate) fn scopes(all_of: &Names) -> Self {
        Denied(Reason::Scopes(Arc::clone(all_of)))
    }

    /// The kind of denial.
    pub fn kind(&self) -> DeniedKind {
        match self.0 {
            Reason::Roles(_)
            | Reason::Permissions(_)
            | Reason::Scopes(_)
            | Reason::Forbidden(_) => DeniedKind::Forbidden,
            Reason::NotFound(_) => DeniedKind::NotFound,
            Reason::Unavailable(_) => DeniedKind::Unavailable,
            Reason::StepUp(_) => DeniedKind::InsufficientUserAuthentication,
        }
    }

    /// The status of the default rendering.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            DeniedKind::Forbidden => StatusCode::FORBIDDEN,
            DeniedKind::NotFound => StatusCode::NOT_FOUND,
            DeniedKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            DeniedKind::InsufficientUserAuthentication => StatusCode::UNAUTHORIZED,
        }
    }

    /// The message the client gets by default: the message of
    /// [`Denied::forbidden`] and [`Denied::not_found`], and for the denials
    /// of role, permission and scope policies a text that names no right:
    /// `insufficient permissions` (roles, permissions) or
    /// `insufficient scope` (scopes).
    pub fn public_message(&self) -> Cow<'_, str> {
        match self.generic_message() {
            Some(m) => Cow::Borrowed(m),
            None => self.message(),
        }
    }

    /// The fixed client message of the denials of role, permission and
    /// scope policies.
    fn generic_message(&self) -> Option<&'static str> {
        match &self.0 {
            Reason::Roles(n) | Reason::Permissions(n) | Reason::Scopes(n) if n.is_empty() => {
                Some("access denied")
            }
            Reason::Roles(_) | Reason::Permissions(_) => Some("insufficient permissions"),
            Reason::Scopes(_) => Some("insufficient scope"),
            _ => None,
        }
    }

    /// The precise message, e.g. `permission 'posts:delete' required`: it
    /// is logged, and shown to the client only when naming the missing
    /// rights is turned on (see [`Denied::into_detailed_rejection`]).
    pub fn message(&self) -> Cow<'_, str> {
        fn quoted(prefix: &str, names: &[Box<str>], suffix: &str) -> String {
            let mut out = String::from(prefix);
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push('\'');
                out.push_str(name);
                out.push('\'');
            }
            out.push_str(suffix);
            out
        }
        let plural = |names: &[Box<str>]| names.len() > 1;
        match &self.0 {
            Reason::Roles(n) | Reason::Permissions(n) | Reason::Scopes(n) if n.is_empty() => {
                Cow::Borrowed("access denied")
            }
            Reason::Roles(r) if plural(r) => quoted("one of the roles ", r, " required").into(),
            Reason::Roles(r) => quoted("role ", r, " required").into(),
            Reason::Permissions(p) if plural(p) => quoted("permissions ", p, " required").into(),
            Reason::Permissions(p) => quoted("permission ", p, " required").into(),
            Reason::Scopes(s) if plural(s) => quoted("scopes ", s, " required").into(),
            Reason::Scopes(s) => quoted("scope ", s, " required").into(),
            Reason::Forbidden(m) | Reason::NotFound(m) => Cow::Borrowed(m),
            Reason::Unavailable(_) => Cow::Borrowed("authorization is temporarily unavailable"),
            Reason::StepUp(_) => Cow::Borrowed(STEP_UP_MESSAGE),
        }
    }

    /// The permissions or scopes whose absence caused the denial, space
    /// separated as in RFC 6750 `scope`; `None` for other denials, and for
    /// the denials of an empty requirement list.
    pub fn required_scope(&self) -> Option<String> {
        match &self.0 {
            Reason::Permissions(names) | Reason::Scopes(names) if !names.is_empty() => {
                Some(names.join(" "))
            }
            _ => None,
        }
    }

    /// Renders the denial for `identity` with the
    /// [`public_message`](Denied::public_message), which names no role,
    /// permission or scope:
    ///
    /// * a missing permission or scope of a bearer-authenticated identity
    ///   is `insufficient_scope` with `challenge`'s scheme and parameters
    ///   and the `scope` that would help (see
    ///   [`Rejection::insufficient_scopes`]);
    /// * another `403` of a bearer-authenticated identity (a missing role,
    ///   a custom policy's [`Denied::forbidden`]) carries `challenge` with
    ///   `error="insufficient_scope"` and no `scope` (see
    ///   [`Rejection::insufficient_privileges`]);
    /// * other denials are plain `403`, `404` or `503`, among them the
    ///   denial of an empty requirement list, which no token would lift.
    ///
    /// Call [`Rejection::with_grpc`] on the result for gRPC requests.
    pub fn into_rejection(self, identity: Option<&Identity>, challenge: &Challenge) -> Rejection {
        let rendered = insufficient_privileges_header(challenge);
        self.render(identity, challenge, rendered.as_ref(), false)
    }

    /// Like [`into_rejection`](Denied::into_rejection), with the precise
    /// [`message`](Denied::message) naming the missing rights.
    pub fn into_detailed_rejection(
        self,
        identity: Option<&Identity>,
        challenge: &Challenge,
    ) -> Rejection {
        let rendered = insufficient_privileges_header(challenge);
        self.render(identity, challenge, rendered.as_ref(), true)
    }

    /// `privileges` is `challenge` rendered by
    /// [`insufficient_privileges_header`], once per layer.
    pub(crate) fn render(
        self,
        identity: Option<&Identity>,
        challenge: &Challenge,
        privileges: Option<&HeaderValue>,
        name_missing_rights: bool,
    ) -> Rejection {
        let bearer = identity.is_some_and(|id| *id.scheme() == Scheme::Bearer);
        let message = |d: &Denied| -> Cow<'static, str> {
            match d.generic_message() {
                Some(generic) if !name_missing_rights => Cow::Borrowed(generic),
                _ => Cow::Owned(d.message().into_owned()),
            }
        };
        match self.0 {
            Reason::Permissions(ref names) | Reason::Scopes(ref names)
                if bearer && !names.is_empty() =>
            {
                Rejection::insufficient_scopes(challenge, names.iter())
            }
            Reason::Unavailable(ref source) => {
                tracing::warn!(error = %source, "authorization backend failed");
                Rejection::new(RejectionKind::Unavailable, self.message().into_owned())
            }
            Reason::NotFound(message) => Rejection::not_found(message),
            Reason::StepUp(ref required) => {
                // RFC 9470 challenges are bearer challenges: other schemes
                // get the 401 and its body, without a challenge they could
                // not act on.
                let challenge = bearer.then_some(challenge);
                Rejection::insufficient_user_authentication(
                    challenge,
                    STEP_UP_MESSAGE,
                    required.acr_values.as_deref(),
                    required.max_age,
                )
            }
            Reason::Forbidden(message) if bearer => {
                Rejection::forbidden_with_challenge(message, privileges.cloned())
            }
            Reason::Forbidden(message) => Rejection::forbidden(message),
            // An empty requirement list allows nobody: no token would help,
            // so no challenge.
            Reason::Roles(ref names)
            | Reason::Permissions(ref names)
            | Reason::Scopes(ref names)
                if names.is_empty() =>
            {
                Rejection::forbidden(message(&self))
            }
            _ if bearer => Rejection::forbidden_with_challenge(message(&self), privileges.cloned()),
            _ => Rejection::forbidden(message(&self)),
        }
    }

    /// How much a denial says: `or` reports the most severe one.
    pub(crate) fn severity(&self) -> u8 {
        match self.kind() {
            DeniedKind::Forbidden => 0,
            // A step-up is something the client can do, so `or` reports it
            // rather than a plain refusal of the other branch.
            DeniedKind::InsufficientUserAuthentication => 1,
            DeniedKind::NotFound => 2,
            DeniedKind::Unavailable => 3,
        }
    }

    /// Whether `not` may turn this denial into an allow: only a missing
    /// right, never "not found" or "unavailable", and never the denial of
    /// an empty requirement list, which must not allow anybody.
    pub(crate) fn is_invertible(&self) -> bool {
        match &self.0 {
            Reason::Roles(names) | Reason::Permissions(names) | Reason::Scopes(names) => {
                !names.is_empty()
            }
            _ => self.kind() == DeniedKind::Forbidden,
        }
    }
}

impl fmt::Debug for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Denied")
            .field("kind", &self.kind())
            .field("message", &self.message())
            .finish()
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Denied {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Reason::Unavailable(source) => Some(&**source),
            _ => None,
        }
    }
}
