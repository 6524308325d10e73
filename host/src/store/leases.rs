//! Leases: which one of the replicas sharing a database does a piece of work now (a
//! credential's refresh, the request in flight under an idempotency key). A lease is
//! taken until a time and carries a generation that grows with every take, the fencing
//! token a holder's writes are checked against; one whose holder died lapses at its
//! time, so the work is delayed by at most the lease, never lost.

use super::Result;
use crate::domain::{now_ms, UnixMs};
use std::sync::Arc;
use std::time::Duration;

/// Leases by name.
pub trait LeaseStore: Send + Sync {
    /// Takes the lease `name` until `now + ttl_ms`, unless another holder's is still
    /// live; returns its generation.
    fn take_lease(&self, name: &str, now: UnixMs, ttl_ms: u64) -> Result<Option<u64>>;

    /// Ends the lease at `generation`, unless it was taken over since.
    fn release_lease(&self, name: &str, generation: u64) -> Result<()>;
}

/// A lease's state: its generation and until when it holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    generation: u64,
    until: UnixMs,
}

impl Lease {
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

/// One process owns a sled database, so its leases live in memory: a crash leaves
/// none behind to wait out.
impl LeaseStore for super::SledStore {
    fn take_lease(&self, name: &str, now: UnixMs, ttl_ms: u64) -> Result<Option<u64>> {
        let mut leases = self.leases.lock().expect("leases lock");
        let lease = leases.entry(name.to_owned()).or_insert(Lease {
            generation: 0,
            until: 0,
        });
        if lease.until > now {
            return Ok(None);
        }
        lease.generation += 1;
        lease.until = now.saturating_add(ttl_ms);
        Ok(Some(lease.generation))
    }

    fn release_lease(&self, name: &str, generation: u64) -> Result<()> {
        let mut leases = self.leases.lock().expect("leases lock");
        if let Some(lease) = leases.get_mut(name) {
            if lease.generation == generation {
                lease.until = 0;
            }
        }
        Ok(())
    }
}

/// The lease on refreshing a connection's credential.
pub fn refresh_lease(connection_id: &str) -> String {
    format!("refresh:{connection_id}")
}

/// A lease held; released when dropped, however the work ended.
pub struct HeldLease {
    leases: Arc<dyn LeaseStore>,
    name: String,
    /// The fencing token of this hold.
    pub generation: u64,
}

/// How long a lease holds, by default: longer than the work it covers may take (a
/// connector's deadline), so only a holder that died loses it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How often a wait for another holder's lease looks again.
const POLL: Duration = Duration::from_millis(10);

impl HeldLease {
    /// Takes `name` for `ttl`, waiting while another holder has it: until it is
    /// done, or at most `ttl` when that holder died. The caller re-reads what the
    /// other holder may have written.
    pub async fn acquire(
        leases: &Arc<dyn LeaseStore>,
        name: String,
        ttl: Duration,
    ) -> Result<HeldLease> {
        let ttl_ms = ttl.as_millis() as u64;
        loop {
            if let Some(generation) = leases.take_lease(&name, now_ms(), ttl_ms)? {
                return Ok(HeldLease {
                    leases: leases.clone(),
                    name,
                    generation,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Err(e) = self.leases.release_lease(&self.name, self.generation) {
            // It lapses at its time anyway.
            tracing::warn!(lease = %self.name, error = %e, "releasing a lease failed");
        }
    }
}
