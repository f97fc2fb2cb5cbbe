//! Live logs: nodes post batches of lines (`POST /v1/logs`), followers
//! stream them (`GET /v1/apps/{app}/logs`).
//!
//! Fleet-wide through the store, so it works with several replicas: a
//! follower registers a tail (`log_tails`), which bumps the revision, so
//! every node learns from its next snapshot that the app is tailed and
//! starts shipping its lines, to whichever replica it talks to. Lines are
//! kept in `log_lines` (only for tailed apps, at most [`KEEP_LINES`] old
//! and [`LINES_PER_TENANT`] per tenant); the replica holding a follower's
//! stream reads the app's new lines by `seq` every [`POLL_EVERY`] and
//! refreshes the tail every [`REFRESH_EVERY`]. When the follower goes
//! away, its tail is deleted; a replica that dies leaves its tails to
//! expire, and [`spawn_sweeper`] deletes them. Only the first tail of an
//! app and its last going bump the revision.
//!
//! Bounds: a follower that falls behind the tenant's bound is told how
//! many lines it lost (a `dropped` notice, `lagging`); each replica rates
//! a tenant's posted lines ([`super::log_rates::TENANT_LINES_PER_SEC`], excess counted into
//! a `fleet-rate` notice) and its follower starts ([`TAILS_PER_MINUTE`],
//! 429 `tail-rate-limited`); an answer without `follow` stops at
//! [`ANSWER_BYTES`] with a `truncated` notice.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_common::api::{
    BatchAccepted, CONTROL_PLANE_NODE, DropReason, DroppedLines, LogBatch, LogEvent,
    MAX_BATCH_BYTES, MAX_BATCH_LINES, StatusFilter,
};
use edge_common::names::{AppName, TenantId};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Frame;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::http::{ApiResult, Query, internal, json_response, read_body_within};
use super::log_rates::TAILS_PER_MINUTE;
use super::state::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{LogLineRecord, LogPage, LogStart, LogTail, NewLogLine, StoreError, now_unix};

/// Followers one tenant may have at once, fleet-wide (each costs every
/// replica holding one a store read every [`POLL_EVERY`]).
pub const TAILS_PER_TENANT: u64 = 10;
/// A node's clock may be this far from the control plane's; a line's time
/// is moved into it.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// A tail not refreshed for this long is dead (its replica died).
pub const TAIL_TTL: Duration = Duration::from_secs(60);
/// How often the replica holding a follower refreshes its tail: three
/// refreshes fit in [`TAIL_TTL`], so one slow store call does not lose it.
const REFRESH_EVERY: Duration = Duration::from_secs(20);
/// How often a follower's replica reads new lines: well within the
/// "about a second" a line may take from guest to follower.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Sent when nothing else was for this long, so that a client that went
/// away is noticed (the write fails) and its tail deleted.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// A follower whose stream has had no room for this long has stopped
/// reading: its stream ends (and its tail goes).
const STALLED_FOR: Duration = Duration::from_secs(60);
/// Lines kept, at most this old: `--since` reaches back this far.
pub const KEEP_LINES: Duration = Duration::from_secs(600);
/// Lines kept per tenant, at most (the newest).
pub const LINES_PER_TENANT: u64 = 20_000;
/// Lines read from the store per poll, and per page of an answer without
/// `follow`.
const READ_LINES: usize = 1000;
/// An answer without `follow` holds at most this (20,000 lines of up to
/// 4 KiB would be 80 MB): past it, a final notice counts the rest.
const ANSWER_BYTES: usize = 4 << 20;
/// How often the sweeper deletes expired tails and old lines.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Objects queued toward one follower; beyond it lines wait in the
/// follower's task (a page at most), never more.
const STREAM_QUEUE: usize = 256;
/// Longest node name a filter takes.
const MAX_NODE_NAME: usize = 128;

