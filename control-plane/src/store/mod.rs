//! Where the control plane keeps its state: metadata (tenants, apps,
//! versions, deployments, cache purges, node reports, TLS certificates
//! and ACME state, the revision counter) behind
//! [`MetaStore`], and content-addressed bytes (uploaded sources, compiled
//! artifacts) behind [`BlobStore`].
//!
//! Each tenant's stored bytes (the sources of its versions) are counted
//! against its quota when a version is recorded ([`TenantStorage`]); blobs
//! no version references are found with [`MetaStore::unreferenced_blobs`]
//! and deleted by `crate::gc`.
//!
//! The API layer only sees these traits. The embedded backends are SQLite
//! ([`sqlite::SqliteMetaStore`]) and a directory ([`fs::FsBlobStore`]);
//! the scale-out metadata backend is PostgreSQL
//! ([`postgres::PgMetaStore`]). Every backend (an S3-compatible store too)
//! must pass the same suite in `conformance` (behind the `conformance`
//! feature). [`location`] names a store on the command line, and
//! [`dump::StoreDump`] carries a whole metadata store from one backend to
//! another. [`ownership`] says which names a tenant may have a
//! certificate served for. Every method
//! is one transaction: a backend may not expose half a change, and every
//! change that alters what nodes serve bumps the revision in the same
//! transaction.

// Test code that panics: compiled only for tests (`conformance` feature,
// which the crate's own dev-dependency turns on).
mod cert_rows;
mod compression_rows;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dump;
pub mod fs;
pub mod instrumented;
pub mod kv_rows;
pub mod location;
mod log_rows;
mod outbound_rows;
pub mod ownership;
pub mod postgres;
mod random_id;
pub mod s3;
mod secret_rows;
pub mod sqlite;

pub use dump::{RestoreError, StoreDump};
pub use kv_rows::{
    KvChanges, KvDump, KvHead, KvPage, KvPruneOutcome, KvStoreRecord, KvWrite, KvWriteOutcome,
};
pub use ownership::OwnedHosts;
pub use secret_rows::{AppSecrets, SecretBundleRecord, SecretRecord, SecretWrite};

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::outbound::AppOutbound;
use edge_common::sync::{
    AcmeChallenge, AppCompression, AppHttps, ArtifactRef, NodeReport, Purge, PurgeTarget, Snapshot,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (in the caller's tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// A hostname is already routed to an app (of any tenant).
    #[error("hostname {0} is already taken")]
    HostTaken(String),
    /// Versions and deploys asked of an origin app (the app's name).
    #[error("app {0} is an origin app: it has no component")]
    OriginApp(String),
    /// An origin change asked of a component app (the app's name).
    #[error("app {0} runs a component: it has no origin")]
    NotOriginApp(String),
    /// A new version would take its tenant over its storage quota.
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    /// The tenant made its most purges within the window: none is free
    /// for this many seconds.
    #[error(
        "tenant {tenant} made {max} purges in the last {window_secs} s, the most allowed; retry in {retry_after_secs} s"
    )]
    PurgeRateLimited {
        tenant: String,
        max: u64,
        window_secs: u64,
        retry_after_secs: u64,
    },
    /// A restore refused: the target holds data, or the dump is invalid.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The backend failed (I/O, corruption, connection).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The disk the store writes to is full (`ENOSPC`, SQLite's
    /// `SQLITE_FULL`): nothing was written, and the same call works once
    /// an operator frees space.
    #[error("the control plane's storage is full: {0}")]
    Full(String),
    /// A remote backend could not be reached or did not answer (an object
    /// store down or refusing requests): the same call may work later.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// A stored blob does not match its digest (the blob's SHA-256): it is
    /// never returned.
    #[error("blob {0} does not match its digest")]
    Corrupt(String),
    /// A certificate refused: its app or tenant (`owner`) has `max` of
    /// what `limit` counts already.
    #[error("{owner} already has {max} {}, the most allowed; {}", limit.counted(), limit.advice())]
    CertificateLimit {
        limit: CertLimit,
        owner: String,
        max: u64,
    },
    /// An ACME result for a certificate whose lease the caller no longer
    /// holds (another claim took the work over, or the result was recorded
    /// already): nothing was written, and the result is to be dropped.
    #[error("certificate {id}: the lease on its ACME work is no longer held")]
    LeaseLost { id: u64 },
    /// A secret refused: the app has `max` already.
    #[error("app {app} already has {max} secrets, the most allowed; delete one first")]
    SecretLimit { app: String, max: u64 },
    /// A secret write built from a bundle the app no longer has (another
    /// write came first): nothing was written; build it again.
    #[error("the secrets of app {0} changed meanwhile")]
    SecretsChanged(String),
    /// A live-log tail refused: the tenant follows `max` already.
    #[error("tenant {tenant} already has {max} log followers, the most allowed; stop one first")]
    TailLimit { tenant: String, max: u64 },
    /// An app's outbound policy over its tenant's cap `cap` (`max`).
    #[error("{asked} is over the tenant's {cap} of {max}; an operator may raise it")]
    OutboundLimit {
        cap: &'static str,
        max: u32,
        asked: u32,
    },
    /// A tenant cap lowered below what some of its apps use (named).
    #[error("{cap} = {max} is below what apps {} use; lower their outbound policies first", apps.join(", "))]
    LimitInUse {
        cap: &'static str,
        max: u32,
        apps: Vec<String>,
    },
    /// A key-value operation refused (issue 16), with its stable code.
    #[error(transparent)]
    Kv(#[from] edge_common::kv::KvError),
}

