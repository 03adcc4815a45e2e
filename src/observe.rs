//! Metrics and tracing of authentication decisions.
//!
//! Every [`AuthLayer`](crate::AuthLayer) reports each decision it takes
//! through one hook: a `tracing` event, and with the `metrics` feature,
//! counters and a latency histogram through the [`metrics`] facade. The
//! crate installs no recorder and no exporter: the application picks one
//! (e.g. `metrics-exporter-prometheus`, as the `server` example does).
//! Without a subscriber / recorder, and without the `metrics` feature, the
//! hook costs a relaxed atomic load.
//!
//! # Layer names
//!
//! Name each layer with [`AuthLayer::name`](crate::AuthLayer::name)
//! (`"api"`, `"admin"`...; default `"default"`): the name is the `layer`
//! label of the metrics and the `layer` field of the events, so two layers
//! of one application can be told apart.
//!
//! # Metrics (feature `metrics`)
//!
//! | Name | Kind | Labels | What |
//! |------|------|--------|------|
//! | `tower_auth_decisions_total` | counter | `layer`, `scheme`, `outcome` | one per decision of an `AuthLayer`; `outcome`: `authenticated`, `anonymous`, or the rejection code (`unauthorized`, `invalid_request`, `invalid_token`, `forbidden`, `unavailable`, `internal_error`) |
//! | `tower_auth_decision_seconds` | histogram | `layer`, `outcome` | the time from the request reaching the layer to its decision (store lookups, token verification) |
//! | `tower_auth_rejections_total` | counter | `kind` | every rejection rendered by any layer ([`RejectionKind::code`](crate::rejection::RejectionKind::code): also `insufficient_scope`, `csrf_rejected`, `too_many_requests`, `not_found`...) |
//! | `tower_auth_rate_limit_total` | counter | `limit`, `decision` | one per check of a [`Limit`](crate::rate_limit) (its name), `decision`: `allowed` / `limited` |
//! | `tower_auth_cache_total` | counter | `cache`, `result` | verified-token cache lookups, `cache`: `jwt` / `introspection`, `result`: `hit` / `miss` |
//! | `tower_auth_backend_timeouts_total` | counter | | backend calls (stores, validators, policies) that hit their deadline (answered `503`) |
//! | `tower_auth_backend_errors_total` | counter | `layer` | authentications that failed closed on a backend error or timeout (`503`) |
//! | `tower_auth_store_errors_total` | counter | `store`, `error` | failed calls to a shared store (`store="redis"`), `error`: `timeout` / `error` (every session, revocation or rate-limit call, not only authentications) |
//! | `tower_auth_key_refresh_total` | counter | `result` | remote key-set (JWKS) fetches: `updated`, `not_modified`, `error` |
//!
//! Labels are bounded: layer and limit names come from the code, schemes
//! from the authenticators, outcomes from a fixed list. A subject, key,
//! token or client address is never a label.
//!
//! What to alert on: a jump of `outcome="invalid_token"` (a key rotation
//! gone wrong, or credential stuffing), any `tower_auth_backend_errors_total`,
//! `tower_auth_store_errors_total` or `tower_auth_backend_timeouts_total`
//! (a store is down: requests fail
//! closed with `503`), `tower_auth_key_refresh_total{result="error"}` lasting
//! past the key set's stale bound, a rising share of
//! `decision="limited"`, and the p99 of `tower_auth_decision_seconds`.
//!
//! # Tracing
//!
//! One event per decision, target `tower_auth::decision`, with the fields
//! `layer`, `scheme`, `outcome` and, for refusals, `reason` (the message
//! sent to the client, which never holds the credential) and `status`.
//! Every decision is logged at `DEBUG`, refusals too: a flood of forged
//! credentials must not turn into a flood of log lines at the default
//! level. The metrics count refusals; enable `tower_auth::decision=debug`
//! to see each one.
//!
//! The subject is not logged unless asked for with
//! [`AuthLayer::trace_subject`](crate::AuthLayer::trace_subject), and then
//! only as a keyed hash ([`SubjectInTraces`]): the same subject gives the
//! same value, so one user's requests can be followed through the logs,
//! but the logs alone do not name them. Tokens, keys, passwords and session
//! ids are never written to an event.
//!
//! ```
//! # #[cfg(feature = "bearer")] {
//! use tower_auth::bearer::{BearerAuthenticator, BearerToken};
//! use tower_auth::observe::SubjectInTraces;
//! use tower_auth::{AuthError, AuthLayer, Authenticated, Identity, Scheme};
//!
//! let tokens = BearerAuthenticator::new(|token: BearerToken| async move {
//!     match token.expose() {
//!         "s3cret" => Ok(Authenticated::new((), Identity::new("svc", Scheme::Bearer))),
//!         _ => Err(AuthError::invalid_credentials("unknown token")),
//!     }
//! });
//! let layer = AuthLayer::new(tokens)
//!     .name("api")
//!     .trace_subject(SubjectInTraces::hashed());
//! # let _ = layer;
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{AuthError, AuthErrorKind};
use crate::identity::Identity;
use crate::rejection::{Challenge, RejectionKind};

