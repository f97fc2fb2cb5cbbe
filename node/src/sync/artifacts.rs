//! The artifacts of a snapshot: from the local copy if it is intact, else
//! from the control plane (`GET /v1/artifacts/{sha256}`), checked against
//! the size and SHA-256 the signed snapshot names before anything loads
//! them, then kept on disk.

use std::collections::HashMap;
use std::time::Duration;

use edge_common::signing::sha256_hex;
use edge_common::sync::Snapshot;

use super::{Fetched, SyncError, Syncer};

/// Artifacts larger than this are refused whatever a snapshot says.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

impl Syncer {
    /// The verified bytes of every artifact the current apps do not already
    /// use, from disk if a good copy is there, else from the control plane
    /// (then written to disk).
    /// An artifact whose bytes do not match the snapshot's digest is
    /// returned in the second map, with why: its app fails alone. Without
    /// `download`, only the local copies are used.
    pub(super) async fn fetch_artifacts(
        &self,
        snapshot: &Snapshot,
        download: bool,
    ) -> Result<(HashMap<String, Vec<u8>>, HashMap<String, String>), SyncError> {
        let mut artifacts = HashMap::new();
        let mut bad = HashMap::new();
        for app in &snapshot.apps {
            let sha = &app.artifact.sha256;
            let loaded = self
                .applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?
                .has_artifact(sha);
            if loaded || artifacts.contains_key(sha) || bad.contains_key(sha) {
                continue;
            }
            match self.local_artifact(sha, app.artifact.size) {
                Ok(bytes) => {
                    artifacts.insert(sha.clone(), bytes);
                    continue;
                }
                Err(why) if !download => {
                    bad.insert(sha.clone(), why);
                    continue;
                }
                Err(_) => {}
            }
            let fetched = self
                .download(sha, app.artifact.size)
                .await
                .and_then(|bytes| verify_artifact(sha, app.artifact.size, &bytes).map(|()| bytes));
            let bytes = match fetched {
                Ok(bytes) => bytes,
                // This artifact is bad, not the connection: its app fails.
                Err(e @ SyncError::Artifact { .. }) => {
                    self.metrics
                        .sync
                        .failures
                        .with_label_values(&["artifact"])
                        .inc();
                    bad.insert(sha.clone(), e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.local
                .write_artifact(sha, &bytes)
                .map_err(SyncError::Persist)?;
            artifacts.insert(sha.clone(), bytes);
        }
        Ok((artifacts, bad))
    }

    /// The local copy of an artifact if it is there and intact, else why not.
    fn local_artifact(&self, sha256: &str, size: u64) -> Result<Vec<u8>, String> {
        match self.local.read_artifact(sha256) {
            Ok(Some(bytes)) => verify_artifact(sha256, size, &bytes)
                .map(|()| bytes)
                .map_err(|e| e.to_string()),
            Ok(None) => Err("missing from the local store".to_string()),
            Err(e) => Err(format!("cannot read it from the local store: {e}")),
        }
    }

    async fn download(&self, sha256: &str, size: u64) -> Result<Vec<u8>, SyncError> {
        let artifact_error = |message: String| SyncError::Artifact {
            sha256: sha256.to_string(),
            message,
        };
        let fetch_error = |message: String| SyncError::ArtifactFetch {
            sha256: sha256.to_string(),
            message,
        };
        if size > MAX_ARTIFACT_BYTES {
            return Err(artifact_error(format!(
                "{size} bytes is over the {MAX_ARTIFACT_BYTES}-byte limit"
            )));
        }
        let path = format!("/v1/artifacts/{sha256}");
        let timeout = Duration::from_secs(300);
        match self.fetch_named(&path, size, timeout, fetch_error).await? {
            Fetched::Bytes(bytes) => Ok(bytes),
            Fetched::TooLong => Err(artifact_error(super::too_long(size))),
            Fetched::Refused { status, body } => Err(SyncError::ArtifactFetch {
                sha256: sha256.to_string(),
                message: format!(
                    "the control plane answered {}: {}",
                    status.as_u16(),
                    super::shorten(&body)
                ),
            }),
        }
    }
}

fn verify_artifact(sha256: &str, size: u64, bytes: &[u8]) -> Result<(), SyncError> {
    let actual = sha256_hex(bytes);
    if bytes.len() as u64 != size || actual != sha256 {
        return Err(SyncError::Artifact {
            sha256: sha256.to_string(),
            message: format!(
                "digest mismatch: got {} bytes hashing to {actual}; refusing to load it",
                bytes.len()
            ),
        });
    }
    Ok(())
}
