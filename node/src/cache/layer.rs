//! The cache on the request path: answer fresh hits from the store, collapse
//! concurrent misses, revalidate stale entries with a conditional request
//! (merging a 304 into the stored response), serve stale while refreshing
//! in the background (`stale-while-revalidate`) or when the backend fails
//! (`stale-if-error`), store what RFC 9111 allows while streaming it to the
//! client, invalidate on unsafe methods, and label every answer with
//! `x-cache`.
//!
//! The backend is whatever answers a miss: a tenant's component, an origin
//! route, or the origin a component fetches. The layer never calls it; it
//! tells the driver (the `serve` module) what to send
//! ([`Pending::backend_headers`]) and takes the result
//! ([`EdgeCache::complete`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::collapse::{self, Collapser, LeaderGuard, Outcome, Role};
use super::policy::{self, Received, Use};
use super::range;
pub use super::result::CacheResult;
use super::status::{Forward, Member};
pub use crate::config::CacheConfig;

use super::store::{CacheKey, CacheStore, Entry, StoreMetrics};
use crate::body::{ResponseBody, declared_length, full_body};

/// Header telling the client how the cache answered.
pub const CACHE_STATUS_HEADER: HeaderName = HeaderName::from_static("x-cache");
/// Send `x-edge-debug: surrogate-key` to see a response's `Surrogate-Key`.
pub const DEBUG_HEADER: HeaderName = HeaderName::from_static("x-edge-debug");
use super::policy::SURROGATE_CONTROL;
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

pub struct EdgeCache {
    pub store: CacheStore,
    /// The disk tier behind `store`, if `[cache] disk_path` is set.
    pub(super) disk: Option<Arc<super::disk::DiskTier>>,
    /// `edge_cache_purges_total{tenant,app,kind}`.
    pub(super) purges: Option<prometheus::IntCounterVec>,
    /// Background refreshes (stale-while-revalidate) at once, node-wide;
    /// past it, stale answers are served without starting another.
    refreshes: Arc<tokio::sync::Semaphore>,
    collapser: Arc<Collapser>,
    collapse_wait: Duration,
    /// "Hit-for-pass": keys whose last answer was not storable. Their
    /// misses are not collapsed for a while, so identical requests to an
    /// uncacheable resource do not queue behind each other.
    pass: moka::sync::Cache<CacheKey, ()>,
}

/// Background refreshes running at once, node-wide.
const MAX_REFRESHES: usize = 64;

/// How long a key stays in hit-for-pass, and how many keys it holds.
const PASS_TTL: Duration = Duration::from_secs(30);
const PASS_KEYS: u64 = 100_000;

/// What the request path does after the lookup.
pub(super) enum Lookup {
    /// Answer with this stored response (`Hit` or `Stale`); `collapsed` if
    /// it came from a concurrent miss this request waited for.
    Hit {
        response: Response<ResponseBody>,
        result: CacheResult,
        collapsed: bool,
    },
    /// Answer with this stale response now, and refresh the entry in the
    /// background: send a GET with `refresh.backend_headers` applied and
    /// hand the result to [`EdgeCache::complete`], then read its body to
    /// the end (that stores it).
    Refresh {
        response: Response<ResponseBody>,
        refresh: Pending,
    },
    /// Go to the backend; `Pending` says what to send and what to do with
    /// its answer.
    Miss(Pending),
    /// The request said `only-if-cached` and nothing usable is stored:
    /// answer 504 (RFC 9111 §5.2.1.7).
    NotCached,
}

/// How a miss's answer is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissKind {
    /// Stored if storable; followers may be waiting.
    Store,
    /// The key is in hit-for-pass: stored if it turns storable, but not
    /// collapsed.
    Passing,
    /// A HEAD that missed: forwarded as it is, the answer never stored.
    Forward,
    /// A range request that missed (or that a partial entry does not
    /// hold): sent with its `Range` and `If-Range`; a 206 is kept as a part
    /// ([`range::store_part`]), a 200 stored whole. Never collapsed.
    Range,
}

