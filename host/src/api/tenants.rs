//! `POST /admin/tenants`.

use super::auth::AdminCaller;
use super::document::{Attributes, Document, ResourceAttributes};
use super::{ApiError, AppState};
use crate::domain::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
}

impl ResourceAttributes for NewTenant {
    const TYPE: &'static str = "tenants";
}

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
