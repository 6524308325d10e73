//! Which connector versions are active, kept for rollback, and granted egress; and the
//! bytes of uploaded and dropped-in components, by SHA-256.

use super::{decode, encode, Result, SledStore};
use crate::domain::deployment::PluginDeployment;

/// Connector deployments and the components they were loaded from.
pub trait DeploymentStore: Send + Sync {
    /// Every slug's deployment.
    fn deployments(&self) -> Result<Vec<PluginDeployment>>;

    /// One slug's deployment.
    fn deployment(&self, slug: &str) -> Result<Option<PluginDeployment>>;

    /// Writes a deployment (durably: it says what is active after a restart).
    fn put_deployment(&self, deployment: &PluginDeployment) -> Result<()>;

    /// Keeps a component's bytes under their SHA-256 (idempotent).
    fn put_component(&self, sha256: &str, wasm: &[u8]) -> Result<()>;

    /// A kept component.
    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
}

impl DeploymentStore for SledStore {
    fn deployments(&self) -> Result<Vec<PluginDeployment>> {
        self.deployments
            .iter()
            .values()
            .map(|v| decode("plugin_deployments", &v?))
            .collect()
    }

    fn deployment(&self, slug: &str) -> Result<Option<PluginDeployment>> {
        self.deployments
            .get(slug)?
            .map(|v| decode("plugin_deployments", &v))
            .transpose()
    }

    fn put_deployment(&self, deployment: &PluginDeployment) -> Result<()> {
        self.deployments
            .insert(deployment.slug.as_bytes(), encode(deployment))?;
        self.db.flush()?;
        Ok(())
    }

    fn put_component(&self, sha256: &str, wasm: &[u8]) -> Result<()> {
        if !self.components.contains_key(sha256)? {
            self.components.insert(sha256, wasm)?;
            self.db.flush()?;
        }
        Ok(())
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.components.get(sha256)?.map(|v| v.to_vec()))
    }
}
