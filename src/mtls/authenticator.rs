//! [`CertificateAuthenticator`]: client certificates to identities.

use std::collections::HashSet;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use rustls::pki_types::CertificateDer;

use super::certificate::{subject_der, CertificateError, ClientCertificate};
use super::ClientCertificates;
use crate::auth::{Authenticated, Authenticator};
use crate::error::AuthError;
use crate::identity::{Identity, Scheme};
use crate::rejection::Challenge;

/// Where the subject of the [`Identity`] comes from, tried in the order
/// given to [`CertificateAuthenticator::subject_from`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectSource {
    /// The SPIFFE ID (the one `spiffe://` URI SAN).
    SpiffeId,
    /// The first URI SAN.
    Uri,
    /// The first DNS SAN.
    Dns,
    /// The first email (`rfc822Name`) SAN.
    Email,
    /// The first common name of the subject.
    CommonName,
    /// The whole subject distinguished name (RFC 4514).
    SubjectDn,
}

/// A client certificate was refused.
const REFUSED: &str = "client certificate not accepted";

/// Authenticates the client certificate of a mutual-TLS connection, as put
/// into the request extensions by
/// [`AddClientCertificates`](super::AddClientCertificates). See the
/// [module docs](crate::mtls).
///
/// The principal is the parsed [`ClientCertificate`] (shared, parsed once
/// per connection); the [`Identity`] has the subject chosen by
/// [`subject_from`](CertificateAuthenticator::subject_from) and the scheme
/// `mTLS`.
#[derive(Clone)]
pub struct CertificateAuthenticator {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    sources: Vec<SubjectSource>,
    patterns: Vec<Pattern>,
    issuers: Vec<Vec<u8>>,
    revoked: HashSet<[u8; 32]>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl Default for CertificateAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl CertificateAuthenticator {
    /// Accepts every certificate the TLS handshake verified, with the
    /// subject taken from the SPIFFE ID, else the first DNS SAN, else the
    /// first email SAN, else the common name.
    pub fn new() -> Self {
        CertificateAuthenticator {
            inner: Arc::new(Inner {
                sources: vec![
                    SubjectSource::SpiffeId,
                    SubjectSource::Dns,
                    SubjectSource::Email,
                    SubjectSource::CommonName,
                ],
                patterns: Vec::new(),
                issuers: Vec::new(),
                revoked: HashSet::new(),
                clock: Arc::new(SystemTime::now),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// Where the subject comes from, in order; the first source the
    /// certificate has wins. A certificate with none is refused (`401`).
    pub fn subject_from(self, sources: impl IntoIterator<Item = SubjectSource>) -> Self {
        let sources = sources.into_iter().collect();
        self.edit(|i| i.sources = sources)
    }

    /// Only accepts subjects matching one of these patterns (called again,
    /// adds patterns). A pattern is the exact subject, or contains `*`
    /// wildcards, each matching one or more characters other than `/` and
    /// `.`: `spiffe://example.org/ns/prod/sa/*`, `*.svc.example.com`.
    /// Without patterns, every subject passes.
    pub fn allow_subjects<I, S>(self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let new: Vec<Pattern> = patterns.into_iter().map(|p| Pattern(p.into())).collect();
        self.edit(|i| i.patterns.extend(new))
    }

    /// Only accepts certificates issued directly by one of these CA
    /// certificates (their subject is compared with the client
    /// certificate's issuer); called again, adds issuers. Without issuers,
    /// every CA the TLS configuration trusts passes.
    ///
    /// # Errors
    ///
    /// [`CertificateError`] when a CA certificate cannot be parsed.
    pub fn allow_issuers<'a>(
        self,
        cas: impl IntoIterator<Item = &'a CertificateDer<'a>>,
    ) -> Result<Self, CertificateError> {
        let names = cas
            .into_iter()
            .map(subject_der)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.edit(|i| i.issuers.extend(names)))
    }

    /// Refuses the certificates with these SHA-256 fingerprints (of their
    /// DER encoding; see [`ClientCertificate::sha256`]), e.g. the
    /// compromised ones of a deny list. For CA-published revocation lists,
    /// use [`MtlsConfig::crls`](super::MtlsConfig::crls), checked at the
    /// handshake.
    pub fn revoked(self, fingerprints: impl IntoIterator<Item = [u8; 32]>) -> Self {
        let new: Vec<[u8; 32]> = fingerprints.into_iter().collect();
        self.edit(|i| i.revoked.extend(new))
    }

    /// Replaces the clock of the validity-period check, for tests.
    pub fn clock(self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.edit(|i| i.clock = Arc::new(clock))
    }

    /// The scheme of the identities: `mTLS`.
    pub fn scheme() -> Scheme {
        Scheme::Other("mTLS".into())
    }

    /// Checks `certificates` as [`authenticate`](Authenticator::authenticate)
    /// does, synchronously.
    ///
    /// # Errors
    ///
    /// [`AuthError::invalid_credentials`] for a refused certificate.
    pub fn check(
        &self,
        certificates: &ClientCertificates,
    ) -> Result<Authenticated<Arc<ClientCertificate>>, AuthError> {
        let refuse = |why: &str| {
            tracing::debug!(reason = why, "client certificate refused");
            AuthError::invalid_credentials(REFUSED)
        };
        let i = &self.inner;
        let cert = certificates
            .parsed()
            .map_err(|_| refuse("malformed certificate"))?;
        if i.revoked.contains(&cert.sha256) {
            return Err(refuse("revoked"));
        }
        // The handshake checked the validity period; check it again for
        // chains that reached the extensions another way, and for
        // long-lived connections that outlive their certificate.
        let now = (i.clock)();
        if now < cert.not_before || now > cert.not_after {
            return Err(refuse("outside its validity period"));
        }
        if !i.issuers.is_empty() && !i.issuers.iter().any(|n| *n == cert.issuer_der) {
            return Err(refuse("issuer not allowed"));
        }
        let subject = i
            .sources
            .iter()
            .find_map(|s| subject_of(&cert, *s))
            .ok_or_else(|| refuse("no subject"))?
            .to_owned();
        if !i.patterns.is_empty() && !i.patterns.iter().any(|p| p.matches(&subject)) {
            return Err(refuse("subject not allowed"));
        }
        let identity = Identity::new(subject, Self::scheme());
        Ok(Authenticated::new(cert, identity))
    }
}

fn subject_of(cert: &ClientCertificate, source: SubjectSource) -> Option<&str> {
    fn first(v: &[String]) -> Option<&str> {
        v.first().map(String::as_str)
    }
    match source {
        SubjectSource::SpiffeId => cert.spiffe_id(),
        SubjectSource::Uri => first(&cert.uris),
        SubjectSource::Dns => first(&cert.dns_names),
        SubjectSource::Email => first(&cert.emails),
        SubjectSource::CommonName => first(&cert.common_names),
        SubjectSource::SubjectDn => Some(cert.subject.as_str()).filter(|s| !s.is_empty()),
    }
}

impl fmt::Debug for CertificateAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthenticator")
            .field("sources", &self.inner.sources)
            .field("patterns", &self.inner.patterns)
            .field("issuers", &self.inner.issuers.len())
            .field("revoked", &self.inner.revoked.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator for CertificateAuthenticator {
    type Credentials = ClientCertificates;
    type Principal = Arc<ClientCertificate>;
    type Future = Ready<Result<Authenticated<Arc<ClientCertificate>>, AuthError>>;

    fn extract(&self, request: &Parts) -> Result<Option<ClientCertificates>, AuthError> {
        Ok(request.extensions.get::<ClientCertificates>().cloned())
    }

    fn authenticate(&self, certificates: ClientCertificates) -> Self::Future {
        ready(self.check(&certificates))
    }

    fn challenges(&self) -> Vec<Challenge> {
        // No registered scheme names a client certificate; a 401 must
        // still carry a challenge (RFC 9110 §15.5.2).
        vec![Challenge::new("ClientCertificate")]
    }
}

/// A subject pattern: exact, or with `*` wildcards.
#[derive(Clone, Debug)]
struct Pattern(String);

impl Pattern {
    fn matches(&self, subject: &str) -> bool {
        let mut parts = self.0.splitn(3, '*');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(exact), None, _) => exact == subject,
            // One wildcard (the usual `…/sa/*`, `*.svc.example.com`): a
            // prefix, a suffix, and one non-empty segment between them.
            (Some(prefix), Some(suffix), None) => {
                subject.len() > prefix.len() + suffix.len()
                    && subject.starts_with(prefix)
                    && subject.ends_with(suffix)
                    && !subject[prefix.len()..subject.len() - suffix.len()]
                        .bytes()
                        .any(|b| b == b'/' || b == b'.')
            }
            _ => glob(self.0.as_bytes(), subject.as_bytes()),
        }
    }
}

/// `*` matches one or more bytes other than `/` and `.`; everything else
/// matches itself. Dynamic programming over the subject: O(pattern ×
/// subject) whatever the pattern, no backtracking.
fn glob(pattern: &[u8], subject: &[u8]) -> bool {
    let is_separator = |b: u8| b == b'/' || b == b'.';
    // cur[j]: the pattern so far matches subject[..j].
    let mut cur = vec![false; subject.len() + 1];
    cur[0] = true;
    let mut next = vec![false; subject.len() + 1];
    for &p in pattern {
        next[0] = false;
        for j in 1..=subject.len() {
            let c = subject[j - 1];
            next[j] = if p == b'*' {
                !is_separator(c) && (cur[j - 1] || next[j - 1])
            } else {
                cur[j - 1] && c == p
            };
        }
        std::mem::swap(&mut cur, &mut next);
    }
    cur[subject.len()]
}

#[cfg(test)]
mod tests {
    use super::{glob, Pattern};

    #[test]
    fn wildcards_match_one_segment() {
        // The matcher and its one-wildcard fast path agree on every case.
        let m = |p: &str, s: &str| {
            let slow = glob(p.as_bytes(), s.as_bytes());
            assert_eq!(Pattern(p.to_owned()).matches(s), slow, "{p} ~ {s}");
            slow
        };
        assert!(m("spiffe://td/ns/prod/sa/*", "spiffe://td/ns/prod/sa/web"));
        assert!(!m("spiffe://td/ns/prod/sa/*", "spiffe://td/ns/prod/sa/"));
        assert!(!m(
            "spiffe://td/ns/prod/sa/*",
            "spiffe://td/ns/prod/sa/web/x"
        ));
        assert!(!m("spiffe://td/ns/prod/sa/*", "spiffe://td/ns/dev/sa/web"));
        assert!(m("*.svc.example.com", "api.svc.example.com"));
        assert!(!m("*.svc.example.com", "a.b.svc.example.com"));
        assert!(!m("*.svc.example.com", "svc.example.com"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(m("a*c", "abbbc"));
        assert!(!m("a*c", "ac"));
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let subject = "a".repeat(4096);
        let pattern = "*a*a*a*a*a*a*a*a*b";
        let started = std::time::Instant::now();
        assert!(!glob(pattern.as_bytes(), subject.as_bytes()));
        // Backtracking would take far longer than this.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
