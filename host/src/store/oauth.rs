//! Sealed `byok` OAuth clients and pending authorizations (by the SHA-256 of their
//! state, single use, purged at expiry).

use super::{decode, encode, Result, SledStore};
use crate::domain::{SealedSecret, UnixMs};
use serde::{Deserialize, Serialize};

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

/// Sealed `byok` OAuth clients and pending authorizations.
pub trait OauthStore: Send + Sync {
    /// A `byok` connection's sealed OAuth client.
    fn oauth_client(&self, connection_id: &str) -> Result<Option<StoredClient>>;

    /// Stores a connection's sealed OAuth client, durably.
    fn put_oauth_client(&self, connection_id: &str, client: &StoredClient) -> Result<()>;

    /// Every sealed OAuth client (for key rotation and counts).
    fn all_oauth_clients(&self) -> Box<dyn Iterator<Item = Result<(String, StoredClient)>> + '_>;

    /// Replaces a sealed OAuth client if it is still `previous`, durably.
    fn replace_oauth_client(
        &self,
        connection_id: &str,
        previous: &StoredClient,
        next: &StoredClient,
    ) -> Result<bool>;

    /// Remembers a pending authorization under the hash of its state.
    fn put_oauth_state(&self, state_hash: &[u8], state: &OauthState) -> Result<()>;

    /// Removes and returns a pending authorization: a state is usable once.
    fn take_oauth_state(&self, state_hash: &[u8]) -> Result<Option<OauthState>>;

    /// Drops pending authorizations that expired before `now`.
    fn purge_oauth_states(&self, now: UnixMs) -> Result<usize>;
}

impl OauthStore for SledStore {
    fn oauth_client(&self, connection_id: &str) -> Result<Option<StoredClient>> {
        self.oauth_clients
            .get(connection_id)?
            .map(|v| decode("oauth_clients", &v))
            .transpose()
    }

    fn put_oauth_client(&self, connection_id: &str, client: &StoredClient) -> Result<()> {
        self.oauth_clients.insert(connection_id, encode(client))?;
        self.oauth_clients.flush()?;
        Ok(())
    }

    fn all_oauth_clients(&self) -> Box<dyn Iterator<Item = Result<(String, StoredClient)>> + '_> {
        Box::new(self.oauth_clients.iter().map(|entry| {
            let (key, value) = entry?;
            Ok((
                String::from_utf8_lossy(&key).into_owned(),
                decode("oauth_clients", &value)?,
            ))
        }))
    }

    fn replace_oauth_client(
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
        if swapped.is_ok() {
            self.oauth_clients.flush()?;
        }
        Ok(swapped.is_ok())
    }

    fn put_oauth_state(&self, state_hash: &[u8], state: &OauthState) -> Result<()> {
        self.oauth_states.insert(state_hash, encode(state))?;
        Ok(())
    }

    fn take_oauth_state(&self, state_hash: &[u8]) -> Result<Option<OauthState>> {
        self.oauth_states
            .remove(state_hash)?
            .map(|v| decode("oauth_states", &v))
            .transpose()
    }

    fn purge_oauth_states(&self, now: UnixMs) -> Result<usize> {
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
}
