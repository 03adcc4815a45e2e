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
///
/// Messages name the offending role, shortened to 64 characters with
/// control characters escaped, so a hostile configuration never ends up
/// whole in a log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleMapError {
    /// A role inherits a role the map does not define.
    #[error("role '{}' inherits the undefined role '{}'", Shown(.role), Shown(.parent))]
    UnknownRole {
        /// The inheriting role.
        role: String,
        /// The undefined role it names.
        parent: String,
    },
    /// Roles inherit from each other in a loop, e.g. `a -> b -> a`.
    #[error("role inheritance cycle: {}", ShownCycle(.cycle))]
    Cycle {
        /// The roles of the loop, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A configuration defines the same role twice, e.g. the JSON
    /// `{"admin": [...], "admin": [...]}`. Roles built in code may be
    /// extended by several calls instead.
    #[error("role '{}' is defined twice", Shown(.role))]
    DuplicateRole {
        /// The role defined twice.
        role: String,
    },
    /// A role name is empty or contains whitespace or a control character.
    #[error(
        "invalid role name '{}': names must be non-empty, without whitespace or control characters",
        Shown(.role)
    )]
    InvalidRole {
        /// The refused name.
        role: String,
    },
    /// A role grants a permission whose name is empty or contains
    /// whitespace or a control character.
    #[error(
        "role '{}' grants the invalid permission '{}': names must be non-empty, without whitespace or control characters",
        Shown(.role),
        Shown(.permission)
    )]
    InvalidPermission {
        /// The granting role.
        role: String,
        /// The refused permission name.
        permission: String,
    },
    /// A role inherits a name that is empty or contains whitespace or a
    /// control character.
    #[error(
        "role '{}' inherits the invalid role name '{}': names must be non-empty, without whitespace or control characters",
        Shown(.role),
        Shown(.parent)
    )]
    InvalidParent {
        /// The inheriting role.
        role: String,
        /// The refused name.
        parent: String,
    },
    /// The map exceeds one of the limits that keep building it fast and
    /// small: [`RoleMap::MAX_ROLES`], [`RoleMap::MAX_DEPTH`] or
    /// [`RoleMap::MAX_EXPANDED`].
    #[error("role map too large: {}", ShownLimit(*.limit, .role.as_deref()))]
    TooLarge {
        /// The limit exceeded.
        limit: RoleMapLimit,
        /// The role being expanded when the limit was hit; `None` for
        /// [`RoleMapLimit::Roles`].
        role: Option<String>,
    },
}

/// A limit of [`RoleMap`], reported by [`RoleMapError::TooLarge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoleMapLimit {
    /// More than [`RoleMap::MAX_ROLES`] roles.
    Roles,
    /// An inheritance chain longer than [`RoleMap::MAX_DEPTH`].
    Depth,
    /// More than [`RoleMap::MAX_EXPANDED`] expanded entries.
    Expanded,
}

/// The longest part of a name shown in an error message, in characters.
const SHOWN_CHARS: usize = 64;

/// A name as shown in an error message: at most [`SHOWN_CHARS`]
/// characters, then `...`; control characters and quotes escaped.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == SHOWN_CHARS {
                return f.write_str("...");
            }
            fmt::Display::fmt(&c.escape_debug(), f)?;
        }
        Ok(())
    }
}

/// A cycle as `a -> b -> a`, each name [`Shown`].
struct ShownCycle<'a>(&'a [String]);

impl fmt::Display for ShownCycle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, role) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            fmt::Display::fmt(&Shown(role), f)?;
        }
        Ok(())
    }
}

/// The explanation of a [`RoleMapError::TooLarge`].
struct ShownLimit<'a>(RoleMapLimit, Option<&'a str>);

