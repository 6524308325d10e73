//! Persistence, one file per aggregate: tenants and their token hashes,
//! connections, sealed credentials with their expiry index, sealed OAuth clients and
//! pending states, audit records with their time index, blueprints, tenant config
//! versions, idempotent results, quota counters, connector deployments and kept
//! components, and the webhook outbox, each in its own tree. Methods are
//! shaped by the use cases that call them (find a tenant by token hash, list the
//! credentials due, publish a version) and declared as one trait per aggregate
//! ([`CredentialStore`], [`ConfigStore`], [`AuditStore`] …): use cases hold the traits,
//! [`SledStore`] (the embedded default) implements them all, and [`PgStore`]
//! (`postgres/`, several replicas on one database) implements the same set.
//! No caller sees sled keys or SQL. The tenants' change counters ([`RevisionStore`])
//! are in memory over sled and in the database over PostgreSQL.
//!
//! May import: `domain` only.

use crate::domain::UnixMs;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;

mod audit;
mod blueprints;
mod cached;
mod configs;
mod connections;
mod credentials;
mod deployments;
mod idempotency;
mod keyring;
mod leases;
mod oauth;
mod outbox;
mod postgres;
mod private;
mod quotas;
mod revisions;
mod tenants;
#[cfg(test)]
mod tests;

pub use audit::{AuditQuery, AuditStore};
pub use blueprints::BlueprintStore;
pub use configs::{ConfigStore, PublishRefusal};
pub use connections::ConnectionStore;
pub use credentials::{CredentialStore, StoredCredential};
pub use deployments::DeploymentStore;
pub use idempotency::{output_seal_id, IdempotencyStore, IdempotentResult};
pub use keyring::KeyringStore;
pub use leases::{refresh_lease, HeldLease, LeaseStore, DEFAULT_LEASE};
pub use oauth::{OauthState, OauthStore, StoredClient};
pub use outbox::{OutboxEntry, OutboxStore};
pub use postgres::PgStore;
pub use private::keep_private;
pub use quotas::QuotaStore;
pub use revisions::{RevisionStore, Revisioned, Revisions};
pub use tenants::TenantStore;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// PostgreSQL failed a statement.
    #[error("storage: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The database cannot be reached or prepared (connect, migrations).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record does not decode.
    #[error("corrupt record in {tree}: {source}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// The record already exists.
    #[error("already exists")]
    Conflict,
}

impl crate::domain::Classify for Error {
    fn classify(&self) -> crate::domain::ErrorClass {
        crate::domain::ErrorClass::internal()
    }
}

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every store a use case may take, as trait objects over one backend: built once by
/// the composition root (or a test) and handed out piece by piece. Connection writes
/// and publications go through [`Revisioned`], so the caches comparing revisions
/// see every change whatever the backend.
#[derive(Clone)]
pub struct Stores {
    /// Tenants.
    pub tenants: Arc<dyn TenantStore>,
    /// Connections (revisioned), read through memory when the process is alone on its
    /// data.
    pub connections: Arc<dyn ConnectionStore>,
    /// The same connections, never read through memory: for a reader that keeps what it
    /// reads itself (the binding resolver), so memory does not hold a connection twice
    /// and a resolution does not pay to fill a cache it will not read.
    pub connections_uncached: Arc<dyn ConnectionStore>,
    /// Sealed credentials.
    pub credentials: Arc<dyn CredentialStore>,
    /// OAuth clients and pending states.
    pub oauth: Arc<dyn OauthStore>,
    /// Audit records.
    pub audit: Arc<dyn AuditStore>,
    /// Blueprints.
    pub blueprints: Arc<dyn BlueprintStore>,
    /// Tenant configs (revisioned).
    pub configs: Arc<dyn ConfigStore>,
    /// Idempotent results.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Quota counters.
    pub quotas: Arc<dyn QuotaStore>,
    /// The vault's keyring.
    pub keyring: Arc<dyn KeyringStore>,
    /// Leases on refreshes and keyed requests.
    pub leases: Arc<dyn LeaseStore>,
    /// Connector deployments and kept components.
    pub deployments: Arc<dyn DeploymentStore>,
    /// Webhook deliveries waiting.
    pub outbox: Arc<dyn OutboxStore>,
    /// Flushing at shutdown.
    pub durable: Arc<dyn Durable>,
    /// The per-tenant change counters.
    pub revisions: Arc<dyn RevisionStore>,
    /// Whether other processes may write the same data (replicas on one database):
    /// each then follows what the others change.
    pub shared: bool,
}

impl Stores {
    /// Every store over one sled database.
    pub fn sled(store: SledStore) -> Result<Self> {
        let keyring = store.keyring()?;
        let revisions = Arc::new(Revisions::default());
        Ok(Self::over(store, keyring, revisions, false))
    }

    /// Every store over a PostgreSQL database (migrated on the way).
    pub fn postgres(store: PgStore) -> Result<Self> {
        let keyring = Arc::new(store.clone());
        let revisions = Arc::new(store.clone());
        Ok(Self::over(store, keyring, revisions, true))
    }

