//! OpenAPI security schemes and per-route security requirements, for
//! [`utoipa`] (feature `openapi`).
//!
//! * [`SecuritySchemes`] declares the schemes the API accepts under
//!   `components.securitySchemes`: HTTP bearer (`bearerFormat: JWT` for
//!   JWTs), API keys in a header, query parameter or cookie (session
//!   cookies too), HTTP Basic, mutual TLS, OpenID Connect discovery and
//!   OAuth 2.0 flows with their scopes.
//!   [`SecuritySchemes::from_authenticator`] reads them from a configured
//!   [`Authenticator`]'s `WWW-Authenticate` challenges, so that the
//!   document follows the stack (`jwt.or(api_key)` declares both).
//! * [`RouteSecurity`] adds to operations the `security` requirements of
//!   the policies protecting them: which schemes, which scopes (or, for
//!   schemes other than OAuth 2.0 / OpenID Connect, which roles, as
//!   OpenAPI 3.1 allows), whether anonymous access is also allowed, and the
//!   `401` / `403` responses.
//!
//! Both implement [`utoipa::Modify`]: call `modify(&mut doc)` on a document
//! generated with `#[derive(OpenApi)]` (`ApiDoc::openapi()`) or built by
//! hand, or call them from the unit struct you name in
//! `#[openapi(modifiers(&Security))]`. No UI assets are involved; serve the
//! JSON yourself.
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "jwt", feature = "api-key"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use http::Method;
//! use tower_auth::api_key::{ApiKeyAuthenticator, MemoryApiKeyStore};
//! use tower_auth::jwt::TokenIssuer;
//! use tower_auth::openapi::{Requirement, RouteSecurity, SecuritySchemes};
//! use tower_auth::Authenticator;
//! use utoipa::openapi::{Info, OpenApi, Paths};
//! use utoipa::Modify;
//!
//! let issuer = TokenIssuer::hs256(b"an example secret of at least 32 bytes!")?.build()?;
//! let jwt = issuer.authenticator::<serde_json::Value>();
//! let keys = ApiKeyAuthenticator::new(MemoryApiKeyStore::<serde_json::Value>::new());
//!
//! // Schemes named after their challenges: "bearer" and "apiKey".
//! let schemes = SecuritySchemes::from_authenticator(&jwt.or(keys)).bearer_format("JWT");
//! let routes = RouteSecurity::new()
//!     .route(Method::GET, "/me", Requirement::any_of(["bearer", "apiKey"]))
//!     .route(Method::DELETE, "/posts/{id}", Requirement::scheme("bearer").scopes(["posts:delete"]))
//!     .public(Method::GET, "/healthz");
//!
//! let mut doc = OpenApi::new(Info::new("example", "1.0.0"), Paths::new());
//! schemes.modify(&mut doc);
//! routes.modify(&mut doc);
//!
//! let json = serde_json::to_value(&doc)?;
//! assert_eq!(json["components"]["securitySchemes"]["bearer"]["bearerFormat"], "JWT");
//! assert_eq!(json["components"]["securitySchemes"]["apiKey"]["name"], "x-api-key");
//! assert_eq!(json["paths"]["/posts/{id}"]["delete"]["security"][0]["bearer"][0], "posts:delete");
//! assert_eq!(json["paths"]["/healthz"]["get"]["security"], serde_json::json!([]));
//! # Ok(()) }
//! # #[cfg(not(all(feature = "jwt", feature = "api-key")))]
//! # fn main() {}
//! ```

use std::collections::BTreeMap;

use http::header::WWW_AUTHENTICATE;
use http::Method;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Flow, Http, HttpAuthScheme, OAuth2, OpenIdConnect, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::{Components, OpenApi, PathItem, Response};
use utoipa::Modify;

use crate::auth::Authenticator;
use crate::rejection::{Challenge, Rejection};
use crate::www_authenticate::parse_challenges;

/// The security schemes an API accepts, by name: `components.securitySchemes`.
/// See the [module docs](crate::openapi).
#[derive(Clone, Default)]
pub struct SecuritySchemes {
    schemes: BTreeMap<String, SecurityScheme>,
}

