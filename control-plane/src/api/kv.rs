//! Key-value stores (issue 16): the tenant API (stores, links to apps,
//! entries), the node endpoints (`POST /v1/kv/write`, the change stream
//! `GET /v1/kv/sync`) and the pruning of old tombstones. The store keeps
//! the data and every decision (`store::kv_rows`); these handlers read the
//! requests, sign what nodes apply, wake the long polls and count.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_common::kv::{
    KvBatch, KvCursor, KvError, KvErrorCode, KvKeyList, KvLimits, KvLinkList, KvStoreList,
    KvWriteRequest, KvWriteResult, MAX_KEYS_PER_PAGE, MAX_WRITE_BODY_BYTES, NewKvStore, now_ms,
};
use edge_common::names::{AppName, TenantId};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::http::{ApiResult, Query, internal, json_response, read_body_within, read_json};
use super::state::ApiState;
use crate::error::ApiError;
use crate::metrics::GaugeGuard;
use crate::store::kv_rows::{self, MAX_CHANGES_PER_BATCH, MAX_ENTRIES_PER_PAGE};
use crate::store::{KvWrite, KvWriteOutcome, StoreError, now_unix};
use crate::sync::SyncHub;

/// A node's nonce: random, short.
const MAX_NONCE_BYTES: usize = 128;
/// The change stream's default wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(25);

fn invalid(message: impl Into<String>) -> ApiError {
    KvError::new(KvErrorCode::Invalid, message).into()
}

/// A query value, percent-decoded (keys and prefixes may hold anything
/// but control characters; the store checks them).
fn decoded(query: &Query, name: &str) -> Result<Option<String>, ApiError> {
    query
        .get(name)
        .map(|raw| {
            percent_decode_str(&raw.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| invalid(format!("`{name}` must be percent-encoded UTF-8")))
        })
        .transpose()
}

fn number(query: &Query, name: &str) -> Result<Option<u64>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| invalid(format!("`{name}` must be a number")))
        })
        .transpose()
}

/// The write's metric result: "ok" or the refusal's code.
fn write_result(outcome: &Result<KvWriteOutcome, StoreError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(StoreError::Kv(e)) => e.code.as_str(),
        Err(_) => "error",
    }
}

/// Runs a write, counts it, and wakes the change stream's long polls.
async fn run_write(state: &ApiState, write: &KvWrite) -> Result<KvWriteOutcome, StoreError> {
    let started = Instant::now();
    let outcome = state.store.kv_write(write).await;
    state
        .metrics
        .kv_write(write_result(&outcome), started.elapsed());
    if let Ok(done) = &outcome
        && let Some(last) = done.changes.last()
    {
        state.hub.notify_kv(last.seq);
        state
            .metrics
            .kv_seq
            .set(i64::try_from(state.hub.kv_seq()).unwrap_or(i64::MAX));
    }
    outcome
}

fn no_content() -> ApiResult {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .map_err(internal)
}

// ---------------------------------------------------------------------------
// Tenants

/// `GET /v1/kv`.
pub async fn list(state: &ApiState, tenant: &TenantId) -> ApiResult {
    let stores = state.store.kv_stores(tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        &KvStoreList {
            stores: stores.iter().map(|s| s.api()).collect(),
        },
    ))
}

/// `POST /v1/kv` `{"name": ...}` → 201 with the store.
pub async fn create(state: &ApiState, tenant: &TenantId, req: Request<Incoming>) -> ApiResult {
    let body: NewKvStore = read_json(req).await?;
    let id = kv_rows::new_store_id()?;
    let store = state
        .store
        .kv_create_store(tenant, &body.name, &id, now_unix())
        .await?;
    tracing::info!(%tenant, store = %store.name, id = %store.id, "key-value store created");
    Ok(json_response(StatusCode::CREATED, &store.api()))
}

