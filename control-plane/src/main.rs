//! `edge-cp`: run the control plane, or issue a token from its data
//! directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use edge_common::names::TenantId;
use edge_cp::auth::Role;
use edge_cp::server::ConnectionFlags;
use edge_cp::settings::ApiFlags;
use edge_cp::{ControlPlane, CpConfig};

/// `--role`: one of the roles' wire names, listed in `--help` and in the
/// error for any other word.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .try_map(|name| name.parse::<Role>())
}

#[derive(Parser)]
#[command(
    name = "edge-cp",
    version,
    about = "Edge control plane: API, compiler and sync for edge nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// Keys, metadata (SQLite) and blobs live here.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// PEM certificate chain for HTTPS (with --tls-key). Without them
        /// the API is plaintext, which is allowed on loopback only.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Upload, quota and garbage-collection settings.
        #[command(flatten)]
        api: ApiFlags,
        /// Client connection caps and deadlines.
        #[command(flatten)]
        connections: ConnectionFlags,
    },
    /// Print a signed API token.
    Token {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_parser = role_parser())]
        role: Role,
        /// The tenant a `tenant` token acts for.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// The token's subject: the node's name for `node` tokens
        /// (required: one per node), else a name for audit (default: the
        /// tenant id, or `admin`).
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime, for example 1h, 24h, 30d.
        #[arg(long, default_value = "24h")]
        ttl: humantime::Duration,
    },
    /// Print the public key nodes pin (`edge-node --trust-key`) to verify
    /// snapshots.
    PublicKey {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    edge_common::logging::init_stderr();
    match Cli::parse().command {
        Command::Serve {
            data_dir,
            listen,
            tls_cert,
            tls_key,
            api,
            connections,
        } => {
            let mut config = CpConfig::new(data_dir, listen);
            config.tls = tls_cert.zip(tls_key);
            config.api = api.into();
            config.connections = connections.into();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
        Command::Token {
            data_dir,
            role,
            tenant,
            sub,
            ttl,
        } => {
            if !data_dir.is_dir() {
                bail!(
                    "{} is not a directory (start `edge-cp serve --data-dir` there first)",
                    data_dir.display()
                );
            }
            let auth = edge_cp::open_auth(&data_dir)?;
            if role == Role::Node && sub.is_none() {
                bail!(
                    "a node token needs --sub NAME: the node's name in rollout status (one per node)"
                );
            }
            let subject = sub.unwrap_or_else(|| match (&tenant, role) {
                (Some(t), _) => t.to_string(),
                _ => "admin".into(),
            });
            if subject.is_empty() || subject.len() > 128 {
                bail!("--sub must be 1 to 128 bytes");
            }
            let token = auth.issue(role, &subject, tenant, Duration::from(ttl))?;
            println!("{token}");
            Ok(())
        }
        Command::PublicKey { data_dir } => {
            println!("{}", edge_cp::sync_public_key(&data_dir)?);
            Ok(())
        }
    }
}

async fn serve(config: CpConfig) -> anyhow::Result<()> {
    let handle = ControlPlane::start(config).await?;
    let scheme = if handle.tls { "https" } else { "http" };
    println!("edge-cp: api listening on {scheme}://{}", handle.addr);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for ctrl-c")?,
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    handle.shutdown().await;
    Ok(())
}
