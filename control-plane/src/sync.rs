//! The control plane's side of sync: a watch on the revision that wakes
//! long-polling nodes, and the signed snapshot of the current revision,
//! built once per revision however many nodes ask.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_common::signing::SigningKey;
use edge_common::sync::{SignedSnapshot, SyncKey};
use tokio::sync::{Mutex, watch};

use crate::store::{MetaStore, StoreError};

pub struct SyncHub {
    store: Arc<dyn MetaStore>,
    key: SigningKey,
    revision: Arc<watch::Sender<u64>>,
    /// The session hearing other replicas' revisions (PostgreSQL only);
    /// stopped with the hub.
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The signed snapshot JSON of the newest revision built so far.
    cached: Mutex<Option<(u64, Bytes)>>,
    /// The last key-value seq committed here or heard of (issue 16): wakes
    /// the change-stream long polls (`GET /v1/kv/sync`).
    kv_seq: Arc<watch::Sender<u64>>,
    kv_follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SyncHub {
    pub fn new(store: Arc<dyn MetaStore>, key: SigningKey, revision: u64) -> Self {
        Self {
            store,
            key,
            revision: Arc::new(watch::Sender::new(revision)),
            follower: std::sync::Mutex::new(None),
            cached: Mutex::new(None),
            kv_seq: Arc::new(watch::Sender::new(0)),
            kv_follower: std::sync::Mutex::new(None),
        }
    }

    /// Wakes the long polls for revisions committed by every replica
    /// sharing the PostgreSQL database `config` names, too.
    pub fn follow_replicas(&self, config: tokio_postgres::Config) {
        let revision = self.revision.clone();
        let task = tokio::spawn(crate::store::postgres::notify::follow_revisions(
            config.clone(),
            move |committed| advance(&revision, committed),
        ));
        let mut follower = self
            .follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(previous) = follower.replace(task) {
            previous.abort();
        }
        drop(follower);
        let kv_seq = self.kv_seq.clone();
        let task = tokio::spawn(crate::store::postgres::notify::follow_kv_seqs(
            config,
            move |committed| advance(&kv_seq, committed),
        ));
        let mut follower = self
            .kv_follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(previous) = follower.replace(task) {
            previous.abort();
        }
    }

    /// Wakes the change-stream long polls: a key-value change committed
    /// at `seq`.
    pub fn notify_kv(&self, seq: u64) {
        advance(&self.kv_seq, seq);
    }

    /// The last key-value seq this replica knows of.
    pub fn kv_seq(&self) -> u64 {
        *self.kv_seq.borrow()
    }

    /// A receiver of key-value seqs: subscribe before reading the store,
    /// then [`SyncHub::wait_kv`] on it, so a commit in between is not
    /// missed.
    pub fn kv_subscribe(&self) -> watch::Receiver<u64> {
        self.kv_seq.subscribe()
    }

    /// Waits until `deadline` for a key-value seq above `since`; whether
    /// there is one.
    pub async fn wait_kv(
        rx: &mut watch::Receiver<u64>,
        since: u64,
        deadline: tokio::time::Instant,
    ) -> bool {
        let newer = rx.wait_for(|seq| *seq > since);
        matches!(tokio::time::timeout_at(deadline, newer).await, Ok(Ok(_)))
    }

    /// Signs a body a node applies (a key-value batch or write result)
    /// with the snapshot key.
    pub fn sign<T: serde::Serialize>(
        &self,
        body: &T,
    ) -> Result<edge_common::kv::SignedBody, serde_json::Error> {
        edge_common::kv::SignedBody::sign(body, &self.key)
    }

    pub fn key(&self) -> SyncKey {
        let public = self.key.verifying_key();
        SyncKey {
            key_id: public.id(),
            public_key: public.to_hex(),
        }
    }

    /// Wakes the long polls: something changed at `revision`.
    pub fn notify(&self, revision: u64) {
        advance(&self.revision, revision);
    }

    pub fn current(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Waits up to `wait` for a revision newer than `since`; whether there
    /// is one.
    pub async fn wait_newer(&self, since: u64, wait: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let newer = rx.wait_for(|rev| *rev > since);
        matches!(tokio::time::timeout(wait, newer).await, Ok(Ok(_)))
    }

    /// The signed snapshot of the current revision, as JSON.
    pub async fn signed_snapshot(&self) -> Result<(u64, Bytes), StoreError> {
        let mut cached = self.cached.lock().await;
        let current = self.store.revision().await?;
        if let Some((revision, bytes)) = cached.as_ref()
            && *revision == current
        {
            return Ok((*revision, bytes.clone()));
        }
        let snapshot = self.store.snapshot().await?;
        let signed = SignedSnapshot::sign(&snapshot, &self.key)
            .and_then(|signed| serde_json::to_vec(&signed))
            .map_err(|e| StoreError::Backend(format!("cannot encode the snapshot: {e}")))?;
        let bytes = Bytes::from(signed);
        *cached = Some((snapshot.revision, bytes.clone()));
        Ok((snapshot.revision, bytes))
    }
}

impl Drop for SyncHub {
    fn drop(&mut self) {
        let follower = self
            .follower
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = follower.take() {
            task.abort();
        }
        let kv_follower = self
            .kv_follower
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = kv_follower.take() {
            task.abort();
        }
    }
}

/// Moves the watched revision forward (never back: a late announcement of
/// an older revision wakes nobody).
fn advance(watched: &watch::Sender<u64>, revision: u64) {
    watched.send_if_modified(|current| {
        if revision > *current {
            *current = revision;
            true
        } else {
            false
        }
    });
}