impl From<random_id::RandomUnavailable> for StoreError {
    fn from(e: random_id::RandomUnavailable) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// A version refused because its tenant's stored bytes (see
/// [`TenantStorage::used_bytes`]) plus its own would exceed the quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this {adding_bytes}-byte upload would take tenant {tenant} over its storage quota of {quota_bytes} bytes ({used_bytes} bytes used); delete versions or apps, or ask an operator for a larger quota"
)]
pub struct QuotaExceeded {
    pub tenant: TenantId,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub adding_bytes: u64,
}

impl QuotaExceeded {
    /// `Err` if storing `adding_bytes` more would exceed `quota_bytes`.
    pub fn check(
        tenant: &TenantId,
        quota_bytes: u64,
        used_bytes: u64,
        adding_bytes: u64,
    ) -> Result<(), Self> {
        if used_bytes.saturating_add(adding_bytes) > quota_bytes {
            return Err(Self {
                tenant: tenant.clone(),
                quota_bytes,
                used_bytes,
                adding_bytes,
            });
        }
        Ok(())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The largest quota a store keeps (SQL integers are signed 64-bit).
pub const MAX_QUOTA_BYTES: u64 = i64::MAX as u64;

/// Purges a store keeps (and every snapshot carries): a node that fell
/// further behind than this purges its whole cache softly instead.
pub const MAX_PURGES_KEPT: u64 = 1000;

/// A purge target as the `kind` and `value` columns (every SQL backend
/// stores purges so).
pub(crate) fn purge_columns(target: &PurgeTarget) -> (&'static str, Option<&str>) {
    match target {
        PurgeTarget::Url { url } => ("url", Some(url)),
        PurgeTarget::Key { key } => ("key", Some(key)),
        PurgeTarget::All => ("all", None),
    }
}

/// The purge target the `kind` and `value` columns hold.
pub(crate) fn purge_target(kind: &str, value: Option<String>) -> StoreResult<PurgeTarget> {
    match (kind, value) {
        ("url", Some(url)) => Ok(PurgeTarget::Url { url }),
        ("key", Some(key)) => Ok(PurgeTarget::Key { key }),
        ("all", _) => Ok(PurgeTarget::All),
        (kind, _) => Err(StoreError::Backend(format!(
            "stored purge is invalid: kind {kind:?} without its value"
        ))),
    }
}

/// Refuses a purge if the tenant made `made` purges (the oldest at
/// `oldest`) within `rate`'s window: the same rule on every backend.
pub(crate) fn purge_rate_check(
    tenant: &TenantId,
    rate: PurgeRate,
    made: u64,
    oldest: Option<u64>,
) -> StoreResult<()> {
    if made < rate.max {
        return Ok(());
    }
    let free_at = oldest.unwrap_or_else(now_unix) + rate.window_secs;
    Err(StoreError::PurgeRateLimited {
        tenant: tenant.to_string(),
        max: rate.max,
        window_secs: rate.window_secs,
        retry_after_secs: free_at.saturating_sub(now_unix()).max(1),
    })
}

/// A tenant's purge budget: at most `max` in any `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeRate {
    pub max: u64,
    pub window_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub id: TenantId,
    pub created_unix: u64,
}

/// A tenant's storage: its own quota, if an operator set one, and what
/// counts against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantStorage {
    /// `None`: the control plane's default applies.
    pub quota_bytes: Option<u64>,
    /// The uploaded source size (`VersionRecord::source_size`) of every
    /// version of every app of the tenant, summed. A version counts in full
    /// even when another version (of any app or tenant) has the same bytes
    /// and the blob is stored once; compiled artifacts are not counted.
    /// Deleting a version or an app takes its versions off at once.
    pub used_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRecord {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// The deployed version; none until the first deploy (and always none
    /// for an origin app).
    pub active_version: Option<u64>,
    /// For an origin app, where every request is forwarded and how; such
    /// an app has no component (no versions, no deploys). On the wire:
    /// `edge_common::api::App`.
    pub origin: Option<AppOrigin>,
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
    /// HTTPS redirect and HSTS.
    pub https: AppHttps,
    /// Compression at the edge (`None` fields: the node's defaults).
    pub compression: AppCompression,
    pub created_unix: u64,
    /// The revision of the app's last change (deploy, config, limits,
    /// origin).
    pub updated_revision: u64,
}

/// An origin app's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOrigin {
    /// `http(s)://host[:port][/base/path]`, as the API validated it.
    pub url: String,
    /// Forward method-override headers, `X-Forwarded-Scheme` and header
    /// names with `_` to the origin (nodes drop them by default: they
    /// change the origin's answer without being part of the cache key).
    pub forward_override_headers: bool,
}

/// Where a certificate comes from (on the wire:
/// `edge_common::api::CertificateSource`; in a dump, as `as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertSource {
    Uploaded,
    Acme,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Acme => "acme",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uploaded" => Some(Self::Uploaded),
            "acme" => Some(Self::Acme),
            _ => None,
        }
    }
}

/// What nodes serve: the chain, the sealed private key and the facts read
/// from the leaf.
#[derive(Clone, PartialEq, Eq)]
pub struct CertMaterial {
    /// PEM, leaf first.
    pub chain_pem: String,
    /// The private key's PEM, sealed with the key-encryption key
    /// (`crate::seal`): the store never holds it in the clear.
    pub sealed_key: Vec<u8>,
    /// SHA-256 (hex) and size of the bundle nodes fetch
    /// (`edge_common::sync::certificate_bundle` of the chain and the key).
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// The leaf's issuer name.
    pub issuer: String,
    pub not_before_unix: u64,
    pub not_after_unix: u64,
}

