//! Executions through the integration binding: resolve the tenant's published config,
//! let the policy decision point pick the admitted bindings, then try them in priority
//! order (each attempt checks the connection's status first). A binding whose
//! connection needs re-authorization, whose rate budget or quota
//! is spent, or whose circuit is open hands over to the next one (failover); any other
//! failure is the answer, so a provider is never asked twice to act.

use super::{Attempt, Error, Exec, Execution, Served, Trace};
use crate::binding::resolver::{self, Resolved};
use crate::domain::{Classify, Decision, Environment, Skipped};
use std::sync::Arc;

/// The resolution a call was admitted under, and the admitted candidates (indices into
/// its candidates for the capability, best first) with the operation each matched.
struct Admitted {
    resolved: Arc<Resolved>,
    candidates: Vec<(usize, String)>,
}
use serde_json::{json, Value};

/// `executeCapability`: a capability for a tenant's app in a workflow.
#[derive(Debug, Clone)]
pub struct BoundRequest {
    /// The calling tenant.
    pub tenant_id: String,
    /// The app's blueprint.
    pub blueprint: String,
    /// Sandbox or production.
    pub environment: Environment,
    /// The app's workflow (`checkout`).
    pub workflow: String,
    /// The operation id to match scopes with; defaults to each binding's own
    /// (`payments.stripe.createPaymentIntent`).
    pub operation: Option<String>,
    /// `payments.createPaymentIntent`.
    pub capability: String,
    /// The JSON input.
    pub input: Value,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
}

impl Exec {
    /// Runs `request` on the binding the tenant's published config and its policy
    /// choose, failing over down the priority order; audits the outcome.
    pub async fn execute_bound(&self, request: BoundRequest) -> Result<Execution, Error> {
        let mut trace = Trace::start();
        trace.blueprint = Some(request.blueprint.clone());
        trace.environment = Some(request.environment);
        trace.workflow = Some(request.workflow.clone());
        trace.operation = request.operation.clone();
        let identity = || {
            json!({
                "route": "capability",
                "blueprint": request.blueprint,
                "environment": request.environment,
                "workflow": request.workflow,
                "operation": request.operation,
                "capability": request.capability,
                "input": request.input,
            })
        };
        let result = match self.admitted(&request, &mut trace) {
            Ok(admitted) => {
                self.once(
                    &request.tenant_id,
                    request.idempotency_key.as_deref(),
                    identity,
                    &mut trace,
                    |trace| self.serve(&request, admitted, trace),
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.finish(
            &request.tenant_id,
            &request.capability,
            request.idempotency_key,
            trace,
            result,
        )
    }

    /// The candidates whose scope admits the call, best first; records the decision.
    fn admitted(&self, request: &BoundRequest, trace: &mut Trace) -> Result<Admitted, Error> {
        let resolved = self
            .resolver
            .resolve(&request.tenant_id, &request.blueprint, request.environment)
            .map_err(|e| match e {
                resolver::Error::NotPublished { .. } => Error::NoBinding(e.to_string()),
                resolver::Error::Store(e) => Error::Store(e),
            })?;
        let candidates = resolved.candidates(&request.capability);
        if candidates.is_empty() {
            let reason = format!(
                "no binding of the published `{}` config provides `{}`",
                request.blueprint, request.capability
            );
            trace.decision = Some(Decision {
                allowed: false,
                reason: reason.clone(),
            });
            return Err(Error::NoBinding(reason));
        }
        let mut admitted = Vec::new();
        let mut refusals = Vec::new();
        for (index, candidate) in candidates.iter().enumerate() {
            // The operation is the binding's own; a caller may name it (to be explicit)
            // but never substitute another to pass a scope.
            let operation = &candidate.operation;
            let verdict = match &request.operation {
                Some(named) if named != operation => Err(format!(
                    "the call names operation `{named}` but this binding runs `{operation}`"
                )),
                _ => candidate
                    .bound
                    .compiled_scope
                    .admits(&request.workflow, operation)
                    .map_err(|refusal| refusal.describe(&request.workflow, operation)),
            };
            match verdict {
                Ok(()) => admitted.push((index, operation.clone())),
                Err(why) => refusals.push(format!(
                    "slot `{}` ({}): {why}",
                    candidate.bound.slot_id, candidate.bound.connection.id
                )),
            }
        }
        let Some((first, operation)) = admitted.first() else {
            let reason = format!("no binding admits the call: {}", refusals.join("; "));
            trace.decision = Some(Decision {
                allowed: false,
                reason: reason.clone(),
            });
            return Err(Error::ScopeDenied(reason));
        };
        trace.operation = Some(operation.clone());
        trace.decision = Some(Decision {
            allowed: true,
            reason: format!(
                "slot `{}` admits workflow `{}` and operation `{operation}`{}",
                candidates[*first].bound.slot_id,
                request.workflow,
                if refusals.is_empty() {
                    String::new()
                } else {
                    format!(" (refused: {})", refusals.join("; "))
                }
            ),
        });
        Ok(Admitted {
            candidates: admitted,
            resolved,
        })
    }

    /// Tries the admitted candidates in order until one serves or one fails in a way
    /// that must not be retried elsewhere.
    async fn serve(
        &self,
        request: &BoundRequest,
        admitted: Admitted,
        trace: &mut Trace,
    ) -> Result<Served, Error> {
        let mut first_refusal = None;
        let candidates = admitted.resolved.candidates(&request.capability);
        for (index, operation) in admitted.candidates {
            let candidate = &candidates[index];
            let connection = &candidate.bound.connection;
            trace.operation = Some(operation);
            let attempt = Attempt {
                connection,
                capability: &request.capability,
                input: &request.input,
                config: Some(candidate.bound.config.clone()),
                idempotency_key: request.idempotency_key.clone(),
            };
            let outcome = self.attempt(attempt, trace).await;
            match outcome {
                Ok(output) => {
                    return Ok(Served {
                        output,
                        connection_id: connection.id.clone(),
                        integration_key: connection.integration_key.clone(),
                    })
                }
                Err(e) if e.classify().failover => {
                    trace.skipped.push(Skipped {
                        connection_id: connection.id.clone(),
                        reason: e.code().to_owned(),
                    });
                    first_refusal.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_refusal.expect("at least one admitted candidate was tried"))
    }
}
