//! The request path, top to bottom: clean hop-by-hop headers → answer a
//! pending ACME challenge → route → redirect plain HTTP to HTTPS if the app
//! asks (never a challenge: an app may answer its own) →
//! check sizes → cache lookup → (on a miss) admit → run the component or
//! forward to the origin → guard the response body → cache store →
//! compression at the edge → HSTS → record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::acme::{AcmeChallenges, is_challenge_request};
use crate::admission::NodeAdmission;
use crate::app::{App, Backend};
use crate::body::{
    GuardedResponseBody, GuestDoneWait, LimitedRequestBody, RequestBodyFailure, RequestBodyStatus,
    declared_length,
};
use crate::cache::compress::Compressor;
use crate::cache::layer::{CacheResult, EdgeCache};
use crate::cache::serve::{CacheBackend, ServeError};
use crate::client::{ClientConn, strip_forwarding};
use crate::config::HttpConfig;
use crate::error::{EdgeError, ErrorCode, Fault, RequestLimit, ResponseBody};
use crate::hop::strip_hop_by_hop;
use crate::https::{HttpsAnswers, add_hsts};
use crate::logs::access::{AccessBody, AccessRecord};
use crate::logs::{AppTail, LogHub, Tailed};
use crate::metrics::Metrics;
use crate::origin::OriginError;
use crate::request_id::RequestId;
use crate::router::{RouteError, Router, request_host};
use crate::runtime::{GuestResponse, Runtime};

/// Header naming the request id on every response, for support tickets and
/// for finding the guest's log lines.
pub const REQUEST_ID_HEADER: &str = "x-edge-request-id";

/// Where a route leads.
#[derive(Clone)]
pub enum Target {
    App(Arc<App>),
    /// An app of the snapshot that failed to load here and had no earlier
    /// version to keep. It keeps its routes, so its hosts answer 503
    /// `app-unavailable` (and a more general route, such as a wildcard,
    /// does not answer for it).
    Unavailable,
}

pub type RoutingTable = Router<Target>;

pub struct Dispatcher {
    runtime: Arc<Runtime>,
    cache: Option<Arc<EdgeCache>>,
    /// Compression at the edge (none: answers go as they are).
    compressor: Option<Compressor>,
    routes: ArcSwap<RoutingTable>,
    /// ACME challenges, HTTPS redirects.
    https: HttpsAnswers,
    metrics: Metrics,
    admission: NodeAdmission,
    max_uri_bytes: usize,
    max_header_bytes: usize,
    body_idle_timeout: Duration,
    next_request_id: AtomicU64,
    /// Live logs and the access log.
    logs: Option<Arc<LogHub>>,
}

impl Dispatcher {
    pub fn new(
        runtime: Arc<Runtime>,
        routes: RoutingTable,
        metrics: Metrics,
        http: &HttpConfig,
    ) -> Self {
        // Ids are unique per process run: the high half comes from the start
        // time, the low half counts requests.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let node_cap = http
            .max_concurrent_requests
            .unwrap_or(runtime.settings.instance_slots);
        Self {
            runtime,
            cache: None,
            compressor: None,
            routes: ArcSwap::from_pointee(routes),
            https: HttpsAnswers::new(http.https_redirect_port),
            metrics,
            admission: NodeAdmission::new(node_cap),
            max_uri_bytes: http.max_uri_bytes,
            max_header_bytes: http.max_header_bytes,
            body_idle_timeout: http.body_idle_timeout,
            next_request_id: AtomicU64::new(seed << 32),
            logs: None,
        }
    }

    /// Access lines of tailed apps go to `logs`, and to the node's log if
    /// its operator asked.
    pub fn with_logs(mut self, logs: Arc<LogHub>) -> Self {
        self.logs = Some(logs);
        self
    }

