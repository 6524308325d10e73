//! Tenants and the hashes of their API tokens.

use super::{encode, Error, Result, SledStore};
use crate::domain::Tenant;

/// Tenants and their token hashes.
pub trait TenantStore: Send + Sync {
    /// Creates a tenant with the hash of its API token; `Conflict` if the id is taken.
    fn create_tenant(&self, tenant: &Tenant, token_hash: &[u8]) -> Result<()>;

    /// The tenant whose token hashes to `token_hash`.
    fn tenant_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<String>>;
}

impl TenantStore for SledStore {
    fn create_tenant(&self, tenant: &Tenant, token_hash: &[u8]) -> Result<()> {
        let inserted = self.tenants.compare_and_swap(
            tenant.id.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(tenant)),
        )?;
        if inserted.is_err() {
            return Err(Error::Conflict);
        }
        self.tenant_tokens
            .insert(token_hash, tenant.id.as_bytes())?;
        Ok(())
    }

    fn tenant_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<String>> {
        Ok(self
            .tenant_tokens
            .get(token_hash)?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }
}
