//! Blueprint versions (immutable once written).

use super::{decode, encode, Result, SledStore};
use crate::domain::Blueprint;

/// Blueprint versions, immutable once written.
pub trait BlueprintStore: Send + Sync {
    /// Writes a blueprint version unless it exists; returns the existing one if it does.
    fn insert_blueprint(&self, blueprint: &Blueprint) -> Result<Option<Blueprint>>;

    /// One blueprint version.
    fn blueprint(&self, name: &str, version: &str) -> Result<Option<Blueprint>>;

    /// Every blueprint version, by name then version.
    fn blueprints(&self) -> Result<Vec<Blueprint>>;
}

impl BlueprintStore for SledStore {
    fn insert_blueprint(&self, blueprint: &Blueprint) -> Result<Option<Blueprint>> {
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

    fn blueprint(&self, name: &str, version: &str) -> Result<Option<Blueprint>> {
        self.blueprints
            .get(blueprint_key(name, version))?
            .map(|v| decode("blueprints", &v))
            .transpose()
    }

    fn blueprints(&self) -> Result<Vec<Blueprint>> {
        self.blueprints
            .iter()
            .values()
            .map(|v| decode("blueprints", &v?))
            .collect()
    }
}

fn blueprint_key(name: &str, version: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(version.as_bytes());
    key
}
