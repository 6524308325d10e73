//! Blueprints, tenant config versions with their published pointer, and connector
//! deployments with their kept components.

use super::{PgStore, Session};
use crate::domain::deployment::PluginDeployment;
use crate::domain::{Blueprint, ConfigStatus, Environment, TenantConfig, UnixMs};
use crate::store::{
    decode, encode, BlueprintStore, ConfigStore, DeploymentStore, Error, PublishRefusal, Result,
};

impl BlueprintStore for PgStore {
    fn insert_blueprint(&self, blueprint: &Blueprint) -> Result<Option<Blueprint>> {
        let (name, version) = (&blueprint.meta.name, &blueprint.meta.version);
        self.session(|s| {
            let inserted = s.execute(
                "INSERT INTO blueprints (name, version, doc) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[name, version, &encode(blueprint)],
            )?;
            if inserted == 1 {
                return Ok(None);
            }
            s.query_opt(
                "SELECT doc FROM blueprints WHERE name = $1 AND version = $2",
                &[name, version],
            )?
            .map(|row| decode("blueprints", row.get(0)))
            .transpose()
        })
    }

    fn blueprint(&self, name: &str, version: &str) -> Result<Option<Blueprint>> {
        self.session(|s| {
            s.query_opt(
                "SELECT doc FROM blueprints WHERE name = $1 AND version = $2",
                &[&name, &version],
            )?
            .map(|row| decode("blueprints", row.get(0)))
            .transpose()
        })
    }

    fn blueprints(&self) -> Result<Vec<Blueprint>> {
        self.session(|s| {
            s.query("SELECT doc FROM blueprints ORDER BY name, version", &[])?
                .iter()
                .map(|row| decode("blueprints", row.get(0)))
                .collect()
        })
    }
}

/// A config version, locked for the rest of the transaction when in one.
fn config_for_update(
    s: &mut Session<'_>,
    tenant_id: &str,
    blueprint: &str,
    environment: Environment,
    version: u32,
) -> Result<Option<TenantConfig>> {
    s.query_opt(
        "SELECT doc FROM tenant_configs WHERE tenant_id = $1 AND blueprint = $2 \
         AND environment = $3 AND version = $4 FOR UPDATE",
        &[
            &tenant_id,
            &blueprint,
            &environment.as_str(),
            &i64::from(version),
        ],
    )?
    .map(|row| decode("tenant_configs", row.get(0)))
    .transpose()
}

fn write_config(s: &mut Session<'_>, config: &TenantConfig) -> Result<()> {
    let meta = &config.meta;
    s.execute(
        "UPDATE tenant_configs SET doc = $5 WHERE tenant_id = $1 AND blueprint = $2 \
         AND environment = $3 AND version = $4",
        &[
            &meta.tenant_id,
            &meta.blueprint_name,
            &meta.environment.as_str(),
            &i64::from(meta.version),
            &encode(config),
        ],
    )?;
    Ok(())
}

