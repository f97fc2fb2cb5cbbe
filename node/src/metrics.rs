//! Prometheus metrics, registered in a registry owned by the node (not a
//! global), so two nodes in one process keep separate counts.
//!
//! Label values are bounded: `tenant` and `app` come from configuration,
//! `status` is a status class, `kind` and `reason` come from fixed lists in
//! this crate. Nothing a client sends becomes a label.

use crate::cache::layer::CacheMetrics;
use crate::cache::result::CacheResult;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets from 100 µs to 10 s: a cached hello answers in well under
/// a millisecond, a slow origin fetch takes seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// CPU time per request, from 50 µs to the 10 s a generous budget allows.
const CPU_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// Peak linear memory per request, 64 KiB (one page) to 4 GiB.
const MEMORY_BUCKETS: &[f64] = &[
    65536.0,
    262144.0,
    1048576.0,
    2097152.0,
    4194304.0,
    8388608.0,
    16777216.0,
    33554432.0,
    67108864.0,
    134217728.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// Instantiation is microseconds when the pool is warm; buckets from 10 µs.
const INSTANTIATE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Every metric family of the node.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    instantiate_duration: HistogramVec,
    guest_traps: IntCounterVec,
    in_flight: IntGaugeVec,
    cpu_time: HistogramVec,
    memory_peak: HistogramVec,
    limit_rejections: IntCounterVec,
    unrouted: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub connections_rejected: IntCounterVec,
    pub connections_closed: IntCounterVec,
    /// TLS handshakes by result: `ok`, `failed`, `timeout`.
    pub tls_handshakes: IntCounterVec,
    /// notAfter of every certificate served, by tenant, app and cert.
    tls_certificate_expiry: IntGaugeVec,
    pub apps_loaded: IntGauge,
    pub outbound_requests: IntCounterVec,
    pub sync: SyncMetrics,
    /// The key-value replica, stream and guests' operations.
    pub kv: crate::kv::metrics::KvMetrics,
    cache_results: IntCounterVec,
    cache_collapsed: IntCounterVec,
    /// Bytes the shared cache holds, by tenant and app.
    pub cache_bytes: IntGaugeVec,
    /// Entries the shared cache evicted for room.
    pub cache_evictions: IntCounterVec,
    /// Purges applied, by tenant, app and kind (url, key, all).
    pub cache_purges: IntCounterVec,
    /// Components' GETs through the cache, by how it answered.
    pub cache_fetch_results: IntCounterVec,
    /// The cache's disk tier (`edge_cache_disk_*`).
    pub cache_disk: crate::cache::disk::DiskMetrics,
}

