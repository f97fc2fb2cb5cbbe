//! Node configuration: the TOML file, its defaults, and the checks that make
//! a bad file fail at start-up with the offending field named.
//!
//! Parsing turns every field into its typed form (addresses, durations,
//! validated names); [`NodeConfig::validate`] then checks what spans fields
//! (a hostname claimed twice, HTTPS without certificates, ...). Apps and
//! their limits are in [`app`].

mod app;
mod cache;
mod compression;
mod control_plane;
mod kv;
mod log;
mod origin;
mod outbound;

use app::root_prefix;
pub use app::{AppCompression, AppConfig, AppHttps, AppLimits, normalize_prefix};
pub use control_plane::ControlPlaneConfig;
pub use kv::KvConfig;
pub use log::{AccessLog, LogConfig};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_common::CompileSettings;
use serde::Deserialize;

use crate::names::{AppName, HostPattern, TenantId};
pub use cache::CacheConfig;
pub use compression::{Coding, CompressionConfig};
pub use origin::OriginUrl;
pub use outbound::{AddressRange, AppOutbound, Destination, HostEntry, OutboundConfig};

/// The whole node configuration (`edge-node --config node.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    #[serde(default)]
    pub listen: ListenConfig,
    /// Certificates for the HTTPS listener. Required when `listen.https` is set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Code-generation settings shared with the control plane's compiler.
    #[serde(default)]
    pub compile: CompileSettings,
    #[serde(default)]
    pub http: HttpConfig,
    /// Outbound HTTP from guests: timeouts, static hosts, allowed private
    /// addresses. What each app may call is in `apps.outbound`.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// The apps this node serves from its own config file.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// A control plane to get (more) apps from. Default: none.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneConfig>,
    /// The shared HTTP cache in front of every app.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Compression at the edge: the node's defaults.
    #[serde(default)]
    pub compression: CompressionConfig,
    /// The node's access log.
    #[serde(default)]
    pub log: LogConfig,
    /// The key-value replica and writes (with a control plane).
    #[serde(default)]
    pub kv: KvConfig,
}

/// Where the node listens. Every address is optional, but at least one of
/// `https` and `http` must be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// HTTPS for end users (TLS with SNI, ALPN h2 and http/1.1). Default: off.
    pub https: Option<SocketAddr>,
    /// Plaintext HTTP for end users. Default: off.
    pub http: Option<SocketAddr>,
    /// Operator endpoints: `/metrics`, `/healthz`, `/readyz`. Default: off.
    pub admin: Option<SocketAddr>,
    /// The HTTPS listener expects a PROXY protocol header (v1 or v2) before
    /// the TLS handshake, as a TCP load balancer sends it; its source
    /// address is the client's. A connection without a valid header within
    /// `http.header_read_timeout` is closed. Turn it on only behind such a
    /// balancer: anyone reaching the port could claim any address.
    /// Default: false.
    #[serde(default)]
    pub https_proxy_protocol: bool,
    /// The same for the plain HTTP listener. Default: false.
    #[serde(default)]
    pub http_proxy_protocol: bool,
}

/// Where the HTTPS listener's certificates come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TlsConfig {
    /// Development only: a short-lived self-signed certificate for each SNI
    /// name a client asks for, made on first use (for `localhost` and the
    /// loopback addresses without SNI). The control plane's certificates
    /// are served for their names all the same.
    SelfSigned,
    /// PEM files. A client whose SNI matches no certificate (neither these
    /// nor the control plane's) gets the one marked `default`, or, if none
    /// is, a failed handshake (`unrecognized_name` alert). On a name both
    /// list, the more specific entry wins (exact over `*.`), and at equal
    /// specificity the control plane's. Reloaded on `SIGHUP`.
    Files {
        certificates: Vec<CertificateConfig>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// SNI names this certificate answers for: exact names or `*.domain`.
    pub hosts: Vec<HostPattern>,
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Serve this certificate when the SNI name matches nothing. Default: false.
    #[serde(default)]
    pub default: bool,
}