impl CertMaterial {
    /// Two thirds through the lifetime: when an ACME certificate is
    /// renewed, and from when any certificate is shown as `expiring`.
    pub fn renewal_unix(&self) -> u64 {
        let lifetime = self.not_after_unix.saturating_sub(self.not_before_unix);
        self.not_before_unix + lifetime / 3 * 2
    }
}

impl std::fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMaterial")
            .field("bundle_sha256", &self.bundle_sha256)
            .field("issuer", &self.issuer)
            .field("not_before_unix", &self.not_before_unix)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

/// A tenant's TLS certificate for some of its hostnames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub id: u64,
    pub tenant: TenantId,
    pub app: AppName,
    /// The names to serve it for. A snapshot keeps only those the tenant
    /// still owns.
    pub hosts: Vec<HostPattern>,
    pub source: CertSource,
    /// None until an ACME certificate is first issued.
    pub material: Option<CertMaterial>,
    /// The last ACME failure since the last success.
    pub last_error: Option<String>,
    /// Failed ACME attempts since the last success.
    pub attempts: u32,
    /// ACME: when the control plane acts next (an order, a retry, a
    /// renewal); none for an upload. Work under a lease waits for the
    /// lease's end as well.
    pub next_attempt_unix: Option<u64>,
    /// ACME: the end of the lease a replica took on the work
    /// ([`MetaStore::claim_certificate`]); none when nobody holds one. A
    /// past time is a lease given up on (its holder died). Not carried by
    /// a dump: a restored certificate is free.
    pub lease_until_unix: Option<u64>,
    /// ACME: a renewal was forced ([`MetaStore::schedule_certificate`])
    /// and no claim has taken it yet.
    pub renew_requested: bool,
    pub created_unix: u64,
    pub updated_unix: u64,
}

impl CertRecord {
    /// What it is doing at `now` (`edgectl certs list`, metrics): without
    /// material, `failed` once an attempt failed, else `pending`; with
    /// material, `expiring` from two thirds through its lifetime (when an
    /// ACME certificate is renewed), else `issued`.
    pub fn status(&self, now_unix: u64) -> edge_common::api::CertificateStatus {
        use edge_common::api::CertificateStatus;
        match &self.material {
            None if self.last_error.is_some() => CertificateStatus::Failed,
            None => CertificateStatus::Pending,
            Some(m) if now_unix >= m.renewal_unix() => CertificateStatus::Expiring,
            Some(_) => CertificateStatus::Issued,
        }
    }
}

/// A control plane's hold on one certificate's ACME work, from
/// [`MetaStore::claim_certificate`] to the `record_certificate_*` call
/// that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertLease {
    pub id: u64,
    /// Bumped by every claim of the certificate: a result is recorded only
    /// with the token of the latest claim (a fencing token).
    pub token: u64,
    /// When other replicas may take the work over.
    pub until_unix: u64,
}

/// What one certificate more may not exceed, checked in the transaction
/// that adds it (so concurrent requests cannot overshoot together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertLimits {
    /// Certificates of one app (each is fetched, held and parsed by every
    /// node).
    pub per_app: u64,
    /// Certificates of all of a tenant's apps.
    pub per_tenant: u64,
    /// A tenant's ACME certificates not yet issued (each costs orders at
    /// the CA, whose rate limits are per account: one tenant must not use
    /// them up for all).
    pub pending_acme_per_tenant: u64,
}

impl Default for CertLimits {
    /// 20 an app, 200 a tenant, 20 pending ACME certificates a tenant.
    fn default() -> Self {
        Self {
            per_app: 20,
            per_tenant: 200,
            pending_acme_per_tenant: 20,
        }
    }
}

/// Which of [`CertLimits`] refused a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertLimit {
    PerApp,
    PerTenant,
    PendingAcmePerTenant,
}

impl CertLimit {
    fn counted(self) -> &'static str {
        match self {
            Self::PerApp | Self::PerTenant => "certificates",
            Self::PendingAcmePerTenant => "ACME certificates not issued yet",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Self::PerApp | Self::PerTenant => "delete one first",
            Self::PendingAcmePerTenant => "wait until they are issued, or delete one first",
        }
    }
}

/// How many certificates have each status (see [`CertRecord::status`]) at
/// some time: what the metrics show, counted by the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CertificateCounts {
    pub pending: u64,
    pub issued: u64,
    pub failed: u64,
    pub expiring: u64,
}

impl CertificateCounts {
    pub fn get(&self, status: edge_common::api::CertificateStatus) -> u64 {
        use edge_common::api::CertificateStatus;
        match status {
            CertificateStatus::Pending => self.pending,
            CertificateStatus::Issued => self.issued,
            CertificateStatus::Failed => self.failed,
            CertificateStatus::Expiring => self.expiring,
        }
    }

    /// The counts of `records` at `now_unix`, by [`CertRecord::status`]
    /// itself (what the store's count must equal).
    pub fn of<'a>(records: impl IntoIterator<Item = &'a CertRecord>, now_unix: u64) -> Self {
        use edge_common::api::CertificateStatus;
        let mut counts = Self::default();
        for record in records {
            let count = match record.status(now_unix) {
                CertificateStatus::Pending => &mut counts.pending,
                CertificateStatus::Issued => &mut counts.issued,
                CertificateStatus::Failed => &mut counts.failed,
                CertificateStatus::Expiring => &mut counts.expiring,
            };
            *count += 1;
        }
        counts
    }
}

/// Certificates [`MetaStore::due_certificates`] returns at most per call.
pub const MAX_DUE_LISTED: usize = 100;

/// A certificate to add: an upload (with material) or an ACME request
/// (without, and a first attempt due at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    pub hosts: Vec<HostPattern>,
    pub source: CertSource,
    pub material: Option<CertMaterial>,
    pub next_attempt_unix: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub version: u64,
    pub source_sha256: String,
    pub source_size: u64,
    pub artifact: ArtifactRef,
    pub created_unix: u64,
}

