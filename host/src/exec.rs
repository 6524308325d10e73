//! Execution: running a capability on a connection. Checks the connection and the
//! capability, validates the input against its contract, vends the credential, calls
//! the connector in a fresh sandbox, maps its answer to a typed [`Error`], and audits
//! the call with secrets redacted — refusals included.

use crate::audit::{Audit, Redactor};
use crate::capabilities::Contracts;
use crate::catalog::Catalog;
use crate::connections::{self, Connections};
use crate::domain::{
    now_ms, AuditRecord, Connection, ConnectionStatus, OutboundRecord, SecretFields,
};
use crate::runtime::{self, CallContext, ConnectorError, Health, Plugin, Runtime};
use crate::tokens::{self, Tokens};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Why an execution did not produce an output. Each variant is one stable API code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connection lookup failed.
    #[error(transparent)]
    Connection(#[from] connections::Error),
    /// The credential cannot be vended.
    #[error(transparent)]
    Vend(#[from] tokens::Error),
    /// The connector does not offer the capability.
    #[error("connector `{connector}` does not provide `{capability}`")]
    UnsupportedCapability {
        /// The connector.
        connector: String,
        /// The capability.
        capability: String,
    },
    /// The input fails its contract (or the connector refused it).
    #[error("invalid input at {path}: {message}")]
    InvalidInput {
        /// JSON pointer.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The provider rejected the credential.
    #[error("the provider rejected the credential: {0}")]
    NeedsReauth(String),
    /// The provider answered with an error.
    #[error("provider error {status}: {message}")]
    Provider {
        /// Provider status.
        status: u16,
        /// Provider code.
        code: Option<String>,
        /// Provider message (redacted).
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// A temporary provider failure.
    #[error("the provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// The plugin ran out of time.
    #[error("the connector did not finish within its deadline")]
    PluginTimeout,
    /// The plugin ran out of memory.
    #[error("the connector exceeded its memory limit")]
    PluginMemory,
    /// The plugin failed (trap, bad output, internal error).
    #[error("the connector failed: {0}")]
    PluginError(String),
    /// The plugin of the connection is no longer loaded.
    #[error("connector `{0}` is not loaded")]
    ConnectorUnavailable(String),
}

impl Error {
    /// The stable code recorded in audit records (the API uses the same codes).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Connection(connections::Error::NotFound) => "not_found",
            Error::Connection(_) => "internal",
            Error::Vend(tokens::Error::NeedsReauth) | Error::NeedsReauth(_) => "needs_reauth",
            Error::Vend(tokens::Error::Revoked) => "revoked",
            Error::Vend(tokens::Error::Broken) => "connection_error",
            Error::Vend(tokens::Error::NoCredential) => "no_credential",
            Error::Vend(tokens::Error::RefreshFailed(_)) => "refresh_failed",
            Error::Vend(_) => "vault_error",
            Error::UnsupportedCapability { .. } => "unsupported_capability",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Provider { .. } => "provider_error",
            Error::ProviderUnavailable(_) => "provider_unavailable",
            Error::PluginTimeout => "plugin_timeout",
            Error::PluginMemory => "plugin_memory",
            Error::PluginError(_) => "plugin_error",
            Error::ConnectorUnavailable(_) => "connector_unavailable",
        }
    }
}

/// A successful execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The audit record's id.
    pub id: String,
    /// The connector's JSON output.
    pub output: Value,
    /// The connection that served.
    pub connection_id: String,
    /// Its integration key.
    pub integration_key: String,
    /// Wall time.
    pub duration_ms: u64,
}

/// A capability request on one connection.
#[derive(Debug, Clone)]
pub struct Request {
    /// The calling tenant.
    pub tenant_id: String,
    /// The connection.
    pub connection_id: String,
    /// `payments.createPaymentIntent`.
    pub capability: String,
    /// The JSON input.
    pub input: Value,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
}

/// The execute use case and its dependencies.
#[derive(Clone)]
pub struct Exec {
    connections: Connections,
    tokens: Tokens,
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    contracts: Arc<Contracts>,
    audit: Audit,
}

/// What one call leaves for its audit record.
struct Trace {
    started: Instant,
    time: u64,
    connection: Option<Connection>,
    connector_version: Option<u32>,
    outbound: Vec<OutboundRecord>,
    redactor: Redactor,
}

