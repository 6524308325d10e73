//! The composition root: opens the data directory, the vault and the store, loads the
//! plugins, and wires the use cases the API serves. Also owns the embedded defaults of
//! a fresh machine: a development master key and admin token generated into the data
//! directory (0600) with a loud warning.

use crate::accounts::connections::Connections;
use crate::accounts::tenants::{self, Tenants};
use crate::audit::Audit;
use crate::binding::blueprints::Blueprints;
use crate::binding::configs::Configs;
use crate::binding::resolver::Resolver;
use crate::credentials::notify::{Notifier, WebhookConfig};
use crate::credentials::oauth::{Clients, ConnectorRefresher, Oauth};
use crate::credentials::rotation::Rotation;
use crate::credentials::scheduler::{Scheduler, SchedulerConfig};
use crate::credentials::tokens::{BackoffPolicy, RefreshLeads, Tokens};
use crate::credentials::vault::{self, Key, Vault};
use crate::credentials::vending::Vending;
use crate::deploy::{self, Deployer};
use crate::exec::circuit::{CircuitPolicy, Circuits};
use crate::exec::contracts::Contracts;
use crate::exec::idempotency::Idempotency;
use crate::exec::{self, Exec};
/// The log line format `serve` installs: each line emitted while a request is served
/// carries the request's method, route, id and tenant.
pub use crate::observe::logs::RequestLines as LogFormat;
use crate::runtime::catalog::{self, Catalog};
use crate::runtime::connectors::{Connectors, Loaded};
use crate::runtime::ratelimit::RateLimits;
use crate::runtime::{self, Runtime, RuntimeConfig};
use crate::store::{self, Stores};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or a key file cannot be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is malformed or does not open the vault.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// `plugins.toml` cannot be read.
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    /// A `plugins.toml` connector cannot be loaded.
    #[error("{0}")]
    Deploy(#[from] deploy::Error),
}

/// Where Conduit keeps its state and finds its plugins.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory (sled, generated keys, the component cache).
    pub data_dir: PathBuf,
    /// `postgres://…`: keep everything in PostgreSQL, shared by every replica given
    /// the same URL, instead of sled in `data_dir`.
    pub database_url: Option<secrecy::SecretString>,
    /// `plugins.toml`; `None` loads no plugin.
    pub plugins_file: Option<PathBuf>,
    /// A directory watched for components to hot-load.
    pub plugins_dir: Option<PathBuf>,
    /// The largest component accepted (upload or directory).
    pub max_component_bytes: usize,
    /// The compiled-component cache; defaults to `<data_dir>/component-cache`.
    pub cache_dir: Option<PathBuf>,
    /// `CONDUIT_MASTER_KEY`: base64 of 32 bytes.
    pub master_key: Option<String>,
    /// `CONDUIT_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// How long before expiry credentials are refreshed (per-connector overrides come
    /// from `plugins.toml`).
    pub refresh_lead: Duration,
    /// How the refresh scheduler paces itself.
    pub scheduler: SchedulerConfig,
    /// How long refreshes wait after transient failures.
    pub refresh_backoff: BackoffPolicy,
    /// How long a lease holds (replicas on one database refresh a credential, and run
    /// a request under an idempotency key, one at a time; a dead holder delays the
    /// next by at most this).
    pub lease: Duration,
    /// How many replicas share the provider rate budgets (each spends its share).
    pub replicas: u32,
    /// Where lifecycle webhooks go, if anywhere.
    pub webhook: Option<WebhookConfig>,
    /// How long an OAuth authorization may take.
    pub oauth_state_ttl: Duration,
    /// Where an authorization may redirect, per environment.
    pub oauth_redirects: crate::credentials::oauth::RedirectPolicy,
    /// What one tenant may keep of each kind of object.
    pub tenant_limits: crate::domain::TenantLimits,
    /// Bytes of store pages kept in memory.
    pub store_cache_bytes: u64,
    /// How long audit records are kept.
    pub audit_retention: Duration,
    /// When a connection's circuit opens and for how long.
    pub circuit: CircuitPolicy,
    /// Concurrent connector instances the pool holds.
    pub max_instances: u32,
    /// What one instance may take from the pool.
    pub pool: runtime::PoolLimits,
    /// Instances one tenant may run at once (`None`: a quarter of the pool).
    pub tenant_concurrency: Option<u32>,
    /// How long a call waits for room in the pool before it is refused as busy.
    pub queue_wait: Duration,
}

/// Concurrent connector instances, by default.
pub const DEFAULT_MAX_INSTANCES: u32 = 256;

