//! TLS for the HTTPS listener: a certificate per hostname chosen by SNI,
//! ALPN `h2` and `http/1.1`.
//!
//! Unknown SNI names get the certificate marked `default`; without one the
//! handshake fails with a TLS alert, so a client never receives a certificate
//! for a name it did not ask for.
//!
//! The `self-signed` source is for development only: it signs a short-lived
//! certificate for each SNI name a client asks for, on first use, so that
//! no certificate lists the other names the node hosts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Builds the rustls server configuration.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = match tls {
        TlsConfig::SelfSigned => SniResolver::self_signed()?,
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
    /// `self-signed`: certificates made on demand instead of the above.
    development: Option<DevelopmentCertificates>,
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

    fn self_signed() -> Result<Self, TlsError> {
        Ok(SniResolver {
            development: Some(DevelopmentCertificates::new()?),
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
        if let Some(development) = &self.development {
            return development.for_name(hello.server_name());
        }
        hello
            .server_name()
            .and_then(|name| self.lookup(name))
            .or_else(|| self.default.clone())
    }
}

/// How long a development certificate is valid. Short on purpose: it is
/// not for production, and a leaked one expires. A node running longer
/// makes new ones (see [`DevelopmentCertificates::REISSUE_AFTER`]).
const DEVELOPMENT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Self-signed certificates for development, one per SNI name, all with the
/// one key generated at start-up.
struct DevelopmentCertificates {
    key: rcgen::KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    /// By SNI name (`""`: no SNI). Bounded: a client sending random names
    /// evicts old ones, which are simply made again when asked for.
    issued: moka::sync::Cache<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for DevelopmentCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevelopmentCertificates")
    }
}

impl DevelopmentCertificates {
    /// Names kept at once.
    const MAX_NAMES: u64 = 1024;
    /// Made again this long after issue, well before they expire.
    const REISSUE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

    fn new() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Ok(Self {
            signing_key: any_supported_type(&der)?,
            key,
            issued: moka::sync::Cache::builder()
                .max_capacity(Self::MAX_NAMES)
                .time_to_live(Self::REISSUE_AFTER)
                .build(),
        })
    }

    /// The certificate for `sni`; without one, for `localhost` and the
    /// loopback addresses.
    fn for_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let key = name.clone().unwrap_or_default();
        if let Some(found) = self.issued.get(&key) {
            return Some(found);
        }
        let names = match name {
            Some(name) => vec![name],
            None => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        };
        match self.issue(names) {
            Ok(certified) => {
                let certified = Arc::new(certified);
                self.issued.insert(key, certified.clone());
                Some(certified)
            }
            Err(err) => {
                tracing::warn!("cannot make a development certificate: {err}");
                None
            }
        }
    }

    fn issue(&self, names: Vec<String>) -> Result<CertifiedKey, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(names)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let at = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| rcgen::Error::Time)
        };
        // An hour back: clocks of clients on the same machine may lag.
        params.not_before = at(now - 3600)?;
        params.not_after = at(now + DEVELOPMENT_VALIDITY.as_secs() as i64)?;
        let cert = params.self_signed(&self.key)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing_key.clone(),
        ))
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
