//! The key-encryption keyring: where it comes from ([`KekSource`]), its
//! file (one key a line, the current first, mode 0600, written so that a
//! crash leaves the old or the new one whole), and `edge-cp keys
//! rotate-kek` ([`rotate_kek`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use edge_common::fsutil::write_atomically;

use super::{KeyFileError, KeySource};
use crate::seal::{self, Keyring, SealError};
use crate::store::{MetaStore, StoreError};

/// The key-encryption keyring's file in a keys directory.
pub const KEK_FILE: &str = "kek";

/// The environment variable that may hold the keyring itself.
pub const KEK_ENV: &str = "EDGE_CP_KEK";

/// Where the key-encryption keyring comes from, in the order `edge-cp
/// serve` looks: `--kek-file`, then `EDGE_CP_KEK`, then the keys
/// directory's [`KEK_FILE`].
#[derive(Clone, PartialEq, Eq, Default)]
pub enum KekSource {
    /// `--kek-file PATH` (or `EDGE_CP_KEK_FILE`): a file the operator
    /// keeps (a mounted secret); it must exist.
    File(PathBuf),
    /// `EDGE_CP_KEK`: the keyring's text itself.
    Env(String),
    /// `kek` in the keys directory ([`KeySource::kek`]).
    #[default]
    KeysDir,
}

// The keyring's text never reaches a log line.
impl std::fmt::Debug for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Env(_) => f.write_str("Env(<redacted>)"),
            Self::KeysDir => f.write_str("KeysDir"),
        }
    }
}

impl KekSource {
    /// `--kek-file` if given, else `EDGE_CP_KEK` if set (its value as
    /// given here), else the keys directory.
    pub fn pick(file: Option<PathBuf>, env: Option<String>) -> Self {
        match (file, env) {
            (Some(path), _) => Self::File(path),
            (None, Some(text)) => Self::Env(text),
            (None, None) => Self::KeysDir,
        }
    }

    /// Reads the keyring; `keys` is where [`KekSource::KeysDir`] looks.
    pub fn load(&self, keys: &KeySource) -> Result<Keyring, KeyFileError> {
        match self {
            Self::File(path) => {
                if !path.exists() {
                    return Err(KeyFileError::KekFileMissing { path: path.clone() });
                }
                read_keyring(path).map(|(keyring, _)| keyring)
            }
            Self::Env(text) => Keyring::parse(text).map_err(|source| KeyFileError::Keyring {
                origin: format!("in {KEK_ENV}"),
                source,
            }),
            Self::KeysDir => keys.kek(),
        }
    }

    /// The file `rotate-kek` rewrites; none for `EDGE_CP_KEK`, which only
    /// its operator can change.
    pub fn file(&self, keys: &KeySource) -> Option<PathBuf> {
        match self {
            Self::File(path) => Some(path.clone()),
            Self::Env(_) => None,
            Self::KeysDir => Some(keys.dir().join(KEK_FILE)),
        }
    }
}

const KEYRING_HEADER: &str = "# edge-cp key-encryption keyring: one key a line, the current one first \
(`edge-cp keys rotate-kek`). Secret: back it up with the keys directory.\n";

/// The keyring at `path` and its keys' lines (hex), the current first.
pub(super) fn read_keyring(path: &Path) -> Result<(Keyring, Vec<String>), KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the key-encryption keyring is readable by other users: chmod 600 it");
    }
    let keyring = Keyring::parse(&text).map_err(|source| KeyFileError::Keyring {
        origin: path.display().to_string(),
        source,
    })?;
    Ok((keyring, key_lines(&text)))
}

