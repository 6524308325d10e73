//! The `conduit` binary: `conduit serve` runs the host; `conduit vault …` rotates keys
//! (online through the admin API, or the root key offline on a stopped server's data).

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use conduit::app::{self, App};
use conduit::credentials::notify::WebhookConfig;
use conduit::credentials::scheduler::SchedulerConfig;
use conduit::credentials::tokens::BackoffPolicy;
use conduit::credentials::{redirects_loopback, RedirectPolicy};
use conduit::domain::TenantLimits;
use conduit::runtime::PoolLimits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "conduit", version, about = "Conduit integration host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Manage the vault's keys.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Write connectors: scaffold, build and check them.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a working connector (code, WIT, SDK, a test against a fake provider).
    New {
        /// The connector's name (its slug): lowercase letters, digits and dashes.
        name: String,
        /// rust, python or js.
        #[arg(long)]
        lang: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the connector in DIR (default: .) for its language.
    Build {
        /// The connector's directory.
        dir: Option<PathBuf>,
        /// Where to write the component (default: DIR/build/NAME.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the pinned toolchains are installed (default: ~/.cache/conduit/toolchains).
        #[arg(long, env = "CONDUIT_TOOLCHAINS")]
        toolchains: Option<PathBuf>,
    },
    /// Load a component and report what it is and everything wrong with it, under
    /// the pool limits a server would have (the same settings as `serve`).
    Check {
        /// The component.
        file: PathBuf,
        #[command(flatten)]
        pool: PoolArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONDUIT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Threads serving requests and running connectors, each with its own runtime;
    /// connections are handed to them in turn (default: one per core).
    #[arg(long, env = "CONDUIT_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Data directory (sled database, generated dev keys, component cache).
    #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit")]
    data_dir: PathBuf,
    /// Keep everything in this PostgreSQL database (`postgres://user:pass@host/db`)
    /// instead of sled in the data directory; replicas given the same URL share it.
    #[arg(
        long = "database",
        env = "CONDUIT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// plugins.toml listing the connectors to load.
    #[arg(long, env = "CONDUIT_PLUGINS", default_value = "plugins.toml")]
    plugins: PathBuf,
    /// A directory watched for connectors: each `*.wasm` added or replaced there is
    /// hot-loaded, each removed is unloaded.
    #[arg(long, env = "CONDUIT_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// The largest component accepted by upload or from the plugins directory, in MiB.
    #[arg(long, env = "CONDUIT_MAX_COMPONENT_MB", default_value_t = 64)]
    max_component_mb: usize,
    /// Compiled-component cache (default: <data-dir>/component-cache).
    #[arg(long, env = "CONDUIT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Refresh credentials this many seconds before they expire.
    #[arg(long, env = "CONDUIT_REFRESH_LEAD_SECS", default_value_t = 600)]
    refresh_lead_secs: u64,
    /// Milliseconds between refresh-scheduler passes.
    #[arg(long, env = "CONDUIT_REFRESH_INTERVAL_MS", default_value_t = 30_000)]
    refresh_interval_ms: u64,
    /// Milliseconds a credential waits after its first transient refresh failure
    /// (doubled on each further one, capped at 15 minutes).
    #[arg(long, env = "CONDUIT_REFRESH_BACKOFF_MS", default_value_t = 30_000)]
    refresh_backoff_ms: u64,
    /// Milliseconds a lease holds: replicas on one database refresh a credential, and
    /// run a request under an idempotency key, one at a time; a replica that dies
    /// holding a lease delays that work by at most this. Longer than any connector's
    /// deadline.
    #[arg(long, env = "CONDUIT_LEASE_MS", default_value_t = 60_000)]
    lease_ms: u64,
    /// How many replicas serve this deployment: each spends 1/N of every connector's
    /// rate budget, so together they stay under the provider's ceiling.
    #[arg(long, env = "CONDUIT_REPLICAS", default_value_t = 1)]
    replicas: u32,
    /// Spread each pass's refreshes over up to this many milliseconds.
    #[arg(long, env = "CONDUIT_REFRESH_SPREAD_MS", default_value_t = 1_000)]
    refresh_spread_ms: u64,
    /// Seconds an OAuth authorization may take from authorize to callback.
    #[arg(long, env = "CONDUIT_OAUTH_STATE_TTL_SECS", default_value_t = 600)]
    oauth_state_ttl_secs: u64,
    /// Redirect URI patterns an authorization of a sandbox connection may use,
    /// comma-separated globs over `scheme://host[:port]/path` (default: loopback).
    #[arg(long, env = "CONDUIT_OAUTH_REDIRECTS_SANDBOX", value_delimiter = ',')]
    oauth_redirects_sandbox: Option<Vec<String>>,
    /// The same for production connections (default: none, so every one is refused
    /// until listed).
    #[arg(
        long,
        env = "CONDUIT_OAUTH_REDIRECTS_PRODUCTION",
        value_delimiter = ','
    )]
    oauth_redirects_production: Vec<String>,
    /// Seconds audit records are kept (default 30 days).
    #[arg(long, env = "CONDUIT_AUDIT_RETENTION_SECS", default_value_t = 30 * 24 * 3600)]
    audit_retention_secs: u64,
    /// Lifecycle webhooks go here (needs CONDUIT_WEBHOOK_SECRET).
    #[arg(long, env = "CONDUIT_WEBHOOK_URL")]
    webhook_url: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// MiB of store pages kept in memory (sled's page cache).
    #[arg(long, env = "CONDUIT_STORE_CACHE_MB", default_value_t = conduit::store::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    store_cache_mb: u64,
}