/// A miss in progress: what to send to the backend and what is needed to
/// store its answer.
pub(super) struct Pending {
    key: CacheKey,
    /// The client's request headers (its conditionals included: they are
    /// answered from the stored response, not forwarded).
    request_headers: HeaderMap,
    request_time: SystemTime,
    leader: Option<LeaderGuard>,
    kind: MissKind,
    /// The stored response this miss revalidates (a stale or `no-cache`
    /// entry), served again if the backend confirms it with a 304 or fails
    /// within its `stale-if-error` window.
    stale: Option<Arc<Entry>>,
    /// The app's purge generation when the miss started
    /// ([`CacheStore::generation`]): a miss that started before a purge of
    /// its app does not store what it fetched (it could be what the purge
    /// removed).
    generation: u64,
    /// The disk tier's generation of the app when the miss started
    /// (`Tiers::disk_generation`), for the same reason.
    disk_generation: u64,
    /// Why the request goes to the backend, for `Cache-Status`.
    forward: Forward,
    /// Held by a background refresh.
    _refresh: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Pending {
    /// Makes `headers` (the request about to go to the backend) right for
    /// the cache: the client's own conditionals are removed (the cache
    /// answers them from the full response it stores), and the stored
    /// entry's validators are sent instead, so an unchanged resource costs
    /// a 304.
    pub(super) fn backend_headers(&self, headers: &mut HeaderMap) {
        // Forwarded and hit-for-pass requests keep the client's own
        // conditionals: their answers go to that client only.
        if matches!(self.kind, MissKind::Forward | MissKind::Passing) {
            return;
        }
        for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
            headers.remove(name);
        }
        // A range miss keeps its Range and If-Range: the backend answers
        // the part (or the whole, if If-Range fails), both storable.
        if self.kind == MissKind::Store {
            headers.remove(header::IF_RANGE);
            headers.remove(header::RANGE);
        }
        if let Some(entry) = &self.stale {
            if let Some(etag) = entry.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = entry.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
    }

    /// The GET a background refresh sends for `uri`: the client's headers,
    /// with the stored validators instead of its conditionals.
    pub(super) fn refresh_request(&self, uri: &http::Uri) -> Request<ResponseBody> {
        let mut request = Request::new(full_body(Bytes::new()));
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = self.request_headers.clone();
        self.backend_headers(request.headers_mut());
        request
    }
}

/// The node's metrics the cache reports to (`edge_cache_bytes`,
/// `edge_cache_evictions_total`, `edge_cache_purges_total`), handed over
/// by whoever builds the cache, so that the cache does not import the
/// metrics module (which names the cache's results).
pub struct CacheMetrics {
    pub bytes: prometheus::IntGaugeVec,
    pub evictions: prometheus::IntCounterVec,
    pub purges: prometheus::IntCounterVec,
}

/// How often the store's pending evictions are applied when writes alone
/// do not: the longest the held bytes stay above `capacity_bytes`.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);

impl EdgeCache {
    /// Applies the store's pending evictions every [`MAINTENANCE_EVERY`]
    /// until `shutdown`.
    pub async fn maintain(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(MAINTENANCE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            self.store.run_maintenance();
            if let Some(disk) = &self.disk {
                // moka's housekeeping (which runs the eviction listener)
                // and the purge index's sweep can take a while on a large
                // index: off the async workers.
                let disk = disk.clone();
                let _ = tokio::task::spawn_blocking(move || disk.run_maintenance()).await;
            }
        }
    }

    /// Uses `disk` behind the memory tier.
    pub fn with_disk(mut self, disk: Arc<super::disk::DiskTier>) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Both tiers, for the disk tier's hooks (`tiers`).
    pub(super) fn tiers(&self) -> super::tiers::Tiers<'_> {
        super::tiers::Tiers {
            store: &self.store,
            disk: self.disk.as_ref(),
        }
    }

    /// A cache as `config` says; with `metrics`, stored bytes, evictions
    /// and purges are reported there.
    pub fn new(config: &CacheConfig, metrics: Option<CacheMetrics>) -> Self {
        let (store_metrics, purges) = match metrics {
            Some(m) => (
                Some(StoreMetrics {
                    bytes: m.bytes,
                    evictions: m.evictions,
                }),
                Some(m.purges),
            ),
            None => (None, None),
        };
        Self {
            store: CacheStore::new(config.capacity_bytes, config.max_entry_bytes, store_metrics),
            disk: None,
            purges,
            refreshes: Arc::new(tokio::sync::Semaphore::new(MAX_REFRESHES)),
            collapser: Arc::new(Collapser::default()),
            collapse_wait: config.collapse_wait,
            pass: moka::sync::Cache::builder()
                .max_capacity(PASS_KEYS)
                .time_to_live(PASS_TTL)
                .build(),
        }
    }