    /// Every trait over `backend`, its connection and config writes bumping
    /// `revisions`.
    fn over<B>(
        backend: B,
        keyring: Arc<dyn KeyringStore>,
        revisions: Arc<dyn RevisionStore>,
        shared: bool,
    ) -> Self
    where
        B: TenantStore
            + ConnectionStore
            + CredentialStore
            + OauthStore
            + AuditStore
            + BlueprintStore
            + ConfigStore
            + IdempotencyStore
            + QuotaStore
            + LeaseStore
            + DeploymentStore
            + OutboxStore
            + Durable
            + Clone
            + 'static,
    {
        let revisioned = Arc::new(Revisioned::new(backend.clone(), revisions.clone()));
        let backend = Arc::new(backend);
        let (tenants, connections, credentials): (
            Arc<dyn TenantStore>,
            Arc<dyn ConnectionStore>,
            Arc<dyn CredentialStore>,
        ) = if shared {
            (backend.clone(), revisioned.clone(), backend.clone())
        } else {
            // A process alone on its data serves the reads of every call from memory.
            let cached = Arc::new(cached::Cached::new(
                backend.clone(),
                revisioned.clone(),
                backend.clone(),
            ));
            (cached.clone(), cached.clone(), cached)
        };
        Stores {
            tenants,
            connections,
            connections_uncached: revisioned.clone(),
            credentials,
            oauth: backend.clone(),
            audit: backend.clone(),
            blueprints: backend.clone(),
            configs: revisioned,
            idempotency: backend.clone(),
            quotas: backend.clone(),
            keyring,
            leases: backend.clone(),
            deployments: backend.clone(),
            outbox: backend.clone(),
            durable: backend,
            revisions,
            shared,
        }
    }

    /// Every store over the sled database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::sled(SledStore::open(dir)?)
    }

    /// [`Stores::open`] with sled's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Self::sled(SledStore::open_with_cache(dir, cache_bytes)?)
    }

    /// Every store over a throwaway database, for tests and benchmarks.
    pub fn temporary() -> Result<Self> {
        Self::sled(SledStore::temporary()?)
    }
}

/// A backend's durability: what `serve` calls at shutdown.
pub trait Durable: Send + Sync {
    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
}

impl Durable for SledStore {
    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// The sled implementation of every store trait: one database, a tree per aggregate.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    tenants: sled::Tree,
    tenant_tokens: sled::Tree,
    connections: sled::Tree,
    tenant_connections: sled::Tree,
    credentials: sled::Tree,
    /// Refreshable credentials by expiry: `expires_at (u64 BE) ‖ connection id` → ().
    expiry: sled::Tree,
    oauth_clients: sled::Tree,
    /// Pending authorizations by SHA-256 of their state.
    oauth_states: sled::Tree,
    /// `tenant \0 state hash` → expiry (u64 BE): pending authorizations per tenant.
    oauth_states_by_tenant: sled::Tree,
    /// `tenant \0 time (u64 BE) ‖ id` → the record.
    audit: sled::Tree,
    /// What earlier versions indexed records by for retention (`time ‖ audit key`);
    /// no longer written, emptied as its entries expire.
    audit_time: sled::Tree,
    blueprints: sled::Tree,
    configs: sled::Tree,
    /// `tenant \0 blueprint \0 environment \0` → published version (u32 BE).
    published: sled::Tree,
    idempotency: sled::Tree,
    quotas: sled::Tree,
    /// Connector slug → its deployment.
    deployments: sled::Tree,
    /// SHA-256 → the bytes of an uploaded or dropped-in component.
    components: sled::Tree,
    /// `sequence (u64 BE)` → a webhook delivery waiting.
    outbox: sled::Tree,
    /// Leases by name (in memory: see [`LeaseStore`] for sled).
    leases: Arc<std::sync::Mutex<std::collections::HashMap<String, leases::Lease>>>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with the default page cache.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `dir`; sled keeps at most `cache_bytes` of
    /// pages in memory (its own default is 1 GiB, so memory would grow with the data,
    /// the audit trail above all, until then).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .open()?;
        Self::from_db(db)
    }

    /// A throwaway database, for tests and benchmarks.
    pub fn temporary() -> Result<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Self> {
        Ok(SledStore {
            tenants: db.open_tree("tenants")?,
            tenant_tokens: db.open_tree("tenant_tokens")?,
            connections: db.open_tree("connections")?,
            tenant_connections: db.open_tree("tenant_connections")?,
            credentials: db.open_tree("credentials")?,
            expiry: db.open_tree("credential_expiry")?,
            oauth_clients: db.open_tree("oauth_clients")?,
            oauth_states: db.open_tree("oauth_states")?,
            oauth_states_by_tenant: db.open_tree("oauth_states_by_tenant")?,
            audit: db.open_tree("audit")?,
            audit_time: db.open_tree("audit_time")?,
            blueprints: db.open_tree("blueprints")?,
            configs: db.open_tree("tenant_configs")?,
            published: db.open_tree("published_configs")?,
            idempotency: db.open_tree("idempotency")?,
            quotas: db.open_tree("quotas")?,
            deployments: db.open_tree("plugin_deployments")?,
            components: db.open_tree("plugin_components")?,
            outbox: db.open_tree("webhook_outbox")?,
            leases: Arc::default(),
            db,
        })
    }
}

/// sled's page cache, by default.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// `tenant \0 rest`: tenant ids cannot contain NUL, so prefixes never collide.
fn expiry_key(expires_at: UnixMs, connection_id: &str) -> Vec<u8> {
    let mut key = expires_at.to_be_bytes().to_vec();
    key.extend_from_slice(connection_id.as_bytes());
    key
}

fn tenant_key(tenant_id: &str, rest: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant_id.len() + 1 + rest.len());
    key.extend_from_slice(tenant_id.as_bytes());
    key.push(0);
    key.extend_from_slice(rest.as_bytes());
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("domain records serialize")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { tree, source })
}