/// What one tenant may keep of each kind of object an API call creates.
#[derive(Args)]
struct LimitArgs {
    /// Connections per tenant.
    #[arg(long, env = "CONDUIT_MAX_CONNECTIONS_PER_TENANT", default_value_t = TenantLimits::default().connections)]
    max_connections_per_tenant: usize,
    /// Unpublished (draft or preview) config versions per tenant.
    #[arg(long, env = "CONDUIT_MAX_DRAFTS_PER_TENANT", default_value_t = TenantLimits::default().draft_configs)]
    max_drafts_per_tenant: usize,
    /// Pending OAuth authorizations per tenant.
    #[arg(long, env = "CONDUIT_MAX_OAUTH_STATES_PER_TENANT", default_value_t = TenantLimits::default().oauth_states)]
    max_oauth_states_per_tenant: usize,
}

/// The connector instance pool: how many calls run at once, and what one call's
/// component may take (the pool holds `max_instances` of the largest it admits; a
/// component needing more is refused at load, naming the setting).
#[derive(Args)]
struct PoolArgs {
    /// Connector instances that may run at once.
    #[arg(long, env = "CONDUIT_MAX_INSTANCES", default_value_t = app::DEFAULT_MAX_INSTANCES)]
    max_instances: u32,
    /// Core module instances one component may create (componentize-py's need 14 and more).
    #[arg(long, env = "CONDUIT_POOL_CORE_INSTANCES", default_value_t = PoolLimits::default().core_instances)]
    pool_core_instances: u32,
    /// Linear memories one component may define.
    #[arg(long, env = "CONDUIT_POOL_MEMORIES", default_value_t = PoolLimits::default().memories)]
    pool_memories: u32,
    /// Tables one component may define.
    #[arg(long, env = "CONDUIT_POOL_TABLES", default_value_t = PoolLimits::default().tables)]
    pool_tables: u32,
    /// Connector instances one tenant may run at once (default: a quarter of the pool).
    #[arg(long, env = "CONDUIT_TENANT_CONCURRENCY")]
    tenant_concurrency: Option<u32>,
    /// Milliseconds a call waits for room before it is refused as `503 busy`.
    #[arg(long, env = "CONDUIT_QUEUE_MS", default_value_t = 1_000)]
    queue_ms: u64,
}

