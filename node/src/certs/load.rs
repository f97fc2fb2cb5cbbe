//! Turning PEM into what rustls serves: a chain and its private key, from
//! the operator's files or from a control-plane bundle (chain, then key,
//! in one PEM text), through `edge_common::tls`, the control plane's check
//! too. The key must match the leaf, or the certificate is refused here
//! rather than failing every handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_common::tls::{CertifiedKeyError, certified_key_from_pem};
use rustls::sign::CertifiedKey;

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
    #[error("the certificate loading task failed: {0}")]
    Task(String),
}

/// Why a control-plane certificate bundle cannot be served.
pub type BundleError = CertifiedKeyError;

/// A certificate ready to serve, with its leaf's notAfter (Unix seconds)
/// when it could be read.
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub not_after_unix: Option<i64>,
}

/// The chain at `cert_path` with the key at `key_path`. Reads files: call
/// it off the async workers.
pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCertificate, TlsError> {
    let cert_error = |message: String| TlsError::Certificate {
        path: cert_path.to_path_buf(),
        message,
    };
    let key_error = |message: String| TlsError::Key {
        path: key_path.to_path_buf(),
        message,
    };
    let chain = std::fs::read(cert_path).map_err(|e| cert_error(e.to_string()))?;
    let key = std::fs::read(key_path).map_err(|e| key_error(e.to_string()))?;
    let certified = certified_key_from_pem(&chain, &key).map_err(|e| match e {
        CertifiedKeyError::ChainPem(message) => cert_error(message),
        CertifiedKeyError::EmptyChain => TlsError::EmptyChain {
            path: cert_path.to_path_buf(),
        },
        CertifiedKeyError::KeyPem(_) | CertifiedKeyError::UnsupportedKey(_) => {
            key_error(e.to_string())
        }
        CertifiedKeyError::KeyMismatch | CertifiedKeyError::Uncomparable(_) => {
            TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
                message: e.to_string(),
            }
        }
    })?;
    Ok(loaded(certified))
}

/// A bundle as `edge_common::sync::certificate_bundle` writes it: the
/// chain's PEM (leaf first), then the key's PEM. Its digest has been
/// checked already; this checks that it is a certificate that can be
/// served. Parses keys (milliseconds for RSA): call it off the async
/// workers.
pub fn parse_bundle(pem: &[u8]) -> Result<LoadedCertificate, BundleError> {
    certified_key_from_pem(pem, pem).map(loaded)
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
            Some(BundleError::KeyPem(_))
        ));
        let garbled = bundle.replace("MI", "!!");
        assert!(parse_bundle(garbled.as_bytes()).is_err());
    }
}
