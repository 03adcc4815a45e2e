//! Mutual TLS with real handshakes on 127.0.0.1: a CA, a server and client
//! certificates generated here with rcgen; an axum app behind
//! `TlsAcceptor` + `AddClientCertificates` + `AuthLayer<CertificateAuthenticator>`.
//! Valid, expired, wrong-CA, revoked (CRL and deny list), missing (required
//! and optional), and subject / issuer allow-lists.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio::net::{TcpListener, TcpStream};
use tower_auth::mtls::{
    AddClientCertificates, CertificateAuthenticator, ClientCertificate, ClientCertificates,
    MtlsConfig, SubjectSource, TlsAcceptor,
};
use tower_auth::{AuthLayer, Identity};

struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn leaf(ca: &Ca, sans: Vec<SanType>, cn: &str, serial: u64, expired: bool, client: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn spiffe(id: &str) -> Vec<SanType> {
    vec![SanType::URI(id.try_into().unwrap())]
}

fn crl(ca: &Ca, revoked_serial: u64) -> CertificateRevocationListDer<'static> {
    let now = rcgen::date_time_ymd(2025, 1, 1);
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(revoked_serial),
            revocation_time: now,
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&ca.issuer).unwrap().der().clone()
}

struct Pki {
    ca: Ca,
    other_ca: Ca,
    server: Leaf,
}

fn pki() -> Pki {
    let ca = ca("Test Root CA");
    let other_ca = ca_named("Other CA");
    let server = leaf(
        &ca,
        vec![SanType::DnsName("localhost".try_into().unwrap())],
        "localhost",
        1,
        false,
        false,
    );
    Pki {
        ca,
        other_ca,
        server,
    }
}

fn ca_named(name: &str) -> Ca {
    ca(name)
}

/// Serves `app` over TLS with `config`; counts the requests that reached
/// the handler.
async fn serve(
    config: MtlsConfig,
    server: &Leaf,
    auth: AuthLayer<CertificateAuthenticator>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let tls = config
        .server_config(server.chain.clone(), server.key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(5));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new()
        .route(
            "/",
            get(
                |identity: Option<Extension<Identity>>,
                 cert: Option<Extension<Arc<ClientCertificate>>>| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match (identity, cert) {
                        (Some(Extension(id)), Some(Extension(cert))) => {
                            format!("{} {}", id.subject(), cert.common_names.join(","))
                        }
                        _ => "anonymous".to_owned(),
                    }
                },
            ),
        )
        .layer(auth);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok((tls, certificates)) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    TowerToHyperService::new(AddClientCertificates::new(app, certificates));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// One HTTP/1.1 GET over TLS, with `client` as client certificate: the
/// status and body, or the error of the handshake or request.
async fn get_with(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    client: Option<&Leaf>,
) -> Result<(StatusCode, String, Option<String>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8(body.to_bytes().to_vec()).unwrap(),
        www,
    ))
}

const WEB: &str = "spiffe://example.org/ns/prod/sa/web";

