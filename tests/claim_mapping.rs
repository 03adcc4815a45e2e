//! Identity-provider tokens through `AuthLayer` with static keys: claim
//! mapping presets on real-shaped tokens (Keycloak, Auth0, Entra ID, Okta,
//! Cognito), several issuers in one authenticator (key-swap attacks), the
//! RFC 9068 access-token profile and RFC 9728 protected-resource metadata.

use std::convert::Infallible;

use http::{header, Method, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_auth::jwt::{
    ClaimMapping, ConfigError, Issuers, JwtAuthenticator, JwtKey, KeySet, ResourceMetadata,
};
use tower_auth::{AuthLayer, Identity};

const SECRET_A: &[u8] = b"issuer A secret of at least 32 bytes....";
const SECRET_B: &[u8] = b"issuer B secret of at least 32 bytes....";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keys(secret: &[u8], kid: &str) -> KeySet {
    KeySet::single(
        JwtKey::hmac(Algorithm::HS256, secret)
            .unwrap()
            .with_kid(kid),
    )
}

fn sign_typ(secret: &[u8], kid: &str, typ: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.into());
    h.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn sign(secret: &[u8], kid: &str, claims: &Value) -> String {
    sign_typ(secret, kid, Some("JWT"), claims)
}

/// The status, `WWW-Authenticate`, JSON body and identity (subject, roles,
/// permissions, scopes) of a request with `token`.
async fn call(auth: &JwtAuthenticator<Value>, token: &str) -> (StatusCode, String, Value) {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth.clone()))
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<Identity>().unwrap();
            let body = json!({
                "sub": id.subject(),
                "roles": id.roles().collect::<Vec<_>>(),
                "permissions": id.permissions().collect::<Vec<_>>(),
                "scopes": id.scopes().collect::<Vec<_>>(),
            });
            Ok::<_, Infallible>(Response::new(body.to_string()))
        });
    let req = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, challenge, serde_json::from_slice(&body).unwrap())
}

