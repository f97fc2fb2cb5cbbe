//! The change stream: `GET /v1/kv/sync?since=SEQ&epoch=E&wait=25s`, long
//! polled next to the Syncer with its client, token and pinned key.
//!
//! - Every body is a [`SignedBody`] verified with the pinned key; one that
//!   does not verify is counted and never applied.
//! - `410 kv-resync` (the position is older than what the control plane
//!   keeps, or of another epoch), a batch of another epoch or one that
//!   does not continue from the replica's position: the node takes a
//!   snapshot (`?snapshot=AT&after_store=&after_key=` pages into a fresh
//!   replica), brings it up to date with the changes after `AT`, swaps it
//!   in and continues from there. A page is applied only when it names
//!   the cursor the node asked with and its entries are in order after it
//!   (a replayed or reordered page cannot complete a snapshot); a run of
//!   changes only when its seqs ascend after the position asked for.
//! - Errors back off (with jitter, up to `control_plane.max_backoff`) and
//!   move on to the next control-plane replica.
//! - `edge_kv_replica_lag_seconds` is 0 while the poll is answered (the
//!   control plane answers at once on any change), else the seconds since
//!   the replica was last known current; updated every second. A poll
//!   unanswered past its wait plus [`POLL_MARGIN`] (a dead connection)
//!   counts as not current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use edge_common::kv::{KvBatch, KvChange, KvCursor, KvEntry, SignedBody, now_ms};
use edge_common::signing::VerifyingKey;
use tokio::sync::watch;

use crate::backoff::Backoff;

use super::KvService;
use super::metrics::reason;
use super::replica::SnapshotBuilder;

/// How long the control plane may hold a poll.
pub const POLL_WAIT: Duration = Duration::from_secs(25);
/// Past its wait plus this, a poll not yet answered means the connection
/// is likely dead: the lag gauge stops saying 0.
const POLL_MARGIN: Duration = Duration::from_secs(5);
/// Bytes of one signed batch the node reads: a page's values are bounded
/// by MAX_BATCH_VALUE_BYTES (one larger value, up to the ceiling, alone),
/// base64 adds a third, and JSON escapes the payload string once more.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Pages of one snapshot: far more than any replica bound allows, so a
/// control plane that never ends one cannot hold the node forever.
const MAX_SNAPSHOT_PAGES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot reach the control plane: {0}")]
    Unreachable(String),
    #[error("the control plane answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("a batch did not verify: {0}")]
    BadSignature(String),
    #[error("a batch is not what was asked for: {0}")]
    Malformed(String),
    #[error("no control-plane key pinned yet")]
    NoKey,
    #[error(transparent)]
    Full(#[from] super::replica::ReplicaFull),
}

impl StreamError {
    fn reason(&self) -> &'static str {
        match self {
            StreamError::Unreachable(_) => reason::UNREACHABLE,
            StreamError::Status { .. } => reason::HTTP_STATUS,
            StreamError::BadSignature(_) => reason::BAD_SIGNATURE,
            StreamError::Malformed(_) => reason::MALFORMED,
            StreamError::NoKey => reason::NO_KEY,
            StreamError::Full(_) => reason::REPLICA_FULL,
        }
    }
}

/// What one request for changes found.
enum Run {
    Changes { head: u64, changes: Vec<KvChange> },
    Resync,
}

/// A run of changes is what was asked for: it continues from `asked`, and
/// its seqs ascend strictly within `(since, head]`.
fn check_changes(
    asked: u64,
    since: u64,
    head: u64,
    changes: &[KvChange],
) -> Result<(), StreamError> {
    if since != asked || head < since {
        return Err(StreamError::Malformed(format!(
            "asked for changes after {asked}, got {since}..{head}"
        )));
    }
    let mut last = since;
    for change in changes {
        if change.seq <= last || change.seq > head {
            return Err(StreamError::Malformed(format!(
                "change seq {} after {last} in a run {since}..{head}",
                change.seq
            )));
        }
        last = change.seq;
    }
    Ok(())
}

fn cursor_key(cursor: &KvCursor) -> (&str, &str) {
    (cursor.store.as_str(), cursor.key.as_str())
}