/// The wasmtime runtime: pooling allocator, CPU scheduling, guest logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Component instances that can exist at once, node-wide: the pooling
    /// allocator's capacity. A request that finds the pool full gets 503.
    /// Default: 1000.
    pub instance_slots: u32,
    /// Largest linear memory a guest may grow to, in bytes. Default: 128 MiB.
    pub max_memory_bytes: u64,
    /// Linear-memory bytes a free slot keeps mapped (and resets in place)
    /// instead of returning to the kernel. Default: 4 MiB.
    pub keep_resident_memory_bytes: u64,
    /// Table bytes a free slot keeps mapped. Default: 64 KiB.
    pub keep_resident_table_bytes: u64,
    /// Async stack bytes a free slot keeps mapped. Default: 256 KiB.
    pub keep_resident_stack_bytes: u64,
    /// Slots decommitted together in one batch. Default: 64.
    pub decommit_batch_size: u32,
    /// Reset reused memory slots by scanning the page map for dirty pages
    /// (Linux 6.7+): `auto`, `yes` or `no`. Default: `auto`.
    pub pagemap_scan: PagemapScan,
    /// How often the epoch ticker fires. A running guest yields to other work
    /// at every tick, and CPU time is charged in ticks. Default: 1ms (with
    /// 2ms, a well-behaved tenant's p99 next to a CPU hog was 3.4x its solo
    /// p99; with 1ms, 2.7x, at no cost in solo throughput).
    #[serde(with = "humantime_serde")]
    pub epoch_tick: Duration,
    /// Host resources (headers, streams, pollables, ...) one request's guest
    /// may hold at once. They live in host memory, outside the guest's
    /// memory limit; past it, creating one more traps. Default: 10000.
    pub max_resources_per_request: u32,
    /// Bytes a guest may pass to the host in one call (strings, lists).
    /// Default: 16 MiB.
    pub hostcall_fuel_bytes: u32,
    /// Longest guest stdout/stderr line logged; longer ones are cut.
    /// Default: 4096.
    pub guest_log_line_bytes: usize,
    /// Guest stdout/stderr bytes logged per request; the rest is dropped with
    /// one notice. Default: 64 KiB.
    pub guest_log_bytes_per_request: usize,
    /// Threads serving connections and running guests (the `edge-node`
    /// binary's async runtime). Default: one per CPU.
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PagemapScan {
    Auto,
    Yes,
    No,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            instance_slots: 1000,
            max_memory_bytes: 128 << 20,
            keep_resident_memory_bytes: 4 << 20,
            keep_resident_table_bytes: 64 << 10,
            keep_resident_stack_bytes: 256 << 10,
            decommit_batch_size: 64,
            pagemap_scan: PagemapScan::Auto,
            epoch_tick: Duration::from_millis(1),
            max_resources_per_request: 10_000,
            hostcall_fuel_bytes: 16 << 20,
            guest_log_line_bytes: 4096,
            guest_log_bytes_per_request: 64 << 10,
            worker_threads: None,
        }
    }
}

/// Client connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time a client has to complete the TLS handshake. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send its first bytes after connecting (or after
    /// the TLS handshake), and a complete HTTP/1 request head; also how long
    /// an HTTP/1 keep-alive connection may sit idle. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection. Default: 256.
    pub h2_max_concurrent_streams: u32,
    /// On shutdown, how long in-flight requests may take to finish before
    /// their connections are closed. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest request target (path and query). Over it: 414 `uri-too-long`.
    /// Default: 8 KiB.
    pub max_uri_bytes: usize,
    /// Total size of a request's header names and values. Over it: 431
    /// `headers-too-large`. Default: 32 KiB.
    pub max_header_bytes: usize,
    /// A request body that goes this long without a byte while the guest
    /// reads it: 408 `request-body-timeout`. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Client connections open at once, all listeners together. A connection
    /// past it is closed as soon as it is accepted. Default: 10000.
    pub max_connections: u32,
    /// Client connections open at once from one client address (IPv6: one
    /// /64), so that one client cannot take every slot. Behind a proxy or
    /// load balancer that hides client addresses, raise it to
    /// `max_connections` (above it, `max_connections` is what holds).
    /// Default: 1000.
    pub max_connections_per_ip: u32,
    /// A connection with no request in progress (HTTP/1) or no open stream
    /// (HTTP/2) is closed after this long (HTTP/2: GOAWAY). An HTTP/1
    /// keep-alive connection is also bounded by `header_read_timeout`.
    /// Default: 60s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A response the client takes nothing of for this long (it stops
    /// reading, or keeps an HTTP/2 window shut) is dropped with its
    /// connection, and the backend's body (the origin's connection, the
    /// component's stream) with it. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub response_idle_timeout: Duration,
    /// HTTP/2 streams a client may open and reset before the node accepts
    /// them; more, and the connection gets GOAWAY (rapid-reset defence,
    /// CVE-2023-44487). Default: 20.
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the node may reset for protocol errors on one
    /// connection before sending GOAWAY. Default: 1024.
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within
    /// the same time is disconnected. Default: 20s.
    #[serde(with = "humantime_serde")]
    pub h2_keep_alive_interval: Duration,
    /// Requests running at once on the node, all apps together. Beyond: 503
    /// `node-at-capacity`. Never more than `runtime.instance_slots`.
    /// Default: `runtime.instance_slots`.
    pub max_concurrent_requests: Option<u32>,
    /// The port in the `Location` of an app's HTTP-to-HTTPS redirect
    /// (omitted when 443), for a node behind a load balancer or port
    /// mapping. Default: the HTTPS listener's port (443 without one).
    pub https_redirect_port: Option<u16>,
    /// Clients (CIDRs, `10.0.0.0/8`, `2001:db8::/32`, or one address)
    /// whose `X-Forwarded-For` and `Forwarded` headers are kept and
    /// appended to; everyone else's are dropped. The address a component
    /// sees (`x-edge-client-ip`) is then the last one such a proxy added.
    /// Default: none.
    #[serde(deserialize_with = "addresses_or_nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// CIDRs, or bare addresses meaning just that address (`/32`, `/128`):
