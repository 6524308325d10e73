//! Connection routes: create, list, get, delete, credential, vend, health.

use super::auth::TenantCaller;
use super::document::{resource, Attributes, Document, ResourceAttributes};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::accounts::connections::{ConnectorName, NewConnection};
use crate::credentials::vending::NewCredential;
use crate::domain::{
    rfc3339, Connection, CredentialKind, Environment, OwnershipMode, SecretFields,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How a connection is shown: everything but the secret, which is only a reference.
pub(super) fn render(c: &Connection) -> Value {
    resource(
        "connections",
        &c.id,
        json!({
            "tenantId": c.tenant_id,
            "connector": c.connector,
            "integrationKey": c.integration_key,
            "integrationVersion": c.integration_version,
            "label": c.label,
            "environment": c.environment,
            "ownershipMode": c.ownership_mode,
            "externalAccountId": c.external_account_id,
            "config": c.config,
            "secretRef": c.secret_ref(),
            "status": c.status,
            "statusReason": c.status_reason,
            "dailyQuota": c.daily_quota,
            "createdAt": rfc3339(c.created_at),
            "updatedAt": rfc3339(c.updated_at),
        }),
    )
}

/// A connection to create: the connector named by slug (`connector`) or, as in the
/// seed's IntegrationConnection documents, by `integrationKey`. The fields Conduit
/// assigns (`id`, `status`, `secretRef`, times) are accepted and ignored, so a fetched
/// connection can be posted again; a `tenantId` must be the caller's.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAttributes {
    connector: Option<String>,
    integration_key: Option<String>,
    integration_version: Option<u32>,
    tenant_id: Option<String>,
    #[allow(dead_code)]
    id: Option<String>,
    #[allow(dead_code)]
    #[schema(value_type = Option<String>)]
    status: Option<Value>,
    #[allow(dead_code)]
    secret_ref: Option<String>,
    #[allow(dead_code)]
    created_at: Option<String>,
    #[allow(dead_code)]
    updated_at: Option<String>,
    label: Option<String>,
    environment: Environment,
    ownership_mode: Option<OwnershipMode>,
    external_account_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Map<String, Value>,
    daily_quota: Option<u32>,
}

impl ResourceAttributes for CreateAttributes {
    const TYPE: &'static str = "connections";
}

#[utoipa::path(post, path = "/api/connections", security(("bearer" = [])), tag = "tenant", summary = "Create a connection", request_body(content = schema::NewConnectionRequest, content_type = "application/vnd.api+json"), responses((status = 201, description = "JSON:API document", body = schema::ConnectionDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn create(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Attributes(attrs): Attributes<CreateAttributes>,
) -> Result<Document, ApiError> {
    if attrs.tenant_id.as_ref().is_some_and(|t| *t != tenant) {
        return Err(ApiError::unprocessable(
            "tenant_mismatch",
            "tenantId names another tenant than the caller",
        ));
    }
    let connector = ConnectorName {
        slug: attrs.connector,
        integration_key: attrs.integration_key,
        integration_version: attrs.integration_version,
    };
    let connection = app.connections.create(
        &tenant,
        NewConnection {
            connector,
            label: attrs.label,
            environment: attrs.environment,
            ownership_mode: attrs.ownership_mode,
            external_account_id: attrs.external_account_id,
            config: attrs.config,
            daily_quota: attrs.daily_quota,
        },
    )?;
    Ok(Document::data(render(&connection)).status(StatusCode::CREATED))
}

#[utoipa::path(get, path = "/api/connections", security(("bearer" = [])), tag = "tenant", summary = "List the caller's connections", responses((status = 200, description = "JSON:API document", body = schema::ConnectionList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn list(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
) -> Result<Document, ApiError> {
    Ok(Document::list(
        app.connections.list(&tenant)?.iter().map(render).collect(),
    ))
}

#[utoipa::path(get, path = "/api/connections/{id}", security(("bearer" = [])), tag = "tenant", summary = "Get a connection", params(("id" = String, Path, description = "Connection id")), responses((status = 200, description = "JSON:API document", body = schema::ConnectionDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn get(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Document, ApiError> {
    let connection = app.connections.get(&tenant, &id)?;
    Ok(Document::data(render(&connection)))
}

#[utoipa::path(delete, path = "/api/connections/{id}", security(("bearer" = [])), tag = "tenant", summary = "Delete a connection and its credential", params(("id" = String, Path, description = "Connection id")), responses((status = 204, description = "Deleted"), Refusals))]
pub async fn delete(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.connections.delete(&tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The credential body: the secret fields are `secrecy` strings, wiped when the body
/// is dropped and never printed.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialAttributes {
    kind: CredentialKind,
    #[schema(value_type = Option<String>)]
    access_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    api_secret: Option<SecretString>,
    expires_at: Option<String>,
}

impl ResourceAttributes for CredentialAttributes {
    const TYPE: &'static str = "credentials";
}

impl CredentialAttributes {
    /// The credential as the use case takes it; whether it fits the connector (and
    /// whether `expiresAt` is a time) is the use case's to say.
    fn into_credential(self) -> NewCredential {
        NewCredential {
            kind: self.kind,
            secret: SecretFields {
                access_token: self.access_token,
                refresh_token: self.refresh_token,
                api_key: self.api_key,
                api_secret: self.api_secret,
                expires_at: None,
            },
            expires_at: self.expires_at,
        }
    }
}

#[utoipa::path(put, path = "/api/connections/{id}/credential", security(("bearer" = [])), tag = "tenant", summary = "Seal a credential into the vault", params(("id" = String, Path, description = "Connection id")), request_body(content = schema::CredentialRequest, content_type = "application/vnd.api+json"), responses((status = 200, description = "JSON:API document", body = schema::CredentialDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn put_credential(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    Attributes(attrs): Attributes<CredentialAttributes>,
) -> Result<Document, ApiError> {
    let (stored, connection) = app.vending.store(&tenant, &id, attrs.into_credential())?;
    Ok(Document::resource(
        "credentials",
        &connection.id,
        json!({
            "kind": stored.kind,
            "secretRef": connection.secret_ref(),
            "version": stored.version,
            "keyId": stored.sealed.key_id,
            "expiresAt": stored.expires_at.map(rfc3339),
            "updatedAt": rfc3339(stored.updated_at),
            "connectionStatus": connection.status,
        }),
    ))
}

#[utoipa::path(post, path = "/api/connections/{id}/vend", security(("bearer" = [])), tag = "tenant", summary = "Vend the connection's credential (refreshed near expiry)", params(("id" = String, Path, description = "Connection id")), responses((status = 200, description = "JSON:API document", body = schema::SecretDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn vend(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Document, ApiError> {
    let secret = app.vending.vend(&tenant, &id).await?;
    Ok(Document::resource(
        "secrets",
        &id,
        json!({
            "accessToken": secret.access_token(),
            "refreshToken": secret.refresh_token(),
            "apiKey": secret.api_key(),
            "apiSecret": secret.api_secret(),
            "expiresAt": secret.expires_at.map(rfc3339),
        }),
    ))
}

#[utoipa::path(post, path = "/api/connections/{id}/health", security(("bearer" = [])), tag = "tenant", summary = "Run the connector's health check", params(("id" = String, Path, description = "Connection id")), responses((status = 200, description = "The check's answer", body = schema::HealthView), Refusals))]
pub async fn health(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let health = app.exec.health(&tenant, &id).await?;
    Ok(axum::Json(
        json!({"healthy": health.healthy, "detail": health.detail}),
    ))
}
