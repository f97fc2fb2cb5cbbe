//! The embedded metadata store: one SQLite database in WAL mode with
//! `synchronous = FULL`, so a change the API has acknowledged survives a
//! crash or power loss. Calls run on tokio's blocking pool behind one
//! connection: metadata writes are rare and small. The schema is versioned
//! (`migrations/sqlite/`, applied on open).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::outbound::AppOutbound;
use edge_common::sync::{
    AcmeChallenge, AppHttps, ArtifactRef, NodeReport, Purge, PurgeTarget, Snapshot, SnapshotApp,
    SnapshotOrigin,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    AppOrigin, AppRecord, CertLease, CertLimits, CertMaterial, CertRecord, CertificateCounts,
    DeploymentRecord, MAX_PURGES_KEPT, MetaStore, NewCertificate, NewVersion, NodeRecord,
    PurgeRate, QuotaExceeded, StoreDump, StoreError, StoreResult, TenantRecord, TenantStorage,
    VersionRecord, now_unix, purge_columns, purge_rate_check, purge_target,
};
use super::{AppSecrets, SecretRecord, SecretWrite};
use super::{LogPage, LogStart, LogSweep, LogTail, NewLogLine};
use edge_common::sync::ApplyOutcome;
use edge_common::sync::TailedApp;

/// The versioned schema (`control-plane/migrations/sqlite/`), applied on
/// open by refinery, which records what it applied in
/// `refinery_schema_history`.
mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

mod certs;
mod dump;
mod kv;
mod logs;
mod outbound;
mod secrets;

pub struct SqliteMetaStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: impl std::fmt::Display + 'static) -> StoreError {
    // A full disk is the one database failure a caller can act on (an
    // operator frees space and the call works): told apart here, where
    // every SQLite error passes, rather than at each of the call sites.
    if let Some(e) = (&e as &dyn std::any::Any).downcast_ref::<rusqlite::Error>()
        && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
    {
        return StoreError::Full("the metadata database".into());
    }
    StoreError::Backend(e.to_string())
}

impl SqliteMetaStore {
    /// `add_purge`, within `rate` if given (one transaction).
    async fn add_purge_limited(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: Option<PurgeRate>,
    ) -> StoreResult<(Purge, u64)> {
        let (tenant, name, target) = (tenant.clone(), name.clone(), target.clone());
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            if let Some(rate) = rate {
                let since = now_unix().saturating_sub(rate.window_secs) as i64;
                let (made, oldest): (i64, Option<i64>) = tx
                    .query_row(
                        "SELECT COUNT(*), MIN(created_unix) FROM purges WHERE tenant = ?1 AND created_unix > ?2",
                        params![tenant.as_str(), since],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .map_err(backend)?;
                purge_rate_check(&tenant, rate, made as u64, oldest.map(|o| o as u64))?;
            }
            let id = tx
                .query_row(
                    "UPDATE purge_counter SET value = value + 1 WHERE id = 1 RETURNING value",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .map_err(backend)?;
            let purge = Purge {
                id: id as u64,
                tenant,
                app: name,
                target,
                soft,
                created_unix: now_unix(),
            };
            let (kind, value) = purge_columns(&purge.target);
            tx.execute(
                "INSERT INTO purges (id, tenant, app, kind, value, soft, created_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    purge.tenant.as_str(),
                    purge.app.as_str(),
                    kind,
                    value,
                    purge.soft,
                    purge.created_unix as i64
                ],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM purges WHERE id <= ?1",
                params![id - MAX_PURGES_KEPT as i64],
            )
            .map_err(backend)?;
            Ok((purge, bump_revision(tx)?))
        })
        .await
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        adopt_unversioned(&conn)?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| StoreError::Backend(format!("migrating {}: {e}", path.display())))?;
        conn.execute(
            "INSERT OR IGNORE INTO identity (id, epoch) VALUES (1, ?1)",
            params![super::dump::new_epoch()?],
        )
        .map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one transaction on the blocking pool.
    async fn tx<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Backend("the database lock is poisoned".into()))?;
            // IMMEDIATE: take the write lock up front, so a read-then-write
            // (the next version number) cannot race another writer.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let value = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(value)
        })
        .await
        .map_err(backend)?
    }
}

/// Readies a database made before the schema was versioned for `V1`,
/// which creates only what is missing (`CREATE TABLE IF NOT EXISTS` leaves
/// an existing table as it was): adds the columns added since its tables
/// were made. A database refinery has migrated is left alone; later
/// changes are migrations of their own.
fn adopt_unversioned(conn: &Connection) -> StoreResult<()> {
    let versioned = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if versioned {
        return Ok(());
    }
    // (table, column, its definition), in the order they were added.
    const ADDED: [(&str, &str, &str); 3] = [
        ("apps", "origin", "TEXT"),
        ("tenants", "storage_quota_bytes", "INTEGER"),
        (
            "apps",
            "forward_override_headers",
            "INTEGER NOT NULL DEFAULT 0",
        ),
    ];
    for (table, column, definition) in ADDED {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(backend)?;
        let columns = stmt
            .query_map([table], |row| row.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        // No such table yet: V1 makes it whole.
        if !columns.is_empty() && !columns.iter().any(|c| c == column) {
            conn.execute(
                &format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"),
                [],
            )
            .map_err(backend)?;
        }
    }
    Ok(())
}

/// The tenant's own quota and its used bytes; `NotFound` if there is no
/// such tenant.
fn tenant_storage(tx: &Transaction<'_>, tenant: &TenantId) -> StoreResult<TenantStorage> {
    let quota = tx
        .query_row(
            "SELECT storage_quota_bytes FROM tenants WHERE id = ?1",
            params![tenant.as_str()],
            |row| row.get::<_, Option<i64>>(0),
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant}")))?;
    let used: i64 = tx
        .query_row(
            "SELECT COALESCE(SUM(source_size), 0) FROM versions WHERE tenant = ?1",
            params![tenant.as_str()],
            |row| row.get(0),
        )
        .map_err(backend)?;
    Ok(TenantStorage {
        quota_bytes: quota.map(|q| q as u64),
        used_bytes: used as u64,
    })
}

fn bump_revision(tx: &Transaction<'_>) -> StoreResult<u64> {
    tx.query_row(
        "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|v| v as u64)
    .map_err(backend)
}

fn parse<T: TryFrom<String, Error = String>>(s: String) -> StoreResult<T> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))
}