/// `POST /v1/logs`: a node's batch. The node is the token's subject.
pub async fn post_batch(
    state: &ApiState,
    principal: &Principal,
    req: Request<Incoming>,
) -> ApiResult {
    let body = read_body_within(req, MAX_BATCH_BYTES, "batch-too-large", "log batches").await?;
    let batch: LogBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid-json", format!("invalid log batch: {e}")))?;
    if batch.lines.len() > MAX_BATCH_LINES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch-too-large",
            format!("a log batch holds at most {MAX_BATCH_LINES} lines"),
        ));
    }
    let total = batch.lines.len() as u64;
    let now = now_ms();
    // A node's clock is its own: a line is kept and shown by time, so it
    // may be at most this far from the control plane's.
    let (earliest, latest) = (
        now.saturating_sub(CLOCK_SKEW.as_millis() as u64),
        now + CLOCK_SKEW.as_millis() as u64,
    );
    state
        .log_rates
        .read_tailed(state.store.as_ref(), now_unix())
        .await;
    let mut shipped = batch.lines;
    let over_rate = state.log_rates.rate(&mut shipped);
    let mut lines = Vec::with_capacity(shipped.len() + over_rate.len());
    for shipped in shipped {
        let mut event = shipped.event;
        let app = match &event {
            LogEvent::Log(l) => l.app.clone(),
            LogEvent::Access(a) => a.app.clone(),
            LogEvent::Dropped(d) => d.app.clone(),
            // Nothing to keep: a keep-alive is the stream's own.
            LogEvent::Keepalive { .. } => continue,
        };
        event.bound();
        event.set_node(&principal.subject);
        event.clamp_time(earliest, latest);
        lines.push(new_line(shipped.tenant, app, &event)?);
    }
    // What the rate took, said in the stream rather than lost silently.
    for ((tenant, app), count) in &over_rate {
        let mut notice = LogEvent::Dropped(DroppedLines {
            node: String::new(),
            app: app.clone(),
            count: *count,
            time_ms: now,
            reason: Some(DropReason::FleetRate),
        });
        notice.set_node(&principal.subject);
        lines.push(new_line(tenant.clone(), app.clone(), &notice)?);
    }
    let notices = over_rate.len() as u64;
    let stored = if lines.is_empty() {
        0
    } else {
        state
            .store
            .append_log_lines(&principal.subject, &lines, now_unix(), LINES_PER_TENANT)
            .await?
    };
    // Notices of the rate are stored, but they are none of the node's
    // lines.
    let accepted = stored.saturating_sub(notices).min(total);
    let dropped = total - accepted;
    state.metrics.log_lines_received.inc_by(accepted);
    state.metrics.log_lines_dropped.inc_by(dropped);
    Ok(json_response(
        StatusCode::OK,
        &BatchAccepted { accepted, dropped },
    ))
}

fn new_line(tenant: TenantId, app: AppName, event: &LogEvent) -> Result<NewLogLine, ApiError> {
    Ok(NewLogLine {
        tenant,
        app,
        at_unix_ms: event.time_ms(),
        kind: event.kind().to_string(),
        json: serde_json::to_string(event).map_err(internal)?,
    })
}

/// What a follower asked for.
struct Filters {
    follow: bool,
    status: Option<StatusFilter>,
    node: Option<String>,
    since: Option<Duration>,
}

