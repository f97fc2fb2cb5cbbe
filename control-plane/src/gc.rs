//! Garbage collection of blobs: uploaded sources and compiled artifacts
//! that no version references any more (its versions or app were deleted,
//! or an upload failed after storing them) are deleted from the
//! [`BlobStore`].
//!
//! # Why a pass cannot delete a blob an upload is about to reference
//!
//! An upload stores (`put`) or reuses (`touch`) every blob its version
//! will reference *before* it records the version, and both make the
//! blob's modified time now. A pass deletes a blob only if
//!
//! 1. it was not modified within the grace period when listed,
//! 2. no version references it, checked in one metadata transaction
//!    ([`MetaStore::unreferenced_blobs`]), and
//! 3. it was still not modified since the pass's cutoff when deleted
//!    ([`BlobStore::delete_if_unmodified_since`], which the directory
//!    store checks atomically with the deletion).
//!
//! So a blob an upload has put or touched is never deleted while the
//! upload is within the grace period (an hour by default; an upload
//! records its version seconds after storing its blobs: the body is read
//! before, compiling takes seconds), and a `touch` that finds the blob
//! already deleted by an earlier pass makes the upload store it again.
//! This needs no lock between uploads and collection, so it holds for
//! several control-plane replicas sharing one store as well. A grace of
//! zero (tests) gives up the first guarantee.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{BlobStore, MAX_BLOBS_LISTED, MetaStore, StoreResult, now_unix};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs looked at.
    pub listed: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
}

/// One pass over every blob: deletes those older than `grace` that no
/// version references.
pub async fn collect(
    store: &dyn MetaStore,
    blobs: &dyn BlobStore,
    grace: Duration,
) -> StoreResult<GcStats> {
    let cutoff = now_unix().saturating_sub(grace.as_secs());
    let mut stats = GcStats::default();
    let mut after: Option<String> = None;
    loop {
        let page = blobs.list(after.as_deref(), MAX_BLOBS_LISTED).await?;
        let Some(last) = page.last() else {
            return Ok(stats);
        };
        after = Some(last.sha256.clone());
        stats.listed += page.len() as u64;
        let old: Vec<String> = page
            .iter()
            .filter(|b| b.modified_unix <= cutoff)
            .map(|b| b.sha256.clone())
            .collect();
        if old.is_empty() {
            continue;
        }
        for sha in store.unreferenced_blobs(&old).await? {
            if blobs.delete_if_unmodified_since(&sha, cutoff).await? {
                stats.deleted += 1;
                stats.deleted_bytes += page.iter().find(|b| b.sha256 == sha).map_or(0, |b| b.size);
            }
        }
    }
}

/// The background collector: a pass at start, every `interval`, and soon
/// after each [`BlobGc::trigger`] (triggers during a pass make one more
/// pass). It stops when this handle is dropped.
pub struct BlobGc {
    wake: mpsc::Sender<()>,
}

impl BlobGc {
    pub fn start(
        store: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        grace: Duration,
        interval: Duration,
    ) -> Self {
        // One pending wake-up is enough: a pass looks at every blob.
        let (wake, mut woken) = mpsc::channel(1);
        tokio::spawn(async move {
            // A zero period would make `interval` panic (and spin).
            let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    wake = woken.recv() => if wake.is_none() { return },
                    _ = ticker.tick() => {}
                }
                match collect(store.as_ref(), blobs.as_ref(), grace).await {
                    Ok(stats) if stats.deleted > 0 => {
                        tracing::info!(
                            deleted = stats.deleted,
                            bytes = stats.deleted_bytes,
                            listed = stats.listed,
                            "unreferenced blobs deleted"
                        );
                    }
                    Ok(stats) => tracing::debug!(listed = stats.listed, "no unreferenced blobs"),
                    Err(e) => tracing::warn!(error = %e, "blob garbage collection failed"),
                }
            }
        });
        Self { wake }
    }

    /// Asks for a pass soon (after a deletion).
    pub fn trigger(&self) {
        let _ = self.wake.try_send(());
    }
}
