//! `edge-node`: run a node from a config file, or serve one component.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use edge_common::logging::LogFormat;
use edge_node::config::ControlPlaneConfig;
use edge_node::{Node, NodeConfig, TlsReloader};

/// `--log-format`: text or json, listed in `--help` and in the error for
/// any other word.
fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(LogFormat::NAMES)
        .try_map(|name| name.parse::<LogFormat>())
}

#[derive(Parser)]
#[command(
    name = "edge-node",
    version,
    about = "Edge node: runs tenants' wasi:http components behind TLS"
)]
struct Cli {
    /// Node configuration file (TOML). The flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The control plane to get apps from, `https://HOST:PORT`; give it
    /// once per replica to fail over between them.
    #[arg(long, value_name = "URL")]
    control_plane: Vec<String>,
    /// The node's token (`edge-cp token --role node --sub NAME`).
    #[arg(long, env = "EDGE_NODE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Or a file holding the token, so it appears in no command line and
    /// no environment: under systemd, `%d/node-token` with
    /// `LoadCredential=node-token:PATH` (ops/systemd/edge-node.service).
    #[arg(
        long,
        env = "EDGE_NODE_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,
    /// Log lines on stderr as `text` or as `json` objects (one per line).
    #[arg(
        long,
        global = true,
        env = "EDGE_LOG_FORMAT",
        default_value = "text",
        value_parser = log_format_parser(),
    )]
    log_format: LogFormat,
    /// Where the last applied snapshot and its artifacts are kept.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The control plane's snapshot key (`edge-cp public-key`); without it,
    /// the key seen at first contact is pinned.
    #[arg(long, value_name = "HEX")]
    trust_key: Option<String>,
    /// Plaintext HTTP listener for end users.
    #[arg(long, value_name = "ADDR")]
    listen_http: Option<SocketAddr>,
    /// HTTPS listener for end users (a self-signed development certificate
    /// unless the config file names certificates).
    #[arg(long, value_name = "ADDR")]
    listen_https: Option<SocketAddr>,
    /// Admin listener: /metrics, /healthz, /readyz.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
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
    let mut cli = Cli::parse();
    // Access lines (`[log] access`) go through a lossy background writer:
    // a slow stderr drops them rather than slow requests. The guard
    // flushes what is queued when `main` returns.
    let _log_guard = edge_common::logging::init_with_lossy_target(cli.log_format, "access");
    let flags = NodeFlags::take(&mut cli);
    // SIGHUP reloads the file's certificates, read as at start-up.
    let reload = cli.config.clone().map(|path| (path, flags.clone()));
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
        (None, Some(path)) => read_config(&path, flags)?,
        (Some(_), Some(_)) => bail!("`serve` takes no --config; use one or the other"),
        (None, None) if flags.any() => {
            let mut config = NodeConfig::from_toml("").context("default configuration")?;
            flags.apply(&mut config)?;
            config.validate().context("invalid flags")?;
            config
        }
        (None, None) => bail!(
            "nothing to do: pass --config FILE, --control-plane URL ..., or `serve COMPONENT.wasm`"
        ),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.runtime.worker_threads {
        runtime.worker_threads(threads);
    }
    runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config, reload))
}

fn read_config(path: &Path, flags: NodeFlags) -> anyhow::Result<NodeConfig> {
    let mut config = NodeConfig::from_file(path)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    flags.apply(&mut config)?;
    config
        .validate()
        .with_context(|| format!("invalid configuration {} with flags", path.display()))?;
    Ok(config)
}

async fn run(config: NodeConfig, reload: Option<(PathBuf, NodeFlags)>) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    // Listening before the addresses are printed: a SIGHUP sent once they
    // are must not find the default action (exit).
    if let Some((path, flags)) = reload {
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        tokio::spawn(reload_on_hangup(hangup, node.tls_reloader(), path, flags));
    }
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