/// How the subject of a decision appears in its tracing event. See the
/// [module docs](self).
#[derive(Clone, Default)]
pub struct SubjectInTraces(Option<Arc<[u8]>>);

impl SubjectInTraces {
    /// Not at all (the default).
    pub fn off() -> Self {
        SubjectInTraces(None)
    }

    /// As an HMAC-SHA256 of the subject under a random key drawn once per
    /// process: stable while the process runs, unlinkable across restarts
    /// and instances.
    pub fn hashed() -> Self {
        static KEY: OnceLock<Arc<[u8]>> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut key = [0u8; 32];
            if getrandom::fill(&mut key).is_err() {
                // No randomness: a key nobody can guess is not available, so
                // the subject stays out of the logs.
                return Arc::from(&[][..]);
            }
            Arc::from(&key[..])
        });
        if key.is_empty() {
            return Self::off();
        }
        SubjectInTraces(Some(Arc::clone(key)))
    }

    /// As an HMAC-SHA256 of the subject under `key` (at least 32 bytes,
    /// e.g. from a secret store), so that the values match across instances
    /// and restarts. A shorter key turns the subject off.
    pub fn hashed_with_key(key: &[u8]) -> Self {
        if key.len() < 32 {
            tracing::warn!("trace_subject key shorter than 32 bytes: subjects stay out of traces");
            return Self::off();
        }
        SubjectInTraces(Some(Arc::from(key)))
    }

    /// The keyed hash of `subject`, hex, truncated to 128 bits.
    fn hash(&self, subject: &str) -> Option<String> {
        let key = self.0.as_deref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(subject.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(32);
        for b in &digest[..16] {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        Some(out)
    }
}

impl fmt::Debug for SubjectInTraces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "SubjectInTraces::Hashed"
        } else {
            "SubjectInTraces::Off"
        })
    }
}

/// The observation settings of one layer.
#[derive(Clone, Debug)]
pub(crate) struct Observer {
    pub(crate) name: &'static str,
    pub(crate) subject: SubjectInTraces,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            name: "default",
            subject: SubjectInTraces::off(),
        }
    }
}

/// When a decision started: an `Instant` with the `metrics` feature,
/// nothing without.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Start {
    #[cfg(feature = "metrics")]
    at: std::time::Instant,
}

impl Start {
    #[inline]
    pub(crate) fn now() -> Self {
        Start {
            #[cfg(feature = "metrics")]
            at: std::time::Instant::now(),
        }
    }
}

/// The label of a decision that let the request through without a
/// principal.
const ANONYMOUS: &str = "anonymous";
const AUTHENTICATED: &str = "authenticated";

/// A request was authenticated as `identity`.
#[inline]
pub(crate) fn authenticated(obs: &Observer, identity: &Identity, start: Start) {
    let scheme = identity.scheme().as_str();
    tracing::debug!(
        target: "tower_auth::decision",
        layer = obs.name,
        scheme,
        outcome = AUTHENTICATED,
        subject = subject_field(obs, identity).as_deref(),
        "authenticated"
    );
    #[cfg(feature = "metrics")]
    record::decision(obs.name, scheme, AUTHENTICATED, start);
    let _ = start;
}

/// A request without credentials went on anonymously.
#[inline]
pub(crate) fn anonymous(obs: &Observer, start: Start) {
    tracing::debug!(
        target: "tower_auth::decision",
        layer = obs.name,
        scheme = "none",
        outcome = ANONYMOUS,
        "anonymous"
    );
    #[cfg(feature = "metrics")]
    record::decision(obs.name, "none", ANONYMOUS, start);
    let _ = start;
}

/// A request was refused with `error`; `challenges` are the layer's.
#[inline]
pub(crate) fn refused(obs: &Observer, error: &AuthError, challenges: &[Challenge], start: Start) {
    let outcome = outcome_of(error.kind());
    let scheme = || scheme_of(error, challenges);
    tracing::debug!(
        target: "tower_auth::decision",
        layer = obs.name,
        scheme = scheme(),
        outcome,
        reason = error.message(),
        status = error.status().as_u16(),
        "refused"
    );
    #[cfg(feature = "metrics")]
    {
        record::decision(obs.name, scheme(), outcome, start);
        if error.kind() == AuthErrorKind::Unavailable {
            metrics::counter!("tower_auth_backend_errors_total", "layer" => obs.name).increment(1);
        }
    }
    let _ = (start, scheme);
}

