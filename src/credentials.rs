//! Strict parsing of credentials in headers and query strings, shared by the
//! authenticators.
// Each authenticator uses a part of this module; with only some features on,
// the other parts are unused.
#![cfg_attr(
    not(all(feature = "api-key", any(feature = "bearer", feature = "jwt"))),
    allow(dead_code)
)]

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use http::Uri;

use crate::error::AuthError;
use crate::secret::Secret;

/// Default limit on the size of one credential (header value or query
/// parameter): 8 KiB.
pub(crate) const DEFAULT_MAX_LEN: usize = 8 * 1024;

/// The one value of header `name`: `Ok(None)` when absent, `400` when the
/// header is repeated (two values are ambiguous, never pick one).
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, AuthError> {
    // As many values as names: no header of the request is repeated, so
    // one hash lookup answers (walking `get_all` costs several times that).
    if headers.len() == headers.keys_len() {
        return Ok(headers.get(name));
    }
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::invalid_request(format!(
            "more than one {name} header"
        )));
    }
    Ok(first)
}

/// Checks size and characters of a header value and returns it as text.
pub(crate) fn visible_ascii<'a>(
    value: &'a HeaderValue,
    name: &HeaderName,
    max_len: usize,
) -> Result<&'a str, AuthError> {
    let bytes = value.as_bytes();
    if bytes.len() > max_len {
        return Err(AuthError::invalid_request(format!(
            "the {name} header is longer than {max_len} bytes"
        )));
    }
    // A fold without early exit, so the loop vectorizes: credentials are
    // scanned on every request.
    if !bytes
        .iter()
        .fold(true, |ok, b| ok & (0x20..0x7f).contains(b))
    {
        return Err(AuthError::invalid_request(format!(
            "the {name} header contains characters other than visible ASCII"
        )));
    }
    // Checked above: every byte is ASCII.
    std::str::from_utf8(bytes).map_err(|_| AuthError::invalid_request("invalid header"))
}

/// Whether `s` is an RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" /
/// "~" / "+" / "/" ) *"="`.
pub(crate) fn is_token68(s: &str) -> bool {
    is_token68_bytes(s.as_bytes())
}

/// `TOKEN68[b]` is 0 for the bytes a token68 is made of (before its `=`
/// padding), 1 for every other byte.
static TOKEN68: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/') {
            table[b] = 0;
        }
        b += 1;
    }
    table
};

fn is_token68_bytes(s: &[u8]) -> bool {
    let body_len = s.len() - s.iter().rev().take_while(|b| **b == b'=').count();
    let body = &s[..body_len];
    // One table load per byte, folded without an early exit: credentials
    // are scanned on every request.
    let bad = body
        .iter()
        .fold(0u8, |bad, &b| bad | TOKEN68[usize::from(b)]);
    !body.is_empty() && bad == 0
}

/// The token of `Authorization: Bearer <token>`.
///
/// * no `Authorization` header, or one with another scheme: `Ok(None)` (not
///   this authenticator's credentials);
/// * the scheme is matched case-insensitively (RFC 7235 §2.1);
/// * more than one `Authorization` header, non-visible-ASCII bytes, a value
///   longer than `max_len`, an empty token or one outside the token68
///   charset: `400 invalid_request`.
pub(crate) fn bearer_token(
    headers: &HeaderMap,
    max_len: usize,
) -> Result<Option<Secret>, AuthError> {
    Ok(bearer_token_in(headers, max_len)?.map(|t| {
        let end = t.value.len();
        Secret::from_header(t.value, t.start..end)
    }))
}

/// A bearer token inside the request's `Authorization` header, without a
/// copy: the header value (a reference-counted buffer) and where the token
/// starts in it.
#[derive(Clone, Debug)]
pub(crate) struct HeaderToken {
    value: HeaderValue,
    start: usize,
}

impl HeaderToken {
    pub(crate) fn as_str(&self) -> &str {
        // Checked to be visible ASCII when parsed.
        std::str::from_utf8(&self.value.as_bytes()[self.start..]).unwrap_or_default()
    }
}

/// Like [`bearer_token`], without copying the token.
pub(crate) fn bearer_token_in(
    headers: &HeaderMap,
    max_len: usize,
) -> Result<Option<HeaderToken>, AuthError> {
    let Some(value) = single_header(headers, &AUTHORIZATION)? else {
        return Ok(None);
    };
    // A foreign scheme is not ours to judge, even when malformed.
    let raw = value.as_bytes();
    // The scheme is what comes before the first space: `Bearer` in any
    // letter case, then a space or the end of the value.
    let scheme_len = b"bearer".len();
    let is_bearer = raw.len() >= scheme_len
        && raw[..scheme_len].eq_ignore_ascii_case(b"bearer")
        && raw.get(scheme_len).is_none_or(|b| *b == b' ');
    if !is_bearer {
        return Ok(None);
    }
    if raw.len() > max_len {
        return Err(AuthError::invalid_request(format!(
            "the {AUTHORIZATION} header is longer than {max_len} bytes"
        )));
    }
    let start = scheme_len + raw[scheme_len..].iter().take_while(|b| **b == b' ').count();
    let token = &raw[start..];
    if token.is_empty() {
        return Err(AuthError::invalid_request("the bearer token is empty"));
    }
    // token68 is a subset of visible ASCII: one pass checks both; the
    // slower diagnosis runs only on the error path.
    if !is_token68_bytes(token) {
        visible_ascii(value, &AUTHORIZATION, max_len)?;
        return Err(AuthError::invalid_request(
            "the bearer token contains invalid characters",
        ));
    }
    Ok(Some(HeaderToken {
        value: value.clone(),
        start,
    }))
}