/// `DELETE /v1/kv/{store}`: 409 `kv-store-linked` while an app links it.
pub async fn drop_store(state: &ApiState, tenant: &TenantId, name: &str) -> ApiResult {
    let seq = state.store.kv_drop_store(tenant, name, now_unix()).await?;
    state.hub.notify_kv(seq);
    tracing::info!(%tenant, store = name, seq, "key-value store dropped");
    no_content()
}

/// `GET /v1/apps/{app}/kv`.
pub async fn links(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    let links = state.store.kv_app_links(tenant, app).await?;
    Ok(json_response(
        StatusCode::OK,
        &KvLinkList {
            stores: links.into_iter().map(|l| l.name).collect(),
        },
    ))
}

/// `PUT /v1/apps/{app}/kv/{store}` (`link`) and `DELETE` (unlink); both
/// idempotent, answering the app's links.
pub async fn link(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    store: &str,
    on: bool,
) -> ApiResult {
    let revision = if on {
        state.store.kv_link(tenant, app, store).await?
    } else {
        state.store.kv_unlink(tenant, app, store).await?
    };
    if let Some(revision) = revision {
        state.hub.notify(revision);
        tracing::info!(%tenant, %app, store, linked = on, revision, "key-value link changed");
    }
    links(state, tenant, app).await
}

/// `GET /v1/kv/{store}/keys?prefix=&cursor=&limit=`.
pub async fn keys(state: &ApiState, tenant: &TenantId, store: &str, query: &Query) -> ApiResult {
    let prefix = decoded(query, "prefix")?.unwrap_or_default();
    let cursor = decoded(query, "cursor")?;
    let limit = match number(query, "limit")? {
        None => MAX_KEYS_PER_PAGE,
        Some(n) if (1..=MAX_KEYS_PER_PAGE as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(invalid(format!(
                "`limit` must be between 1 and {MAX_KEYS_PER_PAGE}"
            )));
        }
    };
    let keys = state
        .store
        .kv_keys(tenant, store, &prefix, cursor.as_deref(), limit)
        .await?;
    let cursor = (keys.len() == limit)
        .then(|| keys.last().cloned())
        .flatten();
    Ok(json_response(StatusCode::OK, &KvKeyList { keys, cursor }))
}

/// `GET|PUT|DELETE /v1/kv/{store}/entry?key=K`: the raw value.
pub async fn entry(
    state: &ApiState,
    tenant: &TenantId,
    store: &str,
    query: &Query,
    req: Request<Incoming>,
) -> ApiResult {
    let key = decoded(query, "key")?.ok_or_else(|| {
        ApiError::from(KvError::new(
            KvErrorCode::KeyInvalid,
            "the key goes in the `key` query value",
        ))
    })?;
    let limits = state.store.tenant_limits(tenant).await?.kv();
    let method = req.method().clone();
    // The tenant's key limit binds the keys it makes; a key written before
    // an admin lowered it stays readable and deletable.
    let key_limits = if method == Method::PUT {
        &limits
    } else {
        &KvLimits::CEILING
    };
    edge_common::kv::check_key(&key, key_limits)?;
    match method {
        Method::GET => match state.store.kv_get(tenant, store, &key).await? {
            Some(value) => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(Bytes::from(value)))
                .map_err(internal),
            None => Err(KvError::new(KvErrorCode::KeyNotFound, "no such key").into()),
        },
        Method::PUT | Method::DELETE => {
            let op = if method == Method::PUT {
                // Refused once past the tenant's limit, never buffered
                // further.
                let value = read_body_within(
                    req,
                    limits.max_value_bytes as usize,
                    KvErrorCode::ValueTooLarge.as_str(),
                    "values",
                )
                .await?;
                edge_common::kv::KvOp::Set {
                    key,
                    value: edge_common::kv::KvValue(value.to_vec()),
                }
            } else {
                edge_common::kv::KvOp::Delete { key }
            };
            let write = KvWrite {
                tenant: tenant.clone(),
                app: None,
                store: store.to_string(),
                ops: vec![op],
                now_unix: now_unix(),
            };
            run_write(state, &write).await?;
            no_content()
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "an entry takes GET, PUT and DELETE",
        )),
    }
}