impl Filters {
    fn parse(query: &Query) -> Result<Self, ApiError> {
        let follow = match query.get("follow") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") | Some("") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid-follow",
                    "`follow` is true or false",
                ));
            }
        };
        let status = query
            .get("status")
            .map(|s| StatusFilter::parse(s).map_err(|e| ApiError::bad_request("invalid-status", e)))
            .transpose()?;
        let node = match query.get("node") {
            None => None,
            Some(n)
                if !n.is_empty()
                    && n.len() <= MAX_NODE_NAME
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Some(n.to_string())
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid-node",
                    format!("`node` is a node's name: 1 to {MAX_NODE_NAME} letters, digits, `-_.`"),
                ));
            }
        };
        let since = match query.get("since") {
            None => None,
            Some(s) => {
                let since = humantime::parse_duration(s).map_err(|_| {
                    ApiError::bad_request(
                        "invalid-since",
                        "`since` is a duration such as 30s or 5m",
                    )
                })?;
                if since > KEEP_LINES {
                    return Err(ApiError::bad_request(
                        "invalid-since",
                        format!(
                            "`since` reaches back at most {}: lines are kept no longer",
                            humantime::format_duration(KEEP_LINES)
                        ),
                    ));
                }
                Some(since)
            }
        };
        Ok(Self {
            follow,
            status,
            node,
            since,
        })
    }

    /// The query, as the tail records it for operators.
    fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(node) = &self.node {
            parts.push(format!("node={node}"));
        }
        if self.status.is_some() {
            parts.push("status".to_string());
        }
        if let Some(since) = self.since {
            parts.push(format!("since={}", humantime::format_duration(since)));
        }
        (!parts.is_empty()).then(|| parts.join("&"))
    }

    /// The stored line as the follower gets it (a newline-terminated JSON
    /// object), or none if the filters leave it out.
    fn pass(&self, line: &LogLineRecord) -> Option<Bytes> {
        if let Some(node) = &self.node
            && line.node != *node
        {
            return None;
        }
        if let Some(status) = &self.status {
            // A status filter keeps access lines of that status, and drop
            // notices (something may be missing); guest lines have none.
            match line.kind.as_str() {
                "access" => {
                    let event: LogEvent = serde_json::from_str(&line.json).ok()?;
                    match event {
                        LogEvent::Access(a) if status.matches(a.status) => {}
                        _ => return None,
                    }
                }
                "dropped" => {}
                _ => return None,
            }
        }
        let mut bytes = Vec::with_capacity(line.json.len() + 1);
        bytes.extend_from_slice(line.json.as_bytes());
        bytes.push(b'\n');
        Some(Bytes::from(bytes))
    }
}

/// A follower's stream: newline-terminated JSON objects from its task.
pub struct LogBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for LogBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

pub enum LogsAnswer {
    /// Without `follow`: the kept lines (up to [`ANSWER_BYTES`]), at once.
    Buffered(Response<Full<Bytes>>),
    /// With `follow`: a stream that ends when the client goes.
    Follow(Response<LogBody>),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ndjson<B>(body: B) -> Result<Response<B>, ApiError> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .map_err(internal)
}

/// A notice the control plane makes itself, as a stream line.
fn notice(app: &AppName, count: u64, reason: DropReason) -> Option<Bytes> {
    let event = LogEvent::Dropped(DroppedLines {
        node: CONTROL_PLANE_NODE.to_string(),
        app: app.clone(),
        count,
        time_ms: now_ms(),
        reason: Some(reason),
    });
    let mut json = serde_json::to_vec(&event).ok()?;
    json.push(b'\n');
    Some(Bytes::from(json))
}

/// `GET /v1/apps/{app}/logs?follow=&status=&node=&since=`.
pub async fn tail(
    state: &Arc<ApiState>,
    tenant: &TenantId,
    name: &AppName,
    query: &Query,
) -> Result<LogsAnswer, ApiError> {
    let filters = Filters::parse(query)?;
    // 404 for an app the tenant does not have (another tenant's too).
    state.store.get_app(tenant, name).await?;
    if !filters.follow {
        return buffered(state, tenant, name, &filters).await;
    }
    if let Err(wait) = state.log_rates.start_tail(tenant) {
        let seconds = wait.as_secs().max(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tail-rate-limited",
            format!(
                "a tenant starts at most {TAILS_PER_MINUTE} log followers a minute; retry in {seconds} s"
            ),
        )
        .with_retry_after(seconds));
    }
    let since_ms = filters
        .since
        .map(|since| now_ms().saturating_sub(since.as_millis() as u64));
    let start = state.store.log_start(tenant, name, since_ms).await?;
    let now = now_unix();
    let tail = LogTail {
        id: crate::store::dump::new_epoch()?,
        tenant: tenant.clone(),
        app: name.clone(),
        filters: filters.describe(),
        expires_unix: now + TAIL_TTL.as_secs(),
        created_unix: now,
    };
    let revision = state.store.add_log_tail(&tail, TAILS_PER_TENANT).await?;
    if let Some(revision) = revision {
        state.hub.notify(revision);
    }
    tracing::info!(%tenant, app = %name, tail = %tail.id, ?revision, "log follower connected");
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(follow(Arc::downgrade(state), tail, filters, start, tx));
    Ok(LogsAnswer::Follow(ndjson(LogBody { rx })?))
}