/// The keys of a keyring's text, as `Keyring::parse` reads them.
fn key_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes a keyring file (mode 0600) surviving a crash whole: losing it
/// halfway would lose every sealed value.
fn write_keyring(path: &Path, keys: &[String]) -> Result<Keyring, KeyFileError> {
    let mut text = KEYRING_HEADER.to_string();
    for key in keys {
        text.push_str(key);
        text.push('\n');
    }
    let keyring = Keyring::parse(&text).map_err(|source| KeyFileError::Keyring {
        origin: path.display().to_string(),
        source,
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    write_atomically(Path::new(&tmp), path, text.as_bytes(), 0o600).map_err(|source| {
        KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(keyring)
}

/// The keyring at `path`, generated (one key, mode 0600) if absent.
pub(super) fn load_or_generate_kek(path: &Path) -> Result<Keyring, KeyFileError> {
    if path.exists() {
        return read_keyring(path).map(|(keyring, _)| keyring);
    }
    let key = Keyring::generate_key().map_err(|source| KeyFileError::Keyring {
        origin: path.display().to_string(),
        source,
    })?;
    let keyring = write_keyring(path, &[key])?;
    tracing::info!(path = %path.display(), kek = %keyring.current_id(), "generated a new key-encryption key");
    Ok(keyring)
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the keyring comes from {KEK_ENV}, which edge-cp cannot rewrite: write it to a file (mode 0600), rotate with --kek-file FILE, then put the file's keys into {KEK_ENV}"
    )]
    FromEnv,
    #[error(
        "{path} holds {count} keys, the most a keyring may: run `edge-cp keys rotate-kek --retire-old` first"
    )]
    Full { path: PathBuf, count: usize },
    #[error(
        "{} sealed value(s) do not open with this keyring, so no key was retired: {}",
        .0.len(),
        .0.join("; ")
    )]
    Unreadable(Vec<String>),
    #[error(
        "values kept being sealed under an older key while retiring (is a control plane still running with the old keyring? restart every one first): {0}"
    )]
    StillInUse(String),
    #[error("cannot seal: {0}")]
    Seal(SealError),
    #[error("the keyring holds no key {id} (it holds {known})")]
    UnknownKey { id: String, known: String },
}

/// One step of a rotation (`edge-cp keys rotate-kek [--stage | --to ID |
/// --retire-old]`). With several control plane replicas, each step is
/// followed by copying the keyring to every replica and restarting them:
/// stage (every replica can then open values under the new key), promote
/// (it seals from now on; values are re-sealed), retire (the old keys go).
/// So no replica is ever asked to open a value under a key it lacks, and
/// none seals under a key about to be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekStep {
    /// A new key is made current at once and every value re-sealed: stage
    /// and promote in one, for a single control plane.
    Rotate,
    /// A new key is added last: it opens values but seals none yet.
    Stage,
    /// The keyring's key with this id becomes current; every value is
    /// re-sealed under it.
    Promote(String),
    /// Values still under an older key are re-sealed, then every key but
    /// the current one is dropped.
    RetireOld,
}

/// Stored values sealed under keys the keyring does not hold: a control
/// plane refuses to start with such a keyring (a forgotten `--kek-file`, a
/// lost keys directory, a replica not yet given a promoted key), since it
/// could open none of them and would seal new ones under a key the others
/// may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{count} stored value(s) are sealed under key-encryption key(s) {ids}, which this keyring ({held}) does not hold: start with the keyring they were sealed with (--kek-file, {KEK_ENV}, or the keys directory's `kek`; see docs/operations.md, \"Private keys at rest\")"
)]
pub struct MissingKeys {
    pub count: usize,
    pub ids: String,
    pub held: String,
}

