//! The token lifecycle: sealing a connection's credential into the vault and vending
//! it back. A warm vend is one store read and one decrypt. Refresh-on-read, the refresh
//! scheduler and single flight build on this module.

use crate::domain::{now_ms, Connection, ConnectionStatus, CredentialKind, SecretFields};
use crate::store::{self, Store, StoredCredential};
use crate::vault::{self, Binding, Vault};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Vend and seal failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection must be re-authorized before it vends.
    #[error("the connection needs re-authorization")]
    NeedsReauth,
    /// The connection was revoked.
    #[error("the connection is revoked")]
    Revoked,
    /// The connection is in the error state.
    #[error("the connection is in the error state")]
    Broken,
    /// No credential has been stored for the connection.
    #[error("the connection has no credential yet")]
    NoCredential,
    /// The vault refused.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Seals and vends credentials.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
    vault: Arc<Vault>,
}

impl Tokens {
    /// Tokens over `store` and `vault`.
    pub fn new(store: Store, vault: Arc<Vault>) -> Self {
        Tokens { store, vault }
    }

    /// Seals `secret` as the connection's credential (replacing any previous one).
    pub fn put(
        &self,
        connection: &Connection,
        kind: CredentialKind,
        secret: &SecretFields,
    ) -> Result<StoredCredential, Error> {
        let previous = self.store.credential(&connection.id)?;
        let credential_id = format!("cred_{}", uuid::Uuid::new_v4().simple());
        let plaintext =
            Zeroizing::new(serde_json::to_vec(secret).expect("secret fields serialize"));
        let sealed = self
            .vault
            .seal(binding(&credential_id, connection), &plaintext);
        let stored = StoredCredential {
            credential_id,
            version: previous.map_or(1, |p| p.version + 1),
            kind,
            expires_at: secret.expires_at,
            sealed,
            updated_at: now_ms(),
        };
        self.store.put_credential(&connection.id, &stored)?;
        Ok(stored)
    }

    /// The connection's plaintext credential, if its status allows vending.
    pub fn vend(&self, connection: &Connection) -> Result<SecretFields, Error> {
        match connection.status {
            ConnectionStatus::Active => {}
            ConnectionStatus::NeedsReauth => return Err(Error::NeedsReauth),
            ConnectionStatus::Revoked => return Err(Error::Revoked),
            ConnectionStatus::Error => return Err(Error::Broken),
        }
        let stored = self
            .store
            .credential(&connection.id)?
            .ok_or(Error::NoCredential)?;
        self.open(connection, &stored)
    }

    fn open(
        &self,
        connection: &Connection,
        stored: &StoredCredential,
    ) -> Result<SecretFields, Error> {
        let plaintext = self
            .vault
            .open(binding(&stored.credential_id, connection), &stored.sealed)?;
        serde_json::from_slice(&plaintext).map_err(|_| Error::Vault(vault::Error::OpenFailed))
    }
}

fn binding<'a>(credential_id: &'a str, connection: &'a Connection) -> Binding<'a> {
    Binding {
        credential_id,
        connection_id: &connection.id,
    }
}
