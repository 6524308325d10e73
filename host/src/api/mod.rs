//! The HTTP API (axum), as `shared/API.md` fixes it: JSON:API documents, bearer auth,
//! typed errors. [`routes`] is the one table of routes; the router and the served
//! OpenAPI document are both built from it, so every route is documented.

mod audit;
mod auth;
mod blueprints;
mod catalog;
mod configs;
mod connections;
mod document;
mod error;
mod executions;
mod layers;
mod oauth;
mod tenants;
mod vault;

pub use error::ApiError;

use crate::app::App;
use axum::http::{Method, StatusCode};
use axum::routing::{self, MethodRouter};
use axum::Router;
use serde_json::json;
use std::sync::Arc;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, ResponseBuilder};

/// What every handler receives.
pub type AppState = Arc<App>;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token.
    Anyone,
    /// A tenant token.
    Tenant,
    /// The admin token.
    Admin,
}

/// One route: method, path, documentation and handler.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// axum / OpenAPI path template.
    pub path: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    handler: MethodRouter<AppState>,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        handler,
    }
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    use Access::*;
    use Method as M;
    vec![
        route(
            M::GET,
            "/healthz",
            Anyone,
            "Liveness",
            routing::get(healthz),
        ),
        route(
            M::GET,
            "/api/openapi.json",
            Anyone,
            "This OpenAPI document",
            routing::get(openapi_json),
        ),
        route(
            M::POST,
            "/admin/tenants",
            Admin,
            "Create a tenant; returns its token once",
            routing::post(tenants::create),
        ),
        route(
            M::GET,
            "/api/connectors",
            Tenant,
            "The connector catalog",
            routing::get(catalog::connectors),
        ),
        route(
            M::GET,
            "/api/plugins",
            Tenant,
            "Loaded plugins with version and wasm hash",
            routing::get(catalog::plugins),
        ),
        route(
            M::POST,
            "/api/connections",
            Tenant,
            "Create a connection",
            routing::post(connections::create),
        ),
        route(
            M::GET,
            "/api/connections",
            Tenant,
            "List the caller's connections",
            routing::get(connections::list),
        ),
        route(
            M::GET,
            "/api/connections/{id}",
            Tenant,
            "Get a connection",
            routing::get(connections::get),
        ),
        route(
            M::DELETE,
            "/api/connections/{id}",
            Tenant,
            "Delete a connection and its credential",
            routing::delete(connections::delete),
        ),
        route(
            M::PUT,
            "/api/connections/{id}/credential",
            Tenant,
            "Seal a credential into the vault",
            routing::put(connections::put_credential),
        ),
        route(
            M::POST,
            "/api/connections/{id}/vend",
            Tenant,
            "Vend the connection's credential",
            routing::post(connections::vend),
        ),
        route(
            M::POST,
            "/api/connections/{id}/health",
            Tenant,
            "Run the connector's health check",
            routing::post(connections::health),
        ),
        route(
            M::POST,
            "/api/connections/{id}/capabilities/{capabilityKey}/execute",
            Tenant,
            "Run a capability on this connection",
            routing::post(executions::on_connection),
        ),
        route(
            M::PUT,
            "/admin/blueprints/{name}/versions/{version}",
            Admin,
            "Publish an immutable AppBlueprintSpec version",
            routing::put(blueprints::put),
        ),
        route(
            M::GET,
            "/api/blueprints",
            Tenant,
            "Every blueprint version",
            routing::get(blueprints::list),
        ),
        route(
            M::GET,
            "/api/blueprints/{name}/versions/{version}",
            Tenant,
            "One blueprint version",
            routing::get(blueprints::get),
        ),
        route(
            M::POST,
            "/api/tenant-configs",
            Tenant,
            "Post a TenantAppConfig: validated against its blueprint, stored as a new draft version",
            routing::post(configs::create),
        ),
        route(
            M::GET,
            "/api/tenant-configs",
            Tenant,
            "The caller's config versions (`?blueprint=`)",
            routing::get(configs::list),
        ),
        route(
            M::GET,
            "/api/tenant-configs/{blueprint}/{environment}/versions/{version}",
            Tenant,
            "One config version",
            routing::get(configs::get),
        ),
        route(
            M::POST,
            "/api/tenant-configs/{blueprint}/{environment}/versions/{version}/preview",
            Tenant,
            "Move a draft to preview",
            routing::post(configs::preview),
        ),
        route(
            M::POST,
            "/api/tenant-configs/{blueprint}/{environment}/versions/{version}/publish",
            Tenant,
            "Publish a version (validated again); the previous one is archived",
            routing::post(configs::publish),
        ),
        route(
            M::GET,
            "/api/apps/{blueprint}/resolved",
            Tenant,
            "The ResolvedAppConfig of the published config (`?environment=`)",
            routing::get(configs::resolved),
        ),
        route(
            M::POST,
            "/api/capabilities/{capabilityKey}/execute",
            Tenant,
            "executeCapability: resolve the binding, apply policy, rate limits and failover, run the connector",
            routing::post(executions::capability),
        ),
        route(
            M::GET,
            "/api/connections/{id}/oauth/authorize",
            Tenant,
            "Start an OAuth authorization: 302 to the provider's consent page (state, PKCE)",
            routing::get(oauth::authorize),
        ),
        route(
            M::PUT,
            "/api/connections/{id}/oauth/client",
            Tenant,
            "Seal a byok connection's own OAuth client id and secret",
            routing::put(oauth::put_client),
        ),
        route(
            M::GET,
            "/oauth/callback",
            Anyone,
            "The provider's redirect: checks the state, exchanges the code, seals the tokens",
            routing::get(oauth::callback),
        ),
        route(
            M::GET,
            "/admin/vault",
            Admin,
            "Key-encryption keys with how many credentials each wraps",
            routing::get(vault::keys),
        ),
        route(
            M::POST,
            "/admin/vault/rotate",
            Admin,
            "Add a primary key-encryption key and re-wrap every data key, online",
            routing::post(vault::rotate),
        ),
        route(
            M::POST,
            "/admin/vault/keys/{keyId}/retire",
            Admin,
            "Retire a key-encryption key nothing uses",
            routing::post(vault::retire),
        ),
        route(
            M::GET,
            "/api/audit",
            Tenant,
            "The caller's audit records, newest first (`connectionId`, `capability`, `since`, `until`, `cursor`, `limit`)",
            routing::get(audit::list),
        ),
    ]
}

/// The application router.
pub fn router(app: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    let router = router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024));
    layers::apply(router).with_state(app)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn openapi_json() -> axum::Json<OpenApi> {
    axum::Json(openapi())
}

/// The OpenAPI document, built from [`routes`].
pub fn openapi() -> OpenApi {
    let mut paths = Paths::new();
    for route in routes() {
        let mut operation = OperationBuilder::new()
            .summary(Some(route.summary))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("JSON:API document")
                    .build(),
            )
            .response(
                "4XX",
                ResponseBuilder::new()
                    .description("JSON:API error document with a stable `code`")
                    .build(),
            );
        if route.access != Access::Anyone {
            operation =
                operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
            operation = operation.tag(match route.access {
                Access::Admin => "admin",
                _ => "tenant",
            });
        }
        let method = match route.method {
            Method::GET => HttpMethod::Get,
            Method::POST => HttpMethod::Post,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            Method::PATCH => HttpMethod::Patch,
            _ => continue,
        };
        paths.add_path_operation(route.path, vec![method], operation.build());
    }
    let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Conduit")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("bearer", bearer)
                .build(),
        ))
        .build()
}
