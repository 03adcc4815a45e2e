//! Authentication with mutual-TLS client certificates: service-to-service
//! calls, SPIFFE workloads.
//!
//! Three pieces, on rustls (with the `aws-lc-rs` provider) and
//! tokio-rustls:
//!
//! 1. [`MtlsConfig`] builds the rustls server configuration: client
//!    certificates are verified against your client CAs (chain, validity,
//!    revocation lists), required, or [optional](MtlsConfig::optional).
//! 2. [`TlsAcceptor::accept`] runs the handshake under a deadline and
//!    returns the verified chain as [`ClientCertificates`];
//!    [`AddClientCertificates`] puts it into the extensions of every
//!    request of the connection. With tonic's own TLS, copy its peer
//!    certificates (`TlsConnectInfo::peer_certs`) into a
//!    [`ClientCertificates::new`] in a layer of yours.
//! 3. [`CertificateAuthenticator`] is the [`Authenticator`](crate::Authenticator):
//!    it maps the certificate's SPIFFE ID, DNS, email or URI SAN, or common
//!    name to an [`Identity`](crate::Identity), with allow-lists of subject
//!    patterns and issuers and a deny list of fingerprints.
//!
//! | request                                             | result                                 |
//! |-----------------------------------------------------|----------------------------------------|
//! | certificate from an unknown CA, expired, or in a CRL | the handshake fails: no request       |
//! | no certificate, [`MtlsConfig::optional`]             | no credentials: `401`, or anonymous with `AuthLayer::optional` |
//! | certificate whose subject, issuer or fingerprint is not allowed | `401`, `WWW-Authenticate: ClientCertificate` |
//! | allowed certificate                                 | the principal is the parsed [`ClientCertificate`] |
//!
//! [`CertificateBound`] makes access tokens sender-constrained (RFC 8705):
//! a JWT whose `cnf.x5t#S256` names a certificate is accepted only from a
//! connection that presented it, so a stolen token is useless without the
//! certificate's key.
//!
//! Authenticators compose: `mtls.or(jwt)` accepts a client certificate or,
//! from clients without one, a bearer token (map both principals to one
//! type with [`map_principal`](crate::Authenticator::map_principal)).
//!
//! # Example
//!
//! A complete server and client are in `examples/mtls.rs`. The per-connection
//! part:
//!
//! ```no_run
//! # async fn doc(acceptor: tower_auth::mtls::TlsAcceptor, listener: tokio::net::TcpListener) {
//! use tower_auth::mtls::{AddClientCertificates, CertificateAuthenticator};
//! use tower_auth::AuthLayer;
//!
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .layer(AuthLayer::new(
//!         CertificateAuthenticator::new().allow_subjects(["spiffe://example.org/ns/prod/sa/*"]),
//!     ));
//! loop {
//!     let Ok((tcp, _)) = listener.accept().await else { continue };
//!     let (acceptor, app) = (acceptor.clone(), app.clone());
//!     tokio::spawn(async move {
//!         let Ok((tls, certificates)) = acceptor.accept(tcp).await else { return };
//!         let service = AddClientCertificates::new(app, certificates);
//!         // Serve `tls` with `service`, e.g. with hyper-util's
//!         // `auto::Builder::serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))`.
//! #       let _ = (tls, service);
//!     });
//! }
//! # }
//! ```

mod authenticator;
mod bound;
mod certificate;
mod tls;

pub use authenticator::{CertificateAuthenticator, SubjectSource};
pub use bound::{
    thumbprint, BoundCredentials, CertificateBound, CertificateThumbprint, Confirmation,
};
pub use certificate::{CertificateError, ClientCertificate, ClientCertificates};
pub use rustls;
pub use tls::{
    AddClientCertificates, MtlsConfig, TlsAcceptor, TlsConfigError, DEFAULT_HANDSHAKE_TIMEOUT,
};
