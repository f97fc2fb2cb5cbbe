//! The in-memory index of what is on disk: per key, its files (one per
//! Vary variant) with what lookups and purges need, never header fields or
//! bodies. Every value put into the moka cache is recorded in the tier's
//! [`PurgeIndex`](crate::cache::index::PurgeIndex) right after (see its
//! consistency rules), and forgotten by the eviction listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};

use super::files::FileJobs;
use super::format::FileHeader;
use super::{DiskTier, account};
use crate::cache::key::CacheKey;
use crate::cache::store::MAX_VARIANTS;

/// Files weigh at least one filesystem block.
const MIN_FILE_WEIGHT: u64 = 4096;

/// One file in the index.
#[derive(Debug)]
pub(super) struct Variant {
    pub(super) path: PathBuf,
    pub(super) vary: Vec<(String, Option<HeaderValue>)>,
    pub(super) surrogate_keys: Vec<String>,
    pub(super) file_len: u64,
    response_time: SystemTime,
    pub(super) soft_purged: AtomicBool,
    /// Set by a hit that did not promote the file into the memory tier:
    /// the next one does (see [`Variant::promote_on_this_hit`]).
    hit_once: AtomicBool,
}

impl Variant {
    pub(super) fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| crate::cache::vary::matches(request, name, value.as_ref()))
    }

    /// Whether this hit promotes the file into the memory tier: every
    /// second one does (cache on second hit). A file read once is not worth
    /// evicting a memory entry for, and with a working set larger than the
    /// memory tier, promoting on every hit made each disk hit pay for an
    /// insert and an eviction (`loadtest/README.md`, scenario i).
    pub(super) fn promote_on_this_hit(&self) -> bool {
        let second = self.hit_once.swap(true, Ordering::Relaxed);
        if second {
            self.hit_once.store(false, Ordering::Relaxed);
        }
        second
    }

    /// Sets the soft-purge flag, in the index now (authoritative) and in
    /// the file in the background (so that it survives a restart).
    pub(super) fn mark_soft(&self, jobs: &FileJobs) {
        self.soft_purged.store(true, Ordering::Relaxed);
        jobs.mark_soft(self.path.clone());
    }
}

/// A key's files, newest first.
#[derive(Debug, Default)]
pub(super) struct Variants(pub(super) Vec<Arc<Variant>>);

impl Variants {
    /// The moka weight: KiB, rounded up, at least a block a file.
    pub(super) fn weight_kib(&self) -> u32 {
        let kib: u64 = self
            .0
            .iter()
            .map(|v| v.file_len.max(MIN_FILE_WEIGHT).div_ceil(1024))
            .sum();
        u32::try_from(kib).unwrap_or(u32::MAX)
    }

    /// Every surrogate key of the files.
    fn tags(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|v| v.surrogate_keys.iter().map(String::as_str))
    }
}

/// How the purge index names a value of the index (see
/// [`PurgeIndex::forget`](crate::cache::index::PurgeIndex::forget)).
pub(super) fn value_id(variants: &Arc<Variants>) -> usize {
    Arc::as_ptr(variants) as usize
}

