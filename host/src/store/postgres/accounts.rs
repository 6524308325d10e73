//! Tenants, connections, sealed credentials with their due index, OAuth clients and
//! pending states, and the vault's keyring.

use super::{big, rows_of, unsigned, PgStore, Session};
use crate::domain::{Connection, ConnectionStatus, Tenant, UnixMs};
use crate::store::{
    decode, encode, refresh_lease, ConnectionStore, CredentialStore, Error, KeyringStore,
    OauthState, OauthStore, Result, StoredClient, StoredCredential, TenantStore,
};

impl TenantStore for PgStore {
    fn create_tenant(&self, tenant: &Tenant, token_hash: &[u8]) -> Result<()> {
        self.transaction(|s| {
            let inserted = s.execute(
                "INSERT INTO tenants (id, doc) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant.id, &encode(tenant)],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict);
            }
            s.execute(
                "INSERT INTO tenant_tokens (token_hash, tenant_id) VALUES ($1, $2) \
                 ON CONFLICT (token_hash) DO UPDATE SET tenant_id = EXCLUDED.tenant_id",
                &[&token_hash, &tenant.id],
            )?;
            Ok(())
        })
    }

    fn tenant_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<String>> {
        self.session(|s| {
            let row = s.query_opt(
                "SELECT tenant_id FROM tenant_tokens WHERE token_hash = $1",
                &[&token_hash],
            )?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}

/// The status as its JSON name (`"ACTIVE"`), the column `status_counts` groups by.
fn status_name(status: ConnectionStatus) -> String {
    encode(&status).into_iter().map(char::from).collect()
}

fn write_connection(s: &mut Session<'_>, connection: &Connection) -> Result<()> {
    s.execute(
        "INSERT INTO connections (id, tenant_id, status, doc) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, \
         status = EXCLUDED.status, doc = EXCLUDED.doc",
        &[
            &connection.id,
            &connection.tenant_id,
            &status_name(connection.status),
            &encode(connection),
        ],
    )?;
    Ok(())
}

impl ConnectionStore for PgStore {
    fn put_connection(&self, connection: &Connection) -> Result<()> {
        self.session(|s| write_connection(s, connection))
    }

    fn connection(&self, id: &str) -> Result<Option<Connection>> {
        self.session(|s| {
            s.query_opt("SELECT doc FROM connections WHERE id = $1", &[&id])?
                .map(|row| decode("connections", row.get(0)))
                .transpose()
        })
    }

    fn connections_of(&self, tenant_id: &str) -> Result<Vec<Connection>> {
        self.session(|s| {
            s.query(
                "SELECT doc FROM connections WHERE tenant_id = $1 ORDER BY id",
                &[&tenant_id],
            )?
            .iter()
            .map(|row| decode("connections", row.get(0)))
            .collect()
        })
    }

    fn count_connections_of(&self, tenant_id: &str) -> Result<usize> {
        self.session(|s| {
            let row = s.query_opt(
                "SELECT count(*) FROM connections WHERE tenant_id = $1",
                &[&tenant_id],
            )?;
            Ok(row.map_or(0, |row| unsigned(row.get(0)) as usize))
        })
    }

    fn status_counts(&self) -> Result<Vec<(ConnectionStatus, usize)>> {
        self.session(|s| {
            s.query(
                "SELECT status, count(*) FROM connections GROUP BY status ORDER BY status",
                &[],
            )?
            .iter()
            .map(|row| {
                let name: &str = row.get(0);
                let status = decode("connections", name.as_bytes())?;
                Ok((status, unsigned(row.get(1)) as usize))
            })
            .collect()
        })
    }

    fn delete_connection(&self, connection: &Connection) -> Result<()> {
        self.transaction(|s| {
            let id = &connection.id;
            s.execute("DELETE FROM credentials WHERE connection_id = $1", &[id])?;
            s.execute("DELETE FROM oauth_clients WHERE connection_id = $1", &[id])?;
            s.execute("DELETE FROM connections WHERE id = $1", &[id])?;
            Ok(())
        })
    }

    fn transition_status(
        &self,
        id: &str,
        from: ConnectionStatus,
        to: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<Option<Connection>> {
        self.transaction(|s| {
            let Some(row) = s.query_opt(
                "SELECT doc FROM connections WHERE id = $1 FOR UPDATE",
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let mut connection: Connection = decode("connections", row.get(0))?;
            if connection.status != from {
                return Ok(None);
            }
            connection.status = to;
            connection.status_reason = reason.map(str::to_owned);
            connection.updated_at = crate::domain::now_ms();
            write_connection(s, &connection)?;
            Ok(Some(connection))
        })
    }
}

fn upsert_credential(
    s: &mut Session<'_>,
    connection_id: &str,
    credential: &StoredCredential,
) -> Result<()> {
    s.execute(
        "INSERT INTO credentials (connection_id, version, due_at, doc) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (connection_id) DO UPDATE SET version = EXCLUDED.version, \
         due_at = EXCLUDED.due_at, doc = EXCLUDED.doc",
        &[
            &connection_id,
            &big(credential.version),
            &credential.due_at().map(big),
            &encode(credential),
        ],
    )?;
    Ok(())
}

/// Replaces the credential if its stored version is still `expected_version`.
fn update_credential(
    s: &mut Session<'_>,
    connection_id: &str,
    expected_version: u64,
    credential: &StoredCredential,
) -> Result<bool> {
    let replaced = s.execute(
        "UPDATE credentials SET version = $3, due_at = $4, doc = $5 \
         WHERE connection_id = $1 AND version = $2",
        &[
            &connection_id,
            &big(expected_version),
            &big(credential.version),
            &credential.due_at().map(big),
            &encode(credential),
        ],
    )?;
    Ok(replaced == 1)
}

impl CredentialStore for PgStore {
    fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>> {
        self.session(|s| {
            s.query_opt(
                "SELECT doc FROM credentials WHERE connection_id = $1",
                &[&connection_id],
            )?
            .map(|row| decode("credentials", row.get(0)))
            .transpose()
        })
    }

    fn put_credential(&self, connection_id: &str, credential: &StoredCredential) -> Result<()> {
        self.session(|s| upsert_credential(s, connection_id, credential))
    }

    fn import_credentials(&self, credentials: &[(&str, &StoredCredential)]) -> Result<()> {
        self.transaction(|s| {
            for (connection_id, credential) in credentials {
                upsert_credential(s, connection_id, credential)?;
            }
            Ok(())
        })
    }

    fn replace_credential(
        &self,
        connection_id: &str,
        expected_version: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        self.session(|s| update_credential(s, connection_id, expected_version, credential))
    }

    fn due(&self, until: UnixMs, limit: usize) -> Result<Vec<(UnixMs, String)>> {
        self.session(|s| {
            let rows = s.query(
                "SELECT due_at, connection_id FROM credentials WHERE due_at <= $1 \
                 ORDER BY due_at, connection_id LIMIT $2",
                &[&big(until), &big(limit as u64)],
            )?;
            Ok(rows
                .iter()
                .map(|row| (unsigned(row.get(0)), row.get(1)))
                .collect())
        })
    }

    fn unindex_expiry(&self, indexed_at: UnixMs, connection_id: &str) -> Result<()> {
        self.session(|s| {
            s.execute(
                "UPDATE credentials SET due_at = NULL WHERE connection_id = $1 AND due_at = $2",
                &[&connection_id, &big(indexed_at)],
            )?;
            Ok(())
        })
    }

    fn reindex_expiry(&self, connection_id: &str, from: UnixMs, to: UnixMs) -> Result<bool> {
        self.transaction(|s| {
            let Some(row) = s.query_opt(
                "SELECT doc FROM credentials WHERE connection_id = $1 FOR UPDATE",
                &[&connection_id],
            )?
            else {
                return Ok(false);
            };
            let mut current: StoredCredential = decode("credentials", row.get(0))?;
            if current.due_at() != Some(from) {
                return Ok(false);
            }
            current.index_at = Some(to);
            upsert_credential(s, connection_id, &current)?;
            Ok(true)
        })
    }

    fn replace_credential_fenced(
        &self,
        connection_id: &str,
        expected_version: u64,
        generation: u64,
        credential: &StoredCredential,
    ) -> Result<bool> {
        self.transaction(|s| {
            // The lease row stays locked to the commit: a takeover waits for this write,
            // and the new holder's re-read sees it.
            let holds = s
                .query_opt(
                    "SELECT 1 FROM leases WHERE name = $1 AND generation = $2 FOR UPDATE",
                    &[&refresh_lease(connection_id), &big(generation)],
                )?
                .is_some();
            if !holds {
                return Ok(false);
            }
            update_credential(s, connection_id, expected_version, credential)
        })
    }

    fn all_credentials(&self) -> Box<dyn Iterator<Item = Result<(String, StoredCredential)>> + '_> {
        let rows = self.session(|s| {
            s.query(
                "SELECT connection_id, doc FROM credentials ORDER BY connection_id",
                &[],
            )
        });
        rows_of(rows, |row| {
            Ok((row.get(0), decode("credentials", row.get(1))?))
        })
    }
}

impl OauthStore for PgStore {
    fn oauth_client(&self, connection_id: &str) -> Result<Option<StoredClient>> {
        self.session(|s| {
            s.query_opt(
                "SELECT doc FROM oauth_clients WHERE connection_id = $1",
                &[&connection_id],
            )?
            .map(|row| decode("oauth_clients", row.get(0)))
            .transpose()
        })
    }

    fn put_oauth_client(&self, connection_id: &str, client: &StoredClient) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO oauth_clients (connection_id, doc) VALUES ($1, $2) \
                 ON CONFLICT (connection_id) DO UPDATE SET doc = EXCLUDED.doc",
                &[&connection_id, &encode(client)],
            )?;
            Ok(())
        })
    }

