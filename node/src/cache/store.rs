//! Stored responses: a moka cache weighted by bytes, keyed by everything
//! that names a resource for one app (tenant, app, scheme, host, path and
//! query), holding up to a few variants per key (one per combination of the
//! request headers the response's `Vary` names).
//!
//! The tenant and app are part of every key and of every purge, so no
//! tenant can read, overwrite or purge another's entries; request headers
//! not named by `Vary` are not part of the key and cannot change what a
//! later request gets.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};

use super::body::StoredBody;
use super::encoded::EncodedCopies;
use super::index::{PurgeIndex, Selection};
use super::parts::Parts;
use super::policy::{self, Received};

pub use super::key::CacheKey;

/// Variants kept per key; a response varying on a header with many values
/// (say `User-Agent`) cannot fill the cache with one URL.
pub const MAX_VARIANTS: usize = 8;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: StoredBody,
    pub received: Received,
    /// Its directives for this cache, parsed once here rather than on
    /// every hit.
    pub directives: policy::CacheControl,
    /// Freshness lifetime for this cache.
    pub lifetime: Duration,
    /// The request's values of the headers `Vary` names (lowercase names),
    /// normalised ([`super::vary`]).
    pub vary: Vec<(String, Option<HeaderValue>)>,
    /// `Surrogate-Key` tags.
    pub surrogate_keys: Vec<String>,
    /// Whether it has `Surrogate-Control` or `Surrogate-Key` fields, which
    /// a hit takes out (known here, so a hit without them looks for none).
    pub surrogate_fields: bool,
    /// Corrected initial age (RFC 9111 §4.2.3) when it was received.
    initial_age: Duration,
    /// When this entry was built (its body complete, or its 304 merged).
    pub created: std::time::Instant,
    /// Set by a soft purge: the entry must be revalidated before use.
    pub invalidated: std::sync::atomic::AtomicBool,
    /// A partial entry (stored 206 answers, see `range`): the parts held.
    /// Its `body` is then empty and its status 206; memory only, never
    /// written to disk.
    pub parts: Option<Parts>,
    /// Its compressed copies, if compression may apply to it (`encoded`).
    pub encoded: Option<Arc<EncodedCopies>>,
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: impl Into<StoredBody>,
        received: Received,
        request: &HeaderMap,
    ) -> Self {
        let body = body.into();
        let mut headers = headers;
        // A stored whole response answers ranges (`range::respond`): said
        // once here rather than on every hit.
        if status == StatusCode::OK {
            headers.insert(
                http::header::ACCEPT_RANGES,
                HeaderValue::from_static("bytes"),
            );
        }
        let directives = policy::response_directives(&headers);
        let lifetime = policy::freshness_lifetime_received(
            status,
            &headers,
            &directives,
            received.response_time,
        );
        let vary = policy::vary_names(&headers)
            .unwrap_or_default()
            .into_iter()
            .map(|name| {
                let value = super::vary::normalized(request, &name);
                (name, value)
            })
            .collect();
        let surrogate_keys = headers
            .get_all("surrogate-key")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split_ascii_whitespace().map(str::to_string))
            .take(64)
            .collect();
        let initial_age = policy::current_age(&headers, received, received.response_time);
        let encoded = EncodedCopies::for_response(status, &headers, &body);
        let surrogate_fields = headers.contains_key(policy::SURROGATE_CONTROL)
            || headers.contains_key("surrogate-key");
        Self {
            encoded,
            initial_age,
            created: std::time::Instant::now(),
            status,
            headers,
            body,
            received,
            directives,
            lifetime,
            vary,
            surrogate_keys,
            surrogate_fields,
            invalidated: Default::default(),
            parts: None,
        }
    }

    /// Whether this entry holds only parts of a response (answering only
    /// range requests it covers).
    pub fn is_partial(&self) -> bool {
        self.parts.is_some()
    }

    /// Whether this variant was stored for a request with these headers.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| super::vary::matches(request, name, value.as_ref()))
    }

    /// RFC 9111 §4.2.3: the age when stored (from `Age`, `Date` and the
    /// response delay, computed once) plus the time since.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now
            .duration_since(self.received.response_time)
            .unwrap_or_default();
        self.initial_age + resident
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.memory_bytes()
            + self.parts.as_ref().map_or(0, Parts::memory_bytes)
            + headers
            + 256
            + self.encoded.as_ref().map_or(0, |e| e.memory_bytes())
    }
}

