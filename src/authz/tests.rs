use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, ServiceExt};
use tower_layer::Layer;
use tower_service::Service;

use super::*;
use crate::auth::Anonymous;
use crate::rejection::{Challenge, Rejection, Rejections};
use crate::{AuthError, Identity, Scheme};

fn api_key_user(roles: &[&str], permissions: &[&str]) -> Identity {
    Identity::new("2", Scheme::ApiKey)
        .with_roles(roles.iter().copied())
        .with_permissions(permissions.iter().copied())
}

fn bearer_user(permissions: &[&str], scopes: &[&str]) -> Identity {
    Identity::new("1", Scheme::Bearer)
        .with_permissions(permissions.iter().copied())
        .with_scopes(scopes.iter().copied())
}

fn head() -> Parts {
    Request::put("/posts/1").body(()).unwrap().into_parts().0
}

/// Decides a policy to completion.
async fn decide<P: Policy>(policy: &P, identity: &Identity) -> Result<(), Denied> {
    match policy.check(identity, &head()) {
        Decision::Allow => Ok(()),
        Decision::Deny(denied) => Err(denied),
        Decision::Pending(fut) => fut.await,
    }
}

fn is_sync<F>(d: &Decision<F>) -> bool {
    !matches!(d, Decision::Pending(_))
}

/// An async policy that counts how often its future was started and
/// answers `result` after yielding once.
#[derive(Clone)]
struct Counting {
    started: Arc<AtomicUsize>,
    result: fn() -> Result<(), Denied>,
}

impl Counting {
    fn new(result: fn() -> Result<(), Denied>) -> Self {
        Counting {
            started: Arc::default(),
            result,
        }
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn policy(&self) -> impl Policy {
        let started = self.started.clone();
        let result = self.result;
        policy_fn(move |_: Identity, _: &Parts| {
            let started = started.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                result()
            }
        })
    }
}

fn allow() -> Result<(), Denied> {
    Ok(())
}

fn forbid() -> Result<(), Denied> {
    Err(Denied::forbidden("async says no"))
}

fn missing() -> Result<(), Denied> {
    Err(Denied::not_found("post not found"))
}

// ---- ready policies -------------------------------------------------------

#[tokio::test]
async fn role_is_an_exact_case_sensitive_match() {
    let id = api_key_user(&["admin"], &[]);
    assert!(decide(&role("admin"), &id).await.is_ok());
    let denied = decide(&role("Admin"), &id).await.unwrap_err();
    assert_eq!(denied.kind(), DeniedKind::Forbidden);
    assert_eq!(denied.message(), "role 'Admin' required");
    assert!(decide(&role("adm"), &id).await.is_err());
}

#[tokio::test]
async fn any_role_allows_one_of_them_and_empty_allows_nobody() {
    let moderator = api_key_user(&["moderator"], &[]);
    let user = api_key_user(&["user"], &[]);
    let policy = any_role(["admin", "moderator"]);
    assert!(decide(&policy, &moderator).await.is_ok());
    let denied = decide(&policy, &user).await.unwrap_err();
    assert_eq!(
        denied.message(),
        "one of the roles 'admin', 'moderator' required"
    );
    let nobody = any_role(Vec::<String>::new());
    assert!(decide(&nobody, &moderator).await.is_err());
}

/// Every identity the empty-requirement tests try: rights of every kind,
/// by API key and by bearer token.
fn everyone() -> [Identity; 4] {
    [
        api_key_user(&[], &[]),
        api_key_user(&["admin", "user"], &["posts:read", "users:delete"]),
        bearer_user(&["posts:read"], &["read", "write"]),
        Identity::new("", Scheme::Bearer),
    ]
}

/// Decides `policy` for every identity of [`everyone`]: each must be
/// denied immediately with a bare "access denied".
async fn denies_everyone<P: Policy>(what: &str, policy: &P) {
    for id in everyone() {
        let decision = policy.check(&id, &head());
        assert!(is_sync(&decision), "{what}");
        let denied = decide(policy, &id).await.unwrap_err();
        assert_eq!(denied.kind(), DeniedKind::Forbidden, "{what}");
        assert_eq!(denied.message(), "access denied", "{what}");
        assert_eq!(denied.required_scope(), None, "{what}");
    }
}

#[tokio::test]
async fn empty_requirement_lists_allow_nobody() {
    let none = Vec::<String>::new;
    let roles = seed_roles();
    denies_everyone("all_permissions", &all_permissions(none())).await;
    denies_everyone("all_permissions([])", &all_permissions([""; 0])).await;
    denies_everyone("all_scopes", &all_scopes(none())).await;
    denies_everyone("all_scopes([])", &all_scopes([""; 0])).await;
    denies_everyone("any_role", &any_role(none())).await;
    denies_everyone("RoleMap::all_permissions", &roles.all_permissions(none())).await;
    denies_everyone("RoleMap::any_role", &roles.any_role(none())).await;
    // Combined with other policies, the empty one still never allows:
    // not even inverted.
    denies_everyone("and", &all_permissions(none()).and(authenticated())).await;
    denies_everyone("not all_permissions", &all_permissions(none()).not()).await;
    denies_everyone("not all_scopes", &not(all_scopes(none()))).await;
    denies_everyone("not any_role", &any_role(none()).not()).await;
    denies_everyone(
        "not RoleMap::all_permissions",
        &roles.all_permissions(none()).not(),
    )
    .await;
    denies_everyone("not RoleMap::any_role", &roles.any_role(none()).not()).await;
    let or = all_scopes(none()).or(role("admin"));
    let admin = api_key_user(&["admin"], &[]);
    assert!(decide(&or, &admin).await.is_ok());
    assert!(decide(&or, &api_key_user(&["user"], &[])).await.is_err());
}

