//! [`ClaimMapping`]: where roles, permissions and scopes are read from in a
//! provider's tokens, as JSON pointers (RFC 6901), read in the one pass over
//! the claims.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::claims::Key;

/// Most pointers a mapping holds (all targets together).
pub const MAX_CLAIM_POINTERS: usize = 32;
/// Most reference tokens (object levels) in one pointer.
pub const MAX_POINTER_DEPTH: usize = 8;
/// Longest reference token (claim name) in a pointer, in bytes.
const MAX_TOKEN_LEN: usize = 256;

const ROLES: u8 = 1;
const PERMISSIONS: u8 = 2;
const SCOPES: u8 = 4;

/// Where the [`Identity`](crate::Identity)'s roles, permissions and scopes
/// are read from in a token's claims: JSON pointers (RFC 6901) such as
/// `/realm_access/roles`, `/resource_access/my-client/roles` or, for a
/// claim name holding slashes, `/https:~1~1example.com~1roles`. Each value
/// may be an array of strings or a space-separated string (a string of
/// roles is one role unless [`split_roles`](Self::split_roles)).
///
/// The pointers are read in the same single pass over the claims as the
/// registered claims (no intermediate JSON tree); a nested pointer descends
/// only into the objects on its path. A value of the wrong type (a number
/// for roles, a string where a pointer descends into an object) makes the
/// token invalid, as for the registered claims; an absent value grants
/// nothing. A mapping is bounded: at most [`MAX_CLAIM_POINTERS`] pointers
/// of at most [`MAX_POINTER_DEPTH`] levels. A pointer that breaks these
/// limits or RFC 6901 is left out and reported by
/// [`JwtAuthenticator::validate`](super::JwtAuthenticator::validate)
/// ([`ConfigError::ClaimPointer`](super::ConfigError::ClaimPointer)).
///
/// [`Default`] is the mapping of a bare
/// [`JwtAuthenticator`](super::JwtAuthenticator): roles from `roles` and
/// `role`, permissions from `permissions`, scopes from `scope` and `scp`.
/// Presets follow the token shapes the providers document:
///
/// | preset | roles | permissions | scopes |
/// |---|---|---|---|
/// | [`keycloak`](Self::keycloak)`(client)` | `/realm_access/roles`, `/resource_access/<client>/roles` | | `/scope` |
/// | [`auth0`](Self::auth0)`(namespace)` | `/<namespace>/roles` | `/permissions` | `/scope` |
/// | [`entra`](Self::entra) | `/roles` | | `/scp` |
/// | [`okta`](Self::okta) | `/groups` | | `/scp` |
/// | [`cognito`](Self::cognito) | `/cognito:groups` | | `/scope` |
///
/// ```
/// use tower_auth::jwt::ClaimMapping;
///
/// // Keycloak realm roles plus one client's roles as roles, the client's
/// // own `permissions` claim (a custom protocol mapper) as permissions.
/// let mapping = ClaimMapping::keycloak("orders-api").permissions("/permissions");
/// # let _ = mapping;
/// ```
#[derive(Clone)]
pub struct ClaimMapping {
    roles: Vec<Pointer>,
    permissions: Vec<Pointer>,
    scopes: Vec<Pointer>,
    split_roles: bool,
    /// The first pointer refused (kept for the configuration report).
    invalid: Option<Box<str>>,
    tree: Arc<[Node]>,
}

type Pointer = Box<[Box<str>]>;

/// One object member on the path of some pointers.
#[derive(Debug)]
pub(crate) struct Node {
    key: Box<str>,
    /// Which identity parts a value here feeds ([`ROLES`] | ...).
    targets: u8,
    children: Box<[Node]>,
}

impl fmt::Debug for ClaimMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |ps: &[Pointer]| ps.iter().map(|p| render(p)).collect::<Vec<_>>();
        f.debug_struct("ClaimMapping")
            .field("roles", &show(&self.roles))
            .field("permissions", &show(&self.permissions))
            .field("scopes", &show(&self.scopes))
            .field("split_roles", &self.split_roles)
            .finish_non_exhaustive()
    }
}