#[derive(Debug, Default)]
struct Variants(Vec<Arc<Entry>>);

impl Variants {
    fn weight(&self) -> i64 {
        self.0.iter().map(|e| e.weight() as i64).sum()
    }
}

/// The store's metrics per tenant and app: bytes held
/// (`edge_cache_bytes`) and entries evicted for room
/// (`edge_cache_evictions_total`).
#[derive(Clone)]
pub struct StoreMetrics {
    pub bytes: prometheus::IntGaugeVec,
    pub evictions: prometheus::IntCounterVec,
}

impl StoreMetrics {
    fn add_bytes(&self, key: &CacheKey, delta: i64) {
        if delta != 0 {
            let (tenant, app) = key.owner();
            self.bytes.with_label_values(&[tenant, app]).add(delta);
        }
    }
}

pub struct CacheStore {
    entries: moka::sync::Cache<CacheKey, Arc<Variants>>,
    max_entry_bytes: usize,
    metrics: Option<StoreMetrics>,
    /// Which keys each app, surrogate key and target has; purges go
    /// through it instead of walking `entries`.
    index: Arc<PurgeIndex>,
}

/// How the purge index names a stored value (see [`PurgeIndex::forget`]).
fn value_id(variants: &Arc<Variants>) -> usize {
    Arc::as_ptr(variants) as usize
}

/// Every surrogate key of a stored value's variants.
fn value_tags(variants: &Variants) -> impl Iterator<Item = &str> {
    variants
        .0
        .iter()
        .flat_map(|e| e.surrogate_keys.iter().map(String::as_str))
}

impl CacheStore {
    /// A store holding at most `capacity_bytes` of responses, none larger
    /// than `max_entry_bytes`.
    pub fn new(capacity_bytes: u64, max_entry_bytes: usize, metrics: Option<StoreMetrics>) -> Self {
        let listener_metrics = metrics.clone();
        let index = Arc::new(PurgeIndex::default());
        let listener_index = index.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_key: &CacheKey, variants: &Arc<Variants>| {
                let bytes: usize = variants.0.iter().map(|e| e.weight()).sum();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |key: Arc<CacheKey>, value: Arc<Variants>, cause| {
                use moka::notification::RemovalCause;
                // A replaced value is accounted for by whoever replaced it.
                if cause == RemovalCause::Replaced {
                    return;
                }
                listener_index.forget(&key, value_id(&value));
                if let Some(metrics) = &listener_metrics {
                    metrics.add_bytes(&key, -value.weight());
                }
                if cause == RemovalCause::Size
                    && let Some(metrics) = &listener_metrics
                {
                    let (tenant, app) = key.owner();
                    metrics.evictions.with_label_values(&[tenant, app]).inc();
                }
            })
            .build();
        Self {
            entries,
            max_entry_bytes,
            metrics,
            index,
        }
    }

