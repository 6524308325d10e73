//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds to seconds; a
//! cached artifact loads in milliseconds. Entries are keyed by the wasm's SHA-256 and
//! the engine's precompile-compatibility hash, so a changed plugin or a changed engine
//! configuration (or wasmtime version) misses instead of loading something stale.
//! Writes go to a temporary file renamed into place, so concurrent processes sharing
//! the directory never see a torn artifact.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Deserialized from the cache.
    Cache,
    /// Compiled now (and written to the cache).
    Compiled,
}

/// A directory of serialized components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    /// Loads `wasm` from the cache, or compiles it and stores the artifact. Blocking:
    /// call from a blocking thread.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, Origin::Cache)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached component")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
        }
        Ok((component, Origin::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// SHA-256 of the wasm, hex.
pub fn wasm_sha256(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{}-{:016x}", wasm_sha256(wasm), hasher.finish())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Component::serialize` of an engine with the same
    // compatibility hash (it is in the file name), written by this process or another
    // Conduit into a directory Conduit owns. wasmtime also checks the header and refuses
    // artifacts from an incompatible engine.
    unsafe { Component::deserialize_file(engine, path) }
}
