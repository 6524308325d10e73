//! Tenant config routes (post a draft, list, get, preview, publish) and the resolved
//! view of a published config (`GET /api/apps/{blueprint}/resolved`).

use super::auth::TenantCaller;
use super::document::{resource, Document, QueryParams, Spec, SpecDocument};
use super::{ApiError, AppState};
use crate::binding::configs::NewConfig;
use crate::binding::resolver::Candidate;
use crate::domain::{rfc3339, version_text, Binding, Environment, TenantConfig};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A TenantAppConfig as posted (the seed's shape; `version` and `status` are assigned).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigDocument {
    meta: MetaDocument,
    #[serde(default)]
    integrations: Vec<Binding>,
    #[serde(default)]
    branding: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetaDocument {
    tenant_id: Option<String>,
    blueprint_name: String,
    #[serde(deserialize_with = "version_text")]
    blueprint_version: String,
    environment: Environment,
    /// Assigned by Conduit; accepted and ignored so a fetched config can be re-posted.
    #[allow(dead_code)]
    version: Option<Value>,
    #[allow(dead_code)]
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFilter {
    blueprint: Option<String>,
}

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

pub async fn get(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(path): VersionPath,
) -> Result<Document, ApiError> {
    let (blueprint, environment, version) = version_path(path)?;
    let config = app.configs.get(&tenant, &blueprint, environment, version)?;
    Ok(Document::data(render(&config)))
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedQuery {
    environment: Option<String>,
}

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
        "provider": super::catalog::render_spec(&candidate.bound.plugin.spec),
        "connection": super::connections::render(&candidate.bound.connection),
        "config": candidate.bound.config,
    })
}
