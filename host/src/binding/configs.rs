//! TenantAppConfigs: a tenant's versioned bindings of a blueprint's slots to its own
//! connections, per environment. Every post is validated against the blueprint, the
//! connections and their connectors — each refusal with its own stable code — and
//! stored as a new `draft` version; `preview` and `published` follow, one published
//! version per tenant, blueprint and environment. Publication validates again (a
//! connection may have changed since), health checks included.

use crate::binding::policy::CompiledScope;
use crate::domain::{
    looks_like_secret_name, now_ms, Binding, Blueprint, Class, Classify, ConfigMeta, ConfigStatus,
    Connection, ConnectionStatus, Environment, ErrorClass, LimitExceeded, Slot, TenantConfig,
    TenantLimits,
};
use crate::runtime::connectors::Connectors;
use crate::runtime::Health;
use crate::store::{self, BlueprintStore, ConfigStore, ConnectionStore, PublishRefusal, Stores};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Most bindings one config may hold.
const MAX_BINDINGS: usize = 100;

/// Config failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config does not validate; `code` is the stable API code.
    #[error("{detail}")]
    Invalid {
        /// `unknown_slot`, `category_mismatch`, …
        code: &'static str,
        /// What is wrong.
        detail: String,
        /// The binding at fault, if one is.
        binding: Option<usize>,
    },
    /// No such config version of the tenant.
    #[error("tenant config not found")]
    NotFound,
    /// The version cannot make that transition.
    #[error("{0}")]
    Transition(String),
    /// The tenant has as many unpublished versions as it may.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A health check could not run for want of room in the instance pool.
    #[error("{0}")]
    Busy(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::Invalid { code, binding, .. } => {
                let class = ErrorClass::new(Class::Invalid, code);
                match binding {
                    Some(i) => class.meta(json!({"pointer": format!("/integrations/{i}")})),
                    None => class,
                }
            }
            Error::NotFound => ErrorClass::new(Class::NotFound, "not_found"),
            Error::Transition(_) => ErrorClass::new(Class::Conflict, "invalid_transition"),
            Error::Limit(e) => e.classify(),
            Error::Busy(_) => ErrorClass::new(Class::Unavailable, "busy")
                .retry_after(std::time::Duration::from_secs(1))
                .meta(json!({"retryable": true})),
            Error::Store(e) => e.classify(),
        }
    }
}

fn invalid(code: &'static str, binding: Option<usize>, detail: String) -> Error {
    Error::Invalid {
        code,
        detail,
        binding,
    }
}

/// What a tenant posts.
#[derive(Debug, Clone)]
pub struct NewConfig {
    /// The blueprint.
    pub blueprint_name: String,
    /// Its version.
    pub blueprint_version: String,
    /// Sandbox or production.
    pub environment: Environment,
    /// The bindings.
    pub integrations: Vec<Binding>,
    /// Branding (opaque).
    pub branding: Value,
}

/// A connection's health check, as the binding layer needs it: the composition root
/// hands in the execute use case, a unit test a double.
pub trait HealthProbe: Send + Sync {
    /// Runs the health check of the tenant's `connection_id`.
    fn probe<'a>(
        &'a self,
        tenant_id: &'a str,
        connection_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Health, ProbeError>> + Send + 'a>>;
}

/// Why a health check gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// It could not run now: the tenant's share of the instance pool (which health
    /// checks spend from, as executes do) or the pool is taken. Says nothing about
    /// the connection.
    Busy(String),
    /// It ran and failed; the detail is shown as the check's.
    Failed(String),
}

/// Tenant config use cases.
#[derive(Clone)]
pub struct Configs {
    configs: Arc<dyn ConfigStore>,
    blueprints: Arc<dyn BlueprintStore>,
    connections: Arc<dyn ConnectionStore>,
    connectors: Arc<dyn Connectors>,
    health: Arc<dyn HealthProbe>,
    max_pending: usize,
}

impl Configs {
    /// Configs in `stores`, checked against the loaded connectors, health-checked by
    /// `health`.
    pub fn new(
        stores: &Stores,
        connectors: Arc<dyn Connectors>,
        health: Arc<dyn HealthProbe>,
    ) -> Self {
        Configs {
            configs: stores.configs.clone(),
            blueprints: stores.blueprints.clone(),
            connections: stores.connections.clone(),
            connectors,
            health,
            max_pending: TenantLimits::default().draft_configs,
        }
    }