impl PoolArgs {
    fn limits(&self) -> PoolLimits {
        PoolLimits {
            core_instances: self.pool_core_instances.max(1),
            memories: self.pool_memories.max(1),
            tables: self.pool_tables.max(1),
        }
    }
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Add a new primary key-encryption key and re-wrap every data key under it, on a
    /// running server (POST /admin/vault/rotate).
    Rotate(AdminArgs),
    /// List the key-encryption keys and how many credentials each wraps.
    Keys(AdminArgs),
    /// Remove a key-encryption key that nothing uses any more.
    Retire {
        /// The key id (`kek_…`).
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-seal the keyring under a new root key (CONDUIT_NEW_MASTER_KEY), offline: the
    /// server must be stopped. Only the keyring is rewritten.
    RotateRoot {
        /// Data directory of the stopped server.
        #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit")]
        data_dir: PathBuf,
        /// The PostgreSQL database of the stopped replicas, instead of the data
        /// directory.
        #[arg(
            long = "database",
            env = "CONDUIT_DATABASE_URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
    },
}

#[derive(Args)]
struct AdminArgs {
    /// The server's base URL.
    #[arg(long, env = "CONDUIT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token.
    #[arg(long, env = "CONDUIT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
}

/// A panic's message may quote a value (a token in a malformed field, say): log where
/// it happened, never what it said. The server answers the request with a typed 500.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "a thread panicked");
    }));
}

