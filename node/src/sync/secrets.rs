//! Apps' secrets: the snapshot names each app's bundle by digest and size
//! only; the values come from the local copy if it is intact, else from
//! the control plane (`GET /v1/secrets/{sha256}`, the node's token, like
//! certificate bundles), and are checked against the signed digest and
//! size before they are parsed or kept.
//!
//! Kept in `data_dir/secrets/` (directory 0700, files 0600), plain: a
//! node restarted without its control plane must read them unattended,
//! so any key to decrypt them would sit on the same disk, readable by
//! whoever can read the data directory, and encryption would protect
//! nothing more than the file modes do.
//!
//! A bad bundle (digest, size, content, one the control plane cannot
//! open) fails its app alone: the app keeps its previous version if it had
//! one, and is reported. Files no snapshot names are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_common::api::ErrorBody;
use edge_common::secrets::{MAX_SECRETS_BUNDLE_BYTES, SecretsBundle, SecretsRef};
use edge_common::sync::Snapshot;

use super::local::LocalState;
use super::{Fetched, SyncError, Syncer};

/// An app's secret values, by name.
pub type SecretValues = Arc<BTreeMap<String, String>>;

/// Verified bundles by digest, or why one could not be had.
#[derive(Default)]
pub struct SecretBundles {
    bundles: HashMap<String, Result<SecretValues, String>>,
}

impl SecretBundles {
    /// The values of a bundle, or why it could not be had (`None`: never
    /// fetched).
    pub fn get(&self, sha256: &str) -> Option<&Result<SecretValues, String>> {
        self.bundles.get(sha256)
    }

    /// Whether the bundle's values are held (a failed one is tried again).
    pub fn holds(&self, sha256: &str) -> bool {
        matches!(self.bundles.get(sha256), Some(Ok(_)))
    }

    pub fn insert(&mut self, sha256: String, outcome: Result<SecretValues, String>) {
        self.bundles.insert(sha256, outcome);
    }

    /// Forgets every bundle but those in `keep`.
    pub fn retain(&mut self, keep: &HashSet<&str>) {
        self.bundles.retain(|sha, _| keep.contains(sha.as_str()));
    }

    /// The held bundles' digests (their local copies stay).
    pub fn held(&self) -> impl Iterator<Item = &str> {
        self.bundles
            .iter()
            .filter(|(_, v)| v.is_ok())
            .map(|(k, _)| k.as_str())
    }
}

/// The directory of kept bundles, `{sha256}.json` each.
const SECRETS_DIR: &str = "secrets";
const SUFFIX: &str = ".json";

fn path(local: &LocalState, sha256: &str) -> PathBuf {
    local
        .dir()
        .join(SECRETS_DIR)
        .join(format!("{sha256}{SUFFIX}"))
}

/// Creates the directory private (also when it existed with looser bits).
pub fn open_dir(local: &LocalState) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = local.dir().join(SECRETS_DIR);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
}

/// Removes kept bundles not in `keep` (and leftovers of interrupted writes).
pub fn retain_files(local: &LocalState, keep: &[&str]) {
    super::local::retain(&local.dir().join(SECRETS_DIR), SUFFIX, keep);
}

/// The verified values of bytes the snapshot names as `reference`.
pub fn verify(reference: &SecretsRef, bytes: &[u8]) -> Result<SecretValues, String> {
    SecretsBundle::verify(bytes, reference)
        .map(|bundle| Arc::new(bundle.values))
        .map_err(|e| e.to_string())
}

/// The local copy if it is there and intact, else why not.
fn local_bundle(local: &LocalState, reference: &SecretsRef) -> Result<SecretValues, String> {
    let path = path(local, &reference.sha256);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_SECRETS_BUNDLE_BYTES => {
            return Err("the local copy is larger than any bundle".into());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("missing from the local store".into());
        }
        Err(e) => return Err(format!("cannot read it from the local store: {e}")),
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read the local copy: {e}"))?;
    verify(reference, &bytes)
}

/// What the snapshot says of a bundle before anything is fetched.
fn check_named(reference: &SecretsRef) -> Result<(), String> {
    super::check_named_bundle(
        "secrets bundle",
        &reference.sha256,
        reference.size,
        MAX_SECRETS_BUNDLE_BYTES,
    )
}

/// Error codes of `GET /v1/secrets/{sha256}` about the one bundle: asking
/// again gets the same answer until someone acts, so the app fails and
/// the rest of the revision goes live.
const BUNDLE_FAILURE_CODES: [&str; 2] = ["secret-unavailable", "secrets-corrupt"];

