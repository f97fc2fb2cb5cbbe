//! `edge-cp migrate-store`: copies a control plane's metadata (and, when
//! asked, its blobs) into a new, empty store of another kind, typically
//! from the embedded SQLite default to the PostgreSQL database replicas
//! share.
//!
//! The metadata moves as one [`StoreDump`]: read in one transaction,
//! checked, written in one transaction into a store that must be empty,
//! and read back to compare. Blobs are copied first, so the new store
//! never names a blob its blob store lacks. The control plane should be
//! stopped meanwhile: a change made after the dump would not be copied.

use std::fmt;

use crate::store::dump::RestoreError;
use crate::store::location::{BlobLocation, MetaLocation};
use crate::store::{BlobStore, MAX_BLOBS_LISTED, StoreDump, StoreError};

/// What to copy from where to where.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub from: MetaLocation,
    pub to: MetaLocation,
    /// The blobs the source metadata names: by default the source's data
    /// directory when it is SQLite.
    pub from_blobs: Option<BlobLocation>,
    /// Where the target's blobs are: by default where they already are
    /// (nothing copied).
    pub to_blobs: Option<BlobLocation>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from and --to name the same store ({0})")]
    SameStore(String),
    #[error("--to-blobs needs --from-blobs: the source {0} keeps no blobs of its own")]
    NoSourceBlobs(String),
    #[error("source {location}: {source}")]
    Source {
        location: String,
        source: StoreError,
    },
    #[error("target {location}: {source}")]
    Target {
        location: String,
        source: StoreError,
    },
    #[error("blobs: {0}")]
    Blobs(StoreError),
    #[error(
        "blob {sha256} in {location} does not hash to its name (it hashes to {actual}): the source is damaged; nothing was written to the target metadata"
    )]
    CorruptBlob {
        sha256: String,
        actual: String,
        location: String,
    },
    #[error(
        "the target reads back differently from the source ({0}): the target may be in use; nothing else was changed"
    )]
    Mismatch(String),
}

/// What was copied.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub dump: StoreDump,
    pub blobs: BlobCopy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCopy {
    /// The target uses the source's blob store (or there is none to copy).
    LeftInPlace { location: Option<String> },
    Copied {
        from: String,
        to: String,
        blobs: u64,
        bytes: u64,
    },
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.dump;
        writeln!(
            f,
            "copied metadata from {} to {}: {} tenants, {} apps, {} hostnames, {} versions, {} deployments, {} artifact records, {} purges, {} nodes; revision {}, epoch {}",
            self.from,
            self.to,
            d.tenants.len(),
            d.apps.len(),
            d.hosts.len(),
            d.versions.len(),
            d.deployments.len(),
            d.artifacts.len(),
            d.purges.len(),
            d.nodes.len(),
            d.revision,
            d.epoch
        )?;
        match &self.blobs {
            BlobCopy::LeftInPlace {
                location: Some(location),
            } => write!(
                f,
                "blobs left in {location}: serve the target with the same blob store, or copy them with --to-blobs"
            ),
            BlobCopy::LeftInPlace { location: None } => {
                write!(f, "blobs not copied (no --from-blobs given)")
            }
            BlobCopy::Copied {
                from,
                to,
                blobs,
                bytes,
            } => write!(
                f,
                "copied {blobs} blobs ({bytes} bytes) from {from} to {to}"
            ),
        }
    }
}

/// Copies `request.from` into the empty `request.to`; see the module
/// comment for the order of things.
pub async fn migrate_store(request: &MigrateRequest) -> Result<MigrateReport, MigrateError> {
    let (from, to) = (request.from.to_string(), request.to.to_string());
    if request.from == request.to {
        return Err(MigrateError::SameStore(from));
    }
    let source_err = |source| MigrateError::Source {
        location: from.clone(),
        source,
    };
    let target_err = |source| MigrateError::Target {
        location: to.clone(),
        source,
    };
    let source = request.from.open_existing().await.map_err(source_err)?;
    let dump = source.dump().await.map_err(source_err)?;
    dump.check()
        .map_err(|e| source_err(StoreError::Restore(e)))?;
    let target = request.to.open().await.map_err(target_err)?;
    // Early, before any blob is copied; restore checks it again in its
    // own transaction.
    if let Some(what) = target.dump().await.map_err(target_err)?.what_is_stored() {
        return Err(target_err(RestoreError::NotEmpty { what }.into()));
    }

    let from_blobs = request.from_blobs.clone().or_else(|| match &request.from {
        MetaLocation::Sqlite { data_dir } => Some(BlobLocation::Dir(data_dir.clone())),
        MetaLocation::Postgres(_) => None,
    });
    let blobs = match (&from_blobs, &request.to_blobs) {
        (None, Some(_)) => return Err(MigrateError::NoSourceBlobs(from)),
        (Some(source), Some(target)) if source != target => {
            let (blobs, bytes) = copy_blobs(source, target).await?;
            BlobCopy::Copied {
                from: source.to_string(),
                to: target.to_string(),
                blobs,
                bytes,
            }
        }
        (source, _) => BlobCopy::LeftInPlace {
            location: source.as_ref().map(ToString::to_string),
        },
    };

    target.restore(dump.clone()).await.map_err(target_err)?;
    let copied = target.dump().await.map_err(target_err)?;
    if copied != dump {
        return Err(MigrateError::Mismatch(format!(
            "revision {} vs {}, {} vs {} apps",
            copied.revision,
            dump.revision,
            copied.apps.len(),
            dump.apps.len()
        )));
    }
    Ok(MigrateReport {
        from,
        to,
        dump,
        blobs,
    })
}

/// Every blob of `from` into `to`, a page at a time, each checked against
/// its name; (blobs, bytes) copied.
async fn copy_blobs(from: &BlobLocation, to: &BlobLocation) -> Result<(u64, u64), MigrateError> {
    let source = from.open().await.map_err(MigrateError::Blobs)?;
    let target = to.open().await.map_err(MigrateError::Blobs)?;
    copy_all(source.as_ref(), target.as_ref(), &from.to_string()).await
}

async fn copy_all(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    location: &str,
) -> Result<(u64, u64), MigrateError> {
    let (mut blobs, mut bytes) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let page = source
            .list(after.as_deref(), MAX_BLOBS_LISTED)
            .await
            .map_err(MigrateError::Blobs)?;
        let Some(last) = page.last() else { break };
        after = Some(last.sha256.clone());
        for info in &page {
            // Gone since it was listed (collected as garbage): nothing
            // references it.
            let Some(content) = source
                .get(&info.sha256)
                .await
                .map_err(MigrateError::Blobs)?
            else {
                continue;
            };
            let size = content.len() as u64;
            let stored = target.put(content).await.map_err(MigrateError::Blobs)?;
            if stored != info.sha256 {
                return Err(MigrateError::CorruptBlob {
                    sha256: info.sha256.clone(),
                    actual: stored,
                    location: location.to_string(),
                });
            }
            blobs += 1;
            bytes += size;
        }
    }
    Ok((blobs, bytes))
}