/// See the workspace's `Cargo.toml` for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A current-thread runtime: `serve` adds one per further serving thread
    // (`api::serving` says why).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUIT_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(conduit::app::LogFormat::default())
        .init();
    install_panic_hook();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Vault(VaultCommand::Rotate(admin)) => {
            admin_call(&admin, reqwest::Method::POST, "/admin/vault/rotate").await
        }
        Command::Vault(VaultCommand::Keys(admin)) => {
            admin_call(&admin, reqwest::Method::GET, "/admin/vault").await
        }
        Command::Vault(VaultCommand::Retire { key_id, admin }) => {
            let path = format!("/admin/vault/keys/{key_id}/retire");
            admin_call(&admin, reqwest::Method::POST, &path).await
        }
        Command::Vault(VaultCommand::RotateRoot {
            data_dir,
            database_url,
        }) => rotate_root(&data_dir, database_url.as_deref()),
        // For a person at a terminal: the error alone, not a backtrace.
        Command::Plugin(command) => {
            if let Err(e) = plugin(command).await {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    use conduit::toolkit::{build, check, scaffold};
    match command {
        PluginCommand::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold::scaffold(&name, lang.parse()?, &dir)?;
            println!("created {} ({lang}); next:", dir.display());
            println!("  conduit plugin build {}", dir.display());
            println!(
                "  conduit plugin check {}",
                build::default_output(&dir).display()
            );
            Ok(())
        }
        PluginCommand::Build {
            dir,
            out,
            toolchains,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let options = build::BuildOptions {
                out,
                toolchains: toolchains.unwrap_or_else(build::BuildOptions::default_toolchains),
            };
            let built = build::build(&dir, &options)?;
            let state = if built.rebuilt { "built" } else { "up to date" };
            println!("{state}: {} ({:?})", built.wasm.display(), built.language);
            Ok(())
        }
        PluginCommand::Check { file, pool } => {
            let limits = pool.limits();
            let report = check::check(&file, limits).await?;
            print!("{}", check::render(&file, &report, &limits));
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let webhook = match (
        args.webhook_url,
        std::env::var("CONDUIT_WEBHOOK_SECRET").ok(),
    ) {
        (Some(url), Some(secret)) if !secret.is_empty() => Some(WebhookConfig {
            url,
            secret: secret.into(),
            first_retry: Duration::from_secs(1),
        }),
        (Some(_), _) => bail!("CONDUIT_WEBHOOK_URL is set but CONDUIT_WEBHOOK_SECRET is not"),
        (None, _) => None,
    };
    let oauth_redirects = RedirectPolicy::new(
        &args
            .oauth_redirects_sandbox
            .unwrap_or_else(redirects_loopback),
        &args.oauth_redirects_production,
    )?;
    let config = app::Config {
        plugins_file: Some(args.plugins),
        plugins_dir: args.plugins_dir,
        max_component_bytes: args.max_component_mb.max(1) * 1024 * 1024,
        cache_dir: args.cache_dir,
        master_key: std::env::var("CONDUIT_MASTER_KEY").ok(),
        admin_token: std::env::var("CONDUIT_ADMIN_TOKEN").ok(),
        refresh_lead: Duration::from_secs(args.refresh_lead_secs),
        scheduler: SchedulerConfig {
            interval: Duration::from_millis(args.refresh_interval_ms.max(10)),
            spread: Duration::from_millis(args.refresh_spread_ms),
            ..SchedulerConfig::default()
        },
        lease: Duration::from_millis(args.lease_ms.max(1)),
        replicas: args.replicas.max(1),
        refresh_backoff: BackoffPolicy {
            base: Duration::from_millis(args.refresh_backoff_ms),
            ..BackoffPolicy::default()
        },
        webhook,
        oauth_state_ttl: Duration::from_secs(args.oauth_state_ttl_secs),
        oauth_redirects,
        store_cache_bytes: args.store_cache_mb.max(1) * 1024 * 1024,
        tenant_limits: TenantLimits {
            connections: args.limits.max_connections_per_tenant,
            draft_configs: args.limits.max_drafts_per_tenant,
            oauth_states: args.limits.max_oauth_states_per_tenant,
        },
        audit_retention: Duration::from_secs(args.audit_retention_secs.max(1)),
        max_instances: args.pool.max_instances.max(1),
        pool: args.pool.limits(),
        tenant_concurrency: args.pool.tenant_concurrency,
        queue_wait: Duration::from_millis(args.pool.queue_ms),
        database_url: args.database_url.map(Into::into),
        ..app::Config::new(args.data_dir)
    };
    let (app, generated) = App::open(&config).await.context("starting conduit")?;
    if let Some(path) = &generated.master_key_file {
        tracing::warn!(
            path = %path.display(),
            "GENERATED A DEVELOPMENT MASTER KEY: credentials are encrypted under a key stored next to them. \
             Set CONDUIT_MASTER_KEY (base64 of 32 random bytes) in production."
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("conduit listening on http://{addr}");
    if let Some(token) = &generated.admin_token {
        println!("admin token (shown once; only its hash is kept): {token}");
        println!("next: curl -s -X POST http://{addr}/admin/tenants -H 'authorization: Bearer {token}' \\");
        println!("        -H 'content-type: application/json' -d '{{\"data\":{{\"type\":\"tenants\",\"attributes\":{{\"id\":\"acme-corp\"}}}}}}'");
    }
    println!(
        "connectors: {}",
        app.catalog
            .specs()
            .iter()
            .map(|s| s.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("try: curl -s http://{addr}/api/openapi.json");
    let threads = args.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    app::serve(Arc::new(app), listener, threads, shutdown_signal()).await?;
    Ok(())
}

/// Calls an admin route and prints the JSON answer.
async fn admin_call(admin: &AdminArgs, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
    let url = format!("{}{path}", admin.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&admin.admin_token)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

fn rotate_root(data_dir: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<()> {
    let old = std::env::var("CONDUIT_MASTER_KEY")
        .context("CONDUIT_MASTER_KEY (the current root key) is required")?;
    let new = std::env::var("CONDUIT_NEW_MASTER_KEY")
        .context("CONDUIT_NEW_MASTER_KEY (the new root key) is required")?;
    let stores = match database_url {
        Some(url) => conduit::store::Stores::postgres(conduit::store::PgStore::connect(url)?)?,
        None => conduit::store::Stores::open(data_dir)
            .context("opening the data directory (is the server still running?)")?,
    };
    conduit::credentials::vault::reseal_keyring(
        stores.keyring.as_ref(),
        &conduit::credentials::vault::Key::from_base64(&old)?,
        &conduit::credentials::vault::Key::from_base64(&new)?,
    )?;
    stores.durable.flush()?;
    println!("keyring re-sealed under the new root key; start the server with CONDUIT_MASTER_KEY set to it");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
