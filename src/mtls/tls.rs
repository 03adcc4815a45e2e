//! Server glue: a rustls server configuration that asks for client
//! certificates, a handshake with a deadline that yields the verified
//! chain, and a service that puts the chain into request extensions.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tower_service::Service;

use super::ClientCertificates;

/// The default deadline of a TLS handshake: 10 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Building a server configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// rustls refused a certificate, key or revocation list.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (e.g. no trusted
    /// client CA, or an unparsable revocation list).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A rustls [`ServerConfig`] for mutual TLS, on the `aws-lc-rs` provider:
/// client certificates are verified against the client CAs (chain,
/// validity period, key usage, revocation lists), and required unless
/// [`optional`](MtlsConfig::optional).
///
/// ```no_run
/// # fn doc(ca: rustls::pki_types::CertificateDer<'static>,
/// #        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
/// #        key: rustls::pki_types::PrivateKeyDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
/// use tower_auth::mtls::{MtlsConfig, TlsAcceptor};
///
/// let config = MtlsConfig::new([ca])?.server_config(chain, key)?;
/// let acceptor = TlsAcceptor::new(config);
/// # let _ = acceptor; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MtlsConfig {
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    allow_unknown_revocation_status: bool,
    optional: bool,
    alpn: Vec<Vec<u8>>,
}

impl MtlsConfig {
    /// Trusts client certificates issued by `client_cas`.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Rustls`] when a CA certificate cannot be parsed.
    pub fn new(
        client_cas: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for ca in client_cas {
            roots.add(ca)?;
        }
        Ok(MtlsConfig {
            roots: Arc::new(roots),
            crls: Vec::new(),
            allow_unknown_revocation_status: false,
            optional: false,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        })
    }

    /// Refuses client certificates listed in these certificate revocation
    /// lists (DER), at the handshake. Once lists are given, a certificate
    /// whose issuer has no list is refused too (fail closed), unless
    /// [`allow_unknown_revocation_status`](MtlsConfig::allow_unknown_revocation_status).
    pub fn crls(
        mut self,
        crls: impl IntoIterator<Item = CertificateRevocationListDer<'static>>,
    ) -> Self {
        self.crls.extend(crls);
        self
    }

    /// Accepts certificates whose revocation status no given list covers
    /// (e.g. from an intermediate CA without a CRL).
    pub fn allow_unknown_revocation_status(mut self) -> Self {
        self.allow_unknown_revocation_status = true;
        self
    }

    /// Lets clients connect without a certificate (a certificate they do
    /// present must still verify); pair it with
    /// [`AuthLayer::optional`](crate::AuthLayer::optional) or an `or` of
    /// authenticators.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The ALPN protocols offered (default `h2`, `http/1.1`).
    pub fn alpn<I: IntoIterator<Item = Vec<u8>>>(mut self, protocols: I) -> Self {
        self.alpn = protocols.into_iter().collect();
        self
    }

    /// The server configuration, with the server's `chain` and `key`.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError`] when the chain, key or revocation lists are
    /// refused.
    pub fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider.clone())
                .with_crls(self.crls.iter().cloned());
        if self.optional {
            verifier = verifier.allow_unauthenticated();
        }
        if self.allow_unknown_revocation_status {
            verifier = verifier.allow_unknown_revocation_status();
        }
        let verifier = verifier.build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols.clone_from(&self.alpn);
        Ok(Arc::new(config))
    }
}

/// Accepts TLS connections and returns the client's verified chain beside
/// the stream, within a [handshake deadline](TlsAcceptor::handshake_timeout)
/// so a client that stalls the handshake cannot hold a task forever.
///
/// Run each accept in its own task (see the `mtls` example): a handshake
/// awaited in the accept loop would let one slow client stop every other.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// Accepts with `config` (e.g. from [`MtlsConfig::server_config`]).
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The deadline of one handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the TLS handshake on `io`.
    ///
    /// # Errors
    ///
    /// The handshake's I/O or TLS error (an unknown CA, an expired or
    /// revoked certificate, no certificate when one is required), or
    /// [`io::ErrorKind::TimedOut`] past the deadline.
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> io::Result<(TlsStream<IO>, Option<ClientCertificates>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = self.inner.accept(io);
        let stream = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let certificates = ClientCertificates::from_connection(stream.get_ref().1);
        Ok((stream, certificates))
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Puts a connection's [`ClientCertificates`] into the extensions of every
/// request made on it; wrap the per-connection service (an axum `Router`, a
/// hyper service) in it after [`TlsAcceptor::accept`].
///
/// It removes any `ClientCertificates` already in the extensions, so a
/// connection without a certificate never carries one.
#[derive(Clone, Debug)]
pub struct AddClientCertificates<S> {
    inner: S,
    certificates: Option<ClientCertificates>,
}

impl<S> AddClientCertificates<S> {
    /// Wraps `inner` for a connection with `certificates`.
    pub fn new(inner: S, certificates: Option<ClientCertificates>) -> Self {
        AddClientCertificates {
            inner,
            certificates,
        }
    }

    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for AddClientCertificates<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match &self.certificates {
            Some(c) => {
                req.extensions_mut().insert(c.clone());
            }
            None => {
                req.extensions_mut().remove::<ClientCertificates>();
            }
        }
        self.inner.call(req)
    }
}
