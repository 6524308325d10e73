//! The one way to call a connector. [`Connectors::call`] finds the connection's
//! connector, spends the connection's own rate budget when asked, runs one export in a
//! fresh sandbox, and settles the answer with every message redacted by the call's
//! secrets; the [`Called`] result carries that redactor, so the caller's audit record
//! and error are redacted by the same one. Execute, health check, token refresh and
//! code exchange all come through here; [`Connectors::require`] finds the [`Connector`]
//! a call then runs, so checks and call see one version. [`Loaded`] is the implementation over the
//! catalog and the runtime; the execute use case's unit tests use a double.

use super::catalog::Catalog;
use super::ratelimit::RateLimits;
use super::{
    settle, CallContext, CallError, CallReport, CodeExchange, ConnectorError, Health, Plugin,
    Runtime,
};
use crate::audit::Redactor;
use crate::domain::{Connection, IntegrationSpec, OauthClient, OutboundRecord, SecretFields};
use secrecy::ExposeSecret;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A connector as found for a call: its spec, and the plugin that will run it, so the
/// call runs the very version its checks were made against (and the catalog is read
/// once per call).
#[derive(Clone)]
pub struct Connector {
    /// The IntegrationSpec.
    pub spec: Arc<IntegrationSpec>,
    plugin: Option<Arc<Plugin>>,
}

impl Connector {
    /// A connector that is no wasm plugin, only a spec: what a test double answers.
    pub fn described(spec: Arc<IntegrationSpec>) -> Self {
        Connector { spec, plugin: None }
    }
}

/// A boxed future, as the trait's methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which export to call, with what it needs.
pub enum Export<'a> {
    /// `execute`: a capability with its JSON input.
    Execute {
        /// `payments.createPaymentIntent`.
        capability: &'a str,
        /// The JSON input, as text.
        input: &'a str,
        /// The vended credential.
        secret: &'a SecretFields,
    },
    /// `health-check` with the vended credential.
    Health {
        /// The vended credential.
        secret: &'a SecretFields,
    },
    /// `refresh`: a refresh token for new tokens.
    Refresh {
        /// The connection's OAuth client.
        client: &'a OauthClient,
        /// The refresh token.
        refresh_token: &'a str,
    },
    /// `exchange-code`: an authorization code for tokens.
    ExchangeCode {
        /// The connection's OAuth client.
        client: &'a OauthClient,
        /// The code and what the token endpoint checks it against.
        exchange: &'a CodeExchange,
    },
}

impl Export<'_> {
    /// Every secret value the call handles: none may leave in a message or a record.
    pub fn redactor(&self) -> Redactor {
        match self {
            Export::Execute { secret, .. } | Export::Health { secret } => {
                Redactor::new(secret.values())
            }
            Export::Refresh {
                client,
                refresh_token,
            } => Redactor::new([client.client_secret.expose_secret(), refresh_token]),
            Export::ExchangeCode { client, exchange } => Redactor::new(
                [
                    client.client_secret.expose_secret(),
                    exchange.code.expose_secret(),
                ]
                .into_iter()
                .chain(exchange.code_verifier.as_ref().map(|v| v.expose_secret())),
            ),
        }
    }
}

/// What an export answered.
#[derive(Debug)]
pub enum Answer {
    /// `execute`'s JSON output, as text (not yet redacted).
    Output(String),
    /// `health-check`'s answer.
    Health(Health),
    /// `refresh` and `exchange-code`'s tokens.
    Secret(SecretFields),
}

/// One call of one export on one connection.
pub struct ConnectorCall<'a> {
    /// The connection.
    pub connection: &'a Connection,
    /// Its connector, as [`Connectors::require`] found it.
    pub connector: &'a Connector,
    /// What the connector is told (config, idempotency key).
    pub context: CallContext,
    /// The export.
    pub export: Export<'a>,
    /// Spend from the connection's own rate budget first, waiting at most this long;
    /// `None` when the caller's own gates already spent (or need not spend) a budget.
    pub budget: Option<Duration>,
}

