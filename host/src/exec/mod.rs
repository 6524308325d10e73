//! Execution: running a capability on a connection. Checks the connection and the
//! capability, validates the input against its contract, answers repeats of an
//! idempotency key from the store, spends from the provider account's rate budget and
//! the connection's daily quota, vends the credential, calls the connector in a fresh
//! sandbox, maps its answer to a typed [`Error`], and audits the call with secrets
//! redacted — refusals included. [`bound`] adds the binding path: resolution, policy
//! and failover in front of the same steps.

mod bound;

pub use bound::BoundRequest;

use crate::audit::{Audit, Redactor};
use crate::capabilities::Contracts;
use crate::catalog::Catalog;
use crate::circuit::Circuits;
use crate::connections::{self, Connections};
use crate::domain::{
    now_ms, AuditRecord, Connection, ConnectionStatus, Decision, Environment, OutboundRecord,
    SecretFields, Skipped,
};
use crate::idempotency::{Begin, Idempotency};
use crate::ratelimit::RateLimits;
use crate::resolver::Resolver;
use crate::runtime::{self, CallContext, ConnectorError, Health, Plugin, Runtime};
use crate::store::{self, Store};
use crate::tokens::{self, Tokens};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// No published binding provides the capability.
    #[error("{0}")]
    NoBinding(String),
    /// Bindings exist, but no scope admits the call.
    #[error("{0}")]
    ScopeDenied(String),
    /// The provider account's rate budget or the connection's daily quota is spent.
    #[error("{reason}; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// Which limit.
        reason: String,
        /// When a retry may pass.
        retry_after: Duration,
    },
    /// The connection's circuit is open after repeated provider failures.
    #[error("the provider failed repeatedly; calls resume in {} s", .0.as_secs().max(1))]
    CircuitOpen(Duration),
    /// The idempotency key was used for a different request.
    #[error("idempotency key already used with a different request")]
    IdempotencyConflict,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
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
            Error::NoBinding(_) => "no_binding",
            Error::ScopeDenied(_) => "scope_denied",
            Error::RateLimited { .. } => "rate_limited",
            Error::CircuitOpen(_) => "circuit_open",
            Error::IdempotencyConflict => "idempotency_conflict",
            Error::Store(_) => "internal",
        }
    }

    /// Whether the next binding may serve instead: the provider was not asked to act
    /// (or refused the credential outright), so trying elsewhere cannot act twice.
    fn allows_failover(&self) -> bool {
        matches!(
            self,
            Error::Vend(
                tokens::Error::NeedsReauth
                    | tokens::Error::Revoked
                    | tokens::Error::Broken
                    | tokens::Error::NoCredential
                    | tokens::Error::RefreshFailed(_)
            ) | Error::NeedsReauth(_)
                | Error::RateLimited { .. }
                | Error::CircuitOpen(_)
                | Error::ConnectorUnavailable(_)
        )
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
    /// Answered from the idempotency store.
    pub replayed: bool,
    /// Bindings passed over before the one that served.
    pub skipped: Vec<Skipped>,
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
    store: Store,
    connections: Connections,
    tokens: Tokens,
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    contracts: Arc<Contracts>,
    audit: Audit,
    resolver: Resolver,
    limits: RateLimits,
    circuits: Circuits,
    idempotency: Idempotency,
}

/// What one call leaves for its audit record.
#[derive(Default)]
struct Trace {
    started: Option<Instant>,
    time: u64,
    connection: Option<Connection>,
    connector_version: Option<u32>,
    outbound: Vec<OutboundRecord>,
    redactor: Redactor,
    blueprint: Option<String>,
    environment: Option<Environment>,
    workflow: Option<String>,
    operation: Option<String>,
    decision: Option<Decision>,
    skipped: Vec<Skipped>,
    replayed: bool,
}

/// What [`Exec`] is built from.
pub struct Parts {
    /// The store (quotas).
    pub store: Store,
    /// Connection lookups.
    pub connections: Connections,
    /// Vending.
    pub tokens: Tokens,
    /// Loaded connectors.
    pub catalog: Arc<Catalog>,
    /// The sandbox.
    pub runtime: Arc<Runtime>,
    /// Input contracts.
    pub contracts: Arc<Contracts>,
    /// Audit records.
    pub audit: Audit,
    /// Binding resolution.
    pub resolver: Resolver,
    /// Provider rate budgets.
    pub limits: RateLimits,
    /// Per-connection circuit breakers.
    pub circuits: Circuits,
    /// Idempotency keys.
    pub idempotency: Idempotency,
}

/// One call on one connection, as [`Exec::attempt`] runs it.
struct Attempt<'a> {
    connection: &'a Connection,
    capability: &'a str,
    input: &'a Value,
    /// The resolved config of a binding; `None` is the connection's own (spec
    /// defaults < connection config).
    config: Option<Map<String, Value>>,
    idempotency_key: Option<String>,
}

