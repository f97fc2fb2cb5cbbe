//! Uploaded versions of a component app, and which one is active.

use serde::{Deserialize, Serialize};

use crate::sync::ArtifactRef;

/// An uploaded version, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u64,
    pub source_sha256: String,
    /// Bytes of the uploaded `.wasm`: what counts against the quota.
    pub source_size: u64,
    pub artifact: ArtifactRef,
    pub created_unix: u64,
}

/// `GET /v1/apps/{app}/versions`, each version's keys sorted (see the
/// module's wire note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionList {
    #[serde(serialize_with = "super::sorted_keys")]
    pub versions: Vec<Version>,
}

/// `POST /v1/apps/{app}/versions` (201): the stored version, not yet
/// active. Fields sorted (see the module's wire note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// Its keys sorted too.
    #[serde(serialize_with = "super::sorted_keys")]
    pub artifact: ArtifactRef,
    /// Time from receiving the body to recording the version.
    pub compile_ms: u64,
    /// False: the artifact compiled earlier from the same bytes was reused.
    pub compiled: bool,
    pub source_sha256: String,
    pub version: u64,
}

/// `DELETE /v1/apps/{app}/versions/{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDeleted {
    pub deleted: u64,
}

/// `POST /v1/apps/{app}/deploy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub version: u64,
}

/// `POST /v1/apps/{app}/rollback`; an empty body is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to activate; none: the one deployed before the active
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// The answer to a deploy or a rollback. Fields sorted (see the module's
/// wire note).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub revision: u64,
    pub version: u64,
}
