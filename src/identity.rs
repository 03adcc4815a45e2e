//! The non-generic [`Identity`] every authenticator puts into request extensions.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// How the credentials of an authenticated request were presented.
///
/// Policies use it to pick the right rejection: a bearer-authenticated request
/// that lacks a scope gets `WWW-Authenticate: Bearer error="insufficient_scope"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (opaque tokens and JWTs), or a bearer
    /// token in a query parameter (RFC 6750 §2.3).
    Bearer,
    /// An API key in a header or query parameter.
    ApiKey,
    /// A cookie: a session cookie or a JWT carried in a cookie.
    Cookie,
    /// Any other scheme, named by the authenticator.
    Other(Cow<'static, str>),
}

impl Scheme {
    /// The scheme's name as used in `WWW-Authenticate` challenges and logs.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::ApiKey => "ApiKey",
            Scheme::Cookie => "Cookie",
            Scheme::Other(name) => name,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request and what they may do: subject, roles, permissions,
/// scopes and the [`Scheme`] their credentials used.
///
/// [`AuthLayer`](crate::AuthLayer) inserts one into the request extensions of
/// every authenticated request, beside the authenticator's typed principal,
/// so that policies (`RequireLayer` with the `authz`
/// feature) and handlers can check rights without knowing the principal type.
///
/// Cloning is a reference-count increment. Roles, permissions and scopes are
/// kept sorted and de-duplicated, so lookups are binary searches.
///
/// ```
/// use tower_auth::{Identity, Scheme};
///
/// let id = Identity::new("user-42", Scheme::Bearer)
///     .with_roles(["user"])
///     .with_permissions(["posts:write", "posts:read"])
///     .with_scopes(["read"]);
/// assert!(id.has_role("user"));
/// assert!(id.has_permission("posts:read"));
/// assert!(!id.has_permission("posts:delete"));
/// assert!(id.has_scope("read"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Identity(Arc<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    subject: Box<str>,
    scheme: Scheme,
    roles: Box<[Box<str>]>,
    permissions: Box<[Box<str>]>,
    scopes: Box<[Box<str>]>,
}

pub(crate) fn sorted<I, S>(items: I) -> Box<[Box<str>]>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut v: Vec<Box<str>> = items
        .into_iter()
        .map(|s| s.into().into_boxed_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

pub(crate) fn contains(set: &[Box<str>], item: &str) -> bool {
    set.binary_search_by(|probe| (**probe).cmp(item)).is_ok()
}

impl Identity {
    /// An identity for `subject` with no roles, permissions or scopes.
    pub fn new(subject: impl Into<String>, scheme: Scheme) -> Self {
        Identity(Arc::new(Inner {
            subject: subject.into().into_boxed_str(),
            scheme,
            roles: Box::default(),
            permissions: Box::default(),
            scopes: Box::default(),
        }))
    }

    /// An identity built in one step from a verified token's claims: one
    /// allocation for the shared part (the builder methods each check
    /// whether it is shared and replace a set).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn from_claims(
        subject: String,
        scheme: Scheme,
        roles: Vec<String>,
        permissions: Vec<String>,
        scopes: Vec<String>,
    ) -> Self {
        Identity(Arc::new(Inner {
            subject: subject.into_boxed_str(),
            scheme,
            roles: sorted(roles),
            permissions: sorted(permissions),
            scopes: sorted(scopes),
        }))
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.0)
    }

    /// Replaces the roles.
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner_mut().roles = sorted(roles);
        self
    }

    /// Replaces the permissions.
    pub fn with_permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner_mut().permissions = sorted(permissions);
        self
    }

    /// Replaces the scopes (OAuth 2.0 `scope` / `scp`).
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner_mut().scopes = sorted(scopes);
        self
    }

    /// Replaces the scheme (authenticators use it when the same principal can
    /// arrive by header or by cookie).
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        // A shared identity that already has the scheme stays shared: no
        // copy of its strings on every request.
        if self.0.scheme != scheme {
            self.inner_mut().scheme = scheme;
        }
        self
    }

    /// Adds permissions to the ones already present.
    pub fn add_permissions<I, S>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let inner = self.inner_mut();
        let merged = inner
            .permissions
            .iter()
            .map(|p| String::from(&**p))
            .chain(permissions.into_iter().map(Into::into));
        inner.permissions = sorted(merged);
        self
    }

    /// The subject: a user id, key id or client id.
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// How the credentials were presented.
    pub fn scheme(&self) -> &Scheme {
        &self.0.scheme
    }

    /// The roles, sorted.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.roles.iter().map(|s| &**s)
    }

    /// The permissions, sorted.
    pub fn permissions(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.permissions.iter().map(|s| &**s)
    }

    /// The scopes, sorted.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.scopes.iter().map(|s| &**s)
    }

    /// Whether the identity has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        contains(&self.0.roles, role)
    }

    /// Whether the identity has `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        contains(&self.0.permissions, permission)
    }

    /// Whether the identity has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        contains(&self.0.scopes, scope)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.0.subject)
            .field("scheme", &self.0.scheme)
            .field("roles", &self.0.roles)
            .field("permissions", &self.0.permissions)
            .field("scopes", &self.0.scopes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let id = Identity::new("s", Scheme::ApiKey).with_roles(["b", "a", "b"]);
        assert_eq!(id.roles().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn lookups_are_exact_not_prefix() {
        let id = Identity::new("s", Scheme::Bearer).with_permissions(["posts:read"]);
        assert!(id.has_permission("posts:read"));
        assert!(!id.has_permission("posts"));
        assert!(!id.has_permission("posts:read:all"));
        assert!(!id.has_role("posts:read"));
    }

    #[test]
    fn add_permissions_merges() {
        let id = Identity::new("s", Scheme::Bearer)
            .with_permissions(["a"])
            .add_permissions(["c", "a", "b"]);
        assert_eq!(id.permissions().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn from_claims_equals_the_builder() {
        let built = Identity::new("s", Scheme::Cookie)
            .with_roles(["b", "a", "b"])
            .with_permissions(["p"])
            .with_scopes(["y", "x"]);
        let at_once = Identity::from_claims(
            "s".into(),
            Scheme::Cookie,
            vec!["b".into(), "a".into(), "b".into()],
            vec!["p".into()],
            vec!["y".into(), "x".into()],
        );
        assert_eq!(built, at_once);
        assert_eq!(at_once.roles().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn builder_does_not_mutate_shared_clones() {
        let a = Identity::new("s", Scheme::Bearer);
        let b = a.clone().with_roles(["admin"]);
        assert!(!a.has_role("admin"));
        assert!(b.has_role("admin"));
    }
}
