//! Persistence on sled: tenants and their token hashes, connections, sealed credentials
//! with their expiry index, sealed OAuth clients, pending OAuth states, audit records
//! with their time index, and (in [`bindings`]) blueprints, tenant configs, idempotent
//! results and quota counters, each in its own tree. Methods are shaped by the use cases that
//! call them (find a tenant by token hash, list a tenant's connections, load a sealed
//! credential); no caller sees sled keys. One implementation today; the methods are the
//! seam where a PostgreSQL store for several replicas would go.

use crate::domain::SealedSecret;
use crate::domain::{AuditRecord, Connection, ConnectionStatus, CredentialKind, Tenant, UnixMs};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

mod bindings;

pub use bindings::{IdempotentResult, PublishRefusal};

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

impl crate::domain::Classify for Error {
    fn classify(&self) -> crate::domain::ErrorClass {
        crate::domain::ErrorClass::internal()
    }
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
    /// Whether it holds a refresh token, i.e. whether the scheduler can renew it.
    #[serde(default)]
    pub refreshable: bool,
    /// The envelope.
    pub sealed: SealedSecret,
    /// Last written.
    pub updated_at: UnixMs,
}

impl StoredCredential {
    /// When the scheduler should look at it: refreshable credentials with an expiry.
    fn due_at(&self) -> Option<UnixMs> {
        self.expires_at.filter(|_| self.refreshable)
    }
}

/// A tenant's own OAuth client (`byok`), sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredClient {
    /// The sealed record's id (part of the vault's associated data).
    pub credential_id: String,
    /// The envelope around the client id and secret.
    pub sealed: SealedSecret,
}

