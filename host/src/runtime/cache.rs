//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds to seconds; a
//! cached artifact loads in milliseconds. Entries are keyed by the wasm's SHA-256 and
//! the engine's precompile-compatibility hash, so a changed plugin or a changed engine
//! configuration (or wasmtime version) misses instead of loading something stale.
//!
//! A cached artifact is native code that `Component::deserialize` runs as it is, so the
//! cache is authenticated before it is trusted: beside each `<key>.cwasm` is its tag,
//! `<key>.tag`, a keyed BLAKE3 hash of the artifact under a key generated into the cache
//! directory (0600; the directory is 0700). The artifact is hashed as it is read, then
//! mapped by wasmtime (no copy); one whose tag does not verify (tampered, torn, or
//! written under another key) is discarded with a warning and recompiled. BLAKE3
//! rather than HMAC-SHA256 because every load reads the whole artifact: 35 MB of a
//! Python connector hashed in about 20 ms instead of 35-70 ms here. Writes go to
//! temporary files renamed into place, so concurrent processes sharing the directory
//! never see a torn artifact.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasmtime::component::Component;
use wasmtime::Engine;
use zeroize::Zeroizing;

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
    /// `sha256` is [`wasm_sha256`] of `wasm`, which the caller has already.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self
            .dir
            .join(format!("{}.cwasm", cache_key(engine, sha256)));
        let key = match self.key() {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "component cache unusable; compiling without it");
                None
            }
        };
        if let (Some(key), true) = (key, path.exists()) {
            match verify(key, &path) {
                Ok(()) => match deserialize(engine, &path) {
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
        let (artifact_tmp, tag_tmp) = (self.temporary(), self.temporary());
        write_private(&artifact_tmp, &artifact)?;
        write_private(&tag_tmp, tag(key, &artifact).as_bytes())?;
        // The tag first: a reader between the renames sees a mismatch, never a pass.
        std::fs::rename(&tag_tmp, tag_path(path))?;
        std::fs::rename(&artifact_tmp, path)
    }

    fn temporary(&self) -> PathBuf {
        self.dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4()
        ))
    }
}

fn tag(key: &[u8; 32], artifact: &[u8]) -> blake3::Hash {
    blake3::keyed_hash(key, artifact)
}

fn tag_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("tag")
}

/// Hashes the artifact as it streams from the file and compares it with its tag.
fn verify(key: &[u8; 32], path: &Path) -> std::io::Result<()> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "tag does not verify");
    let expected: [u8; 32] = std::fs::read(tag_path(path))?
        .try_into()
        .map_err(|_| invalid())?;
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update_reader(std::fs::File::open(path)?)?;
    // `Hash` compares in constant time.
    if hasher.finalize() != blake3::Hash::from_bytes(expected) {
        return Err(invalid());
    }
    Ok(())
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

fn cache_key(engine: &Engine, sha256: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{sha256}-{:016x}", hasher.finish())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file's tag under this cache's key verified just now, so it is what a
    // Conduit holding the key wrote from `Component::serialize` of an engine with the
    // same compatibility hash (it is in the file name); writers replace files by
    // rename, never in place, and only this user can write the 0700 directory.
    // wasmtime also checks the header and refuses artifacts from an incompatible engine.
    unsafe { Component::deserialize_file(engine, path) }
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
        let mut artifact = b"artifact".to_vec();
        std::fs::write(&path, &artifact).unwrap();
        std::fs::write(tag_path(&path), tag(&key, &artifact).as_bytes()).unwrap();
        assert!(verify(&key, &path).is_ok());
        artifact[3] ^= 1;
        std::fs::write(&path, &artifact).unwrap();
        assert!(verify(&key, &path).is_err());
        std::fs::write(tag_path(&path), b"short").unwrap();
        assert!(verify(&key, &path).is_err());
        std::fs::remove_file(tag_path(&path)).unwrap();
        assert!(
            verify(&key, &path).is_err(),
            "an artifact without a tag is not trusted"
        );
        // Another cache's key does not open it either.
        let other = ComponentCache::new(dir.path().join("other"));
        std::fs::write(tag_path(&path), tag(&key, &artifact).as_bytes()).unwrap();
        assert!(verify(other.key().unwrap(), &path).is_err());
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
