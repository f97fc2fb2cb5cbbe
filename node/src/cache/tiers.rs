//! The disk tier's hooks in the request path and in purges: the memory
//! tier (the [`CacheStore`]) in front, the [`DiskTier`] behind it. The
//! layer and purges reach them through [`Tiers`], a view of both that
//! `EdgeCache::tiers` lends; this file imports the store and the disk tier
//! and neither the layer nor anything that imports it, so the graph runs
//! one way: layer -> tiers -> disk -> store.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use edge_common::sync::PurgeTarget;

use super::disk::{DiskSink, DiskTier, Meta};
use super::policy::Received;
use super::store::{CacheKey, CacheStore, Entry};

/// Both tiers of a cache, borrowed.
pub struct Tiers<'a> {
    pub store: &'a CacheStore,
    pub disk: Option<&'a Arc<DiskTier>>,
}

impl Tiers<'_> {
    /// The stored variant for a request with these headers: from memory,
    /// else from disk (a small one is promoted into memory).
    pub async fn stored(&self, key: &CacheKey, headers: &HeaderMap) -> Option<Arc<Entry>> {
        if let Some(entry) = self.store.get(key, headers) {
            return Some(entry);
        }
        let disk = self.disk?;
        let generation = self.store.generation(key);
        let limit = self.store.max_entry_bytes() as u64;
        let (entry, in_memory) = disk.get(key, headers, limit).await?;
        if !in_memory {
            return Some(Arc::new(entry));
        }
        if self
            .store
            .insert_unless_purged(key.clone(), entry, Some(generation))
            && let Some(entry) = self.store.get(key, headers)
        {
            return Some(entry);
        }
        // Not kept in memory (its header fields tipped it over the limit,
        // or a purge ran): serve it from its file.
        disk.get(key, headers, 0)
            .await
            .map(|(entry, _)| Arc::new(entry))
    }

    /// The largest body kept by either tier.
    pub fn entry_limit(&self) -> u64 {
        let memory = self.store.max_entry_bytes() as u64;
        self.disk
            .map_or(memory, |d| d.max_entry_bytes().max(memory))
    }

    /// Writes a complete response to disk too, unless its app was purged
    /// since `generation` (see [`super::store::CacheStore::generation`]).
    pub fn disk_store(&self, key: &CacheKey, entry: &Entry, generation: u64) {
        if let Some(disk) = self.disk
            && !entry.is_partial()
            && self.store.generation(key) == generation
        {
            disk.store(key, entry);
        }
    }

    /// Starts writing a body too large for memory to disk as it streams.
    #[allow(clippy::too_many_arguments)]
    pub fn disk_begin(
        &self,
        key: &CacheKey,
        status: StatusCode,
        headers: &HeaderMap,
        received: Received,
        request: &HeaderMap,
        generation: u64,
        first: Bytes,
    ) -> Option<DiskSink> {
        let disk = self.disk?;
        if self.store.generation(key) != generation {
            return None;
        }
        // The entry computes the Vary values and surrogate keys exactly as
        // the memory tier does; its empty body is not used.
        let entry = Entry::new(status, headers.clone(), Bytes::new(), received, request);
        disk.begin_stream(Meta::from_entry(key, &entry), first)
    }

    /// Hard removal of `key` from disk (memory is the caller's).
    pub fn disk_purge_key(&self, key: &CacheKey) {
        if let Some(disk) = self.disk {
            disk.purge_key(key, false);
        }
    }

    /// A purge's disk half; returns how many files it removed or marked.
    pub fn disk_purge(&self, tenant: &str, app: &str, target: &PurgeTarget, soft: bool) -> usize {
        let Some(disk) = self.disk else {
            return 0;
        };
        match target {
            PurgeTarget::All => disk.purge_app(tenant, app, None, soft),
            PurgeTarget::Key { key } => disk.purge_app(tenant, app, Some(key), soft),
            PurgeTarget::Url { url } => disk.purge_url(tenant, app, url, soft),
        }
    }

    /// Removes an app's files (an app this node no longer serves).
    pub fn disk_forget_app(&self, tenant: &str, app: &str) {
        if let Some(disk) = self.disk {
            disk.forget_app(tenant, app);
        }
    }
}
