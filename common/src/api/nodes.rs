//! What the control plane knows of nodes (`GET /v1/nodes`), and its answer
//! to their reports.

use serde::{Deserialize, Serialize};

use crate::sync::AppError;

/// A node's latest report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node: String,
    /// The last revision it applied (ACK).
    pub applied_revision: Option<u64>,
    /// Apps of that revision it could not serve.
    pub app_errors: Vec<AppError>,
    /// The last revision it rejected (NACK), and why.
    pub rejected_revision: Option<u64>,
    pub last_error: Option<String>,
    pub engine: String,
    pub last_seen_unix: u64,
}

/// `GET /v1/nodes` (admin). Each node's keys sorted (see the module's wire
/// note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    #[serde(serialize_with = "super::sorted_keys")]
    pub nodes: Vec<Node>,
}

/// The answer to `POST /v1/sync/report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecorded {
    pub recorded: bool,
}
