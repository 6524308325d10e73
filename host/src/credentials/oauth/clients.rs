//! Which OAuth client a connection uses: the deployment's (`managed`, from
//! `CONDUIT_<SLUG>_CLIENT_ID` / `_CLIENT_SECRET`) or the tenant's own, sealed (`byok`).

use super::Error;
use crate::credentials::tokens::seal_context;
use crate::credentials::vault::{self, Vault};
use crate::domain::{Connection, OauthClient, OwnershipMode};
use crate::store::{OauthStore, StoredClient};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Finds the OAuth client of a connection.
#[derive(Clone)]
pub struct Clients {
    store: Arc<dyn OauthStore>,
    vault: Arc<Vault>,
}

impl Clients {
    /// Clients over the store and vault (for `byok`) and the environment (`managed`).
    pub fn new(store: Arc<dyn OauthStore>, vault: Arc<Vault>) -> Self {
        Clients { store, vault }
    }

    /// The client the connection's exchanges and refreshes use.
    pub fn for_connection(&self, connection: &Connection) -> Result<OauthClient, Error> {
        match connection.ownership_mode {
            OwnershipMode::Managed => managed_client(&connection.connector),
            OwnershipMode::Byok => {
                let stored = self.store.oauth_client(&connection.id)?.ok_or_else(|| {
                    Error::ClientMissing(
                        "this byok connection has no OAuth client yet: PUT /api/connections/{id}/oauth/client first".into(),
                    )
                })?;
                let plaintext = self.vault.open(
                    seal_context(&stored.credential_id, connection),
                    &stored.sealed,
                )?;
                serde_json::from_slice(&plaintext)
                    .map_err(|_| Error::Vault(vault::Error::OpenFailed))
            }
        }
    }

    /// Seals a `byok` connection's own client.
    pub fn put(&self, connection: &Connection, client: &OauthClient) -> Result<(), Error> {
        if connection.ownership_mode != OwnershipMode::Byok {
            return Err(Error::ClientMissing(
                "only byok connections carry their own OAuth client; managed ones use the deployment's".into(),
            ));
        }
        let credential_id = format!("client_{}", uuid::Uuid::new_v4().simple());
        let plaintext = Zeroizing::new(serde_json::to_vec(client).expect("clients serialize"));
        let sealed = self
            .vault
            .seal(seal_context(&credential_id, connection), &plaintext);
        self.store.put_oauth_client(
            &connection.id,
            &StoredClient {
                credential_id,
                sealed,
            },
        )?;
        Ok(())
    }
}

/// `CONDUIT_<SLUG>_CLIENT_ID` / `_CLIENT_SECRET`, read when needed so an operator can
/// see at once which variable is missing.
fn managed_client(slug: &str) -> Result<OauthClient, Error> {
    let prefix = format!("CONDUIT_{}", slug.to_ascii_uppercase().replace('-', "_"));
    let read = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        std::env::var(&name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::ClientMissing(format!(
                    "the deployment has no OAuth client for `{slug}`: set {name}"
                ))
            })
    };
    Ok(OauthClient {
        client_id: read("CLIENT_ID")?,
        client_secret: read("CLIENT_SECRET")?.into(),
    })
}
