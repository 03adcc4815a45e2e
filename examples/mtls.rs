//! Service-to-service calls over mutual TLS: an axum server that
//! authenticates clients by the SPIFFE ID of their certificate, and a client
//! that calls it.
//!
//! ```text
//! cargo run --example mtls --features mtls,axum            # server + client, then exit
//! cargo run --example mtls --features mtls,axum -- serve   # keep serving for curl
//! ```
//!
//! The example makes a throw-away CA, a server certificate for `localhost`
//! and two client certificates (`spiffe://example.org/ns/prod/sa/billing`,
//! allowed, and `.../ns/dev/sa/batch`, not allowed) and writes them as PEM
//! files into `target/mtls-example/`, so that curl can use them:
//!
//! ```text
//! cd target/mtls-example
//! curl --cacert ca.pem --cert billing.pem --key billing-key.pem https://localhost:8443/invoices
//! curl --cacert ca.pem https://localhost:8443/invoices        # no certificate: handshake refused
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tower_auth::mtls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tower_auth::mtls::{
    rustls, AddClientCertificates, CertificateAuthenticator, MtlsConfig, TlsAcceptor,
};
use tower_auth::{AuthLayer, Identity};

type BoxError = Box<dyn Error + Send + Sync>;

/// A certificate and its key, also written as PEM files.
struct Issued {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn write_pem(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) -> Result<(), BoxError> {
    std::fs::write(dir.join(format!("{name}.pem")), cert_pem)?;
    std::fs::write(dir.join(format!("{name}-key.pem")), key_pem)?;
    Ok(())
}

struct Pki {
    ca: CertificateDer<'static>,
    server: Issued,
    billing: Issued,
    batch: Issued,
}

fn make_pki(dir: &Path) -> Result<Pki, BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "example.org workload CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let ca = Issuer::new(ca_params, ca_key);

    let issue = |name: &str, san: SanType, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca)?;
        write_pem(dir, name, &cert.pem(), &key.serialize_pem())?;
        Ok::<_, BoxError>(Issued {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    };
    Ok(Pki {
        ca: ca_cert.der().clone(),
        server: issue(
            "localhost",
            SanType::DnsName("localhost".try_into()?),
            ExtendedKeyUsagePurpose::ServerAuth,
        )?,
        billing: issue(
            "billing",
            SanType::URI("spiffe://example.org/ns/prod/sa/billing".try_into()?),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        batch: issue(
            "batch",
            SanType::URI("spiffe://example.org/ns/dev/sa/batch".try_into()?),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
    })
}

/// The server: TLS with required client certificates, then the
/// certificate authenticator on the routes.
async fn serve(listener: TcpListener, pki: Arc<Pki>) -> Result<(), BoxError> {
    let tls = MtlsConfig::new([pki.ca.clone()])?
        .server_config(vec![pki.server.cert.clone()], pki.server.key.clone_key())?;
    let acceptor = TlsAcceptor::new(tls);
    let auth = CertificateAuthenticator::new()
        .allow_subjects(["spiffe://example.org/ns/prod/sa/*"])
        .allow_issuers([&pki.ca])?;
    let app = Router::new()
        .route(
            "/invoices",
            get(|Extension(caller): Extension<Identity>| async move {
                format!("invoices for {}\n", caller.subject())
            }),
        )
        .layer(AuthLayer::new(auth));

    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        // One task per connection: a slow handshake never blocks accept.
        tokio::spawn(async move {
            let (tls, certificates) = match acceptor.accept(tcp).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("server: handshake with {peer} failed: {e}");
                    return;
                }
            };
            let service = TowerToHyperService::new(AddClientCertificates::new(app, certificates));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The client: calls `/invoices` with `identity` as client certificate.
async fn call(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    identity: Option<&Issued>,
) -> Result<String, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from("localhost")?,
            TcpStream::connect(addr).await?,
        )
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/invoices")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok(format!(
        "{status} {}",
        String::from_utf8_lossy(&body).trim_end()
    ))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let keep_serving = std::env::args().nth(1).as_deref() == Some("serve");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mtls-example");
    let pki = Arc::new(make_pki(&dir)?);
    let port = if keep_serving { 8443 } else { 0 };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("PEM files in {}", dir.display());
    if keep_serving {
        println!("serving on https://localhost:{}/invoices", addr.port());
        return serve(listener, pki).await;
    }
    let server = {
        let pki = Arc::clone(&pki);
        tokio::spawn(async move { serve(listener, pki).await.map_err(|e| e.to_string()) })
    };

    println!(
        "billing: {}",
        call(addr, &pki.ca, Some(&pki.billing)).await?
    );
    println!("batch:   {}", call(addr, &pki.ca, Some(&pki.batch)).await?);
    match call(addr, &pki.ca, None).await {
        Ok(answer) => println!("no certificate: {answer}"),
        Err(e) => println!("no certificate: refused ({e})"),
    }
    server.abort();
    Ok(())
}
