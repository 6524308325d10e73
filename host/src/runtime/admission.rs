//! Who may start a connector instance now. The instance pool is shared by every tenant;
//! each tenant may hold only its share of it at once, so one tenant's burst leaves room
//! for the others. A call that finds no room waits briefly (a burst queues rather than
//! failing), then is refused as [`Busy`] with a retry hint. Nothing reaches the pool
//! without a permit, so the pool itself is never full and no caller ever gets the error
//! of someone else's burst.
//!
//! Owns only counting; imports nothing of the host's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Which limit had no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The tenant already runs as many calls as its share allows.
    Tenant,
    /// Every instance in the pool is taken.
    Pool,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Busy::Tenant => "this tenant's concurrent connector calls are at their limit",
            Busy::Pool => "every connector instance is in use",
        })
    }
}

/// The pool's permits and each tenant's share.
pub struct Admission {
    pool: Arc<Semaphore>,
    capacity: usize,
    per_tenant: usize,
    wait: Duration,
    /// Only tenants with a call running or waiting have an entry (see [`TenantSlot`]).
    tenants: Shares,
}

/// Each tenant's share of the pool, while it has calls running or waiting.
type Shares = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// Room to run one instance: held until the instance is gone (which may be after the
/// call has answered: the permit owns what it needs).
#[must_use = "the room is given back when the permit drops"]
pub struct Permit {
    // Declared first: the pool's permit goes back before the tenant's.
    _pool: OwnedSemaphorePermit,
    _tenant: Option<TenantSlot>,
}

impl Admission {
    /// `capacity` instances in all, `per_tenant` of them for one tenant at once, and
    /// `wait` at most for room.
    pub fn new(capacity: u32, per_tenant: u32, wait: Duration) -> Self {
        let capacity = capacity.max(1) as usize;
        Admission {
            pool: Arc::new(Semaphore::new(capacity)),
            capacity,
            per_tenant: (per_tenant.max(1) as usize).min(capacity),
            wait,
            tenants: Arc::default(),
        }
    }

    /// Instances running now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.pool.available_permits()
    }

    /// Room for one instance on `tenant`'s behalf (or the host's own, `None`: loading),
    /// waiting at most the queue wait for it.
    pub async fn admit(&self, tenant: Option<&str>) -> Result<Permit, Busy> {
        let until = Instant::now() + self.wait;
        let tenant = match tenant {
            Some(tenant) => Some(self.tenant_slot(tenant, until).await?),
            None => None,
        };
        let pool = tokio::time::timeout_at(until, self.pool.clone().acquire_owned())
            .await
            .map_err(|_| Busy::Pool)?
            .map_err(|_| Busy::Pool)?;
        Ok(Permit {
            _pool: pool,
            _tenant: tenant,
        })
    }

    async fn tenant_slot(&self, tenant: &str, until: Instant) -> Result<TenantSlot, Busy> {
        let share = lock(&self.tenants)
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        // The slot exists before the wait, so a call that gives up still cleans up.
        let mut slot = TenantSlot {
            tenants: self.tenants.clone(),
            tenant: tenant.to_owned(),
            share: Some(share.clone()),
            permit: None,
        };
        let permit = tokio::time::timeout_at(until, share.acquire_owned())
            .await
            .map_err(|_| Busy::Tenant)?
            .map_err(|_| Busy::Tenant)?;
        slot.permit = Some(permit);
        Ok(slot)
    }

    #[cfg(test)]
    fn tracked_tenants(&self) -> usize {
        lock(&self.tenants).len()
    }
}

fn lock(shares: &Shares) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
    // The map holds no invariant a panic could break halfway.
    shares.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tenant's share, held (or waited for) by one call.
struct TenantSlot {
    tenants: Shares,
    tenant: String,
    share: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut tenants = lock(&self.tenants);
        // Our references go while the lock is held, so two slots dropping at once
        // cannot each see the other's and leave the entry behind.
        self.permit.take();
        self.share.take();
        // Every holder and waiter took its clone under this lock: the map's being the
        // only one left means no call of this tenant is running or waiting.
        if tenants
            .get(&self.tenant)
            .is_some_and(|share| Arc::strong_count(share) == 1)
        {
            tenants.remove(&self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_tenant_at_its_share_is_busy_and_others_still_run() {
        let admission = Admission::new(4, 2, WAIT);
        let _a1 = admission.admit(Some("a")).await.unwrap();
        let _a2 = admission.admit(Some("a")).await.unwrap();
        assert_eq!(admission.admit(Some("a")).await.err(), Some(Busy::Tenant));
        let _b1 = admission.admit(Some("b")).await.unwrap();
        let _b2 = admission.admit(Some("b")).await.unwrap();
        assert_eq!(admission.in_use(), 4);
        // The pool is full now: the host's own work and a third tenant wait, then give up.
        assert_eq!(admission.admit(None).await.err(), Some(Busy::Pool));
        assert_eq!(admission.admit(Some("c")).await.err(), Some(Busy::Pool));
    }

    #[tokio::test]
    async fn a_waiting_call_runs_when_room_is_given_back() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_secs(5)));
        let held = admission.admit(Some("a")).await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(Some("a")).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "the queued call was admitted");
    }

    #[tokio::test]
    async fn only_tenants_with_calls_in_flight_are_tracked() {
        let admission = Admission::new(4, 1, WAIT);
        for tenant in ["a", "b", "c"] {
            let held = admission.admit(Some(tenant)).await.unwrap();
            // A refused call gives its slot back too.
            assert!(admission.admit(Some(tenant)).await.is_err());
            assert_eq!(admission.tracked_tenants(), 1);
            drop(held);
            assert_eq!(admission.tracked_tenants(), 0);
        }
        assert_eq!(admission.in_use(), 0);
    }
}