    /// At most `max` unpublished (`draft` or `preview`) versions per tenant.
    pub fn with_limit(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Deletes a version that was never published.
    pub fn discard(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<(), Error> {
        match self
            .configs
            .discard_config(tenant_id, blueprint, environment, version)
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::NotFound),
            Err(store::Error::Conflict) => Err(Error::Transition(
                "only a draft or preview version can be discarded".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Validates `new` and stores it as the next `draft` version.
    pub async fn create(&self, tenant_id: &str, new: NewConfig) -> Result<TenantConfig, Error> {
        let pending = self
            .configs
            .configs_of(tenant_id, None)?
            .iter()
            .filter(|c| matches!(c.meta.status, ConfigStatus::Draft | ConfigStatus::Preview))
            .count();
        LimitExceeded::check(
            "unpublished config versions",
            pending,
            self.max_pending,
            "CONDUIT_MAX_DRAFTS_PER_TENANT",
        )?;
        let now = now_ms();
        let mut config = TenantConfig {
            meta: ConfigMeta {
                tenant_id: tenant_id.to_owned(),
                blueprint_name: new.blueprint_name,
                blueprint_version: new.blueprint_version,
                environment: new.environment,
                version: 0,
                status: ConfigStatus::Draft,
            },
            integrations: new.integrations,
            branding: new.branding,
            created_at: now,
            updated_at: now,
        };
        self.validate(&config).await?;
        self.configs.insert_config_version(&mut config)?;
        Ok(config)
    }

    /// One version.
    pub fn get(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<TenantConfig, Error> {
        self.configs
            .config(tenant_id, blueprint, environment, version)?
            .ok_or(Error::NotFound)
    }

    /// The tenant's versions, optionally of one blueprint.
    pub fn list(
        &self,
        tenant_id: &str,
        blueprint: Option<&str>,
    ) -> Result<Vec<TenantConfig>, Error> {
        Ok(self.configs.configs_of(tenant_id, blueprint)?)
    }

    /// `draft` → `preview`.
    pub fn preview(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<TenantConfig, Error> {
        match self
            .configs
            .preview_config(tenant_id, blueprint, environment, version, now_ms())
        {
            Ok(Some(config)) => Ok(config),
            Ok(None) => Err(Error::NotFound),
            Err(store::Error::Conflict) => {
                Err(Error::Transition("only a draft can move to preview".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `draft`/`preview` → `published`, archiving the version it replaces. Validates
    /// again first: connections may have changed since the draft was posted.
    pub async fn publish(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
        version: u32,
    ) -> Result<TenantConfig, Error> {
        let config = self.get(tenant_id, blueprint, environment, version)?;
        match config.meta.status {
            ConfigStatus::Published => return Ok(config),
            ConfigStatus::Archived => {
                return Err(Error::Transition(
                    "an archived version cannot be published again; post it as a new version"
                        .into(),
                ))
            }
            ConfigStatus::Draft | ConfigStatus::Preview => {}
        }
        self.validate(&config).await?;
        match self
            .configs
            .publish(tenant_id, blueprint, environment, version, now_ms())?
        {
            Ok(config) => Ok(config),
            Err(PublishRefusal::Missing) => Err(Error::NotFound),
            Err(PublishRefusal::Archived) => Err(Error::Transition(
                "the version was archived meanwhile".into(),
            )),
        }
    }

    /// Every check of a config against its blueprint, its connections and their
    /// connectors; the first failure is returned.
    async fn validate(&self, config: &TenantConfig) -> Result<(), Error> {
        let meta = &config.meta;
        let blueprint = self
            .blueprints
            .blueprint(&meta.blueprint_name, &meta.blueprint_version)?
            .ok_or_else(|| {
                invalid(
                    "unknown_blueprint",
                    None,
                    format!(
                        "no blueprint `{}` version `{}`",
                        meta.blueprint_name, meta.blueprint_version
                    ),
                )
            })?;
        if config.integrations.len() > MAX_BINDINGS {
            return Err(invalid(
                "invalid_config",
                None,
                format!("at most {MAX_BINDINGS} integrations"),
            ));
        }
        if !(config.branding.is_null() || config.branding.is_object()) {
            return Err(invalid(
                "invalid_config",
                None,
                "branding must be an object".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut bound = Vec::new();
        for (i, binding) in config.integrations.iter().enumerate() {
            if !seen.insert((&binding.slot_id, &binding.connection_id)) {
                return Err(invalid(
                    "duplicate_binding",
                    Some(i),
                    format!(
                        "connection `{}` is bound to slot `{}` twice",
                        binding.connection_id, binding.slot_id
                    ),
                ));
            }
            let connection =
                self.check_binding(&meta.tenant_id, meta.environment, &blueprint, i, binding)?;
            bound.push((i, connection));
        }
        for slot in blueprint.integration_slots.iter().filter(|s| s.required) {
            if !config
                .integrations
                .iter()
                .any(|b| b.slot_id == slot.slot_id)
            {
                return Err(invalid(
                    "required_slot_unbound",
                    None,
                    format!("required slot `{}` is not bound", slot.slot_id),
                ));
            }
        }
        self.check_health(&meta.tenant_id, &bound).await
    }

    /// The static checks of one binding; returns its connection.
    fn check_binding(
        &self,
        tenant_id: &str,
        environment: Environment,
        blueprint: &Blueprint,
        i: usize,
        binding: &Binding,
    ) -> Result<Connection, Error> {
        let at = Some(i);
        let slot: &Slot = blueprint
            .integration_slots
            .iter()
            .find(|s| s.slot_id == binding.slot_id)
            .ok_or_else(|| {
                invalid(
                    "unknown_slot",
                    at,
                    format!(
                        "blueprint `{}` has no slot `{}`",
                        blueprint.meta.name, binding.slot_id
                    ),
                )
            })?;
        CompiledScope::compile(binding.scope.as_ref())
            .map_err(|e| invalid("invalid_scope", at, e.to_string()))?;
        if let Some(key) = binding.config.keys().find(|k| looks_like_secret_name(k)) {
            return Err(invalid(
                "secret_in_config",
                at,
                format!("config key `{key}` looks like a secret; configs hold connection ids only, secrets go in the connection's credential"),
            ));
        }
        // Another tenant's connection is answered exactly as a missing one.
        let connection = self
            .connections
            .connection(&binding.connection_id)?
            .filter(|c| c.tenant_id == tenant_id)
            .ok_or_else(|| {
                invalid(
                    "unknown_connection",
                    at,
                    format!("connection `{}` not found", binding.connection_id),
                )
            })?;
        if connection.environment != environment {
            return Err(invalid(
                "environment_mismatch",
                at,
                format!(
                    "connection `{}` is a {} connection; this config is for {}",
                    connection.id,
                    connection.environment.as_str(),
                    environment.as_str()
                ),
            ));
        }
        let spec = self
            .connectors
            .require(&connection)
            .map(|connector| connector.spec)
            .map_err(|e| invalid("connector_unavailable", at, e.to_string()))?;
        if spec.category != slot.required_category {
            return Err(invalid(
                "category_mismatch",
                at,
                format!(
                    "slot `{}` needs a `{}` connector; `{}` is `{}`",
                    slot.slot_id, slot.required_category, spec.slug, spec.category
                ),
            ));
        }
        if !slot.allowed_modes.is_empty()
            && !slot.allowed_modes.contains(&connection.ownership_mode)
        {
            return Err(invalid(
                "ownership_mode_not_allowed",
                at,
                format!(
                    "slot `{}` does not allow `{}` connections",
                    slot.slot_id,
                    connection.ownership_mode.as_str()
                ),
            ));
        }
        for required in &slot.required_capabilities {
            let provided = spec.capability(&required.key).map(|c| c.version);
            if provided != Some(required.version) {
                return Err(invalid(
                    "capability_missing",
                    at,
                    format!(
                        "slot `{}` needs `{}@{}`; `{}` provides {}",
                        slot.slot_id,
                        required.key,
                        required.version,
                        spec.slug,
                        provided.map_or("nothing of that key".into(), |v| format!("version {v}"))
                    ),
                ));
            }
        }
        if connection.status != ConnectionStatus::Active {
            return Err(invalid(
                "connection_not_active",
                at,
                format!(
                    "connection `{}` is {:?}; only ACTIVE connections can be bound",
                    connection.id, connection.status
                ),
            ));
        }
        Ok(connection)
    }

    /// Runs each bound connection's health check through its connector, concurrently.
    async fn check_health(
        &self,
        tenant_id: &str,
        bound: &[(usize, Connection)],
    ) -> Result<(), Error> {
        let mut distinct = HashSet::new();
        let checks = bound
            .iter()
            .filter(|(_, c)| distinct.insert(c.id.clone()))
            .map(|(i, c)| async move { (*i, c, self.health.probe(tenant_id, &c.id).await) });
        let mut busy = None;
        for (i, connection, outcome) in futures_util::future::join_all(checks).await {
            let detail = match outcome {
                Ok(health) if health.healthy => continue,
                Ok(health) => health.detail,
                Err(ProbeError::Failed(why)) => why,
                Err(ProbeError::Busy(why)) => {
                    busy = Some(why);
                    continue;
                }
            };
            return Err(invalid(
                "health_check_failed",
                Some(i),
                format!(
                    "connection `{}` failed its health check: {detail}",
                    connection.id
                ),
            ));
        }
        // A check that could not run neither passes nor fails the config: retry.
        match busy {
            Some(why) => Err(Error::Busy(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_looking_keys_are_caught_and_endpoints_are_not() {
        for key in [
            "apiKey",
            "client_secret",
            "accessToken",
            "password",
            "X-Postmark-Server-Token",
        ] {
            assert!(crate::domain::looks_like_secret_name(key), "{key}");
        }
        for key in [
            "tokenUrl",
            "baseUrl",
            "region",
            "authorizeUrl",
            "collection",
        ] {
            assert!(!crate::domain::looks_like_secret_name(key), "{key}");
        }
    }
}
