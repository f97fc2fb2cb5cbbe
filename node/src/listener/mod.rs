//! Accepting client connections and serving HTTP on them.
//!
//! The accept loop only accepts: the TLS handshake runs in the spawned
//! per-connection task under a timeout, so a slow or silent client cannot
//! stall new connections. hyper-util's auto builder serves HTTP/1.1 and
//! HTTP/2 on the same port. What no client may hold for long (slots, idle
//! connections, responses it does not read) is bounded by
//! [`edge_common::conn`], shared with the control plane. On shutdown the
//! loop stops accepting, tells every connection to finish its in-flight
//! requests, and waits up to the grace period.

pub mod proxy;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_common::conn::{self, ConnectionEnd, ConnectionSlot, ConnectionSlots, ConnectionTimeouts};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounter, IntGauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::client::{ClientConn, TlsFacts};
use crate::config::HttpConfig;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;

/// hyper's HTTP/1 read and write buffer per connection. hyper's default is
/// about 400 KiB; a client that stops reading could make the node hold
/// that much per connection. 64 KiB still takes a request head twice the
/// size `http.max_header_bytes` allows by default (dispatch refuses it with
/// 431), and keeps large responses flowing at full speed on loopback.
const H1_MAX_BUF_BYTES: usize = 64 << 10;
/// hyper's HTTP/2 send buffer per stream (default about 400 KiB): with up
/// to `h2_max_concurrent_streams` streams per connection that default
/// would let one connection buffer 100 MiB. 64 KiB matches the protocol's
/// default initial window.
const H2_MAX_SEND_BUF_BYTES: usize = 64 << 10;

/// A bound listener for end users.
pub struct ClientListener {
    /// `https` or `http`: the metrics label and log name.
    pub name: &'static str,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Connection slots shared by every client listener
    /// (`http.max_connections`, `http.max_connections_per_ip`).
    pub connection_slots: Arc<ConnectionSlots>,
    /// Expect a PROXY protocol header first (`listen.*_proxy_protocol`).
    pub proxy_protocol: bool,
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

pub(crate) fn http_builder(config: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper's header timeout only runs with a timer installed.
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(H1_MAX_BUF_BYTES.max(2 * config.max_header_bytes))
        // hyper's own cap of 100 header lines stays (past it hyper answers
        // 431 itself): raising it makes hyper allocate the larger index
        // array on the heap for every request. The byte limit
        // (`http.max_header_bytes`) is checked in dispatch.
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_send_buf_size(H2_MAX_SEND_BUF_BYTES)
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
    // Each connection holds a receiver; the sender sees when all are gone.
    let (open_tx, _) = watch::channel(());
    let scheme = spec.scheme();
    let open = metrics.connections_open.with_label_values(&[spec.name]);
    let accepted = metrics.connections_total.with_label_values(&[spec.name]);
    // Resolved once: a handshake does no label lookup.
    let handshakes = Arc::new(HandshakeCounters {
        ok: metrics.tls_handshakes.with_label_values(&["ok"]),
        failed: metrics.tls_handshakes.with_label_values(&["failed"]),
        timeout: metrics.tls_handshakes.with_label_values(&["timeout"]),
    });
    let trusted_proxies: Arc<[ipnet::IpNet]> = config.trusted_proxies.clone().into();
    let timeouts = ConnectionTimeouts {
        first_bytes: config.header_read_timeout,
        idle: config.idle_timeout,
        response_idle: config.response_idle_timeout,
    };
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
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        accepted.inc();
        let slot = match spec.connection_slots.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                // At a cap: close at once rather than queue (a queue is
                // memory a flood can grow).
                metrics
                    .connections_rejected
                    .with_label_values(&[spec.name, refused.label()])
                    .inc();
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            listener: spec.name,
            builder: builder.clone(),
            dispatcher: dispatcher.clone(),
            tls: spec.tls.clone(),
            handshake_timeout: config.tls_handshake_timeout,
            handshakes: handshakes.clone(),
            timeouts,
            scheme: scheme.clone(),
            peer,
            proxy_protocol: spec.proxy_protocol,
            trusted_proxies: trusted_proxies.clone(),
            open: OpenGuard::new(open.clone()),
            _slot: slot,
            _tracked: open_tx.subscribe(),
            metrics: metrics.clone(),
        };
        tokio::spawn(connection.run(stream, shutdown.clone()));
    }
    drop(spec.listener);
    let open_now = open_tx.receiver_count();
    if open_now > 0 {
        tracing::info!(
            listener = spec.name,
            connections = open_now,
            "draining connections"
        );
    }
    if tokio::time::timeout(config.shutdown_grace, open_tx.closed())
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
    /// The listener's name (`https`, `http`): a metrics label.
    listener: &'static str,
    builder: Arc<auto::Builder<TokioExecutor>>,
    dispatcher: Arc<Dispatcher>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    handshakes: Arc<HandshakeCounters>,
    timeouts: ConnectionTimeouts,
    scheme: Scheme,
    peer: SocketAddr,
    proxy_protocol: bool,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    open: OpenGuard,
    _slot: ConnectionSlot,
    /// Dropped with the connection: the listener waits for all of these
    /// when it drains.
    _tracked: watch::Receiver<()>,
    metrics: Metrics,
}

