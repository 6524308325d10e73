//! The sandboxed plugin runtime: wasmtime components, one [`Plugin`] per loaded
//! connector, a fresh store per call.
//!
//! The engine uses the pooling allocator and epoch interruption. Each loaded component
//! gets one `InstancePre`; each call instantiates it into a new store with its own
//! memory limit, an epoch deadline (a guest running wasm yields to the executor every
//! tick and traps at its deadline) and a tokio timeout (stops a guest blocked in a host
//! call, which epochs cannot interrupt). WASI is linked
//! with no preopened directories, no environment, no sockets; guest stdout and stderr
//! become `tracing` lines tagged with the plugin. The host `http` import ([`egress`]) is
//! the only way out. A trapping, runaway or memory-hungry guest costs its own call a
//! typed [`Error`] and nothing else.
//!
//! Also here: the [`catalog`] of loaded connectors and the [`ratelimit`] budgets every
//! connector call spends from. May import: `domain`, `audit` (the redactor). Nothing
//! outside this folder imports wasmtime.

pub mod cache;
pub mod catalog;
pub mod egress;
mod host;
mod outcome;
pub mod ratelimit;

pub use outcome::{settle, CallContext, CallError, CallReport, ConnectorError, Health};

use crate::audit::Redactor;
use crate::domain::{
    AuthType, CapabilityRef, IntegrationSpec, OauthClient, OauthConfig, OwnershipMode, RateProfile,
    SecretFields,
};
use cache::{ComponentCache, Origin};
use egress::AllowedHosts;
use host::{CallState, Egress};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use zeroize::Zeroizing;

/// The bindings generated from `wit/connector.wit`; generated here and nowhere else.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::conduit::connector::types as wit;
use bindings::exports::conduit::connector::connector::Guest;

/// Bytes of each pooled linear memory kept mapped between instances (the guest's stack
/// and heap start).
const RESIDENT_MEMORY: usize = 2 * 1024 * 1024;

/// How often the epoch advances; deadlines are enforced to this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Runtime failures. A guest's own typed errors are [`ConnectorError`]s, not these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call ran past its deadline.
    #[error("plugin exceeded its {0:?} deadline")]
    Timeout(Duration),
    /// The guest tried to grow memory beyond its limit.
    #[error("plugin exceeded its memory limit of {0} bytes")]
    Memory(usize),
    /// The guest trapped (panic, unreachable, bad memory access…).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The component could not be compiled, linked or described.
    #[error("plugin could not be loaded: {0}")]
    Load(String),
}

/// Result with the runtime's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<wit::Error> for ConnectorError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::NeedsReauth(m) => ConnectorError::NeedsReauth(m),
            wit::Error::InvalidInput(m) => ConnectorError::InvalidInput(m),
            wit::Error::Unsupported(m) => ConnectorError::Unsupported(m),
            wit::Error::Provider(p) => ConnectorError::Provider {
                status: p.status,
                code: p.code,
                message: p.message,
                retryable: p.retryable,
            },
            wit::Error::Transient(m) => ConnectorError::Transient(m),
            wit::Error::Internal(m) => ConnectorError::Internal(m),
        }
    }
}