/// A snapshot page is the one asked for: it continues from `asked`, its
/// entries ascend strictly by (store, key) after it with seqs up to `at`,
/// and its `next` (if any) moves on.
fn check_page(
    asked: Option<&KvCursor>,
    after: Option<&KvCursor>,
    at: u64,
    entries: &[KvEntry],
    next: Option<&KvCursor>,
) -> Result<(), StreamError> {
    if asked != after {
        return Err(StreamError::Malformed(format!(
            "a snapshot page continuing from {after:?} where {asked:?} was asked for (a replayed or reordered page)"
        )));
    }
    let mut last = asked.map(cursor_key);
    for entry in entries {
        let here = (entry.store.as_str(), entry.key.as_str());
        if last.is_some_and(|last| here <= last) {
            return Err(StreamError::Malformed(
                "snapshot entries out of (store, key) order or not after the cursor".into(),
            ));
        }
        if entry.seq > at {
            return Err(StreamError::Malformed(format!(
                "a snapshot entry of seq {} in a snapshot at {at}",
                entry.seq
            )));
        }
        last = Some(here);
    }
    if let Some(next) = next
        && asked.is_some_and(|asked| cursor_key(next) <= cursor_key(asked))
    {
        return Err(StreamError::Malformed(
            "a snapshot page whose next cursor does not move on".into(),
        ));
    }
    Ok(())
}

pub struct KvStream {
    service: Arc<KvService>,
    max_backoff: Duration,
    /// Set by a 410, an epoch change or a gap: the next round snapshots.
    resync: bool,
    caught_up: Arc<AtomicBool>,
    last_current_ms: Arc<AtomicU64>,
    /// When the poll in flight was sent (ms), 0 when none is.
    poll_sent_ms: Arc<AtomicU64>,
}

