//! The operator listener, on its own address: `/metrics` (Prometheus text
//! format), `/healthz` (the process is up), `/readyz` (it serves traffic;
//! 503 while starting or draining, so a load balancer stops sending) and
//! `POST /cache/purge` (with the `cache.purge_token` bearer token).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_common::conn::{self, ConnectionSlots, ConnectionTimeouts};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{Encoder, TextEncoder};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use http_body_util::{BodyExt, Limited};

use crate::cache::purge::AdminPurge;
use crate::dispatch::Dispatcher;
use crate::error::{ERROR_HEADER, ResponseBody, full_body, text_response};
use crate::metrics::Metrics;

pub struct AdminState {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub purge: Option<PurgeAccess>,
}

/// What `POST /cache/purge` needs: the served apps and their cache, and the
/// operator's token.
pub struct PurgeAccess {
    pub dispatcher: Arc<Dispatcher>,
    pub token: Option<String>,
}

/// Largest purge request body read.
const MAX_PURGE_BODY: usize = 16 << 10;

/// Connections the admin listener holds at once (scrapers, health checks
/// and operators), and from one address: a flood of them cannot grow the
/// node's tasks without bound.
const ADMIN_MAX_CONNECTIONS: usize = 256;
const ADMIN_MAX_CONNECTIONS_PER_IP: u32 = 64;

pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let timeouts = ConnectionTimeouts {
        first_bytes: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        response_idle: Duration::from_secs(30),
    };
    let slots = ConnectionSlots::new(ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_IP);
    // Each connection holds a receiver; the sender sees when all are gone.
    let (open_tx, _) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("admin accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.try_acquire(peer.ip()) else {
            continue;
        };
        let (state, builder, tracked) = (state.clone(), builder.clone(), open_tx.subscribe());
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let (_slot, _tracked) = (slot, tracked);
            let handler = move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    if req.uri().path() == "/cache/purge" {
                        return purge(&state, req).await;
                    }
                    handle(&state, req)
                }
            };
            let drain = crate::shutdown::stopped(&mut shutdown);
            conn::serve(&builder, stream, &timeouts, drain, handler).await;
        });
    }
    // Scrapes are quick; don't hold shutdown up for a stuck scraper.
    let _ = tokio::time::timeout(Duration::from_secs(2), open_tx.closed()).await;
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => metrics_response(&state.metrics),
        "/healthz" => text_response(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.ready.load(Ordering::Relaxed) {
                text_response(StatusCode::OK, "ready\n")
            } else {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

/// A refusal with its stable code in `x-edge-error`.
fn refuse(status: StatusCode, code: &'static str, message: String) -> Response<ResponseBody> {
    let mut response = text_response(status, format!("{message}\n"));
    response
        .headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code));
    response
}

async fn purge(state: &AdminState, req: Request<Incoming>) -> Response<ResponseBody> {
    if req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "use POST".into(),
        );
    }
    let Some(access) = &state.purge else {
        return refuse(
            StatusCode::NOT_FOUND,
            "cache-disabled",
            "this node has no cache".into(),
        );
    };
    let Some(expected) = &access.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "purge-disabled",
            "purging through the admin listener is off: set cache.purge_token".into(),
        );
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token_matches(given.as_bytes(), expected.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "token-invalid",
            "a valid bearer token (cache.purge_token) is required".into(),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_PURGE_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid-purge",
                format!("the purge request is larger than {MAX_PURGE_BODY} bytes"),
            );
        }
    };
    let request = match AdminPurge::from_json(&body) {
        Ok(request) => request,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, "invalid-purge", err),
    };
    // Only apps this node serves: the metric labels stay bounded.
    if !access.dispatcher.serves(&request.tenant, &request.app) {
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown-app",
            format!("no app {}/{} on this node", request.tenant, request.app),
        );
    }
    let Some(cache) = access.dispatcher.cache() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "cache-disabled",
            "this node has no cache".into(),
        );
    };
    // A purge walks the store: off the async workers.
    let cache = cache.clone();
    let purged = match tokio::task::spawn_blocking(move || {
        let purge = &request.request;
        cache.purge(&request.tenant, &request.app, &purge.target, purge.soft)
    })
    .await
    {
        Ok(purged) => purged,
        Err(err) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                format!("the purge failed: {err}"),
            );
        }
    };
    let mut response = Response::new(full_body(format!("{{\"purged\":{purged}}}\n")));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether the bearer token given matches the configured one, in time
/// that does not depend on where they differ (`subtle`: a hand-written
/// loop may be turned into an early exit by the optimiser). A length
/// mismatch answers at once; the length is not the secret.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    bool::from(given.ct_eq(expected))
}

fn metrics_response(metrics: &Metrics) -> Response<ResponseBody> {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(err) = encoder.encode(&metrics.registry.gather(), &mut buf) {
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}\n"),
        );
    }
    let mut response = Response::new(full_body(buf));
    if let Ok(ct) = HeaderValue::from_str(encoder.format_type()) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, ct);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_token_matches() {
        let expected = b"0123456789abcdef-purge";
        assert!(token_matches(expected, expected));
        assert!(!token_matches(b"", expected));
        assert!(!token_matches(b"0123456789abcdef-purgE", expected));
        assert!(!token_matches(b"1123456789abcdef-purge", expected));
        assert!(!token_matches(b"0123456789abcdef-purge ", expected));
        assert!(!token_matches(b"0123456789abcdef-purg", expected));
    }
}
