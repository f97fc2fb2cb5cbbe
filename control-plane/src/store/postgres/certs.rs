//! Certificates, ACME challenges and accounts, and apps' HTTPS options on
//! PostgreSQL: each function runs in the caller's transaction, statement
//! for statement the SQLite backend's (`store/sqlite/certs.rs`).

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::{AcmeChallenge, AppHttps, SnapshotCertificate};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{TxResult, app_exists, bump_revision, current_revision, int, u};
use crate::store::cert_rows::{
    self, CERT_COLUMNS, CertColumns, MaterialColumns, SNAPSHOT_CERT_COLUMNS, SnapshotCertColumns,
};
use crate::store::{CertMaterial, CertRecord, NewCertificate, StoreError, now_unix};

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound(format!("certificate {id}"))
}

fn columns(row: &Row) -> TxResult<CertColumns> {
    Ok(CertColumns {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        app: row.try_get(2)?,
        hosts: row.try_get(3)?,
        source: row.try_get(4)?,
        chain_pem: row.try_get(5)?,
        sealed_key: row.try_get(6)?,
        bundle_sha256: row.try_get(7)?,
        bundle_size: row.try_get(8)?,
        issuer: row.try_get(9)?,
        not_before_unix: row.try_get(10)?,
        not_after_unix: row.try_get(11)?,
        last_error: row.try_get(12)?,
        attempts: row.try_get(13)?,
        next_attempt_unix: row.try_get(14)?,
        created_unix: row.try_get(15)?,
        updated_unix: row.try_get(16)?,
    })
}

/// Certificates selected by `condition` (a `WHERE` clause over `params`),
/// by id.
async fn select(
    tx: &Transaction<'_>,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<Vec<CertRecord>> {
    let rows = tx
        .query(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {condition} ORDER BY id"),
            params,
        )
        .await?;
    rows.iter()
        .map(|row| Ok(columns(row)?.into_record()?))
        .collect()
}

pub(super) async fn load(tx: &Transaction<'_>, id: u64) -> TxResult<CertRecord> {
    Ok(select(tx, "id = $1", &[&int(id)])
        .await?
        .pop()
        .ok_or_else(|| not_found(id))?)
}

