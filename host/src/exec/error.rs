//! Why an execution or a health check did not produce an answer, and each reason's row
//! of the error table.

use crate::accounts::connections;
use crate::credentials::tokens;
use crate::domain::{Class, Classify, ErrorClass};
use crate::runtime::CallError;
use crate::store;
use serde_json::json;
use std::time::Duration;

/// When a call refused as busy may be retried: calls take milliseconds to seconds.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why an execution did not produce an output.
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
    /// The input fails its contract.
    #[error("invalid input at {path}: {message}")]
    InvalidInput {
        /// JSON pointer.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The connector call failed: the connector's own error or the sandbox's.
    #[error(transparent)]
    Connector(#[from] CallError),
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

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        use Class::*;
        let retryable = || json!({"retryable": true});
        match self {
            Error::Connection(e) => e.classify(),
            Error::Vend(e) => e.classify(),
            Error::Connector(e) => e.classify(),
            Error::Store(e) => e.classify(),
            Error::UnsupportedCapability { .. } => {
                ErrorClass::new(Invalid, "unsupported_capability")
            }
            Error::InvalidInput { path, .. } => {
                ErrorClass::new(Invalid, "invalid_input").meta(json!({"path": path}))
            }
            Error::NoBinding(_) => ErrorClass::new(NotFound, "no_binding"),
            Error::ScopeDenied(_) => ErrorClass::new(Forbidden, "scope_denied"),
            Error::RateLimited { retry_after, .. } => ErrorClass::new(RateLimited, "rate_limited")
                .failover()
                .retry_after(*retry_after)
                .meta(retryable()),
            Error::CircuitOpen(wait) => ErrorClass::new(Unavailable, "circuit_open")
                .failover()
                .retry_after(*wait)
                .meta(retryable()),
            Error::IdempotencyConflict => ErrorClass::new(Conflict, "idempotency_conflict"),
        }
    }
}

impl Classify for CallError {
    fn classify(&self) -> ErrorClass {
        use Class::*;
        match self {
            // The provider refused the credential outright: nothing was done.
            CallError::NeedsReauth(_) => ErrorClass::new(Conflict, "needs_reauth").failover(),
            CallError::InvalidInput(_) => {
                ErrorClass::new(Invalid, "invalid_input").meta(json!({"path": "/"}))
            }
            CallError::Unsupported => ErrorClass::new(Invalid, "unsupported_capability"),
            CallError::Provider {
                status,
                code,
                retryable,
                retry_after,
                ..
            } => {
                let mut meta = json!({
                    "providerStatus": status,
                    "providerCode": code,
                    "retryable": retryable,
                });
                let class = ErrorClass::new(Upstream, "provider_error").circuit(*status >= 500);
                match retry_after {
                    Some(wait) => {
                        meta["retryAfterMs"] = json!(wait.as_millis() as u64);
                        class.retry_after(*wait).meta(meta)
                    }
                    None => class.meta(meta),
                }
            }
            CallError::ProviderUnavailable(_) => {
                ErrorClass::new(Unavailable, "provider_unavailable")
                    .circuit(true)
                    .meta(json!({"retryable": true}))
            }
            CallError::Timeout => ErrorClass::new(UpstreamTimeout, "plugin_timeout").circuit(true),
            CallError::Memory => ErrorClass::new(Upstream, "plugin_memory"),
            CallError::Plugin(_) => ErrorClass::new(Upstream, "plugin_error"),
            // Nothing ran: another binding may serve.
            CallError::ConnectorUnavailable(_) => {
                ErrorClass::new(Unavailable, "connector_unavailable").failover()
            }
            // Another binding of the same tenant spends from the same share: no
            // failover, and a full pool is nobody's provider failing.
            CallError::Busy(_) => ErrorClass::new(Unavailable, "busy")
                .retry_after(BUSY_RETRY)
                .meta(json!({"retryable": true})),
            CallError::RateLimited(wait) => ErrorClass::new(RateLimited, "rate_limited")
                .failover()
                .retry_after(*wait)
                .meta(json!({"retryable": true, "retryAfterMs": wait.as_millis() as u64})),
        }
    }
}
