//! The edge node: a TLS reverse proxy that runs tenants' wasi:http
//! components per request.
//!
//! [`Node::start`] takes a validated [`NodeConfig`], compiles every app's
//! component, binds the listeners and returns a [`NodeHandle`] with the bound
//! addresses. `docs/architecture.md` walks through the stages a request
//! goes through.

// The embedder's surface is `Node`, `NodeHandle`, `StartError`,
// `TlsReloader` and the config types; everything else is the node's own.
mod acme;
mod admin;
mod admission;
mod app;
mod backoff;
mod body;
mod cache;
mod certs;
mod client;
pub mod config;
mod dispatch;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hop;
mod https;
mod kv;
mod listener;
mod logs;
mod metrics;
pub mod names;
mod origin;
mod outbound;
mod request_id;
mod router;
mod runtime;
mod shutdown;
mod sync;

/// The parts the node's own benches and tests drive directly (a dispatcher
/// without listeners, a runtime without a node). Not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::app::App;
    pub use crate::cache::layer::EdgeCache;
    pub use crate::cache::policy::Received;
    pub use crate::cache::store::{CacheKey, Entry};
    pub use crate::dispatch::{Dispatcher, RoutingTable, Target};
    pub use crate::metrics::Metrics;
    pub use crate::outbound::OutboundClient;
    pub use crate::request_id::RequestId;
    pub use crate::runtime::{LoadError, Runtime};
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use certs::TlsError;
pub use config::NodeConfig;

use crate::admin::AdminState;
use crate::app::{App, AppLoadError};
use crate::certs::{CertResolver, OwnCertificates};
use crate::config::TlsConfig;
use crate::dispatch::{Dispatcher, RoutingTable, Target};
use crate::listener::ClientListener;
use crate::metrics::Metrics;
use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    App(#[from] AppLoadError),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the compile task failed: {0}")]
    CompileTask(#[from] tokio::task::JoinError),
    #[error("control plane: {0}")]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    CacheDisk(#[from] cache::disk::OpenError),
}

pub struct Node;

/// The shared cache, with its disk tier if `[cache] disk_path` is set: the
/// directory is opened now, and its files are indexed in the background
/// (the node serves meanwhile; what is not indexed yet misses).
fn start_cache(
    config: &config::CacheConfig,
    metrics: &Metrics,
) -> Result<cache::layer::EdgeCache, StartError> {
    let cache = cache::layer::EdgeCache::new(config, Some(metrics.cache_metrics()));
    let Some(path) = &config.disk_path else {
        return Ok(cache);
    };
    let disk = Arc::new(cache::disk::DiskTier::open(
        path,
        config.disk_capacity_bytes,
        config.disk_entry_limit(),
        Some(metrics.cache_disk.clone()),
    )?);
    let scan = disk.clone();
    tokio::task::spawn_blocking(move || scan.rebuild());
    Ok(cache.with_disk(disk))
}

/// `edge_compressed_responses_total{encoding, source}`: answers compressed
/// at the edge, by coding and by where the bytes came from (a stored copy,
/// one built for the request, or a stream).
fn compressed_counter(
    registry: &prometheus::Registry,
) -> Result<prometheus::IntCounterVec, prometheus::Error> {
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "edge_compressed_responses_total",
            "Answers compressed at the edge, by encoding and source (stored, built, stream).",
        ),
        &["encoding", "source"],
    )?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