impl KvStream {
    pub fn new(service: Arc<KvService>, max_backoff: Duration) -> Self {
        KvStream {
            service,
            max_backoff,
            resync: false,
            caught_up: Arc::new(AtomicBool::new(false)),
            last_current_ms: Arc::new(AtomicU64::new(now_ms())),
            poll_sent_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Polls until `shutdown` is set.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let lag = tokio::spawn(lag_ticker(
            self.service.clone(),
            self.caught_up.clone(),
            self.last_current_ms.clone(),
            self.poll_sent_ms.clone(),
            shutdown.clone(),
        ));
        let mut backoff = Backoff::new(Duration::from_millis(200), self.max_backoff);
        let mut wait = Duration::ZERO;
        loop {
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::shutdown::stopped(&mut shutdown) => break,
                }
            }
            let round = tokio::select! {
                result = self.round() => result,
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            };
            self.service.refresh_gauges();
            match round {
                Ok(()) => {
                    wait = Duration::ZERO;
                    backoff.reset();
                }
                Err(e) => {
                    self.caught_up.store(false, Ordering::Relaxed);
                    self.service.metrics.failure(e.reason());
                    let link = &self.service.writer.link;
                    let failed = link.url(link.current(), "").unwrap_or_default();
                    link.current.store(link.current() + 1, Ordering::Relaxed);
                    if matches!(e, StreamError::Full(_)) {
                        // Another snapshot may fit (stores were dropped).
                        self.resync = true;
                    }
                    wait = backoff.fail();
                    tracing::warn!(error = %e, control_plane = %failed, retry_in = ?wait, "key-value stream failed");
                }
            }
        }
        lag.abort();
    }

    /// One poll, or one whole snapshot.
    async fn round(&mut self) -> Result<(), StreamError> {
        let key = self
            .service
            .writer
            .link
            .key
            .get()
            .ok_or(StreamError::NoKey)?;
        let (epoch, _, full) = self.service.replica.position();
        if self.resync || epoch.is_empty() || full {
            self.resync = false;
            if !self.snapshot(&key).await? {
                self.service.metrics.failure(reason::RESYNC);
                self.resync = true;
                return Ok(());
            }
            self.current();
        }
        let (epoch, seq, _) = self.service.replica.position();
        self.poll_sent_ms.store(now_ms(), Ordering::Relaxed);
        let run = self.changes_after(&key, &epoch, seq, POLL_WAIT).await;
        self.poll_sent_ms.store(0, Ordering::Relaxed);
        match run? {
            Run::Changes { head, changes } => {
                self.service.replica.apply_batch(&epoch, head, changes)?;
                self.current();
            }
            Run::Resync => {
                self.service.metrics.failure(reason::RESYNC);
                self.resync = true;
            }
        }
        Ok(())
    }

    fn current(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
        self.last_current_ms.store(now_ms(), Ordering::Relaxed);
        self.service.metrics.lag_seconds.set(0.0);
    }

    /// The changes after `since` of `epoch`, waiting up to `wait` for one.
    async fn changes_after(
        &self,
        key: &VerifyingKey,
        epoch: &str,
        since: u64,
        wait: Duration,
    ) -> Result<Run, StreamError> {
        let query = [
            ("since", since.to_string()),
            ("epoch", epoch.to_string()),
            ("wait", format!("{}ms", wait.as_millis())),
        ];
        let Some(batch) = self
            .get(&query, wait + Duration::from_secs(15), key)
            .await?
        else {
            return Ok(Run::Resync);
        };
        match batch {
            KvBatch::Changes {
                epoch: batch_epoch,
                since: batch_since,
                head,
                changes,
                ..
            } => {
                if batch_epoch != epoch {
                    tracing::warn!(old = %epoch, new = %batch_epoch, "the control plane's key-value epoch changed; taking a snapshot");
                    return Ok(Run::Resync);
                }
                check_changes(since, batch_since, head, &changes)?;
                Ok(Run::Changes { head, changes })
            }
            KvBatch::Snapshot { .. } => Err(StreamError::Malformed(
                "a snapshot page where changes were asked for".into(),
            )),
        }
    }

    /// Takes a whole snapshot, brings it up to date with the changes after
    /// it and swaps it in. `false`: the control plane no longer has those
    /// changes (a long snapshot outlived its retention): take another.
    async fn snapshot(&mut self, key: &VerifyingKey) -> Result<bool, StreamError> {
        let mut builder: Option<SnapshotBuilder> = None;
        let mut cursor: Option<KvCursor> = None;
        for _ in 0..MAX_SNAPSHOT_PAGES {
            let at = builder.as_ref().map_or(0, |b| b.state.seq);
            let mut query = vec![("snapshot", at.to_string())];
            if let Some(cursor) = &cursor {
                query.push(("after_store", cursor.store.clone()));
                query.push(("after_key", cursor.key.clone()));
            }
            let page = self
                .get(&query, Duration::from_secs(60), key)
                .await?
                .ok_or_else(|| StreamError::Malformed("410 for a snapshot page".into()))?;
            let KvBatch::Snapshot {
                epoch,
                at: page_at,
                after,
                entries,
                next,
                ..
            } = page
            else {
                return Err(StreamError::Malformed(
                    "changes where a snapshot page was asked for".into(),
                ));
            };
            check_page(
                cursor.as_ref(),
                after.as_ref(),
                page_at,
                &entries,
                next.as_ref(),
            )?;
            let builder = match &mut builder {
                Some(b) => {
                    if b.state.epoch != epoch || b.state.seq != page_at {
                        return Err(StreamError::Malformed(
                            "a snapshot page of another snapshot".into(),
                        ));
                    }
                    b
                }
                None => builder.insert(SnapshotBuilder::new(
                    epoch,
                    page_at,
                    self.service.replica.max_bytes(),
                )),
            };
            builder.add(entries)?;
            match next {
                Some(next) => cursor = Some(next),
                None => {
                    let max_bytes = builder.max_bytes();
                    let mut state = std::mem::take(&mut builder.state);
                    // A key changed after `at` is not in the pages: the
                    // first run of changes goes in before the swap, so no
                    // read finds such a key missing meanwhile.
                    let at = state.seq;
                    let epoch = state.epoch.clone();
                    match self.changes_after(key, &epoch, at, Duration::ZERO).await? {
                        Run::Changes { head, changes } => {
                            state.apply_changes(head, changes, max_bytes)?;
                        }
                        Run::Resync => return Ok(false),
                    }
                    tracing::info!(epoch = %state.epoch, at, seq = state.seq, keys = state.keys, bytes = state.bytes, "took a key-value snapshot");
                    self.service.replica.install(state);
                    return Ok(true);
                }
            }
        }
        Err(StreamError::Malformed(
            "a snapshot that does not end".into(),
        ))
    }

    /// One signed batch; `None` for `410` (resync).
    async fn get(
        &self,
        query: &[(&str, String)],
        timeout: Duration,
        key: &VerifyingKey,
    ) -> Result<Option<KvBatch>, StreamError> {
        let link = &self.service.writer.link;
        let url = link
            .url(link.current(), "/v1/kv/sync")
            .ok_or_else(|| StreamError::Unreachable("no control-plane endpoint".into()))?;
        let response = link
            .client
            .get(url)
            .bearer_auth(&link.token)
            .query(query)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| StreamError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        let bytes = read_bounded(response).await?;
        if !status.is_success() {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(StreamError::Status {
                status: status.as_u16(),
                body,
            });
        }
        let signed: SignedBody =
            serde_json::from_slice(&bytes).map_err(|e| StreamError::Malformed(e.to_string()))?;
        match signed.verify::<KvBatch>(key) {
            Ok(batch) => Ok(Some(batch)),
            Err(edge_common::kv::SignedBodyError::BadSignature { .. }) => Err(
                StreamError::BadSignature(format!("not signed by the pinned key {}", key.id())),
            ),
            Err(e) => Err(StreamError::Malformed(e.to_string())),
        }
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, StreamError> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_BATCH_BYTES {
                    return Err(StreamError::Malformed(format!(
                        "a batch over {MAX_BATCH_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(StreamError::Unreachable(e.to_string())),
        }
    }
}

/// Sets the lag gauge every second from what the stream last knew.
async fn lag_ticker(
    service: Arc<KvService>,
    caught_up: Arc<AtomicBool>,
    last_current_ms: Arc<AtomicU64>,
    poll_sent_ms: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stalled_after = (POLL_WAIT + POLL_MARGIN).as_millis() as u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        }
        let sent = poll_sent_ms.load(Ordering::Relaxed);
        let stalled = sent != 0 && now_ms().saturating_sub(sent) > stalled_after;
        let lag = if caught_up.load(Ordering::Relaxed) && !stalled {
            0.0
        } else {
            now_ms().saturating_sub(last_current_ms.load(Ordering::Relaxed)) as f64 / 1000.0
        };
        service.metrics.lag_seconds.set(lag);
        service.refresh_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::kv::KvValue;

    fn entry(store: &str, key: &str, seq: u64) -> KvEntry {
        KvEntry {
            store: store.into(),
            key: key.into(),
            value: KvValue(b"v".to_vec()),
            seq,
        }
    }

    fn cursor(store: &str, key: &str) -> KvCursor {
        KvCursor {
            store: store.into(),
            key: key.into(),
        }
    }

    fn change(seq: u64) -> KvChange {
        KvChange {
            seq,
            store: "s".into(),
            key: Some("k".into()),
            value: None,
        }
    }

    #[test]
    fn a_page_must_continue_from_the_cursor_asked_for() {
        let c = cursor("s", "b");
        let ok = [entry("s", "c", 1), entry("t", "a", 2)];
        assert!(check_page(Some(&c), Some(&c), 5, &ok, None).is_ok());
        assert!(check_page(None, None, 5, &ok, Some(&cursor("t", "a"))).is_ok());
        // A replayed first page where the second was asked for.
        assert!(check_page(Some(&c), None, 5, &ok, None).is_err());
        // Entries at or before the cursor, out of order, or past `at`.
        assert!(check_page(Some(&c), Some(&c), 5, &[entry("s", "b", 1)], None).is_err());
        let unordered = [entry("t", "a", 1), entry("s", "z", 1)];
        assert!(check_page(None, None, 5, &unordered, None).is_err());
        assert!(check_page(None, None, 5, &[entry("s", "a", 6)], None).is_err());
        // A next cursor that does not move on.
        assert!(check_page(Some(&c), Some(&c), 5, &[], Some(&cursor("s", "a"))).is_err());
    }

    #[test]
    fn a_run_of_changes_must_ascend_after_the_position() {
        assert!(check_changes(3, 3, 6, &[change(4), change(6)]).is_ok());
        assert!(check_changes(3, 3, 3, &[]).is_ok());
        assert!(check_changes(3, 2, 6, &[change(4)]).is_err());
        assert!(check_changes(3, 3, 6, &[change(3)]).is_err());
        assert!(check_changes(3, 3, 6, &[change(5), change(4)]).is_err());
        assert!(check_changes(3, 3, 6, &[change(5), change(5)]).is_err());
        assert!(check_changes(3, 3, 6, &[change(7)]).is_err());
    }
}
