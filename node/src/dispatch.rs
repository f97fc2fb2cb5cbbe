//! The request path, top to bottom: route → run the component → record.
//! (Admission and the cache slot in between route and run as they land.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::RequestId;
use crate::app::App;
use crate::error::{EdgeError, Fault, ResponseBody};
use crate::metrics::Metrics;
use crate::router::{RouteError, Router, request_host};
use crate::runtime::Runtime;

/// Header naming the request id on every response, for support tickets and
/// for finding the guest's log lines.
pub const REQUEST_ID_HEADER: &str = "x-edge-request-id";

pub type RoutingTable = Router<Arc<App>>;

pub struct Dispatcher {
    runtime: Arc<Runtime>,
    routes: ArcSwap<RoutingTable>,
    metrics: Metrics,
    next_request_id: AtomicU64,
}

impl Dispatcher {
    pub fn new(runtime: Arc<Runtime>, routes: RoutingTable, metrics: Metrics) -> Self {
        // Ids are unique per process run: the high half comes from the start
        // time, the low half counts requests.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            runtime,
            routes: ArcSwap::from_pointee(routes),
            metrics,
            next_request_id: AtomicU64::new(seed << 32),
        }
    }

    /// Replaces the routing table; requests already routed finish on the old one.
    pub fn swap_routes(&self, routes: RoutingTable) {
        self.routes.store(Arc::new(routes));
    }

    pub async fn dispatch<B>(&self, request: Request<B>, scheme: Scheme) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let request_id = RequestId(self.next_request_id.fetch_add(1, Ordering::Relaxed));

        let app = match self.route(&request) {
            Ok(app) => app,
            Err(err) => {
                self.metrics.unrouted(route_reason(&err));
                return with_request_id(EdgeError::from(err).to_response(), request_id);
            }
        };

        app.metrics.in_flight.inc();
        let in_flight = InFlight(&app.metrics.in_flight);
        let response = match self.runtime.invoke(&app, request, scheme, request_id).await {
            Ok(response) => response,
            Err(err) => {
                let err = EdgeError::from(err);
                log_failure(&app, request_id, &err);
                err.to_response()
            }
        };

        drop(in_flight);
        app.metrics.request(response.status());
        app.metrics
            .request_duration
            .observe(started.elapsed().as_secs_f64());
        with_request_id(response, request_id)
    }

    fn route<B>(&self, request: &Request<B>) -> Result<Arc<App>, RouteError> {
        let host = request_host(request)?;
        self.routes
            .load()
            .route(&host, request.uri().path())
            .cloned()
    }
}

/// Decrements the in-flight gauge however the request ends, including when
/// the client goes away and hyper drops this future.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn route_reason(err: &RouteError) -> &'static str {
    match err {
        RouteError::MissingHost => "missing-host",
        RouteError::InvalidHost => "invalid-host",
        RouteError::UnknownHost(_) => "unknown-host",
        RouteError::NoPathMatch(_) => "no-route",
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

fn with_request_id(mut response: Response<ResponseBody>, id: RequestId) -> Response<ResponseBody> {
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
