//! Connections, each also listed under its tenant; a status change is a compare-and-swap
//! so each transition happens once.

use super::{decode, encode, expiry_key, tenant_key, Result, SledStore, StoredCredential};
use crate::domain::{Connection, ConnectionStatus};

/// Connections, listed by owner; a status change happens once.
pub trait ConnectionStore: Send + Sync {
    /// Writes a connection (create or update).
    fn put_connection(&self, connection: &Connection) -> Result<()>;

    /// A connection by id, whoever owns it; callers check the owner.
    fn connection(&self, id: &str) -> Result<Option<Connection>>;

    /// A tenant's connections, oldest id first.
    fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>>;

    /// How many connections a tenant has (its quota counts them).
    fn count_connections_of(&self, tenant_id: &str) -> Result<usize>;

    /// How many connections there are in each status (for metrics: a full scan).
    fn status_counts(&self) -> Result<Vec<(ConnectionStatus, usize)>>;

    /// Deletes a connection and its credential.
    fn delete_connection(&self, connection: &Connection) -> Result<()>;

    /// Moves a connection from `from` to `to` atomically, with why (`None` clears
    /// it); `None` when it was not in `from` (someone else moved it first), so each
    /// transition happens once.
    fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<Option<Connection>>;
}

impl ConnectionStore for SledStore {
    fn put_connection(&self, connection: &Connection) -> Result<()> {
        self.connections
            .insert(connection.id.as_bytes(), encode(connection))?;
        self.tenant_connections
            .insert(tenant_key(&connection.tenant_id, &connection.id), &[])?;
        Ok(())
    }

    fn connection(&self, id: &str) -> Result<Option<Connection>> {
        self.connections
            .get(id)?
            .map(|v| decode("connections", &v))
            .transpose()
    }

    fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>> {
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

    fn count_connections_of(&self, tenant_id: &str) -> Result<usize> {
        let prefix = tenant_key(tenant_id, "");
        let mut count = 0;
        for entry in self.tenant_connections.scan_prefix(&prefix) {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    fn status_counts(&self) -> Result<Vec<(ConnectionStatus, usize)>> {
        let mut counts: Vec<(ConnectionStatus, usize)> = Vec::new();
        for entry in self.connections.iter() {
            let (_, value) = entry?;
            let status = decode::<Connection>("connections", &value)?.status;
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, count)) => *count += 1,
                None => counts.push((status, 1)),
            }
        }
        Ok(counts)
    }

    fn delete_connection(&self, connection: &Connection) -> Result<()> {
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
        Ok(())
    }

    fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
        reason: Option<&str>,
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
            connection.status_reason = reason.map(str::to_owned);
            connection.updated_at = crate::domain::now_ms();
            let swapped =
                self.connections
                    .compare_and_swap(id, Some(current), Some(encode(&connection)))?;
            if swapped.is_ok() {
                self.connections.flush()?;
                return Ok(Some(connection));
            }
        }
    }
}
