//! The control plane's Prometheus metrics, in a registry it owns (not a
//! global), so two control planes in one process keep separate counts.
//! Served on the admin listener (`admin`).
//!
//! Label values are bounded: `route` is a template of the API's route
//! table (or `other`), `status_class` one of five, `store` and `op` the
//! store traits' method names, `outcome` ok or error; `node` comes from
//! node tokens an operator issued and is capped at
//! [`MAX_LABELLED_NODES`]. Nothing a client sends becomes a label.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use edge_common::api::CertificateStatus;
use http::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::store::instrumented::StoreMetrics;
use crate::store::{CertificateCounts, NodeRecord};

/// Nodes with series of their own; the rest are summed up in
/// `edge_cp_nodes_unlabelled` and `edge_cp_node_revision_lag_unlabelled_max`.
/// Ten thousand nodes are two gauges each, a few MB of scrape: more is a
/// fleet that wants its own aggregation, not a bigger page.
pub const MAX_LABELLED_NODES: usize = 10_000;

/// API latency: most calls take milliseconds, an upload with its compile
/// seconds, a sync long poll up to its wait (60 s at most).
const API_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Receiving an upload: 64 MiB at the 16 KiB/s floor is over an hour.
const UPLOAD_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// Compiling a component: tens of milliseconds for a hello, tens of
/// seconds for a large one.
const COMPILE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

const CERTIFICATE_STATUSES: [CertificateStatus; 4] = [
    CertificateStatus::Pending,
    CertificateStatus::Issued,
    CertificateStatus::Failed,
    CertificateStatus::Expiring,
];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric family of the control plane.
pub struct CpMetrics {
    pub registry: Registry,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    upload_duration: Histogram,
    upload_bytes: IntCounter,
    compile_duration: HistogramVec,
    pub store: StoreMetrics,
    nodes: IntGauge,
    nodes_active: IntGauge,
    node_applied: IntGaugeVec,
    node_lag: IntGaugeVec,
    nodes_unlabelled: IntGauge,
    node_lag_unlabelled_max: IntGauge,
    /// Sync long polls waiting for a change now.
    pub sync_waiters: IntGauge,
    revision: IntGauge,
    acme_orders: IntCounterVec,
    certificates: IntGaugeVec,
    /// Live logs (`api::logs`): tails unexpired fleet-wide as the last
    /// sweep counted them; lines nodes posted to this replica, kept and
    /// not (apps nobody tails, over a bound).
    pub log_tails_active: IntGauge,
    pub log_lines_received: IntCounter,
    pub log_lines_dropped: IntCounter,
    /// Key-value stores (`api::kv`): writes by result ("ok" or a
    /// `KvErrorCode`, a fixed set), their time, the change-stream long
    /// polls waiting now, and the last seq this replica committed or heard.
    kv_writes: IntCounterVec,
    kv_write_duration: Histogram,
    pub kv_sync_waiters: IntGauge,
    pub kv_seq: IntGauge,
    /// The nodes that have series now, to remove those that go.
    labelled_nodes: Mutex<BTreeSet<String>>,
}

