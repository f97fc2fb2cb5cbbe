//! `POST /v1/apps/{app}/purge`: validated, counted against the tenant's
//! rate, recorded (bumping the revision), and fanned out with the next
//! snapshot.

use edge_common::api::PurgeRecorded;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::PurgeRequest;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::http::{ApiResult, json_response, read_json};
use super::state::ApiState;
use crate::error::ApiError;
use crate::store::PurgeRate;

pub async fn purge(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    // Read as a value first: `PurgeRequest` refuses what is not an object
    // (serde would read a struct from an array) and says what is wrong
    // with the rest, all as `invalid-purge`.
    let body: serde_json::Value = read_json(req).await?;
    let request = PurgeRequest::from_json(body)
        .map_err(|e| ApiError::bad_request("invalid-purge", e.to_string()))?;
    let (purge, revision) = state
        .store
        .add_purge_within(
            tenant,
            name,
            &request.target,
            request.soft,
            // Counted in the store, so the budget holds across replicas.
            PurgeRate {
                max: state.settings.purges_per_minute as u64,
                window_secs: 60,
            },
        )
        .await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %name, id = purge.id, revision, target = ?purge.target, soft = purge.soft, "purge recorded");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &PurgeRecorded {
            id: purge.id,
            revision,
        },
    ))
}
