//! `edge-cp`: run the control plane, or issue a token from its data
//! directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use edge_common::logging::LogFormat;
use edge_common::names::TenantId;
use edge_cp::auth::Role;
use edge_cp::keys::{Initialised, KEK_ENV, KekSource, KekStep, KeySource};
use edge_cp::migrate::MigrateRequest;
use edge_cp::server::ConnectionFlags;
use edge_cp::settings::{AcmeFlags, ApiFlags};
use edge_cp::store::location::{BlobLocation, MetaLocation};
use edge_cp::store::s3::{S3Config, S3Location};
use edge_cp::{BlobsConfig, ControlPlane, CpConfig};

/// `--role`: one of the roles' wire names, listed in `--help` and in the
/// error for any other word.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .try_map(|name| name.parse::<Role>())
}

/// `--log-format`: text or json, listed in `--help` and in the error for
/// any other word.
fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(LogFormat::NAMES)
        .try_map(|name| name.parse::<LogFormat>())
}

#[derive(Parser)]
#[command(
    name = "edge-cp",
    version,
    about = "Edge control plane: API, compiler and sync for edge nodes"
)]
struct Cli {
    /// Log lines on stderr as `text` or as `json` objects (one per line).
    #[arg(
        long,
        global = true,
        env = "EDGE_LOG_FORMAT",
        default_value = "text",
        value_parser = log_format_parser(),
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where the signing keys are: `--keys-dir` (shared by replicas, made by
/// `edge-cp keys init`) or the data directory's `keys/`.
#[derive(clap::Args)]
struct KeyArgs {
    /// The data directory of a single control plane (keys under `keys/`,
    /// generated on first use).
    #[arg(
        long,
        required_unless_present = "keys_dir",
        conflicts_with = "keys_dir"
    )]
    data_dir: Option<PathBuf>,
    /// The keys directory every replica shares.
    #[arg(long)]
    keys_dir: Option<PathBuf>,
}

