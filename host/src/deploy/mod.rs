//! Deploying connectors into a running server: one load path for `plugins.toml` at
//! start, `POST /admin/plugins` and the watched plugins directory ([`watch`]); the
//! versions of each slug kept for rollback; unloading; the operator's egress grant.
//!
//! A change is one step at a time (a lock): read and size-check the bytes, run the
//! runtime's load path ([`Runtime::prepare`]: parse, contract, pool, compile off the
//! executor's threads into the authenticated cache, link, `info()` under its deadline),
//! apply the slug's deployment settings ([`Runtime::configure`]), refuse a version that
//! takes away a capability a published tenant config relies on (unless forced), keep
//! the bytes, persist the slug's [`PluginDeployment`], then swap the catalog entry.
//! The swap is one pointer: calls in flight hold the `Arc<Plugin>` they started with and
//! finish on it; a call that starts after the swap returns gets the new one. Nothing is
//! changed by a refusal. Every change and refusal is an audit record in the admin scope
//! ([`ADMIN_SCOPE`]) and a log line.
//!
//! Replicas sharing a database share the deployments: each follows the stored ones
//! ([`Deployer::follow`], every [`FOLLOW_EVERY`]) and applies a change another replica
//! made (a swap, a rollback, an unload, a grant) into its own catalog and compiled
//! cache.
//!
//! May import: `domain`, `store`, `audit`, `runtime`.

pub mod watch;

use crate::audit::Audit;
use crate::domain::deployment::{PluginDeployment, PluginSource, PluginVersion};
use crate::domain::{
    now_ms, AuditRecord, Class, Classify, ErrorClass, IntegrationSpec, RateProfile,
};
use crate::runtime::catalog::{Catalog, PluginEntry};
use crate::runtime::{self, Plugin, PluginSettings, Runtime};
use crate::store::{self, BlueprintStore, ConfigStore, ConnectionStore, DeploymentStore, Stores};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The audit scope of operator actions: not a tenant id (tenant ids have no `_`).
pub const ADMIN_SCOPE: &str = "_admin";

/// How often a replica sharing a database looks for deployment changes made by others.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The largest component accepted, by default.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// Why a deployment change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is larger than the limit.
    #[error("the component is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A step of the load path refused it.
    #[error("{0}")]
    Refused(runtime::Error),
    /// It would take a capability away from published tenant configs.
    #[error("{slug} version {version} does not provide {missing}, which published configs rely on: {configs}; upload with ?force=true to replace it anyway", configs = .configs.join(", "))]
    CapabilityInUse {
        /// The connector.
        slug: String,
        /// The refused version.
        version: u32,
        /// The capabilities it lacks, `key@version`.
        missing: String,
        /// The configs, `tenant/blueprint@version/environment v<n>`.
        configs: Vec<String>,
    },
    /// No such connector.
    #[error("connector `{0}` is not deployed")]
    NotFound(String),
    /// Nothing to roll back to.
    #[error("connector `{0}` has no previous version")]
    NoPrevious(String),
    /// A kept version's bytes are gone (its `plugins.toml` file changed).
    #[error("{0}")]
    Unavailable(String),
    /// An egress grant that does not parse.
    #[error("{0}")]
    InvalidGrant(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::TooLarge { limit, .. } => ErrorClass::new(Class::TooLarge, "payload_too_large")
                .meta(json!({ "limitBytes": limit })),
            Error::Refused(runtime::Error::Refused { step, .. }) => {
                ErrorClass::new(Class::Invalid, step.code())
                    .meta(json!({ "step": step.to_string() }))
            }
            Error::Refused(_) => ErrorClass::new(Class::Invalid, "invalid_component"),
            Error::CapabilityInUse { configs, .. } => {
                ErrorClass::new(Class::Conflict, "capability_in_use")
                    .meta(json!({ "configs": configs }))
            }
            Error::NotFound(_) => ErrorClass::new(Class::NotFound, "not_found"),
            Error::NoPrevious(_) => ErrorClass::new(Class::Conflict, "no_previous_version"),
            Error::Unavailable(_) => ErrorClass::new(Class::Conflict, "version_unavailable"),
            Error::InvalidGrant(_) => ErrorClass::new(Class::Invalid, "invalid_allowed_hosts"),
            Error::Store(_) | Error::Io { .. } => ErrorClass::internal(),
        }
    }
}

