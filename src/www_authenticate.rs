//! Parsing of `WWW-Authenticate` field values (RFC 7235 §4.1), for the
//! test kit's assertions and the OpenAPI schemes read from challenges.

// Re-exported by `testing`; only crate-internal with `openapi` alone.
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]

/// One parsed `WWW-Authenticate` challenge: a scheme and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedChallenge {
    /// The auth scheme, as sent (`Bearer`, `ApiKey`, `Basic`, `DPoP`...).
    pub scheme: String,
    /// The parameters in order, quoted strings unescaped.
    pub params: Vec<(String, String)>,
}

impl ParsedChallenge {
    /// The value of parameter `name` (compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `WWW-Authenticate` field value (RFC 7235 §4.1): challenges
/// separated by commas, each a scheme and `name=value` parameters (token or
/// quoted string). `None` when the value does not parse.
pub(crate) fn parse_challenges(value: &str) -> Option<Vec<ParsedChallenge>> {
    let s = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<ParsedChallenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && matches!(s[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> Option<String> {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        (*i > start).then(|| value[start..*i].to_owned())
    };
    loop {
        skip_ws(&mut i);
        while i < s.len() && s[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            break;
        }
        let name = token(&mut i)?;
        let after_name = i;
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' {
            // A parameter of the current challenge.
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                loop {
                    match s.get(i) {
                        None => return None,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            v.push(*s.get(i + 1)?);
                            i += 2;
                        }
                        Some(b) => {
                            v.push(*b);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(v).ok()?
            } else {
                // token68-ish bare values.
                let start = i;
                while i < s.len() && s[i] != b',' && !matches!(s[i], b' ' | b'\t') {
                    i += 1;
                }
                value[start..i].to_owned()
            };
            out.last_mut()?.params.push((name, value));
        } else {
            i = after_name;
            out.push(ParsedChallenge {
                scheme: name,
                params: Vec::new(),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
        parse_challenges(value)
            .unwrap()
            .into_iter()
            .map(|c| (c.scheme, c.params))
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn parses_several_challenges_with_quoted_and_bare_params() {
        let got = challenges(
            r#"Bearer realm="a \"q\", b", error=invalid_token, Basic realm="x", DPoP algs="ES256 EdDSA""#,
        );
        assert_eq!(
            got,
            vec![
                (
                    "Bearer".to_owned(),
                    owned(&[("realm", r#"a "q", b"#), ("error", "invalid_token")])
                ),
                ("Basic".to_owned(), owned(&[("realm", "x")])),
                ("DPoP".to_owned(), owned(&[("algs", "ES256 EdDSA")])),
            ]
        );
    }

    #[test]
    fn a_bare_scheme_is_a_challenge() {
        assert_eq!(challenges("Bearer"), vec![("Bearer".to_owned(), vec![])]);
    }

    #[test]
    fn unterminated_quotes_and_leading_params_do_not_parse() {
        assert!(parse_challenges(r#"Bearer realm="api"#).is_none());
        assert!(parse_challenges(r#"realm="api""#).is_none());
    }
}