/// What an upload adds: the source's digest and its compiled artifact.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub source_sha256: String,
    pub source_size: u64,
    pub artifact: ArtifactRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    pub version: u64,
    pub revision: u64,
    pub created_unix: u64,
}

/// The latest report of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    /// The last revision it applied (ACK).
    pub applied_revision: Option<u64>,
    /// Apps of that revision it could not serve.
    pub app_errors: Vec<edge_common::sync::AppError>,
    /// The last revision it rejected (NACK), and why.
    pub rejected_revision: Option<u64>,
    pub last_error: Option<String>,
    pub engine: String,
    pub last_seen_unix: u64,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// The current revision (0 before any change).
    async fn revision(&self) -> StoreResult<u64>;
    /// A random name given to the store when it was created: a restored
    /// or recreated store has a new one (nodes then take its state as is).
    async fn epoch(&self) -> StoreResult<String>;

    async fn create_tenant(&self, id: &TenantId) -> StoreResult<TenantRecord>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn tenant_exists(&self, id: &TenantId) -> StoreResult<bool>;
    /// The tenant's quota and usage; `NotFound` if there is no such tenant.
    async fn tenant_storage(&self, id: &TenantId) -> StoreResult<TenantStorage>;
    /// Sets the tenant's own quota (`None`: back to the default) and
    /// returns its storage; `NotFound` if there is no such tenant.
    async fn set_tenant_quota(
        &self,
        id: &TenantId,
        quota_bytes: Option<u64>,
    ) -> StoreResult<TenantStorage>;

    /// Creates an app with its hostnames: a component app (served once a
    /// version is deployed) or, with `origin`, an origin app (served at
    /// once). Fails with `Exists` if the tenant has an app of that name,
    /// `HostTaken` if any hostname is routed to any app of any tenant,
    /// `NotFound` if the tenant does not exist. The caller has validated
    /// `origin`'s URL.
    async fn create_app(
        &self,
        tenant: &TenantId,
        name: &AppName,
        hosts: &[HostPattern],
        limits: &AppLimits,
        origin: Option<&AppOrigin>,
    ) -> StoreResult<AppRecord>;
    async fn list_apps(&self, tenant: &TenantId) -> StoreResult<Vec<AppRecord>>;
    async fn get_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord>;
    /// Deletes the app, its hostnames, versions and deployments; returns
    /// the new revision.
    async fn delete_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<u64>;

    /// Changes an origin app's URL and, if `forward_override_headers` is
    /// `Some`, that option (`None` keeps it as it is), in one transaction;
    /// returns the app's origin as now stored and the new revision.
    /// `NotOriginApp` for a component app. The caller has validated `url`.
    async fn set_origin(
        &self,
        tenant: &TenantId,
        name: &AppName,
        url: &str,
        forward_override_headers: Option<bool>,
    ) -> StoreResult<(AppOrigin, u64)>;

    /// Records an uploaded version (numbered 1, 2, ... per app). Not
    /// deployed, so the revision does not change. `OriginApp` for an
    /// origin app. `QuotaExceeded` if the tenant's used bytes plus this
    /// version's `source_size` would exceed its quota (its own, else
    /// `default_quota_bytes`): checked in the insert's transaction, so
    /// concurrent uploads cannot overshoot it together.
    async fn add_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: &NewVersion,
        default_quota_bytes: u64,
    ) -> StoreResult<VersionRecord>;
    async fn list_versions(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<VersionRecord>>;
    /// Deletes an uploaded version that is not the active one. `NotFound` if
    /// there is no such version, `Exists` if it is active.
    async fn delete_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<()>;
    /// Makes `version` the active one and records the deployment; returns
    /// the new revision. `NotFound` if the version does not exist,
    /// `OriginApp` for an origin app.
    async fn activate_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<u64>;
    /// Deployments of the app, oldest first.
    async fn deployments(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<DeploymentRecord>>;
    /// Sets (`Some`) or removes (`None`) config values; returns the new
    /// revision.
    async fn update_config(
        &self,
        tenant: &TenantId,
        name: &AppName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> StoreResult<u64>;
    async fn set_limits(
        &self,
        tenant: &TenantId,
        name: &AppName,
        limits: &AppLimits,
    ) -> StoreResult<u64>;

    /// Records a cache purge of one app and bumps the revision, in one
    /// transaction; returns the purge and the new revision. Purge ids
    /// start at 1 and increase by one, never reused (not even once old
    /// purges are dropped); only the newest [`MAX_PURGES_KEPT`] are kept.
    /// `NotFound` if the tenant has no such app.
    async fn add_purge(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
    ) -> StoreResult<(Purge, u64)>;

    /// [`MetaStore::add_purge`], refused (`PurgeRateLimited`) if the tenant
    /// already made `rate.max` purges in the last `rate.window_secs`,
    /// counted in the same transaction: the limit holds however many
    /// control planes share the store.
    async fn add_purge_within(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: PurgeRate,
    ) -> StoreResult<(Purge, u64)>;

    /// The revision, every app with an active version, every origin app
    /// and the kept purges (oldest first), every certificate with material
    /// (by id; its hosts cut to those its tenant owns, see [`OwnedHosts`],
    /// and left out if none is) and the pending ACME challenges (by
    /// certificate and token), read in one transaction.
    async fn snapshot(&self) -> StoreResult<Snapshot>;

    /// The artifact compiled from `source_sha256` for engine `engine`.
    async fn find_artifact(
        &self,
        source_sha256: &str,
        engine: &str,
    ) -> StoreResult<Option<ArtifactRef>>;
    async fn record_artifact(&self, source_sha256: &str, artifact: &ArtifactRef)
    -> StoreResult<()>;
    /// Whether `sha256` names a compiled artifact (nodes may fetch only those).
    async fn is_artifact(&self, sha256: &str) -> StoreResult<bool>;
    /// Of `candidates` (blob digests), those no version references as its
    /// source or its artifact, in one transaction that also forgets every
    /// compiled-artifact record (see [`MetaStore::record_artifact`]) whose
    /// source or artifact is among them: the caller is about to delete
    /// those blobs (a source uploaded again is then compiled again).
    async fn unreferenced_blobs(&self, candidates: &[String]) -> StoreResult<Vec<String>>;

    async fn record_node_report(
        &self,
        node: &str,
        report: &NodeReport,
        now_unix: u64,
    ) -> StoreResult<()>;
    /// Notes that `node` polled for changes (creates its record if new).
    async fn touch_node(&self, node: &str, now_unix: u64) -> StoreResult<()>;
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    /// An app's HTTPS options (a 308 from plain HTTP, an HSTS value);
    /// bumps the revision. `NotFound` if the tenant has no such app.
    async fn set_app_https(
        &self,
        tenant: &TenantId,
        name: &AppName,
        https: &AppHttps,
    ) -> StoreResult<u64>;

    // ---- TLS certificates (see `CertRecord`). Every change to what nodes
    // serve (a certificate with material added, replaced or deleted; the
    // ACME challenges) bumps the revision in its transaction. Deleting an
    // app deletes its certificates and their challenges.

    /// Adds a certificate to an app (`NotFound` if the tenant has no such
    /// app); ids start at 1 and are never reused. `CertificateLimit` if the
    /// app or its tenant has as many as `limits` allow (a pending ACME one
    /// counts against `pending_acme_per_tenant` too), counted in the
    /// insert's transaction so concurrent adds cannot overshoot together.
    /// Bumps the revision if it has material. Returns the record and the
    /// revision after it.
    async fn add_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        new: NewCertificate,
        limits: &CertLimits,
    ) -> StoreResult<(CertRecord, u64)>;
    /// One app's certificates, by id.
    async fn list_certificates(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<CertRecord>>;
    /// Every certificate of every tenant, by id (key-encryption-key
    /// rotation, dumps): the whole table, chains and sealed keys included.
    async fn all_certificates(&self) -> StoreResult<Vec<CertRecord>>;
    /// One certificate by id, whoever owns it; `NotFound` if none.
    async fn get_certificate(&self, id: u64) -> StoreResult<CertRecord>;
    /// The certificate whose bundle (chain and key) has this SHA-256, by an
    /// index: the lowest id if several do (a chain and key uploaded twice
    /// make one bundle); none if none.
    async fn certificate_by_bundle(&self, sha256: &str) -> StoreResult<Option<CertRecord>>;
    /// Deletes one certificate of the app (and its challenges); returns the
    /// revision after it, bumped if nodes served it or answered its
    /// challenges (else unchanged). `NotFound` unless `id` is a certificate
    /// of that app. A lease on it is lost with it (recording a result then
    /// is `NotFound`).
    async fn delete_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
    ) -> StoreResult<u64>;
    /// Up to `limit` (at most [`MAX_DUE_LISTED`]) ACME certificates that a
    /// claim at `now_unix` would take: due (`next_attempt_unix` at or
    /// before it) and under no lease (none, or one ended by then); the
    /// longest due first, then by id. Read by an index on the due time.
    async fn due_certificates(&self, now_unix: u64, limit: usize) -> StoreResult<Vec<CertRecord>>;
    /// When the next ACME certificate becomes claimable (due, and its lease
    /// ended), as seen at `now_unix`: the earliest such time, which is at
    /// or before `now_unix` if work is waiting; none if no ACME work is
    /// scheduled. The worker sleeps until then.
    async fn next_certificate_due(&self, now_unix: u64) -> StoreResult<Option<u64>>;
    /// Every certificate counted by [`CertRecord::status`] at `now_unix`
    /// (equal to [`CertificateCounts::of`] over
    /// [`MetaStore::all_certificates`]), without reading the rows out.
    async fn certificate_counts(&self, now_unix: u64) -> StoreResult<CertificateCounts>;
    /// Takes the ACME work of a certificate for one control plane until
    /// `lease_until`: only an ACME certificate that is due at `now_unix`
    /// and under no lease then (see [`MetaStore::due_certificates`]), so
    /// that of several replicas one wins. Clears its renewal request (this
    /// claim acts on it). `None` if not claimable (or no such id). A
    /// replica that dies mid-order leaves the lease to end, and the work is
    /// taken again then. No revision.
    async fn claim_certificate(
        &self,
        id: u64,
        now_unix: u64,
        lease_until: u64,
    ) -> StoreResult<Option<CertLease>>;
    /// Ends `lease` with the material of an issued or renewed certificate:
    /// clears its last error, its attempts, its challenges and the lease,
    /// sets its next attempt (the renewal time; the time of a renewal
    /// forced during the lease if that is earlier), bumps the revision and
    /// returns it. `LeaseLost` (nothing written) unless `lease` is the
    /// certificate's latest claim and not ended yet; a lease past its
    /// `until_unix` that no other claim took over still counts (the work
    /// was done once, and nobody else ordered). `NotFound` if the
    /// certificate is gone.
    async fn record_certificate_issued(
        &self,
        lease: &CertLease,
        material: CertMaterial,
        next_attempt_unix: Option<u64>,
    ) -> StoreResult<u64>;
    /// Ends `lease` with a failed ACME attempt: `last_error`, one more
    /// attempt, the next one at `next_attempt_unix` (or the time of a
    /// renewal forced during the lease if earlier), its challenges cleared.
    /// Returns the revision after it, bumped only if it had challenges. The
    /// material, if any, is kept and still served. `LeaseLost` and
    /// `NotFound` as for [`MetaStore::record_certificate_issued`].
    async fn record_certificate_failure(
        &self,
        lease: &CertLease,
        error: &str,
        next_attempt_unix: u64,
    ) -> StoreResult<u64>;
    /// Forces a renewal of an app's ACME certificate: due at `at` and
    /// marked as requested, so a lease held meanwhile is left alone and its
    /// holder's result does not cancel the request (the next claim after
    /// the lease takes it). An uploaded certificate is returned unchanged
    /// (it has nothing to renew). `NotFound` unless `id` is a certificate
    /// of that app. No revision.
    async fn schedule_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
        at: u64,
    ) -> StoreResult<CertRecord>;
    /// Replaces the certificate's pending HTTP-01 challenges (empty: none);
    /// bumps the revision; returns it. `NotFound` if there is no such
    /// certificate. A snapshot carries a challenge only while the
    /// certificate's tenant owns its host ([`OwnedHosts`]).
    async fn set_acme_challenges(&self, id: u64, challenges: &[AcmeChallenge]) -> StoreResult<u64>;
    /// Replaces the sealed key of a certificate if it still is `old`
    /// (compare-and-swap); true if replaced. The key inside is the same, so
    /// the revision is not bumped (key-encryption-key rotation).
    async fn reseal_certificate_key(&self, id: u64, old: &[u8], new: &[u8]) -> StoreResult<bool>;

    /// The ACME account for a directory URL: its sealed credentials.
    async fn acme_account(&self, directory: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores the account for `directory` unless one is there already;
    /// returns the stored one (so two replicas end up using one account).
    /// With `replace`, overwrites (key-encryption-key rotation).
    async fn put_acme_account(
        &self,
        directory: &str,
        sealed: &[u8],
        replace: bool,
    ) -> StoreResult<Vec<u8>>;
    /// Every ACME account: (directory, sealed credentials).
    async fn acme_accounts(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;

    // ---- Outbound through the API (issue 15): an app's outbound policy
    // and its tenant's caps on it. A policy change bumps the revision (the
    // snapshot carries it) and is checked against the caps in its
    // transaction; caps are never lowered below what an app uses.

    /// The app's policy (the default if it set none). `NotFound` if the
    /// tenant has no such app, `OriginApp` for an origin app (no guest).
    async fn app_outbound(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppOutbound>;
    /// Sets the app's policy (the default removes it) and bumps the
    /// revision. `OutboundLimit` over the tenant's caps, `NotFound`,
    /// `OriginApp` as [`MetaStore::app_outbound`].
    async fn set_app_outbound(
        &self,
        tenant: &TenantId,
        name: &AppName,
        policy: &AppOutbound,
    ) -> StoreResult<u64>;
    /// The tenant's own caps (`None`: the default). `NotFound` if there is
    /// no such tenant.
    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<SetTenantLimits>;
    /// Sets the tenant's caps and bumps the revision (a lower
    /// `max_subrequests` settles its apps' defaults anew). `LimitInUse`
    /// naming the apps if any of them uses more; `NotFound` if there is no
    /// such tenant.
    async fn set_tenant_limits(
        &self,
        tenant: &TenantId,
        limits: &SetTenantLimits,
    ) -> StoreResult<u64>;

    // ---- Live logs (`edgectl logs`; rows and statements in `log_rows`).
    // A tail says someone follows an app until `expires_unix`; the snapshot
    // lists the apps with an unexpired tail, so the revision is bumped when
    // that set changes: the app's first tail registered, its last one
    // deleted or swept (a second follower, or a refresh, bumps nothing).
    // Lines are kept only for tailed apps, bounded per tenant (each app's
    // prune mark says how far and how many), and read by `seq`, which
    // increases in commit order.

    /// Registers a tail of the app (`NotFound` if the tenant has no such
    /// app). `TailLimit` if the tenant has `max_per_tenant` unexpired tails
    /// already, counted in the insert's transaction. Returns the revision
    /// it bumped to if the app was not tailed (unexpired at
    /// `tail.created_unix`) before.
    async fn add_log_tail(&self, tail: &LogTail, max_per_tenant: u64) -> StoreResult<Option<u64>>;
    /// Moves an unexpired tail's expiry to `expires_unix`; false if it is
    /// gone or expired at `now_unix` (its holder registers it again). No
    /// revision.
    async fn refresh_log_tail(
        &self,
        id: &str,
        now_unix: u64,
        expires_unix: u64,
    ) -> StoreResult<bool>;
    /// Deletes a tail; the revision it bumped to if it was its app's last
    /// one unexpired at `now_unix`.
    async fn delete_log_tail(&self, id: &str, now_unix: u64) -> StoreResult<Option<u64>>;
    /// Deletes the tails expired at `now_unix` (their replica died) or whose
    /// app is gone, bumping the revision if an app of theirs has no
    /// unexpired tail left; the lines older than `lines_before_ms`; the
    /// prune marks of deleted apps.
    async fn sweep_logs(&self, now_unix: u64, lines_before_ms: u64) -> StoreResult<LogSweep>;
    /// Tails unexpired at `now_unix`, all tenants.
    async fn active_log_tails(&self, now_unix: u64) -> StoreResult<u64>;
    /// Appends lines from `node`, keeping only those of apps with a tail
    /// unexpired at `now_unix`; then keeps at most `max_per_tenant` lines of
    /// each tenant written to (the newest). Returns how many were kept.
    async fn append_log_lines(
        &self,
        node: &str,
        lines: &[NewLogLine],
        now_unix: u64,
        max_per_tenant: u64,
    ) -> StoreResult<u64>;
    /// Up to `limit` lines of one app with `seq` above `after_seq` and
    /// `at_unix_ms` at or after `since_ms`, by `seq`, and the app's prune
    /// mark, read together.
    async fn log_lines(
        &self,
        tenant: &TenantId,
        app: &AppName,
        after_seq: u64,
        since_ms: u64,
        limit: usize,
    ) -> StoreResult<LogPage>;
    /// Where a follower of the app starts: after the last line stored
    /// (`since_ms` none) or before the app's first kept line at or after
    /// `since_ms`; never below the app's prune mark.
    async fn log_start(
        &self,
        tenant: &TenantId,
        app: &AppName,
        since_ms: Option<u64>,
    ) -> StoreResult<LogStart>;
    /// The apps with a tail unexpired at `now_unix`, as a snapshot lists
    /// them.
    async fn log_tailed_apps(
        &self,
        now_unix: u64,
    ) -> StoreResult<Vec<edge_common::sync::TailedApp>>;
    /// The highest `seq` given so far (0: none): a follower without
    /// `since` starts after it.
    async fn last_log_seq(&self) -> StoreResult<u64>;

    // ---- App secrets (see `secret_rows`). Values are sealed by the
    // caller and never seen here in the clear; each app with secrets has
    // one bundle record (salt, digest, size) that the caller builds and
    // the snapshot names. Setting or deleting a secret bumps the revision
    // (and the app's `updated_revision`) in its transaction, like a config
    // change. Deleting an app deletes its secrets and bundle.

    /// The app's secrets (by name) and bundle, read together. `NotFound`
    /// if the tenant has no such app.
    async fn app_secrets(&self, tenant: &TenantId, app: &AppName) -> StoreResult<AppSecrets>;
    /// The app whose bundle has this digest, with its secrets, by an
    /// index; none if none.
    async fn secrets_by_bundle(&self, sha256: &str) -> StoreResult<Option<AppSecrets>>;
    /// Sets or deletes one secret and replaces the app's bundle, in one
    /// transaction; returns the secret as stored (none for a delete) and
    /// the new revision. `NotFound` if the tenant has no such app (or, for
    /// a delete, no such secret), `OriginApp` for an origin app,
    /// `SecretsChanged` if the app's bundle is not `expected_bundle`,
    /// `SecretLimit` if a new name would take the app past `max_per_app`
    /// (counted in the transaction).
    async fn write_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        write: &SecretWrite,
    ) -> StoreResult<(Option<SecretRecord>, u64)>;
    /// Every secret of every app (key-encryption-key rotation and check).
    async fn all_secrets(&self) -> StoreResult<Vec<SecretRecord>>;
    /// Replaces a secret's sealed value if it still is `old`
    /// (compare-and-swap); true if replaced. The value inside is the same,
    /// so neither the bundle nor the revision changes (key-encryption-key
    /// rotation).
    async fn reseal_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;

    // ---- Key-value stores (issue 16; rows, statements and the write
    // planner in `kv_rows`). A store belongs to a tenant (names unique per
    // tenant, ids random); an app opens only the stores linked to it. A
    // link or unlink changes the snapshot, so it bumps the revision; a
    // data write never does. Every committed change (a key set or deleted,
    // a store dropped) takes a seq from `kv_seq` in its transaction, so
    // seq order is commit order. Deleted keys stay as tombstones and
    // dropped stores as drops until `kv_prune`, which records the highest
    // seq it deleted (`KvHead::pruned`). Refusals are `StoreError::Kv`.

    /// Creates a store (`id` chosen by the caller, see
    /// `kv_rows::new_store_id`). `kv-store-name-invalid`,
    /// `kv-store-exists`, `kv-store-limit` (the tenant's `kv_max_stores`,
    /// counted in the transaction); `NotFound` without the tenant.
    async fn kv_create_store(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
        now_unix: u64,
    ) -> StoreResult<KvStoreRecord>;
    /// The tenant's stores, by name.
    async fn kv_stores(&self, tenant: &TenantId) -> StoreResult<Vec<KvStoreRecord>>;
    /// One store of the tenant (`kv-store-not-found`).
    async fn kv_store(&self, tenant: &TenantId, name: &str) -> StoreResult<KvStoreRecord>;
    /// Drops a store and its entries; returns the drop's seq.
    /// `kv-store-linked` (naming the apps) while an app links it.
    async fn kv_drop_store(&self, tenant: &TenantId, name: &str, now_unix: u64)
    -> StoreResult<u64>;
    /// Links a store to an app; the revision it bumped to, none if it was
    /// linked already. `NotFound` without the app, `kv-store-not-found`.
    async fn kv_link(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>>;
    /// Unlinks; the revision it bumped to, none if it was not linked.
    async fn kv_unlink(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>>;
    /// The stores an app links, as the snapshot lists them (by name).
    /// `NotFound` without the app.
    async fn kv_app_links(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<edge_common::kv::KvLink>>;
    /// A key's value (none: absent). `kv-store-not-found`.
    async fn kv_get(
        &self,
        tenant: &TenantId,
        store: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Up to `limit` live keys starting with `prefix` and sorting after
    /// `after`, in byte order. `kv-store-not-found`.
    async fn kv_keys(
        &self,
        tenant: &TenantId,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;
    /// Runs a write's ops in one transaction, all or none, within the
    /// tenant's limits (read in the transaction); an app's write needs its
    /// link (`kv-not-linked`). Takes one seq per changed key.
    async fn kv_write(&self, write: &KvWrite) -> StoreResult<KvWriteOutcome>;
    /// The changes after `since`, by seq, at most `limit` of them and
    /// bounded by `MAX_BATCH_VALUE_BYTES`. The caller compares `since`
    /// with [`MetaStore::kv_head`]'s prune mark first.
    async fn kv_changes(&self, since: u64, limit: usize) -> StoreResult<KvChanges>;
    /// The last seq handed out and the prune mark.
    async fn kv_head(&self) -> StoreResult<KvHead>;
    /// A page of the live entries with seq <= `at` after `after`, in
    /// (store, key) order, at most `limit` and bounded by
    /// `MAX_BATCH_VALUE_BYTES`.
    async fn kv_snapshot_page(
        &self,
        at: u64,
        after: Option<&edge_common::kv::KvCursor>,
        limit: usize,
    ) -> StoreResult<KvPage>;
    /// Deletes tombstones and drops older than `before_unix`, moving the
    /// prune mark to the highest seq deleted.
    async fn kv_prune(&self, before_unix: u64) -> StoreResult<KvPruneOutcome>;

    // ---- Compression at the edge (issue 17; the statement and column
    // conversions in `compression_rows`): two columns of `apps`, like the
    // HTTPS options, carried to nodes in the app's snapshot entry.

    /// Replaces an app's compression settings; bumps the revision.
    /// `NotFound` if the tenant has no such app.
    async fn set_app_compression(
        &self,
        tenant: &TenantId,
        name: &AppName,
        compression: &AppCompression,
    ) -> StoreResult<u64>;

    /// Every table's rows, the revision, the purge counter and the epoch,
    /// read in one transaction.
    async fn dump(&self) -> StoreResult<StoreDump>;
    /// Writes `dump` into this store, epoch and revision included, in one
    /// transaction. Only into an empty store (nothing stored, revision 0):
    /// else `Restore(NotEmpty)`; a dump [`StoreDump::check`] refuses is
    /// `Restore(Invalid)`. Either way nothing is written.
    async fn restore(&self, dump: StoreDump) -> StoreResult<()>;
}

/// Someone following an app's live log, registered by the replica that
/// holds the follower's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// A random token chosen by the replica: never reused.
    pub id: String,
    pub tenant: TenantId,
    pub app: AppName,
    /// The follower's filters, as asked (for operators).
    pub filters: Option<String>,
    pub expires_unix: u64,
    pub created_unix: u64,
}

/// A line a node shipped, as stored (`json`: an
/// `edge_common::api::LogEvent` with its node set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    pub tenant: TenantId,
    pub app: AppName,
    pub at_unix_ms: u64,
    pub kind: String,
    pub json: String,
}

/// A stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLineRecord {
    pub seq: u64,
    pub tenant: TenantId,
    pub app: AppName,
    pub node: String,
    pub at_unix_ms: u64,
    pub kind: String,
    pub json: String,
}

/// A page of an app's lines, and how far its lines were pruned: a reader
/// whose position is below `pruned_seq` lost the lines between (how many:
/// `pruned_lines` less the app's lines up to its position, see
/// [`LogStart::lines_upto`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLineRecord>,
    /// The highest seq of the app's pruned lines (0: none).
    pub pruned_seq: u64,
    /// The app's lines pruned so far.
    pub pruned_lines: u64,
}

/// Where a follower starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStart {
    pub after_seq: u64,
    /// The app's lines ever stored with a seq up to `after_seq`, kept or
    /// pruned: the follower adds one per line it reads, and compares with
    /// a page's `pruned_lines` to count what pruning took from it.
    pub lines_upto: u64,
}

/// What [`MetaStore::sweep_logs`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSweep {
    pub tails_deleted: u64,
    pub lines_deleted: u64,
    /// The revision after it, if tails were deleted (bumped).
    pub revision: Option<u64>,
}

/// A stored blob, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub sha256: String,
    pub size: u64,
    /// When it was last put or touched (unix seconds).
    pub modified_unix: u64,
}