    /// The purge generation of `key`'s app now: pass it to
    /// [`Self::insert_unless_purged`] with what a miss starting now fetches.
    pub fn generation(&self, key: &CacheKey) -> u64 {
        self.index.generation(key)
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Whether anything (some variant) is stored under `key`.
    pub fn has_key(&self, key: &CacheKey) -> bool {
        self.entries.contains_key(key)
    }

    /// The stored variant for a request with these headers.
    pub fn get(&self, key: &CacheKey, request: &HeaderMap) -> Option<Arc<Entry>> {
        self.entries
            .get(key)?
            .0
            .iter()
            .find(|e| e.matches(request))
            .cloned()
    }

    /// Stores `entry`, replacing the variant for the same `Vary` values.
    /// Entries over the size limit are not stored.
    pub fn insert(&self, key: CacheKey, entry: Entry) -> bool {
        self.insert_unless_purged(key, entry, None)
    }

    /// Whether `entry` is small enough to be kept.
    pub fn fits(&self, entry: &Entry) -> bool {
        entry.weight() <= self.max_entry_bytes
    }

    /// [`Self::insert`], unless the app was purged since `generation`
    /// ([`Self::generation`] when the miss started): then what was fetched
    /// may be what the purge meant to remove, and it is not kept (`false`).
    pub fn insert_unless_purged(
        &self,
        key: CacheKey,
        entry: Entry,
        generation: Option<u64>,
    ) -> bool {
        self.keep(key, entry, generation).is_some()
    }

    /// [`Self::insert_unless_purged`], returning the entry as stored: a
    /// caller that serves it needs no second lookup.
    pub fn keep(&self, key: CacheKey, entry: Entry, generation: Option<u64>) -> Option<Arc<Entry>> {
        if entry.weight() > self.max_entry_bytes {
            return None;
        }
        if let Some(encoded) = &entry.encoded {
            encoded.stored_under(&key.0);
        }
        let entry = Arc::new(entry);
        let mut old_weight = 0;
        let index = &self.index;
        // Recorded in the index under moka's lock of the key, so that two
        // writes of one key are recorded in the order they were made.
        let result = self
            .entries
            .entry(key.clone())
            .and_compute_with(|existing| {
                let mut variants: Vec<Arc<Entry>> = existing
                    .map(|e| {
                        let old = e.into_value();
                        old_weight = old.weight();
                        old.0.clone()
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| e.vary != entry.vary)
                    .collect();
                variants.insert(0, entry.clone());
                variants.truncate(MAX_VARIANTS);
                let value = Arc::new(Variants(variants));
                if index.record(&key, value_id(&value), value_tags(&value), generation) {
                    moka::ops::compute::Op::Put(value)
                } else {
                    // Purged while it was fetched: what it fetched may be what
                    // the purge meant to remove.
                    moka::ops::compute::Op::Nop
                }
            });
        let stored = match result {
            moka::ops::compute::CompResult::Inserted(v)
            | moka::ops::compute::CompResult::ReplacedWith(v) => v.into_value(),
            _ => return None,
        };
        if let Some(metrics) = &self.metrics {
            metrics.add_bytes(&key, stored.weight() - old_weight);
        }
        Some(entry)
    }

    /// Keeps an encoded copy (`compress`): `add` puts it into `encoded`
    /// and says how many bytes it added. Only while the entry holding
    /// `encoded` is still stored under its key (a purged or replaced entry
    /// gets none), and under the key's lock, so a concurrent insert or
    /// purge either sees the copy or removes it. moka weighs a value only
    /// when it is put, so the key's variants are put again as they are.
    pub fn grow(&self, encoded: &Arc<EncodedCopies>, add: impl FnOnce() -> usize) -> usize {
        let Some(owner) = encoded.owner() else {
            return 0;
        };
        let key = CacheKey(owner.to_string());
        let mut added = 0;
        let result = self.entries.entry(key.clone()).and_compute_with(|stored| {
            use moka::ops::compute::Op;
            let Some(stored) = stored else {
                return Op::Nop;
            };
            let variants = stored.into_value();
            let holds = variants
                .0
                .iter()
                .any(|e| e.encoded.as_ref().is_some_and(|c| Arc::ptr_eq(c, encoded)));
            if !holds {
                return Op::Nop;
            }
            added = add();
            if added == 0 {
                Op::Nop
            } else {
                // The same variants under a new value: the index names
                // values (recorded under the key's lock, like inserts).
                let value = Arc::new(Variants(variants.0.clone()));
                self.index
                    .record(&key, value_id(&value), value_tags(&value), None);
                Op::Put(value)
            }
        });
        if let moka::ops::compute::CompResult::ReplacedWith(_) = result
            && let Some(metrics) = &self.metrics
        {
            metrics.add_bytes(&key, added as i64);
        }
        added
    }

    /// Removes every variant of `key` (hard purge, or invalidation after an
    /// unsafe method); with `soft`, marks them for revalidation instead.
    pub fn purge_key(&self, key: &CacheKey, soft: bool) -> usize {
        if soft {
            let Some(variants) = self.entries.get(key) else {
                return 0;
            };
            for entry in &variants.0 {
                entry.invalidated.store(true, Ordering::Relaxed);
            }
            variants.0.len()
        } else {
            self.entries.remove(key).map(|v| v.0.len()).unwrap_or(0)
        }
    }

    /// Purges `tenant`'s `app` entries that `selection` names through the
    /// index (only their keys are visited) and whose key's (scheme, host,
    /// target) satisfy `resource`; returns how many stored responses it
    /// removed or marked. A tag selects variants, not keys: the other
    /// variants of a key stay.
    pub fn purge(
        &self,
        tenant: &str,
        app: &str,
        selection: Selection<'_>,
        resource: impl Fn(&str, &str, &str) -> bool,
        soft: bool,
    ) -> usize {
        let tag = match selection {
            Selection::Tag(tag) => Some(tag),
            _ => None,
        };
        let hit = |e: &Arc<Entry>| tag.is_none_or(|t| e.surrogate_keys.iter().any(|k| k == t));
        let mut purged = 0;
        for key in self.index.purge(tenant, app, selection) {
            let Some((scheme, host, target)) = key.resource() else {
                continue;
            };
            if !resource(scheme, host, target) {
                continue;
            }
            if soft {
                if let Some(variants) = self.entries.get(&key) {
                    for entry in variants.0.iter().filter(|e| hit(e)) {
                        entry.invalidated.store(true, Ordering::Relaxed);
                        purged += 1;
                    }
                }
                continue;
            }
            if tag.is_none() {
                purged += self.purge_key(&key, false);
                continue;
            }
            // Some variants may not carry the tag: keep them, as one
            // atomic replacement of the key's value.
            let mut delta = 0;
            let mut kept = false;
            self.entries.entry(key.clone()).and_compute_with(|current| {
                use moka::ops::compute::Op;
                let Some(current) = current else {
                    return Op::Nop;
                };
                let variants = current.value();
                let keep = Variants(variants.0.iter().filter(|e| !hit(e)).cloned().collect());
                purged += variants.0.len() - keep.0.len();
                if keep.0.len() == variants.0.len() {
                    Op::Nop
                } else if keep.0.is_empty() {
                    Op::Remove
                } else {
                    // A replacement: the listener leaves its bytes to us.
                    delta = keep.weight() - variants.weight();
                    let keep = Arc::new(keep);
                    // Under the key's lock, like inserts.
                    self.index
                        .record(&key, value_id(&keep), value_tags(&keep), None);
                    kept = true;
                    Op::Put(keep)
                }
            });
            if kept && let Some(metrics) = &self.metrics {
                metrics.add_bytes(&key, delta);
            }
        }
        purged
    }

    /// Drops every entry of `tenant`'s `app` (an app this node no longer
    /// serves).
    pub fn forget_app(&self, tenant: &str, app: &str) {
        for key in self.index.forget_app(tenant, app) {
            self.entries.invalidate(&key);
        }
    }

    /// Applies moka's pending bookkeeping: evictions for room (and their
    /// metrics) happen here. moka also does it as writes come in, but only
    /// in batches; without a periodic call the store could stay above its
    /// capacity by the last batch's bytes once traffic stops.
    pub fn run_maintenance(&self) {
        self.entries.run_pending_tasks();
        // Keys left behind by a removal notice that overtook their
        // recording; rare, so only swept once they are many.
        if self.index.recorded_keys() as u64 > 2 * self.entries.entry_count() + 1024 {
            self.index.sweep(|key| self.entries.contains_key(key));
        }
    }

    /// Bytes stored (moka's weighted size, after pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::cache::test_support::received_now as received;

    use crate::cache::test_support::headers;

    fn entry(body: &'static str, response: &[(&str, &str)], request: &HeaderMap) -> Entry {
        Entry::new(
            StatusCode::OK,
            headers(response),
            Bytes::from_static(body.as_bytes()),
            received(),
            request,
        )
    }

    #[test]
    fn keys_separate_tenants_and_apps() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let a = CacheKey::new("tenant-a", "web", "https", "x.test", "/p");
        let b = CacheKey::new("tenant-b", "web", "https", "x.test", "/p");
        store.insert(
            a.clone(),
            entry("a", &[("cache-control", "max-age=60")], &HeaderMap::new()),
        );
        assert!(store.get(&a, &HeaderMap::new()).is_some());
        assert!(
            store.get(&b, &HeaderMap::new()).is_none(),
            "another tenant misses"
        );
        assert_eq!(
            store.purge("tenant-b", "web", Selection::All, |_, _, _| true, false),
            0
        );
        assert!(
            store.get(&a, &HeaderMap::new()).is_some(),
            "another tenant cannot purge it"
        );
        assert_eq!(
            store.purge("tenant-a", "web", Selection::All, |_, _, _| true, false),
            1
        );
        assert!(store.get(&a, &HeaderMap::new()).is_none());
    }

    #[test]
    fn variants_follow_vary_and_unkeyed_headers_do_not_matter() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        let vary = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
        let en = headers(&[("accept-language", "en")]);
        let fr = headers(&[("accept-language", "fr"), ("x-forwarded-host", "evil.test")]);
        store.insert(key.clone(), entry("hello", &vary, &en));
        store.insert(key.clone(), entry("bonjour", &vary, &fr));
        assert_eq!(
            store.get(&key, &en).unwrap().body.as_bytes().unwrap(),
            "hello"
        );
        // X-Forwarded-Host is not in Vary: it neither misses nor poisons.
        let fr_other = headers(&[
            ("accept-language", "fr"),
            ("x-forwarded-host", "other.test"),
        ]);
        assert_eq!(
            store.get(&key, &fr_other).unwrap().body.as_bytes().unwrap(),
            "bonjour"
        );
        assert!(
            store
                .get(&key, &headers(&[("accept-language", "de")]))
                .is_none()
        );
        assert!(
            store.get(&key, &HeaderMap::new()).is_none(),
            "absent is its own value"
        );
        // A new response for the same variant replaces it.
        store.insert(key.clone(), entry("hi", &vary, &en));
        assert_eq!(store.get(&key, &en).unwrap().body.as_bytes().unwrap(), "hi");
        // Variants are bounded.
        for i in 0..20 {
            let lang = headers(&[("accept-language", &format!("l{i}"))]);
            store.insert(key.clone(), entry("x", &vary, &lang));
        }
        assert!(
            store.get(&key, &en).is_none(),
            "the oldest variants went first"
        );
    }

