//! Step-up authentication (RFC 9470): a policy requiring an authentication
//! context class (`acr`) and/or a recent authentication (`auth_time`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;

use super::policy::{Decision, Denied, Immediate, Policy, StepUpRequirement};
use crate::identity::Identity;

/// How and when the user authenticated, as the `acr` and `auth_time`
/// claims of an access token tell (OpenID Connect Core §2, RFC 9470 §4).
///
/// [`step_up`] reads it from the principal that the
/// [`AuthLayer`](crate::AuthLayer) put into the request extensions.
/// Implement it for your JWT claims type:
///
/// ```
/// use serde::Deserialize;
/// use tower_auth::authz::AuthContext;
///
/// #[derive(Clone, Deserialize)]
/// struct Claims { sub: String, acr: Option<String>, auth_time: Option<u64> }
///
/// impl AuthContext for Claims {
///     fn acr(&self) -> Option<&str> { self.acr.as_deref() }
///     fn auth_time(&self) -> Option<u64> { self.auth_time }
/// }
/// ```
///
/// It is implemented for `serde_json::Value` (claims kept as JSON), for
/// [`AuthContextClaims`], and through `Arc` and `Box`.
pub trait AuthContext {
    /// The authentication context class reference (`acr`).
    fn acr(&self) -> Option<&str>;
    /// When the user authenticated (`auth_time`), in seconds since the Unix
    /// epoch.
    fn auth_time(&self) -> Option<u64>;
}

impl<T: AuthContext + ?Sized> AuthContext for Arc<T> {
    fn acr(&self) -> Option<&str> {
        (**self).acr()
    }
    fn auth_time(&self) -> Option<u64> {
        (**self).auth_time()
    }
}

impl<T: AuthContext + ?Sized> AuthContext for Box<T> {
    fn acr(&self) -> Option<&str> {
        (**self).acr()
    }
    fn auth_time(&self) -> Option<u64> {
        (**self).auth_time()
    }
}

/// Reads the `acr` (a string) and `auth_time` (a non-negative integer)
/// members of a JSON object; other shapes count as absent.
impl AuthContext for serde_json::Value {
    fn acr(&self) -> Option<&str> {
        self.get("acr")?.as_str()
    }
    fn auth_time(&self) -> Option<u64> {
        self.get("auth_time")?.as_u64()
    }
}

/// Just the `acr` and `auth_time` claims, for an authenticator whose only
/// job is to feed [`step_up`], or as a `#[serde(flatten)]` member of your
/// claims type.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct AuthContextClaims {
    /// `acr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// `auth_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

impl AuthContext for AuthContextClaims {
    fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }
    fn auth_time(&self) -> Option<u64> {
        self.auth_time
    }
}

type Clock = dyn Fn() -> u64 + Send + Sync;

/// Requires an authentication context class and/or a recent
/// authentication. Built by [`step_up`].
pub struct StepUp<C> {
    acr_values: Arc<[Box<str>]>,
    max_age: Option<u64>,
    leeway: u64,
    clock: Arc<Clock>,
    denial: Arc<StepUpRequirement>,
    _context: PhantomData<fn() -> C>,
}

/// Requires the user behind the request to have authenticated strongly
/// enough and recently enough (RFC 9470), as told by the principal of type
/// `C` (e.g. your JWT claims) that the [`AuthLayer`](crate::AuthLayer) put
/// into the request extensions.
///
/// | principal                                         | answer |
/// |---------------------------------------------------|--------|
/// | `acr` one of [`acr_values`](StepUp::acr_values), `auth_time` within [`max_age`](StepUp::max_age) | allowed |
/// | another or no `acr`; no, an old, or a future `auth_time` | `401`, `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="…", max_age="…"` |
/// | no principal of type `C` (another authenticator)  | `401` as above: fail closed |
/// | no identity                                       | `401` with the `AuthLayer`'s challenges |
///
/// The challenge is sent to bearer-authenticated requests; others get the
/// `401` and its JSON body only. With neither requirement set, the policy
/// only checks that a `C` is present.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_auth::authz::{role, step_up, Policy, RequireLayer};
///
/// // Deleting an account needs multi-factor authentication within 5 minutes.
/// let policy = role("user").and(
///     step_up::<serde_json::Value>()
///         .acr_values(["urn:example:mfa", "phr"])
///         .max_age(Duration::from_secs(300)),
/// );
/// let layer = RequireLayer::new(policy);
/// # let _ = layer;
/// ```
pub fn step_up<C>() -> StepUp<C>
where
    C: AuthContext + Send + Sync + 'static,
{
    StepUp {
        acr_values: Arc::new([]),
        max_age: None,
        leeway: 30,
        clock: Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }),
        denial: Arc::new(StepUpRequirement {
            acr_values: None,
            max_age: None,
        }),
        _context: PhantomData,
    }
}

impl<C> StepUp<C> {
    /// Accepts these `acr` values (exact matches), listed in order of
    /// preference in the challenge.
    pub fn acr_values<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<Box<str>> = Vec::new();
        for v in values {
            let v = v.into().into_boxed_str();
            if !list.contains(&v) {
                list.push(v);
            }
        }
        self.acr_values = list.into();
        self.render()
    }

    /// Requires the authentication (`auth_time`) to be at most `max_age`
    /// old, in whole seconds.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age.as_secs());
        self.render()
    }

    /// The clock skew allowed for an `auth_time` in the future (30 s by
    /// default); a later one is refused.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Replaces the clock (seconds since the Unix epoch), for tests.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn render(mut self) -> Self {
        let acr_values = (!self.acr_values.is_empty()).then(|| self.acr_values.join(" ").into());
        self.denial = Arc::new(StepUpRequirement {
            acr_values,
            max_age: self.max_age,
        });
        self
    }

    fn satisfied_by(&self, context: &dyn AuthContext) -> bool {
        let acr_ok = self.acr_values.is_empty()
            || context
                .acr()
                .is_some_and(|acr| self.acr_values.iter().any(|v| **v == *acr));
        let age_ok = match self.max_age {
            None => true,
            Some(max_age) => context.auth_time().is_some_and(|at| {
                let now = (self.clock)();
                at <= now.saturating_add(self.leeway) && now.saturating_sub(at) <= max_age
            }),
        };
        acr_ok && age_ok
    }
}

impl<C> Clone for StepUp<C> {
    fn clone(&self) -> Self {
        StepUp {
            acr_values: Arc::clone(&self.acr_values),
            max_age: self.max_age,
            leeway: self.leeway,
            clock: Arc::clone(&self.clock),
            denial: Arc::clone(&self.denial),
            _context: PhantomData,
        }
    }
}

impl<C> fmt::Debug for StepUp<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepUp")
            .field("acr_values", &self.acr_values)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl<C> Policy for StepUp<C>
where
    C: AuthContext + Send + Sync + 'static,
{
    type Future = Immediate;

    fn check(&self, _: &Identity, request: &Parts) -> Decision<Immediate> {
        match request.extensions.get::<C>() {
            Some(context) if self.satisfied_by(context) => Decision::Allow,
            Some(_) => Decision::Deny(Denied::step_up(&self.denial)),
            None => {
                tracing::debug!(
                    principal = std::any::type_name::<C>(),
                    "step-up policy found no principal of its type: refused"
                );
                Decision::Deny(Denied::step_up(&self.denial))
            }
        }
    }
}
