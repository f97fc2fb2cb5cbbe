//! The command line: every subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edge_common::sync::PurgeTarget;

#[derive(Parser)]
#[command(
    name = "edgectl",
    version,
    about = "Deploy and manage apps on the edge platform"
)]
pub struct Cli {
    /// The control plane API, for example https://cp.example:7070.
    #[arg(
        long,
        env = "EDGE_API",
        global = true,
        default_value = "http://127.0.0.1:7070"
    )]
    pub api: String,
    /// An API token (`edge-cp token`).
    #[arg(long, env = "EDGE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The tenant to act on, for admin tokens (tenant tokens act on their own).
    #[arg(long, env = "EDGE_TENANT", global = true)]
    pub tenant: Option<String>,
    /// A PEM CA certificate to trust for the API's HTTPS.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Tenants (admin token).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Apps and their hostnames.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// TLS certificates for an app's hostnames: uploaded, or issued and
    /// renewed by the control plane's ACME CA.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Upload a component, activate it, and wait until every node serves it.
    Deploy {
        name: String,
        file: PathBuf,
        /// Return once activated, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for the nodes after this long.
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
    /// Activate the previously deployed version (or --to VERSION).
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
    /// Uploaded versions of an app.
    Versions {
        name: String,
        /// Delete this (inactive) version instead of listing.
        #[arg(long, value_name = "VERSION")]
        delete: Option<u64>,
    },
    /// Config values (the component's environment).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Per-app limits (setting them needs an admin token).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// What an app's component may call (outbound HTTP destinations).
    #[command(subcommand)]
    Outbound(crate::outbound::OutboundCommand),
    /// An app's compression at the edge (gzip, br, zstd): on, off, or the
    /// nodes' default, and its size threshold.
    #[command(subcommand)]
    Compression(crate::compression::CompressionCommand),
    /// An app's secrets: write-only values its component reads through
    /// wasi:config (never in its environment).
    #[command(subcommand)]
    Secrets(crate::secrets::SecretsCommand),
    /// Key-value stores: create, link to apps, read and write entries.
    #[command(subcommand)]
    Kv(crate::kv::KvCommand),
    /// An app's live log: guest stdout/stderr and access lines from every
    /// node (`--follow` to stream).
    Logs(crate::logs::LogsArgs),
    /// The active version and which nodes serve it.
    Status { name: String },
    /// Make a new component project (Rust, JavaScript or Python) that
    /// builds with one command; no control plane is needed.
    New(crate::new::NewArgs),
    /// Purge an app's cache on every node, and wait until they have.
    Purge {
        name: String,
        #[command(flatten)]
        target: PurgeTargetArgs,
        /// Mark stale instead of removing: served again only after
        /// revalidation (or within stale-while-revalidate / stale-if-error).
        #[arg(long)]
        soft: bool,
        /// Return once recorded, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for the nodes after this long.
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
}

/// What to purge: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct PurgeTargetArgs {
    /// One URL: a path with its query (`/a?b=1`, on every host of the app)
    /// or an absolute URL (`https://shop.example/a`).
    #[arg(long)]
    pub url: Option<String>,
    /// Every response tagged with this Surrogate-Key.
    #[arg(long)]
    pub key: Option<String>,
    /// The app's whole cache.
    #[arg(long)]
    pub all: bool,
}

