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
//! connector call spends from. May import: `domain`, `audit` (the redactor),
//! `observe`. Nothing
//! outside this folder imports wasmtime.

pub mod admission;
pub mod cache;
pub mod catalog;
pub mod connectors;
mod convert;
pub mod egress;
pub mod footprint;
mod host;
mod inspect;
mod outcome;
pub mod ratelimit;

pub use convert::CodeExchange;
use convert::{map_guest_secret, placeholder_spec, wit_client, WitSecret};
pub use outcome::{settle, CallContext, CallError, CallReport, ConnectorError, Health};

use crate::audit::Redactor;
use crate::domain::{IntegrationSpec, OauthClient, SecretFields};
pub use admission::{Admission, Busy};
use cache::{ComponentCache, Origin};
use egress::AllowedHosts;
pub use footprint::{Footprint, PoolLimits};
use host::{CallState, Egress};
pub use inspect::Inspection;
use secrecy::ExposeSecret;
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
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower};

/// Bytes of each pooled linear memory kept mapped between instances (the guest's stack
/// and heap start).
const RESIDENT_MEMORY: usize = 2 * 1024 * 1024;

/// Host memory one component instance's contexts may take (all its core instances'
/// `vmctx`es together), a ceiling wasmtime checks at compile: generous, since a
/// componentize-py component links CPython's many modules.
const COMPONENT_INSTANCE_BYTES: usize = 16 * 1024 * 1024;

/// The `conduit:connector` contract versions this host links.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

/// How long `info()` (instantiation included) may take at load.
const INFO_DEADLINE: Duration = Duration::from_secs(2);

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
    /// The engine, linker or a runtime thread could not be set up.
    #[error("plugin could not be loaded: {0}")]
    Load(String),
    /// No room to run it within the queue wait.
    #[error("{0}")]
    Busy(Busy),
    /// A component was refused at one step of the load path.
    #[error("{step}: {detail}")]
    Refused {
        /// The step that refused it.
        step: LoadStep,
        /// Why, for the operator.
        detail: String,
    },
}

/// The steps of the load path, in order; each refusal names its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    /// Parsing the binary: not a (whole) WebAssembly component.
    Parse,
    /// The `conduit:connector` contract it exports is not one this host supports.
    Contract,
    /// It needs more of the instance pool (or memory) than one instance may take.
    Pool,
    /// Cranelift refused it.
    Compile,
    /// It imports something the host does not provide.
    Link,
    /// `info()` trapped, ran out of time or memory.
    Info,
    /// `info()` answered something invalid (slug, keys, capabilities, hosts).
    Describe,
    /// It does not fit its deployment settings (slug, grant, memory limit).
    Settings,
}

impl LoadStep {
    /// The stable error code of a refusal at this step.
    pub fn code(self) -> &'static str {
        match self {
            LoadStep::Parse => "invalid_component",
            LoadStep::Contract => "unsupported_contract",
            LoadStep::Pool => "exceeds_pool",
            LoadStep::Compile => "compile_failed",
            LoadStep::Link => "link_failed",
            LoadStep::Info => "info_failed",
            LoadStep::Describe => "invalid_info",
            LoadStep::Settings => "invalid_settings",
        }
    }
}

impl std::fmt::Display for LoadStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadStep::Parse => "parse",
            LoadStep::Contract => "contract",
            LoadStep::Pool => "pool",
            LoadStep::Compile => "compile",
            LoadStep::Link => "link",
            LoadStep::Info => "info",
            LoadStep::Describe => "describe",
            LoadStep::Settings => "settings",
        })
    }
}

fn refused(step: LoadStep, detail: impl Into<String>) -> Error {
    Error::Refused {
        step,
        detail: detail.into(),
    }
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
    /// What one instance may take from the pool; the pool holds `max_instances`
    /// instances of the largest component these admit.
    pub pool: PoolLimits,
    /// Instances one tenant may run at once.
    pub tenant_concurrency: u32,
    /// How long a call waits for room before it is refused as busy.
    pub queue_wait: Duration,
}

