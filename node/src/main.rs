//! `edge-node`: run a node from a config file, or serve one component.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use edge_node::{Node, NodeConfig};

#[derive(Parser)]
#[command(
    name = "edge-node",
    version,
    about = "Edge node: runs tenants' wasi:http components behind TLS"
)]
struct Cli {
    /// Node configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one component on plaintext HTTP for every host (a drop-in for
    /// `wasmtime serve`, through the node's own pipeline).
    Serve {
        /// The component (`.wasm`, built for wasm32-wasip2).
        component: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin address for /metrics, /healthz and /readyz.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// A config value for the component, as KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let config = match (cli.command, cli.config) {
        (
            Some(Command::Serve {
                component,
                listen,
                admin,
                env,
            }),
            None,
        ) => {
            let env = parse_env(&env)?;
            NodeConfig::single_component(component, listen, admin, env)
        }
        (None, Some(path)) => NodeConfig::from_file(&path)
            .with_context(|| format!("invalid configuration {}", path.display()))?,
        (Some(_), Some(_)) => bail!("`serve` takes no --config; use one or the other"),
        (None, None) => bail!("nothing to do: pass --config FILE, or `serve COMPONENT.wasm`"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    for (name, addr) in [
        ("https", node.https_addr),
        ("http", node.http_addr),
        ("admin", node.admin_addr),
    ] {
        if let Some(addr) = addr {
            println!("edge-node: {name} listening on {addr}");
        }
    }
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing in-flight requests");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--env {pair}: expected KEY=VALUE"),
        })
        .collect()
}
