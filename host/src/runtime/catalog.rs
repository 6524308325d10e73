//! The catalog: the loaded connectors, by slug, each an [`IntegrationSpec`] with its
//! runtime [`Plugin`], swapped in atomically (a call holds an `Arc<Plugin>` and
//! finishes on the version it started with); what is loaded is decided by
//! `crate::deploy`. Also reads `plugins.toml` (an array of `[[plugin]]` tables: `slug`,
//! `path` relative to the file, optional `allowed_hosts` — the operator's egress
//! grant — `memory_mb`, `deadline_ms`, `refresh_lead_secs`, `rate_profile` and
//! `config` defaults).

use crate::domain::{Connection, IntegrationSpec};
use crate::runtime::{CallError, Plugin};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Catalog failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `plugins.toml` cannot be read or parsed.
    #[error("{path}: {message}")]
    PluginsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One `[[plugin]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The connector's slug, checked against its `info()`.
    pub slug: String,
    /// The component, relative to `plugins.toml`.
    pub path: PathBuf,
    /// Replaces the connector's allowed hosts (e.g. a local fake).
    pub allowed_hosts: Option<Vec<String>>,
    /// Memory limit in MiB (default 64).
    pub memory_mb: Option<u32>,
    /// Call deadline in ms (default 10 000).
    pub deadline_ms: Option<u64>,
    /// Refresh this connector's credentials this many seconds before expiry, instead
    /// of the deployment's default lead.
    pub refresh_lead_secs: Option<u64>,
    /// Replaces the connector's rate profile (`{ requests, per_seconds, burst }`).
    pub rate_profile: Option<RateProfileEntry>,
    /// Defaults for every connection's config (the lowest layer of a resolved config).
    #[serde(default)]
    pub config: toml::Table,
}

impl PluginEntry {
    /// The `[plugin.config]` table as connection config defaults.
    pub fn config_defaults(&self) -> serde_json::Map<String, serde_json::Value> {
        toml_to_json(&self.config)
    }
}

/// A `rate_profile` table in `plugins.toml`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateProfileEntry {
    /// Requests per window.
    pub requests: u32,
    /// Window in seconds.
    pub per_seconds: u32,
    /// Burst.
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginsFile {
    #[serde(default)]
    plugin: Vec<PluginEntry>,
}

/// Reads `plugins.toml`, resolving each path against the file's directory.
pub fn read_plugins_file(path: &Path) -> Result<Vec<PluginEntry>, Error> {
    let err = |message: String| Error::PluginsFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: PluginsFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    for entry in &file.plugin {
        if let Some(key) = entry
            .config
            .keys()
            .find(|k| crate::domain::looks_like_secret_name(k))
        {
            return Err(err(format!(
                "plugin `{}`: config default `{key}` looks like a secret; defaults are shown to every tenant, secrets belong in credentials or the environment",
                entry.slug
            )));
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(file
        .plugin
        .into_iter()
        .map(|mut entry| {
            entry.path = base.join(&entry.path);
            entry
        })
        .collect())
}

/// The loaded connectors.
#[derive(Default)]
pub struct Catalog {
    plugins: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Bumped by every change, so views derived from specs know they are stale.
    generation: std::sync::atomic::AtomicU64,
}

impl Catalog {
    /// Adds or replaces a plugin; calls in flight keep the one they hold.
    pub fn insert(&self, plugin: Plugin) {
        self.insert_arc(Arc::new(plugin));
    }

    /// [`Catalog::insert`] of a shared plugin: the swap is one map write.
    pub fn insert_arc(&self, plugin: Arc<Plugin>) {
        let slug = plugin.spec.slug.clone();
        self.plugins
            .write()
            .expect("catalog lock")
            .insert(slug, plugin);
        self.bump();
    }

    /// Unloads a plugin; calls in flight finish on it.
    pub fn remove(&self, slug: &str) -> Option<Arc<Plugin>> {
        let removed = self.plugins.write().expect("catalog lock").remove(slug);
        self.bump();
        removed
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Changes with every plugin added or replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The plugin with this slug.
    pub fn get(&self, slug: &str) -> Option<Arc<Plugin>> {
        self.plugins
            .read()
            .expect("catalog lock")
            .get(slug)
            .cloned()
    }

    /// The plugin of `connection`'s connector; `connector_unavailable` when it is not
    /// loaded, the same answer everywhere.
    pub fn require(&self, connection: &Connection) -> Result<Arc<Plugin>, CallError> {
        self.get(&connection.connector)
            .ok_or_else(|| CallError::ConnectorUnavailable(connection.connector.clone()))
    }

    /// Every loaded plugin, by slug.
    pub fn all(&self) -> Vec<Arc<Plugin>> {
        self.plugins
            .read()
            .expect("catalog lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every IntegrationSpec, by slug.
    pub fn specs(&self) -> Vec<IntegrationSpec> {
        self.all().iter().map(|p| (*p.spec).clone()).collect()
    }
}

/// A `plugins.toml` table as a JSON object (TOML values map onto JSON one to one, dates
/// as their text).
fn toml_to_json(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    fn value(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => s.clone().into(),
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(a) => a.iter().map(value).collect(),
            toml::Value::Table(t) => serde_json::Value::Object(toml_to_json(t)),
        }
    }
    table.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}