    /// Puts `cache` in front of every app.
    pub fn with_cache(mut self, cache: Option<Arc<EdgeCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// Compresses apps' answers with `compressor`.
    pub fn with_compression(mut self, compressor: Compressor) -> Self {
        self.compressor = Some(compressor);
        self
    }

    /// The shared cache, if the node has one.
    pub fn cache(&self) -> Option<&Arc<EdgeCache>> {
        self.cache.as_ref()
    }

    /// Whether `tenant`'s `app` is served here.
    pub fn serves(&self, tenant: &str, app: &str) -> bool {
        self.routes
            .load()
            .targets()
            .any(|t| matches!(t, Target::App(a) if &*a.log_tenant == tenant && &*a.log_name == app))
    }

    /// Replaces the routing table; requests already routed finish on the old one.
    pub fn swap_routes(&self, routes: RoutingTable) {
        self.routes.store(Arc::new(routes));
    }

    /// Replaces the pending ACME challenges.
    pub fn swap_challenges(&self, challenges: AcmeChallenges) {
        self.https.swap_challenges(challenges);
    }

    /// The HTTPS listener's port, for redirects (set once it is bound).
    pub fn set_https_port(&self, port: u16) {
        self.https.set_https_port(port);
    }

    /// A request that came from no client connection (benches, tests):
    /// no client address, so forwarding headers are dropped.
    pub async fn dispatch<B>(
        self: &Arc<Self>,
        request: Request<B>,
        scheme: Scheme,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.dispatch_with(request, scheme, None).await
    }

    /// A request received on `conn`.
    pub async fn dispatch_from<B>(
        self: &Arc<Self>,
        request: Request<B>,
        conn: &Arc<ClientConn>,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.dispatch_with(request, conn.scheme.clone(), Some(conn.clone()))
            .await
    }

    async fn dispatch_with<B>(
        self: &Arc<Self>,
        mut request: Request<B>,
        scheme: Scheme,
        conn: Option<Arc<ClientConn>>,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let request_id = RequestId(self.next_request_id.fetch_add(1, Ordering::Relaxed));

        let version = request.version();
        // A tunnel is nothing an app can answer, and an origin must never
        // be asked to open one; TRACE would echo the client's headers
        // (cookies, credentials) back into a page that asked for them.
        if matches!(*request.method(), Method::CONNECT | Method::TRACE) {
            self.metrics.unrouted("method-not-supported");
            let err = EdgeError::MethodNotSupported(request.method().clone());
            return with_request_id(err.to_response_for(version), request_id);
        }
        // Before anything looks at the request: the cache, the component
        // and the origin then all see the same headers.
        strip_hop_by_hop(request.headers_mut());
        // Then the node's own headers and unvouched forwarding ones: the
        // cache keys (and varies) on what is left.
        match &conn {
            Some(conn) => conn.entering(request.headers_mut()),
            None => strip_forwarding(request.headers_mut()),
        }

        if let Some(answer) = self.https.challenge(&request) {
            return with_request_id(answer, request_id);
        }

        let (host, app) = match self.route(&request) {
            Ok(routed) => routed,
            Err(err) => {
                self.metrics.unrouted(route_reason(&err));
                return with_request_id(EdgeError::from(err).to_response_for(version), request_id);
            }
        };

        // One lookup per request, handed down (the guest's lines, the
        // access line); for an untailed app, nothing else.
        let tail = self
            .logs
            .as_ref()
            .and_then(|logs| logs.tail(&app.log_tenant, &app.log_name));
        let access = self.logs.as_ref().and_then(|logs| {
            (tail.is_some() || logs.access_log()).then(|| AccessStart {
                tail: tail.clone(),
                to_log: logs.access_log(),
                method: request.method().to_string(),
                path: request
                    .uri()
                    .path_and_query()
                    .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            })
        });
        if let Some(tail) = tail {
            request.extensions_mut().insert(Tailed(tail));
        }
        let https = matches!(scheme, Scheme::Https);
        // Decided before the request is consumed; applied to whatever
        // answers it (a hit, a miss, a pass-through), never to a
        // component's own fetches.
        let offer = self
            .compressor
            .as_ref()
            .and_then(|c| c.offer(&app.compression, request.method(), request.headers()));
        // How the cache answered, if it did: the access line's, returned
        // rather than stored on the response (an `Extensions` map is an
        // allocation per request, paid whether or not anyone reads it).
        let (mut response, cache_result) =
            if app.https.redirect && !https && !is_challenge_request(&request) {
                (self.https.redirect(&host, request.uri()), None)
            } else {
                match self
                    .run(&app, &host, request, (scheme, conn), request_id, started)
                    .await
                {
                    Ok(answered) => answered,
                    Err(err) => {
                        if let Some(reason) = limit_reason(&err) {
                            app.metrics.limit_rejection(reason);
                        }
                        log_failure(&app, request_id, &err);
                        (err.to_response_for(version), None)
                    }
                }
            };
        if let (Some(offer), Some(compressor)) = (offer, &self.compressor) {
            let store = self.cache.as_deref().map(|c| &c.store);
            response = compressor.respond(offer, store, response).await;
        }
        if https {
            add_hsts(&mut response, &app.https);
        }

        app.metrics.request(response.status());
        app.metrics
            .request_duration
            .observe(started.elapsed().as_secs_f64());
        let response = with_request_id(response, request_id);
        match access {
            Some(access) => access.attach(response, cache_result, &app, request_id, started),
            None => response,
        }
    }

    async fn run<B>(
        self: &Arc<Self>,
        app: &Arc<App>,
        host: &str,
        mut request: Request<B>,
        // How it arrived: the scheme, and the client's connection if any.
        (scheme, conn): (Scheme, Option<Arc<ClientConn>>),
        request_id: RequestId,
        started: Instant,
    ) -> Result<(Response<ResponseBody>, Option<CacheResult>), EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let declared = self.check_request_size(app, &request)?;
        let method = request.method().clone();
        let scheme_name = match scheme {
            Scheme::Https => "https",
            _ => "http",
        };
        // Only a component is told who the client is, and before the cache
        // looks: the headers are no part of the primary key, but a
        // `Vary: x-edge-client-ip` must see them, or one client's answer is
        // served to all. An origin never gets them.
        if let (Backend::Component(_), Some(conn)) = (&app.backend, &conn) {
            conn.for_component(request.headers_mut());
        }
        let cacheable_method = method == Method::GET || method == Method::HEAD;
        // A GET or HEAD with a body: an origin is never sent one (servers
        // disagree on whether it is there, the stuff of request smuggling);
        // a component may read it, so its answer is never looked up in or
        // stored to the cache (the body is not part of the key).
        let with_body = cacheable_method && carries_body(declared, &request);
        if with_body && matches!(app.backend, Backend::Origin(_)) {
            return Err(RequestLimit::BodyNotAllowed.into());
        }
        if let Some(cache) = &self.cache
            && cacheable_method
            && !with_body
            && app.cache_seen.load(Ordering::Relaxed)
        {
            let key = EdgeCache::key(&app.log_tenant, &app.log_name, scheme_name, host, &request);
            // The body is empty (`with_body` is false): nothing is lost.
            let (parts, _empty) = request.into_parts();
            let backend = AppBackend {
                dispatcher: self,
                app,
                scheme,
                request_id,
                started,
                conn,
            };
            return cache
                .serve(key, Request::from_parts(parts, ()), &backend)
                .await
                .map(|(response, result)| (response, Some(result)))
                .map_err(|err| match err {
                    ServeError::NotCached => EdgeError::NotCached,
                    ServeError::Backend(err) => err,
                });
        }
        // Kept only for what an unsafe method may invalidate.
        let path = (!method.is_safe())
            .then(|| {
                request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
            })
            .flatten();
        // A POST's answer may become the GET answer for its URL
        // (RFC 9111 §4); its Vary is keyed by this request's headers.
        let post_request = (method == Method::POST && self.cache.is_some())
            .then(|| (request.headers().clone(), std::time::SystemTime::now()));
        // Boxed: the backend's future is large, and hyper moves the request
        // future into place on every request; a cache hit never needs it.
        let response =
            Box::pin(self.backend(app, request, scheme, request_id, started, conn.as_deref()))
                .await?;
        let Some(cache) = &self.cache else {
            return Ok((response, None));
        };
        if cacheable_method {
            app.metrics.cache_result(CacheResult::Bypass);
            let response = cache.pass_through(&app.cache_seen, response);
            return Ok((response, Some(CacheResult::Bypass)));
        }
        let mut response = response;
        if !method.is_safe()
            && (response.status().is_success() || response.status().is_redirection())
        {
            let path = path.as_deref().unwrap_or("/");
            cache.invalidate(
                &app.log_tenant,
                &app.log_name,
                scheme_name,
                host,
                path,
                response.headers(),
            );
            if let Some((headers, request_time)) = post_request {
                let key = crate::cache::store::CacheKey::new(
                    &app.log_tenant,
                    &app.log_name,
                    scheme_name,
                    host,
                    path,
                );
                response = cache.store_post_answer(key, headers, request_time, response);
            }
        }
        // Surrogate headers are this cache's business whatever the method
        // (after the POST's answer was stored with them).
        let response = cache.pass_through(&app.cache_seen, response);
        Ok((response, Some(CacheResult::Bypass)))
    }

