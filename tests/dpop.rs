//! DPoP (RFC 9449): the RFC's example proof, DPoP-bound JWTs through
//! `AuthLayer<DpopBound<JwtAuthenticator>>`, and hostile proofs.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::dpop::{verify_proof, DpopBound};
use tower_auth::jwt::{Algorithm, JwtAuthenticator, TokenIssuer};
use tower_auth::AuthLayer;

/// RFC 9449 §4.1: a proof for `POST https://server.example.com/token`.
const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
const RFC_IAT: u64 = 1_562_262_616;
/// RFC 9449 §6.1: the thumbprint of that proof's key.
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_request(method: &str, uri: &str, proof: &str) -> http::request::Parts {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "server.example.com")
        .header("dpop", proof)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn rfc_verifier(at: u64) -> DpopBound<()> {
    DpopBound::new(()).clock(move || at)
}

#[tokio::test]
async fn the_rfc_example_proof_verifies_once() {
    let verifier = rfc_verifier(RFC_IAT + 10);
    let head = token_request("POST", "/token", RFC_PROOF);
    let proof = verify_proof(&verifier, &head, None).await.unwrap();
    assert_eq!(proof.jkt, RFC_JKT);
    assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
    // The same proof again is a replay.
    let err = verify_proof(&verifier, &head, None).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.message(), "the DPoP proof was replayed");
}

#[tokio::test]
async fn the_rfc_proof_is_refused_for_another_request_or_time() {
    let cases = [
        (
            "GET",
            "/token",
            RFC_IAT,
            "the DPoP proof is for another HTTP method",
        ),
        (
            "POST",
            "/other",
            RFC_IAT,
            "the DPoP proof is for another URI",
        ),
        (
            "POST",
            "/token",
            RFC_IAT + 61,
            "the DPoP proof is not fresh",
        ),
        ("POST", "/token", RFC_IAT - 6, "the DPoP proof is not fresh"),
    ];
    for (method, path, at, message) in cases {
        let err = verify_proof(
            &rfc_verifier(at),
            &token_request(method, path, RFC_PROOF),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.message(), message, "{method} {path} at {at}");
    }
    // A token hash is required once there is a token: the RFC proof has no `ath`.
    let err = verify_proof(
        &rfc_verifier(RFC_IAT),
        &token_request("POST", "/token", RFC_PROOF),
        Some("some-token"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.message(), "the DPoP proof is for another access token");
    // htu normalization: scheme / host case, default port.
    let verifier = rfc_verifier(RFC_IAT).public_origin("HTTPS://Server.Example.com:443");
    verify_proof(&verifier, &token_request("POST", "/token", RFC_PROOF), None)
        .await
        .unwrap();
}

/// A client key: signs proofs, knows its JWK and thumbprint.
struct Client {
    encoding: EncodingKey,
    jwk: Value,
    jkt: String,
}

fn client() -> Client {
    let key = KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65);
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..]);
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    Client {
        encoding: EncodingKey::from_ec_der(&key.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
        jkt: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
    }
}

impl Client {
    /// Signs `header` and `claims` as given, member for member.
    fn raw_proof(&self, header: &Value, claims: &Value) -> String {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        format!("{message}.{signature}")
    }

    fn proof_with(&self, header: Value, claims: Value) -> String {
        let header: Header = serde_json::from_value(header).unwrap();
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        self.proof_with(
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}),
            json!({
                "jti": format!("{}", now() as u128 * 1000 + u128::from(rand_u16())),
                "htm": method,
                "htu": htu,
                "iat": now(),
                "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
            }),
        )
    }
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).unwrap();
    u16::from_le_bytes(b)
}

fn issuer() -> TokenIssuer {
    TokenIssuer::hs256(b"a dpop test secret of at least 32 bytes!!")
        .unwrap()
        .build()
        .unwrap()
}