#[tokio::test]
async fn empty_requirement_lists_are_a_plain_403_even_for_bearer_tokens() {
    let none = Vec::<String>::new;
    let bearer = bearer_user(&["posts:read"], &["read"]);
    for layer in [
        RequireLayer::new(all_permissions(none())),
        RequireLayer::new(seed_roles().all_permissions(none())),
    ] {
        let res = run(layer, request(Some(bearer.clone()))).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert!(res.www().is_empty(), "{:?}", res.www());
        assert_eq!(
            res.json(),
            serde_json::json!({"error": "forbidden", "message": "access denied"})
        );
    }
    let res = run(
        RequireLayer::new(all_scopes(none())),
        request(Some(bearer.clone())),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.www().is_empty(), "{:?}", res.www());
}

#[tokio::test]
async fn permission_and_all_permissions() {
    let id = api_key_user(&[], &["posts:read", "posts:write"]);
    assert!(decide(&permission("posts:read"), &id).await.is_ok());
    let denied = decide(&permission("posts:delete"), &id).await.unwrap_err();
    assert_eq!(denied.message(), "permission 'posts:delete' required");
    assert_eq!(denied.required_scope().as_deref(), Some("posts:delete"));

    assert!(decide(&all_permissions(["posts:write", "posts:read"]), &id)
        .await
        .is_ok());
    let denied = decide(&all_permissions(["posts:read", "users:read"]), &id)
        .await
        .unwrap_err();
    assert_eq!(
        denied.message(),
        "permissions 'posts:read', 'users:read' required"
    );
    assert_eq!(
        denied.required_scope().as_deref(),
        Some("posts:read users:read")
    );
}

#[tokio::test]
async fn permissions_and_scopes_are_separate_sets() {
    let id = bearer_user(&["write"], &["read"]);
    assert!(decide(&scope("read"), &id).await.is_ok());
    assert!(decide(&scope("write"), &id).await.is_err());
    assert!(decide(&permission("read"), &id).await.is_err());
    assert!(decide(&all_scopes(["read"]), &id).await.is_ok());
    let denied = decide(&all_scopes(["read", "admin"]), &id)
        .await
        .unwrap_err();
    assert_eq!(denied.message(), "scopes 'admin', 'read' required");
}

#[tokio::test]
async fn authenticated_allows_any_identity() {
    assert!(decide(&authenticated(), &api_key_user(&[], &[]))
        .await
        .is_ok());
}

#[tokio::test]
async fn sync_policy_fn_sees_the_request_head() {
    let policy = sync_policy_fn(|id: &Identity, head: &Parts| {
        !id.subject().is_empty() && head.uri.path().rsplit('/').next() == Some(id.subject())
    });
    let decision = policy.check(&api_key_user(&[], &[]), &head());
    assert!(is_sync(&decision));
    assert!(matches!(decision, Decision::Deny(_)));
    let owner = Identity::new("1", Scheme::ApiKey);
    assert!(matches!(policy.check(&owner, &head()), Decision::Allow));
}

#[test]
fn decisions_from_bool_and_result() {
    assert!(matches!(Decision::<Immediate>::from(true), Decision::Allow));
    let Decision::<Immediate>::Deny(d) = false.into() else {
        panic!("false must deny");
    };
    assert_eq!(d.message(), "access denied");
    assert!(matches!(
        Decision::<Immediate>::from(Err(Denied::not_found("x"))),
        Decision::Deny(d) if d.kind() == DeniedKind::NotFound
    ));
}

// ---- combinators ----------------------------------------------------------

#[tokio::test]
async fn and_requires_both_and_reports_the_first_denial() {
    let id = api_key_user(&["user"], &["posts:write"]);
    let both = role("user").and(permission("posts:write"));
    assert!(decide(&both, &id).await.is_ok());
    let d = decide(&role("admin").and(permission("x")), &id)
        .await
        .unwrap_err();
    assert_eq!(d.message(), "role 'admin' required");
    let d = decide(&role("user").and(permission("x")), &id)
        .await
        .unwrap_err();
    assert_eq!(d.message(), "permission 'x' required");
    assert!(is_sync(
        &and(role("user"), role("admin")).check(&id, &head())
    ));
}

#[tokio::test]
async fn or_requires_either_and_prefers_the_right_denial() {
    let id = api_key_user(&["user"], &[]);
    assert!(decide(&role("admin").or(role("user")), &id).await.is_ok());
    assert!(decide(&role("user").or(role("admin")), &id).await.is_ok());
    let d = decide(&or(role("admin"), permission("x")), &id)
        .await
        .unwrap_err();
    assert_eq!(d.message(), "permission 'x' required");
    let owner = Counting::new(forbid);
    let d = decide(&role("admin").or(owner.policy()), &id)
        .await
        .unwrap_err();
    assert_eq!(d.message(), "async says no");
    let d = decide(&owner.policy().or(role("admin")), &id)
        .await
        .unwrap_err();
    assert_eq!(d.message(), "role 'admin' required");
}

#[tokio::test]
async fn or_reports_the_most_severe_denial() {
    let id = api_key_user(&["user"], &[]);
    let not_found = sync_policy_fn(|_: &Identity, _: &Parts| Err(Denied::not_found("no post")));
    let d = decide(&role("admin").or(not_found.clone()), &id)
        .await
        .unwrap_err();
    assert_eq!(d.kind(), DeniedKind::NotFound);
    let d = decide(&not_found.or(role("admin")), &id).await.unwrap_err();
    assert_eq!(d.kind(), DeniedKind::NotFound);

    let down = Counting::new(|| Err(Denied::unavailable("db down")));
    let d = decide(&down.policy().or(Counting::new(missing).policy()), &id)
        .await
        .unwrap_err();
    assert_eq!(d.kind(), DeniedKind::Unavailable);
}

