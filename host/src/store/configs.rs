//! Tenant config versions and the pointer to the published one per tenant, blueprint
//! and environment; publishing archives the previous version in the same transaction.

use super::{decode, encode, tenant_key, Error, Result, SledStore};
use crate::domain::{ConfigStatus, Environment, TenantConfig, UnixMs};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

/// Why a publication did not happen.
#[derive(Debug)]
pub enum PublishRefusal {
    /// No such version.
    Missing,
    /// The version is archived.
    Archived,
}

/// Tenant config versions and the published pointer.
pub trait ConfigStore: Send + Sync {
    /// Stores `config` as the next version for its tenant, blueprint and environment,
    /// setting `config.meta.version`.
    fn insert_config_version(&self, config: &mut TenantConfig) -> Result<()>;

    /// One config version of the tenant.
    fn config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<Option<TenantConfig>>;

    /// The tenant's config versions, optionally of one blueprint, oldest first.
    fn configs_of(&self, tenant_id: &str, blueprint: Option<&str>) -> Result<Vec<TenantConfig>>;

    /// The published config of a tenant's blueprint in an environment.
    fn published_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Option<TenantConfig>>;

    /// Every tenant's published configs (an operator's question: which configs rely
    /// on a connector).
    fn published_configs(&self) -> Result<Vec<TenantConfig>>;

    /// Moves a draft to `preview`; `Ok(None)` when no such version exists, `Err`
    /// (conflict) when it is not a draft.
    fn preview_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Option<TenantConfig>>;

    /// Deletes a version that was never published (`draft` or `preview`): `Ok(false)`
    /// when no such version exists, `Err` (conflict) when it is published or archived.
    fn discard_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<bool>;

    /// Publishes a version and archives the one it replaces, in one transaction.
    fn publish(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Result<TenantConfig, PublishRefusal>>;
}

impl ConfigStore for SledStore {
    fn insert_config_version(&self, config: &mut TenantConfig) -> Result<()> {
        let meta = &config.meta;
        let prefix = config_prefix(&meta.tenant_id, &meta.blueprint_name, meta.environment);
        let mut next = match self.configs.scan_prefix(&prefix).keys().next_back() {
            Some(key) => version_of(&key?) + 1,
            None => 1,
        };
        loop {
            config.meta.version = next;
            let key = config_key(&prefix, next);
            let inserted = self.configs.compare_and_swap(
                &key,
                None as Option<&[u8]>,
                Some(encode(&*config)),
            )?;
            if inserted.is_ok() {
                self.configs.flush()?;
                return Ok(());
            }
            next += 1;
        }
    }

    fn config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<Option<TenantConfig>> {
        let key = config_key(&config_prefix(tenant_id, blueprint, environment), version);
        self.configs
            .get(key)?
            .map(|v| decode("tenant_configs", &v))
            .transpose()
    }

    fn configs_of(&self, tenant_id: &str, blueprint: Option<&str>) -> Result<Vec<TenantConfig>> {
        let prefix = match blueprint {
            Some(name) => tenant_key(tenant_id, &format!("{name}\0")),
            None => tenant_key(tenant_id, ""),
        };
        self.configs
            .scan_prefix(prefix)
            .values()
            .map(|v| decode("tenant_configs", &v?))
            .collect()
    }

    fn published_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Option<TenantConfig>> {
        let prefix = config_prefix(tenant_id, blueprint, environment);
        let Some(version) = self.published.get(&prefix)? else {
            return Ok(None);
        };
        self.configs
            .get(config_key(&prefix, version_of_value(&version)))?
            .map(|v| decode("tenant_configs", &v))
            .transpose()
    }

    fn published_configs(&self) -> Result<Vec<TenantConfig>> {
        let mut configs = Vec::new();
        for entry in self.published.iter() {
            let (prefix, version) = entry?;
            let key = config_key(&prefix, version_of_value(&version));
            if let Some(bytes) = self.configs.get(key)? {
                configs.push(decode("tenant_configs", &bytes)?);
            }
        }
        Ok(configs)
    }