impl KeyArgs {
    fn source(self) -> anyhow::Result<KeySource> {
        match (self.keys_dir, self.data_dir) {
            (Some(dir), _) => Ok(KeySource::Shared(dir)),
            (None, Some(data_dir)) => {
                if !data_dir.is_dir() {
                    bail!(
                        "{} is not a directory (start `edge-cp serve --data-dir` there first)",
                        data_dir.display()
                    );
                }
                Ok(KeySource::DataDir(data_dir))
            }
            (None, None) => bail!("give --keys-dir or --data-dir"),
        }
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the token-signing and snapshot-signing keys once, in the
    /// directory every replica mounts. Leaves existing keys alone.
    Init {
        #[arg(long)]
        keys_dir: PathBuf,
    },
    /// Replace the token-signing key. The old one is kept as
    /// `token-signing.previous.pk8` and still accepted (after a restart of
    /// every replica) until you delete it.
    RotateToken {
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Put a new key-encryption key first in the keyring (keeping the old
    /// ones) and re-seal every stored TLS key and ACME account under it.
    /// With several replicas, go in three steps, copying the keyring to
    /// every replica and restarting them after each: --stage, --to ID,
    /// --retire-old.
    RotateKek {
        #[command(flatten)]
        store: StoreArgs,
        /// Only add a new key, last: replicas given it can open values
        /// sealed under it before any is.
        #[arg(long, conflicts_with_all = ["to", "retire_old"])]
        stage: bool,
        /// Make this key of the keyring (a staged one) current, and
        /// re-seal every value under it.
        #[arg(long, value_name = "ID", conflicts_with = "retire_old")]
        to: Option<String>,
        /// No new key: re-seal what is still under an older key, then drop
        /// every key but the current one.
        #[arg(long)]
        retire_old: bool,
    },
}

/// The keys and metadata store of a control plane, named as for `serve`.
#[derive(clap::Args)]
struct StoreArgs {
    /// The data directory (SQLite metadata, and keys under `keys/` unless
    /// --keys-dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The keys directory every replica shares.
    #[arg(long, env = "EDGE_CP_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
    /// PostgreSQL metadata (default: SQLite in --data-dir).
    #[arg(
        long,
        env = "EDGE_CP_DATABASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    database: Option<String>,
    /// The key-encryption keyring file (default: the keys directory's
    /// `kek`).
    #[arg(long, env = "EDGE_CP_KEK_FILE", value_name = "PATH")]
    kek_file: Option<PathBuf>,
}

// Parsed once at start: the size of `Serve`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// Keys, metadata (SQLite) and blobs live here.
        #[arg(long)]
        data_dir: PathBuf,
        /// Signing keys shared by every replica (made by `edge-cp keys
        /// init`), instead of `DATA_DIR/keys`.
        #[arg(long, env = "EDGE_CP_KEYS_DIR")]
        keys_dir: Option<PathBuf>,
        /// Blobs in an S3-compatible bucket, `s3://BUCKET/PREFIX`, shared
        /// by replicas (default: `DATA_DIR/blobs`). The client reads
        /// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        /// AWS_REGION and AWS_ALLOW_HTTP.
        #[arg(long, env = "EDGE_CP_BLOBS", value_name = "s3://BUCKET/PREFIX")]
        blobs: Option<S3Location>,
        /// Metadata in the PostgreSQL database every replica shares,
        /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: SQLite
        /// in --data-dir). Logged with the password as ***.
        #[arg(
            long,
            env = "EDGE_CP_DATABASE",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: Option<String>,
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Admin listener: /metrics, /healthz, /readyz (plaintext, no
        /// authentication: a loopback or private address). Off by default.
        #[arg(long, env = "EDGE_CP_ADMIN", value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// PEM certificate chain for HTTPS (with --tls-key). Without them
        /// the API is plaintext, which is allowed on loopback only.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The key-encryption keyring sealing tenants' TLS keys: one key
        /// (64 hex digits) a line, the current first. Default: EDGE_CP_KEK
        /// (the keyring itself) if set, else the keys directory's `kek`.
        #[arg(long, env = "EDGE_CP_KEK_FILE", value_name = "PATH")]
        kek_file: Option<PathBuf>,
        /// The ACME CA for tenants' certificates.
        #[command(flatten)]
        acme: AcmeFlags,
        /// Upload, quota and garbage-collection settings.
        #[command(flatten)]
        api: ApiFlags,
        /// Client connection caps and deadlines.
        #[command(flatten)]
        connections: ConnectionFlags,
    },
    /// Copy the metadata (and the blobs, with --to-blobs) into a new, empty
    /// store, such as from the embedded SQLite to PostgreSQL. Stop the
    /// control plane first: later changes are not copied.
    MigrateStore {
        /// sqlite:DATA_DIR or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
        #[arg(
            long,
            env = "EDGE_CP_MIGRATE_FROM",
            hide_env_values = true,
            value_name = "STORE"
        )]
        from: String,
        /// The new store, which must be empty (same forms as --from).
        #[arg(
            long,
            env = "EDGE_CP_DATABASE",
            hide_env_values = true,
            value_name = "STORE"
        )]
        to: String,
        /// The source's blobs, dir:PATH or s3://BUCKET/PREFIX (default:
        /// DATA_DIR of a sqlite: source).
        #[arg(long, value_name = "BLOBS")]
        from_blobs: Option<BlobLocation>,
        /// Copy every blob here, dir:PATH or s3://BUCKET/PREFIX (with the
        /// AWS_* variables; default: none copied, the target is served with
        /// the same blob store).
        #[arg(long, value_name = "BLOBS")]
        to_blobs: Option<BlobLocation>,
    },
    /// Manage the signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a signed API token.
    Token {
        #[command(flatten)]
        keys: KeyArgs,
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
        #[command(flatten)]
        keys: KeyArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    edge_common::logging::init(cli.log_format);
    match cli.command {
        Command::Serve {
            data_dir,
            keys_dir,
            blobs,
            database,
            listen,
            admin,
            tls_cert,
            tls_key,
            kek_file,
            acme,
            api,
            connections,
        } => {
            let mut config = CpConfig::new(data_dir, listen);
            if let Some(dir) = keys_dir {
                config.keys = KeySource::Shared(dir);
            }
            config.kek = KekSource::pick(kek_file, kek_env()?);
            config.acme = acme.config()?;
            if let Some(location) = blobs {
                config.blobs = BlobsConfig::S3(S3Config::new(location));
            }
            if let Some(url) = database {
                config.metadata = store_location(&url, "--database")?;
            }
            config.tls = tls_cert.zip(tls_key);
            config.admin = admin;
            config.api = api.into();
            config.connections = connections.into();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
        Command::MigrateStore {
            from,
            to,
            from_blobs,
            to_blobs,
        } => {
            let request = MigrateRequest {
                from: store_location(&from, "--from")?,
                to: store_location(&to, "--to")?,
                from_blobs,
                to_blobs,
            };
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(edge_cp::migrate::migrate_store(&request))?;
            println!("edge-cp: {report}");
            Ok(())
        }
        Command::Keys(KeysCommand::Init { keys_dir }) => {
            match edge_cp::keys::init(&keys_dir)? {
                Initialised::Created => println!(
                    "edge-cp: created the signing keys in {}; mount this directory on every replica (--keys-dir) and back it up",
                    keys_dir.display()
                ),
                Initialised::AddedKek => println!(
                    "edge-cp: {} held both signing keys; added the key-encryption keyring `kek` (copy it to every replica with the rest, and back it up)",
                    keys_dir.display()
                ),
                Initialised::AlreadyThere => println!(
                    "edge-cp: {} already holds both signing keys and the key-encryption keyring; nothing changed",
                    keys_dir.display()
                ),
            }
            println!(
                "snapshot public key (nodes' trust_key): {}",
                edge_cp::sync_public_key(&KeySource::Shared(keys_dir))?
            );
            Ok(())
        }
        Command::Keys(KeysCommand::RotateToken { keys }) => {
            let source = keys.source()?;
            edge_cp::keys::rotate_token_key(&source)?;
            println!(
                "edge-cp: new token-signing key in {}; restart every replica, issue new tokens, then delete {}",
                source.dir().display(),
                source.dir().join("token-signing.previous.pk8").display()
            );
            Ok(())
        }
        Command::Keys(KeysCommand::RotateKek {
            store,
            stage,
            to,
            retire_old,
        }) => {
            let step = match (stage, to, retire_old) {
                (true, _, _) => KekStep::Stage,
                (_, Some(id), _) => KekStep::Promote(id),
                (_, None, true) => KekStep::RetireOld,
                (false, None, false) => KekStep::Rotate,
            };
            rotate_kek(store, step)
        }
        Command::Token {
            keys,
            role,
            tenant,
            sub,
            ttl,
        } => {
            let auth = edge_cp::open_auth(&keys.source()?)?;
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
        Command::PublicKey { keys } => {
            println!("{}", edge_cp::sync_public_key(&keys.source()?)?);
            Ok(())
        }
    }
}

/// `EDGE_CP_KEK`, the keyring itself, if set (read here rather than by
/// clap, so that it never shows in `--help` or an error).
fn kek_env() -> anyhow::Result<Option<String>> {
    match std::env::var(KEK_ENV) {
        Ok(text) => Ok(Some(text)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{KEK_ENV} is not UTF-8"),
    }
}

fn rotate_kek(args: StoreArgs, step: KekStep) -> anyhow::Result<()> {
    let keys = match (args.keys_dir, &args.data_dir) {
        (Some(dir), _) => KeySource::Shared(dir),
        (None, Some(data_dir)) => KeySource::DataDir(data_dir.clone()),
        (None, None) => bail!("give --keys-dir or --data-dir"),
    };
    let metadata = match (args.database, &args.data_dir) {
        (Some(url), _) => store_location(&url, "--database")?,
        (None, Some(data_dir)) => MetaLocation::Sqlite {
            data_dir: data_dir.clone(),
        },
        (None, None) => bail!("give --database or --data-dir (the SQLite metadata's)"),
    };
    if args.kek_file.is_none() && kek_env()?.is_some() {
        bail!(
            "{KEK_ENV} is set: edge-cp cannot rewrite it; write the keyring to a file (mode 0600), rotate with --kek-file FILE, then put the file's keys into {KEK_ENV}"
        );
    }
    let source = KekSource::pick(args.kek_file, None);
    let rotation = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let store = metadata.open_existing().await?;
            anyhow::Ok(edge_cp::keys::rotate_kek(&source, &keys, store.as_ref(), step).await?)
        })?;
    for line in rotation.to_string().lines() {
        println!("edge-cp: {line}");
    }
    let unreadable = rotation.unreadable();
    for value in &unreadable {
        eprintln!("edge-cp: not re-sealed: {value}");
    }
    if !unreadable.is_empty() {
        bail!("some sealed values did not open with this keyring (listed above)");
    }
    Ok(())
}

/// A store location from a flag, parsed here rather than by clap, whose
/// error would repeat the value, password and all.
fn store_location(value: &str, flag: &str) -> anyhow::Result<MetaLocation> {
    value.parse().with_context(|| flag.to_string())
}

async fn serve(config: CpConfig) -> anyhow::Result<()> {
    let handle = ControlPlane::start(config).await?;
    let scheme = if handle.tls { "https" } else { "http" };
    println!("edge-cp: api listening on {scheme}://{}", handle.addr);
    if let Some(addr) = handle.admin_addr {
        println!("edge-cp: admin listening on http://{addr}");
    }
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
