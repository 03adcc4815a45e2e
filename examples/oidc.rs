//! A resource server for tokens of an identity provider (Keycloak, Auth0,
//! Entra ID, Okta, your own OpenID provider): the issuer is found by OpenID
//! Connect discovery, its keys (JWKS) are fetched, refreshed in the
//! background and rotated, and the provider's roles and scopes drive
//! `RequireLayer` policies.
//!
//! ```sh
//! OIDC_ISSUER=https://login.example.com/realms/app OIDC_AUDIENCE=my-api \
//!     cargo run --example oidc --features oidc,axum,authz
//! curl -i localhost:8080/public                                   # 200, no token needed
//! curl -i localhost:8080/me -H "Authorization: Bearer $TOKEN"     # 200: sub, scopes, roles
//! curl -i localhost:8080/admin -H "Authorization: Bearer $TOKEN"  # 403 without the role admin
//! curl -i localhost:8080/reports -H "Authorization: Bearer $TOKEN" # scope reports:read
//! curl -i localhost:8080/me                                       # 401, WWW-Authenticate: Bearer
//! ```
//!
//! | route          | who                              |
//! |----------------|----------------------------------|
//! | `GET /public`  | anyone                           |
//! | `GET /me`      | any valid token: `{sub, client_id, roles, scopes, permissions}` |
//! | `GET /admin`   | role `admin`                     |
//! | `GET /reports` | scope `reports:read`             |
//!
//! Configuration (environment):
//!
//! * `OIDC_ISSUER` (required): the issuer URL, exactly as the provider
//!   names itself in its discovery document and in the tokens' `iss`.
//! * `OIDC_AUDIENCE` (required): this API's identifier; tokens must name it
//!   in `aud`.
//! * `OIDC_ALLOW_HTTP_LOOPBACK=1`: accept a plain `http` issuer on
//!   127.0.0.1 / `localhost` (a provider on your machine); never for other
//!   hosts.
//! * `OIDC_ROLES_CLAIMS` (default `roles,role`): top-level claims holding
//!   roles, comma separated.
//! * `OIDC_CLAIM_MAPPING`: where the provider puts roles, permissions and
//!   scopes, as a preset of [`ClaimMapping`]: `keycloak:<client-id>`,
//!   `auth0:<namespace>`, `entra`, `okta` or `cognito`. Replaces
//!   `OIDC_ROLES_CLAIMS`.
//! * `OIDC_TOKEN_TYPES` (e.g. `at+jwt`): accept only tokens whose JOSE
//!   header `typ` is one of these (RFC 9068 access tokens), so that an ID
//!   token cannot be used as an access token. Unset: not checked.
//! * Key refresh, in seconds (fractions allowed): `OIDC_REFRESH_MIN`
//!   (default 60) and `OIDC_REFRESH_MAX` (default 86400) bound the
//!   provider's `Cache-Control: max-age`; `OIDC_UNKNOWN_KID_INTERVAL`
//!   (default 30): at most one refresh per interval for tokens signed by a
//!   key not yet known; `OIDC_MAX_STALENESS` (default 21600): how long the
//!   last keys are used while the provider is unreachable, after which
//!   every token is answered `503`.
//! * `LISTEN` (`ip:port`), else `PORT` on 127.0.0.1 or `--addr ip:port`;
//!   default 127.0.0.1:8080.
//!
//! Startup fails, naming the cause, when discovery fails (unreachable
//! provider, a document naming another issuer, no allowed algorithm, a
//! JWKS without a usable key).

#[path = "util/addr.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_auth::authz::{role, scope, RequireLayer};
use tower_auth::extract::Auth;
use tower_auth::jwt::{
    ClaimMapping, ConfigError, Discovery, JwtAuthenticator, OidcError, RemoteJwks,
};
use tower_auth::{AuthLayer, Identity};

/// The example's settings; see the module docs for their variables.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `OIDC_ISSUER`.
    pub(crate) issuer: String,
    /// `OIDC_AUDIENCE`.
    pub(crate) audience: String,
    /// `OIDC_ALLOW_HTTP_LOOPBACK`.
    pub(crate) allow_http_loopback: bool,
    /// `OIDC_ROLES_CLAIMS`.
    pub(crate) roles_claims: Vec<String>,
    /// `OIDC_CLAIM_MAPPING`, checked by [`claim_mapping`].
    pub(crate) claim_mapping: Option<String>,
    /// `OIDC_TOKEN_TYPES`.
    pub(crate) token_types: Option<Vec<String>>,
    /// `OIDC_REFRESH_MIN`.
    pub(crate) refresh_min: Duration,
    /// `OIDC_REFRESH_MAX`.
    pub(crate) refresh_max: Duration,
    /// `OIDC_UNKNOWN_KID_INTERVAL`.
    pub(crate) unknown_kid_interval: Duration,
    /// `OIDC_MAX_STALENESS`.
    pub(crate) max_staleness: Duration,
}

impl Config {
    /// Reads the settings through `var` (the environment in `main`).
    ///
    /// # Errors
    ///
    /// A message naming the missing or malformed variable.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let required = |name: &str| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("{name} is required"))
        };
        let seconds = |name: &str, default: u64| match var(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("{name} must be a number of seconds, not {v:?}")),
        };
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(Config {
            issuer: required("OIDC_ISSUER")?,
            audience: required("OIDC_AUDIENCE")?,
            allow_http_loopback: var("OIDC_ALLOW_HTTP_LOOPBACK")
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes")),
            roles_claims: var("OIDC_ROLES_CLAIMS")
                .map(list)
                .unwrap_or_else(|| vec!["roles".into(), "role".into()]),
            claim_mapping: var("OIDC_CLAIM_MAPPING")
                .map(|spec| claim_mapping(&spec).map(|_| spec))
                .transpose()?,
            token_types: var("OIDC_TOKEN_TYPES").map(list),
            refresh_min: seconds("OIDC_REFRESH_MIN", 60)?,
            refresh_max: seconds("OIDC_REFRESH_MAX", 24 * 3600)?,
            unknown_kid_interval: seconds("OIDC_UNKNOWN_KID_INTERVAL", 30)?,
            max_staleness: seconds("OIDC_MAX_STALENESS", 6 * 3600)?,
        })
    }
}

