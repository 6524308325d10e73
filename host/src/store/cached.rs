//! What a process alone on its store keeps in memory: the three reads every request
//! makes before a connector runs (the tenant a token hashes to, the connection, its
//! sealed credential), served from memory and dropped on every write that could change
//! them. Only over sled, whose data one process owns; replicas on a shared database see
//! each other's writes only in the database, so they read it every time.
//!
//! Nothing here is plaintext: a credential is cached sealed, as the store holds it.
//! Absent entries are never cached (a flood of unknown tokens or ids grows nothing),
//! and each cache holds at most [`CAPACITY`] entries.

use super::{ConnectionStore, CredentialStore, Result, StoredCredential, TenantStore};
use crate::domain::{Connection, ConnectionStatus, Tenant, UnixMs};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Entries one cache keeps; past it, the cache starts over.
pub const CAPACITY: usize = 50_000;

/// The tenant, connection and credential stores, read through memory.
pub struct Cached {
    tenants: Arc<dyn TenantStore>,
    connections: Arc<dyn ConnectionStore>,
    credentials: Arc<dyn CredentialStore>,
    tenant_of_token: ReadThrough<Vec<u8>, String>,
    connection_by_id: ReadThrough<String, Connection>,
    credential_of: ReadThrough<String, StoredCredential>,
}

impl Cached {
    /// Caches in front of these stores, which nothing else may write.
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        connections: Arc<dyn ConnectionStore>,
        credentials: Arc<dyn CredentialStore>,
    ) -> Self {
        Cached {
            tenants,
            connections,
            credentials,
            tenant_of_token: ReadThrough::default(),
            connection_by_id: ReadThrough::default(),
            credential_of: ReadThrough::default(),
        }
    }
}

/// A map filled by reads and emptied of a key by each write to it.
///
/// A read that missed loads from the store and keeps what it loaded only if no write
/// was forgotten meanwhile (the generation has not moved), so a read racing a write can
/// never put back the value the write replaced.
struct ReadThrough<K, V> {
    map: RwLock<HashMap<K, V>>,
    /// Bumped, under the map's write lock, by every forget.
    generation: AtomicU64,
}

impl<K, V> Default for ReadThrough<K, V> {
    fn default() -> Self {
        ReadThrough {
            map: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }
}

impl<K: Eq + Hash, V: Clone> ReadThrough<K, V> {
    fn get_or_load<Q>(&self, key: &Q, load: impl FnOnce() -> Result<Option<V>>) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(value) = self.read().get(key) {
            return Ok(Some(value.clone()));
        }
        let seen = self.generation.load(Ordering::Acquire);
        let loaded = load()?;
        if let Some(value) = &loaded {
            let mut map = self.write();
            if self.generation.load(Ordering::Acquire) == seen {
                if map.len() >= CAPACITY {
                    map.clear();
                }
                map.insert(key.to_owned(), value.clone());
            }
        }
        Ok(loaded)
    }

    fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let mut map = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }

    fn forget_all(&self) {
        let mut map = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    // A panic while holding the lock leaves at worst a missing entry: keep going.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, V>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, V>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl TenantStore for Cached {
    fn create_tenant(&self, tenant: &Tenant, token_hash: &[u8]) -> Result<()> {
        let created = self.tenants.create_tenant(tenant, token_hash);
        self.tenant_of_token.forget(token_hash);
        created
    }

    fn tenant_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<String>> {
        self.tenant_of_token
            .get_or_load(token_hash, || self.tenants.tenant_by_token_hash(token_hash))
    }
}

// Each write forgets what it may have changed after it is made, whether it succeeded or
// not (a failed write may still have been applied).
impl ConnectionStore for Cached {
    fn put_connection(&self, connection: &Connection) -> Result<()> {
        let written = self.connections.put_connection(connection);
        self.connection_by_id.forget(connection.id.as_str());
        written
    }

    fn connection(&self, id: &str) -> Result<Option<Connection>> {
        self.connection_by_id
            .get_or_load(id, || self.connections.connection(id))
    }

    fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>> {
        self.connections.connections_of(tenant_id)
    }

    fn count_connections_of(&self, tenant_id: &str) -> Result<usize> {
        self.connections.count_connections_of(tenant_id)
    }

    fn status_counts(&self) -> Result<Vec<(ConnectionStatus, usize)>> {
        self.connections.status_counts()
    }

    fn delete_connection(&self, connection: &Connection) -> Result<()> {
        // The connection's credential goes with it.
        let deleted = self.connections.delete_connection(connection);
        self.connection_by_id.forget(connection.id.as_str());
        self.credential_of.forget(connection.id.as_str());
        deleted
    }

    fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<Option<Connection>> {
        let moved = self.connections.transition_status(id, from, to, reason);
        self.connection_by_id.forget(id);
        moved
    }
}

impl CredentialStore for Cached {
    fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>> {
        self.credential_of
            .get_or_load(connection_id, || self.credentials.credential(connection_id))
    }

    fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()> {
        let written = self.credentials.put_credential(connection_id, credential);
        self.credential_of.forget(connection_id);
        written
    }

    fn import_credentials(&self, credentials: &[(&str, &StoredCredential)]) -> Result<()> {
        let written = self.credentials.import_credentials(credentials);
        self.credential_of.forget_all();
        written
    }

    fn replace_credential(
        &self,
        connection_id: &str,
        expected_version: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        let replaced =
            self.credentials
                .replace_credential(connection_id, expected_version, credential);
        self.credential_of.forget(connection_id);
        replaced
    }

    fn due(&self, until: UnixMs, limit: usize) -> Result<Vec<(UnixMs, String)>> {
        self.credentials.due(until, limit)
    }

    fn unindex_expiry(&self, indexed_at: UnixMs, connection_id: &str) -> Result<()> {
        let unindexed = self.credentials.unindex_expiry(indexed_at, connection_id);
        self.credential_of.forget(connection_id);
        unindexed
    }

    fn reindex_expiry(&self, connection_id: &str, from: UnixMs, to: UnixMs) -> Result<bool> {
        let moved = self.credentials.reindex_expiry(connection_id, from, to);
        self.credential_of.forget(connection_id);
        moved
    }

    fn all_credentials(&self) -> Box<dyn Iterator<Item = Result<(String, StoredCredential)>> + '_> {
        self.credentials.all_credentials()
    }

    fn replace_credential_fenced(
        &self,
        connection_id: &str,
        expected_version: u64,
        generation: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        let replaced = self.credentials.replace_credential_fenced(
            connection_id,
            expected_version,
            generation,
            credential,
        );
        self.credential_of.forget(connection_id);
        replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_racing_a_write_never_keeps_the_value_the_write_replaced() {
        let cache: ReadThrough<String, u32> = ReadThrough::default();
        // The read loads the old value; the write lands and is forgotten before the
        // read tries to keep what it loaded.
        let loaded = cache
            .get_or_load("k", || {
                cache.forget("k");
                Ok(Some(1))
            })
            .unwrap();
        assert_eq!(loaded, Some(1), "the caller still gets what it read");
        let mut reloads = 0;
        let again = cache
            .get_or_load("k", || {
                reloads += 1;
                Ok(Some(2))
            })
            .unwrap();
        assert_eq!(
            (again, reloads),
            (Some(2), 1),
            "the stale value was not kept"
        );
        let cached = cache
            .get_or_load("k", || panic!("served from memory"))
            .unwrap();
        assert_eq!(cached, Some(2));
    }

    #[test]
    fn absent_entries_are_not_kept_and_the_size_is_bounded() {
        let cache: ReadThrough<String, u32> = ReadThrough::default();
        for i in 0..3 {
            assert_eq!(cache.get_or_load("missing", || Ok(None)).unwrap(), None);
            assert_eq!(cache.read().len(), 0, "round {i}");
        }
        for i in 0..(CAPACITY + 10) {
            cache.get_or_load(&i.to_string(), || Ok(Some(1))).unwrap();
        }
        assert!(cache.read().len() <= CAPACITY);
    }
}
