//! What a node keeps on disk to serve without its control plane: the last
//! applied signed snapshot, the artifacts and certificate bundles it names,
//! and the pinned control-plane key. Every file is written tmp → fsync →
//! rename → fsync the directory, so a crash leaves the old file or the new
//! one, never half. Bundles hold private keys: their directory is 0700 and
//! each file 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use edge_common::signing::{VerifyingKey, is_sha256_hex};
use edge_common::sync::{MAX_CERTIFICATE_BUNDLE_BYTES, SignedSnapshot};

/// Cheap to clone (a path), for file work on the blocking pool.
#[derive(Clone)]
pub struct LocalState {
    dir: PathBuf,
}

impl LocalState {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("artifacts"))?;
        let certificates = dir.join("certificates");
        std::fs::create_dir_all(&certificates)?;
        // Also when it existed with looser bits.
        std::fs::set_permissions(&certificates, std::fs::Permissions::from_mode(0o700))?;
        // What a crash left half written is never read (only whole files
        // have a digest's name), but it holds disk space until removed.
        for sub in ["artifacts", "certificates"] {
            remove_leftovers(&dir.join(sub));
        }
        remove_leftovers(dir);
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The data directory (`sync::secrets` keeps its files under it).
    pub fn dir(&self) -> &Path {
        &self.dir
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
        retain(&self.dir.join("artifacts"), "", keep);
    }

    fn certificate_path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join("certificates")
            .join(format!("{sha256}{BUNDLE_SUFFIX}"))
    }

    /// A certificate bundle from disk, if present (the caller verifies it).
    /// A file larger than any bundle is not read: it is not one.
    pub fn read_certificate(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.certificate_path(sha256);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_CERTIFICATE_BUNDLE_BYTES => {
                return Err(std::io::Error::other(format!(
                    "{} bytes, more than a bundle may have",
                    meta.len()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        std::fs::read(path).map(Some)
    }

    /// Keeps a bundle (it holds a private key: 0600).
    pub fn write_certificate(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_with_mode(&self.certificate_path(sha256), bytes, 0o600)
    }

    /// Removes bundles no longer named or served, and leftovers of
    /// interrupted writes.
    pub fn retain_certificates(&self, keep: &[&str]) {
        retain(&self.dir.join("certificates"), BUNDLE_SUFFIX, keep);
    }
}

/// A kept bundle is `certificates/{sha256}.pem`.
const BUNDLE_SUFFIX: &str = ".pem";

/// Removes every file of `dir` but `{sha256}{suffix}` for the digests in
/// `keep`.
pub(super) fn retain(dir: &Path, suffix: &str, keep: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kept = name
            .strip_suffix(suffix)
            .is_some_and(|sha| is_sha256_hex(sha) && keep.contains(&sha));
        if !kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes the temporary files of writes a crash interrupted
/// (`NAME.tmp-PID`, see [`write_with_mode`]) from `dir`.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().contains(".tmp-")
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Every file of the local state: tmp beside the target, then renamed.
fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(target, bytes, 0o666)
}

pub(super) fn write_with_mode(target: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
    edge_common::fsutil::write_atomically(&tmp, target, bytes, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_private_and_only_the_named_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let certificates = dir.path().join("certificates");
        std::fs::create_dir_all(&certificates).unwrap();
        std::fs::set_permissions(&certificates, std::fs::Permissions::from_mode(0o755)).unwrap();
        let local = LocalState::open(dir.path()).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&certificates), 0o700);

        let (kept, dropped) = ("a".repeat(64), "b".repeat(64));
        // A crash of a run with this pid left a readable tmp file: the
        // bundle written next is 0600 all the same.
        let leftover = certificates.join(format!("{kept}.tmp-{}", std::process::id()));
        std::fs::write(&leftover, "leftover").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
        local.write_certificate(&kept, b"chain and key").unwrap();
        assert!(!leftover.exists());
        local.write_certificate(&dropped, b"old").unwrap();
        assert_eq!(mode(&local.certificate_path(&kept)), 0o600);
        assert_eq!(
            local.read_certificate(&kept).unwrap().as_deref(),
            Some(&b"chain and key"[..])
        );
        std::fs::write(certificates.join("leftover.tmp-1"), "x").unwrap();
        local.retain_certificates(&[kept.as_str()]);
        let left: Vec<_> = std::fs::read_dir(&certificates)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [format!("{kept}.pem")]);
        assert!(local.read_certificate(&dropped).unwrap().is_none());

        // Not read whole: larger than any bundle.
        let huge = vec![b'x'; MAX_CERTIFICATE_BUNDLE_BYTES as usize + 1];
        std::fs::write(local.certificate_path(&dropped), huge).unwrap();
        assert!(local.read_certificate(&dropped).is_err());
    }
}
