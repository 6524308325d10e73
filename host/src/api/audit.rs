//! `GET /api/audit`: the caller's audit records, newest first.

use super::auth::TenantCaller;
use super::document::QueryParams;
use super::document::{resource, Document};
use super::{ApiError, AppState};
use crate::domain::rfc3339;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    connection_id: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    QueryParams(filter): QueryParams<Filter>,
) -> Result<Document, ApiError> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let records = app
        .audit
        .list(&tenant, filter.connection_id.as_deref(), limit)
        .await?;
    let items = records
        .into_iter()
        .map(|r| {
            let mut attributes = serde_json::to_value(&r).unwrap_or_default();
            attributes["time"] = json!(rfc3339(r.time));
            resource("auditRecords", &r.id, attributes)
        })
        .collect();
    Ok(Document::list(items))
}
