//! The `RateLimit` and `RateLimit-Policy` fields of
//! draft-ietf-httpapi-ratelimit-headers-10: Structured Field Lists
//! (RFC 9651) of String items with Integer parameters.

use std::fmt::Write;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::quota::Quota;
use crate::rejection::push_quoted;

/// `RateLimit`: the service limit of each policy for this request.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy`: the quota policies.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The largest Structured Field Integer.
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// Whole seconds, rounded up, as a Structured Field Integer.
pub(crate) fn seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .min(SF_INTEGER_MAX)
}

fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push_str(", ");
    }
}

/// Appends the policy item `"name";q=<burst>;w=<window>` to a list.
pub(crate) fn push_policy(out: &mut String, name: &str, quota: Quota) {
    separate(out);
    push_quoted(out, name);
    let _ = write!(
        out,
        ";q={};w={}",
        quota.burst(),
        seconds(quota.window()).max(1)
    );
}

/// Appends the service limit item `"name";r=<remaining>;t=<seconds>`,
/// where `t` is the time until more quota is made available (draft -10
/// §4.1.2), rounded up.
pub(crate) fn push_limit(out: &mut String, name: &str, remaining: u32, next_in: Duration) {
    separate(out);
    push_quoted(out, name);
    let _ = write!(out, ";r={remaining};t={}", seconds(next_in));
}

/// The list as a header value. Only printable ASCII is ever written, so
/// this cannot fail; an empty value stands in if it ever did.
pub(crate) fn value(list: String) -> HeaderValue {
    HeaderValue::try_from(list).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_draft_syntax() {
        let mut policy = String::new();
        push_policy(&mut policy, "per-ip", Quota::per_minute(100).unwrap());
        push_policy(&mut policy, "per-user", Quota::per_hour(1000).unwrap());
        assert_eq!(policy, r#""per-ip";q=100;w=60, "per-user";q=1000;w=3600"#);

        let mut limit = String::new();
        push_limit(&mut limit, "per-ip", 42, Duration::from_millis(16_200));
        assert_eq!(limit, r#""per-ip";r=42;t=17"#);
    }

    #[test]
    fn names_are_escaped_and_windows_rounded_up() {
        let mut out = String::new();
        let q = Quota::per_second(3).unwrap(); // window 999_999_999 ns
        push_policy(&mut out, "a\"b\\c\u{e9}\n", q);
        assert_eq!(out, r#""a\"b\\c";q=3;w=1"#);
        assert!(HeaderValue::try_from(out).is_ok());
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::MAX), SF_INTEGER_MAX);
    }
}