/// Without `follow`: every kept line of the window, up to
/// [`ANSWER_BYTES`]; past it, the rest is counted (read, not held) and
/// said in a final notice.
async fn buffered(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    filters: &Filters,
) -> Result<LogsAnswer, ApiError> {
    let since = filters.since.unwrap_or(KEEP_LINES);
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    let mut body = Vec::new();
    let (mut after, mut read, mut left_out) = (0, 0u64, 0u64);
    // At most the tenant's bound of lines is kept: so many pages at most.
    while read < LINES_PER_TENANT {
        let page = state
            .store
            .log_lines(tenant, name, after, since_ms, READ_LINES)
            .await?;
        let Some(last) = page.lines.last() else { break };
        after = last.seq;
        read += page.lines.len() as u64;
        for line in &page.lines {
            if let Some(bytes) = filters.pass(line) {
                if body.len() + bytes.len() > ANSWER_BYTES {
                    left_out += 1;
                } else {
                    body.extend_from_slice(&bytes);
                }
            }
        }
    }
    if left_out > 0
        && let Some(bytes) = notice(name, left_out, DropReason::Truncated)
    {
        body.extend_from_slice(&bytes);
    }
    Ok(LogsAnswer::Buffered(ndjson(Full::new(Bytes::from(body)))?))
}

/// One follower's position and what is read but not yet sent.
struct Position {
    after: u64,
    /// The app's lines ever stored up to `after` (see
    /// [`crate::store::LogStart::lines_upto`]).
    lines_upto: u64,
    /// Read, passed the filters, waiting for room in the stream: at most
    /// a page and a notice, since nothing more is read while any wait.
    pending: VecDeque<Bytes>,
}

impl Position {
    /// Takes a page in: a prune mark above the position means lines were
    /// pruned before this follower read them (it lagged); they are
    /// counted and said in a notice.
    fn take(&mut self, app: &AppName, filters: &Filters, page: LogPage) {
        if page.pruned_seq > self.after {
            let lost = page.pruned_lines.saturating_sub(self.lines_upto);
            if lost > 0
                && let Some(bytes) = notice(app, lost, DropReason::Lagging)
            {
                self.pending.push_back(bytes);
            }
            self.after = page.pruned_seq;
            self.lines_upto = self.lines_upto.max(page.pruned_lines);
        }
        for line in &page.lines {
            if line.seq <= self.after {
                continue;
            }
            self.after = line.seq;
            self.lines_upto += 1;
            if let Some(bytes) = filters.pass(line) {
                self.pending.push_back(bytes);
            }
        }
    }

