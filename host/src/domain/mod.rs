//! The domain types of Conduit: tenants, connections, credentials, integration specs,
//! blueprints and tenant configs ([`binding`]) and audit records. They carry no I/O; the store persists them, the API renders them.

pub mod binding;
pub mod deployment;
mod error;
mod limits;
mod sealed;

pub use binding::{
    operation_id, version_text, Binding, Blueprint, BlueprintMeta, ConfigMeta, ConfigStatus,
    RequiredCapability, Scope, Slot, TenantConfig,
};
pub use error::{Class, Classify, ErrorClass};
pub use limits::{LimitExceeded, TenantLimits};
pub use sealed::{Sealed, SealedSecret};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the unix epoch, the one time representation stored.
pub type UnixMs = u64;

/// Now, in unix milliseconds.
pub fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC rendering of a unix-millisecond time, as the API shows times: always
/// three fractional digits, so renderings sort as the times do.
pub fn rfc3339(ms: UnixMs) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 time into unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<UnixMs> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Whether a config key names a secret (`apiKey`, `clientSecret`, `accessToken`…), which
/// belongs in a credential, never in config; `tokenUrl` and the like are endpoints.
pub fn looks_like_secret_name(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if k.ends_with("url") || k.ends_with("uri") {
        return false;
    }
    k == "token"
        || k == "key"
        || [
            "secret",
            "password",
            "apikey",
            "privatekey",
            "accesstoken",
            "refreshtoken",
            "credential",
            "authorization",
            "servertoken",
        ]
        .iter()
        .any(|s| k.contains(s))
}

/// A tenant: the owner of connections, acting through its API token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// The tenant's id, chosen by the admin (`acme-corp`).
    pub id: String,
    /// When it was created.
    pub created_at: UnixMs,
}

/// Which provider environment a connection talks to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Test mode / sandbox accounts.
    Sandbox,
    /// Live accounts.
    Production,
}

impl Environment {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

/// Whose provider app or key a connection uses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OwnershipMode {
    /// The deployment's OAuth app or key.
    Managed,
    /// The tenant's own.
    Byok,
}

impl OwnershipMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnershipMode::Managed => "managed",
            OwnershipMode::Byok => "byok",
        }
    }
}

/// A connection's lifecycle state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    /// Usable.
    Active,
    /// The provider rejected the credential; a person must reconnect.
    NeedsReauth,
    /// Revoked by its owner; never vends again.
    Revoked,
    /// Broken for another reason.
    Error,
}

impl ConnectionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ConnectionStatus; 4] = [
        ConnectionStatus::Active,
        ConnectionStatus::NeedsReauth,
        ConnectionStatus::Revoked,
        ConnectionStatus::Error,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "ACTIVE",
            ConnectionStatus::NeedsReauth => "NEEDS_REAUTH",
            ConnectionStatus::Revoked => "REVOKED",
            ConnectionStatus::Error => "ERROR",
        }
    }
}

/// A tenant's account at one provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Opaque id (`conn_…`).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// The connector slug (`stripe`).
    pub connector: String,
    /// The connector's integration key (`payments.stripe`).
    pub integration_key: String,
    /// The connector version the connection was made with.
    pub integration_version: u32,
    /// A human label.
    pub label: String,
    /// Sandbox or production.
    pub environment: Environment,
    /// Managed or bring-your-own.
    pub ownership_mode: OwnershipMode,
    /// The provider-side account (Stripe Connect account id, …).
    pub external_account_id: Option<String>,
    /// Non-secret configuration (`baseUrl`, …), a JSON object.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Lifecycle state.
    pub status: ConnectionStatus,
    /// Why it left `ACTIVE` (`NEEDS_REAUTH`, `ERROR`), free of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Executions allowed per UTC day, if capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u32>,
    /// Created.
    pub created_at: UnixMs,
    /// Last changed.
    pub updated_at: UnixMs,
}

impl Connection {
    /// The vault reference of the connection's credential; never the secret itself.
    pub fn secret_ref(&self) -> String {
        format!("vault://connections/{}", self.id)
    }
}