impl CpMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "edge_cp_api_requests_total",
                "API requests answered, by route template and status class.",
            ),
            &["route", "status_class"],
        )?;
        let api_duration = HistogramVec::new(
            HistogramOpts::new(
                "edge_cp_api_request_duration_seconds",
                "Time to answer an API request, by route template (sync long polls wait up to their `wait`).",
            )
            .buckets(API_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "edge_cp_upload_duration_seconds",
                "Time to receive an upload's body (uploads received in full).",
            )
            .buckets(UPLOAD_BUCKETS.to_vec()),
        )?;
        let upload_bytes = IntCounter::new(
            "edge_cp_upload_bytes_total",
            "Bytes of component uploads received in full.",
        )?;
        let compile_duration = HistogramVec::new(
            HistogramOpts::new(
                "edge_cp_compile_duration_seconds",
                "Time to validate and precompile an upload, by outcome (ok, error: refused as invalid, or failed).",
            )
            .buckets(COMPILE_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let store = StoreMetrics::new()?;
        let nodes = IntGauge::new(
            "edge_cp_nodes",
            "Nodes the control plane knows (every node that ever polled).",
        )?;
        let nodes_active = IntGauge::new(
            "edge_cp_nodes_active",
            "Nodes heard from within node_stale_after (90 s by default).",
        )?;
        let node_applied = IntGaugeVec::new(
            Opts::new(
                "edge_cp_node_applied_revision",
                "The revision an active node last applied (0: none yet).",
            ),
            &["node"],
        )?;
        let node_lag = IntGaugeVec::new(
            Opts::new(
                "edge_cp_node_revision_lag",
                "Current revision minus the revision an active node applied.",
            ),
            &["node"],
        )?;
        let nodes_unlabelled = IntGauge::new(
            "edge_cp_nodes_unlabelled",
            "Active nodes beyond the per-node series cap (10,000), counted here instead.",
        )?;
        let node_lag_unlabelled_max = IntGauge::new(
            "edge_cp_node_revision_lag_unlabelled_max",
            "The largest revision lag among the nodes beyond the per-node series cap.",
        )?;
        let sync_waiters = IntGauge::new(
            "edge_cp_sync_waiters",
            "Sync long polls waiting for a change now.",
        )?;
        let revision = IntGauge::new(
            "edge_cp_revision",
            "The store's current revision, read at scrape time.",
        )?;
        let acme_orders = IntCounterVec::new(
            Opts::new(
                "edge_cp_acme_orders_total",
                "ACME orders this control plane finished, by result (issued, failed).",
            ),
            &["result"],
        )?;
        let certificates = IntGaugeVec::new(
            Opts::new(
                "edge_cp_certificates",
                "Tenants' certificates by status (pending, issued, failed, expiring), as the ACME worker last counted them.",
            ),
            &["status"],
        )?;
        for result in ["issued", "failed"] {
            acme_orders.with_label_values(&[result]);
        }
        for status in CERTIFICATE_STATUSES {
            certificates.with_label_values(&[status.as_str()]);
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "edge_cp_build_info",
                "Always 1; the control plane's version as a label.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for outcome in ["ok", "error"] {
            compile_duration.with_label_values(&[outcome]);
        }
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(api_duration.clone()))?;
        registry.register(Box::new(upload_duration.clone()))?;
        registry.register(Box::new(upload_bytes.clone()))?;
        registry.register(Box::new(compile_duration.clone()))?;
        store.register(&registry)?;
        registry.register(Box::new(nodes.clone()))?;
        registry.register(Box::new(nodes_active.clone()))?;
        registry.register(Box::new(node_applied.clone()))?;
        registry.register(Box::new(node_lag.clone()))?;
        registry.register(Box::new(nodes_unlabelled.clone()))?;
        registry.register(Box::new(node_lag_unlabelled_max.clone()))?;
        registry.register(Box::new(sync_waiters.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(acme_orders.clone()))?;
        registry.register(Box::new(certificates.clone()))?;
        let log_tails_active = IntGauge::new(
            "edge_cp_log_tails_active",
            "Live-log followers (tails) unexpired, all replicas, as the last sweep counted them.",
        )?;
        let log_lines_received = IntCounter::new(
            "edge_cp_log_lines_received_total",
            "Live-log lines nodes posted to this replica and it kept.",
        )?;
        let log_lines_dropped = IntCounter::new(
            "edge_cp_log_lines_dropped_total",
            "Live-log lines nodes posted to this replica that it did not keep (the app is not tailed, or a bound).",
        )?;
        registry.register(Box::new(log_tails_active.clone()))?;
        registry.register(Box::new(log_lines_received.clone()))?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        let kv_writes = IntCounterVec::new(
            Opts::new(
                "edge_cp_kv_writes_total",
                "Key-value writes (nodes' and tenants'), by result: ok or the refusal's error code.",
            ),
            &["result"],
        )?;
        kv_writes.with_label_values(&["ok"]);
        let kv_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "edge_cp_kv_write_seconds",
                "Time to run a key-value write's transaction.",
            )
            .buckets(API_BUCKETS.to_vec()),
        )?;
        let kv_sync_waiters = IntGauge::new(
            "edge_cp_kv_sync_waiters",
            "Key-value change-stream long polls waiting for a change now.",
        )?;
        let kv_seq = IntGauge::new(
            "edge_cp_kv_seq",
            "The last key-value seq this replica committed or heard of.",
        )?;
        registry.register(Box::new(kv_writes.clone()))?;
        registry.register(Box::new(kv_write_duration.clone()))?;
        registry.register(Box::new(kv_sync_waiters.clone()))?;
        registry.register(Box::new(kv_seq.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(edge_common::runtime_metrics::TokioCollector::new(
            "edge_cp",
        )?))?;
        Ok(Self {
            registry,
            api_requests,
            api_duration,
            upload_duration,
            upload_bytes,
            compile_duration,
            store,
            nodes,
            nodes_active,
            node_applied,
            node_lag,
            nodes_unlabelled,
            node_lag_unlabelled_max,
            sync_waiters,
            revision,
            acme_orders,
            certificates,
            log_tails_active,
            log_lines_received,
            log_lines_dropped,
            kv_writes,
            kv_write_duration,
            kv_sync_waiters,
            kv_seq,
            labelled_nodes: Mutex::new(BTreeSet::new()),
        })
    }

    /// A key-value write ended: `result` is "ok" or a `KvErrorCode`'s
    /// string (static: the label set stays fixed).
    pub fn kv_write(&self, result: &'static str, elapsed: Duration) {
        self.kv_writes.with_label_values(&[result]).inc();
        self.kv_write_duration.observe(elapsed.as_secs_f64());
    }

    /// An ACME order finished: `issued` or `failed`.
    pub fn acme_order(&self, result: &str) {
        self.acme_orders.with_label_values(&[result]).inc();
    }

    /// The certificates by status, as the store counted them.
    pub fn observe_certificates(&self, counts: &CertificateCounts) {
        for status in CERTIFICATE_STATUSES {
            let count = i64::try_from(counts.get(status)).unwrap_or(i64::MAX);
            self.certificates
                .with_label_values(&[status.as_str()])
                .set(count);
        }
    }

    /// One API request answered; `route` is a template of the route table.
    pub fn api_request(&self, route: &str, status: StatusCode, elapsed: Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.api_requests
            .with_label_values(&[route, STATUS_CLASSES[class]])
            .inc();
        self.api_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// An upload body received in full.
    pub fn upload_received(&self, bytes: u64, elapsed: Duration) {
        self.upload_bytes.inc_by(bytes);
        self.upload_duration.observe(elapsed.as_secs_f64());
    }

    /// A compile finished: `ok`, or `error` (refused as invalid, or failed).
    pub fn compiled(&self, ok: bool, elapsed: Duration) {
        self.compile_duration
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the revision and fleet gauges from the store's state, read at
    /// scrape time: `nodes` as the store lists them, the active ones (seen
    /// within `stale_after` of `now_unix`) with series of their own, up to
    /// [`MAX_LABELLED_NODES`] in name order. A node that goes stale, or
    /// past the cap, loses its series.
    pub fn observe_fleet(
        &self,
        revision: u64,
        nodes: &[NodeRecord],
        now_unix: u64,
        stale_after: Duration,
    ) {
        self.revision.set(clamp_i64(revision));
        self.nodes.set(nodes.len() as i64);
        let mut active: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| now_unix.saturating_sub(n.last_seen_unix) <= stale_after.as_secs())
            .collect();
        active.sort_by(|a, b| a.node.cmp(&b.node));
        self.nodes_active.set(active.len() as i64);
        let lag = |n: &NodeRecord| revision.saturating_sub(n.applied_revision.unwrap_or(0));
        let split = active.len().min(MAX_LABELLED_NODES);
        let (labelled, rest) = active.split_at(split);
        self.nodes_unlabelled.set(rest.len() as i64);
        self.node_lag_unlabelled_max
            .set(clamp_i64(rest.iter().map(|n| lag(n)).max().unwrap_or(0)));
        let Ok(mut previous) = self.labelled_nodes.lock() else {
            return;
        };
        let now: BTreeSet<String> = labelled.iter().map(|n| n.node.clone()).collect();
        for gone in previous.difference(&now) {
            let _ = self.node_applied.remove_label_values(&[gone]);
            let _ = self.node_lag.remove_label_values(&[gone]);
        }
        for node in labelled {
            self.node_applied
                .with_label_values(&[&node.node])
                .set(clamp_i64(node.applied_revision.unwrap_or(0)));
            self.node_lag
                .with_label_values(&[&node.node])
                .set(clamp_i64(lag(node)));
        }
        *previous = now;
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut buf,
        )?;
        Ok(buf)
    }
}

