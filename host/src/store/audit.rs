//! Audit records, keyed newest first per tenant, with a time index for retention.

use super::{decode, encode, tenant_key, Result, SledStore};
use crate::domain::{AuditRecord, UnixMs};

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this connection's.
    pub connection_id: Option<String>,
    /// Only this capability's.
    pub capability: Option<String>,
    /// Not before (unix ms).
    pub since: Option<UnixMs>,
    /// Not after (unix ms).
    pub until: Option<UnixMs>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// Audit records: appended in batches, paged per tenant, purged by age.
pub trait AuditStore: Send + Sync {
    /// Appends audit records, indexed by time for retention, as one batch per tree.
    fn append(&self, records: &[AuditRecord]) -> Result<()>;

    /// A page of a tenant's audit records, newest first, and the cursor of the next
    /// page if there may be one.
    fn page(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<String>)>;

    /// Deletes audit records older than `before`, at most `max` of them; returns how many.
    fn purge(&self, before: UnixMs, max: usize) -> Result<usize>;
}

impl AuditStore for SledStore {
    fn append(&self, records: &[AuditRecord]) -> Result<()> {
        let mut by_tenant = sled::Batch::default();
        let mut by_time = sled::Batch::default();
        for record in records {
            let mut key = tenant_key(&record.tenant_id, "");
            key.extend_from_slice(&record.time.to_be_bytes());
            key.extend_from_slice(record.id.as_bytes());
            let mut time_key = record.time.to_be_bytes().to_vec();
            time_key.extend_from_slice(&key);
            by_tenant.insert(key, encode(record));
            by_time.insert(time_key, &[]);
        }
        // One transaction over both trees: a crash never leaves a record its retention
        // index does not know (it would never be purged), nor an index entry without it.
        use sled::transaction::TransactionError;
        use sled::Transactional;
        (&self.audit, &self.audit_time)
            .transaction(|(audit, audit_time)| {
                audit.apply_batch(&by_tenant)?;
                audit_time.apply_batch(&by_time)?;
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => unreachable!("nothing aborts"),
            })
    }

    fn page(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<String>)> {
        let prefix = tenant_key(tenant_id, "");
        let at = |ms: UnixMs| {
            let mut key = prefix.clone();
            key.extend_from_slice(&ms.to_be_bytes());
            key
        };
        let lower = at(query.since.unwrap_or(0));
        let mut upper = match query.until {
            Some(until) => at(until.saturating_add(1)),
            None => at(u64::MAX),
        };
        if let Some(cursor) = query.cursor.as_deref().and_then(|c| hex::decode(c).ok()) {
            let mut after = prefix.clone();
            after.extend_from_slice(&cursor);
            upper = upper.min(after);
        }
        let mut out = Vec::new();
        for entry in self.audit.range(lower..upper).rev() {
            let (key, value) = entry?;
            let record: AuditRecord = decode("audit", &value)?;
            let keep = query
                .connection_id
                .as_deref()
                .is_none_or(|c| record.connection_id.as_deref() == Some(c))
                && query
                    .capability
                    .as_deref()
                    .is_none_or(|c| record.capability == c);
            if keep {
                out.push(record);
                if out.len() >= query.limit {
                    return Ok((out, Some(hex::encode(&key[prefix.len()..]))));
                }
            }
        }
        Ok((out, None))
    }

    fn purge(&self, before: UnixMs, max: usize) -> Result<usize> {
        let mut purged = 0;
        for entry in self
            .audit_time
            .range(..before.to_be_bytes().to_vec())
            .take(max)
        {
            let (by_time, _) = entry?;
            self.audit.remove(&by_time[8..])?;
            self.audit_time.remove(&by_time)?;
            purged += 1;
        }
        Ok(purged)
    }
}
