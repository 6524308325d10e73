//! The HTTP API (axum), as `shared/API.md` fixes it: JSON:API documents, bearer auth,
//! typed errors. Every handler carries its `#[utoipa::path]` (method, path, who may
//! call it, request and response schemas); [`api`] collects them with `utoipa-axum`,
//! so the router and the served OpenAPI document come from the same handlers and no
//! route can be served undocumented.
//!
//! May import every folder but `app`'s internals; only `error.rs` maps an error class
//! to an HTTP status.

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
mod plugins;
mod schema;
pub mod serving;
mod tenants;
mod vault;

pub use error::ApiError;

use crate::app::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler receives.
pub type AppState = Arc<App>;

/// Every route, with its OpenAPI operation.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(tenants::create))
        .routes(routes!(catalog::connectors))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::upload))
        .routes(routes!(plugins::unload))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::egress))
        .routes(routes!(audit::admin_list))
        .routes(routes!(connections::create, connections::list))
        .routes(routes!(connections::get, connections::delete))
        .routes(routes!(connections::put_credential))
        .routes(routes!(connections::vend))
        .routes(routes!(connections::health))
        .routes(routes!(executions::on_connection))
        .routes(routes!(blueprints::put))
        .routes(routes!(blueprints::list))
        .routes(routes!(blueprints::get))
        .routes(routes!(configs::create, configs::list))
        .routes(routes!(configs::get, configs::discard))
        .routes(routes!(configs::preview))
        .routes(routes!(configs::publish))
        .routes(routes!(configs::resolved))
        .routes(routes!(executions::capability))
        .routes(routes!(oauth::authorize))
        .routes(routes!(oauth::put_client))
        .routes(routes!(oauth::callback))
        .routes(routes!(vault::keys))
        .routes(routes!(vault::rotate))
        .routes(routes!(vault::retire))
        .routes(routes!(audit::list))
}

/// The document's frame: title, version, the bearer scheme, the shared error schema.
#[derive(OpenApi)]
#[openapi(
    info(title = "Conduit", description = "The Conduit integration host's HTTP API (JSON:API documents)."),
    components(schemas(schema::ErrorDocument, schema::ErrorObject)),
    modifiers(&BearerAuth)
)]
struct Document;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The application router.
pub fn router(app: AppState) -> Router {
    let (router, _) = api().split_for_parts();
    let router = router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        });
    // JSON bodies are capped at axum's default, 2 MiB (`DefaultBodyLimit`); a component
    // upload reads its body under its own cap.
    layers::apply(router).with_state(app)
}

/// The OpenAPI document, built from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let (_, mut openapi) = api().split_for_parts();
            openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
            openapi
        })
        .clone()
}

#[utoipa::path(get, path = "/healthz", tag = "public", summary = "Liveness",
    responses((status = 200, description = "Serving", body = schema::Liveness)))]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "public", summary = "Readiness: the store, the vault and the catalog",
    responses(
        (status = 200, description = "Ready", body = schema::Readiness),
        (status = 503, description = "Not ready; `waiting` names what", body = schema::Readiness)))]
async fn readyz(State(app): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let waiting = tokio::task::spawn_blocking(move || app.not_ready())
        .await
        .unwrap_or_else(|_| vec!["store", "vault", "catalog"]);
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "waiting": waiting})),
        )
    }
}

#[utoipa::path(get, path = "/metrics", tag = "public", summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 503, description = "No recorder in this process", body = schema::ErrorDocument)))]
async fn metrics(State(app): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    // Counting connections reads the store: off the executor's threads.
    let rendered = tokio::task::spawn_blocking(move || crate::observe::render(&app.observed()))
        .await
        .ok()
        .flatten();
    match rendered {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "no metrics recorder is installed in this process",
        )
        .into_response(),
    }
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "public", summary = "This OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation declares its responses, every body references a schema that the
    /// document defines, and every authenticated route says how to authenticate.
    #[test]
    fn every_route_is_documented_with_schemas() {
        let document = serde_json::to_value(super::openapi()).unwrap();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.len() >= 27, "{} paths", paths.len());
        let mut operations = 0;
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                let responses = operation["responses"].as_object().unwrap();
                if ["/healthz", "/readyz", "/metrics", "/api/openapi.json"].contains(&path.as_str())
                {
                    continue;
                }
                let refused = responses.contains_key("4XX");
                assert!(refused, "{method} {path} has no refusals");
                if path != "/oauth/callback" {
                    let secured = operation["security"].is_array();
                    assert!(secured, "{method} {path} has no security");
                }
                for reference in references(operation) {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    assert!(
                        schemas.contains_key(name),
                        "{method} {path}: {name} is undefined"
                    );
                }
            }
        }
        assert!(operations >= 30, "{operations} operations");
        let created = &paths["/api/connections"]["post"];
        assert!(
            created["requestBody"]["content"]["application/vnd.api+json"]["schema"].is_object()
        );
        assert!(
            created["responses"]["201"]["content"]["application/vnd.api+json"]["schema"]
                .is_object()
        );
    }

    fn references(value: &Value) -> Vec<String> {
        match value {
            Value::Object(map) => map
                .iter()
                .flat_map(|(key, value)| match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => vec![reference.clone()],
                    _ => references(value),
                })
                .collect(),
            Value::Array(items) => items.iter().flat_map(references).collect(),
            _ => Vec::new(),
        }
    }
}