impl ConfigStore for PgStore {
    fn insert_config_version(&self, config: &mut TenantConfig) -> Result<()> {
        self.session(|s| {
            let meta = &config.meta;
            let (tenant, blueprint, environment) = (
                meta.tenant_id.clone(),
                meta.blueprint_name.clone(),
                meta.environment.as_str(),
            );
            let latest = s.query_opt(
                "SELECT max(version) FROM tenant_configs WHERE tenant_id = $1 \
                 AND blueprint = $2 AND environment = $3",
                &[&tenant, &blueprint, &environment],
            )?;
            let mut next = latest
                .and_then(|row| row.get::<_, Option<i64>>(0))
                .map_or(1, |v| version_of(v) + 1);
            // A concurrent writer may take the same number: the next one is tried.
            loop {
                config.meta.version = next;
                let inserted = s.execute(
                    "INSERT INTO tenant_configs (tenant_id, blueprint, environment, version, doc) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &tenant,
                        &blueprint,
                        &environment,
                        &i64::from(next),
                        &encode(&*config),
                    ],
                )?;
                if inserted == 1 {
                    return Ok(());
                }
                next += 1;
            }
        })
    }

    fn config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<Option<TenantConfig>> {
        // Outside a transaction the row lock ends with the statement.
        self.session(|s| config_for_update(s, tenant_id, blueprint, environment, version))
    }

    fn configs_of(&self, tenant_id: &str, blueprint: Option<&str>) -> Result<Vec<TenantConfig>> {
        self.session(|s| {
            s.query(
                "SELECT doc FROM tenant_configs WHERE tenant_id = $1 \
                 AND ($2::text IS NULL OR blueprint = $2) \
                 ORDER BY blueprint, environment, version",
                &[&tenant_id, &blueprint],
            )?
            .iter()
            .map(|row| decode("tenant_configs", row.get(0)))
            .collect()
        })
    }

    fn published_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Option<TenantConfig>> {
        self.session(|s| {
            s.query_opt(
                "SELECT c.doc FROM published_configs p JOIN tenant_configs c \
                 USING (tenant_id, blueprint, environment, version) \
                 WHERE p.tenant_id = $1 AND p.blueprint = $2 AND p.environment = $3",
                &[&tenant_id, &blueprint, &environment.as_str()],
            )?
            .map(|row| decode("tenant_configs", row.get(0)))
            .transpose()
        })
    }

    fn published_configs(&self) -> Result<Vec<TenantConfig>> {
        self.session(|s| {
            s.query(
                "SELECT c.doc FROM published_configs p JOIN tenant_configs c \
                 USING (tenant_id, blueprint, environment, version) \
                 ORDER BY p.tenant_id, p.blueprint, p.environment",
                &[],
            )?
            .iter()
            .map(|row| decode("tenant_configs", row.get(0)))
            .collect()
        })
    }

    fn preview_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Option<TenantConfig>> {
        self.transaction(|s| {
            let Some(mut config) =
                config_for_update(s, tenant_id, blueprint, environment, version)?
            else {
                return Ok(None);
            };
            match config.meta.status {
                ConfigStatus::Preview => return Ok(Some(config)),
                ConfigStatus::Draft => {}
                _ => return Err(Error::Conflict),
            }
            config.meta.status = ConfigStatus::Preview;
            config.updated_at = now;
            write_config(s, &config)?;
            Ok(Some(config))
        })
    }

    fn discard_config(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<bool> {
        self.transaction(|s| {
            let Some(config) = config_for_update(s, tenant_id, blueprint, environment, version)?
            else {
                return Ok(false);
            };
            if !matches!(
                config.meta.status,
                ConfigStatus::Draft | ConfigStatus::Preview
            ) {
                return Err(Error::Conflict);
            }
            s.execute(
                "DELETE FROM tenant_configs WHERE tenant_id = $1 AND blueprint = $2 \
                 AND environment = $3 AND version = $4",
                &[
                    &tenant_id,
                    &blueprint,
                    &environment.as_str(),
                    &i64::from(version),
                ],
            )?;
            Ok(true)
        })
    }

    fn publish(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
        now: UnixMs,
    ) -> Result<Result<TenantConfig, PublishRefusal>> {
        let env = environment.as_str();
        self.transaction(|s| {
            // Publications of one blueprint and environment, on any replica, queue here.
            s.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(\
                 concat_ws(chr(31), $1::text, $2::text, $3::text), 0))",
                &[&tenant_id, &blueprint, &env],
            )?;
            let Some(mut config) =
                config_for_update(s, tenant_id, blueprint, environment, version)?
            else {
                return Ok(Err(PublishRefusal::Missing));
            };
            match config.meta.status {
                ConfigStatus::Published => return Ok(Ok(config)),
                ConfigStatus::Archived => return Ok(Err(PublishRefusal::Archived)),
                ConfigStatus::Draft | ConfigStatus::Preview => {}
            }
            let previous = s.query_opt(
                "SELECT version FROM published_configs WHERE tenant_id = $1 \
                 AND blueprint = $2 AND environment = $3",
                &[&tenant_id, &blueprint, &env],
            )?;
            if let Some(previous) = previous.map(|row| version_of(row.get(0))) {
                if let Some(mut old) =
                    config_for_update(s, tenant_id, blueprint, environment, previous)?
                {
                    old.meta.status = ConfigStatus::Archived;
                    old.updated_at = now;
                    write_config(s, &old)?;
                }
            }
            config.meta.status = ConfigStatus::Published;
            config.updated_at = now;
            write_config(s, &config)?;
            s.execute(
                "INSERT INTO published_configs (tenant_id, blueprint, environment, version) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, blueprint, environment) \
                 DO UPDATE SET version = EXCLUDED.version",
                &[&tenant_id, &blueprint, &env, &i64::from(version)],
            )?;
            Ok(Ok(config))
        })
    }
}

/// A version column back as the domain's `u32` (the store writes only those).
fn version_of(column: i64) -> u32 {
    u32::try_from(column).unwrap_or(0)
}

impl DeploymentStore for PgStore {
    fn deployments(&self) -> Result<Vec<PluginDeployment>> {
        self.session(|s| {
            s.query("SELECT doc FROM plugin_deployments ORDER BY slug", &[])?
                .iter()
                .map(|row| decode("plugin_deployments", row.get(0)))
                .collect()
        })
    }

    fn deployment(&self, slug: &str) -> Result<Option<PluginDeployment>> {
        self.session(|s| {
            s.query_opt(
                "SELECT doc FROM plugin_deployments WHERE slug = $1",
                &[&slug],
            )?
            .map(|row| decode("plugin_deployments", row.get(0)))
            .transpose()
        })
    }

    fn put_deployment(&self, deployment: &PluginDeployment) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO plugin_deployments (slug, doc) VALUES ($1, $2) \
                 ON CONFLICT (slug) DO UPDATE SET doc = EXCLUDED.doc",
                &[&deployment.slug, &encode(deployment)],
            )?;
            Ok(())
        })
    }

    fn put_component(&self, sha256: &str, wasm: &[u8]) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO plugin_components (sha256, wasm) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&sha256, &wasm],
            )?;
            Ok(())
        })
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.session(|s| {
            let row = s.query_opt(
                "SELECT wasm FROM plugin_components WHERE sha256 = $1",
                &[&sha256],
            )?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}