#[tokio::test]
async fn not_inverts_rights_but_fails_closed() {
    let id = api_key_user(&["banned"], &[]);
    assert!(decide(&role("banned").not(), &id).await.is_err());
    assert!(decide(&not(role("admin")), &id).await.is_ok());
    let d = decide(&not(authenticated()), &id).await.unwrap_err();
    assert_eq!(d.kind(), DeniedKind::Forbidden);

    let not_found = sync_policy_fn(|_: &Identity, _: &Parts| Err(Denied::not_found("no post")));
    let d = decide(&not_found.not(), &id).await.unwrap_err();
    assert_eq!(d.kind(), DeniedKind::NotFound);

    let down = Counting::new(|| Err(Denied::unavailable("db down")));
    let d = decide(&down.policy().not(), &id).await.unwrap_err();
    assert_eq!(d.kind(), DeniedKind::Unavailable);
    assert!(decide(&Counting::new(forbid).policy().not(), &id)
        .await
        .is_ok());
    assert!(decide(&Counting::new(allow).policy().not(), &id)
        .await
        .is_err());
}

#[tokio::test]
async fn or_with_a_sync_allow_never_starts_the_async_check() {
    let id = api_key_user(&["admin"], &[]);
    let lookup = Counting::new(forbid);
    for policy in [
        role("admin").or(lookup.policy()).check(&id, &head()),
        // async side first: its closure is called, but its future is
        // dropped unpolled.
        lookup
            .policy()
            .or(role("admin"))
            .check(&id, &head())
            .map_future(|_| unreachable!()),
    ] {
        assert!(matches!(policy, Decision::Allow));
    }
    assert_eq!(lookup.started(), 0);
}

#[tokio::test]
async fn and_with_a_sync_denial_never_starts_the_async_check() {
    let id = api_key_user(&["user"], &[]);
    let lookup = Counting::new(allow);
    let decision = lookup.policy().and(role("admin")).check(&id, &head());
    assert!(matches!(decision, Decision::Deny(_)));
    assert_eq!(lookup.started(), 0);
}

#[tokio::test]
async fn async_combinations_are_awaited_in_order() {
    let id = api_key_user(&["user"], &[]);
    type Case = (
        fn() -> Result<(), Denied>,
        fn() -> Result<(), Denied>,
        bool,
        bool,
    );
    let cases: [Case; 4] = [
        (allow, allow, true, true),
        (allow, forbid, false, true),
        (forbid, allow, false, true),
        (forbid, forbid, false, false),
    ];
    for (a, b, and_ok, or_ok) in cases {
        let (pa, pb) = (Counting::new(a), Counting::new(b));
        assert_eq!(
            decide(&pa.policy().and(pb.policy()), &id).await.is_ok(),
            and_ok
        );
        // `and` stops at the first denial.
        assert_eq!(pb.started(), usize::from(a().is_ok()));

        let (pa, pb) = (Counting::new(a), Counting::new(b));
        assert_eq!(
            decide(&pa.policy().or(pb.policy()), &id).await.is_ok(),
            or_ok
        );
        // `or` stops at the first allow.
        assert_eq!(pb.started(), usize::from(a().is_err()));

        // async on one side, sync on the other
        let sync_b = sync_policy_fn(move |_: &Identity, _: &Parts| b());
        assert_eq!(
            decide(&Counting::new(a).policy().and(sync_b.clone()), &id)
                .await
                .is_ok(),
            and_ok
        );
        assert_eq!(
            decide(&Counting::new(a).policy().or(sync_b.clone()), &id)
                .await
                .is_ok(),
            or_ok
        );
        let sync_a = sync_policy_fn(move |_: &Identity, _: &Parts| a());
        assert_eq!(
            decide(&sync_a.clone().and(Counting::new(b).policy()), &id)
                .await
                .is_ok(),
            and_ok
        );
        assert_eq!(
            decide(&sync_a.or(Counting::new(b).policy()), &id)
                .await
                .is_ok(),
            or_ok
        );
    }
}

#[tokio::test]
async fn policy_fn_accepts_bool_results() {
    let policy = policy_fn(|id: Identity, _: &Parts| async move { id.subject() == "1" });
    assert!(decide(&policy, &bearer_user(&[], &[])).await.is_ok());
    let d = decide(&policy, &api_key_user(&[], &[])).await.unwrap_err();
    assert_eq!(d.message(), "access denied");
}

// ---- the layer ------------------------------------------------------------

async fn ok(_: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("handler".into()))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn www(&self) -> Vec<&str> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }
}