/// On each SIGHUP: the config file again, and its `[tls]` certificates
/// served from the next handshake on. A file that does not load changes
/// nothing.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    tls: TlsReloader,
    path: PathBuf,
    flags: NodeFlags,
) {
    while hangup.recv().await.is_some() {
        // The file too is read on the blocking pool, as the certificates are.
        let read = {
            let (path, flags) = (path.clone(), flags.clone());
            tokio::task::spawn_blocking(move || read_config(&path, flags)).await
        };
        let reloaded = match read.context("the reload task failed").and_then(|read| read) {
            Ok(config) => tls
                .reload(config.tls.filter(|_| config.listen.https.is_some()))
                .await
                .context("cannot load its certificates"),
            Err(e) => Err(e),
        };
        match reloaded {
            Ok(()) => tracing::info!(
                config = %path.display(),
                "SIGHUP: reloaded the [tls] certificates (other sections change only with a restart)"
            ),
            Err(e) => tracing::error!(
                config = %path.display(),
                "SIGHUP: keeping the current certificates: {e:#}"
            ),
        }
    }
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

/// Settings given as flags; they win over the config file.
#[derive(Clone)]
struct NodeFlags {
    control_plane: Vec<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    trust_key: Option<String>,
    listen_http: Option<SocketAddr>,
    listen_https: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

impl NodeFlags {
    fn take(cli: &mut Cli) -> Self {
        Self {
            control_plane: std::mem::take(&mut cli.control_plane),
            token: cli.token.take(),
            token_file: cli.token_file.take(),
            data_dir: cli.data_dir.take(),
            trust_key: cli.trust_key.take(),
            listen_http: cli.listen_http.take(),
            listen_https: cli.listen_https.take(),
            admin: cli.admin.take(),
        }
    }

    fn any(&self) -> bool {
        !self.control_plane.is_empty()
            || self.listen_http.is_some()
            || self.listen_https.is_some()
            || self.admin.is_some()
    }

    fn apply(self, config: &mut NodeConfig) -> anyhow::Result<()> {
        if let Some(addr) = self.listen_http {
            config.listen.http = Some(addr);
        }
        if let Some(addr) = self.listen_https {
            config.listen.https = Some(addr);
            if config.tls.is_none() {
                tracing::warn!(
                    "HTTPS with a self-signed development certificate; name real certificates in the config file's [tls]"
                );
                config.tls = Some(edge_node::config::TlsConfig::SelfSigned);
            }
        }
        if let Some(addr) = self.admin {
            config.listen.admin = Some(addr);
        }
        let cp_flags = !self.control_plane.is_empty()
            || self.token.is_some()
            || self.token_file.is_some()
            || self.data_dir.is_some()
            || self.trust_key.is_some();
        if !cp_flags {
            return Ok(());
        }
        let mut urls = self.control_plane.into_iter();
        let cp = match (config.control_plane.as_mut(), urls.next()) {
            (Some(cp), first) => {
                // Flags replace the file's list of replicas.
                if let Some(first) = first {
                    cp.url = Some(first);
                    cp.urls = urls.collect();
                }
                cp
            }
            (None, Some(first)) => {
                let has_token = self.token.is_some() || self.token_file.is_some();
                let (true, Some(data_dir)) = (has_token, self.data_dir.clone()) else {
                    bail!(
                        "--control-plane needs --token (or EDGE_NODE_TOKEN) or --token-file, and --data-dir"
                    );
                };
                // The token or its file is set from the flags below.
                let mut cp = ControlPlaneConfig::new(first, String::new(), data_dir);
                cp.urls = urls.collect();
                config.control_plane.insert(cp)
            }
            (None, None) => {
                bail!("--token, --token-file, --data-dir and --trust-key need --control-plane URL")
            }
        };
        if let Some(token) = self.token {
            cp.token = Some(token);
            cp.token_file = None;
        }
        if let Some(file) = self.token_file {
            cp.token_file = Some(file);
            cp.token = None;
        }
        if let Some(dir) = self.data_dir {
            cp.data_dir = dir;
        }
        if let Some(key) = self.trust_key {
            cp.trust_key = Some(key);
        }
        Ok(())
    }
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
