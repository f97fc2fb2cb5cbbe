//! The cache on the request path: answer fresh hits from the store, collapse
//! concurrent misses, store what RFC 9111 allows while streaming it to the
//! client, invalidate on unsafe methods, and label every answer with
//! `x-cache`.
//!
//! Conservative where the rest is not built yet: a stale or `no-cache`
//! entry is treated as a miss (a full request to the app, whose answer
//! replaces it) rather than revalidated; conditional revalidation,
//! stale-while-revalidate and stale-if-error come with the next step.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::collapse::{self, Collapser, LeaderGuard, Outcome, Role};
use super::policy::{self, Received, Use};
use super::store::{CacheKey, CacheStore, Entry};
use crate::error::{ResponseBody, full_body};

/// Header telling the client how the cache answered.
pub const CACHE_STATUS_HEADER: HeaderName = HeaderName::from_static("x-cache");
/// Send `x-edge-debug: surrogate-key` to see a response's `Surrogate-Key`.
pub const DEBUG_HEADER: HeaderName = HeaderName::from_static("x-edge-debug");
const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// `[cache]` in the node's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache in front of every app. Default: true.
    pub enabled: bool,
    /// Bytes of responses kept, all tenants together (LRU-ish eviction by
    /// weight). Default: 256 MiB.
    pub capacity_bytes: u64,
    /// Largest response stored; larger ones stream through. Default: 8 MiB.
    pub max_entry_bytes: usize,
    /// How long a request waits for a concurrent miss of the same resource
    /// before going to the app itself. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub collapse_wait: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity_bytes: 256 << 20,
            max_entry_bytes: 8 << 20,
            collapse_wait: Duration::from_secs(10),
        }
    }
}

pub struct EdgeCache {
    pub store: CacheStore,
    bytes: Option<prometheus::IntGauge>,
    collapser: Arc<Collapser>,
    collapse_wait: Duration,
    /// "Hit-for-pass": keys whose last answer was not storable. Their
    /// misses are not collapsed for a while, so identical requests to an
    /// uncacheable resource do not queue behind each other.
    pass: moka::sync::Cache<CacheKey, ()>,
}

/// How long a key stays in hit-for-pass, and how many keys it holds.
const PASS_TTL: Duration = Duration::from_secs(30);
const PASS_KEYS: u64 = 100_000;

/// What the request path does after the lookup.
pub enum Lookup {
    /// Answer with this (a fresh hit); `collapsed` if it came from a
    /// concurrent miss this request waited for.
    Hit {
        response: Response<ResponseBody>,
        collapsed: bool,
    },
    /// Go to the app; `Pending` says what to do with its answer.
    Miss(Pending),
}

/// A miss in progress: what is needed to store the app's answer.
pub struct Pending {
    key: CacheKey,
    request_headers: HeaderMap,
    request_time: SystemTime,
    leader: Option<LeaderGuard>,
    /// HEAD: answered, never stored.
    head: bool,
    /// The key was in hit-for-pass when looked up.
    passing: bool,
}

impl EdgeCache {
    /// A cache as `config` says; with `metrics`, evictions and stored bytes
    /// are reported there.
    pub fn new(config: &CacheConfig, metrics: Option<&crate::metrics::Metrics>) -> Self {
        Self {
            store: CacheStore::new(
                config.capacity_bytes,
                config.max_entry_bytes,
                metrics.map(|m| m.cache_evictions.clone()),
            ),
            bytes: metrics.map(|m| m.cache_bytes.clone()),
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

    /// Looks `request` up. Only GET and HEAD are answered from the cache.
    pub async fn lookup<B>(&self, key: CacheKey, request: &Request<B>) -> Lookup {
        let head = request.method() == Method::HEAD;
        let mut leader = None;
        // A key in hit-for-pass has nothing stored (marking it purged it).
        if self.pass.contains_key(&key) {
            return Lookup::Miss(Pending {
                key,
                request_headers: request.headers().clone(),
                request_time: SystemTime::now(),
                leader,
                head,
                passing: true,
            });
        }
        if let Some(hit) = self.fresh(&key, request) {
            return Lookup::Hit {
                response: hit,
                collapsed: false,
            };
        }
        match self.collapser.join(&key) {
            Role::Leader(guard) => leader = Some(guard),
            Role::Follower(slot) => {
                if collapse::wait(slot, self.collapse_wait).await == Some(Outcome::Stored)
                    && let Some(hit) = self.fresh(&key, request)
                {
                    return Lookup::Hit {
                        response: hit,
                        collapsed: true,
                    };
                }
            }
        }
        Lookup::Miss(Pending {
            key,
            request_headers: request.headers().clone(),
            request_time: SystemTime::now(),
            leader,
            head,
            passing: false,
        })
    }

    fn fresh<B>(&self, key: &CacheKey, request: &Request<B>) -> Option<Response<ResponseBody>> {
        let entry = self.store.get(key, request.headers())?;
        if entry.invalidated.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let age = entry.age(SystemTime::now());
        match policy::usability(request.headers(), &entry.directives, entry.lifetime, age) {
            Use::Fresh | Use::StaleAllowed => Some(hit_response(&entry, request, age)),
            Use::StaleWhileRevalidate | Use::Revalidate => None,
        }
    }

    /// Takes the app's answer to a miss: stores it (while streaming it to
    /// the client) if RFC 9111 allows, labels it.
    pub fn complete(
        self: &Arc<Self>,
        pending: Pending,
        method: &Method,
        response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = response.into_parts();
        let silent = says_nothing_about_caching(&parts.headers);
        let storable = !silent
            && !pending.head
            && policy::storable(
                method,
                &pending.request_headers,
                parts.status,
                &parts.headers,
            )
            .is_ok()
            && worth_storing(parts.status, &parts.headers)
            && declared_length(&parts.headers)
                .is_none_or(|len| len <= self.store.max_entry_bytes() as u64);
        let label = if storable { "MISS" } else { "BYPASS" };
        let stored_headers = if storable {
            parts.headers.clone()
        } else {
            HeaderMap::new()
        };
        client_headers(&mut parts.headers, &pending.request_headers, label);
        if !storable {
            // Marked once; the marker expires after PASS_TTL, and the next
            // miss tries collapsing again.
            if !pending.head && !pending.passing {
                self.store.purge_key(&pending.key, false);
                self.pass.insert(pending.key, ());
            }
            // Dropping the guard releases followers to go themselves.
            drop(pending.leader);
            return Response::from_parts(parts, body);
        }
        if pending.passing {
            self.pass.invalidate(&pending.key);
        }
        let received = Received {
            request_time: pending.request_time,
            response_time: SystemTime::now(),
        };
        let tee = StoreOnEnd {
            inner: body,
            buffer: Some(BytesMut::new()),
            limit: self.store.max_entry_bytes(),
            finish: Some(Finish {
                cache: self.clone(),
                key: pending.key,
                status: parts.status,
                headers: stored_headers,
                request_headers: pending.request_headers,
                received,
                leader: pending.leader,
            }),
        };
        Response::from_parts(parts, tee.boxed_unsync())
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
            let path = if target.starts_with('/') {
                Some(target.to_string())
            } else {
                target
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| u.scheme_str() == Some(scheme) && u.host() == Some(host))
                    .and_then(|u| u.path_and_query().map(|p| p.to_string()))
            };
            if let Some(path) = path {
                self.store
                    .purge_key(&CacheKey::new(tenant, app, scheme, host, &path), false);
            }
        }
    }
}

