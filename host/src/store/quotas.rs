//! Daily execution counters per connection.

use super::{Result, SledStore};

/// Daily execution counters.
pub trait QuotaStore: Send + Sync {
    /// Counts one execution of `connection_id` on `day` if fewer than `limit` were
    /// counted; returns whether it was.
    fn take_quota(&self, connection_id: &str, day: u64, limit: u32) -> Result<bool>;

    /// Gives back one execution counted on `day` that never ran.
    fn give_back_quota(&self, connection_id: &str, day: u64) -> Result<()>;
}

fn quota_key(connection_id: &str, day: u64) -> Vec<u8> {
    let mut key = connection_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&day.to_be_bytes());
    key
}

impl QuotaStore for SledStore {
    fn take_quota(&self, connection_id: &str, day: u64, limit: u32) -> Result<bool> {
        let key = |day: u64| quota_key(connection_id, day);
        // Yesterday's counter is done with; only today's is kept.
        self.quotas.remove(key(day.saturating_sub(1)))?;
        let before = self.quotas.fetch_and_update(key(day), |old| {
            let used = old.map_or(0, read_u64);
            let next = if used < u64::from(limit) {
                used + 1
            } else {
                used
            };
            Some(next.to_be_bytes().to_vec())
        })?;
        Ok(before.map_or(0, |v| read_u64(&v)) < u64::from(limit))
    }

    fn give_back_quota(&self, connection_id: &str, day: u64) -> Result<()> {
        self.quotas
            .fetch_and_update(quota_key(connection_id, day), |old| {
                old.map(|v| read_u64(v).saturating_sub(1).to_be_bytes().to_vec())
            })?;
        Ok(())
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}