/// A rejection of `kind` was rendered (by any layer).
#[inline]
pub(crate) fn rejection(kind: RejectionKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_auth_rejections_total", "kind" => kind.code()).increment(1);
    let _ = kind;
}

#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
/// A rate limit named `limit` let a request through (`allowed`) or not.
#[inline]
pub(crate) fn rate_limit(limit: &str, allowed: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "tower_auth_rate_limit_total",
        "limit" => limit.to_owned(),
        "decision" => if allowed { "allowed" } else { "limited" }
    )
    .increment(1);
    let _ = (limit, allowed);
}

#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
/// A lookup in the verified-token cache `cache` (`"jwt"`,
/// `"introspection"`).
#[inline]
pub(crate) fn cache(cache: &'static str, hit: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "tower_auth_cache_total",
        "cache" => cache,
        "result" => if hit { "hit" } else { "miss" }
    )
    .increment(1);
    let _ = (cache, hit);
}

/// A backend call hit its deadline.
#[inline]
pub(crate) fn backend_timeout() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_auth_backend_timeouts_total").increment(1);
}

/// A call to the shared store `store` (`"redis"`) failed or timed out.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[inline]
pub(crate) fn store_error(store: &'static str, timeout: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "tower_auth_store_errors_total",
        "store" => store,
        "error" => if timeout { "timeout" } else { "error" }
    )
    .increment(1);
    let _ = (store, timeout);
}

/// The result of a remote key-set fetch.
#[cfg_attr(not(feature = "oidc"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyRefresh {
    Updated,
    NotModified,
    Error,
}

/// A remote key set was fetched.
#[cfg_attr(not(feature = "oidc"), allow(dead_code))]
#[inline]
pub(crate) fn key_refresh(result: KeyRefresh) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "tower_auth_key_refresh_total",
        "result" => match result {
            KeyRefresh::Updated => "updated",
            KeyRefresh::NotModified => "not_modified",
            KeyRefresh::Error => "error",
        }
    )
    .increment(1);
    let _ = result;
}

/// The subject field of an event: `None` unless opted in.
fn subject_field(obs: &Observer, identity: &Identity) -> Option<String> {
    obs.subject.hash(identity.subject())
}

/// The `outcome` label of a refusal: the code of the rejection it becomes.
fn outcome_of(kind: AuthErrorKind) -> &'static str {
    match kind {
        AuthErrorKind::Missing => RejectionKind::Unauthenticated,
        AuthErrorKind::InvalidRequest => RejectionKind::InvalidRequest,
        AuthErrorKind::InvalidCredentials => RejectionKind::InvalidCredentials,
        AuthErrorKind::Forbidden => RejectionKind::Forbidden,
        AuthErrorKind::Unavailable => RejectionKind::Unavailable,
        _ => RejectionKind::Internal,
    }
    .code()
}

/// The scheme that refused: the error's own challenge, else the layer's
/// only one; `"none"` when there is no single scheme (no credentials
/// before a layer of several schemes).
fn scheme_of<'a>(error: &'a AuthError, challenges: &'a [Challenge]) -> &'a str {
    match (error.challenges(), challenges) {
        ([own, ..], _) => own.scheme(),
        (_, [only]) => only.scheme(),
        _ => "none",
    }
}

#[cfg(feature = "metrics")]
mod record {
    use metrics::SharedString;

    use super::Start;

    /// Scheme names of this crate's authenticators, as static labels.
    const KNOWN: &[&str] = &[
        "Bearer",
        "ApiKey",
        "Cookie",
        "Basic",
        "DPoP",
        "mTLS",
        "ClientCertificate",
        "none",
    ];

    /// A static label for a known scheme; other schemes (named by a user
    /// authenticator, so bounded by the code) are copied.
    fn scheme_label(scheme: &str) -> SharedString {
        match KNOWN.iter().find(|k| k.eq_ignore_ascii_case(scheme)) {
            Some(known) => SharedString::const_str(known),
            None => SharedString::from(scheme.to_owned()),
        }
    }