    pub fn key<B>(
        tenant: &str,
        app: &str,
        scheme: &str,
        host: &str,
        request: &Request<B>,
    ) -> CacheKey {
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        CacheKey::new(tenant, app, scheme, host, target)
    }

    /// Looks a GET or HEAD request up.
    pub(super) async fn lookup<B>(&self, key: CacheKey, request: &Request<B>) -> Lookup {
        let headers = request.headers();
        let method = request.method();
        let now = SystemTime::now();
        // The common case first: a fresh entry in memory answers without
        // the purge generations, which only matter to what a request may
        // store (a hit stores nothing).
        if let Some(entry) = self.store.get(&key, headers)
            && range::answerable(&entry, method, headers)
        {
            let age = entry.age(now);
            let lifetime = effective_lifetime(&entry);
            if policy::usability(headers, &entry.directives, lifetime, age) == Use::Fresh {
                return Lookup::Hit {
                    response: hit_response(
                        &entry,
                        method,
                        headers,
                        age,
                        CacheResult::Hit,
                        Member::hit(),
                    ),
                    result: CacheResult::Hit,
                    collapsed: false,
                };
            }
        }
        // A key in hit-for-pass has nothing stored (marking it purged it),
        // so a hit needs no look at the pass list.
        // Read before anything is looked up again: a purge from here on
        // stops what this request promotes or fetches from being kept.
        let generation = self.store.generation(&key);
        let disk_generation = self.tiers().disk_generation(&key);
        let stored = self.tiers().stored(&key, headers, generation).await;
        let nothing_stored = stored.is_none();
        // A partial entry answers only the ranges it holds; for anything
        // else nothing is stored (a range miss adds to it).
        let stored = stored.filter(|e| range::answerable(e, method, headers));
        let passing = stored.is_none() && self.pass.contains_key(&key);
        if let Some(entry) = &stored {
            let age = entry.age(now);
            let answer = |result, member| hit_response(entry, method, headers, age, result, member);
            let mut usable =
                policy::usability(headers, &entry.directives, effective_lifetime(entry), age);
            // A soft-purged entry is served stale only within its own
            // stale-while-revalidate / stale-if-error, not at a client's
            // `max-stale`.
            if usable == Use::StaleAllowed && entry.invalidated.load(Ordering::Relaxed) {
                usable = Use::Revalidate;
            }
            // A partial entry is not refreshed in the background: that
            // would fetch the whole response. Its range misses refresh it.
            if usable == Use::StaleWhileRevalidate && entry.is_partial() {
                usable = Use::Revalidate;
            }
            match usable {
                Use::Fresh => {
                    return Lookup::Hit {
                        response: answer(CacheResult::Hit, Member::hit()),
                        result: CacheResult::Hit,
                        collapsed: false,
                    };
                }
                Use::StaleAllowed => {
                    return Lookup::Hit {
                        response: answer(
                            CacheResult::Stale,
                            Member {
                                detail: Some("max-stale"),
                                ..Member::hit()
                            },
                        ),
                        result: CacheResult::Stale,
                        collapsed: false,
                    };
                }
                Use::StaleWhileRevalidate => {
                    let response = answer(
                        CacheResult::Stale,
                        Member {
                            detail: Some("stale-while-revalidate"),
                            ..Member::hit()
                        },
                    );
                    // One refresh per key at a time; everyone else is
                    // served stale meanwhile without waiting.
                    let permit = self.refreshes.clone().try_acquire_owned().ok();
                    return match (self.collapser.join(&key), permit) {
                        (Role::Leader(guard), Some(permit)) => Lookup::Refresh {
                            response,
                            refresh: Pending {
                                key,
                                request_headers: headers.clone(),
                                request_time: now,
                                leader: Some(guard),
                                kind: MissKind::Store,
                                stale: stored.clone(),
                                generation,
                                disk_generation,
                                forward: Forward::Stale,
                                _refresh: Some(permit),
                            },
                        },
                        _ => Lookup::Hit {
                            response,
                            result: CacheResult::Stale,
                            collapsed: false,
                        },
                    };
                }
                Use::Revalidate => {}
            }
        }
        if headers.contains_key(header::CACHE_CONTROL)
            && policy::parse_cache_control(headers, header::CACHE_CONTROL).only_if_cached
        {
            return Lookup::NotCached;
        }
        // What `Cache-Status` says the request went forward for.
        let forward = match &stored {
            Some(entry) if entry.is_partial() => Forward::Partial,
            Some(entry)
                if !entry.invalidated.load(Ordering::Relaxed)
                    && entry.age(now) < entry.lifetime =>
            {
                Forward::Request
            }
            Some(_) => Forward::Stale,
            None if method == Method::HEAD => Forward::Method,
            None if self.store.has_key(&key) => Forward::VaryMiss,
            None => Forward::UriMiss,
        };
        let pending = |kind, leader, stale| Pending {
            key: key.clone(),
            request_headers: headers.clone(),
            request_time: now,
            leader,
            kind,
            stale,
            generation,
            disk_generation,
            forward,
            _refresh: None,
        };
        // A range that missed goes to the backend with its Range (and the
        // validators of a stale whole entry, which a 304 refreshes); a
        // partial entry usable but short of it is merged with at store
        // time. A Range the cache would ignore makes a whole-response miss,
        // and so does one better fetched whole (`range::fetch_whole`:
        // large objects read by ranges).
        let whole_instead =
            !passing && range::fetch_whole(headers, self.disk.is_some(), nothing_stored);
        if range::wanted(method, headers) && !whole_instead {
            let stale = stored.filter(|e| !e.is_partial());
            return Lookup::Miss(pending(MissKind::Range, None, stale));
        }
        if method == Method::HEAD {
            return Lookup::Miss(pending(MissKind::Forward, None, None));
        }
        if passing {
            return Lookup::Miss(pending(MissKind::Passing, None, None));
        }
        match self.collapser.join(&key) {
            Role::Leader(guard) => Lookup::Miss(pending(MissKind::Store, Some(guard), stored)),
            Role::Follower(slot) => {
                // What the leader stored (or revalidated) while this request
                // waited answers it, if it is the variant this request
                // needs. An older entry is not: it is why we waited.
                let waited_from = std::time::Instant::now();
                if collapse::wait(slot, self.collapse_wait).await == Some(Outcome::Stored)
                    && let Some(entry) = self.tiers().stored(&key, headers, generation).await
                    && !entry.is_partial()
                    && entry.created >= waited_from
                    && !entry.invalidated.load(Ordering::Relaxed)
                {
                    let age = entry.age(SystemTime::now());
                    let member = Member {
                        hit: false,
                        fwd: Some(forward),
                        collapsed: true,
                        ..Member::hit()
                    };
                    return Lookup::Hit {
                        response: hit_response(
                            &entry,
                            method,
                            headers,
                            age,
                            CacheResult::Hit,
                            member,
                        ),
                        result: CacheResult::Hit,
                        collapsed: true,
                    };
                }
                let stale = self.tiers().stored(&key, headers, generation).await;
                let stale = stale.filter(|e| !e.is_partial());
                Lookup::Miss(pending(MissKind::Store, None, stale))
            }
        }
    }