// ---------------------------------------------------------------------------
// Nodes

/// `POST /v1/kv/write` (node token): a guest's write, committed all or
/// none, answered signed with the node's nonce and the changes.
pub async fn write(state: &ApiState, req: Request<Incoming>) -> ApiResult {
    let body = read_body_within(
        req,
        MAX_WRITE_BODY_BYTES,
        KvErrorCode::ValueTooLarge.as_str(),
        "key-value writes",
    )
    .await?;
    let request: KvWriteRequest =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid write body: {e}")))?;
    if request.nonce.is_empty() || request.nonce.len() > MAX_NONCE_BYTES {
        return Err(invalid(format!("a nonce has 1 to {MAX_NONCE_BYTES} bytes")));
    }
    // Checked before any lookup, so a bad name is refused without echoing
    // it whole.
    if edge_common::kv::check_store_name(&request.store).is_err() {
        let shown: String = request.store.chars().take(64).collect();
        return Err(KvError::new(
            KvErrorCode::StoreNameInvalid,
            format!("invalid key-value store name {shown:?}"),
        )
        .into());
    }
    // Read before the write: once it commits, the answer must not fail.
    let epoch = state.store.epoch().await?;
    let write = KvWrite {
        tenant: request.tenant,
        app: Some(request.app),
        store: request.store,
        ops: request.ops,
        now_unix: now_unix(),
    };
    let outcome = run_write(state, &write).await?;
    let result = KvWriteResult {
        nonce: request.nonce,
        epoch,
        results: outcome.results,
        changes: outcome.changes,
    };
    let signed = state.hub.sign(&result).map_err(internal)?;
    Ok(json_response(StatusCode::OK, &signed))
}

/// `GET /v1/kv/sync` (node token): the change stream, or a snapshot page.
pub async fn sync(state: &ApiState, query: &Query) -> ApiResult {
    let epoch = state.store.epoch().await?;
    let resync = |why: String| -> ApiError { KvError::new(KvErrorCode::Resync, why).into() };
    if let Some(asked) = query.get("epoch")
        && asked != epoch
    {
        return Err(resync(format!(
            "the control plane's epoch is {epoch}, not {asked}: take a snapshot"
        )));
    }
    let batch = match number(query, "snapshot")? {
        Some(at) => snapshot_page(state, query, epoch, at).await?,
        None => {
            // A position means something only within the epoch it was
            // taken in: without one, a node restored elsewhere could
            // apply changes on top of another history.
            if query.get("epoch").is_none() {
                return Err(invalid("`since` goes with the `epoch` it was taken in"));
            }
            changes(state, query, epoch).await?
        }
    };
    let signed = state.hub.sign(&batch).map_err(internal)?;
    Ok(json_response(StatusCode::OK, &signed))
}

async fn snapshot_page(
    state: &ApiState,
    query: &Query,
    epoch: String,
    at: u64,
) -> Result<KvBatch, ApiError> {
    let head = state.store.kv_head().await?;
    let at = if at == 0 { head.seq } else { at };
    // Pages of a snapshot whose continuation (changes since `at`) is
    // already pruned would all be wasted: the node starts over now.
    if at < head.pruned {
        return Err(outside(at, head));
    }
    if at > head.seq {
        return Err(invalid(format!(
            "`snapshot` {at} is past the last seq ({})",
            head.seq
        )));
    }
    let after = match (decoded(query, "after_store")?, decoded(query, "after_key")?) {
        (Some(store), Some(key)) => Some(KvCursor { store, key }),
        (None, None) => None,
        _ => {
            return Err(invalid("`after_store` and `after_key` go together"));
        }
    };
    let page = state
        .store
        .kv_snapshot_page(at, after.as_ref(), MAX_ENTRIES_PER_PAGE)
        .await?;
    Ok(KvBatch::Snapshot {
        epoch,
        at,
        after,
        entries: page.entries,
        next: page.next,
        now_ms: now_ms(),
    })
}

