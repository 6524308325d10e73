//! Admin key-rotation routes: list the KEKs with their usage, rotate (new primary KEK,
//! data keys re-wrapped online), retire a KEK nothing uses.

use super::auth::AdminCaller;
use super::document::{resource, Document};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::credentials::rotation::KeyUsage;
use axum::extract::{Path, State};
use serde_json::{json, Value};

fn render(key: &KeyUsage) -> Value {
    resource(
        "vaultKeys",
        &key.key_id,
        json!({"primary": key.primary, "credentials": key.in_use}),
    )
}

#[utoipa::path(get, path = "/admin/vault", security(("bearer" = [])), tag = "admin", summary = "Key-encryption keys with how many credentials each wraps", responses((status = 200, description = "JSON:API document", body = schema::VaultKeyList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn keys(State(app): State<AppState>, _admin: AdminCaller) -> Result<Document, ApiError> {
    let keys = app.rotation.keys()?;
    Ok(Document::list(keys.iter().map(render).collect()))
}

#[utoipa::path(post, path = "/admin/vault/rotate", security(("bearer" = [])), tag = "admin", summary = "Add a primary key-encryption key and re-wrap every data key, online", responses((status = 200, description = "JSON:API document", body = schema::RotationDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn rotate(
    State(app): State<AppState>,
    _admin: AdminCaller,
) -> Result<Document, ApiError> {
    let report = app.rotation.rotate().await?;
    Ok(Document::resource(
        "vaultRotations",
        &report.key_id,
        json!({"primaryKeyId": report.key_id, "rewrapped": report.rewrapped}),
    ))
}

#[utoipa::path(post, path = "/admin/vault/keys/{keyId}/retire", security(("bearer" = [])), tag = "admin", summary = "Retire a key-encryption key nothing uses", params(("keyId" = String, Path)), responses((status = 200, description = "JSON:API document", body = schema::VaultKeyDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn retire(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(key_id): Path<String>,
) -> Result<Document, ApiError> {
    app.rotation.retire(&key_id)?;
    Ok(Document::resource(
        "vaultKeys",
        &key_id,
        json!({"retired": true}),
    ))
}
