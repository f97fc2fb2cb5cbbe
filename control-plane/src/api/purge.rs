//! `POST /v1/apps/{app}/purge`: validated, counted against the tenant's
//! rate, recorded (bumping the revision), and fanned out with the next
//! snapshot.

use std::time::Instant;

use edge_common::api::PurgeRecorded;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::PurgeRequest;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::http::{ApiResult, json_response, read_json};
use super::state::ApiState;
use crate::error::ApiError;

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
    if let Err(wait) = state.purges.try_acquire(tenant, Instant::now()) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "purge-rate-limited",
            format!(
                "tenant {tenant} made {} purges in the last minute, the most allowed; retry in {seconds} s",
                state.settings.purges_per_minute
            ),
        )
        .with_retry_after(seconds.max(1)));
    }
    let (purge, revision) = state
        .store
        .add_purge(tenant, name, &request.target, request.soft)
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