async fn changes(state: &ApiState, query: &Query, epoch: String) -> Result<KvBatch, ApiError> {
    let since = number(query, "since")?.unwrap_or(0);
    let wait = match query.get("wait") {
        None => DEFAULT_WAIT,
        Some(s) => humantime::parse_duration(s)
            .map_err(|_| invalid("`wait` must be a duration such as 25s"))?,
    }
    .min(state.settings.max_sync_wait);
    // Subscribed before the first read: a commit between the read and the
    // wait is then seen by the wait.
    let mut rx = state.hub.kv_subscribe();
    let head = state.store.kv_head().await?;
    if since > head.seq {
        return Err(outside(since, head));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut last_read = false;
    let run = loop {
        // Marked seen before the read: a commit after this point (during
        // the read or after it) moves the watch past `seen` and ends the
        // wait below at once.
        let seen = *rx.borrow_and_update();
        let run = state.store.kv_changes(since, MAX_CHANGES_PER_BATCH).await?;
        // Read after the changes: a prune that committed before or during
        // that read (deleting a tombstone the node has not seen) shows
        // here, and the node resyncs instead of missing the delete.
        let head = state.store.kv_head().await?;
        if since < head.pruned {
            return Err(outside(since, head));
        }
        if !run.changes.is_empty() || last_read {
            break run;
        }
        if tokio::time::Instant::now() >= deadline {
            break run;
        }
        let _waiting = GaugeGuard::new(&state.metrics.kv_sync_waiters);
        let woken = SyncHub::wait_kv(&mut rx, seen, deadline).await;
        // Seqs heard from other replicas count too.
        state
            .metrics
            .kv_seq
            .set(i64::try_from(state.hub.kv_seq()).unwrap_or(i64::MAX));
        // Timed out: one more read, so a commit whose announcement was
        // lost or late is still answered now rather than a poll later.
        last_read = !woken;
    };
    Ok(KvBatch::Changes {
        epoch,
        since,
        head: run.head,
        changes: run.changes,
        now_ms: now_ms(),
    })
}

/// `410 kv-resync`: the node's position is not in what is kept.
fn outside(since: u64, head: crate::store::KvHead) -> ApiError {
    KvError::new(
        KvErrorCode::Resync,
        format!(
            "position {since} is outside what the control plane keeps ({}..={}): take a snapshot",
            head.pruned, head.seq
        ),
    )
    .into()
}

// ---------------------------------------------------------------------------
// Pruning

/// Prunes tombstones and drops older than the retention, every
/// `kv_prune_every`, for as long as the API state lives.
pub fn spawn_pruner(state: Weak<ApiState>) {
    tokio::spawn(async move {
        let every = match state.upgrade() {
            Some(state) => state.settings.kv_prune_every,
            None => return,
        };
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            prune_once(&state).await;
        }
    });
}

async fn prune_once(state: &Arc<ApiState>) {
    let retention = state.settings.kv_tombstone_retention.as_secs();
    let before = now_unix().saturating_sub(retention);
    // One bounded batch per transaction (the writers wait on it), again
    // while batches come back full.
    loop {
        match state.store.kv_prune(before).await {
            Ok(done) => {
                if done.tombstones + done.drops > 0 {
                    tracing::info!(
                        tombstones = done.tombstones,
                        drops = done.drops,
                        pruned = done.pruned,
                        "key-value tombstones pruned"
                    );
                }
                let full = kv_rows::PRUNE_BATCH as u64;
                if done.tombstones < full && done.drops < full {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "key-value prune failed");
                return;
            }
        }
    }
}