/// What a successful change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A slug that had no active version has one.
    Loaded,
    /// The active version was replaced.
    Swapped,
    /// The bytes are the active version's already.
    Unchanged,
}

/// One slug as the admin API shows it.
#[derive(Debug, Clone)]
pub struct PluginView {
    /// The deployment (active and previous versions, grant).
    pub deployment: PluginDeployment,
    /// The active plugin, if loaded.
    pub plugin: Option<Arc<Plugin>>,
}

/// The deployment use cases.
pub struct Deployer {
    runtime: Arc<Runtime>,
    catalog: Arc<Catalog>,
    deployments: Arc<dyn DeploymentStore>,
    configs: Arc<dyn ConfigStore>,
    blueprints: Arc<dyn BlueprintStore>,
    connections: Arc<dyn ConnectionStore>,
    audit: Audit,
    /// `plugins.toml` by slug: each slug's settings, whatever version is active.
    entries: BTreeMap<String, PluginEntry>,
    max_component_bytes: usize,
    /// One change at a time, so a deployment is never written from two stale reads.
    changing: tokio::sync::Mutex<()>,
    /// Whether [`Deployer::restore`] has finished: the catalog is what it should be.
    restored: std::sync::atomic::AtomicBool,
    /// Each slug's deployment as this replica last wrote or applied it: a stored one
    /// that differs was changed by another replica.
    applied: std::sync::Mutex<BTreeMap<String, PluginDeployment>>,
}

impl Deployer {
    /// The use cases over `catalog`, with `plugins.toml`'s `entries`.
    pub fn new(
        runtime: Arc<Runtime>,
        catalog: Arc<Catalog>,
        stores: &Stores,
        audit: Audit,
        entries: &[PluginEntry],
        max_component_bytes: usize,
    ) -> Self {
        Deployer {
            runtime,
            catalog,
            deployments: stores.deployments.clone(),
            configs: stores.configs.clone(),
            blueprints: stores.blueprints.clone(),
            connections: stores.connections.clone(),
            audit,
            entries: entries
                .iter()
                .map(|e| (e.slug.clone(), e.clone()))
                .collect(),
            max_component_bytes,
            changing: tokio::sync::Mutex::new(()),
            restored: Default::default(),
            applied: Default::default(),
        }
    }

    /// Stores a deployment this replica changed, remembering it as applied.
    fn persist(&self, deployment: &PluginDeployment) -> Result<(), Error> {
        self.deployments.put_deployment(deployment)?;
        self.remember(deployment);
        Ok(())
    }

    fn remember(&self, deployment: &PluginDeployment) {
        self.applied
            .lock()
            .expect("applied lock")
            .insert(deployment.slug.clone(), deployment.clone());
    }

    /// Applies the stored deployments that another replica changed since this one last
    /// wrote or applied them: loads their active version (from the stored component,
    /// compiled into this replica's cache), or unloads. Returns how many it applied.
    pub async fn follow(&self) -> Result<usize, Error> {
        let _one = self.changing.lock().await;
        let mut changed = 0;
        for stored in self.deployments.deployments()? {
            let known =
                self.applied.lock().expect("applied lock").get(&stored.slug) == Some(&stored);
            if known {
                continue;
            }
            changed += 1;
            match &stored.active {
                Some(active) => {
                    tracing::info!(plugin = %stored.slug, version = active.version, "plugin.follow: applying a deployment changed by another replica");
                    self.reactivate(stored.clone(), None).await;
                }
                None => {
                    tracing::info!(plugin = %stored.slug, "plugin.follow: unloaded by another replica");
                    self.catalog.remove(&stored.slug);
                }
            }
            self.remember(&stored);
        }
        Ok(changed)
    }

