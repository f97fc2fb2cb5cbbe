//! TLS for the HTTPS listener: a certificate per hostname chosen by SNI,
//! ALPN `h2` and `http/1.1`.
//!
//! Unknown SNI names get the certificate marked `default`; without one the
//! handshake fails with a TLS alert, so a client never receives a certificate
//! for a name it did not ask for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertificateConfig, TlsConfig};
use crate::names::HostPattern;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("cannot read private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("certificate {path} has no certificates in it")]
    EmptyChain { path: PathBuf },
    #[error("cannot generate the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the rustls server configuration. `app_hosts` are the names the
/// self-signed development certificate must cover.
pub fn server_config(
    tls: &TlsConfig,
    app_hosts: &[HostPattern],
) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = match tls {
        TlsConfig::SelfSigned => SniResolver::self_signed(app_hosts)?,
        TlsConfig::Files { certificates } => SniResolver::from_files(certificates)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate for a handshake's SNI name.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `.example.com` suffixes, longest first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn from_files(certificates: &[CertificateConfig]) -> Result<Self, TlsError> {
        let mut resolver = SniResolver::default();
        for cert in certificates {
            let key = Arc::new(load_certified_key(&cert.cert_path, &cert.key_path)?);
            resolver.add(&cert.hosts, &key);
            if cert.default {
                resolver.default = Some(key);
            }
        }
        resolver
            .wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(resolver)
    }

    fn self_signed(app_hosts: &[HostPattern]) -> Result<Self, TlsError> {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for host in app_hosts {
            match host {
                HostPattern::Any => {}
                other => names.push(other.to_string()),
            }
        }
        names.sort();
        names.dedup();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let chain = vec![generated.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let signing_key = any_supported_type(&key)?;
        Ok(SniResolver {
            default: Some(Arc::new(CertifiedKey::new(chain, signing_key))),
            ..SniResolver::default()
        })
    }

    fn add(&mut self, hosts: &[HostPattern], key: &Arc<CertifiedKey>) {
        for host in hosts {
            match host {
                HostPattern::Exact(name) => {
                    self.exact.insert(name.clone(), key.clone());
                }
                HostPattern::Wildcard(suffix) => self.wildcard.push((suffix.clone(), key.clone())),
                HostPattern::Any => self.default = Some(key.clone()),
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| {
                // RFC 6125: `*` stands for exactly one label.
                name.len() > suffix.len()
                    && name.ends_with(suffix.as_str())
                    && !name[..name.len() - suffix.len()].contains('.')
            })
            .map(|(_, key)| key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.lookup(name))
            .or_else(|| self.default.clone())
    }
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::EmptyChain {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let signing_key = any_supported_type(&key).map_err(|e| TlsError::Key {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(CertifiedKey::new(chain, signing_key))
}
