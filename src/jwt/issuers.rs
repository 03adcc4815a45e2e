//! [`Issuers`]: several identity providers in one authenticator, each
//! bound to its own keys.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::claims::Key;
use super::jws::JwtError;
use super::keys::KeySet;
use super::mapping::ClaimMapping;
use super::source::KeySource;
use crate::error::AuthError;

/// Most issuers one authenticator trusts.
pub const MAX_ISSUERS: usize = 64;

/// The identity providers a
/// [`JwtAuthenticator::from_issuers`](super::JwtAuthenticator::from_issuers)
/// trusts, each issuer (`iss`) bound to its own keys: a static [`KeySet`]
/// ([`keys`](Self::keys)) or a [`KeySource`] such as a
/// [`RemoteJwks`](super::RemoteJwks) ([`source`](Self::source), and with
/// the `oidc` feature [`discovered`](Self::discovered)).
///
/// A token's `iss`, read from the still unverified claims, only chooses
/// the keys; it must equal a configured issuer exactly (no prefix, case or
/// trailing-slash leniency). A token naming no issuer, or one not
/// configured, is refused (`401 invalid_token`) without any key lookup or
/// fetch. The signature is then checked with that issuer's keys only, so a
/// key of issuer A never verifies a token claiming issuer B, and after
/// verification the verified `iss` is checked again.
///
/// ```
/// # fn doc(a: tower_auth::jwt::KeySet, b: tower_auth::jwt::KeySet) -> Result<(), tower_auth::jwt::ConfigError> {
/// use tower_auth::jwt::{Issuers, JwtAuthenticator};
///
/// let jwt = JwtAuthenticator::<serde_json::Value>::from_issuers(
///     Issuers::new()
///         .keys("https://a.example.com", a)
///         .keys("https://b.example.com", b),
/// )
/// .audiences(["orders-api"])
/// .build()?; // reports an empty key set, duplicate issuers...
/// # let _ = jwt; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Issuers {
    entries: Vec<IssuerEntry>,
}

/// One issuer and its keys.
#[derive(Clone)]
pub(crate) struct IssuerEntry {
    pub(crate) issuer: Box<str>,
    pub(crate) keys: IssuerKeys,
    /// The algorithms of the keys (or the source's allow-list).
    own: Vec<Algorithm>,
    /// `own` narrowed to the authenticator's allow-list.
    pub(crate) allowed: Vec<Algorithm>,
    /// This issuer's claim mapping, instead of the authenticator's.
    pub(crate) mapping: Option<ClaimMapping>,
}

#[derive(Clone)]
pub(crate) enum IssuerKeys {
    Static(KeySet),
    Source(Arc<dyn KeySource>),
}

impl fmt::Debug for IssuerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Issuer");
        d.field("issuer", &self.issuer);
        match &self.keys {
            IssuerKeys::Static(keys) => d.field("keys", keys),
            IssuerKeys::Source(source) => d.field("source", source),
        };
        d.field("algorithms", &self.allowed)
            .field("mapping", &self.mapping)
            .finish()
    }
}

impl IssuerEntry {
    /// The keys to verify this issuer's tokens with now.
    pub(crate) fn current(&self) -> Result<Cow<'_, KeySet>, AuthError> {
        match &self.keys {
            IssuerKeys::Static(keys) => Ok(Cow::Borrowed(keys)),
            IssuerKeys::Source(source) => source.current().map(Cow::Owned),
        }
    }

    pub(crate) fn source(&self) -> Option<&Arc<dyn KeySource>> {
        match &self.keys {
            IssuerKeys::Static(_) => None,
            IssuerKeys::Source(source) => Some(source),
        }
    }

    pub(crate) fn own_algorithms(&self) -> &[Algorithm] {
        &self.own
    }
}

impl Issuers {
    /// No issuer yet.
    pub fn new() -> Self {
        Issuers::default()
    }

    /// Trusts tokens of `issuer` signed by one of `keys`, with the
    /// algorithms the keys are bound to.
    pub fn keys(mut self, issuer: impl Into<Box<str>>, keys: KeySet) -> Self {
        let own = super::authenticator::algorithms_of(&keys);
        self.entries.push(IssuerEntry {
            issuer: issuer.into(),
            allowed: own.clone(),
            own,
            keys: IssuerKeys::Static(keys),
            mapping: None,
        });
        self
    }