/// The value of query parameter `name`, percent-decoded as
/// `application/x-www-form-urlencoded`. `400` when it is repeated, longer than
/// `max_len`, not valid percent-encoding, or not UTF-8.
pub(crate) fn query_param(
    uri: &Uri,
    name: &str,
    max_len: usize,
) -> Result<Option<Secret>, AuthError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found: Option<Secret> = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.len() > name.len() * 3 {
            continue;
        }
        let Some(k) = form_decode(k) else { continue };
        if k != name {
            continue;
        }
        if found.is_some() {
            return Err(AuthError::invalid_request(format!(
                "the {name} query parameter is repeated"
            )));
        }
        if v.len() > max_len {
            return Err(AuthError::invalid_request(format!(
                "the {name} query parameter is longer than {max_len} bytes"
            )));
        }
        let value = form_decode(v).ok_or_else(|| {
            AuthError::invalid_request(format!(
                "the {name} query parameter is not valid percent-encoded UTF-8"
            ))
        })?;
        if value.is_empty() {
            return Err(AuthError::invalid_request(format!(
                "the {name} query parameter is empty"
            )));
        }
        found = Some(Secret::new(value.into_owned()));
    }
    Ok(found)
}

/// Decodes `application/x-www-form-urlencoded` text; `None` on a bad escape
/// or invalid UTF-8.
pub(crate) fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthErrorKind;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn bearer(values: &[&[u8]]) -> Result<Option<String>, AuthErrorKind> {
        bearer_token(&headers(values), 64)
            .map(|o| o.map(|s| s.expose().to_owned()))
            .map_err(|e| e.kind())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            &b"Bearer abc"[..],
            b"bearer abc",
            b"BEARER abc",
            b"bEaReR   abc",
        ] {
            assert_eq!(bearer(&[v]), Ok(Some("abc".into())));
        }
    }

    #[test]
    fn bearer_absent_or_other_scheme_is_none() {
        assert_eq!(bearer(&[]), Ok(None));
        assert_eq!(bearer(&[b"Basic dXNlcjpwYXNz"]), Ok(None));
        assert_eq!(bearer(&[b"Bearerabc"]), Ok(None));
        assert_eq!(bearer(&[b"Basic \xff\xfe"]), Ok(None));
    }

    #[test]
    fn bearer_malformed_is_invalid_request() {
        let bad: [&[u8]; 8] = [
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a\"b",
            b"Bearer caf\xc3\xa9",
            b"Bearer \x80",
            b"Bearer =abc",
            b"Bearer a=b",
        ];
        for v in bad {
            assert_eq!(bearer(&[v]), Err(AuthErrorKind::InvalidRequest), "{v:?}");
        }
    }

    #[test]
    fn token68_table_matches_the_grammar_for_every_byte() {
        for b in 0..=255u8 {
            let grammar = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_bytes(&[b]), grammar, "{b:#04x}");
            assert_eq!(is_token68_bytes(&[b'a', b, b'a']), grammar, "{b:#04x}");
            // `=` only as trailing padding.
            assert_eq!(is_token68_bytes(&[b, b'=', b'=']), grammar, "{b:#04x}");
        }
        assert!(!is_token68_bytes(b"") && !is_token68_bytes(b"=="));
        assert!(!is_token68_bytes(b"a=b"));
    }

    #[test]
    fn a_repeated_header_is_refused_whichever_header_is_repeated() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert!(single_header(&headers, &AUTHORIZATION).unwrap().is_some());
        headers.append("x-other", HeaderValue::from_static("1"));
        headers.append("x-other", HeaderValue::from_static("2"));
        assert!(single_header(&headers, &AUTHORIZATION).unwrap().is_some());
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(single_header(&headers, &AUTHORIZATION).is_err());
        assert!(single_header(&HeaderMap::new(), &AUTHORIZATION)
            .unwrap()
            .is_none());
    }

    #[test]
    fn bearer_token68_charset_allows_padding() {
        assert_eq!(
            bearer(&[b"Bearer aA0-._~+/=="]),
            Ok(Some("aA0-._~+/==".into()))
        );
    }

    #[test]
    fn two_authorization_headers_are_rejected() {
        assert_eq!(
            bearer(&[b"Bearer a", b"Bearer b"]),
            Err(AuthErrorKind::InvalidRequest)
        );
        // even when one of them is another scheme
        assert_eq!(
            bearer(&[b"Basic x", b"Bearer b"]),
            Err(AuthErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn oversized_bearer_is_rejected() {
        let long = format!("Bearer {}", "a".repeat(100));
        assert_eq!(
            bearer(&[long.as_bytes()]),
            Err(AuthErrorKind::InvalidRequest)
        );
    }

    fn q(uri: &str) -> Result<Option<String>, AuthErrorKind> {
        query_param(&uri.parse().unwrap(), "api_key", 16)
            .map(|o| o.map(|s| s.expose().to_owned()))
            .map_err(|e| e.kind())
    }

    #[test]
    fn query_param_parsing() {
        assert_eq!(q("/"), Ok(None));
        assert_eq!(q("/?a=b"), Ok(None));
        assert_eq!(q("/?api_key=k1&x=y"), Ok(Some("k1".into())));
        assert_eq!(q("/?x&api%5Fkey=a%2Bb+c"), Ok(Some("a+b c".into())));
        assert_eq!(
            q("/?api_key=a&api_key=b"),
            Err(AuthErrorKind::InvalidRequest)
        );
        assert_eq!(q("/?api_key="), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(q("/?api_key=%zz"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(q("/?api_key=%ff"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(q("/?api_key=%4"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(
            q("/?api_key=aaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(AuthErrorKind::InvalidRequest)
        );
    }
}