impl PurgeTargetArgs {
    /// The target as the API takes it, and how to print it.
    pub fn describe(&self) -> (PurgeTarget, String) {
        match (&self.url, &self.key) {
            (Some(url), _) => (PurgeTarget::Url { url: url.clone() }, format!("url {url}")),
            (None, Some(key)) => (PurgeTarget::Key { key: key.clone() }, format!("key {key}")),
            (None, None) => (PurgeTarget::All, "all".to_string()),
        }
    }
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    Create {
        id: String,
    },
    List,
    /// A tenant's storage quota and usage; with --storage-bytes or
    /// --default, set it (admin token).
    Quota {
        id: String,
        /// The tenant's own quota, in bytes.
        #[arg(long, conflicts_with = "default")]
        storage_bytes: Option<u64>,
        /// Back to the control plane's default quota.
        #[arg(long)]
        default: bool,
    },
    /// A tenant's caps on its apps' outbound policies; with flags, set
    /// them (admin token; a flag not given keeps its value).
    Limits {
        id: String,
        /// Destinations one app may list (default 20).
        #[arg(long, value_name = "N", conflicts_with = "default")]
        max_outbound_destinations: Option<u32>,
        /// The most `max_subrequests` one app may set (default 32).
        #[arg(long, value_name = "N", conflicts_with = "default")]
        max_subrequests: Option<u32>,
        #[command(flatten)]
        kv: crate::outbound::KvLimitFlags,
        /// Back to every default.
        #[arg(long)]
        default: bool,
    },
}

#[derive(Subcommand)]
pub enum AppsCommand {
    Create {
        name: String,
        /// A hostname the app answers (repeatable; `*.domain` allowed).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Make an origin app: no component, every request is forwarded to
        /// this URL (http(s)://host[:port][/base/path]) with the edge cache
        /// in front. Live at once.
        #[arg(long)]
        origin: Option<String>,
        /// With --origin: forward method-override headers
        /// (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override),
        /// X-Forwarded-Scheme and header names with `_` to the origin.
        /// Dropped by default: they change the origin's answer without
        /// being part of the cache key.
        #[arg(long, requires = "origin")]
        forward_override_headers: bool,
    },
    /// Point an origin app at another origin URL (its override-header
    /// option is kept unless one of the flags is given).
    SetOrigin {
        name: String,
        origin: String,
        /// Forward method-override headers, X-Forwarded-Scheme and header
        /// names with `_` to the origin from now on.
        #[arg(long, conflicts_with = "no_forward_override_headers")]
        forward_override_headers: bool,
        /// Drop them again (the default of a new origin app).
        #[arg(long)]
        no_forward_override_headers: bool,
    },
    List,
    Delete {
        name: String,
    },
    /// Show an app's HTTPS options; with flags, change them (the others
    /// are kept).
    Https {
        name: String,
        /// Answer plain HTTP with a 308 to HTTPS (except ACME challenges).
        #[arg(long, conflicts_with = "no_redirect")]
        redirect: bool,
        /// Serve plain HTTP as it is (the default).
        #[arg(long)]
        no_redirect: bool,
        /// Send this Strict-Transport-Security value on HTTPS answers, for
        /// example "max-age=31536000; includeSubDomains".
        #[arg(long, value_name = "VALUE", conflicts_with = "no_hsts")]
        hsts: Option<String>,
        /// Send no Strict-Transport-Security header (the default).
        #[arg(long)]
        no_hsts: bool,
    },
}

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Upload a certificate and its key; served by every node for the
    /// listed hostnames (default: every name of the certificate).
    Add {
        name: String,
        /// The chain, PEM, leaf first.
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
        /// The leaf's private key, PEM.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// A hostname to serve it for (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Have the control plane's ACME CA issue (and keep renewing) a
    /// certificate for these hostnames.
    Issue {
        name: String,
        /// A hostname (repeatable; no wildcards).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// An app's certificates: hosts, source, status, issuer, expiry and
    /// the last error.
    List { name: String },
    /// Renew an ACME certificate now.
    Renew { name: String, id: u64 },
    /// Stop serving a certificate and forget it.
    Delete { name: String, id: u64 },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Set values: KEY=VALUE ...
    Set {
        name: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Remove values: KEY ...
    Unset {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    Get {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum LimitsCommand {
    Get {
        name: String,
    },
    /// Replace the limits: KEY=VALUE ... (unnamed ones take their defaults),
    /// for example cpu_time=100ms max_concurrent_requests=20.
    Set {
        name: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
}
