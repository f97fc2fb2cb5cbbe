//! Accepting client connections and serving HTTP on them.
//!
//! The accept loop only accepts: the TLS handshake runs in the spawned
//! per-connection task under a timeout, so a slow or silent client cannot
//! stall new connections. hyper-util's auto builder serves HTTP/1.1 and
//! HTTP/2 on the same port. On shutdown the loop stops accepting, tells every
//! connection to finish its in-flight requests, and waits up to the grace
//! period.

pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::config::HttpConfig;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;

/// A bound listener for end users.
pub struct ClientListener {
    /// `https` or `http`: the metrics label and log name.
    pub name: &'static str,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Connection slots shared by every client listener (`http.max_connections`).
    pub connection_slots: Arc<Semaphore>,
}

impl ClientListener {
    fn scheme(&self) -> Scheme {
        if self.tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }
}

fn http_builder(config: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper's header timeout only runs with a timer installed.
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's own cap of 100 header lines stays (past it hyper answers
        // 431 itself): raising it makes hyper allocate the larger index
        // array on the heap for every request. The byte limit
        // (`http.max_header_bytes`) is checked in dispatch.
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        // Protocol-level bound well above the byte limit dispatch enforces,
        // so an oversized header list gets our 431 rather than a reset.
        .max_header_list_size((config.max_header_bytes as u32).saturating_mul(2))
        .max_pending_accept_reset_streams(config.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(config.h2_max_local_error_reset_streams)
        .keep_alive_interval(config.h2_keep_alive_interval)
        .keep_alive_timeout(config.h2_keep_alive_interval);
    builder
}

/// Serves `listener` until `shutdown` turns true, then drains.
pub async fn serve(
    spec: ClientListener,
    dispatcher: Arc<Dispatcher>,
    config: HttpConfig,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&config));
    let graceful = GracefulShutdown::new();
    let scheme = spec.scheme();
    let open = metrics.connections_open.with_label_values(&[spec.name]);
    let accepted = metrics.connections_total.with_label_values(&[spec.name]);
    let rejected = metrics.connections_rejected.with_label_values(&[spec.name]);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = spec.listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead
                    // of spinning on the error.
                    tracing::warn!(listener = spec.name, "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::stopped(&mut shutdown) => break,
        };
        accepted.inc();
        let Ok(slot) = spec.connection_slots.clone().try_acquire_owned() else {
            // At the cap: close at once rather than queue (a queue is memory
            // a flood can grow).
            rejected.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            dispatcher: dispatcher.clone(),
            tls: spec.tls.clone(),
            handshake_timeout: config.tls_handshake_timeout,
            header_read_timeout: config.header_read_timeout,
            scheme: scheme.clone(),
            peer,
            open: OpenGuard::new(open.clone()),
            _slot: slot,
            metrics: metrics.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(connection.run(stream, watcher));
    }
    drop(spec.listener);
    let open_now = graceful.count();
    if open_now > 0 {
        tracing::info!(
            listener = spec.name,
            connections = open_now,
            "draining connections"
        );
    }
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = spec.name,
            grace = ?config.shutdown_grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// One accepted client connection.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    dispatcher: Arc<Dispatcher>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    scheme: Scheme,
    peer: SocketAddr,
    open: OpenGuard,
    _slot: OwnedSemaphorePermit,
    metrics: Metrics,
}

impl Connection {
    async fn run(self, stream: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let _open = &self.open;
        let first_bytes = self.header_read_timeout;
        match &self.tls {
            None => {
                let io = FirstBytesDeadline::new(stream, first_bytes);
                self.serve_http(TokioIo::new(io), watcher).await
            }
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let io = FirstBytesDeadline::new(tls, first_bytes);
                        self.serve_http(TokioIo::new(io), watcher).await
                    }
                    Ok(Err(err)) => {
                        self.metrics.tls_handshake_failures.inc();
                        tracing::debug!(peer = %self.peer, "TLS handshake failed: {err}");
                    }
                    Err(_) => {
                        self.metrics.tls_handshake_failures.inc();
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn serve_http<I>(&self, io: TokioIo<I>, watcher: hyper_util::server::graceful::Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let dispatcher = self.dispatcher.clone();
        let scheme = self.scheme.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let dispatcher = dispatcher.clone();
            let scheme = scheme.clone();
            async move { Ok::<_, Infallible>(dispatcher.dispatch(request, scheme).await) }
        });
        let conn = self.builder.serve_connection(io, service).into_owned();
        if let Err(err) = watcher.watch(conn).await {
            tracing::debug!(peer = %self.peer, "connection ended with an error: {err}");
        }
    }
}

/// A connection that must send its first bytes within a deadline. hyper's
/// header-read timeout starts only once hyper-util has read enough to tell
/// HTTP/1 from HTTP/2, so without this a client that connects (or finishes
/// the TLS handshake) and sends nothing would hold a connection slot forever.
struct FirstBytesDeadline<I> {
    inner: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> FirstBytesDeadline<I> {
    fn new(inner: I, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(deadline) = self.deadline.as_mut() {
            if buf.filled().len() > before {
                self.deadline = None;
            } else if result.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a connection in `edge_connections_open` for as long as it lives.
struct OpenGuard(IntGauge);

impl OpenGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        OpenGuard(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
