//! Where the control plane keeps its state: metadata (tenants, apps,
//! versions, deployments, cache purges, node reports, the revision
//! counter) behind
//! [`MetaStore`], and content-addressed bytes (uploaded sources, compiled
//! artifacts) behind [`BlobStore`].
//!
//! The API layer only sees these traits. The embedded backends are SQLite
//! ([`sqlite::SqliteMetaStore`]) and a directory ([`fs::FsBlobStore`]);
//! any other backend (PostgreSQL, an S3-compatible store) must pass the same
//! suite in [`conformance`]. Every method is one transaction: a backend may
//! not expose half a change, and every change that alters what nodes serve
//! bumps the revision in the same transaction.

pub mod conformance;
pub mod fs;
pub mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::AppLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{ArtifactRef, NodeReport, Purge, PurgeTarget, Snapshot};
use serde::Serialize;

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
    /// The backend failed (I/O, corruption, connection).
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Purges a store keeps (and every snapshot carries): a node that fell
/// further behind than this purges its whole cache softly instead.
pub const MAX_PURGES_KEPT: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub created_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppRecord {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// The deployed version; none until the first deploy (and always none
    /// for an origin app).
    pub active_version: Option<u64>,
    /// For an origin app, the URL every request is forwarded to; such an
    /// app has no component (no versions, no deploys).
    pub origin: Option<String>,
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
    pub created_unix: u64,
    /// The revision of the app's last change (deploy, config, limits).
    pub updated_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentRecord {
    pub version: u64,
    pub revision: u64,
    pub created_unix: u64,
}

/// The latest report of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

    /// Creates an app with its hostnames: a component app (served once a
    /// version is deployed) or, with `origin`, an origin app (served at
    /// once). Fails with `Exists` if the tenant has an app of that name,
    /// `HostTaken` if any hostname is routed to any app of any tenant,
    /// `NotFound` if the tenant does not exist. The caller has validated
    /// `origin`.
    async fn create_app(
        &self,
        tenant: &TenantId,
        name: &AppName,
        hosts: &[HostPattern],
        limits: &AppLimits,
        origin: Option<&str>,
    ) -> StoreResult<AppRecord>;
    async fn list_apps(&self, tenant: &TenantId) -> StoreResult<Vec<AppRecord>>;
    async fn get_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord>;
    /// Deletes the app, its hostnames, versions and deployments; returns
    /// the new revision.
    async fn delete_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<u64>;

    /// Changes an origin app's origin; returns the new revision.
    /// `NotOriginApp` for a component app.
    async fn set_origin(&self, tenant: &TenantId, name: &AppName, origin: &str)
    -> StoreResult<u64>;

    /// Records an uploaded version (numbered 1, 2, ... per app). Not
    /// deployed, so the revision does not change. `OriginApp` for an
    /// origin app.
    async fn add_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: &NewVersion,
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

    /// The revision, every app with an active version, every origin app
    /// and the kept purges (oldest first), read in one transaction.
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

    async fn record_node_report(
        &self,
        node: &str,
        report: &NodeReport,
        now_unix: u64,
    ) -> StoreResult<()>;
    /// Notes that `node` polled for changes (creates its record if new).
    async fn touch_node(&self, node: &str, now_unix: u64) -> StoreResult<()>;
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under their SHA-256 and returns it. Durable before it
    /// returns: a crash afterwards never loses or truncates the blob, and a
    /// crash during never leaves a partial blob under the digest.
    async fn put(&self, bytes: Bytes) -> StoreResult<String>;
    /// The blob, if present.
    async fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>>;
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
