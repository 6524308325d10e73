//! What the API's documents contain, for the OpenAPI document: handlers render
//! JSON:API documents, and these types (never built, only described) say what each
//! resource's attributes are, so clients can generate SDKs and a schema-driven fuzzer
//! can exercise every route. Request attributes are the handlers' own types.

#![allow(dead_code)]

use crate::domain::{
    AuthType, Binding, ConfigMeta, ConnectionStatus, CredentialKind, Environment, OauthConfig,
    OwnershipMode, RateProfile, Skipped,
};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `{"data": {"type", "id", "attributes"}}` and `{"data": [...]}` for one resource type,
/// and `{"data": {"type", "attributes"}}` for a request body where there is one.
macro_rules! document {
    ($document:ident, $list:ident, $resource:ident, $attributes:ty) => {
        #[doc = concat!("A `", stringify!($resource), "`.")]
        #[derive(ToSchema)]
        pub struct $resource {
            /// The resource type.
            #[schema(rename = "type")]
            kind: String,
            /// Its id.
            id: String,
            /// Its attributes.
            attributes: $attributes,
        }

        #[doc = concat!("One `", stringify!($resource), "`.")]
        #[derive(ToSchema)]
        pub struct $document {
            /// The resource.
            data: $resource,
        }

        #[doc = concat!("A list of `", stringify!($resource), "`.")]
        #[derive(ToSchema)]
        pub struct $list {
            /// The resources.
            data: Vec<$resource>,
        }
    };
}

/// A request body: `{"data": {"type", "attributes"}}`.
macro_rules! request {
    ($request:ident, $data:ident, $attributes:ty) => {
        #[doc = concat!("The body of a request with `", stringify!($attributes), "`.")]
        #[derive(ToSchema)]
        pub struct $request {
            /// The resource.
            data: $data,
        }

        #[doc = concat!("The resource of a `", stringify!($request), "`.")]
        #[derive(ToSchema)]
        pub struct $data {
            /// The resource type.
            #[schema(rename = "type")]
            kind: String,
            /// Its attributes.
            attributes: $attributes,
        }
    };
}

/// A JSON:API error document.
#[derive(ToSchema)]
pub struct ErrorDocument {
    /// One error.
    errors: Vec<ErrorObject>,
}

/// One error, with its stable `code`.
#[derive(ToSchema)]
pub struct ErrorObject {
    /// The HTTP status, as text.
    status: String,
    /// Stable snake_case code (`not_found`, `needs_reauth`, …).
    code: String,
    /// The status' reason.
    title: String,
    /// This occurrence, never a secret.
    detail: String,
    /// Machine-readable facts (provider status, offending pointer, request id…).
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Liveness {
    /// `ok`.
    status: String,
}

/// `GET /readyz`.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: String,
    /// What is not ready yet (`store`, `vault`, `catalog`), when not ready.
    waiting: Option<Vec<String>>,
}

/// A new tenant, with its token (shown once).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TenantView {
    id: String,
    token: String,
    created_at: String,
}
document!(TenantDocument, TenantList, TenantResource, TenantView);

/// A capability a connector provides.
#[derive(ToSchema)]
pub struct CapabilityView {
    key: String,
    version: u32,
}

/// An IntegrationSpec.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ConnectorView {
    integration_key: String,
    version: u32,
    category: String,
    display_name: String,
    auth_type: AuthType,
    capabilities: Vec<CapabilityView>,
    ownership_modes: Vec<OwnershipMode>,
    allowed_hosts: Vec<String>,
    rate_profile: RateProfile,
    oauth: Option<OauthConfig>,
    #[schema(value_type = Object)]
    config_defaults: serde_json::Value,
}
document!(
    ConnectorDocument,
    ConnectorList,
    ConnectorResource,
    ConnectorView
);

/// A loaded plugin.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PluginView {
    /// `active` or `unloaded`.
    status: String,
    integration_key: Option<String>,
    /// The active `info().version`.
    version: Option<u32>,
    /// SHA-256 of the active component.
    wasm_sha256: Option<String>,
    /// Where the active version came from.
    source: Option<String>,
    /// When it became active (RFC 3339).
    loaded_at: Option<String>,
    /// Earlier versions, newest first, kept for rollback.
    previous: Vec<PluginVersionView>,
    /// The hosts the component asks for in its `info()`.
    requested_hosts: Vec<String>,
    /// The hosts it may reach: the operator's grant, else the public names it asked for.
    granted_hosts: Vec<String>,
    /// Whether `grantedHosts` is the operator's grant.
    operator_grant: bool,
}

/// A kept connector version.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PluginVersionView {
    version: u32,
    wasm_sha256: String,
    source: String,
    loaded_at: String,
}
document!(PluginDocument, PluginList, PluginResource, PluginView);

/// An IntegrationConnection: everything but the secret, which is only a reference.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ConnectionView {
    tenant_id: String,
    connector: String,
    integration_key: String,
    integration_version: u32,
    label: String,
    environment: Environment,
    ownership_mode: OwnershipMode,
    external_account_id: Option<String>,
    #[schema(value_type = Object)]
    config: serde_json::Value,
    secret_ref: String,
    status: ConnectionStatus,
    /// Why it is not `ACTIVE`, when it is not.
    status_reason: Option<String>,
    daily_quota: Option<u32>,
    created_at: String,
    updated_at: String,
}
document!(
    ConnectionDocument,
    ConnectionList,
    ConnectionResource,
    ConnectionView
);

