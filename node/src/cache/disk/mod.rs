//! The disk tier: stored responses kept in files under `[cache] disk_path`,
//! behind the memory tier, surviving restarts.
//!
//! Why not a hybrid-cache crate such as `foyer`: it serves a value by
//! loading it into memory whole, and the issue asks that large objects
//! stream from disk without being held in memory. So this follows what
//! nginx `proxy_cache` and Varnish's file storage proved instead:
//!
//! - **One file per stored response** (per Vary variant), under two levels
//!   of fan-out directories named from a hash of the key and Vary values.
//!   The file is a fixed prefix (magic, format version, a soft-purge flag
//!   byte at a fixed offset, the header's and body's lengths), a header
//!   (the full key, status, header fields, received times, Vary values,
//!   surrogate keys) and the body. A hit opens the file, checks the full
//!   key and Vary values in it (hash collisions, tenant isolation), and
//!   streams the body in 64 KiB positional reads; an open file keeps
//!   serving even if a purge or eviction unlinks it meanwhile.
//! - **An in-memory index** of what is on disk: a moka cache keyed like the
//!   memory store, weighed by file size (in KiB, rounded up to the 4 KiB a
//!   file takes at least), with `max_capacity = disk_capacity_bytes`; its
//!   eviction listener deletes the files. It holds no header fields or
//!   bodies, only what lookups and purges need (Vary values, surrogate
//!   keys, sizes, the soft-purge flag). Beside it, a
//!   [`PurgeIndex`](crate::cache::index::PurgeIndex) of the tier's own
//!   (the memory tier's kind, with the same consistency rules) files each
//!   key by app, surrogate key and target, so a purge visits the keys it
//!   names and no others, and keeps each app's purge generation.
//! - **Startup** rebuilds the index by reading every file's header, in a
//!   background task so the node serves meanwhile (a response not indexed
//!   yet is a miss). Unreadable, truncated, wrong-version or foreign files
//!   are deleted. Purges that arrive during the scan leave bounded
//!   tombstones the scan checks each file against (see [`scan`]), so a
//!   file indexed after a purge ran does not escape it.
//! - **Writes** happen off the request path, bounded by semaphores: when
//!   they are all taken, the write is skipped and counted, never waited
//!   for. A body too large for the memory tier is written to a temporary
//!   file as it passes to the client and renamed into place at a clean
//!   end; a cut-off body leaves nothing behind. Files are not fsynced: a
//!   crash can leave a truncated file, which the next scan deletes.
//! - The OS page cache keeps hot files in memory. A small file whose
//!   pages are cached is read whole on the async worker with calls that
//!   cannot block (see [`read`]); small entries read from disk are
//!   promoted into the memory tier on every second hit.
//!
//! Measured on the development machine (2 cores, debug build): a 100 MiB
//! object stored on disk as it streamed to a slow client, then served from
//! its file to another, took the `edge-node` process from 27 MiB resident
//! to a peak of 34 MiB (`origin_cache::disk::a_large_object_streams_with_
//! bounded_rss`, which fails past 40 MiB over the start).
//!
//! The files here follow the data path: [`format`] (the file layout and
//! its parsing), [`index`] (the in-memory index), [`write`] (background and
//! streamed writes), [`scan`] (the startup scan), [`read`] (hits) and
//! [`purge`]. The memory tier's hooks into this tier are
//! `cache::tiers`; the body type read from files is
//! [`DiskBody`](crate::cache::body::DiskBody).

mod files;
mod format;
mod index;
mod purge;
mod read;
mod scan;
mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::cache::index::PurgeIndex;
use crate::cache::key::CacheKey;

pub use format::Meta;
pub use write::DiskSink;

use index::Variants;

/// Writes of whole (memory-sized) bodies at once; past it they are skipped.
const MAX_WRITES: usize = 16;
/// Large bodies written as they stream to clients at once.
const MAX_STREAMS: usize = 16;

/// The disk tier's metrics.
#[derive(Clone)]
pub struct DiskMetrics {
    /// `edge_cache_disk_bytes{tenant,app}`: bytes of files indexed.
    pub bytes: prometheus::IntGaugeVec,
    /// `edge_cache_disk_entries{tenant,app}`: files indexed.
    pub entries: prometheus::IntGaugeVec,
    /// `edge_cache_disk_writes_total{result}`: `stored`, `skipped` (all
    /// writers busy, or a streamed write fell behind) or `failed`.
    pub writes: prometheus::IntCounterVec,
    /// `edge_cache_disk_read_errors_total`: hits whose file could not be
    /// read or did not match (the file is dropped and the request misses).
    pub read_errors: prometheus::IntCounter,
}

/// Why the disk tier cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cache.disk_path {path}: {source}")]
pub struct OpenError {
    path: PathBuf,
    source: io::Error,
}