impl DiskTier {
    /// Adds a file to the index, unless a purge of its app ran since
    /// `since` (then the file is deleted and `false` returned; `None`
    /// always adds, for the startup scan, which checks its own tombstones). Of
    /// two files for the same variant the later response wins and the
    /// other is deleted.
    pub(super) fn index_insert(
        &self,
        path: PathBuf,
        header: FileHeader,
        since: Option<u64>,
    ) -> bool {
        let key = header.meta.key.clone();
        // The startup scan finding a file a write already indexed.
        if self
            .index
            .get(&key)
            .is_some_and(|variants| variants.0.iter().any(|v| v.path == path))
        {
            return true;
        }
        let variant = Arc::new(Variant {
            path,
            vary: header.meta.vary,
            surrogate_keys: header.meta.surrogate_keys,
            file_len: header.file_len,
            response_time: header.meta.received.response_time,
            soft_purged: AtomicBool::new(header.soft_purged),
            hit_once: AtomicBool::new(false),
        });
        let mut dropped = Vec::new();
        let mut added = false;
        let stored = self.index.entry(key.clone()).and_upsert_with(|existing| {
            let old = existing
                .map(|e| e.into_value().0.clone())
                .unwrap_or_default();
            let mut keep = Vec::with_capacity(old.len() + 1);
            let mut newer_kept = false;
            for v in old {
                if v.vary != variant.vary {
                    keep.push(v);
                } else if v.response_time > variant.response_time {
                    newer_kept = true;
                    keep.push(v);
                } else {
                    dropped.push(v);
                }
            }
            if newer_kept {
                dropped.push(variant.clone());
            } else {
                keep.insert(0, variant.clone());
                added = true;
            }
            if keep.len() > MAX_VARIANTS {
                dropped.extend(keep.split_off(MAX_VARIANTS));
            }
            Arc::new(Variants(keep))
        });
        if added {
            account(&self.metrics, &key, variant.file_len as i64, 1);
        }
        for v in dropped {
            self.jobs.remove(v.path.clone());
            if !Arc::ptr_eq(&v, &variant) {
                account(&self.metrics, &key, -(v.file_len as i64), -1);
            } else if added {
                // Added and then cut by MAX_VARIANTS in the same upsert.
                account(&self.metrics, &key, -(v.file_len as i64), -1);
            }
        }
        let stored = stored.into_value();
        if self
            .purges
            .record(&key, value_id(&stored), stored.tags(), since)
        {
            return true;
        }
        // A purge of the app ran since the write began: it may have
        // selected the keys before this file was recorded.
        self.remove_variant(&key, &variant.vary, &variant.path);
        false
    }

    /// Removes one file from the index (and the disk).
    fn remove_variant(&self, key: &CacheKey, vary: &[(String, Option<HeaderValue>)], path: &Path) {
        let Some(variants) = self.index.get(key) else {
            self.jobs.remove(path.to_path_buf());
            return;
        };
        let matches = |v: &Arc<Variant>| v.vary == vary && v.path == path;
        if !variants.0.iter().any(matches) {
            self.jobs.remove(path.to_path_buf());
            return;
        }
        self.replace(key, &variants, |v| !matches(v));
    }

    /// Keeps the variants of `key` for which `keep` holds (removing the
    /// key if none), deleting the others' files; returns how many went.
    pub(super) fn replace(
        &self,
        key: &CacheKey,
        variants: &Variants,
        keep: impl Fn(&Arc<Variant>) -> bool,
    ) -> usize {
        let (kept, gone): (Vec<_>, Vec<_>) = variants.0.iter().cloned().partition(|v| keep(v));
        if gone.is_empty() {
            return 0;
        }
        if kept.is_empty() {
            // The listener deletes the files and their accounting.
            return self.index.remove(key).map(|v| v.0.len()).unwrap_or(0);
        }
        for v in &gone {
            self.jobs.remove(v.path.clone());
            account(&self.metrics, key, -(v.file_len as i64), -1);
        }
        let kept = Arc::new(Variants(kept));
        self.index.insert(key.clone(), kept.clone());
        // The same key under a new value: the purge index names values.
        self.purges.record(key, value_id(&kept), kept.tags(), None);
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use bytes::Bytes;

    use super::*;
    use crate::cache::body::StoredBody;
    use crate::cache::disk::format::{Meta, read_header};
    use crate::cache::disk::write::write_file;

    #[test]
    fn the_soft_purge_flag_is_one_byte_at_a_fixed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body = StoredBody::Memory(Bytes::from_static(b"body"));
        write_file(&dir.path().join("tmp-f"), &path, &Meta::sample(), &body).unwrap();
        let variant = Variant {
            path: path.clone(),
            vary: Vec::new(),
            surrogate_keys: Vec::new(),
            file_len: 0,
            response_time: SystemTime::now(),
            soft_purged: AtomicBool::new(false),
            hit_once: AtomicBool::new(false),
        };
        let jobs = FileJobs::start().unwrap();
        variant.mark_soft(&jobs);
        jobs.flush();
        let header = read_header(&File::open(&path).unwrap()).unwrap();
        assert!(header.soft_purged);
        assert_eq!(header.body_len, 4);
    }
}
