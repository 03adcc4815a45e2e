//! [`RoleMap`]: role -> permission maps with inheritance.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::policies::{contains, Permission, Role};
use super::policy::{names, Names};
use crate::auth::Authenticated;
use crate::identity::Identity;

/// Why a [`RoleMap`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleMapError {
    /// A role inherits a role the map does not define.
    #[error("role '{role}' inherits the undefined role '{parent}'")]
    UnknownRole {
        /// The inheriting role.
        role: String,
        /// The undefined role it names.
        parent: String,
    },
    /// Roles inherit from each other in a loop, e.g. `a -> b -> a`.
    #[error("role inheritance cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// The roles of the loop, the first repeated at the end.
        cycle: Vec<String>,
    },
}

/// One role as written in code or configuration.
#[derive(Clone, Debug, Default)]
struct RoleDef {
    permissions: Vec<String>,
    inherits: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDefFields {
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    inherits: Vec<String>,
}

impl<'de> Deserialize<'de> for RoleDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RoleDefVisitor;

        impl<'de> Visitor<'de> for RoleDefVisitor {
            type Value = RoleDef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of permissions, or a map with `permissions` and `inherits`")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RoleDef, A::Error> {
                Ok(RoleDef {
                    permissions: Vec::deserialize(SeqAccessDeserializer::new(seq))?,
                    inherits: Vec::new(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RoleDef, A::Error> {
                let fields = RoleDefFields::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RoleDef {
                    permissions: fields.permissions,
                    inherits: fields.inherits,
                })
            }
        }

        deserializer.deserialize_any(RoleDefVisitor)
    }
}

/// Builds a [`RoleMap`] in code. See [`RoleMap::builder`].
#[derive(Clone, Debug, Default)]
pub struct RoleMapBuilder {
    roles: BTreeMap<String, RoleDef>,
}

impl RoleMapBuilder {
    /// Defines `role` (if needed) and grants it `permissions`.
    pub fn role<I, S>(mut self, role: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let def = self.roles.entry(role.into()).or_default();
        def.permissions
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// Defines `role` (if needed) and makes it inherit every permission of
    /// `parents` (and of their parents): `admin` inherits `moderator`.
    pub fn inherits<I, S>(mut self, role: impl Into<String>, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let def = self.roles.entry(role.into()).or_default();
        def.inherits.extend(parents.into_iter().map(Into::into));
        self
    }

    /// Checks the inheritance graph and expands every role once.
    ///
    /// # Errors
    ///
    /// [`RoleMapError::UnknownRole`] when a role inherits an undefined
    /// role, [`RoleMapError::Cycle`] when roles inherit from each other in
    /// a loop.
    pub fn build(self) -> Result<RoleMap, RoleMapError> {
        RoleMap::from_defs(self.roles)
    }
}

/// A role -> permission map with inheritance, expanded once when built.
///
/// Build it in code with [`RoleMap::builder`] or deserialize it with serde
/// from any self-describing format (JSON, TOML, YAML): a map from role name
/// to either a list of permissions or `{"permissions": [...], "inherits":
/// [...]}`. Unknown fields are refused, and so are inheritance cycles and
/// undefined parents.
///
/// Use it in one of two ways:
///
/// * as policies that consult the map: [`RoleMap::permission`],
///   [`RoleMap::all_permissions`], [`RoleMap::role`]. The roles that grant a
///   permission are computed when the policy is built, so a check is a few
///   binary searches, and the [`Identity`] is left as it is;
/// * by expanding identities when they are authenticated, with
///   [`RoleMap::expander`] and [`Authenticator::map`](crate::Authenticator::map):
///   then plain [`permission`](super::permission) policies and handlers see
///   every derived permission. This builds a new permission list per
///   request.
///
/// Cloning is a reference-count increment.
///
/// # Example
///
/// ```
/// use tower_auth::authz::RoleMap;
///
/// // The seeds' table: admin ⊇ moderator ⊇ user.
/// let roles: RoleMap = serde_json::from_str(r#"{
///     "user":      ["posts:read", "posts:write"],
///     "moderator": {"inherits": ["user"], "permissions": ["users:read", "posts:delete"]},
///     "admin":     {"inherits": ["moderator"], "permissions": ["users:write", "users:delete"]}
/// }"#).unwrap();
///
/// assert!(roles.grants("admin", "posts:read"));
/// assert!(roles.grants("moderator", "posts:delete"));
/// assert!(!roles.grants("user", "users:read"));
///
/// // The same map in code.
/// let same = RoleMap::builder()
///     .role("user", ["posts:read", "posts:write"])
///     .role("moderator", ["users:read", "posts:delete"])
///     .inherits("moderator", ["user"])
///     .role("admin", ["users:write", "users:delete"])
///     .inherits("admin", ["moderator"])
///     .build()
///     .unwrap();
/// assert_eq!(same, roles);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RoleMap(Arc<BTreeMap<Box<str>, Expanded>>);

/// A role after expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expanded {
    /// Own and inherited permissions, sorted.
    permissions: Box<[Box<str>]>,
    /// The role itself and every role it inherits, sorted.
    includes: Box<[Box<str>]>,
}

impl RoleMap {
    /// Starts a map in code.
    pub fn builder() -> RoleMapBuilder {
        RoleMapBuilder::default()
    }