impl std::fmt::Debug for SecuritySchemes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuritySchemes")
            .field("names", &self.schemes.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn http(scheme: HttpAuthScheme, description: &str) -> SecurityScheme {
    let mut http = Http::new(scheme);
    http.description = Some(description.to_owned());
    SecurityScheme::Http(http)
}

fn api_key(key: ApiKey) -> SecurityScheme {
    SecurityScheme::ApiKey(key)
}

impl SecuritySchemes {
    /// No schemes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schemes of `authenticator`, read from its `WWW-Authenticate`
    /// challenges (see [`from_challenges`](Self::from_challenges)).
    pub fn from_authenticator<A: Authenticator>(authenticator: &A) -> Self {
        Self::from_challenges(&authenticator.challenges())
    }

    /// The schemes of a stack's challenges:
    ///
    /// | challenge                         | scheme name | declared as |
    /// |-----------------------------------|-------------|-------------|
    /// | `Bearer` (opaque tokens, JWTs)    | `bearer`    | `http`, `bearer` |
    /// | `ApiKey header="<name>"`          | `apiKey`    | `apiKey` in header `<name>` |
    /// | `Basic`                           | `basic`     | `http`, `basic` |
    /// | `Cookie` (sessions)               | `session`   | `apiKey` in cookie `id` (rename it with [`session_cookie`](Self::session_cookie)) |
    /// | `ClientCertificate` (mTLS)        | `mutualTLS` | `mutualTLS` |
    ///
    /// Other schemes (`DPoP`, custom ones) have no OpenAPI type and are left
    /// out; add them with [`scheme`](Self::scheme).
    pub fn from_challenges(challenges: &[Challenge]) -> Self {
        // The challenges as the stack sends them: `Challenge` exposes its
        // scheme only, the rendered header has the parameters too.
        let rendered = Rejection::unauthenticated(challenges).into_response();
        let parsed = rendered
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok().and_then(parse_challenges))
            .flatten();
        let mut out = Self::new();
        for challenge in parsed {
            let scheme = challenge.scheme.as_str();
            out = if scheme.eq_ignore_ascii_case("bearer") {
                out.bearer("bearer")
            } else if scheme.eq_ignore_ascii_case("apikey") {
                let header = challenge.param("header").unwrap_or("x-api-key");
                out.api_key_header("apiKey", header)
            } else if scheme.eq_ignore_ascii_case("basic") {
                out.basic("basic")
            } else if scheme.eq_ignore_ascii_case("cookie") {
                out.session_cookie("session", "id")
            } else if scheme.eq_ignore_ascii_case("clientcertificate") {
                out.mutual_tls("mutualTLS")
            } else {
                out
            };
        }
        out
    }

    /// Adds (or replaces) scheme `name`.
    pub fn scheme(mut self, name: impl Into<String>, scheme: SecurityScheme) -> Self {
        self.schemes.insert(name.into(), scheme);
        self
    }

    /// `Authorization: Bearer` with opaque tokens.
    pub fn bearer(self, name: impl Into<String>) -> Self {
        self.scheme(
            name,
            http(
                HttpAuthScheme::Bearer,
                "A bearer token in the Authorization header (RFC 6750).",
            ),
        )
    }

    /// `Authorization: Bearer` with JWTs (`bearerFormat: JWT`).
    pub fn bearer_jwt(self, name: impl Into<String>) -> Self {
        self.bearer(name).bearer_format("JWT")
    }

    /// Sets `bearerFormat` on every HTTP bearer scheme (e.g. `"JWT"` after
    /// [`from_authenticator`](Self::from_authenticator) on a JWT stack).
    pub fn bearer_format(mut self, format: &str) -> Self {
        for scheme in self.schemes.values_mut() {
            if let SecurityScheme::Http(http) = scheme {
                if http.scheme == HttpAuthScheme::Bearer {
                    http.bearer_format = Some(format.to_owned());
                }
            }
        }
        self
    }

    /// An API key in request header `header`.
    pub fn api_key_header(self, name: impl Into<String>, header: &str) -> Self {
        self.scheme(
            name,
            api_key(ApiKey::Header(ApiKeyValue::with_description(
                header,
                "An API key in a request header.",
            ))),
        )
    }

    /// An API key (or a bearer token, for browser WebSockets) in query
    /// parameter `param`.
    pub fn api_key_query(self, name: impl Into<String>, param: &str) -> Self {
        self.scheme(
            name,
            api_key(ApiKey::Query(ApiKeyValue::with_description(
                param,
                "A credential in a query parameter.",
            ))),
        )
    }

    /// A credential in cookie `cookie` (a JWT in a cookie).
    pub fn api_key_cookie(self, name: impl Into<String>, cookie: &str) -> Self {
        self.scheme(
            name,
            api_key(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie,
                "A credential in a cookie.",
            ))),
        )
    }

    /// A session cookie named `cookie`.
    pub fn session_cookie(self, name: impl Into<String>, cookie: &str) -> Self {
        self.scheme(
            name,
            api_key(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie,
                "A session cookie, set by the sign-in endpoint.",
            ))),
        )
    }

    /// HTTP Basic (RFC 7617).
    pub fn basic(self, name: impl Into<String>) -> Self {
        self.scheme(
            name,
            http(HttpAuthScheme::Basic, "HTTP Basic credentials (RFC 7617)."),
        )
    }

    /// Mutual TLS: a client certificate (OpenAPI 3.1 `mutualTLS`).
    pub fn mutual_tls(self, name: impl Into<String>) -> Self {
        self.scheme(
            name,
            SecurityScheme::MutualTls {
                description: Some("A TLS client certificate.".to_owned()),
                extensions: None,
            },
        )
    }

    /// OpenID Connect, with the provider's discovery document URL
    /// (`https://issuer/.well-known/openid-configuration`).
    pub fn openid_connect(self, name: impl Into<String>, discovery_url: &str) -> Self {
        self.scheme(
            name,
            SecurityScheme::OpenIdConnect(OpenIdConnect::new(discovery_url)),
        )
    }

    /// OAuth 2.0 with `flows` (authorization code, client credentials...),
    /// each listing its scopes: what `scope(...)` policies require.
    pub fn oauth2(self, name: impl Into<String>, flows: impl IntoIterator<Item = Flow>) -> Self {
        self.scheme(name, SecurityScheme::OAuth2(OAuth2::new(flows)))
    }

    /// The names of the schemes.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.schemes.keys().map(String::as_str)
    }

    /// Scheme `name`.
    pub fn get(&self, name: &str) -> Option<&SecurityScheme> {
        self.schemes.get(name)
    }
}