pub struct DiskTier {
    root: PathBuf,
    index: moka::sync::Cache<CacheKey, Arc<Variants>>,
    /// Which keys each app, surrogate key and target has on disk, and each
    /// app's purge generation: bumped by every purge of an app, so that a
    /// write of that app that started before one is not indexed (what it
    /// wrote may be what the purge removed).
    purges: Arc<PurgeIndex>,
    max_entry_bytes: u64,
    writes: Arc<tokio::sync::Semaphore>,
    streams: Arc<tokio::sync::Semaphore>,
    /// The purges that ran during the startup scan, which it checks each
    /// file against.
    tombstones: Mutex<scan::Tombstones>,
    /// Makes every file name unique, across restarts too.
    nonce: AtomicU64,
    /// Deletes files and writes soft-purge flags off the async workers.
    jobs: files::FileJobs,
    metrics: Option<DiskMetrics>,
}

impl DiskTier {
    /// Opens (creating) the directory; the index is empty until
    /// [`Self::rebuild`] has run.
    pub fn open(
        root: &Path,
        capacity_bytes: u64,
        max_entry_bytes: u64,
        metrics: Option<DiskMetrics>,
    ) -> Result<Self, OpenError> {
        let err = |source| OpenError {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root.join("tmp")).map_err(err)?;
        let listener_metrics = metrics.clone();
        let purges = Arc::new(PurgeIndex::default());
        let listener_purges = purges.clone();
        let jobs = files::FileJobs::start().map_err(err)?;
        let listener_jobs = jobs.clone();
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes / 1024)
            // Plain LRU, as nginx and Varnish evict files: TinyLFU's
            // admission would need a history of frequencies that a restart
            // loses, and could refuse a large file that was just written.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_: &CacheKey, variants: &Arc<Variants>| variants.weight_kib())
            .eviction_listener(move |key: Arc<CacheKey>, variants: Arc<Variants>, cause| {
                // A replaced value's dropped files are deleted by whoever
                // replaced it (the others live on in the new value).
                if cause == moka::notification::RemovalCause::Replaced {
                    return;
                }
                listener_purges.forget(&key, index::value_id(&variants));
                for variant in &variants.0 {
                    listener_jobs.remove(variant.path.clone());
                    account(&listener_metrics, &key, -(variant.file_len as i64), -1);
                }
            })
            .build();
        let mut seed = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| err(io::Error::other("no randomness for file names")))?;
        Ok(Self {
            root: root.to_path_buf(),
            index,
            purges,
            max_entry_bytes,
            writes: Arc::new(tokio::sync::Semaphore::new(MAX_WRITES)),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            tombstones: Mutex::new(scan::Tombstones::default()),
            nonce: AtomicU64::new(u64::from_le_bytes(seed)),
            jobs,
            metrics,
        })
    }

    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// The purge generation of `key`'s app now: read when a miss starts,
    /// and handed to the write of what it fetched.
    pub fn generation(&self, key: &CacheKey) -> u64 {
        self.purges.generation(key)
    }

    fn skipped(&self) {
        if let Some(m) = &self.metrics {
            m.writes.with_label_values(&["skipped"]).inc();
        }
    }

    fn wrote(&self, ok: bool) {
        if let Some(m) = &self.metrics {
            m.writes
                .with_label_values(&[if ok { "stored" } else { "failed" }])
                .inc();
        }
    }

    /// Applies the index's pending evictions (which delete their files).
    pub fn run_maintenance(&self) {
        self.index.run_pending_tasks();
        // Keys left behind by a removal notice that overtook their
        // recording; rare, so only swept once they are many.
        if self.purges.recorded_keys() as u64 > 2 * self.index.entry_count() + 1024 {
            self.purges.sweep(|key| self.index.contains_key(key));
        }
    }

    /// Runs pending maintenance and waits for the file jobs it and
    /// everything before queued.
    #[cfg(test)]
    pub(super) fn settle(&self) {
        self.run_maintenance();
        self.jobs.flush();
    }

    /// Bytes of files indexed (rounded up to KiB and to 4 KiB a file),
    /// after pending maintenance.
    pub fn weighted_bytes(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.weighted_size() * 1024
    }

    /// Files indexed, after pending maintenance.
    pub fn entry_count(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.iter().map(|(_, v)| v.0.len() as u64).sum()
    }
}

fn account(metrics: &Option<DiskMetrics>, key: &CacheKey, bytes: i64, entries: i64) {
    if let Some(m) = metrics {
        let (tenant, app) = key.owner();
        m.bytes.with_label_values(&[tenant, app]).add(bytes);
        m.entries.with_label_values(&[tenant, app]).add(entries);
    }
}

/// Deletes a file now: only on a blocking thread (elsewhere, through
/// `DiskTier::jobs`).
fn remove_file(path: &Path) {
    files::remove_now(path)
}
