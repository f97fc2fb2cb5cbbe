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
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::collapse::{self, Collapser, LeaderGuard, Outcome, Role};
use super::policy::{self, Received, Use};
pub use super::result::CacheResult;
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
    /// `edge_cache_purges_total{tenant,app,kind}`.
    pub(super) purges: Option<prometheus::IntCounterVec>,
    /// Bumped by every purge: a miss that started before a purge does not
    /// store what it fetched (it could be what the purge removed).
    pub(super) generation: AtomicU64,
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
    /// A range request that missed, or a HEAD: forwarded as it is, the
    /// answer never stored.
    Forward,
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
    /// The cache's purge generation when the miss started.
    generation: u64,
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
        if self.kind != MissKind::Store {
            return;
        }
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            headers.remove(name);
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
                _ = every.tick() => self.store.run_maintenance(),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
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
            purges,
            generation: AtomicU64::new(0),
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
        // A key in hit-for-pass has nothing stored (marking it purged it),
        // so a hit needs no look at the pass list.
        let stored = self.store.get(&key, headers);
        let passing = stored.is_none() && self.pass.contains_key(&key);
        if let Some(entry) = &stored {
            let age = entry.age(now);
            let answer = |result| hit_response(entry, method, headers, age, result);
            let mut usable =
                policy::usability(headers, &entry.directives, effective_lifetime(entry), age);
            // A soft-purged entry is served stale only within its own
            // stale-while-revalidate / stale-if-error, not at a client's
            // `max-stale`.
            if usable == Use::StaleAllowed && entry.invalidated.load(Ordering::Relaxed) {
                usable = Use::Revalidate;
            }
            match usable {
                Use::Fresh => {
                    return Lookup::Hit {
                        response: answer(CacheResult::Hit),
                        result: CacheResult::Hit,
                        collapsed: false,
                    };
                }
                Use::StaleAllowed => {
                    return Lookup::Hit {
                        response: answer(CacheResult::Stale),
                        result: CacheResult::Stale,
                        collapsed: false,
                    };
                }
                Use::StaleWhileRevalidate => {
                    let response = answer(CacheResult::Stale);
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
                                generation: self.generation.load(Ordering::Acquire),
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
            && policy::parse_cache_control(headers, "cache-control").only_if_cached
        {
            return Lookup::NotCached;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let pending = |kind, leader, stale| Pending {
            key: key.clone(),
            request_headers: headers.clone(),
            request_time: now,
            leader,
            kind,
            stale,
            generation,
            _refresh: None,
        };
        // A range that missed goes to the backend as it is, and its 206 is
        // never stored: no stored response is ever built from a part.
        if method == Method::HEAD || headers.contains_key(header::RANGE) {
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
                    && let Some(entry) = self.store.get(&key, headers)
                    && entry.created >= waited_from
                    && !entry.invalidated.load(Ordering::Relaxed)
                {
                    let age = entry.age(SystemTime::now());
                    return Lookup::Hit {
                        response: hit_response(&entry, method, headers, age, CacheResult::Hit),
                        result: CacheResult::Hit,
                        collapsed: true,
                    };
                }
                let stale = self.store.get(&key, headers);
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
                return match self.stale_on_error(&pending, method) {
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
            && let Some(stale) = self.stale_on_error(&pending, method)
        {
            return (Ok(stale), CacheResult::Stale);
        }
        let (mut parts, body) = response.into_parts();
        let storable = pending.kind != MissKind::Forward
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
                .is_none_or(|len| len <= self.store.max_entry_bytes() as u64);
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
        client_headers(&mut parts.headers, &pending.request_headers, result);
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
                self.pass.insert(pending.key, ());
            }
            // Dropping the guard releases followers to go themselves.
            drop(pending.leader);
            return (Ok(Response::from_parts(parts, body)), result);
        }
        if pending.kind == MissKind::Passing {
            self.pass.invalidate(&pending.key);
        }
        let received = Received {
            request_time: pending.request_time,
            response_time: SystemTime::now(),
        };
        let mut tee = StoreOnEnd {
            inner: body,
            buffer: Some(BytesMut::new()),
            limit: self.store.max_entry_bytes(),
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
            }),
        };
        // hyper never polls a body that is already at its end (an empty
        // one): store it now.
        if tee.inner.is_end_stream() {
            tee.finished();
        }
        (Ok(Response::from_parts(parts, tee.boxed_unsync())), result)
    }

    /// The stale response, if the backend failed and `stale-if-error` (the
    /// request's or the response's) still covers it.
    fn stale_on_error(&self, pending: &Pending, method: &Method) -> Option<Response<ResponseBody>> {
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
        let response = hit_response(
            &entry,
            method,
            &pending.request_headers,
            age,
            CacheResult::Revalidated,
        );
        let storable = policy::storable(
            &Method::GET,
            &pending.request_headers,
            entry.status,
            &entry.headers,
        )
        .is_ok();
        // The 304 itself may make the resource uncacheable; this request's
        // own directives only keep it from being stored.
        let uncacheable = !policy::storable_for_anyone(&Method::GET, entry.status, &entry.headers);
        let purged_since = self.generation.load(Ordering::Acquire) != pending.generation;
        let stored = storable && !purged_since && self.store.insert(pending.key.clone(), entry);
        if uncacheable && !purged_since {
            self.store.purge_key(&pending.key, false);
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
        self.store
            .purge_key(&CacheKey::new(tenant, app, scheme, host, path), false);
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
                self.store
                    .purge_key(&CacheKey::new(tenant, app, scheme, host, &path), false);
            }
        }
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

/// Headers this cache consumes are not the client's business.
fn client_headers(headers: &mut HeaderMap, request: &HeaderMap, result: CacheResult) {
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
    headers.insert(
        CACHE_STATUS_HEADER,
        HeaderValue::from_static(result.label()),
    );
}

/// A stored response as the answer to a request: `Age`, `x-cache`, a 304
/// for a matching conditional request, no body for HEAD. A `Range` is
/// ignored (RFC 9110 §14.2 allows it): the whole response is sent.
fn hit_response(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    age: Duration,
    result: CacheResult,
) -> Response<ResponseBody> {
    let mut headers = entry.headers.clone();
    client_headers(&mut headers, request, result);
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
    let body = if *method == Method::HEAD {
        full_body(Bytes::new())
    } else {
        entry.body.full()
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    *response.headers_mut() = headers;
    response
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
}

impl StoreOnEnd {
    /// The body ended cleanly: store it (once).
    fn finished(&mut self) {
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
                    let over = this
                        .buffer
                        .as_ref()
                        .is_some_and(|b| b.len() + data.len() > this.limit);
                    if over {
                        this.buffer = None;
                    } else if let Some(buffer) = this.buffer.as_mut() {
                        buffer.extend_from_slice(data);
                    }
                }
                None => this.buffer = None,
            },
            Poll::Ready(Some(Err(_))) => this.buffer = None,
            Poll::Ready(None) => this.finished(),
            Poll::Pending => {}
        }
        // hyper stops polling a body once it has written the length the
        // response declared (or the body says it has ended), so the end is
        // also noticed here, not only at `None`.
        if matches!(frame, Poll::Ready(Some(Ok(_))))
            && (this.inner.is_end_stream()
                || this
                    .declared
                    .is_some_and(|len| this.buffer.as_ref().is_some_and(|b| b.len() as u64 == len)))
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
    if finish.cache.generation.load(Ordering::Acquire) != finish.generation {
        // A purge ran while this was fetched: what it fetched may be what
        // the purge meant to remove. The next request fetches again.
        return;
    }
    let entry = Entry::new(
        finish.status,
        finish.headers,
        body,
        finish.received,
        &finish.request_headers,
    );
    let stored = finish.cache.store.insert(finish.key, entry);
    if let Some(leader) = finish.leader {
        leader.finish(if stored {
            Outcome::Stored
        } else {
            Outcome::NotStored
        });
    }
}