impl Modify for SecuritySchemes {
    /// Adds the schemes to `components.securitySchemes`, replacing schemes
    /// of the same names.
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        for (name, scheme) in &self.schemes {
            components.add_security_scheme(name.clone(), scheme.clone());
        }
    }
}

/// What one operation requires: one of several schemes, with scopes (or
/// roles) each. See the [module docs](crate::openapi).
#[derive(Clone, Debug, Default)]
pub struct Requirement {
    schemes: Vec<String>,
    scopes: Vec<String>,
    anonymous: bool,
}

impl Requirement {
    /// Scheme `name`, without scopes.
    pub fn scheme(name: impl Into<String>) -> Self {
        Self::any_of([name])
    }

    /// Any one of the schemes `names` (an `a.or(b)` authenticator).
    pub fn any_of<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement {
            schemes: names.into_iter().map(Into::into).collect(),
            scopes: Vec::new(),
            anonymous: false,
        }
    }

    /// The scopes (`scope(...)` / `all_scopes(...)` policies) or, for
    /// schemes other than OAuth 2.0 and OpenID Connect, the roles
    /// (`role(...)` policies) the operation requires, with every scheme.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Anonymous requests are allowed too (an
    /// [`AuthLayer::optional`](crate::AuthLayer::optional) route): adds the
    /// empty requirement `{}`.
    pub fn or_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    fn to_openapi(&self) -> Vec<SecurityRequirement> {
        let mut out: Vec<SecurityRequirement> = self
            .schemes
            .iter()
            .map(|name| SecurityRequirement::new(name.clone(), self.scopes.clone()))
            .collect();
        if self.anonymous {
            out.push(SecurityRequirement::default());
        }
        out
    }

    /// Whether a request can be refused with `403`: the requirement names
    /// scopes or roles.
    fn can_forbid(&self) -> bool {
        !self.scopes.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Rule {
    method: Method,
    path: String,
    /// `None`: public, `security: []`.
    requirement: Option<Requirement>,
}

/// The `security` of each operation: a [`Modify`] that sets it on the
/// operations of the document (creating operations the document lacks,
/// with only their security and its responses). See the
/// [module docs](crate::openapi).
#[derive(Clone, Debug, Default)]
pub struct RouteSecurity {
    rules: Vec<Rule>,
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        Method::TRACE => HttpMethod::Trace,
        _ => return None,
    })
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &HttpMethod) -> &'a mut Option<Operation> {
    match method {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Post => &mut item.post,
        HttpMethod::Put => &mut item.put,
        HttpMethod::Delete => &mut item.delete,
        HttpMethod::Patch => &mut item.patch,
        HttpMethod::Head => &mut item.head,
        HttpMethod::Options => &mut item.options,
        HttpMethod::Trace => &mut item.trace,
    }
}

