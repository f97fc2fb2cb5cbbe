//! TLS for the HTTPS listener: rustls with the node's SNI resolver
//! ([`crate::certs`]), ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::certs::CertResolver;

/// Builds the rustls server configuration around `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
