//! Store metrics for any backend: [`InstrumentedMeta`] and
//! [`InstrumentedBlobs`] implement [`MetaStore`] and [`BlobStore`] by
//! delegating every method to the backend they wrap, timing each call
//! (`edge_cp_store_operation_duration_seconds{store,op}`) and counting
//! backend failures (`edge_cp_store_errors_total{store,op}`). `op` is the
//! method's name.
//!
//! A method added to a trait must be added to the list below, or this
//! file stops compiling; a method with a default body would silently keep
//! the default here, so give new trait methods no default.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::outbound::AppOutbound;
use edge_common::sync::{
    AcmeChallenge, AppHttps, ArtifactRef, NodeReport, Purge, PurgeTarget, Snapshot,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::{
    AppOrigin, AppRecord, BlobInfo, BlobStore, CertLease, CertLimits, CertMaterial, CertRecord,
    CertificateCounts, DeploymentRecord, MetaStore, NewCertificate, NewVersion, NodeRecord,
    PurgeRate, StoreDump, StoreError, StoreResult, TenantRecord, TenantStorage, VersionRecord,
};
use super::{AppSecrets, SecretRecord, SecretWrite};
use super::{KvChanges, KvHead, KvPage, KvPruneOutcome, KvStoreRecord, KvWrite, KvWriteOutcome};
use super::{LogPage, LogStart, LogSweep, LogTail, NewLogLine};

/// One store call: sub-millisecond on SQLite, a round trip or more on a
/// database or an object store over the network.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// What the wrappers report to; registered in the control plane's
/// registry by `crate::metrics`.
#[derive(Clone)]
pub struct StoreMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl StoreMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "edge_cp_store_operation_duration_seconds",
                    "Time of one call to the metadata (meta) or blob store, by store and method.",
                )
                .buckets(STORE_BUCKETS.to_vec()),
                &["store", "op"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "edge_cp_store_errors_total",
                    "Store calls the backend failed (I/O, connection, corruption), by store and method.",
                ),
                &["store", "op"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.errors.clone()))
    }

    /// One call of `store` (`meta`, `blob`) method `op`; whether the
    /// backend failed.
    fn observe(&self, store: &str, op: &str, elapsed: Duration, backend_failed: bool) {
        self.duration
            .with_label_values(&[store, op])
            .observe(elapsed.as_secs_f64());
        if backend_failed {
            self.errors.with_label_values(&[store, op]).inc();
        }
    }

    /// Starts `op`'s error count at 0, so a rate over it is defined before
    /// the first failure.
    fn declare(&self, store: &str, op: &str) {
        self.errors.with_label_values(&[store, op]);
    }
}

async fn observe<T>(
    metrics: &StoreMetrics,
    store: &'static str,
    op: &'static str,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let started = Instant::now();
    let result = call.await;
    let failed = result.as_ref().is_err_and(backend_failed);
    metrics.observe(store, op, started.elapsed(), failed);
    result
}

/// Whether the backend failed, as opposed to refusing what was asked
/// (not found, exists, over quota): only those count as store errors. No
/// wildcard, so a new variant has to be sorted here.
fn backend_failed(error: &StoreError) -> bool {
    match error {
        StoreError::Backend(_)
        | StoreError::Full(_)
        | StoreError::Unavailable(_)
        | StoreError::Corrupt(_) => true,
        StoreError::NotFound(_)
        | StoreError::Exists(_)
        | StoreError::HostTaken(_)
        | StoreError::OriginApp(_)
        | StoreError::NotOriginApp(_)
        | StoreError::QuotaExceeded(_)
        | StoreError::PurgeRateLimited { .. }
        | StoreError::CertificateLimit { .. }
        | StoreError::LeaseLost { .. }
        | StoreError::OutboundLimit { .. }
        | StoreError::LimitInUse { .. }
        | StoreError::SecretLimit { .. }
        | StoreError::SecretsChanged(_)
        | StoreError::TailLimit { .. }
        | StoreError::Kv(_)
        | StoreError::Restore(_) => false,
    }
}

/// Writes the wrapper's trait impl: one delegating, observed method per
/// line, and `OPS`, the method names (the `op` label values).
macro_rules! instrument {
    ($label:literal, $wrapper:ident: $store_trait:ident {
        $( fn $op:ident(&self $(, $arg:ident: $arg_ty:ty)* $(,)?) -> $ret:ty; )*
    }) => {
        impl $wrapper {
            /// Every method of the trait, as its `op` label.
            pub const OPS: &'static [&'static str] = &[$(stringify!($op)),*];

            pub fn new(inner: Arc<dyn $store_trait>, metrics: StoreMetrics) -> Self {
                for op in Self::OPS {
                    metrics.declare($label, op);
                }
                Self { inner, metrics }
            }
        }

        #[async_trait]
        impl $store_trait for $wrapper {
            $(
                async fn $op(&self $(, $arg: $arg_ty)*) -> $ret {
                    observe(&self.metrics, $label, stringify!($op), self.inner.$op($($arg),*)).await
                }
            )*
        }
    };
}

