//! Execution: running a capability on a connection. Checks the connection and the
//! capability, validates the input against its contract, answers repeats of an
//! idempotency key from the store, spends from the provider account's rate budget and
//! the connection's daily quota, vends the credential, calls the connector in a fresh
//! sandbox, maps its answer to a typed [`Error`], and audits the call with secrets
//! redacted — refusals included. `failover` adds the binding path: resolution, policy
//! and failover in front of the same steps; `gates` holds the checks before a provider
//! call (circuit, budget, quota).
//!
//! May import: `binding`, `credentials`, `accounts`, `runtime`, `audit`, `store`,
//! `domain`. Only `api` and `app` import it.

pub mod circuit;
pub mod contracts;
mod error;
mod failover;
mod gates;
pub mod idempotency;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use failover::BoundRequest;

use crate::accounts::connections::{self, Connections};
use crate::audit::{self, Audit, Redactor};
use crate::binding::resolver::Resolver;
use crate::credentials::tokens::Tokens;
use crate::domain::{
    now_ms, Classify, Connection, ConnectionStatus, Decision, Environment, OutboundRecord, Skipped,
};
use crate::exec::circuit::Circuits;
use crate::exec::contracts::Contracts;
use crate::exec::idempotency::{Begin, Idempotency};
use crate::runtime::connectors::{Answer, ConnectorCall, Connectors, Export};
use crate::runtime::ratelimit::RateLimits;
use crate::runtime::{CallContext, CallError, Health};
use crate::store::QuotaStore;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

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
    quotas: Arc<dyn QuotaStore>,
    connections: Connections,
    tokens: Tokens,
    connectors: Arc<dyn Connectors>,
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
    /// Daily quota counters.
    pub quotas: Arc<dyn QuotaStore>,
    /// Connection lookups.
    pub connections: Connections,
    /// Vending.
    pub tokens: Tokens,
    /// The connectors (the catalog run by the runtime, or a test double).
    pub connectors: Arc<dyn Connectors>,
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
            quotas: parts.quotas,
            connections: parts.connections,
            tokens: parts.tokens,
            connectors: parts.connectors,
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
            return run(trace).await.map(|served| (audit::new_id(), served));
        };
        match self.idempotency.begin(tenant_id, key, &identity()).await? {
            Begin::Conflict => Err(Error::IdempotencyConflict),
            Begin::Replay(stored) => {
                trace.replayed = true;
                trace.connection = match self.connections.get(tenant_id, &stored.connection_id) {
                    Ok(connection) => Some(connection),
                    // Deleted since: the replay is still the stored answer.
                    Err(connections::Error::NotFound) => None,
                    Err(e) => return Err(e.into()),
                };
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
                let id = audit::new_id();
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
        let connector = self.connectors.require(connection)?;
        let spec = &connector.spec;
        trace.connector_version = Some(spec.version);
        let capability =
            spec.capability(attempt.capability)
                .ok_or_else(|| Error::UnsupportedCapability {
                    connector: spec.slug.clone(),
                    capability: attempt.capability.to_owned(),
                })?;
        self.contracts
            .validate(&capability.key, capability.version, attempt.input)
            .map_err(|e| Error::InvalidInput {
                path: e.path,
                message: e.message,
            })?;
        // A connection that cannot vend spends no budget.
        if let Some(refusal) = gates::unusable(connection.status) {
            return Err(Error::Vend(refusal));
        }
        let quota_day = self.admit(connection, spec).await?;
        let secret = self.tokens.vend(connection).await?;
        let mut context = CallContext::for_connection(connection, attempt.idempotency_key);
        context.config = attempt
            .config
            .unwrap_or_else(|| spec.connection_config(connection, &Map::new()));
        let input = attempt.input.to_string();
        let called = self
            .connectors
            .call(ConnectorCall {
                connection,
                connector: &connector,
                context,
                export: Export::Execute {
                    capability: attempt.capability,
                    input: &input,
                    secret: &secret,
                },
                budget: None,
            })
            .await;
        trace.redactor = trace.redactor.merged(&called.redactor);
        trace.outbound.extend(called.outbound);
        let answer = match called.result {
            // Nothing ran: no quota spent, and nothing the circuit should learn from
            // (a success would close it, a failure open it).
            Err(busy @ CallError::Busy(_)) => {
                self.give_back(connection, quota_day);
                self.circuits.release(&connection.id);
                return Err(busy.into());
            }
            answer => answer,
        };
        let result = self.answered(answer, attempt.capability, &mut trace.connection);
        self.circuits.record(
            &connection.id,
            result.as_ref().is_err_and(|e| e.classify().circuit),
        );
        let Answer::Output(raw) = result? else {
            return Err(unexpected_answer());
        };
        // A connector should never echo the credential; if one does, it goes no further.
        let raw = trace.redactor.redact(&raw);
        serde_json::from_str(&raw).map_err(|_| {
            Error::Connector(CallError::Plugin(
                "the connector returned output that is not JSON".into(),
            ))
        })
    }

    /// Runs the connector's health check with the connection's credential.
    pub async fn health(&self, tenant_id: &str, connection_id: &str) -> Result<Health, Error> {
        let mut trace = Trace::start();
        let result = self
            .check_health(tenant_id, connection_id, &mut trace)
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

    async fn check_health(
        &self,
        tenant_id: &str,
        connection_id: &str,
        trace: &mut Trace,
    ) -> Result<Health, Error> {
        let connection = self.connections.get(tenant_id, connection_id)?;
        trace.connection = Some(connection.clone());
        let connector = self.connectors.require(&connection)?;
        trace.connector_version = Some(connector.spec.version);
        let secret = self.tokens.vend(&connection).await?;
        let called = self
            .connectors
            .call(ConnectorCall {
                connection: &connection,
                connector: &connector,
                context: CallContext::for_connection(&connection, None),
                export: Export::Health { secret: &secret },
                budget: None,
            })
            .await;
        trace.redactor = called.redactor;
        trace.outbound = called.outbound;
        match self.answered(called.result, "health", &mut trace.connection) {
            Ok(Answer::Health(health)) => Ok(Health {
                healthy: health.healthy,
                detail: trace.redactor.redact(&health.detail),
            }),
            Ok(_) => Err(unexpected_answer()),
            // A provider refusal is an unhealthy answer, not a failed check.
            Err(Error::Connector(CallError::Provider {
                status, message, ..
            })) => Ok(Health {
                healthy: false,
                detail: format!("provider answered {status}: {message}"),
            }),
            Err(Error::Connector(CallError::ProviderUnavailable(detail))) => Ok(Health {
                healthy: false,
                detail,
            }),
            Err(e) => Err(e),
        }
    }

    /// What a settled call means for this use case: a rejected credential flips the
    /// connection to `NEEDS_REAUTH`; an unsupported call names the capability.
    fn answered(
        &self,
        result: Result<Answer, CallError>,
        capability: &str,
        connection: &mut Option<Connection>,
    ) -> Result<Answer, Error> {
        match result {
            Ok(answer) => Ok(answer),
            Err(CallError::NeedsReauth(reason)) => {
                if let Some(connection) = connection.as_mut() {
                    if let Err(e) = self.tokens.mark_needs_reauth(&connection.id, &reason) {
                        tracing::error!(connection = %connection.id, error = %e, "could not flip connection to NEEDS_REAUTH");
                    }
                    connection.status = ConnectionStatus::NeedsReauth;
                }
                Err(CallError::NeedsReauth(reason).into())
            }
            Err(CallError::Unsupported) => Err(Error::UnsupportedCapability {
                connector: connection
                    .as_ref()
                    .map(|c| c.connector.clone())
                    .unwrap_or_default(),
                capability: capability.to_owned(),
            }),
            Err(e) => Err(e.into()),
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
        let (id, outcome) = match outcome {
            // A replay is its own record, pointing at the execution it repeats.
            Ok(Some(original)) if trace.replayed => (
                audit::new_id(),
                ("ok", Some(format!("replay of {original}"))),
            ),
            Ok(id) => (id.map_or_else(audit::new_id, str::to_owned), ("ok", None)),
            Err(e) => (
                audit::new_id(),
                (e.code(), Some(trace.redactor.redact(&e.to_string()))),
            ),
        };
        let mut record = audit::connector_call(
            tenant_id,
            trace.connection.as_ref(),
            trace.connector_version,
            capability,
            (trace.time, trace.started.unwrap_or_else(Instant::now)),
            std::mem::take(&mut trace.outbound),
            outcome,
        );
        record.id = id;
        record.idempotency_key = idempotency_key;
        record.blueprint = trace.blueprint.clone();
        record.environment = trace.environment;
        record.workflow = trace.workflow.clone();
        record.operation = trace.operation.clone();
        record.decision = trace.decision.clone();
        record.skipped = trace.skipped.clone();
        record.replayed = trace.replayed;
        self.audit.record(record);
    }
}

/// What a served execution returns, before it is audited.
struct Served {
    output: Value,
    connection_id: String,
    integration_key: String,
}

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

/// An export answered with another export's kind of answer: a connector double bug.
fn unexpected_answer() -> Error {
    Error::Connector(CallError::Plugin(
        "the connector answered with the wrong kind of result".into(),
    ))
}

/// Config validation runs health checks through the execute use case (audited; health checks spend no budget).
impl crate::binding::configs::HealthProbe for Exec {
    fn probe<'a>(
        &'a self,
        tenant_id: &'a str,
        connection_id: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Health, crate::binding::configs::ProbeError>>
                + Send
                + 'a,
        >,
    > {
        use crate::binding::configs::ProbeError;
        Box::pin(async move {
            self.health(tenant_id, connection_id)
                .await
                .map_err(|e| match e {
                    Error::Connector(CallError::Busy(_)) => ProbeError::Busy(e.to_string()),
                    e => ProbeError::Failed(e.to_string()),
                })
        })
    }
}
