//! The vault: envelope encryption of credentials.
//!
//! Each credential is sealed with AES-256-GCM under a fresh random 256-bit data key,
//! with associated data binding the ciphertext to its credential id and connection id
//! (a ciphertext moved to another row fails to open). The data key is wrapped by a
//! key-encryption key (KEK) from the keyring, named by its key id. The keyring itself is
//! kept through the store's `KeyringStore`, sealed under the root key (`CONDUIT_MASTER_KEY`), as Vault keeps its
//! keyring under its root key, so several KEKs can coexist while data keys are re-wrapped.
//! Plaintext keys and secrets live in zeroizing buffers.

use crate::store::KeyringStore;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// Vault failures. None of them carries key or plaintext material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The root key does not open the stored keyring.
    #[error("the master key does not open this vault's keyring (wrong CONDUIT_MASTER_KEY?)")]
    WrongRootKey,
    /// A sealed value names a KEK the keyring does not hold.
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// Authentication failed: tampered, moved, or sealed under another key.
    #[error("sealed data failed to open")]
    OpenFailed,
    /// A key is still in use and cannot be retired.
    #[error("key {0} still wraps {1} credentials")]
    KeyInUse(String, usize),
    /// The key to retire is the primary.
    #[error("the primary key cannot be retired")]
    RetirePrimary,
    /// Key material is malformed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Storage failed.
    #[error("vault storage: {0}")]
    Storage(#[from] crate::store::Error),
}

impl crate::domain::Classify for Error {
    fn classify(&self) -> crate::domain::ErrorClass {
        use crate::domain::{Class, ErrorClass};
        match self {
            Error::KeyInUse(..) => ErrorClass::new(Class::Conflict, "key_in_use"),
            Error::RetirePrimary => ErrorClass::new(Class::Conflict, "key_is_primary"),
            // A sealed record naming a key the keyring lacks is an integrity fault.
            Error::UnknownKey(_)
            | Error::WrongRootKey
            | Error::OpenFailed
            | Error::InvalidKey(_)
            | Error::Storage(_) => ErrorClass::internal(),
        }
    }
}

/// Result with the vault's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A 256-bit key, zeroized on drop.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; 32]>);

impl Key {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Key(bytes)
    }

    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidKey(format!("expected 32 bytes, got {}", bytes.len())))?;
        Ok(Key(Zeroizing::new(array)))
    }

    /// A key from base64 of 32 bytes (the `CONDUIT_MASTER_KEY` format).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| Error::InvalidKey("not base64".into()))?,
        );
        Self::from_bytes(&bytes)
    }

    /// Base64 of the key, for writing a generated development key to disk.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        Sealed { nonce, ciphertext }
    }

    fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::OpenFailed)
    }
}

pub use crate::domain::{Sealed, SealedSecret};

/// What a credential is sealed for: its id and its connection's, part of the associated
/// data of both layers.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    /// The credential's own id.
    pub credential_id: &'a str,
    /// The connection owning it.
    pub connection_id: &'a str,
}

impl SealContext<'_> {
    fn secret_aad(&self) -> Vec<u8> {
        format!(
            "conduit/secret/v1|{}|{}",
            self.credential_id, self.connection_id
        )
        .into_bytes()
    }
    fn data_key_aad(&self, key_id: &str) -> Vec<u8> {
        format!(
            "conduit/data-key/v1|{key_id}|{}|{}",
            self.credential_id, self.connection_id
        )
        .into_bytes()
    }
}

const KEYRING_AAD: &[u8] = b"conduit/keyring/v1";

/// The KEKs, by id, and which one wraps new data keys.
struct Keyring {
    primary: String,
    keys: BTreeMap<String, Key>,
}

#[derive(Serialize, Deserialize)]
struct KeyringDoc {
    primary: String,
    keys: BTreeMap<String, String>,
}

impl Keyring {
    fn to_doc(&self) -> Zeroizing<Vec<u8>> {
        let doc = KeyringDoc {
            primary: self.primary.clone(),
            keys: self
                .keys
                .iter()
                .map(|(id, k)| (id.clone(), k.to_base64().to_string()))
                .collect(),
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&doc).expect("keyring serializes"));
        for mut encoded in doc.keys.into_values() {
            zeroize::Zeroize::zeroize(&mut encoded);
        }
        bytes
    }

    fn from_doc(bytes: &[u8]) -> Result<Self> {
        let doc: KeyringDoc = serde_json::from_slice(bytes).map_err(|_| Error::OpenFailed)?;
        let mut keys = BTreeMap::new();
        for (id, mut encoded) in doc.keys {
            keys.insert(id, Key::from_base64(&encoded)?);
            zeroize::Zeroize::zeroize(&mut encoded);
        }
        Ok(Keyring {
            primary: doc.primary,
            keys,
        })
    }
}