impl Exec {
    /// Wires the use case.
    pub fn new(
        connections: Connections,
        tokens: Tokens,
        catalog: Arc<Catalog>,
        runtime: Arc<Runtime>,
        contracts: Arc<Contracts>,
        audit: Audit,
    ) -> Self {
        Exec {
            connections,
            tokens,
            catalog,
            runtime,
            contracts,
            audit,
        }
    }

    /// Runs `request.capability` on the tenant's connection and audits the outcome.
    pub async fn execute(&self, request: Request) -> Result<Execution, Error> {
        let mut trace = Trace::start();
        let result = self.run_execute(&request, &mut trace).await;
        let outcome = result.as_ref().map(|(id, _)| Some(id.as_str()));
        self.record(
            &request.tenant_id,
            &request.capability,
            request.idempotency_key.clone(),
            &trace,
            outcome,
        );
        let duration_ms = trace.started.elapsed().as_millis() as u64;
        let (id, output) = result?;
        let connection = trace
            .connection
            .expect("a successful execution has a connection");
        Ok(Execution {
            id,
            output,
            connection_id: connection.id,
            integration_key: connection.integration_key,
            duration_ms,
        })
    }

    async fn run_execute(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<(String, Value), Error> {
        let connection = self
            .connections
            .get(&request.tenant_id, &request.connection_id)?;
        trace.connection = Some(connection.clone());
        let plugin = self.plugin(&connection)?;
        trace.connector_version = Some(plugin.spec.version);
        let capability = plugin.spec.capability(&request.capability).ok_or_else(|| {
            Error::UnsupportedCapability {
                connector: plugin.spec.slug.clone(),
                capability: request.capability.clone(),
            }
        })?;
        self.contracts
            .validate(&capability.key, capability.version, &request.input)
            .map_err(|e| Error::InvalidInput {
                path: e.path,
                message: e.message,
            })?;
        let secret = self.tokens.vend(&connection).await?;
        trace.redactor = redactor_for(&secret);
        let ctx = call_context(&connection, request.idempotency_key.clone());
        let report = self
            .runtime
            .execute(
                &plugin,
                &ctx,
                &secret,
                &request.capability,
                &request.input.to_string(),
            )
            .await;
        trace.outbound = report.outbound;
        let raw = self.guest_result(
            report.result,
            &request.capability,
            &mut trace.connection,
            &trace.redactor,
        )?;
        let output: Value = serde_json::from_str(&raw).map_err(|_| {
            Error::PluginError("the connector returned output that is not JSON".into())
        })?;
        Ok((audit_id(), output))
    }

    /// Runs the connector's health check with the connection's credential.
    pub async fn health(&self, tenant_id: &str, connection_id: &str) -> Result<Health, Error> {
        let mut trace = Trace::start();
        let result = async {
            let connection = self.connections.get(tenant_id, connection_id)?;
            trace.connection = Some(connection.clone());
            let plugin = self.plugin(&connection)?;
            trace.connector_version = Some(plugin.spec.version);
            let secret = self.tokens.vend(&connection).await?;
            trace.redactor = redactor_for(&secret);
            let report = self
                .runtime
                .health_check(&plugin, &call_context(&connection, None), &secret)
                .await;
            trace.outbound = report.outbound;
            match self.guest_result(
                report.result,
                "health",
                &mut trace.connection,
                &trace.redactor,
            ) {
                Ok(health) => Ok(health),
                // A provider refusal is an unhealthy answer, not a failed check.
                Err(Error::Provider {
                    status, message, ..
                }) => Ok(Health {
                    healthy: false,
                    detail: format!("provider answered {status}: {message}"),
                }),
                Err(Error::ProviderUnavailable(detail)) => Ok(Health {
                    healthy: false,
                    detail,
                }),
                Err(e) => Err(e),
            }
        }
        .await;
        self.record(
            tenant_id,
            "health",
            None,
            &trace,
            result.as_ref().map(|_| None),
        );
        result
    }

    fn plugin(&self, connection: &Connection) -> Result<Arc<Plugin>, Error> {
        self.catalog
            .get(&connection.connector)
            .ok_or_else(|| Error::ConnectorUnavailable(connection.connector.clone()))
    }

    /// Maps a guest call's result; a rejected credential flips the connection to
    /// `NEEDS_REAUTH`.
    fn guest_result<T>(
        &self,
        result: runtime::Result<Result<T, ConnectorError>>,
        capability: &str,
        connection: &mut Option<Connection>,
        redactor: &Redactor,
    ) -> Result<T, Error> {
        match map_guest_result(result, redactor) {
            Err(Error::NeedsReauth(reason)) => {
                if let Some(connection) = connection.as_mut() {
                    if let Err(e) = self.tokens.mark_needs_reauth(&connection.id, &reason) {
                        tracing::error!(connection = %connection.id, error = %e, "could not flip connection to NEEDS_REAUTH");
                    }
                    connection.status = ConnectionStatus::NeedsReauth;
                }
                Err(Error::NeedsReauth(reason))
            }
            Err(Error::UnsupportedCapability { .. }) => Err(Error::UnsupportedCapability {
                connector: connection
                    .as_ref()
                    .map(|c| c.connector.clone())
                    .unwrap_or_default(),
                capability: capability.to_owned(),
            }),
            other => other,
        }
    }

    fn record(
        &self,
        tenant_id: &str,
        capability: &str,
        idempotency_key: Option<String>,
        trace: &Trace,
        outcome: Result<Option<&str>, &Error>,
    ) {
        let (id, outcome, detail) = match outcome {
            Ok(id) => (
                id.map_or_else(audit_id, str::to_owned),
                "ok".to_owned(),
                None,
            ),
            Err(e) => (
                audit_id(),
                e.code().to_owned(),
                Some(trace.redactor.redact(&e.to_string())),
            ),
        };
        self.audit.record(AuditRecord {
            id,
            time: trace.time,
            tenant_id: tenant_id.to_owned(),
            connection_id: trace.connection.as_ref().map(|c| c.id.clone()),
            connector: trace.connection.as_ref().map(|c| c.connector.clone()),
            connector_version: trace.connector_version,
            capability: capability.to_owned(),
            outcome,
            detail,
            idempotency_key,
            outbound: trace.outbound.clone(),
            duration_ms: trace.started.elapsed().as_millis() as u64,
        });
    }
}

impl Trace {
    fn start() -> Self {
        Trace {
            started: Instant::now(),
            time: now_ms(),
            connection: None,
            connector_version: None,
            outbound: Vec::new(),
            redactor: Redactor::default(),
        }
    }
}

/// Maps a guest call's result to this module's errors, with every message redacted.
/// Pure: the caller decides what a rejected credential means for its connection.
pub fn map_guest_result<T>(
    result: runtime::Result<Result<T, ConnectorError>>,
    redactor: &Redactor,
) -> Result<T, Error> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(ConnectorError::NeedsReauth(reason))) => {
            Err(Error::NeedsReauth(redactor.redact(&reason)))
        }
        Ok(Err(ConnectorError::InvalidInput(message))) => Err(Error::InvalidInput {
            path: "/".into(),
            message: redactor.redact(&message),
        }),
        Ok(Err(ConnectorError::Unsupported(message))) => {
            tracing::debug!(reason = %redactor.redact(&message), "connector refused the call as unsupported");
            Err(Error::UnsupportedCapability {
                connector: String::new(),
                capability: String::new(),
            })
        }
        Ok(Err(ConnectorError::Provider {
            status,
            code,
            message,
            retryable,
        })) => Err(Error::Provider {
            status,
            code: code.map(|c| redactor.redact(&c)),
            message: redactor.redact(&message),
            retryable,
        }),
        Ok(Err(ConnectorError::Transient(message))) => {
            Err(Error::ProviderUnavailable(redactor.redact(&message)))
        }
        Ok(Err(ConnectorError::Internal(message))) => {
            Err(Error::PluginError(redactor.redact(&message)))
        }
        Err(runtime::Error::Timeout(_)) => Err(Error::PluginTimeout),
        Err(runtime::Error::Memory(_)) => Err(Error::PluginMemory),
        Err(runtime::Error::Trap(_)) => Err(Error::PluginError("the connector trapped".into())),
        Err(runtime::Error::Load(message)) => Err(Error::PluginError(redactor.redact(&message))),
    }
}

fn redactor_for(secret: &SecretFields) -> Redactor {
    Redactor::new(secret.values())
}

/// What a connector is told about a call on `connection`.
pub fn call_context(connection: &Connection, idempotency_key: Option<String>) -> CallContext {
    CallContext {
        connection_id: connection.id.clone(),
        tenant_id: connection.tenant_id.clone(),
        environment: connection.environment.as_str().to_owned(),
        external_account_id: connection.external_account_id.clone(),
        config: connection.config.clone(),
        idempotency_key,
    }
}

/// A fresh audit record id.
pub fn audit_id() -> String {
    format!("exe_{}", uuid::Uuid::new_v4().simple())
}