    /// Takes the backend's answer to a miss (or a refresh): a 304 to a
    /// revalidation refreshes the stored response and answers from it; an
    /// error within `stale-if-error` answers with the stale response;
    /// anything else is stored (while it streams to the client) if RFC 9111
    /// allows, and labelled.
    pub(super) fn complete<E>(
        self: &Arc<Self>,
        pending: Pending,
        method: &Method,
        result: Result<Response<ResponseBody>, E>,
    ) -> (Result<Response<ResponseBody>, E>, CacheResult) {
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                return match self.stale_on_error(&pending, method, None) {
                    Some(stale) => (Ok(stale), CacheResult::Stale),
                    None => (Err(err), CacheResult::Bypass),
                };
            }
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED
            && pending.kind != MissKind::Forward
            && pending.stale.is_some()
        {
            return (
                Ok(self.revalidated(pending, method, response.headers())),
                CacheResult::Revalidated,
            );
        }
        if matches!(status.as_u16(), 500 | 502 | 503 | 504)
            && let Some(stale) = self.stale_on_error(&pending, method, Some(status.as_u16()))
        {
            return (Ok(stale), CacheResult::Stale);
        }
        let (mut parts, body) = response.into_parts();
        let part = (pending.kind == MissKind::Range && parts.status == StatusCode::PARTIAL_CONTENT)
            .then(|| {
                range::storable_part(
                    &pending.request_headers,
                    &parts.headers,
                    self.store.max_entry_bytes(),
                )
            })
            .flatten();
        // A range miss stores a 206 as a part, a 200 whole, nothing else
        // (a 416 is no answer for the whole resource).
        let storable = part.is_some()
            || pending.kind != MissKind::Forward
                && (pending.kind != MissKind::Range || parts.status == StatusCode::OK)
                && !policy::says_nothing_about_caching(&parts.headers)
                && policy::storable(
                    method,
                    &pending.request_headers,
                    parts.status,
                    &parts.headers,
                )
                .is_ok()
                && policy::worth_storing(parts.status, &parts.headers)
                && declared_length(&parts.headers)
                    .is_none_or(|len| len <= self.tiers().entry_limit());
        let result = if storable {
            CacheResult::Miss
        } else {
            CacheResult::Bypass
        };
        let stored_headers = if storable {
            parts.headers.clone()
        } else {
            HeaderMap::new()
        };
        let member = Member {
            fwd_status: Some(parts.status.as_u16()),
            stored: storable,
            ..Member::forward(pending.forward)
        };
        client_headers(
            &mut parts.headers,
            &pending.request_headers,
            result,
            &member,
            true,
        );
        if !storable {
            // Only the resource's own answer decides that it is not
            // cacheable: then the stored copy goes and the key skips
            // collapsing for PASS_TTL. A client's request directives
            // (`no-store`, `Authorization`) or a failing backend must not
            // evict what others use.
            if pending.kind == MissKind::Store
                && !parts.status.is_server_error()
                && !policy::storable_for_anyone(method, parts.status, &parts.headers)
            {
                self.store.purge_key(&pending.key, false);
                self.tiers().disk_purge_key(&pending.key);
                self.pass.insert(pending.key, ());
            }
            // Dropping the guard releases followers to go themselves.
            drop(pending.leader);
            let mut response = Response::from_parts(parts, body);
            if pending.kind == MissKind::Store {
                range::whole_as_range(&pending.request_headers, &mut response);
            }
            return (Ok(response), result);
        }
        if pending.kind == MissKind::Passing {
            self.pass.invalidate(&pending.key);
        }
        let received = Received {
            request_time: pending.request_time,
            response_time: SystemTime::now(),
        };
        let range_fetched_whole = (pending.kind == MissKind::Store
            && pending.request_headers.contains_key(header::RANGE))
        .then(|| pending.request_headers.clone());
        let mut tee = StoreOnEnd {
            inner: body,
            buffer: Some(BytesMut::new()),
            limit: self.store.max_entry_bytes(),
            disk: None,
            seen: 0,
            declared: declared_length(&parts.headers),
            finish: Some(Finish {
                cache: self.clone(),
                key: pending.key,
                status: parts.status,
                headers: stored_headers,
                request_headers: pending.request_headers,
                received,
                leader: pending.leader,
                generation: pending.generation,
                disk_generation: pending.disk_generation,
                part,
            }),
        };
        // hyper never polls a body that is already at its end (an empty
        // one): store it now.
        if tee.inner.is_end_stream() {
            tee.finished();
        }
        let mut response = Response::from_parts(parts, tee.boxed_unsync());
        // A range fetched whole (`range::fetch_whole`); the stored status
        // is the 200's, taken above.
        if let Some(request) = range_fetched_whole {
            range::whole_as_range(&request, &mut response);
        }
        (Ok(response), result)
    }

    /// The stale response, if the backend failed and `stale-if-error` (the
    /// request's or the response's) still covers it.
    fn stale_on_error(
        &self,
        pending: &Pending,
        method: &Method,
        fwd_status: Option<u16>,
    ) -> Option<Response<ResponseBody>> {
        let entry = pending.stale.as_ref()?;
        let age = entry.age(SystemTime::now());
        policy::stale_if_error_allows(
            &pending.request_headers,
            &entry.directives,
            effective_lifetime(entry),
            age,
        )
        .then(|| {
            hit_response(
                entry,
                method,
                &pending.request_headers,
                age,
                CacheResult::Stale,
                Member {
                    hit: false,
                    fwd: Some(Forward::Stale),
                    fwd_status,
                    detail: Some("stale-if-error"),
                    ..Member::hit()
                },
            )
        })
    }

    /// RFC 9111 §4.3.4: the backend confirmed the stored response with a
    /// 304. Its header fields replace the stored ones (except the body's
    /// framing), the entry is fresh again from now, and the client gets the
    /// refreshed response (or its own 304).
    fn revalidated(
        &self,
        pending: Pending,
        method: &Method,
        not_modified: &HeaderMap,
    ) -> Response<ResponseBody> {
        let Some(stale) = pending.stale else {
            return full_response(StatusCode::BAD_GATEWAY, HeaderMap::new());
        };
        let headers = policy::freshened_headers(&stale.headers, not_modified);
        let received = Received {
            request_time: pending.request_time,
            response_time: SystemTime::now(),
        };
        let entry = Entry::new(
            stale.status,
            headers,
            stale.body.clone(),
            received,
            &pending.request_headers,
        );
        let age = entry.age(received.response_time);
        let storable = policy::storable(
            &Method::GET,
            &pending.request_headers,
            entry.status,
            &entry.headers,
        )
        .is_ok();
        let response = hit_response(
            &entry,
            method,
            &pending.request_headers,
            age,
            CacheResult::Revalidated,
            Member {
                hit: false,
                fwd: Some(pending.forward),
                fwd_status: Some(304),
                stored: storable,
                ..Member::hit()
            },
        );
        // The 304 itself may make the resource uncacheable; this request's
        // own directives only keep it from being stored.
        let uncacheable = !policy::storable_for_anyone(&Method::GET, entry.status, &entry.headers);
        let purged_since = self.store.generation(&pending.key) != pending.generation;
        if storable {
            self.tiers().disk_store(
                &pending.key,
                &entry,
                pending.generation,
                pending.disk_generation,
            );
        }
        // A body on disk stays there: the memory tier holds bodies, not
        // open files.
        let stored = storable
            && !matches!(entry.body, super::body::StoredBody::Disk(_))
            && self.store.insert_unless_purged(
                pending.key.clone(),
                entry,
                Some(pending.generation),
            );
        if uncacheable && !purged_since {
            self.store.purge_key(&pending.key, false);
            self.tiers().disk_purge_key(&pending.key);
        }
        if let Some(leader) = pending.leader {
            leader.finish(if stored {
                Outcome::Stored
            } else {
                Outcome::NotStored
            });
        }
        response
    }

    /// After an unsafe method succeeded: the target and the same-origin
    /// `Location` / `Content-Location` are no longer what is stored
    /// (RFC 9111 §4.4).
    pub fn invalidate(
        &self,
        tenant: &str,
        app: &str,
        scheme: &str,
        host: &str,
        path: &str,
        response: &HeaderMap,
    ) {
        let target = CacheKey::new(tenant, app, scheme, host, path);
        self.store.purge_key(&target, false);
        self.tiers().disk_purge_key(&target);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(target) = response.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            // Same origin only: a relative reference, or an absolute URL
            // naming this scheme and host.
            // (A component's fetch keys are `fetch+SCHEME` and name the
            // host with its port.)
            let url_scheme = scheme.strip_prefix("fetch+").unwrap_or(scheme);
            let path = if target.starts_with('/') {
                Some(target.to_string())
            } else {
                target
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| {
                        u.scheme_str() == Some(url_scheme)
                            && (u.host() == Some(host)
                                || u.authority().is_some_and(|a| a.as_str() == host))
                    })
                    .and_then(|u| u.path_and_query().map(|p| p.to_string()))
            };
            if let Some(path) = path {
                let target = CacheKey::new(tenant, app, scheme, host, &path);
                self.store.purge_key(&target, false);
                self.tiers().disk_purge_key(&target);
            }
        }
    }

    /// A successful POST of `key`'s target: if its answer names that URL
    /// in `Content-Location` and has explicit freshness
    /// ([`super::post::answers_later_gets`]), it is stored as the GET
    /// answer for it while it streams to the client, like a miss. Call
    /// after [`Self::invalidate`], before the client's headers are set.
    pub fn store_post_answer(
        self: &Arc<Self>,
        key: CacheKey,
        request_headers: HeaderMap,
        request_time: SystemTime,
        response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let reusable = key.resource().is_some_and(|target| {
            super::post::answers_later_gets(
                target,
                &request_headers,
                response.status(),
                response.headers(),
            )
        });
        let declared = declared_length(response.headers());
        if !reusable || declared.is_some_and(|len| len > self.store.max_entry_bytes() as u64) {
            return response;
        }
        let generation = self.store.generation(&key);
        let disk_generation = self.tiers().disk_generation(&key);
        let (parts, body) = response.into_parts();
        let mut tee = StoreOnEnd {
            inner: body,
            buffer: Some(BytesMut::new()),
            limit: self.store.max_entry_bytes(),
            disk: None,
            seen: 0,
            declared,
            finish: Some(Finish {
                cache: self.clone(),
                key,
                status: parts.status,
                headers: parts.headers.clone(),
                request_headers,
                received: Received {
                    request_time,
                    response_time: SystemTime::now(),
                },
                leader: None,
                generation,
                disk_generation,
                part: None,
            }),
        };
        if tee.inner.is_end_stream() {
            tee.finished();
        }
        Response::from_parts(parts, tee.boxed_unsync())
    }

    /// The answer of an app the cache is not active for yet: labelled
    /// `BYPASS`; if it speaks about caching, the cache becomes active for
    /// the app from the next request on (`seen`).
    pub fn pass_through(
        &self,
        seen: &std::sync::atomic::AtomicBool,
        mut response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        if !policy::says_nothing_about_caching(response.headers()) {
            seen.store(true, Ordering::Relaxed);
        }
        client_headers(
            response.headers_mut(),
            &HeaderMap::new(),
            CacheResult::Bypass,
            &Member::forward(Forward::Bypass),
            true,
        );
        response
    }
}

