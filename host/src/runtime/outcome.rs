//! What a connector call gives and gets besides its payload: the context it is told,
//! its report (answer plus the outbound HTTP it made), the connector's own typed error,
//! and [`settle`], the one mapping of a call's result into a [`CallError`] with every
//! message redacted. Every caller (execute, health, refresh, code exchange) uses it.

use super::Error;
use crate::audit::Redactor;
use crate::domain::{Connection, OutboundRecord};
use std::time::Duration;

/// A connector's own error, as its WIT `error` variant says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorError {
    /// The credential was rejected.
    NeedsReauth(String),
    /// The input is not acceptable.
    InvalidInput(String),
    /// Not supported by this connector.
    Unsupported(String),
    /// The provider answered with an error.
    Provider {
        /// Provider HTTP status.
        status: u16,
        /// Provider error code.
        code: Option<String>,
        /// Provider message.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// Temporary failure.
    Transient(String),
    /// A connector bug.
    Internal(String),
}

/// What a connector is told about the call.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The connection.
    pub connection_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// `sandbox` or `production`.
    pub environment: String,
    /// Provider-side account.
    pub external_account_id: Option<String>,
    /// Non-secret connection config.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Idempotency key to pass on: the caller's, namespaced by its tenant
    /// ([`provider_idempotency_key`]).
    pub idempotency_key: Option<String>,
}

/// The idempotency key a provider sees for `tenant_id`'s `key`: a SHA-256 over both, in
/// hex (64 characters, within every provider's limit). Two tenants sharing one provider
/// account with the same key must not be handed each other's stored results, and the
/// same tenant's retries keep one key, so the provider still deduplicates them.
pub fn provider_idempotency_key(tenant_id: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"conduit idempotency v1\0");
    hash.update(tenant_id.as_bytes());
    hash.update(b"\0");
    hash.update(key.as_bytes());
    hex::encode(hash.finalize())
}

impl CallContext {
    /// What a connector is told about a call on `connection`.
    pub fn for_connection(connection: &Connection, idempotency_key: Option<String>) -> Self {
        CallContext {
            connection_id: connection.id.clone(),
            tenant_id: connection.tenant_id.clone(),
            environment: connection.environment.as_str().to_owned(),
            external_account_id: connection.external_account_id.clone(),
            config: connection.config.clone(),
            idempotency_key: idempotency_key
                .map(|key| provider_idempotency_key(&connection.tenant_id, &key)),
        }
    }
}

/// A health check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether the credential works.
    pub healthy: bool,
    /// Why.
    pub detail: String,
}

/// The outcome of one guest call, with the outbound HTTP it made (even when it failed).
#[derive(Debug)]
pub struct CallReport<T> {
    /// The guest's answer, or why there is none.
    pub result: super::Result<T>,
    /// Redacted outbound exchanges.
    pub outbound: Vec<OutboundRecord>,
}

/// Why a connector call produced no answer: the connector's own error or the sandbox's,
/// with every message redacted. Each variant is one stable code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The provider rejected the credential.
    #[error("the provider rejected the credential: {0}")]
    NeedsReauth(String),
    /// The connector refused the input.
    #[error("invalid input at /: {0}")]
    InvalidInput(String),
    /// The connector does not support the call.
    #[error("the connector does not support this call")]
    Unsupported,
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
        /// When the provider said a retry may succeed.
        retry_after: Option<Duration>,
    },
    /// A temporary provider failure.
    #[error("the provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// The plugin ran out of time.
    #[error("the connector did not finish within its deadline")]
    Timeout,
    /// The plugin ran out of memory.
    #[error("the connector exceeded its memory limit")]
    Memory,
    /// The plugin failed (trap, bad output, internal error).
    #[error("the connector failed: {0}")]
    Plugin(String),
    /// The connection's connector is not loaded.
    #[error("connector `{0}` is not loaded")]
    ConnectorUnavailable(String),
    /// The connection's own rate budget is spent for longer than the call may wait.
    #[error("the provider's rate limit for this connection is reached; retry in {0:?}")]
    RateLimited(Duration),
    /// No room to run the connector within the queue wait: the tenant's share of the
    /// instance pool, or the pool itself, is taken. Nothing ran.
    #[error("{0}; retry shortly")]
    Busy(super::Busy),
}