impl Config {
    /// The embedded defaults over `data_dir`: no plugins, generated keys, a 10 minute
    /// refresh lead, a 30 s scheduler, log-only notifications.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            plugins_file: None,
            plugins_dir: None,
            max_component_bytes: deploy::DEFAULT_MAX_COMPONENT_BYTES,
            cache_dir: None,
            master_key: None,
            admin_token: None,
            refresh_lead: crate::credentials::tokens::DEFAULT_REFRESH_LEAD,
            scheduler: SchedulerConfig::default(),
            refresh_backoff: BackoffPolicy::default(),
            lease: crate::store::DEFAULT_LEASE,
            replicas: 1,
            webhook: None,
            oauth_state_ttl: crate::credentials::oauth::DEFAULT_STATE_TTL,
            oauth_redirects: Default::default(),
            tenant_limits: Default::default(),
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            audit_retention: crate::audit::DEFAULT_RETENTION,
            circuit: CircuitPolicy::default(),
            max_instances: DEFAULT_MAX_INSTANCES,
            pool: runtime::PoolLimits::default(),
            tenant_concurrency: None,
            queue_wait: runtime::DEFAULT_QUEUE_WAIT,
        }
    }
}

/// Everything the API serves.
pub struct App {
    /// Tenants and authentication.
    pub(crate) tenants: Tenants,
    /// Connection use cases.
    pub(crate) connections: Connections,
    /// Loaded connectors.
    pub catalog: Arc<Catalog>,
    /// Storing and vending credentials.
    pub(crate) vending: Vending,
    /// The execute use case.
    pub(crate) exec: Exec,
    /// Audit records.
    pub(crate) audit: Audit,
    /// The store.
    pub(crate) stores: Stores,
    /// The OAuth authorization-code flow.
    pub(crate) oauth: Oauth,
    /// Key rotation.
    pub(crate) rotation: Rotation,
    /// Refresh ahead of expiry (started by [`serve`]).
    pub(crate) scheduler: Arc<Scheduler>,
    /// App blueprints.
    pub(crate) blueprints: Blueprints,
    /// Tenant app configs.
    pub(crate) configs: Configs,
    /// Binding resolution.
    pub(crate) resolver: Resolver,
    /// Idempotency keys (purged by the scheduler).
    pub(crate) idempotency: Idempotency,
    /// Hot-loading, rollback, unloading and egress grants.
    pub(crate) deployer: Arc<Deployer>,
    /// The watched plugins directory (started by [`serve`]).
    plugins_dir: Option<PathBuf>,
    /// The runtime (its pool, for metrics).
    runtime: Arc<Runtime>,
    /// The webhook outbox (its backlog, for metrics).
    notifier: Notifier,
    /// The vault (readiness).
    vault: Arc<Vault>,
    /// The last scan for `/metrics`: when, connections by status, webhooks pending.
    scanned: std::sync::Mutex<Option<Scanned>>,
}