impl Node {
    /// Starts a node: compiles the apps, binds every listener, and serves
    /// until [`NodeHandle::shutdown`].
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        config.validate()?;
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            tracing::warn!(
                "RUST_BACKTRACE is set: wasmtime captures a backtrace on every trap and store drop, \
                 which costs throughput; unset it in production"
            );
        }
        let metrics = Metrics::new(prometheus::Registry::new())?;
        let cache = match config.cache.enabled {
            true => Some(Arc::new(start_cache(&config.cache, &metrics)?)),
            false => None,
        };
        let outbound = Arc::new(
            outbound::OutboundClient::new(
                config.outbound.clone(),
                metrics.outbound_requests.clone(),
            )
            .with_cache(cache.clone(), Some(metrics.cache_fetch_results.clone())),
        );
        // Node-wide: which apps are tailed, the queue of their lines.
        let (logs, log_queue) = logs::LogHub::new(config.log.access, &metrics.registry)?;
        let runtime = Arc::new(Runtime::new(&config.runtime, &config.compile, outbound)?);
        let static_routes = load_apps(&config, &runtime, &metrics).await?;
        let routes = RoutingTable::new(static_routes.iter().map(|(hosts, prefix, app)| {
            (hosts.as_slice(), prefix.as_str(), Target::App(app.clone()))
        }));
        let dispatcher = Arc::new(
            Dispatcher::new(runtime.clone(), routes, metrics.clone(), &config.http)
                .with_cache(cache)
                .with_compression(cache::compress::Compressor::new(
                    config.compression.clone(),
                    Some(compressed_counter(&metrics.registry)?),
                ))
                .with_logs(logs.clone()),
        );
        // Also without an HTTPS listener: the synced set has somewhere to go.
        let tls = TlsReloader {
            resolver: Arc::new(CertResolver::new(OwnCertificates::default())),
            metrics: metrics.clone(),
        };
        tls.reload(config.tls.clone().filter(|_| config.listen.https.is_some()))
            .await?;
        // A node with a control plane first serves what it applied last
        // time, so it is useful before (or without) contact.
        let syncer = match &config.control_plane {
            Some(cp) => {
                let applier = sync::apply::Applier::new(
                    runtime.clone(),
                    metrics.clone(),
                    dispatcher.clone(),
                    tls.resolver.clone(),
                    static_routes,
                );
                let mut syncer =
                    sync::Syncer::new(cp.clone(), applier, metrics.clone(), runtime.engine())?
                        .with_logs(logs.clone());
                // Before restore: restored apps open their stores too.
                let kv = syncer.kv_service(&config.kv);
                syncer.restore().await;
                Some((syncer, kv))
            }
            None => None,
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let connection_slots = edge_common::conn::ConnectionSlots::new(
            config.http.max_connections as usize,
            config.http.max_connections_per_ip,
        );
        let mut tasks = JoinSet::new();
        let mut handle = NodeHandle {
            https_addr: None,
            http_addr: None,
            admin_addr: None,
            metrics: metrics.clone(),
            tls: tls.clone(),
            admin: Arc::new(AdminState {
                metrics: metrics.clone(),
                ready: AtomicBool::new(false),
                purge: Some(admin::PurgeAccess {
                    dispatcher: dispatcher.clone(),
                    token: config.cache.purge_token.clone(),
                }),
            }),
            shutdown: shutdown_tx,
            tasks: JoinSet::new(),
        };

        if let Some(addr) = config.listen.https {
            if config.tls.is_none() {
                return Err(config::ConfigError::Invalid {
                    field: "tls".into(),
                    message: "required with listen.https".into(),
                }
                .into());
            }
            let acceptor = TlsAcceptor::from(listener::tls::server_config(tls.resolver.clone())?);
            let listener = bind("https", addr).await?;
            let bound = local_addr("https", addr, &listener)?;
            dispatcher.set_https_port(bound.port());
            handle.https_addr = Some(bound);
            let spec = ClientListener {
                name: "https",
                listener,
                tls: Some(acceptor),
                connection_slots: connection_slots.clone(),
                proxy_protocol: config.listen.https_proxy_protocol,
            };
            tasks.spawn(listener::serve(
                spec,
                dispatcher.clone(),
                config.http.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let Some(addr) = config.listen.http {
            let listener = bind("http", addr).await?;
            handle.http_addr = Some(local_addr("http", addr, &listener)?);
            let spec = ClientListener {
                name: "http",
                listener,
                tls: None,
                connection_slots: connection_slots.clone(),
                proxy_protocol: config.listen.http_proxy_protocol,
            };
            tasks.spawn(listener::serve(
                spec,
                dispatcher.clone(),
                config.http.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let Some(addr) = config.listen.admin {
            let listener = bind("admin", addr).await?;
            handle.admin_addr = Some(local_addr("admin", addr, &listener)?);
            tasks.spawn(admin::serve(
                listener,
                handle.admin.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let Some((syncer, kv)) = syncer {
            tasks.spawn(
                kv::stream::KvStream::new(kv.clone(), syncer.max_backoff())
                    .run(shutdown_rx.clone()),
            );
            tasks.spawn(kv::persist::run(
                kv.replica.clone(),
                syncer.data_dir(),
                shutdown_rx.clone(),
            ));
            // Lines are queued only for apps a snapshot says are tailed, so
            // a node without a control plane ships (and queues) nothing.
            tasks.spawn(logs::ship::run(
                logs.clone(),
                log_queue,
                syncer.log_uplink(),
                shutdown_rx.clone(),
            ));
            tasks.spawn(syncer.run(shutdown_rx.clone()));
        }
        if let Some(cache) = dispatcher.cache() {
            tasks.spawn(cache.clone().maintain(shutdown_rx.clone()));
        }
        handle.tasks = tasks;
        handle.admin.ready.store(true, Ordering::Relaxed);
        Ok(handle)
    }
}

/// Compiles every app's component from the config file (off the async
/// workers: compiling takes CPU-seconds).
async fn load_apps(
    config: &NodeConfig,
    runtime: &Arc<Runtime>,
    metrics: &Metrics,
) -> Result<Vec<sync::apply::StaticRoute>, StartError> {
    let mut routes = Vec::with_capacity(config.apps.len());
    for app_config in &config.apps {
        let (app_config, runtime_ref, metrics_ref) =
            (app_config.clone(), runtime.clone(), metrics.clone());
        let app = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let app = App::load(&app_config, &runtime_ref, &metrics_ref)?;
            tracing::info!(
                tenant = %app.tenant,
                app = %app.name,
                hosts = ?app_config.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                elapsed = ?started.elapsed(),
                "app loaded"
            );
            Ok::<_, AppLoadError>((app_config.hosts, app_config.path_prefix, Arc::new(app)))
        })
        .await??;
        routes.push(app);
    }
    metrics.apps_loaded.set(routes.len() as i64);
    Ok(routes)
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

fn local_addr(
    listener: &'static str,
    addr: SocketAddr,
    bound: &TcpListener,
) -> Result<SocketAddr, StartError> {
    bound.local_addr().map_err(|source| StartError::Bind {
        listener,
        addr,
        source,
    })
}

/// Replaces the node's own certificates (the config file's `tls`) while it
/// runs: `edge-node` calls it on `SIGHUP`.
#[derive(Clone)]
pub struct TlsReloader {
    resolver: Arc<CertResolver>,
    metrics: Metrics,
}

impl TlsReloader {
    /// Loads every certificate `tls` names and serves them from the next
    /// handshake on; on any error nothing changes. `None`: no own
    /// certificates (the control plane's are still served). Files are read
    /// and keys parsed on the blocking pool: the async workers keep serving.
    pub async fn reload(&self, tls: Option<TlsConfig>) -> Result<(), TlsError> {
        let own = tokio::task::spawn_blocking(move || match tls {
            Some(tls) => OwnCertificates::load(&tls),
            None => Ok(OwnCertificates::default()),
        })
        .await
        .map_err(|e| TlsError::Task(e.to_string()))??;
        let expiry = own.expiry.clone();
        let previous = self.resolver.replace_own(own);
        for (name, _) in &previous.expiry {
            if !expiry.iter().any(|(kept, _)| kept == name) {
                self.metrics.remove_certificate_expiry("", "", name);
            }
        }
        for (name, not_after) in &expiry {
            self.metrics
                .set_certificate_expiry("", "", name, *not_after);
        }
        Ok(())
    }
}

/// A running node.
pub struct NodeHandle {
    pub https_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Metrics,
    tls: TlsReloader,
    admin: Arc<AdminState>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// What reloads the node's own certificates.
    pub fn tls_reloader(&self) -> TlsReloader {
        self.tls.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (up to
    /// `http.shutdown_grace`), then returns.
    pub async fn shutdown(mut self) {
        self.admin.ready.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
