//! The `conduit` binary: `conduit serve` runs the host.

use anyhow::Context;
use clap::{Parser, Subcommand};
use conduit::app::{self, App};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "conduit", version, about = "Conduit integration host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONDUIT_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Data directory (sled database, generated dev keys, component cache).
        #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit")]
        data_dir: PathBuf,
        /// plugins.toml listing the connectors to load.
        #[arg(long, env = "CONDUIT_PLUGINS", default_value = "plugins.toml")]
        plugins: PathBuf,
        /// Compiled-component cache (default: <data-dir>/component-cache).
        #[arg(long, env = "CONDUIT_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUIT_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            data_dir,
            plugins,
            cache_dir,
        } => serve(listen, data_dir, plugins, cache_dir).await,
    }
}

async fn serve(
    listen: SocketAddr,
    data_dir: PathBuf,
    plugins: PathBuf,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = app::Config {
        data_dir,
        plugins_file: Some(plugins),
        cache_dir,
        master_key: std::env::var("CONDUIT_MASTER_KEY").ok(),
        admin_token: std::env::var("CONDUIT_ADMIN_TOKEN").ok(),
    };
    let (app, generated) = App::open(&config).await.context("starting conduit")?;
    if let Some(path) = &generated.master_key_file {
        tracing::warn!(
            path = %path.display(),
            "GENERATED A DEVELOPMENT MASTER KEY: credentials are encrypted under a key stored next to them. \
             Set CONDUIT_MASTER_KEY (base64 of 32 random bytes) in production."
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
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
    app::serve(Arc::new(app), listener, shutdown_signal()).await?;
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
