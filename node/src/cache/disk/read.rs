//! Hits: the file the index names is opened, checked against the key and
//! Vary values it must hold, and its body either read into memory (small
//! enough to promote into the memory tier) or streamed from the open file.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::HeaderMap;

use super::DiskTier;
use super::format::{FormatError, read_header};
use super::index::Variant;
use crate::cache::body::{DiskBody, StoredBody};
use crate::cache::key::CacheKey;
use crate::cache::store::Entry;

impl DiskTier {
    /// The stored variant for a request with these headers, with its body
    /// in memory if it is at most `promote_below` bytes (the caller puts
    /// it in the memory tier), else streamed from its file. A file that
    /// cannot be read or does not say what the index says is dropped.
    pub async fn get(
        self: &Arc<Self>,
        key: &CacheKey,
        request: &HeaderMap,
        promote_below: u64,
    ) -> Option<(Entry, bool)> {
        let variants = self.index.get(key)?;
        let variant = variants.0.iter().find(|v| v.matches(request))?.clone();
        let this = self.clone();
        let owned_key = key.clone();
        let request = request.clone();
        let read = tokio::task::spawn_blocking(move || {
            this.read_variant(&owned_key, &variant, &request, promote_below)
        })
        .await;
        match read {
            Ok(Ok(found)) => Some(found),
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
        let entry = Entry::new(meta.status, meta.headers, body, meta.received, request);
        entry.invalidated.store(soft, Ordering::Relaxed);
        Ok((entry, promote))
    }
}
