//! `GET /v1/apps/{app}/status`: the app's active version and, per node
//! heard from recently, whether it has applied the app's latest change.

use edge_common::api::{AppStatus, NodeRollout, Refused, RolloutState};
use edge_common::names::{AppName, TenantId};
use http::StatusCode;

use super::http::{ApiResult, json_response};
use super::state::ApiState;
use crate::store::{NodeRecord, now_unix};

pub async fn status(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let app = state.store.get_app(tenant, name).await?;
    let now = now_unix();
    let stale = state.settings.node_stale_after.as_secs();
    let target = app.updated_revision;
    let nodes = state
        .store
        .nodes()
        .await?
        .into_iter()
        .filter(|n| now.saturating_sub(n.last_seen_unix) <= stale)
        .map(|n| rollout(n, tenant, name, target))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &AppStatus {
            active_version: app.active_version,
            app: app.name,
            hosts: app.hosts,
            nodes,
            origin: app.origin.map(|o| o.url),
            revision: target,
            tenant: tenant.clone(),
        },
    ))
}

/// Where one node stands with the app's change at revision `target`.
fn rollout(n: NodeRecord, tenant: &TenantId, name: &AppName, target: u64) -> NodeRollout {
    let applied = n.applied_revision.unwrap_or(0);
    // Only this app's own error is shown: other apps' failures belong to
    // other tenants.
    let app_error = n
        .app_errors
        .iter()
        .find(|e| e.tenant == *tenant && e.app == *name)
        .map(|e| e.error.clone());
    let rejected = n.rejected_revision.filter(|r| *r >= target && *r > applied);
    let (state, error) = if applied >= target {
        match app_error {
            Some(error) => (RolloutState::Rejected, Some(error)),
            None => (RolloutState::Applied, None),
        }
    } else if rejected.is_some() {
        // A whole revision refused (its signature did not verify).
        (RolloutState::Rejected, n.last_error.clone())
    } else {
        (RolloutState::Pending, None)
    };
    // A newer snapshot the node refused whole, whatever the app's own
    // revision: a wait for a later change than the app's (a purge) fails
    // on it.
    let refused = n
        .rejected_revision
        .filter(|r| *r > applied)
        .map(|revision| Refused {
            error: n.last_error.clone(),
            revision,
        });
    NodeRollout {
        applied_revision: n.applied_revision,
        error,
        last_seen_unix: n.last_seen_unix,
        node: n.node,
        refused,
        state,
    }
}
