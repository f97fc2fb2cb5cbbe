//! The control plane's two private keys, generated into the data directory
//! on first start: one signs API tokens (JWT, EdDSA), one signs sync
//! snapshots. Separate keys, so handing out the snapshot public key to
//! nodes says nothing about tokens, and either can be rotated alone.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use edge_common::signing::{KeyError, SigningKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {source}")]
    Invalid { path: PathBuf, source: KeyError },
}

/// The PKCS#8 bytes of the key at `path`, generating (mode 0600) if absent.
pub fn load_or_generate(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(der) => {
            SigningKey::from_pkcs8(&der).map_err(|source| KeyFileError::Invalid {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(der)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = SigningKey::generate_pkcs8().map_err(|source| KeyFileError::Invalid {
                path: path.to_path_buf(),
                source,
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            file.write_all(&der).map_err(io)?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            // The rename, and the new directory itself, must survive a crash
            // too: a regenerated key would void every token and every
            // node's pinned key.
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
                if let Some(parent) = dir.parent() {
                    std::fs::File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(io)?;
                }
            }
            tracing::info!(path = %path.display(), "generated a new signing key");
            Ok(der)
        }
        Err(e) => Err(io(e)),
    }
}

pub fn token_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("token-signing.pk8")
}

pub fn sync_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("sync-signing.pk8")
}
