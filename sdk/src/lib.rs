//! Write a Conduit connector in Rust.
//!
//! A connector is a WebAssembly component implementing the `conduit:connector` world
//! (`wit/connector.wit`). This crate owns the generated bindings and wraps them in what a
//! connector author needs: the [`Connector`] trait to implement, [`export_connector!`] to
//! export it, an HTTP client that goes through the host ([`http`]), bracketed form
//! encoding ([`form`]), JSON input helpers ([`input`]), error constructors on [`Error`]
//! and logging ([`log`]). `sdk/README.md` is the guide.

pub mod form;
pub mod http;
pub mod input;
pub mod log;

/// The bindings generated from `wit/connector.wit`; connectors normally use the
/// re-exports at the crate root instead.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "conduit_sdk::bindings",
    });
}

pub use bindings::conduit::connector::types::{
    AuthType, Capability, Client, ConnectorInfo, Context, Error, Health, OauthConfig,
    ProviderError, RateProfile, Secret,
};
pub use serde_json::{json, Value};

/// What a connector implements. Only `info`, `execute` and `health_check` are required;
/// the OAuth exports default to `unsupported` for API-key connectors.
pub trait Connector {
    /// Describes the connector: slug, integration key, capabilities, allowed hosts.
    fn info() -> ConnectorInfo;

    /// Runs `capability` with its JSON `input` and returns its JSON output.
    fn execute(
        ctx: &Context,
        secret: &Secret,
        capability: &str,
        input: Value,
    ) -> Result<Value, Error>;

    /// Checks that the credential works against the provider.
    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error>;

    /// Exchanges an OAuth authorization code for tokens.
    fn exchange_code(
        _ctx: &Context,
        _client: &Client,
        _code: &str,
        _redirect_uri: &str,
        _code_verifier: Option<&str>,
    ) -> Result<Secret, Error> {
        Err(Error::unsupported("this connector does not use OAuth"))
    }

    /// Trades a refresh token for a new access token.
    fn refresh(_ctx: &Context, _client: &Client, _refresh_token: &str) -> Result<Secret, Error> {
        Err(Error::unsupported("this connector does not use OAuth"))
    }
}

impl Error {
    /// The credential was rejected: a person must reconnect the account.
    pub fn needs_reauth(message: impl Into<String>) -> Self {
        Error::NeedsReauth(message.into())
    }
    /// The caller's input is not acceptable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
    /// The capability or operation is not supported.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::Unsupported(message.into())
    }
    /// A temporary failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Error::Transient(message.into())
    }
    /// A bug or an unexpected answer.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
    /// An error answered by the provider. 429 and 5xx are retryable.
    pub fn provider(status: u16, code: Option<String>, message: impl Into<String>) -> Self {
        Error::Provider(ProviderError {
            status,
            code,
            message: message.into(),
            retryable: status == 429 || status >= 500,
        })
    }
}

impl Context {
    /// The connection config as a JSON object (empty when it is not one).
    pub fn config_json(&self) -> Value {
        serde_json::from_str(&self.config).unwrap_or_else(|_| json!({}))
    }

    /// A string setting from the connection config.
    pub fn config_str(&self, key: &str) -> Option<String> {
        self.config_json()
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The provider's base URL: the connection config's `baseUrl`, else `default`,
    /// without a trailing slash.
    pub fn base_url(&self, default: &str) -> String {
        self.config_str("baseUrl")
            .unwrap_or_else(|| default.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Secret {
    /// The API key, or `needs-reauth` naming `what` is missing: a connection without its
    /// key cannot be served until the tenant supplies one.
    pub fn require_api_key(&self, what: &str) -> Result<&str, Error> {
        self.api_key
            .as_deref()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| Error::needs_reauth(format!("the connection has no {what}")))
    }
}

impl Capability {
    /// A capability entry for [`ConnectorInfo::capabilities`].
    pub fn new(key: &str, version: u32, description: &str) -> Self {
        Capability {
            key: key.into(),
            version,
            description: description.into(),
        }
    }
}

/// Exports a [`Connector`] implementation as the component's `connector` interface.
///
/// ```ignore
/// struct Stripe;
/// impl conduit_sdk::Connector for Stripe { /* … */ }
/// conduit_sdk::export_connector!(Stripe);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        struct __ConduitExport;

        impl $crate::bindings::exports::conduit::connector::connector::Guest for __ConduitExport {
            fn info() -> $crate::ConnectorInfo {
                <$connector as $crate::Connector>::info()
            }
            fn exchange_code(
                ctx: $crate::Context,
                client: $crate::Client,
                code: String,
                redirect_uri: String,
                code_verifier: Option<String>,
            ) -> Result<$crate::Secret, $crate::Error> {
                <$connector as $crate::Connector>::exchange_code(
                    &ctx, &client, &code, &redirect_uri, code_verifier.as_deref(),
                )
            }
            fn refresh(
                ctx: $crate::Context,
                client: $crate::Client,
                refresh_token: String,
            ) -> Result<$crate::Secret, $crate::Error> {
                <$connector as $crate::Connector>::refresh(&ctx, &client, &refresh_token)
            }
            fn health_check(
                ctx: $crate::Context,
                secret: $crate::Secret,
            ) -> Result<$crate::Health, $crate::Error> {
                <$connector as $crate::Connector>::health_check(&ctx, &secret)
            }
            fn execute(
                ctx: $crate::Context,
                secret: $crate::Secret,
                capability: String,
                input: String,
            ) -> Result<String, $crate::Error> {
                let input = $crate::input::parse(&input)?;
                let output =
                    <$connector as $crate::Connector>::execute(&ctx, &secret, &capability, input)?;
                Ok(output.to_string())
            }
        }

        $crate::bindings::export!(__ConduitExport with_types_in $crate::bindings);
    };
}