    fn preview_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Option<TenantConfig>> {
        let key = config_key(&config_prefix(tenant_id, blueprint, environment), version);
        let Some(bytes) = self.configs.get(&key)? else {
            return Ok(None);
        };
        let mut config: TenantConfig = decode("tenant_configs", &bytes)?;
        match config.meta.status {
            ConfigStatus::Preview => return Ok(Some(config)),
            ConfigStatus::Draft => {}
            _ => return Err(Error::Conflict),
        }
        config.meta.status = ConfigStatus::Preview;
        config.updated_at = now;
        if self
            .configs
            .compare_and_swap(&key, Some(bytes), Some(encode(&config)))?
            .is_err()
        {
            return Err(Error::Conflict);
        }
        self.configs.flush()?;
        Ok(Some(config))
    }

    fn discard_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<bool> {
        let key = config_key(&config_prefix(tenant_id, blueprint, environment), version);
        let Some(bytes) = self.configs.get(&key)? else {
            return Ok(false);
        };
        let config: TenantConfig = decode("tenant_configs", &bytes)?;
        if !matches!(
            config.meta.status,
            ConfigStatus::Draft | ConfigStatus::Preview
        ) {
            return Err(Error::Conflict);
        }
        // Only the very version read: a publication meanwhile wins.
        if self
            .configs
            .compare_and_swap(&key, Some(bytes), None as Option<&[u8]>)?
            .is_err()
        {
            return Err(Error::Conflict);
        }
        self.configs.flush()?;
        Ok(true)
    }

    fn publish(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Result<TenantConfig, PublishRefusal>> {
        let prefix = config_prefix(tenant_id, blueprint, environment);
        let key = config_key(&prefix, version);
        let outcome = (&self.configs, &self.published).transaction(|(configs, published)| {
            let Some(bytes) = configs.get(&key)? else {
                return Ok(Err(PublishRefusal::Missing));
            };
            let mut config: TenantConfig =
                decode("tenant_configs", &bytes).map_err(ConflictableTransactionError::Abort)?;
            match config.meta.status {
                ConfigStatus::Published => return Ok(Ok(config)),
                ConfigStatus::Archived => return Ok(Err(PublishRefusal::Archived)),
                ConfigStatus::Draft | ConfigStatus::Preview => {}
            }
            if let Some(previous) = published.get(&prefix)? {
                let previous_key = config_key(&prefix, version_of_value(&previous));
                if let Some(old) = configs.get(&previous_key)? {
                    let mut old: TenantConfig = decode("tenant_configs", &old)
                        .map_err(ConflictableTransactionError::Abort)?;
                    old.meta.status = ConfigStatus::Archived;
                    old.updated_at = now;
                    configs.insert(previous_key, encode(&old))?;
                }
            }
            config.meta.status = ConfigStatus::Published;
            config.updated_at = now;
            configs.insert(key.clone(), encode(&config))?;
            published.insert(prefix.clone(), &version.to_be_bytes()[..])?;
            Ok(Ok(config))
        });
        let outcome = outcome.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Error::Sled(e),
        })?;
        self.db.flush()?;
        Ok(outcome)
    }
}

/// `tenant \0 blueprint \0 environment \0`.
fn config_prefix(tenant_id: &str, blueprint: &str, environment: Environment) -> Vec<u8> {
    tenant_key(
        tenant_id,
        &format!("{blueprint}\0{}\0", environment.as_str()),
    )
}

/// The prefix followed by the version, big-endian so versions sort numerically.
fn config_key(prefix: &[u8], version: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn version_of(key: &[u8]) -> u32 {
    version_of_value(&key[key.len().saturating_sub(4)..])
}

fn version_of_value(bytes: &[u8]) -> u32 {
    <[u8; 4]>::try_from(bytes).map_or(0, u32::from_be_bytes)
}