    /// Sends what waits, as far as the stream has room; never waits for
    /// the client. Err if it is gone.
    fn flush(&mut self, tx: &mpsc::Sender<Bytes>) -> Result<bool, ()> {
        let mut sent = false;
        while let Some(bytes) = self.pending.pop_front() {
            match tx.try_send(bytes) {
                Ok(()) => sent = true,
                Err(mpsc::error::TrySendError::Full(bytes)) => {
                    self.pending.push_front(bytes);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
            }
        }
        Ok(sent)
    }
}

/// Streams one follower's lines until it goes away (or stops reading for
/// [`STALLED_FOR`]), then deletes its tail. Sends never wait, so neither
/// the refresh nor the reads stop behind a client that does not read.
async fn follow(
    state: Weak<ApiState>,
    tail: LogTail,
    filters: Filters,
    start: LogStart,
    tx: mpsc::Sender<Bytes>,
) {
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.reset();
    let mut last_sent = Instant::now();
    let mut position = Position {
        after: start.after_seq,
        lines_upto: start.lines_upto,
        pending: VecDeque::new(),
    };
    loop {
        tokio::select! {
            _ = tx.closed() => break,
            _ = refresh.tick() => {
                let Some(state) = state.upgrade() else { return };
                if let Err(e) = keep_tail(&state, &tail).await {
                    tracing::warn!(tail = %tail.id, error = %e, "cannot refresh a log tail; ending the follower's stream");
                    break;
                }
            }
            _ = poll.tick() => {
                match position.flush(&tx) {
                    Ok(true) => last_sent = Instant::now(),
                    Ok(false) => {}
                    Err(()) => break,
                }
                if !position.pending.is_empty() {
                    if last_sent.elapsed() >= STALLED_FOR {
                        tracing::info!(tail = %tail.id, "log follower stopped reading; ending its stream");
                        break;
                    }
                    continue;
                }
                let Some(state) = state.upgrade() else { return };
                let page = match state
                    .store
                    .log_lines(&tail.tenant, &tail.app, position.after, 0, READ_LINES)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(tail = %tail.id, error = %e, "cannot read log lines");
                        continue;
                    }
                };
                drop(state);
                // A full page: more wait, read them at once (a follower
                // behind by a burst catches up at store speed).
                let full = page.lines.len() >= READ_LINES;
                position.take(&tail.app, &filters, page);
                match position.flush(&tx) {
                    Ok(true) => last_sent = Instant::now(),
                    Ok(false) => {}
                    Err(()) => break,
                }
                if full && position.pending.is_empty() {
                    poll.reset_immediately();
                }
                if position.pending.is_empty() && last_sent.elapsed() >= KEEPALIVE_EVERY {
                    let keepalive = LogEvent::Keepalive { time_ms: now_ms() };
                    let Ok(mut json) = serde_json::to_vec(&keepalive) else { continue };
                    json.push(b'\n');
                    match tx.try_send(Bytes::from(json)) {
                        Ok(()) => last_sent = Instant::now(),
                        Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
            }
        }
    }
    let Some(state) = state.upgrade() else { return };
    match state.store.delete_log_tail(&tail.id, now_unix()).await {
        Ok(revision) => {
            if let Some(revision) = revision {
                state.hub.notify(revision);
            }
            tracing::info!(tenant = %tail.tenant, app = %tail.app, tail = %tail.id, ?revision, "log follower gone");
        }
        // The tail expires and the sweeper deletes it.
        Err(e) => tracing::warn!(tail = %tail.id, error = %e, "cannot delete a log tail"),
    }
}

/// Refreshes the tail, or registers it again if it expired meanwhile (a
/// slow store): the follower stays counted.
async fn keep_tail(state: &ApiState, tail: &LogTail) -> Result<(), StoreError> {
    let now = now_unix();
    let expires = now + TAIL_TTL.as_secs();
    if state.store.refresh_log_tail(&tail.id, now, expires).await? {
        return Ok(());
    }
    // Gone (swept): delete whatever is left and register it again.
    if let Some(revision) = state.store.delete_log_tail(&tail.id, now).await? {
        state.hub.notify(revision);
    }
    let again = LogTail {
        expires_unix: expires,
        created_unix: now,
        ..tail.clone()
    };
    if let Some(revision) = state.store.add_log_tail(&again, TAILS_PER_TENANT).await? {
        state.hub.notify(revision);
    }
    Ok(())
}

/// Deletes expired tails and old lines every [`SWEEP_EVERY`], and counts
/// the active tails for `edge_cp_log_tails_active`; ends with the state.
pub fn spawn_sweeper(state: Weak<ApiState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            let now = now_unix();
            let before_ms = now_ms().saturating_sub(KEEP_LINES.as_millis() as u64);
            match state.store.sweep_logs(now, before_ms).await {
                Ok(sweep) => {
                    if let Some(revision) = sweep.revision {
                        state.hub.notify(revision);
                        tracing::info!(
                            tails = sweep.tails_deleted,
                            revision,
                            "expired log tails deleted"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "log sweep failed"),
            }
            if let Ok(active) = state.store.active_log_tails(now).await {
                state
                    .metrics
                    .log_tails_active
                    .set(i64::try_from(active).unwrap_or(i64::MAX));
            }
        }
    });
}