/// Maps a guest call's result, with every message redacted. Pure: the caller decides
/// what a rejected credential means for its connection.
pub fn settle<T>(
    result: super::Result<Result<T, ConnectorError>>,
    redactor: &Redactor,
) -> Result<T, CallError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(ConnectorError::NeedsReauth(reason))) => {
            Err(CallError::NeedsReauth(redactor.redact(&reason)))
        }
        Ok(Err(ConnectorError::InvalidInput(message))) => {
            Err(CallError::InvalidInput(redactor.redact(&message)))
        }
        Ok(Err(ConnectorError::Unsupported(message))) => {
            tracing::debug!(reason = %redactor.redact(&message), "connector refused the call as unsupported");
            Err(CallError::Unsupported)
        }
        Ok(Err(ConnectorError::Provider {
            status,
            code,
            message,
            retryable,
        })) => Err(CallError::Provider {
            status,
            code: code.map(|c| redactor.redact(&c)),
            message: redactor.redact(&message),
            retryable,
            retry_after: None,
        }),
        Ok(Err(ConnectorError::Transient(message))) => {
            Err(CallError::ProviderUnavailable(redactor.redact(&message)))
        }
        Ok(Err(ConnectorError::Internal(message))) => {
            Err(CallError::Plugin(redactor.redact(&message)))
        }
        Err(Error::Busy(busy)) => Err(CallError::Busy(busy)),
        Err(Error::Timeout(_)) => Err(CallError::Timeout),
        Err(Error::Memory(_)) => Err(CallError::Memory),
        Err(Error::Trap(_)) => Err(CallError::Plugin("the connector trapped".into())),
        Err(Error::Load(message)) => Err(CallError::Plugin(redactor.redact(&message))),
        Err(e @ Error::Refused { .. }) => Err(CallError::Plugin(redactor.redact(&e.to_string()))),
    }
}

impl CallError {
    /// A retryable provider refusal learns when to retry from the provider's own
    /// answer — the call's last response, the one refused — whatever language the
    /// connector is in.
    pub fn with_retry_hint(self, outbound: &[crate::domain::OutboundRecord]) -> Self {
        match self {
            CallError::Provider {
                status,
                code,
                message,
                retryable: true,
                retry_after: None,
            } => CallError::Provider {
                status,
                code,
                message,
                retryable: true,
                retry_after: outbound
                    .last()
                    .and_then(|record| record.retry_after_ms)
                    .map(Duration::from_millis),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundRecord;

    #[test]
    fn provider_idempotency_keys_are_per_tenant_and_stable() {
        let a = provider_idempotency_key("ten_a", "order-1");
        assert_eq!(a, provider_idempotency_key("ten_a", "order-1"));
        assert_ne!(a, provider_idempotency_key("ten_b", "order-1"));
        assert_ne!(a, provider_idempotency_key("ten_a", "order-2"));
        // The separator keeps `ten_a` + `b:x` apart from `ten_ab` + `:x`.
        assert_ne!(
            provider_idempotency_key("ten_a", "b:x"),
            provider_idempotency_key("ten_ab", ":x")
        );
        assert_eq!(a.len(), 64);
        assert!(!a.contains("order-1"));
    }

    fn answered(retry_after_ms: Option<u64>) -> OutboundRecord {
        OutboundRecord {
            method: "GET".into(),
            url: "https://api.example.com/".into(),
            status: Some(429),
            error: None,
            duration_ms: 1,
            request_headers: Vec::new(),
            request_body: None,
            response_body: None,
            retry_after_ms,
        }
    }

    fn refusal(retryable: bool) -> CallError {
        CallError::Provider {
            status: 429,
            code: None,
            message: "slow down".into(),
            retryable,
            retry_after: None,
        }
    }

    #[test]
    fn a_retryable_refusal_takes_the_hint_of_the_response_refused() {
        // An earlier answer's hint is not this refusal's.
        let earlier = [answered(Some(5_000)), answered(None)];
        match refusal(true).with_retry_hint(&earlier) {
            CallError::Provider { retry_after, .. } => assert_eq!(retry_after, None),
            other => panic!("{other:?}"),
        }
        let outbound = [answered(Some(5_000)), answered(Some(30_000))];
        match refusal(true).with_retry_hint(&outbound) {
            CallError::Provider { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(30)))
            }
            other => panic!("{other:?}"),
        }
        // A final refusal stays final, whatever the headers said.
        match refusal(false).with_retry_hint(&outbound) {
            CallError::Provider { retry_after, .. } => assert_eq!(retry_after, None),
            other => panic!("{other:?}"),
        }
    }
}