impl fmt::Display for ShownLimit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = Shown(self.1.unwrap_or_default());
        match self.0 {
            RoleMapLimit::Roles => write!(f, "more than {} roles", RoleMap::MAX_ROLES),
            RoleMapLimit::Depth => write!(
                f,
                "role '{role}' inherits through more than {} levels",
                RoleMap::MAX_DEPTH
            ),
            RoleMapLimit::Expanded => write!(
                f,
                "expanding role '{role}' goes past {} permissions and included roles in total",
                RoleMap::MAX_EXPANDED
            ),
        }
    }
}

/// Whether `name` may name a role or a permission: not empty, no
/// whitespace, no control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
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

    /// Checks the names and the inheritance graph, and expands every role
    /// once.
    ///
    /// # Errors
    ///
    /// * [`RoleMapError::InvalidRole`], [`RoleMapError::InvalidPermission`]
    ///   and [`RoleMapError::InvalidParent`] when a name is empty or
    ///   contains whitespace or a control character;
    /// * [`RoleMapError::UnknownRole`] when a role inherits an undefined
    ///   role;
    /// * [`RoleMapError::Cycle`] when roles inherit from each other in a
    ///   loop;
    /// * [`RoleMapError::TooLarge`] past one of the [limits](RoleMap#limits).
    pub fn build(self) -> Result<RoleMap, RoleMapError> {
        RoleMap::from_defs(self.roles)
    }
}

