//! The API listener: TCP, optional TLS (rustls, ALPN h2 and http/1.1),
//! hyper-util's auto connection builder. Connection slots (in all and per
//! client address), the first-bytes, idle and send deadlines are the edge
//! node's own ([`edge_common::conn`]): a flood of silent or idle
//! connections cannot lock out `/healthz`, sync or deploys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_common::conn::{self, ConnectionEnd, ConnectionSlots, ConnectionTimeouts};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{ApiState, handle};

/// Limits on the API's client connections.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Connections open at once; more are closed on accept. Default: 4096.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64).
    /// Default: 256 (a fleet of nodes behind one NAT address long-polls
    /// with one connection each; raise it for more).
    pub max_connections_per_ip: u32,
    /// From connect (or the TLS handshake) to the first request byte, and
    /// for a whole HTTP/1 request head. Default: 10s.
    pub header_read_timeout: Duration,
    /// Time to complete the TLS handshake. Default: 10s.
    pub tls_handshake_timeout: Duration,
    /// With no request in progress (HTTP/1) or no open stream (HTTP/2).
    /// A long-poll is a request in progress. Default: 60s.
    pub idle_timeout: Duration,
    /// A response the client takes nothing of for this long is dropped
    /// with its connection. Default: 30s.
    pub response_idle_timeout: Duration,
}

/// `edge-cp serve` flags for [`ConnectionSettings`] (defaults match).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionFlags {
    /// Client connections open at once; more are closed on accept.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Client connections open at once from one address (IPv6: one /64).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: u32,
    /// Time from connect to the first request byte, and for a request head.
    #[arg(long, default_value = "10s")]
    pub header_read_timeout: humantime::Duration,
    /// Close a connection with no request in progress after this long.
    #[arg(long, default_value = "60s")]
    pub idle_timeout: humantime::Duration,
    /// Drop a connection whose response the client takes nothing of for
    /// this long.
    #[arg(long, default_value = "30s")]
    pub response_idle_timeout: humantime::Duration,
}

impl From<ConnectionFlags> for ConnectionSettings {
    fn from(flags: ConnectionFlags) -> Self {
        Self {
            max_connections: flags.max_connections.max(1),
            max_connections_per_ip: flags.max_connections_per_ip.max(1),
            header_read_timeout: flags.header_read_timeout.into(),
            idle_timeout: flags.idle_timeout.into(),
            response_idle_timeout: flags.response_idle_timeout.into(),
            ..Self::default()
        }
    }
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            response_idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve the API in plaintext on {0}, which is not a loopback address: pass --tls-cert and --tls-key"
    )]
    PlaintextNotLoopback(SocketAddr),
    #[error("TLS: {0}")]
    Tls(String),
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`),
    /// if one was asked for.
    pub admin_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Adds the admin listener, stopped with the API.
    pub fn with_admin(mut self, addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Self {
        self.admin_addr = Some(addr);
        self.admin_task = Some(task);
        self
    }

    /// Stops at once: the listeners and every open connection (long polls
    /// included) are dropped, as if the process had died.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Some(task) = self.admin_task {
            task.abort();
            let _ = task.await;
        }
    }
}

pub async fn serve(
    addr: SocketAddr,
    tls: Option<&(PathBuf, PathBuf)>,
    state: Arc<ApiState>,
    settings: ConnectionSettings,
) -> Result<ServerHandle, ServerError> {
    let acceptor = match tls {
        Some((cert, key)) => Some(acceptor(cert, key)?),
        None if !addr.ip().is_loopback() => return Err(ServerError::PlaintextNotLoopback(addr)),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let has_tls = acceptor.is_some();
    let task = tokio::spawn(accept_loop(listener, acceptor, state, settings));
    Ok(ServerHandle {
        addr: bound,
        tls: has_tls,
        admin_addr: None,
        task,
        admin_task: None,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<ApiState>,
    settings: ConnectionSettings,
) {
    // Dropping this set (when the loop's task is aborted) aborts every
    // connection task.
    let mut connections = JoinSet::new();
    let slots = ConnectionSlots::new(settings.max_connections, settings.max_connections_per_ip);
    let timeouts = ConnectionTimeouts {
        first_bytes: settings.header_read_timeout,
        idle: settings.idle_timeout,
        response_idle: settings.response_idle_timeout,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match slots.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                // Closed at once: waiting for a slot would queue the flood.
                tracing::debug!(%peer, "connection refused: {refused}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (state, tls, builder) = (state.clone(), tls.clone(), builder.clone());
        let handshake_timeout = settings.tls_handshake_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let handler = move |req| handle(state.clone(), req);
            let never = std::future::pending::<()>();
            let end = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            conn::serve(&builder, stream, &timeouts, never, handler).await
                        }
                        _ => return,
                    }
                }
                None => conn::serve(&builder, stream, &timeouts, never, handler).await,
            };
            if let ConnectionEnd::Failed(e) = &end {
                tracing::debug!(%peer, error = %e, "api connection ended with an error");
            }
            if let Some(reason) = end.closed_by_server() {
                tracing::debug!(%peer, reason, "api connection closed by the server");
            }
        });
    }
}

fn acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServerError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ConnectionFlags,
    }

    #[test]
    fn the_flags_default_to_the_settings_defaults() {
        let from_flags = ConnectionSettings::from(Cli::parse_from(["edge-cp"]).flags);
        let defaults = ConnectionSettings::default();
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
    }
}
