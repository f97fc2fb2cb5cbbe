//! A stored response's body, wherever it is kept. Every reader goes
//! through these methods, so that a tier keeping bodies somewhere other
//! than memory (the disk tier) adds a variant here and nothing else in the
//! cache changes.
//!
//! A leaf of the cache: it imports nothing from it, so that the store, the
//! layer and the disk tier can all name a body without importing each
//! other.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::body::{ResponseBody, full_body};

/// Bytes read from a file per frame of a body streamed from disk.
const READ_CHUNK: usize = 64 << 10;

/// The body of a stored response.
#[derive(Debug, Clone)]
pub enum StoredBody {
    /// Held in memory whole.
    Memory(Bytes),
    /// In a file of the disk tier, streamed in chunks when sent.
    Disk(DiskBody),
}

impl StoredBody {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            StoredBody::Memory(bytes) => bytes.len() as u64,
            StoredBody::Disk(disk) => disk.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes it holds in memory (what the memory tier's weight counts).
    pub fn memory_bytes(&self) -> usize {
        match self {
            StoredBody::Memory(bytes) => bytes.len(),
            StoredBody::Disk(_) => 0,
        }
    }

    /// The whole body, as a response body.
    pub fn full(&self) -> ResponseBody {
        match self {
            StoredBody::Memory(bytes) => full_body(bytes.clone()),
            StoredBody::Disk(disk) => disk.stream(0..disk.len()),
        }
    }

    /// The bytes in `range` (already checked against [`Self::len`]), as a
    /// response body.
    pub fn range(&self, range: Range<u64>) -> ResponseBody {
        match self {
            StoredBody::Memory(bytes) => {
                let end = (range.end as usize).min(bytes.len());
                let start = (range.start as usize).min(end);
                full_body(bytes.slice(start..end))
            }
            StoredBody::Disk(disk) => disk.stream(range),
        }
    }

    /// The whole body in memory, if it is held there (tests, and callers
    /// that must have all of it, such as compression).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            StoredBody::Memory(bytes) => Some(bytes),
            StoredBody::Disk(_) => None,
        }
    }
}

impl From<Bytes> for StoredBody {
    fn from(bytes: Bytes) -> Self {
        StoredBody::Memory(bytes)
    }
}

/// A body kept in a file of the disk tier, read in chunks when sent.
#[derive(Debug, Clone)]
pub struct DiskBody {
    /// Open: a purge or eviction unlinking the file does not cut off a
    /// response being sent from it.
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl DiskBody {
    /// The `len` bytes at `offset` of `file`.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self { file, offset, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the whole body into `out` (blocking), a chunk at a time.
    pub fn copy_to(&self, out: &mut impl io::Write) -> io::Result<()> {
        let mut copied = 0u64;
        let mut chunk = vec![0u8; READ_CHUNK];
        while copied < self.len {
            let n = (self.len - copied).min(READ_CHUNK as u64) as usize;
            self.file
                .read_exact_at(&mut chunk[..n], self.offset + copied)?;
            out.write_all(&chunk[..n])?;
            copied += n as u64;
        }
        Ok(())
    }

    /// `range` of the body (clamped to it), streamed.
    pub fn stream(&self, range: Range<u64>) -> ResponseBody {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let state = (self.file.clone(), self.offset + start, end - start);
        let stream = futures::stream::unfold(state, |(file, pos, left)| async move {
            if left == 0 {
                return None;
            }
            let want = left.min(READ_CHUNK as u64) as usize;
            let reader = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut chunk = vec![0u8; want];
                reader.read_exact_at(&mut chunk, pos).map(|()| chunk)
            })
            .await;
            match read {
                Ok(Ok(chunk)) => Some((
                    Ok(Frame::data(Bytes::from(chunk))),
                    (file, pos + want as u64, left - want as u64),
                )),
                // The file shrank under us (it is not ours to change, so
                // something else did) or the task failed: end the body with
                // an error so the client sees a cut-off response, not a
                // short one that looks whole.
                Ok(Err(err)) => Some((
                    Err(wasmtime_wasi_http::Error::InternalError(Some(format!(
                        "cache file read: {err}"
                    )))),
                    (file, pos, 0),
                )),
                Err(err) => Some((
                    Err(wasmtime_wasi_http::Error::InternalError(Some(format!(
                        "cache file read: {err}"
                    )))),
                    (file, pos, 0),
                )),
            }
        });
        http_body_util::StreamBody::new(stream).boxed_unsync()
    }
}
