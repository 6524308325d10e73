//! Results of idempotent executions, by tenant and key, kept for replays.

use super::{decode, encode, tenant_key, Result, SledStore};
use crate::domain::UnixMs;
use serde::{Deserialize, Serialize};

/// A successful execution kept under its idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdempotentResult {
    /// SHA-256 of what was asked; a different request under the same key conflicts.
    pub fingerprint: String,
    /// The execution's id.
    pub execution_id: String,
    /// The connector's output.
    pub output: serde_json::Value,
    /// The connection that served.
    pub connection_id: String,
    /// Its integration key.
    pub integration_key: String,
    /// When it was stored.
    pub created_at: UnixMs,
}

/// Results of idempotent executions, for replays.
pub trait IdempotencyStore: Send + Sync {
    /// The result stored under a tenant's idempotency key.
    fn idempotent_result(&self, tenant_id: &str, key: &str) -> Result<Option<IdempotentResult>>;

    /// Stores a result under a tenant's idempotency key (flushed: a replay must find it
    /// after a crash, or the provider would be called twice).
    fn put_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        result: &IdempotentResult,
    ) -> Result<()>;

    /// Drops results stored before `before`; returns how many.
    fn purge_idempotent_results(&self, before: UnixMs) -> Result<usize>;
}

impl IdempotencyStore for SledStore {
    fn idempotent_result(&self, tenant_id: &str, key: &str) -> Result<Option<IdempotentResult>> {
        self.idempotency
            .get(tenant_key(tenant_id, key))?
            .map(|v| decode("idempotency", &v))
            .transpose()
    }

    fn put_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        result: &IdempotentResult,
    ) -> Result<()> {
        self.idempotency
            .insert(tenant_key(tenant_id, key), encode(result))?;
        self.idempotency.flush()?;
        Ok(())
    }

    fn purge_idempotent_results(&self, before: UnixMs) -> Result<usize> {
        let mut purged = 0;
        for entry in self.idempotency.iter() {
            let (key, value) = entry?;
            let result: IdempotentResult = decode("idempotency", &value)?;
            if result.created_at < before {
                self.idempotency.remove(key)?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}