/// The vault: seals and opens credentials, and manages the keyring.
pub struct Vault {
    root: Key,
    keyring: RwLock<Keyring>,
    stored: Arc<dyn KeyringStore>,
}

impl Vault {
    /// Opens the keyring in `stored` with `root`, or creates one with a first KEK. Of
    /// replicas creating one at once, the first to store it wins and the others open it.
    pub fn load(stored: Arc<dyn KeyringStore>, root: Key) -> Result<Self> {
        let existing = match stored.load()? {
            Some(existing) => Some(existing),
            None => {
                let mut keyring = Keyring {
                    primary: new_key_id(),
                    keys: BTreeMap::new(),
                };
                keyring
                    .keys
                    .insert(keyring.primary.clone(), Key::generate());
                match stored.create(&seal_keyring(&root, &keyring))? {
                    None => {
                        return Ok(Vault {
                            root,
                            keyring: RwLock::new(keyring),
                            stored,
                        })
                    }
                    Some(winner) => Some(winner),
                }
            }
        };
        let keyring = open_keyring(&root, existing.as_deref())?;
        Ok(Vault {
            root,
            keyring: RwLock::new(keyring),
            stored,
        })
    }

    /// Seals `plaintext` for the credential and connection in `context`.
    pub fn seal(&self, context: SealContext<'_>, plaintext: &[u8]) -> SealedSecret {
        let data_key = Key::generate();
        let secret = data_key.seal(plaintext, &context.secret_aad());
        let keyring = self.keyring.read().expect("keyring lock");
        let kek = &keyring.keys[&keyring.primary];
        let wrapped_key = kek.seal(data_key.0.as_ref(), &context.data_key_aad(&keyring.primary));
        SealedSecret {
            key_id: keyring.primary.clone(),
            wrapped_key,
            secret,
        }
    }

    /// Opens a sealed credential; fails unless `context` is the one it was sealed for.
    pub fn open(
        &self,
        context: SealContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let data_key = self.unwrap_data_key(context, sealed)?;
        data_key.open(&sealed.secret, &context.secret_aad())
    }

    /// A key id this keyring does not know may be a KEK another replica sharing the
    /// store added: the stored keyring is read again, once, before giving up.
    fn unwrap_data_key(&self, context: SealContext<'_>, sealed: &SealedSecret) -> Result<Key> {
        match self.unwrap_with_current(context, sealed) {
            Err(Error::UnknownKey(_)) => {
                self.reload()?;
                self.unwrap_with_current(context, sealed)
            }
            unwrapped => unwrapped,
        }
    }

