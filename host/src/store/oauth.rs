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

    /// How many of a tenant's authorizations are pending (not expired at `now`).
    fn count_oauth_states_of(&self, tenant_id: &str, now: UnixMs) -> Result<usize>;

    /// Every pending authorization with the hash of its state (for key rotation and
    /// key usage counts).
    fn all_oauth_states(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, OauthState)>> + '_>;

    /// Replaces a pending authorization if it is still `previous` (key rotation
    /// re-wrapping its verifier); `Ok(false)` when it was taken or changed meanwhile.
    fn replace_oauth_state(
        &self,
        state_hash: &[u8],
        previous: &OauthState,
        next: &OauthState,
    ) -> Result<bool>;
}

/// `tenant \0 state hash` in the per-tenant index of pending states.
fn tenant_state_key(tenant_id: &str, state_hash: &[u8]) -> Vec<u8> {
    let mut key = tenant_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(state_hash);
    key
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
        // The index entry first: a crash between the two leaves an entry that expires
        // (and is purged) with the state it would have counted, never a state uncounted.
        self.oauth_states_by_tenant.insert(
            tenant_state_key(&state.tenant_id, state_hash),
            &state.expires_at.to_be_bytes(),
        )?;
        self.oauth_states.insert(state_hash, encode(state))?;
        Ok(())
    }

    fn take_oauth_state(&self, state_hash: &[u8]) -> Result<Option<OauthState>> {
        let taken: Option<OauthState> = self
            .oauth_states
            .remove(state_hash)?
            .map(|v| decode("oauth_states", &v))
            .transpose()?;
        if let Some(state) = &taken {
            self.oauth_states_by_tenant
                .remove(tenant_state_key(&state.tenant_id, state_hash))?;
        }
        Ok(taken)
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
        for entry in self.oauth_states_by_tenant.iter() {
            let (key, value) = entry?;
            if expiry_of(&value) < now {
                self.oauth_states_by_tenant.remove(key)?;
            }
        }
        Ok(purged)
    }

    fn count_oauth_states_of(&self, tenant_id: &str, now: UnixMs) -> Result<usize> {
        let mut count = 0;
        for entry in self
            .oauth_states_by_tenant
            .scan_prefix(tenant_state_key(tenant_id, b""))
        {
            let (_, value) = entry?;
            if expiry_of(&value) >= now {
                count += 1;
            }
        }
        Ok(count)
    }

    fn all_oauth_states(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, OauthState)>> + '_> {
        Box::new(self.oauth_states.iter().map(|entry| {
            let (key, value) = entry?;
            Ok((key.to_vec(), decode("oauth_states", &value)?))
        }))
    }

    fn replace_oauth_state(
        &self,
        state_hash: &[u8],
        previous: &OauthState,
        next: &OauthState,
    ) -> Result<bool> {
        let swapped = self.oauth_states.compare_and_swap(
            state_hash,
            Some(encode(previous)),
            Some(encode(next)),
        )?;
        if swapped.is_ok() {
            self.oauth_states.flush()?;
        }
        Ok(swapped.is_ok())
    }
}

fn expiry_of(value: &[u8]) -> UnixMs {
    <[u8; 8]>::try_from(value).map_or(0, UnixMs::from_be_bytes)
}
