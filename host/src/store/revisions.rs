//! Per-tenant change counters that caches of derived views (the resolver's) compare to
//! know they are current, kept apart from what they count: [`Revisioned`] wraps any
//! connection and config store and bumps the tenant's counter after each write that
//! changes what resolution sees. One process keeps them in memory ([`Revisions`], the
//! sled default); replicas sharing a database keep them there, so a change made on one
//! is seen by every replica's next call.

use super::{ConfigStore, ConnectionStore, PublishRefusal, Result};
use crate::domain::{Connection, ConnectionStatus, Environment, TenantConfig, UnixMs};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where the counters live.
pub trait RevisionStore: Send + Sync {
    /// A number that changes whenever the tenant's connections or published configs do.
    fn current(&self, tenant_id: &str) -> Result<u64>;

    /// Records a change.
    fn bump(&self, tenant_id: &str) -> Result<()>;
}

/// The counters of one process, in memory.
#[derive(Debug, Default)]
pub struct Revisions(Mutex<HashMap<String, u64>>);

impl RevisionStore for Revisions {
    fn current(&self, tenant_id: &str) -> Result<u64> {
        let revisions = self.0.lock().expect("revisions lock");
        Ok(*revisions.get(tenant_id).unwrap_or(&0))
    }

    fn bump(&self, tenant_id: &str) -> Result<()> {
        let mut revisions = self.0.lock().expect("revisions lock");
        *revisions.entry(tenant_id.to_owned()).or_insert(0) += 1;
        Ok(())
    }
}

/// A store whose connection writes and publications bump [`Revisions`].
pub struct Revisioned<S> {
    inner: S,
    revisions: Arc<dyn RevisionStore>,
}

impl<S> Revisioned<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, revisions: Arc<dyn RevisionStore>) -> Self {
        Revisioned { inner, revisions }
    }
}

impl<S: ConnectionStore> ConnectionStore for Revisioned<S> {
    // A write that fails may still have been applied; a bump costs only a rebuild.
    fn put_connection(&self, connection: &Connection) -> Result<()> {
        let written = self.inner.put_connection(connection);
        let bumped = self.revisions.bump(&connection.tenant_id);
        written.and(bumped)
    }

    fn connection(&self, id: &str) -> Result<Option<Connection>> {
        self.inner.connection(id)
    }

    fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>> {
        self.inner.connections_of(tenant_id)
    }

    fn count_connections_of(&self, tenant_id: &str) -> Result<usize> {
        self.inner.count_connections_of(tenant_id)
    }

    fn status_counts(&self) -> Result<Vec<(ConnectionStatus, usize)>> {
        self.inner.status_counts()
    }

    fn delete_connection(&self, connection: &Connection) -> Result<()> {
        let deleted = self.inner.delete_connection(connection);
        let bumped = self.revisions.bump(&connection.tenant_id);
        deleted.and(bumped)
    }

    fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<Option<Connection>> {
        let moved = self.inner.transition_status(id, from, to, reason)?;
        if let Some(connection) = &moved {
            self.revisions.bump(&connection.tenant_id)?;
        }
        Ok(moved)
    }
}

impl<S: ConfigStore> ConfigStore for Revisioned<S> {
    fn insert_config_version(&self, config: &mut TenantConfig) -> Result<()> {
        self.inner.insert_config_version(config)
    }

    fn published_configs(&self) -> Result<Vec<TenantConfig>> {
        self.inner.published_configs()
    }

    fn config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<Option<TenantConfig>> {
        self.inner
            .config(tenant_id, blueprint, environment, version)
    }

    fn configs_of(&self, tenant_id: &str, blueprint: Option<&str>) -> Result<Vec<TenantConfig>> {
        self.inner.configs_of(tenant_id, blueprint)
    }

    fn published_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Option<TenantConfig>> {
        self.inner
            .published_config(tenant_id, blueprint, environment)
    }

    fn preview_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Option<TenantConfig>> {
        self.inner
            .preview_config(tenant_id, blueprint, environment, version, now)
    }

    fn discard_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<bool> {
        self.inner
            .discard_config(tenant_id, blueprint, environment, version)
    }

    fn publish(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<std::result::Result<TenantConfig, PublishRefusal>> {
        let published = self
            .inner
            .publish(tenant_id, blueprint, environment, version, now);
        // A failed flush may follow a commit that reads already see.
        if matches!(published, Ok(Err(_))) {
            return published;
        }
        let bumped = self.revisions.bump(tenant_id);
        published.and_then(|outcome| bumped.map(|()| outcome))
    }
}