/// Blobs listed per call at most: a garbage-collection pass holds one
/// page (and checks its references in one transaction) at a time.
pub const MAX_BLOBS_LISTED: usize = 1000;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under their SHA-256 and returns it. Durable before it
    /// returns: a crash afterwards never loses or truncates the blob, and a
    /// crash during never leaves a partial blob under the digest. Storing
    /// bytes already there makes the blob's `modified_unix` now, as
    /// [`BlobStore::touch`] does.
    async fn put(&self, bytes: Bytes) -> StoreResult<String>;
    /// The blob, if present.
    async fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>>;
    /// Makes the blob's `modified_unix` now, so garbage collection leaves
    /// it alone for its grace period; whether the blob is there.
    async fn touch(&self, sha256: &str) -> StoreResult<bool>;
    /// Up to `limit` (at most [`MAX_BLOBS_LISTED`]) blobs whose digest
    /// sorts after `after`, in digest order: a caller pages through every
    /// blob by passing the last digest it got.
    async fn list(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<BlobInfo>>;
    /// Deletes the blob unless it was put or touched after `unix` (its
    /// `modified_unix` is greater), checked as close to the deletion as
    /// the backend allows; whether it was deleted. An absent blob or a
    /// malformed name is `false`.
    async fn delete_if_unmodified_since(&self, sha256: &str, unix: u64) -> StoreResult<bool>;
}

/// The hostnames of every app of `tenant`, for ownership checks: an
/// upload's and an ACME request's at the API, and an order's again when the
/// ACME worker starts it.
pub async fn tenant_hosts(store: &dyn MetaStore, tenant: &TenantId) -> StoreResult<OwnedHosts> {
    Ok(store
        .list_apps(tenant)
        .await?
        .into_iter()
        .flat_map(|app| app.hosts)
        .collect())
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
