//! Blueprint routes: the admin puts immutable versions; tenants read them.

use super::auth::{AdminCaller, TenantCaller};
use super::document::{resource, Document, Spec, SpecDocument};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::domain::Blueprint;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

impl SpecDocument for Blueprint {
    const TYPES: &'static [&'static str] = &["blueprints"];
    const INVALID: &'static str = "invalid_blueprint";
}

fn render(blueprint: &Blueprint) -> Value {
    resource(
        "blueprints",
        &format!("{}:{}", blueprint.meta.name, blueprint.meta.version),
        serde_json::to_value(blueprint).unwrap_or_default(),
    )
}

#[utoipa::path(put, path = "/admin/blueprints/{name}/versions/{version}", security(("bearer" = [])), tag = "admin", summary = "Publish an immutable AppBlueprintSpec version (200 when the same document exists)", params(("name" = String, Path), ("version" = String, Path)), request_body(content = crate::domain::Blueprint, content_type = "application/vnd.api+json"), responses((status = 201, description = "JSON:API document", body = schema::BlueprintDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn put(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path((name, version)): Path<(String, String)>,
    Spec(blueprint): Spec<Blueprint>,
) -> Result<Document, ApiError> {
    let (blueprint, created) = app.blueprints.put(&name, &version, blueprint)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Document::data(render(&blueprint)).status(status))
}

#[utoipa::path(get, path = "/api/blueprints", security(("bearer" = [])), tag = "tenant", summary = "Every blueprint version", responses((status = 200, description = "JSON:API document", body = schema::BlueprintList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn list(
    State(app): State<AppState>,
    _caller: TenantCaller,
) -> Result<Document, ApiError> {
    Ok(Document::list(
        app.blueprints.list()?.iter().map(render).collect(),
    ))
}

#[utoipa::path(get, path = "/api/blueprints/{name}/versions/{version}", security(("bearer" = [])), tag = "tenant", summary = "One blueprint version", params(("name" = String, Path), ("version" = String, Path)), responses((status = 200, description = "JSON:API document", body = schema::BlueprintDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn get(
    State(app): State<AppState>,
    _caller: TenantCaller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Document, ApiError> {
    Ok(Document::data(render(
        &app.blueprints.get(&name, &version)?,
    )))
}
