//! The loaded connectors and hot-loading: `GET /api/plugins` (versions, requested and
//! granted hosts), `POST /admin/plugins` (a raw component body), `DELETE
//! /admin/plugins/{slug}`, `POST /admin/plugins/{slug}/rollback` and `PUT
//! /admin/plugins/{slug}/egress`. The use cases are `crate::deploy`'s.

use super::auth::{AdminCaller, TenantCaller};
use super::document::{resource, Attributes, Document, QueryParams, ResourceAttributes};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::deploy::{Change, PluginView};
use crate::domain::deployment::{PluginSource, PluginVersion};
use crate::domain::rfc3339;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

fn render_version(v: &PluginVersion) -> Value {
    json!({
        "version": v.version,
        "wasmSha256": v.sha256,
        "source": v.source.kind(),
        "loadedAt": rfc3339(v.loaded_at),
    })
}

fn render(view: &PluginView) -> Value {
    let d = &view.deployment;
    let active = d.active.as_ref();
    let plugin = view.plugin.as_ref();
    resource(
        "plugins",
        &d.slug,
        json!({
            "status": if plugin.is_some() { "active" } else { "unloaded" },
            "integrationKey": plugin.map(|p| p.spec.integration_key.clone()),
            "version": plugin.map(|p| p.spec.version),
            "wasmSha256": plugin.map(|p| p.prepared.wasm_sha256.clone()),
            "source": active.map(|a| a.source.kind()),
            "loadedAt": active.map(|a| rfc3339(a.loaded_at)),
            "previous": d.previous.iter().map(render_version).collect::<Vec<_>>(),
            "requestedHosts": plugin.map(|p| p.requested_hosts.clone()).unwrap_or_default(),
            "grantedHosts": plugin.map(|p| p.spec.allowed_hosts.clone()).unwrap_or_default(),
            "operatorGrant": d.grant.is_some(),
        }),
    )
}

#[utoipa::path(get, path = "/api/plugins", security(("bearer" = [])), tag = "tenant", summary = "Deployed connectors: active version, wasm hash, previous versions, requested and granted hosts", responses((status = 200, description = "JSON:API document", body = schema::PluginList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn list(
    State(app): State<AppState>,
    _caller: TenantCaller,
) -> Result<Document, ApiError> {
    Ok(Document::list(
        app.deployer.list()?.iter().map(render).collect(),
    ))
}

/// `?force=true` replaces a version even if published configs rely on a capability it
/// drops.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Force {
    force: Option<bool>,
}

#[utoipa::path(post, path = "/admin/plugins", security(("bearer" = [])), tag = "admin", summary = "Hot-load a component (raw wasm body, application/wasm): validated, compiled, then swapped in atomically", params(Force), request_body(content = Vec<u8>, content_type = "application/wasm"), responses((status = 201, description = "Loaded a new connector", body = schema::PluginDocument, content_type = "application/vnd.api+json"), (status = 200, description = "Replaced the active version (or it was active already)", body = schema::PluginDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn upload(
    State(app): State<AppState>,
    _admin: AdminCaller,
    QueryParams(force): QueryParams<Force>,
    headers: HeaderMap,
    body: Body,
) -> Result<Document, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type.map(|t| t.split(';').next().unwrap_or("").trim()) != Some("application/wasm") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a component is uploaded as its raw bytes with Content-Type: application/wasm",
        ));
    }
    let limit = app.deployer.max_component_bytes();
    let wasm = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        match too_large {
            true => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a component may be at most {limit} bytes"),
            )
            .with_meta(json!({ "limitBytes": limit })),
            false => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read",
            ),
        }
    })?;
    let (change, plugin) = app
        .deployer
        .install(
            wasm.to_vec(),
            PluginSource::Upload,
            force.force.unwrap_or(false),
        )
        .await?;
    let view = app.deployer.view(&plugin.spec.slug)?;
    let status = match change {
        Change::Loaded => StatusCode::CREATED,
        Change::Swapped | Change::Unchanged => StatusCode::OK,
    };
    Ok(Document::data(render(&view)).status(status))
}

#[utoipa::path(delete, path = "/admin/plugins/{slug}", security(("bearer" = [])), tag = "admin", summary = "Unload a connector (its connections answer 503 connector_unavailable until it returns)", params(("slug" = String, Path)), responses((status = 204, description = "Unloaded"), Refusals))]
pub async fn unload(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.deployer.unload(&slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/plugins/{slug}/rollback", security(("bearer" = [])), tag = "admin", summary = "Make the previous version active again", params(("slug" = String, Path), Force), responses((status = 200, description = "JSON:API document", body = schema::PluginDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn rollback(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(slug): Path<String>,
    QueryParams(force): QueryParams<Force>,
) -> Result<Document, ApiError> {
    app.deployer
        .rollback(&slug, force.force.unwrap_or(false))
        .await?;
    Ok(Document::data(render(&app.deployer.view(&slug)?)))
}

/// The operator's egress grant of a connector.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// Host patterns (`api.example.com`, `*.example.com`, `10.0.0.7:6333`,
    /// `127.0.0.1:8080`); plain `http://` only where a pattern names its port.
    allowed_hosts: Vec<String>,
}

impl ResourceAttributes for Egress {
    const TYPE: &'static str = "egress";
}

#[utoipa::path(put, path = "/admin/plugins/{slug}/egress", security(("bearer" = [])), tag = "admin", summary = "Replace the operator's egress grant (persists, survives version swaps)", params(("slug" = String, Path)), request_body(content = schema::EgressRequest, content_type = "application/vnd.api+json"), responses((status = 200, description = "JSON:API document", body = schema::PluginDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn egress(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(slug): Path<String>,
    Attributes(egress): Attributes<Egress>,
) -> Result<Document, ApiError> {
    app.deployer.grant(&slug, egress.allowed_hosts).await?;
    Ok(Document::data(render(&app.deployer.view(&slug)?)))
}