/// The outcome of a call: the answer or why there is none (redacted), the outbound
/// exchanges it made, and the redactor that holds its secrets.
pub struct Called {
    /// The version of the connector that ran, if one was found.
    pub connector_version: Option<u32>,
    /// The answer, or why there is none.
    pub result: Result<Answer, CallError>,
    /// Outbound HTTP the guest made, redacted.
    pub outbound: Vec<OutboundRecord>,
    /// The call's secrets.
    pub redactor: Redactor,
}

/// The connectors, as use cases see them.
pub trait Connectors: Send + Sync {
    /// The connection's connector; `connector_unavailable` when it is not loaded.
    fn require(&self, connection: &Connection) -> Result<Connector, CallError>;

    /// Calls one export of the connection's connector.
    fn call<'a>(&'a self, call: ConnectorCall<'a>) -> BoxFuture<'a, Called>;

    /// Changes whenever a connector is loaded or replaced; caches of derived views
    /// compare it.
    fn generation(&self) -> u64;
}

/// The loaded connectors: the catalog's plugins run by the runtime.
pub struct Loaded {
    catalog: Arc<Catalog>,
    runtime: Arc<Runtime>,
    limits: RateLimits,
}

impl Loaded {
    /// Connectors from `catalog`, run by `runtime`, budgeted by `limits`.
    pub fn new(catalog: Arc<Catalog>, runtime: Arc<Runtime>, limits: RateLimits) -> Self {
        Loaded {
            catalog,
            runtime,
            limits,
        }
    }

    async fn run(&self, call: ConnectorCall<'_>) -> Called {
        let redactor = call.export.redactor();
        let Some(plugin) = &call.connector.plugin else {
            let slug = call.connector.spec.slug.clone();
            return Called::refused(CallError::ConnectorUnavailable(slug), redactor);
        };
        let spec = &plugin.spec;
        if let Some(max_wait) = call.budget {
            let spent = self
                .limits
                .acquire(
                    &spec.slug,
                    &spec.rate_profile,
                    &call.connection.id,
                    max_wait,
                )
                .await;
            if let Err(wait) = spent {
                return Called {
                    connector_version: Some(spec.version),
                    ..Called::refused(CallError::RateLimited(wait), redactor)
                };
            }
        }
        let ctx = &call.context;
        let runtime = &self.runtime;
        let CallReport { result, outbound } = match call.export {
            Export::Execute {
                capability,
                input,
                secret,
            } => answer(
                runtime
                    .execute(plugin, ctx, secret, capability, input)
                    .await,
                Answer::Output,
            ),
            Export::Health { secret } => answer(
                runtime.health_check(plugin, ctx, secret).await,
                Answer::Health,
            ),
            Export::Refresh {
                client,
                refresh_token,
            } => answer(
                runtime.refresh(plugin, ctx, client, refresh_token).await,
                Answer::Secret,
            ),
            Export::ExchangeCode { client, exchange } => answer(
                runtime.exchange_code(plugin, ctx, client, exchange).await,
                Answer::Secret,
            ),
        };
        Called {
            connector_version: Some(spec.version),
            result: settle(result, &redactor).map_err(|e| e.with_retry_hint(&outbound)),
            outbound,
            redactor,
        }
    }
}

impl Called {
    fn refused(e: CallError, redactor: Redactor) -> Self {
        Called {
            connector_version: None,
            result: Err(e),
            outbound: Vec::new(),
            redactor,
        }
    }
}

fn answer<T>(
    report: CallReport<Result<T, ConnectorError>>,
    wrap: fn(T) -> Answer,
) -> CallReport<Result<Answer, ConnectorError>> {
    CallReport {
        result: report.result.map(|r| r.map(wrap)),
        outbound: report.outbound,
    }
}

impl Connectors for Loaded {
    fn require(&self, connection: &Connection) -> Result<Connector, CallError> {
        let plugin = self.catalog.require(connection)?;
        Ok(Connector {
            spec: plugin.spec.clone(),
            plugin: Some(plugin),
        })
    }

    fn call<'a>(&'a self, call: ConnectorCall<'a>) -> BoxFuture<'a, Called> {
        Box::pin(self.run(call))
    }

    fn generation(&self) -> u64 {
        self.catalog.generation()
    }
}
