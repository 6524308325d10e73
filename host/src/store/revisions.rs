//! Per-tenant change counters that caches of derived views (the resolver's) compare.
//! In memory, like the caches they guard.

use super::Store;

impl Store {
    /// A number that changes whenever the tenant's connections or published configs
    /// change; caches of derived views compare it to know they are current.
    pub fn revision(&self, tenant_id: &str) -> u64 {
        *self
            .revisions
            .lock()
            .expect("revisions lock")
            .get(tenant_id)
            .unwrap_or(&0)
    }

    pub(super) fn bump_revision(&self, tenant_id: &str) {
        let mut revisions = self.revisions.lock().expect("revisions lock");
        *revisions.entry(tenant_id.to_owned()).or_insert(0) += 1;
    }
}
