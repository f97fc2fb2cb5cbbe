//! App secrets on SQLite: the statements and decisions of `secret_rows`,
//! run in the caller's transaction.

use edge_common::names::{AppName, TenantId};
use edge_common::secrets::SecretsRef;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{app_exists, backend, bump_revision, component_app, parse};
use crate::store::cert_rows::{int, sqlite, uint};
use crate::store::secret_rows::{self as rows, check_bundle, check_expected, check_limit};
use crate::store::{
    AppSecrets, SecretBundleRecord, SecretRecord, SecretWrite, StoreResult, now_unix,
};

type RawSecret = (String, String, String, Vec<u8>, i64, i64);

fn raw(row: &Row<'_>) -> rusqlite::Result<RawSecret> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn record((tenant, app, name, sealed, created, updated): RawSecret) -> StoreResult<SecretRecord> {
    Ok(SecretRecord {
        tenant: parse(tenant)?,
        app: parse(app)?,
        name,
        sealed,
        created_unix: uint(created),
        updated_unix: uint(updated),
    })
}

fn query(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<SecretRecord>> {
    let mut stmt = tx.prepare(&sqlite(statement)).map_err(backend)?;
    let rows: Vec<RawSecret> = stmt
        .query_map(params, raw)
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    rows.into_iter().map(record).collect()
}

fn bundle(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Option<SecretBundleRecord>> {
    tx.query_row(
        &sqlite(rows::BUNDLE_OF_APP),
        params![tenant.as_str(), app.as_str()],
        |row| {
            Ok(SecretBundleRecord {
                salt: row.get(0)?,
                sha256: row.get(1)?,
                size: uint(row.get(2)?),
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn of_app(tx: &Transaction<'_>, tenant: &TenantId, app: &AppName) -> StoreResult<AppSecrets> {
    Ok(AppSecrets {
        tenant: tenant.clone(),
        app: app.clone(),
        bundle: bundle(tx, tenant, app)?,
        secrets: query(
            tx,
            rows::SECRETS_OF_APP,
            params![tenant.as_str(), app.as_str()],
        )?,
    })
}

fn count(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<u64> {
    tx.query_row(&sqlite(statement), params, |row| row.get::<_, i64>(0))
        .map(uint)
        .map_err(backend)
}

pub(super) fn app_secrets(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<AppSecrets> {
    app_exists(tx, tenant, app)?;
    of_app(tx, tenant, app)
}

pub(super) fn by_bundle(tx: &Transaction<'_>, sha256: &str) -> StoreResult<Option<AppSecrets>> {
    let found: Option<(String, String)> = tx
        .query_row(&sqlite(rows::APP_OF_BUNDLE), params![sha256], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    match found {
        None => Ok(None),
        Some((tenant, app)) => Ok(Some(of_app(tx, &parse(tenant)?, &parse(app)?)?)),
    }
}

pub(super) fn write(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    write: &SecretWrite,
) -> StoreResult<(Option<SecretRecord>, u64)> {
    component_app(tx, tenant, app)?;
    let stored = bundle(tx, tenant, app)?;
    check_expected(app, stored.as_ref().map(|b| b.sha256.as_str()), write)?;
    let (t, a, n) = (tenant.as_str(), app.as_str(), write.name.as_str());
    let exists = count(tx, rows::SECRET_EXISTS, params![t, a, n])? > 0;
    match &write.sealed {
        Some(sealed) => {
            check_limit(
                app,
                exists,
                count(tx, rows::COUNT_OF_APP, params![t, a])?,
                write,
            )?;
            tx.execute(
                &sqlite(rows::UPSERT),
                params![t, a, n, sealed, int(now_unix())],
            )
            .map_err(backend)?;
        }
        None if !exists => return Err(rows::secret_not_found(app, n)),
        None => {
            tx.execute(&sqlite(rows::DELETE), params![t, a, n])
                .map_err(backend)?;
        }
    }
    check_bundle(count(tx, rows::COUNT_OF_APP, params![t, a])?, write)?;
    match &write.bundle {
        Some(b) => tx.execute(
            &sqlite(rows::PUT_BUNDLE),
            params![t, a, b.salt, b.sha256, int(b.size)],
        ),
        None => tx.execute(&sqlite(rows::DELETE_BUNDLE), params![t, a]),
    }
    .map_err(backend)?;
    let revision = bump_revision(tx)?;
    tx.execute(&sqlite(rows::TOUCH_APP), params![t, a, int(revision)])
        .map_err(backend)?;
    let secret = match write.sealed {
        Some(_) => query(tx, rows::SECRET_BY_NAME, params![t, a, n])?.pop(),
        None => None,
    };
    Ok((secret, revision))
}

pub(super) fn all(tx: &Transaction<'_>) -> StoreResult<Vec<SecretRecord>> {
    query(tx, rows::ALL_SECRETS, params![])
}

pub(super) fn reseal(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    name: &str,
    old: &[u8],
    new: &[u8],
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            &sqlite(rows::RESEAL),
            params![tenant.as_str(), app.as_str(), name, old, new],
        )
        .map_err(backend)?;
    Ok(changed == 1)
}

pub(super) fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<()> {
    for statement in [rows::DELETE_APP_SECRETS, rows::DELETE_BUNDLE] {
        tx.execute(&sqlite(statement), params![tenant.as_str(), app.as_str()])
            .map_err(backend)?;
    }
    Ok(())
}

/// What a snapshot says of the app's secrets.
pub(super) fn snapshot_ref(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Option<SecretsRef>> {
    Ok(bundle(tx, tenant, app)?.map(|b| SecretsRef {
        sha256: b.sha256,
        size: b.size,
    }))
}

/// Every bundle record: (tenant, app, bundle), for a dump.
pub(super) fn all_bundles(
    tx: &Transaction<'_>,
) -> StoreResult<Vec<(TenantId, AppName, SecretBundleRecord)>> {
    let mut stmt = tx.prepare(rows::ALL_BUNDLES).map_err(backend)?;
    let raw: Vec<(String, String, String, String, i64)> = stmt
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    raw.into_iter()
        .map(|(tenant, app, salt, sha256, size)| {
            Ok((
                parse(tenant)?,
                parse(app)?,
                SecretBundleRecord {
                    salt,
                    sha256,
                    size: uint(size),
                },
            ))
        })
        .collect()
}

/// Writes restored rows as they were.
pub(super) fn restore(
    tx: &Transaction<'_>,
    secrets: &[SecretRecord],
    bundles: &[(TenantId, AppName, SecretBundleRecord)],
) -> StoreResult<()> {
    for s in secrets {
        tx.execute(
            &sqlite(rows::INSERT_ROW),
            params![
                s.tenant.as_str(),
                s.app.as_str(),
                s.name,
                s.sealed,
                int(s.created_unix),
                int(s.updated_unix)
            ],
        )
        .map_err(backend)?;
    }
    for (tenant, app, b) in bundles {
        tx.execute(
            &sqlite(rows::INSERT_BUNDLE),
            params![tenant.as_str(), app.as_str(), b.salt, b.sha256, int(b.size)],
        )
        .map_err(backend)?;
    }
    Ok(())
}