impl CallContext {
    fn to_wit(&self) -> wit::Context {
        wit::Context {
            connection_id: self.connection_id.clone(),
            tenant_id: self.tenant_id.clone(),
            environment: self.environment.clone(),
            external_account_id: self.external_account_id.clone(),
            config: serde_json::Value::Object(self.config.clone()).to_string(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// Per-deployment settings of one plugin (`plugins.toml`).
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    /// Replaces the connector's own allowed hosts.
    pub allowed_hosts: Option<Vec<String>>,
    /// Memory limit in MiB.
    pub memory_mb: Option<u32>,
    /// Call deadline in ms.
    pub deadline_ms: Option<u64>,
    /// Replaces the connector's own rate profile (a deployment's negotiated limit).
    pub rate_profile: Option<crate::domain::RateProfile>,
    /// Deployment defaults for connection config.
    pub config_defaults: serde_json::Map<String, serde_json::Value>,
}

/// Engine-wide limits.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub cache_dir: std::path::PathBuf,
    /// Default per-plugin memory limit.
    pub default_memory_mb: u32,
    /// Default per-call deadline.
    pub default_deadline: Duration,
    /// Cap on a response body a guest receives.
    pub max_response_bytes: u64,
    /// Concurrent instances the pool holds.
    pub max_instances: u32,
}

impl RuntimeConfig {
    /// Defaults: 64 MiB, 10 s, 10 MiB responses.
    pub fn new(cache_dir: impl Into<std::path::PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            default_memory_mb: 64,
            default_deadline: Duration::from_secs(10),
            max_response_bytes: 10 * 1024 * 1024,
            max_instances: 256,
        }
    }
}

/// A loaded connector: its spec and a pre-instantiated component.
pub struct Plugin {
    /// The IntegrationSpec (info() with overrides).
    pub spec: IntegrationSpec,
    /// SHA-256 of the wasm.
    pub wasm_sha256: String,
    /// Whether it was compiled or loaded from the cache.
    pub origin: Origin,
    /// How long loading took.
    pub load_time: Duration,
    pre: bindings::PluginPre<CallState>,
    egress: Arc<Egress>,
    memory_bytes: usize,
    deadline: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("slug", &self.spec.slug)
            .field("sha256", &self.wasm_sha256)
            .finish()
    }
}

