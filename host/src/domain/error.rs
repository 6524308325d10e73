//! The one table of error classes. Every module's error answers [`Classify::classify`]
//! in one place: its stable `code`, its [`Class`] (which `api/error.rs`, and only it,
//! maps to an HTTP status), whether the next binding may serve instead (failover),
//! whether it counts against the connection's circuit, and when a retry may pass. An
//! audit record carries the same code the client got, because both read it here.

use serde_json::Value;
use std::time::Duration;

/// What kind of failure, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request that is not understood (a malformed OAuth callback…).
    BadRequest,
    /// Well formed but refused by a rule.
    Invalid,
    /// No such thing for this caller (a foreign one included).
    NotFound,
    /// Refused by policy.
    Forbidden,
    /// Larger than a limit allows.
    TooLarge,
    /// The state does not allow it (needs re-authorization, immutable, in use…).
    Conflict,
    /// A budget or quota is spent; see `retry_after`.
    RateLimited,
    /// Something needed is down or not loaded; a retry may pass.
    Unavailable,
    /// The provider or the connector failed.
    Upstream,
    /// The connector ran out of time.
    UpstreamTimeout,
    /// A host failure: logged in full, shown only as `internal`.
    Internal,
}

/// One error's row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorClass {
    /// Stable snake_case code, as clients and audit records see it.
    pub code: &'static str,
    /// The kind of failure.
    pub class: Class,
    /// The provider was not asked to act (or refused the credential outright), so
    /// another binding may serve the same request without acting twice.
    pub failover: bool,
    /// The provider (or the way to it) failed, as opposed to refusing a request.
    pub circuit: bool,
    /// When a retry may pass.
    pub retry_after: Option<Duration>,
    /// Machine-readable facts for the client (provider status, the offending path…).
    pub meta: Option<Value>,
}

impl ErrorClass {
    /// A row with no failover, no circuit, no retry hint.
    pub fn new(class: Class, code: &'static str) -> Self {
        ErrorClass {
            code,
            class,
            failover: false,
            circuit: false,
            retry_after: None,
            meta: None,
        }
    }

    /// `internal`: a host failure.
    pub fn internal() -> Self {
        Self::new(Class::Internal, "internal")
    }

    /// Another binding may serve instead.
    pub fn failover(mut self) -> Self {
        self.failover = true;
        self
    }

    /// Counts against the circuit.
    pub fn circuit(mut self, counts: bool) -> Self {
        self.circuit = counts;
        self
    }

    /// A retry may pass after `wait`.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Adds machine-readable facts.
    pub fn meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }
}

/// An error that knows its row of the table. Its `Display` is the client's detail
/// (already redacted); for [`Class::Internal`] the detail is logged, never shown.
pub trait Classify: std::fmt::Display {
    /// This error's row.
    fn classify(&self) -> ErrorClass;

    /// Its stable code.
    fn code(&self) -> &'static str {
        self.classify().code
    }
}