    /// Trusts tokens of `issuer` signed by a key of `source` (such as a
    /// [`RemoteJwks`](super::RemoteJwks)), with the algorithms it allows.
    /// A token of this issuer with an unknown `kid` may trigger a refresh
    /// of this source only.
    pub fn source(mut self, issuer: impl Into<Box<str>>, source: impl KeySource) -> Self {
        let own = source.algorithms();
        self.entries.push(IssuerEntry {
            issuer: issuer.into(),
            allowed: own.clone(),
            own,
            keys: IssuerKeys::Source(Arc::new(source)),
            mapping: None,
        });
        self
    }

    /// Trusts the provider found by a [`Discovery`](super::Discovery): its
    /// verified issuer with its key set.
    #[cfg(feature = "oidc")]
    pub fn discovered(self, provider: &super::Discovered) -> Self {
        self.source(provider.issuer(), provider.jwks().clone())
    }

    /// Reads the identity of the issuer added last with `mapping` instead
    /// of the authenticator's
    /// [`claim_mapping`](super::JwtAuthenticator::claim_mapping): each
    /// provider puts roles and scopes in its own claims.
    ///
    /// ```
    /// # fn doc(kc: tower_auth::jwt::KeySet, a0: tower_auth::jwt::KeySet) {
    /// use tower_auth::jwt::{ClaimMapping, Issuers};
    ///
    /// let issuers = Issuers::new()
    ///     .keys("https://sso.example.com/realms/staff", kc)
    ///     .claim_mapping(ClaimMapping::keycloak("orders-api"))
    ///     .keys("https://partners.eu.auth0.com/", a0)
    ///     .claim_mapping(ClaimMapping::auth0("https://example.com"));
    /// # let _ = issuers; }
    /// ```
    ///
    /// Without an issuer yet, it does nothing.
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        if let Some(last) = self.entries.last_mut() {
            last.mapping = Some(mapping);
        }
        self
    }

    /// The configured issuers, in order.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.issuer)
    }

    /// How many issuers are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn into_entries(self) -> Arc<[IssuerEntry]> {
        self.entries.into()
    }
}

/// Narrows each issuer's algorithms to the authenticator's allow-list.
pub(crate) fn narrow(entries: &[IssuerEntry], allowed: &[Algorithm]) -> Arc<[IssuerEntry]> {
    entries
        .iter()
        .map(|e| IssuerEntry {
            allowed: e
                .own
                .iter()
                .copied()
                .filter(|a| allowed.contains(a))
                .collect(),
            ..e.clone()
        })
        .collect()
}

/// The entry of the issuer `iss` names, compared exactly.
pub(crate) fn find<'e>(entries: &'e [IssuerEntry], iss: &str) -> Option<&'e IssuerEntry> {
    entries.iter().find(|e| *e.issuer == *iss)
}

/// The `iss` of an unverified claims set, for routing only. A claims set
/// that is not a JSON object, repeats `iss` or holds a non-string `iss` is
/// refused.
pub(crate) fn peek_issuer(payload: &[u8]) -> Result<Option<Cow<'_, str>>, JwtError> {
    if !super::jws::is_json_object(payload) {
        return Err(JwtError::InvalidClaim);
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let iss = IssSeed
        .deserialize(&mut de)
        .map_err(|_| JwtError::InvalidClaim)?;
    de.end().map_err(|_| JwtError::InvalidClaim)?;
    Ok(iss)
}

struct IssSeed;

impl<'de> DeserializeSeed<'de> for IssSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IssSeed {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims set (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut iss = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key != "iss" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if iss.is_some() {
                return Err(de::Error::custom("duplicate claim"));
            }
            iss = Some(map.next_value::<Key<'de>>()?.0);
        }
        Ok(iss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_the_issuer_only() {
        let p = |s: &str| peek_issuer(s.as_bytes()).map(|i| i.map(Cow::into_owned));
        assert_eq!(
            p(r#"{"sub":"a","iss":"https://a","x":{"iss":"b"}}"#),
            Ok(Some("https://a".into()))
        );
        assert_eq!(
            p(r#"{"i\u0073s":"https://a"}"#),
            Ok(Some("https://a".into()))
        );
        assert_eq!(p(r#"{"sub":"a"}"#), Ok(None));
        for bad in [
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"iss":1}"#,
            r#"["iss","a"]"#,
            r#"{"iss":"a""#,
            "",
        ] {
            assert_eq!(p(bad), Err(JwtError::InvalidClaim), "{bad}");
        }
    }

    #[test]
    fn issuers_are_matched_exactly() {
        let entries = Issuers::new()
            .keys("https://a", KeySet::new())
            .into_entries();
        assert!(find(&entries, "https://a").is_some());
        for other in ["https://a/", "HTTPS://A", "https://a.evil", "", "https://"] {
            assert!(find(&entries, other).is_none(), "{other}");
        }
    }
}