/// Instances one tenant may run at once, by default: a quarter of the pool, so three
/// other tenants' bursts still fit beside it.
pub fn default_tenant_concurrency(max_instances: u32) -> u32 {
    (max_instances / 4).max(1)
}

/// How long a call waits for room, by default.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(1);

impl RuntimeConfig {
    /// Defaults: 64 MiB, 10 s, 10 MiB responses, 256 instances, a quarter per tenant.
    pub fn new(cache_dir: impl Into<std::path::PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            default_memory_mb: 64,
            default_deadline: Duration::from_secs(10),
            max_response_bytes: 10 * 1024 * 1024,
            max_instances: 256,
            pool: PoolLimits::default(),
            tenant_concurrency: default_tenant_concurrency(256),
            queue_wait: DEFAULT_QUEUE_WAIT,
        }
    }
}

/// A compiled, linked component that answered `info()`, before its deployment
/// settings apply: what [`Runtime::configure`] makes plugins of (again, when a grant
/// changes).
pub struct Prepared {
    /// The spec as the component describes itself.
    pub info: Arc<IntegrationSpec>,
    /// SHA-256 of the wasm.
    pub wasm_sha256: String,
    /// Whether it was compiled or loaded from the cache.
    pub origin: Origin,
    /// What one instance takes from the pool.
    pub footprint: Footprint,
    /// How long compiling (or reading the cache) and `info()` took.
    pub load_time: Duration,
    pre: bindings::PluginPre<CallState>,
    exports: Exports,
}

/// Where the contract's exports are in a component, found once at load: a call looks
/// up (and type-checks) only the export it runs, not all five.
#[derive(Clone)]
struct Exports {
    info: ComponentExportIndex,
    execute: ComponentExportIndex,
    health_check: ComponentExportIndex,
    refresh: ComponentExportIndex,
    exchange_code: ComponentExportIndex,
}

/// The `conduit:connector/connector` interface a component exports.
const CONNECTOR_INTERFACE: &str = "conduit:connector/connector@0.1.0";

impl Exports {
    /// The exports of a component that linked as a `plugin` world (so each is there).
    fn of(component: &wasmtime::component::Component) -> std::result::Result<Self, String> {
        let (_, interface) = component
            .get_export(None, CONNECTOR_INTERFACE)
            .ok_or_else(|| format!("it does not export {CONNECTOR_INTERFACE}"))?;
        let find = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| format!("{CONNECTOR_INTERFACE} has no `{name}`"))
        };
        Ok(Exports {
            info: find("info")?,
            execute: find("execute")?,
            health_check: find("health-check")?,
            refresh: find("refresh")?,
            exchange_code: find("exchange-code")?,
        })
    }
}

/// One instance's contract exports.
struct Guest<'a> {
    instance: Instance,
    exports: &'a Exports,
}

