//! The ready policies: roles, permissions, scopes, closures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use pin_project_lite::pin_project;

use super::policy::{names, Decision, Denied, Immediate, IntoVerdict, Names, Policy};
use crate::identity::Identity;

pub(crate) use crate::identity::contains;

/// Whether `identity` has one of the sorted `roles`.
fn has_any_role(identity: &Identity, roles: &[Box<str>]) -> bool {
    match roles {
        [] => false,
        [one] => identity.has_role(one),
        _ => identity.roles().any(|r| contains(roles, r)),
    }
}

/// Requires one of a set of roles. Built by [`role`], [`any_role`] and
/// [`RoleMap::role`](super::RoleMap::role). An empty set allows nobody.
#[derive(Clone, Debug)]
pub struct Role {
    /// The roles named in denials.
    required: Names,
    /// The roles that satisfy the policy: `required` and, with a role map,
    /// every role that inherits one of them.
    accepted: Names,
}

impl Role {
    pub(crate) fn new(required: Names, accepted: Names) -> Self {
        Role { required, accepted }
    }
}

impl Policy for Role {
    type Future = Immediate;

    fn check(&self, identity: &Identity, _: &Parts) -> Decision<Immediate> {
        if has_any_role(identity, &self.accepted) {
            Decision::Allow
        } else {
            Decision::Deny(Denied::roles(&self.required))
        }
    }
}

/// Requires `role` (exact, case-sensitive match). Use
/// [`RoleMap::role`](super::RoleMap::role) to also accept the roles that
/// inherit it.
pub fn role(role: impl Into<String>) -> Role {
    let names = names([role]);
    Role::new(names.clone(), names)
}

/// Requires at least one of `roles` (the seeds' "moderator or admin"). An
/// empty list allows nobody: no identity has one of no roles.
pub fn any_role<I, S>(roles: I) -> Role
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let names = names(roles);
    Role::new(names.clone(), names)
}

/// Requires every one of a set of permissions. Built by [`permission`],
/// [`all_permissions`] and [`RoleMap::permission`](super::RoleMap::permission).
/// An empty set allows nobody.
#[derive(Clone, Debug)]
pub struct Permission {
    required: Names,
    /// For each required permission, the sorted roles that grant it (from a
    /// role map), or `None` when only the identity's own permissions count.
    granted_by: Option<Arc<[Names]>>,
}

impl Permission {
    pub(crate) fn new(required: Names, granted_by: Option<Arc<[Names]>>) -> Self {
        Permission {
            required,
            granted_by,
        }
    }
}

impl Policy for Permission {
    type Future = Immediate;

    fn check(&self, identity: &Identity, _: &Parts) -> Decision<Immediate> {
        let granted = |i: usize, permission: &str| {
            identity.has_permission(permission)
                || self
                    .granted_by
                    .as_ref()
                    .and_then(|g| g.get(i))
                    .is_some_and(|roles| has_any_role(identity, roles))
        };
        // Fail closed: "every one of none" must not allow everybody.
        if !self.required.is_empty() && self.required.iter().enumerate().all(|(i, p)| granted(i, p))
        {
            Decision::Allow
        } else {
            Decision::Deny(Denied::permissions(&self.required))
        }
    }
}

/// Requires `permission`, e.g. `"posts:delete"`, among the identity's
/// permissions. Use [`RoleMap::permission`](super::RoleMap::permission) to
/// also accept it through the identity's roles.
pub fn permission(permission: impl Into<String>) -> Permission {
    Permission::new(names([permission]), None)
}

/// Requires every one of `permissions`. An empty list allows nobody: a
/// requirement computed from configuration that comes out empty fails
/// closed rather than letting every signed-in user through.
pub fn all_permissions<I, S>(permissions: I) -> Permission
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Permission::new(names(permissions), None)
}

/// Requires every one of a set of OAuth 2.0 scopes. Built by [`scope`] and
/// [`all_scopes`]. An empty set allows nobody.
#[derive(Clone, Debug)]
pub struct Scope {
    required: Names,
}

impl Policy for Scope {
    type Future = Immediate;

    fn check(&self, identity: &Identity, _: &Parts) -> Decision<Immediate> {
        // Fail closed, as for permissions.
        if !self.required.is_empty() && self.required.iter().all(|s| identity.has_scope(s)) {
            Decision::Allow
        } else {
            Decision::Deny(Denied::scopes(&self.required))
        }
    }
}

/// Requires the OAuth 2.0 scope `scope` (from a token's `scope` or `scp`).
/// A bearer token without it gets `403` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="<scope>"`.
pub fn scope(scope: impl Into<String>) -> Scope {
    Scope {
        required: names([scope]),
    }
}

/// Requires every one of `scopes`. An empty list allows nobody, as for
/// [`all_permissions`].
pub fn all_scopes<I, S>(scopes: I) -> Scope
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Scope {
        required: names(scopes),
    }
}

/// Allows every authenticated request. See [`authenticated`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IsAuthenticated;

impl Policy for IsAuthenticated {
    type Future = Immediate;

    fn check(&self, _: &Identity, _: &Parts) -> Decision<Immediate> {
        Decision::Allow
    }
}

