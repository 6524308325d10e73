//! The connector-backed [`Refresher`]: a refresh through the connection's connector with
//! the connection's client, under the connection's rate profile, audited.

use super::{Clients, MAX_RATE_WAIT};
use crate::audit::{self, Audit};
use crate::credentials::tokens::{BoxFuture, RefreshError, Refresher};
use crate::domain::{now_ms, Connection, OwnershipMode, SecretFields};
use crate::runtime::connectors::{Answer, ConnectorCall, Connectors, Export};
use crate::runtime::{CallContext, CallError};
use std::sync::Arc;
use std::time::Instant;

/// Refreshes through the connection's connector, with the connection's client.
pub struct ConnectorRefresher {
    connectors: Arc<dyn Connectors>,
    clients: Clients,
    audit: Audit,
}

impl ConnectorRefresher {
    /// Wires the refresher.
    pub fn new(connectors: Arc<dyn Connectors>, clients: Clients, audit: Audit) -> Self {
        ConnectorRefresher {
            connectors,
            clients,
            audit,
        }
    }

    async fn run(
        &self,
        connection: &Connection,
        refresh_token: &str,
    ) -> Result<SecretFields, RefreshError> {
        let (started_at, started) = (now_ms(), Instant::now());
        let connector = self
            .connectors
            .require(connection)
            .map_err(|e| RefreshError::Transient(e.to_string()))?;
        let client = self.clients.for_connection(connection).map_err(|e| {
            match (e, connection.ownership_mode) {
                // Only its tenant can fix a byok connection without a client: until
                // then no retry can pass.
                (super::Error::ClientMissing(reason), OwnershipMode::Byok) => {
                    RefreshError::Unrefreshable(reason)
                }
                (e, _) => RefreshError::Transient(e.to_string()),
            }
        })?;
        let called = self
            .connectors
            .call(ConnectorCall {
                connection,
                connector: &connector,
                context: CallContext::for_connection(connection, None),
                export: Export::Refresh {
                    client: &client,
                    refresh_token,
                },
                budget: Some(MAX_RATE_WAIT),
            })
            .await;
        let result = refresh_result(called.result);
        let outcome = match &result {
            Ok(_) => ("ok", None),
            Err(RefreshError::Rejected(reason)) => ("needs_reauth", Some(reason.clone())),
            Err(RefreshError::Transient(reason)) => ("refresh_failed", Some(reason.clone())),
            Err(RefreshError::Unrefreshable(reason)) => ("connection_error", Some(reason.clone())),
        };
        self.audit.record(audit::connector_call(
            &connection.tenant_id,
            Some(connection),
            Some(connector.spec.version),
            "oauth.refresh",
            (started_at, started),
            called.outbound,
            outcome,
        ));
        result
    }
}

impl Refresher for ConnectorRefresher {
    fn refresh<'a>(
        &'a self,
        connection: &'a Connection,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<SecretFields, RefreshError>> {
        Box::pin(self.run(connection, refresh_token))
    }
}

/// Only the provider's rejection of the refresh token is final; everything else (5xx,
/// timeouts, a spent budget, a misconfigured client, a connector bug) is retried later
/// and never flips the connection. Messages arrive redacted.
fn refresh_result(result: Result<Answer, CallError>) -> Result<SecretFields, RefreshError> {
    match result {
        Ok(Answer::Secret(fresh)) if fresh.access_token.is_some() => Ok(fresh),
        Ok(_) => Err(RefreshError::Transient(
            "the connector's refresh returned no access token".into(),
        )),
        Err(CallError::NeedsReauth(reason)) => Err(RefreshError::Rejected(reason)),
        Err(e) => Err(RefreshError::Transient(e.to_string())),
    }
}