async fn send(
    layer: AuthLayer<DpopBound<JwtAuthenticator<Value>>>,
    authorization: String,
    proof: Option<String>,
) -> (StatusCode, Vec<String>, String) {
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let mut req = Request::get("/resource")
        .header("host", "api.example.com")
        .header(header::AUTHORIZATION, authorization);
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    let res = svc.oneshot(req.body(()).unwrap()).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let message = serde_json::from_slice::<Value>(&body)
        .map(|v| v["message"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, www, message)
}

const HTU: &str = "https://api.example.com/resource";

#[tokio::test]
async fn a_bound_token_needs_a_proof_of_its_key() {
    let alice = client();
    let mallory = client();
    let issuer = issuer();
    let token = issuer
        .issue("alice", &json!({"cnf": {"jkt": alice.jkt}}))
        .unwrap()
        .access_token;
    let layer = || AuthLayer::new(DpopBound::new(issuer.authenticator::<Value>()));

    let (status, _, _) = send(
        layer(),
        format!("DPoP {token}"),
        Some(alice.proof("GET", HTU, &token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let cases = [
        // Another key's proof.
        (
            format!("DPoP {token}"),
            Some(mallory.proof("GET", HTU, &token)),
            "the access token is bound to another key",
        ),
        // No proof.
        (format!("DPoP {token}"), None, "a DPoP proof is required"),
        // A proof for another token.
        (
            format!("DPoP {token}"),
            Some(alice.proof("GET", HTU, "another")),
            "the DPoP proof is for another access token",
        ),
        // A proof for another method or URI.
        (
            format!("DPoP {token}"),
            Some(alice.proof("POST", HTU, &token)),
            "the DPoP proof is for another HTTP method",
        ),
        (
            format!("DPoP {token}"),
            Some(alice.proof("GET", "https://evil.example/resource", &token)),
            "the DPoP proof is for another URI",
        ),
        // Downgrade to Bearer.
        (
            format!("Bearer {token}"),
            Some(alice.proof("GET", HTU, &token)),
            "a DPoP-bound access token must be sent with the DPoP scheme",
        ),
    ];
    for (authorization, proof, message) in cases {
        let (status, www, got) = send(layer(), authorization, proof).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
        assert_eq!(got, message);
        assert!(!www.is_empty(), "{message}");
    }

    // A replayed proof.
    let proof = alice.proof("GET", HTU, &token);
    let shared = layer();
    let (status, _, _) = send(shared.clone(), format!("DPoP {token}"), Some(proof.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, www, message) = send(shared, format!("DPoP {token}"), Some(proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message, "the DPoP proof was replayed");
    assert!(
        www[0].starts_with(
            r#"DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="invalid_dpop_proof""#
        ),
        "{www:?}"
    );
}

#[tokio::test]
async fn unbound_tokens_follow_the_scheme_rules() {
    let alice = client();
    let issuer = issuer();
    let token = issuer.issue("alice", &json!({})).unwrap().access_token;
    let layer = |strict: bool| {
        AuthLayer::new(DpopBound::new(issuer.authenticator::<Value>()).require_binding(strict))
    };
    let (status, _, _) = send(layer(false), format!("Bearer {token}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, message) = send(layer(true), format!("Bearer {token}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message, "the access token is not DPoP-bound");
    let (status, _, _) = send(
        layer(false),
        format!("DPoP {token}"),
        Some(alice.proof("GET", HTU, &token)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hostile_proofs_are_refused() {
    let alice = client();
    let issuer = issuer();
    let token = issuer
        .issue("alice", &json!({"cnf": {"jkt": alice.jkt}}))
        .unwrap()
        .access_token;
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let claims = json!({"jti": "j1", "htm": "GET", "htu": HTU, "iat": now(), "ath": ath});
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let mut private_jwk = alice.jwk.clone();
    private_jwk["d"] = json!("AAAA");
    let secret = "a-shared-secret-of-at-least-32-bytes!!";
    let hs_jwk = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)});
    let hs = jsonwebtoken::encode(
        &serde_json::from_value::<Header>(
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": hs_jwk}),
        )
        .unwrap(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let cases = [
        (
            format!(
                "{}.{}.",
                b64(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": alice.jwk})),
                b64(&claims)
            ),
            "the DPoP proof algorithm is not accepted",
        ),
        (hs, "the DPoP proof algorithm is not accepted"),
        (
            alice.proof_with(
                json!({"typ": "JWT", "alg": "ES256", "jwk": alice.jwk}),
                claims.clone(),
            ),
            "the DPoP proof is not of type dpop+jwt",
        ),
        (
            alice.raw_proof(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private_jwk}),
                &claims,
            ),
            "the DPoP proof jwk is not a public key",
        ),
        (
            alice.proof_with(json!({"typ": "dpop+jwt", "alg": "ES256"}), claims.clone()),
            "the DPoP proof has no jwk",
        ),
        (
            // Signed by another key than the one it carries.
            client().proof_with(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": alice.jwk}),
                claims.clone(),
            ),
            "the DPoP proof signature is invalid",
        ),
        ("not.a.jwt".to_owned(), "the DPoP proof is malformed"),
        ("x".repeat(9000), "the DPoP proof is too long"),
    ];
    for (proof, message) in cases {
        let layer = AuthLayer::new(DpopBound::new(issuer.authenticator::<Value>()));
        let (status, _, got) = send(layer, format!("DPoP {token}"), Some(proof)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
        assert_eq!(got, message);
    }
    // The same raw signing, with a public JWK, passes: the refusals above
    // are the hostile parts, not the test's signing.
    let ok = alice.raw_proof(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": alice.jwk}),
        &claims,
    );
    let layer = AuthLayer::new(DpopBound::new(issuer.authenticator::<Value>()));
    let (status, _, _) = send(layer, format!("DPoP {token}"), Some(ok)).await;
    assert_eq!(status, StatusCode::OK);
}

/// One request through a layer: the status, every `WWW-Authenticate`, and
/// the `DPoP-Nonce` response header.
async fn send_for_nonce(
    layer: AuthLayer<DpopBound<JwtAuthenticator<Value>>>,
    token: &str,
    proof: String,
) -> (StatusCode, String, Option<String>) {
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let req = Request::get("/resource")
        .header("host", "api.example.com")
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let www = res
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let nonce = res
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), www, nonce)
}

#[tokio::test]
async fn server_nonces_are_required_when_configured() {
    use tower_auth::dpop::DpopNonces;

    let alice = client();
    let issuer = issuer();
    let token = issuer
        .issue("alice", &json!({"cnf": {"jkt": alice.jkt}}))
        .unwrap()
        .access_token;
    let nonces = DpopNonces::new(&[7; 32]).unwrap();
    let layer =
        || AuthLayer::new(DpopBound::new(issuer.authenticator::<Value>()).nonces(nonces.clone()));
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let proof = |nonce: Option<&str>| {
        let mut claims = json!({
            "jti": format!("{}-{}", now(), rand_u16()),
            "htm": "GET",
            "htu": HTU,
            "iat": now(),
            "ath": ath,
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        alice.proof_with(
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": alice.jwk}),
            claims,
        )
    };

    // No nonce: 401 use_dpop_nonce and a fresh nonce to use.
    let (status, www, nonce) = send_for_nonce(layer(), &token, proof(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www.contains(r#"error="use_dpop_nonce""#), "{www}");
    let nonce = nonce.expect("a DPoP-Nonce header");
    assert!(nonces.accepts(&nonce, now()));

    // With it, the proof passes; another instance with the same key agrees.
    let (status, _, again) = send_for_nonce(layer(), &token, proof(Some(&nonce))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, None, "no nonce header on success");

    // Forged, expired and foreign nonces are refused the same way.
    let mut forged = nonce.clone().into_bytes();
    forged[31] = if forged[31] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let expired = nonces.issue(now() - 301);
    let foreign = DpopNonces::new(&[8; 32]).unwrap().issue(now());
    for bad in [
        forged.as_str(),
        expired.as_str(),
        foreign.as_str(),
        "",
        "short",
    ] {
        let (status, www, fresh) = send_for_nonce(layer(), &token, proof(Some(bad))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(www.contains(r#"error="use_dpop_nonce""#), "{bad}: {www}");
        assert!(fresh.is_some_and(|f| f != bad && nonces.accepts(&f, now())));
    }
    // A good nonce does not help a proof of another key.
    let mallory = client();
    let mallory_proof = mallory.proof_with(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": mallory.jwk}),
        json!({
            "jti": format!("m-{}", rand_u16()),
            "htm": "GET",
            "htu": HTU,
            "iat": now(),
            "ath": ath,
            "nonce": nonce,
        }),
    );
    let (status, www, _) = send_for_nonce(layer(), &token, mallory_proof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!www.contains("use_dpop_nonce"), "{www}");

    assert!(DpopNonces::new(&[1; 31]).is_err(), "short keys are refused");
}
