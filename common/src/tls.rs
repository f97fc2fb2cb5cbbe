//! A certificate chain and its private key as rustls serves them, checked
//! to belong together: the one place the control plane (checking an
//! upload or what its ACME CA issued) and the node (its own files, a
//! synced bundle) turn a chain and a key into a [`CertifiedKey`], so both
//! accept and refuse the same keys. A key that is not the leaf's is
//! refused here rather than failing every handshake later.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a chain and key cannot be served. Messages say where the PEM is
/// broken or which rule failed, never what a key holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertifiedKeyError {
    #[error("the certificates do not parse as PEM: {0}")]
    ChainPem(String),
    #[error("the chain holds no certificate")]
    EmptyChain,
    #[error("the private key does not parse as PEM: {0}")]
    KeyPem(String),
    #[error(
        "not a key usable for TLS (RSA of 2048 bits or more, ECDSA P-256 or P-384, Ed25519): {0}"
    )]
    UnsupportedKey(String),
    #[error("the private key does not match the leaf certificate")]
    KeyMismatch,
    /// The leaf's public key could not be read to compare it with the key.
    #[error("cannot compare the key with the leaf certificate: {0}")]
    Uncomparable(String),
}

/// `chain` (leaf first) served with `key`, once the key is known to be the
/// leaf's (their public keys are equal).
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<CertifiedKey, CertifiedKeyError> {
    if chain.is_empty() {
        return Err(CertifiedKeyError::EmptyChain);
    }
    let signing_key =
        any_supported_type(key).map_err(|e| CertifiedKeyError::UnsupportedKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertifiedKeyError::KeyMismatch)
        }
        Err(e) => Err(CertifiedKeyError::Uncomparable(e.to_string())),
    }
}

/// [`certified_key`] from PEM: every `CERTIFICATE` of `chain_pem` in order
/// (leaf first), and the first private key of `key_pem` (PKCS#8, PKCS#1 or
/// SEC1). Other sections are skipped, so both may be one text: a bundle
/// as [`crate::sync::certificate_bundle`] writes it.
pub fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, CertifiedKeyError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertifiedKeyError::ChainPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertifiedKeyError::EmptyChain);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertifiedKeyError::KeyPem(e.to_string()))?;
    certified_key(chain, &key)
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
    fn a_chain_is_served_with_its_own_key_only() {
        let (cert, key) = generated(&["a.test"]);
        let certified = certified_key_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(certified.cert.len(), 1);
        // One text (a bundle) holds both.
        let bundle = crate::sync::certificate_bundle(&cert, &key);
        assert!(certified_key_from_pem(bundle.as_bytes(), bundle.as_bytes()).is_ok());

        let (_, other_key) = generated(&["a.test"]);
        assert_eq!(
            certified_key_from_pem(cert.as_bytes(), other_key.as_bytes()).err(),
            Some(CertifiedKeyError::KeyMismatch)
        );
        assert_eq!(
            certified_key_from_pem(key.as_bytes(), key.as_bytes()).err(),
            Some(CertifiedKeyError::EmptyChain)
        );
        assert_eq!(
            certified_key(
                Vec::new(),
                &PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()
            )
            .err(),
            Some(CertifiedKeyError::EmptyChain)
        );
        assert!(matches!(
            certified_key_from_pem(cert.as_bytes(), cert.as_bytes()).err(),
            Some(CertifiedKeyError::KeyPem(_))
        ));
        let garbled = cert.replace("MI", "!!");
        assert!(matches!(
            certified_key_from_pem(garbled.as_bytes(), key.as_bytes()).err(),
            Some(CertifiedKeyError::ChainPem(_))
        ));
        // A key rustls cannot sign with (here: not a key at all, in a key's
        // PEM section).
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            certified_key_from_pem(cert.as_bytes(), not_a_key.as_bytes()).err(),
            Some(CertifiedKeyError::UnsupportedKey(_))
        ));
    }
}