    /// What answers a request the cache did not: the app's component, with
    /// its admission, body limits and response guard.
    async fn backend<B>(
        &self,
        app: &Arc<App>,
        request: Request<B>,
        scheme: Scheme,
        request_id: RequestId,
        started: Instant,
        conn: Option<&ClientConn>,
    ) -> Result<Response<ResponseBody>, EdgeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let guard = Arc::new(RequestGuard {
            _node: self.admission.admit()?,
            _app: app.admission.admit()?,
            _in_flight: InFlight::new(&app.metrics.in_flight),
        });
        let head = request.method() == Method::HEAD;

        let body_limit = app.limits.max_request_body_bytes;
        let body_status = RequestBodyStatus::default();
        let request = request.map(|body| {
            LimitedRequestBody::new(
                body,
                body_limit,
                self.body_idle_timeout,
                body_status.clone(),
            )
        });
        let body_error = |failure| match failure {
            RequestBodyFailure::TooLarge => RequestLimit::BodyTooLarge { limit: body_limit },
            RequestBodyFailure::IdleTimeout => RequestLimit::BodyTimeout {
                timeout: self.body_idle_timeout,
            },
            RequestBodyFailure::Malformed => RequestLimit::BadBody,
        };
        let deadline = started + app.limits.wall_time;
        let (response, guest_failed, guest_done) = match &app.backend {
            Backend::Component(_) => self
                .runtime
                .invoke(app, request, scheme, request_id, deadline, guard.clone())
                .await
                .map(
                    |GuestResponse {
                         response,
                         guest_failed,
                         guest_done,
                     }| (response, guest_failed, Some(guest_done)),
                )
                .map_err(|err| match body_status.failure() {
                    // Whatever the guest made of the failed read, the fault is
                    // the client's body.
                    Some(failure) => EdgeError::from(body_error(failure)),
                    None => EdgeError::from(err),
                })?,
            Backend::Origin(origin) => {
                let host = request_host(&request).unwrap_or_default();
                let request = request.map(|body| body.boxed_unsync());
                let scheme_name = match scheme {
                    Scheme::Https => "https",
                    _ => "http",
                };
                // Boxed: the component path's future (every request of a
                // component app) stays as small as it was.
                let forwarded = Box::pin(origin.forward(
                    &self.runtime.outbound,
                    request,
                    (&host, scheme_name, conn),
                    &app.log_tenant,
                    &app.log_name,
                ));
                // The app's wall time bounds the wait for the origin's
                // headers; the outbound client's total timeout bounds the body.
                let response = tokio::time::timeout_at(deadline, forwarded)
                    .await
                    .map_err(|_| OriginError::Timeout)
                    .and_then(|result| result)
                    .map_err(|err| match body_status.failure() {
                        Some(failure) => EdgeError::from(body_error(failure)),
                        None => EdgeError::from(err),
                    })?;
                (response, Default::default(), None)
            }
        };

