//! One-pass extraction of the registered and identity claims, and the
//! validation rules applied to them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::jws::JwtError;
use super::mapping::{ClaimMapping, NodeSeed, Sink};

/// Names of the claims that feed the [`Identity`](crate::Identity).
#[derive(Clone, Debug)]
pub(crate) struct ClaimNames {
    pub(crate) subject: Box<str>,
    /// Where roles, permissions and scopes are read.
    pub(crate) mapping: ClaimMapping,
    pub(crate) token_type: Box<str>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            subject: "sub".into(),
            mapping: ClaimMapping::default(),
            token_type: "typ".into(),
        }
    }
}

/// A claim the one pass reads.
#[derive(Clone, Copy, Debug)]
enum Field {
    Sub,
    Typ,
    /// A top-level member of the [`ClaimMapping`], by index.
    Mapped(usize),
    Iss,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    Fam,
}

impl ClaimNames {
    /// The field `key` names and a distinct bit for duplicate detection.
    fn field(&self, mapping: &ClaimMapping, key: &str) -> Option<(Field, u32)> {
        if key == &*self.subject {
            return Some((Field::Sub, 0));
        }
        if key == &*self.token_type {
            return Some((Field::Typ, 1));
        }
        let fixed = match key {
            "iss" => Some((Field::Iss, 2)),
            "aud" => Some((Field::Aud, 3)),
            "exp" => Some((Field::Exp, 4)),
            "nbf" => Some((Field::Nbf, 5)),
            "iat" => Some((Field::Iat, 6)),
            "jti" => Some((Field::Jti, 7)),
            FAMILY_CLAIM => Some((Field::Fam, 8)),
            _ => None,
        };
        if fixed.is_some() {
            return fixed;
        }
        // At most `MAX_CLAIM_POINTERS` (32) roots: bits 9..41.
        let i = mapping.roots().iter().position(|n| n.key() == key)?;
        Some((Field::Mapped(i), 9 + i as u32))
    }
}

/// The token type claim of refresh tokens (this crate's, and Keycloak's in
/// another casing).
pub(crate) const REFRESH_TYPE: &str = "refresh";

/// The claim of this crate's issuer naming a refresh family.
pub(crate) const FAMILY_CLAIM: &str = "fam";

/// Validation rules for the registered claims.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    pub(crate) issuers: Option<Vec<Box<str>>>,
    pub(crate) audiences: Option<Vec<Box<str>>>,
    /// The expected token type, when configured. Unconfigured, any type
    /// passes except a refresh token's ([`REFRESH_TYPE`], in any casing).
    pub(crate) token_type: Option<Box<str>>,
    /// Whether the token type claim must be present.
    pub(crate) require_token_type: bool,
    pub(crate) required: Vec<Box<str>>,
    pub(crate) names: ClaimNames,
    /// The JOSE header `typ` values accepted (RFC 8725 §3.11); any when
    /// `None`.
    pub(crate) header_types: Option<Vec<Box<str>>>,
    /// The JWT access-token profile (RFC 9068): `iss`, `exp`, `aud`,
    /// `sub`, `client_id`, `iat` and `jti` required.
    pub(crate) access_token_profile: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            leeway: 30,
            require_exp: true,
            issuers: None,
            audiences: None,
            token_type: None,
            require_token_type: false,
            required: Vec::new(),
            names: ClaimNames::default(),
            header_types: None,
            access_token_profile: false,
        }
    }
}

/// What the one pass over the payload found. Claims only compared
/// (`iss`, `typ`) borrow the payload unless escaped; the audience is
/// compared with the configured ones as it is read.
#[derive(Debug, Default)]
pub(crate) struct Registered<'de> {
    pub(crate) sub: Option<String>,
    pub(crate) iss: Option<Cow<'de, str>>,
    pub(crate) aud: Audience,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) typ: Option<Cow<'de, str>>,
    pub(crate) fam: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) permissions: Vec<String>,
    pub(crate) scopes: Vec<String>,
    /// With the access-token profile: whether `client_id` was present.
    client_id: bool,
    required_seen: u64,
}

/// The `aud` claim, as compared with the configured audiences while it is
/// read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Audience {
    /// No `aud` claim.
    #[default]
    Absent,
    /// `aud` names one of the configured audiences.
    Accepted,
    /// `aud` names none of them (or none is configured).
    Refused,
}