/// The control-plane sync loop.
#[derive(Clone)]
pub struct SyncMetrics {
    /// The revision the node serves.
    pub revision: IntGauge,
    /// Last successful exchange with the control plane (Unix seconds).
    pub last_success: prometheus::Gauge,
    /// Revisions rejected (NACKed), and failed polls, by reason.
    pub failures: IntCounterVec,
    /// Time from receiving a snapshot to serving it.
    pub apply_duration: Histogram,
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "edge_requests_total",
                "Requests answered, by app and status class.",
            ),
            &["tenant", "app", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "edge_request_duration_seconds",
                "Time from request received to response headers sent, by app.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["tenant", "app"],
        )?;
        let instantiate_duration = HistogramVec::new(
            HistogramOpts::new(
                "edge_instantiate_duration_seconds",
                "Time to instantiate a component for one request, by app.",
            )
            .buckets(INSTANTIATE_BUCKETS.to_vec()),
            &["tenant", "app"],
        )?;
        let guest_traps = IntCounterVec::new(
            Opts::new(
                "edge_guest_traps_total",
                "Guest executions that ended in a trap, by app and kind.",
            ),
            &["tenant", "app", "kind"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "edge_requests_in_flight",
                "Requests admitted to an app whose guest has not finished yet.",
            ),
            &["tenant", "app"],
        )?;
        let cpu_time = HistogramVec::new(
            HistogramOpts::new(
                "edge_guest_cpu_seconds",
                "CPU time charged to the guest per request, by app (sampled: a multiple of runtime.epoch_tick).",
            )
            .buckets(CPU_BUCKETS.to_vec()),
            &["tenant", "app"],
        )?;
        let memory_peak = HistogramVec::new(
            HistogramOpts::new(
                "edge_guest_memory_peak_bytes",
                "Largest linear memory an instance reached per request, by app.",
            )
            .buckets(MEMORY_BUCKETS.to_vec()),
            &["tenant", "app"],
        )?;
        let limit_rejections = IntCounterVec::new(
            Opts::new(
                "edge_limit_rejections_total",
                "Requests refused or cut off by a limit, by app and the limit hit.",
            ),
            &["tenant", "app", "reason"],
        )?;
        let unrouted = IntCounterVec::new(
            Opts::new(
                "edge_unrouted_requests_total",
                "Requests that matched no app, by reason.",
            ),
            &["reason"],
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "edge_connections_open",
                "Client connections open, by listener.",
            ),
            &["listener"],
        )?;
        let connections_total = IntCounterVec::new(
            Opts::new(
                "edge_connections_total",
                "Client connections accepted, by listener.",
            ),
            &["listener"],
        )?;
        let connections_rejected = IntCounterVec::new(
            Opts::new(
                "edge_connections_rejected_total",
                "Client connections closed on accept, by the cap they hit (http.max_connections, http.max_connections_per_ip).",
            ),
            &["listener", "reason"],
        )?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "edge_connections_closed_total",
                "Client connections the node closed on a client's behaviour: idle, a response the client stopped reading, a deadline.",
            ),
            &["listener", "reason"],
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "edge_tls_handshakes_total",
                "TLS handshakes on the HTTPS listener, by result: ok, failed (an alert, no certificate for the name, a broken client), timeout (http.tls_handshake_timeout).",
            ),
            &["result"],
        )?;
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "edge_tls_certificate_expiry_timestamp_seconds",
                "When each certificate the node serves expires (notAfter, Unix time): synced ones by tenant, app and the control plane's certificate id; the config file's with tenant=\"\", app=\"\" and cert=\"file:INDEX\" (their place in tls.certificates).",
            ),
            &["tenant", "app", "cert"],
        )?;
        let apps_loaded = IntGauge::new("edge_apps_loaded", "Apps in the routing table.")?;
        let outbound_requests = IntCounterVec::new(
            Opts::new(
                "edge_outbound_requests_total",
                "Guests' outbound HTTP requests, by app and result (ok, denied-destination, \
                 denied-address, subrequest-limit, timeout, connect-error, dns-error, error).",
            ),
            &["tenant", "app", "result"],
        )?;

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(instantiate_duration.clone()))?;
        registry.register(Box::new(guest_traps.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(cpu_time.clone()))?;
        registry.register(Box::new(memory_peak.clone()))?;
        registry.register(Box::new(limit_rejections.clone()))?;
        registry.register(Box::new(unrouted.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_total.clone()))?;
        registry.register(Box::new(connections_rejected.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        registry.register(Box::new(tls_certificate_expiry.clone()))?;
        registry.register(Box::new(apps_loaded.clone()))?;
        let kv = crate::kv::metrics::KvMetrics::new(&registry)?;
        let sync = SyncMetrics {
            revision: IntGauge::new(
                "edge_sync_revision",
                "The control-plane revision this node serves (0: none yet).",
            )?,
            last_success: prometheus::Gauge::new(
                "edge_sync_last_success_timestamp_seconds",
                "When the node last exchanged with the control plane successfully (Unix time).",
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "edge_sync_failures_total",
                    "Failed polls and rejected revisions, by reason.",
                ),
                &["reason"],
            )?,
            apply_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "edge_sync_apply_duration_seconds",
                    "Time from receiving a snapshot to serving it (artifact fetches included).",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
        };
        registry.register(Box::new(sync.revision.clone()))?;
        registry.register(Box::new(sync.last_success.clone()))?;
        registry.register(Box::new(sync.failures.clone()))?;
        registry.register(Box::new(sync.apply_duration.clone()))?;
        let cache_results = IntCounterVec::new(
            Opts::new(
                "edge_cache_requests_total",
                "GET and HEAD requests by how the shared cache answered: hit, miss (stored on the way), stale (stale-while-revalidate, max-stale or stale-if-error), revalidated (a stored response confirmed by a 304), bypass (not storable, a range miss, or the cache not active for the app yet).",
            ),
            &["tenant", "app", "result"],
        )?;
        let cache_collapsed = IntCounterVec::new(
            Opts::new(
                "edge_cache_collapsed_total",
                "Requests answered from a concurrent miss's result instead of running the app.",
            ),
            &["tenant", "app"],
        )?;
        let cache_bytes = IntGaugeVec::new(
            Opts::new(
                "edge_cache_bytes",
                "Bytes held by the shared cache, by tenant and app (sum them for the node).",
            ),
            &["tenant", "app"],
        )?;
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "edge_cache_evictions_total",
                "Entries the shared cache evicted to stay within its capacity, by the tenant and app they belonged to.",
            ),
            &["tenant", "app"],
        )?;
        registry.register(Box::new(cache_results.clone()))?;
        registry.register(Box::new(cache_collapsed.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        registry.register(Box::new(cache_evictions.clone()))?;
        let cache_purges = IntCounterVec::new(
            Opts::new(
                "edge_cache_purges_total",
                "Cache purges applied on this node (from the control plane or the admin listener), by kind: url, key, all.",
            ),
            &["tenant", "app", "kind"],
        )?;
        registry.register(Box::new(cache_purges.clone()))?;
        let cache_fetch_results = IntCounterVec::new(
            Opts::new(
                "edge_cache_fetch_requests_total",
                "Components' outbound GETs by how the shared cache answered them: hit, miss, stale, revalidated, bypass.",
            ),
            &["tenant", "app", "result"],
        )?;
        registry.register(Box::new(cache_fetch_results.clone()))?;
        let cache_disk = crate::cache::disk::DiskMetrics {
            bytes: IntGaugeVec::new(
                Opts::new(
                    "edge_cache_disk_bytes",
                    "Bytes of files in the cache's disk tier, by tenant and app.",
                ),
                &["tenant", "app"],
            )?,
            entries: IntGaugeVec::new(
                Opts::new(
                    "edge_cache_disk_entries",
                    "Stored responses (files) in the cache's disk tier, by tenant and app.",
                ),
                &["tenant", "app"],
            )?,
            writes: IntCounterVec::new(
                Opts::new(
                    "edge_cache_disk_writes_total",
                    "Writes to the cache's disk tier by result: stored, skipped (every writer busy, or a streamed write fell behind), failed.",
                ),
                &["result"],
            )?,
            read_errors: prometheus::IntCounter::new(
                "edge_cache_disk_read_errors_total",
                "Hits in the disk tier's index whose file could not be read or did not match (dropped; the request misses).",
            )?,
        };
        registry.register(Box::new(cache_disk.bytes.clone()))?;
        registry.register(Box::new(cache_disk.entries.clone()))?;
        registry.register(Box::new(cache_disk.writes.clone()))?;
        registry.register(Box::new(cache_disk.read_errors.clone()))?;
        registry.register(Box::new(outbound_requests.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "edge_node_build_info",
                "Always 1; the node's version as a label.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        // CPU seconds, resident memory, open file descriptors and start
        // time of this process (`process_*`), read from /proc at scrape.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(edge_common::runtime_metrics::TokioCollector::new(
            "edge",
        )?))?;

        Ok(Self {
            kv,
            registry,
            requests,
            request_duration,
            instantiate_duration,
            guest_traps,
            in_flight,
            cpu_time,
            memory_peak,
            limit_rejections,
            unrouted,
            connections_open,
            connections_total,
            connections_rejected,
            connections_closed,
            tls_handshakes,
            tls_certificate_expiry,
            apps_loaded,
            sync,
            cache_results,
            cache_collapsed,
            cache_bytes,
            cache_evictions,
            cache_purges,
            cache_fetch_results,
            cache_disk,
            outbound_requests,
        })
    }

    /// Handles for one app, resolved once so the request path does no label lookups.
    pub fn for_app(&self, tenant: &str, app: &str) -> AppMetrics {
        let by_class = |class: &str| self.requests.with_label_values(&[tenant, app, class]);
        AppMetrics {
            requests_by_class: [
                by_class("1xx"),
                by_class("2xx"),
                by_class("3xx"),
                by_class("4xx"),
                by_class("5xx"),
            ],
            request_duration: self.request_duration.with_label_values(&[tenant, app]),
            instantiate_duration: self.instantiate_duration.with_label_values(&[tenant, app]),
            in_flight: self.in_flight.with_label_values(&[tenant, app]),
            cpu_time: self.cpu_time.with_label_values(&[tenant, app]),
            memory_peak: self.memory_peak.with_label_values(&[tenant, app]),
            limit_rejections: self.limit_rejections.clone(),
            cache_results: [
                CacheResult::Hit,
                CacheResult::Miss,
                CacheResult::Stale,
                CacheResult::Revalidated,
                CacheResult::Bypass,
            ]
            .map(|result| {
                self.cache_results.with_label_values(&[
                    tenant,
                    app,
                    &result.label().to_ascii_lowercase(),
                ])
            }),
            cache_collapsed: self.cache_collapsed.with_label_values(&[tenant, app]),
            response_too_large: self.limit_rejections.with_label_values(&[
                tenant,
                app,
                "response-too-large",
            ]),
            guest_traps: self.guest_traps.clone(),
            tenant: tenant.to_string(),
            app: app.to_string(),
        }
    }

    /// Drops every series of an app the node no longer serves, so tenants
    /// creating and deleting apps cannot grow the label sets without bound.
    pub fn remove_app(&self, tenant: &str, app: &str) {
        remove_series(&self.requests, tenant, app);
        remove_series(&self.request_duration, tenant, app);
        remove_series(&self.instantiate_duration, tenant, app);
        remove_series(&self.guest_traps, tenant, app);
        remove_series(&self.in_flight, tenant, app);
        remove_series(&self.cpu_time, tenant, app);
        remove_series(&self.memory_peak, tenant, app);
        remove_series(&self.limit_rejections, tenant, app);
        remove_series(&self.outbound_requests, tenant, app);
        remove_series(&self.cache_results, tenant, app);
        remove_series(&self.cache_collapsed, tenant, app);
        remove_series(&self.cache_purges, tenant, app);
        remove_series(&self.cache_fetch_results, tenant, app);
        remove_series(&self.cache_bytes, tenant, app);
        remove_series(&self.cache_evictions, tenant, app);
        remove_series(&self.cache_disk.bytes, tenant, app);
        remove_series(&self.cache_disk.entries, tenant, app);
        remove_series(&self.kv.operations, tenant, app);
    }

    /// What the shared cache reports to.
    pub fn cache_metrics(&self) -> CacheMetrics {
        CacheMetrics {
            bytes: self.cache_bytes.clone(),
            evictions: self.cache_evictions.clone(),
            purges: self.cache_purges.clone(),
        }
    }

    /// Sets the expiry series of one certificate; `cert` is the control
    /// plane's id, or `file:INDEX` for the config file's (tenant and app
    /// empty).
    pub fn set_certificate_expiry(&self, tenant: &str, app: &str, cert: &str, not_after: i64) {
        self.tls_certificate_expiry
            .with_label_values(&[tenant, app, cert])
            .set(not_after);
    }

    /// Removes the series of a certificate no longer served, so the label
    /// sets stay those of the current certificates.
    pub fn remove_certificate_expiry(&self, tenant: &str, app: &str, cert: &str) {
        let _ = self
            .tls_certificate_expiry
            .remove_label_values(&[tenant, app, cert]);
    }

    pub fn unrouted(&self, reason: &'static str) {
        self.unrouted.with_label_values(&[reason]).inc();
    }
}