impl Guest<'_> {
    /// Calls one export, type-checked against the contract's signature.
    async fn call<P, R>(
        &self,
        store: &mut Store<CallState>,
        export: &ComponentExportIndex,
        params: P,
    ) -> wasmtime::Result<R>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let func = self.instance.get_typed_func::<P, R>(&mut *store, export)?;
        func.call_async(&mut *store, params).await
    }

    async fn call_info(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<wit::ConnectorInfo> {
        let (info,) = self
            .call::<(), (wit::ConnectorInfo,)>(store, &self.exports.info, ())
            .await?;
        Ok(info)
    }

    async fn call_execute(
        &self,
        store: &mut Store<CallState>,
        ctx: &wit::Context,
        secret: &wit::Secret,
        capability: &str,
        input: &str,
    ) -> wasmtime::Result<std::result::Result<String, wit::Error>> {
        let (answer,) = self
            .call::<(&wit::Context, &wit::Secret, &str, &str), (std::result::Result<String, wit::Error>,)>(
                store,
                &self.exports.execute,
                (ctx, secret, capability, input),
            )
            .await?;
        Ok(answer)
    }

    async fn call_health_check(
        &self,
        store: &mut Store<CallState>,
        ctx: &wit::Context,
        secret: &wit::Secret,
    ) -> wasmtime::Result<std::result::Result<wit::Health, wit::Error>> {
        let (answer,) = self
            .call::<(&wit::Context, &wit::Secret), (std::result::Result<wit::Health, wit::Error>,)>(
                store,
                &self.exports.health_check,
                (ctx, secret),
            )
            .await?;
        Ok(answer)
    }

    async fn call_refresh(
        &self,
        store: &mut Store<CallState>,
        ctx: &wit::Context,
        client: &wit::Client,
        refresh_token: &str,
    ) -> wasmtime::Result<std::result::Result<wit::Secret, wit::Error>> {
        let (answer,) = self
            .call::<(&wit::Context, &wit::Client, &str), (std::result::Result<wit::Secret, wit::Error>,)>(
                store,
                &self.exports.refresh,
                (ctx, client, refresh_token),
            )
            .await?;
        Ok(answer)
    }

    async fn call_exchange_code(
        &self,
        store: &mut Store<CallState>,
        ctx: &wit::Context,
        client: &wit::Client,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> wasmtime::Result<std::result::Result<wit::Secret, wit::Error>> {
        let (answer,) = self
            .call::<
                (&wit::Context, &wit::Client, &str, &str, Option<&str>),
                (std::result::Result<wit::Secret, wit::Error>,),
            >(
                store,
                &self.exports.exchange_code,
                (ctx, client, code, redirect_uri, code_verifier),
            )
            .await?;
        Ok(answer)
    }
}

/// A loaded connector: its spec and a pre-instantiated component.
pub struct Plugin {
    /// The IntegrationSpec (info() with overrides; `allowed_hosts` is the grant).
    pub spec: Arc<IntegrationSpec>,
    /// The hosts the component asked for in `info()`.
    pub requested_hosts: Vec<String>,
    /// What it was configured from.
    pub prepared: Arc<Prepared>,
    egress: Arc<Egress>,
    memory_bytes: usize,
    deadline: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("slug", &self.spec.slug)
            .field("sha256", &self.prepared.wasm_sha256)
            .finish()
    }
}

