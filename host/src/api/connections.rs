//! Connection routes: create, list, get, delete, credential, vend, health.

use super::auth::TenantCaller;
use super::document::{resource, Attributes, Document, ResourceAttributes};
use super::{ApiError, AppState};
use crate::accounts::connections::NewConnection;
use crate::domain::{
    parse_rfc3339, rfc3339, AuthType, Connection, ConnectionStatus, CredentialKind, Environment,
    OwnershipMode, SecretFields,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
            "dailyQuota": c.daily_quota,
            "createdAt": rfc3339(c.created_at),
            "updatedAt": rfc3339(c.updated_at),
        }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAttributes {
    connector: String,
    label: Option<String>,
    environment: Environment,
    ownership_mode: Option<OwnershipMode>,
    external_account_id: Option<String>,
    #[serde(default)]
    config: Map<String, Value>,
    daily_quota: Option<u32>,
}

impl ResourceAttributes for CreateAttributes {
    const TYPE: &'static str = "connections";
}

pub async fn create(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Attributes(attrs): Attributes<CreateAttributes>,
) -> Result<Document, ApiError> {
    let connection = app.connections.create(
        &tenant,
        NewConnection {
            connector: attrs.connector,
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

pub async fn list(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
) -> Result<Document, ApiError> {
    Ok(Document::list(
        app.connections.list(&tenant)?.iter().map(render).collect(),
    ))
}

pub async fn get(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Document, ApiError> {
    let connection = app.connections.get(&tenant, &id)?;
    Ok(Document::data(render(&connection)))
}

pub async fn delete(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.connections.delete(&tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The credential body. `Debug` is not derived: it holds secrets.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialAttributes {
    kind: CredentialKind,
    access_token: Option<String>,
    refresh_token: Option<String>,
    api_key: Option<String>,
    api_secret: Option<String>,
    expires_at: Option<String>,
}

impl ResourceAttributes for CredentialAttributes {
    const TYPE: &'static str = "credentials";
}

impl CredentialAttributes {
    /// The secret fields, checked for the connector's auth type.
    fn into_secret(self, auth_type: AuthType) -> Result<(CredentialKind, SecretFields), ApiError> {
        let expected = match auth_type {
            AuthType::Oauth2 => Some(CredentialKind::Oauth2),
            AuthType::ApiKey | AuthType::ApiKeySecret => Some(CredentialKind::ApiKey),
            AuthType::None => None,
        };
        if expected != Some(self.kind) {
            return Err(ApiError::unprocessable(
                "credential_kind_mismatch",
                format!(
                    "this connector's auth type is {auth_type:?}; a `{:?}` credential does not fit",
                    self.kind
                ),
            ));
        }
        let expires_at = match &self.expires_at {
            None => None,
            Some(text) => Some(parse_rfc3339(text).ok_or_else(|| {
                ApiError::unprocessable("invalid_attributes", "expiresAt must be an RFC 3339 time")
            })?),
        };
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let missing = match self.kind {
            CredentialKind::Oauth2 if !present(&self.access_token) => Some("accessToken"),
            CredentialKind::ApiKey if !present(&self.api_key) => Some("apiKey"),
            _ if auth_type == AuthType::ApiKeySecret && !present(&self.api_secret) => {
                Some("apiSecret")
            }
            _ => None,
        };
        if let Some(field) = missing {
            return Err(ApiError::unprocessable(
                "invalid_attributes",
                format!("`{field}` is required for this credential"),
            ));
        }
        let secret = SecretFields {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            api_key: self.api_key,
            api_secret: self.api_secret,
            expires_at,
        };
        Ok((self.kind, secret))
    }
}

pub async fn put_credential(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    Attributes(attrs): Attributes<CredentialAttributes>,
) -> Result<Document, ApiError> {
    let connection = app.connections.get(&tenant, &id)?;
    if connection.status == ConnectionStatus::Revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "revoked",
            "the connection is revoked",
        ));
    }
    let auth_type = app
        .catalog
        .get(&connection.connector)
        .map(|p| p.spec.auth_type)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connector_unavailable",
                "the connection's connector is not loaded",
            )
        })?;
    let (kind, secret) = attrs.into_secret(auth_type)?;
    // A fresh credential is the way back from NEEDS_REAUTH.
    let (stored, connection) = app.tokens.put(&connection, kind, &secret)?;
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

pub async fn vend(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Document, ApiError> {
    let connection = app.connections.get(&tenant, &id)?;
    let secret = app.tokens.vend(&connection).await?;
    Ok(Document::resource(
        "secrets",
        &connection.id,
        json!({
            "accessToken": secret.access_token,
            "refreshToken": secret.refresh_token,
            "apiKey": secret.api_key,
            "apiSecret": secret.api_secret,
            "expiresAt": secret.expires_at.map(rfc3339),
        }),
    ))
}

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
