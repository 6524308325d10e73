//! Audit records, idempotent results, daily quota counters, the webhook outbox,
//! leases and the tenants' change counters.

use super::{big, rows_of, unsigned, PgStore};
use crate::domain::{AuditRecord, UnixMs};
use crate::store::{
    decode, encode, AuditQuery, AuditStore, IdempotencyStore, IdempotentResult, LeaseStore,
    OutboxEntry, OutboxStore, QuotaStore, Result, RevisionStore,
};

/// An audit cursor: the hex of the last record's time (8 bytes, big-endian) and id,
/// the format the sled backend pages with.
fn audit_cursor(time: UnixMs, id: &str) -> String {
    let mut key = time.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    hex::encode(key)
}

/// A cursor back as (time, id); one that does not decode starts from the newest.
fn parse_audit_cursor(cursor: &str) -> Option<(i64, String)> {
    let bytes = hex::decode(cursor).ok()?;
    let (time, id) = bytes.split_at_checked(8)?;
    let time = UnixMs::from_be_bytes(time.try_into().ok()?);
    Some((big(time), String::from_utf8(id.to_vec()).ok()?))
}

impl AuditStore for PgStore {
    fn append(&self, records: &[AuditRecord]) -> Result<()> {
        self.transaction(|s| {
            for record in records {
                s.execute(
                    "INSERT INTO audit (tenant_id, time, id, connection_id, capability, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[
                        &record.tenant_id,
                        &big(record.time),
                        &record.id,
                        &record.connection_id,
                        &record.capability,
                        &encode(record),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn page(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<String>)> {
        let cursor = query.cursor.as_deref().and_then(parse_audit_cursor);
        let (after_time, after_id) = cursor.unzip();
        let limit = query.limit.max(1);
        let rows = self.session(|s| {
            s.query(
                "SELECT time, id, doc FROM audit WHERE tenant_id = $1 \
                 AND time >= $2 AND time <= $3 \
                 AND ($4::bigint IS NULL OR (time, id) < ($4, $5)) \
                 AND ($6::text IS NULL OR connection_id = $6) \
                 AND ($7::text IS NULL OR capability = $7) \
                 ORDER BY time DESC, id DESC LIMIT $8",
                &[
                    &tenant_id,
                    &big(query.since.unwrap_or(0)),
                    &big(query.until.unwrap_or(UnixMs::MAX)),
                    &after_time,
                    &after_id.unwrap_or_default(),
                    &query.connection_id,
                    &query.capability,
                    &big(limit as u64),
                ],
            )
        })?;
        let next = match rows.last() {
            Some(last) if rows.len() >= limit => {
                Some(audit_cursor(unsigned(last.get(0)), last.get(1)))
            }
            _ => None,
        };
        let records = rows
            .iter()
            .map(|row| decode("audit", row.get(2)))
            .collect::<Result<_>>()?;
        Ok((records, next))
    }

    fn purge(&self, before: UnixMs, max: usize) -> Result<usize> {
        self.session(|s| {
            let purged = s.execute(
                "DELETE FROM audit WHERE ctid IN \
                 (SELECT ctid FROM audit WHERE time < $1 ORDER BY time LIMIT $2)",
                &[&big(before), &big(max as u64)],
            )?;
            Ok(purged as usize)
        })
    }
}

impl IdempotencyStore for PgStore {
    fn idempotent_result(&self, tenant_id: &str, key: &str) -> Result<Option<IdempotentResult>> {
        self.session(|s| {
            s.query_opt(
                "SELECT doc FROM idempotency WHERE tenant_id = $1 AND key = $2",
                &[&tenant_id, &key],
            )?
            .map(|row| decode("idempotency", row.get(0)))
            .transpose()
        })
    }

    fn put_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        result: &IdempotentResult,
    ) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO idempotency (tenant_id, key, created_at, doc) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET created_at = EXCLUDED.created_at, \
                 doc = EXCLUDED.doc",
                &[&tenant_id, &key, &big(result.created_at), &encode(result)],
            )?;
            Ok(())
        })
    }

    fn purge_idempotent_results(&self, before: UnixMs) -> Result<usize> {
        self.session(|s| {
            let purged = s.execute(
                "DELETE FROM idempotency WHERE created_at < $1",
                &[&big(before)],
            )?;
            Ok(purged as usize)
        })
    }

    fn all_idempotent_results(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(String, String, IdempotentResult)>> + '_> {
        let rows = self.session(|s| {
            s.query(
                "SELECT tenant_id, key, doc FROM idempotency ORDER BY tenant_id, key",
                &[],
            )
        });
        rows_of(rows, |row| {
            Ok((row.get(0), row.get(1), decode("idempotency", row.get(2))?))
        })
    }