type GuestFuture<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// The engine, linker and component cache shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    client: reqwest::Client,
    config: RuntimeConfig,
    ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances * 4)
            .total_tables(config.max_instances * 8)
            .total_stacks(config.max_instances)
            .max_memory_size(1 << 30)
            // Reset a finished instance's pages in place instead of returning them to the
            // kernel: without this, madvise and the page faults that follow were half of
            // every call's cost.
            .linear_memory_keep_resident(RESIDENT_MEMORY)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(256 * 1024)
            // Where the kernel can say which pages were touched (Linux 6.7+), reset
            // only those.
            .pagemap_scan(Enabled::Auto);
        let mut wasm_config = Config::new();
        wasm_config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&wasm_config).map_err(|e| Error::Load(format!("engine: {e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|_| {
                bindings::Plugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)
            })
            .map_err(|e| Error::Load(format!("linker: {e:#}")))?;

        let ticker = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker.clone(), engine.clone());
        std::thread::Builder::new()
            .name("conduit-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Error::Load(format!("epoch thread: {e}")))?;

        Ok(Runtime {
            cache: ComponentCache::new(&config.cache_dir),
            client: egress::client(),
            engine,
            linker,
            config,
            ticker,
        })
    }

    /// Compiles (or loads from the cache) a component, links it, and asks it for its
    /// `info()`. `expected_slug`, when given, must be what the component calls itself.
    pub async fn load(
        &self,
        wasm: Vec<u8>,
        expected_slug: Option<&str>,
        settings: &PluginSettings,
    ) -> Result<Plugin> {
        let started = Instant::now();
        let wasm_sha256 = cache::wasm_sha256(&wasm);
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let (component, origin) =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &wasm))
                .await
                .map_err(|e| Error::Load(format!("compile task: {e}")))?
                .map_err(|e| Error::Load(format!("not a valid connector component: {e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| {
                Error::Load(format!(
                    "component does not fit the conduit:connector@0.1.0 plugin world: {e:#}"
                ))
            })?;

        let mut plugin = Plugin {
            spec: placeholder_spec(),
            wasm_sha256,
            origin,
            load_time: Duration::ZERO,
            pre,
            egress: Arc::new(Egress::new(
                "loading",
                AllowedHosts::default(),
                self.client.clone(),
                0,
            )),
            memory_bytes: settings.memory_mb.unwrap_or(self.config.default_memory_mb) as usize
                * 1024
                * 1024,
            deadline: settings
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(self.config.default_deadline),
        };
        let info = self
            .call(&plugin, &Redactor::default(), |guest, store| {
                Box::pin(guest.call_info(store))
            })
            .await
            .result?;
        let mut spec = spec_from_info(info)?;
        if let Some(slug) = expected_slug {
            if slug != spec.slug {
                return Err(Error::Load(format!(
                    "plugins.toml names `{slug}` but the component is `{}`",
                    spec.slug
                )));
            }
        }
        if let Some(hosts) = &settings.allowed_hosts {
            spec.allowed_hosts = hosts.clone();
        }
        if let Some(profile) = settings.rate_profile {
            spec.rate_profile = profile;
        }
        spec.config_defaults = settings.config_defaults.clone();
        let allowed =
            AllowedHosts::parse(&spec.allowed_hosts).map_err(|e| Error::Load(e.to_string()))?;
        plugin.egress = Arc::new(Egress::new(
            &spec.slug,
            allowed,
            self.client.clone(),
            self.config.max_response_bytes,
        ));
        plugin.spec = spec;
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }

    /// Runs a capability.
    pub async fn execute(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        secret: &SecretFields,
        capability: &str,
        input: &str,
    ) -> CallReport<std::result::Result<String, ConnectorError>> {
        let (ctx, secret, capability, input) = (
            ctx.to_wit(),
            WitSecret::from(secret),
            capability.to_owned(),
            input.to_owned(),
        );
        let redactor = Redactor::for_secret(&secret.0);
        let report = self
            .call(plugin, &redactor, move |guest, store| {
                Box::pin(async move {
                    guest
                        .call_execute(store, &ctx, &secret.0, &capability, &input)
                        .await
                })
            })
            .await;
        map_guest_error(report)
    }

    /// Trades a refresh token for new tokens through the connector's `refresh`.
    pub async fn refresh(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        client: &OauthClient,
        refresh_token: &str,
    ) -> CallReport<std::result::Result<SecretFields, ConnectorError>> {
        let (ctx, wit_client) = (ctx.to_wit(), wit_client(client));
        let refresh_token = Zeroizing::new(refresh_token.to_owned());
        let redactor = Redactor::new([client.client_secret.as_str(), refresh_token.as_str()]);
        let report = self
            .call(plugin, &redactor, move |guest, store| {
                Box::pin(async move {
                    guest
                        .call_refresh(store, &ctx, &wit_client.0, &refresh_token)
                        .await
                })
            })
            .await;
        map_guest_secret(report)
    }

    /// Exchanges an OAuth authorization code through the connector's `exchange-code`.
    pub async fn exchange_code(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        client: &OauthClient,
        exchange: &CodeExchange,
    ) -> CallReport<std::result::Result<SecretFields, ConnectorError>> {
        let (ctx, wit_client, exchange) = (ctx.to_wit(), wit_client(client), exchange.clone());
        let redactor = Redactor::new(
            [client.client_secret.as_str(), exchange.code.as_str()]
                .into_iter()
                .chain(exchange.code_verifier.as_deref()),
        );
        let report = self
            .call(plugin, &redactor, move |guest, store| {
                Box::pin(async move {
                    guest
                        .call_exchange_code(
                            store,
                            &ctx,
                            &wit_client.0,
                            &exchange.code,
                            &exchange.redirect_uri,
                            exchange.code_verifier.as_deref(),
                        )
                        .await
                })
            })
            .await;
        map_guest_secret(report)
    }

    /// Runs the connector's health check.
    pub async fn health_check(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        secret: &SecretFields,
    ) -> CallReport<std::result::Result<Health, ConnectorError>> {
        let (ctx, secret) = (ctx.to_wit(), WitSecret::from(secret));
        let redactor = Redactor::for_secret(&secret.0);
        let report = self
            .call(plugin, &redactor, move |guest, store| {
                Box::pin(async move { guest.call_health_check(store, &ctx, &secret.0).await })
            })
            .await;
        let CallReport { result, outbound } = map_guest_error(report);
        let result = result.map(|r| {
            r.map(|h| Health {
                healthy: h.healthy,
                detail: h.detail,
            })
        });
        CallReport { result, outbound }
    }

    /// Instantiates `plugin` into a fresh store and runs `body` against its exports
    /// under the plugin's deadline and memory limit.
    async fn call<T: Send>(
        &self,
        plugin: &Plugin,
        redactor: &Redactor,
        body: impl for<'a> FnOnce(&'a Guest, &'a mut Store<CallState>) -> GuestFuture<'a, T>,
    ) -> CallReport<T> {
        let deadline = Instant::now() + plugin.deadline;
        let state = CallState::new(
            plugin.egress.clone(),
            redactor.clone(),
            plugin.memory_bytes,
            deadline,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick a running guest yields to the executor, so a spinning guest
        // never holds a tokio worker for more than one tick; past the deadline it traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            body(instance.conduit_connector_connector(), &mut store).await
        };
        let outcome = tokio::time::timeout(plugin.deadline, run).await;
        let state = store.into_data();
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_elapsed) => Err(Error::Timeout(plugin.deadline)),
            Ok(Err(e)) => Err(classify(e, &state, plugin)),
        };
        if let Err(e) = &result {
            tracing::warn!(plugin = %plugin.spec.slug, error = %redactor.redact(&e.to_string()), "plugin call failed");
        }
        CallReport {
            result,
            outbound: state.outbound,
        }
    }
}

