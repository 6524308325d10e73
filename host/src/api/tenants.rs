//! `POST /admin/tenants`.

use super::auth::AdminCaller;
use super::document::{Attributes, Document, ResourceAttributes};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::domain::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// A tenant to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
}

impl ResourceAttributes for NewTenant {
    const TYPE: &'static str = "tenants";
}

#[utoipa::path(post, path = "/admin/tenants", security(("bearer" = [])), tag = "admin", summary = "Create a tenant; returns its token once", request_body(content = schema::NewTenantRequest, content_type = "application/vnd.api+json"), responses((status = 201, description = "JSON:API document", body = schema::TenantDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn create(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Attributes(new): Attributes<NewTenant>,
) -> Result<Document, ApiError> {
    let (tenant, token) = app.tenants.create(&new.id)?;
    Ok(Document::resource(
        "tenants",
        &tenant.id,
        json!({"id": tenant.id, "token": token, "createdAt": rfc3339(tenant.created_at)}),
    )
    .status(StatusCode::CREATED))
}
