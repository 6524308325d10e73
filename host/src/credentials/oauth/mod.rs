//! OAuth for `oauth2` connectors: which client (application) a connection uses, the
//! authorization-code flow, and the connector-backed [`Refresher`] the token lifecycle
//! refreshes through.
//!
//! `managed` connections use the deployment's client from `CONDUIT_<SLUG>_CLIENT_ID` /
//! `_CLIENT_SECRET` (never stored, never in the catalog); `byok` connections carry
//! their own, sealed in the vault like any secret. `authorize` builds the consent URL
//! with a random single-use `state` (stored by its hash, bound to the tenant and
//! connection, valid 10 minutes by default) and a PKCE S256 challenge; `callback` consumes the
//! state, exchanges the code through the connector and seals the tokens.

use crate::accounts::connections::{self, Connections};
use crate::audit::{self, Audit};
use crate::credentials::tokens::{self, seal_context, Tokens};
use crate::credentials::vault::{self, Vault};
use crate::domain::{
    now_ms, AuthType, Class, Classify, Connection, ConnectionStatus, CredentialKind, ErrorClass,
    IntegrationSpec, OauthClient, SecretFields,
};
use crate::runtime::connectors::{Answer, Connector, ConnectorCall, Connectors, Export};
use crate::runtime::{egress::AllowedHosts, CallContext, CallError, CodeExchange};
use crate::store::{self, OauthState, OauthStore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest an exchange or refresh waits for its turn under the rate profile.
const MAX_RATE_WAIT: Duration = Duration::from_secs(5);

mod clients;
mod redirects;
mod refresher;

pub use clients::Clients;
pub use redirects::{loopback as redirects_loopback, RedirectPolicy};
pub use refresher::ConnectorRefresher;

/// How long an authorization may take from `authorize` to `callback`, by default.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// OAuth failures. Each variant is one stable API code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connection lookup failed.
    #[error(transparent)]
    Connection(#[from] connections::Error),
    /// The connection is revoked.
    #[error("the connection is revoked")]
    Revoked,
    /// The connection's connector does not use OAuth.
    #[error("connector `{0}` does not use OAuth")]
    NotOauth(String),
    /// The redirect URI is not an absolute http(s) URL.
    #[error("redirectUri must be an absolute http or https URL")]
    InvalidRedirectUri,
    /// No OAuth client is configured for the connection.
    #[error("{0}")]
    ClientMissing(String),
    /// The redirect URI is not on the deployment's allow-list for the connection's
    /// environment.
    #[error("redirectUri is not on this deployment's allow-list for {} connections (set CONDUIT_OAUTH_REDIRECTS_{})", .0.as_str(), .0.as_str().to_ascii_uppercase())]
    RedirectNotAllowed(crate::domain::Environment),
    /// A configured endpoint is not one of the connector's allowed hosts.
    #[error("{0}")]
    EndpointNotAllowed(String),
    /// The state is unknown, used, expired or not the caller's.
    #[error("the OAuth state is invalid: {0}")]
    InvalidState(&'static str),
    /// The provider reported an error instead of a code (the user declined…).
    #[error("the provider refused the authorization: {0}")]
    Denied(String),
    /// The provider rejected the code (expired, reused, wrong verifier).
    #[error("the provider rejected the authorization code: {0}")]
    CodeRejected(String),
    /// The connector call failed, was refused its budget, or has no loaded connector.
    #[error(transparent)]
    Connector(#[from] CallError),
    /// The tenant has as many pending authorizations as it may.
    #[error(transparent)]
    Limit(#[from] crate::domain::LimitExceeded),
    /// Sealing the tokens failed.
    #[error(transparent)]
    Tokens(#[from] tokens::Error),
    /// The vault refused.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The authorization-code flow.
#[derive(Clone)]
pub struct Oauth {
    store: Arc<dyn OauthStore>,
    vault: Arc<Vault>,
    connectors: Arc<dyn Connectors>,
    connections: Connections,
    tokens: Tokens,
    clients: Clients,
    audit: Audit,
    state_ttl: Duration,
    redirects: RedirectPolicy,
    max_pending: usize,
}

/// A started authorization: where to send the user.
#[derive(Debug)]
pub struct Authorization {
    /// The provider's consent URL, with client id, redirect URI, scopes, state and PKCE.
    pub url: String,
}

impl Oauth {
    /// Wires the flow.
    pub fn new(
        store: Arc<dyn OauthStore>,
        vault: Arc<Vault>,
        connectors: Arc<dyn Connectors>,
        connections: Connections,
        tokens: Tokens,
        clients: Clients,
        audit: Audit,
    ) -> Self {
        Oauth {
            store,
            vault,
            connectors,
            connections,
            tokens,
            clients,
            audit,
            state_ttl: DEFAULT_STATE_TTL,
            redirects: RedirectPolicy::default(),
            max_pending: crate::domain::TenantLimits::default().oauth_states,
        }
    }

    /// At most `max` pending authorizations per tenant.
    pub fn with_state_limit(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Redirect URIs are checked against `redirects` instead of the default (sandbox:
    /// loopback; production: none).
    pub fn with_redirects(mut self, redirects: RedirectPolicy) -> Self {
        self.redirects = redirects;
        self
    }

    /// States expire `ttl` after `authorize` instead of the default 10 minutes.
    pub fn with_state_ttl(mut self, ttl: Duration) -> Self {
        self.state_ttl = ttl;
        self
    }

    /// The connection's OAuth client settings, for `byok` connections.
    pub fn put_client(
        &self,
        tenant_id: &str,
        connection_id: &str,
        client: &OauthClient,
    ) -> Result<Connection, Error> {
        let connection = self.connections.get(tenant_id, connection_id)?;
        self.oauth_spec(&connection)?;
        self.clients.put(&connection, client)?;
        // A connection flagged because it had no client can refresh again.
        Ok(self.tokens.reinstate(&connection)?)
    }

    /// Starts an authorization for the tenant's connection.
    pub fn authorize(
        &self,
        tenant_id: &str,
        connection_id: &str,
        redirect_uri: &str,
    ) -> Result<Authorization, Error> {
        let connection = self.connections.get(tenant_id, connection_id)?;
        if connection.status == ConnectionStatus::Revoked {
            return Err(Error::Revoked);
        }
        let spec = self.oauth_spec(&connection)?;
        let redirect = url::Url::parse(redirect_uri).map_err(|_| Error::InvalidRedirectUri)?;
        if !matches!(redirect.scheme(), "http" | "https") || redirect.host_str().is_none() {
            return Err(Error::InvalidRedirectUri);
        }
        if !self.redirects.allows(connection.environment, &redirect) {
            return Err(Error::RedirectNotAllowed(connection.environment));
        }
        let client = self.clients.for_connection(&connection)?;
        crate::domain::LimitExceeded::check(
            "pending OAuth authorizations",
            self.store.count_oauth_states_of(tenant_id, now_ms())?,
            self.max_pending,
            "CONDUIT_MAX_OAUTH_STATES_PER_TENANT",
        )?;
        let oauth = spec.oauth.as_ref().expect("checked by oauth_spec");
        let mut url = consent_endpoint(&spec, &connection, &oauth.authorize_url)?;

        let state = random_token();
        let verifier = oauth.pkce.then(random_token);
        let expires_at = now_ms() + self.state_ttl.as_millis() as u64;
        // The verifier is sealed bound to its state (by the hash the store keeps, so key
        // rotation can re-wrap it), and opens for this flow only.
        let state_hash = hash(&state);
        let verifier_id = verifier_seal_id(&state_hash);
        let code_verifier = verifier.as_ref().map(|v| {
            self.vault
                .seal(seal_context(&verifier_id, &connection), v.as_bytes())
        });
        self.store.put_oauth_state(
            &state_hash,
            &OauthState {
                tenant_id: tenant_id.to_owned(),
                connection_id: connection.id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                code_verifier,
                expires_at,
            },
        )?;

        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &oauth.scopes.join(" "))
                .append_pair("state", &state);
            if let Some(verifier) = &verifier {
                query
                    .append_pair("code_challenge", &pkce_challenge(verifier))
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(Authorization { url: url.into() })
    }

    /// Completes an authorization: `state` must be one this deployment issued, unused,
    /// unexpired, and — when the callback carries a tenant token — that tenant's.
    pub async fn callback(
        &self,
        state: &str,
        outcome: Result<&str, &str>,
        caller: Option<&str>,
    ) -> Result<Connection, Error> {
        let pending = self
            .store
            .take_oauth_state(&hash(state))?
            .ok_or(Error::InvalidState("unknown or already used"))?;
        if pending.expires_at < now_ms() {
            return Err(Error::InvalidState("expired"));
        }
        if caller.is_some_and(|tenant| tenant != pending.tenant_id) {
            return Err(Error::InvalidState("issued to another tenant"));
        }
        let connection = match self
            .connections
            .get(&pending.tenant_id, &pending.connection_id)
        {
            Err(connections::Error::NotFound) => {
                return Err(Error::InvalidState("its connection no longer exists"))
            }
            found => found?,
        };
        let code = outcome.map_err(|error| Error::Denied(truncate(error)))?;
        let code_verifier = match &pending.code_verifier {
            Some(sealed) => {
                let verifier_id = verifier_seal_id(&hash(state));
                let plain = match self
                    .vault
                    .open(seal_context(&verifier_id, &connection), sealed)
                {
                    Ok(plain) => plain,
                    // Sealed by an earlier version, bound to the state itself (for the
                    // authorizations in flight across an upgrade: at most one TTL).
                    Err(_) => self.vault.open(seal_context(state, &connection), sealed)?,
                };
                Some(SecretString::from(
                    String::from_utf8_lossy(&plain).into_owned(),
                ))
            }
            None => None,
        };
        let exchange = CodeExchange {
            code: SecretString::from(code.to_owned()),
            redirect_uri: pending.redirect_uri.clone(),
            code_verifier,
        };
        let secret = match self.exchange(&connection, &exchange).await {
            // The code was never sent: the same callback, retried, may complete it.
            Err(busy @ Error::Connector(CallError::Busy(_))) => {
                self.store.put_oauth_state(&hash(state), &pending)?;
                return Err(busy);
            }
            other => other?,
        };
        let (_, connection) = self
            .tokens
            .put(&connection, CredentialKind::Oauth2, &secret)?;
        Ok(connection)
    }

    async fn exchange(
        &self,
        connection: &Connection,
        exchange: &CodeExchange,
    ) -> Result<SecretFields, Error> {
        let (started_at, started) = (now_ms(), Instant::now());
        let connector = self.oauth_connector(connection)?;
        let client = self.clients.for_connection(connection)?;
        let called = self
            .connectors
            .call(ConnectorCall {
                connection,
                connector: &connector,
                context: CallContext::for_connection(connection, None),
                export: Export::ExchangeCode {
                    client: &client,
                    exchange,
                },
                budget: Some(MAX_RATE_WAIT),
            })
            .await;
        let result = match called.result {
            Ok(Answer::Secret(secret)) if secret.access_token.is_some() => Ok(secret),
            Ok(_) => Err(Error::Connector(CallError::Plugin(
                "the connector's exchange returned no access token".into(),
            ))),
            Err(CallError::NeedsReauth(reason)) => Err(Error::CodeRejected(reason)),
            Err(e) => Err(Error::Connector(e)),
        };
        let outcome = match &result {
            Ok(_) => ("ok", None),
            Err(e) => (e.code(), Some(e.to_string())),
        };
        self.audit.record(audit::connector_call(
            &connection.tenant_id,
            Some(connection),
            Some(connector.spec.version),
            "oauth.exchange",
            (started_at, started),
            called.outbound,
            outcome,
        ));
        result
    }

    /// The connection's connector, which must use OAuth.
    fn oauth_connector(&self, connection: &Connection) -> Result<Connector, Error> {
        let connector = self.connectors.require(connection)?;
        let spec = &connector.spec;
        if spec.auth_type != AuthType::Oauth2 || spec.oauth.is_none() {
            return Err(Error::NotOauth(connection.connector.clone()));
        }
        Ok(connector)
    }

    /// The connection's connector's spec, which must use OAuth.
    fn oauth_spec(&self, connection: &Connection) -> Result<Arc<IntegrationSpec>, Error> {
        Ok(self.oauth_connector(connection)?.spec)
    }
}

/// The consent endpoint: the connection's `authorizeUrl` when set (it must be one of
/// the connector's allowed hosts), else the connector's. Query parameters of the
/// connector's own URL (Google's `access_type=offline&prompt=consent`) are kept.
fn consent_endpoint(
    spec: &IntegrationSpec,
    connection: &Connection,
    default: &str,
) -> Result<url::Url, Error> {
    let invalid = |what: &str| Error::EndpointNotAllowed(what.to_owned());
    let default = url::Url::parse(default)
        .map_err(|_| invalid("the connector's authorize URL is invalid"))?;
    let Some(configured) = connection.config.get("authorizeUrl") else {
        return Ok(default);
    };
    let mut url = configured
        .as_str()
        .and_then(|s| url::Url::parse(s).ok())
        .ok_or_else(|| invalid("config.authorizeUrl must be an absolute URL"))?;
    let allowed = AllowedHosts::parse(&spec.allowed_hosts)
        .map_err(|_| invalid("the connector's allowed hosts are invalid"))?;
    allowed.check(&url).map_err(|reason| {
        Error::EndpointNotAllowed(format!("config.authorizeUrl is not allowed: {reason}"))
    })?;
    let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    let extra: Vec<(String, String)> = default
        .query_pairs()
        .filter(|(k, _)| !present.iter().any(|p| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().extend_pairs(extra);
    Ok(url)
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        use Class::*;
        match self {
            Error::Connection(e) => e.classify(),
            Error::Connector(e) => e.classify(),
            Error::Limit(e) => e.classify(),
            Error::Tokens(e) => e.classify(),
            Error::Vault(e) => e.classify(),
            Error::Store(e) => e.classify(),
            Error::Revoked => ErrorClass::new(Conflict, "revoked"),
            Error::NotOauth(_) => ErrorClass::new(Invalid, "oauth_unsupported"),
            Error::InvalidRedirectUri => ErrorClass::new(Invalid, "invalid_redirect_uri"),
            Error::RedirectNotAllowed(_) => ErrorClass::new(Invalid, "redirect_not_allowed"),
            Error::ClientMissing(_) => ErrorClass::new(Invalid, "oauth_client_missing"),
            Error::EndpointNotAllowed(_) => ErrorClass::new(Invalid, "endpoint_not_allowed"),
            Error::InvalidState(_) => ErrorClass::new(BadRequest, "invalid_state"),
            Error::Denied(_) => ErrorClass::new(BadRequest, "oauth_denied"),
            Error::CodeRejected(_) => ErrorClass::new(BadRequest, "invalid_grant"),
        }
    }
}

/// 32 random bytes, base64url: a `state` or a PKCE verifier (43 characters, within
/// RFC 7636's 43..=128).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn hash(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

/// What a pending state's PKCE verifier is sealed for (the vault's credential id):
/// derived from the hash the store keeps, never from the state itself, so whoever
/// holds the store (key rotation) can name it, and only the state's holder can find it.
pub(crate) fn verifier_seal_id(state_hash: &[u8]) -> String {
    format!("oauth-state/{}", hex::encode(state_hash))
}

/// Provider-supplied error text, bounded so a callback cannot flood the logs.
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_valid_pkce_verifiers_and_unique() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