/// A pointer written back in RFC 6901 syntax.
fn render(pointer: &[Box<str>]) -> String {
    let mut out = String::new();
    for token in pointer {
        out.push('/');
        out.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// Parses an RFC 6901 pointer into its reference tokens. The empty pointer
/// (the whole claims set) is refused.
fn parse_pointer(pointer: &str) -> Option<Pointer> {
    let rest = pointer.strip_prefix('/')?;
    let mut tokens = Vec::new();
    for raw in rest.split('/') {
        if tokens.len() == MAX_POINTER_DEPTH || raw.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '~' {
                token.push(c);
                continue;
            }
            match chars.next() {
                Some('0') => token.push('~'),
                Some('1') => token.push('/'),
                _ => return None,
            }
        }
        tokens.push(token.into_boxed_str());
    }
    Some(tokens.into_boxed_slice())
}

/// A one-level pointer naming a top-level claim.
fn top_level(name: &str) -> Pointer {
    Box::new([Box::from(name)])
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping::from_pointers(
            vec![top_level("roles"), top_level("role")],
            vec![top_level("permissions")],
            vec![top_level("scope"), top_level("scp")],
        )
    }
}

impl ClaimMapping {
    fn from_pointers(roles: Vec<Pointer>, permissions: Vec<Pointer>, scopes: Vec<Pointer>) -> Self {
        let mut mapping = ClaimMapping {
            roles,
            permissions,
            scopes,
            split_roles: false,
            invalid: None,
            tree: Arc::new([]),
        };
        mapping.rebuild();
        mapping
    }

    /// A mapping that reads nothing: add pointers with
    /// [`roles`](Self::roles), [`permissions`](Self::permissions) and
    /// [`scopes`](Self::scopes).
    pub fn new() -> Self {
        ClaimMapping::from_pointers(Vec::new(), Vec::new(), Vec::new())
    }

    /// Keycloak: roles from the realm roles (`/realm_access/roles`) and the
    /// roles of `client_id` (`/resource_access/<client_id>/roles`), scopes
    /// from `/scope`.
    pub fn keycloak(client_id: &str) -> Self {
        let client: Pointer =
            Box::new(["resource_access".into(), client_id.into(), "roles".into()]);
        let realm: Pointer = Box::new(["realm_access".into(), "roles".into()]);
        ClaimMapping::from_pointers(vec![realm, client], Vec::new(), vec![top_level("scope")])
    }

    /// Auth0: permissions from `/permissions` (RBAC with "Add Permissions
    /// in the Access Token"), roles from the namespaced claim
    /// `<namespace>/roles` an Auth0 Action sets (e.g. namespace
    /// `https://example.com` reads the claim `https://example.com/roles`),
    /// scopes from `/scope`.
    pub fn auth0(namespace: &str) -> Self {
        let roles = format!("{}/roles", namespace.trim_end_matches('/'));
        ClaimMapping::from_pointers(
            vec![top_level(&roles)],
            vec![top_level("permissions")],
            vec![top_level("scope")],
        )
    }

    /// Microsoft Entra ID: app roles from `/roles`, delegated scopes from
    /// `/scp` (a space-separated string).
    pub fn entra() -> Self {
        ClaimMapping::from_pointers(vec![top_level("roles")], Vec::new(), vec![top_level("scp")])
    }

    /// Okta: groups (a `groups` claim added to the authorization server) as
    /// roles, scopes from `/scp` (an array).
    pub fn okta() -> Self {
        ClaimMapping::from_pointers(
            vec![top_level("groups")],
            Vec::new(),
            vec![top_level("scp")],
        )
    }