    /// Whether the catalog has been restored at start.
    pub fn restored(&self) -> bool {
        self.restored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The largest component accepted.
    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// At start: applies each `plugins.toml` entry that is new or changed since the last
    /// start (any failure stops startup), and otherwise makes active again what was
    /// active (an upload, a rollback, an unload), from the compiled cache.
    pub async fn restore(&self) -> Result<(), Error> {
        let _one = self.changing.lock().await;
        for entry in self.entries.values() {
            let path = entry.path.display().to_string();
            let wasm = std::fs::read(&entry.path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let sha256 = runtime::cache::wasm_sha256(&wasm);
            let seen = entry_digest(&sha256, entry);
            let deployment = self.deployment(&entry.slug)?;
            if deployment.file_entry_seen.as_deref() == Some(seen.as_str()) {
                self.remember(&deployment);
                // The file read just now is the active version's unless an upload or a
                // rollback replaced it.
                let read = deployment
                    .active
                    .as_ref()
                    .is_some_and(|a| a.sha256 == sha256)
                    .then_some(wasm);
                self.reactivate(deployment, read).await;
                continue;
            }
            let mut deployment = deployment;
            deployment.grant = entry.allowed_hosts.clone();
            deployment.file_entry_seen = Some(seen);
            let source = PluginSource::File { path };
            self.apply((wasm, sha256), source, Some(&entry.slug), deployment, true)
                .await?;
        }
        for deployment in self.deployments.deployments()? {
            if !self.entries.contains_key(&deployment.slug) {
                self.remember(&deployment);
                self.reactivate(deployment, None).await;
            }
        }
        self.restored
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Loads the active version of a stored deployment again; a failure is logged and
    /// leaves the slug unloaded (its connections answer `connector_unavailable`).
    /// `read`: its bytes, when the caller has them already.
    async fn reactivate(&self, deployment: PluginDeployment, read: Option<Vec<u8>>) {
        let Some(active) = deployment.active.clone() else {
            return;
        };
        let wasm = match read {
            Some(wasm) => Ok(wasm),
            None => self.bytes_of(&active),
        };
        let loaded = match wasm {
            Ok(wasm) => self.load(wasm, &active, &deployment).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(plugin) => {
                log_loaded("plugin.restore", &plugin);
                self.audit_change(
                    "plugin.restore",
                    &plugin,
                    &active.source.label(),
                    Instant::now(),
                );
                self.catalog.insert(plugin);
            }
            Err(e) => {
                tracing::error!(plugin = %deployment.slug, version = active.version, error = %e, "could not restore the active connector version; it stays unloaded")
            }
        }
    }

    /// Hot-loads a component: new, a replacement, or the active one already.
    pub async fn install(
        &self,
        wasm: Vec<u8>,
        source: PluginSource,
        force: bool,
    ) -> Result<(Change, Arc<Plugin>), Error> {
        if wasm.len() > self.max_component_bytes {
            let e = Error::TooLarge {
                size: wasm.len(),
                limit: self.max_component_bytes,
            };
            self.audit_refusal(None, &source, &e);
            return Err(e);
        }
        let _one = self.changing.lock().await;
        let sha256 = runtime::cache::wasm_sha256(&wasm);
        if let Some(active) = self
            .catalog
            .all()
            .into_iter()
            .find(|p| p.prepared.wasm_sha256 == sha256)
        {
            return Ok((Change::Unchanged, active));
        }
        self.apply(
            (wasm, sha256),
            source,
            None,
            PluginDeployment::new(""),
            force,
        )
        .await
    }

    /// The load path and the swap, under the change lock. `deployment` is the slug's
    /// state when the caller already read it (at start), else a blank one to read.
    async fn apply(
        &self,
        (wasm, sha256): (Vec<u8>, String),
        source: PluginSource,
        expected_slug: Option<&str>,
        deployment: PluginDeployment,
        force: bool,
    ) -> Result<(Change, Arc<Plugin>), Error> {
        let started = Instant::now();
        let kept = source.kept_in_store().then(|| wasm.clone());
        let prepared = match self.runtime.prepare_hashed(wasm, sha256).await {
            Ok(prepared) => Arc::new(prepared),
            Err(e) => return Err(self.refuse(expected_slug, &source, Error::Refused(e))),
        };
        let slug = prepared.info.slug.clone();
        if let Some(expected) = expected_slug.filter(|e| *e != slug) {
            let e = runtime::Error::Refused {
                step: runtime::LoadStep::Settings,
                detail: format!("plugins.toml names `{expected}` but the component is `{slug}`"),
            };
            return Err(self.refuse(Some(expected), &source, Error::Refused(e)));
        }
        let mut deployment = match deployment.slug.is_empty() {
            true => self.deployment(&slug)?,
            false => deployment,
        };
        let plugin = match self
            .runtime
            .configure(prepared, &self.settings(&deployment))
        {
            Ok(plugin) => plugin,
            Err(e) => return Err(self.refuse(Some(&slug), &source, Error::Refused(e))),
        };
        if !force {
            if let Err(e) = self.capabilities_kept(&plugin.spec) {
                return Err(self.refuse(Some(&slug), &source, e));
            }
        }
        if let Some(wasm) = kept {
            self.deployments
                .put_component(&plugin.prepared.wasm_sha256, &wasm)?;
        }
        let change = match deployment.active {
            Some(_) => Change::Swapped,
            None => Change::Loaded,
        };
        let version = PluginVersion {
            version: plugin.spec.version,
            sha256: plugin.prepared.wasm_sha256.clone(),
            source: source.clone(),
            loaded_at: now_ms(),
        };
        deployment.activate(version);
        self.persist(&deployment)?;
        let plugin = Arc::new(plugin);
        self.catalog.insert_arc(plugin.clone());
        let action = match change {
            Change::Swapped => "plugin.swap",
            _ => "plugin.load",
        };
        log_loaded(action, &plugin);
        self.audit_change(action, &plugin, &source.label(), started);
        Ok((change, plugin))
    }

    /// The previous version becomes active again; the one it replaces is kept.
    pub async fn rollback(&self, slug: &str, force: bool) -> Result<Arc<Plugin>, Error> {
        let _one = self.changing.lock().await;
        let started = Instant::now();
        let mut deployment = self.existing(slug)?;
        let Some(previous) = deployment.previous.first().cloned() else {
            return Err(Error::NoPrevious(slug.to_owned()));
        };
        let source = previous.source.clone();
        let plugin = match self.bytes_of(&previous) {
            Ok(wasm) => self.load(wasm, &previous, &deployment).await,
            Err(e) => Err(e),
        };
        let plugin = plugin.and_then(|plugin| match force {
            false => self.capabilities_kept(&plugin.spec).map(|()| plugin),
            true => Ok(plugin),
        });
        let plugin = plugin.map_err(|e| self.refuse(Some(slug), &source, e))?;
        deployment.activate(PluginVersion {
            loaded_at: now_ms(),
            ..previous
        });
        self.persist(&deployment)?;
        let plugin = Arc::new(plugin);
        self.catalog.insert_arc(plugin.clone());
        log_loaded("plugin.rollback", &plugin);
        self.audit_change("plugin.rollback", &plugin, "rollback", started);
        Ok(plugin)
    }

    /// Unloads a connector: its connections answer `connector_unavailable` until a
    /// version is loaded again (an upload, or a rollback to the one unloaded).
    pub async fn unload(&self, slug: &str) -> Result<(), Error> {
        let _one = self.changing.lock().await;
        self.unload_locked(slug, "unload")
    }

    fn unload_locked(&self, slug: &str, why: &str) -> Result<(), Error> {
        let mut deployment = self.existing(slug)?;
        let Some(old) = deployment.deactivate() else {
            return Err(Error::NotFound(slug.to_owned()));
        };
        self.persist(&deployment)?;
        self.catalog.remove(slug);
        tracing::info!(plugin = slug, version = old.version, sha256 = %&old.sha256[..12], why, "plugin.unload");
        self.audit.record(AuditRecord {
            connector_version: Some(old.version),
            detail: Some(format!("sha256 {}; {why}", old.sha256)),
            ..admin_record("plugin.unload", slug, "ok")
        });
        Ok(())
    }

    /// Replaces the operator's egress grant of a connector; the active version takes it
    /// at once (no compile), and every later version keeps it.
    pub async fn grant(&self, slug: &str, hosts: Vec<String>) -> Result<(), Error> {
        runtime::egress::AllowedHosts::parse(&hosts)
            .map_err(|e| Error::InvalidGrant(e.to_string()))?;
        let _one = self.changing.lock().await;
        let mut deployment = self.existing(slug)?;
        deployment.grant = Some(hosts.clone());
        // An unloaded connector keeps the grant for when it returns.
        let reconfigured = match self.catalog.get(slug) {
            Some(active) => Some(Arc::new(
                self.runtime
                    .configure(active.prepared.clone(), &self.settings(&deployment))
                    .map_err(Error::Refused)?,
            )),
            None => None,
        };
        self.persist(&deployment)?;
        if let Some(plugin) = &reconfigured {
            self.catalog.insert_arc(plugin.clone());
        }
        tracing::info!(plugin = slug, granted = ?hosts, "plugin.egress");
        self.audit.record(AuditRecord {
            connector_version: reconfigured.as_ref().map(|p| p.spec.version),
            detail: Some(format!("granted {}", hosts.join(", "))),
            ..admin_record("plugin.egress", slug, "ok")
        });
        Ok(())
    }

    /// Every deployed slug, loaded or not.
    pub fn list(&self) -> Result<Vec<PluginView>, Error> {
        Ok(self
            .deployments
            .deployments()?
            .into_iter()
            .map(|deployment| PluginView {
                plugin: self.catalog.get(&deployment.slug),
                deployment,
            })
            .collect())
    }

    /// One slug.
    pub fn view(&self, slug: &str) -> Result<PluginView, Error> {
        Ok(PluginView {
            deployment: self.existing(slug)?,
            plugin: self.catalog.get(slug),
        })
    }

    /// A file of the plugins directory is gone: unload what it loaded.
    pub async fn file_removed(&self, path: &Path) -> Result<(), Error> {
        let _one = self.changing.lock().await;
        let gone = PluginSource::Directory {
            path: path.display().to_string(),
        };
        for deployment in self.deployments.deployments()? {
            if deployment.active.as_ref().is_some_and(|a| a.source == gone) {
                self.unload_locked(&deployment.slug, "its file left the plugins directory")?;
            }
        }
        Ok(())
    }

    fn deployment(&self, slug: &str) -> Result<PluginDeployment, Error> {
        Ok(self
            .deployments
            .deployment(slug)?
            .unwrap_or_else(|| PluginDeployment::new(slug)))
    }

    fn existing(&self, slug: &str) -> Result<PluginDeployment, Error> {
        self.deployments
            .deployment(slug)?
            .ok_or_else(|| Error::NotFound(slug.to_owned()))
    }

    /// Prepares and configures `version`'s bytes for a known deployment.
    async fn load(
        &self,
        wasm: Vec<u8>,
        version: &PluginVersion,
        deployment: &PluginDeployment,
    ) -> Result<Plugin, Error> {
        let prepared = self
            .runtime
            .prepare_hashed(wasm, version.sha256.clone())
            .await
            .map_err(Error::Refused)?;
        if prepared.info.slug != deployment.slug {
            return Err(Error::Unavailable(format!(
                "the kept component is `{}`, not `{}`",
                prepared.info.slug, deployment.slug
            )));
        }
        self.runtime
            .configure(Arc::new(prepared), &self.settings(deployment))
            .map_err(Error::Refused)
    }

    /// A kept version's bytes: from the store, or its `plugins.toml` file if unchanged.
    fn bytes_of(&self, version: &PluginVersion) -> Result<Vec<u8>, Error> {
        let bytes = match &version.source {
            PluginSource::File { path } => std::fs::read(path).ok(),
            _ => self.deployments.component(&version.sha256)?,
        };
        bytes
            .filter(|b| runtime::cache::wasm_sha256(b) == version.sha256)
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "version {} ({}) is no longer available: {} changed",
                    version.version,
                    &version.sha256[..12],
                    version.source.label()
                ))
            })
    }

    /// The slug's settings: its `plugins.toml` entry (limits, rate profile, config
    /// defaults) and the operator's grant.
    fn settings(&self, deployment: &PluginDeployment) -> PluginSettings {
        let entry = self.entries.get(&deployment.slug);
        PluginSettings {
            allowed_hosts: deployment.grant.clone(),
            memory_mb: entry.and_then(|e| e.memory_mb),
            deadline_ms: entry.and_then(|e| e.deadline_ms),
            rate_profile: entry.and_then(|e| e.rate_profile).map(|p| RateProfile {
                requests: p.requests,
                per_seconds: p.per_seconds.max(1),
                burst: p.burst,
            }),
            config_defaults: entry.map(|e| e.config_defaults()).unwrap_or_default(),
        }
    }

    /// Every published config binding a slot to a connection of `spec`'s connector
    /// must find each capability its slot requires in `spec`.
    fn capabilities_kept(&self, spec: &IntegrationSpec) -> Result<(), Error> {
        let provides = |key: &str, version: u32| {
            spec.capabilities
                .iter()
                .any(|c| c.key == key && c.version == version)
        };
        let (mut missing, mut configs) = (std::collections::BTreeSet::new(), Vec::new());
        for config in self.configs.published_configs()? {
            let meta = &config.meta;
            let Some(blueprint) = self
                .blueprints
                .blueprint(&meta.blueprint_name, &meta.blueprint_version)?
            else {
                continue;
            };
            let mut relies = false;
            for binding in &config.integrations {
                let Some(connection) = self.connections.connection(&binding.connection_id)? else {
                    continue;
                };
                let slot = blueprint
                    .integration_slots
                    .iter()
                    .find(|s| s.slot_id == binding.slot_id);
                if connection.connector != spec.slug {
                    continue;
                }
                for required in slot
                    .map(|s| s.required_capabilities.as_slice())
                    .unwrap_or_default()
                {
                    if !provides(&required.key, required.version) {
                        missing.insert(format!("{}@{}", required.key, required.version));
                        relies = true;
                    }
                }
            }
            if relies {
                configs.push(format!(
                    "{}/{}@{}/{} v{}",
                    meta.tenant_id,
                    meta.blueprint_name,
                    meta.blueprint_version,
                    meta.environment.as_str(),
                    meta.version
                ));
            }
        }
        if configs.is_empty() {
            return Ok(());
        }
        Err(Error::CapabilityInUse {
            slug: spec.slug.clone(),
            version: spec.version,
            missing: missing.into_iter().collect::<Vec<_>>().join(", "),
            configs,
        })
    }

    /// Logs and audits a refusal, and hands it back.
    fn refuse(&self, slug: Option<&str>, source: &PluginSource, e: Error) -> Error {
        self.audit_refusal(slug, source, &e);
        e
    }

    fn audit_refusal(&self, slug: Option<&str>, source: &PluginSource, e: &Error) {
        let slug = slug.unwrap_or("");
        tracing::warn!(plugin = slug, source = %source.label(), code = e.code(), error = %e, "plugin.refused");
        self.audit.record(AuditRecord {
            connector: (!slug.is_empty()).then(|| slug.to_owned()),
            detail: Some(format!("{}: {e}", source.label())),
            ..admin_record("plugin.refused", slug, e.code())
        });
    }

    fn audit_change(&self, action: &str, plugin: &Plugin, source: &str, started: Instant) {
        self.audit.record(AuditRecord {
            connector_version: Some(plugin.spec.version),
            detail: Some(format!("sha256 {}; {source}", plugin.prepared.wasm_sha256)),
            duration_ms: started.elapsed().as_millis() as u64,
            ..admin_record(action, &plugin.spec.slug, "ok")
        });
    }
}