type GuestFuture<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// The engine, linker and component cache shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    admission: Admission,
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
        let (instances, limits) = (config.max_instances, config.pool);
        let mut pool = PoolingAllocationConfig::default();
        // Sized for `instances` of the largest component the limits admit: a Python
        // connector's fourteen core instances take no capacity from other calls.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(limits.core_instances))
            .total_memories(instances.saturating_mul(limits.memories))
            .total_tables(instances.saturating_mul(limits.tables))
            .total_stacks(instances)
            .max_core_instances_per_component(limits.core_instances)
            .max_memories_per_component(limits.memories)
            .max_tables_per_component(limits.tables)
            .max_component_instance_size(COMPONENT_INSTANCE_BYTES)
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
            admission: Admission::new(
                config.max_instances,
                config.tenant_concurrency,
                config.queue_wait,
            ),
            cache: ComponentCache::new(&config.cache_dir),
            engine,
            linker,
            config,
            ticker,
        })
    }

    /// The whole load path: [`Runtime::prepare`], then [`Runtime::configure`] with
    /// `settings`. `expected_slug`, when given, must be what the component calls itself.
    pub async fn load(
        &self,
        wasm: Vec<u8>,
        expected_slug: Option<&str>,
        settings: &PluginSettings,
    ) -> Result<Plugin> {
        let prepared = self.prepare(wasm).await?;
        if let Some(slug) = expected_slug {
            if slug != prepared.info.slug {
                return Err(refused(
                    LoadStep::Settings,
                    format!(
                        "plugins.toml names `{slug}` but the component is `{}`",
                        prepared.info.slug
                    ),
                ));
            }
        }
        self.configure(Arc::new(prepared), settings)
    }

    /// The load path up to `info()`: parse and count what it needs, check its contract
    /// and that it fits the pool (before any compile), compile it off the executor's
    /// threads (or read the authenticated cache), link it, and ask its `info()` within
    /// [`INFO_DEADLINE`]. Each refusal names its [`LoadStep`].
    pub async fn prepare(&self, wasm: Vec<u8>) -> Result<Prepared> {
        let sha256 = cache::wasm_sha256(&wasm);
        self.prepare_hashed(wasm, sha256).await
    }

    /// [`Runtime::prepare`] of bytes whose [`cache::wasm_sha256`] the caller has already.
    pub async fn prepare_hashed(&self, wasm: Vec<u8>, wasm_sha256: String) -> Result<Prepared> {
        let started = Instant::now();
        let footprint =
            Footprint::of(&wasm).map_err(|e| refused(LoadStep::Parse, e.to_string()))?;
        let contract = inspect::contract_problems(&footprint);
        if !contract.is_empty() {
            return Err(refused(LoadStep::Contract, contract.join("; ")));
        }
        let over: Vec<String> = footprint
            .exceeds(&self.config.pool)
            .iter()
            .map(ToString::to_string)
            .collect();
        if !over.is_empty() {
            return Err(refused(LoadStep::Pool, over.join("; ")));
        }
        let (engine, cache, sha256) =
            (self.engine.clone(), self.cache.clone(), wasm_sha256.clone());
        let (component, origin) =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &wasm, &sha256))
                .await
                .map_err(|e| Error::Load(format!("compile task: {e}")))?
                .map_err(|e| refused(LoadStep::Compile, format!("{e:#}")))?;
        crate::observe::plugin_loaded(match origin {
            Origin::Cache => "cached",
            Origin::Compiled => "compiled",
        });
        let (pre, exports) = self.link(&component).map_err(|e| {
            refused(
                LoadStep::Link,
                format!("the component does not fit the conduit:connector@0.1.0 plugin world: {e}"),
            )
        })?;
        let mut prepared = Prepared {
            info: Arc::new(placeholder_spec()),
            wasm_sha256,
            origin,
            footprint,
            load_time: Duration::ZERO,
            pre,
            exports,
        };
        let info = self
            .ask_info(&prepared)
            .await
            .map_err(|e| refused(LoadStep::Info, format!("info() failed: {e}")))?;
        let (spec, problems) = convert::describe(info);
        if !problems.is_empty() {
            return Err(refused(LoadStep::Describe, problems.join("; ")));
        }
        prepared.info = Arc::new(spec);
        prepared.load_time = started.elapsed();
        Ok(prepared)
    }

    /// Links a compiled component against the `plugin` world and finds its exports.
    /// `PluginPre::new` type-checks every export at load, so a wrong signature is
    /// refused here rather than at a call; its indices are private to the generated
    /// bindings, so [`Exports`] finds the ones calls use again (once per load).
    fn link(
        &self,
        component: &wasmtime::component::Component,
    ) -> std::result::Result<(bindings::PluginPre<CallState>, Exports), String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| format!("{e:#}"))?;
        Ok((pre, Exports::of(component)?))
    }

    /// Runs `info()` in a throwaway instance that reaches nothing.
    async fn ask_info(&self, prepared: &Prepared) -> Result<wit::ConnectorInfo> {
        let probe = Plugin {
            spec: prepared.info.clone(),
            requested_hosts: Vec::new(),
            prepared: Arc::new(Prepared {
                info: prepared.info.clone(),
                wasm_sha256: prepared.wasm_sha256.clone(),
                origin: prepared.origin,
                footprint: prepared.footprint.clone(),
                load_time: Duration::ZERO,
                pre: prepared.pre.clone(),
                exports: prepared.exports.clone(),
            }),
            egress: self.loading_egress(),
            memory_bytes: self.config.default_memory_mb as usize * 1024 * 1024,
            deadline: INFO_DEADLINE,
        };
        self.call(&probe, None, &Redactor::default(), |guest, store| {
            Box::pin(guest.call_info(store))
        })
        .await
        .result
    }

    /// Applies a deployment's settings to a prepared component: its egress grant (the
    /// operator's, else what it may have by asking), memory limit, deadline, rate
    /// profile and config defaults. Cheap: a new grant re-configures without a compile.
    pub fn configure(&self, prepared: Arc<Prepared>, settings: &PluginSettings) -> Result<Plugin> {
        let memory_bytes =
            settings.memory_mb.unwrap_or(self.config.default_memory_mb) as usize * 1024 * 1024;
        if let Some(e) = prepared.footprint.exceeds_memory(memory_bytes) {
            return Err(refused(LoadStep::Pool, e.to_string()));
        }
        let mut spec = (*prepared.info).clone();
        let (allowed, granted) = match &settings.allowed_hosts {
            Some(grant) => (
                AllowedHosts::parse(grant)
                    .map_err(|e| refused(LoadStep::Settings, e.to_string()))?,
                grant.clone(),
            ),
            None => AllowedHosts::requested(&spec.allowed_hosts),
        };
        let requested_hosts = std::mem::replace(&mut spec.allowed_hosts, granted);
        if let Some(profile) = settings.rate_profile {
            spec.rate_profile = profile;
        }
        spec.config_defaults = settings.config_defaults.clone();
        let egress = Arc::new(Egress::new(
            &spec.slug,
            allowed,
            self.config.max_response_bytes,
        ));
        Ok(Plugin {
            spec: Arc::new(spec),
            requested_hosts,
            prepared,
            egress,
            memory_bytes,
            deadline: settings
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(self.config.default_deadline),
        })
    }

    /// The egress of a component being loaded: `info()` must not call the host, so it
    /// reaches nothing.
    fn loading_egress(&self) -> Arc<Egress> {
        Arc::new(Egress::new("loading", AllowedHosts::default(), 0))
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
        let tenant: &str = &ctx.tenant_id;
        let (ctx, secret, capability, input) = (
            ctx.to_wit(),
            WitSecret::from(secret),
            capability.to_owned(),
            input.to_owned(),
        );
        let redactor = Redactor::for_secret(&secret.0);
        let report = self
            .call(plugin, Some(tenant), &redactor, move |guest, store| {
                Box::pin(async move {
                    guest
                        .call_execute(store, &ctx, &secret.0, &capability, &input)
                        .await
                })
            })
            .await;
        let CallReport { result, outbound } = map_guest_error(report);
        let result = result.map(|answer| answer.and_then(within_output_bound));
        CallReport { result, outbound }
    }

    /// Trades a refresh token for new tokens through the connector's `refresh`.
    pub async fn refresh(
        &self,
        plugin: &Plugin,
        ctx: &CallContext,
        client: &OauthClient,
        refresh_token: &str,
    ) -> CallReport<std::result::Result<SecretFields, ConnectorError>> {
        let tenant: &str = &ctx.tenant_id;
        let (ctx, wit_client) = (ctx.to_wit(), wit_client(client));
        let refresh_token = Zeroizing::new(refresh_token.to_owned());
        let redactor =
            Redactor::new([client.client_secret.expose_secret(), refresh_token.as_str()]);
        let report = self
            .call(plugin, Some(tenant), &redactor, move |guest, store| {
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
        let tenant: &str = &ctx.tenant_id;
        let (ctx, wit_client) = (ctx.to_wit(), wit_client(client));
        // Owned copies for the guest call, wiped when it is over.
        let code = Zeroizing::new(exchange.code.expose_secret().to_owned());
        let verifier = exchange
            .code_verifier
            .as_ref()
            .map(|v| Zeroizing::new(v.expose_secret().to_owned()));
        let redirect_uri = exchange.redirect_uri.clone();
        let redactor = Redactor::new(
            [client.client_secret.expose_secret(), code.as_str()]
                .into_iter()
                .chain(verifier.as_ref().map(|v| v.as_str())),
        );
        let report = self
            .call(plugin, Some(tenant), &redactor, move |guest, store| {
                Box::pin(async move {
                    guest
                        .call_exchange_code(
                            store,
                            &ctx,
                            &wit_client.0,
                            &code,
                            &redirect_uri,
                            verifier.as_ref().map(|v| v.as_str()),
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
        let tenant: &str = &ctx.tenant_id;
        let (ctx, secret) = (ctx.to_wit(), WitSecret::from(secret));
        let redactor = Redactor::for_secret(&secret.0);
        let report = self
            .call(plugin, Some(tenant), &redactor, move |guest, store| {
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

    /// Instances running now.
    pub fn instances_in_use(&self) -> usize {
        self.admission.in_use()
    }

    /// Instances the pool holds.
    pub fn instances_capacity(&self) -> usize {
        self.config.max_instances as usize
    }

    /// Once admitted on `tenant`'s behalf (`None`: the host's own, loading),
    /// instantiates `plugin` into a fresh store and runs `body` against its exports
    /// under the plugin's deadline and memory limit.
    async fn call<T: Send>(
        &self,
        plugin: &Plugin,
        tenant: Option<&str>,
        redactor: &Redactor,
        body: impl for<'a> FnOnce(&'a Guest<'a>, &'a mut Store<CallState>) -> GuestFuture<'a, T>,
    ) -> CallReport<T> {
        let room = match self.admission.admit(tenant).await {
            Ok(permit) => permit,
            Err(busy) => {
                tracing::warn!(plugin = %plugin.spec.slug, tenant, %busy, "connector call refused");
                return CallReport {
                    result: Err(Error::Busy(busy)),
                    outbound: Vec::new(),
                };
            }
        };
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
            let instance = plugin
                .prepared
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            let guest = Guest {
                instance,
                exports: &plugin.prepared.exports,
            };
            body(&guest, &mut store).await
        };
        let outcome = tokio::time::timeout(plugin.deadline, run).await;
        let state = store.data_mut();
        let outbound = std::mem::take(&mut state.outbound);
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_elapsed) => Err(Error::Timeout(plugin.deadline)),
            Ok(Err(e)) => Err(classify(e, state, plugin)),
        };
        if let Err(e) = &result {
            tracing::warn!(plugin = %plugin.spec.slug, error = %redactor.redact(&e.to_string()), "plugin call failed");
        }
        retire(store, room);
        CallReport { result, outbound }
    }
}

/// Tears a finished call's store down (its instance's memory and tables reset for the
/// next call: the largest fixed cost of a call after instantiation), then gives its
/// room back. On a serving thread (a current-thread runtime) this happens in a task
/// that runs once the call's answer is written, so the caller does not wait for it;
/// elsewhere (a multi-thread runtime) a task would wake another worker to run beside
/// the next call, which costs more than it saves, so it happens here. Nothing of the
/// store is used again either way.
fn retire(store: Store<CallState>, room: admission::Permit) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let teardown = move || {
        drop(store);
        drop(room);
    };
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            runtime.spawn(async move { teardown() });
        }
        _ => teardown(),
    }
}

/// A guest's output, unless it is larger than any caller should be handed.
fn within_output_bound(output: String) -> std::result::Result<String, ConnectorError> {
    let cap = host::bounds::MAX_OUTPUT_BYTES;
    if output.len() > cap {
        return Err(ConnectorError::Internal(format!(
            "the connector answered {} bytes, over the {cap}-byte cap",
            output.len()
        )));
    }
    Ok(output)
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

pub(super) fn map_guest_error<T>(
    report: CallReport<std::result::Result<T, wit::Error>>,
) -> CallReport<std::result::Result<T, ConnectorError>> {
    CallReport {
        result: report.result.map(|r| r.map_err(ConnectorError::from)),
        outbound: report.outbound,
    }
}
