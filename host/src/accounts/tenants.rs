//! Tenants and who is calling: tenant creation with a freshly minted API token, and
//! bearer-token authentication. Only SHA-256 hashes of tokens are stored; a token is
//! shown once, when it is minted.

use crate::domain::{now_ms, Class, Classify, ErrorClass, Tenant};
use crate::store::{self, TenantStore};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Tenant failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id is not acceptable.
    #[error("tenant id must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit")]
    InvalidId,
    /// The id is taken.
    #[error("tenant `{0}` already exists")]
    Exists(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::InvalidId => ErrorClass::new(Class::Invalid, "invalid_tenant_id"),
            Error::Exists(_) => ErrorClass::new(Class::Conflict, "tenant_exists"),
            Error::Store(e) => e.classify(),
        }
    }
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The deployment's administrator.
    Admin,
    /// A tenant, by id.
    Tenant(String),
}

/// A new random API token (`ct_` + 256 random bits, base64url).
pub fn mint_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a token: what is stored and compared.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Tenant registry and authentication.
#[derive(Clone)]
pub struct Tenants {
    store: Arc<dyn TenantStore>,
    admin_token_hash: [u8; 32],
}

impl Tenants {
    /// Tenants in `store`, with the admin token's hash.
    pub fn new(store: Arc<dyn TenantStore>, admin_token_hash: [u8; 32]) -> Self {
        Tenants {
            store,
            admin_token_hash,
        }
    }

    /// Creates a tenant and returns it with its token (the only time it is visible).
    pub fn create(&self, id: &str) -> Result<(Tenant, String), Error> {
        if !valid_id(id) {
            return Err(Error::InvalidId);
        }
        let tenant = Tenant {
            id: id.to_owned(),
            created_at: now_ms(),
        };
        let token = mint_token("ct");
        match self.store.create_tenant(&tenant, &hash_token(&token)) {
            Ok(()) => Ok((tenant, token)),
            Err(store::Error::Conflict) => Err(Error::Exists(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// The principal a bearer token stands for, if any.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, Error> {
        let hash = hash_token(token);
        if hash == self.admin_token_hash {
            return Ok(Some(Principal::Admin));
        }
        Ok(self
            .store
            .tenant_by_token_hash(&hash)?
            .map(Principal::Tenant))
    }
}

fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_authenticate() {
        let tenants = Tenants::new(
            Arc::new(crate::store::SledStore::temporary().unwrap()),
            hash_token("admin-secret"),
        );
        let (tenant, token) = tenants.create("acme-corp").unwrap();
        assert_eq!(tenant.id, "acme-corp");
        assert_eq!(
            tenants.authenticate(&token).unwrap(),
            Some(Principal::Tenant("acme-corp".into()))
        );
        assert_eq!(
            tenants.authenticate("admin-secret").unwrap(),
            Some(Principal::Admin)
        );
        assert_eq!(tenants.authenticate("ct_nope").unwrap(), None);
        assert!(matches!(tenants.create("acme-corp"), Err(Error::Exists(_))));
        for bad in ["", "Acme", "-x", "a b", "a\0b", &"x".repeat(64)] {
            assert!(
                matches!(tenants.create(bad), Err(Error::InvalidId)),
                "{bad:?}"
            );
        }
    }
}
