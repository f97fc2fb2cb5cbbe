//! Hits: the file the index names is opened, checked against the key and
//! Vary values it must hold, and its body either read into memory (small
//! enough to promote into the memory tier) or streamed from the open file.
//!
//! A small file whose pages are all in the page cache is read right on the
//! async worker, with calls that cannot block: `openat2` with
//! `RESOLVE_CACHED` (the path resolves from the dentry cache or fails with
//! `EAGAIN`) and `preadv2` with `RWF_NOWAIT` (the pages are cached or it
//! reads short or fails). Anything else (a page on disk, an older kernel,
//! any error) goes through the blocking pool as before. The hand-off to a
//! blocking thread and back cost more than the read itself: about five
//! futex calls and two context switches per hit (`loadtest/README.md`,
//! scenario i).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::HeaderMap;
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::io::{IoSliceMut, ReadWriteFlags};

use super::DiskTier;
use super::format::{FileHeader, FormatError, parse_file, read_header};
use super::index::Variant;
use crate::cache::body::{DiskBody, StoredBody};
use crate::cache::key::CacheKey;
use crate::cache::store::Entry;

/// Largest file read whole on the async worker from the page cache: a
/// bound on what one hit holds in memory and on the time it takes there.
const CACHED_READ_MAX_BYTES: u64 = 256 << 10;

impl DiskTier {
    /// The stored variant for a request with these headers, with its body
    /// in memory if it is at most `promote_below` bytes, else streamed from
    /// its file; and whether the caller puts it in the memory tier (such a
    /// body, on every second hit). A file that cannot be read or does not
    /// say what the index says is dropped.
    pub async fn get(
        self: &Arc<Self>,
        key: &CacheKey,
        request: &HeaderMap,
        promote_below: u64,
    ) -> Option<(Entry, bool)> {
        let variants = self.index.get(key)?;
        let variant = variants.0.iter().find(|v| v.matches(request))?.clone();
        // Only what is promoted: a body left on disk streams (and is
        // compressed as it streams, under `max_stream_bytes`).
        if variant.file_len <= CACHED_READ_MAX_BYTES.min(promote_below)
            && let Some(file) = read_cached(&variant.path, variant.file_len)
        {
            // What the file says is checked as on the blocking path; a file
            // that fails is read there again, which reports and drops it.
            let hit = parse_file(&file).and_then(|header| {
                let body = StoredBody::Memory(file.slice(header.body_offset as usize..));
                entry(key, &variant, header, body, request)
            });
            if let Ok(hit) = hit {
                // Its body is under `promote_below` (checked above).
                return Some((hit, variant.promote_on_this_hit()));
            }
        }
        let this = self.clone();
        let owned_key = key.clone();
        let request = request.clone();
        let read_variant = variant.clone();
        let read = tokio::task::spawn_blocking(move || {
            this.read_variant(&owned_key, &read_variant, &request, promote_below)
        })
        .await;
        match read {
            Ok(Ok((entry, in_memory))) => Some((entry, in_memory && variant.promote_on_this_hit())),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cache disk tier read failed; dropping the entry");
                if let Some(m) = &self.metrics {
                    m.read_errors.inc();
                }
                self.purge_key(key, false);
                None
            }
            Err(_) => None,
        }
    }

    fn read_variant(
        &self,
        key: &CacheKey,
        variant: &Variant,
        request: &HeaderMap,
        promote_below: u64,
    ) -> Result<(Entry, bool), FormatError> {
        let file = File::open(&variant.path)?;
        let header = read_header(&file)?;
        let promote = header.body_len <= promote_below;
        let body = if promote {
            let mut bytes = vec![0u8; header.body_len as usize];
            let mut reader = io::BufReader::new(&file);
            io::Seek::seek(&mut reader, io::SeekFrom::Start(header.body_offset))?;
            reader.read_exact(&mut bytes)?;
            StoredBody::Memory(Bytes::from(bytes))
        } else {
            StoredBody::Disk(DiskBody::new(
                Arc::new(file),
                header.body_offset,
                header.body_len,
            ))
        };
        entry(key, variant, header, body, request).map(|entry| (entry, promote))
    }
}

/// The whole file of `len` bytes at `path`, if every byte of it could be
/// read without blocking.
fn read_cached(path: &Path, len: u64) -> Option<Bytes> {
    let fd = rustix::fs::openat2(
        CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::CACHED,
    )
    .ok()?;
    let mut file = vec![0u8; usize::try_from(len).ok()?];
    let read = rustix::io::preadv2(
        &fd,
        &mut [IoSliceMut::new(&mut file)],
        0,
        ReadWriteFlags::NOWAIT,
    )
    .ok()?;
    (read == file.len()).then(|| Bytes::from(file))
}

/// The entry a file holds, once the file is known to hold what the index
/// says it does.
fn entry(
    key: &CacheKey,
    variant: &Variant,
    header: FileHeader,
    body: StoredBody,
    request: &HeaderMap,
) -> Result<Entry, FormatError> {
    // The index found it by key; the file itself must say so too (a
    // name collision, or a file replaced behind the node's back, must
    // never serve another key's, let alone another tenant's, body).
    if header.meta.key != *key || header.meta.vary != variant.vary {
        return Err(FormatError::Header(
            "key or Vary values differ from the index",
        ));
    }
    let soft = header.soft_purged || variant.soft_purged.load(Ordering::Relaxed);
    let meta = header.meta;
    let entry = Entry::new(meta.status, meta.headers, body, meta.received, request);
    entry.invalidated.store(soft, Ordering::Relaxed);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs what the node's fast path needs: Linux 5.12+ and a filesystem
    /// with non-blocking buffered reads (ext4, xfs, btrfs) for the
    /// temporary directory.
    #[test]
    fn a_cached_file_is_read_whole_and_anything_else_is_left_to_the_blocking_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let contents: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &contents).unwrap();
        // Just written: its pages and its name are cached.
        let read = read_cached(&path, contents.len() as u64);
        assert_eq!(read.as_deref(), Some(&contents[..]));
        // A file shorter than the index says, or gone.
        assert_eq!(read_cached(&path, contents.len() as u64 + 1), None);
        assert_eq!(read_cached(&dir.path().join("gone"), 1), None);
    }
}