fn admin_record(action: &str, slug: &str, outcome: &str) -> AuditRecord {
    AuditRecord {
        id: crate::audit::new_id(),
        time: now_ms(),
        tenant_id: ADMIN_SCOPE.into(),
        connector: Some(slug.to_owned()),
        capability: action.to_owned(),
        outcome: outcome.to_owned(),
        ..AuditRecord::default()
    }
}

fn log_loaded(action: &str, plugin: &Plugin) {
    let message = match action {
        "plugin.swap" => "connector swapped",
        "plugin.rollback" => "connector rolled back",
        "plugin.restore" => "connector restored",
        _ => "connector loaded",
    };
    tracing::info!(
        action,
        plugin = %plugin.spec.slug,
        version = plugin.spec.version,
        sha256 = %&plugin.prepared.wasm_sha256[..12],
        origin = ?plugin.prepared.origin,
        load_ms = plugin.prepared.load_time.as_millis() as u64,
        "{message}"
    );
}

/// What a `plugins.toml` entry says about its slug's version and grant.
fn entry_digest(wasm_sha256: &str, entry: &PluginEntry) -> String {
    let grant = serde_json::to_string(&entry.allowed_hosts).unwrap_or_default();
    runtime::cache::wasm_sha256(format!("{wasm_sha256}\n{grant}").as_bytes())
}