#[cfg(test)]
impl Connection {
    /// An ACTIVE Gmail connection of tenant `acme`, for unit tests.
    pub(crate) fn fixture(id: &str, ownership_mode: OwnershipMode) -> Self {
        Connection {
            id: id.into(),
            tenant_id: "acme".into(),
            connector: "gmail".into(),
            integration_key: "email.gmail".into(),
            integration_version: 1,
            label: "Gmail".into(),
            environment: Environment::Production,
            ownership_mode,
            external_account_id: None,
            config: Default::default(),
            status: ConnectionStatus::Active,
            status_reason: None,
            daily_quota: None,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// Which kind of secret a credential holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// OAuth 2.0 access and refresh tokens.
    Oauth2,
    /// An API key (and optional secret).
    ApiKey,
}

/// The secret fields of a credential, in plaintext, each held in a `secrecy` string:
/// wiped on drop, never printed (`Debug` says only which are present), and exposed
/// only through the accessors, where a value must leave (sealing, a guest call, a vend).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretFields {
    /// OAuth access token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub access_token: Option<SecretString>,
    /// OAuth refresh token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub refresh_token: Option<SecretString>,
    /// API key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub api_key: Option<SecretString>,
    /// API secret.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub api_secret: Option<SecretString>,
    /// Access token expiry, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixMs>,
}

/// Serializes a secret's value: only the vault's sealing and a vend's answer do.
fn expose<S: serde::Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

fn exposed(value: &Option<SecretString>) -> Option<&str> {
    value.as_ref().map(|secret| secret.expose_secret())
}

impl SecretFields {
    /// The access token's value.
    pub fn access_token(&self) -> Option<&str> {
        exposed(&self.access_token)
    }

    /// The refresh token's value.
    pub fn refresh_token(&self) -> Option<&str> {
        exposed(&self.refresh_token)
    }

    /// The API key's value.
    pub fn api_key(&self) -> Option<&str> {
        exposed(&self.api_key)
    }

    /// The API secret's value.
    pub fn api_secret(&self) -> Option<&str> {
        exposed(&self.api_secret)
    }

    /// Every secret value present, for redaction.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [
            self.access_token(),
            self.refresh_token(),
            self.api_key(),
            self.api_secret(),
        ]
        .into_iter()
        .flatten()
        .filter(|v| !v.is_empty())
    }
}

/// An OAuth client (application) used for code exchanges and refreshes: the
/// deployment's for `managed` connections, the tenant's own (sealed) for `byok`. The
/// secret is a `secrecy` string.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OauthClient {
    /// The public client id.
    pub client_id: String,
    /// The client secret.
    #[serde(serialize_with = "expose_one")]
    pub client_secret: SecretString,
}

fn expose_one<S: serde::Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

impl fmt::Debug for OauthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OauthClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `SecretString`'s own Debug prints no value.
        f.debug_struct("SecretFields")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// How a connection authenticates (mirrors the WIT `auth-type`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// OAuth 2.0.
    Oauth2,
    /// One API key.
    ApiKey,
    /// A key and a secret.
    ApiKeySecret,
    /// Nothing.
    None,
}

/// A capability a connector provides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapabilityRef {
    /// `payments.createPaymentIntent`.
    pub key: String,
    /// Contract version.
    pub version: u32,
    /// One line for the catalog.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub description: String,
}

/// A provider's per-account rate limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateProfile {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length in seconds.
    pub per_seconds: u32,
    /// Burst size.
    pub burst: u32,
}

/// OAuth endpoints of a connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OauthConfig {
    /// Consent page.
    pub authorize_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// PKCE S256.
    pub pkce: bool,
}

/// The IntegrationSpec: what one loaded connector is and offers, from its `info()`
/// export with the deployment's `plugins.toml` overrides applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationSpec {
    /// `stripe`.
    pub slug: String,
    /// `payments.stripe`.
    pub integration_key: String,
    /// Connector version.
    pub version: u32,
    /// `Stripe`.
    pub display_name: String,
    /// `payments`.
    pub category: String,
    /// How connections authenticate.
    pub auth_type: AuthType,
    /// `managed`, `byok`.
    pub ownership_modes: Vec<OwnershipMode>,
    /// What `execute` accepts.
    pub capabilities: Vec<CapabilityRef>,
    /// Hosts the connector may reach.
    pub allowed_hosts: Vec<String>,
    /// Per-account rate limit.
    pub rate_profile: RateProfile,
    /// OAuth endpoints.
    pub oauth: Option<OauthConfig>,
    /// Deployment defaults for connection config (`plugins.toml`), the lowest layer of
    /// a resolved config.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config_defaults: serde_json::Map<String, serde_json::Value>,
}

