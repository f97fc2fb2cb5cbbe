//! The control plane's two private keys: one signs API tokens (JWT,
//! EdDSA), one signs sync snapshots. Separate keys, so handing out the
//! snapshot public key to nodes says nothing about tokens, and either can
//! be rotated alone.
//!
//! On one machine they are generated into the data directory on first
//! start. Replicas share one keys directory instead (a mounted secret),
//! made once by `edge-cp keys init`: a replica never generates a key, since
//! two replicas generating their own would sign with different keys.
//!
//! Beside them, the key-encryption keyring ([`crate::seal::Keyring`]) that
//! seals tenants' TLS private keys and the ACME account at rest: from
//! `--kek-file`, `EDGE_CP_KEK` or the keys directory's `kek`
//! ([`KekSource`]), rotated by `edge-cp keys rotate-kek` ([`rotate_kek`]),
//! which re-seals every stored value under the new key (all in `kek`).

mod kek;

use std::path::{Path, PathBuf};

use edge_common::fsutil::write_atomically;
use edge_common::signing::{KeyError, SigningKey};

pub use self::kek::{
    CheckError, KEK_ENV, KEK_FILE, KekRotation, KekSource, KekStep, MissingKeys, Resealed,
    RotateError, check_keyring, rotate_kek,
};
use self::kek::{load_or_generate_kek, read_keyring};
use crate::seal::{Keyring, SealError};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {source}")]
    Invalid { path: PathBuf, source: KeyError },
    #[error(
        "key file {path} is missing; create the keys once with `edge-cp keys init --keys-dir {dir}`"
    )]
    Missing { path: PathBuf, dir: PathBuf },
    #[error(
        "{dir} holds only one of the two keys; restore the other from a backup (or, knowing every token and node trust is then void, empty the directory and run `edge-cp keys init` again)"
    )]
    Partial { dir: PathBuf },
    #[error(
        "a previous token key is still kept at {path}: delete it once every token signed with it is replaced, then rotate again"
    )]
    RotationPending { path: PathBuf },
    #[error("key-encryption keyring {origin}: {source}")]
    Keyring { origin: String, source: SealError },
    #[error(
        "key-encryption keyring {path} is missing: write one key into it (`openssl rand -hex 32 > {path}`, mode 0600), or leave out --kek-file to use the keys directory's"
    )]
    KekFileMissing { path: PathBuf },
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

/// Where the keys are, and whether a missing one may be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--data-dir`: `DATA_DIR/keys/`, generated on first use.
    DataDir(PathBuf),
    /// `--keys-dir`: made by `edge-cp keys init`, shared by every replica;
    /// a missing key is an error.
    Shared(PathBuf),
}

/// The token-signing key rotated out, still accepted for verification
/// until the operator deletes the file (see `docs/operations.md`).
const PREVIOUS_TOKEN_KEY: &str = "token-signing.previous.pk8";
const TOKEN_KEY: &str = "token-signing.pk8";
const SYNC_KEY: &str = "sync-signing.pk8";

impl KeySource {
    pub fn dir(&self) -> PathBuf {
        match self {
            KeySource::DataDir(data_dir) => data_dir.join("keys"),
            KeySource::Shared(dir) => dir.clone(),
        }
    }

    /// The PKCS#8 bytes of the token-signing key.
    pub fn token_key(&self) -> Result<Vec<u8>, KeyFileError> {
        self.load(TOKEN_KEY)
    }

    /// The PKCS#8 bytes of the snapshot-signing key.
    pub fn sync_key(&self) -> Result<Vec<u8>, KeyFileError> {
        self.load(SYNC_KEY)
    }

    /// The token-signing key rotated out, if it is still kept.
    pub fn previous_token_key(&self) -> Result<Option<Vec<u8>>, KeyFileError> {
        let path = self.dir().join(PREVIOUS_TOKEN_KEY);
        match std::fs::read(&path) {
            Ok(der) => {
                SigningKey::from_pkcs8(&der)
                    .map_err(|source| KeyFileError::Invalid { path, source })?;
                Ok(Some(der))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyFileError::Io { path, source }),
        }
    }

