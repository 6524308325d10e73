//! Tenant config routes (post a draft, list, get, preview, publish) and the resolved
//! view of a published config (`GET /api/apps/{blueprint}/resolved`).

use super::auth::TenantCaller;
use super::document::{resource, Document, QueryParams, Spec, SpecDocument};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::binding::configs::NewConfig;
use crate::binding::resolver::Candidate;
use crate::domain::{rfc3339, version_text, Binding, Environment, TenantConfig};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A TenantAppConfig as posted (the seed's shape; `version` and `status` are assigned).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigDocument {
    meta: MetaDocument,
    #[serde(default)]
    integrations: Vec<Binding>,
    #[serde(default)]
    #[schema(value_type = Object)]
    branding: Value,
}

/// `meta` of a posted config.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetaDocument {
    tenant_id: Option<String>,
    blueprint_name: String,
    #[serde(deserialize_with = "version_text")]
    #[schema(value_type = String)]
    blueprint_version: String,
    environment: Environment,
    /// Assigned by Conduit; accepted and ignored so a fetched config can be re-posted.
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    version: Option<Value>,
    /// Assigned by Conduit; accepted and ignored.
    #[allow(dead_code)]
    #[schema(value_type = Option<String>)]
    status: Option<Value>,
}

impl SpecDocument for ConfigDocument {
    const TYPES: &'static [&'static str] = &["tenantConfigs", "tenant-configs"];
    const INVALID: &'static str = "invalid_config";
}

fn render(config: &TenantConfig) -> Value {
    resource(
        "tenantConfigs",
        &config.id(),
        json!({
            "meta": config.meta,
            "integrations": config.integrations,
            "branding": config.branding,
            "createdAt": rfc3339(config.created_at),
            "updatedAt": rfc3339(config.updated_at),
        }),
    )
}

#[utoipa::path(post, path = "/api/tenant-configs", security(("bearer" = [])), tag = "tenant", summary = "Post a TenantAppConfig: validated against its blueprint, stored as a new draft version", request_body(content = ConfigDocument, content_type = "application/vnd.api+json"), responses((status = 201, description = "JSON:API document", body = schema::TenantConfigDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn create(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Spec(doc): Spec<ConfigDocument>,
) -> Result<Document, ApiError> {
    if doc.meta.tenant_id.as_ref().is_some_and(|t| *t != tenant) {
        return Err(ApiError::unprocessable(
            "tenant_mismatch",
            "meta.tenantId names another tenant than the caller",
        ));
    }
    let config = app
        .configs
        .create(
            &tenant,
            NewConfig {
                blueprint_name: doc.meta.blueprint_name,
                blueprint_version: doc.meta.blueprint_version,
                environment: doc.meta.environment,
                integrations: doc.integrations,
                branding: doc.branding,
            },
        )
        .await?;
    Ok(Document::data(render(&config)).status(StatusCode::CREATED))
}

/// Which config versions to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListFilter {
    blueprint: Option<String>,
}

#[utoipa::path(get, path = "/api/tenant-configs", security(("bearer" = [])), tag = "tenant", summary = "The caller's config versions", params(ListFilter), responses((status = 200, description = "JSON:API document", body = schema::TenantConfigList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn list(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    QueryParams(filter): QueryParams<ListFilter>,
) -> Result<Document, ApiError> {
    let configs = app.configs.list(&tenant, filter.blueprint.as_deref())?;
    Ok(Document::list(configs.iter().map(render).collect()))
}

/// `{blueprint}/{environment}/versions/{version}` of the path.
type VersionPath = Path<(String, String, String)>;

fn version_path(
    (blueprint, environment, version): (String, String, String),
) -> Result<(String, Environment, u32), ApiError> {
    let environment = parse_environment(&environment)?;
    let version = version
        .parse()
        .map_err(|_| ApiError::not_found("tenant config"))?;
    Ok((blueprint, environment, version))
}

fn parse_environment(text: &str) -> Result<Environment, ApiError> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
        ApiError::unprocessable(
            "invalid_environment",
            "environment is `sandbox` or `production`",
        )
    })
}

