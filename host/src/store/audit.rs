//! Audit records, keyed by tenant and time (`tenant \0 time ‖ id`), paged newest first
//! per tenant and purged per tenant by age.

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
        // One tree, one atomic batch: retention finds expired records per tenant
        // (`purge`), so no second index is written per record.
        let mut batch = sled::Batch::default();
        for record in records {
            let mut key = tenant_key(&record.tenant_id, "");
            key.extend_from_slice(&record.time.to_be_bytes());
            key.extend_from_slice(record.id.as_bytes());
            batch.insert(key, encode(record));
        }
        self.audit.apply_batch(batch)?;
        Ok(())
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
        // Index entries of an earlier version (one per record, by time) go with the
        // records they pointed at, which are purged below like any other.
        for entry in self
            .audit_time
            .range(..before.to_be_bytes().to_vec())
            .take(max)
        {
            self.audit_time.remove(entry?.0)?;
        }
        // Records are keyed `tenant \0 time ‖ id`: a tenant's expired records are one
        // range from its prefix, and the next tenant's keys start past `tenant \x01`.
        let mut purged = 0;
        let mut from = Vec::new();
        while purged < max {
            let Some(first) = self.audit.range(from.as_slice()..).next() else {
                break;
            };
            let (key, _) = first?;
            let Some(end) = key.iter().position(|&b| b == 0) else {
                // Not a record key: step past it.
                from = key.to_vec();
                from.push(0);
                continue;
            };
            let prefix = &key[..=end];
            let mut upper = prefix.to_vec();
            upper.extend_from_slice(&before.to_be_bytes());
            for entry in self.audit.range(prefix.to_vec()..upper).take(max - purged) {
                self.audit.remove(entry?.0)?;
                purged += 1;
            }
            from = key[..end].to_vec();
            from.push(1);
        }
        Ok(purged)
    }
}
