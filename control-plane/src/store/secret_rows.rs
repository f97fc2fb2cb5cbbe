//! What app secrets mean to both SQL backends: the records, every
//! statement (written once in PostgreSQL's `$n` style; SQLite's backend
//! rewrites them with `cert_rows::sqlite`) and the decisions a write makes
//! (the compare-and-swap on the app's bundle, the per-app limit, which
//! bundle goes with which rows), so each backend keeps only its plumbing.
//!
//! The store never sees a value in the clear: rows hold sealed values,
//! and the bundle (salt, digest, size) is built by the API, which can open
//! them. A write names the bundle digest it was computed against, so two
//! concurrent writes to one app cannot leave a bundle that matches
//! neither's rows: the loser gets [`StoreError::SecretsChanged`] and
//! builds its bundle again.

use edge_common::names::{AppName, TenantId};

use super::{StoreError, StoreResult};

/// One secret: its sealed value (`crate::seal`, `secret_aad`) and times.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub tenant: TenantId,
    pub app: AppName,
    pub name: String,
    pub sealed: Vec<u8>,
    pub created_unix: u64,
    pub updated_unix: u64,
}

// Sealed bytes are no use in a log line.
impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("tenant", &self.tenant)
            .field("app", &self.app)
            .field("name", &self.name)
            .field("updated_unix", &self.updated_unix)
            .finish_non_exhaustive()
    }
}

/// The bundle of an app's secrets as stored: what rebuilds its bytes
/// (`salt`, with the rows) and what the snapshot names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBundleRecord {
    /// Hex (`edge_common::secrets::SecretsBundle::salt`).
    pub salt: String,
    pub sha256: String,
    pub size: u64,
}

/// An app's secrets and their bundle, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSecrets {
    pub tenant: TenantId,
    pub app: AppName,
    /// None exactly when there are no secrets.
    pub bundle: Option<SecretBundleRecord>,
    /// By name.
    pub secrets: Vec<SecretRecord>,
}

/// One secret set (`sealed`) or deleted (`None`), with the app's bundle
/// after the change.
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub name: String,
    pub sealed: Option<Vec<u8>>,
    /// The digest of the bundle the new one was built from (`None`: the
    /// app had no secrets); anything else stored is `SecretsChanged`.
    pub expected_bundle: Option<String>,
    /// The bundle after the change; `None` when no secret is left.
    pub bundle: Option<SecretBundleRecord>,
    /// Secrets an app may have (`SecretLimit` for one more).
    pub max_per_app: u64,
}

pub(crate) const BUNDLE_OF_APP: &str =
    "SELECT salt, sha256, size FROM secret_bundles WHERE tenant = $1 AND app = $2";
/// By the `secret_bundles_by_sha256` index; the first app if two share a
/// digest (only the same values under the same salt could).
pub(crate) const APP_OF_BUNDLE: &str =
    "SELECT tenant, app FROM secret_bundles WHERE sha256 = $1 ORDER BY tenant, app LIMIT 1";
pub(crate) const SECRETS_OF_APP: &str = "SELECT tenant, app, name, sealed, created_unix, updated_unix \
     FROM secrets WHERE tenant = $1 AND app = $2 ORDER BY name";
pub(crate) const SECRET_BY_NAME: &str = "SELECT tenant, app, name, sealed, created_unix, updated_unix \
     FROM secrets WHERE tenant = $1 AND app = $2 AND name = $3";
pub(crate) const ALL_SECRETS: &str = "SELECT tenant, app, name, sealed, created_unix, updated_unix \
     FROM secrets ORDER BY tenant, app, name";
pub(crate) const ALL_BUNDLES: &str =
    "SELECT tenant, app, salt, sha256, size FROM secret_bundles ORDER BY tenant, app";
pub(crate) const SECRET_EXISTS: &str =
    "SELECT COUNT(*) FROM secrets WHERE tenant = $1 AND app = $2 AND name = $3";
pub(crate) const COUNT_OF_APP: &str = "SELECT COUNT(*) FROM secrets WHERE tenant = $1 AND app = $2";
/// `$4`: sealed, `$5`: now. The creation time stays on a replace.
pub(crate) const UPSERT: &str = "INSERT INTO secrets (tenant, app, name, sealed, created_unix, updated_unix) \
     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant, app, name) \
     DO UPDATE SET sealed = excluded.sealed, updated_unix = excluded.updated_unix";
pub(crate) const DELETE: &str = "DELETE FROM secrets WHERE tenant = $1 AND app = $2 AND name = $3";
pub(crate) const PUT_BUNDLE: &str = "INSERT INTO secret_bundles (tenant, app, salt, sha256, size) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, app) \
     DO UPDATE SET salt = excluded.salt, sha256 = excluded.sha256, size = excluded.size";
pub(crate) const DELETE_BUNDLE: &str = "DELETE FROM secret_bundles WHERE tenant = $1 AND app = $2";
pub(crate) const DELETE_APP_SECRETS: &str = "DELETE FROM secrets WHERE tenant = $1 AND app = $2";
pub(crate) const TOUCH_APP: &str =
    "UPDATE apps SET updated_revision = $3 WHERE tenant = $1 AND name = $2";
/// `$4`: the sealed value expected, `$5`: the new one (a compare-and-swap:
/// a value set meanwhile is left alone).
pub(crate) const RESEAL: &str =
    "UPDATE secrets SET sealed = $5 WHERE tenant = $1 AND app = $2 AND name = $3 AND sealed = $4";
pub(crate) const INSERT_ROW: &str = "INSERT INTO secrets (tenant, app, name, sealed, created_unix, updated_unix) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const INSERT_BUNDLE: &str =
    "INSERT INTO secret_bundles (tenant, app, salt, sha256, size) VALUES ($1, $2, $3, $4, $5)";

/// `SecretsChanged` unless the stored bundle is the one the write was
/// built from.
pub(crate) fn check_expected(
    app: &AppName,
    stored: Option<&str>,
    write: &SecretWrite,
) -> StoreResult<()> {
    if stored != write.expected_bundle.as_deref() {
        return Err(StoreError::SecretsChanged(app.to_string()));
    }
    Ok(())
}

/// `SecretLimit` if a new name would take the app past its limit.
pub(crate) fn check_limit(
    app: &AppName,
    exists: bool,
    count: u64,
    write: &SecretWrite,
) -> StoreResult<()> {
    if !exists && count >= write.max_per_app {
        return Err(StoreError::SecretLimit {
            app: app.to_string(),
            max: write.max_per_app,
        });
    }
    Ok(())
}

/// Refuses a write whose bundle does not go with the rows it leaves (a
/// bundle with no secret, or secrets with none): a caller's mistake that
/// would leave nodes without values, or with a bundle nobody can build.
pub(crate) fn check_bundle(remaining: u64, write: &SecretWrite) -> StoreResult<()> {
    if (remaining == 0) != write.bundle.is_none() {
        return Err(StoreError::Backend(format!(
            "secret {}: a write leaving {remaining} secret(s) must {} a bundle",
            write.name,
            if remaining == 0 { "drop" } else { "carry" }
        )));
    }
    Ok(())
}

pub(crate) fn secret_not_found(app: &AppName, name: &str) -> StoreError {
    StoreError::NotFound(format!("secret {name} of app {app}"))
}
