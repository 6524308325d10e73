//! Storing and vending a tenant's credential: the connection must be the caller's and
//! not revoked, its connector loaded, and the credential the shape the connector's
//! auth type needs. Handlers only translate documents.

use crate::accounts::connections::{self, Connections};
use crate::credentials::tokens::{self, Tokens};
use crate::domain::{
    parse_rfc3339, AuthType, Class, Classify, Connection, ConnectionStatus, CredentialKind,
    ErrorClass, SecretFields,
};
use crate::runtime::connectors::Connectors;
use crate::runtime::CallError;
use crate::store::StoredCredential;
use std::sync::Arc;

/// Why a credential was not stored or vended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such connection of the caller's.
    #[error(transparent)]
    Connection(#[from] connections::Error),
    /// The connection is revoked: nothing is stored for it any more.
    #[error("the connection is revoked")]
    Revoked,
    /// The connection's connector is not loaded.
    #[error(transparent)]
    Connector(#[from] CallError),
    /// The credential's kind does not fit the connector's auth type.
    #[error("this connector's auth type is {auth_type:?}; a `{kind:?}` credential does not fit")]
    KindMismatch {
        /// The connector's.
        auth_type: AuthType,
        /// The credential's.
        kind: CredentialKind,
    },
    /// `expiresAt` is not an RFC 3339 time.
    #[error("expiresAt must be an RFC 3339 time")]
    Expiry,
    /// A field the credential needs is missing.
    #[error("`{0}` is required for this credential")]
    Missing(&'static str),
    /// Sealing or vending failed.
    #[error(transparent)]
    Tokens(#[from] tokens::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::Connection(e) => e.classify(),
            Error::Connector(e) => e.classify(),
            Error::Tokens(e) => e.classify(),
            Error::Revoked => ErrorClass::new(Class::Conflict, "revoked"),
            Error::KindMismatch { .. } => {
                ErrorClass::new(Class::Invalid, "credential_kind_mismatch")
            }
            Error::Missing(_) | Error::Expiry => {
                ErrorClass::new(Class::Invalid, "invalid_attributes")
            }
        }
    }
}

/// A credential as a tenant hands it over.
pub struct NewCredential {
    /// OAuth tokens or an API key.
    pub kind: CredentialKind,
    /// The secret fields (`expires_at` is taken from the text below).
    pub secret: SecretFields,
    /// The access token's expiry, RFC 3339.
    pub expires_at: Option<String>,
}

/// The credential use cases.
#[derive(Clone)]
pub struct Vending {
    connections: Connections,
    connectors: Arc<dyn Connectors>,
    tokens: Tokens,
}

impl Vending {
    /// Wires the use cases.
    pub fn new(connections: Connections, connectors: Arc<dyn Connectors>, tokens: Tokens) -> Self {
        Vending {
            connections,
            connectors,
            tokens,
        }
    }

    /// Seals `secret` as the credential of the tenant's connection; a fresh credential
    /// is the way back from `NEEDS_REAUTH`.
    pub fn store(
        &self,
        tenant_id: &str,
        connection_id: &str,
        new: NewCredential,
    ) -> Result<(StoredCredential, Connection), Error> {
        let connection = self.connections.get(tenant_id, connection_id)?;
        if connection.status == ConnectionStatus::Revoked {
            return Err(Error::Revoked);
        }
        let spec = self.connectors.require(&connection)?.spec;
        check_kind(spec.auth_type, new.kind)?;
        let mut secret = new.secret;
        secret.expires_at = match &new.expires_at {
            None => None,
            Some(text) => Some(parse_rfc3339(text).ok_or(Error::Expiry)?),
        };
        check_fields(spec.auth_type, new.kind, &secret)?;
        Ok(self.tokens.put(&connection, new.kind, &secret)?)
    }

    /// The tenant's connection's credential, refreshed first when it is near expiry.
    pub async fn vend(&self, tenant_id: &str, connection_id: &str) -> Result<SecretFields, Error> {
        let connection = self.connections.get(tenant_id, connection_id)?;
        Ok(self.tokens.vend(&connection).await?)
    }
}

/// Whether `secret` is a credential of `kind` that a connector of `auth_type` can use.
#[cfg(test)]
fn check_shape(
    auth_type: AuthType,
    kind: CredentialKind,
    secret: &SecretFields,
) -> Result<(), Error> {
    check_kind(auth_type, kind)?;
    check_fields(auth_type, kind, secret)
}

/// Whether a connector of `auth_type` takes credentials of `kind`.
fn check_kind(auth_type: AuthType, kind: CredentialKind) -> Result<(), Error> {
    let expected = match auth_type {
        AuthType::Oauth2 => Some(CredentialKind::Oauth2),
        AuthType::ApiKey | AuthType::ApiKeySecret => Some(CredentialKind::ApiKey),
        AuthType::None => None,
    };
    if expected != Some(kind) {
        return Err(Error::KindMismatch { auth_type, kind });
    }
    Ok(())
}

/// Whether `secret` has the fields a `kind` credential for `auth_type` needs.
fn check_fields(
    auth_type: AuthType,
    kind: CredentialKind,
    secret: &SecretFields,
) -> Result<(), Error> {
    let present = |v: Option<&str>| v.is_some_and(|s| !s.is_empty());
    let missing = match kind {
        CredentialKind::Oauth2 if !present(secret.access_token()) => Some("accessToken"),
        CredentialKind::ApiKey if !present(secret.api_key()) => Some("apiKey"),
        _ if auth_type == AuthType::ApiKeySecret && !present(secret.api_secret()) => {
            Some("apiSecret")
        }
        _ => None,
    };
    match missing {
        Some(field) => Err(Error::Missing(field)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_key(key: &str) -> SecretFields {
        SecretFields {
            api_key: Some(key.into()),
            ..SecretFields::default()
        }
    }

    #[test]
    fn a_credential_must_fit_the_connectors_auth_type() {
        let (key, oauth) = (CredentialKind::ApiKey, CredentialKind::Oauth2);
        assert!(check_shape(AuthType::ApiKey, key, &api_key("sk_test_1")).is_ok());
        assert!(matches!(
            check_shape(AuthType::Oauth2, key, &api_key("sk_test_1")),
            Err(Error::KindMismatch { .. })
        ));
        assert!(matches!(
            check_shape(AuthType::ApiKey, key, &api_key("")),
            Err(Error::Missing("apiKey"))
        ));
        assert!(matches!(
            check_shape(AuthType::ApiKeySecret, key, &api_key("sk_test_1")),
            Err(Error::Missing("apiSecret"))
        ));
        assert!(matches!(
            check_shape(AuthType::Oauth2, oauth, &SecretFields::default()),
            Err(Error::Missing("accessToken"))
        ));
        assert!(matches!(
            check_shape(AuthType::None, key, &api_key("k")),
            Err(Error::KindMismatch { .. })
        ));
    }
}