        // A guest's or an origin's `x-edge-error` passes to its clients (a
        // guest relays a subrequest's refusal, such as `not-cached`), but
        // the access line and the metrics take the code only from the
        // node's own refusals (the `ErrorCode` extension), never from it.

        // A guest that failed on the over-long body and answered with its own
        // 5xx: the client is told what it did wrong instead.
        if let Some(failure) = body_status.failure()
            && response.status().is_server_error()
        {
            return Err(body_error(failure).into());
        }
        let limit = app.limits.max_response_body_bytes;
        let declared = declared_length(response.headers());
        if let Some(declared) = declared
            && declared > limit
        {
            return Err(EdgeError::ResponseTooLarge { declared, limit });
        }
        // hyper never reads a body that cannot be sent (HEAD, 204, 304, a
        // zero length): its answer waits for the guest here instead, as
        // the end of any other body does.
        let status = response.status();
        let guest_done = match guest_done {
            Some(done)
                if head
                    || declared == Some(0)
                    || status == http::StatusCode::NO_CONTENT
                    || status == http::StatusCode::NOT_MODIFIED =>
            {
                GuestDoneWait::new(done).await;
                None
            }
            other => other,
        };
        let exceeded = app.metrics.response_too_large.clone();
        Ok(response.map(|body| {
            GuardedResponseBody::new(body, limit, guest_failed, exceeded, declared, guest_done)
                .boxed_unsync()
        }))
    }

    /// The request's host and the app serving it.
    fn route<B>(&self, request: &Request<B>) -> Result<(String, Arc<App>), RouteError> {
        let host = request_host(request)?;
        let app = match self.routes.load().route(&host, request.uri().path())? {
            Target::App(app) => app.clone(),
            Target::Unavailable => return Err(RouteError::AppUnavailable(host)),
        };
        Ok((host, app))
    }

    /// Checks the request's target, headers and declared body against the
    /// limits; the body's declared length, if any.
    fn check_request_size<B>(
        &self,
        app: &App,
        request: &Request<B>,
    ) -> Result<Option<u64>, RequestLimit> {
        let uri_len = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Err(RequestLimit::UriTooLong {
                limit: self.max_uri_bytes,
            });
        }
        let header_bytes: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if header_bytes > self.max_header_bytes {
            return Err(RequestLimit::HeadersTooLarge {
                limit: self.max_header_bytes,
            });
        }
        let body_limit = app.limits.max_request_body_bytes;
        let declared = declared_length(request.headers());
        if declared.is_some_and(|len| len > body_limit) {
            return Err(RequestLimit::BodyTooLarge { limit: body_limit });
        }
        Ok(declared)
    }
}