/// A [`MetaStore`] that reports every call (`store="meta"`).
pub struct InstrumentedMeta {
    inner: Arc<dyn MetaStore>,
    metrics: StoreMetrics,
}

/// A [`BlobStore`] that reports every call (`store="blob"`).
pub struct InstrumentedBlobs {
    inner: Arc<dyn BlobStore>,
    metrics: StoreMetrics,
}

instrument!("meta", InstrumentedMeta: MetaStore {
    fn revision(&self) -> StoreResult<u64>;
    fn epoch(&self) -> StoreResult<String>;
    fn create_tenant(&self, id: &TenantId) -> StoreResult<TenantRecord>;
    fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    fn tenant_exists(&self, id: &TenantId) -> StoreResult<bool>;
    fn tenant_storage(&self, id: &TenantId) -> StoreResult<TenantStorage>;
    fn set_tenant_quota(&self, id: &TenantId, quota_bytes: Option<u64>) -> StoreResult<TenantStorage>;
    fn create_app(
        &self,
        tenant: &TenantId,
        name: &AppName,
        hosts: &[HostPattern],
        limits: &AppLimits,
        origin: Option<&AppOrigin>,
    ) -> StoreResult<AppRecord>;
    fn list_apps(&self, tenant: &TenantId) -> StoreResult<Vec<AppRecord>>;
    fn get_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord>;
    fn delete_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<u64>;
    fn set_origin(
        &self,
        tenant: &TenantId,
        name: &AppName,
        url: &str,
        forward_override_headers: Option<bool>,
    ) -> StoreResult<(AppOrigin, u64)>;
    fn add_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: &NewVersion,
        default_quota_bytes: u64,
    ) -> StoreResult<VersionRecord>;
    fn list_versions(&self, tenant: &TenantId, name: &AppName) -> StoreResult<Vec<VersionRecord>>;
    fn delete_version(&self, tenant: &TenantId, name: &AppName, version: u64) -> StoreResult<()>;
    fn activate_version(&self, tenant: &TenantId, name: &AppName, version: u64) -> StoreResult<u64>;
    fn deployments(&self, tenant: &TenantId, name: &AppName) -> StoreResult<Vec<DeploymentRecord>>;
    fn update_config(
        &self,
        tenant: &TenantId,
        name: &AppName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> StoreResult<u64>;
    fn set_limits(&self, tenant: &TenantId, name: &AppName, limits: &AppLimits) -> StoreResult<u64>;
    fn add_purge(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
    ) -> StoreResult<(Purge, u64)>;
    fn add_purge_within(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: PurgeRate,
    ) -> StoreResult<(Purge, u64)>;
    fn snapshot(&self) -> StoreResult<Snapshot>;
    fn find_artifact(&self, source_sha256: &str, engine: &str) -> StoreResult<Option<ArtifactRef>>;
    fn record_artifact(&self, source_sha256: &str, artifact: &ArtifactRef) -> StoreResult<()>;
    fn is_artifact(&self, sha256: &str) -> StoreResult<bool>;
    fn unreferenced_blobs(&self, candidates: &[String]) -> StoreResult<Vec<String>>;
    fn record_node_report(&self, node: &str, report: &NodeReport, now_unix: u64) -> StoreResult<()>;
    fn touch_node(&self, node: &str, now_unix: u64) -> StoreResult<()>;
    fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
    fn set_app_https(&self, tenant: &TenantId, name: &AppName, https: &AppHttps) -> StoreResult<u64>;
    fn add_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        new: NewCertificate,
        limits: &CertLimits,
    ) -> StoreResult<(CertRecord, u64)>;
    fn list_certificates(&self, tenant: &TenantId, app: &AppName) -> StoreResult<Vec<CertRecord>>;
    fn all_certificates(&self) -> StoreResult<Vec<CertRecord>>;
    fn get_certificate(&self, id: u64) -> StoreResult<CertRecord>;
    fn certificate_by_bundle(&self, sha256: &str) -> StoreResult<Option<CertRecord>>;
    fn delete_certificate(&self, tenant: &TenantId, app: &AppName, id: u64) -> StoreResult<u64>;
    fn due_certificates(&self, now_unix: u64, limit: usize) -> StoreResult<Vec<CertRecord>>;
    fn next_certificate_due(&self, now_unix: u64) -> StoreResult<Option<u64>>;
    fn certificate_counts(&self, now_unix: u64) -> StoreResult<CertificateCounts>;
    fn claim_certificate(
        &self,
        id: u64,
        now_unix: u64,
        lease_until: u64,
    ) -> StoreResult<Option<CertLease>>;
    fn record_certificate_issued(
        &self,
        lease: &CertLease,
        material: CertMaterial,
        next_attempt_unix: Option<u64>,
    ) -> StoreResult<u64>;
    fn record_certificate_failure(
        &self,
        lease: &CertLease,
        error: &str,
        next_attempt_unix: u64,
    ) -> StoreResult<u64>;
    fn schedule_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
        at: u64,
    ) -> StoreResult<CertRecord>;
    fn set_acme_challenges(&self, id: u64, challenges: &[AcmeChallenge]) -> StoreResult<u64>;
    fn reseal_certificate_key(&self, id: u64, old: &[u8], new: &[u8]) -> StoreResult<bool>;
    fn acme_account(&self, directory: &str) -> StoreResult<Option<Vec<u8>>>;
    fn put_acme_account(&self, directory: &str, sealed: &[u8], replace: bool) -> StoreResult<Vec<u8>>;
    fn acme_accounts(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;
    fn app_outbound(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppOutbound>;
    fn set_app_outbound(&self, tenant: &TenantId, name: &AppName, policy: &AppOutbound) -> StoreResult<u64>;
    fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<SetTenantLimits>;
    fn set_tenant_limits(&self, tenant: &TenantId, limits: &SetTenantLimits) -> StoreResult<u64>;
    fn add_log_tail(&self, tail: &LogTail, max_per_tenant: u64) -> StoreResult<Option<u64>>;
    fn refresh_log_tail(&self, id: &str, now_unix: u64, expires_unix: u64) -> StoreResult<bool>;
    fn delete_log_tail(&self, id: &str, now_unix: u64) -> StoreResult<Option<u64>>;
    fn sweep_logs(&self, now_unix: u64, lines_before_ms: u64) -> StoreResult<LogSweep>;
    fn active_log_tails(&self, now_unix: u64) -> StoreResult<u64>;
    fn append_log_lines(
        &self,
        node: &str,
        lines: &[NewLogLine],
        now_unix: u64,
        max_per_tenant: u64,
    ) -> StoreResult<u64>;
    fn log_lines(
        &self,
        tenant: &TenantId,
        app: &AppName,
        after_seq: u64,
        since_ms: u64,
        limit: usize,
    ) -> StoreResult<LogPage>;
    fn log_start(
        &self,
        tenant: &TenantId,
        app: &AppName,
        since_ms: Option<u64>,
    ) -> StoreResult<LogStart>;
    fn log_tailed_apps(&self, now_unix: u64) -> StoreResult<Vec<edge_common::sync::TailedApp>>;
    fn last_log_seq(&self) -> StoreResult<u64>;
    fn app_secrets(&self, tenant: &TenantId, app: &AppName) -> StoreResult<AppSecrets>;
    fn secrets_by_bundle(&self, sha256: &str) -> StoreResult<Option<AppSecrets>>;
    fn write_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        write: &SecretWrite,
    ) -> StoreResult<(Option<SecretRecord>, u64)>;
    fn all_secrets(&self) -> StoreResult<Vec<SecretRecord>>;
    fn reseal_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
    fn kv_create_store(&self, tenant: &TenantId, name: &str, id: &str, now_unix: u64) -> StoreResult<KvStoreRecord>;
    fn kv_stores(&self, tenant: &TenantId) -> StoreResult<Vec<KvStoreRecord>>;
    fn kv_store(&self, tenant: &TenantId, name: &str) -> StoreResult<KvStoreRecord>;
    fn kv_drop_store(&self, tenant: &TenantId, name: &str, now_unix: u64) -> StoreResult<u64>;
    fn kv_link(&self, tenant: &TenantId, app: &AppName, store: &str) -> StoreResult<Option<u64>>;
    fn kv_unlink(&self, tenant: &TenantId, app: &AppName, store: &str) -> StoreResult<Option<u64>>;
    fn kv_app_links(&self, tenant: &TenantId, app: &AppName) -> StoreResult<Vec<edge_common::kv::KvLink>>;
    fn kv_get(&self, tenant: &TenantId, store: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    fn kv_keys(
        &self,
        tenant: &TenantId,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;
    fn kv_write(&self, write: &KvWrite) -> StoreResult<KvWriteOutcome>;
    fn kv_changes(&self, since: u64, limit: usize) -> StoreResult<KvChanges>;
    fn kv_head(&self) -> StoreResult<KvHead>;
    fn kv_snapshot_page(
        &self,
        at: u64,
        after: Option<&edge_common::kv::KvCursor>,
        limit: usize,
    ) -> StoreResult<KvPage>;
    fn kv_prune(&self, before_unix: u64) -> StoreResult<KvPruneOutcome>;
    fn set_app_compression(
        &self,
        tenant: &TenantId,
        name: &AppName,
        compression: &edge_common::sync::AppCompression,
    ) -> StoreResult<u64>;
    fn dump(&self) -> StoreResult<StoreDump>;
    fn restore(&self, dump: StoreDump) -> StoreResult<()>;
});

instrument!("blob", InstrumentedBlobs: BlobStore {
    fn put(&self, bytes: Bytes) -> StoreResult<String>;
    fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>>;
    fn touch(&self, sha256: &str) -> StoreResult<bool>;
    fn list(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<BlobInfo>>;
    fn delete_if_unmodified_since(&self, sha256: &str, unix: u64) -> StoreResult<bool>;
});