impl Exec {
    /// Wires the use case.
    pub fn new(parts: Parts) -> Self {
        Exec {
            store: parts.store,
            connections: parts.connections,
            tokens: parts.tokens,
            catalog: parts.catalog,
            runtime: parts.runtime,
            contracts: parts.contracts,
            audit: parts.audit,
            resolver: parts.resolver,
            limits: parts.limits,
            circuits: parts.circuits,
            idempotency: parts.idempotency,
        }
    }

    /// The resolver this use case routes with.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Runs `request.capability` on the tenant's connection and audits the outcome.
    pub async fn execute(&self, request: Request) -> Result<Execution, Error> {
        let mut trace = Trace::start();
        // What makes a repeat "the same request" (built only when a key is given).
        let identity = || {
            json!({
                "route": "connection",
                "connectionId": request.connection_id,
                "capability": request.capability,
                "input": request.input,
            })
        };
        let result = self
            .once(
                &request.tenant_id,
                request.idempotency_key.as_deref(),
                identity,
                &mut trace,
                |trace| self.run_on_connection(&request, trace),
            )
            .await;
        self.finish(
            &request.tenant_id,
            &request.capability,
            request.idempotency_key,
            trace,
            result,
        )
    }

    async fn run_on_connection(
        &self,
        request: &Request,
        trace: &mut Trace,
    ) -> Result<Served, Error> {
        let connection = self
            .connections
            .get(&request.tenant_id, &request.connection_id)?;
        let attempt = Attempt {
            connection: &connection,
            capability: &request.capability,
            input: &request.input,
            config: None,
            idempotency_key: request.idempotency_key.clone(),
        };
        let output = self.attempt(attempt, trace).await?;
        Ok(Served {
            output,
            connection_id: connection.id.clone(),
            integration_key: connection.integration_key.clone(),
        })
    }