    pub(super) fn decision(layer: &'static str, scheme: &str, outcome: &'static str, start: Start) {
        metrics::counter!(
            "tower_auth_decisions_total",
            "layer" => layer,
            "scheme" => scheme_label(scheme),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "tower_auth_decision_seconds",
            "layer" => layer,
            "outcome" => outcome
        )
        .record(start.at.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_hashed_under_the_key() {
        let a = SubjectInTraces::hashed_with_key(&[7; 32]);
        let b = SubjectInTraces::hashed_with_key(&[8; 32]);
        let ha = a.hash("alice").unwrap();
        assert_eq!(ha.len(), 32);
        assert!(!ha.contains("alice"));
        assert_eq!(Some(ha.clone()), a.hash("alice"));
        assert_ne!(Some(ha.clone()), a.hash("bob"));
        assert_ne!(Some(ha), b.hash("alice"), "another key, another value");
    }

    #[test]
    fn subjects_are_off_by_default_and_with_a_short_key() {
        assert_eq!(SubjectInTraces::default().hash("alice"), None);
        assert_eq!(
            SubjectInTraces::hashed_with_key(b"short").hash("alice"),
            None
        );
        assert!(SubjectInTraces::hashed().hash("alice").is_some());
    }

    /// A recorder keeping each counter registration as `name{k=v,...}`.
    #[cfg(feature = "metrics")]
    #[derive(Default)]
    struct Counters(std::sync::Mutex<Vec<(String, Arc<std::sync::atomic::AtomicU64>)>>);

    #[cfg(feature = "metrics")]
    impl Counters {
        fn get(&self, key: &str) -> u64 {
            let all = self.0.lock().unwrap();
            all.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, c)| c.load(std::sync::atomic::Ordering::Relaxed))
                .sum()
        }
    }

    #[cfg(feature = "metrics")]
    impl metrics::Recorder for Counters {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            self.0.lock().unwrap().push((name, Arc::clone(&counter)));
            metrics::Counter::from_arc(counter)
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn every_hook_counts_under_its_documented_name_and_labels() {
        let recorder = Counters::default();
        metrics::with_local_recorder(&recorder, || {
            let obs = Observer {
                name: "api",
                subject: SubjectInTraces::off(),
            };
            let identity = Identity::new("alice", crate::Scheme::Bearer);
            authenticated(&obs, &identity, Start::now());
            anonymous(&obs, Start::now());
            let error = AuthError::unavailable("down");
            refused(&obs, &error, &[Challenge::bearer()], Start::now());
            rejection(RejectionKind::Csrf);
            rate_limit("per-ip", true);
            rate_limit("per-ip", false);
            cache("jwt", true);
            cache("introspection", false);
            backend_timeout();
            store_error("redis", true);
            key_refresh(KeyRefresh::NotModified);
        });
        for key in [
            "tower_auth_decisions_total{layer=api,scheme=Bearer,outcome=authenticated}",
            "tower_auth_decisions_total{layer=api,scheme=none,outcome=anonymous}",
            "tower_auth_decisions_total{layer=api,scheme=Bearer,outcome=unavailable}",
            "tower_auth_backend_errors_total{layer=api}",
            "tower_auth_rejections_total{kind=csrf_rejected}",
            "tower_auth_rate_limit_total{limit=per-ip,decision=allowed}",
            "tower_auth_rate_limit_total{limit=per-ip,decision=limited}",
            "tower_auth_cache_total{cache=jwt,result=hit}",
            "tower_auth_cache_total{cache=introspection,result=miss}",
            "tower_auth_backend_timeouts_total{}",
            "tower_auth_store_errors_total{store=redis,error=timeout}",
            "tower_auth_key_refresh_total{result=not_modified}",
        ] {
            assert_eq!(
                recorder.get(key),
                1,
                "{key}: {:?}",
                recorder.0.lock().unwrap()
            );
        }
        let all = recorder.0.lock().unwrap();
        assert!(all.iter().all(|(k, _)| !k.contains("alice")), "{all:?}");
    }

    #[test]
    fn refusals_name_the_scheme_that_refused() {
        let layer = [Challenge::bearer(), Challenge::new("ApiKey")];
        let own = AuthError::invalid_credentials("bad").with_challenge(Challenge::new("ApiKey"));
        assert_eq!(scheme_of(&own, &layer), "ApiKey");
        assert_eq!(scheme_of(&AuthError::missing(), &layer), "none");
        assert_eq!(scheme_of(&AuthError::missing(), &layer[..1]), "Bearer");
        assert_eq!(
            outcome_of(AuthErrorKind::InvalidCredentials),
            "invalid_token"
        );
        assert_eq!(outcome_of(AuthErrorKind::Missing), "unauthorized");
    }
}
