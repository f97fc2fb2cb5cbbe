//! App secrets as the control plane and nodes agree on them: the name rule
//! and limits the API enforces, the reference a signed snapshot carries
//! ([`SecretsRef`]: a digest, never a value) and the bundle a node fetches
//! over the authenticated sync channel and checks against that digest
//! ([`SecretsBundle`]).
//!
//! A bundle holds a random salt next to the values, so its digest (which
//! travels in the signed snapshot, and is persisted and logged) does not
//! let anyone test guesses of a low-entropy value: without the salt, a
//! guessed value gives no digest to compare.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signing::{from_hex, is_sha256_hex, sha256_hex, to_hex};

/// Bytes of a secret's value (`secret-too-large`, 413).
pub const MAX_SECRET_VALUE_BYTES: usize = 64 << 10;

/// Secrets of one app (`secret-limit`, 409).
pub const MAX_SECRETS_PER_APP: u64 = 100;

/// Bytes of one app's bundle, checked by the control plane before it
/// stores a change and by a node before it reads one: 100 values of 64
/// KiB would be 6.4 MiB on every node, per app, so the sum is capped lower.
pub const MAX_SECRETS_BUNDLE_BYTES: u64 = 1 << 20;

/// Random bytes of a bundle's salt.
pub const SALT_BYTES: usize = 16;

/// Whether `name` is a valid config key or secret name (one rule for
/// both, since guests read both through the same `wasi:config` store): 1
/// to 256 ASCII letters, digits, `_`, `-` or `.`, the first a letter, a
/// digit or `_`. A name travels as a URL path segment (`DELETE
/// /v1/apps/{app}/secrets/{name}`), where `.` and `..` are dot-segments
/// that clients and proxies remove (RFC 3986 §5.2.4): `..` would address
/// the app itself. A leading `-` would read as a flag on a command line.
pub fn is_valid_key(name: &str) -> bool {
    name.len() <= 256
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// What a snapshot says of an app's secrets: the digest and size of its
/// bundle, which a node fetches from `GET /v1/secrets/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsRef {
    pub sha256: String,
    pub size: u64,
}

/// An app's secrets as a node receives them: `{"salt": "<hex>", "values":
/// {name: value}}`, serialised with sorted keys (a `BTreeMap`) so every
/// control-plane replica builds the same bytes from the same rows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsBundle {
    /// Hex of at least [`SALT_BYTES`] random bytes, new whenever the
    /// app's secrets change.
    pub salt: String,
    pub values: BTreeMap<String, String>,
}

// Values never reach a log line through `{:?}`.
impl std::fmt::Debug for SecretsBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsBundle")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a fetched bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the secrets bundle is {size} bytes, over the limit of {MAX_SECRETS_BUNDLE_BYTES}")]
    TooLarge { size: u64 },
    #[error("the secrets bundle is {actual} bytes where the snapshot says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the secrets bundle does not match its digest")]
    DigestMismatch,
    #[error("the secrets bundle is malformed: {0}")]
    Malformed(String),
}

impl SecretsBundle {
    /// A bundle of `values` under a new random salt.
    pub fn new(values: BTreeMap<String, String>) -> Result<Self, BundleError> {
        let mut salt = [0u8; SALT_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| BundleError::Malformed("no randomness for a salt".into()))?;
        Ok(Self {
            salt: to_hex(&salt),
            values,
        })
    }

