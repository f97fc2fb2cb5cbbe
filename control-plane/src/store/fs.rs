//! The embedded blob store: one file per blob, named by its SHA-256, under
//! `DIR/blobs/ab/abcdef...`. A blob is written to `DIR/tmp`, fsynced,
//! renamed into place and its directory fsynced, so a crash leaves either
//! the whole blob or nothing under its name. A blob's modified time is the
//! file's: `put` of bytes already there and `touch` set it to now.
//!
//! Deleting moves the file out of place (to `DIR/tmp`) before checking its
//! modified time again, and a touch checks after setting the time that the
//! file is still in place: so a touch either lands in time for the
//! deletion to see it (the file is put back) or reports the blob gone (the
//! caller stores it again). No interleaving loses a blob that was touched.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::fsutil::write_atomically;
use edge_common::signing::{is_sha256_hex, sha256_hex};

use super::{BlobInfo, BlobStore, MAX_BLOBS_LISTED, StoreError, StoreResult};

pub struct FsBlobStore {
    inner: Arc<Dirs>,
}

struct Dirs {
    blobs: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

fn io(context: &str, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        return StoreError::Full(context.to_string());
    }
    StoreError::Backend(format!("{context}: {e}"))
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn modified_unix(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl Dirs {
    fn path_of(&self, sha256: &str) -> PathBuf {
        self.blobs.join(&sha256[..2]).join(sha256)
    }

    fn tmp_path(&self, kind: &str) -> PathBuf {
        self.tmp.join(format!(
            "{kind}{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Sets the file's modified time to now; `false` if it is not (or no
    /// longer) in place.
    fn touch(&self, path: &Path) -> std::io::Result<bool> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        file.set_modified(SystemTime::now())?;
        // A deletion may have moved the file away between the open and
        // the new time: then the time set is on a file being deleted.
        let touched = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) => Ok(now.dev() == touched.dev() && now.ino() == touched.ino()),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn delete_if_unmodified_since(&self, sha256: &str, unix: u64) -> std::io::Result<bool> {
        let target = self.path_of(sha256);
        match std::fs::metadata(&target) {
            Ok(meta) if modified_unix(&meta) > unix => return Ok(false),
            Ok(_) => {}
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        let grave = self.tmp_path("gc-");
        match std::fs::rename(&target, &grave) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Out of place now, so no later touch can reach it: one that came
        // between the first check and the move shows here.
        if modified_unix(&std::fs::metadata(&grave)?) > unix {
            // Back in place (over a copy a put may have written meanwhile:
            // the same bytes).
            std::fs::rename(&grave, &target)?;
            return Ok(false);
        }
        std::fs::remove_file(&grave)?;
        Ok(true)
    }

    fn list(&self, after: Option<&str>, limit: usize) -> std::io::Result<Vec<BlobInfo>> {
        let limit = limit.min(MAX_BLOBS_LISTED);
        let mut shards: Vec<String> = std::fs::read_dir(&self.blobs)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter(|s| after.is_none_or(|a| s.as_str() >= a.get(..2).unwrap_or(a)))
            .collect();
        shards.sort();
        let mut found = Vec::new();
        for shard in shards {
            let mut names: Vec<String> = std::fs::read_dir(self.blobs.join(&shard))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| is_sha256_hex(n) && n.starts_with(&shard))
                .filter(|n| after.is_none_or(|a| n.as_str() > a))
                .collect();
            names.sort();
            for name in names {
                if found.len() >= limit {
                    return Ok(found);
                }
                // Gone since the directory was read: not listed.
                let Ok(meta) = std::fs::metadata(self.path_of(&name)) else {
                    continue;
                };
                found.push(BlobInfo {
                    size: meta.len(),
                    modified_unix: modified_unix(&meta),
                    sha256: name,
                });
            }
        }
        Ok(found)
    }
}

impl FsBlobStore {
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&blobs).map_err(|e| io("cannot create the blob directory", e))?;
        std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create the tmp directory", e))?;
        // Leftovers of writes a crash interrupted: never renamed, never
        // acknowledged (and of deletions: blobs already judged garbage).
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            inner: Arc::new(Dirs {
                blobs,
                tmp,
                next_tmp: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dirs) -> StoreResult<T> + Send + 'static,
    {
        let dirs = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&dirs))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, bytes: Bytes) -> StoreResult<String> {
        self.blocking(move |dirs| {
            let sha256 = sha256_hex(&bytes);
            let target = dirs.path_of(&sha256);
            // An existing blob is kept only if it is intact (and still in
            // place once touched): a damaged copy is replaced by the bytes
            // being stored.
            let intact =
                std::fs::read(&target).is_ok_and(|existing| sha256_hex(&existing) == sha256);
            let kept = intact
                && dirs
                    .touch(&target)
                    .map_err(|e| io("cannot touch a blob", e))?;
            if !kept {
                write_atomically(&dirs.tmp_path(""), &target, &bytes, 0o666)
                    .map_err(|e| io("cannot write a blob", e))?;
            }
            Ok(sha256)
        })
        .await
    }

    async fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        match tokio::fs::read(self.inner.path_of(sha256)).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io("cannot read a blob", e)),
        }
    }

    async fn touch(&self, sha256: &str) -> StoreResult<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        let sha256 = sha256.to_string();
        self.blocking(move |dirs| {
            dirs.touch(&dirs.path_of(&sha256))
                .map_err(|e| io("cannot touch a blob", e))
        })
        .await
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<BlobInfo>> {
        let after = after.map(str::to_string);
        self.blocking(move |dirs| {
            dirs.list(after.as_deref(), limit)
                .map_err(|e| io("cannot list the blobs", e))
        })
        .await
    }

    async fn delete_if_unmodified_since(&self, sha256: &str, unix: u64) -> StoreResult<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        let sha256 = sha256.to_string();
        self.blocking(move |dirs| {
            dirs.delete_if_unmodified_since(&sha256, unix)
                .map_err(|e| io("cannot delete a blob", e))
        })
        .await
    }
}