/// One unit of a gauge while it lives.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, applied: Option<u64>, last_seen_unix: u64) -> NodeRecord {
        NodeRecord {
            node: name.into(),
            applied_revision: applied,
            app_errors: Vec::new(),
            rejected_revision: None,
            last_error: None,
            engine: String::new(),
            last_seen_unix,
        }
    }

    fn text(metrics: &CpMetrics) -> String {
        String::from_utf8(metrics.encode().unwrap()).unwrap()
    }

    #[test]
    fn fleet_gauges_follow_the_store_and_drop_nodes_that_go() {
        let metrics = CpMetrics::new().unwrap();
        let stale = Duration::from_secs(90);
        metrics.observe_fleet(
            7,
            &[
                node("b", Some(7), 1000),
                node("a", Some(4), 1000),
                node("c", None, 1000),
            ],
            1000,
            stale,
        );
        let page = text(&metrics);
        assert!(page.contains("edge_cp_revision 7\n"), "{page}");
        assert!(page.contains("edge_cp_nodes 3\n"), "{page}");
        assert!(
            page.contains("edge_cp_node_revision_lag{node=\"a\"} 3\n"),
            "{page}"
        );
        assert!(
            page.contains("edge_cp_node_revision_lag{node=\"b\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("edge_cp_node_revision_lag{node=\"c\"} 7\n"),
            "{page}"
        );
        assert!(
            page.contains("edge_cp_node_applied_revision{node=\"c\"} 0\n"),
            "{page}"
        );

        // `c` goes silent past node_stale_after: still known, no series.
        metrics.observe_fleet(
            8,
            &[
                node("a", Some(8), 1100),
                node("b", Some(8), 1100),
                node("c", None, 1000),
            ],
            1100,
            stale,
        );
        let page = text(&metrics);
        assert!(page.contains("edge_cp_nodes 3\n"), "{page}");
        assert!(page.contains("edge_cp_nodes_active 2\n"), "{page}");
        assert!(!page.contains("node=\"c\""), "{page}");
        assert!(
            page.contains("edge_cp_node_revision_lag{node=\"a\"} 0\n"),
            "{page}"
        );
    }

    #[test]
    fn nodes_past_the_cap_are_aggregated_not_labelled() {
        let metrics = CpMetrics::new().unwrap();
        let fleet: Vec<NodeRecord> = (0..MAX_LABELLED_NODES + 3)
            .map(|i| {
                node(
                    &format!("n{i:06}"),
                    Some(if i % 2 == 0 { 10 } else { 4 }),
                    50,
                )
            })
            .collect();
        metrics.observe_fleet(10, &fleet, 50, Duration::from_secs(90));
        let page = text(&metrics);
        let labelled = page
            .lines()
            .filter(|l| l.starts_with("edge_cp_node_revision_lag{"))
            .count();
        assert_eq!(labelled, MAX_LABELLED_NODES);
        assert!(
            page.contains("edge_cp_nodes_unlabelled 3\n"),
            "unlabelled count"
        );
        // The last three (by name) are n010000..n010002: lags 0, 6, 0.
        assert!(page.contains("edge_cp_node_revision_lag_unlabelled_max 6\n"));
    }

    #[test]
    fn requests_count_by_class_and_process_metrics_are_exported() {
        let metrics = CpMetrics::new().unwrap();
        metrics.api_request(
            "GET /v1/nodes",
            StatusCode::BAD_GATEWAY,
            Duration::from_millis(3),
        );
        metrics.api_request(
            "GET /v1/nodes",
            StatusCode::from_u16(999).unwrap(),
            Duration::ZERO,
        );
        let page = text(&metrics);
        assert!(
            page.contains(
                "edge_cp_api_requests_total{route=\"GET /v1/nodes\",status_class=\"5xx\"} 2\n"
            ),
            "{page}"
        );
        assert!(page.contains("edge_cp_build_info{version=\""), "{page}");
        assert!(page.contains("process_resident_memory_bytes "), "{page}");
        assert!(page.contains("process_open_fds "), "{page}");
    }
}
