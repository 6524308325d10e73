//! The catalog: the loaded connectors, by slug, each an [`IntegrationSpec`] with its
//! runtime [`Plugin`]. Reads `plugins.toml` (an array of `[[plugin]]` tables: `slug`,
//! `path` relative to the file, optional `allowed_hosts`, `memory_mb`, `deadline_ms`,
//! `refresh_lead_secs`, `rate_profile` and `config` defaults)
//! and swaps plugins in atomically: a call holds an `Arc<Plugin>` and finishes on the
//! version it started with.

use crate::domain::{Connection, IntegrationSpec, RateProfile};
use crate::runtime::{self, CallError, Plugin, PluginSettings, Runtime};
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
    /// A plugin's wasm cannot be read.
    #[error("plugin `{slug}`: cannot read {path}: {source}")]
    Wasm {
        /// The plugin.
        slug: String,
        /// The wasm file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A plugin failed to load.
    #[error("plugin `{slug}`: {source}")]
    Load {
        /// The plugin.
        slug: String,
        /// Why.
        source: runtime::Error,
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
    /// Loads every entry; any failure stops startup with a clear error.
    pub async fn load(runtime: &Runtime, entries: &[PluginEntry]) -> Result<Self, Error> {
        let catalog = Catalog::default();
        for entry in entries {
            if let Some(key) = entry
                .config
                .keys()
                .find(|k| crate::domain::looks_like_secret_name(k))
            {
                return Err(Error::Load {
                    slug: entry.slug.clone(),
                    source: runtime::Error::Load(format!(
                        "config default `{key}` looks like a secret; defaults are shown to every tenant, secrets belong in credentials or the environment"
                    )),
                });
            }
            let wasm = std::fs::read(&entry.path).map_err(|source| Error::Wasm {
                slug: entry.slug.clone(),
                path: entry.path.clone(),
                source,
            })?;
            let settings = PluginSettings {
                allowed_hosts: entry.allowed_hosts.clone(),
                memory_mb: entry.memory_mb,
                deadline_ms: entry.deadline_ms,
                rate_profile: entry.rate_profile.map(|p| RateProfile {
                    requests: p.requests,
                    per_seconds: p.per_seconds.max(1),
                    burst: p.burst,
                }),
                config_defaults: toml_to_json(&entry.config),
            };
            let plugin = runtime
                .load(wasm, Some(&entry.slug), &settings)
                .await
                .map_err(|source| Error::Load {
                    slug: entry.slug.clone(),
                    source,
                })?;
            tracing::info!(
                plugin = %plugin.spec.slug,
                version = plugin.spec.version,
                sha256 = %&plugin.wasm_sha256[..12],
                origin = ?plugin.origin,
                load_ms = plugin.load_time.as_millis() as u64,
                "connector loaded"
            );
            catalog.insert(plugin);
        }
        Ok(catalog)
    }

    /// Adds or replaces a plugin; calls in flight keep the one they hold.
    pub fn insert(&self, plugin: Plugin) {
        let slug = plugin.spec.slug.clone();
        self.plugins
            .write()
            .expect("catalog lock")
            .insert(slug, Arc::new(plugin));
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
