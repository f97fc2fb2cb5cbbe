//! The scale-out metadata store: PostgreSQL, shared by every control-plane
//! replica, through a `deadpool-postgres` pool of `tokio-postgres`
//! connections. The schema is versioned (`migrations/postgres/`) and
//! migrated on connect, under an advisory lock so replicas starting
//! together migrate once.
//!
//! Every [`MetaStore`](super::MetaStore) method is one transaction with
//! the SQLite backend's meaning. Changes run `SERIALIZABLE`: replicas are
//! separate processes, so only the database can order them, and
//! PostgreSQL aborts any transaction whose outcome would differ from
//! running them one after the other (two replicas claiming one hostname,
//! or overlapping ones, for different tenants; two uploads against one
//! quota; two changes bumping the revision). An aborted attempt is run
//! again from the start, a bounded number of times; the hostname primary
//! key is a second line behind the same rule. Reads run `REPEATABLE READ
//! READ ONLY`: one consistent snapshot that never aborts and never makes a
//! writer abort.
//!
//! No TLS to the database yet (`NoTls`; a URL asking for `sslmode=require`
//! is refused when parsed): reach it over a private network. TLS with
//! `tokio-postgres-rustls` is future work.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{AppHttps, ArtifactRef, Purge, SnapshotApp, SnapshotOrigin};
use rand::RngExt as _;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::{
    AppOrigin, AppRecord, QuotaExceeded, RestoreError, StoreError, StoreResult, TenantStorage,
    VersionRecord, purge_columns, purge_target,
};

/// The versioned schema, applied by refinery on connect (it records what
/// it applied in `refinery_schema_history`).
mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How a transaction attempt failed: to be run again (PostgreSQL could not
/// serialize it with a concurrent one), or for good.
pub(crate) enum TxError {
    Retry(String),
    Store(StoreError),
}

pub(crate) type TxResult<T> = Result<T, TxError>;

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                Self::Retry(describe(&e))
            }
            _ => Self::Store(backend(&e)),
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<QuotaExceeded> for TxError {
    fn from(e: QuotaExceeded) -> Self {
        Self::Store(e.into())
    }
}

impl From<RestoreError> for TxError {
    fn from(e: RestoreError) -> Self {
        Self::Store(e.into())
    }
}

/// The server's own message and code where there is one (the driver's
/// `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn backend(e: &tokio_postgres::Error) -> StoreError {
    // A full disk (SQLSTATE 53100) is the one server failure a caller can
    // act on (an operator frees space, the same call works): the API's 507
    // `storage-full`, as for the SQLite and file backends.
    if e.code() == Some(&SqlState::DISK_FULL) {
        return StoreError::Full(format!("the PostgreSQL database: {}", describe(e)));
    }
    StoreError::Backend(format!("postgres: {}", describe(e)))
}

/// Attempts of one transaction before giving up: each retry follows a
/// conflict with a transaction that committed, so even a burst of
/// replicas all bumping the revision settles in a few.
const MAX_ATTEMPTS: u32 = 30;

/// A random pause before attempt `attempt + 1`, so that transactions that
/// collided do not collide again in step: up to 2^attempt ms, at most
/// 200 ms.
async fn retry_pause(attempt: u32) {
    let cap_ms = (1u64 << attempt.min(8)).min(200);
    let pause_ms = rand::rng().random_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `REPEATABLE READ READ ONLY`: a consistent snapshot.
    Read,
    /// `SERIALIZABLE`, run again on a serialization failure.
    Write,
    /// `READ COMMITTED`: for writers ordered by a row lock they take first
    /// thing (the live-log `log_seq` counter), which wait on each other
    /// and re-read instead of failing.
    ReadCommitted,
}

impl Kind {
    pub(crate) async fn begin(self, client: &mut Object) -> TxResult<Transaction<'_>> {
        let builder = client.build_transaction();
        let builder = match self {
            Self::Read => builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true),
            Self::Write => builder.isolation_level(IsolationLevel::Serializable),
            Self::ReadCommitted => builder.isolation_level(IsolationLevel::ReadCommitted),
        };
        Ok(builder.start().await?)
    }
}

/// Runs `$body` (an expression using `$tx`, with `?` on store and driver
/// errors) in one transaction of `$kind` and commits it; runs it again
/// from the start after a serialization failure. Evaluates to a
/// `StoreResult`. A macro rather than a function taking a closure: the
/// body borrows the transaction and the caller's arguments across awaits,
/// which a re-callable async closure cannot express here.
macro_rules! transaction {
    ($store:expr, $kind:expr, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let mut client = $store.client().await?;
            let outcome: $crate::store::postgres::TxResult<_> = async {
                let $tx = $kind.begin(&mut client).await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(value) => break Ok(value),
                Err($crate::store::postgres::TxError::Store(e)) => break Err(e),
                Err($crate::store::postgres::TxError::Retry(why)) => {
                    attempt += 1;
                    if attempt >= $crate::store::postgres::MAX_ATTEMPTS {
                        break Err($crate::store::StoreError::Backend(format!(
                            "postgres: gave up after {attempt} attempts, each in conflict with a concurrent change: {why}"
                        )));
                    }
                    tracing::debug!(attempt, %why, "postgres: transaction conflict, retrying");
                    $crate::store::postgres::retry_pause(attempt).await;
                }
            }
        }
    }};
}

