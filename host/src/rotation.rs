//! Key rotation while serving: a new primary KEK is added to the keyring and every
//! stored data key (credentials and `byok` OAuth clients) is re-wrapped under it; the
//! secrets' own ciphertexts never change. Old KEKs keep opening what they wrap until
//! they are retired, which is refused while anything still uses them. Credentials are
//! re-wrapped under their connection's flight lock, so a rotation never races a
//! refresh and never loses a rotated refresh token.

use crate::domain::Connection;
use crate::store::{self, Store, StoredClient};
use crate::tokens::{self, Tokens};
use crate::vault::{self, Binding, Vault};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rotation failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The vault refused (unknown key, key in use, primary key).
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Re-wrapping a credential failed.
    #[error(transparent)]
    Tokens(#[from] tokens::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// One KEK and how many sealed records use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The KEK id.
    pub key_id: String,
    /// Whether new data keys are wrapped under it.
    pub primary: bool,
    /// Sealed records (credentials and OAuth clients) whose data key it wraps.
    pub in_use: usize,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The new primary KEK.
    pub key_id: String,
    /// Records re-wrapped under it.
    pub rewrapped: usize,
}

/// The rotation use cases.
#[derive(Clone)]
pub struct Rotation {
    store: Store,
    vault: Arc<Vault>,
    tokens: Tokens,
}

impl Rotation {
    /// Wires the use cases.
    pub fn new(store: Store, vault: Arc<Vault>, tokens: Tokens) -> Self {
        Rotation {
            store,
            vault,
            tokens,
        }
    }

    /// Each KEK with its usage count.
    pub fn keys(&self) -> Result<Vec<KeyUsage>, Error> {
        let usage = self.usage()?;
        let primary = self.vault.primary_key_id();
        Ok(self
            .vault
            .key_ids()
            .into_iter()
            .map(|key_id| KeyUsage {
                primary: key_id == primary,
                in_use: usage.get(&key_id).copied().unwrap_or(0),
                key_id,
            })
            .collect())
    }

    /// Adds a primary KEK and re-wraps every data key under it.
    pub async fn rotate(&self) -> Result<RotationReport, Error> {
        let key_id = self.vault.add_primary_key()?;
        tracing::info!(key = %key_id, "new primary key; re-wrapping data keys");
        let mut rewrapped = 0;
        let connection_ids: Vec<String> = self
            .store
            .all_credentials()
            .map(|entry| entry.map(|(id, _)| id))
            .collect::<Result<_, _>>()?;
        for id in connection_ids {
            if let Some(connection) = self.store.connection(&id)? {
                rewrapped += usize::from(self.tokens.rewrap(&connection).await?);
            }
        }
        let clients: Vec<(String, StoredClient)> =
            self.store.all_oauth_clients().collect::<Result<_, _>>()?;
        for (id, client) in clients {
            if let Some(connection) = self.store.connection(&id)? {
                rewrapped += usize::from(self.rewrap_client(&connection, client)?);
            }
        }
        self.store.flush()?;
        tracing::info!(key = %key_id, rewrapped, "key rotation done");
        Ok(RotationReport { key_id, rewrapped })
    }

    /// Removes a KEK nothing uses any more.
    pub fn retire(&self, key_id: &str) -> Result<(), Error> {
        let in_use = self.usage()?.get(key_id).copied().unwrap_or(0);
        self.vault.retire_key(key_id, in_use)?;
        tracing::info!(key = %key_id, "key retired");
        Ok(())
    }

    fn rewrap_client(
        &self,
        connection: &Connection,
        mut client: StoredClient,
    ) -> Result<bool, Error> {
        loop {
            if client.sealed.key_id == self.vault.primary_key_id() {
                return Ok(false);
            }
            let binding = Binding {
                credential_id: &client.credential_id,
                connection_id: &connection.id,
            };
            let next = StoredClient {
                sealed: self.vault.rewrap(binding, &client.sealed)?,
                credential_id: client.credential_id.clone(),
            };
            if self
                .store
                .replace_oauth_client(&connection.id, &client, &next)?
            {
                return Ok(true);
            }
            // Replaced meanwhile by the tenant: look at the new one.
            match self.store.oauth_client(&connection.id)? {
                Some(current) => client = current,
                None => return Ok(false),
            }
        }
    }

    fn usage(&self) -> Result<BTreeMap<String, usize>, Error> {
        let mut usage = BTreeMap::new();
        for entry in self.store.all_credentials() {
            let (_, credential) = entry?;
            *usage.entry(credential.sealed.key_id).or_default() += 1;
        }
        for entry in self.store.all_oauth_clients() {
            let (_, client) = entry?;
            *usage.entry(client.sealed.key_id).or_default() += 1;
        }
        Ok(usage)
    }
}