#[utoipa::path(get, path = "/api/tenant-configs/{blueprint}/{environment}/versions/{version}", security(("bearer" = [])), tag = "tenant", summary = "One config version", params(("blueprint" = String, Path), ("environment" = Environment, Path), ("version" = u32, Path)), responses((status = 200, description = "JSON:API document", body = schema::TenantConfigDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn get(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(path): VersionPath,
) -> Result<Document, ApiError> {
    let (blueprint, environment, version) = version_path(path)?;
    let config = app.configs.get(&tenant, &blueprint, environment, version)?;
    Ok(Document::data(render(&config)))
}

#[utoipa::path(delete, path = "/api/tenant-configs/{blueprint}/{environment}/versions/{version}", security(("bearer" = [])), tag = "tenant", summary = "Discard a version that was never published (draft or preview)", params(("blueprint" = String, Path), ("environment" = Environment, Path), ("version" = u32, Path)), responses((status = 204, description = "Discarded"), Refusals))]
pub async fn discard(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(path): VersionPath,
) -> Result<StatusCode, ApiError> {
    let (blueprint, environment, version) = version_path(path)?;
    app.configs
        .discard(&tenant, &blueprint, environment, version)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/tenant-configs/{blueprint}/{environment}/versions/{version}/preview", security(("bearer" = [])), tag = "tenant", summary = "Move a draft to preview", params(("blueprint" = String, Path), ("environment" = Environment, Path), ("version" = u32, Path)), responses((status = 200, description = "JSON:API document", body = schema::TenantConfigDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn preview(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(path): VersionPath,
) -> Result<Document, ApiError> {
    let (blueprint, environment, version) = version_path(path)?;
    let config = app
        .configs
        .preview(&tenant, &blueprint, environment, version)?;
    Ok(Document::data(render(&config)))
}

#[utoipa::path(post, path = "/api/tenant-configs/{blueprint}/{environment}/versions/{version}/publish", security(("bearer" = [])), tag = "tenant", summary = "Publish a version (validated again); the previous one is archived", params(("blueprint" = String, Path), ("environment" = Environment, Path), ("version" = u32, Path)), responses((status = 200, description = "JSON:API document", body = schema::TenantConfigDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn publish(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(path): VersionPath,
) -> Result<Document, ApiError> {
    let (blueprint, environment, version) = version_path(path)?;
    let config = app
        .configs
        .publish(&tenant, &blueprint, environment, version)
        .await?;
    Ok(Document::data(render(&config)))
}

/// Which environment to resolve.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedQuery {
    /// Required: `sandbox` or `production`.
    #[param(required = true, value_type = Environment)]
    environment: Option<String>,
}

#[utoipa::path(get, path = "/api/apps/{blueprint}/resolved", security(("bearer" = [])), tag = "tenant", summary = "The ResolvedAppConfig of the published config", params(("blueprint" = String, Path), ResolvedQuery), responses((status = 200, description = "JSON:API document", body = schema::ResolvedDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn resolved(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(blueprint): Path<String>,
    QueryParams(query): QueryParams<ResolvedQuery>,
) -> Result<Document, ApiError> {
    let environment = parse_environment(query.environment.as_deref().unwrap_or(""))?;
    let resolved = app.resolver.resolve(&tenant, &blueprint, environment)?;
    let capabilities: Map<String, Value> = resolved
        .capabilities
        .iter()
        .map(|(key, candidates)| {
            let mut primary = render_candidate(&candidates[0]);
            primary["fallbacks"] = candidates[1..].iter().map(render_candidate).collect();
            (key.clone(), primary)
        })
        .collect();
    let meta = &resolved.config.meta;
    Ok(Document::resource(
        "resolvedAppConfigs",
        &format!("{blueprint}:{}", environment.as_str()),
        json!({
            "tenantId": meta.tenant_id,
            "blueprint": meta.blueprint_name,
            "blueprintVersion": meta.blueprint_version,
            "environment": meta.environment,
            "configVersion": meta.version,
            "capabilities": capabilities,
        }),
    ))
}

fn render_candidate(candidate: &Candidate) -> Value {
    json!({
        "capabilityVersion": candidate.capability_version,
        "slotId": candidate.bound.slot_id,
        "priority": candidate.bound.priority,
        "operation": candidate.operation,
        "scope": candidate.bound.scope,
        "provider": super::catalog::render_spec(&candidate.bound.spec),
        "connection": super::connections::render(&candidate.bound.connection),
        "config": candidate.bound.config,
    })
}