    /// Runs `run` once per idempotency key: a repeat of the same request replays the
    /// stored result, a different request under the key is a conflict.
    async fn once<'a, F, Fut>(
        &self,
        tenant_id: &str,
        key: Option<&str>,
        identity: impl FnOnce() -> Value,
        trace: &'a mut Trace,
        run: F,
    ) -> Result<(String, Served), Error>
    where
        F: FnOnce(&'a mut Trace) -> Fut,
        Fut: std::future::Future<Output = Result<Served, Error>> + 'a,
    {
        let Some(key) = key else {
            return run(trace).await.map(|served| (audit_id(), served));
        };
        match self.idempotency.begin(tenant_id, key, &identity()).await? {
            Begin::Conflict => Err(Error::IdempotencyConflict),
            Begin::Replay(stored) => {
                trace.replayed = true;
                trace.connection = self.store.connection(&stored.connection_id)?;
                Ok((
                    stored.execution_id,
                    Served {
                        output: stored.output,
                        connection_id: stored.connection_id,
                        integration_key: stored.integration_key,
                    },
                ))
            }
            Begin::Run(flight) => {
                let served = run(trace).await?;
                let id = audit_id();
                // The provider has acted: the caller gets the result even if it cannot
                // be kept for replays (a retry then reaches the provider's own
                // idempotency, e.g. Stripe's Idempotency-Key).
                if let Err(e) = self.idempotency.complete(
                    flight,
                    &id,
                    &served.output,
                    &served.connection_id,
                    &served.integration_key,
                ) {
                    tracing::error!(execution = %id, error = %e, "idempotent result could not be stored");
                }
                Ok((id, served))
            }
        }
    }

    /// Audits a finished execution and shapes its answer.
    fn finish(
        &self,
        tenant_id: &str,
        capability: &str,
        idempotency_key: Option<String>,
        mut trace: Trace,
        result: Result<(String, Served), Error>,
    ) -> Result<Execution, Error> {
        let outcome = result.as_ref().map(|(id, _)| Some(id.as_str()));
        self.record(tenant_id, capability, idempotency_key, &mut trace, outcome);
        let (id, served) = result?;
        Ok(Execution {
            id,
            output: served.output,
            connection_id: served.connection_id,
            integration_key: served.integration_key,
            duration_ms: trace.elapsed_ms(),
            replayed: trace.replayed,
            skipped: trace.skipped,
        })
    }

    /// One call of `attempt.capability` on one connection: contract, circuit, rate
    /// budget, quota, vend, sandbox. Everything it learns goes into `trace`.
    async fn attempt(&self, attempt: Attempt<'_>, trace: &mut Trace) -> Result<Value, Error> {
        let connection = attempt.connection;
        trace.connection = Some(connection.clone());
        let plugin = self.plugin(connection)?;
        trace.connector_version = Some(plugin.spec.version);
        let capability = plugin.spec.capability(attempt.capability).ok_or_else(|| {
            Error::UnsupportedCapability {
                connector: plugin.spec.slug.clone(),
                capability: attempt.capability.to_owned(),
            }
        })?;
        self.contracts
            .validate(&capability.key, capability.version, attempt.input)
            .map_err(|e| Error::InvalidInput {
                path: e.path,
                message: e.message,
            })?;
        // A connection that cannot vend spends no budget.
        if let Some(refusal) = unusable(connection.status) {
            return Err(Error::Vend(refusal));
        }
        self.admit(connection, &plugin).await?;
        let secret = self.tokens.vend(connection).await?;
        trace.redactor = trace.redactor.merged(&redactor_for(&secret));
        let mut ctx = call_context(connection, attempt.idempotency_key);
        ctx.config = attempt
            .config
            .unwrap_or_else(|| plugin.spec.connection_config(connection, &Map::new()));
        let report = self
            .runtime
            .execute(
                &plugin,
                &ctx,
                &secret,
                attempt.capability,
                &attempt.input.to_string(),
            )
            .await;
        trace.outbound.extend(report.outbound);
        let result = self.guest_result(
            report.result,
            attempt.capability,
            &mut trace.connection,
            &trace.redactor,
        );
        self.circuits
            .record(&connection.id, result.as_ref().is_err_and(provider_failed));
        // A connector should never echo the credential; if one does, it goes no further.
        let raw = trace.redactor.redact(&result?);
        serde_json::from_str(&raw).map_err(|_| {
            Error::PluginError("the connector returned output that is not JSON".into())
        })
    }

    /// The gates before a provider call: the connection's circuit, the provider
    /// account's rate budget (shared by every connection to the same account), and the
    /// connection's daily quota. A refusal never reaches the plugin.
    async fn admit(&self, connection: &Connection, plugin: &Plugin) -> Result<(), Error> {
        self.circuits
            .check(&connection.id)
            .map_err(Error::CircuitOpen)?;
        // The provider's ceiling is per account; a tenant's own claim of an account id
        // must not spend another tenant's budget, and test and live modes are separate.
        let account = match &connection.external_account_id {
            Some(account) => format!(
                "account\0{}\0{}\0{account}",
                connection.tenant_id,
                connection.environment.as_str()
            ),
            None => format!("connection\0{}", connection.id),
        };
        self.limits
            .acquire(
                &plugin.spec.slug,
                &plugin.spec.rate_profile,
                &account,
                Duration::ZERO,
            )
            .await
            .map_err(|retry_after| Error::RateLimited {
                reason: format!(
                    "the {} account's rate budget ({} requests per {} s) is spent",
                    plugin.spec.display_name,
                    plugin.spec.rate_profile.requests,
                    plugin.spec.rate_profile.per_seconds
                ),
                retry_after,
            })?;
        if let Some(quota) = connection.daily_quota {
            let now = now_ms();
            let day = now / DAY_MS;
            if !self.store.take_quota(&connection.id, day, quota)? {
                return Err(Error::RateLimited {
                    reason: format!("the connection's daily quota of {quota} executions is spent"),
                    retry_after: Duration::from_millis((day + 1) * DAY_MS - now),
                });
            }
        }
        Ok(())
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
                Ok(health) => Ok(Health {
                    healthy: health.healthy,
                    detail: trace.redactor.redact(&health.detail),
                }),
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
            &mut trace,
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
        trace: &mut Trace,
        outcome: Result<Option<&str>, &Error>,
    ) {
        let (id, outcome, detail) = match outcome {
            // A replay is its own record, pointing at the execution it repeats.
            Ok(Some(original)) if trace.replayed => (
                audit_id(),
                "ok".to_owned(),
                Some(format!("replay of {original}")),
            ),
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
            outbound: std::mem::take(&mut trace.outbound),
            duration_ms: trace.elapsed_ms(),
            blueprint: trace.blueprint.clone(),
            environment: trace.environment,
            workflow: trace.workflow.clone(),
            operation: trace.operation.clone(),
            decision: trace.decision.clone(),
            skipped: trace.skipped.clone(),
            replayed: trace.replayed,
        });
    }
}

/// What a served execution returns, before it is audited.
struct Served {
    output: Value,
    connection_id: String,
    integration_key: String,
}

/// A UTC day in milliseconds: quotas reset at midnight UTC.
const DAY_MS: u64 = 24 * 3600 * 1000;

impl Trace {
    fn start() -> Self {
        Trace {
            started: Some(Instant::now()),
            time: now_ms(),
            ..Trace::default()
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started
            .map_or(0, |started| started.elapsed().as_millis() as u64)
    }
}

/// Why a connection in `status` cannot serve without asking anyone.
fn unusable(status: ConnectionStatus) -> Option<tokens::Error> {
    match status {
        ConnectionStatus::Active => None,
        ConnectionStatus::NeedsReauth => Some(tokens::Error::NeedsReauth),
        ConnectionStatus::Revoked => Some(tokens::Error::Revoked),
        ConnectionStatus::Error => Some(tokens::Error::Broken),
    }
}

/// Whether an error counts against the connection's circuit: the provider (or the
/// way to it) failed, as opposed to refusing a request.
fn provider_failed(error: &Error) -> bool {
    match error {
        Error::ProviderUnavailable(_) | Error::PluginTimeout => true,
        Error::Provider { status, .. } => *status >= 500,
        _ => false,
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