type Scanned = (std::time::Instant, Vec<(&'static str, usize)>, usize);

/// How long a store scan for `/metrics` is reused.
const SCAN_EVERY: Duration = Duration::from_secs(10);

/// What startup generated and must tell the operator once.
#[derive(Debug, Default)]
pub struct Generated {
    /// A newly minted admin token (shown once, only its hash is kept).
    pub admin_token: Option<String>,
    /// Where a newly generated development master key was written.
    pub master_key_file: Option<PathBuf>,
}

impl App {
    /// Opens everything under `config`.
    pub async fn open(config: &Config) -> Result<(App, Generated), Error> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        crate::store::keep_private(&config.data_dir).map_err(io(&config.data_dir))?;
        // Installed first, so everything from the first plugin load on is counted.
        crate::observe::handle();
        let mut generated = Generated::default();

        let root = match &config.master_key {
            Some(text) => Key::from_base64(text)?,
            None => {
                let (key, created) = dev_master_key(&config.data_dir)?;
                if created {
                    generated.master_key_file = Some(config.data_dir.join("master.key"));
                }
                key
            }
        };
        let admin_hash = match &config.admin_token {
            Some(token) => tenants::hash_token(token),
            None => {
                let (hash, minted) = dev_admin_token(&config.data_dir)?;
                generated.admin_token = minted;
                hash
            }
        };

        let stores = match &config.database_url {
            Some(url) => {
                use secrecy::ExposeSecret;
                Stores::postgres(store::PgStore::connect(url.expose_secret())?)?
            }
            None => Stores::open_with_cache(&config.data_dir, config.store_cache_bytes)?,
        };
        let vault = Arc::new(Vault::load(stores.keyring.clone(), root)?);
        let cache_dir = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("component-cache"));
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            max_instances: config.max_instances,
            pool: config.pool,
            tenant_concurrency: config
                .tenant_concurrency
                .unwrap_or_else(|| runtime::default_tenant_concurrency(config.max_instances)),
            queue_wait: config.queue_wait,
            ..RuntimeConfig::new(cache_dir)
        })?);
        let entries = match &config.plugins_file {
            Some(path) => catalog::read_plugins_file(path)?,
            None => Vec::new(),
        };
        let catalog = Arc::new(Catalog::default());

        let leads = RefreshLeads {
            default: config.refresh_lead,
            per_connector: entries
                .iter()
                .filter_map(|e| Some((e.slug.clone(), Duration::from_secs(e.refresh_lead_secs?))))
                .collect(),
        };
        let notifier = match &config.webhook {
            Some(webhook) => Notifier::with_webhook(
                webhook.clone(),
                reqwest::Client::new(),
                &stores,
                config.lease,
            ),
            None => Notifier::log_only(),
        };
        let tenants = Tenants::new(stores.tenants.clone(), admin_hash);
        let connections = Connections::new(stores.connections.clone(), catalog.clone())
            .with_limit(config.tenant_limits.connections);
        let audit = Audit::new(stores.audit.clone(), config.audit_retention);
        let deployer = Arc::new(Deployer::new(
            runtime.clone(),
            catalog.clone(),
            &stores,
            audit.clone(),
            &entries,
            config.max_component_bytes,
        ));
        deployer.restore().await?;
        let clients = Clients::new(stores.oauth.clone(), vault.clone());
        let limits = RateLimits::new().shared_by(config.replicas);
        let connectors: Arc<dyn Connectors> = Arc::new(Loaded::new(
            catalog.clone(),
            runtime.clone(),
            limits.clone(),
        ));
        let refresher = ConnectorRefresher::new(connectors.clone(), clients.clone(), audit.clone());
        let tokens = Tokens::new(&stores, vault.clone(), notifier.clone())
            .with_refresher(Arc::new(refresher), leads)
            .with_backoff(config.refresh_backoff)
            .with_lease(config.lease);
        let oauth = Oauth::new(
            stores.oauth.clone(),
            vault.clone(),
            connectors.clone(),
            connections.clone(),
            tokens.clone(),
            clients,
            audit.clone(),
        )
        .with_state_ttl(config.oauth_state_ttl)
        .with_redirects(config.oauth_redirects.clone())
        .with_state_limit(config.tenant_limits.oauth_states);
        // Expired authorizations are dropped at startup; live ones survive a restart.
        stores.oauth.purge_oauth_states(crate::domain::now_ms())?;
        let rotation = Rotation::new(&stores, vault.clone(), tokens.clone());
        let scheduler = Scheduler::new(&stores, tokens.clone(), config.scheduler.clone());
        let resolver = Resolver::new(&stores, connectors.clone());
        let idempotency = Idempotency::new(stores.idempotency.clone(), vault.clone())
            .with_leases(stores.leases.clone(), config.lease);
        let exec = Exec::new(exec::Parts {
            quotas: stores.quotas.clone(),
            connections: connections.clone(),
            tokens: tokens.clone(),
            connectors: connectors.clone(),
            contracts: Arc::new(Contracts::new()),
            audit: audit.clone(),
            resolver: resolver.clone(),
            limits,
            circuits: Circuits::new(config.circuit),
            idempotency: idempotency.clone(),
        });
        let vending = Vending::new(connections.clone(), connectors.clone(), tokens.clone());
        let blueprints = Blueprints::new(stores.blueprints.clone());
        let configs = Configs::new(&stores, connectors.clone(), Arc::new(exec.clone()))
            .with_limit(config.tenant_limits.draft_configs);
        let app = App {
            tenants,
            connections,
            catalog,
            exec,
            vending,
            audit,
            stores,
            oauth,
            rotation,
            scheduler,
            blueprints,
            configs,
            resolver,
            idempotency,
            deployer,
            plugins_dir: config.plugins_dir.clone(),
            runtime,
            notifier,
            vault,
            scanned: Default::default(),
        };
        Ok((app, generated))
    }

    /// The state gauges `GET /metrics` reports; a part that cannot be read is logged
    /// and left at zero.
    pub(crate) fn observed(&self) -> crate::observe::State {
        let (connections, webhooks_pending) = self.scanned();
        let scheduler_lag_seconds = self.scheduler.lag().map_or_else(
            |e| {
                tracing::error!(error = %e, "reading the scheduler's lag failed");
                0.0
            },
            |lag| lag.as_secs_f64(),
        );
        crate::observe::State {
            instances_in_use: self.runtime.instances_in_use(),
            instances_capacity: self.runtime.instances_capacity(),
            audit_queue: self.audit.queued(),
            webhooks_pending,
            scheduler_lag_seconds,
            connections,
        }
    }

    /// The gauges that scan the store (connections by status, the outbox), at most
    /// once per [`SCAN_EVERY`]: `/metrics` is open to anyone, and a scrape must not
    /// cost a full scan each time.
    fn scanned(&self) -> (Vec<(&'static str, usize)>, usize) {
        let mut last = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, connections, pending)) = &*last {
            if at.elapsed() < SCAN_EVERY {
                return (connections.clone(), *pending);
            }
        }
        let connections = match self.stores.connections.status_counts() {
            Ok(counts) => crate::domain::ConnectionStatus::ALL
                .iter()
                .map(|status| {
                    let count = counts.iter().find(|(s, _)| s == status).map_or(0, |c| c.1);
                    (status.as_str(), count)
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "counting connections for metrics failed");
                Vec::new()
            }
        };
        let pending = self.notifier.pending();
        *last = Some((std::time::Instant::now(), connections.clone(), pending));
        (connections, pending)
    }

    /// What is not ready yet, by name (`store`, `vault`, `catalog`): empty when ready.
    pub(crate) fn not_ready(&self) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        if self.stores.tenants.tenant_by_token_hash(&[0; 32]).is_err() {
            waiting.push("store");
        }
        let context = crate::credentials::vault::SealContext {
            credential_id: "readyz",
            connection_id: "readyz",
        };
        let sealed = self.vault.seal(context, b"probe");
        if !matches!(self.vault.open(context, &sealed), Ok(opened) if opened.as_slice() == b"probe")
        {
            waiting.push("vault");
        }
        if !self.deployer.restored() {
            waiting.push("catalog");
        }
        waiting
    }
}

