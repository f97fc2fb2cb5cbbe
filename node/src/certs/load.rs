//! Turning PEM into what rustls serves: a chain and its private key, from
//! the operator's files or from a control-plane bundle (chain, then key,
//! in one PEM text). The key must match the leaf, or the certificate is
//! refused here rather than failing every handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("cannot read private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("certificate {path} has no certificates in it")]
    EmptyChain { path: PathBuf },
    #[error("the private key {key} does not match the certificate {cert}: {message}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot generate the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a control-plane certificate bundle cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle's certificates do not parse: {0}")]
    Chain(String),
    #[error("the bundle holds no certificate")]
    EmptyChain,
    #[error("the bundle's private key does not parse: {0}")]
    Key(String),
    #[error("the private key does not match the leaf certificate")]
    KeyMismatch,
}

/// A certificate ready to serve, with its leaf's notAfter (Unix seconds)
/// when it could be read.
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub not_after_unix: Option<i64>,
}

/// The chain at `cert_path` with the key at `key_path`.
pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCertificate, TlsError> {
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
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::KeyMismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(loaded(certified))
}

/// A bundle as `edge_common::sync::certificate_bundle` writes it: the
/// chain's PEM (leaf first), then the key's PEM. Its digest has been
/// checked already; this checks that it is a certificate that can be served.
pub fn parse_bundle(pem: &[u8]) -> Result<LoadedCertificate, BundleError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| BundleError::Chain(e.to_string()))?;
    if chain.is_empty() {
        return Err(BundleError::EmptyChain);
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| BundleError::Key(e.to_string()))?;
    let signing_key = any_supported_type(&key).map_err(|e| BundleError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| BundleError::KeyMismatch)?;
    Ok(loaded(certified))
}

fn loaded(certified: CertifiedKey) -> LoadedCertificate {
    let not_after_unix = certified.cert.first().and_then(|leaf| {
        use x509_parser::prelude::{FromDer, X509Certificate};
        X509Certificate::from_der(leaf.as_ref())
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    });
    LoadedCertificate {
        key: Arc::new(certified),
        not_after_unix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_bundle_parses_with_its_own_key_only() {
        let (cert, key) = generated(&["a.test"]);
        let bundle = edge_common::sync::certificate_bundle(&cert, &key);
        let loaded = parse_bundle(bundle.as_bytes()).unwrap();
        assert_eq!(loaded.key.cert.len(), 1);
        assert!(loaded.not_after_unix.is_some());

        let (_, other_key) = generated(&["a.test"]);
        let mismatched = edge_common::sync::certificate_bundle(&cert, &other_key);
        assert_eq!(
            parse_bundle(mismatched.as_bytes()).err(),
            Some(BundleError::KeyMismatch)
        );
        assert_eq!(
            parse_bundle(key.as_bytes()).err(),
            Some(BundleError::EmptyChain)
        );
        assert!(matches!(
            parse_bundle(cert.as_bytes()).err(),
            Some(BundleError::Key(_))
        ));
        let garbled = bundle.replace("MI", "!!");
        assert!(parse_bundle(garbled.as_bytes()).is_err());
    }
}