/// The app behind the cache, for one client's request.
struct AppBackend<'a> {
    dispatcher: &'a Arc<Dispatcher>,
    app: &'a Arc<App>,
    scheme: Scheme,
    request_id: RequestId,
    started: Instant,
    conn: Option<Arc<ClientConn>>,
}

impl CacheBackend for AppBackend<'_> {
    type Error = EdgeError;
    type Detached = RefreshBackend;

    async fn send(
        &self,
        request: Request<ResponseBody>,
    ) -> Result<Response<ResponseBody>, EdgeError> {
        self.dispatcher
            .backend(
                self.app,
                request,
                self.scheme.clone(),
                self.request_id,
                self.started,
                self.conn.as_deref(),
            )
            .await
    }

    fn record(&self, result: CacheResult, collapsed: bool) {
        self.app.metrics.cache_result(result);
        if collapsed {
            self.app.metrics.cache_collapsed.inc();
        }
    }

    fn detach(&self) -> RefreshBackend {
        RefreshBackend {
            dispatcher: self.dispatcher.clone(),
            app: self.app.clone(),
            scheme: self.scheme.clone(),
        }
    }
}

/// The app behind a `stale-while-revalidate` refresh: a request of its own
/// (its own id and wall time), long after the client was answered.
struct RefreshBackend {
    dispatcher: Arc<Dispatcher>,
    app: Arc<App>,
    scheme: Scheme,
}

impl CacheBackend for RefreshBackend {
    type Error = EdgeError;
    type Detached = RefreshBackend;

    async fn send(
        &self,
        request: Request<ResponseBody>,
    ) -> Result<Response<ResponseBody>, EdgeError> {
        let request_id = RequestId(
            self.dispatcher
                .next_request_id
                .fetch_add(1, Ordering::Relaxed),
        );
        let mut request = request;
        if let Some(tail) = self
            .dispatcher
            .logs
            .as_ref()
            .and_then(|logs| logs.tail(&self.app.log_tenant, &self.app.log_name))
        {
            request.extensions_mut().insert(Tailed(tail));
        }
        let result = self
            .dispatcher
            .backend(
                &self.app,
                request,
                self.scheme.clone(),
                request_id,
                Instant::now(),
                // Long after the client was answered: nobody to name.
                None,
            )
            .await;
        if let Err(err) = &result {
            log_failure(&self.app, request_id, err);
        }
        result
    }

