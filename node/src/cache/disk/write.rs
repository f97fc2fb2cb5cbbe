//! Writes, off the request path and bounded by semaphores: when they are
//! all taken, a write is skipped and counted, never waited for. A body in
//! memory is written whole in a blocking task; a body too large for the
//! memory tier is written to a temporary file as it passes to the client
//! and renamed into place at a clean end (a cut-off body leaves nothing).
//! Files are not fsynced: a crash can leave a truncated file, which the
//! next scan deletes.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::format::{
    BODY_LEN_OFFSET, FileHeader, FormatError, INCOMPLETE, Meta, prefix, read_header,
};
use super::{DiskTier, remove_file};
use crate::cache::body::StoredBody;
use crate::cache::key::CacheKey;
use crate::cache::store::Entry;

/// Bytes buffered by a streamed write before they go to the file.
const WRITE_BUFFER: usize = 64 << 10;
/// Bytes queued for one streamed write (besides its first chunk, what the
/// memory tier had buffered); past it the write is abandoned rather than
/// the client slowed down or more held in memory.
///
/// Why not backpressure (holding the client's stream a while for the disk
/// to catch up): a writer 8 MiB behind means the disk is slower than this
/// client right now, and waiting would make every large miss as slow as
/// the busiest disk, for a copy the cache can make on the next miss. The
/// client's latency is the node's promise; the disk copy is best effort
/// (and counted as `skipped`, so that a disk that cannot keep up shows).
const STREAM_QUEUE_BYTES: u64 = 8 << 20;

impl DiskTier {
    /// A new unique file path for `meta`, and a temporary path next to
    /// the tier's root to write it at first.
    pub(super) fn paths(&self, meta: &Meta) -> (PathBuf, PathBuf) {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        hash.update(meta.key.as_str().as_bytes());
        for (name, value) in &meta.vary {
            hash.update(b"\0");
            hash.update(name.as_bytes());
            hash.update(b"\0");
            if let Some(value) = value {
                hash.update(value.as_bytes());
            }
        }
        let digest = hash.finish();
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let name = format!("{hex}-{nonce:016x}");
        let path = self.root.join(&hex[..2]).join(&hex[2..4]).join(&name);
        (path, self.root.join("tmp").join(name))
    }

    /// Stores a response whose body is in memory, or copies one that is
    /// on disk with new header fields (a revalidation), in the background.
    /// Partial (206) responses are never stored here. Skipped (and
    /// counted) when every writer is busy. Not kept if a purge of the app
    /// ran since `generation` ([`DiskTier::generation`] when the miss
    /// started: a purge between that and now must not be missed).
    pub fn store(self: &Arc<Self>, key: &CacheKey, entry: &Entry, generation: u64) {
        if entry.status == StatusCode::PARTIAL_CONTENT
            || entry.is_partial()
            || entry.body.len() > self.max_entry_bytes
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.skipped();
            return;
        };
        let meta = Meta::from_entry(key, entry);
        let body = entry.body.clone();
        let this = self.clone();
        runtime.spawn_blocking(move || {
            let _permit = permit;
            let (path, tmp) = this.paths(&meta);
            let written = write_file(&tmp, &path, &meta, &body);
            this.wrote(written.is_ok());
            match written {
                Ok(header) => this.index_written(path, header, generation),
                Err(err) => {
                    tracing::warn!(error = %err, "cache disk tier write failed");
                    remove_file(&tmp);
                }
            }
        });
    }

    /// Indexes a file just written, unless a purge of its app ran since
    /// the write began (then it is deleted).
    pub(super) fn index_written(&self, path: PathBuf, header: FileHeader, generation: u64) {
        if self.generation(&header.meta.key) != generation {
            self.jobs.remove(path);
            return;
        }
        self.index_insert(path, header, Some(generation));
    }

    /// Starts writing a body that is too large for the memory tier as it
    /// streams to the client; `None` (counted) if every stream writer is
    /// busy or the response is not one to keep. `generation` as for
    /// [`Self::store`].
    pub fn begin_stream(
        self: &Arc<Self>,
        meta: Meta,
        first: Bytes,
        generation: u64,
    ) -> Option<DiskSink> {
        if meta.status == StatusCode::PARTIAL_CONTENT || first.len() as u64 > self.max_entry_bytes {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            self.skipped();
            return None;
        };
        // Unbounded in chunks, bounded in bytes by `queued` (chunk sizes
        // vary too much for a bound in chunks to mean anything).
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let writer_queued = queued.clone();
        runtime.spawn(async move {
            let _permit = permit;
            let (path, tmp) = this.paths(&meta);
            let chunks = (rx, writer_queued);
            match write_stream(&tmp, &path, &meta, chunks, end_rx, this.max_entry_bytes).await {
                Ok(Some(header)) => {
                    this.wrote(true);
                    this.index_written(path, header, generation);
                }
                // Cut off, too large or fallen behind: nothing is left.
                Ok(None) => this.jobs.remove(tmp),
                Err(err) => {
                    this.wrote(false);
                    tracing::warn!(error = %err, "cache disk tier streamed write failed");
                    this.jobs.remove(tmp);
                }
            }
        });
        let mut sink = DiskSink {
            tx,
            queued,
            end: Some(end_tx),
            len: 0,
            limit: self.max_entry_bytes,
            tier: self.clone(),
        };
        sink.push(first).then_some(sink)
    }
}

