use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::auth::Anonymous;
use crate::{AuthError, AuthLayer, Identity, Scheme};

#[derive(Clone, Debug, PartialEq)]
struct User(&'static str);

/// Answers with the principal and the identity's subject it finds.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let user = req.extensions().get::<User>().map(|u| u.0).unwrap_or("-");
    let subject = req
        .extensions()
        .get::<Identity>()
        .map_or("-".to_owned(), |i| i.subject().to_owned());
    let anonymous = req.extensions().get::<Anonymous>().is_some();
    Ok(Response::new(format!("{user}|{subject}|{anonymous}")))
}

#[tokio::test]
async fn fake_layer_inserts_principal_and_identity_like_auth_layer() {
    let svc = ServiceBuilder::new()
        .layer(FakeAuthLayer::new(
            User("ada"),
            Identity::new("u1", Scheme::Bearer),
        ))
        .service_fn(echo);
    let res = svc.oneshot(TestRequest::get("/").build()).await.unwrap();
    let res = TestResponse::read(res).await;
    res.assert_status(StatusCode::OK);
    assert_eq!(res.text(), "ada|u1|false");
}

#[tokio::test]
async fn fake_anonymous_and_refusing_take_the_production_paths() {
    let optional = AuthLayer::optional(FakeAuthenticator::<User>::anonymous());
    let res = optional
        .layer(service_fn(echo))
        .oneshot(TestRequest::get("/").build())
        .await
        .unwrap();
    assert_eq!(TestResponse::read(res).await.text(), "-|-|true");

    let required = FakeAuthLayer::from_authenticator(FakeAuthenticator::<User>::anonymous());
    let res = required
        .layer(service_fn(echo))
        .oneshot(TestRequest::get("/").build())
        .await
        .unwrap();
    assert_rejected(res, StatusCode::UNAUTHORIZED, "unauthorized")
        .await
        .assert_no_challenge_param("Bearer", "error");

    let down = FakeAuthLayer::from_authenticator(FakeAuthenticator::<User>::refusing(|| {
        AuthError::unavailable("store down")
    }));
    let res = down
        .layer(service_fn(echo))
        .oneshot(TestRequest::get("/").build())
        .await
        .unwrap();
    assert_rejected(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

fn static_bearer() -> StaticAuthenticator<User> {
    StaticAuthenticator::bearer()
        .realm("api")
        .token("t-ada", User("ada"), Identity::new("u1", Scheme::Bearer))
        .token("t-bob", User("bob"), Identity::new("u2", Scheme::Bearer))
}

#[tokio::test]
async fn static_bearer_tokens_map_to_their_principal() {
    let svc = AuthLayer::new(static_bearer()).layer(service_fn(echo));
    for (token, expected) in [("t-ada", "ada|u1|false"), ("t-bob", "bob|u2|false")] {
        let req = TestRequest::get("/").bearer(token).build();
        let res = TestResponse::read(svc.clone().oneshot(req).await.unwrap()).await;
        assert_eq!(res.text(), expected);
    }
}

#[tokio::test]
async fn static_bearer_refusals_are_the_production_ones() {
    let svc = AuthLayer::new(static_bearer()).layer(service_fn(echo));
    // Unknown token.
    let req = TestRequest::get("/").bearer("t-eve").build();
    assert_rejected(
        svc.clone().oneshot(req).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await
    .assert_challenge_param("Bearer", "realm", "api")
    .assert_challenge_param("Bearer", "error", "invalid_token")
    .assert_not_echoed("t-eve");
    // Missing: no error attribute.
    let res = svc
        .clone()
        .oneshot(TestRequest::get("/").build())
        .await
        .unwrap();
    assert_rejected(res, StatusCode::UNAUTHORIZED, "unauthorized")
        .await
        .assert_no_challenge_param("Bearer", "error");
    // Malformed: two Authorization headers.
    let req = TestRequest::get("/")
        .bearer("t-ada")
        .bearer("t-bob")
        .build();
    assert_rejected(
        svc.oneshot(req).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn static_header_keys_use_an_api_key_challenge() {
    let auth = StaticAuthenticator::header("x-api-key")
        .identity("k1", Identity::new("svc", Scheme::ApiKey));
    let svc = AuthLayer::new(auth).layer(service_fn(|req: Request<String>| async move {
        let id = req.extensions().get::<Identity>().cloned();
        Ok::<_, Infallible>(Response::new(
            id.map(|i| i.subject().to_owned()).unwrap_or_default(),
        ))
    }));
    let res = svc
        .clone()
        .oneshot(TestRequest::get("/").api_key("k1").build())
        .await
        .unwrap();
    assert_eq!(TestResponse::read(res).await.text(), "svc");
    let res = svc
        .oneshot(TestRequest::get("/").api_key("k2").build())
        .await
        .unwrap();
    assert_rejected(res, StatusCode::UNAUTHORIZED, "invalid_token")
        .await
        .assert_challenge_param("ApiKey", "header", "x-api-key");
}

#[tokio::test]
async fn grpc_rejections_are_grpc_statuses() {
    let svc = AuthLayer::new(static_bearer()).layer(service_fn(echo));
    let req = TestRequest::post("/pkg.Svc/Call")
        .grpc()
        .bearer("nope")
        .build();
    TestResponse::read(svc.oneshot(req).await.unwrap())
        .await
        .assert_grpc_status(16);
}

#[cfg(feature = "jwt")]
mod jwt {
    use jsonwebtoken::Algorithm;
    use serde_json::Value;

    use super::*;
    use crate::jwt::KeySet;

    async fn ok(res: Response<crate::body::ResponseBody<String>>) -> String {
        let res = TestResponse::read(res).await;
        res.assert_status(StatusCode::OK);
        res.text()
    }

    #[tokio::test]
    async fn every_algorithm_signs_tokens_its_authenticator_accepts() {
        for issuer in TestIssuer::every_algorithm() {
            let svc = AuthLayer::new(issuer.authenticator::<Value>()).layer(service_fn(echo));
            let token = issuer
                .token("alice")
                .roles(["admin"])
                .scopes(["read"])
                .sign();
            let req = TestRequest::get("/").bearer(&token).build();
            assert_eq!(
                ok(svc.oneshot(req).await.unwrap()).await,
                "-|alice|false",
                "{:?}",
                issuer.algorithm()
            );
            let verified = issuer.authenticator::<Value>().verify(&token).unwrap();
            assert!(verified.identity.has_role("admin"));
            assert!(verified.identity.has_scope("read"));
        }
    }

    #[tokio::test]
    async fn every_broken_token_is_refused_for_every_algorithm() {
        for issuer in TestIssuer::every_algorithm() {
            let svc = AuthLayer::new(issuer.authenticator::<Value>()).layer(service_fn(echo));
            for (broken, token) in issuer.broken_tokens("alice") {
                let req = TestRequest::get("/").bearer(&token).build();
                let res = TestResponse::read(svc.clone().oneshot(req).await.unwrap()).await;
                assert_eq!(
                    res.status(),
                    StatusCode::UNAUTHORIZED,
                    "{:?} {broken:?}: {}",
                    issuer.algorithm(),
                    res.text()
                );
                res.assert_rejected(StatusCode::UNAUTHORIZED, "invalid_token")
                    .assert_challenge_param("Bearer", "error", "invalid_token")
                    .assert_not_echoed(&token);
            }
        }
    }

    #[test]
    fn broken_tokens_differ_from_a_valid_one_only_where_they_say() {
        let issuer = TestIssuer::new(Algorithm::RS256);
        let claims = |token: &str| -> Value {
            let payload = token.split('.').nth(1).unwrap();
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let header = |token: &str| -> Value {
            let h = token.split('.').next().unwrap();
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let expired = claims(&issuer.broken("a", Broken::Expired));
        assert!(
            expired["exp"].as_i64().unwrap()
                < i64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                )
                .unwrap()
        );
        assert_eq!(
            claims(&issuer.broken("a", Broken::WrongAudience))["aud"],
            "another-api"
        );
        assert_eq!(
            claims(&issuer.broken("a", Broken::RefreshToken))["typ"],
            "refresh"
        );
        assert!(claims(&issuer.broken("a", Broken::MissingExp))
            .get("exp")
            .is_none());
        assert_eq!(header(&issuer.broken("a", Broken::AlgNone))["alg"], "none");
        assert!(issuer.broken("a", Broken::AlgNone).ends_with('.'));
        assert_eq!(
            header(&issuer.broken("a", Broken::AlgorithmConfusion))["alg"],
            "HS256"
        );
        assert_eq!(
            header(&issuer.broken("a", Broken::UnknownKid))["kid"],
            "no-such-key"
        );
        let valid = issuer.token("a").sign();
        assert_eq!(header(&valid)["kid"], "test-rs256");
        assert_eq!(claims(&valid)["iss"], TEST_ISSUER);
        assert_eq!(claims(&valid)["aud"], TEST_AUDIENCE);
    }

    #[test]
    fn the_jwks_is_public_for_asymmetric_keys() {
        for issuer in TestIssuer::every_algorithm() {
            let json = issuer.jwks_json();
            let symmetric = issuer.algorithm().family() == jsonwebtoken::AlgorithmFamily::Hmac;
            // A public key set loads as one; an HMAC set only on purpose.
            assert_eq!(KeySet::from_jwks_json(&json).is_ok(), !symmetric, "{json}");
            let jwks: Value = serde_json::from_str(&json).unwrap();
            let key = &jwks["keys"][0];
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(key.get(private).is_none(), "{private} in {json}");
            }
            assert_eq!(key["kid"], issuer.key_id());
        }
    }

    #[test]
    fn an_issuer_configured_elsewhere_is_refused() {
        let issuer = TestIssuer::new(Algorithm::ES256)
            .issuer("https://a.test")
            .audience("a");
        let other = issuer.clone().issuer("https://b.test").audience("b");
        let token = other.token("x").sign();
        assert!(issuer.authenticator::<Value>().verify(&token).is_err());
        assert!(other.authenticator::<Value>().verify(&token).is_ok());
    }
}

#[cfg(feature = "dpop")]
mod dpop {
    use jsonwebtoken::Algorithm;
    use serde_json::Value;

    use super::*;
    use crate::dpop::DpopBound;

    const URL: &str = "https://api.example.com/me";

    #[tokio::test]
    async fn bound_tokens_pass_with_a_proof_of_their_key_only() {
        let issuer = TestIssuer::new(Algorithm::RS256);
        let client = TestDpopKey::new();
        let auth = DpopBound::new(issuer.authenticator::<Value>())
            .public_origin("https://api.example.com");
        let svc = AuthLayer::new(auth).layer(service_fn(echo));
        let token = issuer.token("alice").dpop_bound(&client).sign();

        let proof = client.proof("GET", URL, Some(&token));
        let req = TestRequest::get("/me").dpop(&token, &proof).build();
        let res = TestResponse::read(svc.clone().oneshot(req).await.unwrap()).await;
        res.assert_status(StatusCode::OK);
        assert_eq!(res.text(), "-|alice|false");

        // A proof for another method, another token, or none at all.
        for proof in [
            client.proof("POST", URL, Some(&token)),
            client.proof("GET", URL, Some("another-token")),
            client.proof("GET", URL, None),
        ] {
            let req = TestRequest::get("/me").dpop(&token, &proof).build();
            assert_rejected(
                svc.clone().oneshot(req).await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            )
            .await
            .assert_challenge_param("DPoP", "error", "invalid_dpop_proof")
            .assert_not_echoed(&proof);
        }
        // The bound token as a plain bearer token: no downgrade.
        let req = TestRequest::get("/me").bearer(&token).build();
        assert_rejected(
            svc.oneshot(req).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
}