/// A pending OAuth authorization, kept until its callback or its expiry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OauthState {
    /// The tenant that started the flow.
    pub tenant_id: String,
    /// The connection the tokens are for.
    pub connection_id: String,
    /// Where the provider sent the user back; the exchange must repeat it.
    pub redirect_uri: String,
    /// The PKCE verifier, sealed (it turns a stolen code into tokens).
    pub code_verifier: Option<SealedSecret>,
    /// When the state stops being accepted.
    pub expires_at: UnixMs,
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
    /// Refreshable credentials by expiry: `expires_at (u64 BE) ‖ connection id` → ().
    expiry: sled::Tree,
    oauth_clients: sled::Tree,
    /// Pending authorizations by SHA-256 of their state.
    oauth_states: sled::Tree,
    audit: sled::Tree,
    /// `time (u64 BE) ‖ audit key` → (), for retention.
    audit_time: sled::Tree,
    blueprints: sled::Tree,
    configs: sled::Tree,
    /// `tenant \0 blueprint \0 environment \0` → published version (u32 BE).
    published: sled::Tree,
    idempotency: sled::Tree,
    quotas: sled::Tree,
    /// Per-tenant change counters (in memory: the caches they guard are too).
    revisions: Arc<Mutex<HashMap<String, u64>>>,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this connection's.
    pub connection_id: Option<String>,
    /// Only this capability's.
    pub capability: Option<String>,
    /// Not before (unix ms).
    pub since: Option<UnixMs>,
    /// Not after (unix ms).
    pub until: Option<UnixMs>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
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
            expiry: db.open_tree("credential_expiry")?,
            oauth_clients: db.open_tree("oauth_clients")?,
            oauth_states: db.open_tree("oauth_states")?,
            audit: db.open_tree("audit")?,
            audit_time: db.open_tree("audit_time")?,
            blueprints: db.open_tree("blueprints")?,
            configs: db.open_tree("tenant_configs")?,
            published: db.open_tree("published_configs")?,
            idempotency: db.open_tree("idempotency")?,
            quotas: db.open_tree("quotas")?,
            revisions: Arc::default(),
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
        self.bump_revision(&connection.tenant_id);
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
        if let Some(old) = self.credentials.remove(connection.id.as_bytes())? {
            let old: StoredCredential = decode("credentials", &old)?;
            if let Some(at) = old.due_at() {
                self.expiry.remove(expiry_key(at, &connection.id))?;
            }
        }
        self.oauth_clients.remove(connection.id.as_bytes())?;
        self.tenant_connections
            .remove(tenant_key(&connection.tenant_id, &connection.id))?;
        self.connections.remove(connection.id.as_bytes())?;
        self.bump_revision(&connection.tenant_id);
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

    /// Writes a credential (and its expiry index entry) and flushes it to disk before
    /// returning.
    pub fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()> {
        self.write_credential(connection_id, None, credential)?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes many credentials (an import) with one flush at the end.
    pub fn import_credentials<'a>(
        &self,
        credentials: impl IntoIterator<Item = (&'a str, &'a StoredCredential)>,
    ) -> Result<()> {
        for (connection_id, credential) in credentials {
            self.write_credential(connection_id, None, credential)?;
        }
        self.db.flush()?;
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
        let replaced = self.write_credential(connection_id, Some(expected_version), credential)?;
        if replaced {
            self.db.flush()?;
        }
        Ok(replaced)
    }

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

    /// Connections whose refreshable credential expires at or before `until`, soonest
    /// first, at most `limit`. A range scan of the expiry index: the cost follows the
    /// number due, not the number stored.
    pub fn due_credentials(&self, until: UnixMs, limit: usize) -> Result<Vec<(UnixMs, String)>> {
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

    /// Drops a connection's expiry index entry (it is not ACTIVE, so the scheduler
    /// leaves it alone until a new credential indexes it again).
    pub fn unindex_expiry(&self, expires_at: UnixMs, connection_id: &str) -> Result<()> {
        self.expiry.remove(expiry_key(expires_at, connection_id))?;
        Ok(())
    }

    /// Moves a connection from `from` to `to` atomically; `None` when it was not in
    /// `from` (someone else moved it first), so each transition happens once.
    pub fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
    ) -> Result<Option<Connection>> {
        loop {
            let Some(current) = self.connections.get(id)? else {
                return Ok(None);
            };
            let mut connection: Connection = decode("connections", &current)?;
            if connection.status != from {
                return Ok(None);
            }
            connection.status = to;
            connection.updated_at = crate::domain::now_ms();
            let swapped =
                self.connections
                    .compare_and_swap(id, Some(current), Some(encode(&connection)))?;
            if swapped.is_ok() {
                self.bump_revision(&connection.tenant_id);
                self.connections.flush()?;
                return Ok(Some(connection));
            }
        }
    }

    // --- OAuth clients and states ----------------------------------------------------

    /// A `byok` connection's sealed OAuth client.
    pub fn oauth_client(&self, connection_id: &str) -> Result<Option<StoredClient>> {
        self.oauth_clients
            .get(connection_id)?
            .map(|v| decode("oauth_clients", &v))
            .transpose()
    }

    /// Stores a connection's sealed OAuth client, durably.
    pub fn put_oauth_client(&self, connection_id: &str, client: &StoredClient) -> Result<()> {
        self.oauth_clients.insert(connection_id, encode(client))?;
        self.oauth_clients.flush()?;
        Ok(())
    }

    /// Every sealed OAuth client (for key rotation and counts).
    pub fn all_oauth_clients(&self) -> impl Iterator<Item = Result<(String, StoredClient)>> + '_ {
        self.oauth_clients.iter().map(|entry| {
            let (key, value) = entry?;
            Ok((
                String::from_utf8_lossy(&key).into_owned(),
                decode("oauth_clients", &value)?,
            ))
        })
    }

    /// Replaces a sealed OAuth client if it is still `previous`.
    pub fn replace_oauth_client(
        &self,
        connection_id: &str,
        previous: &StoredClient,
        next: &StoredClient,
    ) -> Result<bool> {
        let swapped = self.oauth_clients.compare_and_swap(
            connection_id,
            Some(encode(previous)),
            Some(encode(next)),
        )?;
        Ok(swapped.is_ok())
    }

    /// Remembers a pending authorization under the hash of its state.
    pub fn put_oauth_state(&self, state_hash: &[u8], state: &OauthState) -> Result<()> {
        self.oauth_states.insert(state_hash, encode(state))?;
        Ok(())
    }

    /// Removes and returns a pending authorization: a state is usable once.
    pub fn take_oauth_state(&self, state_hash: &[u8]) -> Result<Option<OauthState>> {
        self.oauth_states
            .remove(state_hash)?
            .map(|v| decode("oauth_states", &v))
            .transpose()
    }

    /// Drops pending authorizations that expired before `now`.
    pub fn purge_oauth_states(&self, now: UnixMs) -> Result<usize> {
        let mut purged = 0;
        for entry in self.oauth_states.iter() {
            let (key, value) = entry?;
            let state: OauthState = decode("oauth_states", &value)?;
            if state.expires_at < now {
                self.oauth_states.remove(key)?;
                purged += 1;
            }
        }
        Ok(purged)
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

    /// Appends audit records, indexed by time for retention, as one batch per tree.
    pub fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        let mut by_tenant = sled::Batch::default();
        let mut by_time = sled::Batch::default();
        for record in records {
            let mut key = tenant_key(&record.tenant_id, "");
            key.extend_from_slice(&record.time.to_be_bytes());
            key.extend_from_slice(record.id.as_bytes());
            let mut time_key = record.time.to_be_bytes().to_vec();
            time_key.extend_from_slice(&key);
            by_tenant.insert(key, encode(record));
            by_time.insert(time_key, &[]);
        }
        self.audit.apply_batch(by_tenant)?;
        self.audit_time.apply_batch(by_time)?;
        Ok(())
    }

    /// A page of a tenant's audit records, newest first, and the cursor of the next
    /// page if there may be one.
    pub fn audit_page(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<String>)> {
        let prefix = tenant_key(tenant_id, "");
        let at = |ms: UnixMs| {
            let mut key = prefix.clone();
            key.extend_from_slice(&ms.to_be_bytes());
            key
        };
        let lower = at(query.since.unwrap_or(0));
        let mut upper = match query.until {
            Some(until) => at(until.saturating_add(1)),
            None => at(u64::MAX),
        };
        if let Some(cursor) = query.cursor.as_deref().and_then(|c| hex::decode(c).ok()) {
            let mut after = prefix.clone();
            after.extend_from_slice(&cursor);
            upper = upper.min(after);
        }
        let mut out = Vec::new();
        for entry in self.audit.range(lower..upper).rev() {
            let (key, value) = entry?;
            let record: AuditRecord = decode("audit", &value)?;
            let keep = query
                .connection_id
                .as_deref()
                .is_none_or(|c| record.connection_id.as_deref() == Some(c))
                && query
                    .capability
                    .as_deref()
                    .is_none_or(|c| record.capability == c);
            if keep {
                out.push(record);
                if out.len() >= query.limit {
                    return Ok((out, Some(hex::encode(&key[prefix.len()..]))));
                }
            }
        }
        Ok((out, None))
    }

    /// Deletes audit records older than `before`, at most `max` of them; returns how many.
    pub fn purge_audit(&self, before: UnixMs, max: usize) -> Result<usize> {
        let mut purged = 0;
        for entry in self
            .audit_time
            .range(..before.to_be_bytes().to_vec())
            .take(max)
        {
            let (by_time, _) = entry?;
            self.audit.remove(&by_time[8..])?;
            self.audit_time.remove(&by_time)?;
            purged += 1;
        }
        Ok(purged)
    }
}

/// `tenant \0 rest`: tenant ids cannot contain NUL, so prefixes never collide.
fn expiry_key(expires_at: UnixMs, connection_id: &str) -> Vec<u8> {
    let mut key = expires_at.to_be_bytes().to_vec();
    key.extend_from_slice(connection_id.as_bytes());
    key
}

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
