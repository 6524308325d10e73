//! The webhook outbox: lifecycle events waiting to be delivered, in the order they were
//! raised (`sequence (u64 BE)` → the event), each flushed to disk before it counts as
//! raised, so a restart loses none.

use super::{Result, SledStore};
use crate::domain::UnixMs;
use serde::{Deserialize, Serialize};

/// One event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// Its place in the outbox: entries are delivered in this order per connection.
    pub sequence: u64,
    /// The connection it is about (the ordering lane).
    pub connection_id: String,
    /// When it was raised.
    pub raised_at: UnixMs,
    /// The webhook body, exactly as it will be signed and sent.
    pub body: Vec<u8>,
}

/// Events waiting for delivery.
pub trait OutboxStore: Send + Sync {
    /// Appends an event about `connection_id` and flushes it; returns its sequence.
    fn enqueue(&self, connection_id: &str, raised_at: UnixMs, body: &[u8]) -> Result<u64>;

    /// The oldest `limit` entries, in order.
    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>>;

    /// Removes a delivered (or abandoned) entry.
    fn remove(&self, sequence: u64) -> Result<()>;

    /// How many entries wait.
    fn backlog(&self) -> usize;
}

impl OutboxStore for SledStore {
    fn enqueue(&self, connection_id: &str, raised_at: UnixMs, body: &[u8]) -> Result<u64> {
        // Monotonic across restarts: sled persists its id generator.
        let sequence = self.db.generate_id()?;
        let entry = OutboxEntry {
            sequence,
            connection_id: connection_id.to_owned(),
            raised_at,
            body: body.to_vec(),
        };
        self.outbox
            .insert(sequence.to_be_bytes(), super::encode(&entry))?;
        self.db.flush()?;
        Ok(sequence)
    }

    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut pending = Vec::new();
        for entry in self.outbox.iter().take(limit) {
            let (key, value) = entry?;
            match super::decode("webhook_outbox", &value) {
                Ok(entry) => pending.push(entry),
                // It can never be delivered; kept, it would stop every other.
                Err(e) => {
                    tracing::error!(error = %e, "an unreadable webhook delivery was dropped");
                    self.outbox.remove(key)?;
                }
            }
        }
        Ok(pending)
    }

    fn remove(&self, sequence: u64) -> Result<()> {
        self.outbox.remove(sequence.to_be_bytes())?;
        Ok(())
    }

    fn backlog(&self) -> usize {
        self.outbox.len()
    }
}
