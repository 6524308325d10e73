//! IntegrationConnections: a tenant's accounts at providers. Creation checks the
//! connector and ownership mode; every lookup is by owner, so another tenant's
//! connection is indistinguishable from a missing one.

use crate::domain::{
    now_ms, Class, Classify, Connection, ConnectionStatus, Environment, ErrorClass, LimitExceeded,
    OwnershipMode, TenantLimits,
};
use crate::runtime::catalog::Catalog;
use crate::store::{self, ConnectionStore};
use std::sync::Arc;

/// Connection failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such connection for this tenant.
    #[error("connection not found")]
    NotFound,
    /// The connector slug is not loaded.
    #[error("no connector `{0}` is loaded")]
    UnknownConnector(String),
    /// The connector does not support the ownership mode.
    #[error("connector `{connector}` does not support ownership mode `{mode}`")]
    OwnershipMode {
        /// The connector.
        connector: String,
        /// The refused mode.
        mode: &'static str,
    },
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The tenant has as many connections as it may.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::NotFound => ErrorClass::new(Class::NotFound, "not_found"),
            Error::UnknownConnector(_) => ErrorClass::new(Class::Invalid, "unknown_connector"),
            Error::OwnershipMode { .. } => {
                ErrorClass::new(Class::Invalid, "ownership_mode_not_supported")
            }
            Error::Invalid(_) => ErrorClass::new(Class::Invalid, "invalid_attributes"),
            Error::Limit(e) => e.classify(),
            Error::Store(e) => e.classify(),
        }
    }
}

/// How a new connection names its connector: by slug (`stripe`), by integration key
/// (`payments.stripe`, optionally at a version), or both, which must then agree.
#[derive(Debug, Clone, Default)]
pub struct ConnectorName {
    /// The slug.
    pub slug: Option<String>,
    /// The integration key.
    pub integration_key: Option<String>,
    /// The integration version.
    pub integration_version: Option<u32>,
}

impl ConnectorName {
    fn describe(&self) -> String {
        match (&self.slug, &self.integration_key, self.integration_version) {
            (Some(slug), _, _) => slug.clone(),
            (None, Some(key), Some(version)) => format!("{key}@{version}"),
            (None, Some(key), None) => key.clone(),
            (None, None, _) => String::new(),
        }
    }
}

/// What a tenant asks for when connecting an account.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The connector.
    pub connector: ConnectorName,
    /// Label; defaults to the connector's display name.
    pub label: Option<String>,
    /// Sandbox or production.
    pub environment: Environment,
    /// Defaults to the connector's first supported mode.
    pub ownership_mode: Option<OwnershipMode>,
    /// Provider-side account.
    pub external_account_id: Option<String>,
    /// Non-secret config.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Executions allowed per UTC day, if capped.
    pub daily_quota: Option<u32>,
}

/// Connection use cases.
#[derive(Clone)]
pub struct Connections {
    store: Arc<dyn ConnectionStore>,
    catalog: Arc<Catalog>,
    max_per_tenant: usize,
}

impl Connections {
    /// Connections over `store`, checked against `catalog`.
    pub fn new(store: Arc<dyn ConnectionStore>, catalog: Arc<Catalog>) -> Self {
        Connections {
            store,
            catalog,
            max_per_tenant: TenantLimits::default().connections,
        }
    }

    /// At most `max` connections per tenant.
    pub fn with_limit(mut self, max: usize) -> Self {
        self.max_per_tenant = max;
        self
    }

    /// Creates an `ACTIVE` connection without a credential.
    pub fn create(&self, tenant_id: &str, new: NewConnection) -> Result<Connection, Error> {
        let name = &new.connector;
        let version_fits = |v: u32| name.integration_version.is_none_or(|wanted| wanted == v);
        let plugin = match (&name.slug, &name.integration_key) {
            (Some(slug), _) => self.catalog.get(slug),
            (None, Some(key)) => self
                .catalog
                .all()
                .into_iter()
                .find(|p| p.spec.integration_key == *key && version_fits(p.spec.version)),
            (None, None) => {
                return Err(Error::Invalid(
                    "`connector` (a slug) or `integrationKey` is required".into(),
                ))
            }
        };
        let plugin = plugin.ok_or_else(|| Error::UnknownConnector(name.describe()))?;
        let spec = &plugin.spec;
        let key_fits = name
            .integration_key
            .as_ref()
            .is_none_or(|key| *key == spec.integration_key);
        if !key_fits || !version_fits(spec.version) {
            return Err(Error::Invalid(format!(
                "connector `{}` is `{}` version {}, not what integrationKey and integrationVersion name",
                spec.slug, spec.integration_key, spec.version
            )));
        }
        let ownership_mode = match new.ownership_mode {
            Some(mode) if spec.ownership_modes.contains(&mode) => mode,
            Some(mode) => {
                return Err(Error::OwnershipMode {
                    connector: spec.slug.clone(),
                    mode: mode.as_str(),
                })
            }
            None => *spec.ownership_modes.first().unwrap_or(&OwnershipMode::Byok),
        };
        let label = new.label.unwrap_or_else(|| spec.display_name.clone());
        if label.len() > 200 {
            return Err(Error::Invalid("label is longer than 200 characters".into()));
        }
        if new
            .external_account_id
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.len() > 255)
        {
            return Err(Error::Invalid(
                "externalAccountId must be 1-255 characters".into(),
            ));
        }
        LimitExceeded::check(
            "connections",
            self.store.count_connections_of(tenant_id)?,
            self.max_per_tenant,
            "CONDUIT_MAX_CONNECTIONS_PER_TENANT",
        )?;
        let now = now_ms();
        let connection = Connection {
            id: format!("conn_{}", uuid::Uuid::new_v4().simple()),
            tenant_id: tenant_id.to_owned(),
            connector: spec.slug.clone(),
            integration_key: spec.integration_key.clone(),
            integration_version: spec.version,
            label,
            environment: new.environment,
            ownership_mode,
            external_account_id: new.external_account_id,
            config: new.config,
            status: ConnectionStatus::Active,
            status_reason: None,
            daily_quota: new.daily_quota,
            created_at: now,
            updated_at: now,
        };
        self.store.put_connection(&connection)?;
        Ok(connection)
    }

    /// The tenant's connection `id`; `NotFound` for a missing or foreign one.
    pub fn get(&self, tenant_id: &str, id: &str) -> Result<Connection, Error> {
        match self.store.connection(id)? {
            Some(c) if c.tenant_id == tenant_id => Ok(c),
            _ => Err(Error::NotFound),
        }
    }

    /// The tenant's connections.
    pub fn list(&self, tenant_id: &str) -> Result<Vec<Connection>, Error> {
        Ok(self.store.connections_of(tenant_id)?)
    }

    /// Deletes the tenant's connection and its credential.
    pub fn delete(&self, tenant_id: &str, id: &str) -> Result<(), Error> {
        let connection = self.get(tenant_id, id)?;
        self.store.delete_connection(&connection)?;
        Ok(())
    }
}
