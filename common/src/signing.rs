//! Ed25519 signatures over sync payloads, and the SHA-256 digests that name
//! artifacts. Both sides use these functions, so a signature made by the
//! control plane verifies on a node byte for byte.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// A control plane's private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key: the system random source failed")]
    Random,
    #[error("not an Ed25519 PKCS#8 private key")]
    BadPrivateKey,
    #[error("not an Ed25519 public key (expected 64 hex digits)")]
    BadPublicKey,
}

impl SigningKey {
    /// A fresh key, as PKCS#8 document bytes (what is stored on disk).
    pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| KeyError::Random)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| Self { pair })
            .map_err(|_| KeyError::BadPrivateKey)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey(key)
    }

    /// The signature of `payload`, in hex.
    pub fn sign_hex(&self, payload: &[u8]) -> String {
        to_hex(self.pair.sign(payload).as_ref())
    }
}

/// A control plane's public key, as nodes pin it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey([u8; 32]);

impl VerifyingKey {
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let bytes = from_hex(hex.trim()).ok_or(KeyError::BadPublicKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadPublicKey)?;
        Ok(Self(key))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// A short name for logs and for `key_id` fields: the first 8 bytes.
    pub fn id(&self) -> String {
        to_hex(&self.0[..8])
    }

    /// Whether `signature_hex` is this key's signature over `payload`.
    pub fn verify(&self, payload: &[u8], signature_hex: &str) -> bool {
        let Some(signature) = from_hex(signature_hex) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(payload, &signature)
            .is_ok()
    }
}

/// SHA-256 of `bytes`, lowercase hex: the name of every blob and artifact.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Whether `s` has the form of a [`sha256_hex`] digest.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_payload() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let sig = key.sign_hex(b"revision 7");
        let public = VerifyingKey::from_hex(&key.verifying_key().to_hex()).unwrap();
        assert!(public.verify(b"revision 7", &sig));
        assert!(!public.verify(b"revision 8", &sig));
        assert!(!other.verifying_key().verify(b"revision 7", &sig));
        assert!(!public.verify(b"revision 7", "zz"));
        assert!(VerifyingKey::from_hex("abcd").is_err());
    }

    #[test]
    fn digests_are_lowercase_hex() {
        let d = sha256_hex(b"");
        assert_eq!(
            d,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_hex(&d));
        assert!(!is_sha256_hex(&d.to_uppercase()));
        assert!(!is_sha256_hex("../etc/passwd"));
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
    }
}