impl IntegrationSpec {
    /// The config a call on `connection` sees: the deployment's defaults, overridden by
    /// the connection's config, overridden by a binding's `overrides`.
    pub fn connection_config(
        &self,
        connection: &Connection,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut config = self.config_defaults.clone();
        config.extend(connection.config.clone());
        config.extend(overrides.clone());
        config
    }

    /// The version of `key` this connector provides, if any.
    pub fn capability(&self, key: &str) -> Option<&CapabilityRef> {
        self.capabilities.iter().find(|c| c.key == key)
    }
}

/// One outbound HTTP exchange a connector made during a call, already redacted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutboundRecord {
    /// HTTP method.
    pub method: String,
    /// URL with query values redacted.
    pub url: String,
    /// Response status, when one came.
    pub status: Option<u16>,
    /// Why no response came (denied, timeout…).
    pub error: Option<String>,
    /// Milliseconds spent.
    pub duration_ms: u64,
    /// Request headers; credential-bearing ones are shown as `<redacted>`.
    #[serde(default)]
    pub request_headers: Vec<(String, String)>,
    /// The start of the request body, redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The start of the response body, redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// When the provider said to retry, in ms from its answer (`Retry-After`, or an
    /// exhausted `X-RateLimit-Remaining` with its `X-RateLimit-Reset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The `error` of the record that stands for the requests of a call past what its
/// audit record keeps.
const OVERFLOW: &str = "further requests of this call were made but not recorded";

impl OutboundRecord {
    /// Roughly the bytes it holds.
    pub fn approximate_size(&self) -> usize {
        let headers: usize = self
            .request_headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.method.len()
            + self.url.len()
            + headers
            + text(&self.error)
            + text(&self.request_body)
            + text(&self.response_body)
            + 64
    }

    /// The record that says more requests were made than recorded.
    pub fn overflow_marker() -> Self {
        OutboundRecord {
            error: Some(OVERFLOW.into()),
            ..OutboundRecord::default()
        }
    }

    /// Whether this is [`OutboundRecord::overflow_marker`].
    pub fn is_overflow_marker(&self) -> bool {
        self.method.is_empty() && self.error.as_deref() == Some(OVERFLOW)
    }
}

/// The policy decision point's verdict on a call made through a binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether some binding admitted the call.
    pub allowed: bool,
    /// Why: the admitting binding, or why each binding refused.
    pub reason: String,
}

/// A binding passed over during failover, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// The connection not used.
    pub connection_id: String,
    /// `needs_reauth`, `rate_limited`, `circuit_open`, …
    pub reason: String,
}

/// One audited call: who ran what on which connection, and how it ended. Holds no
/// secret: every string in it went through redaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Opaque id.
    pub id: String,
    /// When the call started.
    pub time: UnixMs,
    /// The calling tenant.
    pub tenant_id: String,
    /// The connection used, if one was found.
    pub connection_id: Option<String>,
    /// Connector slug.
    pub connector: Option<String>,
    /// Connector version.
    pub connector_version: Option<u32>,
    /// What was asked (`payments.createRefund`, `health`).
    pub capability: String,
    /// `ok` or the stable error code.
    pub outcome: String,
    /// A redacted explanation of a failure.
    pub detail: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// Outbound HTTP exchanges.
    pub outbound: Vec<OutboundRecord>,
    /// Wall time of the whole call.
    pub duration_ms: u64,
    /// The blueprint, for calls resolved through a tenant config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    /// Their environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Their workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Their operation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Bindings passed over before the one that served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Answered from the idempotency store without calling the provider.
    #[serde(default)]
    pub replayed: bool,
}