    /// Amazon Cognito: user-pool groups (`/cognito:groups`) as roles,
    /// scopes from `/scope`.
    pub fn cognito() -> Self {
        ClaimMapping::from_pointers(
            vec![top_level("cognito:groups")],
            Vec::new(),
            vec![top_level("scope")],
        )
    }

    fn add(mut self, target: u8, pointer: &str) -> Self {
        let count = self.roles.len() + self.permissions.len() + self.scopes.len();
        match parse_pointer(pointer) {
            Some(p) if count < MAX_CLAIM_POINTERS => {
                match target {
                    ROLES => self.roles.push(p),
                    PERMISSIONS => self.permissions.push(p),
                    _ => self.scopes.push(p),
                }
                self.rebuild();
            }
            _ => {
                if self.invalid.is_none() {
                    self.invalid = Some(pointer.chars().take(MAX_TOKEN_LEN).collect());
                }
            }
        }
        self
    }

    /// Also reads roles at `pointer` (RFC 6901, e.g. `/realm_access/roles`).
    pub fn roles(self, pointer: &str) -> Self {
        self.add(ROLES, pointer)
    }

    /// Also reads permissions at `pointer`.
    pub fn permissions(self, pointer: &str) -> Self {
        self.add(PERMISSIONS, pointer)
    }

    /// Also reads scopes at `pointer`.
    pub fn scopes(self, pointer: &str) -> Self {
        self.add(SCOPES, pointer)
    }

    /// Whether a string of roles is split on whitespace (default `false`:
    /// a string is one role). Permissions and scopes always are.
    pub fn split_roles(mut self, split: bool) -> Self {
        self.split_roles = split;
        self
    }

    /// Replaces the roles (or permissions, scopes) with top-level claims.
    pub(crate) fn set_top_level(&mut self, target: u8, names: Vec<Box<str>>) {
        let pointers = names
            .iter()
            .take(MAX_CLAIM_POINTERS)
            .map(|n| top_level(n))
            .collect();
        match target {
            ROLES => self.roles = pointers,
            PERMISSIONS => self.permissions = pointers,
            _ => self.scopes = pointers,
        }
        self.rebuild();
    }

    /// The first pointer refused, if any.
    pub(crate) fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    /// The top-level members the mapping reads.
    pub(crate) fn roots(&self) -> &[Node] {
        &self.tree
    }

    fn rebuild(&mut self) {
        let mut roots: Vec<BuildNode> = Vec::new();
        for (pointers, target) in [
            (&self.roles, ROLES),
            (&self.permissions, PERMISSIONS),
            (&self.scopes, SCOPES),
        ] {
            for pointer in pointers {
                insert(&mut roots, pointer, target);
            }
        }
        self.tree = roots.into_iter().map(BuildNode::freeze).collect();
    }
}

pub(crate) const TARGET_ROLES: u8 = ROLES;
pub(crate) const TARGET_PERMISSIONS: u8 = PERMISSIONS;
pub(crate) const TARGET_SCOPES: u8 = SCOPES;

struct BuildNode {
    key: Box<str>,
    targets: u8,
    children: Vec<BuildNode>,
}

impl BuildNode {
    fn freeze(self) -> Node {
        Node {
            key: self.key,
            targets: self.targets,
            children: self.children.into_iter().map(BuildNode::freeze).collect(),
        }
    }
}

fn insert(level: &mut Vec<BuildNode>, pointer: &[Box<str>], target: u8) {
    let Some((first, rest)) = pointer.split_first() else {
        return;
    };
    let i = match level.iter().position(|n| n.key == *first) {
        Some(i) => i,
        None => {
            level.push(BuildNode {
                key: first.clone(),
                targets: 0,
                children: Vec::new(),
            });
            level.len() - 1
        }
    };
    if rest.is_empty() {
        level[i].targets |= target;
    } else {
        insert(&mut level[i].children, rest, target);
    }
}

