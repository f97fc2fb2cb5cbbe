//! The key-value metrics (`edge_kv_*`). Labels are bounded: tenant and app
//! as every app metric has them, `op` one of [`Op::ALL`], `result` `ok` or
//! a `KvErrorCode`, `reason` one of the stream's fixed reasons.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
    Delete,
    Exists,
    ListKeys,
    Increment,
    CompareAndSwap,
    GetMany,
    SetMany,
    DeleteMany,
}

impl Op {
    /// In discriminant order (`op as usize` indexes it).
    pub const ALL: [Op; 10] = [
        Op::Get,
        Op::Set,
        Op::Delete,
        Op::Exists,
        Op::ListKeys,
        Op::Increment,
        Op::CompareAndSwap,
        Op::GetMany,
        Op::SetMany,
        Op::DeleteMany,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Exists => "exists",
            Op::ListKeys => "list-keys",
            Op::Increment => "increment",
            Op::CompareAndSwap => "compare-and-swap",
            Op::GetMany => "get-many",
            Op::SetMany => "set-many",
            Op::DeleteMany => "delete-many",
        }
    }
}

#[derive(Clone)]
pub struct KvMetrics {
    pub operations: IntCounterVec,
    pub write_seconds: Histogram,
    pub replica_bytes: IntGauge,
    pub replica_keys: IntGauge,
    pub replica_seq: IntGauge,
    pub lag_seconds: Gauge,
    pub stream_failures: IntCounterVec,
}

/// Reasons of `edge_kv_stream_failures_total`.
pub mod reason {
    pub const UNREACHABLE: &str = "unreachable";
    pub const HTTP_STATUS: &str = "http-status";
    pub const BAD_SIGNATURE: &str = "bad-signature";
    pub const MALFORMED: &str = "malformed";
    pub const NO_KEY: &str = "no-key";
    pub const REPLICA_FULL: &str = "replica-full";
    pub const RESYNC: &str = "resync";
    /// A write's answer that did not verify or did not echo the nonce.
    pub const WRITE_BAD_ANSWER: &str = "write-bad-answer";
}

impl KvMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = KvMetrics {
            operations: IntCounterVec::new(
                Opts::new(
                    "edge_kv_operations_total",
                    "Key-value operations of guests, by app, op and result (ok or an error code).",
                ),
                &["tenant", "app", "op", "result"],
            )?,
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "edge_kv_write_seconds",
                    "Time of a key-value write to the control plane, answer verified and applied.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
            replica_bytes: IntGauge::new(
                "edge_kv_replica_bytes",
                "Bytes (keys plus values) in the node's key-value replica.",
            )?,
            replica_keys: IntGauge::new(
                "edge_kv_replica_keys",
                "Live keys in the node's key-value replica.",
            )?,
            replica_seq: IntGauge::new(
                "edge_kv_replica_seq",
                "The change-stream position of the node's key-value replica.",
            )?,
            lag_seconds: Gauge::new(
                "edge_kv_replica_lag_seconds",
                "0 while the change stream is connected and caught up; else seconds since the replica was last known current.",
            )?,
            stream_failures: IntCounterVec::new(
                Opts::new(
                    "edge_kv_stream_failures_total",
                    "Failed exchanges of the key-value change stream (and refused write answers), by reason.",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(metrics.operations.clone()))?;
        registry.register(Box::new(metrics.write_seconds.clone()))?;
        registry.register(Box::new(metrics.replica_bytes.clone()))?;
        registry.register(Box::new(metrics.replica_keys.clone()))?;
        registry.register(Box::new(metrics.replica_seq.clone()))?;
        registry.register(Box::new(metrics.lag_seconds.clone()))?;
        registry.register(Box::new(metrics.stream_failures.clone()))?;
        Ok(metrics)
    }

    pub fn failure(&self, reason: &str) {
        self.stream_failures.with_label_values(&[reason]).inc();
    }
}
