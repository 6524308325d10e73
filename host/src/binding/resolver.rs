//! Resolution: from a tenant's published config of a blueprint in an environment to the
//! ResolvedAppConfig — for every capability key, the bindings that can serve it in
//! priority order, each with its provider spec, its connection (no secret) and its
//! merged config (spec defaults < connection config < binding overrides). Results are
//! cached per tenant, blueprint and environment, and a cached entry is used only while
//! the tenant's store revision (bumped by every connection write and publication) and
//! the catalog's generation (bumped by every plugin load) are the ones it was built at.

use crate::binding::policy::{CompiledScope, PatternError};
use crate::domain::{
    operation_id, Class, Classify, Connection, Environment, ErrorClass, IntegrationSpec, Scope,
    TenantConfig,
};
use crate::runtime::connectors::Connectors;
use crate::store::{self, ConfigStore, ConnectionStore, RevisionStore, Stores};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Entries kept before the cache starts over (a bound on memory, not an LRU: entries
/// are cheap to rebuild).
const MAX_CACHED: usize = 100_000;

/// Resolution failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tenant has published no config of the blueprint in the environment.
    #[error("no published config of `{blueprint}` in {environment}")]
    NotPublished {
        /// The blueprint.
        blueprint: String,
        /// The environment.
        environment: &'static str,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::NotPublished { .. } => ErrorClass::new(Class::NotFound, "no_binding"),
            Error::Store(e) => e.classify(),
        }
    }
}

/// One binding of the published config, resolved: shared by the candidates of every
/// capability its connector provides.
#[derive(Debug)]
pub struct Bound {
    /// The blueprint slot.
    pub slot_id: String,
    /// Lower serves first.
    pub priority: i32,
    /// The connection as of resolution.
    pub connection: Connection,
    /// The connector's IntegrationSpec (no runtime handle: the call finds the plugin).
    pub spec: Arc<IntegrationSpec>,
    /// spec defaults < connection config < binding overrides.
    pub config: Map<String, Value>,
    /// The binding's scope as written.
    pub scope: Option<Scope>,
    /// The same, compiled.
    pub compiled_scope: Arc<CompiledScope>,
}

/// One binding able to serve one capability.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The binding.
    pub bound: Arc<Bound>,
    /// The capability version the connector provides.
    pub capability_version: u32,
    /// The operation id policy matches (`payments.stripe.createPaymentIntent`).
    pub operation: String,
}

/// A ResolvedAppConfig.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The published config it comes from.
    pub config: TenantConfig,
    /// Per capability key, the candidates in priority order.
    pub capabilities: BTreeMap<String, Vec<Candidate>>,
}

impl Resolved {
    /// The candidates for `capability`, best first; empty when nothing is bound.
    pub fn candidates(&self, capability: &str) -> &[Candidate] {
        self.capabilities.get(capability).map_or(&[], Vec::as_slice)
    }
}

/// What a cached entry was built from: the tenant's revision and the catalog generation.
type Built = (u64, u64);

type Cache = HashMap<String, (Built, Arc<Resolved>)>;

/// Compiled scopes by their patterns: compiling a glob set costs tens of µs, and
/// tenants of one app mostly repeat the same few scopes.
type Scopes = HashMap<Scope, Arc<CompiledScope>>;

/// Resolves and caches.
#[derive(Clone)]
pub struct Resolver {
    configs: Arc<dyn ConfigStore>,
    connections: Arc<dyn ConnectionStore>,
    revisions: Arc<dyn RevisionStore>,
    connectors: Arc<dyn Connectors>,
    cache: Arc<RwLock<Cache>>,
    scopes: Arc<Mutex<Scopes>>,
}

impl Resolver {
    /// A resolver over the published configs in `stores` and the loaded connectors.
    pub fn new(stores: &Stores, connectors: Arc<dyn Connectors>) -> Self {
        Resolver {
            configs: stores.configs.clone(),
            connections: stores.connections_uncached.clone(),
            revisions: stores.revisions.clone(),
            connectors,
            cache: Arc::default(),
            scopes: Arc::default(),
        }
    }

    /// The tenant's resolved config, from the cache while it is current.
    pub fn resolve(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Arc<Resolved>, Error> {
        let key = format!("{tenant_id}\0{blueprint}\0{}", environment.as_str());
        // Read these first: a change made while we resolve makes the entry stale.
        let revision = (
            self.revisions.current(tenant_id)?,
            self.connectors.generation(),
        );
        if let Some((built_from, resolved)) = self.cache.read().expect("cache lock").get(&key) {
            if *built_from == revision {
                return Ok(resolved.clone());
            }
        }
        let resolved = Arc::new(self.resolve_uncached(tenant_id, blueprint, environment)?);
        let mut cache = self.cache.write().expect("cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (revision, resolved.clone()));
        Ok(resolved)
    }

    /// Resolves from the store, bypassing the cache.
    pub fn resolve_uncached(
        &self,
        tenant_id: &str,
        blueprint: &str,
        environment: Environment,
    ) -> Result<Resolved, Error> {
        let config = self
            .configs
            .published_config(tenant_id, blueprint, environment)?
            .ok_or_else(|| Error::NotPublished {
                blueprint: blueprint.to_owned(),
                environment: environment.as_str(),
            })?;
        let mut capabilities: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for binding in &config.integrations {
            let Some(connection) = self
                .connections
                .connection(&binding.connection_id)?
                .filter(|c| c.tenant_id == tenant_id)
            else {
                // Deleted since publication: it can no longer serve.
                continue;
            };
            let Ok(connector) = self.connectors.require(&connection) else {
                tracing::warn!(connection = %connection.id, connector = %connection.connector, "bound connector is not loaded");
                continue;
            };
            let compiled_scope = match self.compiled(binding.scope.as_ref()) {
                Ok(scope) => scope,
                Err(e) => {
                    // Validated at posting; a pattern that stopped compiling admits nothing.
                    tracing::error!(error = %e, "published scope does not compile");
                    continue;
                }
            };
            let spec = connector.spec;
            let config = spec.connection_config(&connection, &binding.config);
            let bound = Arc::new(Bound {
                slot_id: binding.slot_id.clone(),
                priority: binding.priority,
                connection,
                spec: spec.clone(),
                config,
                scope: binding.scope.clone(),
                compiled_scope,
            });
            for capability in &spec.capabilities {
                capabilities
                    .entry(capability.key.clone())
                    .or_default()
                    .push(Candidate {
                        bound: bound.clone(),
                        capability_version: capability.version,
                        operation: operation_id(&spec.integration_key, &capability.key),
                    });
            }
        }
        for candidates in capabilities.values_mut() {
            // Stable: equal priorities keep the config's order.
            candidates.sort_by_key(|c| c.bound.priority);
        }
        Ok(Resolved {
            config,
            capabilities,
        })
    }

    /// A scope compiled once per distinct set of patterns.
    fn compiled(&self, scope: Option<&Scope>) -> Result<Arc<CompiledScope>, PatternError> {
        let Some(scope) = scope else {
            return Ok(Arc::default());
        };
        if let Some(compiled) = self.scopes.lock().expect("scopes lock").get(scope) {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(CompiledScope::compile(Some(scope))?);
        let mut scopes = self.scopes.lock().expect("scopes lock");
        if scopes.len() >= MAX_CACHED {
            scopes.clear();
        }
        scopes.insert(scope.clone(), compiled.clone());
        Ok(compiled)
    }
}