/// Most uncacheable answers say nothing about caching at all: no parsing
/// is needed to know their lifetime is 0.
fn says_nothing_about_caching(headers: &HeaderMap) -> bool {
    [
        header::CACHE_CONTROL,
        SURROGATE_CONTROL,
        header::EXPIRES,
        header::LAST_MODIFIED,
    ]
    .iter()
    .all(|name| !headers.contains_key(name))
}

impl EdgeCache {
    /// The answer of an app the cache is not active for yet: labelled
    /// `BYPASS`; if it speaks about caching, the cache becomes active for
    /// the app from the next request on (`seen`).
    pub fn pass_through(
        &self,
        seen: &std::sync::atomic::AtomicBool,
        mut response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        if !says_nothing_about_caching(response.headers()) {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        client_headers(response.headers_mut(), &HeaderMap::new(), "BYPASS");
        response
    }
}

/// Whether storing helps at all: a response that is stale at once and has
/// no validator could never be served again.
fn worth_storing(status: StatusCode, headers: &HeaderMap) -> bool {
    !policy::freshness_lifetime(status, headers).is_zero()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Headers this cache consumes are not the client's business.
fn client_headers(headers: &mut HeaderMap, request: &HeaderMap, label: &'static str) {
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
    headers.insert(CACHE_STATUS_HEADER, HeaderValue::from_static(label));
}

/// A stored response as the answer to `request`: `Age`, `x-cache: HIT`, a
/// 304 for a matching conditional request, no body for HEAD.
fn hit_response<B>(entry: &Entry, request: &Request<B>, age: Duration) -> Response<ResponseBody> {
    let mut headers = entry.headers.clone();
    client_headers(&mut headers, request.headers(), "HIT");
    if let Ok(age) = HeaderValue::from_str(&age.as_secs().to_string()) {
        headers.insert(header::AGE, age);
    }
    let not_modified = not_modified(request.headers(), &entry.headers);
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if request.method() == Method::HEAD {
        (entry.status, Bytes::new())
    } else {
        (entry.status, entry.body.clone())
    };
    if not_modified {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
    }
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// RFC 9110 §13.2.2: `If-None-Match` (weak comparison) wins over
/// `If-Modified-Since`.
fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    let date = |map: &HeaderMap, name| {
        map.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    match (
        date(request, header::IF_MODIFIED_SINCE),
        date(stored, header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
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
}

/// Streams the app's body to the client and keeps a copy (up to the entry
/// limit); at a clean end, stores it and wakes collapsed followers.
struct StoreOnEnd {
    inner: ResponseBody,
    /// `None` once the body went past the limit (or had trailers).
    buffer: Option<BytesMut>,
    limit: usize,
    finish: Option<Finish>,
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
            Poll::Ready(None) => {
                if let (Some(buffer), Some(finish)) = (this.buffer.take(), this.finish.take()) {
                    store_finished(finish, buffer.freeze());
                }
            }
            Poll::Pending => {}
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
    let entry = Entry::new(
        finish.status,
        finish.headers,
        body,
        finish.received,
        &finish.request_headers,
    );
    let stored = finish.cache.store.insert(finish.key, entry);
    if let Some(bytes) = &finish.cache.bytes {
        // Inserts happen once per stored miss: settling moka's pending
        // bookkeeping here keeps the gauge exact at little cost.
        bytes.set(i64::try_from(finish.cache.store.weighted_size()).unwrap_or(i64::MAX));
    }
    if let Some(leader) = finish.leader {
        leader.finish(if stored {
            Outcome::Stored
        } else {
            Outcome::NotStored
        });
    }
}