/// Turns a wasmtime failure into the runtime error it stands for.
fn classify(e: wasmtime::Error, state: &CallState, plugin: &Plugin) -> Error {
    if state.limiter.exceeded {
        Error::Memory(plugin.memory_bytes)
    } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        Error::Timeout(plugin.deadline)
    } else {
        Error::Trap(format!("{e:#}").lines().next().unwrap_or("trap").to_owned())
    }
}

fn map_guest_error<T>(
    report: CallReport<std::result::Result<T, wit::Error>>,
) -> CallReport<std::result::Result<T, ConnectorError>> {
    CallReport {
        result: report.result.map(|r| r.map_err(ConnectorError::from)),
        outbound: report.outbound,
    }
}

/// An authorization code to exchange, with what the token endpoint checks it against.
#[derive(Clone)]
pub struct CodeExchange {
    /// The code the provider sent to the callback.
    pub code: String,
    /// The redirect URI the consent was started with.
    pub redirect_uri: String,
    /// The PKCE verifier, when the flow used PKCE.
    pub code_verifier: Option<String>,
}

impl Drop for CodeExchange {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.code.zeroize();
        self.code_verifier.zeroize();
    }
}

fn map_guest_secret(
    report: CallReport<std::result::Result<wit::Secret, wit::Error>>,
) -> CallReport<std::result::Result<SecretFields, ConnectorError>> {
    let CallReport { result, outbound } = map_guest_error(report);
    let result = result.map(|r| r.map(|secret| secret_fields(WitSecret(secret))));
    CallReport { result, outbound }
}

fn secret_fields(mut wit: WitSecret) -> SecretFields {
    SecretFields {
        access_token: wit.0.access_token.take(),
        refresh_token: wit.0.refresh_token.take(),
        api_key: wit.0.api_key.take(),
        api_secret: wit.0.api_secret.take(),
        expires_at: wit.0.expires_at,
    }
}

/// The WIT client handed to a guest, zeroized when the call is over.
struct WitClient(wit::Client);

fn wit_client(client: &OauthClient) -> WitClient {
    WitClient(wit::Client {
        client_id: client.client_id.clone(),
        client_secret: client.client_secret.clone(),
    })
}

