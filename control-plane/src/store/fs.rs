//! The embedded blob store: one file per blob, named by its SHA-256, under
//! `DIR/blobs/ab/abcdef...`. A blob is written to `DIR/tmp`, fsynced,
//! renamed into place and its directory fsynced, so a crash leaves either
//! the whole blob or nothing under its name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use edge_common::fsutil::write_atomically;
use edge_common::signing::{is_sha256_hex, sha256_hex};

use super::{BlobStore, StoreError, StoreResult};

pub struct FsBlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

fn io(context: &str, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

impl FsBlobStore {
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&blobs).map_err(|e| io("cannot create the blob directory", e))?;
        std::fs::create_dir_all(&tmp).map_err(|e| io("cannot create the tmp directory", e))?;
        // Leftovers of writes a crash interrupted: never renamed, never
        // acknowledged.
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            blobs,
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.blobs.join(&sha256[..2]).join(sha256)
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, bytes: Bytes) -> StoreResult<String> {
        let tmp = self.tmp.join(format!(
            "{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let sha256 = sha256_hex(&bytes);
            let target = blobs.join(&sha256[..2]).join(&sha256);
            // An existing blob is kept only if it is intact: a damaged copy
            // is replaced by the bytes being stored.
            let intact =
                std::fs::read(&target).is_ok_and(|existing| sha256_hex(&existing) == sha256);
            if !intact {
                write_atomically(&tmp, &target, &bytes, 0o666)
                    .map_err(|e| io("cannot write a blob", e))?;
            }
            Ok(sha256)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn get(&self, sha256: &str) -> StoreResult<Option<Bytes>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        match tokio::fs::read(self.path_of(sha256)).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read a blob", e)),
        }
    }
}