    /// The key-encryption keyring in the keys directory: generated in a
    /// data directory on first use; in a shared keys directory made by
    /// `edge-cp keys init` (missing: an error naming it).
    pub fn kek(&self) -> Result<Keyring, KeyFileError> {
        let path = self.dir().join(KEK_FILE);
        match self {
            KeySource::DataDir(_) => load_or_generate_kek(&path),
            KeySource::Shared(dir) => {
                if !path.exists() {
                    return Err(KeyFileError::Missing {
                        path,
                        dir: dir.clone(),
                    });
                }
                read_keyring(&path).map(|(keyring, _)| keyring)
            }
        }
    }

    fn load(&self, name: &str) -> Result<Vec<u8>, KeyFileError> {
        let path = self.dir().join(name);
        match self {
            KeySource::DataDir(_) => load_or_generate(&path),
            KeySource::Shared(dir) => {
                let der = std::fs::read(&path).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => KeyFileError::Missing {
                        path: path.clone(),
                        dir: dir.clone(),
                    },
                    _ => KeyFileError::Io {
                        path: path.clone(),
                        source,
                    },
                })?;
                SigningKey::from_pkcs8(&der)
                    .map_err(|source| KeyFileError::Invalid { path, source })?;
                Ok(der)
            }
        }
    }
}

/// What `edge-cp keys init` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initialised {
    Created,
    /// Both signing keys were there, but no key-encryption keyring (a
    /// directory made before certificates): the keyring was added.
    AddedKek,
    /// Every key was there already: nothing was touched.
    AlreadyThere,
}

/// Makes the keys directory every replica mounts: both signing keys and the
/// key-encryption keyring, mode 0600. Never replaces a key (that would
/// void every token, every node's trust, or every sealed value): a
/// directory with both signing keys only gets a missing keyring, one with
/// only one of them is an error to look into.
pub fn init(dir: &Path) -> Result<Initialised, KeyFileError> {
    let present = [TOKEN_KEY, SYNC_KEY].map(|name| dir.join(name).exists());
    let kek = dir.join(KEK_FILE);
    match present {
        [true, true] => {
            // Every key must parse: a damaged key found now beats one found
            // by a replica at start.
            let shared = KeySource::Shared(dir.to_path_buf());
            shared.token_key()?;
            shared.sync_key()?;
            if kek.exists() {
                shared.kek()?;
                Ok(Initialised::AlreadyThere)
            } else {
                load_or_generate_kek(&kek)?;
                Ok(Initialised::AddedKek)
            }
        }
        [false, false] => {
            for name in [TOKEN_KEY, SYNC_KEY] {
                load_or_generate(&dir.join(name))?;
            }
            load_or_generate_kek(&kek)?;
            Ok(Initialised::Created)
        }
        _ => Err(KeyFileError::Partial {
            dir: dir.to_path_buf(),
        }),
    }
}

/// Rotates the token-signing key: the current one becomes the previous
/// one (still accepted for verification, so tokens already handed out keep
/// working), and a new one signs from the next start on. Refused while a
/// previous key is still kept: two rotations in a row would void the
/// tokens of the first.
pub fn rotate_token_key(source: &KeySource) -> Result<(), KeyFileError> {
    let dir = source.dir();
    let (current, previous) = (dir.join(TOKEN_KEY), dir.join(PREVIOUS_TOKEN_KEY));
    if previous.exists() {
        return Err(KeyFileError::RotationPending { path: previous });
    }
    source.token_key()?;
    std::fs::rename(&current, &previous).map_err(|source| KeyFileError::Io {
        path: previous.clone(),
        source,
    })?;
    load_or_generate(&current)?;
    Ok(())
}