    fn unwrap_with_current(&self, context: SealContext<'_>, sealed: &SealedSecret) -> Result<Key> {
        let keyring = self.keyring.read().expect("keyring lock");
        let kek = keyring
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| Error::UnknownKey(sealed.key_id.clone()))?;
        let bytes = kek.open(&sealed.wrapped_key, &context.data_key_aad(&sealed.key_id))?;
        Key::from_bytes(&bytes)
    }

    /// Replaces the keyring in memory with the stored one: replicas sharing a store
    /// follow each other's rotations (a new primary, a retired KEK) this way.
    pub fn reload(&self) -> Result<()> {
        let stored = self.stored.load()?;
        if stored.is_none() {
            return Ok(());
        }
        let keyring = open_keyring(&self.root, stored.as_deref())?;
        *self.keyring.write().expect("keyring lock") = keyring;
        Ok(())
    }

    /// The id of the KEK that wraps new data keys.
    pub fn primary_key_id(&self) -> String {
        self.keyring.read().expect("keyring lock").primary.clone()
    }

    /// Every KEK id in the keyring.
    pub fn key_ids(&self) -> Vec<String> {
        self.keyring
            .read()
            .expect("keyring lock")
            .keys
            .keys()
            .cloned()
            .collect()
    }

    /// Adds a new KEK and makes it primary; old KEKs keep opening what they wrap. It
    /// starts from the stored keyring, so a change another replica made is kept.
    pub fn add_primary_key(&self) -> Result<String> {
        self.reload()?;
        let mut keyring = self.keyring.write().expect("keyring lock");
        let id = new_key_id();
        keyring.keys.insert(id.clone(), Key::generate());
        let previous = std::mem::replace(&mut keyring.primary, id.clone());
        if let Err(e) = persist_keyring(self.stored.as_ref(), &self.root, &keyring) {
            keyring.primary = previous;
            keyring.keys.remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// Re-wraps a credential's data key under the primary KEK; the secret ciphertext is
    /// untouched.
    pub fn rewrap(&self, context: SealContext<'_>, sealed: &SealedSecret) -> Result<SealedSecret> {
        let data_key = self.unwrap_data_key(context, sealed)?;
        let keyring = self.keyring.read().expect("keyring lock");
        let kek = &keyring.keys[&keyring.primary];
        let wrapped_key = kek.seal(data_key.0.as_ref(), &context.data_key_aad(&keyring.primary));
        Ok(SealedSecret {
            key_id: keyring.primary.clone(),
            wrapped_key,
            secret: sealed.secret.clone(),
        })
    }

    /// Removes a KEK that no credential uses (`in_use` is the caller's count).
    pub fn retire_key(&self, key_id: &str, in_use: usize) -> Result<()> {
        self.reload()?;
        let mut keyring = self.keyring.write().expect("keyring lock");
        if keyring.primary == key_id {
            return Err(Error::RetirePrimary);
        }
        if in_use > 0 {
            return Err(Error::KeyInUse(key_id.to_owned(), in_use));
        }
        let removed = keyring
            .keys
            .remove(key_id)
            .ok_or_else(|| Error::UnknownKey(key_id.to_owned()))?;
        if let Err(e) = persist_keyring(self.stored.as_ref(), &self.root, &keyring) {
            keyring.keys.insert(key_id.to_owned(), removed);
            return Err(e);
        }
        Ok(())
    }
}

/// Re-seals the keyring in `stored` from root key `old` to `new`; the KEKs, and so
/// every credential, are unchanged. Fails (changing nothing) unless `old` opens it.
pub fn reseal_keyring(stored: &dyn KeyringStore, old: &Key, new: &Key) -> Result<()> {
    let doc = stored.load()?.ok_or(Error::WrongRootKey)?;
    let sealed: Sealed = serde_json::from_slice(&doc).map_err(|_| Error::WrongRootKey)?;
    let doc = old
        .open(&sealed, KEYRING_AAD)
        .map_err(|_| Error::WrongRootKey)?;
    let keyring = Keyring::from_doc(&doc)?;
    persist_keyring(stored, new, &keyring)
}

fn persist_keyring(stored: &dyn KeyringStore, root: &Key, keyring: &Keyring) -> Result<()> {
    stored.save(&seal_keyring(root, keyring))?;
    Ok(())
}

/// A stored keyring opened with the root key; anything else is the wrong root key.
fn open_keyring(root: &Key, stored: Option<&[u8]>) -> Result<Keyring> {
    let sealed: Sealed = stored
        .and_then(|doc| serde_json::from_slice(doc).ok())
        .ok_or(Error::WrongRootKey)?;
    let doc = root
        .open(&sealed, KEYRING_AAD)
        .map_err(|_| Error::WrongRootKey)?;
    Keyring::from_doc(&doc)
}

fn seal_keyring(root: &Key, keyring: &Keyring) -> Vec<u8> {
    let sealed = root.seal(&keyring.to_doc(), KEYRING_AAD);
    serde_json::to_vec(&sealed).expect("sealed serializes")
}

fn new_key_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("kek_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn vault_with(root: Key) -> (Vault, SledStore) {
        let store = SledStore::temporary().unwrap();
        (Vault::load(store.keyring().unwrap(), root).unwrap(), store)
    }

    const CONTEXT: SealContext<'static> = SealContext {
        credential_id: "cred_1",
        connection_id: "conn_1",
    };

    /// The cipher's expanded key schedule is wiped when a sealing or opening ends: this
    /// does not compile unless `aes` is built with its `zeroize` feature.
    #[test]
    fn the_aes_key_schedule_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
    }

    #[test]
    fn round_trip() {
        let (vault, _db) = vault_with(Key::generate());
        let sealed = vault.seal(CONTEXT, b"sk_test_123");
        assert_eq!(
            vault.open(CONTEXT, &sealed).unwrap().as_slice(),
            b"sk_test_123"
        );
        assert_eq!(sealed.key_id, vault.primary_key_id());
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let (vault, _db) = vault_with(Key::generate());
        let sealed = vault.seal(CONTEXT, b"sk_live_plaintext_marker");
        let stored = serde_json::to_string(&sealed).unwrap();
        assert!(!stored.contains("sk_live_plaintext_marker"));
        assert!(!stored.contains(&hex::encode(b"sk_live_plaintext_marker")));
        let encoded = STANDARD.encode(b"sk_live_plaintext_marker");
        assert!(!stored.contains(&encoded[..16]));
    }

    #[test]
    fn ciphertext_moved_to_another_credential_or_connection_fails() {
        let (vault, _db) = vault_with(Key::generate());
        let sealed = vault.seal(CONTEXT, b"secret");
        let other_credential = SealContext {
            credential_id: "cred_2",
            connection_id: "conn_1",
        };
        let other_connection = SealContext {
            credential_id: "cred_1",
            connection_id: "conn_2",
        };
        assert!(matches!(
            vault.open(other_credential, &sealed),
            Err(Error::OpenFailed)
        ));
        assert!(matches!(
            vault.open(other_connection, &sealed),
            Err(Error::OpenFailed)
        ));
    }

    #[test]
    fn wrong_kek_fails() {
        let (vault, _db) = vault_with(Key::generate());
        let (other, _db2) = vault_with(Key::generate());
        let mut sealed = vault.seal(CONTEXT, b"secret");
        // Another vault's KEK under the same id still cannot unwrap the data key.
        sealed.key_id = other.primary_key_id();
        assert!(matches!(
            other.open(CONTEXT, &sealed),
            Err(Error::OpenFailed)
        ));
        sealed.key_id = "kek_missing".into();
        assert!(matches!(
            vault.open(CONTEXT, &sealed),
            Err(Error::UnknownKey(_))
        ));
    }

    #[test]
    fn wrong_root_key_cannot_open_the_keyring() {
        let store = SledStore::temporary().unwrap();
        let tree = store.keyring().unwrap();
        let root = Key::generate();
        let sealed = {
            let vault = Vault::load(tree.clone(), root.clone()).unwrap();
            vault.seal(CONTEXT, b"secret")
        };
        assert!(matches!(
            Vault::load(tree.clone(), Key::generate()),
            Err(Error::WrongRootKey)
        ));
        let reopened = Vault::load(tree, root).unwrap();
        assert_eq!(
            reopened.open(CONTEXT, &sealed).unwrap().as_slice(),
            b"secret"
        );
    }

    #[test]
    fn tampering_fails() {
        let (vault, _db) = vault_with(Key::generate());
        let sealed = vault.seal(CONTEXT, b"secret");
        let mut flipped_secret = sealed.clone();
        flipped_secret.secret.ciphertext[0] ^= 1;
        assert!(matches!(
            vault.open(CONTEXT, &flipped_secret),
            Err(Error::OpenFailed)
        ));
        let mut flipped_key = sealed.clone();
        flipped_key.wrapped_key.ciphertext[3] ^= 0x80;
        assert!(matches!(
            vault.open(CONTEXT, &flipped_key),
            Err(Error::OpenFailed)
        ));
        let mut flipped_nonce = sealed;
        flipped_nonce.secret.nonce[0] ^= 1;
        assert!(matches!(
            vault.open(CONTEXT, &flipped_nonce),
            Err(Error::OpenFailed)
        ));
    }

    #[test]
    fn rotation_rewraps_and_retires() {
        let (vault, _db) = vault_with(Key::generate());
        let old = vault.primary_key_id();
        let sealed = vault.seal(CONTEXT, b"secret");
        let new = vault.add_primary_key().unwrap();
        assert_ne!(old, new);
        assert_eq!(vault.open(CONTEXT, &sealed).unwrap().as_slice(), b"secret");
        let rewrapped = vault.rewrap(CONTEXT, &sealed).unwrap();
        assert_eq!(rewrapped.key_id, new);
        assert!(matches!(
            vault.retire_key(&old, 1),
            Err(Error::KeyInUse(_, 1))
        ));
        assert!(matches!(
            vault.retire_key(&new, 0),
            Err(Error::RetirePrimary)
        ));
        vault.retire_key(&old, 0).unwrap();
        assert_eq!(
            vault.open(CONTEXT, &rewrapped).unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(
            vault.open(CONTEXT, &sealed),
            Err(Error::UnknownKey(_))
        ));
    }

    #[test]
    fn resealing_the_root_keeps_every_credential() {
        let store = SledStore::temporary().unwrap();
        let tree = store.keyring().unwrap();
        let (old_root, new_root) = (Key::generate(), Key::generate());
        let sealed = Vault::load(tree.clone(), Key::from_bytes(&old_root.0[..]).unwrap())
            .unwrap()
            .seal(CONTEXT, b"secret");
        assert!(matches!(
            reseal_keyring(tree.as_ref(), &new_root, &old_root),
            Err(Error::WrongRootKey)
        ));
        reseal_keyring(tree.as_ref(), &old_root, &new_root).unwrap();
        assert!(matches!(
            Vault::load(tree.clone(), old_root),
            Err(Error::WrongRootKey)
        ));
        let vault = Vault::load(tree, new_root).unwrap();
        assert_eq!(vault.open(CONTEXT, &sealed).unwrap().as_slice(), b"secret");
    }
}