impl<'de> Registered<'de> {
    /// Parses the claims `rules` care about from a JSON payload.
    pub(crate) fn parse(payload: &'de [u8], rules: &Rules) -> Result<Self, JwtError> {
        Self::parse_mapped(payload, rules, &rules.names.mapping)
    }

    /// As [`parse`](Self::parse), reading the identity with `mapping`
    /// (an issuer's own) instead of the rules' one.
    pub(crate) fn parse_mapped(
        payload: &'de [u8],
        rules: &Rules,
        mapping: &ClaimMapping,
    ) -> Result<Self, JwtError> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let registered = ClaimsSeed { rules, mapping }
            .deserialize(&mut de)
            .map_err(|_| JwtError::InvalidClaim)?;
        de.end().map_err(|_| JwtError::InvalidClaim)?;
        Ok(registered)
    }

    /// Applies `rules` at time `now` (seconds since the epoch).
    pub(crate) fn validate(&self, rules: &Rules, now: u64) -> Result<(), JwtError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let leeway = i64::try_from(rules.leeway).unwrap_or(i64::MAX);
        match (&rules.token_type, &self.typ) {
            (Some(expected), Some(t)) if **t != **expected => return Err(JwtError::TokenType),
            (Some(_), None) if rules.require_token_type => return Err(JwtError::TokenType),
            // Not configured: any kind of token (Keycloak's `"Bearer"`, an
            // IdP's `"access"`...) except a refresh token, ours or an
            // IdP's (Keycloak's `"Refresh"`).
            (None, Some(t)) if t.eq_ignore_ascii_case(REFRESH_TYPE) => {
                return Err(JwtError::TokenType)
            }
            _ => {}
        }
        match self.exp {
            Some(exp) if now >= exp.saturating_add(leeway) => return Err(JwtError::Expired),
            None if rules.require_exp => return Err(JwtError::MissingClaim),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(JwtError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(JwtError::IssuedInFuture);
        }
        if let Some(issuers) = &rules.issuers {
            match &self.iss {
                Some(iss) if issuers.iter().any(|i| **i == **iss) => {}
                _ => return Err(JwtError::Issuer),
            }
        }
        match (&rules.audiences, self.aud) {
            (Some(_), Audience::Accepted) | (None, Audience::Absent) => {}
            (Some(_), Audience::Refused | Audience::Absent) => return Err(JwtError::Audience),
            // RFC 7519 §4.1.3: a token naming audiences must be refused by a
            // verifier that does not identify itself with one of them.
            (None, Audience::Accepted | Audience::Refused) => return Err(JwtError::Audience),
        }
        if rules.access_token_profile {
            let complete = self.iss.is_some()
                && self.exp.is_some()
                && self.aud != Audience::Absent
                && self.iat.is_some()
                && self.jti.is_some()
                && self.client_id
                && self.sub.is_some();
            if !complete {
                return Err(JwtError::ProfileClaim);
            }
        }
        let all_required = if rules.required.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << rules.required.len()) - 1
        };
        if self.required_seen & all_required != all_required {
            return Err(JwtError::MissingClaim);
        }
        // An empty subject is no subject: it would match an empty owner
        // field in an owner check.
        if self.sub.as_deref().is_none_or(str::is_empty) {
            return Err(JwtError::MissingClaim);
        }
        Ok(())
    }
}

struct ClaimsSeed<'r> {
    rules: &'r Rules,
    mapping: &'r ClaimMapping,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Registered<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Registered<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