/// Reads `<dir>/master.key`, or generates it (0600). Returns whether it was created.
fn dev_master_key(dir: &Path) -> Result<(Key, bool), Error> {
    let path = dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((Key::from_base64(&text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            write_private(&path, key.to_base64().as_bytes())?;
            Ok((key, true))
        }
        Err(source) => Err(Error::Io { path, source }),
    }
}

/// Reads the stored admin token hash, or mints a token and stores its hash (0600).
fn dev_admin_token(dir: &Path) -> Result<([u8; 32], Option<String>), Error> {
    let path = dir.join("admin-token.sha256");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            let hash = bytes.ok_or_else(|| Error::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a SHA-256 hex digest",
                ),
            })?;
            Ok((hash, None))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = tenants::mint_token("cadm");
            let hash = tenants::hash_token(&token);
            write_private(&path, hex::encode(hash).as_bytes())?;
            Ok((hash, Some(token)))
        }
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Serves the API on `listener` from this thread and `threads - 1` further ones
/// (`api::serving`) until `shutdown` resolves, then flushes the store. The background
/// tasks (scheduler, webhooks, upkeep) run on the caller's runtime.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    threads: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (store, audit) = (app.stores.durable.clone(), app.audit.clone());
    let scheduler = app.scheduler.spawn();
    let housekeeping = spawn_idempotency_purge(app.idempotency.clone());
    let following = app
        .stores
        .shared
        .then(|| spawn_follower(app.deployer.clone(), app.vault.clone()));
    let upkeep = tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            crate::observe::upkeep();
        }
    });
    let _watching = match &app.plugins_dir {
        Some(dir) => Some(
            deploy::watch::watch(app.deployer.clone(), dir.clone())
                .await
                .map_err(|e| {
                    std::io::Error::other(format!("plugins directory {}: {e}", dir.display()))
                })?,
        ),
        None => None,
    };
    let router = crate::api::router(app);
    let result = crate::api::serving::serve(listener, router, threads, shutdown).await;
    scheduler.abort();
    housekeeping.abort();
    upkeep.abort();
    if let Some(following) = following {
        following.abort();
    }
    audit.flush().await;
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "flushing the store at shutdown failed");
    }
    result
}

/// Applies the changes other replicas sharing the database make to deployments and
/// to the vault's keyring (a rotation: new data keys are wrapped under the new primary
/// KEK), every [`deploy::FOLLOW_EVERY`].
fn spawn_follower(deployer: Arc<Deployer>, vault: Arc<Vault>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(deploy::FOLLOW_EVERY);
        loop {
            every.tick().await;
            if let Err(e) = deployer.follow().await {
                tracing::error!(error = %e, "following the stored deployments failed");
            }
            if let Err(e) = vault.reload() {
                tracing::error!(error = %e, "reading the stored keyring failed");
            }
        }
    })
}

/// Deletes idempotent results past their retention, hourly.
fn spawn_idempotency_purge(idempotency: Idempotency) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            match idempotency.purge() {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired idempotency keys deleted"),
                Err(e) => tracing::error!(error = %e, "purging idempotency keys failed"),
            }
        }
    })
}
