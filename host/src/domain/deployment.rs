//! What the operator made of each connector slug: the version active now (none once
//! unloaded), the previous ones kept for rollback, and the egress grant. No I/O.

use super::UnixMs;
use serde::{Deserialize, Serialize};

/// How many previous versions of a connector are kept for rollback.
pub const KEPT_VERSIONS: usize = 5;

/// Where a connector version came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PluginSource {
    /// A `plugins.toml` entry's file (read again from there).
    File {
        /// The component's path.
        path: String,
    },
    /// `POST /admin/plugins` (the bytes are kept in the store).
    Upload,
    /// A file in the watched plugins directory (the bytes are kept in the store).
    Directory {
        /// The file.
        path: String,
    },
}

impl PluginSource {
    /// Whether the store keeps this version's bytes (else they are read from its file).
    pub fn kept_in_store(&self) -> bool {
        !matches!(self, PluginSource::File { .. })
    }

    /// Its kind, as tenants see it (no server paths).
    pub fn kind(&self) -> &'static str {
        match self {
            PluginSource::File { .. } => "plugins.toml",
            PluginSource::Upload => "upload",
            PluginSource::Directory { .. } => "plugins directory",
        }
    }

    /// Its name in logs and the operator's audit records.
    pub fn label(&self) -> String {
        match self {
            PluginSource::File { path } => format!("plugins.toml ({path})"),
            PluginSource::Upload => "upload".into(),
            PluginSource::Directory { path } => format!("plugins directory ({path})"),
        }
    }
}

/// One loaded version of a connector: slug, `info().version` and SHA-256 identify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginVersion {
    /// `info().version`.
    pub version: u32,
    /// SHA-256 of the wasm, hex.
    pub sha256: String,
    /// Where it came from.
    pub source: PluginSource,
    /// When it became active.
    pub loaded_at: UnixMs,
}

/// The state of one connector slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginDeployment {
    /// The connector's slug.
    pub slug: String,
    /// The version serving calls; `None` once unloaded.
    pub active: Option<PluginVersion>,
    /// Earlier versions, newest first, at most [`KEPT_VERSIONS`].
    pub previous: Vec<PluginVersion>,
    /// The operator's egress grant (`plugins.toml` `allowed_hosts` or `PUT
    /// /admin/plugins/{slug}/egress`); `None`: what the component may have by asking.
    pub grant: Option<Vec<String>>,
    /// The digest of the `plugins.toml` entry last applied (its component and its
    /// `allowed_hosts`), so a start applies an entry again only when it changed.
    pub file_entry_seen: Option<String>,
}

impl PluginDeployment {
    /// A slug nothing was loaded for yet.
    pub fn new(slug: &str) -> Self {
        PluginDeployment {
            slug: slug.to_owned(),
            active: None,
            previous: Vec::new(),
            grant: None,
            file_entry_seen: None,
        }
    }

    /// `version` becomes active; the one it replaces is kept for rollback.
    pub fn activate(&mut self, version: PluginVersion) {
        self.previous.retain(|v| v.sha256 != version.sha256);
        if let Some(old) = self.active.take() {
            self.keep(old);
        }
        self.active = Some(version);
    }

    /// Nothing is active; what was is kept for rollback.
    pub fn deactivate(&mut self) -> Option<PluginVersion> {
        let old = self.active.take()?;
        self.keep(old.clone());
        Some(old)
    }

    fn keep(&mut self, version: PluginVersion) {
        self.previous.retain(|v| v.sha256 != version.sha256);
        self.previous.insert(0, version);
        self.previous.truncate(KEPT_VERSIONS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u32) -> PluginVersion {
        PluginVersion {
            version: n,
            sha256: format!("sha{n}"),
            source: PluginSource::Upload,
            loaded_at: 0,
        }
    }

    #[test]
    fn activating_keeps_the_replaced_version_newest_first_and_bounded() {
        let mut d = PluginDeployment::new("x");
        for n in 1..=8 {
            d.activate(version(n));
        }
        assert_eq!(d.active.as_ref().unwrap().version, 8);
        let kept: Vec<u32> = d.previous.iter().map(|v| v.version).collect();
        assert_eq!(kept, [7, 6, 5, 4, 3]);
        // Going back to a kept version takes it out of the kept list.
        d.activate(version(6));
        let kept: Vec<u32> = d.previous.iter().map(|v| v.version).collect();
        assert_eq!(kept, [8, 7, 5, 4, 3]);
        assert_eq!(d.deactivate().unwrap().version, 6);
        assert!(d.active.is_none());
        assert_eq!(d.previous[0].version, 6);
    }
}
