//! Execute routes: `executeCapability` through the tenant's bindings
//! (`POST /api/capabilities/{capabilityKey}/execute`) and on one named connection
//! (`POST /api/connections/{id}/capabilities/{capabilityKey}/execute`). Both answer an
//! `executions` resource and refuse with the same codes.

use super::auth::TenantCaller;
use super::document::{Attributes, Document, ResourceAttributes};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::domain::{Environment, Skipped};
use crate::exec::{self, Execution};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A capability call on one connection.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnConnection {
    /// The capability's input (its contract).
    #[schema(value_type = Object)]
    input: Value,
    idempotency_key: Option<String>,
}

impl ResourceAttributes for OnConnection {
    const TYPE: &'static str = "executions";
}

/// An `executeCapability` call.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bound {
    blueprint: String,
    environment: Environment,
    workflow: String,
    operation: Option<String>,
    /// The capability's input (its contract).
    #[schema(value_type = Object)]
    input: Value,
    idempotency_key: Option<String>,
}

impl ResourceAttributes for Bound {
    const TYPE: &'static str = "executions";
}

#[utoipa::path(post, path = "/api/connections/{id}/capabilities/{capabilityKey}/execute", security(("bearer" = [])), tag = "tenant", summary = "Run a capability on this connection", params(("id" = String, Path, description = "Connection id"), ("capabilityKey" = String, Path, description = "`payments.createPaymentIntent`")), request_body(content = schema::OnConnectionRequest, content_type = "application/vnd.api+json"), responses((status = 200, description = "JSON:API document", body = schema::ExecutionDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn on_connection(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path((id, capability)): Path<(String, String)>,
    Attributes(attrs): Attributes<OnConnection>,
) -> Result<Document, ApiError> {
    check_input(&attrs.input, attrs.idempotency_key.as_deref())?;
    let execution = app
        .exec
        .execute(exec::Request {
            tenant_id: tenant,
            connection_id: id,
            capability,
            input: attrs.input,
            idempotency_key: attrs.idempotency_key,
        })
        .await?;
    Ok(render(execution))
}

#[utoipa::path(post, path = "/api/capabilities/{capabilityKey}/execute", security(("bearer" = [])), tag = "tenant", summary = "executeCapability: resolve the binding, apply policy, rate limits and failover, run the connector", params(("capabilityKey" = String, Path, description = "`payments.createPaymentIntent`")), request_body(content = schema::ExecuteRequest, content_type = "application/vnd.api+json"), responses((status = 200, description = "JSON:API document", body = schema::ExecutionDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn capability(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(capability): Path<String>,
    Attributes(attrs): Attributes<Bound>,
) -> Result<Document, ApiError> {
    check_input(&attrs.input, attrs.idempotency_key.as_deref())?;
    for (field, value) in [
        ("blueprint", Some(&attrs.blueprint)),
        ("workflow", Some(&attrs.workflow)),
        ("operation", attrs.operation.as_ref()),
    ] {
        if value.is_some_and(|v| v.is_empty() || v.len() > 200) {
            return Err(ApiError::unprocessable(
                "invalid_attributes",
                format!("{field} must be 1-200 characters"),
            ));
        }
    }
    let execution = app
        .exec
        .execute_bound(exec::BoundRequest {
            tenant_id: tenant,
            blueprint: attrs.blueprint,
            environment: attrs.environment,
            workflow: attrs.workflow,
            operation: attrs.operation,
            capability,
            input: attrs.input,
            idempotency_key: attrs.idempotency_key,
        })
        .await?;
    Ok(render(execution))
}

fn check_input(input: &Value, idempotency_key: Option<&str>) -> Result<(), ApiError> {
    if !input.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_input",
            "input must be a JSON object",
        ));
    }
    if idempotency_key.is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::unprocessable(
            "invalid_attributes",
            "idempotencyKey must be 1-255 characters",
        ));
    }
    Ok(())
}

/// The `executions` resource, serialized straight from the execution (the hottest
/// answer: no intermediate JSON tree).
fn render(execution: Execution) -> Document {
    #[derive(Serialize)]
    struct Resource<'a> {
        data: Data<'a>,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        attributes: Attributes<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Attributes<'a> {
        connection_id: &'a str,
        duration_ms: u64,
        failover: &'a [Skipped],
        integration_key: &'a str,
        output: &'a Value,
        replayed: bool,
    }
    Document::serialized(&Resource {
        data: Data {
            kind: "executions",
            id: &execution.id,
            attributes: Attributes {
                connection_id: &execution.connection_id,
                duration_ms: execution.duration_ms,
                failover: &execution.skipped,
                integration_key: &execution.integration_key,
                output: &execution.output,
                replayed: execution.replayed,
            },
        },
    })
}
