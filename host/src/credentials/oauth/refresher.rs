//! The connector-backed [`Refresher`]: a refresh through the connection's connector with
//! the connection's client, under the connection's rate profile, audited.

use super::{record, Clients, MAX_RATE_WAIT};
use crate::audit::{Audit, Redactor};
use crate::credentials::tokens::{BoxFuture, RefreshError, Refresher};
use crate::domain::{Connection, SecretFields};
use crate::runtime::catalog::Catalog;
use crate::runtime::ratelimit::RateLimits;
use crate::runtime::{settle, CallContext, CallReport, ConnectorError, Runtime};
use std::sync::Arc;
use std::time::Instant;

/// Refreshes through the connection's connector, with the connection's client.
pub struct ConnectorRefresher {
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    clients: Clients,
    audit: Audit,
    limits: RateLimits,
}

impl ConnectorRefresher {
    /// Wires the refresher.
    pub fn new(
        catalog: Arc<Catalog>,
        runtime: Arc<Runtime>,
        clients: Clients,
        audit: Audit,
        limits: RateLimits,
    ) -> Self {
        ConnectorRefresher {
            catalog,
            runtime,
            clients,
            audit,
            limits,
        }
    }

    async fn run(
        &self,
        connection: &Connection,
        refresh_token: &str,
    ) -> Result<SecretFields, RefreshError> {
        let started = Instant::now();
        let plugin = self.catalog.get(&connection.connector).ok_or_else(|| {
            RefreshError::Transient(format!(
                "connector `{}` is not loaded",
                connection.connector
            ))
        })?;
        let client = self
            .clients
            .for_connection(connection)
            .map_err(|e| RefreshError::Transient(e.to_string()))?;
        self.limits
            .acquire(
                &plugin.spec.slug,
                &plugin.spec.rate_profile,
                &connection.id,
                MAX_RATE_WAIT,
            )
            .await
            .map_err(|wait| {
                RefreshError::Transient(format!("rate profile exhausted; next turn in {wait:?}"))
            })?;
        let report = self
            .runtime
            .refresh(
                &plugin,
                &CallContext::for_connection(connection, None),
                &client,
                refresh_token,
            )
            .await;
        let redactor = Redactor::new([client.client_secret.as_str(), refresh_token]);
        let CallReport { result, outbound } = report;
        let result = refresh_result(result, &redactor);
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(RefreshError::Rejected(reason)) => Err(("needs_reauth", reason.clone())),
            Err(RefreshError::Transient(reason)) => Err(("refresh_failed", reason.clone())),
        };
        record(
            &self.audit,
            connection,
            &plugin,
            "oauth.refresh",
            outbound,
            started,
            outcome,
        );
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
/// timeouts, a misconfigured client, a connector bug) is retried later and never flips
/// the connection.
fn refresh_result(
    result: crate::runtime::Result<Result<SecretFields, ConnectorError>>,
    redactor: &Redactor,
) -> Result<SecretFields, RefreshError> {
    match result {
        Ok(Ok(fresh)) if fresh.access_token.is_some() => Ok(fresh),
        Ok(Ok(_)) => Err(RefreshError::Transient(
            "the connector's refresh returned no access token".into(),
        )),
        Ok(Err(ConnectorError::NeedsReauth(reason))) => {
            Err(RefreshError::Rejected(redactor.redact(&reason)))
        }
        other => {
            let error = settle(other, redactor)
                .err()
                .map_or_else(|| "refresh failed".to_owned(), |e| e.to_string());
            Err(RefreshError::Transient(error))
        }
    }
}