impl Node {
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// Where mapped values go.
pub(crate) struct Sink<'a> {
    pub(crate) roles: &'a mut Vec<String>,
    pub(crate) permissions: &'a mut Vec<String>,
    pub(crate) scopes: &'a mut Vec<String>,
    pub(crate) split_roles: bool,
}

impl Sink<'_> {
    fn push(&mut self, targets: u8, value: &str) {
        for (bit, out, split) in [
            (ROLES, &mut *self.roles, self.split_roles),
            (PERMISSIONS, &mut *self.permissions, true),
            (SCOPES, &mut *self.scopes, true),
        ] {
            if targets & bit == 0 {
                continue;
            }
            if split {
                out.extend(value.split_ascii_whitespace().map(str::to_owned));
            } else {
                out.push(value.to_owned());
            }
        }
    }
}

impl ClaimMapping {
    pub(crate) fn splits_roles(&self) -> bool {
        self.split_roles
    }
}

/// Reads the value at a [`Node`]: strings for its targets, or an object to
/// descend into for its children.
pub(crate) struct NodeSeed<'n, 's, 'a> {
    pub(crate) node: &'n Node,
    pub(crate) sink: &'s mut Sink<'a>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.node.targets != 0, !self.node.children.is_empty()) {
            (true, true) => f.write_str("a string, an array of strings or an object"),
            (true, false) => f.write_str("a string or an array of strings"),
            _ => f.write_str("an object"),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.node.targets == 0 {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        self.sink.push(self.node.targets, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.node.targets == 0 {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        while let Some(s) = seq.next_element::<Key<'de>>()? {
            self.sink.push(self.node.targets, &s.0);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.node.children.is_empty() {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        // Duplicate members on a mapped path are refused, as at the top
        // level: a parser keeping the first and one keeping the last would
        // grant different rights.
        let mut seen = 0u64;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(i) = self.node.children.iter().position(|c| *c.key == *key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let mask = 1u64.checked_shl(i as u32).unwrap_or(0);
            if seen & mask != 0 {
                return Err(de::Error::custom("duplicate claim"));
            }
            seen |= mask;
            map.next_value_seed(NodeSeed {
                node: &self.node.children[i],
                sink: &mut *self.sink,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_follow_rfc_6901() {
        let p = parse_pointer("/https:~1~1example.com~1roles").unwrap();
        assert_eq!(&*p, [Box::from("https://example.com/roles")]);
        let p = parse_pointer("/a~01/b").unwrap();
        assert_eq!(&*p, [Box::from("a~1"), Box::from("b")]);
        assert_eq!(render(&p), "/a~01/b");
        for bad in ["", "roles", "/a~2", "/a~", "/a/b/c/d/e/f/g/h/i"] {
            assert!(parse_pointer(bad).is_none(), "{bad}");
        }
        assert!(parse_pointer("/a/b/c/d/e/f/g/h").is_some());
    }

    #[test]
    fn invalid_and_excess_pointers_are_reported_not_added() {
        let m = ClaimMapping::new().roles("realm_access/roles");
        assert_eq!(m.invalid(), Some("realm_access/roles"));
        assert!(m.roots().is_empty());
        let mut m = ClaimMapping::new();
        for i in 0..MAX_CLAIM_POINTERS {
            m = m.scopes(&format!("/s{i}"));
        }
        assert_eq!(m.invalid(), None);
        let m = m.scopes("/one-too-many");
        assert_eq!(m.invalid(), Some("/one-too-many"));
        assert_eq!(m.roots().len(), MAX_CLAIM_POINTERS);
    }

    #[test]
    fn shared_prefixes_share_nodes() {
        let m = ClaimMapping::keycloak("api").permissions("/resource_access/api/roles");
        let keys: Vec<&str> = m.roots().iter().map(Node::key).collect();
        assert_eq!(keys, ["realm_access", "resource_access", "scope"]);
        let client = &m.roots()[1].children[0];
        assert_eq!(client.key(), "api");
        assert_eq!(client.children[0].targets, ROLES | PERMISSIONS);
    }
}