    /// The bytes a node receives and the snapshot's digest is taken of.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and a map of strings always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The reference a snapshot carries for these bytes.
    pub fn reference(bytes: &[u8]) -> SecretsRef {
        SecretsRef {
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Parses fetched bytes, checked against the snapshot's reference
    /// first (size, then digest), then against the rules the control
    /// plane applies (names, salt): only what the control plane signed
    /// for is ever read.
    pub fn verify(bytes: &[u8], expected: &SecretsRef) -> Result<Self, BundleError> {
        let actual = bytes.len() as u64;
        if actual > MAX_SECRETS_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { size: actual });
        }
        if actual != expected.size {
            return Err(BundleError::SizeMismatch {
                expected: expected.size,
                actual,
            });
        }
        if !is_sha256_hex(&expected.sha256) || sha256_hex(bytes) != expected.sha256 {
            return Err(BundleError::DigestMismatch);
        }
        // serde's message may quote a value: say only where it is wrong.
        let bundle: Self = serde_json::from_slice(bytes).map_err(|e| {
            BundleError::Malformed(format!("line {} column {}", e.line(), e.column()))
        })?;
        if from_hex(&bundle.salt).is_none_or(|salt| salt.len() < SALT_BYTES) {
            return Err(BundleError::Malformed("the salt is too short".into()));
        }
        if let Some(bad) = bundle.values.keys().find(|k| !is_valid_key(k)) {
            return Err(BundleError::Malformed(format!("invalid name {bad:?}")));
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bundle() -> SecretsBundle {
        SecretsBundle::new(BTreeMap::from([
            ("API_KEY".to_string(), "s3cr\"et\n".to_string()),
            ("b.other".to_string(), "x".to_string()),
        ]))
        .unwrap()
    }

    #[test]
    fn a_bundle_verifies_against_its_own_reference_only() {
        let b = bundle();
        let bytes = b.to_bytes();
        let r = SecretsBundle::reference(&bytes);
        assert_eq!(SecretsBundle::verify(&bytes, &r).unwrap(), b);
        // One byte changed: same size, another digest.
        let mut tampered = bytes.clone();
        let at = tampered.len() - 3;
        tampered[at] ^= 1;
        assert_eq!(
            SecretsBundle::verify(&tampered, &r),
            Err(BundleError::DigestMismatch)
        );
        let mut longer = bytes.clone();
        longer.push(b' ');
        assert!(matches!(
            SecretsBundle::verify(&longer, &r),
            Err(BundleError::SizeMismatch { .. })
        ));
        let big = vec![b' '; MAX_SECRETS_BUNDLE_BYTES as usize + 1];
        let big_ref = SecretsBundle::reference(&big);
        assert!(matches!(
            SecretsBundle::verify(&big, &big_ref),
            Err(BundleError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_same_values_under_new_salts_have_other_digests() {
        let (a, b) = (bundle(), bundle());
        assert_eq!(a.values, b.values);
        assert_ne!(
            SecretsBundle::reference(&a.to_bytes()),
            SecretsBundle::reference(&b.to_bytes())
        );
        // Same salt and values: the same bytes (replicas agree).
        assert_eq!(a.to_bytes(), a.clone().to_bytes());
    }

    #[test]
    fn a_signed_but_invalid_bundle_is_refused_without_quoting_values() {
        for text in [
            r#"{"salt":"00","values":{}}"#,
            r#"{"salt":"00112233445566778899aabbccddeeff","values":{"bad name":"v"}}"#,
            r#"{"salt":"00112233445566778899aabbccddeeff","values":{"K":7}}"#,
        ] {
            let r = SecretsBundle::reference(text.as_bytes());
            let e = SecretsBundle::verify(text.as_bytes(), &r).unwrap_err();
            assert!(matches!(e, BundleError::Malformed(_)), "{text}: {e}");
        }
        let debug = format!("{:?}", bundle());
        assert!(!debug.contains("s3cr"), "{debug}");
    }

    #[test]
    fn names_follow_the_config_key_rule() {
        assert!(is_valid_key("API_KEY"));
        assert!(is_valid_key("a.b-c_9"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key("é"));
        assert!(!is_valid_key(&"a".repeat(257)));
        assert!(is_valid_key(&"a".repeat(256)));
        assert!(is_valid_key("_private.v2"));
        assert!(is_valid_key("9lives"));
        for dots in [".", "..", "...", ".env", "-rf", "-"] {
            assert!(!is_valid_key(dots), "{dots}");
        }
    }
}
