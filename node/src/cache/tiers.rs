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
    /// else from disk (a small one is promoted into memory, unless a purge
    /// that selects it ran since `generation`, the memory tier's
    /// generation read when the lookup began).
    pub async fn stored(
        &self,
        key: &CacheKey,
        headers: &HeaderMap,
        generation: u64,
    ) -> Option<Arc<Entry>> {
        if let Some(entry) = self.store.get(key, headers) {
            return Some(entry);
        }
        let disk = self.disk?;
        let limit = self.store.max_entry_bytes() as u64;
        let (entry, in_memory) = disk.get(key, headers, limit).await?;
        // Its header fields can tip a body under the limit over it: then
        // it is served as read, not kept in memory.
        if !in_memory || !self.store.fits(&entry) {
            return Some(Arc::new(entry));
        }
        // `None`: a purge that selects it ran while it was read, and what
        // was read may be what it removed.
        self.store.keep(key.clone(), entry, Some(generation))
    }

    /// The disk tier's purge generation of `key`'s app now (0 without a
    /// disk tier): what a miss reads when it starts, to hand to
    /// [`Self::disk_store`] or [`Self::disk_begin`].
    pub fn disk_generation(&self, key: &CacheKey) -> u64 {
        self.disk.map_or(0, |d| d.generation(key))
    }

    /// The largest body kept by either tier.
    pub fn entry_limit(&self) -> u64 {
        let memory = self.store.max_entry_bytes() as u64;
        self.disk
            .map_or(memory, |d| d.max_entry_bytes().max(memory))
    }

    /// Writes a complete response to disk too, unless its app was purged
    /// since `generation` (see [`super::store::CacheStore::generation`])
    /// or `disk_generation` ([`Self::disk_generation`]), both read when
    /// the miss started.
    pub fn disk_store(&self, key: &CacheKey, entry: &Entry, generation: u64, disk_generation: u64) {
        if let Some(disk) = self.disk
            && !entry.is_partial()
            && self.store.generation(key) == generation
        {
            disk.store(key, entry, disk_generation);
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
        disk_generation: u64,
        first: Bytes,
    ) -> Option<DiskSink> {
        let disk = self.disk?;
        if self.store.generation(key) != generation {
            return None;
        }
        // The entry computes the Vary values and surrogate keys exactly as
        // the memory tier does; its empty body is not used.
        let entry = Entry::new(status, headers.clone(), Bytes::new(), received, request);
        disk.begin_stream(Meta::from_entry(key, &entry), first, disk_generation)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::index::Selection;

    /// A disk tier holding `key` with a 4-byte body, and a memory tier in
    /// front that keeps entries up to `memory_max` bytes.
    async fn tiers(
        dir: &std::path::Path,
        key: &CacheKey,
        memory_max: usize,
    ) -> (CacheStore, Arc<DiskTier>) {
        let disk = Arc::new(DiskTier::open(dir, 1 << 20, 1 << 20, None).unwrap());
        disk.rebuild();
        let store = CacheStore::new(1 << 20, memory_max, None);
        let mut headers = HeaderMap::new();
        headers.insert(
            "cache-control",
            http::HeaderValue::from_static("max-age=60"),
        );
        let entry = crate::cache::test_support::entry_now(headers, Bytes::from_static(b"body"));
        disk.store(key, &entry, disk.generation(key));
        for _ in 0..500 {
            if disk.entry_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(disk.entry_count(), 1);
        (store, disk)
    }

    async fn body(entry: &Entry) -> Bytes {
        use http_body_util::BodyExt;
        entry.body.full().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_disk_hit_too_large_for_memory_is_served_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        // The body fits under the limit, its header fields do not.
        let (store, disk) = tiers(dir.path(), &key, 64).await;
        let tiers = Tiers {
            store: &store,
            disk: Some(&disk),
        };
        let none = HeaderMap::new();
        let entry = tiers
            .stored(&key, &none, store.generation(&key))
            .await
            .unwrap();
        assert!(matches!(
            entry.body,
            super::super::body::StoredBody::Memory(_)
        ));
        assert_eq!(body(&entry).await, "body");
        assert!(store.get(&key, &none).is_none(), "not kept in memory");
    }

    #[tokio::test]
    async fn a_disk_hit_is_not_promoted_past_a_purge_since_the_lookup_began() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        let (store, disk) = tiers(dir.path(), &key, 1 << 20).await;
        let tiers = Tiers {
            store: &store,
            disk: Some(&disk),
        };
        let none = HeaderMap::new();
        let began = store.generation(&key);
        // A purge of the app in the memory tier after the lookup began
        // (its disk half has not run yet): the first hit is served as read
        // and never kept; the second, which would promote it, misses.
        store.purge("t", "a", Selection::All, |_, _, _| true, false);
        assert!(tiers.stored(&key, &none, began).await.is_some());
        assert!(store.get(&key, &none).is_none(), "not kept in memory");
        assert!(tiers.stored(&key, &none, began).await.is_none());
        assert!(store.get(&key, &none).is_none(), "nothing promoted");
        // Lookups that began after it promote what the disk still has, on
        // the second hit.
        for promoted in [false, true] {
            let entry = tiers
                .stored(&key, &none, store.generation(&key))
                .await
                .unwrap();
            assert_eq!(body(&entry).await, "body");
            assert_eq!(store.get(&key, &none).is_some(), promoted);
        }
    }
}