impl Drop for WitClient {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.client_secret.zeroize();
    }
}

/// The WIT secret handed to a guest, zeroized when the call is over.
struct WitSecret(wit::Secret);

impl From<&SecretFields> for WitSecret {
    fn from(s: &SecretFields) -> Self {
        WitSecret(wit::Secret {
            access_token: s.access_token.clone(),
            refresh_token: s.refresh_token.clone(),
            api_key: s.api_key.clone(),
            api_secret: s.api_secret.clone(),
            expires_at: s.expires_at,
        })
    }
}

impl Drop for WitSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.access_token.zeroize();
        self.0.refresh_token.zeroize();
        self.0.api_key.zeroize();
        self.0.api_secret.zeroize();
    }
}

impl Redactor {
    fn for_secret(secret: &wit::Secret) -> Self {
        Redactor::new(
            [
                &secret.access_token,
                &secret.refresh_token,
                &secret.api_key,
                &secret.api_secret,
            ]
            .into_iter()
            .filter_map(|v| v.as_deref()),
        )
    }
}

fn placeholder_spec() -> IntegrationSpec {
    IntegrationSpec {
        slug: String::new(),
        integration_key: String::new(),
        version: 0,
        display_name: String::new(),
        category: String::new(),
        auth_type: AuthType::None,
        ownership_modes: Vec::new(),
        capabilities: Vec::new(),
        allowed_hosts: Vec::new(),
        rate_profile: RateProfile {
            requests: 0,
            per_seconds: 1,
            burst: 0,
        },
        oauth: None,
        config_defaults: Default::default(),
    }
}

/// Converts and checks a connector's `info()`.
fn spec_from_info(info: wit::ConnectorInfo) -> Result<IntegrationSpec> {
    let invalid = |what: String| Error::Load(format!("info() is invalid: {what}"));
    let slug_ok = !info.slug.is_empty()
        && info.slug.len() <= 64
        && info
            .slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug_ok {
        return Err(invalid(format!(
            "slug `{}` must be lowercase letters, digits and dashes",
            info.slug
        )));
    }
    if info.integration_key.split('.').count() != 2 {
        return Err(invalid(format!(
            "integration key `{}` must be `<category>.<provider>`",
            info.integration_key
        )));
    }
    let ownership_modes = info
        .ownership_modes
        .iter()
        .map(|m| match m.as_str() {
            "managed" => Ok(OwnershipMode::Managed),
            "byok" => Ok(OwnershipMode::Byok),
            other => Err(invalid(format!("unknown ownership mode `{other}`"))),
        })
        .collect::<Result<Vec<_>>>()?;
    if info.rate_profile.per_seconds == 0 {
        return Err(invalid("rate profile per-seconds must be positive".into()));
    }
    Ok(IntegrationSpec {
        slug: info.slug,
        integration_key: info.integration_key,
        version: info.version,
        display_name: info.display_name,
        category: info.category,
        auth_type: match info.auth_type {
            wit::AuthType::Oauth2 => AuthType::Oauth2,
            wit::AuthType::ApiKey => AuthType::ApiKey,
            wit::AuthType::ApiKeySecret => AuthType::ApiKeySecret,
            wit::AuthType::None => AuthType::None,
        },
        ownership_modes,
        capabilities: info
            .capabilities
            .into_iter()
            .map(|c| CapabilityRef {
                key: c.key,
                version: c.version,
                description: c.description,
            })
            .collect(),
        allowed_hosts: info.allowed_hosts,
        rate_profile: RateProfile {
            requests: info.rate_profile.requests,
            per_seconds: info.rate_profile.per_seconds,
            burst: info.rate_profile.burst,
        },
        oauth: info.oauth.map(|o| OauthConfig {
            authorize_url: o.authorize_url,
            token_url: o.token_url,
            scopes: o.scopes,
            pkce: o.pkce,
        }),
        config_defaults: Default::default(),
    })
}