/// A soft-purged entry is stale whatever its lifetime said.
fn effective_lifetime(entry: &Entry) -> Duration {
    if entry.invalidated.load(Ordering::Relaxed) {
        Duration::ZERO
    } else {
        entry.lifetime
    }
}

/// Headers this cache consumes are not the client's business; how it
/// answered is (`x-cache`, and the RFC 9211 `Cache-Status` member).
/// `surrogate_fields`: whether `headers` may hold `Surrogate-*` fields (a
/// stored entry knows).
fn client_headers(
    headers: &mut HeaderMap,
    request: &HeaderMap,
    result: CacheResult,
    member: &Member,
    surrogate_fields: bool,
) {
    if surrogate_fields {
        headers.remove(SURROGATE_CONTROL);
        let debug = request
            .get(DEBUG_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("surrogate-key"))
            });
        if !debug {
            headers.remove(SURROGATE_KEY);
        }
    }
    headers.insert(
        CACHE_STATUS_HEADER,
        HeaderValue::from_static(result.label()),
    );
    super::status::append(headers, member);
}

/// A stored response as the answer to a request: `Age`, `x-cache`, a 304
/// for a matching conditional request, the ranges a `Range` asks for
/// ([`range::respond`]: 206 or 416), no body for HEAD.
fn hit_response(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    age: Duration,
    result: CacheResult,
    member: Member,
) -> Response<ResponseBody> {
    let mut headers = entry.headers.clone();
    // Freshness left, negative once stale (RFC 9211 §2.5).
    let ttl = secs(effective_lifetime(entry)) - secs(age);
    let member = Member {
        ttl: Some(ttl),
        ..member
    };
    client_headers(
        &mut headers,
        request,
        result,
        &member,
        entry.surrogate_fields,
    );
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    if policy::not_modified(request, &entry.headers) {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
        return full_response(StatusCode::NOT_MODIFIED, headers);
    }
    // Ranges come before anything that encodes the answer: a 206 is cut
    // from what is stored, and left alone after.
    if let Some(response) = range::respond(entry, method, request, &mut headers) {
        return response;
    }
    let body = if *method == Method::HEAD {
        full_body(Bytes::new())
    } else {
        entry.body.full()
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    *response.headers_mut() = headers;
    // Compression at the edge answers from the entry's encoded copies,
    // passed only when they may serve this request (an `Extensions` map is
    // an allocation per hit).
    if let Some(encoded) = super::compress::hit_copies(entry, method, request) {
        response.extensions_mut().insert(encoded);
    }
    response
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn full_response(status: StatusCode, headers: HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// What to store once the body is complete.
struct Finish {
    cache: Arc<EdgeCache>,
    key: CacheKey,
    status: StatusCode,
    headers: HeaderMap,
    request_headers: HeaderMap,
    received: Received,
    leader: Option<LeaderGuard>,
    generation: u64,
    disk_generation: u64,
    /// Set for a 206 kept as a part of the response.
    part: Option<range::Part>,
}

/// Streams the app's body to the client and keeps a copy (up to the entry
/// limit); at a clean end, stores it and wakes collapsed followers.
struct StoreOnEnd {
    inner: ResponseBody,
    /// `None` once the body went past the limit (or had trailers).
    buffer: Option<BytesMut>,
    limit: usize,
    /// The response's `Content-Length`.
    declared: Option<u64>,
    finish: Option<Finish>,
    /// Where a body over `limit` goes instead of `buffer`, if there is a
    /// disk tier.
    disk: Option<super::disk::DiskSink>,
    /// Body bytes passed so far.
    seen: u64,
}

impl StoreOnEnd {
    /// The body went over the memory tier's limit: it continues to the
    /// disk tier, if there is one, starting with what was buffered.
    fn to_disk(&self, buffered: BytesMut, data: &Bytes) -> Option<super::disk::DiskSink> {
        // Parts stay in memory: the disk tier never holds a partial entry.
        let finish = self.finish.as_ref().filter(|f| f.part.is_none())?;
        let mut first = buffered;
        first.extend_from_slice(data);
        finish.cache.tiers().disk_begin(
            &finish.key,
            finish.status,
            &finish.headers,
            finish.received,
            &finish.request_headers,
            finish.generation,
            finish.disk_generation,
            first.freeze(),
        )
    }

    /// The body ended cleanly: store it (once).
    fn finished(&mut self) {
        if let Some(sink) = self.disk.take() {
            // Dropping `finish` tells collapsed followers to go themselves:
            // the file is written in the background.
            sink.finish(self.seen);
            self.finish = None;
            return;
        }
        if let (Some(buffer), Some(finish)) = (self.buffer.take(), self.finish.take()) {
            store_finished(finish, buffer.freeze());
        }
    }
}

impl Body for StoreOnEnd {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    this.seen += data.len() as u64;
                    if let Some(sink) = this.disk.as_mut() {
                        if !sink.push(data.clone()) {
                            this.disk = None;
                        }
                    } else {
                        let over = this
                            .buffer
                            .as_ref()
                            .is_some_and(|b| b.len() + data.len() > this.limit);
                        if over {
                            let buffered = this.buffer.take();
                            this.disk = buffered.and_then(|b| this.to_disk(b, data));
                        } else if let Some(buffer) = this.buffer.as_mut() {
                            buffer.extend_from_slice(data);
                        }
                    }
                }
                None => {
                    this.buffer = None;
                    this.disk = None;
                }
            },
            Poll::Ready(Some(Err(_))) => {
                this.buffer = None;
                this.disk = None;
            }
            Poll::Ready(None) => this.finished(),
            Poll::Pending => {}
        }
        // hyper stops polling a body once it has written the length the
        // response declared (or the body says it has ended), so the end is
        // also noticed here, not only at `None`.
        if matches!(frame, Poll::Ready(Some(Ok(_))))
            && (this.inner.is_end_stream() || this.declared.is_some_and(|len| this.seen == len))
        {
            this.finished();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Stores a completely received response and tells collapsed followers.
/// (A body that failed, was cut off or went past the limit never gets
/// here: dropping `Finish` releases the followers to go themselves.)
fn store_finished(finish: Finish, body: Bytes) {
    if let Some(part) = finish.part {
        let fetched = range::Fetched {
            key: finish.key,
            generation: finish.generation,
            headers: finish.headers,
            body,
            received: finish.received,
            request: &finish.request_headers,
        };
        range::store_part(&finish.cache.store, part, fetched);
        return;
    }
    let entry = Entry::new(
        finish.status,
        finish.headers,
        body,
        finish.received,
        &finish.request_headers,
    );
    // Not kept if its app was purged while it was fetched: it may be what
    // the purge meant to remove. The next request fetches again.
    finish.cache.tiers().disk_store(
        &finish.key,
        &entry,
        finish.generation,
        finish.disk_generation,
    );
    let stored =
        finish
            .cache
            .store
            .insert_unless_purged(finish.key, entry, Some(finish.generation));
    if let Some(leader) = finish.leader {
        leader.finish(if stored {
            Outcome::Stored
        } else {
            Outcome::NotStored
        });
    }
}
