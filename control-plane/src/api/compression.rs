//! An app's compression at the edge (`GET/PUT /v1/apps/{app}/compression`):
//! its own switch and threshold over the nodes' `[compression]` defaults,
//! carried to nodes in the app's snapshot entry like its HTTPS options.

use edge_common::api::CompressionSet;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::AppCompression;
use http::StatusCode;
use hyper::Request;
use hyper::body::Incoming;

use super::http::{ApiResult, json_response, read_json};
use super::state::ApiState;
use crate::error::ApiError;

/// `GET /v1/apps/{app}/compression`.
pub async fn get(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    let record = state.store.get_app(tenant, app).await?;
    Ok(json_response(
        StatusCode::OK,
        &CompressionSet {
            compression: record.compression,
            revision: record.updated_revision,
        },
    ))
}

/// `PUT /v1/apps/{app}/compression`: replaces the app's settings (a field
/// left out goes back to the nodes' default). A body that is not an
/// `AppCompression` is 400 `invalid-json`; a `min_bytes` past 1 GiB is 400
/// `invalid-compression`.
pub async fn set(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    let compression: AppCompression = read_json(req).await?;
    compression
        .validate()
        .map_err(|e| ApiError::bad_request("invalid-compression", e))?;
    let revision = state
        .store
        .set_app_compression(tenant, app, &compression)
        .await?;
    state.hub.notify(revision);
    Ok(json_response(
        StatusCode::OK,
        &CompressionSet {
            compression,
            revision,
        },
    ))
}