/// A role -> permission map with inheritance, expanded once when built.
///
/// Build it in code with [`RoleMap::builder`] or deserialize it with serde
/// from any self-describing format (JSON, TOML, YAML): a map from role name
/// to either a list of permissions or `{"permissions": [...], "inherits":
/// [...]}`. Unknown fields are refused, and so are duplicate roles,
/// inheritance cycles and undefined parents.
///
/// Role and permission names must be non-empty and contain no whitespace
/// or control characters: a map that defined the role `""` would grant its
/// permissions to any token claiming `"roles": [""]`.
///
/// # Limits
///
/// Expansion copies every inherited permission into each role, so its
/// cost grows with the length of inheritance chains. To keep a hostile or
/// generated configuration from taking minutes and gigabytes, building
/// fails with [`RoleMapError::TooLarge`] as soon as a map exceeds
///
/// * [`MAX_ROLES`](RoleMap::MAX_ROLES) = 10 000 roles,
/// * [`MAX_DEPTH`](RoleMap::MAX_DEPTH) = 64 levels of inheritance,
/// * [`MAX_EXPANDED`](RoleMap::MAX_EXPANDED) = 1 000 000 expanded entries:
///   the permissions and included roles of every role, own and inherited,
///   summed over the roles.
///
/// Real role tables have tens of roles a few levels deep, far below these.
/// A map at the limits builds in well under a second.
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
    /// The most roles a map may define: 10 000. Role tables name job
    /// functions, so they have tens of roles; generated per-tenant or
    /// per-project roles stay well below this too.
    pub const MAX_ROLES: usize = 10_000;

    /// The longest chain of inheritance: 64 levels (`a` inheriting `b`
    /// is one level). Real hierarchies are a handful of levels deep.
    pub const MAX_DEPTH: usize = 64;

    /// The most expanded entries a map may hold: 1 000 000. Each role
    /// counts its own permissions and name, plus the expanded permissions
    /// and included roles of each role it inherits as they are copied in
    /// (an entry reached along two paths counts twice), so this bounds both
    /// the memory of the map (tens of megabytes at most) and the time to
    /// build it. The seeds' table counts 18; 1 000 roles of 50 permissions
    /// each, in chains 10 levels deep, about 280 000.
    pub const MAX_EXPANDED: usize = 1_000_000;

    /// Starts a map in code.
    pub fn builder() -> RoleMapBuilder {
        RoleMapBuilder::default()
    }

    fn from_defs(defs: BTreeMap<String, RoleDef>) -> Result<Self, RoleMapError> {
        if defs.len() > Self::MAX_ROLES {
            return Err(RoleMapError::TooLarge {
                limit: RoleMapLimit::Roles,
                role: None,
            });
        }
        for (role, def) in &defs {
            if !valid_name(role) {
                return Err(RoleMapError::InvalidRole { role: role.clone() });
            }
            if let Some(permission) = def.permissions.iter().find(|p| !valid_name(p)) {
                return Err(RoleMapError::InvalidPermission {
                    role: role.clone(),
                    permission: permission.clone(),
                });
            }
            if let Some(parent) = def.inherits.iter().find(|p| !valid_name(p)) {
                return Err(RoleMapError::InvalidParent {
                    role: role.clone(),
                    parent: parent.clone(),
                });
            }
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
            .map(|d| {
                let mut parents: Vec<usize> = d.inherits.iter().filter_map(|p| index(p)).collect();
                parents.sort_unstable();
                parents.dedup();
                parents
            })
            .collect();
        let too_large = |limit, role: usize| RoleMapError::TooLarge {
            limit,
            role: Some(order[role].to_owned()),
        };

        // Own entries first: a role's permissions and its own name.
        let mut budget = Self::MAX_EXPANDED;
        let mut permissions: Vec<BTreeSet<&str>> = Vec::with_capacity(order.len());
        for (i, def) in defs.values().enumerate() {
            let own: BTreeSet<&str> = def.permissions.iter().map(String::as_str).collect();
            budget = budget
                .checked_sub(own.len() + 1)
                .ok_or_else(|| too_large(RoleMapLimit::Expanded, i))?;
            permissions.push(own);
        }
        let mut includes: Vec<BTreeSet<&str>> =
            order.iter().map(|r| BTreeSet::from([*r])).collect();

        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let mut mark = vec![Mark::New; order.len()];
        // The longest inheritance chain above each finished role.
        let mut depth = vec![0usize; order.len()];

        // Iterative depth-first search: a deep chain of roles cannot
        // overflow the stack, a loop is an error, not a hang, and the
        // limits are checked as it goes, before the expensive copies.
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
                            // The stack is a chain of inheritance: pushing
                            // makes it `stack.len()` levels long.
                            if stack.len() > Self::MAX_DEPTH {
                                return Err(too_large(RoleMapLimit::Depth, root));
                            }
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
                        depth[node] = depth[node].max(depth[parent] + 1);
                        if depth[node] > Self::MAX_DEPTH {
                            return Err(too_large(RoleMapLimit::Depth, node));
                        }
                        let copied = permissions[parent].len() + includes[parent].len();
                        budget = budget
                            .checked_sub(copied)
                            .ok_or_else(|| too_large(RoleMapLimit::Expanded, node))?;
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

    /// Requires one of `roles`, or a role that inherits one of them. An
    /// empty list allows nobody.
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
    /// permissions or granted by one of its roles. An empty list allows
    /// nobody (it fails closed rather than requiring nothing).
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

/// Reads the role definitions of a configuration, refusing duplicate
/// roles (which a `BTreeMap` would silently overwrite) and stopping past
/// [`RoleMap::MAX_ROLES`].
struct RoleDefsVisitor;

impl<'de> Visitor<'de> for RoleDefsVisitor {
    type Value = BTreeMap<String, RoleDef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from role names to roles")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut defs = BTreeMap::new();
        while let Some(role) = map.next_key::<String>()? {
            if defs.contains_key(&role) {
                return Err(de::Error::custom(RoleMapError::DuplicateRole { role }));
            }
            if defs.len() == RoleMap::MAX_ROLES {
                return Err(de::Error::custom(RoleMapError::TooLarge {
                    limit: RoleMapLimit::Roles,
                    role: None,
                }));
            }
            let def = map.next_value::<RoleDef>()?;
            defs.insert(role, def);
        }
        Ok(defs)
    }
}

impl<'de> Deserialize<'de> for RoleMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let defs = deserializer.deserialize_map(RoleDefsVisitor)?;
        RoleMap::from_defs(defs).map_err(de::Error::custom)
    }
}