async fn run<P: Policy>(layer: RequireLayer<P>, req: Request<String>) -> Answer {
    let res = layer.layer(service_fn(ok)).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn request(identity: Option<Identity>) -> Request<String> {
    let mut req = Request::put("/posts/1").body(String::new()).unwrap();
    if let Some(id) = identity {
        req.extensions_mut().insert(id);
    }
    req
}

fn grpc(mut req: Request<String>) -> Request<String> {
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    req.headers_mut()
        .insert(header::TE, http::HeaderValue::from_static("trailers"));
    req
}

fn anonymous(req: Request<String>, rejections: Rejections) -> Request<String> {
    let mut req = req;
    req.extensions_mut().insert(Anonymous {
        challenges: vec![Challenge::bearer().param("realm", "api")].into(),
        rejections,
    });
    req
}

#[tokio::test]
async fn allowed_requests_reach_the_inner_service() {
    let res = run(
        RequireLayer::new(role("admin")),
        request(Some(api_key_user(&["admin"], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "handler");
}

#[tokio::test]
async fn no_identity_is_a_plain_401() {
    let res = run(RequireLayer::new(authenticated()), request(None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.www().is_empty());
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "unauthorized", "message": "authentication required"})
    );
}

#[tokio::test]
async fn anonymous_is_401_with_the_auth_layers_challenges_and_renderer() {
    let res = run(
        RequireLayer::new(role("admin")),
        anonymous(request(None), Rejections::new()),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.www(), [r#"Bearer realm="api""#]);

    let custom = Rejections::custom(|r: Rejection| {
        Response::builder()
            .status(r.status())
            .body(Bytes::from(format!("custom {}", r.code())))
            .unwrap()
    });
    let res = run(
        RequireLayer::new(role("admin")),
        anonymous(request(None), custom),
    )
    .await;
    assert_eq!(res.body, "custom unauthorized");
}

#[tokio::test]
async fn lacking_a_role_is_a_generic_403() {
    let res = run(
        RequireLayer::new(role("admin")),
        request(Some(api_key_user(&["user"], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.www().is_empty());
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "forbidden", "message": "insufficient permissions"})
    );
    assert!(!res.body.contains("admin"));
}

/// RFC 6750 §3: a bearer token refused for a role gets an
/// `insufficient_scope` challenge, without `scope` (no scope would name
/// the role) and without the role's name.
#[tokio::test]
async fn bearer_lacking_a_role_gets_insufficient_scope_without_scope() {
    for layer in [
        RequireLayer::new(role("admin")),
        RequireLayer::new(seed_roles().role("admin")),
        RequireLayer::new(role("admin")).name_missing_rights(true),
    ] {
        let res = run(
            layer,
            request(Some(bearer_user(&["posts:read"], &["read"]))),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(
            res.www(),
            [
                r#"Bearer error="insufficient_scope", error_description="the access token does not grant access to this resource""#
            ]
        );
        assert_eq!(res.json()["error"], "forbidden");
    }
    let res = run(
        RequireLayer::new(role("admin"))
            .bearer_challenge(Challenge::bearer().param("realm", "api")),
        request(Some(bearer_user(&[], &[]))),
    )
    .await;
    assert!(res.www()[0].starts_with(r#"Bearer realm="api", error="insufficient_scope""#));
    assert!(!res.www()[0].contains("scope=\""));
    assert_eq!(res.json()["message"], "insufficient permissions");
}

/// An ownership check (`Denied::forbidden` of a custom policy) refusing a
/// bearer token: the policy's message, and the challenge.
#[tokio::test]
async fn bearer_refused_by_a_custom_policy_gets_insufficient_scope() {
    let owner = sync_policy_fn(|_: &Identity, _: &Parts| {
        Err::<(), _>(Denied::forbidden("you can only edit your own posts"))
    });
    let res = run(
        RequireLayer::new(owner.clone()),
        request(Some(bearer_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.www().len(), 1);
    assert!(res.www()[0].starts_with(r#"Bearer error="insufficient_scope""#));
    assert!(!res.www()[0].contains("scope=\""));
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "forbidden", "message": "you can only edit your own posts"})
    );
    // Not for API keys, and not for a 404.
    let res = run(
        RequireLayer::new(owner),
        request(Some(api_key_user(&[], &[]))),
    )
    .await;
    assert!(res.www().is_empty());
    let missing = sync_policy_fn(|_: &Identity, _: &Parts| Err::<(), _>(Denied::not_found("no")));
    let res = run(
        RequireLayer::new(missing),
        request(Some(bearer_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.www().is_empty());
}

/// Naming the missing rights is opt-in: on the layer, or on the renderer
/// the `AuthLayer` shares through the request extensions; the layer's
/// setting wins.
#[tokio::test]
async fn naming_the_missing_rights_is_opt_in() {
    let user = || api_key_user(&["user"], &["posts:read"]);
    let with_renderer = |r: Rejections| {
        let mut req = request(Some(user()));
        req.extensions_mut().insert(r);
        req
    };
    let cases = [
        (
            RequireLayer::new(role("admin")),
            request(Some(user())),
            "insufficient permissions",
        ),
        (
            RequireLayer::new(role("admin")).name_missing_rights(true),
            request(Some(user())),
            "role 'admin' required",
        ),
        (
            RequireLayer::new(any_role(["admin", "moderator"])),
            with_renderer(Rejections::new().name_missing_rights(true)),
            "one of the roles 'admin', 'moderator' required",
        ),
        (
            RequireLayer::new(role("admin")).name_missing_rights(false),
            with_renderer(Rejections::new().name_missing_rights(true)),
            "insufficient permissions",
        ),
    ];
    for (layer, req, message) in cases {
        let res = run(layer, req).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(res.json()["message"], message);
    }
    let res = run(
        RequireLayer::new(permission("users:read")).name_missing_rights(true),
        request(Some(user())),
    )
    .await;
    assert_eq!(res.json()["message"], "permission 'users:read' required");
    let res = run(
        RequireLayer::new(all_scopes(["a", "b"])),
        request(Some(user())),
    )
    .await;
    assert_eq!(res.json()["message"], "insufficient scope");
}

#[tokio::test]
async fn bearer_lacking_a_permission_or_scope_is_insufficient_scope() {
    for layer in [
        RequireLayer::new(permission("posts:delete")).bearer_challenge(Challenge::bearer()),
        RequireLayer::new(permission("posts:delete")),
    ] {
        let res = run(layer, request(Some(bearer_user(&["posts:read"], &[])))).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(
            res.www(),
            [
                r#"Bearer error="insufficient_scope", error_description="the access token lacks the required scope", scope="posts:delete""#
            ]
        );
        assert_eq!(res.json()["error"], "insufficient_scope");
    }
    let res = run(
        RequireLayer::new(all_scopes(["read", "write"]))
            .bearer_challenge(Challenge::bearer().param("realm", "api")),
        request(Some(bearer_user(&[], &["read"]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.www()[0].starts_with(r#"Bearer realm="api", error="insufficient_scope""#));
    assert!(res.www()[0].ends_with(r#"scope="read write""#));
}

#[tokio::test]
async fn api_key_lacking_a_permission_is_a_plain_403() {
    let res = run(
        RequireLayer::new(permission("users:read")),
        request(Some(api_key_user(&[], &["posts:read"]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.www().is_empty());
    assert_eq!(res.json()["message"], "insufficient permissions");
}

#[tokio::test]
async fn grpc_requests_get_grpc_statuses() {
    let admin = RequireLayer::new(role("admin"));
    let cases = [
        (request(None), "16"),
        (request(Some(api_key_user(&[], &[]))), "7"),
        (request(Some(bearer_user(&[], &[]))), "7"),
    ];
    for (req, code) in cases {
        let res = run(admin.clone(), grpc(req)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.headers["grpc-status"], code);
        assert!(res.body.is_empty());
    }
    let res = run(
        RequireLayer::new(permission("x")),
        grpc(request(Some(bearer_user(&[], &[])))),
    )
    .await;
    assert_eq!(res.headers["grpc-status"], "7");

    for (policy, code) in [
        (missing as fn() -> _, "5"),
        (|| Err(Denied::unavailable("down")), "14"),
    ] {
        let res = run(
            RequireLayer::new(Counting::new(policy).policy()),
            grpc(request(Some(api_key_user(&[], &[])))),
        )
        .await;
        assert_eq!(res.headers["grpc-status"], code);
    }
}

#[tokio::test]
async fn async_policies_answer_404_and_503() {
    let res = run(
        RequireLayer::new(Counting::new(missing).policy()),
        request(Some(api_key_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "not_found", "message": "post not found"})
    );

    let down = Counting::new(|| Err(Denied::unavailable("password=hunter2 refused")));
    let res = run(
        RequireLayer::new(down.policy()),
        request(Some(api_key_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!res.body.contains("hunter2"));
    assert_eq!(res.json()["error"], "unavailable");
}

#[tokio::test]
async fn async_policy_allows_and_the_request_reaches_the_service() {
    let lookup = Counting::new(allow);
    let res = run(
        RequireLayer::new(lookup.policy()),
        request(Some(api_key_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "handler");
    assert_eq!(lookup.started(), 1);
}

#[tokio::test]
async fn renderer_precedence_layer_then_extension_then_anonymous() {
    let tagged = |tag: &'static str| {
        Rejections::custom(move |r: Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from(tag))
                .unwrap()
        })
    };
    let with_extension = |mut req: Request<String>| {
        req.extensions_mut().insert(tagged("extension"));
        req
    };

    let res = run(
        RequireLayer::new(role("admin")).rejections(tagged("layer")),
        with_extension(request(Some(api_key_user(&[], &[])))),
    )
    .await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::FORBIDDEN, "layer")
    );

    let res = run(
        RequireLayer::new(role("admin")),
        with_extension(anonymous(request(None), tagged("anonymous"))),
    )
    .await;
    assert_eq!(res.body, "extension");

    let res = run(
        RequireLayer::new(role("admin")).on_rejection(|r: Rejection| {
            let mut res = r.into_response();
            *res.body_mut() = Bytes::from_static(br#"{"error":"Forbidden"}"#);
            res
        }),
        request(Some(api_key_user(&[], &[]))),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, r#"{"error":"Forbidden"}"#);
}

/// A service that counts its clones and whose readiness is a single
/// permit: calling it without `poll_ready`, or twice, panics.
#[derive(Default)]
struct Strict {
    ready: bool,
    clones: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Strict {
            ready: false,
            clones: self.clones.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl Service<Request<String>> for Strict {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new(String::new())))
    }
}

#[tokio::test]
async fn sync_policies_never_clone_the_inner_service() {
    let inner = Strict::default();
    let (clones, calls) = (inner.clones.clone(), inner.calls.clone());
    let mut svc = RequireLayer::new(role("admin").or(permission("x"))).layer(inner);
    for _ in 0..3 {
        let req = request(Some(api_key_user(&["admin"], &[])));
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(clones.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn async_policies_call_the_service_that_was_made_ready() {
    let inner = Strict::default();
    let calls = inner.calls.clone();
    let mut svc = RequireLayer::new(Counting::new(allow).policy()).layer(inner);
    for _ in 0..3 {
        let req = request(Some(api_key_user(&[], &[])));
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn behind_an_auth_layer_with_a_role_map_expander() {
    use crate::{AuthLayer, Authenticated, Authenticator};

    #[derive(Clone)]
    struct Header;

    impl Authenticator for Header {
        type Credentials = String;
        type Principal = ();
        type Future = Ready<Result<Authenticated<()>, AuthError>>;

        fn extract(&self, req: &Parts) -> Result<Option<String>, AuthError> {
            Ok(req
                .headers
                .get("x-role")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned))
        }

        fn authenticate(&self, role: String) -> Self::Future {
            let identity = Identity::new("u", Scheme::ApiKey).with_roles([role]);
            ready(Ok(Authenticated::new((), identity)))
        }

        fn challenges(&self) -> Vec<Challenge> {
            vec![Challenge::new("Role")]
        }
    }

    let roles = seed_roles();
    let svc = tower::ServiceBuilder::new()
        .layer(AuthLayer::optional(Header.map(roles.expander())))
        .layer(RequireLayer::new(
            permission("posts:delete").and(role("user")),
        ))
        .service_fn(ok);
    let send = |role: Option<&str>| {
        let mut req = Request::delete("/posts/1").body(String::new()).unwrap();
        if let Some(role) = role {
            req.headers_mut().insert("x-role", role.parse().unwrap());
        }
        svc.clone().oneshot(req)
    };
    assert_eq!(send(Some("admin")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        send(Some("moderator")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(Some("user")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let res = send(None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Role");
}

// ---- role maps ------------------------------------------------------------

const SEED_JSON: &str = r#"{
    "user":      ["posts:read", "posts:write"],
    "moderator": {"inherits": ["user"], "permissions": ["users:read", "posts:delete"]},
    "admin":     {"inherits": ["moderator"], "permissions": ["users:write", "users:delete"]}
}"#;

fn seed_roles() -> RoleMap {
    RoleMap::builder()
        .role("user", ["posts:read", "posts:write"])
        .role("moderator", ["users:read", "posts:delete"])
        .inherits("moderator", ["user"])
        .role("admin", ["users:write", "users:delete"])
        .inherits("admin", ["moderator"])
        .build()
        .unwrap()
}

#[test]
fn seed_table_from_code_and_from_config_agree() {
    let from_json: RoleMap = serde_json::from_str(SEED_JSON).unwrap();
    let roles = seed_roles();
    assert_eq!(from_json, roles);
    let perms = |r| roles.permissions(r).unwrap().collect::<Vec<_>>();
    assert_eq!(
        perms("admin"),
        [
            "posts:delete",
            "posts:read",
            "posts:write",
            "users:delete",
            "users:read",
            "users:write"
        ]
    );
    assert_eq!(
        perms("moderator"),
        ["posts:delete", "posts:read", "posts:write", "users:read"]
    );
    assert_eq!(perms("user"), ["posts:read", "posts:write"]);
    assert!(roles.permissions("guest").is_none());
    assert_eq!(
        roles.roles().collect::<Vec<_>>(),
        ["admin", "moderator", "user"]
    );
    assert!(roles.includes("admin", "user"));
    assert!(roles.includes("user", "user"));
    assert!(!roles.includes("user", "moderator"));
}

#[test]
fn flat_table_without_inheritance_is_accepted() {
    let roles: RoleMap = serde_json::from_str(r#"{"admin": ["users:read"], "user": []}"#).unwrap();
    assert!(roles.grants("admin", "users:read"));
    assert!(!roles.grants("user", "users:read"));
}

#[test]
fn inheritance_cycles_are_errors_not_hangs() {
    let err = RoleMap::builder()
        .inherits("a", ["b"])
        .inherits("b", ["c"])
        .inherits("c", ["a"])
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        RoleMapError::Cycle {
            cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }
    );
    assert_eq!(err.to_string(), "role inheritance cycle: a -> b -> c -> a");

    let err = RoleMap::builder().inherits("a", ["a"]).build().unwrap_err();
    assert_eq!(
        err,
        RoleMapError::Cycle {
            cycle: vec!["a".into(), "a".into()]
        }
    );

    let err =
        serde_json::from_str::<RoleMap>(r#"{"x": {"inherits": ["y"]}, "y": {"inherits": ["x"]}}"#)
            .unwrap_err();
    assert!(err.to_string().contains("cycle: x -> y -> x"), "{err}");
}

#[test]
fn unknown_parents_and_bad_configs_are_refused() {
    let err = RoleMap::builder()
        .inherits("admin", ["moderator"])
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "role 'admin' inherits the undefined role 'moderator'"
    );
    for (config, expected) in [
        (
            r#"{"admin": {"inherit": ["user"]}}"#,
            "unknown field `inherit`",
        ),
        (r#"{"admin": 3}"#, "a list of permissions, or a map"),
        (r#"{"admin": [1]}"#, "invalid type"),
        (r#"["admin"]"#, "invalid type"),
    ] {
        let err = serde_json::from_str::<RoleMap>(config).unwrap_err();
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}

/// `n` roles `r0`..`r{n-1}`, each with a permission `p{i}`, each
/// inheriting the previous one.
fn chain(n: usize) -> RoleMapBuilder {
    let mut builder = RoleMap::builder();
    for i in 0..n {
        builder = builder.role(format!("r{i}"), [format!("p{i}")]);
        if i > 0 {
            builder = builder.inherits(format!("r{i}"), [format!("r{}", i - 1)]);
        }
    }
    builder
}

fn too_large(limit: RoleMapLimit, role: Option<&str>) -> RoleMapError {
    RoleMapError::TooLarge {
        limit,
        role: role.map(str::to_owned),
    }
}

fn is_too_large(err: &RoleMapError, expected: RoleMapLimit) -> bool {
    matches!(err, RoleMapError::TooLarge { limit, .. } if *limit == expected)
}

#[test]
fn inheritance_loops_are_found_and_long_ones_refused_without_recursion() {
    // r0 -> r{n-1} -> ... -> r1 -> r0
    let loop_of = |n: usize| {
        let mut builder = RoleMap::builder().inherits("r0", [format!("r{}", n - 1)]);
        for i in 1..n {
            builder = builder.inherits(format!("r{i}"), [format!("r{}", i - 1)]);
        }
        builder.build()
    };
    // As deep as allowed: the loop is found.
    let n = RoleMap::MAX_DEPTH;
    match loop_of(n) {
        Err(RoleMapError::Cycle { cycle }) => {
            assert_eq!(cycle.len(), n + 1);
            assert_eq!(cycle.first(), cycle.last());
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    // A longer loop is too deep before it closes; a recursive search
    // would have overflowed the stack long before.
    let err = loop_of(9_000).unwrap_err();
    assert!(is_too_large(&err, RoleMapLimit::Depth), "{err:?}");
    assert_eq!(
        loop_of(100_000).unwrap_err(),
        too_large(RoleMapLimit::Roles, None)
    );
}

#[test]
fn inheritance_chains_expand_up_to_the_depth_limit() {
    // MAX_DEPTH + 1 roles: the top one inherits through MAX_DEPTH levels.
    let n = RoleMap::MAX_DEPTH + 1;
    let roles = chain(n).build().unwrap();
    let top = format!("r{}", n - 1);
    assert!(roles.grants(&top, "p0"));
    assert!(roles.includes(&top, "r0"));
    assert_eq!(roles.permissions(&top).unwrap().len(), n);
    assert!(!roles.grants("r0", "p1"));

    // One more level is refused, naming the role at the top of the chain.
    let err = chain(n + 1).build().unwrap_err();
    assert_eq!(err, too_large(RoleMapLimit::Depth, Some(&format!("r{n}"))));
    assert_eq!(
        err.to_string(),
        format!("role map too large: role 'r{n}' inherits through more than 64 levels")
    );
}

#[test]
fn long_inheritance_chain_configs_are_refused() {
    // The review's case: an 8 000-role chain took minutes and a gigabyte.
    let n = 8_000;
    let roles: Vec<String> = (0..n)
        .map(|i| {
            let parent = if i > 0 {
                format!(r#""r{}""#, i - 1)
            } else {
                String::new()
            };
            format!(
                r#""r{i}": {{"permissions": ["p{i}:read", "p{i}:write"], "inherits": [{parent}]}}"#
            )
        })
        .collect();
    let json = format!("{{{}}}", roles.join(","));
    let err = serde_json::from_str::<RoleMap>(&json).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("role map too large: role 'r")
            && message.contains("inherits through more than 64 levels"),
        "{message}"
    );
    let err = chain(n).build().unwrap_err();
    assert!(is_too_large(&err, RoleMapLimit::Depth), "{err:?}");
}

#[test]
fn role_maps_with_too_many_roles_are_refused() {
    let flat = |n: usize| {
        (0..n).fold(RoleMap::builder(), |b, i| {
            b.role(format!("r{i}"), [format!("p{i}")])
        })
    };
    let roles = flat(RoleMap::MAX_ROLES).build().unwrap();
    assert_eq!(roles.roles().count(), RoleMap::MAX_ROLES);
    let err = flat(RoleMap::MAX_ROLES + 1).build().unwrap_err();
    assert_eq!(err, too_large(RoleMapLimit::Roles, None));
    assert_eq!(err.to_string(), "role map too large: more than 10000 roles");

    // From a configuration, parsing stops at the first role too many.
    let json = |n: usize| {
        let roles: Vec<String> = (0..n).map(|i| format!(r#""r{i}": ["p"]"#)).collect();
        format!("{{{}}}", roles.join(","))
    };
    assert!(serde_json::from_str::<RoleMap>(&json(RoleMap::MAX_ROLES)).is_ok());
    let err = serde_json::from_str::<RoleMap>(&json(RoleMap::MAX_ROLES + 1)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("role map too large: more than 10000 roles"),
        "{err}"
    );
}

#[test]
fn role_maps_that_expand_too_much_are_refused() {
    // One role with too many permissions of its own.
    let many = (0..RoleMap::MAX_EXPANDED).map(|i| format!("p{i}"));
    let err = RoleMap::builder().role("big", many).build().unwrap_err();
    assert_eq!(err, too_large(RoleMapLimit::Expanded, Some("big")));
    assert!(
        err.to_string()
            .contains("expanding role 'big' goes past 1000000"),
        "{err}"
    );

    // Shallow but wide: 300 roles of 1 000 permissions, each inherited by
    // 300 other roles. 90 000 edges to write, 90 million copies to expand.
    let perms: Vec<String> = (0..1_000).map(|i| format!("p{i}")).collect();
    let bases: Vec<String> = (0..300).map(|i| format!("base{i}")).collect();
    let mut builder = RoleMap::builder();
    for base in &bases {
        builder = builder.role(base, perms.iter().cloned());
    }
    for i in 0..300 {
        builder = builder.inherits(format!("top{i}"), bases.iter().cloned());
    }
    let err = builder.build().unwrap_err();
    assert!(
        matches!(
            err,
            RoleMapError::TooLarge {
                limit: RoleMapLimit::Expanded,
                role: Some(ref r),
            } if r.starts_with("top")
        ),
        "{err:?}"
    );
}

#[test]
fn realistic_role_maps_load() {
    // 1 000 roles of 50 permissions: 100 departments of 10 levels.
    let mut roles = Vec::new();
    for d in 0..100 {
        for level in 0..10 {
            let perms: Vec<String> = (0..50)
                .map(|p| format!(r#""d{d}:l{level}:p{p}""#))
                .collect();
            let inherits = if level > 0 {
                format!(r#""d{d}-l{}""#, level - 1)
            } else {
                String::new()
            };
            roles.push(format!(
                r#""d{d}-l{level}": {{"permissions": [{}], "inherits": [{inherits}]}}"#,
                perms.join(",")
            ));
        }
    }
    let json = format!("{{{}}}", roles.join(","));
    let roles: RoleMap = serde_json::from_str(&json).unwrap();
    assert_eq!(roles.roles().count(), 1_000);
    assert_eq!(roles.permissions("d99-l9").unwrap().len(), 500);
    assert!(roles.grants("d42-l9", "d42:l0:p49"));
    assert!(!roles.grants("d42-l9", "d41:l0:p49"));
    assert!(roles.includes("d7-l5", "d7-l0"));
    // And the seeds' table, of course.
    let seed: RoleMap = serde_json::from_str(SEED_JSON).unwrap();
    assert_eq!(seed, seed_roles());
}

#[test]
fn duplicate_roles_in_configs_are_refused() {
    for config in [
        r#"{"admin": {"permissions": ["users:delete"]}, "admin": []}"#,
        r#"{"admin": [], "user": ["posts:read"], "admin": ["users:delete"]}"#,
    ] {
        let err = serde_json::from_str::<RoleMap>(config).unwrap_err();
        assert!(
            err.to_string().contains("role 'admin' is defined twice"),
            "{config}: {err}"
        );
    }
    // In code, several calls extend one role.
    let roles = RoleMap::builder()
        .role("admin", ["a"])
        .role("admin", ["b"])
        .build()
        .unwrap();
    assert_eq!(
        roles.permissions("admin").unwrap().collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn empty_and_odd_names_in_configs_are_refused() {
    for (config, expected) in [
        (r#"{"": ["users:delete"]}"#, "invalid role name ''"),
        (r#"{" admin": []}"#, "invalid role name ' admin'"),
        (r#"{"ad min": []}"#, "invalid role name 'ad min'"),
        (r#"{"admin\t": []}"#, r"invalid role name 'admin\t'"),
        (r#"{"admin\u0000": []}"#, r"invalid role name 'admin\0'"),
        (
            r#"{"admin\u001b[2J": []}"#,
            r"invalid role name 'admin\u{1b}[2J'",
        ),
        (r#"{"admin\u00a0": []}"#, r"invalid role name 'admin\u{a0}'"),
        (
            r#"{"admin": [""]}"#,
            "role 'admin' grants the invalid permission ''",
        ),
        (
            r#"{"admin": ["users: delete"]}"#,
            "role 'admin' grants the invalid permission 'users: delete'",
        ),
        (
            r#"{"admin": {"permissions": ["users:delete\n"]}}"#,
            r"role 'admin' grants the invalid permission 'users:delete\n'",
        ),
        (
            r#"{"user": [], "admin": {"inherits": [""]}}"#,
            "role 'admin' inherits the invalid role name ''",
        ),
        (
            r#"{"user": [], "admin": {"inherits": ["user "]}}"#,
            "role 'admin' inherits the invalid role name 'user '",
        ),
    ] {
        let message = serde_json::from_str::<RoleMap>(config)
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{config}: {message}");
        assert!(
            message.contains("names must be non-empty, without whitespace or control characters"),
            "{config}: {message}"
        );
    }
}

#[test]
fn empty_and_odd_names_in_code_are_refused() {
    let err = RoleMap::builder().role("", ["users:delete"]).build();
    assert_eq!(err, Err(RoleMapError::InvalidRole { role: "".into() }));
    let err = RoleMap::builder().role("a\u{7f}", ["x"]).build();
    assert_eq!(
        err,
        Err(RoleMapError::InvalidRole {
            role: "a\u{7f}".into()
        })
    );
    let err = RoleMap::builder().role("admin", ["ok", "not ok"]).build();
    assert_eq!(
        err,
        Err(RoleMapError::InvalidPermission {
            role: "admin".into(),
            permission: "not ok".into()
        })
    );
    let err = RoleMap::builder()
        .role("user", ["posts:read"])
        .inherits("admin", ["user", "\u{2003}"])
        .build();
    assert_eq!(
        err,
        Err(RoleMapError::InvalidParent {
            role: "admin".into(),
            parent: "\u{2003}".into()
        })
    );
}

#[test]
fn role_map_errors_never_dump_huge_names() {
    let a = "a".repeat(500_000);
    let spaced = format!("{a} b");
    for err in [
        RoleMap::builder().role(&spaced, ["x"]).build().unwrap_err(),
        RoleMap::builder()
            .role("admin", [&spaced])
            .build()
            .unwrap_err(),
        RoleMap::builder().inherits(&a, [&a]).build().unwrap_err(),
        RoleMap::builder()
            .inherits("admin", [&a])
            .build()
            .unwrap_err(),
    ] {
        let message = err.to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains(&format!("{}...", &a[..64])), "{message}");
    }
    let r = "r".repeat(100_000);
    let config = format!(r#"{{"{r}": [], "{r}": []}}"#);
    let message = serde_json::from_str::<RoleMap>(&config)
        .unwrap_err()
        .to_string();
    assert!(message.len() < 300, "{message}");
    assert!(message.contains("is defined twice"), "{message}");
}

#[tokio::test]
async fn role_map_policies_follow_inheritance() {
    let roles = seed_roles();
    let admin = api_key_user(&["admin"], &[]);
    let moderator = api_key_user(&["moderator"], &[]);
    let user = api_key_user(&["user"], &[]);
    let guest_with_grant = api_key_user(&["guest"], &["posts:delete"]);

    let delete_posts = roles.permission("posts:delete");
    assert!(decide(&delete_posts, &admin).await.is_ok());
    assert!(decide(&delete_posts, &moderator).await.is_ok());
    assert!(decide(&delete_posts, &guest_with_grant).await.is_ok());
    let d = decide(&delete_posts, &user).await.unwrap_err();
    assert_eq!(d.message(), "permission 'posts:delete' required");

    let manage_users = roles.all_permissions(["users:read", "users:delete"]);
    assert!(decide(&manage_users, &admin).await.is_ok());
    assert!(decide(&manage_users, &moderator).await.is_err());

    let moderators = roles.role("moderator");
    assert!(decide(&moderators, &admin).await.is_ok());
    assert!(decide(&moderators, &moderator).await.is_ok());
    let d = decide(&moderators, &user).await.unwrap_err();
    assert_eq!(d.message(), "role 'moderator' required");

    // A role the map does not know is still accepted by name.
    let guests = roles.any_role(["guest"]);
    assert!(decide(&guests, &guest_with_grant).await.is_ok());
    assert!(decide(&guests, &admin).await.is_err());

    assert!(roles.has_permission(&moderator, "users:read"));
    assert!(!roles.has_permission(&user, "users:read"));
}

#[test]
fn expand_adds_inherited_roles_and_permissions() {
    let roles = seed_roles();
    let id = api_key_user(&["moderator", "guest"], &["custom"]);
    let expanded = roles.expand(id);
    assert_eq!(
        expanded.roles().collect::<Vec<_>>(),
        ["guest", "moderator", "user"]
    );
    assert_eq!(
        expanded.permissions().collect::<Vec<_>>(),
        [
            "custom",
            "posts:delete",
            "posts:read",
            "posts:write",
            "users:read"
        ]
    );
    assert_eq!(roles.expand(expanded.clone()), expanded);
    let plain = api_key_user(&["guest"], &[]);
    assert_eq!(roles.expand(plain.clone()), plain);
}

#[test]
fn denied_renders_precisely() {
    let bearer = bearer_user(&[], &[]);
    let key = api_key_user(&[], &[]);
    let challenge = Challenge::bearer();
    let r = Denied::missing_permission("a:b").into_rejection(Some(&bearer), &challenge);
    assert_eq!(r.code(), "insufficient_scope");
    let r = Denied::missing_scope("read").into_rejection(Some(&key), &challenge);
    assert_eq!((r.code(), r.message()), ("forbidden", "insufficient scope"));
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    let r = Denied::missing_scope("read").into_detailed_rejection(Some(&key), &challenge);
    assert_eq!(
        (r.code(), r.message()),
        ("forbidden", "scope 'read' required")
    );
    let r = Denied::missing_role("admin").into_rejection(Some(&bearer), &challenge);
    assert_eq!(
        (r.code(), r.message()),
        ("forbidden", "insufficient permissions")
    );
    let www = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        www.starts_with(r#"Bearer error="insufficient_scope""#),
        "{www}"
    );
    assert!(!www.contains("admin"), "{www}");
    let r = Denied::missing_role("admin").into_detailed_rejection(Some(&bearer), &challenge);
    assert_eq!(r.message(), "role 'admin' required");
    assert!(!r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("admin"));
    let r = Denied::not_found("no post").into_rejection(Some(&bearer), &challenge);
    assert_eq!(
        (r.status(), r.message()),
        (StatusCode::NOT_FOUND, "no post")
    );
    let d = Denied::unavailable("secret detail");
    assert_eq!(d.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(std::error::Error::source(&d).is_some());
    assert!(!format!("{d:?}{d}").contains("secret"));
    assert_eq!(Denied::forbidden("no").required_scope(), None);
}