fn app_exists(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> StoreResult<()> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM apps WHERE tenant = ?1 AND name = ?2",
            params![tenant.as_str(), name.as_str()],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("app {name}"))),
    }
}

/// The app's origin (`None` for a component app); `NotFound` if there is
/// no such app.
fn app_origin(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
) -> StoreResult<Option<String>> {
    tx.query_row(
        "SELECT origin FROM apps WHERE tenant = ?1 AND name = ?2",
        params![tenant.as_str(), name.as_str()],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("app {name}")))
}

/// Versions and deploys are for component apps only.
fn component_app(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> StoreResult<()> {
    match app_origin(tx, tenant, name)? {
        None => Ok(()),
        Some(_) => Err(StoreError::OriginApp(name.to_string())),
    }
}

fn load_app(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord> {
    let row = tx
        .query_row(
            "SELECT active_version, config, limits, created_unix, updated_revision, origin,
                    forward_override_headers, https_redirect, hsts,
                    compression_enabled, compression_min_bytes
             FROM apps WHERE tenant = ?1 AND name = ?2",
            params![tenant.as_str(), name.as_str()],
            |row| {
                Ok((
                    row.get::<_, Option<i64>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, bool>(6)?,
                    AppHttps {
                        redirect: row.get(7)?,
                        hsts: row.get(8)?,
                    },
                    super::compression_rows::from_columns(row.get(9)?, row.get(10)?),
                ))
            },
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("app {name}")))?;
    let mut stmt = tx
        .prepare_cached("SELECT host FROM hosts WHERE tenant = ?1 AND app = ?2 ORDER BY position")
        .map_err(backend)?;
    let hosts = stmt
        .query_map(params![tenant.as_str(), name.as_str()], |row| {
            row.get::<_, String>(0)
        })
        .map_err(backend)?
        .map(|h| parse::<HostPattern>(h.map_err(backend)?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(AppRecord {
        tenant: tenant.clone(),
        name: name.clone(),
        hosts,
        active_version: row.0.map(|v| v as u64),
        origin: row.5.map(|url| AppOrigin {
            url,
            forward_override_headers: row.6,
        }),
        config: serde_json::from_str(&row.1).map_err(backend)?,
        limits: serde_json::from_str(&row.2).map_err(backend)?,
        https: row.7,
        compression: row.8,
        created_unix: row.3 as u64,
        updated_revision: row.4 as u64,
    })
}

fn load_version(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
    version: u64,
) -> StoreResult<Option<VersionRecord>> {
    tx.query_row(
        "SELECT source_sha256, source_size, artifact_sha256, artifact_size, engine, created_unix
         FROM versions WHERE tenant = ?1 AND app = ?2 AND version = ?3",
        params![tenant.as_str(), name.as_str(), version as i64],
        |row| version_row(version, row),
    )
    .optional()
    .map_err(backend)
}

fn version_row(version: u64, row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        version,
        source_sha256: row.get(0)?,
        source_size: row.get::<_, i64>(1)? as u64,
        artifact: ArtifactRef {
            sha256: row.get(2)?,
            size: row.get::<_, i64>(3)? as u64,
            engine: row.get(4)?,
        },
        created_unix: row.get::<_, i64>(5)? as u64,
    })
}

/// Every component app with an active version.
fn snapshot_apps(tx: &Transaction<'_>) -> StoreResult<Vec<SnapshotApp>> {
    let deployed: Vec<(String, String, i64)> = {
        let mut stmt = tx
            .prepare(
                "SELECT tenant, name, active_version FROM apps
                 WHERE active_version IS NOT NULL AND origin IS NULL ORDER BY tenant, name",
            )
            .map_err(backend)?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?
    };
    let mut apps = Vec::with_capacity(deployed.len());
    for (tenant, name, version) in deployed {
        let (tenant, name): (TenantId, AppName) = (parse(tenant)?, parse(name)?);
        let app = load_app(tx, &tenant, &name)?;
        let version = load_version(tx, &tenant, &name, version as u64)?.ok_or_else(|| {
            StoreError::Backend(format!("app {name}: active version {version} is missing"))
        })?;
        let app_outbound = outbound::for_snapshot(tx, &tenant, &name)?;
        let app_secrets = secrets::snapshot_ref(tx, &tenant, &name)?;
        let kv_links = kv::links_of(tx, &tenant, &name)?;
        let kv_limits = outbound::caps(tx, tenant.as_str())?.kv();
        apps.push(SnapshotApp {
            tenant,
            name,
            hosts: app.hosts,
            version: version.version,
            source_sha256: version.source_sha256,
            artifact: version.artifact,
            config: app.config,
            limits: app.limits,
            https: app.https,
            compression: app.compression,
            secrets: app_secrets,
            outbound: app_outbound,
            kv: kv_links,
            kv_limits,
        });
    }
    Ok(apps)
}

/// Every origin app: served as soon as it exists.
fn snapshot_origins(tx: &Transaction<'_>) -> StoreResult<Vec<SnapshotOrigin>> {
    let names: Vec<(String, String)> = {
        let mut stmt = tx
            .prepare("SELECT tenant, name FROM apps WHERE origin IS NOT NULL ORDER BY tenant, name")
            .map_err(backend)?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?
    };
    let mut origins = Vec::with_capacity(names.len());
    for (tenant, name) in names {
        let app = load_app(tx, &parse(tenant)?, &parse(name)?)?;
        let origin = app
            .origin
            .ok_or_else(|| StoreError::Backend(format!("app {}: its origin vanished", app.name)))?;
        origins.push(SnapshotOrigin {
            tenant: app.tenant,
            name: app.name,
            hosts: app.hosts,
            origin: origin.url,
            limits: app.limits,
            forward_override_headers: origin.forward_override_headers,
            https: app.https,
            compression: app.compression,
        });
    }
    Ok(origins)
}

/// The kept purges, oldest first.
fn snapshot_purges(tx: &Transaction<'_>) -> StoreResult<Vec<Purge>> {
    let mut stmt = tx
        .prepare("SELECT id, tenant, app, kind, value, soft, created_unix FROM purges ORDER BY id")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, bool>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (id, tenant, app, kind, value, soft, created_unix) = row.map_err(backend)?;
        Ok(Purge {
            id: id as u64,
            tenant: parse(tenant)?,
            app: parse(app)?,
            target: purge_target(&kind, value)?,
            soft,
            created_unix: created_unix as u64,
        })
    })
    .collect()
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn revision(&self) -> StoreResult<u64> {
        self.tx(|tx| {
            tx.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|v| v as u64)
            .map_err(backend)
        })
        .await
    }

    async fn epoch(&self) -> StoreResult<String> {
        self.tx(|tx| {
            tx.query_row("SELECT epoch FROM identity WHERE id = 1", [], |row| {
                row.get(0)
            })
            .map_err(backend)
        })
        .await
    }

    async fn create_tenant(&self, id: &TenantId) -> StoreResult<TenantRecord> {
        let id = id.clone();
        self.tx(move |tx| {
            let created_unix = now_unix();
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO tenants (id, created_unix) VALUES (?1, ?2)",
                    params![id.as_str(), created_unix as i64],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::Exists(format!("tenant {id}")));
            }
            Ok(TenantRecord { id, created_unix })
        })
        .await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.tx(|tx| {
            let mut stmt = tx
                .prepare("SELECT id, created_unix FROM tenants ORDER BY id")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(backend)?;
            rows.map(|r| {
                let (id, created) = r.map_err(backend)?;
                Ok(TenantRecord {
                    id: parse(id)?,
                    created_unix: created as u64,
                })
            })
            .collect()
        })
        .await
    }

    async fn tenant_exists(&self, id: &TenantId) -> StoreResult<bool> {
        let id = id.clone();
        self.tx(move |tx| {
            tx.query_row(
                "SELECT 1 FROM tenants WHERE id = ?1",
                params![id.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(backend)
        })
        .await
    }

    async fn tenant_storage(&self, id: &TenantId) -> StoreResult<TenantStorage> {
        let id = id.clone();
        self.tx(move |tx| tenant_storage(tx, &id)).await
    }

    async fn set_tenant_quota(
        &self,
        id: &TenantId,
        quota_bytes: Option<u64>,
    ) -> StoreResult<TenantStorage> {
        let id = id.clone();
        // SQLite integers are signed: a larger quota is as good as none.
        let quota = quota_bytes.map(|q| q.min(i64::MAX as u64) as i64);
        self.tx(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE tenants SET storage_quota_bytes = ?2 WHERE id = ?1",
                    params![id.as_str(), quota],
                )
                .map_err(backend)?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!("tenant {id}")));
            }
            tenant_storage(tx, &id)
        })
        .await
    }

    async fn create_app(
        &self,
        tenant: &TenantId,
        name: &AppName,
        hosts: &[HostPattern],
        limits: &AppLimits,
        origin: Option<&AppOrigin>,
    ) -> StoreResult<AppRecord> {
        let (tenant, name, hosts) = (tenant.clone(), name.clone(), hosts.to_vec());
        let origin = origin.cloned();
        let limits = serde_json::to_string(limits).map_err(backend)?;
        self.tx(move |tx| {
            let tenant_found = tx
                .query_row(
                    "SELECT 1 FROM tenants WHERE id = ?1",
                    params![tenant.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(backend)?;
            if tenant_found.is_none() {
                return Err(StoreError::NotFound(format!("tenant {tenant}")));
            }
            if app_exists(tx, &tenant, &name).is_ok() {
                return Err(StoreError::Exists(format!("app {name}")));
            }
            // No hostname of another tenant may overlap (exact under a
            // wildcard, nested wildcards): checked in this transaction.
            let others: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached("SELECT host FROM hosts WHERE tenant != ?1")
                    .map_err(backend)?;
                stmt.query_map(params![tenant.as_str()], |row| row.get(0))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?
            };
            for other in others {
                let other: HostPattern = parse(other)?;
                if let Some(host) = hosts.iter().find(|h| h.overlaps(&other)) {
                    return Err(StoreError::HostTaken(host.to_string()));
                }
            }
            for (position, host) in hosts.iter().enumerate() {
                let inserted = tx
                    .execute(
                        "INSERT OR IGNORE INTO hosts (host, tenant, app, position) VALUES (?1, ?2, ?3, ?4)",
                        params![host.to_string(), tenant.as_str(), name.as_str(), position as i64],
                    )
                    .map_err(backend)?;
                if inserted == 0 {
                    // The transaction is dropped without commit: nothing of
                    // this app is kept.
                    return Err(StoreError::HostTaken(host.to_string()));
                }
            }
            // An origin app is served from this revision on.
            let revision = bump_revision(tx)?;
            let (url, forward_override_headers) = match origin {
                Some(o) => (Some(o.url), o.forward_override_headers),
                None => (None, false),
            };
            tx.execute(
                "INSERT INTO apps (tenant, name, active_version, origin, forward_override_headers, config, limits, created_unix, updated_revision)
                 VALUES (?1, ?2, NULL, ?3, ?4, '{}', ?5, ?6, ?7)",
                params![
                    tenant.as_str(),
                    name.as_str(),
                    url,
                    forward_override_headers,
                    limits,
                    now_unix() as i64,
                    revision as i64
                ],
            )
            .map_err(backend)?;
            load_app(tx, &tenant, &name)
        })
        .await
    }

    async fn list_apps(&self, tenant: &TenantId) -> StoreResult<Vec<AppRecord>> {
        let tenant = tenant.clone();
        self.tx(move |tx| {
            let names: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT name FROM apps WHERE tenant = ?1 ORDER BY name")
                    .map_err(backend)?;
                stmt.query_map(params![tenant.as_str()], |row| row.get(0))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?
            };
            names
                .into_iter()
                .map(|n| load_app(tx, &tenant, &parse(n)?))
                .collect()
        })
        .await
    }

    async fn get_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| load_app(tx, &tenant, &name)).await
    }

    async fn delete_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<u64> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            certs::delete_of_app(tx, &tenant, &name)?;
            secrets::delete_of_app(tx, &tenant, &name)?;
            outbound::delete_of_app(tx, &tenant, &name)?;
            kv::delete_of_app(tx, &tenant, &name)?;
            for table in ["apps", "hosts", "versions", "deployments"] {
                let column = if table == "apps" { "name" } else { "app" };
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1 AND {column} = ?2"),
                    params![tenant.as_str(), name.as_str()],
                )
                .map_err(backend)?;
            }
            bump_revision(tx)
        })
        .await
    }

    async fn set_origin(
        &self,
        tenant: &TenantId,
        name: &AppName,
        url: &str,
        forward_override_headers: Option<bool>,
    ) -> StoreResult<(AppOrigin, u64)> {
        let (tenant, name, url) = (tenant.clone(), name.clone(), url.to_string());
        self.tx(move |tx| {
            if app_origin(tx, &tenant, &name)?.is_none() {
                return Err(StoreError::NotOriginApp(name.to_string()));
            }
            let revision = bump_revision(tx)?;
            // NULL keeps the stored option.
            tx.execute(
                "UPDATE apps SET origin = ?3,
                    forward_override_headers = COALESCE(?4, forward_override_headers),
                    updated_revision = ?5
                 WHERE tenant = ?1 AND name = ?2",
                params![
                    tenant.as_str(),
                    name.as_str(),
                    url,
                    forward_override_headers,
                    revision as i64
                ],
            )
            .map_err(backend)?;
            let origin = load_app(tx, &tenant, &name)?
                .origin
                .ok_or_else(|| StoreError::Backend(format!("app {name}: its origin vanished")))?;
            Ok((origin, revision))
        })
        .await
    }

    async fn add_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: &NewVersion,
        default_quota_bytes: u64,
    ) -> StoreResult<VersionRecord> {
        let (tenant, name, new) = (tenant.clone(), name.clone(), version.clone());
        self.tx(move |tx| {
            component_app(tx, &tenant, &name)?;
            // In the insert's (IMMEDIATE) transaction: concurrent uploads
            // of one tenant are counted one after the other.
            let storage = tenant_storage(tx, &tenant)?;
            QuotaExceeded::check(
                &tenant,
                storage.quota_bytes.unwrap_or(default_quota_bytes),
                storage.used_bytes,
                new.source_size,
            )?;
            let next: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE tenant = ?1 AND app = ?2",
                    params![tenant.as_str(), name.as_str()],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            let created_unix = now_unix();
            tx.execute(
                "INSERT INTO versions (tenant, app, version, source_sha256, source_size, artifact_sha256, artifact_size, engine, created_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    tenant.as_str(),
                    name.as_str(),
                    next,
                    new.source_sha256,
                    new.source_size as i64,
                    new.artifact.sha256,
                    new.artifact.size as i64,
                    new.artifact.engine,
                    created_unix as i64
                ],
            )
            .map_err(backend)?;
            Ok(VersionRecord {
                version: next as u64,
                source_sha256: new.source_sha256,
                source_size: new.source_size,
                artifact: new.artifact,
                created_unix,
            })
        })
        .await
    }

    async fn list_versions(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<VersionRecord>> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            let mut stmt = tx
                .prepare(
                    "SELECT source_sha256, source_size, artifact_sha256, artifact_size, engine, created_unix, version
                     FROM versions WHERE tenant = ?1 AND app = ?2 ORDER BY version",
                )
                .map_err(backend)?;
            stmt.query_map(params![tenant.as_str(), name.as_str()], |row| {
                version_row(row.get::<_, i64>(6)? as u64, row)
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
        })
        .await
    }

    async fn delete_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<()> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| {
            let app = load_app(tx, &tenant, &name)?;
            if app.active_version == Some(version) {
                return Err(StoreError::Exists(format!(
                    "version {version} of app {name} is active; it"
                )));
            }
            let deleted = tx
                .execute(
                    "DELETE FROM versions WHERE tenant = ?1 AND app = ?2 AND version = ?3",
                    params![tenant.as_str(), name.as_str(), version as i64],
                )
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!(
                    "version {version} of app {name}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn activate_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<u64> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| {
            component_app(tx, &tenant, &name)?;
            if load_version(tx, &tenant, &name, version)?.is_none() {
                return Err(StoreError::NotFound(format!("version {version} of app {name}")));
            }
            let revision = bump_revision(tx)?;
            tx.execute(
                "UPDATE apps SET active_version = ?3, updated_revision = ?4 WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name.as_str(), version as i64, revision as i64],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO deployments (tenant, app, version, revision, created_unix) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant.as_str(), name.as_str(), version as i64, revision as i64, now_unix() as i64],
            )
            .map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn deployments(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            let mut stmt = tx
                .prepare(
                    "SELECT version, revision, created_unix FROM deployments
                     WHERE tenant = ?1 AND app = ?2 ORDER BY id",
                )
                .map_err(backend)?;
            stmt.query_map(params![tenant.as_str(), name.as_str()], |row| {
                Ok(DeploymentRecord {
                    version: row.get::<_, i64>(0)? as u64,
                    revision: row.get::<_, i64>(1)? as u64,
                    created_unix: row.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
        })
        .await
    }

    async fn update_config(
        &self,
        tenant: &TenantId,
        name: &AppName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> StoreResult<u64> {
        let (tenant, name, changes) = (tenant.clone(), name.clone(), changes.clone());
        self.tx(move |tx| {
            let mut config = load_app(tx, &tenant, &name)?.config;
            for (key, value) in changes {
                match value {
                    Some(value) => config.insert(key, value),
                    None => config.remove(&key),
                };
            }
            let revision = bump_revision(tx)?;
            tx.execute(
                "UPDATE apps SET config = ?3, updated_revision = ?4 WHERE tenant = ?1 AND name = ?2",
                params![
                    tenant.as_str(),
                    name.as_str(),
                    serde_json::to_string(&config).map_err(backend)?,
                    revision as i64
                ],
            )
            .map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn set_limits(
        &self,
        tenant: &TenantId,
        name: &AppName,
        limits: &AppLimits,
    ) -> StoreResult<u64> {
        let (tenant, name) = (tenant.clone(), name.clone());
        let limits = serde_json::to_string(limits).map_err(backend)?;
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            let revision = bump_revision(tx)?;
            tx.execute(
                "UPDATE apps SET limits = ?3, updated_revision = ?4 WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name.as_str(), limits, revision as i64],
            )
            .map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn add_purge(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
    ) -> StoreResult<(Purge, u64)> {
        self.add_purge_limited(tenant, name, target, soft, None)
            .await
    }

    async fn add_purge_within(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: PurgeRate,
    ) -> StoreResult<(Purge, u64)> {
        self.add_purge_limited(tenant, name, target, soft, Some(rate))
            .await
    }

    async fn snapshot(&self) -> StoreResult<Snapshot> {
        self.tx(|tx| {
            let revision = tx
                .query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(backend)? as u64;
            let epoch: String = tx
                .query_row("SELECT epoch FROM identity WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .map_err(backend)?;
            let (certificates, acme_challenges) = certs::snapshot(tx)?;
            Ok(Snapshot {
                epoch,
                revision,
                created_unix: now_unix(),
                apps: snapshot_apps(tx)?,
                origins: snapshot_origins(tx)?,
                purges: snapshot_purges(tx)?,
                certificates,
                acme_challenges,
                tails: logs::snapshot_tails(tx, now_unix())?,
            })
        })
        .await
    }

    async fn find_artifact(
        &self,
        source_sha256: &str,
        engine: &str,
    ) -> StoreResult<Option<ArtifactRef>> {
        let (source, engine) = (source_sha256.to_string(), engine.to_string());
        self.tx(move |tx| {
            tx.query_row(
                "SELECT artifact_sha256, size FROM artifacts WHERE source_sha256 = ?1 AND engine = ?2",
                params![source, engine],
                |row| {
                    Ok(ArtifactRef {
                        sha256: row.get(0)?,
                        size: row.get::<_, i64>(1)? as u64,
                        engine: engine.clone(),
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn record_artifact(
        &self,
        source_sha256: &str,
        artifact: &ArtifactRef,
    ) -> StoreResult<()> {
        let (source, artifact) = (source_sha256.to_string(), artifact.clone());
        self.tx(move |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO artifacts (source_sha256, engine, artifact_sha256, size) VALUES (?1, ?2, ?3, ?4)",
                params![source, artifact.engine, artifact.sha256, artifact.size as i64],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn is_artifact(&self, sha256: &str) -> StoreResult<bool> {
        let sha = sha256.to_string();
        self.tx(move |tx| {
            // A version's artifact counts even if its compile record was
            // forgotten (garbage collection may drop the record of an
            // artifact an upload is about to reuse).
            tx.query_row(
                "SELECT 1 FROM artifacts WHERE artifact_sha256 = ?1
                 UNION ALL SELECT 1 FROM versions WHERE artifact_sha256 = ?1 LIMIT 1",
                params![sha],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(backend)
        })
        .await
    }

    async fn unreferenced_blobs(&self, candidates: &[String]) -> StoreResult<Vec<String>> {
        let candidates = candidates.to_vec();
        self.tx(move |tx| {
            let mut unreferenced = Vec::new();
            for sha in candidates {
                let referenced = tx
                    .query_row(
                        "SELECT 1 FROM versions WHERE source_sha256 = ?1
                         UNION ALL SELECT 1 FROM versions WHERE artifact_sha256 = ?1 LIMIT 1",
                        params![sha],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !referenced {
                    tx.execute(
                        "DELETE FROM artifacts WHERE source_sha256 = ?1 OR artifact_sha256 = ?1",
                        params![sha],
                    )
                    .map_err(backend)?;
                    unreferenced.push(sha);
                }
            }
            Ok(unreferenced)
        })
        .await
    }

    async fn record_node_report(
        &self,
        node: &str,
        report: &NodeReport,
        now_unix: u64,
    ) -> StoreResult<()> {
        let (node, report) = (node.to_string(), report.clone());
        self.tx(move |tx| {
            let revision = report.revision as i64;
            match report.outcome {
                // The latest ACK wins: after a store restore revisions start
                // over, and the report is of what the node serves now.
                ApplyOutcome::Applied => tx.execute(
                    "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error, app_errors, engine, last_seen_unix)
                     VALUES (?1, ?2, NULL, NULL, ?3, ?4, ?5)
                     ON CONFLICT (node) DO UPDATE SET applied_revision = excluded.applied_revision,
                        app_errors = excluded.app_errors,
                        engine = excluded.engine, last_seen_unix = excluded.last_seen_unix",
                    params![
                        node,
                        revision,
                        serde_json::to_string(&report.app_errors).map_err(backend)?,
                        report.engine,
                        now_unix as i64
                    ],
                ),
                ApplyOutcome::Rejected => tx.execute(
                    "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error, engine, last_seen_unix)
                     VALUES (?1, NULL, ?2, ?3, ?4, ?5)
                     ON CONFLICT (node) DO UPDATE SET rejected_revision = excluded.rejected_revision,
                        last_error = excluded.last_error, engine = excluded.engine, last_seen_unix = excluded.last_seen_unix",
                    params![node, revision, report.error, report.engine, now_unix as i64],
                ),
            }
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn touch_node(&self, node: &str, now_unix: u64) -> StoreResult<()> {
        let node = node.to_string();
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO nodes (node, engine, last_seen_unix) VALUES (?1, '', ?2)
                 ON CONFLICT (node) DO UPDATE SET last_seen_unix = excluded.last_seen_unix",
                params![node, now_unix as i64],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.tx(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT node, applied_revision, rejected_revision, last_error, engine, last_seen_unix, app_errors
                     FROM nodes ORDER BY node",
                )
                .map_err(backend)?;
            stmt.query_map([], |row| {
                Ok(NodeRecord {
                    node: row.get(0)?,
                    applied_revision: row.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                    rejected_revision: row.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    last_error: row.get(3)?,
                    engine: row.get(4)?,
                    last_seen_unix: row.get::<_, i64>(5)? as u64,
                    app_errors: serde_json::from_str(&row.get::<_, String>(6)?).unwrap_or_default(),
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
        })
        .await
    }

    async fn set_app_https(
        &self,
        tenant: &TenantId,
        name: &AppName,
        https: &AppHttps,
    ) -> StoreResult<u64> {
        let (tenant, name, https) = (tenant.clone(), name.clone(), https.clone());
        self.tx(move |tx| certs::set_app_https(tx, &tenant, &name, &https))
            .await
    }

    async fn add_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        new: NewCertificate,
        limits: &CertLimits,
    ) -> StoreResult<(CertRecord, u64)> {
        let (tenant, app, limits) = (tenant.clone(), app.clone(), *limits);
        self.tx(move |tx| certs::add(tx, &tenant, &app, new, &limits))
            .await
    }

    async fn list_certificates(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<CertRecord>> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| certs::list(tx, &tenant, &app)).await
    }

    async fn all_certificates(&self) -> StoreResult<Vec<CertRecord>> {
        self.tx(certs::all).await
    }

    async fn get_certificate(&self, id: u64) -> StoreResult<CertRecord> {
        self.tx(move |tx| certs::load(tx, id)).await
    }

    async fn certificate_by_bundle(&self, sha256: &str) -> StoreResult<Option<CertRecord>> {
        let sha256 = sha256.to_string();
        self.tx(move |tx| certs::by_bundle(tx, &sha256)).await
    }

    async fn delete_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
    ) -> StoreResult<u64> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| certs::delete(tx, &tenant, &app, id))
            .await
    }

    async fn due_certificates(&self, now_unix: u64, limit: usize) -> StoreResult<Vec<CertRecord>> {
        self.tx(move |tx| certs::due(tx, now_unix, limit)).await
    }

    async fn next_certificate_due(&self, now_unix: u64) -> StoreResult<Option<u64>> {
        self.tx(move |tx| certs::next_due(tx, now_unix)).await
    }

    async fn certificate_counts(&self, now_unix: u64) -> StoreResult<CertificateCounts> {
        self.tx(move |tx| certs::counts(tx, now_unix)).await
    }

    async fn claim_certificate(
        &self,
        id: u64,
        now_unix: u64,
        lease_until: u64,
    ) -> StoreResult<Option<CertLease>> {
        self.tx(move |tx| certs::claim(tx, id, now_unix, lease_until))
            .await
    }

    async fn record_certificate_issued(
        &self,
        lease: &CertLease,
        material: CertMaterial,
        next_attempt_unix: Option<u64>,
    ) -> StoreResult<u64> {
        let lease = *lease;
        self.tx(move |tx| certs::record_issued(tx, &lease, &material, next_attempt_unix))
            .await
    }

    async fn record_certificate_failure(
        &self,
        lease: &CertLease,
        error: &str,
        next_attempt_unix: u64,
    ) -> StoreResult<u64> {
        let (lease, error) = (*lease, error.to_string());
        self.tx(move |tx| certs::record_failure(tx, &lease, &error, next_attempt_unix))
            .await
    }

    async fn schedule_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
        at: u64,
    ) -> StoreResult<CertRecord> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| certs::schedule(tx, &tenant, &app, id, at))
            .await
    }

    async fn set_acme_challenges(&self, id: u64, challenges: &[AcmeChallenge]) -> StoreResult<u64> {
        let challenges = challenges.to_vec();
        self.tx(move |tx| certs::set_challenges(tx, id, &challenges))
            .await
    }

    async fn reseal_certificate_key(&self, id: u64, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let (old, new) = (old.to_vec(), new.to_vec());
        self.tx(move |tx| certs::reseal(tx, id, &old, &new)).await
    }

    async fn acme_account(&self, directory: &str) -> StoreResult<Option<Vec<u8>>> {
        let directory = directory.to_string();
        self.tx(move |tx| certs::account(tx, &directory)).await
    }

    async fn put_acme_account(
        &self,
        directory: &str,
        sealed: &[u8],
        replace: bool,
    ) -> StoreResult<Vec<u8>> {
        let (directory, sealed) = (directory.to_string(), sealed.to_vec());
        self.tx(move |tx| certs::put_account(tx, &directory, &sealed, replace))
            .await
    }

    async fn acme_accounts(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.tx(certs::accounts).await
    }

    async fn app_outbound(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppOutbound> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.tx(move |tx| outbound::get(tx, &tenant, &name)).await
    }

    async fn set_app_outbound(
        &self,
        tenant: &TenantId,
        name: &AppName,
        policy: &AppOutbound,
    ) -> StoreResult<u64> {
        let (tenant, name, policy) = (tenant.clone(), name.clone(), policy.clone());
        self.tx(move |tx| outbound::set(tx, &tenant, &name, &policy))
            .await
    }

    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<SetTenantLimits> {
        let tenant = tenant.clone();
        self.tx(move |tx| outbound::limits(tx, &tenant)).await
    }

    async fn set_tenant_limits(
        &self,
        tenant: &TenantId,
        limits: &SetTenantLimits,
    ) -> StoreResult<u64> {
        let (tenant, limits) = (tenant.clone(), *limits);
        self.tx(move |tx| outbound::set_limits(tx, &tenant, &limits))
            .await
    }

    // ---- Live logs (`logs`).

    async fn add_log_tail(&self, tail: &LogTail, max_per_tenant: u64) -> StoreResult<Option<u64>> {
        let tail = tail.clone();
        self.tx(move |tx| logs::add_tail(tx, &tail, max_per_tenant))
            .await
    }

    async fn refresh_log_tail(
        &self,
        id: &str,
        now_unix: u64,
        expires_unix: u64,
    ) -> StoreResult<bool> {
        let id = id.to_string();
        self.tx(move |tx| logs::refresh_tail(tx, &id, now_unix, expires_unix))
            .await
    }

    async fn delete_log_tail(&self, id: &str, now_unix: u64) -> StoreResult<Option<u64>> {
        let id = id.to_string();
        self.tx(move |tx| logs::delete_tail(tx, &id, now_unix))
            .await
    }

    async fn sweep_logs(&self, now_unix: u64, lines_before_ms: u64) -> StoreResult<LogSweep> {
        self.tx(move |tx| logs::sweep(tx, now_unix, lines_before_ms))
            .await
    }

    async fn active_log_tails(&self, now_unix: u64) -> StoreResult<u64> {
        self.tx(move |tx| logs::active(tx, now_unix)).await
    }

    async fn append_log_lines(
        &self,
        node: &str,
        lines: &[NewLogLine],
        now_unix: u64,
        max_per_tenant: u64,
    ) -> StoreResult<u64> {
        let (node, lines) = (node.to_string(), lines.to_vec());
        self.tx(move |tx| logs::append(tx, &node, &lines, now_unix, max_per_tenant))
            .await
    }

    async fn log_lines(
        &self,
        tenant: &TenantId,
        app: &AppName,
        after_seq: u64,
        since_ms: u64,
        limit: usize,
    ) -> StoreResult<LogPage> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| logs::lines(tx, &tenant, &app, after_seq, since_ms, limit))
            .await
    }

    async fn log_start(
        &self,
        tenant: &TenantId,
        app: &AppName,
        since_ms: Option<u64>,
    ) -> StoreResult<LogStart> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| logs::start(tx, &tenant, &app, since_ms))
            .await
    }

    async fn log_tailed_apps(&self, now_unix: u64) -> StoreResult<Vec<TailedApp>> {
        self.tx(move |tx| logs::snapshot_tails(tx, now_unix)).await
    }

    async fn last_log_seq(&self) -> StoreResult<u64> {
        self.tx(logs::last_seq).await
    }

    // ---- App secrets (`secrets`).

    async fn app_secrets(&self, tenant: &TenantId, app: &AppName) -> StoreResult<AppSecrets> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| secrets::app_secrets(tx, &tenant, &app))
            .await
    }

    async fn secrets_by_bundle(&self, sha256: &str) -> StoreResult<Option<AppSecrets>> {
        let sha256 = sha256.to_string();
        self.tx(move |tx| secrets::by_bundle(tx, &sha256)).await
    }

    async fn write_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        write: &SecretWrite,
    ) -> StoreResult<(Option<SecretRecord>, u64)> {
        let (tenant, app, write) = (tenant.clone(), app.clone(), write.clone());
        self.tx(move |tx| secrets::write(tx, &tenant, &app, &write))
            .await
    }

    async fn all_secrets(&self) -> StoreResult<Vec<SecretRecord>> {
        self.tx(secrets::all).await
    }

    async fn reseal_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        let (tenant, app, name) = (tenant.clone(), app.clone(), name.to_string());
        let (old, new) = (old.to_vec(), new.to_vec());
        self.tx(move |tx| secrets::reseal(tx, &tenant, &app, &name, &old, &new))
            .await
    }

    // ---- Key-value stores (`kv`).

    async fn kv_create_store(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
        now_unix: u64,
    ) -> StoreResult<super::KvStoreRecord> {
        let (tenant, name, id) = (tenant.clone(), name.to_string(), id.to_string());
        self.tx(move |tx| kv::create_store(tx, &tenant, &name, &id, now_unix))
            .await
    }

    async fn kv_stores(&self, tenant: &TenantId) -> StoreResult<Vec<super::KvStoreRecord>> {
        let tenant = tenant.clone();
        self.tx(move |tx| kv::stores(tx, &tenant)).await
    }

    async fn kv_store(&self, tenant: &TenantId, name: &str) -> StoreResult<super::KvStoreRecord> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.tx(move |tx| kv::store(tx, &tenant, &name)).await
    }

    async fn kv_drop_store(
        &self,
        tenant: &TenantId,
        name: &str,
        now_unix: u64,
    ) -> StoreResult<u64> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.tx(move |tx| kv::drop_store(tx, &tenant, &name, now_unix))
            .await
    }

    async fn kv_link(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>> {
        let (tenant, app, store) = (tenant.clone(), app.clone(), store.to_string());
        self.tx(move |tx| kv::link(tx, &tenant, &app, &store, true))
            .await
    }

    async fn kv_unlink(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>> {
        let (tenant, app, store) = (tenant.clone(), app.clone(), store.to_string());
        self.tx(move |tx| kv::link(tx, &tenant, &app, &store, false))
            .await
    }

    async fn kv_app_links(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<edge_common::kv::KvLink>> {
        let (tenant, app) = (tenant.clone(), app.clone());
        self.tx(move |tx| kv::app_links(tx, &tenant, &app)).await
    }

    async fn kv_get(
        &self,
        tenant: &TenantId,
        store: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        let (tenant, store, key) = (tenant.clone(), store.to_string(), key.to_string());
        self.tx(move |tx| kv::get(tx, &tenant, &store, &key)).await
    }

    async fn kv_keys(
        &self,
        tenant: &TenantId,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let (tenant, store, prefix) = (tenant.clone(), store.to_string(), prefix.to_string());
        let after = after.map(str::to_string);
        self.tx(move |tx| kv::keys(tx, &tenant, &store, &prefix, after.as_deref(), limit))
            .await
    }

    async fn kv_write(&self, write: &super::KvWrite) -> StoreResult<super::KvWriteOutcome> {
        let write = write.clone();
        self.tx(move |tx| kv::write(tx, &write)).await
    }

    async fn kv_changes(&self, since: u64, limit: usize) -> StoreResult<super::KvChanges> {
        self.tx(move |tx| kv::changes(tx, since, limit)).await
    }

    async fn kv_head(&self) -> StoreResult<super::KvHead> {
        self.tx(kv::head).await
    }

    async fn kv_snapshot_page(
        &self,
        at: u64,
        after: Option<&edge_common::kv::KvCursor>,
        limit: usize,
    ) -> StoreResult<super::KvPage> {
        let after = after.cloned();
        self.tx(move |tx| kv::snapshot_page(tx, at, after.as_ref(), limit))
            .await
    }

    async fn kv_prune(&self, before_unix: u64) -> StoreResult<super::KvPruneOutcome> {
        self.tx(move |tx| kv::prune(tx, before_unix)).await
    }

    async fn set_app_compression(
        &self,
        tenant: &TenantId,
        name: &AppName,
        compression: &edge_common::sync::AppCompression,
    ) -> StoreResult<u64> {
        use super::compression_rows::{SET_APP_COMPRESSION, values};
        let (tenant, name, compression) = (tenant.clone(), name.clone(), *compression);
        self.tx(move |tx| {
            app_exists(tx, &tenant, &name)?;
            let revision = bump_revision(tx)?;
            let (enabled, min_bytes) = values(&compression);
            tx.execute(
                &super::cert_rows::sqlite(SET_APP_COMPRESSION),
                params![
                    tenant.as_str(),
                    name.as_str(),
                    enabled,
                    min_bytes,
                    super::cert_rows::int(revision)
                ],
            )
            .map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn dump(&self) -> StoreResult<StoreDump> {
        self.tx(dump::dump).await
    }

    async fn restore(&self, restored: StoreDump) -> StoreResult<()> {
        self.tx(move |tx| dump::restore(tx, &restored)).await
    }
}
