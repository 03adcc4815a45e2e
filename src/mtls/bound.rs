//! Certificate-bound access tokens (RFC 8705 §3): a token whose
//! `cnf.x5t#S256` names a certificate is only accepted over a connection
//! authenticated with that certificate.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::request::Parts;
use subtle::ConstantTimeEq;

use super::ClientCertificates;
use crate::auth::{Authenticated, Authenticator, BoxAuthFuture};
use crate::error::AuthError;
use crate::rejection::Challenge;

/// The confirmation claim of a token: the `x5t#S256` member of `cnf`, the
/// base64url SHA-256 thumbprint of the certificate the token is bound to
/// (RFC 8705 §3.1).
///
/// Implemented for `serde_json::Value` (claims kept as JSON), for
/// [`Confirmation`], and through `Arc` and `Box`; for your claims type, add
/// a `cnf: Option<Confirmation>` member and return
/// `self.cnf.as_ref()?.x5t_s256()`.
pub trait CertificateThumbprint {
    /// `cnf.x5t#S256`, when the token has one.
    fn x5t_s256(&self) -> Option<&str>;
}

impl<T: CertificateThumbprint + ?Sized> CertificateThumbprint for Arc<T> {
    fn x5t_s256(&self) -> Option<&str> {
        (**self).x5t_s256()
    }
}

impl<T: CertificateThumbprint + ?Sized> CertificateThumbprint for Box<T> {
    fn x5t_s256(&self) -> Option<&str> {
        (**self).x5t_s256()
    }
}

impl CertificateThumbprint for serde_json::Value {
    fn x5t_s256(&self) -> Option<&str> {
        self.get("cnf")?.get("x5t#S256")?.as_str()
    }
}

/// The `cnf` claim (RFC 7800) with its RFC 8705 member.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Confirmation {
    /// `x5t#S256`: the base64url SHA-256 of the bound certificate.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl CertificateThumbprint for Confirmation {
    fn x5t_s256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }
}

/// The `x5t#S256` thumbprint of a DER certificate, to put into the `cnf`
/// claim of tokens issued to its holder.
pub fn thumbprint(certificate_der: &[u8]) -> String {
    use sha2::Digest as _;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(certificate_der))
}

/// Wraps a token authenticator (e.g. a `JwtAuthenticator`) so that a token
/// bound to a certificate (`cnf.x5t#S256`) is accepted only when the
/// request's connection presented that certificate
/// ([`ClientCertificates`] in the extensions, from
/// [`AddClientCertificates`](super::AddClientCertificates)). A stolen bound
/// token is useless without the certificate's private key.
///
/// | token                              | client certificate           | answer |
/// |------------------------------------|------------------------------|--------|
/// | bound, thumbprint matches          | the bound one                | the inner principal |
/// | bound                              | none, or another one         | `401 invalid_token` |
/// | not bound                          | any                          | accepted, unless [`require_binding`](CertificateBound::require_binding) |
///
/// Built by [`CertificateBound::new`].
pub struct CertificateBound<A> {
    inner: A,
    require_binding: bool,
}

impl<A> CertificateBound<A> {
    /// Checks the binding of the tokens `inner` accepts.
    pub fn new(inner: A) -> Self {
        CertificateBound {
            inner,
            require_binding: false,
        }
    }

    /// Also refuses tokens without `cnf.x5t#S256` (`401`), for endpoints
    /// that only serve sender-constrained tokens.
    pub fn require_binding(mut self, require: bool) -> Self {
        self.require_binding = require;
        self
    }
}

impl<A: Clone> Clone for CertificateBound<A> {
    fn clone(&self) -> Self {
        CertificateBound {
            inner: self.inner.clone(),
            require_binding: self.require_binding,
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for CertificateBound<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateBound")
            .field("inner", &self.inner)
            .field("require_binding", &self.require_binding)
            .finish()
    }
}

/// The credentials of a [`CertificateBound`]: the inner authenticator's and
/// the connection's certificates.
pub struct BoundCredentials<C> {
    inner: C,
    certificates: Option<ClientCertificates>,
}

impl<C> fmt::Debug for BoundCredentials<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundCredentials")
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// Whether the token's binding is satisfied by the connection.
fn binding_holds(
    bound_to: Option<&str>,
    certificates: Option<&ClientCertificates>,
    require_binding: bool,
) -> Result<(), AuthError> {
    let Some(expected) = bound_to else {
        if require_binding {
            return Err(AuthError::invalid_credentials(
                "the access token is not bound to a client certificate",
            ));
        }
        return Ok(());
    };
    let presented = certificates
        .and_then(|c| c.parsed().ok())
        .map(|c| URL_SAFE_NO_PAD.encode(c.sha256));
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(AuthError::invalid_credentials(
            "the access token is bound to another client certificate",
        )),
        None => Err(AuthError::invalid_credentials(
            "the access token is bound to a client certificate that was not presented",
        )),
    }
}

impl<A> Authenticator for CertificateBound<A>
where
    A: Authenticator,
    A::Principal: CertificateThumbprint,
{
    type Credentials = BoundCredentials<A::Credentials>;
    type Principal = A::Principal;
    type Future = BoxAuthFuture<A::Principal>;

    fn extract(&self, request: &Parts) -> Result<Option<Self::Credentials>, AuthError> {
        Ok(self.inner.extract(request)?.map(|inner| BoundCredentials {
            inner,
            certificates: request.extensions.get::<ClientCertificates>().cloned(),
        }))
    }

    fn authenticate(&self, credentials: Self::Credentials) -> Self::Future {
        let fut = self.inner.authenticate(credentials.inner);
        let certificates = credentials.certificates;
        let require_binding = self.require_binding;
        Box::pin(async move {
            let authenticated: Authenticated<A::Principal> = fut.await?;
            binding_holds(
                authenticated.principal.x5t_s256(),
                certificates.as_ref(),
                require_binding,
            )?;
            Ok(authenticated)
        })
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.inner.challenges()
    }
}