    #[test]
    fn surrogate_keys_purge_softly_or_hard_and_size_is_bounded() {
        let store = CacheStore::new(1 << 20, 4096, None);
        let none = HeaderMap::new();
        let k1 = CacheKey::new("t", "a", "https", "x.test", "/1");
        let k2 = CacheKey::new("t", "a", "https", "x.test", "/2");
        store.insert(
            k1.clone(),
            entry(
                "1",
                &[
                    ("cache-control", "max-age=60"),
                    ("surrogate-key", "red blue"),
                ],
                &none,
            ),
        );
        store.insert(
            k2.clone(),
            entry(
                "2",
                &[("cache-control", "max-age=60"), ("surrogate-key", "blue")],
                &none,
            ),
        );
        assert_eq!(
            store.purge("t", "a", Selection::Tag("red"), |_, _, _| true, true),
            1
        );
        assert!(
            store
                .get(&k1, &none)
                .unwrap()
                .invalidated
                .load(Ordering::Relaxed)
        );
        assert!(
            !store
                .get(&k2, &none)
                .unwrap()
                .invalidated
                .load(Ordering::Relaxed)
        );
        assert_eq!(
            store.purge("t", "a", Selection::Tag("blue"), |_, _, _| true, false),
            2
        );
        assert!(store.get(&k1, &none).is_none() && store.get(&k2, &none).is_none());
        // Too large for one entry: not stored.
        let big = Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![0u8; 8192]),
            received(),
            &none,
        );
        assert!(!store.insert(k1.clone(), big));
        // The total is bounded by weight: old entries are evicted.
        let metrics = test_metrics();
        let small = CacheStore::new(64 << 10, 8192, Some(metrics.clone()));
        for i in 0..200 {
            let key = CacheKey::new("t", "a", "https", "x.test", &format!("/{i}"));
            small.insert(
                key,
                Entry::new(
                    StatusCode::OK,
                    HeaderMap::new(),
                    Bytes::from(vec![0u8; 2000]),
                    received(),
                    &none,
                ),
            );
        }
        assert!(small.weighted_size() <= 64 << 10);
        assert!(metrics.evictions.with_label_values(&["t", "a"]).get() > 0);
    }

    #[test]
    fn what_a_miss_fetched_before_a_purge_of_its_app_is_not_kept() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let none = HeaderMap::new();
        let fresh = [("cache-control", "max-age=60"), ("surrogate-key", "k")];
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        let neighbour = CacheKey::new("t", "b", "https", "x.test", "/");
        // Misses start; purges run before their answers are stored.
        let (since, neighbour_since) = (store.generation(&key), store.generation(&neighbour));
        store.purge("t", "a", Selection::Target("/other"), |_, _, _| true, false);
        assert!(
            store.insert_unless_purged(key.clone(), entry("kept", &fresh, &none), Some(since)),
            "a purge of another URL does not stop it"
        );
        store.purge("t", "a", Selection::Target("/"), |_, _, _| true, false);
        assert!(!store.insert_unless_purged(key.clone(), entry("old", &fresh, &none), Some(since)));
        assert!(
            store.get(&key, &none).is_none(),
            "what it fetched is not kept"
        );
        assert!(
            store.insert_unless_purged(
                neighbour.clone(),
                entry("b", &fresh, &none),
                Some(neighbour_since)
            ),
            "another app's misses are not affected"
        );
        // A miss that starts after the purge stores, and purges find it.
        let since = store.generation(&key);
        assert!(store.insert_unless_purged(key.clone(), entry("new", &fresh, &none), Some(since)));
        assert_eq!(
            store.purge("t", "a", Selection::Tag("k"), |_, _, _| true, false),
            1
        );
        assert!(store.get(&key, &none).is_none());
        assert!(store.get(&neighbour, &none).is_some());
    }

    #[test]
    fn a_tag_purge_keeps_the_variants_without_the_tag_and_they_stay_purgeable() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        let (en, fr) = (
            headers(&[("accept-language", "en")]),
            headers(&[("accept-language", "fr")]),
        );
        let tagged = [
            ("cache-control", "max-age=60"),
            ("vary", "accept-language"),
            ("surrogate-key", "en-only"),
        ];
        let plain = [("cache-control", "max-age=60"), ("vary", "accept-language")];
        store.insert(key.clone(), entry("hello", &tagged, &en));
        store.insert(key.clone(), entry("bonjour", &plain, &fr));
        let tag = |t| Selection::Tag(t);
        assert_eq!(
            store.purge("t", "a", tag("en-only"), |_, _, _| true, false),
            1
        );
        assert!(store.get(&key, &en).is_none());
        assert!(store.get(&key, &fr).is_some(), "the untagged variant stays");
        assert_eq!(
            store.purge("t", "a", Selection::All, |_, _, _| true, false),
            1
        );
        assert!(store.get(&key, &fr).is_none());
    }

    fn test_metrics() -> StoreMetrics {
        let labels = &["tenant", "app"];
        StoreMetrics {
            bytes: prometheus::IntGaugeVec::new(prometheus::Opts::new("b", "b"), labels).unwrap(),
            evictions: prometheus::IntCounterVec::new(prometheus::Opts::new("e", "e"), labels)
                .unwrap(),
        }
    }

    #[test]
    fn bytes_and_evictions_are_accounted_per_app() {
        let metrics = test_metrics();
        let bytes = |app: &str| metrics.bytes.with_label_values(&["t", app]).get();
        let store = CacheStore::new(64 << 10, 8192, Some(metrics.clone()));
        let none = HeaderMap::new();
        let body = |n: usize| {
            Entry::new(
                StatusCode::OK,
                headers(&[("cache-control", "max-age=60"), ("surrogate-key", "k")]),
                Bytes::from(vec![0u8; n]),
                received(),
                &none,
            )
        };
        let a1 = CacheKey::new("t", "a", "https", "x.test", "/1");
        let b1 = CacheKey::new("t", "b", "https", "x.test", "/1");
        let (w100, w300) = (body(100).weight() as i64, body(300).weight() as i64);
        store.insert(a1.clone(), body(100));
        store.insert(b1.clone(), body(300));
        assert_eq!((bytes("a"), bytes("b")), (w100, w300));
        // Replacing the variant counts the difference.
        store.insert(a1.clone(), body(300));
        assert_eq!(bytes("a"), w300);
        store.purge_key(&a1, true);
        assert_eq!(bytes("a"), w300, "a soft purge keeps the bytes");
        store.purge_key(&a1, false);
        assert_eq!(bytes("a"), 0);
        store.purge("t", "b", Selection::Tag("k"), |_, _, _| true, false);
        assert_eq!(bytes("b"), 0);
        // Evictions for room are counted for the app that lost entries,
        // and their bytes leave its gauge.
        for i in 0..100 {
            let key = CacheKey::new("t", "a", "https", "x.test", &format!("/{i}"));
            store.insert(key, body(2000));
        }
        store.entries.run_pending_tasks();
        let evicted = metrics.evictions.with_label_values(&["t", "a"]).get();
        assert!(evicted > 0);
        assert_eq!(bytes("a") as u64, store.weighted_size());
    }

    #[test]
    fn vary_values_are_normalised_before_keying() {
        let store = CacheStore::new(1 << 20, 1 << 16, None);
        let key = CacheKey::new("t", "a", "https", "x.test", "/");
        let vary = [
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Encoding, Accept-Language, X-Device"),
        ];
        let stored_for = headers(&[
            ("accept-encoding", "gzip, br"),
            ("accept-language", "en-US,en;q=0.9"),
            ("x-device", "Tablet  Pro"),
        ]);
        store.insert(key.clone(), entry("v", &vary, &stored_for));
        let variant = store.get(&key, &stored_for).unwrap();
        assert_eq!(variant.vary[0].1.as_ref().unwrap(), "br,gzip");
        for (ae, al, device) in [
            ("br,gzip", "en-us, en;q=0.9", " Tablet Pro "),
            ("gzip;q=1, BR, deflate;q=0", "EN-US,en;q=0.5", "Tablet Pro"),
        ] {
            let same = headers(&[
                ("accept-encoding", ae),
                ("accept-language", al),
                ("x-device", device),
            ]);
            assert!(store.get(&key, &same).is_some(), "{ae} / {al} / {device}");
        }
        for (ae, al, device) in [
            ("gzip", "en-US,en;q=0.9", "Tablet Pro"),
            ("br, gzip, *;q=0", "en-US,en;q=0.9", "Tablet Pro"),
            ("br, gzip", "en,en-US", "Tablet Pro"),
            ("br, gzip", "en-US,en;q=0.9", "tablet pro"),
        ] {
            let other = headers(&[
                ("accept-encoding", ae),
                ("accept-language", al),
                ("x-device", device),
            ]);
            assert!(store.get(&key, &other).is_none(), "{ae} / {al} / {device}");
        }
        // A second spelling replaces the variant rather than adding one.
        store.insert(
            key.clone(),
            entry(
                "w",
                &vary,
                &headers(&[
                    ("accept-encoding", "br ,gzip"),
                    ("accept-language", "en-us,en"),
                    ("x-device", "Tablet Pro"),
                ]),
            ),
        );
        assert_eq!(store.entries.get(&key).unwrap().0.len(), 1);
    }
}
