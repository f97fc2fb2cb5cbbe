//! The sync wire format between the control plane and nodes.
//!
//! A snapshot is the whole desired state of the fleet at one revision: every
//! deployed app with its hostnames, artifact digest, config values and
//! limits (artifacts themselves are fetched by digest). The control plane
//! signs the snapshot's exact JSON bytes, and a node verifies the signature
//! before it parses them, so nothing unsigned ever reaches
//! `Component::deserialize`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::AppLimits;
use crate::names::{AppName, HostPattern, TenantId};
use crate::signing::{SigningKey, VerifyingKey};

/// The desired state at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Names the control plane's database: a restored or recreated one has
    /// a new epoch, and its revisions start over. A node accepts a snapshot
    /// of another epoch whatever its revision.
    pub epoch: String,
    /// Monotonic within an epoch: every change on the control plane bumps it.
    pub revision: u64,
    /// When the control plane built it (Unix seconds).
    pub created_unix: u64,
    pub apps: Vec<SnapshotApp>,
}

/// One deployed app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotApp {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// The active version (1, 2, ...).
    pub version: u64,
    /// SHA-256 of the uploaded `.wasm`.
    pub source_sha256: String,
    /// The precompiled artifact to fetch from `/v1/artifacts/{sha256}`.
    pub artifact: ArtifactRef,
    /// Config values, the guest's environment.
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub sha256: String,
    pub size: u64,
    /// The engine compatibility hash it was compiled for
    /// ([`crate::engine_hash`]).
    pub engine: String,
}

/// A snapshot as it travels and as a node stores it: the exact bytes that
/// were signed, and the signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedSnapshot {
    /// [`VerifyingKey::id`] of the signing key.
    pub key_id: String,
    /// The snapshot's JSON.
    pub payload: String,
    /// Ed25519 signature over `payload`, hex.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the snapshot signature does not verify with the pinned control-plane key {expected} (signed by key {actual})"
    )]
    BadSignature { expected: String, actual: String },
    #[error("the signed snapshot is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl SignedSnapshot {
    pub fn sign(snapshot: &Snapshot, key: &SigningKey) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_string(snapshot)?;
        Ok(Self {
            key_id: key.verifying_key().id(),
            signature: key.sign_hex(payload.as_bytes()),
            payload,
        })
    }

    /// Checks the signature, then parses the payload.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Snapshot, SnapshotError> {
        if !key.verify(self.payload.as_bytes(), &self.signature) {
            return Err(SnapshotError::BadSignature {
                expected: key.id(),
                actual: self.key_id.clone(),
            });
        }
        Ok(serde_json::from_str(&self.payload)?)
    }
}

/// What a node reports after trying to apply a revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub revision: u64,
    /// `applied` (ACK: the node serves this revision, except the apps in
    /// `app_errors`) or `rejected` (NACK: the snapshot itself was refused,
    /// for example its signature did not verify).
    pub outcome: ApplyOutcome,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Apps of an applied revision this node could not serve (a digest
    /// mismatch, a component that does not load, a hostname the node's own
    /// config routes). Each keeps its previous version if it had one; one
    /// app's failure never holds back the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_errors: Vec<AppError>,
    /// The node's engine compatibility hash.
    pub engine: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub tenant: TenantId,
    pub app: AppName,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyOutcome {
    Applied,
    Rejected,
}

/// The public key a control plane serves at `GET /v1/sync/key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncKey {
    pub key_id: String,
    pub public_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            epoch: "e1".into(),
            revision: 3,
            created_unix: 1,
            apps: vec![SnapshotApp {
                tenant: TenantId::try_from("acme".to_string()).unwrap(),
                name: AppName::try_from("hello".to_string()).unwrap(),
                hosts: vec![HostPattern::try_from("hello.test".to_string()).unwrap()],
                version: 1,
                source_sha256: "a".repeat(64),
                artifact: ArtifactRef {
                    sha256: "b".repeat(64),
                    size: 10,
                    engine: "e".into(),
                },
                config: BTreeMap::new(),
                limits: AppLimits::default(),
            }],
        }
    }

    #[test]
    fn a_signed_snapshot_round_trips_and_tampering_is_caught() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let signed = SignedSnapshot::sign(&snapshot(), &key).unwrap();
        let wire = serde_json::to_string(&signed).unwrap();
        let back: SignedSnapshot = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.verify(&key.verifying_key()).unwrap(), snapshot());

        let mut tampered = back.clone();
        tampered.payload = tampered.payload.replace("hello.test", "evil.test");
        assert!(matches!(
            tampered.verify(&key.verifying_key()),
            Err(SnapshotError::BadSignature { .. })
        ));
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        assert!(back.verify(&other.verifying_key()).is_err());
    }
}