/// Checks that `keyring` holds the key of every sealed value in `store`
/// (values that are not sealed values at all are left to fail alone).
pub async fn check_keyring(keyring: &Keyring, store: &dyn MetaStore) -> Result<(), CheckError> {
    let certificates = store.all_certificates().await?;
    let accounts = store.acme_accounts().await?;
    let secrets = store.all_secrets().await?;
    let sealed = certificates
        .iter()
        .filter_map(|c| c.material.as_ref().map(|m| m.sealed_key.as_slice()))
        .chain(accounts.iter().map(|(_, sealed)| sealed.as_slice()))
        .chain(secrets.iter().map(|s| s.sealed.as_slice()));
    let (mut count, mut ids) = (0, std::collections::BTreeSet::new());
    for value in sealed {
        // A damaged value (not even sealed-looking) fails alone, as
        // `cert-corrupt`/`key-unavailable` for its certificate: one bad
        // row must not keep the control plane from serving the others.
        if let Some(id) = Keyring::sealed_with(value)
            && !keyring.holds(value)
        {
            count += 1;
            ids.insert(id);
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(CheckError::Missing(MissingKeys {
        count,
        ids: ids.into_iter().collect::<Vec<_>>().join(", "),
        held: keyring.ids().join(", "),
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Missing(#[from] MissingKeys),
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
}

/// What [`rotate_kek`] did; shown as the lines `edge-cp keys
/// rotate-kek` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekRotation {
    /// The keyring file rewritten.
    pub file: PathBuf,
    /// The current key's id (new unless only retiring).
    pub current: String,
    /// Whether a new key was made current.
    pub added: bool,
    /// A key added but not current (`--stage`): its id.
    pub staged: Option<String>,
    /// Ids of the keys dropped from the keyring (`--retire-old`).
    pub retired: Vec<String>,
    /// Keys kept in the keyring, the current one included.
    pub kept: usize,
    pub certificates: Resealed,
    pub acme_accounts: Resealed,
    /// App secrets.
    pub secrets: Resealed,
}

impl KekRotation {
    /// The values that did not open, certificates first.
    pub fn unreadable(&self) -> Vec<&str> {
        self.certificates
            .unreadable
            .iter()
            .chain(&self.acme_accounts.unreadable)
            .chain(&self.secrets.unreadable)
            .map(String::as_str)
            .collect()
    }
}

impl std::fmt::Display for KekRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        if let Some(staged) = &self.staged {
            return write!(
                f,
                "staged key-encryption key {staged} in {file} ({} keys kept; it opens values but seals none yet)\ncopy {file} to every control plane, restart them, then run `edge-cp keys rotate-kek --to {staged}`",
                self.kept
            );
        }
        if self.added {
            writeln!(
                f,
                "new key-encryption key {} is current in {file} ({} keys kept)",
                self.current, self.kept
            )?;
        }
        let (certs, accounts) = (&self.certificates, &self.acme_accounts);
        writeln!(
            f,
            "re-sealed {} certificate key(s) ({} already current) and {} ACME account(s) ({} already current)",
            certs.resealed, certs.current, accounts.resealed, accounts.current
        )?;
        writeln!(
            f,
            "re-sealed {} app secret(s) ({} already current)",
            self.secrets.resealed, self.secrets.current
        )?;
        if self.added {
            write!(
                f,
                "copy {file} to every control plane, restart them, then run `edge-cp keys rotate-kek --retire-old`"
            )
        } else {
            write!(
                f,
                "retired {} old key(s); {file} now holds the current key {} only",
                self.retired.len(),
                self.current
            )
        }
    }
}

/// Sealed values of one kind a rotation went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Sealed again under the current key.
    pub resealed: usize,
    /// Already under the current key.
    pub current: usize,
    /// Those that did not open (which value, and why), left as they are.
    pub unreadable: Vec<String>,
}

/// Times a value is re-read and re-sealed when it changes under the
/// rotation (an ACME renewal storing a new key meanwhile).
const RESEAL_ATTEMPTS: usize = 5;

/// `edge-cp keys rotate-kek`. Without `retire_old`: a new key goes to the
/// front of the keyring file (written first, so no value is ever sealed
/// under a key that is not on disk), then every certificate key and ACME
/// account is re-sealed under it. With `retire_old`: no new key; every
/// value not yet under the current key is re-sealed, and only once none
/// is left are the other keys dropped.
///
/// Control planes read the keyring at start: one still running with the
/// old keyring cannot open values re-sealed under the new key until it is
/// restarted, so restart every one between rotating and retiring.
pub async fn rotate_kek(
    source: &KekSource,
    keys: &KeySource,
    store: &dyn MetaStore,
    step: KekStep,
) -> Result<KekRotation, RotateError> {
    let retire_old = step == KekStep::RetireOld;
    let path = source.file(keys).ok_or(RotateError::FromEnv)?;
    let (mut keyring, mut lines) = match source {
        KekSource::File(path) if !path.exists() => {
            return Err(KeyFileError::KekFileMissing { path: path.clone() }.into());
        }
        KekSource::KeysDir => {
            // A data directory's keyring is made on first use; a shared one
            // must exist (the error names `edge-cp keys init`).
            keys.kek()?;
            read_keyring(&path)?
        }
        _ => read_keyring(&path)?,
    };
    let mut rotation = KekRotation {
        file: path.clone(),
        ..KekRotation::default()
    };
    match &step {
        KekStep::Rotate | KekStep::Stage => {
            if lines.len() >= seal::MAX_KEYS {
                return Err(RotateError::Full {
                    path,
                    count: lines.len(),
                });
            }
            let key = Keyring::generate_key().map_err(RotateError::Seal)?;
            if step == KekStep::Stage {
                lines.push(key);
                keyring = write_keyring(&path, &lines)?;
                let staged = keyring.ids().pop().unwrap_or_default();
                tracing::info!(path = %path.display(), kek = %staged, "new key-encryption key staged");
                rotation.staged = Some(staged);
                rotation.current = keyring.current_id();
                rotation.kept = lines.len();
                return Ok(rotation);
            }
            lines.insert(0, key);
            keyring = write_keyring(&path, &lines)?;
            rotation.added = true;
            tracing::info!(path = %path.display(), kek = %keyring.current_id(), "new key-encryption key is current");
        }
        KekStep::Promote(id) => {
            let at = keyring
                .ids()
                .iter()
                .position(|known| known == id)
                .ok_or_else(|| RotateError::UnknownKey {
                    id: id.clone(),
                    known: keyring.ids().join(", "),
                })?;
            let key = lines.remove(at);
            lines.insert(0, key);
            keyring = write_keyring(&path, &lines)?;
            rotation.added = at != 0;
            tracing::info!(path = %path.display(), kek = %keyring.current_id(), "key-encryption key promoted to current");
        }
        KekStep::RetireOld => {}
    }
    rotation.current = keyring.current_id();
    rotation.certificates = reseal_certificates(&keyring, store).await?;
    rotation.acme_accounts = reseal_accounts(&keyring, store).await?;
    rotation.secrets = reseal_secrets(&keyring, store).await?;
    if retire_old {
        let mut unreadable = rotation.certificates.unreadable.clone();
        unreadable.extend(rotation.acme_accounts.unreadable.iter().cloned());
        unreadable.extend(rotation.secrets.unreadable.iter().cloned());
        if !unreadable.is_empty() {
            return Err(RotateError::Unreadable(unreadable));
        }
        // A value sealed meanwhile by a control plane still running with
        // the old keyring would be lost with its key: check again, and
        // refuse rather than retire a key still in use.
        let again = reseal_certificates(&keyring, store).await?;
        let accounts = reseal_accounts(&keyring, store).await?;
        let secrets = reseal_secrets(&keyring, store).await?;
        if again.resealed + accounts.resealed + secrets.resealed > 0
            || !again.unreadable.is_empty()
            || !accounts.unreadable.is_empty()
            || !secrets.unreadable.is_empty()
        {
            return Err(RotateError::StillInUse(format!(
                "{} certificate key(s), {} ACME account(s), {} app secret(s)",
                again.resealed + again.unreadable.len(),
                accounts.resealed + accounts.unreadable.len(),
                secrets.resealed + secrets.unreadable.len()
            )));
        }
        let ids = keyring.ids();
        rotation.retired = ids.iter().skip(1).cloned().collect();
        lines.truncate(1);
        keyring = write_keyring(&path, &lines)?;
    }
    rotation.kept = keyring.ids().len();
    Ok(rotation)
}

async fn reseal_certificates(
    keyring: &Keyring,
    store: &dyn MetaStore,
) -> Result<Resealed, RotateError> {
    let mut done = Resealed::default();
    for cert in store.all_certificates().await? {
        let mut record = cert;
        for attempt in 1..=RESEAL_ATTEMPTS {
            let Some(material) = &record.material else {
                break;
            };
            if keyring.is_current(&material.sealed_key) {
                done.current += 1;
                break;
            }
            let aad = seal::tls_key_aad(&record.tenant, &record.app, &material.chain_pem);
            let key = match keyring.open(&material.sealed_key, &aad) {
                Ok(key) => key,
                Err(e) => {
                    done.unreadable
                        .push(format!("certificate {}: {e}", record.id));
                    break;
                }
            };
            let sealed = keyring.seal(&key, &aad).map_err(RotateError::Seal)?;
            if store
                .reseal_certificate_key(record.id, &material.sealed_key, &sealed)
                .await?
            {
                done.resealed += 1;
                break;
            }
            // Changed meanwhile (renewed, or deleted): look again.
            record = match store.get_certificate(record.id).await {
                Ok(record) => record,
                Err(StoreError::NotFound(_)) => break,
                Err(e) => return Err(e.into()),
            };
            if attempt == RESEAL_ATTEMPTS {
                done.unreadable
                    .push(format!("certificate {}: kept changing", record.id));
            }
        }
    }
    Ok(done)
}

async fn reseal_accounts(
    keyring: &Keyring,
    store: &dyn MetaStore,
) -> Result<Resealed, RotateError> {
    let mut done = Resealed::default();
    for (directory, sealed) in store.acme_accounts().await? {
        if keyring.is_current(&sealed) {
            done.current += 1;
            continue;
        }
        let aad = seal::acme_account_aad(&directory);
        match keyring.open(&sealed, &aad) {
            Ok(account) => {
                let resealed = keyring.seal(&account, &aad).map_err(RotateError::Seal)?;
                store.put_acme_account(&directory, &resealed, true).await?;
                done.resealed += 1;
            }
            Err(e) => done
                .unreadable
                .push(format!("ACME account {directory}: {e}")),
        }
    }
    Ok(done)
}

/// Re-seals every app secret not under the current key. A secret set again
/// meanwhile is sealed under the current key already (or by a replica with
/// the old keyring, which the retiring check catches): the compare-and-swap
/// leaves it alone, and it is looked at again.
async fn reseal_secrets(keyring: &Keyring, store: &dyn MetaStore) -> Result<Resealed, RotateError> {
    let mut done = Resealed::default();
    for secret in store.all_secrets().await? {
        let mut sealed = secret.sealed.clone();
        let what = format!("secret {} of app {}", secret.name, secret.app);
        for attempt in 1..=RESEAL_ATTEMPTS {
            if keyring.is_current(&sealed) {
                done.current += 1;
                break;
            }
            let aad = seal::secret_aad(&secret.tenant, &secret.app, &secret.name);
            let value = match keyring.open(&sealed, &aad) {
                Ok(value) => value,
                Err(e) => {
                    done.unreadable.push(format!("{what}: {e}"));
                    break;
                }
            };
            let resealed = keyring.seal(&value, &aad).map_err(RotateError::Seal)?;
            if store
                .reseal_secret(
                    &secret.tenant,
                    &secret.app,
                    &secret.name,
                    &sealed,
                    &resealed,
                )
                .await?
            {
                done.resealed += 1;
                break;
            }
            // Set again or deleted meanwhile: look again.
            let now = store.app_secrets(&secret.tenant, &secret.app).await;
            match now.map(|s| s.secrets.into_iter().find(|s| s.name == secret.name)) {
                Ok(Some(current)) => sealed = current.sealed,
                Ok(None) | Err(StoreError::NotFound(_)) => break,
                Err(e) => return Err(e.into()),
            }
            if attempt == RESEAL_ATTEMPTS {
                done.unreadable.push(format!("{what}: kept changing"));
            }
        }
    }
    Ok(done)
}
