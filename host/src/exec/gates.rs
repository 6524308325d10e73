//! The gates before a provider call, in order: the connection can serve at all, its
//! circuit is closed, the provider account's rate budget (shared by every connection to
//! the same account) and the connection's daily quota have room. A refusal never
//! reaches the plugin, and a connection that cannot serve spends no budget.

use super::{Error, Exec};
use crate::credentials::tokens;
use crate::domain::IntegrationSpec;
use crate::domain::{now_ms, Connection, ConnectionStatus};
use std::time::Duration;

impl Exec {
    /// The gates before a provider call: the connection's circuit, the provider
    /// account's rate budget (shared by every connection to the same account), and the
    /// connection's daily quota. A refusal never reaches the plugin.
    /// Returns the day a quota unit was taken on, if one was (see [`Exec::give_back`]).
    pub(super) async fn admit(
        &self,
        connection: &Connection,
        spec: &IntegrationSpec,
    ) -> Result<Option<u64>, Error> {
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
            .acquire(&spec.slug, &spec.rate_profile, &account, Duration::ZERO)
            .await
            .map_err(|retry_after| Error::RateLimited {
                reason: format!(
                    "the {} account's rate budget ({} requests per {} s) is spent",
                    spec.display_name, spec.rate_profile.requests, spec.rate_profile.per_seconds
                ),
                retry_after,
            })?;
        let Some(quota) = connection.daily_quota else {
            return Ok(None);
        };
        let now = now_ms();
        let day = now / DAY_MS;
        if !self.quotas.take_quota(&connection.id, day, quota)? {
            return Err(Error::RateLimited {
                reason: format!("the connection's daily quota of {quota} executions is spent"),
                retry_after: Duration::from_millis((day + 1) * DAY_MS - now),
            });
        }
        Ok(Some(day))
    }

    /// A call admitted by the gates that never ran (no room in the instance pool)
    /// gives its quota unit back. (The account's rate budget is a token bucket and
    /// keeps what was spent: a tenant flooding past its share spends only its own.)
    pub(super) fn give_back(&self, connection: &Connection, quota_day: Option<u64>) {
        if let Some(day) = quota_day {
            if let Err(e) = self.quotas.give_back_quota(&connection.id, day) {
                tracing::error!(connection = %connection.id, error = %e, "giving back a quota unit failed");
            }
        }
    }
}

/// A UTC day in milliseconds: quotas reset at midnight UTC.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Why a connection in `status` cannot serve without asking anyone.
pub(super) fn unusable(status: ConnectionStatus) -> Option<tokens::Error> {
    match status {
        ConnectionStatus::Active => None,
        ConnectionStatus::NeedsReauth => Some(tokens::Error::NeedsReauth),
        ConnectionStatus::Revoked => Some(tokens::Error::Revoked),
        ConnectionStatus::Error => Some(tokens::Error::Broken),
    }
}