/// A map key (or a string), borrowed from the input when it has no
/// escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims set (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Registered<'de>, A::Error> {
        let rules = self.rules;
        let names = &rules.names;
        let mut r = Registered::default();
        // Claims read twice would let the typed claims and these disagree
        // (serde keeps the last value or errors): refuse duplicates.
        let mut seen = 0u64;
        let mapping = self.mapping;
        let roots = mapping.roots();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key = &*key;
            if let Some(i) = rules.required.iter().position(|n| **n == *key) {
                r.required_seen |= 1u64.checked_shl(i as u32).unwrap_or(0);
            }
            if rules.access_token_profile && key == "client_id" {
                if r.client_id {
                    return Err(de::Error::custom("duplicate claim"));
                }
                // RFC 9068 §2.2: a string.
                map.next_value::<Key<'de>>()?;
                r.client_id = true;
                continue;
            }
            let Some((field, bit)) = names.field(mapping, key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let mask = 1u64.checked_shl(bit).unwrap_or(0);
            if seen & mask != 0 {
                return Err(de::Error::custom("duplicate claim"));
            }
            seen |= mask;
            match field {
                Field::Sub => r.sub = Some(map.next_value::<SubjectValue>()?.0),
                Field::Typ => r.typ = Some(map.next_value::<Key<'de>>()?.0),
                Field::Mapped(i) => map.next_value_seed(NodeSeed {
                    node: &roots[i],
                    sink: &mut Sink {
                        roles: &mut r.roles,
                        permissions: &mut r.permissions,
                        scopes: &mut r.scopes,
                        split_roles: mapping.splits_roles(),
                    },
                })?,
                Field::Iss => r.iss = Some(map.next_value::<Key<'de>>()?.0),
                Field::Aud => {
                    r.aud = map.next_value_seed(AudienceSeed {
                        expected: rules.audiences.as_deref().unwrap_or(&[]),
                    })?;
                }
                Field::Exp => r.exp = Some(map.next_value::<NumericDate>()?.0),
                Field::Nbf => r.nbf = Some(map.next_value::<NumericDate>()?.0),
                Field::Iat => r.iat = Some(map.next_value::<NumericDate>()?.0),
                Field::Jti => r.jti = Some(map.next_value()?),
                Field::Fam => r.fam = Some(map.next_value()?),
            }
        }
        Ok(r)
    }
}

/// A subject: a string, or an integer (some issuers put numeric user ids
/// in `sub`).
struct SubjectValue(String);

