//! Results of idempotent executions, by tenant and key, kept for replays. The output
//! (message bodies, payment objects) is sealed by the vault like a credential.

use super::{decode, encode, tenant_key, Result, SledStore};
use crate::domain::{SealedSecret, UnixMs};
use serde::{Deserialize, Serialize};

/// A successful execution kept under its idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdempotentResult {
    /// SHA-256 of what was asked; a different request under the same key conflicts.
    pub fingerprint: String,
    /// The execution's id.
    pub execution_id: String,
    /// The connector's output (JSON), sealed for `idempotency/<execution id>` on the
    /// connection. `None` in a record of an earlier version, which kept it in the
    /// clear: such a record is not replayed (the provider's own idempotency, under the
    /// same key, answers the repeat).
    #[serde(default)]
    pub sealed_output: Option<SealedSecret>,
    /// The connection that served.
    pub connection_id: String,
    /// Its integration key.
    pub integration_key: String,
    /// When it was stored.
    pub created_at: UnixMs,
}

/// What a result's output is sealed for (the vault's credential id, on the result's
/// connection): its execution.
pub fn output_seal_id(execution_id: &str) -> String {
    format!("idempotency/{execution_id}")
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

    /// Every stored result with its tenant and key (key rotation, key usage).
    fn all_idempotent_results(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(String, String, IdempotentResult)>> + '_>;

    /// Replaces a result if it is still `previous` (key rotation); `Ok(false)` when it
    /// changed or went meanwhile.
    fn replace_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        previous: &IdempotentResult,
        next: &IdempotentResult,
    ) -> Result<bool>;
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

    fn all_idempotent_results(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(String, String, IdempotentResult)>> + '_> {
        Box::new(self.idempotency.iter().map(|entry| {
            let (stored_key, value) = entry?;
            let text = String::from_utf8_lossy(&stored_key);
            let (tenant, key) = text.split_once('\0').unwrap_or((&text, ""));
            Ok((
                tenant.to_owned(),
                key.to_owned(),
                decode("idempotency", &value)?,
            ))
        }))
    }

    fn replace_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        previous: &IdempotentResult,
        next: &IdempotentResult,
    ) -> Result<bool> {
        let swapped = self.idempotency.compare_and_swap(
            tenant_key(tenant_id, key),
            Some(encode(previous)),
            Some(encode(next)),
        )?;
        if swapped.is_ok() {
            self.idempotency.flush()?;
        }
        Ok(swapped.is_ok())
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
