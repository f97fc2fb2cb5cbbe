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
use super::policy::{self, Received};

/// Variants kept per key; a response varying on a header with many values
/// (say `User-Agent`) cannot fill the cache with one URL.
pub const MAX_VARIANTS: usize = 8;

/// What names a stored resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn new(tenant: &str, app: &str, scheme: &str, host: &str, path_and_query: &str) -> Self {
        // NUL never occurs in these parts (validated names, a host header,
        // a request target), so the join is unambiguous. Built by hand: this
        // runs on every lookup.
        let parts = [tenant, app, scheme, host, path_and_query];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push('\0');
            }
            key.push_str(part);
        }
        Self(key)
    }

    /// The key's scheme (`http`, `https`, or `fetch+http(s)` for a
    /// component's fetches), host and request target.
    pub fn resource(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.0.splitn(5, '\0').skip(2);
        Some((parts.next()?, parts.next()?, parts.next()?))
    }

    /// The tenant and app the key belongs to.
    fn owner(&self) -> (&str, &str) {
        let mut parts = self.0.splitn(3, '\0');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// Whether this key belongs to `tenant`'s `app`.
    pub fn is_app(&self, tenant: &str, app: &str) -> bool {
        let mut parts = self.0.splitn(3, '\0');
        parts.next() == Some(tenant) && parts.next() == Some(app)
    }
}

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
    /// The request's values of the headers `Vary` names (lowercase names).
    pub vary: Vec<(String, Option<HeaderValue>)>,
    /// `Surrogate-Key` tags.
    pub surrogate_keys: Vec<String>,
    /// Corrected initial age (RFC 9111 §4.2.3) when it was received.
    initial_age: Duration,
    /// When this entry was built (its body complete, or its 304 merged).
    pub created: std::time::Instant,
    /// Set by a soft purge: the entry must be revalidated before use.
    pub invalidated: std::sync::atomic::AtomicBool,
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
        let directives = policy::response_directives(&headers);
        let lifetime = policy::freshness_lifetime_with(status, &headers, &directives);
        let vary = policy::vary_names(&headers)
            .unwrap_or_default()
            .into_iter()
            .map(|name| {
                let value = request.get(name.as_str()).cloned();
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
        Self {
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
            invalidated: Default::default(),
        }
    }

    /// Whether this variant was stored for a request with these headers.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request.get(name.as_str()) == value.as_ref())
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
        self.body.memory_bytes() + headers + 256
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
}

impl CacheStore {
    /// A store holding at most `capacity_bytes` of responses, none larger
    /// than `max_entry_bytes`.
    pub fn new(capacity_bytes: u64, max_entry_bytes: usize, metrics: Option<StoreMetrics>) -> Self {
        let listener_metrics = metrics.clone();
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
        }
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
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
        if entry.weight() > self.max_entry_bytes {
            return false;
        }
        let entry = Arc::new(entry);
        let owner = self.metrics.as_ref().map(|_| key.clone());
        let mut old_weight = 0;
        let stored = self.entries.entry(key).and_upsert_with(|existing| {
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
            Arc::new(Variants(variants))
        });
        if let (Some(metrics), Some(owner)) = (&self.metrics, owner) {
            metrics.add_bytes(&owner, stored.into_value().weight() - old_weight);
        }
        true
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

    /// Purges `tenant`'s `app` entries whose key's (scheme, host, target)
    /// satisfy `resource`. Walks the whole store, like [`Self::purge_app`].
    pub fn purge_resources(
        &self,
        tenant: &str,
        app: &str,
        resource: impl Fn(&str, &str, &str) -> bool,
        soft: bool,
    ) -> usize {
        let mut purged = 0;
        for (key, _) in self.entries.iter() {
            if key.is_app(tenant, app)
                && key
                    .resource()
                    .is_some_and(|(scheme, host, target)| resource(scheme, host, target))
            {
                purged += self.purge_key(&key, soft);
            }
        }
        purged
    }

    /// Purges `tenant`'s `app` entries that carry `tag` (or all of them).
    /// Walks the whole store: purges are rare, lookups are not.
    pub fn purge_app(&self, tenant: &str, app: &str, tag: Option<&str>, soft: bool) -> usize {
        let mut purged = 0;
        for (key, variants) in self.entries.iter() {
            if !key.is_app(tenant, app) {
                continue;
            }
            let hit = |e: &Arc<Entry>| tag.is_none_or(|t| e.surrogate_keys.iter().any(|k| k == t));
            if !variants.0.iter().any(hit) {
                continue;
            }
            if soft {
                for entry in variants.0.iter().filter(|e| hit(e)) {
                    entry.invalidated.store(true, Ordering::Relaxed);
                    purged += 1;
                }
            } else {
                let keep = Variants(variants.0.iter().filter(|e| !hit(e)).cloned().collect());
                purged += variants.0.len() - keep.0.len();
                if keep.0.is_empty() {
                    self.entries.remove(&*key);
                } else {
                    // A replacement: the listener leaves its bytes to us.
                    if let Some(metrics) = &self.metrics {
                        metrics.add_bytes(&key, keep.weight() - variants.weight());
                    }
                    self.entries.insert((*key).clone(), Arc::new(keep));
                }
            }
        }
        purged
    }

    /// Applies moka's pending bookkeeping: evictions for room (and their
    /// metrics) happen here. moka also does it as writes come in, but only
    /// in batches; without a periodic call the store could stay above its
    /// capacity by the last batch's bytes once traffic stops.
    pub fn run_maintenance(&self) {
        self.entries.run_pending_tasks();
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

    fn received() -> Received {
        let now = SystemTime::now();
        Received {
            request_time: now,
            response_time: now,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

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
        assert_eq!(store.purge_app("tenant-b", "web", None, false), 0);
        assert!(
            store.get(&a, &HeaderMap::new()).is_some(),
            "another tenant cannot purge it"
        );
        assert_eq!(store.purge_app("tenant-a", "web", None, false), 1);
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
        assert_eq!(store.purge_app("t", "a", Some("red"), true), 1);
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
        assert_eq!(store.purge_app("t", "a", Some("blue"), false), 2);
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
        store.purge_app("t", "b", Some("k"), false);
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
}