mod certs;
mod dump;
pub mod kv;
mod logs;
mod meta;
pub mod notify;
mod outbound;
mod secrets;

/// Connections one replica keeps open at most: API calls hold one for a
/// single short transaction, so a few are plenty, and many replicas stay
/// within PostgreSQL's default `max_connections` of 100.
const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection before failing (500), and
/// for a new connection to be made.
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The session advisory lock key replicas take while migrating (any fixed
/// number; "edge-cp" in ASCII).
const MIGRATION_LOCK: i64 = 0x65_64_67_65_2d_63_70;

pub struct PgMetaStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl PgMetaStore {
    /// Connects, migrates the schema (once among replicas starting
    /// together) and gives a new store its epoch. `shown_as` names the
    /// database in errors (the URL with its password hidden: see
    /// `location::PgUrl`, which is how a store is usually opened).
    pub async fn connect(config: &tokio_postgres::Config, shown_as: &str) -> StoreResult<Self> {
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("edge-cp");
        }
        migrate(&config, shown_as).await?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection that broke is found by its next query; a
                // check on every checkout would cost a round trip per call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        Ok(Self { pool, config })
    }

    /// The connection pool, for whatever else a replica does on the same
    /// database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings, for a dedicated connection outside the
    /// pool (a `LISTEN`er holds its connection for good).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("postgres: no connection: {e}")))
    }
}

/// Applies pending migrations on a connection of its own, holding a
/// session advisory lock (released when the connection closes, whatever
/// happens), then gives a new store its epoch.
async fn migrate(config: &tokio_postgres::Config, url: &str) -> StoreResult<()> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
        StoreError::Backend(format!(
            "postgres: cannot connect to {url}: {}",
            describe(&e)
        ))
    })?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres: migration connection failed");
        }
    });
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| backend(&e))?;
        embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating {url}: {e}")))?;
        client
            .execute(
                "INSERT INTO identity (id, epoch) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&super::dump::new_epoch()?],
            )
            .await
            .map_err(|e| backend(&e))?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

// Row helpers shared by the MetaStore methods, each inside the caller's
// transaction.

fn int(v: u64) -> i64 {
    // Values come from the API (bounded, MAX_QUOTA_BYTES) or the store.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    v as u64
}

fn parse<T: TryFrom<String, Error = String>>(s: String) -> StoreResult<T> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("stored JSON: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Bumps the revision and announces it to every replica (delivered at
/// commit, and not at all if the transaction rolls back: see `notify`).
async fn bump_revision(tx: &Transaction<'_>) -> TxResult<u64> {
    let row = tx
        .query_one(
            "WITH bumped AS (UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value) \
             SELECT value, pg_notify($1, value::text) FROM bumped",
            &[&notify::CHANNEL],
        )
        .await?;
    Ok(u(row.try_get(0)?))
}

async fn current_revision(tx: &Transaction<'_>) -> TxResult<u64> {
    let row = tx
        .query_one("SELECT value FROM revision WHERE id = 1", &[])
        .await?;
    Ok(u(row.try_get(0)?))
}

async fn epoch(tx: &Transaction<'_>) -> TxResult<String> {
    let row = tx
        .query_one("SELECT epoch FROM identity WHERE id = 1", &[])
        .await?;
    Ok(row.try_get(0)?)
}

/// The tenant's own quota and its used bytes; `NotFound` if there is no
/// such tenant.
async fn tenant_storage(tx: &Transaction<'_>, tenant: &TenantId) -> TxResult<TenantStorage> {
    let quota: Option<i64> = tx
        .query_opt(
            "SELECT storage_quota_bytes FROM tenants WHERE id = $1",
            &[&tenant.as_str()],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant}")))?
        .try_get(0)?;
    // SUM of BIGINT is NUMERIC in PostgreSQL.
    let used: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(source_size), 0)::BIGINT FROM versions WHERE tenant = $1",
            &[&tenant.as_str()],
        )
        .await?
        .try_get(0)?;
    Ok(TenantStorage {
        quota_bytes: quota.map(u),
        used_bytes: u(used),
    })
}

async fn tenant_found(tx: &Transaction<'_>, tenant: &TenantId) -> TxResult<bool> {
    Ok(tx
        .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()])
        .await?
        .is_some())
}

async fn app_exists(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> TxResult<()> {
    match tx
        .query_opt(
            "SELECT 1 FROM apps WHERE tenant = $1 AND name = $2",
            &[&tenant.as_str(), &name.as_str()],
        )
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("app {name}")).into()),
    }
}

/// The app's origin (`None` for a component app); `NotFound` if there is
/// no such app.
async fn app_origin(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
) -> TxResult<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT origin FROM apps WHERE tenant = $1 AND name = $2",
            &[&tenant.as_str(), &name.as_str()],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("app {name}")))?
        .try_get(0)?)
}