impl Connection {
    async fn run(self, mut stream: TcpStream, shutdown: watch::Receiver<bool>) {
        let _open = &self.open;
        let client = if self.proxy_protocol {
            // Bounded like a request head: a balancer sends the header at
            // once, and a client that sends nothing holds a slot only so long.
            let header = proxy::read_header(&mut stream);
            match tokio::time::timeout(self.timeouts.first_bytes, header).await {
                Ok(Ok(source)) => source.unwrap_or(self.peer),
                Ok(Err(err)) => {
                    tracing::debug!(peer = %self.peer, "{err}");
                    self.closed("proxy-header-invalid");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "no PROXY protocol header in time");
                    self.closed("proxy-header-timeout");
                    return;
                }
            }
        } else {
            self.peer
        };
        match &self.tls {
            None => {
                let conn =
                    ClientConn::new(self.scheme.clone(), client, &self.trusted_proxies, None);
                self.serve_http(stream, conn, shutdown).await
            }
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        self.handshakes.ok.inc();
                        let facts = TlsFacts::of(tls.get_ref().1);
                        let conn = ClientConn::new(
                            self.scheme.clone(),
                            client,
                            &self.trusted_proxies,
                            facts,
                        );
                        self.serve_http(tls, conn, shutdown).await
                    }
                    Ok(Err(err)) => {
                        self.handshakes.failed.inc();
                        tracing::debug!(peer = %self.peer, "TLS handshake failed: {err}");
                    }
                    Err(_) => {
                        self.handshakes.timeout.inc();
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    /// Counts a connection the node closed before serving it.
    fn closed(&self, reason: &'static str) {
        self.metrics
            .connections_closed
            .with_label_values(&[self.listener, reason])
            .inc();
    }

    async fn serve_http<I>(&self, io: I, conn: ClientConn, mut shutdown: watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let dispatcher = self.dispatcher.clone();
        let conn = Arc::new(conn);
        let handler = move |request: hyper::Request<Incoming>| {
            let dispatcher = dispatcher.clone();
            let conn = conn.clone();
            async move { dispatcher.dispatch_from(request, &conn).await }
        };
        let drain = crate::shutdown::stopped(&mut shutdown);
        let end = conn::serve(&self.builder, io, &self.timeouts, drain, handler).await;
        if let ConnectionEnd::Failed(err) = &end {
            tracing::debug!(peer = %self.peer, "connection ended with an error: {err}");
        }
        if let Some(reason) = end.closed_by_server() {
            tracing::debug!(peer = %self.peer, reason, "connection closed by the node");
            self.metrics
                .connections_closed
                .with_label_values(&[self.listener, reason])
                .inc();
        }
    }
}

/// `edge_tls_handshakes_total` by result.
struct HandshakeCounters {
    ok: IntCounter,
    failed: IntCounter,
    timeout: IntCounter,
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
