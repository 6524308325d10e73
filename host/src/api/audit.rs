//! `GET /api/audit`: the caller's audit records (and `GET /admin/audit`, the operator's), newest first, filtered by connection,
//! capability and time, a page at a time (`cursor` from the previous page's
//! `meta.nextCursor`).

use super::auth::{AdminCaller, TenantCaller};
use super::document::QueryParams;
use super::document::{resource, Document};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::domain::{parse_rfc3339, rfc3339};
use crate::store::AuditQuery;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

/// Which audit records to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    connection_id: Option<String>,
    capability: Option<String>,
    /// Not before (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Not after (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// `meta.nextCursor` of the previous page.
    #[param(pattern = "^[0-9a-f]{0,1024}$")]
    cursor: Option<String>,
    /// Page size: 100 by default, clamped to 1..=1000.
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/audit", security(("bearer" = [])), tag = "tenant", summary = "The caller's audit records, newest first", params(Filter), responses((status = 200, description = "JSON:API document", body = schema::AuditList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn list(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    QueryParams(filter): QueryParams<Filter>,
) -> Result<Document, ApiError> {
    page(&app, &tenant, filter).await
}

#[utoipa::path(get, path = "/admin/audit", security(("bearer" = [])), tag = "admin", summary = "The operator's audit records (plugin loads, refusals, swaps, rollbacks, unloads, egress grants), newest first", params(Filter), responses((status = 200, description = "JSON:API document", body = schema::AuditList, content_type = "application/vnd.api+json"), Refusals))]
pub async fn admin_list(
    State(app): State<AppState>,
    _admin: AdminCaller,
    QueryParams(filter): QueryParams<Filter>,
) -> Result<Document, ApiError> {
    page(&app, crate::deploy::ADMIN_SCOPE, filter).await
}

async fn page(app: &AppState, scope: &str, filter: Filter) -> Result<Document, ApiError> {
    let time = |field: &str, value: Option<String>| {
        value
            .map(|text| {
                parse_rfc3339(&text).ok_or_else(|| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("{field} must be an RFC 3339 time"),
                    )
                })
            })
            .transpose()
    };
    if filter
        .cursor
        .as_deref()
        .is_some_and(|c| c.len() > 1024 || hex::decode(c).is_err())
    {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "cursor is not one this API issued",
        ));
    }
    let query = AuditQuery {
        since: time("since", filter.since)?,
        until: time("until", filter.until)?,
        connection_id: filter.connection_id,
        capability: filter.capability,
        cursor: filter.cursor,
        limit: filter.limit.unwrap_or(100).clamp(1, 1000),
    };
    let (records, next) = app.audit.page(scope, &query).await?;
    let items = records
        .into_iter()
        .map(|r| {
            let mut attributes = serde_json::to_value(&r).unwrap_or_default();
            attributes["time"] = json!(rfc3339(r.time));
            resource("auditRecords", &r.id, attributes)
        })
        .collect();
    Ok(Document::list(items).meta(json!({ "nextCursor": next })))
}
