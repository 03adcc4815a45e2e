//! The client's certificate chain in the request extensions, and what this
//! crate reads from its end-entity certificate.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// The certificate chain a client presented and the TLS handshake verified,
/// end-entity certificate first. Put into the request extensions by
/// [`AddClientCertificates`](super::AddClientCertificates) (or by your own
/// acceptor glue) and read by
/// [`CertificateAuthenticator`](super::CertificateAuthenticator).
///
/// Cloning is a reference-count increment. The end-entity certificate is
/// parsed once per connection, when first needed, however many requests the
/// connection carries.
#[derive(Clone)]
pub struct ClientCertificates {
    chain: Arc<[CertificateDer<'static>]>,
    parsed: Arc<OnceLock<Result<Arc<ClientCertificate>, CertificateError>>>,
}

impl ClientCertificates {
    /// The chain of a connection, end-entity certificate first; `None` when
    /// it is empty (no client certificate).
    ///
    /// Only put a chain here that the TLS handshake verified: the
    /// authenticator trusts it.
    pub fn new(chain: impl Into<Arc<[CertificateDer<'static>]>>) -> Option<Self> {
        let chain = chain.into();
        if chain.is_empty() {
            return None;
        }
        Some(ClientCertificates {
            chain,
            parsed: Arc::new(OnceLock::new()),
        })
    }

    /// The verified peer chain of a rustls server connection (`None`
    /// without a client certificate).
    pub fn from_connection(connection: &rustls::ServerConnection) -> Option<Self> {
        let chain: Vec<CertificateDer<'static>> = connection
            .peer_certificates()?
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        Self::new(chain)
    }

    /// The chain, end-entity certificate first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The end-entity (client) certificate.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        // `new` refuses empty chains.
        &self.chain[0]
    }

    /// The end-entity certificate, parsed (once).
    ///
    /// # Errors
    ///
    /// [`CertificateError`] when it is not a well-formed X.509 certificate.
    pub fn parsed(&self) -> Result<Arc<ClientCertificate>, CertificateError> {
        self.parsed
            .get_or_init(|| ClientCertificate::parse(self.end_entity()).map(Arc::new))
            .clone()
    }
}

impl fmt::Debug for ClientCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificates")
            .field("chain_len", &self.chain.len())
            .field("parsed", &self.parsed.get())
            .finish()
    }
}

/// A client certificate could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed client certificate: {0}")]
pub struct CertificateError(String);

/// What the authenticator reads from a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject distinguished name, RFC 4514 string (`CN=web,O=Example`).
    pub subject: String,
    /// The subject's common names (`CN`).
    pub common_names: Vec<String>,
    /// The issuer distinguished name, RFC 4514 string.
    pub issuer: String,
    /// The DER encoding of the issuer name, compared with the subjects of
    /// the allowed issuers.
    pub issuer_der: Vec<u8>,
    /// DNS names of the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// Email addresses (`rfc822Name`) of the subject alternative names.
    pub emails: Vec<String>,
    /// URIs of the subject alternative names, e.g. SPIFFE IDs.
    pub uris: Vec<String>,
    /// The serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// The SHA-256 of the certificate's DER encoding (RFC 8705
    /// `x5t#S256`, and the key of revocation lists).
    pub sha256: [u8; 32],
}

impl ClientCertificate {
    /// Parses a DER certificate.
    ///
    /// # Errors
    ///
    /// [`CertificateError`] when `der` is not a well-formed X.509
    /// certificate, or its subject alternative names are malformed.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, CertificateError> {
        let cert = Certificate::from_der(der.as_ref())
            .map_err(|e| CertificateError(format!("bad DER: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let mut common_names = Vec::new();
        for rdn in tbs.subject.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid == x509_cert::der::oid::db::rfc4519::CN {
                    let text = std::str::from_utf8(atv.value.value())
                        .map_err(|_| CertificateError("a common name is not UTF-8".into()))?;
                    common_names.push(text.to_owned());
                }
            }
        }
        let (mut dns_names, mut emails, mut uris) = (Vec::new(), Vec::new(), Vec::new());
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id != x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
                continue;
            }
            let names = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|e| CertificateError(format!("bad subject alternative names: {e}")))?;
            for name in names.0 {
                match name {
                    GeneralName::DnsName(s) => dns_names.push(s.to_string()),
                    GeneralName::Rfc822Name(s) => emails.push(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) => uris.push(s.to_string()),
                    _ => {}
                }
            }
        }
        let issuer_der = tbs
            .issuer
            .to_der()
            .map_err(|e| CertificateError(format!("bad issuer: {e}")))?;
        Ok(ClientCertificate {
            subject: tbs.subject.to_string(),
            common_names,
            issuer: tbs.issuer.to_string(),
            issuer_der,
            dns_names,
            emails,
            uris,
            serial: tbs.serial_number.as_bytes().to_vec(),
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
            sha256: Sha256::digest(der.as_ref()).into(),
        })
    }

    /// The SPIFFE ID: the one URI SAN starting with `spiffe://`, if any.
    pub fn spiffe_id(&self) -> Option<&str> {
        let mut ids = self.uris.iter().filter(|u| u.starts_with("spiffe://"));
        match (ids.next(), ids.next()) {
            // A SPIFFE X.509-SVID has exactly one URI SAN.
            (Some(id), None) => Some(id),
            _ => None,
        }
    }
}

/// The DER encoding of the subject name of `ca`, to allow the certificates
/// it issued.
pub(crate) fn subject_der(ca: &CertificateDer<'_>) -> Result<Vec<u8>, CertificateError> {
    let cert = Certificate::from_der(ca.as_ref())
        .map_err(|e| CertificateError(format!("bad DER: {e}")))?;
    cert.tbs_certificate
        .subject
        .to_der()
        .map_err(|e| CertificateError(format!("bad subject: {e}")))
}