#[tokio::test]
async fn valid_client_certificate_is_authenticated_by_its_spiffe_id() {
    let pki = pki();
    let client = leaf(&pki.ca, spiffe(WEB), "web", 10, false, true);
    let auth = AuthLayer::new(
        CertificateAuthenticator::new().allow_subjects(["spiffe://example.org/ns/prod/sa/*"]),
    );
    let (addr, hits) = serve(
        MtlsConfig::new([pki.ca.cert.clone()]).unwrap(),
        &pki.server,
        auth,
    )
    .await;
    let (status, body, _) = get_with(addr, &pki.ca.cert, Some(&client)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("{WEB} web"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_wrong_ca_and_crl_revoked_certificates_fail_the_handshake() {
    let pki = pki();
    let expired = leaf(&pki.ca, spiffe(WEB), "old", 11, true, true);
    let foreign = leaf(&pki.other_ca, spiffe(WEB), "mallory", 12, false, true);
    let revoked = leaf(&pki.ca, spiffe(WEB), "stolen", 13, false, true);
    let config = MtlsConfig::new([pki.ca.cert.clone()])
        .unwrap()
        .crls([crl(&pki.ca, 13)]);
    let auth = AuthLayer::new(CertificateAuthenticator::new());
    let (addr, hits) = serve(config, &pki.server, auth).await;
    for (what, client) in [
        ("expired", &expired),
        ("wrong CA", &foreign),
        ("revoked", &revoked),
    ] {
        let result = get_with(addr, &pki.ca.cert, Some(client)).await;
        assert!(result.is_err(), "{what}: {result:?}");
    }
    // Without a certificate, when one is required: no connection either.
    assert!(get_with(addr, &pki.ca.cert, None).await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // A good one still works on the same server.
    let good = leaf(&pki.ca, spiffe(WEB), "web", 14, false, true);
    let (status, _, _) = get_with(addr, &pki.ca.cert, Some(&good)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn optional_client_certificates_401_or_anonymous() {
    let pki = pki();
    let config = || MtlsConfig::new([pki.ca.cert.clone()]).unwrap().optional();
    // Required at the AuthLayer: 401 with the challenge and a JSON body.
    let (addr, hits) = serve(
        config(),
        &pki.server,
        AuthLayer::new(CertificateAuthenticator::new()),
    )
    .await;
    let (status, body, www) = get_with(addr, &pki.ca.cert, None).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(www.as_deref(), Some("ClientCertificate"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "unauthorized");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // Optional AuthLayer: anonymous requests reach the handler.
    let (addr, _) = serve(
        config(),
        &pki.server,
        AuthLayer::optional(CertificateAuthenticator::new()),
    )
    .await;
    let (status, body, _) = get_with(addr, &pki.ca.cert, None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "anonymous");
    // A certificate presented in optional mode must still verify.
    let foreign = leaf(&pki.other_ca, spiffe(WEB), "mallory", 20, false, true);
    assert!(get_with(addr, &pki.ca.cert, Some(&foreign)).await.is_err());
}

#[tokio::test]
async fn deny_list_subject_and_issuer_allow_lists_answer_401() {
    let pki = pki();
    let second_ca = ca_named("Second CA");
    let web = leaf(&pki.ca, spiffe(WEB), "web", 30, false, true);
    let batch = leaf(
        &pki.ca,
        spiffe("spiffe://example.org/ns/dev/sa/batch"),
        "batch",
        31,
        false,
        true,
    );
    let from_second = leaf(&second_ca, spiffe(WEB), "web2", 32, false, true);
    let fingerprint = ClientCertificate::parse(&web.chain[0]).unwrap().sha256;
    let authenticator = CertificateAuthenticator::new()
        .allow_subjects(["spiffe://example.org/ns/prod/sa/*"])
        .allow_issuers([&pki.ca.cert])
        .unwrap()
        .revoked([fingerprint]);
    let config = MtlsConfig::new([pki.ca.cert.clone(), second_ca.cert.clone()]).unwrap();
    let (addr, hits) = serve(config, &pki.server, AuthLayer::new(authenticator)).await;
    for (what, client) in [
        ("revoked by fingerprint", &web),
        ("subject not allowed", &batch),
        ("issuer not allowed", &from_second),
    ] {
        let (status, body, www) = get_with(addr, &pki.ca.cert, Some(client)).await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(www.as_deref(), Some("ClientCertificate"), "{what}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["message"], "client certificate not accepted", "{what}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn subject_sources_dns_email_and_common_name() {
    let pki = pki();
    let cert = leaf(
        &pki.ca,
        vec![
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            SanType::DnsName("api.svc.example.com".try_into().unwrap()),
        ],
        "api",
        40,
        false,
        true,
    );
    let certificates = ClientCertificates::new(cert.chain.clone()).unwrap();
    let subject = |sources: Vec<SubjectSource>| {
        CertificateAuthenticator::new()
            .subject_from(sources)
            .check(&certificates)
            .map(|a| a.identity.subject().to_owned())
            .map_err(|e| e.status())
    };
    assert_eq!(
        subject(vec![SubjectSource::SpiffeId, SubjectSource::Dns]),
        Ok("api.svc.example.com".into())
    );
    assert_eq!(
        subject(vec![SubjectSource::Email]),
        Ok("ops@example.com".into())
    );
    assert_eq!(subject(vec![SubjectSource::CommonName]), Ok("api".into()));
    assert_eq!(subject(vec![SubjectSource::SubjectDn]), Ok("CN=api".into()));
    assert_eq!(
        subject(vec![SubjectSource::SpiffeId]),
        Err(StatusCode::UNAUTHORIZED)
    );
    let parsed = certificates.parsed().unwrap();
    assert_eq!(parsed.serial, vec![40]);
    assert_eq!(parsed.issuer, "CN=Test Root CA");
}

#[tokio::test]
async fn the_authenticator_checks_the_validity_period_itself() {
    let pki = pki();
    // A chain that reached the extensions without a handshake (or a
    // connection that outlived its certificate) is still checked.
    let expired = leaf(&pki.ca, spiffe(WEB), "web", 50, true, true);
    let certificates = ClientCertificates::new(expired.chain.clone()).unwrap();
    let result = CertificateAuthenticator::new().check(&certificates);
    assert_eq!(result.unwrap_err().status(), StatusCode::UNAUTHORIZED);
    let in_2020 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let result = CertificateAuthenticator::new()
        .clock(move || in_2020)
        .check(&certificates);
    assert!(result.is_ok());
    // Garbage that reached the extensions is refused, never a panic.
    let garbage =
        ClientCertificates::new(vec![CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]).unwrap();
    assert_eq!(
        CertificateAuthenticator::new()
            .check(&garbage)
            .unwrap_err()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(ClientCertificates::new(Vec::new()).is_none());
}

/// RFC 8705 certificate-bound access tokens, with the connection's
/// certificates in the extensions as `AddClientCertificates` puts them.
#[cfg(feature = "jwt")]
mod bound_tokens {
    use std::convert::Infallible;

    use http::{header, Request, Response, StatusCode};
    use serde_json::{json, Value};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_auth::jwt::TokenIssuer;
    use tower_auth::mtls::{thumbprint, CertificateBound, ClientCertificates};
    use tower_auth::AuthLayer;

    use super::{leaf, pki, spiffe, WEB};

    fn issuer() -> TokenIssuer {
        TokenIssuer::hs256(b"a certificate-bound test secret, 32+ bytes")
            .unwrap()
            .build()
            .unwrap()
    }

    async fn send(
        bound: CertificateBound<tower_auth::jwt::JwtAuthenticator<Value>>,
        token: &str,
        certificates: Option<ClientCertificates>,
    ) -> (StatusCode, String) {
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(bound))
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            });
        let mut req = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        if let Some(c) = certificates {
            req.extensions_mut().insert(c);
        }
        let res = svc.oneshot(req).await.unwrap();
        let www = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (res.status(), www)
    }

    #[tokio::test]
    async fn a_bound_token_needs_its_certificate() {
        let pki = pki();
        let holder = leaf(&pki.ca, spiffe(WEB), "web", 60, false, true);
        let thief = leaf(&pki.ca, spiffe(WEB), "web", 61, false, true);
        let issuer = issuer();
        let token = issuer
            .issue(
                "web",
                &json!({"cnf": {"x5t#S256": thumbprint(&holder.chain[0])}}),
            )
            .unwrap()
            .access_token;
        let bound = || CertificateBound::new(issuer.authenticator::<Value>());
        let certs = |l: &super::Leaf| ClientCertificates::new(l.chain.clone());

        let (status, _) = send(bound(), &token, certs(&holder)).await;
        assert_eq!(status, StatusCode::OK);
        for (what, presented) in [
            ("another certificate", certs(&thief)),
            ("no certificate", None),
        ] {
            let (status, www) = send(bound(), &token, presented).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert!(
                www.starts_with("Bearer error=\"invalid_token\""),
                "{what}: {www}"
            );
        }
    }

    #[tokio::test]
    async fn unbound_tokens_pass_unless_binding_is_required() {
        let pki = pki();
        let holder = leaf(&pki.ca, spiffe(WEB), "web", 62, false, true);
        let issuer = issuer();
        let token = issuer.issue("web", &json!({})).unwrap().access_token;
        let (status, _) = send(CertificateBound::new(issuer.authenticator()), &token, None).await;
        assert_eq!(status, StatusCode::OK);
        let strict = || CertificateBound::new(issuer.authenticator()).require_binding(true);
        let (status, _) = send(strict(), &token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(
            strict(),
            &token,
            ClientCertificates::new(holder.chain.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_malformed_thumbprint_never_matches() {
        let pki = pki();
        let holder = leaf(&pki.ca, spiffe(WEB), "web", 63, false, true);
        let issuer = issuer();
        for cnf in [
            json!({"x5t#S256": ""}),
            json!({"x5t#S256": "AAAA"}),
            json!({"x5t#S256": 7}),
        ] {
            let token = issuer
                .issue("web", &json!({ "cnf": cnf }))
                .unwrap()
                .access_token;
            let (status, _) = send(
                CertificateBound::new(issuer.authenticator()).require_binding(true),
                &token,
                ClientCertificates::new(holder.chain.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{cnf}");
        }
    }
}

#[tokio::test]
async fn with_crls_an_issuer_without_a_list_fails_closed_unless_allowed() {
    let pki = pki();
    let second_ca = ca_named("Second CA");
    let client = leaf(&second_ca, spiffe(WEB), "web", 70, false, true);
    let config = || {
        MtlsConfig::new([pki.ca.cert.clone(), second_ca.cert.clone()])
            .unwrap()
            .crls([crl(&pki.ca, 99)])
    };
    let auth = || AuthLayer::new(CertificateAuthenticator::new());
    let (addr, _) = serve(config(), &pki.server, auth()).await;
    assert!(get_with(addr, &pki.ca.cert, Some(&client)).await.is_err());
    let (addr, _) = serve(
        config().allow_unknown_revocation_status(),
        &pki.server,
        auth(),
    )
    .await;
    let (status, _, _) = get_with(addr, &pki.ca.cert, Some(&client)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_handshake_times_out() {
    let pki = pki();
    let tls = MtlsConfig::new([pki.ca.cert.clone()])
        .unwrap()
        .server_config(pki.server.chain.clone(), pki.server.key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::new(tls).handshake_timeout(Duration::from_millis(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A client that connects and never says a word.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let started = std::time::Instant::now();
    let err = acceptor.accept(tcp).await.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
}
