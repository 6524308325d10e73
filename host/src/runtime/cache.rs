//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds to seconds; a
//! cached artifact loads in milliseconds. Entries are keyed by the wasm's SHA-256 and
//! the engine's precompile-compatibility hash, so a changed plugin or a changed engine
//! configuration (or wasmtime version) misses instead of loading something stale.
//!
//! A cached artifact is native code that `Component::deserialize` runs as it is, so the
//! cache is authenticated before it is trusted: each file is an HMAC-SHA256 tag over
//! the artifact followed by the artifact, under a key generated into the cache
//! directory (0600; the directory is 0700). A file whose tag does not verify (tampered,
//! torn, or written under another key) is discarded with a warning and recompiled.
//! Writes go to a temporary file renamed into place, so concurrent processes sharing
//! the directory never see a torn artifact.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasmtime::component::Component;
use wasmtime::Engine;
use zeroize::Zeroizing;

/// Bytes of the tag in front of each artifact.
const TAG_BYTES: usize = 32;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Deserialized from the cache.
    Cache,
    /// Compiled now (and written to the cache).
    Compiled,
}

/// A directory of authenticated, serialized components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    key: std::sync::Arc<OnceLock<Zeroizing<[u8; 32]>>>,
}

impl ComponentCache {
    /// A cache in `dir` (created 0700, with its key, on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache {
            dir: dir.into(),
            key: Default::default(),
        }
    }

    /// Loads `wasm` from the cache, or compiles it and stores the artifact. Blocking:
    /// call from a blocking thread.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        let key = match self.key() {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "component cache unusable; compiling without it");
                None
            }
        };
        if let (Some(key), true) = (key, path.exists()) {
            match read_authenticated(key, &path) {
                Ok(artifact) => match deserialize(engine, &artifact) {
                    Ok(component) => return Ok((component, Origin::Cache)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached component")
                    }
                },
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cached component failed authentication; recompiling")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(key) = key {
            if let Err(e) = self.store(key, &path, &component) {
                tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
            }
        }
        Ok((component, Origin::Compiled))
    }

    /// The cache key, read from `<dir>/cache.key` or generated there; concurrent
    /// processes agree on the first one written.
    fn key(&self) -> std::io::Result<&[u8; 32]> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        create_private_dir(&self.dir)?;
        let path = self.dir.join("cache.key");
        if !path.exists() {
            let mut fresh = Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, fresh.as_mut());
            let tmp = self.temporary();
            write_private(&tmp, fresh.as_ref())?;
            // A hard link never replaces: whoever links first wins, the rest read it.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let bytes = Zeroizing::new(std::fs::read(&path)?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "cache.key is not 32 bytes")
        })?;
        Ok(self.key.get_or_init(|| Zeroizing::new(key)))
    }

    fn store(&self, key: &[u8; 32], path: &Path, component: &Component) -> std::io::Result<()> {
        let artifact = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let mut file = tag(key, &artifact).to_vec();
        file.extend_from_slice(&artifact);
        let tmp = self.temporary();
        write_private(&tmp, &file)?;
        std::fs::rename(&tmp, path)
    }

    fn temporary(&self) -> PathBuf {
        self.dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4()
        ))
    }
}

fn tag(key: &[u8; 32], artifact: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(artifact);
    mac.finalize().into_bytes().into()
}

/// The artifact of a cache file whose tag verifies.
fn read_authenticated(key: &[u8; 32], path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::read(path)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "tag does not verify");
    if file.len() < TAG_BYTES {
        return Err(invalid());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&file[TAG_BYTES..]);
    mac.verify_slice(&file[..TAG_BYTES]).map_err(|_| invalid())?;
    file.drain(..TAG_BYTES);
    Ok(file)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // A directory made before (by an older Conduit, or by hand) is tightened too.
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)
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
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: the bytes carry a valid HMAC under this cache's key, so they are what a
    // Conduit holding the key wrote from `Component::serialize` of an engine with the
    // same compatibility hash (it is in the file name). wasmtime also checks the header
    // and refuses artifacts from an incompatible engine.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_artifact_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path().join("cache"));
        let key = *cache.key().unwrap();
        let path = dir.path().join("x.cwasm");
        let mut file = tag(&key, b"artifact").to_vec();
        file.extend_from_slice(b"artifact");
        std::fs::write(&path, &file).unwrap();
        assert_eq!(read_authenticated(&key, &path).unwrap(), b"artifact");
        let last = file.len() - 1;
        file[last] ^= 1;
        std::fs::write(&path, &file).unwrap();
        assert!(read_authenticated(&key, &path).is_err());
        std::fs::write(&path, b"short").unwrap();
        assert!(read_authenticated(&key, &path).is_err());
        // Another cache's key does not open it either.
        let other = ComponentCache::new(dir.path().join("other"));
        std::fs::write(&path, [tag(&key, b"a").as_slice(), b"a"].concat()).unwrap();
        assert!(read_authenticated(other.key().unwrap(), &path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_and_key_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path().join("cache"));
        let first = *cache.key().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert_eq!(mode(&dir.path().join("cache/cache.key")), 0o600);
        // A second process on the same directory reads the same key.
        let again = ComponentCache::new(dir.path().join("cache"));
        assert_eq!(*again.key().unwrap(), first);
    }
}
