//! Accounts: tenants (and their API tokens) and their IntegrationConnections, the
//! accounts a tenant holds at providers. Every lookup is by owner, so another tenant's
//! connection is indistinguishable from a missing one.
//!
//! May import: `domain`, `store`, `runtime::catalog` (which connectors exist).

pub mod connections;
pub mod tenants;