/// The [`ClaimMapping`] preset named by `OIDC_CLAIM_MAPPING`.
///
/// # Errors
///
/// A message naming the presets, for an unknown one.
pub(crate) fn claim_mapping(spec: &str) -> Result<ClaimMapping, String> {
    match spec.trim().split_once(':') {
        Some(("keycloak", client)) if !client.is_empty() => Ok(ClaimMapping::keycloak(client)),
        Some(("auth0", namespace)) if !namespace.is_empty() => Ok(ClaimMapping::auth0(namespace)),
        None if spec.trim() == "entra" => Ok(ClaimMapping::entra()),
        None if spec.trim() == "okta" => Ok(ClaimMapping::okta()),
        None if spec.trim() == "cognito" => Ok(ClaimMapping::cognito()),
        _ => Err(format!(
            "OIDC_CLAIM_MAPPING must be keycloak:<client-id>, auth0:<namespace>, entra, okta or cognito, not {spec:?}"
        )),
    }
}

/// The claims read beyond the [`Identity`]: who the token was issued to.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    client_id: Option<String>,
    /// Entra ID's name for the client.
    #[serde(default)]
    azp: Option<String>,
}

/// Why the example cannot start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// Discovery or the first JWKS fetch failed.
    #[error("discovery failed: {0}")]
    Discovery(#[from] OidcError),
    /// The authenticator would refuse every token.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A setting is malformed.
    #[error("invalid setting: {0}")]
    Setting(String),
}

/// Discovers the provider and builds the authenticator.
///
/// # Errors
///
/// Why discovery failed, or the configuration is unusable.
pub(crate) async fn authenticator(config: &Config) -> Result<JwtAuthenticator<Claims>, StartError> {
    // The JWKS settings; its URL comes from the discovery document.
    let jwks = RemoteJwks::builder("")
        .allow_loopback_http(config.allow_http_loopback)
        .refresh_bounds(config.refresh_min, config.refresh_max)
        .unknown_kid_interval(config.unknown_kid_interval)
        .max_staleness(config.max_staleness);
    let provider = Discovery::new(config.issuer.clone())
        .jwks_settings(jwks)
        .discover()
        .await?;
    let mut jwt = JwtAuthenticator::<Claims>::from_source(provider.jwks().clone())
        // The issuer is bound to its keys: a token of another issuer is
        // refused even if signed by a key this provider also publishes.
        .issuers([provider.issuer()])
        .audiences([config.audience.as_str()])
        .roles_claims(config.roles_claims.iter().map(String::as_str))
        .realm("api");
    if let Some(spec) = &config.claim_mapping {
        jwt = jwt.claim_mapping(claim_mapping(spec).map_err(StartError::Setting)?);
    }
    if let Some(types) = &config.token_types {
        jwt = jwt.header_types(types.iter().map(String::as_str));
    }
    // `build` checks the configuration: an issuer is set, some algorithm
    // is allowed.
    Ok(jwt.build()?)
}

async fn public() -> Json<Value> {
    Json(json!({"message": "anyone may read this"}))
}

async fn me(identity: Identity, Auth(claims): Auth<Claims>) -> Json<Value> {
    Json(json!({
        "sub": identity.subject(),
        "client_id": claims.client_id.or(claims.azp),
        "roles": identity.roles().collect::<Vec<_>>(),
        "scopes": identity.scopes().collect::<Vec<_>>(),
        "permissions": identity.permissions().collect::<Vec<_>>(),
    }))
}

async fn admin(identity: Identity) -> Json<Value> {
    Json(json!({"message": format!("hello admin {}", identity.subject())}))
}

async fn reports() -> Json<Value> {
    Json(json!({"reports": [{"id": 1, "title": "Q3"}]}))
}

/// The routes, protected by `jwt`.
pub(crate) fn router(jwt: JwtAuthenticator<Claims>) -> Router {
    let admin = Router::new()
        .route("/admin", get(admin))
        .route_layer(RequireLayer::new(role("admin")));
    let reports = Router::new()
        .route("/reports", get(reports))
        .route_layer(RequireLayer::new(scope("reports:read")));
    Router::new()
        .route("/me", get(me))
        .merge(admin)
        .merge(reports)
        .layer(AuthLayer::new(jwt))
        // Added after the layer: not behind it.
        .route("/public", get(public))
}

/// Discovers the provider and returns the app.
///
/// # Errors
///
/// As [`authenticator`].
pub(crate) async fn app(config: &Config) -> Result<Router, StartError> {
    Ok(router(authenticator(config).await?))
}

fn listen_addr() -> Result<SocketAddr, String> {
    match std::env::var("LISTEN") {
        Ok(addr) => addr
            .parse()
            .map_err(|_| format!("LISTEN must be ip:port, not {addr:?}")),
        Err(_) => Ok(util::listen_addr()),
    }
}

/// Reads the configuration, discovers the provider and serves.
async fn run() -> Result<(), String> {
    let config = Config::from_vars(|name| std::env::var(name).ok())?;
    let addr = listen_addr()?;
    let app = app(&config)
        .await
        .map_err(|e| format!("OIDC_ISSUER {}: {e}", config.issuer))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!(
        "listening on http://{addr}, tokens of {} for {}",
        config.issuer, config.audience
    );
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