impl RouteSecurity {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// `method path` requires `requirement`. Paths are written as in the
    /// OpenAPI document (`/posts/{id}`, as axum 0.8 routes are).
    pub fn route(
        mut self,
        method: Method,
        path: impl Into<String>,
        requirement: Requirement,
    ) -> Self {
        self.rules.push(Rule {
            method,
            path: path.into(),
            requirement: Some(requirement),
        });
        self
    }

    /// `method path` needs no credentials: `security: []`, which overrides
    /// a document-wide requirement.
    pub fn public(mut self, method: Method, path: impl Into<String>) -> Self {
        self.rules.push(Rule {
            method,
            path: path.into(),
            requirement: None,
        });
        self
    }
}

impl Modify for RouteSecurity {
    /// Sets `security` on each rule's operation, and its `401` (and, with
    /// scopes or roles, `403`) responses. Methods OpenAPI has no field for
    /// (`CONNECT`, extensions) are skipped.
    fn modify(&self, openapi: &mut OpenApi) {
        for rule in &self.rules {
            let Some(method) = http_method(&rule.method) else {
                continue;
            };
            let item = openapi.paths.paths.entry(rule.path.clone()).or_default();
            let operation = operation_mut(item, &method).get_or_insert_with(Operation::new);
            match &rule.requirement {
                None => operation.security = Some(Vec::new()),
                Some(requirement) => {
                    operation.security = Some(requirement.to_openapi());
                    let responses = &mut operation.responses.responses;
                    responses.entry("401".to_owned()).or_insert_with(|| {
                        Response::new(
                            "Missing or invalid credentials: `WWW-Authenticate` names the \
                             accepted schemes; JSON body `{\"error\", \"message\"}`.",
                        )
                        .into()
                    });
                    if requirement.can_forbid() {
                        responses.entry("403".to_owned()).or_insert_with(|| {
                            Response::new(
                                "Authenticated without the required scopes or roles \
                                 (`insufficient_scope` for bearer tokens).",
                            )
                            .into()
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use utoipa::openapi::security::{AuthorizationCode, Scopes};
    use utoipa::openapi::{Info, Paths};

    use super::*;

    fn document(modifiers: &[&dyn Modify]) -> Value {
        let mut doc = OpenApi::new(Info::new("t", "1"), Paths::new());
        for m in modifiers {
            m.modify(&mut doc);
        }
        serde_json::to_value(&doc).unwrap()
    }

    #[test]
    fn every_scheme_type_serializes_as_openapi_3_1() {
        let schemes = SecuritySchemes::new()
            .bearer_jwt("jwt")
            .api_key_header("key", "x-api-key")
            .api_key_query("ws", "access_token")
            .api_key_cookie("jwtCookie", "token")
            .basic("basic")
            .mutual_tls("mtls")
            .openid_connect(
                "oidc",
                "https://id.example/.well-known/openid-configuration",
            )
            .oauth2(
                "oauth",
                [Flow::AuthorizationCode(AuthorizationCode::new(
                    "https://id.example/authorize",
                    "https://id.example/token",
                    Scopes::from_iter([("posts:read", "read posts")]),
                ))],
            );
        let doc = document(&[&schemes]);
        assert_eq!(doc["openapi"], "3.1.0");
        let s = &doc["components"]["securitySchemes"];
        assert_eq!(s["jwt"]["type"], "http");
        assert_eq!(s["jwt"]["scheme"], "bearer");
        assert_eq!(s["jwt"]["bearerFormat"], "JWT");
        assert_eq!(s["key"]["type"], "apiKey");
        assert_eq!(s["key"]["in"], "header");
        assert_eq!(s["key"]["name"], "x-api-key");
        assert_eq!(s["ws"]["in"], "query");
        assert_eq!(s["ws"]["name"], "access_token");
        assert_eq!(s["jwtCookie"]["in"], "cookie");
        assert_eq!(s["basic"]["scheme"], "basic");
        assert_eq!(s["mtls"]["type"], "mutualTLS");
        assert_eq!(s["oidc"]["type"], "openIdConnect");
        assert_eq!(
            s["oidc"]["openIdConnectUrl"],
            "https://id.example/.well-known/openid-configuration"
        );
        assert_eq!(s["oauth"]["type"], "oauth2");
        assert_eq!(
            s["oauth"]["flows"]["authorizationCode"]["scopes"]["posts:read"],
            "read posts"
        );
    }

    #[test]
    fn challenges_map_to_schemes_and_unknown_ones_are_left_out() {
        let challenges = [
            Challenge::bearer().param("realm", "api"),
            Challenge::new("ApiKey").param("header", "x-key"),
            Challenge::new("Basic"),
            Challenge::new("Cookie").param("realm", "app"),
            Challenge::new("ClientCertificate"),
            Challenge::new("DPoP").param("algs", "ES256"),
        ];
        let schemes = SecuritySchemes::from_challenges(&challenges);
        assert_eq!(
            schemes.names().collect::<Vec<_>>(),
            ["apiKey", "basic", "bearer", "mutualTLS", "session"]
        );
        let doc = document(&[&schemes]);
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKey"]["name"],
            "x-key"
        );
    }

    #[test]
    fn routes_get_requirements_alternatives_anonymous_and_responses() {
        let routes = RouteSecurity::new()
            .route(
                Method::GET,
                "/posts",
                Requirement::any_of(["bearer", "session"]).or_anonymous(),
            )
            .route(
                Method::DELETE,
                "/posts/{id}",
                Requirement::scheme("oauth").scopes(["posts:delete"]),
            )
            .public(Method::GET, "/healthz")
            .route(Method::CONNECT, "/tunnel", Requirement::scheme("bearer"));
        let doc = document(&[&routes]);
        let paths = &doc["paths"];
        assert_eq!(
            paths["/posts"]["get"]["security"],
            json!([{"bearer": []}, {"session": []}, {}])
        );
        assert!(paths["/posts"]["get"]["responses"]["401"].is_object());
        assert!(paths["/posts"]["get"]["responses"]["403"].is_null());
        assert_eq!(
            paths["/posts/{id}"]["delete"]["security"],
            json!([{"oauth": ["posts:delete"]}])
        );
        assert!(paths["/posts/{id}"]["delete"]["responses"]["403"].is_object());
        assert_eq!(paths["/healthz"]["get"]["security"], json!([]));
        assert!(paths["/tunnel"].is_null());
    }

    #[test]
    fn existing_operations_keep_their_content() {
        let mut doc = OpenApi::new(Info::new("t", "1"), Paths::new());
        let mut op = Operation::new();
        op.summary = Some("the user".to_owned());
        op.responses
            .responses
            .insert("401".to_owned(), Response::new("custom").into());
        doc.paths
            .add_path_operation("/me", vec![HttpMethod::Get], op);
        RouteSecurity::new()
            .route(Method::GET, "/me", Requirement::scheme("bearer"))
            .modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["paths"]["/me"]["get"]["summary"], "the user");
        assert_eq!(
            json["paths"]["/me"]["get"]["responses"]["401"]["description"],
            "custom"
        );
        assert_eq!(
            json["paths"]["/me"]["get"]["security"],
            json!([{"bearer": []}])
        );
    }
}
