//! Persistence of the binding layers and of what execution remembers between calls:
//! blueprints (immutable once written), tenant config versions with the pointer to the
//! published one, idempotent results and daily quota counters.

use super::{decode, encode, tenant_key, Error, Result, Store};
use crate::domain::{Blueprint, ConfigStatus, Environment, TenantConfig, UnixMs};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

/// A successful execution kept under its idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdempotentResult {
    /// SHA-256 of what was asked; a different request under the same key conflicts.
    pub fingerprint: String,
    /// The execution's id.
    pub execution_id: String,
    /// The connector's output.
    pub output: serde_json::Value,
    /// The connection that served.
    pub connection_id: String,
    /// Its integration key.
    pub integration_key: String,
    /// When it was stored.
    pub created_at: UnixMs,
}

/// Why a publication did not happen.
#[derive(Debug)]
pub enum PublishRefusal {
    /// No such version.
    Missing,
    /// The version is archived.
    Archived,
}

impl Store {
    // --- blueprints ------------------------------------------------------------------

    /// Writes a blueprint version unless it exists; returns the existing one if it does.
    pub fn insert_blueprint(&self, blueprint: &Blueprint) -> Result<Option<Blueprint>> {
        let key = blueprint_key(&blueprint.meta.name, &blueprint.meta.version);
        match self.blueprints.compare_and_swap(
            &key,
            None as Option<&[u8]>,
            Some(encode(blueprint)),
        )? {
            Ok(()) => {
                self.blueprints.flush()?;
                Ok(None)
            }
            Err(existing) => Ok(Some(decode(
                "blueprints",
                &existing.current.unwrap_or_default(),
            )?)),
        }
    }

    /// One blueprint version.
    pub fn blueprint(&self, name: &str, version: &str) -> Result<Option<Blueprint>> {
        self.blueprints
            .get(blueprint_key(name, version))?
            .map(|v| decode("blueprints", &v))
            .transpose()
    }

    /// Every blueprint version, by name then version.
    pub fn blueprints(&self) -> Result<Vec<Blueprint>> {
        self.blueprints
            .iter()
            .values()
            .map(|v| decode("blueprints", &v?))
            .collect()
    }

    // --- tenant configs --------------------------------------------------------------

    /// Stores `config` as the next version for its tenant, blueprint and environment,
    /// setting `config.meta.version`.
    pub fn insert_config_version(&self, config: &mut TenantConfig) -> Result<()> {
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

    /// One config version of the tenant.
    pub fn config(
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

    /// The tenant's config versions, optionally of one blueprint, oldest first.
    pub fn configs_of(
        &self,
        tenant_id: &str,
        blueprint: Option<&str>,
    ) -> Result<Vec<TenantConfig>> {
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

    /// The published config of a tenant's blueprint in an environment.
    pub fn published_config(
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

    /// Moves a draft to `preview`; `Ok(None)` when no such version exists, `Err`
    /// (conflict) when it is not a draft.
    pub fn preview_config(
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

    /// Publishes a version and archives the one it replaces, in one transaction.
    pub fn publish_config(
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
        // Caches must see the commit before anything else can fail.
        if outcome.is_ok() {
            self.bump_revision(tenant_id);
        }
        self.db.flush()?;
        Ok(outcome)
    }

    // --- idempotency -----------------------------------------------------------------

    /// The result stored under a tenant's idempotency key.
    pub fn idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<IdempotentResult>> {
        self.idempotency
            .get(tenant_key(tenant_id, key))?
            .map(|v| decode("idempotency", &v))
            .transpose()
    }

    /// Stores a result under a tenant's idempotency key (flushed: a replay must find it
    /// after a crash, or the provider would be called twice).
    pub fn put_idempotent_result(
        &self,
        tenant_id: &str,
        key: &str,
        result: &IdempotentResult,
    ) -> Result<()> {
        self.idempotency
            .insert(tenant_key(tenant_id, key), encode(result))?;
        self.idempotency.flush()?;
        Ok(())
    }

    /// Drops results stored before `before`; returns how many.
    pub fn purge_idempotent_results(&self, before: UnixMs) -> Result<usize> {
        let mut purged = 0;
        for entry in self.idempotency.iter() {
            let (key, value) = entry?;
            let result: IdempotentResult = decode("idempotency", &value)?;
            if result.created_at < before {
                self.idempotency.remove(key)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    // --- quotas ----------------------------------------------------------------------

    /// Counts one execution of `connection_id` on `day` if fewer than `limit` were
    /// counted; returns whether it was.
    pub fn take_quota(&self, connection_id: &str, day: u64, limit: u32) -> Result<bool> {
        let key = |day: u64| {
            let mut key = connection_id.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&day.to_be_bytes());
            key
        };
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

    // --- revisions -------------------------------------------------------------------

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

fn blueprint_key(name: &str, version: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(version.as_bytes());
    key
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

fn read_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConfigMeta;

    fn draft(tenant: &str) -> TenantConfig {
        TenantConfig {
            meta: ConfigMeta {
                tenant_id: tenant.into(),
                blueprint_name: "app".into(),
                blueprint_version: "1".into(),
                environment: Environment::Production,
                version: 0,
                status: ConfigStatus::Draft,
            },
            integrations: Vec::new(),
            branding: serde_json::Value::Null,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn versions_count_up_and_publishing_archives_the_previous_one() {
        let store = Store::temporary().unwrap();
        let (mut one, mut two) = (draft("acme"), draft("acme"));
        store.insert_config_version(&mut one).unwrap();
        store.insert_config_version(&mut two).unwrap();
        let mut other = draft("globex");
        store.insert_config_version(&mut other).unwrap();
        assert_eq!(
            (one.meta.version, two.meta.version, other.meta.version),
            (1, 2, 1)
        );

        let revision = store.revision("acme");
        let env = Environment::Production;
        store
            .publish_config("acme", "app", env, 1, 5)
            .unwrap()
            .unwrap();
        assert!(
            store.revision("acme") > revision,
            "publication invalidates caches"
        );
        store
            .publish_config("acme", "app", env, 2, 6)
            .unwrap()
            .unwrap();
        let status = |v| {
            store
                .config("acme", "app", env, v)
                .unwrap()
                .unwrap()
                .meta
                .status
        };
        assert_eq!(
            (status(1), status(2)),
            (ConfigStatus::Archived, ConfigStatus::Published)
        );
        assert_eq!(
            store
                .published_config("acme", "app", env)
                .unwrap()
                .unwrap()
                .meta
                .version,
            2
        );
        assert!(matches!(
            store.publish_config("acme", "app", env, 1, 7).unwrap(),
            Err(PublishRefusal::Archived)
        ));
        assert!(matches!(
            store.publish_config("acme", "app", env, 9, 7).unwrap(),
            Err(PublishRefusal::Missing)
        ));
        assert!(store
            .published_config("globex", "app", env)
            .unwrap()
            .is_none());
    }

    #[test]
    fn quotas_count_to_their_limit_per_day() {
        let store = Store::temporary().unwrap();
        assert!(store.take_quota("c", 1, 2).unwrap());
        assert!(store.take_quota("c", 1, 2).unwrap());
        assert!(!store.take_quota("c", 1, 2).unwrap());
        assert!(store.take_quota("c", 2, 2).unwrap(), "a new day");
        assert!(store.take_quota("d", 1, 2).unwrap(), "another connection");
    }
}