/// The identity's roles, permissions and scopes, each sorted (the
/// `Identity` keeps sets).
fn identity_of(body: &Value) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let list = |k: &str| {
        let mut v: Vec<&str> = body[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    (list("roles"), list("permissions"), list("scopes"))
}

// ---- claim mapping presets on the providers' documented token shapes ----

#[tokio::test]
async fn keycloak_realm_and_client_roles() {
    let iss = "https://kc.example.com/realms/shop";
    let claims = json!({
        "exp": now() + 300, "iat": now(), "jti": "6f4f4b0e-1f5a-4b7b-9d5c-0c9a1a1f1a11",
        "iss": iss, "aud": ["orders-api", "account"], "sub": "f1b0c9a2-5d1e-4c59-9bfb-3e6f0d1d7c2a",
        "typ": "Bearer", "azp": "web-shop", "session_state": "1c2d", "acr": "1",
        "allowed-origins": ["https://shop.example.com"],
        "realm_access": {"roles": ["offline_access", "uma_authorization", "shop-admin"]},
        "resource_access": {
            "orders-api": {"roles": ["orders:write"]},
            "account": {"roles": ["manage-account", "view-profile"]}
        },
        "scope": "openid email profile", "sid": "1c2d", "email_verified": true,
        "preferred_username": "alice"
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "kc"))
        .issuers([iss])
        .audiences(["orders-api"])
        .claim_mapping(ClaimMapping::keycloak("orders-api"))
        .build()
        .unwrap();
    let (status, _, body) = call(&auth, &sign(SECRET_A, "kc", &claims)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (roles, permissions, scopes) = identity_of(&body);
    assert_eq!(
        roles,
        [
            "offline_access",
            "orders:write",
            "shop-admin",
            "uma_authorization"
        ]
    );
    assert!(permissions.is_empty());
    assert_eq!(scopes, ["email", "openid", "profile"]);
    // Another client's roles are not this API's.
    assert!(!roles.contains(&"manage-account"));
}

#[tokio::test]
async fn keycloak_token_without_client_roles_gets_realm_roles_only() {
    let claims = json!({
        "exp": now() + 300, "sub": "u1", "iss": "https://kc", "aud": "orders-api",
        "realm_access": {"roles": ["user"]}, "resource_access": {"account": {"roles": ["x"]}}
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "kc"))
        .audiences(["orders-api"])
        .claim_mapping(ClaimMapping::keycloak("orders-api"));
    let (status, _, body) = call(&auth, &sign(SECRET_A, "kc", &claims)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity_of(&body).0, ["user"]);
}

#[tokio::test]
async fn auth0_permissions_and_namespaced_roles() {
    let claims = json!({
        "iss": "https://shop.eu.auth0.com/", "sub": "auth0|64f1c2",
        "aud": ["https://api.shop.example", "https://shop.eu.auth0.com/userinfo"],
        "iat": now(), "exp": now() + 300, "azp": "Xy12", "gty": "password",
        "scope": "openid profile read:orders",
        "permissions": ["read:orders", "write:orders"],
        "https://shop.example/roles": ["admin", "support"]
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "a0"))
        .audiences(["https://api.shop.example"])
        .claim_mapping(ClaimMapping::auth0("https://shop.example/"));
    let (status, _, body) = call(&auth, &sign(SECRET_A, "a0", &claims)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (roles, permissions, scopes) = identity_of(&body);
    assert_eq!(roles, ["admin", "support"]);
    assert_eq!(permissions, ["read:orders", "write:orders"]);
    assert_eq!(scopes, ["openid", "profile", "read:orders"]);

    // The same claim by an explicit, escaped pointer.
    let auth = JwtAuthenticator::new(keys(SECRET_A, "a0"))
        .audiences(["https://api.shop.example"])
        .claim_mapping(ClaimMapping::new().roles("/https:~1~1shop.example~1roles"))
        .build()
        .unwrap();
    let (_, _, body) = call(&auth, &sign(SECRET_A, "a0", &claims)).await;
    assert_eq!(identity_of(&body).0, ["admin", "support"]);
}

#[tokio::test]
async fn entra_app_roles_and_space_separated_scp() {
    let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let claims = json!({
        "aud": "api://orders", "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "iat": now(), "nbf": now(), "exp": now() + 300, "aio": "E2Zg",
        "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0", "name": "Alice",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474", "preferred_username": "alice@contoso.com",
        "rh": "0.AR", "roles": ["Orders.Admin"], "scp": "Orders.Read Orders.Write",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": tid, "uti": "fqiBqXLP",
        "ver": "2.0"
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "e"))
        .audiences(["api://orders"])
        .claim_mapping(ClaimMapping::entra());
    let (status, _, body) = call(&auth, &sign(SECRET_A, "e", &claims)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (roles, permissions, scopes) = identity_of(&body);
    assert_eq!(roles, ["Orders.Admin"]);
    assert!(permissions.is_empty());
    assert_eq!(scopes, ["Orders.Read", "Orders.Write"]);
}

#[tokio::test]
async fn okta_groups_and_scp_array() {
    let claims = json!({
        "ver": 1, "jti": "AT.0mP4JKAZX1iACIT4vF7p", "iss": "https://dev-1.okta.com/oauth2/default",
        "aud": "api://default", "iat": now(), "exp": now() + 300, "cid": "0oa1b2c3",
        "uid": "00u1a2b3", "scp": ["openid", "orders.read"], "auth_time": now(),
        "sub": "alice@example.com", "groups": ["Everyone", "Admins"]
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "o"))
        .audiences(["api://default"])
        .claim_mapping(ClaimMapping::okta());
    let (status, _, body) = call(&auth, &sign(SECRET_A, "o", &claims)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (roles, _, scopes) = identity_of(&body);
    assert_eq!(roles, ["Admins", "Everyone"]);
    assert_eq!(scopes, ["openid", "orders.read"]);
}

#[tokio::test]
async fn cognito_groups_and_scope() {
    let claims = json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "cognito:groups": ["admin"],
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab12", "version": 2,
        "client_id": "1example23456789", "origin_jti": "x", "event_id": "y",
        "token_use": "access", "scope": "aws.cognito.signin.user.admin orders/read",
        "auth_time": now(), "exp": now() + 300, "iat": now(), "jti": "z", "username": "alice"
    });
    let auth = JwtAuthenticator::new(keys(SECRET_A, "c")).claim_mapping(ClaimMapping::cognito());
    let (status, _, body) = call(&auth, &sign(SECRET_A, "c", &claims)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (roles, _, scopes) = identity_of(&body);
    assert_eq!(roles, ["admin"]);
    assert_eq!(scopes, ["aws.cognito.signin.user.admin", "orders/read"]);
}

#[tokio::test]
async fn mapped_values_of_the_wrong_shape_refuse_the_token() {
    let auth = JwtAuthenticator::new(keys(SECRET_A, "kc"))
        .claim_mapping(ClaimMapping::keycloak("api").split_roles(true));
    let ok = json!({"sub": "u", "exp": now() + 60, "realm_access": {"roles": "a b"}});
    let (status, _, body) = call(&auth, &sign(SECRET_A, "kc", &ok)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity_of(&body).0, ["a", "b"]);
    for bad in [
        json!({"realm_access": "admin"}),
        json!({"realm_access": {"roles": [1]}}),
        json!({"realm_access": {"roles": {"admin": true}}}),
        json!({"resource_access": {"api": ["admin"]}}),
        json!({"scope": null}),
    ] {
        let mut claims = bad.clone();
        claims["sub"] = json!("u");
        claims["exp"] = json!(now() + 60);
        let (status, challenge, body) = call(&auth, &sign(SECRET_A, "kc", &claims)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert_eq!(body["message"], "token has an invalid claim");
    }
}

#[tokio::test]
async fn duplicate_members_on_a_mapped_path_refuse_the_token() {
    let auth =
        JwtAuthenticator::new(keys(SECRET_A, "kc")).claim_mapping(ClaimMapping::keycloak("api"));
    let payload = format!(
        r#"{{"sub":"u","exp":{},"realm_access":{{"roles":["user"],"roles":["admin"]}}}}"#,
        now() + 60
    );
    // Signed by hand: serde_json would merge the duplicates.
    let token = raw_hs256(SECRET_A, r#"{"alg":"HS256","kid":"kc"}"#, &payload);
    let (status, _, body) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "token has an invalid claim");
}

fn raw_hs256(secret: &[u8], header: &str, payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[test]
fn invalid_pointers_are_configuration_errors() {
    let auth = JwtAuthenticator::<Value>::new(keys(SECRET_A, "k"))
        .claim_mapping(ClaimMapping::new().roles("realm_access.roles"));
    assert_eq!(
        auth.build().unwrap_err(),
        ConfigError::ClaimPointer("realm_access.roles".into())
    );
}

// ---- several issuers, static keys ----

fn two_issuers() -> JwtAuthenticator<Value> {
    JwtAuthenticator::from_issuers(
        Issuers::new()
            .keys("https://a.example", keys(SECRET_A, "k1"))
            .keys("https://b.example", keys(SECRET_B, "k1")),
    )
    .build()
    .unwrap()
}

fn claims(iss: &str) -> Value {
    json!({"sub": "alice", "iss": iss, "exp": now() + 300})
}

#[tokio::test]
async fn each_issuer_verifies_with_its_own_keys() {
    let auth = two_issuers();
    for (iss, secret) in [
        ("https://a.example", SECRET_A),
        ("https://b.example", SECRET_B),
    ] {
        let (status, _, body) = call(&auth, &sign(secret, "k1", &claims(iss))).await;
        assert_eq!(status, StatusCode::OK, "{iss}");
        assert_eq!(body["sub"], "alice");
    }
}

#[tokio::test]
async fn a_key_of_issuer_a_never_verifies_a_token_claiming_issuer_b() {
    let auth = two_issuers();
    // Same kid, same algorithm: only the issuer routes to the key.
    let forged = sign(SECRET_A, "k1", &claims("https://b.example"));
    let (status, challenge, body) = call(&auth, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains(r#"error="invalid_token""#));
    assert_eq!(body["message"], "invalid token signature");
}

#[tokio::test]
async fn unknown_missing_or_inexact_issuers_are_refused() {
    let auth = two_issuers();
    for iss in [
        json!("https://evil.example"),
        json!("https://a.example/"),
        json!("HTTPS://A.EXAMPLE"),
        json!(""),
        Value::Null,
    ] {
        let mut c = claims("x");
        match &iss {
            Value::Null => drop(c.as_object_mut().unwrap().remove("iss")),
            v => c["iss"] = v.clone(),
        }
        let (status, challenge, body) = call(&auth, &sign(SECRET_A, "k1", &c)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{iss}");
        assert!(challenge.contains(r#"error="invalid_token""#));
        assert_eq!(body["message"], "token issuer not accepted", "{iss}");
    }
    // A non-string or repeated `iss` is an invalid claim.
    let mut c = claims("x");
    c["iss"] = json!(["https://a.example"]);
    let (status, _, body) = call(&auth, &sign(SECRET_A, "k1", &c)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "token has an invalid claim");
    let payload = format!(
        r#"{{"sub":"a","iss":"https://b.example","iss":"https://a.example","exp":{}}}"#,
        now() + 60
    );
    let token = raw_hs256(SECRET_A, r#"{"alg":"HS256","kid":"k1"}"#, &payload);
    let (status, _, _) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn algorithms_are_per_issuer_and_narrowed_globally() {
    let es = JwtKey::ec_pem(
        Algorithm::ES256,
        include_bytes!("keys/ec256_public.pem").as_slice(),
    )
    .unwrap()
    .with_kid("k1");
    let auth = JwtAuthenticator::<Value>::from_issuers(
        Issuers::new()
            .keys("https://a.example", keys(SECRET_A, "k1"))
            .keys("https://b.example", KeySet::single(es)),
    );
    // B only has an ES256 key: an HS256 token claiming B is refused by
    // algorithm, before any key is looked at.
    let token = sign(SECRET_A, "k1", &claims("https://b.example"));
    let (status, _, body) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "token algorithm not accepted");
    // Narrowed to ES256, issuer A has no algorithm left.
    assert_eq!(
        auth.clone()
            .algorithms([Algorithm::ES256])
            .build()
            .unwrap_err(),
        ConfigError::IssuerWithoutAlgorithms("https://a.example".into())
    );
    let narrowed = auth.algorithms([Algorithm::HS256]);
    let token = sign(SECRET_A, "k1", &claims("https://a.example"));
    assert_eq!(call(&narrowed, &token).await.0, StatusCode::OK);
}

#[test]
fn issuer_sets_are_checked_at_startup() {
    let build = |issuers: Issuers| JwtAuthenticator::<Value>::from_issuers(issuers).build();
    assert_eq!(build(Issuers::new()).unwrap_err(), ConfigError::NoIssuers);
    assert_eq!(
        build(
            Issuers::new()
                .keys("https://a", keys(SECRET_A, "k"))
                .keys("https://a", keys(SECRET_B, "k"))
        )
        .unwrap_err(),
        ConfigError::InvalidIssuer("https://a".into())
    );
    assert_eq!(
        build(Issuers::new().keys("", keys(SECRET_A, "k"))).unwrap_err(),
        ConfigError::InvalidIssuer(String::new())
    );
    assert_eq!(
        build(Issuers::new().keys("https://a", KeySet::new())).unwrap_err(),
        ConfigError::NoAlgorithms
    );
    let mut many = Issuers::new();
    for i in 0..=tower_auth::jwt::MAX_ISSUERS {
        many = many.keys(format!("https://{i}"), keys(SECRET_A, "k"));
    }
    assert_eq!(
        build(many).unwrap_err(),
        ConfigError::TooManyIssuers(tower_auth::jwt::MAX_ISSUERS + 1)
    );
}

#[tokio::test]
async fn each_issuer_reads_its_own_claim_shape() {
    let auth = JwtAuthenticator::<Value>::from_issuers(
        Issuers::new()
            .keys("https://kc.example/realms/staff", keys(SECRET_A, "k1"))
            .claim_mapping(ClaimMapping::keycloak("orders-api"))
            .keys("https://partners.eu.auth0.com/", keys(SECRET_B, "k1"))
            .claim_mapping(ClaimMapping::auth0("https://shop.example"))
            .keys("https://plain.example", keys(SECRET_B, "k2")),
    )
    .build()
    .unwrap();
    let exp = now() + 60;
    // The same claims under each issuer: each reads its own shape only.
    let shape = |iss: &str| {
        json!({
            "sub": "u", "exp": exp, "iss": iss, "scope": "read",
            "realm_access": {"roles": ["staff"]},
            "https://shop.example/roles": ["partner"],
            "permissions": ["orders:read"], "roles": ["plain"]
        })
    };
    let cases = [
        (
            "https://kc.example/realms/staff",
            SECRET_A,
            "k1",
            (vec!["staff"], vec![]),
        ),
        (
            "https://partners.eu.auth0.com/",
            SECRET_B,
            "k1",
            (vec!["partner"], vec!["orders:read"]),
        ),
        (
            "https://plain.example",
            SECRET_B,
            "k2",
            (vec!["plain"], vec!["orders:read"]),
        ),
    ];
    for (iss, secret, kid, (roles, permissions)) in cases {
        let (status, _, body) = call(&auth, &sign(secret, kid, &shape(iss))).await;
        assert_eq!(status, StatusCode::OK, "{iss}");
        let (r, p, s) = identity_of(&body);
        assert_eq!((r, p, s), (roles, permissions, vec!["read"]), "{iss}");
    }
    let bad = JwtAuthenticator::<Value>::from_issuers(
        Issuers::new()
            .keys("https://a", keys(SECRET_A, "k"))
            .claim_mapping(ClaimMapping::new().roles("nope")),
    );
    assert_eq!(
        bad.build().unwrap_err(),
        ConfigError::ClaimPointer("nope".into())
    );
}

// ---- RFC 9068 ----

fn profile_claims() -> Value {
    json!({
        "iss": "https://a.example", "exp": now() + 300, "aud": "orders-api", "sub": "alice",
        "client_id": "web", "iat": now(), "jti": "j1", "scope": "orders:read"
    })
}

fn profile() -> JwtAuthenticator<Value> {
    JwtAuthenticator::new(keys(SECRET_A, "k1"))
        .issuers(["https://a.example"])
        .audiences(["orders-api"])
        .access_token_profile()
        .build()
        .unwrap()
}

#[tokio::test]
async fn access_token_profile_accepts_at_jwt_in_any_spelling() {
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let token = sign_typ(SECRET_A, "k1", Some(typ), &profile_claims());
        let (status, _, body) = call(&profile(), &token).await;
        assert_eq!(status, StatusCode::OK, "{typ}");
        assert_eq!(identity_of(&body).2, ["orders:read"]);
    }
}

#[tokio::test]
async fn access_token_profile_refuses_other_types() {
    for typ in [Some("JWT"), None, Some("at+jwt+x"), Some("text/at+jwt")] {
        let token = sign_typ(SECRET_A, "k1", typ, &profile_claims());
        let (status, challenge, body) = call(&profile(), &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{typ:?}");
        assert!(challenge.contains(r#"error="invalid_token""#));
        assert_eq!(
            body["message"],
            "token is not a JWT access token (header typ must be at+jwt)"
        );
    }
}

#[tokio::test]
async fn access_token_profile_requires_its_claims() {
    for missing in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        let mut claims = profile_claims();
        claims.as_object_mut().unwrap().remove(missing);
        let token = sign_typ(SECRET_A, "k1", Some("at+jwt"), &claims);
        let (status, challenge, body) = call(&profile(), &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{missing}");
        assert!(challenge.contains(r#"error="invalid_token""#));
        let message = body["message"].as_str().unwrap();
        // Missing iss / aud fail the issuer / audience checks first.
        match missing {
            "iss" => assert_eq!(message, "token issuer not accepted"),
            "aud" => assert_eq!(message, "token audience not accepted"),
            "exp" => assert_eq!(message, "token lacks a required claim"),
            _ => assert!(message.contains("RFC 9068"), "{missing}: {message}"),
        }
    }
    let mut claims = profile_claims();
    claims["client_id"] = json!(7);
    let token = sign_typ(SECRET_A, "k1", Some("at+jwt"), &claims);
    let (status, _, body) = call(&profile(), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "token has an invalid claim");
}

#[test]
fn access_token_profile_requires_audience_and_issuer_checks() {
    let base = || JwtAuthenticator::<Value>::new(keys(SECRET_A, "k1")).access_token_profile();
    assert_eq!(
        base().issuers(["https://a"]).build().unwrap_err(),
        ConfigError::AccessTokenProfile("audiences(...)")
    );
    assert_eq!(
        base().audiences(["api"]).build().unwrap_err(),
        ConfigError::AccessTokenProfile("issuers(...)")
    );
}

// ---- RFC 9728 ----

async fn send(
    svc: impl tower::Service<
        Request<()>,
        Response = Response<tower_auth::body::ResponseBody<tower_auth::body::ResponseBody<String>>>,
        Error = Infallible,
    >,
    req: Request<()>,
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn protected_resource_metadata_through_auth_layer() {
    let metadata = ResourceMetadata::new("https://api.example.com/orders")
        .unwrap()
        .authorization_servers(["https://a.example", "https://b.example"])
        .scopes_supported(["orders:read"])
        .resource_signing_alg_values_supported(["HS256"]);
    let auth = two_issuers()
        .realm("orders")
        .resource_metadata(metadata.url());
    let app = ServiceBuilder::new()
        .layer(metadata.layer())
        .layer(AuthLayer::new(auth))
        .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });

    // 401 names the metadata.
    let (status, headers, _) = send(app.clone(), Request::get("/orders").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="orders", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/orders""#
    );
    // So does a refused token's challenge.
    let req = Request::get("/orders")
        .header(header::AUTHORIZATION, "Bearer a.b.c")
        .body(())
        .unwrap();
    let (status, headers, _) = send(app.clone(), req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains(
        "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/orders\""
    ));

    // The document, without credentials.
    let path = "/.well-known/oauth-protected-resource/orders";
    let (status, headers, body) = send(app.clone(), Request::get(path).body(()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com/orders");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://a.example", "https://b.example"])
    );
    assert_eq!(doc["scopes_supported"], json!(["orders:read"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        doc["resource_signing_alg_values_supported"],
        json!(["HS256"])
    );

    let (status, headers, body) = send(
        app.clone(),
        Request::builder()
            .method(Method::HEAD)
            .uri(path)
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(body.is_empty());

    // Other methods: 405 with Allow.
    let req = Request::post(path).body(()).unwrap();
    let (status, headers, body) = send(app.clone(), req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, HEAD");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "method_not_allowed"
    );

    // Other metadata paths: 404 (not a 401 from the AuthLayer).
    for other in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/other",
    ] {
        let (status, _, body) = send(app.clone(), Request::get(other).body(()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["error"],
            "not_found"
        );
    }
    // A look-alike path is the application's: the AuthLayer answers.
    let req = Request::get("/.well-known/oauth-protected-resourcex")
        .body(())
        .unwrap();
    assert_eq!(send(app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn insufficient_rights_are_unaffected_and_valid_tokens_pass_the_metadata_layer() {
    let metadata = ResourceMetadata::new("https://api.example.com").unwrap();
    let auth = two_issuers().resource_metadata(metadata.url());
    let app = ServiceBuilder::new()
        .layer(metadata.layer())
        .layer(AuthLayer::new(auth))
        .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let token = sign(SECRET_A, "k1", &claims("https://a.example"));
    let req = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    assert_eq!(send(app.clone(), req).await.0, StatusCode::OK);
    let (status, _, body) = send(
        app,
        Request::get("/.well-known/oauth-protected-resource")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["resource"],
        "https://api.example.com"
    );
}

/// Mapped provider roles and scopes drive `RequireLayer` policies; a `403`
/// names the metadata too when the layer's challenge does.
#[cfg(feature = "authz")]
#[tokio::test]
async fn mapped_rights_drive_policies_and_403_names_the_metadata() {
    use tower_auth::authz::{role, scope, RequireLayer};
    let metadata = ResourceMetadata::new("https://api.example.com").unwrap();
    let auth = JwtAuthenticator::<Value>::new(keys(SECRET_A, "kc"))
        .claim_mapping(ClaimMapping::keycloak("orders-api"))
        .resource_metadata(metadata.url());
    let app = |policy_role: &'static str| {
        ServiceBuilder::new()
            .layer(AuthLayer::new(auth.clone()))
            .layer(
                RequireLayer::new(tower_auth::authz::and(role(policy_role), scope("orders")))
                    .bearer_challenge(metadata.challenge()),
            )
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            })
    };
    let token = sign(
        SECRET_A,
        "kc",
        &json!({
            "sub": "u", "exp": now() + 60, "scope": "openid orders",
            "realm_access": {"roles": ["user"]},
            "resource_access": {"orders-api": {"roles": ["orders-admin"]}}
        }),
    );
    let req = || {
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    assert_eq!(
        app("orders-admin").oneshot(req()).await.unwrap().status(),
        StatusCode::OK
    );
    let res = app("billing-admin").oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(
            r#"resource_metadata="https://api.example.com/.well-known/oauth-protected-resource""#
        ),
        "{challenge}"
    );
}