    fn all_oauth_clients(&self) -> Box<dyn Iterator<Item = Result<(String, StoredClient)>> + '_> {
        let rows = self.session(|s| {
            s.query(
                "SELECT connection_id, doc FROM oauth_clients ORDER BY connection_id",
                &[],
            )
        });
        rows_of(rows, |row| {
            Ok((row.get(0), decode("oauth_clients", row.get(1))?))
        })
    }

    fn replace_oauth_client(
        &self,
        connection_id: &str,
        previous: &StoredClient,
        next: &StoredClient,
    ) -> Result<bool> {
        self.session(|s| {
            let replaced = s.execute(
                "UPDATE oauth_clients SET doc = $3 WHERE connection_id = $1 AND doc = $2",
                &[&connection_id, &encode(previous), &encode(next)],
            )?;
            Ok(replaced == 1)
        })
    }

    fn put_oauth_state(&self, state_hash: &[u8], state: &OauthState) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO oauth_states (state_hash, tenant_id, expires_at, doc) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (state_hash) DO UPDATE SET \
                 tenant_id = EXCLUDED.tenant_id, expires_at = EXCLUDED.expires_at, \
                 doc = EXCLUDED.doc",
                &[
                    &state_hash,
                    &state.tenant_id,
                    &big(state.expires_at),
                    &encode(state),
                ],
            )?;
            Ok(())
        })
    }

    fn take_oauth_state(&self, state_hash: &[u8]) -> Result<Option<OauthState>> {
        self.session(|s| {
            s.query_opt(
                "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING doc",
                &[&state_hash],
            )?
            .map(|row| decode("oauth_states", row.get(0)))
            .transpose()
        })
    }

    fn purge_oauth_states(&self, now: UnixMs) -> Result<usize> {
        self.session(|s| {
            let purged = s.execute(
                "DELETE FROM oauth_states WHERE expires_at < $1",
                &[&big(now)],
            )?;
            Ok(purged as usize)
        })
    }

    fn count_oauth_states_of(&self, tenant_id: &str, now: UnixMs) -> Result<usize> {
        self.session(|s| {
            let row = s.query_opt(
                "SELECT count(*) FROM oauth_states WHERE tenant_id = $1 AND expires_at >= $2",
                &[&tenant_id, &big(now)],
            )?;
            Ok(row.map_or(0, |row| unsigned(row.get(0)) as usize))
        })
    }

    fn all_oauth_states(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, OauthState)>> + '_> {
        let rows = self.session(|s| {
            s.query(
                "SELECT state_hash, doc FROM oauth_states ORDER BY state_hash",
                &[],
            )
        });
        rows_of(rows, |row| {
            Ok((row.get(0), decode("oauth_states", row.get(1))?))
        })
    }

    fn replace_oauth_state(
        &self,
        state_hash: &[u8],
        previous: &OauthState,
        next: &OauthState,
    ) -> Result<bool> {
        self.session(|s| {
            let replaced = s.execute(
                "UPDATE oauth_states SET tenant_id = $3, expires_at = $4, doc = $5 \
                 WHERE state_hash = $1 AND doc = $2",
                &[
                    &state_hash,
                    &encode(previous),
                    &next.tenant_id,
                    &big(next.expires_at),
                    &encode(next),
                ],
            )?;
            Ok(replaced == 1)
        })
    }
}

impl KeyringStore for PgStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.session(|s| {
            let row = s.query_opt("SELECT sealed FROM vault_keyring WHERE id = 1", &[])?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn save(&self, sealed: &[u8]) -> Result<()> {
        self.session(|s| {
            s.execute(
                "INSERT INTO vault_keyring (id, sealed) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed",
                &[&sealed],
            )?;
            Ok(())
        })
    }

    fn create(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        self.session(|s| {
            let created = s.execute(
                "INSERT INTO vault_keyring (id, sealed) VALUES (1, $1) ON CONFLICT DO NOTHING",
                &[&sealed],
            )?;
            if created == 1 {
                return Ok(None);
            }
            let row = s.query_opt("SELECT sealed FROM vault_keyring WHERE id = 1", &[])?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}
