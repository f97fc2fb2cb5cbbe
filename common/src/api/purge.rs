//! The answer to a purge; its body is [`crate::sync::PurgeBody`].

use serde::{Deserialize, Serialize};

/// `POST /v1/apps/{app}/purge` (202): the purge's id, and the revision
/// once a node has applied which the purge is done there. Fields sorted
/// (see the module's wire note).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecorded {
    pub id: u64,
    pub revision: u64,
}