/// Allows any authenticated request: with [`RequireLayer`](super::RequireLayer),
/// a route behind an optional [`AuthLayer`](crate::AuthLayer) answers `401`
/// to anonymous requests.
pub fn authenticated() -> IsAuthenticated {
    IsAuthenticated
}

/// A policy from an async closure. See [`policy_fn`].
pub struct PolicyFn<F> {
    f: Arc<F>,
}

/// A policy from an async closure, for checks that look something up:
/// "owner or admin", "member of the project in the path".
///
/// The closure receives the [`Identity`] (owned; cloning it is a
/// reference-count increment) and the request head by reference: take what
/// you need from it (the path, a header) before the `async move` block. It
/// returns `bool` or `Result<(), Denied>`; answer
/// [`Denied::not_found`] for unknown resources and [`Denied::unavailable`]
/// when the lookup fails.
///
/// With axum's `route_layer`, routing has run, so path parameters are in
/// the request head: clone it and use the `Path` extractor, as below.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use axum::extract::Path;
/// use axum::RequestPartsExt;
/// use http::request::Parts;
/// use tower_auth::authz::{policy_fn, role, Denied, Policy, RequireLayer};
/// use tower_auth::Identity;
///
/// // post id -> author id
/// let authors: Arc<HashMap<String, String>> = Arc::new(HashMap::from([
///     ("1".to_owned(), "alice".to_owned()),
/// ]));
///
/// let owner = policy_fn(move |identity: Identity, head: &Parts| {
///     let authors = authors.clone();
///     let mut head = head.clone();
///     async move {
///         let Ok(Path(post_id)) = head.extract::<Path<String>>().await else {
///             return Err(Denied::not_found("post not found"));
///         };
///         match authors.get(&post_id) {
///             None => Err(Denied::not_found("post not found")),
///             // An identity without a subject owns nothing.
///             Some(author) if !identity.subject().is_empty() && author == identity.subject() => {
///                 Ok(())
///             }
///             Some(_) => Err(Denied::forbidden("you can only edit your own posts")),
///         }
///     }
/// });
/// // Admins are allowed without the lookup.
/// let layer = RequireLayer::new(role("admin").or(owner));
/// # let _ = layer;
/// ```
pub fn policy_fn<F, Fut>(f: F) -> PolicyFn<F>
where
    F: Fn(Identity, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoVerdict,
{
    PolicyFn { f: Arc::new(f) }
}

impl<F, Fut> Policy for PolicyFn<F>
where
    F: Fn(Identity, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoVerdict,
{
    type Future = PolicyFnFuture<Fut>;

    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Self::Future> {
        Decision::Pending(PolicyFnFuture {
            fut: (self.f)(identity.clone(), request),
        })
    }
}

pin_project! {
    /// The future of a [`PolicyFn`].
    pub struct PolicyFnFuture<Fut> {
        #[pin]
        fut: Fut,
    }
}

impl<Fut> Future for PolicyFnFuture<Fut>
where
    Fut: Future,
    Fut::Output: IntoVerdict,
{
    type Output = Result<(), Denied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(IntoVerdict::into_verdict)
    }
}

/// A policy from a synchronous closure. See [`sync_policy_fn`].
pub struct SyncPolicyFn<F> {
    f: Arc<F>,
}

/// A policy from a synchronous closure over the identity and the request
/// head, decided in the layer's `call` without allocating. Returns `bool`
/// or `Result<(), Denied>`.
///
/// ```
/// use http::request::Parts;
/// use tower_auth::authz::{role, sync_policy_fn, Policy};
/// use tower_auth::Identity;
///
/// // `/users/{id}/...`: the user themself, or an admin. An identity
/// // without a subject is nobody's self, not even of `/users//...`.
/// let self_or_admin = sync_policy_fn(|identity: &Identity, head: &Parts| {
///     let subject = identity.subject();
///     !subject.is_empty() && head.uri.path().split('/').nth(2) == Some(subject)
/// })
/// .or(role("admin"));
/// # let _ = self_or_admin;
/// ```
pub fn sync_policy_fn<F, R>(f: F) -> SyncPolicyFn<F>
where
    F: Fn(&Identity, &Parts) -> R + Send + Sync + 'static,
    R: IntoVerdict,
{
    SyncPolicyFn { f: Arc::new(f) }
}

impl<F, R> Policy for SyncPolicyFn<F>
where
    F: Fn(&Identity, &Parts) -> R + Send + Sync + 'static,
    R: IntoVerdict,
{
    type Future = Immediate;

    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Immediate> {
        (self.f)(identity, request).into_verdict().into()
    }
}

macro_rules! closure_policy_impls {
    ($($name:ident),+) => {
        $(impl<F> Clone for $name<F> {
            fn clone(&self) -> Self {
                $name { f: Arc::clone(&self.f) }
            }
        }

        impl<F> fmt::Debug for $name<F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        })+
    };
}

closure_policy_impls!(PolicyFn, SyncPolicyFn);

impl<Fut> fmt::Debug for PolicyFnFuture<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyFnFuture").finish_non_exhaustive()
    }
}