    fn from_defs(defs: BTreeMap<String, RoleDef>) -> Result<Self, RoleMapError> {
        for (role, def) in &defs {
            if let Some(parent) = def.inherits.iter().find(|p| !defs.contains_key(*p)) {
                return Err(RoleMapError::UnknownRole {
                    role: role.clone(),
                    parent: parent.clone(),
                });
            }
        }
        let order: Vec<&str> = defs.keys().map(String::as_str).collect();
        let index = |name: &str| order.binary_search(&name).ok();
        let parents: Vec<Vec<usize>> = defs
            .values()
            .map(|d| d.inherits.iter().filter_map(|p| index(p)).collect())
            .collect();

        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let mut mark = vec![Mark::New; order.len()];
        let mut permissions: Vec<BTreeSet<&str>> = defs
            .values()
            .map(|d| d.permissions.iter().map(String::as_str).collect())
            .collect();
        let mut includes: Vec<BTreeSet<&str>> =
            order.iter().map(|r| BTreeSet::from([*r])).collect();

        // Iterative depth-first search: a deep chain of roles cannot
        // overflow the stack, and a loop is an error, not a hang.
        for root in 0..order.len() {
            if mark[root] != Mark::New {
                continue;
            }
            mark[root] = Mark::OnStack;
            let mut stack = vec![(root, 0usize)];
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&parent) = parents[node].get(*next) {
                    *next += 1;
                    match mark[parent] {
                        Mark::New => {
                            mark[parent] = Mark::OnStack;
                            stack.push((parent, 0));
                        }
                        Mark::OnStack => {
                            let start = stack.iter().position(|(n, _)| *n == parent);
                            let mut cycle: Vec<String> = stack[start.unwrap_or(0)..]
                                .iter()
                                .map(|(n, _)| order[*n].to_owned())
                                .collect();
                            cycle.push(order[parent].to_owned());
                            return Err(RoleMapError::Cycle { cycle });
                        }
                        Mark::Done => {}
                    }
                } else {
                    for &parent in &parents[node] {
                        let inherited = permissions[parent].clone();
                        permissions[node].extend(inherited);
                        let inherited = includes[parent].clone();
                        includes[node].extend(inherited);
                    }
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }

        let boxed = |set: &BTreeSet<&str>| set.iter().map(|s| Box::from(*s)).collect();
        let expanded = order
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let role = Box::from(*role);
                let expanded = Expanded {
                    permissions: boxed(&permissions[i]),
                    includes: boxed(&includes[i]),
                };
                (role, expanded)
            })
            .collect();
        Ok(RoleMap(Arc::new(expanded)))
    }

    /// The defined roles, sorted.
    pub fn roles(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.keys().map(|r| &**r)
    }

    /// The permissions of `role`, its own and inherited, sorted; `None` for
    /// an undefined role.
    pub fn permissions(&self, role: &str) -> Option<impl ExactSizeIterator<Item = &str> + '_> {
        self.0.get(role).map(|e| e.permissions.iter().map(|p| &**p))
    }

    /// Whether `role` has `permission`, its own or inherited.
    pub fn grants(&self, role: &str, permission: &str) -> bool {
        self.0
            .get(role)
            .is_some_and(|e| contains(&e.permissions, permission))
    }

    /// Whether `role` is `other` or inherits it: `includes("admin", "user")`
    /// for the seeds' table.
    pub fn includes(&self, role: &str, other: &str) -> bool {
        self.0
            .get(role)
            .is_some_and(|e| contains(&e.includes, other))
    }

    /// Whether `identity` has `permission`, itself or through one of its
    /// roles.
    pub fn has_permission(&self, identity: &Identity, permission: &str) -> bool {
        identity.has_permission(permission) || identity.roles().any(|r| self.grants(r, permission))
    }

    /// `identity` with the permissions of its roles added, and the roles
    /// its roles inherit (an `admin` also gets `moderator` and `user`).
    /// Roles the map does not define are kept and add nothing.
    pub fn expand(&self, identity: Identity) -> Identity {
        let mut roles: BTreeSet<&str> = BTreeSet::new();
        let mut permissions: BTreeSet<&str> = BTreeSet::new();
        for role in identity.roles() {
            roles.insert(role);
            if let Some(e) = self.0.get(role) {
                roles.extend(e.includes.iter().map(|r| &**r));
                permissions.extend(e.permissions.iter().map(|p| &**p));
            }
        }
        if roles.len() == identity.roles().len()
            && permissions.iter().all(|p| identity.has_permission(p))
        {
            return identity;
        }
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let permissions: Vec<String> = permissions.into_iter().map(str::to_owned).collect();
        identity.with_roles(roles).add_permissions(permissions)
    }

    /// A function for [`Authenticator::map`](crate::Authenticator::map)
    /// that [expands](RoleMap::expand) the identity of every authenticated
    /// request.
    ///
    /// ```
    /// # #[cfg(feature = "bearer")] {
    /// use tower_auth::authz::RoleMap;
    /// use tower_auth::bearer::{BearerAuthenticator, BearerToken};
    /// use tower_auth::{AuthError, AuthLayer, Authenticated, Authenticator, Identity, Scheme};
    ///
    /// let roles = RoleMap::builder().role("user", ["posts:read"]).build().unwrap();
    /// let bearer = BearerAuthenticator::new(|token: BearerToken| async move {
    ///     let _ = token;
    ///     Ok::<_, AuthError>(Authenticated::new((), Identity::new("1", Scheme::Bearer).with_roles(["user"])))
    /// });
    /// let layer = AuthLayer::new(bearer.map(roles.expander()));
    /// # let _ = layer;
    /// # }
    /// ```
    pub fn expander<P>(
        &self,
    ) -> impl Fn(Authenticated<P>) -> Authenticated<P> + Clone + Send + Sync + 'static {
        let map = self.clone();
        move |a: Authenticated<P>| Authenticated::new(a.principal, map.expand(a.identity))
    }

    /// The sorted roles that satisfy `pred`.
    fn roles_where(&self, pred: impl Fn(&Expanded) -> bool) -> Names {
        names(self.0.iter().filter(|(_, e)| pred(e)).map(|(r, _)| &**r))
    }

    /// Requires `role` or a role that inherits it: with the seeds' table,
    /// `role("moderator")` also admits admins.
    pub fn role(&self, role: impl Into<String>) -> Role {
        self.any_role([role])
    }

    /// Requires one of `roles`, or a role that inherits one of them.
    pub fn any_role<I, S>(&self, roles: I) -> Role
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let required = names(roles);
        let inheriting = self.roles_where(|e| required.iter().any(|r| contains(&e.includes, r)));
        let accepted = names(required.iter().chain(inheriting.iter()).map(|r| &**r));
        Role::new(required, accepted)
    }

    /// Requires `permission`, among the identity's own permissions or
    /// granted by one of its roles. Which roles grant it is computed now,
    /// once.
    pub fn permission(&self, permission: impl Into<String>) -> Permission {
        self.all_permissions([permission])
    }

    /// Requires every one of `permissions`, each among the identity's own
    /// permissions or granted by one of its roles.
    pub fn all_permissions<I, S>(&self, permissions: I) -> Permission
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let required = names(permissions);
        let granted_by = required
            .iter()
            .map(|p| self.roles_where(|e| contains(&e.permissions, p)))
            .collect();
        Permission::new(required, Some(granted_by))
    }
}

impl fmt::Debug for RoleMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(r, e)| (r, &e.permissions)))
            .finish()
    }
}

impl<'de> Deserialize<'de> for RoleMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let defs = BTreeMap::<String, RoleDef>::deserialize(deserializer)?;
        RoleMap::from_defs(defs).map_err(de::Error::custom)
    }
}
