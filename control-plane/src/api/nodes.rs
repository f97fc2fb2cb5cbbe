//! What nodes call: the sync long poll, its key, their reports and
//! artifact downloads; and the operator's view of the fleet.

use std::time::Duration;

use bytes::Bytes;
use edge_common::api::{Node, NodeList, ReportRecorded};
use edge_common::signing::{is_sha256_hex, sha256_hex};
use edge_common::sync::{ApplyOutcome, NodeReport};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::http::{ApiResult, Query, internal, json_response, read_json};
use super::state::ApiState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::store::{NodeRecord, now_unix};

/// A node's error report is cut to this.
const MAX_REPORT_ERROR_BYTES: usize = 4096;
/// App errors kept per node report.
const MAX_REPORTED_APP_ERRORS: usize = 1000;
/// A node's engine hash is cut to this (a SHA-256 in hex is 64).
const MAX_ENGINE_BYTES: usize = 64;

impl From<NodeRecord> for Node {
    fn from(record: NodeRecord) -> Self {
        Self {
            node: record.node,
            applied_revision: record.applied_revision,
            app_errors: record.app_errors,
            rejected_revision: record.rejected_revision,
            last_error: record.last_error,
            engine: record.engine,
            last_seen_unix: record.last_seen_unix,
        }
    }
}

/// `GET /v1/nodes`.
pub async fn list(state: &ApiState) -> ApiResult {
    let nodes = state.store.nodes().await?;
    Ok(json_response(
        StatusCode::OK,
        &NodeList {
            nodes: nodes.into_iter().map(Node::from).collect(),
        },
    ))
}

/// `GET /v1/sync/key`.
pub fn key(state: &ApiState) -> ApiResult {
    Ok(json_response(StatusCode::OK, &state.hub.key()))
}

/// `GET /v1/sync?since=&wait=&epoch=`: the signed snapshot once the
/// revision differs from `since` (or `epoch` is not this store's), else
/// 204 after `wait`.
pub async fn sync(state: &ApiState, principal: &Principal, query: &Query) -> ApiResult {
    let since = match query.get("since") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid-query", "`since` must be a revision number")
        })?,
    };
    let wait = match query.get("wait") {
        None => Duration::from_secs(30),
        Some(s) => humantime::parse_duration(s).map_err(|_| {
            ApiError::bad_request("invalid-query", "`wait` must be a duration such as 30s")
        })?,
    }
    .min(state.settings.max_sync_wait);
    if principal.role == Role::Node {
        state
            .store
            .touch_node(&principal.subject, now_unix())
            .await?;
    }
    let current = state.store.revision().await?;
    // The hub learns of changes made by this process at once; a poll also
    // re-reads the store so a revision written by another replica is seen.
    state.hub.notify(current);
    // A node that knows another epoch (the store was restored or
    // recreated), or a revision this store never reached, gets the current
    // state at once.
    let other_epoch = match query.get("epoch") {
        Some(epoch) if !epoch.is_empty() => epoch != state.store.epoch().await?,
        _ => false,
    };
    let answer_now = other_epoch || since != current;
    if !answer_now && !wait_newer(state, since, wait).await {
        return Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .map_err(internal);
    }
    let (_, body) = state.hub.signed_snapshot().await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(internal)
}

/// Waits for a revision newer than `since`, counted in
/// `edge_cp_sync_waiters` while it waits (the guard also counts down when
/// the client goes away and the wait is dropped).
async fn wait_newer(state: &ApiState, since: u64, wait: Duration) -> bool {
    let _waiting = crate::metrics::GaugeGuard::new(&state.metrics.sync_waiters);
    state.hub.wait_newer(since, wait).await
}

/// `POST /v1/sync/report`: a node's ACK or NACK, cut to size and kept.
pub async fn report(state: &ApiState, principal: &Principal, req: Request<Incoming>) -> ApiResult {
    let mut report: NodeReport = read_json(req).await?;
    if let Some(error) = report.error.as_mut() {
        truncate_chars(error, MAX_REPORT_ERROR_BYTES);
    }
    truncate_chars(&mut report.engine, MAX_ENGINE_BYTES);
    report.app_errors.truncate(MAX_REPORTED_APP_ERRORS);
    for app_error in &mut report.app_errors {
        truncate_chars(&mut app_error.error, MAX_REPORT_ERROR_BYTES);
    }
    // A revision this store never reached (claimed by a snapshot whose
    // signature failed, say) would show as rejected forever.
    if report.revision > state.store.revision().await? {
        return Err(ApiError::bad_request(
            "invalid-report",
            format!("revision {} does not exist", report.revision),
        ));
    }
    if report.outcome == ApplyOutcome::Rejected {
        tracing::warn!(node = %principal.subject, revision = report.revision, error = ?report.error, "node rejected a revision");
    }
    state
        .store
        .record_node_report(&principal.subject, &report, now_unix())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &ReportRecorded { recorded: true },
    ))
}

/// `GET /v1/artifacts/{sha256}`: a compiled artifact, its digest checked
/// again before it is sent.
pub async fn artifact(state: &ApiState, digest: &str) -> ApiResult {
    if !is_sha256_hex(digest) {
        return Err(ApiError::bad_request(
            "invalid-digest",
            "artifacts are named by a lowercase hex SHA-256",
        ));
    }
    if !state.store.is_artifact(digest).await? {
        return Err(ApiError::not_found(format!("artifact {digest} not found")));
    }
    let bytes = state
        .blobs
        .get(digest)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact {digest} not found")))?;
    // Never hand a node bytes that are not what the snapshot names (a
    // corrupted disk or a tampered bucket); the node checks again.
    let check = bytes.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_hex(&check))
        .await
        .map_err(internal)?;
    if actual != digest {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "blob-corrupt",
            format!("stored artifact {digest} does not match its digest"),
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(bytes))
        .map_err(internal)
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