/// A sealed credential, without secret material.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CredentialView {
    kind: CredentialKind,
    secret_ref: String,
    version: u64,
    key_id: String,
    expires_at: Option<String>,
    updated_at: String,
    connection_status: ConnectionStatus,
}
document!(
    CredentialDocument,
    CredentialList,
    CredentialResource,
    CredentialView
);

/// A vended credential.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SecretView {
    access_token: Option<String>,
    refresh_token: Option<String>,
    api_key: Option<String>,
    api_secret: Option<String>,
    expires_at: Option<String>,
}
document!(SecretDocument, SecretList, SecretResource, SecretView);

/// A health check's answer.
#[derive(ToSchema)]
pub struct HealthView {
    healthy: bool,
    detail: String,
}

/// An execution's answer.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ExecutionView {
    /// The connector's output (the capability's contract).
    #[schema(value_type = Object)]
    output: serde_json::Value,
    connection_id: String,
    integration_key: String,
    duration_ms: u64,
    replayed: bool,
    /// Bindings passed over before the one that served.
    failover: Vec<Skipped>,
}
document!(
    ExecutionDocument,
    ExecutionList,
    ExecutionResource,
    ExecutionView
);

document!(
    BlueprintDocument,
    BlueprintList,
    BlueprintResource,
    crate::domain::Blueprint
);

/// A tenant config version.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TenantConfigView {
    meta: ConfigMeta,
    integrations: Vec<Binding>,
    #[schema(value_type = Object)]
    branding: serde_json::Value,
    created_at: String,
    updated_at: String,
}
document!(
    TenantConfigDocument,
    TenantConfigList,
    TenantConfigResource,
    TenantConfigView
);

/// The binding that serves a capability, with its fallbacks.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CandidateView {
    capability_version: u32,
    slot_id: String,
    priority: i32,
    operation: String,
    scope: Option<crate::domain::Scope>,
    provider: ConnectorResource,
    connection: ConnectionResource,
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// Later candidates, in priority order (same shape, without fallbacks).
    #[schema(value_type = Vec<Object>)]
    fallbacks: Vec<serde_json::Value>,
}

/// A ResolvedAppConfig.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ResolvedView {
    tenant_id: String,
    blueprint: String,
    blueprint_version: String,
    environment: Environment,
    config_version: u32,
    /// Per capability key.
    capabilities: BTreeMap<String, CandidateView>,
}
document!(
    ResolvedDocument,
    ResolvedList,
    ResolvedResource,
    ResolvedView
);

/// A sealed `byok` OAuth client.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OauthClientView {
    client_id: String,
    sealed: bool,
}
document!(
    OauthClientDocument,
    OauthClientList,
    OauthClientResource,
    OauthClientView
);

/// A key-encryption key and how many sealed records it wraps (or, after retiring,
/// `retired`).
#[derive(ToSchema)]
pub struct VaultKeyView {
    primary: Option<bool>,
    credentials: Option<usize>,
    retired: Option<bool>,
}
document!(
    VaultKeyDocument,
    VaultKeyList,
    VaultKeyResource,
    VaultKeyView
);

/// A rotation's report.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RotationView {
    primary_key_id: String,
    rewrapped: usize,
}
document!(
    RotationDocument,
    RotationList,
    RotationResource,
    RotationView
);

/// An audit record, secrets redacted.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditView {
    time: String,
    tenant_id: String,
    connection_id: Option<String>,
    connector: Option<String>,
    connector_version: Option<u32>,
    capability: String,
    outcome: String,
    detail: Option<String>,
    blueprint: Option<String>,
    environment: Option<Environment>,
    workflow: Option<String>,
    operation: Option<String>,
    /// Outbound exchanges, headers and bodies redacted.
    #[schema(value_type = Vec<Object>)]
    outbound: Vec<serde_json::Value>,
    duration_ms: u64,
    replayed: bool,
}
document!(AuditDocument, AuditList, AuditResource, AuditView);

request!(NewTenantRequest, NewTenantData, super::tenants::NewTenant);
request!(EgressRequest, EgressData, super::plugins::Egress);
request!(
    NewConnectionRequest,
    NewConnectionData,
    super::connections::CreateAttributes
);
request!(
    CredentialRequest,
    CredentialData,
    super::connections::CredentialAttributes
);
request!(
    OnConnectionRequest,
    OnConnectionData,
    super::executions::OnConnection
);
request!(ExecuteRequest, ExecuteData, super::executions::Bound);
request!(
    OauthClientRequest,
    OauthClientData,
    super::oauth::ClientAttributes
);

/// Every route's refusals: a JSON:API error document with a stable `code`.
pub struct Refusals;

impl utoipa::IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
    {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    super::document::JSON_API,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorDocument")))
                        .build(),
                )
                .build()
                .into()
        };
        BTreeMap::from([
            (
                "4XX".to_owned(),
                error("Refused: a JSON:API error document with a stable `code`"),
            ),
            (
                "5XX".to_owned(),
                error("Failed upstream or in the host, with a stable `code`"),
            ),
        ])
    }
}
