//! Key rotation while serving: a new primary KEK is added to the keyring and every
//! stored data key (credentials, `byok` OAuth clients and the PKCE verifiers of pending
//! authorizations) is re-wrapped under it; the
//! secrets' own ciphertexts never change. Old KEKs keep opening what they wrap until
//! they are retired, which is refused while anything still uses them. Credentials are
//! re-wrapped under their connection's flight lock, so a rotation never races a
//! refresh and never loses a rotated refresh token.

use crate::credentials::oauth::verifier_seal_id;
use crate::credentials::tokens::{self, Tokens};
use crate::credentials::vault::{self, Vault};
use crate::domain::Connection;
use crate::store::{
    self, ConnectionStore, CredentialStore, IdempotencyStore, IdempotentResult, OauthState,
    OauthStore, StoredClient, Stores,
};
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

impl crate::domain::Classify for Error {
    fn classify(&self) -> crate::domain::ErrorClass {
        use crate::domain::{Class, ErrorClass};
        match self {
            // Only here is an unknown key the caller's mistake: retiring a key id that is
            // not in the keyring.
            Error::Vault(vault::Error::UnknownKey(_)) => {
                ErrorClass::new(Class::NotFound, "not_found")
            }
            Error::Vault(e) => e.classify(),
            Error::Tokens(e) => e.classify(),
            Error::Store(e) => e.classify(),
        }
    }
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
    credentials: Arc<dyn CredentialStore>,
    connections: Arc<dyn ConnectionStore>,
    oauth_store: Arc<dyn OauthStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    vault: Arc<Vault>,
    tokens: Tokens,
}

impl Rotation {
    /// Wires the use cases.
    pub fn new(stores: &Stores, vault: Arc<Vault>, tokens: Tokens) -> Self {
        Rotation {
            credentials: stores.credentials.clone(),
            connections: stores.connections.clone(),
            oauth_store: stores.oauth.clone(),
            idempotency: stores.idempotency.clone(),
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
            .credentials
            .all_credentials()
            .map(|entry| entry.map(|(id, _)| id))
            .collect::<Result<_, _>>()?;
        for id in connection_ids {
            if let Some(connection) = self.connections.connection(&id)? {
                rewrapped += usize::from(self.tokens.rewrap(&connection).await?);
            }
        }
        let clients: Vec<(String, StoredClient)> = self
            .oauth_store
            .all_oauth_clients()
            .collect::<Result<_, _>>()?;
        for (id, client) in clients {
            if let Some(connection) = self.connections.connection(&id)? {
                rewrapped += usize::from(self.rewrap_client(&connection, client)?);
            }
        }
        let pending: Vec<(Vec<u8>, OauthState)> = self
            .oauth_store
            .all_oauth_states()
            .collect::<Result<_, _>>()?;
        for (state_hash, state) in pending {
            // One that does not open (sealed by an earlier version for the state
            // itself, or expiring) must not stop the rotation; it keeps the key it has.
            match self.rewrap_verifier(&state_hash, state) {
                Ok(done) => rewrapped += usize::from(done),
                Err(e) => {
                    tracing::warn!(error = %e, "a pending authorization's verifier was not re-wrapped")
                }
            }
        }
        let results: Vec<(String, String, IdempotentResult)> = self
            .idempotency
            .all_idempotent_results()
            .collect::<Result<_, _>>()?;
        for (tenant, key, result) in results {
            match self.rewrap_result(&tenant, &key, result) {
                Ok(done) => rewrapped += usize::from(done),
                Err(e) => tracing::warn!(error = %e, "an idempotent result was not re-wrapped"),
            }
        }
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
            let context = tokens::seal_context(&client.credential_id, connection);
            let next = StoredClient {
                sealed: self.vault.rewrap(context, &client.sealed)?,
                credential_id: client.credential_id.clone(),
            };
            if self
                .oauth_store
                .replace_oauth_client(&connection.id, &client, &next)?
            {
                return Ok(true);
            }
            // Replaced meanwhile by the tenant: look at the new one.
            match self.oauth_store.oauth_client(&connection.id)? {
                Some(current) => client = current,
                None => return Ok(false),
            }
        }
    }

    /// Re-wraps a pending authorization's sealed PKCE verifier; one taken by its
    /// callback meanwhile needs nothing.
    fn rewrap_verifier(&self, state_hash: &[u8], state: OauthState) -> Result<bool, Error> {
        let Some(sealed) = &state.code_verifier else {
            return Ok(false);
        };
        if sealed.key_id == self.vault.primary_key_id() {
            return Ok(false);
        }
        let Some(connection) = self.connections.connection(&state.connection_id)? else {
            return Ok(false);
        };
        let id = verifier_seal_id(state_hash);
        let next = OauthState {
            code_verifier: Some(
                self.vault
                    .rewrap(tokens::seal_context(&id, &connection), sealed)?,
            ),
            ..state.clone()
        };
        Ok(self
            .oauth_store
            .replace_oauth_state(state_hash, &state, &next)?)
    }

