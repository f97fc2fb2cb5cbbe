//! What a node keeps on disk to serve without its control plane: the last
//! applied signed snapshot, the artifacts it names, and the pinned
//! control-plane key. Every file is written tmp → fsync → rename → fsync
//! the directory, so a crash leaves the old file or the new one, never half.

use std::path::{Path, PathBuf};

use edge_common::signing::{VerifyingKey, is_sha256_hex};
use edge_common::sync::SignedSnapshot;

pub struct LocalState {
    dir: PathBuf,
}

impl LocalState {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("artifacts"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("trusted-key")
    }

    pub fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("artifacts").join(sha256)
    }

    /// The last applied snapshot, as stored (still to be verified).
    pub fn read_snapshot(&self) -> std::io::Result<Option<SignedSnapshot>> {
        match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_snapshot(&self, snapshot: &SignedSnapshot) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
        write_atomically(&self.snapshot_path(), &bytes)
    }

    pub fn read_pinned_key(&self) -> std::io::Result<Option<VerifyingKey>> {
        match std::fs::read_to_string(self.key_path()) {
            Ok(hex) => VerifyingKey::from_hex(&hex)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn pin_key(&self, key: &VerifyingKey) -> std::io::Result<()> {
        write_atomically(&self.key_path(), key.to_hex().as_bytes())
    }

    /// An artifact's bytes from disk, if present (the caller verifies them).
    pub fn read_artifact(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.artifact_path(sha256)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_artifact(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.artifact_path(sha256), bytes)
    }

    /// Removes artifacts no longer named by the applied snapshot, and
    /// leftovers of interrupted writes.
    pub fn retain_artifacts(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("artifacts")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(is_sha256_hex(&name) && keep.contains(&name.as_ref())) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Every file of the local state: tmp beside the target, then renamed.
fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
    edge_common::fsutil::write_atomically(&tmp, target, bytes, 0o666)
}
