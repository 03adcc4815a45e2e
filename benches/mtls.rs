//! The mTLS authenticator per request, against a bare request through the
//! same inner service, measured in the same run. The TLS handshake is not
//! included: it happens once per connection, and the certificate is parsed
//! once per connection too; what every request pays is measured here.
//!
//! ```sh
//! cargo bench --bench mtls --features mtls -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `baseline_bare_request`: the inner service alone.
//! * `layer_mtls_cached`: `AuthLayer<CertificateAuthenticator>` (subject
//!   pattern and issuer allow-lists, a deny list) on a request whose
//!   connection's certificate was already parsed.
//! * `layer_mtls_first_request`: the same on the first request of a
//!   connection (the X.509 parse included).

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use tower::{service_fn, Service, ServiceExt};
use tower_auth::mtls::{CertificateAuthenticator, ClientCertificates};
use tower_auth::AuthLayer;
use tower_layer::Layer;

/// Polls a future that is ready without waiting (all of this bench's).
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn mtls(c: &mut Criterion) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "web");
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://example.org/ns/prod/sa/web".try_into().unwrap(),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap().der().clone();

    let auth = CertificateAuthenticator::new()
        .allow_subjects(["spiffe://example.org/ns/prod/sa/*"])
        .allow_issuers([ca_cert.der()])
        .unwrap()
        .revoked([[7u8; 32]]);
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut bare = inner;
    let mut layered = AuthLayer::new(auth).layer(inner);
    let connection = ClientCertificates::new(vec![cert.clone()]).unwrap();
    let request = |certs: ClientCertificates| {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut().insert(certs);
        req
    };

    let mut g = c.benchmark_group("mtls");
    g.bench_function("baseline_bare_request", |b| {
        b.iter(|| {
            let svc = now(bare.ready()).unwrap();
            let res = now(svc.call(request(connection.clone())));
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        })
    });
    g.bench_function("layer_mtls_cached", |b| {
        b.iter(|| {
            let svc = now(layered.ready()).unwrap();
            let res = now(svc.call(request(connection.clone())));
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        })
    });
    g.bench_function("layer_mtls_first_request", |b| {
        b.iter(|| {
            let fresh = ClientCertificates::new(vec![cert.clone()]).unwrap();
            let svc = now(layered.ready()).unwrap();
            let res = now(svc.call(request(fresh)));
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        })
    });
    g.finish();
}

criterion_group!(benches, mtls);
criterion_main!(benches);
