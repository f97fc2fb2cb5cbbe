//! The control plane's two private keys, generated into the data directory
//! on first start: one signs API tokens (JWT, EdDSA), one signs sync
//! snapshots. Separate keys, so handing out the snapshot public key to
//! nodes says nothing about tokens, and either can be rotated alone.

use std::path::{Path, PathBuf};

use edge_common::fsutil::write_atomically;
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
            // A regenerated key would void every token and every node's
            // pinned key: the write (and the new keys/ directory) must
            // survive a crash.
            write_atomically(&path.with_extension("tmp"), path, &der, 0o600).map_err(io)?;
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
