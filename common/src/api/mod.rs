//! The control plane's HTTP API as types: every JSON body the server
//! reads or writes, shared by the server (`edge-cp`), its CLI (`edgectl`)
//! and their tests, so a field renamed on one side fails to compile on
//! the other. Plain data: nothing here imports a stage.
//!
//! Paths and who may call them are in `control-plane/README.md`. Bodies
//! that also travel between the control plane and nodes (the signed
//! snapshot, node reports, the purge body a node's admin listener takes
//! too) live in [`crate::sync`] and are re-exported here.
//!
//! Wire compatibility: the server built some bodies with `json!`, whose
//! maps sort their keys, all the way down. Those bodies keep their bytes:
//! a flat one declares its fields in alphabetical order, and a list of
//! records is written through [`sorted_keys`]. `tests.rs` pins them.

mod apps;
mod certs;
mod error;
mod logs;
mod nodes;
mod outbound;
mod purge;
mod secrets;
mod status;
mod tenants;
mod versions;

#[cfg(test)]
mod tests;

pub use apps::{
    App, AppConfig, AppList, CompressionSet, ConfigChanges, NewApp, OriginSet, SetOrigin,
};
pub use certs::{
    Certificate, CertificateCreated, CertificateList, CertificateSource, CertificateStatus,
    HttpsSet, IssueCertificate, UploadCertificate,
};
pub use error::{ErrorBody, ErrorDetail};
pub use logs::{
    AccessLine, BatchAccepted, CONTROL_PLANE_NODE, DropReason, DroppedLines, GuestLine,
    GuestStream, LogBatch, LogEvent, MAX_BATCH_BYTES, MAX_BATCH_LINES, MAX_LINE_BYTES, ShippedLine,
    StatusFilter,
};
pub use nodes::{Node, NodeList, ReportRecorded};
pub use outbound::{
    AppOutbound, DEFAULT_MAX_OUTBOUND_DESTINATIONS, DEFAULT_MAX_SUBREQUESTS, Destination,
    OutboundPolicy, SetOutbound, SetTenantLimits, TenantLimits,
};
pub use purge::PurgeRecorded;
pub use secrets::{Secret, SecretList, SecretSet, SetSecret};
pub use status::{AppStatus, NodeRollout, Refused, RolloutState};
pub use tenants::{NewTenant, Role, SetTenantQuota, Tenant, TenantList, TenantQuota, Whoami};
pub use versions::{Activated, Deploy, Rollback, Uploaded, Version, VersionDeleted, VersionList};

pub use crate::limits::AppLimits;
pub use crate::sync::{AppCompression, AppHttps, NodeReport, PurgeBody, SignedSnapshot, SyncKey};

use serde::{Deserialize, Serialize, Serializer};

/// Serialises `value` with every object's keys sorted, at every depth, as
/// a `serde_json::Value` (a sorted map) does: the bytes of a body the
/// server used to build with `json!`.
fn sorted_keys<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

/// The answer to a change that only bumps the revision (deleting an app,
/// config values, limits): the revision that carries it to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u64,
}
