//! App secrets on PostgreSQL: the statements and decisions of
//! `secret_rows`, run in the caller's transaction, as the SQLite backend
//! runs them (`store/sqlite/secrets.rs`).

use deadpool_postgres::Transaction;
use edge_common::names::{AppName, TenantId};
use edge_common::secrets::SecretsRef;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{TxResult, app_exists, bump_revision, component_app, parse};
use crate::store::cert_rows::{int, uint};
use crate::store::secret_rows::{self as rows, check_bundle, check_expected, check_limit};
use crate::store::{AppSecrets, SecretBundleRecord, SecretRecord, SecretWrite, now_unix};

fn record(row: &Row) -> TxResult<SecretRecord> {
    Ok(SecretRecord {
        tenant: parse(row.try_get(0)?)?,
        app: parse(row.try_get(1)?)?,
        name: row.try_get(2)?,
        sealed: row.try_get(3)?,
        created_unix: uint(row.try_get(4)?),
        updated_unix: uint(row.try_get(5)?),
    })
}

async fn query(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<Vec<SecretRecord>> {
    tx.query(statement, params)
        .await?
        .iter()
        .map(record)
        .collect()
}

async fn count(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<u64> {
    Ok(uint(tx.query_one(statement, params).await?.try_get(0)?))
}

async fn bundle(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Option<SecretBundleRecord>> {
    match tx
        .query_opt(rows::BUNDLE_OF_APP, &[&tenant.as_str(), &app.as_str()])
        .await?
    {
        None => Ok(None),
        Some(row) => Ok(Some(SecretBundleRecord {
            salt: row.try_get(0)?,
            sha256: row.try_get(1)?,
            size: uint(row.try_get(2)?),
        })),
    }
}

async fn of_app(tx: &Transaction<'_>, tenant: &TenantId, app: &AppName) -> TxResult<AppSecrets> {
    Ok(AppSecrets {
        tenant: tenant.clone(),
        app: app.clone(),
        bundle: bundle(tx, tenant, app).await?,
        secrets: query(tx, rows::SECRETS_OF_APP, &[&tenant.as_str(), &app.as_str()]).await?,
    })
}

pub(super) async fn app_secrets(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<AppSecrets> {
    app_exists(tx, tenant, app).await?;
    of_app(tx, tenant, app).await
}

pub(super) async fn by_bundle(tx: &Transaction<'_>, sha256: &str) -> TxResult<Option<AppSecrets>> {
    match tx.query_opt(rows::APP_OF_BUNDLE, &[&sha256]).await? {
        None => Ok(None),
        Some(row) => {
            let (tenant, app) = (parse(row.try_get(0)?)?, parse(row.try_get(1)?)?);
            Ok(Some(of_app(tx, &tenant, &app).await?))
        }
    }
}

pub(super) async fn write(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    write: &SecretWrite,
) -> TxResult<(Option<SecretRecord>, u64)> {
    component_app(tx, tenant, app).await?;
    let stored = bundle(tx, tenant, app).await?;
    check_expected(app, stored.as_ref().map(|b| b.sha256.as_str()), write)?;
    let (t, a, n) = (tenant.as_str(), app.as_str(), write.name.as_str());
    let exists = count(tx, rows::SECRET_EXISTS, &[&t, &a, &n]).await? > 0;
    match &write.sealed {
        Some(sealed) => {
            let current = count(tx, rows::COUNT_OF_APP, &[&t, &a]).await?;
            check_limit(app, exists, current, write)?;
            tx.execute(rows::UPSERT, &[&t, &a, &n, sealed, &int(now_unix())])
                .await?;
        }
        None if !exists => return Err(rows::secret_not_found(app, n).into()),
        None => {
            tx.execute(rows::DELETE, &[&t, &a, &n]).await?;
        }
    }
    check_bundle(count(tx, rows::COUNT_OF_APP, &[&t, &a]).await?, write)?;
    match &write.bundle {
        Some(b) => {
            tx.execute(
                rows::PUT_BUNDLE,
                &[&t, &a, &b.salt, &b.sha256, &int(b.size)],
            )
            .await?
        }
        None => tx.execute(rows::DELETE_BUNDLE, &[&t, &a]).await?,
    };
    let revision = bump_revision(tx).await?;
    tx.execute(rows::TOUCH_APP, &[&t, &a, &int(revision)])
        .await?;
    let secret = match write.sealed {
        Some(_) => query(tx, rows::SECRET_BY_NAME, &[&t, &a, &n]).await?.pop(),
        None => None,
    };
    Ok((secret, revision))
}

pub(super) async fn all(tx: &Transaction<'_>) -> TxResult<Vec<SecretRecord>> {
    query(tx, rows::ALL_SECRETS, &[]).await
}

pub(super) async fn reseal(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    name: &str,
    old: &[u8],
    new: &[u8],
) -> TxResult<bool> {
    let changed = tx
        .execute(
            rows::RESEAL,
            &[&tenant.as_str(), &app.as_str(), &name, &old, &new],
        )
        .await?;
    Ok(changed == 1)
}

pub(super) async fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<()> {
    for statement in [rows::DELETE_APP_SECRETS, rows::DELETE_BUNDLE] {
        tx.execute(statement, &[&tenant.as_str(), &app.as_str()])
            .await?;
    }
    Ok(())
}

/// What a snapshot says of the app's secrets.
pub(super) async fn snapshot_ref(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Option<SecretsRef>> {
    Ok(bundle(tx, tenant, app).await?.map(|b| SecretsRef {
        sha256: b.sha256,
        size: b.size,
    }))
}

/// Every bundle record: (tenant, app, bundle), for a dump.
pub(super) async fn all_bundles(
    tx: &Transaction<'_>,
) -> TxResult<Vec<(TenantId, AppName, SecretBundleRecord)>> {
    tx.query(rows::ALL_BUNDLES, &[])
        .await?
        .iter()
        .map(|row| {
            Ok((
                parse(row.try_get(0)?)?,
                parse(row.try_get(1)?)?,
                SecretBundleRecord {
                    salt: row.try_get(2)?,
                    sha256: row.try_get(3)?,
                    size: uint(row.try_get(4)?),
                },
            ))
        })
        .collect()
}

/// Writes restored rows as they were.
pub(super) async fn restore(
    tx: &Transaction<'_>,
    secrets: &[SecretRecord],
    bundles: &[(TenantId, AppName, SecretBundleRecord)],
) -> TxResult<()> {
    for s in secrets {
        tx.execute(
            rows::INSERT_ROW,
            &[
                &s.tenant.as_str(),
                &s.app.as_str(),
                &s.name,
                &s.sealed,
                &int(s.created_unix),
                &int(s.updated_unix),
            ],
        )
        .await?;
    }
    for (tenant, app, b) in bundles {
        tx.execute(
            rows::INSERT_BUNDLE,
            &[
                &tenant.as_str(),
                &app.as_str(),
                &b.salt,
                &b.sha256,
                &int(b.size),
            ],
        )
        .await?;
    }
    Ok(())
}