fn remove_series<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    tenant: &str,
    app: &str,
) {
    let families = prometheus::core::Collector::collect(vec);
    for metric in families.iter().flat_map(|family| family.get_metric()) {
        let labels: std::collections::HashMap<&str, &str> = metric
            .get_label()
            .iter()
            .map(|pair| (pair.name(), pair.value()))
            .collect();
        if labels.get("tenant") == Some(&tenant) && labels.get("app") == Some(&app) {
            let _ = vec.remove(&labels);
        }
    }
}

/// Pre-resolved metric handles of one app.
#[derive(Clone)]
pub struct AppMetrics {
    requests_by_class: [IntCounter; 5],
    pub request_duration: Histogram,
    pub instantiate_duration: Histogram,
    pub in_flight: IntGauge,
    pub cpu_time: Histogram,
    pub memory_peak: Histogram,
    limit_rejections: IntCounterVec,
    /// Indexed by `CacheResult as usize`.
    cache_results: [IntCounter; 5],
    pub cache_collapsed: IntCounter,
    /// Pre-resolved: the response body wrapper counts cut-offs with it.
    pub response_too_large: IntCounter,
    guest_traps: IntCounterVec,
    tenant: String,
    app: String,
}

impl AppMetrics {
    pub fn cache_result(&self, result: CacheResult) {
        self.cache_results[result as usize].inc();
    }

    pub fn request(&self, status: http::StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.requests_by_class[class].inc();
    }

    /// A request refused or cut off by a limit; `reason` is the error code.
    pub fn limit_rejection(&self, reason: &'static str) {
        self.limit_rejections
            .with_label_values(&[&self.tenant, &self.app, reason])
            .inc();
    }

    pub fn trap(&self, kind: &'static str) {
        self.guest_traps
            .with_label_values(&[&self.tenant, &self.app, kind])
            .inc();
    }
}
