//! The integration-binding model's per-app layers: an app's [`Blueprint`] (which
//! integration slots it needs) and a tenant's versioned [`TenantConfig`] (which of its
//! connections fill them, for which workflows and operations, in what order). Shapes
//! follow the seed documents field for field; no I/O here.

use super::{Environment, OwnershipMode, UnixMs};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// An AppBlueprintSpec: one published, immutable version of an app's integration needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blueprint {
    /// Name, version and owning app.
    pub meta: BlueprintMeta,
    /// The slots a tenant binds connections to.
    pub integration_slots: Vec<Slot>,
    /// The app's workflows, as the app describes them (opaque to Conduit): an object
    /// keyed by workflow id, or a list.
    #[serde(default)]
    #[schema(schema_with = object_or_list)]
    pub workflows: Value,
    /// The app's branding (opaque to Conduit).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub branding: Value,
}

/// `meta` of a blueprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintMeta {
    /// `invoice-app`.
    pub name: String,
    /// `1`, `1.2.0`: written as a string or a number.
    #[serde(deserialize_with = "string_or_number")]
    #[schema(value_type = String)]
    pub version: String,
    /// The app that owns the blueprint.
    #[serde(default)]
    pub app_id: Option<String>,
}

/// One integration slot of a blueprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slot {
    /// `payments.primary`.
    pub slot_id: String,
    /// The connector category that may fill it (`payments`).
    pub required_category: String,
    /// Ownership modes a bound connection may use; empty admits both.
    #[serde(default)]
    pub allowed_modes: Vec<OwnershipMode>,
    /// Capabilities (at least these versions) the bound connector must provide.
    #[serde(default)]
    pub required_capabilities: Vec<RequiredCapability>,
    /// Whether a config must bind it.
    #[serde(default)]
    pub required: bool,
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
}

/// A capability a slot needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequiredCapability {
    /// `payments.createPaymentIntent`.
    pub key: String,
    /// The contract version the connector must provide (`1` or `"1"`).
    #[serde(deserialize_with = "number_or_text")]
    #[schema(value_type = u32)]
    pub version: u32,
}

/// Where a tenant config version is in its lifecycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigStatus {
    /// Just posted; editable by posting again.
    Draft,
    /// Under review.
    Preview,
    /// The one version in force for its tenant, blueprint and environment.
    Published,
    /// Replaced by a later publication.
    Archived,
}

impl ConfigStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigStatus::Draft => "draft",
            ConfigStatus::Preview => "preview",
            ConfigStatus::Published => "published",
            ConfigStatus::Archived => "archived",
        }
    }
}

/// A TenantAppConfig version: how one tenant fills a blueprint's slots in one
/// environment. Holds connection ids only, never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantConfig {
    /// Identity and lifecycle.
    pub meta: ConfigMeta,
    /// Slot bindings.
    pub integrations: Vec<Binding>,
    /// The tenant's branding for the app (opaque to Conduit).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub branding: Value,
    /// Posted.
    pub created_at: UnixMs,
    /// Last status change.
    pub updated_at: UnixMs,
}

impl TenantConfig {
    /// `invoice-app:production:3`, the API id of this version.
    pub fn id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.meta.blueprint_name,
            self.meta.environment.as_str(),
            self.meta.version
        )
    }
}

#[cfg(test)]
impl TenantConfig {
    /// A production draft of `app` version 1 for `tenant`, binding nothing, for tests.
    pub(crate) fn draft_fixture(tenant: &str) -> Self {
        TenantConfig {
            meta: ConfigMeta {
                tenant_id: tenant.into(),
                blueprint_name: "app".into(),
                blueprint_version: "1".into(),
                environment: Environment::Production,
                version: 0,
                status: ConfigStatus::Draft,
            },
            integrations: Vec::new(),
            branding: Value::Null,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// `meta` of a tenant config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMeta {
    /// The owning tenant.
    pub tenant_id: String,
    /// The blueprint it fills.
    pub blueprint_name: String,
    /// The blueprint version it was validated against.
    pub blueprint_version: String,
    /// Sandbox or production.
    pub environment: Environment,
    /// 1, 2, … per tenant, blueprint and environment.
    pub version: u32,
    /// Lifecycle state.
    pub status: ConfigStatus,
}

/// One slot filled by one connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// The blueprint slot.
    pub slot_id: String,
    /// The tenant's connection.
    pub connection_id: String,
    /// Which workflows and operations it may serve; absent admits all.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Lower serves first; later bindings take over when earlier ones cannot serve.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Non-secret config overriding the connection's for calls through this binding.
    #[serde(default, alias = "overrides")]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

fn default_priority() -> i32 {
    100
}

/// Glob patterns a call must match to use a binding. An empty list admits everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    /// Workflow patterns (`checkout`, `subscription-*`).
    #[serde(default)]
    pub workflows: Vec<String>,
    /// Operation patterns (`payments.stripe.*`).
    #[serde(default)]
    pub operations: Vec<String>,
}

/// The operation id policy matches: `<integrationKey>.<capability without category>`,
/// so `payments.createPaymentIntent` on `payments.stripe` is
/// `payments.stripe.createPaymentIntent`.
pub fn operation_id(integration_key: &str, capability: &str) -> String {
    let name = capability
        .split_once('.')
        .map_or(capability, |(_, name)| name);
    format!("{integration_key}.{name}")
}

fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

fn number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| serde::de::Error::custom("expected a version number")),
        Value::String(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom("expected a version number")),
        _ => Err(serde::de::Error::custom("expected a version number")),
    }
}

/// Reads a version written as a string or a number (`"1"` or `1`).
pub fn version_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    string_or_number(deserializer)
}

/// The schema of a blueprint's `workflows`: an object keyed by workflow id, or a list
/// of workflow objects.
fn object_or_list() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let workflow = || ObjectBuilder::new().schema_type(Type::Object);
    OneOfBuilder::new()
        .item(workflow())
        .item(ArrayBuilder::new().items(workflow()))
        .description(Some(
            "The app's workflows (opaque to Conduit): an object keyed by workflow id, or a list",
        ))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_drop_the_category() {
        assert_eq!(
            operation_id("payments.stripe", "payments.createPaymentIntent"),
            "payments.stripe.createPaymentIntent"
        );
        assert_eq!(
            operation_id("email.postmark", "email.send"),
            "email.postmark.send"
        );
    }

    #[test]
    fn capability_versions_may_be_text_and_overrides_are_config() {
        let cap: RequiredCapability =
            serde_json::from_value(serde_json::json!({"key": "email.send", "version": "2"}))
                .unwrap();
        assert_eq!(cap.version, 2);
        assert!(serde_json::from_value::<RequiredCapability>(
            serde_json::json!({"key": "email.send", "version": "two"})
        )
        .is_err());
        let binding: Binding = serde_json::from_value(serde_json::json!(
            {"slotId": "s", "connectionId": "c", "overrides": {"region": "eu"}}
        ))
        .unwrap();
        assert_eq!(binding.config["region"], "eu");
        assert_eq!(binding.priority, 100);
    }

    #[test]
    fn blueprint_versions_may_be_numbers() {
        let meta: BlueprintMeta =
            serde_json::from_value(serde_json::json!({"name": "a", "version": 1})).unwrap();
        assert_eq!(meta.version, "1");
    }
}