/// Writes a whole file at `tmp` and renames it to `path`.
pub(super) fn write_file(
    tmp: &Path,
    path: &Path,
    meta: &Meta,
    body: &StoredBody,
) -> Result<FileHeader, FormatError> {
    use std::io::Write;
    let header = meta.encode();
    let body_len = body.len();
    // Read back by `finish_file`, hence read and write.
    let mut file = io::BufWriter::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?,
    );
    file.write_all(&prefix(header.len(), body_len, 0))?;
    file.write_all(&header)?;
    match body {
        StoredBody::Memory(bytes) => file.write_all(bytes)?,
        // A revalidated large entry: its body is copied from the old file
        // (which stays readable while open, even if unlinked).
        StoredBody::Disk(disk) => disk.copy_to(&mut file)?,
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    finish_file(file, tmp, path)
}

/// Checks what was written by reading its header back, then moves it
/// into place (creating its fan-out directories).
fn finish_file(file: File, tmp: &Path, path: &Path) -> Result<FileHeader, FormatError> {
    let header = read_header(&file)?;
    drop(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::rename(tmp, path)?;
    Ok(header)
}

/// Writes a streamed body: prefix (marked incomplete), header, the chunks
/// as they come, then the body's length, and renames the file into place.
/// `Ok(None)` if the body did not end cleanly (the sender went away
/// without an end, the lengths disagree, or it grew past `limit`).
async fn write_stream(
    tmp: &Path,
    path: &Path,
    meta: &Meta,
    (mut chunks, queued): (tokio::sync::mpsc::UnboundedReceiver<Bytes>, Arc<AtomicU64>),
    end: tokio::sync::oneshot::Receiver<u64>,
    limit: u64,
) -> Result<Option<FileHeader>, FormatError> {
    let header = meta.encode();
    let mut file = tokio::io::BufWriter::with_capacity(
        WRITE_BUFFER,
        tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .await?,
    );
    file.write_all(&prefix(header.len(), INCOMPLETE, 0)).await?;
    file.write_all(&header).await?;
    let mut written = 0u64;
    while let Some(chunk) = chunks.recv().await {
        written += chunk.len() as u64;
        if written > limit {
            return Ok(None);
        }
        file.write_all(&chunk).await?;
        queued.fetch_sub(chunk.len() as u64, Ordering::AcqRel);
    }
    let Ok(len) = end.await else {
        return Ok(None);
    };
    if len != written {
        return Ok(None);
    }
    file.flush().await?;
    let mut file = file.into_inner();
    file.seek(io::SeekFrom::Start(BODY_LEN_OFFSET)).await?;
    file.write_all(&written.to_le_bytes()).await?;
    file.flush().await?;
    let file = file.into_std().await;
    let (tmp, path) = (tmp.to_path_buf(), path.to_path_buf());
    tokio::task::spawn_blocking(move || finish_file(file, &tmp, &path))
        .await
        .map_err(|e| FormatError::Io(io::Error::other(e)))?
        .map(Some)
}

/// Where a large body goes as it streams to the client.
pub struct DiskSink {
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// Bytes sent and not written yet.
    queued: Arc<AtomicU64>,
    end: Option<tokio::sync::oneshot::Sender<u64>>,
    len: u64,
    limit: u64,
    tier: Arc<DiskTier>,
}

impl DiskSink {
    /// Queues a chunk; false (and the write is abandoned) if the body
    /// grew past the limit or the writer fell behind.
    pub fn push(&mut self, chunk: Bytes) -> bool {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return false;
        }
        let len = chunk.len() as u64;
        let queued = self.queued.fetch_add(len, Ordering::AcqRel);
        if queued > 0 && queued + len > STREAM_QUEUE_BYTES {
            self.tier.skipped();
            return false;
        }
        self.tx.send(chunk).is_ok()
    }

    /// The body ended cleanly after `len` bytes: put the file in place.
    pub fn finish(mut self, len: u64) {
        if let Some(end) = self.end.take() {
            let _ = end.send(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderMap;
    use http_body_util::BodyExt;

    use super::*;
    use crate::cache::disk::scan::fan_out_dirs;
    use crate::cache::disk::{MAX_STREAMS, MAX_WRITES};

    /// Files in the tier's fan-out directories and in `tmp`.
    pub(crate) fn counts(root: &Path) -> (usize, usize) {
        let files = fan_out_dirs(root)
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
            .count();
        let tmp = std::fs::read_dir(root.join("tmp")).unwrap().count();
        (files, tmp)
    }

    async fn settle(root: &Path, want: (usize, usize)) {
        for _ in 0..500 {
            if counts(root) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counts(root), want);
    }

    #[tokio::test]
    async fn a_streamed_body_is_kept_only_when_it_ends_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let tier = Arc::new(DiskTier::open(dir.path(), 1 << 20, 1000, None).unwrap());
        tier.rebuild();
        let mut m = Meta::sample();
        m.vary.clear();
        // Cut off: the sink goes away without an end.
        let mut sink = tier
            .begin_stream(m.clone(), Bytes::from_static(b"abc"), 0)
            .unwrap();
        assert!(sink.push(Bytes::from_static(b"def")));
        drop(sink);
        settle(dir.path(), (0, 0)).await;
        // An end that does not match what was sent.
        let sink = tier
            .begin_stream(m.clone(), Bytes::from_static(b"abc"), 0)
            .unwrap();
        sink.finish(4);
        settle(dir.path(), (0, 0)).await;
        // Past the tier's entry limit.
        let mut sink = tier
            .begin_stream(m.clone(), Bytes::from(vec![1u8; 600]), 0)
            .unwrap();
        assert!(!sink.push(Bytes::from(vec![1u8; 600])));
        sink.finish(1200);
        settle(dir.path(), (0, 0)).await;
        // A clean end: one file, indexed, its body streamed back.
        let mut sink = tier
            .begin_stream(m.clone(), Bytes::from_static(b"abc"), 0)
            .unwrap();
        assert!(sink.push(Bytes::from_static(b"def")));
        sink.finish(6);
        settle(dir.path(), (1, 0)).await;
        for _ in 0..500 {
            if tier.index.contains_key(&m.key) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (entry, promoted) = tier.get(&m.key, &HeaderMap::new(), 0).await.unwrap();
        assert!(!promoted);
        let body = entry.body.full().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abcdef");
        let part = entry.body.range(2..5).collect().await.unwrap().to_bytes();
        assert_eq!(&part[..], b"cde");
    }

    #[tokio::test]
    async fn a_write_is_not_kept_past_a_purge_since_its_miss_began() {
        let dir = tempfile::tempdir().unwrap();
        let tier = Arc::new(DiskTier::open(dir.path(), 1 << 20, 1 << 20, None).unwrap());
        tier.rebuild();
        let m = Meta::sample();
        let entry = Entry::new(
            m.status,
            m.headers.clone(),
            Bytes::from_static(b"body"),
            m.received,
            &HeaderMap::new(),
        );
        let began = tier.generation(&m.key);
        // A purge that runs wholly between the miss's start and its write.
        tier.purge_app("t", "a", None, false);
        tier.store(&m.key, &entry, began);
        let sink = tier.begin_stream(m.clone(), Bytes::from_static(b"body"), began);
        sink.unwrap().finish(4);
        for _ in 0..500 {
            if tier.writes.available_permits() == MAX_WRITES
                && tier.streams.available_permits() == MAX_STREAMS
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tier.settle();
        assert_eq!(counts(dir.path()), (0, 0), "both written, then dropped");
        assert!(tier.index.get(&m.key).is_none());
        // The same write begun after the purge is kept.
        tier.store(&m.key, &entry, tier.generation(&m.key));
        settle(dir.path(), (1, 0)).await;
    }

    #[tokio::test]
    async fn the_index_holds_its_capacity_and_isolates_keys() {
        let dir = tempfile::tempdir().unwrap();
        let tier = Arc::new(DiskTier::open(dir.path(), 1 << 20, 1 << 20, None).unwrap());
        tier.rebuild();
        let none = HeaderMap::new();
        for i in 0..64 {
            let mut m = Meta::sample();
            m.vary.clear();
            m.key = CacheKey::new("t", "a", "https", "x.test", &format!("/{i}"));
            let (path, tmp) = tier.paths(&m);
            let header = write_file(
                &tmp,
                &path,
                &m,
                &StoredBody::Memory(Bytes::from(vec![7u8; 60 << 10])),
            )
            .unwrap();
            let generation = tier.generation(&m.key);
            tier.index_written(path, header, generation);
        }
        tier.settle();
        let on_disk: u64 = fan_out_dirs(dir.path())
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
            .map(|f| f.metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 1 << 20, "{on_disk} bytes on disk");
        assert!(tier.entry_count() > 0);
        let other = CacheKey::new("u", "a", "https", "x.test", "/63");
        assert!(tier.get(&other, &none, 0).await.is_none());
    }
}