/// Versions and deploys are for component apps only.
async fn component_app(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> TxResult<()> {
    match app_origin(tx, tenant, name).await? {
        None => Ok(()),
        Some(_) => Err(StoreError::OriginApp(name.to_string()).into()),
    }
}

async fn load_app(tx: &Transaction<'_>, tenant: &TenantId, name: &AppName) -> TxResult<AppRecord> {
    let row = tx
        .query_opt(
            "SELECT active_version, config, limits, created_unix, updated_revision, origin,
                    forward_override_headers, https_redirect, hsts,
                    compression_enabled, compression_min_bytes
             FROM apps WHERE tenant = $1 AND name = $2",
            &[&tenant.as_str(), &name.as_str()],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("app {name}")))?;
    let hosts = tx
        .query(
            "SELECT host FROM hosts WHERE tenant = $1 AND app = $2 ORDER BY position",
            &[&tenant.as_str(), &name.as_str()],
        )
        .await?
        .into_iter()
        .map(|r| Ok(parse::<HostPattern>(r.try_get(0)?)?))
        .collect::<TxResult<Vec<_>>>()?;
    let origin: Option<String> = row.try_get(5)?;
    Ok(AppRecord {
        tenant: tenant.clone(),
        name: name.clone(),
        hosts,
        active_version: row.try_get::<_, Option<i64>>(0)?.map(u),
        origin: match origin {
            Some(url) => Some(AppOrigin {
                url,
                forward_override_headers: row.try_get(6)?,
            }),
            None => None,
        },
        config: json(row.try_get(1)?)?,
        limits: json(row.try_get(2)?)?,
        https: AppHttps {
            redirect: row.try_get(7)?,
            hsts: row.try_get(8)?,
        },
        compression: super::compression_rows::from_columns(row.try_get(9)?, row.try_get(10)?),
        created_unix: u(row.try_get(3)?),
        updated_revision: u(row.try_get(4)?),
    })
}

fn version_row(version: u64, row: &Row) -> TxResult<VersionRecord> {
    Ok(VersionRecord {
        version,
        source_sha256: row.try_get(0)?,
        source_size: u(row.try_get(1)?),
        artifact: ArtifactRef {
            sha256: row.try_get(2)?,
            size: u(row.try_get(3)?),
            engine: row.try_get(4)?,
        },
        created_unix: u(row.try_get(5)?),
    })
}

async fn load_version(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
    version: u64,
) -> TxResult<Option<VersionRecord>> {
    match tx
        .query_opt(
            "SELECT source_sha256, source_size, artifact_sha256, artifact_size, engine, created_unix
             FROM versions WHERE tenant = $1 AND app = $2 AND version = $3",
            &[&tenant.as_str(), &name.as_str(), &int(version)],
        )
        .await?
    {
        Some(row) => Ok(Some(version_row(version, &row)?)),
        None => Ok(None),
    }
}

fn purge_row(row: &Row) -> TxResult<Purge> {
    Ok(Purge {
        id: u(row.try_get(0)?),
        tenant: parse(row.try_get(1)?)?,
        app: parse(row.try_get(2)?)?,
        target: purge_target(row.try_get(3)?, row.try_get(4)?)?,
        soft: row.try_get(5)?,
        created_unix: u(row.try_get(6)?),
    })
}

/// Every component app with an active version.
async fn snapshot_apps(tx: &Transaction<'_>) -> TxResult<Vec<SnapshotApp>> {
    let deployed = tx
        .query(
            "SELECT tenant, name, active_version FROM apps
             WHERE active_version IS NOT NULL AND origin IS NULL ORDER BY tenant, name",
            &[],
        )
        .await?;
    let mut apps = Vec::with_capacity(deployed.len());
    for row in deployed {
        let tenant: TenantId = parse(row.try_get(0)?)?;
        let name: AppName = parse(row.try_get(1)?)?;
        let version = u(row.try_get(2)?);
        let app = load_app(tx, &tenant, &name).await?;
        let version = load_version(tx, &tenant, &name, version)
            .await?
            .ok_or_else(|| {
                StoreError::Backend(format!("app {name}: active version {version} is missing"))
            })?;
        let app_outbound = outbound::for_snapshot(tx, &tenant, &name).await?;
        let app_secrets = secrets::snapshot_ref(tx, &tenant, &name).await?;
        let kv_links = kv::links_of(tx, &tenant, &name).await?;
        let kv_limits = outbound::caps(tx, tenant.as_str()).await?.kv();
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
async fn snapshot_origins(tx: &Transaction<'_>) -> TxResult<Vec<SnapshotOrigin>> {
    let names = tx
        .query(
            "SELECT tenant, name FROM apps WHERE origin IS NOT NULL ORDER BY tenant, name",
            &[],
        )
        .await?;
    let mut origins = Vec::with_capacity(names.len());
    for row in names {
        let app = load_app(tx, &parse(row.try_get(0)?)?, &parse(row.try_get(1)?)?).await?;
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
async fn snapshot_purges(tx: &Transaction<'_>) -> TxResult<Vec<Purge>> {
    tx.query(
        "SELECT id, tenant, app, kind, value, soft, created_unix FROM purges ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(purge_row)
    .collect()
}
