//! JWT validation through `AuthLayer`: every algorithm, every rejection
//! path, RFC 7515 / 7520 example tokens, token sources, issuing, refresh
//! rotation, logout and the verified-token cache.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{
    ConfigError, JwtAuthenticator, JwtError, JwtKey, KeySet, MemoryRevocationStore, Revocable,
    RevocationStore, TokenIssuer,
};
use tower_auth::{AuthError, AuthLayer, Authenticator, Identity};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("keys/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("keys/ec256_public.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("keys/ec384_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("keys/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed25519_public.pem");

#[derive(Clone, Debug, Deserialize)]
struct Claims {
    #[allow(dead_code)]
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"sub": "user-1", "name": "Alice", "exp": now() + 600, "iat": now()})
}

fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(SECRET),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        Algorithm::ES384 => EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    }
}

fn verification_key(alg: Algorithm) -> JwtKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            JwtKey::hmac(alg, SECRET).unwrap()
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let pem = if alg == Algorithm::ES256 {
                EC256_PUBLIC
            } else {
                EC384_PUBLIC
            };
            JwtKey::ec_pem(alg, pem).unwrap()
        }
        Algorithm::EdDSA => JwtKey::ed_pem(ED_PUBLIC).unwrap(),
        _ => JwtKey::rsa_pem(alg, RSA_PUBLIC).unwrap(),
    }
}

fn sign(alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &encoding_key(alg)).unwrap()
}

/// Builds a token from raw header and payload JSON, signed with HS256 and
/// `SECRET`.
fn raw_hs256(header: &str, payload: &str) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

fn hs256() -> JwtAuthenticator<Claims> {
    JwtAuthenticator::new(KeySet::single(
        JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
    ))
    .realm("api")
}

struct Reply {
    status: StatusCode,
    www: Option<String>,
    vary: Option<String>,
    body: Value,
}

impl Reply {
    async fn read<B>(res: Response<B>) -> Reply
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let header = |name| {
            res.headers()
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let (www, vary) = (header(header::WWW_AUTHENTICATE), header(header::VARY));
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            www,
            vary,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }
}

async fn call<C>(auth: JwtAuthenticator<C>, req: Request<()>) -> Reply
where
    C: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth))
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<Identity>().unwrap();
            let body = json!({
                "subject": id.subject(),
                "scheme": id.scheme().to_string(),
                "roles": id.roles().collect::<Vec<_>>(),
                "permissions": id.permissions().collect::<Vec<_>>(),
                "scopes": id.scopes().collect::<Vec<_>>(),
            });
            Ok::<_, Infallible>(Response::new(body.to_string()))
        });
    Reply::read(svc.oneshot(req).await.unwrap()).await
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

async fn expect_refused<C>(
    auth: JwtAuthenticator<C>,
    token: &str,
    status: StatusCode,
    message: &str,
) where
    C: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let r = call(auth, bearer(token)).await;
    assert_eq!(r.status, status, "{message}: {}", r.body);
    assert_eq!(r.body["message"], message);
    let www = r.www.unwrap();
    let code = if status == StatusCode::BAD_REQUEST {
        "invalid_request"
    } else {
        "invalid_token"
    };
    assert!(www.contains(&format!("error=\"{code}\"")), "{www}");
    assert!(www.starts_with("Bearer realm=\"api\""), "{www}");
    assert!(!r.body.to_string().contains(token), "token echoed");
}

#[tokio::test]
async fn every_supported_algorithm_verifies() {
    for alg in [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let auth = JwtAuthenticator::<Claims>::new(KeySet::single(verification_key(alg)));
        let r = call(auth.clone(), bearer(&sign(alg, &claims()))).await;
        assert_eq!(r.status, StatusCode::OK, "{alg:?}: {}", r.body);
        assert_eq!(r.body["subject"], "user-1");
        assert_eq!(
            auth.verify(&sign(alg, &claims()))
                .unwrap()
                .principal
                .name
                .as_deref(),
            Some("Alice")
        );
    }
}

#[tokio::test]
async fn a_key_only_verifies_its_own_algorithm() {
    // An RS256 key does not verify PS256 or RS512 tokens made with the same
    // RSA key pair, and an ES256 key does not verify ES384.
    let rs256 = JwtAuthenticator::<Claims>::new(KeySet::single(verification_key(Algorithm::RS256)))
        .realm("api");
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        expect_refused(
            rs256.clone(),
            &sign(alg, &claims()),
            StatusCode::UNAUTHORIZED,
            "token algorithm not accepted",
        )
        .await;
    }
    // Even with a wide allow-list, the key's binding holds.
    let wide = rs256
        .clone()
        .algorithms([Algorithm::RS256, Algorithm::PS256, Algorithm::HS256]);
    expect_refused(
        wide,
        &sign(Algorithm::PS256, &claims()),
        StatusCode::UNAUTHORIZED,
        "unknown token signing key",
    )
    .await;
}

#[tokio::test]
async fn alg_none_is_refused_in_any_casing() {
    let auth = hs256();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let p = URL_SAFE_NO_PAD.encode(claims().to_string());
        expect_refused(
            auth.clone(),
            &format!("{h}.{p}.c2lnbmF0dXJl"),
            StatusCode::UNAUTHORIZED,
            "token algorithm not accepted",
        )
        .await;
        // Unsecured JWS form (empty signature).
        expect_refused(
            auth.clone(),
            &format!("{h}.{p}."),
            StatusCode::UNAUTHORIZED,
            "invalid token signature",
        )
        .await;
    }
}

#[tokio::test]
async fn hs_rs_confusion_with_the_public_key_as_hmac_secret() {
    // The attacker signs HS256 with the server's RSA public key (PEM bytes)
    // as the HMAC secret.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    let rsa = KeySet::single(verification_key(Algorithm::RS256));
    let auth = JwtAuthenticator::<Claims>::new(rsa.clone()).realm("api");
    expect_refused(
        auth,
        &forged,
        StatusCode::UNAUTHORIZED,
        "token algorithm not accepted",
    )
    .await;
    // Allowing HS256 explicitly changes nothing: the RSA key is not an HMAC key.
    let auth = JwtAuthenticator::<Claims>::new(rsa)
        .algorithms([Algorithm::RS256, Algorithm::HS256])
        .realm("api");
    expect_refused(
        auth,
        &forged,
        StatusCode::UNAUTHORIZED,
        "unknown token signing key",
    )
    .await;
    // Also from a JWK without "alg" (bound to the RSA family only).
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &encoding_key(Algorithm::RS256),
        Algorithm::RS256,
    )
    .unwrap();
    let mut jwk_json = serde_json::to_value(&jwk).unwrap();
    jwk_json.as_object_mut().unwrap().remove("alg");
    let set = KeySet::from_jwks_json(&json!({"keys": [jwk_json]}).to_string()).unwrap();
    let auth = JwtAuthenticator::<Claims>::new(set)
        .algorithms([Algorithm::RS256, Algorithm::HS256])
        .realm("api");
    expect_refused(
        auth.clone(),
        &forged,
        StatusCode::UNAUTHORIZED,
        "unknown token signing key",
    )
    .await;
    assert_eq!(
        call(auth, bearer(&sign(Algorithm::RS256, &claims())))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn kid_selects_the_key_and_unknown_kids_are_refused() {
    let a = JwtKey::hmac(Algorithm::HS256, SECRET)
        .unwrap()
        .with_kid("key-a");
    let b = JwtKey::hmac(Algorithm::HS256, &[7u8; 32])
        .unwrap()
        .with_kid("key-b");
    let auth = JwtAuthenticator::<Claims>::new(KeySet::from_keys([a, b]).unwrap()).realm("api");
    let with_kid = |kid: &str| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(SECRET)).unwrap()
    };
    assert_eq!(
        call(auth.clone(), bearer(&with_kid("key-a"))).await.status,
        StatusCode::OK
    );
    // Signed with a's secret but naming b.
    expect_refused(
        auth.clone(),
        &with_kid("key-b"),
        StatusCode::UNAUTHORIZED,
        "invalid token signature",
    )
    .await;
    for kid in [
        "nope",
        "../../../../etc/passwd",
        "/dev/null",
        "key-a/../key-a",
        "http://evil/jwks.json",
    ] {
        expect_refused(
            auth.clone(),
            &with_kid(kid),
            StatusCode::UNAUTHORIZED,
            "unknown token signing key",
        )
        .await;
    }
    // Two keys and no kid: ambiguous, refused.
    expect_refused(
        auth,
        &sign(Algorithm::HS256, &claims()),
        StatusCode::UNAUTHORIZED,
        "unknown token signing key",
    )
    .await;
}

