//! Where the vault keeps its keyring: one sealed document, read at start and written
//! (durably) on every key change. The vault sees only [`KeyringStore`].

use super::{Result, SledStore};
use std::sync::Arc;

/// The vault's view of storage: load and save its sealed keyring.
pub trait KeyringStore: Send + Sync {
    /// The sealed keyring, if one was ever saved.
    fn load(&self) -> Result<Option<Vec<u8>>>;
    /// Replaces the sealed keyring and flushes it to disk before returning.
    fn save(&self, sealed: &[u8]) -> Result<()>;
    /// Saves the first keyring, durably, unless one exists: then it is returned and
    /// nothing is written (replicas starting at once on one database agree on one).
    fn create(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>>;
}

const KEYRING_KEY: &[u8] = b"keyring";

struct SledKeyring(sled::Tree);

impl KeyringStore for SledKeyring {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(KEYRING_KEY)?.map(|v| v.to_vec()))
    }

    fn save(&self, sealed: &[u8]) -> Result<()> {
        self.0.insert(KEYRING_KEY, sealed)?;
        self.0.flush()?;
        Ok(())
    }

    fn create(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        match self
            .0
            .compare_and_swap(KEYRING_KEY, None as Option<&[u8]>, Some(sealed))?
        {
            Ok(()) => {
                self.0.flush()?;
                Ok(None)
            }
            Err(existing) => Ok(existing.current.map(|v| v.to_vec())),
        }
    }
}

impl SledStore {
    /// The vault's keyring store.
    pub fn keyring(&self) -> Result<Arc<dyn KeyringStore>> {
        Ok(Arc::new(SledKeyring(self.db.open_tree("vault")?)))
    }
}
