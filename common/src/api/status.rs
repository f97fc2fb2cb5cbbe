//! `GET /v1/apps/{app}/status`: an app's rollout across the nodes heard
//! from recently. Fields sorted (see the module's wire note).

use serde::{Deserialize, Serialize};

use crate::names::{AppName, HostPattern, TenantId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub active_version: Option<u64>,
    pub app: AppName,
    pub hosts: Vec<HostPattern>,
    pub nodes: Vec<NodeRollout>,
    /// An origin app's URL; `null` for a component app.
    pub origin: Option<String>,
    /// The app's last change: what [`NodeRollout::state`] is measured
    /// against.
    pub revision: u64,
    pub tenant: TenantId,
}

/// One node's progress towards the app's last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRollout {
    pub applied_revision: Option<u64>,
    /// Why the node cannot serve the app (this app's own failure only:
    /// other apps' belong to other tenants), or why it refused the
    /// revision.
    pub error: Option<String>,
    pub last_seen_unix: u64,
    pub node: String,
    /// A newer snapshot the node refused whole, whatever the app's own
    /// revision: a wait for a later change than the app's (a purge) fails
    /// on it.
    pub refused: Option<Refused>,
    pub state: RolloutState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// The node serves the app's last change.
    Applied,
    /// The node cannot serve it (see `error`).
    Rejected,
    /// Not there yet.
    Pending,
}

impl RolloutState {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Applied => "applied",
            RolloutState::Rejected => "rejected",
            RolloutState::Pending => "pending",
        }
    }
}

/// A revision a node refused, and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub error: Option<String>,
    pub revision: u64,
}