impl<'de> de::Deserialize<'de> for SubjectValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SubjectValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer subject")
            }
            fn visit_str<E>(self, v: &str) -> Result<SubjectValue, E> {
                Ok(SubjectValue(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<SubjectValue, E> {
                Ok(SubjectValue(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<SubjectValue, E> {
                Ok(SubjectValue(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<SubjectValue, E> {
                Ok(SubjectValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An RFC 7519 NumericDate: an integer or a fractional number of seconds
/// (truncated).
struct NumericDate(i64);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("date out of range"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v.abs() < 9.0e15 {
                    Ok(NumericDate(v.trunc() as i64))
                } else {
                    Err(E::custom("date out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The `aud` claim, a string or an array of strings (RFC 7519 §4.1.3),
/// compared with `expected` as it is read: nothing is copied.
struct AudienceSeed<'r> {
    expected: &'r [Box<str>],
}

impl AudienceSeed<'_> {
    fn verdict(&self, accepted: bool) -> Audience {
        if accepted {
            Audience::Accepted
        } else {
            Audience::Refused
        }
    }

    fn accepts(&self, aud: &str) -> bool {
        self.expected.iter().any(|e| **e == *aud)
    }
}

impl<'de> DeserializeSeed<'de> for AudienceSeed<'_> {
    type Value = Audience;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Audience, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AudienceSeed<'_> {
    type Value = Audience;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_str<E>(self, v: &str) -> Result<Audience, E> {
        Ok(self.verdict(self.accepts(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
        // Every element is read (and must be a string) even after a match.
        let mut accepted = false;
        while let Some(Key(aud)) = seq.next_element::<Key<'de>>()? {
            accepted |= self.accepts(&aud);
        }
        Ok(self.verdict(accepted))
    }
}

/// Whether the JOSE header `typ` `found` names the media type `expected`:
/// compared without regard to case, the `application/` prefix optional
/// (RFC 7515 §4.1.9).
pub(crate) fn media_type_eq(found: &str, expected: &str) -> bool {
    fn short(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    short(found).eq_ignore_ascii_case(short(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Registered<'_>, JwtError> {
        Registered::parse(json.as_bytes(), &Rules::default())
    }

    #[test]
    fn extracts_registered_and_identity_claims() {
        let r = parse(
            r#"{"sub":"u1","iss":"me","aud":["a","b"],"exp":100,"nbf":1.9,"iat":2,
                "jti":"j","typ":"access","fam":"f","roles":["admin"],"role":"user",
                "permissions":"posts:read posts:write","scope":"read write","scp":["x"],
                "other":{"nested":[1,2,{"a":null}]}}"#,
        )
        .unwrap();
        assert_eq!(r.sub.as_deref(), Some("u1"));
        assert_eq!(r.aud, Audience::Refused, "no audience configured");
        assert_eq!((r.exp, r.nbf, r.iat), (Some(100), Some(1), Some(2)));
        assert_eq!(r.roles, ["admin", "user"]);
        assert_eq!(r.permissions, ["posts:read", "posts:write"]);
        assert_eq!(r.scopes, ["read", "write", "x"]);
        assert_eq!(r.fam.as_deref(), Some("f"));
    }

    #[test]
    fn numeric_subjects_and_string_audience() {
        let r = parse(r#"{"sub":42,"aud":"api"}"#).unwrap();
        assert_eq!(r.sub.as_deref(), Some("42"));
        assert_eq!(r.aud, Audience::Refused, "no audience configured");
        let rules = Rules {
            audiences: Some(vec!["api".into(), "other".into()]),
            ..Rules::default()
        };
        for (json, aud) in [
            (r#"{"aud":"api"}"#, Audience::Accepted),
            (r#"{"aud":["x","other"]}"#, Audience::Accepted),
            (r#"{"aud":["other","x"]}"#, Audience::Accepted),
            (r#"{"aud":"ap\u0069"}"#, Audience::Accepted),
            (r#"{"aud":["x"]}"#, Audience::Refused),
            (r#"{"aud":[]}"#, Audience::Refused),
            (r#"{"aud":"API"}"#, Audience::Refused),
            (r#"{}"#, Audience::Absent),
        ] {
            let r = Registered::parse(json.as_bytes(), &rules).unwrap();
            assert_eq!(r.aud, aud, "{json}");
        }
    }

    #[test]
    fn wrong_claim_types_are_invalid() {
        for json in [
            r#"{"exp":"tomorrow"}"#,
            r#"{"sub":true}"#,
            r#"{"aud":[1]}"#,
            r#"{"aud":["api",1]}"#,
            r#"{"aud":null}"#,
            r#"{"iss":1}"#,
            r#"{"typ":null}"#,
            r#"{"exp":1e300}"#,
            r#"[1,2]"#,
            r#"{"sub":"a"} trailing"#,
            r#"{"sub":"a","exp":1,"exp":99999999999}"#,
            r#"{"sub":"a","sub":"admin"}"#,
            "not json",
        ] {
            assert_eq!(parse(json).unwrap_err(), JwtError::InvalidClaim, "{json}");
        }
    }

    #[test]
    fn escaped_claim_names_are_matched() {
        let r = parse(r#"{"s\u0075b":"u1"}"#).unwrap();
        assert_eq!(r.sub.as_deref(), Some("u1"));
    }

    fn validate(json: &str, rules: &Rules, now: u64) -> Result<(), JwtError> {
        Registered::parse(json.as_bytes(), rules)?.validate(rules, now)
    }

    #[test]
    fn time_claims_with_leeway() {
        let rules = Rules {
            leeway: 10,
            ..Rules::default()
        };
        assert_eq!(validate(r#"{"sub":"a","exp":100}"#, &rules, 105), Ok(()));
        for no_subject in [r#"{"exp":100}"#, r#"{"sub":"","exp":100}"#] {
            assert_eq!(
                validate(no_subject, &rules, 0),
                Err(JwtError::MissingClaim),
                "{no_subject}"
            );
        }
        assert_eq!(
            validate(r#"{"sub":"a","exp":100}"#, &rules, 110),
            Err(JwtError::Expired)
        );
        assert_eq!(
            validate(r#"{"sub":"a"}"#, &rules, 0),
            Err(JwtError::MissingClaim)
        );
        assert_eq!(
            validate(r#"{"sub":"a","exp":1000,"nbf":200}"#, &rules, 100),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            validate(r#"{"sub":"a","exp":1000,"iat":200}"#, &rules, 100),
            Err(JwtError::IssuedInFuture)
        );
        assert_eq!(
            validate(r#"{"sub":"a","exp":1000,"iat":105}"#, &rules, 100),
            Ok(())
        );
        let lax = Rules {
            require_exp: false,
            ..Rules::default()
        };
        assert_eq!(validate(r#"{"sub":"a"}"#, &lax, 0), Ok(()));
    }

    #[test]
    fn issuer_and_audience() {
        let rules = Rules {
            issuers: Some(vec!["https://idp".into()]),
            audiences: Some(vec!["api".into(), "other".into()]),
            ..Rules::default()
        };
        let ok = r#"{"sub":"a","exp":10,"iss":"https://idp","aud":["x","other"]}"#;
        assert_eq!(validate(ok, &rules, 0), Ok(()));
        let bad_iss = r#"{"sub":"a","exp":10,"iss":"https://evil","aud":"api"}"#;
        assert_eq!(validate(bad_iss, &rules, 0), Err(JwtError::Issuer));
        let no_iss = r#"{"sub":"a","exp":10,"aud":"api"}"#;
        assert_eq!(validate(no_iss, &rules, 0), Err(JwtError::Issuer));
        let bad_aud = r#"{"sub":"a","exp":10,"iss":"https://idp","aud":["x"]}"#;
        assert_eq!(validate(bad_aud, &rules, 0), Err(JwtError::Audience));
        let no_aud = r#"{"sub":"a","exp":10,"iss":"https://idp"}"#;
        assert_eq!(validate(no_aud, &rules, 0), Err(JwtError::Audience));
        let unexpected = r#"{"sub":"a","exp":10,"aud":"api"}"#;
        assert_eq!(
            validate(unexpected, &Rules::default(), 0),
            Err(JwtError::Audience)
        );
    }

    #[test]
    fn token_type() {
        let rules = Rules::default();
        for refresh in ["refresh", "Refresh", "REFRESH"] {
            let json = format!(r#"{{"sub":"a","exp":10,"typ":"{refresh}"}}"#);
            assert_eq!(validate(&json, &rules, 0), Err(JwtError::TokenType));
        }
        // Unconfigured, other kinds pass: Keycloak access tokens say "Bearer".
        for kind in ["access", "Bearer", "at+jwt"] {
            let json = format!(r#"{{"sub":"a","exp":10,"typ":"{kind}"}}"#);
            assert_eq!(validate(&json, &rules, 0), Ok(()), "{kind}");
        }
        assert_eq!(validate(r#"{"sub":"a","exp":10}"#, &rules, 0), Ok(()));
        let access = Rules {
            token_type: Some("access".into()),
            ..Rules::default()
        };
        assert_eq!(
            validate(r#"{"sub":"a","exp":10,"typ":"Bearer"}"#, &access, 0),
            Err(JwtError::TokenType)
        );
        assert_eq!(
            validate(r#"{"sub":"a","exp":10,"typ":"access"}"#, &access, 0),
            Ok(())
        );
        assert_eq!(validate(r#"{"sub":"a","exp":10}"#, &access, 0), Ok(()));
        let strict = Rules {
            token_type: Some("access".into()),
            require_token_type: true,
            ..Rules::default()
        };
        assert_eq!(
            validate(r#"{"sub":"a","exp":10}"#, &strict, 0),
            Err(JwtError::TokenType)
        );
    }

    #[test]
    fn required_claims_and_subject() {
        let rules = Rules {
            required: vec!["jti".into(), "tenant".into()],
            ..Rules::default()
        };
        assert_eq!(
            validate(r#"{"sub":"a","exp":10,"jti":"x"}"#, &rules, 0),
            Err(JwtError::MissingClaim)
        );
        assert_eq!(
            validate(r#"{"sub":"a","exp":10,"jti":"x","tenant":null}"#, &rules, 0),
            Ok(())
        );
        assert_eq!(
            validate(r#"{"exp":10}"#, &Rules::default(), 0),
            Err(JwtError::MissingClaim)
        );
    }

    #[test]
    fn media_types_compare_without_case_and_application_prefix() {
        assert!(media_type_eq("at+jwt", "at+jwt"));
        assert!(media_type_eq("AT+JWT", "at+jwt"));
        assert!(media_type_eq("application/at+jwt", "at+jwt"));
        assert!(media_type_eq("at+jwt", "Application/AT+JWT"));
        assert!(!media_type_eq("JWT", "at+jwt"));
        assert!(!media_type_eq("application/", "at+jwt"));
        assert!(!media_type_eq("text/at+jwt", "at+jwt"));
        assert!(!media_type_eq("at+jwt ", "at+jwt"));
        assert!(!media_type_eq("applicatiön/at+jwt", "at+jwt"));
    }
}