/// Writes a whole certificate row (a new one, or one being restored).
pub(super) async fn insert(tx: &Transaction<'_>, cert: &CertRecord) -> TxResult<()> {
    let m = MaterialColumns::of(cert.material.as_ref());
    tx.execute(
        &format!(
            "INSERT INTO certificates ({CERT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ),
        &[
            &int(cert.id),
            &cert.tenant.as_str(),
            &cert.app.as_str(),
            &cert_rows::hosts_to_json(&cert.hosts)?,
            &cert.source.as_str(),
            &m.chain_pem,
            &m.sealed_key,
            &m.bundle_sha256,
            &m.bundle_size,
            &m.issuer,
            &m.not_before_unix,
            &m.not_after_unix,
            &cert.last_error,
            &i64::from(cert.attempts),
            &cert.next_attempt_unix.map(int),
            &int(cert.created_unix),
            &int(cert.updated_unix),
        ],
    )
    .await?;
    Ok(())
}

/// Writes one challenge row at `position` among its certificate's.
pub(super) async fn insert_challenge(
    tx: &Transaction<'_>,
    certificate: u64,
    position: usize,
    challenge: &AcmeChallenge,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO acme_challenges (certificate, position, host, token, key_authorization)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &int(certificate),
            &(position as i64),
            &challenge.host,
            &challenge.token,
            &challenge.key_authorization,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the certificate's challenges; how many there were.
async fn clear_challenges(tx: &Transaction<'_>, id: u64) -> TxResult<u64> {
    Ok(tx
        .execute(
            "DELETE FROM acme_challenges WHERE certificate = $1",
            &[&int(id)],
        )
        .await?)
}

/// Deletes an app's certificates and their challenges (the app is being
/// deleted, which bumps the revision).
pub(super) async fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<()> {
    tx.execute(
        "DELETE FROM acme_challenges WHERE certificate IN
            (SELECT id FROM certificates WHERE tenant = $1 AND app = $2)",
        &[&tenant.as_str(), &app.as_str()],
    )
    .await?;
    tx.execute(
        "DELETE FROM certificates WHERE tenant = $1 AND app = $2",
        &[&tenant.as_str(), &app.as_str()],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_app_https(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
    https: &AppHttps,
) -> TxResult<u64> {
    app_exists(tx, tenant, name).await?;
    let revision = bump_revision(tx).await?;
    tx.execute(
        "UPDATE apps SET https_redirect = $3, hsts = $4, updated_revision = $5
         WHERE tenant = $1 AND name = $2",
        &[
            &tenant.as_str(),
            &name.as_str(),
            &https.redirect,
            &https.hsts,
            &int(revision),
        ],
    )
    .await?;
    Ok(revision)
}

pub(super) async fn add(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    new: &NewCertificate,
) -> TxResult<(CertRecord, u64)> {
    app_exists(tx, tenant, app).await?;
    let id: i64 = tx
        .query_one(
            "UPDATE certificate_counter SET value = value + 1 WHERE id = 1 RETURNING value",
            &[],
        )
        .await?
        .try_get(0)?;
    let now = now_unix();
    let cert = CertRecord {
        id: u(id),
        tenant: tenant.clone(),
        app: app.clone(),
        hosts: new.hosts.clone(),
        source: new.source,
        material: new.material.clone(),
        last_error: None,
        attempts: 0,
        next_attempt_unix: new.next_attempt_unix,
        created_unix: now,
        updated_unix: now,
    };
    insert(tx, &cert).await?;
    // Without material nodes have nothing new to serve.
    let revision = match cert.material {
        Some(_) => bump_revision(tx).await?,
        None => current_revision(tx).await?,
    };
    Ok((cert, revision))
}

pub(super) async fn list(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Vec<CertRecord>> {
    app_exists(tx, tenant, app).await?;
    select(
        tx,
        "tenant = $1 AND app = $2",
        &[&tenant.as_str(), &app.as_str()],
    )
    .await
}

pub(super) async fn all(tx: &Transaction<'_>) -> TxResult<Vec<CertRecord>> {
    select(tx, "TRUE", &[]).await
}

/// The certificate if it is one of the app's; `NotFound` otherwise.
async fn of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> TxResult<CertRecord> {
    app_exists(tx, tenant, app).await?;
    Ok(select(
        tx,
        "id = $1 AND tenant = $2 AND app = $3",
        &[&int(id), &tenant.as_str(), &app.as_str()],
    )
    .await?
    .pop()
    .ok_or_else(|| not_found(id))?)
}

pub(super) async fn delete(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> TxResult<u64> {
    let cert = of_app(tx, tenant, app, id).await?;
    let challenges = clear_challenges(tx, id).await?;
    tx.execute("DELETE FROM certificates WHERE id = $1", &[&int(id)])
        .await?;
    // A certificate nodes neither served nor answered for changes nothing
    // they see.
    if cert.material.is_some() || challenges > 0 {
        bump_revision(tx).await
    } else {
        current_revision(tx).await
    }
}

pub(super) async fn claim(
    tx: &Transaction<'_>,
    id: u64,
    expected: Option<u64>,
    lease_until: u64,
) -> TxResult<bool> {
    // NULL-safe equality: `expected: None` matches NULL.
    let updated = tx
        .execute(
            "UPDATE certificates SET next_attempt_unix = $2
             WHERE id = $1 AND next_attempt_unix IS NOT DISTINCT FROM $3",
            &[&int(id), &int(lease_until), &expected.map(int)],
        )
        .await?;
    Ok(updated == 1)
}

pub(super) async fn record_issued(
    tx: &Transaction<'_>,
    id: u64,
    material: &CertMaterial,
    next_attempt_unix: Option<u64>,
) -> TxResult<u64> {
    let m = MaterialColumns::of(Some(material));
    let updated = tx
        .execute(
            "UPDATE certificates SET chain_pem = $2, sealed_key = $3, bundle_sha256 = $4,
                bundle_size = $5, issuer = $6, not_before_unix = $7, not_after_unix = $8,
                last_error = NULL, attempts = 0, next_attempt_unix = $9, updated_unix = $10
             WHERE id = $1",
            &[
                &int(id),
                &m.chain_pem,
                &m.sealed_key,
                &m.bundle_sha256,
                &m.bundle_size,
                &m.issuer,
                &m.not_before_unix,
                &m.not_after_unix,
                &next_attempt_unix.map(int),
                &int(now_unix()),
            ],
        )
        .await?;
    if updated == 0 {
        return Err(not_found(id).into());
    }
    clear_challenges(tx, id).await?;
    bump_revision(tx).await
}

pub(super) async fn record_failure(
    tx: &Transaction<'_>,
    id: u64,
    error: &str,
    next_attempt_unix: u64,
) -> TxResult<()> {
    let updated = tx
        .execute(
            "UPDATE certificates SET last_error = $2, attempts = attempts + 1,
                next_attempt_unix = $3, updated_unix = $4
             WHERE id = $1",
            &[&int(id), &error, &int(next_attempt_unix), &int(now_unix())],
        )
        .await?;
    if updated == 0 {
        return Err(not_found(id).into());
    }
    if clear_challenges(tx, id).await? > 0 {
        bump_revision(tx).await?;
    }
    Ok(())
}

pub(super) async fn schedule(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
    at: u64,
) -> TxResult<CertRecord> {
    of_app(tx, tenant, app, id).await?;
    tx.execute(
        "UPDATE certificates SET next_attempt_unix = $2, updated_unix = $3 WHERE id = $1",
        &[&int(id), &int(at), &int(now_unix())],
    )
    .await?;
    load(tx, id).await
}

pub(super) async fn set_challenges(
    tx: &Transaction<'_>,
    id: u64,
    challenges: &[AcmeChallenge],
) -> TxResult<u64> {
    load(tx, id).await?;
    clear_challenges(tx, id).await?;
    for (position, challenge) in challenges.iter().enumerate() {
        insert_challenge(tx, id, position, challenge).await?;
    }
    bump_revision(tx).await
}

pub(super) async fn reseal(
    tx: &Transaction<'_>,
    id: u64,
    old: &[u8],
    new: &[u8],
) -> TxResult<bool> {
    let updated = tx
        .execute(
            "UPDATE certificates SET sealed_key = $3 WHERE id = $1 AND sealed_key = $2",
            &[&int(id), &old, &new],
        )
        .await?;
    Ok(updated == 1)
}

pub(super) async fn account(tx: &Transaction<'_>, directory: &str) -> TxResult<Option<Vec<u8>>> {
    match tx
        .query_opt(
            "SELECT sealed FROM acme_accounts WHERE directory = $1",
            &[&directory],
        )
        .await?
    {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

pub(super) async fn put_account(
    tx: &Transaction<'_>,
    directory: &str,
    sealed: &[u8],
    replace: bool,
) -> TxResult<Vec<u8>> {
    let sql = if replace {
        "INSERT INTO acme_accounts (directory, sealed) VALUES ($1, $2)
         ON CONFLICT (directory) DO UPDATE SET sealed = excluded.sealed"
    } else {
        "INSERT INTO acme_accounts (directory, sealed) VALUES ($1, $2)
         ON CONFLICT (directory) DO NOTHING"
    };
    tx.execute(sql, &[&directory, &sealed]).await?;
    Ok(account(tx, directory)
        .await?
        .ok_or_else(|| StoreError::Backend(format!("the ACME account of {directory} vanished")))?)
}

pub(super) async fn accounts(tx: &Transaction<'_>) -> TxResult<Vec<(String, Vec<u8>)>> {
    tx.query(
        "SELECT directory, sealed FROM acme_accounts ORDER BY directory",
        &[],
    )
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect()
}

/// The certificates and challenges of a snapshot (see `cert_rows`).
pub(super) async fn snapshot(
    tx: &Transaction<'_>,
) -> TxResult<(Vec<SnapshotCertificate>, Vec<AcmeChallenge>)> {
    let owned: HashMap<_, _> = cert_rows::owned_by_tenant(
        tx.query("SELECT tenant, host FROM hosts", &[])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<TxResult<Vec<(String, String)>>>()?,
    )?;
    let certs = tx
        .query(
            &format!(
                "SELECT {SNAPSHOT_CERT_COLUMNS} FROM certificates
                 WHERE chain_pem IS NOT NULL ORDER BY id"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(SnapshotCertColumns {
                id: row.try_get(0)?,
                tenant: row.try_get(1)?,
                app: row.try_get(2)?,
                hosts: row.try_get(3)?,
                bundle_sha256: row.try_get(4)?,
                bundle_size: row.try_get(5)?,
                not_after_unix: row.try_get(6)?,
            })
        })
        .collect::<TxResult<Vec<_>>>()?;
    let challenges = tx
        .query(
            "SELECT c.tenant, a.host, a.token, a.key_authorization
             FROM acme_challenges a JOIN certificates c ON c.id = a.certificate
             ORDER BY a.certificate, a.token, a.position",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<_, String>(0)?,
                AcmeChallenge {
                    host: row.try_get(1)?,
                    token: row.try_get(2)?,
                    key_authorization: row.try_get(3)?,
                },
            ))
        })
        .collect::<TxResult<Vec<_>>>()?;
    Ok((
        cert_rows::snapshot_certificates(certs, &owned)?,
        cert_rows::snapshot_challenges(challenges, &owned),
    ))
}

/// Every challenge as (certificate, challenge), in each certificate's
/// order (a dump).
pub(super) async fn all_challenges(tx: &Transaction<'_>) -> TxResult<Vec<(u64, AcmeChallenge)>> {
    tx.query(
        "SELECT certificate, host, token, key_authorization FROM acme_challenges
         ORDER BY certificate, position",
        &[],
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            u(row.try_get(0)?),
            AcmeChallenge {
                host: row.try_get(1)?,
                token: row.try_get(2)?,
                key_authorization: row.try_get(3)?,
            },
        ))
    })
    .collect()
}

/// The last certificate id handed out.
pub(super) async fn counter(tx: &Transaction<'_>) -> TxResult<u64> {
    Ok(u(tx
        .query_one("SELECT value FROM certificate_counter WHERE id = 1", &[])
        .await?
        .try_get(0)?))
}

pub(super) async fn set_counter(tx: &Transaction<'_>, value: u64) -> TxResult<()> {
    tx.execute(
        "UPDATE certificate_counter SET value = $1 WHERE id = 1",
        &[&int(value)],
    )
    .await?;
    Ok(())
}
