//! The operator listener (`edge-cp serve --admin ADDR`, off by default), on
//! its own address so it can stay on a private interface while the API is
//! public: `/metrics` (Prometheus text format), `/healthz` (the process is
//! up) and `/readyz` (the metadata store answers; 503 otherwise, so a load
//! balancer or Kubernetes stops sending API traffic to a replica that
//! cannot serve it). Plaintext and without authentication, like the
//! node's: bind it to loopback or a network only scrapers reach.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_common::conn::{self, ConnectionSlots, ConnectionTimeouts};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::server::ServerError;
use crate::store::now_unix;

/// Connections at once (scrapers, probes, operators), and from one
/// address: a flood of them cannot grow the process's tasks without bound.
const MAX_CONNECTIONS: usize = 256;
const MAX_CONNECTIONS_PER_IP: u32 = 64;

/// A store that takes longer than this to say its revision is not ready:
/// probes run every few seconds and must not pile up behind a hung
/// database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The fleet gauges are read from the store at scrape time; a scrape
/// whose store read takes longer serves the gauges as last set.
const FLEET_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin address (before the API's, so a taken port fails the
/// start with nothing left running).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Serves `listener` until the returned task is aborted (which drops
/// every admin connection with it).
pub fn spawn(listener: TcpListener, state: Arc<ApiState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(accept_loop(listener, state))
}

async fn accept_loop(listener: TcpListener, state: Arc<ApiState>) {
    let mut connections = JoinSet::new();
    let slots = ConnectionSlots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP);
    let timeouts = ConnectionTimeouts {
        first_bytes: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        response_idle: Duration::from_secs(30),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.try_acquire(peer.ip()) else {
            continue;
        };
        let (state, builder) = (state.clone(), builder.clone());
        connections.spawn(async move {
            let _slot = slot;
            let handler = move |req| handle(state.clone(), req);
            conn::serve(
                &builder,
                stream,
                &timeouts,
                std::future::pending::<()>(),
                handler,
            )
            .await;
        });
    }
}

async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => metrics(&state).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match tokio::time::timeout(READY_TIMEOUT, state.store.revision()).await {
            Ok(Ok(_)) => text(StatusCode::OK, "ready\n"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "not ready: the metadata store failed");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the metadata store failed\n",
                )
            }
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the metadata store did not answer in time\n",
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

async fn metrics(state: &ApiState) -> Response<Full<Bytes>> {
    let fleet = async {
        let revision = state.store.revision().await?;
        let nodes = state.store.nodes().await?;
        Ok::<_, crate::store::StoreError>((revision, nodes))
    };
    match tokio::time::timeout(FLEET_READ_TIMEOUT, fleet).await {
        Ok(Ok((revision, nodes))) => state.metrics.observe_fleet(
            revision,
            &nodes,
            now_unix(),
            state.settings.node_stale_after,
        ),
        // Counted in edge_cp_store_errors_total; the rest of the page is
        // still worth serving.
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the fleet from the store"),
        Err(_) => tracing::warn!("metrics: the store did not list the fleet in time"),
    }
    match state.metrics.encode() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
