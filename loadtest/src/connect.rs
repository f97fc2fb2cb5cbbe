//! One client connection to the target: TCP, optionally TLS (ALPN h2 or
//! http/1.1), then an HTTP/1.1 or HTTP/2 handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::{LoadError, Protocol};

/// A request sender on one connection.
pub enum Sender {
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    pub async fn send(
        &mut self,
        request: http::Request<Empty<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Connector {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// TLS client configuration and the SNI name, for https targets.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Connector {
    pub async fn connect(&self) -> Result<Sender, LoadError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(LoadError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(LoadError::Tls)?;
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<I>(&self, io: TokioIo<I>) -> Result<Sender, LoadError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(LoadError::Handshake)?;
                tokio::spawn(conn);
                Ok(Sender::Http1(sender))
            }
            Protocol::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(LoadError::Handshake)?;
                tokio::spawn(conn);
                Ok(Sender::Http2(sender))
            }
        }
    }
}

/// A TLS client configuration that trusts `roots` (or, with `insecure`,
/// anything: for self-signed development certificates) and offers `alpn`.
/// Without `resume`, every connection makes a full handshake (what a
/// handshakes-per-second benchmark must measure; with tickets, servers would
/// be compared on resumption instead).
pub fn tls_config(
    roots: rustls::RootCertStore,
    insecure: bool,
    alpn: &[u8],
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Config(e.to_string()))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Accepts any server certificate (still checking handshake signatures).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