    /// Re-wraps a stored idempotent result's sealed output.
    fn rewrap_result(
        &self,
        tenant: &str,
        key: &str,
        result: IdempotentResult,
    ) -> Result<bool, Error> {
        let Some(sealed) = &result.sealed_output else {
            return Ok(false);
        };
        if sealed.key_id == self.vault.primary_key_id() {
            return Ok(false);
        }
        let id = store::output_seal_id(&result.execution_id);
        let context = vault::SealContext {
            credential_id: &id,
            connection_id: &result.connection_id,
        };
        let next = IdempotentResult {
            sealed_output: Some(self.vault.rewrap(context, sealed)?),
            ..result.clone()
        };
        Ok(self
            .idempotency
            .replace_idempotent_result(tenant, key, &result, &next)?)
    }

    fn usage(&self) -> Result<BTreeMap<String, usize>, Error> {
        let mut usage = BTreeMap::new();
        for entry in self.credentials.all_credentials() {
            let (_, credential) = entry?;
            *usage.entry(credential.sealed.key_id).or_default() += 1;
        }
        for entry in self.oauth_store.all_oauth_clients() {
            let (_, client) = entry?;
            *usage.entry(client.sealed.key_id).or_default() += 1;
        }
        for entry in self.idempotency.all_idempotent_results() {
            let (_, _, result) = entry?;
            if let Some(sealed) = result.sealed_output {
                *usage.entry(sealed.key_id).or_default() += 1;
            }
        }
        for entry in self.oauth_store.all_oauth_states() {
            let (_, state) = entry?;
            if let Some(sealed) = state.code_verifier {
                *usage.entry(sealed.key_id).or_default() += 1;
            }
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::notify::Notifier;
    use crate::domain::{Connection, CredentialKind, OwnershipMode, SecretFields};
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn retiring_a_key_in_use_is_refused_until_rotation_rewraps_it() {
        let stores = Stores::temporary().unwrap();
        let vault = Arc::new(Vault::load(stores.keyring.clone(), vault::Key::generate()).unwrap());
        let tokens = Tokens::new(&stores, vault.clone(), Notifier::log_only());
        let rotation = Rotation::new(&stores, vault.clone(), tokens.clone());
        let conn = Connection::fixture("conn_1", OwnershipMode::Byok);
        stores.connections.put_connection(&conn).unwrap();
        let secret = SecretFields {
            api_key: Some("sk_test_rotation".into()),
            ..SecretFields::default()
        };
        tokens.put(&conn, CredentialKind::ApiKey, &secret).unwrap();
        let clients = crate::credentials::oauth::Clients::new(stores.oauth.clone(), vault.clone());
        let client = crate::domain::OauthClient {
            client_id: "id".into(),
            client_secret: "client-secret".into(),
        };
        clients.put(&conn, &client).unwrap();
        let idempotency =
            crate::exec::idempotency::Idempotency::new(stores.idempotency.clone(), vault.clone());
        let request = serde_json::json!({"n": 1});
        let crate::exec::idempotency::Begin::Run(flight) =
            idempotency.begin("acme", "k", &request).await.unwrap()
        else {
            panic!("a new key runs");
        };
        let output = serde_json::json!({"id": "pi_1"});
        idempotency
            .complete(flight, "exe_1", &output, &conn.id, "email.gmail")
            .unwrap();
        let old = vault.primary_key_id();

        // A new primary without re-wrapping: the old key still wraps all three records.
        vault.add_primary_key().unwrap();
        assert!(matches!(
            rotation.retire(&old),
            Err(Error::Vault(vault::Error::KeyInUse(_, 3)))
        ));
        let report = rotation.rotate().await.unwrap();
        assert_eq!(report.rewrapped, 3);
        let keys = rotation.keys().unwrap();
        assert_eq!(keys.iter().map(|k| k.in_use).sum::<usize>(), 3);
        assert!(keys
            .iter()
            .any(|k| k.key_id == report.key_id && k.primary && k.in_use == 3));
        for key in keys.iter().filter(|k| !k.primary) {
            rotation.retire(&key.key_id).unwrap();
        }
        assert_eq!(
            tokens.vend(&conn).await.unwrap().api_key(),
            Some("sk_test_rotation")
        );
        match idempotency.begin("acme", "k", &request).await.unwrap() {
            crate::exec::idempotency::Begin::Replay(replayed) => {
                assert_eq!(replayed.output, output)
            }
            _ => panic!("the re-wrapped result replays"),
        }
        let opened = clients.for_connection(&conn).unwrap();
        assert_eq!(
            (opened.client_id, opened.client_secret.expose_secret()),
            (
                client.client_id.clone(),
                client.client_secret.expose_secret()
            )
        );
    }
}