impl Syncer {
    /// Makes the applier hold the verified values of every secrets bundle
    /// the snapshot names: from disk when the copy is intact, else (with
    /// `download`) from the control plane, then written to disk. A
    /// transient failure fails the round; a bad bundle fails its app.
    pub(super) async fn fetch_secrets(
        &self,
        snapshot: &Snapshot,
        download: bool,
    ) -> Result<(), SyncError> {
        let needed: Vec<SecretsRef> = {
            let applier = self
                .applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?;
            let mut seen = HashSet::new();
            snapshot
                .apps
                .iter()
                .filter_map(|app| app.secrets.clone())
                .filter(|r| !applier.secrets().holds(&r.sha256) && seen.insert(r.sha256.clone()))
                .collect()
        };
        if needed.is_empty() {
            return Ok(());
        }
        let local = self.local.clone();
        let (mut found, missing) = super::off_workers("secrets", move || {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for reference in needed {
                match check_named(&reference).and_then(|()| local_bundle(&local, &reference)) {
                    Ok(values) => found.push((reference.sha256, Ok(values))),
                    Err(why) => missing.push((reference, why)),
                }
            }
            (found, missing)
        })
        .await?;
        for (reference, why) in missing {
            let outcome = if download && check_named(&reference).is_ok() {
                self.download_secrets(&reference).await?
            } else {
                Err(why)
            };
            let outcome = match outcome {
                Ok(bytes) => {
                    let verified = verify(&reference, &bytes);
                    if verified.is_ok() {
                        let (local, sha) = (self.local.clone(), reference.sha256.clone());
                        super::off_workers("secrets", move || {
                            super::local::write_with_mode(&path(&local, &sha), &bytes, 0o600)
                        })
                        .await?
                        .map_err(SyncError::Persist)?;
                    }
                    verified
                }
                Err(why) => Err(why),
            };
            found.push((reference.sha256, outcome));
        }
        let bad = found.iter().filter(|(_, o)| o.is_err()).count();
        self.metrics
            .sync
            .failures
            .with_label_values(&["secrets"])
            .inc_by(bad as u64);
        let mut applier = self
            .applier
            .lock()
            .map_err(|_| SyncError::Other("applier lock poisoned".into()))?;
        for (sha, outcome) in found {
            if let Err(why) = &outcome {
                tracing::error!(bundle = %sha, error = %why, "a secrets bundle of the revision cannot be had; its app keeps its previous version, if any");
            }
            applier.secrets_mut().insert(sha, outcome);
        }
        Ok(())
    }

    /// The bundle from the control plane: `Ok(Err(why))` when this bundle
    /// is bad there, `Err` when the exchange failed or the bundle is gone
    /// (the snapshot is stale: the next round brings the newer one).
    async fn download_secrets(
        &self,
        reference: &SecretsRef,
    ) -> Result<Result<Vec<u8>, String>, SyncError> {
        let sha = &reference.sha256;
        let fetch_error = |message: String| SyncError::SecretsFetch {
            sha256: sha.clone(),
            message,
        };
        let path = format!("/v1/secrets/{sha}");
        let size = reference.size;
        let (status, body) =
            match (self.fetch_named(&path, size, Duration::from_secs(60), &fetch_error)).await? {
                Fetched::Bytes(bytes) => return Ok(Ok(bytes)),
                Fetched::TooLong => return Ok(Err(super::too_long(size))),
                Fetched::Refused { status, body } => (status, body),
            };
        // No such bundle: the app's secrets changed between the snapshot
        // and this fetch, and the control plane serves only the current
        // bundle. Transient: the round fails and the next one gets the
        // newer snapshot, instead of failing an app whose secrets are fine.
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(fetch_error(format!(
                "the control plane no longer has it (the secrets changed since the snapshot): {}",
                super::shorten(&body)
            )));
        }
        if status == reqwest::StatusCode::INTERNAL_SERVER_ERROR
            && let Ok(refusal) = serde_json::from_str::<ErrorBody>(&body)
            && BUNDLE_FAILURE_CODES.contains(&refusal.error.code.as_str())
        {
            return Ok(Err(super::shorten(&format!(
                "the control plane cannot serve its secrets ({}): {}",
                refusal.error.code, refusal.error.message
            ))));
        }
        Err(fetch_error(format!(
            "the control plane answered {}: {}",
            status.as_u16(),
            super::shorten(&body)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn bundle() -> (SecretsRef, Vec<u8>) {
        let bundle =
            SecretsBundle::new(BTreeMap::from([("API_KEY".to_string(), "v1".to_string())]))
                .unwrap();
        let bytes = bundle.to_bytes();
        (SecretsBundle::reference(&bytes), bytes)
    }

    #[test]
    fn only_the_bytes_the_snapshot_names_are_read() {
        let (reference, bytes) = bundle();
        assert_eq!(verify(&reference, &bytes).unwrap()["API_KEY"], "v1");
        let mut other = bytes.clone();
        let at = other.len() - 4;
        other[at] = b'2';
        assert!(verify(&reference, &other).unwrap_err().contains("digest"));
        let too_big = SecretsRef {
            size: MAX_SECRETS_BUNDLE_BYTES + 1,
            ..reference.clone()
        };
        assert!(check_named(&too_big).is_err());
        let not_hex = SecretsRef {
            sha256: "../../etc/passwd".into(),
            ..reference
        };
        assert!(check_named(&not_hex).is_err());
    }

    #[test]
    fn local_copies_are_private_verified_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalState::open(dir.path()).unwrap();
        open_dir(&local).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(SECRETS_DIR)), 0o700);
        let (reference, bytes) = bundle();
        let file = path(&local, &reference.sha256);
        super::super::local::write_with_mode(&file, &bytes, 0o600).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(local_bundle(&local, &reference).unwrap()["API_KEY"], "v1");
        // A copy changed on disk is not used.
        std::fs::write(&file, bytes.iter().map(|b| b ^ 1).collect::<Vec<_>>()).unwrap();
        assert!(local_bundle(&local, &reference).is_err());
        let (other, other_bytes) = bundle();
        super::super::local::write_with_mode(&path(&local, &other.sha256), &other_bytes, 0o600)
            .unwrap();
        retain_files(&local, &[other.sha256.as_str()]);
        assert!(!file.exists());
        assert!(path(&local, &other.sha256).exists());
    }
}