    fn replace_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        previous: &IdempotentResult,
        next: &IdempotentResult,
    ) -> Result<bool> {
        self.session(|s| {
            let replaced = s.execute(
                "UPDATE idempotency SET created_at = $4, doc = $5 \
                 WHERE tenant_id = $1 AND key = $2 AND doc = $3",
                &[
                    &tenant_id,
                    &key,
                    &encode(previous),
                    &big(next.created_at),
                    &encode(next),
                ],
            )?;
            Ok(replaced == 1)
        })
    }
}

impl QuotaStore for PgStore {
    /// One statement counts the call if the counter is under the limit, so replicas
    /// share each connection's daily quota exactly.
    fn take_quota(&self, connection_id: &str, day: u64, limit: u32) -> Result<bool> {
        self.session(|s| {
            // Yesterday's counter is done with; only today's is kept.
            s.execute(
                "DELETE FROM quotas WHERE connection_id = $1 AND day < $2",
                &[&connection_id, &big(day)],
            )?;
            let taken = s.query_opt(
                "INSERT INTO quotas (connection_id, day, used) \
                 SELECT $1::text, $2::bigint, 1::bigint WHERE $3::bigint > 0 \
                 ON CONFLICT (connection_id, day) DO UPDATE SET used = quotas.used + 1 \
                 WHERE quotas.used < $3::bigint RETURNING used",
                &[&connection_id, &big(day), &i64::from(limit)],
            )?;
            Ok(taken.is_some())
        })
    }

    fn give_back_quota(&self, connection_id: &str, day: u64) -> Result<()> {
        self.session(|s| {
            s.execute(
                "UPDATE quotas SET used = GREATEST(used - 1, 0) \
                 WHERE connection_id = $1 AND day = $2",
                &[&connection_id, &big(day)],
            )?;
            Ok(())
        })
    }
}

impl OutboxStore for PgStore {
    fn enqueue(&self, connection_id: &str, raised_at: UnixMs, body: &[u8]) -> Result<u64> {
        self.session(|s| {
            let row = s.query_opt(
                "INSERT INTO webhook_outbox (connection_id, raised_at, body) \
                 VALUES ($1, $2, $3) RETURNING sequence",
                &[&connection_id, &big(raised_at), &body],
            )?;
            Ok(row.map_or(0, |row| unsigned(row.get(0))))
        })
    }

    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.session(|s| {
            let rows = s.query(
                "SELECT sequence, connection_id, raised_at, body FROM webhook_outbox \
                 ORDER BY sequence LIMIT $1",
                &[&big(limit as u64)],
            )?;
            Ok(rows
                .iter()
                .map(|row| OutboxEntry {
                    sequence: unsigned(row.get(0)),
                    connection_id: row.get(1),
                    raised_at: unsigned(row.get(2)),
                    body: row.get(3),
                })
                .collect())
        })
    }

    fn remove(&self, sequence: u64) -> Result<()> {
        self.session(|s| {
            s.execute(
                "DELETE FROM webhook_outbox WHERE sequence = $1",
                &[&big(sequence)],
            )?;
            Ok(())
        })
    }

    fn backlog(&self) -> usize {
        let count = self.session(|s| {
            let row = s.query_opt("SELECT count(*) FROM webhook_outbox", &[])?;
            Ok(row.map_or(0, |row| unsigned(row.get(0)) as usize))
        });
        count.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting the webhook outbox failed");
            0
        })
    }
}

impl LeaseStore for PgStore {
    /// One statement: a lease is taken only where none is live, its generation bumped.
    fn take_lease(&self, name: &str, now: UnixMs, ttl_ms: u64) -> Result<Option<u64>> {
        self.session(|s| {
            let taken = s.query_opt(
                "INSERT INTO leases (name, generation, until) \
                 VALUES ($1, 1, $2::bigint + $3::bigint) ON CONFLICT (name) DO UPDATE \
                 SET generation = leases.generation + 1, until = EXCLUDED.until \
                 WHERE leases.until <= $2::bigint RETURNING generation",
                &[&name, &big(now), &big(ttl_ms)],
            )?;
            Ok(taken.map(|row| unsigned(row.get(0))))
        })
    }

    fn release_lease(&self, name: &str, generation: u64) -> Result<()> {
        self.session(|s| {
            s.execute(
                "UPDATE leases SET until = 0 WHERE name = $1 AND generation = $2",
                &[&name, &big(generation)],
            )?;
            Ok(())
        })
    }
}

/// In the database, so a change made on one replica invalidates every replica's
/// cached resolutions on their next call (one primary-key read per resolution).
impl RevisionStore for PgStore {
    fn current(&self, tenant_id: &str) -> Result<u64> {
        self.session(|s| {
            let row = s.query_opt(
                "SELECT revision FROM tenant_revisions WHERE tenant_id = $1",
                &[&tenant_id],
            )?;
            Ok(row.map_or(0, |row| unsigned(row.get(0))))
        })
    }

    fn bump(&self, tenant_id: &str) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO tenant_revisions (tenant_id, revision) VALUES ($1, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE SET revision = tenant_revisions.revision + 1",
                &[&tenant_id],
            )?;
            Ok(())
        })
    }
}