/// `ipnet`'s own deserializer takes only CIDRs, and an operator listing
/// one proxy writes its address.
fn addresses_or_nets<'de, D>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            outbound::address_or_net(entry).ok_or_else(|| {
                serde::de::Error::custom(format!("`{entry}` is neither an IP address nor a CIDR"))
            })
        })
        .collect()
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(30),
            max_uri_bytes: 8 << 10,
            max_header_bytes: 32 << 10,
            max_concurrent_requests: None,
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            idle_timeout: Duration::from_secs(60),
            response_idle_timeout: Duration::from_secs(30),
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            h2_keep_alive_interval: Duration::from_secs(20),
            https_redirect_port: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Total size of one app's config values. Each request copies them into the
/// guest's environment, so they stay small.
pub const MAX_ENV_BYTES: usize = 64 << 10;

/// Upper bound for time limits: far beyond any sane request, and far from
/// the overflow of deadline arithmetic.
pub(crate) const MAX_REQUEST_TIME: Duration = Duration::from_secs(24 * 3600);

/// A configuration that could not be read, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl NodeConfig {
    /// Reads and validates a config file. Relative paths inside it are
    /// resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml(&text)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text. Call [`NodeConfig::validate`] before use.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid("(file)", e.to_string()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().message().trim().to_string();
            invalid(field, message)
        })
    }

    /// The configuration of `edge-node serve`: one component answering every
    /// host on plaintext HTTP, through the same pipeline as a full node.
    pub fn single_component(
        component: PathBuf,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
        env: BTreeMap<String, String>,
    ) -> Self {
        let stem = component
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase().replace('_', "-"))
            .unwrap_or_default();
        let name = AppName::try_from(stem)
            .unwrap_or_else(|_| AppName::try_from("app".to_string()).expect("valid literal name"));
        NodeConfig {
            listen: ListenConfig {
                https: None,
                http: Some(listen),
                admin,
                ..ListenConfig::default()
            },
            tls: None,
            runtime: RuntimeConfig::default(),
            compile: CompileSettings::default(),
            http: HttpConfig::default(),
            outbound: OutboundConfig::default(),
            apps: vec![AppConfig {
                name,
                tenant: TenantId::try_from("local".to_string()).expect("valid literal tenant"),
                hosts: vec![HostPattern::Any],
                path_prefix: root_prefix(),
                component: Some(component),
                origin: None,
                forward_override_headers: false,
                env,
                limits: AppLimits::default(),
                outbound: AppOutbound::default(),
                https: AppHttps::default(),
                compression: Default::default(),
            }],
            control_plane: None,
            cache: Default::default(),
            compression: Default::default(),
            log: Default::default(),
            kv: Default::default(),
        }
    }

    fn resolve_paths(&mut self, dir: &Path) {
        if let Some(disk) = &mut self.cache.disk_path {
            *disk = dir.join(&*disk);
        }
        for app in &mut self.apps {
            if let Some(component) = &mut app.component {
                *component = dir.join(&*component);
            }
        }
        if let Some(cp) = &mut self.control_plane {
            cp.data_dir = dir.join(&cp.data_dir);
            cp.token_file = cp.token_file.as_ref().map(|f| dir.join(f));
            cp.ca_cert = cp.ca_cert.as_ref().map(|f| dir.join(f));
        }
        if let Some(TlsConfig::Files { certificates }) = &mut self.tls {
            for cert in certificates {
                cert.cert_path = dir.join(&cert.cert_path);
                cert.key_path = dir.join(&cert.key_path);
            }
        }
    }

    /// Checks what single fields cannot: listeners, TLS, routes, limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.https.is_none() && self.listen.http.is_none() {
            return Err(invalid(
                "listen",
                "set at least one of `listen.https` and `listen.http`",
            ));
        }
        match (&self.listen.https, &self.tls) {
            (Some(_), None) => {
                return Err(invalid(
                    "tls",
                    "`listen.https` is set, so `tls` is required (source = \"files\" or \"self-signed\")",
                ));
            }
            (_, Some(TlsConfig::Files { certificates })) => {
                if certificates.is_empty() {
                    return Err(invalid("tls.certificates", "list at least one certificate"));
                }
                if certificates.iter().filter(|c| c.default).count() > 1 {
                    return Err(invalid(
                        "tls.certificates",
                        "at most one certificate can be `default`",
                    ));
                }
                for (i, cert) in certificates.iter().enumerate() {
                    if cert.hosts.is_empty() && !cert.default {
                        return Err(invalid(
                            format!("tls.certificates[{i}].hosts"),
                            "list the SNI names this certificate serves, or mark it `default`",
                        ));
                    }
                }
            }
            _ => {}
        }
        self.validate_runtime()?;
        self.kv.validate()?;
        self.cache.validate()?;
        self.compression.validate()?;
        if let Some(cp) = &self.control_plane {
            cp.validate()?;
        }
        self.validate_apps()
    }

    fn validate_runtime(&self) -> Result<(), ConfigError> {
        let rt = &self.runtime;
        if rt.instance_slots == 0 {
            return Err(invalid("runtime.instance_slots", "must be at least 1"));
        }
        if rt.worker_threads.is_some_and(|n| n == 0 || n > 1024) {
            return Err(invalid(
                "runtime.worker_threads",
                "must be between 1 and 1024",
            ));
        }
        if rt.max_memory_bytes < (1 << 16) {
            return Err(invalid(
                "runtime.max_memory_bytes",
                "must be at least one wasm page (65536)",
            ));
        }
        if rt.max_memory_bytes > self.compile.memory_reservation_bytes {
            return Err(invalid(
                "runtime.max_memory_bytes",
                format!(
                    "must not exceed compile.memory_reservation_bytes ({})",
                    self.compile.memory_reservation_bytes
                ),
            ));
        }
        if rt.epoch_tick < Duration::from_micros(100) || rt.epoch_tick > Duration::from_millis(100)
        {
            return Err(invalid(
                "runtime.epoch_tick",
                "must be between 100us and 100ms",
            ));
        }
        if rt.guest_log_line_bytes == 0 {
            return Err(invalid(
                "runtime.guest_log_line_bytes",
                "must be at least 1",
            ));
        }
        let out = &self.outbound;
        for (field, value) in [
            ("outbound.connect_timeout", out.connect_timeout),
            ("outbound.first_byte_timeout", out.first_byte_timeout),
            ("outbound.total_timeout", out.total_timeout),
        ] {
            if value.is_zero() || value > MAX_REQUEST_TIME {
                return Err(invalid(field, "must be more than 0 and at most 24h"));
            }
        }
        let cache = &self.cache;
        if cache.enabled {
            if cache.max_entry_bytes == 0 || cache.max_entry_bytes as u64 > cache.capacity_bytes {
                return Err(invalid(
                    "cache.max_entry_bytes",
                    "must be at least 1 and at most cache.capacity_bytes",
                ));
            }
            if cache.purge_token.as_ref().is_some_and(|t| t.len() < 16) {
                return Err(invalid(
                    "cache.purge_token",
                    "must be at least 16 characters",
                ));
            }
            if cache.collapse_wait > Duration::from_secs(60) {
                return Err(invalid("cache.collapse_wait", "must be at most 60s"));
            }
        }
        let http = &self.http;
        if http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if http.max_connections_per_ip == 0 {
            return Err(invalid("http.max_connections_per_ip", "must be at least 1"));
        }
        for (field, value) in [
            ("http.idle_timeout", http.idle_timeout),
            ("http.response_idle_timeout", http.response_idle_timeout),
            ("http.header_read_timeout", http.header_read_timeout),
        ] {
            if value < Duration::from_millis(100) || value > MAX_REQUEST_TIME {
                return Err(invalid(field, "must be between 100ms and 24h"));
            }
        }
        if http.https_redirect_port == Some(0) {
            return Err(invalid(
                "http.https_redirect_port",
                "must be a port, 1 to 65535",
            ));
        }
        if self.http.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "http.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if let Some(max) = self.http.max_concurrent_requests
            && (max == 0 || max > rt.instance_slots)
        {
            return Err(invalid(
                "http.max_concurrent_requests",
                format!(
                    "must be between 1 and runtime.instance_slots ({})",
                    rt.instance_slots
                ),
            ));
        }
        Ok(())
    }
}
