//! `GET /api/connectors`: the IntegrationSpecs of the loaded connectors.

use super::auth::TenantCaller;
use super::document::{resource, Document};
use super::schema::{self, Refusals};
use super::AppState;
use crate::domain::IntegrationSpec;
use axum::extract::State;
use serde_json::{json, Value};

/// How an IntegrationSpec is shown (the catalog, a resolved config's `provider`).
pub(super) fn render_spec(spec: &IntegrationSpec) -> Value {
    resource(
        "connectors",
        &spec.slug,
        json!({
            "integrationKey": spec.integration_key,
            "version": spec.version,
            "category": spec.category,
            "displayName": spec.display_name,
            "authType": spec.auth_type,
            "capabilities": spec.capabilities.iter().map(|c| json!({"key": c.key, "version": c.version})).collect::<Vec<_>>(),
            "ownershipModes": spec.ownership_modes,
            "allowedHosts": spec.allowed_hosts,
            "rateProfile": spec.rate_profile,
            "oauth": spec.oauth,
            "configDefaults": spec.config_defaults,
        }),
    )
}

#[utoipa::path(get, path = "/api/connectors", security(("bearer" = [])), tag = "tenant", summary = "The connector catalog (IntegrationSpecs)", responses((status = 200, description = "JSON:API document", body = schema::ConnectorList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn connectors(State(app): State<AppState>, _caller: TenantCaller) -> Document {
    Document::list(app.catalog.specs().iter().map(render_spec).collect())
}
