//! The shipper: drains the queue in batches (up to [`BATCH_LINES`] lines,
//! or what came within [`BATCH_EVERY`]) and posts each to the control
//! plane through an [`Uplink`] (the sync client's, with its token and
//! failover). One post at a time: while it is in flight lines wait in the
//! bounded queue, and beyond it they are dropped and counted
//! (backpressure without ever blocking a request). What was shipped is
//! counted from the control plane's answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edge_common::api::{
    BatchAccepted, DroppedLines, LogBatch, LogEvent, MAX_BATCH_BYTES, ShippedLine,
};
use tokio::sync::{mpsc, watch};

use super::{AppTail, LogHub, Queued, now_ms};

/// Lines per batch, at most (the control plane takes up to 2000).
const BATCH_LINES: usize = 500;
/// How long the first line of a batch waits for others.
const BATCH_EVERY: Duration = Duration::from_millis(200);

/// Where batches go: the control plane's `POST /v1/logs`.
pub trait Uplink: Send + Sync + 'static {
    /// Posts one batch (JSON); what the control plane kept.
    fn post(&self, body: Vec<u8>) -> impl Future<Output = Result<BatchAccepted, String>> + Send;
}

/// Runs until shutdown.
pub async fn run<U: Uplink>(
    hub: Arc<LogHub>,
    mut rx: mpsc::Receiver<Queued>,
    uplink: U,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH_LINES);
    loop {
        // The first line, or a tick to send drop notices on their own.
        tokio::select! {
            _ = shutdown.changed() => return,
            line = rx.recv() => match line {
                Some(line) => {
                    hub.dequeued(line.bytes);
                    batch.push(line);
                }
                None => return,
            },
            _ = tokio::time::sleep(BATCH_EVERY) => {}
        }
        let deadline = tokio::time::Instant::now() + BATCH_EVERY;
        while batch.len() < BATCH_LINES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    hub.dequeued(line.bytes);
                    batch.push(line);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let now = now_ms();
        batch.extend(hub.take_dropped().into_iter().map(|(tail, count)| Queued {
            event: LogEvent::Dropped(DroppedLines {
                node: String::new(),
                app: tail.app.clone(),
                count,
                time_ms: now,
                reason: None,
            }),
            tail,
            bytes: 0,
        }));
        if batch.is_empty() {
            continue;
        }
        send(&uplink, std::mem::take(&mut batch)).await;
    }
}

/// Posts a batch. Lines are counted shipped as far as the control plane
/// accepted them; a post that failed counts its lines dropped and puts
/// its notices' counts back, so the next batch says them.
async fn send<U: Uplink>(uplink: &U, items: Vec<Queued>) {
    let batch = LogBatch {
        lines: items
            .iter()
            .map(|q| ShippedLine {
                tenant: q.tail.tenant.clone(),
                event: q.event.clone(),
            })
            .collect(),
    };
    let body = match serde_json::to_vec(&batch) {
        Ok(body) if body.len() <= MAX_BATCH_BYTES => body,
        // 500 lines of at most 4 KiB each can pass 1 MiB: split in two.
        Ok(_) if items.len() > 1 => {
            drop(batch);
            let mut first = items;
            let second = first.split_off(first.len() / 2);
            Box::pin(send(uplink, first)).await;
            Box::pin(send(uplink, second)).await;
            return;
        }
        Ok(_) | Err(_) => Vec::new(),
    };
    drop(batch);
    let outcome = if body.is_empty() {
        Err("a line too large to ship".to_string())
    } else {
        uplink.post(body).await
    };
    let is_notice = |q: &Queued| matches!(q.event, LogEvent::Dropped(_));
    match outcome {
        Ok(answer) => {
            let notices = items.iter().filter(|q| is_notice(q)).count() as u64;
            let lines = items.len() as u64 - notices;
            // The control plane keeps notices of tailed apps as it keeps
            // lines; what it did not keep (an app no longer tailed, its
            // rate) is not the node's to count again. Spread over the
            // batch's apps in proportion when it kept part.
            let kept = answer.accepted.saturating_sub(notices).min(lines);
            let mut per_app: HashMap<*const AppTail, (&Arc<AppTail>, u64)> = HashMap::new();
            for q in items.iter().filter(|q| !is_notice(q)) {
                per_app
                    .entry(Arc::as_ptr(&q.tail))
                    .or_insert((&q.tail, 0))
                    .1 += 1;
            }
            for (tail, n) in per_app.into_values() {
                let shipped = if kept == lines {
                    n
                } else {
                    n * kept / lines.max(1)
                };
                tail.shipped(shipped);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot ship log lines; dropped");
            for q in &items {
                match &q.event {
                    LogEvent::Dropped(d) => q.tail.restore_dropped(d.count),
                    _ => q.tail.count_dropped(1),
                }
            }
        }
    }
}