    /// The client's answer was counted; the refresh's is not.
    fn record(&self, _: CacheResult, _: bool) {}

    fn detach(&self) -> RefreshBackend {
        RefreshBackend {
            dispatcher: self.dispatcher.clone(),
            app: self.app.clone(),
            scheme: self.scheme.clone(),
        }
    }
}

/// Whether a request carries a body: a `Content-Length` (`declared`) above
/// zero, or a body hyper has not seen the end of (HTTP/1 chunked, an
/// HTTP/2 stream its headers did not end).
fn carries_body<B: http_body::Body>(declared: Option<u64>, request: &Request<B>) -> bool {
    match declared {
        Some(length) => length > 0,
        None => !request.body().is_end_stream(),
    }
}

/// What a running request holds until its guest is done: its admission
/// permits and its place in the in-flight gauge.
struct RequestGuard {
    _node: OwnedSemaphorePermit,
    _app: OwnedSemaphorePermit,
    _in_flight: InFlight,
}

/// Counts a request in `edge_requests_in_flight` however it ends, including
/// when the client goes away and hyper drops the future or the body.
struct InFlight(IntGauge);

impl InFlight {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn route_reason(err: &RouteError) -> &'static str {
    match err {
        RouteError::MissingHost => "missing-host",
        RouteError::InvalidHost | RouteError::Userinfo => "invalid-host",
        RouteError::AmbiguousHost => "ambiguous-host",
        RouteError::UnknownHost(_) => "unknown-host",
        RouteError::NoPathMatch(_) => "no-route",
        RouteError::AppUnavailable(_) => "app-unavailable",
    }
}

/// The `reason` label of `edge_limit_rejections_total`, for errors that are
/// a limit being enforced. Guest CPU and memory limits are counted where the
/// guest task ends, since they can also strike after the response started.
fn limit_reason(err: &EdgeError) -> Option<&'static str> {
    match err {
        // Malformed requests are refusals, not limits.
        EdgeError::Request(RequestLimit::BadBody | RequestLimit::BodyNotAllowed) => None,
        EdgeError::Admission(_) | EdgeError::Request(_) | EdgeError::ResponseTooLarge { .. } => {
            Some(err.code())
        }
        _ => None,
    }
}

fn log_failure(app: &App, request_id: RequestId, err: &EdgeError) {
    match err.fault() {
        // Traps are already logged with their backtrace by the guest task.
        Fault::Tenant | Fault::Client => tracing::debug!(
            tenant = %app.tenant, app = %app.name, %request_id, code = err.code(), "{err}"
        ),
        Fault::Platform => tracing::warn!(
            tenant = %app.tenant, app = %app.name, %request_id, code = err.code(), "{err}"
        ),
    }
}

/// What an access line needs from the request, taken before it is
/// consumed.
struct AccessStart {
    tail: Option<Arc<AppTail>>,
    to_log: bool,
    method: String,
    path: String,
}

impl AccessStart {
    /// Wraps the body so the line is written when it ends.
    fn attach(
        self,
        response: Response<ResponseBody>,
        cache_result: Option<CacheResult>,
        app: &App,
        request_id: RequestId,
        started: Instant,
    ) -> Response<ResponseBody> {
        // Both from the node's own record, never from the response's
        // headers, which a guest or an origin may set.
        let cache = match cache_result {
            Some(CacheResult::Hit) => "hit",
            Some(CacheResult::Miss) => "miss",
            Some(CacheResult::Stale) => "stale",
            Some(CacheResult::Revalidated) => "revalidated",
            Some(CacheResult::Bypass) => "bypass",
            None => "none",
        };
        let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
        let record = AccessRecord {
            tail: self.tail,
            to_log: self.to_log,
            tenant: app.log_tenant.clone(),
            app: app.log_name.clone(),
            request_id: request_id.to_string(),
            method: self.method,
            path: self.path,
            status: response.status().as_u16(),
            cache,
            error_code,
            started,
            time_ms: crate::logs::now_ms(),
        };
        response.map(|body| AccessBody::new(body, record).boxed_unsync())
    }
}

fn with_request_id(mut response: Response<ResponseBody>, id: RequestId) -> Response<ResponseBody> {
    if let Ok(value) = HeaderValue::from_bytes(&id.hex()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
