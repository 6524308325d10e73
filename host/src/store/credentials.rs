//! Sealed credentials and their expiry index (`expires_at ‖ connection id`), written
//! together in one transaction and flushed before a new token is handed out.

use super::{decode, encode, expiry_key, Error, Result, SledStore};
use crate::domain::{CredentialKind, SealedSecret, UnixMs};
use serde::{Deserialize, Serialize};

/// A sealed credential with what can be known without opening it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredCredential {
    /// The credential's id (part of the vault's associated data).
    pub credential_id: String,
    /// Bumped on every write; compare-and-swap guards concurrent writers.
    pub version: u64,
    /// OAuth or API key.
    pub kind: CredentialKind,
    /// Access token expiry, unix ms, kept outside the seal for scheduling.
    pub expires_at: Option<UnixMs>,
    /// Whether it holds a refresh token, i.e. whether the scheduler can renew it.
    #[serde(default)]
    pub refreshable: bool,
    /// The envelope.
    pub sealed: SealedSecret,
    /// Last written.
    pub updated_at: UnixMs,
    /// Where the scheduler re-indexed it, when not at its expiry: a credential that
    /// cannot be refreshed now waits under the time of its next attempt, out of the
    /// window the scheduler reads (see [`CredentialStore::reindex_expiry`]). A new
    /// credential is indexed at its expiry again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_at: Option<UnixMs>,
}

impl StoredCredential {
    /// Its place in the expiry index, if it has one: refreshable credentials with an
    /// expiry, at the expiry unless re-indexed.
    pub fn indexed_at(&self) -> Option<UnixMs> {
        self.expires_at
            .filter(|_| self.refreshable)
            .map(|expiry| self.index_at.unwrap_or(expiry))
    }

    pub(super) fn due_at(&self) -> Option<UnixMs> {
        self.indexed_at()
    }
}

/// Sealed credentials and the expiry index the scheduler reads.
pub trait CredentialStore: Send + Sync {
    /// The sealed credential of a connection.
    fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>>;

    /// Writes a credential (and its expiry index entry) and flushes it to disk before
    /// returning.
    fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()>;

    /// Writes many credentials (an import) with one flush at the end.
    fn import_credentials(&self, credentials: &[(&str, &StoredCredential)]) -> Result<()>;

    /// Replaces the credential only if its stored version is still `expected_version`,
    /// then flushes it to disk. `Ok(false)` means a newer write won: the caller's value
    /// is stale and was not stored.
    fn replace_credential(
        &self,
        connection_id: &str,
        expected_version: u64,
        credential: &StoredCredential,
    ) -> Result<bool>;

    /// Connections whose refreshable credential expires at or before `until`, soonest
    /// first, at most `limit`. A range scan of the expiry index: the cost follows the
    /// number due, not the number stored.
    fn due(&self, until: UnixMs, limit: usize) -> Result<Vec<(UnixMs, String)>>;

    /// Drops a connection's expiry index entry at `indexed_at` (it is not ACTIVE, so
    /// the scheduler leaves it alone until a new credential indexes it again).
    fn unindex_expiry(&self, indexed_at: UnixMs, connection_id: &str) -> Result<()>;

    /// Moves a connection's index entry from `from` to `to`, the credential itself
    /// unchanged; `Ok(false)` when it is no longer at `from` (a new credential was
    /// written meanwhile, which indexed itself).
    fn reindex_expiry(&self, connection_id: &str, from: UnixMs, to: UnixMs) -> Result<bool>;

    /// Every stored credential with its connection id (for key rotation and counts).
    fn all_credentials(&self) -> Box<dyn Iterator<Item = Result<(String, StoredCredential)>> + '_>;

    /// [`CredentialStore::replace_credential`], only while the connection's refresh
    /// lease ([`super::refresh_lease`]) at `generation` is the latest taken: a holder
    /// whose lease lapsed and was taken over writes nothing, so the new holder never
    /// refreshes from a token replaced behind it.
    fn replace_credential_fenced(
        &self,
        connection_id: &str,
        expected_version: u64,
        generation: u64,
        credential: &StoredCredential,
    ) -> Result<bool>;
}

impl CredentialStore for SledStore {
    fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>> {
        self.credentials
            .get(connection_id)?
            .map(|v| decode("credentials", &v))
            .transpose()
    }

    fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()> {
        self.write_credential(connection_id, None, credential)?;
        self.db.flush()?;
        Ok(())
    }

    fn import_credentials(&self, credentials: &[(&str, &StoredCredential)]) -> Result<()> {
        for (connection_id, credential) in credentials {
            self.write_credential(connection_id, None, credential)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn replace_credential(
        &self,
        connection_id: &str,
        expected_version: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        let replaced = self.write_credential(connection_id, Some(expected_version), credential)?;
        if replaced {
            self.db.flush()?;
        }
        Ok(replaced)
    }

    fn due(&self, until: UnixMs, limit: usize) -> Result<Vec<(UnixMs, String)>> {
        let end = (until.saturating_add(1)).to_be_bytes();
        self.expiry
            .range(..end.as_slice())
            .take(limit)
            .map(|entry| {
                let (key, _) = entry?;
                let at = UnixMs::from_be_bytes(key[..8].try_into().expect("8-byte prefix"));
                Ok((at, String::from_utf8_lossy(&key[8..]).into_owned()))
            })
            .collect()
    }

    fn unindex_expiry(&self, indexed_at: UnixMs, connection_id: &str) -> Result<()> {
        self.expiry.remove(expiry_key(indexed_at, connection_id))?;
        Ok(())
    }

    fn reindex_expiry(&self, connection_id: &str, from: UnixMs, to: UnixMs) -> Result<bool> {
        use sled::transaction::{abort, TransactionError};
        use sled::Transactional;
        let outcome = (&self.credentials, &self.expiry).transaction(|(credentials, expiry)| {
            let Some(bytes) = credentials.get(connection_id)? else {
                return Ok(false);
            };
            let mut current: StoredCredential = match decode("credentials", &bytes) {
                Ok(current) => current,
                Err(e) => return abort(e),
            };
            if current.due_at() != Some(from) {
                return Ok(false);
            }
            expiry.remove(expiry_key(from, connection_id))?;
            current.index_at = Some(to);
            expiry.insert(expiry_key(to, connection_id), &[])?;
            credentials.insert(connection_id.as_bytes(), encode(&current))?;
            Ok(true)
        });
        match outcome {
            Ok(moved) => Ok(moved),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn replace_credential_fenced(
        &self,
        connection_id: &str,
        expected_version: u64,
        generation: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        // Held across the write, so a takeover cannot slip between check and write.
        let leases = self.leases.lock().expect("leases lock");
        let name = super::refresh_lease(connection_id);
        if leases.get(&name).map(|l| l.generation()) != Some(generation) {
            return Ok(false);
        }
        let replaced = self.replace_credential(connection_id, expected_version, credential);
        drop(leases);
        replaced
    }

    fn all_credentials(&self) -> Box<dyn Iterator<Item = Result<(String, StoredCredential)>> + '_> {
        Box::new(self.credentials.iter().map(|entry| {
            let (key, value) = entry?;
            Ok((
                String::from_utf8_lossy(&key).into_owned(),
                decode("credentials", &value)?,
            ))
        }))
    }
}

impl SledStore {
    /// One transaction over the credential and its index entry, so a crash never
    /// leaves a credential the scheduler cannot find. The caller flushes.
    fn write_credential(
        &self,
        connection_id: &str,
        expected_version: Option<u64>,
        credential: &StoredCredential,
    ) -> Result<bool> {
        use sled::transaction::{abort, ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let encoded = encode(credential);
        let outcome = (&self.credentials, &self.expiry).transaction(|(credentials, expiry)| {
            let current: Option<StoredCredential> = credentials
                .get(connection_id)?
                .map(|v| decode("credentials", &v))
                .transpose()
                .map_err(ConflictableTransactionError::Abort)?;
            if let Some(expected) = expected_version {
                if current.as_ref().map(|c| c.version) != Some(expected) {
                    return abort(Error::Conflict);
                }
            }
            if let Some(at) = current.as_ref().and_then(StoredCredential::due_at) {
                expiry.remove(expiry_key(at, connection_id))?;
            }
            if let Some(at) = credential.due_at() {
                expiry.insert(expiry_key(at, connection_id), &[])?;
            }
            credentials.insert(connection_id.as_bytes(), encoded.as_slice())?;
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(Error::Conflict)) => Ok(false),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}