#[tokio::test]
async fn embedded_and_remote_keys_in_the_header_are_ignored() {
    // The attacker signs with their own key and ships it in the header.
    let attacker = &[9u8; 32];
    let attacker_k = URL_SAFE_NO_PAD.encode(attacker);
    for extra in [
        format!(r#""jwk":{{"kty":"oct","k":"{attacker_k}"}}"#),
        r#""jku":"https://evil.example/jwks.json""#.to_owned(),
        r#""x5u":"https://evil.example/cert.pem""#.to_owned(),
        r#""x5c":["MIIBIjANBgkq"]"#.to_owned(),
    ] {
        let header = format!(r#"{{"alg":"HS256",{extra}}}"#);
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let sig = jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &EncodingKey::from_secret(attacker),
            Algorithm::HS256,
        )
        .unwrap();
        expect_refused(
            hs256(),
            &format!("{msg}.{sig}"),
            StatusCode::UNAUTHORIZED,
            "invalid token signature",
        )
        .await;
        // The same header is harmless when the token is really ours.
        let ours = raw_hs256(&header, &claims().to_string());
        assert_eq!(call(hs256(), bearer(&ours)).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn unknown_crit_header_is_refused() {
    let token = raw_hs256(
        r#"{"alg":"HS256","crit":["http://example.invalid/ext"],"http://example.invalid/ext":true}"#,
        &claims().to_string(),
    );
    expect_refused(
        hs256(),
        &token,
        StatusCode::UNAUTHORIZED,
        "unsupported critical token header",
    )
    .await;
}

#[tokio::test]
async fn tampering_is_detected() {
    let token = sign(Algorithm::HS256, &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // Payload swapped for an admin one, signature kept.
    parts[1] = URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": now() + 600}).to_string());
    expect_refused(
        hs256(),
        &parts.join("."),
        StatusCode::UNAUTHORIZED,
        "invalid token signature",
    )
    .await;
    // One signature character changed.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let c = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2].replace_range(0..1, c);
    expect_refused(
        hs256(),
        &parts.join("."),
        StatusCode::UNAUTHORIZED,
        "invalid token signature",
    )
    .await;
    // Signature stripped.
    let (msg, _) = token.rsplit_once('.').unwrap();
    expect_refused(
        hs256(),
        &format!("{msg}."),
        StatusCode::UNAUTHORIZED,
        "invalid token signature",
    )
    .await;
    expect_refused(hs256(), msg, StatusCode::UNAUTHORIZED, "malformed token").await;
    // Signature in the token68 charset but not base64url.
    expect_refused(
        hs256(),
        &format!("{msg}.ab+/cd"),
        StatusCode::UNAUTHORIZED,
        "invalid token signature",
    )
    .await;
}

#[tokio::test]
async fn time_claims() {
    let n = now();
    let cases = [
        (json!({"sub": "u", "exp": n - 120}), "token expired"),
        (json!({"sub": "u"}), "token lacks a required claim"),
        (
            json!({"sub": "u", "exp": n + 600, "nbf": n + 300}),
            "token not yet valid",
        ),
        (
            json!({"sub": "u", "exp": n + 600, "iat": n + 300}),
            "token issued in the future",
        ),
        (
            json!({"sub": "u", "exp": "tomorrow"}),
            "token has an invalid claim",
        ),
    ];
    for (c, message) in cases {
        expect_refused(
            hs256(),
            &sign(Algorithm::HS256, &c),
            StatusCode::UNAUTHORIZED,
            message,
        )
        .await;
    }
    // Within the leeway.
    let ok = json!({"sub": "u", "exp": n - 5, "nbf": n + 5, "iat": n + 5});
    assert_eq!(
        call(hs256(), bearer(&sign(Algorithm::HS256, &ok)))
            .await
            .status,
        StatusCode::OK
    );
    let strict = hs256().leeway(Duration::ZERO);
    expect_refused(
        strict,
        &sign(Algorithm::HS256, &ok),
        StatusCode::UNAUTHORIZED,
        "token expired",
    )
    .await;
}

#[tokio::test]
async fn issuer_and_audience() {
    let auth = hs256()
        .issuers(["https://idp.example"])
        .audiences(["api", "admin-api"]);
    let base =
        |iss: &str, aud: Value| json!({"sub": "u", "exp": now() + 60, "iss": iss, "aud": aud});
    let ok = sign(
        Algorithm::HS256,
        &base("https://idp.example", json!(["other", "api"])),
    );
    assert_eq!(call(auth.clone(), bearer(&ok)).await.status, StatusCode::OK);
    let ok = sign(
        Algorithm::HS256,
        &base("https://idp.example", json!("admin-api")),
    );
    assert_eq!(call(auth.clone(), bearer(&ok)).await.status, StatusCode::OK);
    let bad_iss = sign(
        Algorithm::HS256,
        &base("https://evil.example", json!("api")),
    );
    expect_refused(
        auth.clone(),
        &bad_iss,
        StatusCode::UNAUTHORIZED,
        "token issuer not accepted",
    )
    .await;
    let bad_aud = sign(
        Algorithm::HS256,
        &base("https://idp.example", json!(["web"])),
    );
    expect_refused(
        auth.clone(),
        &bad_aud,
        StatusCode::UNAUTHORIZED,
        "token audience not accepted",
    )
    .await;
    // A token for some audience is refused by a verifier that names none.
    expect_refused(
        hs256(),
        &ok,
        StatusCode::UNAUTHORIZED,
        "token audience not accepted",
    )
    .await;
}

#[tokio::test]
async fn refresh_tokens_never_pass_as_access_tokens() {
    let issuer = TokenIssuer::hs256(SECRET).unwrap();
    let pair = issuer.issue("u1", &()).unwrap();
    let auth = issuer.authenticator::<Claims>().realm("api");
    assert_eq!(
        call(auth.clone(), bearer(&pair.access_token)).await.status,
        StatusCode::OK
    );
    expect_refused(
        auth,
        &pair.refresh_token,
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
    // Also with a plain authenticator on the same key (default type rule).
    let plain = JwtAuthenticator::<Claims>::new(KeySet::single(
        JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
    ))
    .realm("api");
    expect_refused(
        plain,
        &pair.refresh_token,
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
    // The seeds' "type" claim.
    let seeds = hs256().token_type_claim("type");
    let refresh = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": now() + 60, "type": "refresh"}),
    );
    expect_refused(
        seeds,
        &refresh,
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
}

#[tokio::test]
/// RFC 6750 §3.1: a token that is not a decodable JWT is an invalid
/// *token* (`401 invalid_token`, the client refreshes); a malformed
/// *request* (bytes outside token68) stays `400 invalid_request`.
async fn malformed_tokens_are_401_invalid_token() {
    let good = sign(Algorithm::HS256, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let cases = [
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{h}.{}", rest.split_once('.').unwrap().0),
        // header not base64url / not JSON / not an object
        format!("abcde.{rest}"),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1,2]")),
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"HS256"}"#)
        ),
        format!("{h}.{rest}.{s}"),
    ];
    for token in cases {
        expect_refused(hs256(), &token, StatusCode::UNAUTHORIZED, "malformed token").await;
    }
    // `a.b.` (an empty signature) was already 401: now `a.b` is too.
    let r = call(hs256(), bearer("a.b")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_token");
    assert!(r.www.unwrap().contains(r#"error="invalid_token""#));
    // Two Authorization headers stay a malformed request.
    let mut two = bearer(&good);
    two.headers_mut().append(
        http::header::AUTHORIZATION,
        format!("Bearer {good}").parse().unwrap(),
    );
    let r = call(hs256(), two).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
    // Outside the token68 charset: refused by the header parser.
    for token in [format!("{h}=.{rest}"), format!("%%%.{rest}")] {
        let r = call(hs256(), bearer(&token)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.body["message"],
            "the bearer token contains invalid characters"
        );
    }
    // Payload that is not JSON, correctly signed.
    let not_json = raw_hs256(r#"{"alg":"HS256"}"#, "not json");
    expect_refused(
        hs256(),
        &not_json,
        StatusCode::UNAUTHORIZED,
        "token has an invalid claim",
    )
    .await;
}

#[tokio::test]
/// Decided: a token over the size limit is a malformed *request* (`400
/// invalid_request`), from the header and from the query alike: it is
/// refused unread, and a refreshed token would be refused the same way, so
/// the client is not told to refresh (`401 invalid_token`) and loop.
async fn oversized_tokens_are_refused_before_parsing() {
    let big = json!({"sub": "u", "exp": now() + 60, "pad": "x".repeat(20_000)});
    let token = sign(Algorithm::HS256, &big);
    let r = call(hs256(), bearer(&token)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
    assert!(r.www.unwrap().contains(r#"error="invalid_request""#));
    let r = call(
        hs256().query_param("access_token"),
        Request::get(format!("/ws?access_token={token}"))
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
    // Through `verify` too: `JwtError::TooLong`.
    let err = hs256().verify(&token).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // A raised limit accepts it.
    let r = call(hs256().max_len(64 * 1024), bearer(&token)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn identity_mapping_and_custom_claim_names() {
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "u1", "exp": now() + 60, "roles": ["admin", "user"],
                "permissions": "posts:read posts:delete", "scope": "read write", "scp": ["admin"]}),
    );
    let r = call(hs256(), bearer(&token)).await;
    assert_eq!(r.body["roles"], json!(["admin", "user"]));
    assert_eq!(r.body["permissions"], json!(["posts:delete", "posts:read"]));
    assert_eq!(r.body["scopes"], json!(["admin", "read", "write"]));
    assert_eq!(r.body["scheme"], "Bearer");

    // The seeds' claims: user_id, role, type.
    #[derive(Clone, Deserialize)]
    struct SeedClaims {
        user_id: String,
        email: String,
    }
    let token = sign(
        Algorithm::HS256,
        &json!({"user_id": "1", "email": "alice@example.com", "role": "admin", "type": "access", "exp": now() + 60}),
    );
    let auth = JwtAuthenticator::<SeedClaims>::new(KeySet::single(
        JwtKey::hmac(Algorithm::HS256, SECRET).unwrap(),
    ))
    .subject_claim("user_id")
    .token_type_claim("type")
    .check(|c: &SeedClaims| {
        if c.email.ends_with("@example.com") {
            Ok(())
        } else {
            Err(AuthError::forbidden("this API is for example.com accounts"))
        }
    });
    let r = call(auth.clone(), bearer(&token)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["subject"], "1");
    assert_eq!(r.body["roles"], json!(["admin"]));
    assert_eq!(auth.verify(&token).unwrap().principal.user_id, "1");
    let outsider = sign(
        Algorithm::HS256,
        &json!({"user_id": "2", "email": "eve@evil.example", "exp": now() + 60}),
    );
    let r = call(auth, bearer(&outsider)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["message"], "this API is for example.com accounts");
}

#[tokio::test]
async fn required_claims() {
    let auth = hs256().required_claims(["jti", "tenant"]);
    let without = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": now() + 60, "jti": "x"}),
    );
    let r = call(auth.clone(), bearer(&without)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "token lacks a required claim");
    let with = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": now() + 60, "jti": "x", "tenant": "t"}),
    );
    assert_eq!(call(auth, bearer(&with)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cookie_and_query_sources() {
    let token = sign(Algorithm::HS256, &claims());
    let auth = hs256().cookie("access_token").query_param("access_token");
    let cookie = |v: &str| {
        Request::get("/")
            .header(header::COOKIE, v)
            .body(())
            .unwrap()
    };
    let r = call(
        auth.clone(),
        cookie(&format!("theme=dark; access_token={token}; lang=en")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["scheme"], "Cookie");
    // A response that depends on a cookie says so to caches.
    assert_eq!(r.vary.as_deref(), Some("Cookie"));
    // So does the refusal of a well-formed cookie token with a bad signature.
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = call(auth.clone(), cookie(&format!("access_token={forged}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.vary.as_deref(), Some("Cookie"));
    // A repeated cookie is no credential (see
    // `bad_jwt_cookies_are_absent_and_fall_through`).
    let r = call(
        auth.clone(),
        cookie(&format!("access_token={token}; access_token={token}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "unauthorized");
    let r = call(
        auth.clone(),
        Request::get(format!("/ws?access_token={token}"))
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["scheme"], "Bearer");
    let mut both = bearer(&token);
    *both.uri_mut() = format!("/ws?access_token={token}").parse().unwrap();
    assert_eq!(
        call(auth.clone(), both).await.status,
        StatusCode::BAD_REQUEST
    );
    // Without opting in, neither cookie nor query is read.
    let r = call(
        hs256(),
        Request::get(format!("/ws?access_token={token}"))
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "unauthorized");
    // The header wins over the cookie.
    let mut req = bearer(&token);
    req.headers_mut()
        .insert(header::COOKIE, "access_token=garbage".parse().unwrap());
    assert_eq!(call(auth, req).await.status, StatusCode::OK);
}

fn fake_clock(
    start: u64,
) -> (
    Arc<AtomicU64>,
    impl Fn() -> u64 + Send + Sync + Clone + 'static,
) {
    let t = Arc::new(AtomicU64::new(start));
    let c = t.clone();
    (t, move || c.load(Ordering::SeqCst))
}

#[tokio::test]
async fn refresh_rotation_and_reuse_detection() {
    let (_, clock) = fake_clock(now());
    let store = MemoryRevocationStore::new().with_clock(clock.clone());
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .issuer("https://api.example")
        .audience("api")
        .revocation_store(store)
        .clock(clock);
    let auth = issuer.authenticator::<Claims>();
    let first = issuer.issue("u1", &json!({"name": "Alice"})).unwrap();
    assert_eq!(
        call(auth.clone(), bearer(&first.access_token)).await.status,
        StatusCode::OK
    );

    let grant = issuer.redeem(&first.refresh_token).await.unwrap();
    assert_eq!(grant.subject(), "u1");
    let second = issuer
        .issue_rotated(&grant, &json!({"name": "Alice"}))
        .unwrap();
    assert_eq!(
        call(auth.clone(), bearer(&second.access_token))
            .await
            .status,
        StatusCode::OK
    );

    // The first refresh token is replayed: reuse, the family is revoked.
    let err = issuer.redeem(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.message(), "refresh token reuse detected");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    // The rotated refresh token and every access token of the family die.
    assert_eq!(
        issuer
            .redeem(&second.refresh_token)
            .await
            .unwrap_err()
            .message(),
        "token revoked"
    );
    let r = call(auth.clone(), bearer(&second.access_token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "token revoked");
    assert_eq!(
        call(auth.clone(), bearer(&first.access_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Another sign-in is unaffected.
    let other = issuer.issue("u1", &()).unwrap();
    assert_eq!(
        call(auth, bearer(&other.access_token)).await.status,
        StatusCode::OK
    );
    // Access tokens cannot be redeemed.
    assert_eq!(
        issuer
            .redeem(&other.access_token)
            .await
            .unwrap_err()
            .message(),
        "token type not accepted"
    );
}

#[tokio::test]
async fn logout_revokes_the_family_and_the_access_token() {
    let issuer = TokenIssuer::hs256(SECRET).unwrap();
    let auth = issuer.authenticator::<Claims>();
    let pair = issuer.issue("u1", &()).unwrap();
    let other_session = issuer.issue("u1", &()).unwrap();
    issuer
        .logout(Some(&pair.access_token), Some(&pair.refresh_token))
        .await
        .unwrap();
    let r = call(auth.clone(), bearer(&pair.access_token)).await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token revoked"))
    );
    assert!(issuer.redeem(&pair.refresh_token).await.is_err());
    assert_eq!(
        call(auth, bearer(&other_session.access_token)).await.status,
        StatusCode::OK
    );
    // Logging out with a forged token is refused.
    let forged = raw_hs256(r#"{"alg":"HS256"}"#, "{}").replace('.', ".x");
    assert!(issuer.logout(None, Some(&forged)).await.is_err());
}

#[tokio::test]
async fn issued_claims_and_reserved_names() {
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .issuer("me")
        .access_ttl(Duration::from_secs(60));
    let pair = issuer.issue("u1", &json!({"roles": ["admin"]})).unwrap();
    assert_eq!(pair.token_type, "bearer");
    assert_eq!(pair.expires_in, 60);
    assert!(!format!("{pair:?}").contains(&pair.access_token));
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(pair.access_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for claim in ["sub", "iat", "exp", "jti", "typ", "fam", "iss", "roles"] {
        assert!(payload.get(claim).is_some(), "{claim} missing");
    }
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        60
    );
    assert!(issuer.issue("u1", &json!({"exp": 1})).is_err());
    assert!(issuer.issue("u1", &json!([1])).is_err());
    let a = issuer.issue("u1", &()).unwrap();
    assert_ne!(a.access_token, pair.access_token, "jti is random");
}

#[tokio::test]
async fn cached_tokens_still_expire_and_can_be_revoked() {
    let (time, clock) = fake_clock(now());
    let store = MemoryRevocationStore::new().with_clock(clock.clone());
    let auth = hs256()
        .leeway(Duration::ZERO)
        .clock(clock.clone())
        .cache(1000, Duration::from_secs(3600))
        .revocation(store.clone());
    let t0 = time.load(Ordering::SeqCst);
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": t0 + 100, "jti": "j1"}),
    );
    assert_eq!(
        call(auth.clone(), bearer(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(auth.clone(), bearer(&token)).await.status,
        StatusCode::OK
    ); // hit
    store
        .revoke(Revocable::Token("j1"), t0 + 100)
        .await
        .unwrap();
    let r = call(auth.clone(), bearer(&token)).await;
    assert_eq!(r.body["message"], "token revoked");

    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": t0 + 100, "jti": "j2"}),
    );
    assert_eq!(
        call(auth.clone(), bearer(&token)).await.status,
        StatusCode::OK
    );
    time.store(t0 + 100, Ordering::SeqCst);
    let r = call(auth.clone(), bearer(&token)).await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token expired"))
    );
    // A forged variant of a cached token is not a hit.
    let (msg, _) = token.rsplit_once('.').unwrap();
    let r = call(auth, bearer(&format!("{msg}.AAAA"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_store_failure_fails_closed() {
    struct Down;
    impl RevocationStore for Down {
        async fn revoke(&self, _: Revocable<'_>, _: u64) -> Result<(), tower_auth::BoxError> {
            Err("down".into())
        }
        async fn is_revoked(&self, _: Revocable<'_>) -> Result<bool, tower_auth::BoxError> {
            Err("down".into())
        }
        async fn advance(&self, _: &str, _: u64, _: u64) -> Result<bool, tower_auth::BoxError> {
            Err("down".into())
        }
    }
    let auth = hs256().revocation(Down);
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "u", "exp": now() + 60, "jti": "j"}),
    );
    let r = call(auth, bearer(&token)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let issuer = TokenIssuer::hs256(SECRET).unwrap().revocation_store(Down);
    let pair = issuer.issue("u", &()).unwrap();
    assert_eq!(
        issuer
            .redeem(&pair.refresh_token)
            .await
            .unwrap_err()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(issuer.logout(Some(&pair.access_token), None).await.is_err());
}

#[tokio::test]
async fn jwks_file_with_kids() {
    let rsa = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &encoding_key(Algorithm::RS256),
        Algorithm::RS256,
    )
    .unwrap();
    let mut rsa = serde_json::to_value(rsa).unwrap();
    rsa["kid"] = json!("rsa-1");
    let ec = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &encoding_key(Algorithm::ES256),
        Algorithm::ES256,
    )
    .unwrap();
    let mut ec = serde_json::to_value(ec).unwrap();
    ec["kid"] = json!("ec-1");
    let dir = std::env::temp_dir().join(format!("tower-auth-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({"keys": [rsa, ec]}).to_string()).unwrap();
    let auth = JwtAuthenticator::<Claims>::new(KeySet::from_jwks_file(&path).unwrap());
    for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&h, &claims(), &encoding_key(alg)).unwrap();
        assert_eq!(
            call(auth.clone(), bearer(&token)).await.status,
            StatusCode::OK,
            "{kid}"
        );
        // The right key under the wrong kid.
        h.kid = Some(if kid == "rsa-1" { "ec-1" } else { "rsa-1" }.into());
        let token = jsonwebtoken::encode(&h, &claims(), &encoding_key(alg)).unwrap();
        assert_eq!(
            call(auth.clone(), bearer(&token)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// RFC 7515 Appendix A: the example JWTs (their `exp` is in 2011, so the
/// verifier's clock is set before it). They have no `sub`; `iss` stands in.
mod rfc7515 {
    use super::*;

    const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

    #[derive(Clone, Debug, Deserialize)]
    struct Example {
        iss: String,
        exp: u64,
        #[serde(rename = "http://example.com/is_root")]
        is_root: bool,
    }

    fn auth(keys: KeySet) -> JwtAuthenticator<Example> {
        JwtAuthenticator::new(keys)
            .subject_claim("iss")
            .clock(|| 1_300_819_000)
    }

    fn accepted(auth: &JwtAuthenticator<Example>, token: &str) {
        let a = auth.verify(token).unwrap();
        assert_eq!(a.identity.subject(), "joe");
        assert_eq!(a.principal.iss, "joe");
        assert_eq!(a.principal.exp, 1_300_819_380);
        assert!(a.principal.is_root);
    }

    #[test]
    fn a1_hs256() {
        let keys = KeySet::from_jwks_json_allowing_symmetric(
            r#"{"keys":[{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#,
        )
        .unwrap();
        let token = format!("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        accepted(&auth(keys.clone()), &token);
        // With the real clock the 2011 token is expired.
        let now = JwtAuthenticator::<Example>::new(keys).subject_claim("iss");
        assert_eq!(now.verify(&token).unwrap_err().message(), "token expired");
    }

    #[test]
    fn a2_rs256() {
        let keys = KeySet::from_jwks_json(&json!({"keys": [{"kty": "RSA", "e": "AQAB",
            "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}]}).to_string()).unwrap();
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw");
        // A JWK without "alg" accepts the RSA family.
        accepted(&auth(keys.clone()), &token);
        // Not when only ES256 is allowed.
        assert_eq!(
            auth(keys)
                .algorithms([Algorithm::ES256])
                .verify(&token)
                .unwrap_err()
                .message(),
            "token algorithm not accepted"
        );
    }

    #[test]
    fn a3_es256() {
        let keys = KeySet::from_jwks_json(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#).unwrap();
        let token = format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q");
        accepted(&auth(keys), &token);
    }

    #[test]
    fn a5_unsecured_is_refused() {
        let keys = KeySet::single(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap());
        let token = format!("eyJhbGciOiJub25lIn0.{PAYLOAD}.");
        assert!(auth(keys).verify(&token).is_err());
    }
}

/// RFC 7520 §4: JWS examples over a non-JSON payload, verified at the JWS
/// level (`KeySet::verify_jws`).
mod rfc7520 {
    use super::*;

    const PAYLOAD: &str = "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
    const TEXT: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. You step onto the road, and if you don't keep your feet, there\u{2019}s no knowing where you might be swept off to.";

    fn rsa() -> KeySet {
        KeySet::from_jwks_json(&json!({"keys": [{"kty": "RSA", "kid": "bilbo.baggins@hobbiton.example", "use": "sig", "e": "AQAB",
            "n": "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw"}]}).to_string()).unwrap()
    }

    fn check(keys: &KeySet, token: &str, alg: Algorithm) {
        let v = keys.verify_jws(token, &[alg]).unwrap();
        assert_eq!(v.alg, alg);
        assert_eq!(String::from_utf8(v.payload).unwrap(), TEXT);
    }

    #[test]
    fn s4_1_rs256() {
        let token = format!("eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.{PAYLOAD}.MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg");
        check(&rsa(), &token, Algorithm::RS256);
    }

    #[test]
    fn s4_2_ps384() {
        let token = format!("eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.{PAYLOAD}.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw");
        check(&rsa(), &token, Algorithm::PS384);
        // Not when only RS256 is allowed.
        assert!(rsa().verify_jws(&token, &[Algorithm::RS256]).is_err());
    }

    #[test]
    fn s4_4_hs256() {
        let keys = KeySet::from_jwks_json_allowing_symmetric(r#"{"keys":[{"kty":"oct","kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037","use":"sig","alg":"HS256","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}]}"#).unwrap();
        let token = format!("eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.{PAYLOAD}.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0");
        check(&keys, &token, Algorithm::HS256);
    }
}

/// Regressions found in review.
mod review {
    use super::*;

    #[tokio::test]
    async fn a_configured_copy_does_not_share_the_cache() {
        let base = hs256().cache(100, Duration::from_secs(60));
        let user_api = base.clone().audiences(["user-api"]);
        let admin_api = base.clone().audiences(["admin-api"]);
        let token = sign(
            Algorithm::HS256,
            &json!({"sub": "u", "exp": now() + 60, "aud": "user-api"}),
        );
        assert_eq!(
            call(user_api.clone(), bearer(&token)).await.status,
            StatusCode::OK
        );
        assert_eq!(call(user_api, bearer(&token)).await.status, StatusCode::OK);
        let r = call(admin_api, bearer(&token)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "a cache hit must not skip aud"
        );
        assert_eq!(r.body["message"], "token audience not accepted");

        let refresh_reader = base.clone().token_type("refresh", true);
        let refresh = sign(
            Algorithm::HS256,
            &json!({"sub": "u", "exp": now() + 60, "typ": "refresh"}),
        );
        assert_eq!(
            call(refresh_reader, bearer(&refresh)).await.status,
            StatusCode::OK
        );
        assert_eq!(
            call(base, bearer(&refresh)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn logout_with_an_expired_access_token_still_ends_the_session() {
        let (time, clock) = fake_clock(now());
        let issuer = TokenIssuer::hs256(SECRET)
            .unwrap()
            .revocation_store(MemoryRevocationStore::new().with_clock(clock.clone()))
            .clock(clock);
        let pair = issuer.issue("u1", &()).unwrap();
        time.fetch_add(3600, Ordering::SeqCst); // the access token expired
        issuer.logout(Some(&pair.access_token), None).await.unwrap();
        assert_eq!(
            issuer
                .redeem(&pair.refresh_token)
                .await
                .unwrap_err()
                .message(),
            "token revoked"
        );
        // Forged tokens are still refused.
        let forged = format!("{}x", pair.access_token);
        assert!(issuer.logout(Some(&forged), None).await.is_err());
    }

    #[tokio::test]
    async fn a_revoked_family_stays_revoked_while_its_tokens_are_accepted() {
        let (time, clock) = fake_clock(now());
        let store = MemoryRevocationStore::new().with_clock(clock.clone());
        let issuer = TokenIssuer::hs256(SECRET)
            .unwrap()
            .revocation_store(store)
            .clock(clock);
        let stolen = issuer.issue("victim", &()).unwrap();
        let grant = issuer.redeem(&stolen.refresh_token).await.unwrap();
        time.fetch_add(1, Ordering::SeqCst);
        let attacker = issuer.issue_rotated(&grant, &()).unwrap();
        time.fetch_add(1, Ordering::SeqCst);
        // The victim replays the old token: reuse, the family is revoked.
        assert!(issuer.redeem(&stolen.refresh_token).await.is_err());
        // Just before the attacker's refresh token expires for good (30
        // days + leeway), the family is still revoked.
        time.fetch_add(30 * 24 * 3600 + 25, Ordering::SeqCst);
        assert!(issuer.redeem(&attacker.refresh_token).await.is_err());
    }

    #[tokio::test]
    async fn refreshes_do_not_fill_the_revocation_store() {
        let store = MemoryRevocationStore::with_capacity(10);
        let issuer = TokenIssuer::hs256(SECRET)
            .unwrap()
            .revocation_store(store.clone());
        let mut pair = issuer.issue("mallory", &()).unwrap();
        for _ in 0..200 {
            let grant = issuer.redeem(&pair.refresh_token).await.unwrap();
            pair = issuer.issue_rotated(&grant, &()).unwrap();
        }
        assert_eq!(store.len(), 1, "one entry per family");
        let victim = issuer.issue("victim", &()).unwrap();
        assert!(issuer.redeem(&victim.refresh_token).await.is_ok());
    }

    #[tokio::test]
    async fn a_huge_max_len_does_not_overflow() {
        let auth = hs256().max_len(usize::MAX);
        assert_eq!(
            call(auth, bearer(&sign(Algorithm::HS256, &claims())))
                .await
                .status,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_unrelated_odd_cookie_is_not_our_business() {
        let svc_auth = hs256().cookie("access_token");
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::optional(svc_auth))
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        let mut req = Request::new(());
        req.headers_mut().insert(
            header::COOKIE,
            http::HeaderValue::from_bytes("pref=caf\u{e9}; x=\t1".as_bytes()).unwrap(),
        );
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );
        // Our own cookie with bad bytes is no token either (it may have been
        // set by a sibling site): the optional layer lets the request
        // through anonymously instead of answering 400.
        let mut req = Request::new(());
        req.headers_mut().insert(
            header::COOKIE,
            http::HeaderValue::from_bytes("access_token=caf\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn header_types_enforce_explicit_typing() {
    let claims = claims().to_string();
    let at = |typ: &str| raw_hs256(&format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#), &claims);
    let typed = || hs256().header_types(["at+jwt"]);

    for accepted in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let r = call(typed(), bearer(&at(accepted))).await;
        assert_eq!(r.status, StatusCode::OK, "{accepted}: {}", r.body);
    }
    for refused in ["JWT", "jwt", "refresh+jwt", "application/jwt", ""] {
        expect_refused(
            typed(),
            &at(refused),
            StatusCode::UNAUTHORIZED,
            "token type not accepted",
        )
        .await;
    }
    let untyped = raw_hs256(r#"{"alg":"HS256"}"#, &claims);
    expect_refused(
        typed(),
        &untyped,
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
    let not_a_string = raw_hs256(r#"{"alg":"HS256","typ":7}"#, &claims);
    expect_refused(
        typed(),
        &not_a_string,
        StatusCode::UNAUTHORIZED,
        "malformed token",
    )
    .await;

    // Off by default: any header type passes.
    for typ in ["JWT", "at+jwt", "whatever"] {
        assert_eq!(call(hs256(), bearer(&at(typ))).await.status, StatusCode::OK);
    }
    assert_eq!(call(hs256(), bearer(&untyped)).await.status, StatusCode::OK);
}

/// Like [`call`], for any authenticator of [`Claims`] (combinations).
async fn call_with<A>(auth: A, req: Request<()>) -> Reply
where
    A: Authenticator<Principal = Claims>,
{
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth))
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<Identity>().unwrap();
            let body = json!({"subject": id.subject(), "scheme": id.scheme().to_string()});
            Ok::<_, Infallible>(Response::new(body.to_string()))
        });
    Reply::read(svc.oneshot(req).await.unwrap()).await
}

/// RFC 7515 §4: the JOSE header is a JSON object. Validly signed tokens
/// whose header is an array (read by position by a derived deserializer)
/// are malformed; so is a claims set that is an array.
#[tokio::test]
async fn jose_header_and_claims_must_be_json_objects() {
    let payload = claims().to_string();
    for header in [
        r#"["HS256"]"#,
        r#"["HS256","kid","JWT"]"#,
        r#"["HS256",null,null,false]"#,
    ] {
        let token = raw_hs256(header, &payload);
        expect_refused(hs256(), &token, StatusCode::UNAUTHORIZED, "malformed token").await;
    }
    // The same claims under an object header pass.
    let token = raw_hs256(r#"{"alg":"HS256"}"#, &payload);
    assert_eq!(call(hs256(), bearer(&token)).await.status, StatusCode::OK);
    // A claims array, validly signed.
    let exp = now() + 600;
    let token = raw_hs256(
        r#"{"alg":"HS256"}"#,
        &format!(r#"["user-1","Alice",{exp}]"#),
    );
    expect_refused(
        hs256(),
        &token,
        StatusCode::UNAUTHORIZED,
        "token has an invalid claim",
    )
    .await;
    // Through `KeySet::verify_jws` too.
    let token = raw_hs256(r#"["HS256"]"#, "{}");
    assert_eq!(
        hs256()
            .keys()
            .verify_jws(&token, &[Algorithm::HS256])
            .unwrap_err(),
        JwtError::Malformed
    );
}

/// `authenticate` only builds the future: the signature and claims are
/// checked when it is polled, so that `AuthService::call` (run on
/// `tower::buffer`'s single worker when a `Buffer` wraps the layer) does no
/// crypto.
#[tokio::test]
async fn verification_runs_when_the_future_is_polled() {
    let checks = Arc::new(AtomicU64::new(0));
    let counter = checks.clone();
    let auth = hs256().check(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let token = sign(Algorithm::HS256, &claims());
    let (parts, ()) = bearer(&token).into_parts();
    let credentials = auth.extract(&parts).unwrap().unwrap();
    let future = auth.authenticate(credentials);
    assert_eq!(checks.load(Ordering::SeqCst), 0, "verified in authenticate");
    let authenticated = future.await.unwrap();
    assert_eq!(authenticated.identity.subject(), "user-1");
    assert_eq!(checks.load(Ordering::SeqCst), 1);

    // A forged token: building the future succeeds, polling refuses it.
    let (msg, _) = token.rsplit_once('.').unwrap();
    let (parts, ()) = bearer(&format!("{msg}.AAAA")).into_parts();
    let future = auth.authenticate(auth.extract(&parts).unwrap().unwrap());
    let err = future.await.unwrap_err();
    assert_eq!(err.message(), "invalid token signature");
    assert_eq!(checks.load(Ordering::SeqCst), 1);

    // With the cache, the lookup is deferred as well.
    let cached = auth.clone().cache(10, Duration::from_secs(60));
    let (parts, ()) = bearer(&token).into_parts();
    let first = cached.authenticate(cached.extract(&parts).unwrap().unwrap());
    let second = cached.authenticate(cached.extract(&parts).unwrap().unwrap());
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(checks.load(Ordering::SeqCst), 2, "the second was a hit");
}

/// A JWT cookie that is repeated, mangled or oversized (planted by a sibling
/// subdomain) is no credential: `jwt.or(other)` falls through and a request
/// without other credentials is a plain `401`, not a `400`. A well-formed
/// token with a bad signature is still refused.
#[tokio::test]
async fn bad_jwt_cookies_are_absent_and_fall_through() {
    let token = sign(Algorithm::HS256, &claims());
    let other_token = sign(
        Algorithm::HS256,
        &json!({"sub": "user-2", "exp": now() + 600}),
    );
    let jwt_cookie = || hs256().cookie("access_token").without_header();
    let combined = || jwt_cookie().or(hs256());
    let with = |cookie: &str| {
        let mut req = bearer(&other_token);
        req.headers_mut()
            .insert(header::COOKIE, cookie.parse().unwrap());
        req
    };
    let long = "A".repeat(9000);
    let (msg, _) = token.rsplit_once('.').unwrap();
    let bad_signature = format!("{msg}.AAAA");
    for planted in [
        format!("access_token={token}; access_token={token}"),
        format!("access_token={token}; theme=dark; access_token=other"),
        "access_token=garbage".to_owned(),
        "access_token=a.b.c".to_owned(),
        "access_token=\"x y\"".to_owned(),
        format!("access_token={long}"),
        format!(
            "access_token={}.e30.c2ln",
            URL_SAFE_NO_PAD.encode("[\"HS256\"]")
        ),
    ] {
        let r = call_with(combined(), with(&planted)).await;
        assert_eq!(r.status, StatusCode::OK, "{planted:.60}: {}", r.body);
        assert_eq!(r.body["subject"], "user-2", "fell through to the header");
        // Alone, the bad cookie is no credential: 401 with a challenge.
        let cookie_only = Request::get("/")
            .header(header::COOKIE, &planted)
            .body(())
            .unwrap();
        let r = call_with(jwt_cookie(), cookie_only).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{planted:.60}");
        assert_eq!(r.body["error"], "unauthorized");
        assert!(r.www.unwrap().starts_with("Bearer"));
    }
    // One good cookie still authenticates, with the cookie scheme.
    let r = call_with(combined(), with(&format!("access_token={token}"))).await;
    assert_eq!(
        (r.status, r.body["subject"].as_str()),
        (StatusCode::OK, Some("user-1"))
    );
    assert_eq!(r.body["scheme"], "Cookie");
    // A well-formed token with a bad signature decides: 401.
    let r = call_with(combined(), with(&format!("access_token={bad_signature}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "invalid token signature");
}

/// Keycloak access tokens say `"typ": "Bearer"` (refresh tokens
/// `"Refresh"`): a plain authenticator accepts the former and refuses the
/// latter; a configured type is enforced.
#[tokio::test]
async fn token_type_is_checked_where_configured() {
    let keycloak = |typ: &str| {
        sign(
            Algorithm::HS256,
            &json!({"sub": "u", "exp": now() + 60, "typ": typ, "azp": "app"}),
        )
    };
    assert_eq!(
        call(hs256(), bearer(&keycloak("Bearer"))).await.status,
        StatusCode::OK
    );
    for refresh in ["Refresh", "refresh"] {
        expect_refused(
            hs256(),
            &keycloak(refresh),
            StatusCode::UNAUTHORIZED,
            "token type not accepted",
        )
        .await;
    }
    // Configured: only that type.
    expect_refused(
        hs256().token_type("access", false),
        &keycloak("Bearer"),
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
    assert_eq!(
        call(
            hs256().token_type("Bearer", true),
            bearer(&keycloak("Bearer"))
        )
        .await
        .status,
        StatusCode::OK
    );
    // The issuer's authenticator requires its access type: a "Bearer" token
    // signed with the same key, or one of its refresh tokens, is refused.
    let issuer = TokenIssuer::hs256(SECRET).unwrap();
    let auth = issuer.authenticator::<Claims>().realm("api");
    let pair = issuer.issue("u1", &()).unwrap();
    assert_eq!(
        call(auth.clone(), bearer(&pair.access_token)).await.status,
        StatusCode::OK
    );
    for token in [keycloak("Bearer"), pair.refresh_token.clone()] {
        expect_refused(
            auth.clone(),
            &token,
            StatusCode::UNAUTHORIZED,
            "token type not accepted",
        )
        .await;
    }
    // And a plain authenticator on the issuer's key refuses its refresh
    // tokens.
    expect_refused(
        hs256(),
        &pair.refresh_token,
        StatusCode::UNAUTHORIZED,
        "token type not accepted",
    )
    .await;
}

#[tokio::test]
async fn refresh_reuse_interval() {
    let (time, clock) = fake_clock(now());
    let t0 = time.load(Ordering::SeqCst);
    let store = MemoryRevocationStore::new().with_clock(clock.clone());
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .revocation_store(store)
        .clock(clock)
        .refresh_reuse_interval(Duration::from_secs(10));
    let auth = issuer.authenticator::<Claims>();
    let first = issuer.issue("u1", &()).unwrap();

    // Two tabs (or a retry) redeem the same refresh token within the
    // interval: both get a new pair.
    let a = issuer.redeem(&first.refresh_token).await.unwrap();
    time.store(t0 + 9, Ordering::SeqCst);
    let b = issuer.redeem(&first.refresh_token).await.unwrap();
    assert_eq!(a.family(), b.family());
    let pair_a = issuer.issue_rotated(&a, &()).unwrap();
    let pair_b = issuer.issue_rotated(&b, &()).unwrap();
    for token in [&pair_a.access_token, &pair_b.access_token] {
        assert_eq!(
            call(auth.clone(), bearer(token)).await.status,
            StatusCode::OK
        );
    }
    // The interval runs from the first redemption: at +10 s it is a reuse,
    // and the family is revoked.
    time.store(t0 + 10, Ordering::SeqCst);
    let err = issuer.redeem(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.message(), "refresh token reuse detected");
    let r = call(auth.clone(), bearer(&pair_a.access_token)).await;
    assert_eq!(r.body["message"], "token revoked");
    assert!(issuer.redeem(&pair_b.refresh_token).await.is_err());

    // An older generation is a reuse even within the interval.
    let first = issuer.issue("u1", &()).unwrap();
    let grant = issuer.redeem(&first.refresh_token).await.unwrap();
    let second = issuer.issue_rotated(&grant, &()).unwrap();
    issuer.redeem(&second.refresh_token).await.unwrap();
    let err = issuer.redeem(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.message(), "refresh token reuse detected");

    // Strict by default: a second redemption at once is a reuse.
    let strict = TokenIssuer::hs256(SECRET).unwrap();
    let pair = strict.issue("u1", &()).unwrap();
    strict.redeem(&pair.refresh_token).await.unwrap();
    let err = strict.redeem(&pair.refresh_token).await.unwrap_err();
    assert_eq!(err.message(), "refresh token reuse detected");
}

#[test]
fn configuration_mistakes_are_reported_at_startup() {
    let hmac = || JwtKey::hmac(Algorithm::HS256, SECRET).unwrap();
    // An empty key set.
    let empty = JwtAuthenticator::<Claims>::new(KeySet::new());
    assert_eq!(empty.validate().unwrap_err(), ConfigError::EmptyKeySet);
    assert!(empty.build().is_err());
    // An allowed algorithm no key verifies.
    let err = hs256()
        .algorithms([Algorithm::HS256, Algorithm::RS256])
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::AlgorithmWithoutKey(Algorithm::RS256));
    assert!(err.to_string().contains("RS256"), "{err}");
    assert_eq!(
        hs256()
            .algorithms([Algorithm::HS512])
            .validate()
            .unwrap_err(),
        ConfigError::AlgorithmWithoutKey(Algorithm::HS512)
    );
    assert_eq!(
        hs256().algorithms([]).validate().unwrap_err(),
        ConfigError::NoAlgorithms
    );
    // A key without a kid among several is never selected.
    let set = KeySet::from_keys([hmac().with_kid("a"), hmac()]).unwrap();
    assert_eq!(
        JwtAuthenticator::<Claims>::new(set).validate().unwrap_err(),
        ConfigError::UnreachableKey(2)
    );
    // Good configurations pass.
    assert!(hs256().build().is_ok());
    let rsa = JwtAuthenticator::<Claims>::new(
        KeySet::from_keys([
            verification_key(Algorithm::RS256).with_kid("r"),
            verification_key(Algorithm::ES256).with_kid("e"),
        ])
        .unwrap(),
    );
    assert!(rsa.validate().is_ok());

    // An issuer whose key cannot sign its algorithm: a P-384 key for ES256.
    let issuer = TokenIssuer::new(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
        KeySet::single(verification_key(Algorithm::ES256)),
    )
    .unwrap();
    assert!(matches!(
        issuer.validate().unwrap_err(),
        ConfigError::CannotSign {
            alg: Algorithm::ES256,
            ..
        }
    ));
    // An issuer whose key set is empty, holds another public key, or lacks
    // its kid.
    let es = |keys: KeySet| {
        TokenIssuer::new(Algorithm::ES256, encoding_key(Algorithm::ES256), keys).unwrap()
    };
    assert_eq!(
        es(KeySet::new()).validate().unwrap_err(),
        ConfigError::EmptyKeySet
    );
    let other_key = KeySet::single(verification_key(Algorithm::ES384));
    assert_eq!(
        es(other_key).build().unwrap_err(),
        ConfigError::OwnTokensRefused(JwtError::UnknownKey)
    );
    // RFC 7517's example P-256 key, not ours.
    let wrong_public = KeySet::from_jwks_json(
        r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
    )
    .unwrap();
    assert_eq!(
        es(wrong_public).validate().unwrap_err(),
        ConfigError::OwnTokensRefused(JwtError::Signature)
    );
    let kids = KeySet::from_keys([
        verification_key(Algorithm::ES256).with_kid("a"),
        verification_key(Algorithm::ES256).with_kid("b"),
    ])
    .unwrap();
    assert_eq!(
        es(kids.clone()).kid("c").validate().unwrap_err(),
        ConfigError::OwnTokensRefused(JwtError::UnknownKey)
    );
    assert!(es(kids).kid("b").build().is_ok());
    assert!(TokenIssuer::hs256(SECRET).unwrap().build().is_ok());
}

/// A revocation backend that never answers.
struct Hung;

impl RevocationStore for Hung {
    async fn revoke(&self, _: Revocable<'_>, _: u64) -> Result<(), tower_auth::BoxError> {
        std::future::pending().await
    }
    async fn is_revoked(&self, _: Revocable<'_>) -> Result<bool, tower_auth::BoxError> {
        std::future::pending().await
    }
    async fn advance(&self, _: &str, _: u64, _: u64) -> Result<bool, tower_auth::BoxError> {
        std::future::pending().await
    }
}

fn assert_unavailable(err: &AuthError) {
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
}

/// A store whose calls never resolve cannot hold a request: every await on
/// it ends at the backend deadline with `503`. The clock is paused, so the
/// five seconds pass at once.
#[tokio::test(start_paused = true)]
async fn a_hung_revocation_store_times_out_with_503() {
    let issuer = TokenIssuer::hs256(SECRET).unwrap().revocation_store(Hung);
    let auth = issuer.authenticator::<Claims>().realm("api");
    let pair = issuer.issue("u", &()).unwrap();

    let started = tokio::time::Instant::now();
    let r = call(auth.clone(), bearer(&pair.access_token)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["error"], "unavailable");
    assert!(!r.body.to_string().contains(&pair.access_token));
    assert_eq!(started.elapsed(), tower_auth::DEFAULT_BACKEND_TIMEOUT);

    assert_unavailable(&issuer.redeem(&pair.refresh_token).await.unwrap_err());
    assert_unavailable(
        &issuer
            .logout(Some(&pair.access_token), None)
            .await
            .unwrap_err(),
    );
    assert_unavailable(
        &issuer
            .logout(None, Some(&pair.refresh_token))
            .await
            .unwrap_err(),
    );

    // With the cache on, a hit is checked against the store too.
    let cached = auth.clone().cache(16, Duration::from_secs(60));
    for _ in 0..2 {
        let r = call(cached.clone(), bearer(&pair.access_token)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    // A configured deadline.
    let quick = issuer
        .clone()
        .backend_timeout(Some(Duration::from_millis(250)));
    let started = tokio::time::Instant::now();
    assert_unavailable(&quick.redeem(&pair.refresh_token).await.unwrap_err());
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    let started = tokio::time::Instant::now();
    let r = call(quick.authenticator::<Claims>(), bearer(&pair.access_token)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_millis(250));

    // `None` disables the deadline: the call waits for the store.
    let patient = issuer.clone().backend_timeout(None);
    let waited = tokio::time::timeout(
        Duration::from_secs(3600),
        patient.redeem(&pair.refresh_token),
    )
    .await;
    assert!(waited.is_err(), "no deadline: still waiting after an hour");
    // (The authenticator alone: an `AuthLayer` has a deadline of its own.)
    let (parts, ()) = bearer(&pair.access_token).into_parts();
    let patient = auth.backend_timeout(None);
    let waited = tokio::time::timeout(
        Duration::from_secs(3600),
        patient.authenticate_request(&parts),
    )
    .await;
    assert!(waited.is_err());
}

/// One subject signing in and refreshing in a loop cannot exhaust the
/// default store: its oldest sign-ins are closed, and every call of another
/// subject still succeeds. Before the per-subject cap, the store filled
/// with the flood's refresh records and answered everyone `503`.
#[tokio::test]
async fn one_subject_flooding_sign_ins_cannot_deny_service_to_others() {
    const CAP: usize = 512;
    let store = MemoryRevocationStore::with_capacity(CAP);
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .revocation_store(store.clone());
    let auth = issuer.authenticator::<Claims>();
    let started = std::time::Instant::now();
    let mut first_flood = None;
    for i in 0..100_000u32 {
        let pair = issuer.issue("mallory", &()).unwrap();
        let grant = issuer.redeem(&pair.refresh_token).await.unwrap();
        let rotated = issuer.issue_rotated(&grant, &()).unwrap();
        first_flood.get_or_insert(rotated.refresh_token);
        if i % 5_000 == 0 {
            // Alice: sign in, use, refresh, use, log out.
            let pair = issuer.issue("alice", &()).unwrap();
            let r = call(auth.clone(), bearer(&pair.access_token)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let grant = issuer.redeem(&pair.refresh_token).await.unwrap();
            let next = issuer.issue_rotated(&grant, &()).unwrap();
            let r = call(auth.clone(), bearer(&next.access_token)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            issuer
                .logout(Some(&next.access_token), Some(&next.refresh_token))
                .await
                .unwrap();
            let err = issuer.redeem(&next.refresh_token).await.unwrap_err();
            assert_eq!(err.message(), "token revoked");
            let r = call(auth.clone(), bearer(&next.access_token)).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        assert!(store.families_len() <= CAP);
        assert!(store.denied_len() <= CAP);
    }
    assert!(started.elapsed() < Duration::from_secs(300));
    // The flood's first sign-in was evicted: its refresh token is refused
    // as revoked (fail closed), without a reuse alarm.
    let err = issuer.redeem(&first_flood.unwrap()).await.unwrap_err();
    assert_eq!(
        (err.status(), err.message()),
        (StatusCode::UNAUTHORIZED, "token revoked")
    );
    // Its latest sign-ins still work.
    let pair = issuer.issue("mallory", &()).unwrap();
    issuer.redeem(&pair.refresh_token).await.unwrap();
}

/// A refresh token of a sign-in the store does not hold open (issued
/// before a restart, with a fresh store) is refused.
#[tokio::test]
async fn refresh_tokens_of_unknown_sign_ins_are_refused() {
    let before = TokenIssuer::hs256(SECRET).unwrap();
    let pair = before.issue("u", &()).unwrap();
    let after = before
        .clone()
        .revocation_store(MemoryRevocationStore::new());
    let err = after.redeem(&pair.refresh_token).await.unwrap_err();
    assert_eq!(
        (err.status(), err.message()),
        (StatusCode::UNAUTHORIZED, "token revoked")
    );
    before.redeem(&pair.refresh_token).await.unwrap();
}

/// One subject signing in and logging out in a loop cannot fill the
/// deny-list: with a store that tracks sign-ins, a closed family's entry
/// only outlives its access tokens. Before, each entry was kept for the
/// refresh lifetime (30 days) and the 512-entry store below answered every
/// logout `503` after 256 loops.
#[tokio::test]
async fn a_logout_flood_by_one_subject_does_not_fill_the_deny_list() {
    const CAP: usize = 512;
    let (time, clock) = fake_clock(now());
    let store = MemoryRevocationStore::with_capacity(CAP).with_clock(clock.clone());
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .revocation_store(store.clone())
        .clock(clock);
    let auth = issuer.authenticator::<Claims>();
    let mut first = None;
    for _ in 0..2_000 {
        let pair = issuer.issue("mallory", &()).unwrap();
        issuer
            .logout(Some(&pair.access_token), Some(&pair.refresh_token))
            .await
            .unwrap();
        first.get_or_insert(pair);
        assert!(store.denied_len() <= CAP);
        time.fetch_add(10, Ordering::SeqCst);
    }
    // Another subject's sign-in, refresh and logout still work.
    let pair = issuer.issue("alice", &()).unwrap();
    let grant = issuer.redeem(&pair.refresh_token).await.unwrap();
    let next = issuer.issue_rotated(&grant, &()).unwrap();
    issuer
        .logout(Some(&next.access_token), Some(&next.refresh_token))
        .await
        .unwrap();
    let r = call(auth, bearer(&next.access_token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Long after its deny-list entry expired, the first logged-out sign-in
    // stays closed.
    let err = issuer
        .redeem(&first.unwrap().refresh_token)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.message()),
        (StatusCode::UNAUTHORIZED, "token revoked")
    );
}

/// RFC 9864: `Ed25519`, the fully-specified name of EdDSA over Ed25519, is
/// accepted in the header (and in JWKs, see `KeySet::from_jwks_json`)
/// alongside `EdDSA`; names stay case-sensitive.
#[tokio::test]
async fn ed25519_fully_specified_algorithm_name() {
    let raw_ed = |alg: &str| {
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let sig = jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &encoding_key(Algorithm::EdDSA),
            Algorithm::EdDSA,
        )
        .unwrap();
        format!("{msg}.{sig}")
    };
    let auth = || {
        JwtAuthenticator::<Claims>::new(KeySet::single(verification_key(Algorithm::EdDSA)))
            .realm("api")
    };
    for alg in ["EdDSA", "Ed25519"] {
        let r = call(auth(), bearer(&raw_ed(alg))).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
        assert_eq!(r.body["subject"], "user-1");
    }
    for alg in ["ed25519", "ED25519", "Ed448", "eddsa"] {
        expect_refused(
            auth(),
            &raw_ed(alg),
            StatusCode::UNAUTHORIZED,
            "token algorithm not accepted",
        )
        .await;
    }
    // `Ed25519` never selects a key of another family.
    let forged = raw_hs256(r#"{"alg":"Ed25519"}"#, &claims().to_string());
    let r = call(hs256(), bearer(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An `Ed25519` JWK from a JWK Set verifies both names.
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &encoding_key(Algorithm::EdDSA),
        Algorithm::EdDSA,
    )
    .unwrap();
    let mut jwk_json = serde_json::to_value(&jwk).unwrap();
    jwk_json["alg"] = json!("Ed25519");
    let set = KeySet::from_jwks_json(&json!({"keys": [jwk_json]}).to_string()).unwrap();
    let auth = JwtAuthenticator::<Claims>::new(set).realm("api");
    for alg in ["EdDSA", "Ed25519"] {
        let r = call(auth.clone(), bearer(&raw_ed(alg))).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
    }
}

/// A JWK Set meant for public keys refuses symmetric keys; the explicit
/// opt-in loads them, and they verify.
#[tokio::test]
async fn public_jwks_refuses_oct_keys_unless_allowed() {
    let k = URL_SAFE_NO_PAD.encode(SECRET);
    let jwks = json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]}).to_string();
    let err = KeySet::from_jwks_json(&jwks).unwrap_err();
    assert!(matches!(err, tower_auth::jwt::KeyError::SymmetricKey(Some(ref kid)) if kid == "k1"));
    assert!(!err.to_string().contains(&k), "the secret is not echoed");
    let set = KeySet::from_jwks_json_allowing_symmetric(&jwks).unwrap();
    let auth = JwtAuthenticator::<Claims>::new(set).realm("api");
    let token = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(),
        &encoding_key(Algorithm::HS256),
    )
    .unwrap();
    assert_eq!(call(auth, bearer(&token)).await.status, StatusCode::OK);
}
