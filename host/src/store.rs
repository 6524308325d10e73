//! Persistence on sled: tenants and their token hashes, connections, sealed credentials
//! and audit records, each in its own tree. Methods are shaped by the use cases that
//! call them (find a tenant by token hash, list a tenant's connections, load a sealed
//! credential); no caller sees sled keys. One implementation today; the methods are the
//! seam where a PostgreSQL store for several replicas would go.

use crate::domain::{AuditRecord, Connection, CredentialKind, Tenant, UnixMs};
use crate::vault::SealedSecret;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("corrupt record in {tree}: {source}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// The record already exists.
    #[error("already exists")]
    Conflict,
}

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// The envelope.
    pub sealed: SealedSecret,
    /// Last written.
    pub updated_at: UnixMs,
}

/// The sled database and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tenants: sled::Tree,
    tenant_tokens: sled::Tree,
    connections: sled::Tree,
    tenant_connections: sled::Tree,
    credentials: sled::Tree,
    audit: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir.join("db")).open()?;
        Self::from_db(db)
    }

    /// A throwaway database, for tests and benchmarks.
    pub fn temporary() -> Result<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Self> {
        Ok(Store {
            tenants: db.open_tree("tenants")?,
            tenant_tokens: db.open_tree("tenant_tokens")?,
            connections: db.open_tree("connections")?,
            tenant_connections: db.open_tree("tenant_connections")?,
            credentials: db.open_tree("credentials")?,
            audit: db.open_tree("audit")?,
            db,
        })
    }

    /// The tree the vault keeps its keyring in.
    pub fn vault_tree(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree("vault")?)
    }

    /// Flushes everything to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    // --- tenants ---------------------------------------------------------------------

    /// Creates a tenant with the hash of its API token; `Conflict` if the id is taken.
    pub fn create_tenant(&self, tenant: &Tenant, token_hash: &[u8]) -> Result<()> {
        let inserted = self.tenants.compare_and_swap(
            tenant.id.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(tenant)),
        )?;
        if inserted.is_err() {
            return Err(Error::Conflict);
        }
        self.tenant_tokens
            .insert(token_hash, tenant.id.as_bytes())?;
        Ok(())
    }

    /// The tenant whose token hashes to `token_hash`.
    pub fn tenant_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<String>> {
        Ok(self
            .tenant_tokens
            .get(token_hash)?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    // --- connections -----------------------------------------------------------------

    /// Writes a connection (create or update).
    pub fn put_connection(&self, connection: &Connection) -> Result<()> {
        self.connections
            .insert(connection.id.as_bytes(), encode(connection))?;
        self.tenant_connections
            .insert(tenant_key(&connection.tenant_id, &connection.id), &[])?;
        Ok(())
    }

    /// A connection by id, whoever owns it; callers check the owner.
    pub fn connection(&self, id: &str) -> Result<Option<Connection>> {
        self.connections
            .get(id)?
            .map(|v| decode("connections", &v))
            .transpose()
    }

    /// A tenant's connections, oldest id first.
    pub fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>> {
        let prefix = tenant_key(tenant_id, "");
        let mut out = Vec::new();
        for entry in self.tenant_connections.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(connection) = self.connection(&id)? {
                out.push(connection);
            }
        }
        Ok(out)
    }

    /// Deletes a connection and its credential.
    pub fn delete_connection(&self, connection: &Connection) -> Result<()> {
        self.credentials.remove(connection.id.as_bytes())?;
        self.tenant_connections
            .remove(tenant_key(&connection.tenant_id, &connection.id))?;
        self.connections.remove(connection.id.as_bytes())?;
        Ok(())
    }

    // --- credentials -----------------------------------------------------------------

    /// The sealed credential of a connection.
    pub fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>> {
        self.credentials
            .get(connection_id)?
            .map(|v| decode("credentials", &v))
            .transpose()
    }

    /// Writes a credential and flushes it to disk before returning.
    pub fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()> {
        self.credentials.insert(connection_id, encode(credential))?;
        self.credentials.flush()?;
        Ok(())
    }

    /// Replaces the credential only if its stored version is still `expected_version`,
    /// then flushes it to disk. `Ok(false)` means a newer write won: the caller's value
    /// is stale and was not stored.
    pub fn replace_credential(
        &self,
        connection_id: &str,
        expected_version: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        loop {
            let Some(current) = self.credentials.get(connection_id)? else {
                return Ok(false);
            };
            let decoded: StoredCredential = decode("credentials", &current)?;
            if decoded.version != expected_version {
                return Ok(false);
            }
            let swapped = self.credentials.compare_and_swap(
                connection_id,
                Some(current),
                Some(encode(credential)),
            )?;
            if swapped.is_ok() {
                self.credentials.flush()?;
                return Ok(true);
            }
        }
    }

    /// Every stored credential with its connection id (for key rotation and counts).
    pub fn all_credentials(&self) -> impl Iterator<Item = Result<(String, StoredCredential)>> + '_ {
        self.credentials.iter().map(|entry| {
            let (key, value) = entry?;
            Ok((
                String::from_utf8_lossy(&key).into_owned(),
                decode("credentials", &value)?,
            ))
        })
    }

    // --- audit -----------------------------------------------------------------------

    /// Appends an audit record.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let mut key = tenant_key(&record.tenant_id, "");
        key.extend_from_slice(&record.time.to_be_bytes());
        key.extend_from_slice(record.id.as_bytes());
        self.audit.insert(key, encode(record))?;
        Ok(())
    }

    /// A tenant's audit records, newest first, up to `limit`, passing `keep`.
    pub fn audit_of(
        &self,
        tenant_id: &str,
        limit: usize,
        keep: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        for entry in self.audit.scan_prefix(tenant_key(tenant_id, "")).rev() {
            let (_, value) = entry?;
            let record: AuditRecord = decode("audit", &value)?;
            if keep(&record) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// `tenant \0 rest`: tenant ids cannot contain NUL, so prefixes never collide.
fn tenant_key(tenant_id: &str, rest: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant_id.len() + 1 + rest.len());
    key.extend_from_slice(tenant_id.as_bytes());
    key.push(0);
    key.extend_from_slice(rest.as_bytes());
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("domain records serialize")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { tree, source })
}
