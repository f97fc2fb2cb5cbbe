//! Certificates, ACME challenges and accounts, and apps' HTTPS options on
//! SQLite: each function runs in the caller's transaction (one per
//! [`MetaStore`](crate::store::MetaStore) call).

use edge_common::names::{AppName, TenantId};
use edge_common::sync::{AcmeChallenge, AppHttps, SnapshotCertificate};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{app_exists, backend, bump_revision};
use crate::store::cert_rows::{
    self, CERT_COLUMNS, CertColumns, MaterialColumns, SNAPSHOT_CERT_COLUMNS, SnapshotCertColumns,
};
use crate::store::{CertMaterial, CertRecord, NewCertificate, StoreError, StoreResult, now_unix};

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound(format!("certificate {id}"))
}

/// A number as SQLite keeps it (signed 64 bits; larger is no real time).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn columns(row: &Row<'_>) -> rusqlite::Result<CertColumns> {
    Ok(CertColumns {
        id: row.get(0)?,
        tenant: row.get(1)?,
        app: row.get(2)?,
        hosts: row.get(3)?,
        source: row.get(4)?,
        chain_pem: row.get(5)?,
        sealed_key: row.get(6)?,
        bundle_sha256: row.get(7)?,
        bundle_size: row.get(8)?,
        issuer: row.get(9)?,
        not_before_unix: row.get(10)?,
        not_after_unix: row.get(11)?,
        last_error: row.get(12)?,
        attempts: row.get(13)?,
        next_attempt_unix: row.get(14)?,
        created_unix: row.get(15)?,
        updated_unix: row.get(16)?,
    })
}

/// Certificates selected by `condition` (a `WHERE` clause over `params`),
/// by id.
fn select(
    tx: &Transaction<'_>,
    condition: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<CertRecord>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE {condition} ORDER BY id"
        ))
        .map_err(backend)?;
    stmt.query_map(params, columns)
        .map_err(backend)?
        .map(|row| row.map_err(backend)?.into_record())
        .collect()
}

pub(super) fn load(tx: &Transaction<'_>, id: u64) -> StoreResult<CertRecord> {
    select(tx, "id = ?1", params![int(id)])?
        .pop()
        .ok_or_else(|| not_found(id))
}

pub(super) fn current_revision(tx: &Transaction<'_>) -> StoreResult<u64> {
    tx.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|v| v as u64)
    .map_err(backend)
}

/// Writes a whole certificate row (a new one, or one being restored).
pub(super) fn insert(tx: &Transaction<'_>, cert: &CertRecord) -> StoreResult<()> {
    let m = MaterialColumns::of(cert.material.as_ref());
    tx.execute(
        &format!(
            "INSERT INTO certificates ({CERT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            int(cert.id),
            cert.tenant.as_str(),
            cert.app.as_str(),
            cert_rows::hosts_to_json(&cert.hosts)?,
            cert.source.as_str(),
            m.chain_pem,
            m.sealed_key,
            m.bundle_sha256,
            m.bundle_size,
            m.issuer,
            m.not_before_unix,
            m.not_after_unix,
            cert.last_error,
            i64::from(cert.attempts),
            cert.next_attempt_unix.map(int),
            int(cert.created_unix),
            int(cert.updated_unix)
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// Writes one challenge row at `position` among its certificate's.
pub(super) fn insert_challenge(
    tx: &Transaction<'_>,
    certificate: u64,
    position: usize,
    challenge: &AcmeChallenge,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO acme_challenges (certificate, position, host, token, key_authorization)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            int(certificate),
            position as i64,
            challenge.host,
            challenge.token,
            challenge.key_authorization
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// Deletes the certificate's challenges; how many there were.
fn clear_challenges(tx: &Transaction<'_>, id: u64) -> StoreResult<usize> {
    tx.execute(
        "DELETE FROM acme_challenges WHERE certificate = ?1",
        params![int(id)],
    )
    .map_err(backend)
}

/// Deletes an app's certificates and their challenges (the app is being
/// deleted, which bumps the revision).
pub(super) fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM acme_challenges WHERE certificate IN
            (SELECT id FROM certificates WHERE tenant = ?1 AND app = ?2)",
        params![tenant.as_str(), app.as_str()],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM certificates WHERE tenant = ?1 AND app = ?2",
        params![tenant.as_str(), app.as_str()],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn set_app_https(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &AppName,
    https: &AppHttps,
) -> StoreResult<u64> {
    app_exists(tx, tenant, name)?;
    let revision = bump_revision(tx)?;
    tx.execute(
        "UPDATE apps SET https_redirect = ?3, hsts = ?4, updated_revision = ?5
         WHERE tenant = ?1 AND name = ?2",
        params![
            tenant.as_str(),
            name.as_str(),
            https.redirect,
            https.hsts,
            int(revision)
        ],
    )
    .map_err(backend)?;
    Ok(revision)
}

pub(super) fn add(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    new: NewCertificate,
) -> StoreResult<(CertRecord, u64)> {
    app_exists(tx, tenant, app)?;
    let id = tx
        .query_row(
            "UPDATE certificate_counter SET value = value + 1 WHERE id = 1 RETURNING value",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(backend)? as u64;
    let now = now_unix();
    let cert = CertRecord {
        id,
        tenant: tenant.clone(),
        app: app.clone(),
        hosts: new.hosts,
        source: new.source,
        material: new.material,
        last_error: None,
        attempts: 0,
        next_attempt_unix: new.next_attempt_unix,
        created_unix: now,
        updated_unix: now,
    };
    insert(tx, &cert)?;
    // Without material nodes have nothing new to serve.
    let revision = match cert.material {
        Some(_) => bump_revision(tx)?,
        None => current_revision(tx)?,
    };
    Ok((cert, revision))
}

pub(super) fn list(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Vec<CertRecord>> {
    app_exists(tx, tenant, app)?;
    select(
        tx,
        "tenant = ?1 AND app = ?2",
        params![tenant.as_str(), app.as_str()],
    )
}

pub(super) fn all(tx: &Transaction<'_>) -> StoreResult<Vec<CertRecord>> {
    select(tx, "1 = 1", params![])
}

/// The certificate if it is one of the app's; `NotFound` otherwise.
fn of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> StoreResult<CertRecord> {
    app_exists(tx, tenant, app)?;
    select(
        tx,
        "id = ?1 AND tenant = ?2 AND app = ?3",
        params![int(id), tenant.as_str(), app.as_str()],
    )?
    .pop()
    .ok_or_else(|| not_found(id))
}

pub(super) fn delete(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> StoreResult<u64> {
    let cert = of_app(tx, tenant, app, id)?;
    let challenges = clear_challenges(tx, id)?;
    tx.execute("DELETE FROM certificates WHERE id = ?1", params![int(id)])
        .map_err(backend)?;
    // A certificate nodes neither served nor answered for changes nothing
    // they see.
    if cert.material.is_some() || challenges > 0 {
        bump_revision(tx)
    } else {
        current_revision(tx)
    }
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    id: u64,
    expected: Option<u64>,
    lease_until: u64,
) -> StoreResult<bool> {
    // `IS`: NULL-safe equality, so `expected: None` matches NULL.
    let updated = tx
        .execute(
            "UPDATE certificates SET next_attempt_unix = ?2
             WHERE id = ?1 AND next_attempt_unix IS ?3",
            params![int(id), int(lease_until), expected.map(int)],
        )
        .map_err(backend)?;
    Ok(updated == 1)
}

pub(super) fn record_issued(
    tx: &Transaction<'_>,
    id: u64,
    material: &CertMaterial,
    next_attempt_unix: Option<u64>,
) -> StoreResult<u64> {
    let m = MaterialColumns::of(Some(material));
    let updated = tx
        .execute(
            "UPDATE certificates SET chain_pem = ?2, sealed_key = ?3, bundle_sha256 = ?4,
                bundle_size = ?5, issuer = ?6, not_before_unix = ?7, not_after_unix = ?8,
                last_error = NULL, attempts = 0, next_attempt_unix = ?9, updated_unix = ?10
             WHERE id = ?1",
            params![
                int(id),
                m.chain_pem,
                m.sealed_key,
                m.bundle_sha256,
                m.bundle_size,
                m.issuer,
                m.not_before_unix,
                m.not_after_unix,
                next_attempt_unix.map(int),
                int(now_unix())
            ],
        )
        .map_err(backend)?;
    if updated == 0 {
        return Err(not_found(id));
    }
    clear_challenges(tx, id)?;
    bump_revision(tx)
}

pub(super) fn record_failure(
    tx: &Transaction<'_>,
    id: u64,
    error: &str,
    next_attempt_unix: u64,
) -> StoreResult<()> {
    let updated = tx
        .execute(
            "UPDATE certificates SET last_error = ?2, attempts = attempts + 1,
                next_attempt_unix = ?3, updated_unix = ?4
             WHERE id = ?1",
            params![int(id), error, int(next_attempt_unix), int(now_unix())],
        )
        .map_err(backend)?;
    if updated == 0 {
        return Err(not_found(id));
    }
    if clear_challenges(tx, id)? > 0 {
        bump_revision(tx)?;
    }
    Ok(())
}

pub(super) fn schedule(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
    at: u64,
) -> StoreResult<CertRecord> {
    of_app(tx, tenant, app, id)?;
    tx.execute(
        "UPDATE certificates SET next_attempt_unix = ?2, updated_unix = ?3 WHERE id = ?1",
        params![int(id), int(at), int(now_unix())],
    )
    .map_err(backend)?;
    load(tx, id)
}

pub(super) fn set_challenges(
    tx: &Transaction<'_>,
    id: u64,
    challenges: &[AcmeChallenge],
) -> StoreResult<u64> {
    load(tx, id)?;
    clear_challenges(tx, id)?;
    for (position, challenge) in challenges.iter().enumerate() {
        insert_challenge(tx, id, position, challenge)?;
    }
    bump_revision(tx)
}

pub(super) fn reseal(tx: &Transaction<'_>, id: u64, old: &[u8], new: &[u8]) -> StoreResult<bool> {
    let updated = tx
        .execute(
            "UPDATE certificates SET sealed_key = ?3 WHERE id = ?1 AND sealed_key = ?2",
            params![int(id), old, new],
        )
        .map_err(backend)?;
    Ok(updated == 1)
}

pub(super) fn account(tx: &Transaction<'_>, directory: &str) -> StoreResult<Option<Vec<u8>>> {
    tx.query_row(
        "SELECT sealed FROM acme_accounts WHERE directory = ?1",
        params![directory],
        |row| row.get(0),
    )
    .optional()
    .map_err(backend)
}

pub(super) fn put_account(
    tx: &Transaction<'_>,
    directory: &str,
    sealed: &[u8],
    replace: bool,
) -> StoreResult<Vec<u8>> {
    let sql = if replace {
        "INSERT INTO acme_accounts (directory, sealed) VALUES (?1, ?2)
         ON CONFLICT (directory) DO UPDATE SET sealed = excluded.sealed"
    } else {
        "INSERT INTO acme_accounts (directory, sealed) VALUES (?1, ?2)
         ON CONFLICT (directory) DO NOTHING"
    };
    tx.execute(sql, params![directory, sealed])
        .map_err(backend)?;
    account(tx, directory)?
        .ok_or_else(|| StoreError::Backend(format!("the ACME account of {directory} vanished")))
}

pub(super) fn accounts(tx: &Transaction<'_>) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut stmt = tx
        .prepare("SELECT directory, sealed FROM acme_accounts ORDER BY directory")
        .map_err(backend)?;
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)
}

/// The certificates and challenges of a snapshot (see `cert_rows`).
pub(super) fn snapshot(
    tx: &Transaction<'_>,
) -> StoreResult<(Vec<SnapshotCertificate>, Vec<AcmeChallenge>)> {
    let owned = {
        let mut stmt = tx
            .prepare("SELECT tenant, host FROM hosts")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<(String, String)>, _>>()
            .map_err(backend)?;
        cert_rows::owned_by_tenant(rows)?
    };
    let certs = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {SNAPSHOT_CERT_COLUMNS} FROM certificates
                 WHERE chain_pem IS NOT NULL ORDER BY id"
            ))
            .map_err(backend)?;
        stmt.query_map([], |row| {
            Ok(SnapshotCertColumns {
                id: row.get(0)?,
                tenant: row.get(1)?,
                app: row.get(2)?,
                hosts: row.get(3)?,
                bundle_sha256: row.get(4)?,
                bundle_size: row.get(5)?,
                not_after_unix: row.get(6)?,
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    let challenges = {
        let mut stmt = tx
            .prepare(
                "SELECT c.tenant, a.host, a.token, a.key_authorization
                 FROM acme_challenges a JOIN certificates c ON c.id = a.certificate
                 ORDER BY a.certificate, a.token, a.position",
            )
            .map_err(backend)?;
        stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                AcmeChallenge {
                    host: row.get(1)?,
                    token: row.get(2)?,
                    key_authorization: row.get(3)?,
                },
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    Ok((
        cert_rows::snapshot_certificates(certs, &owned)?,
        cert_rows::snapshot_challenges(challenges, &owned),
    ))
}

/// Every challenge as (certificate, challenge), in each certificate's
/// order (a dump).
pub(super) fn all_challenges(tx: &Transaction<'_>) -> StoreResult<Vec<(u64, AcmeChallenge)>> {
    let mut stmt = tx
        .prepare(
            "SELECT certificate, host, token, key_authorization FROM acme_challenges
             ORDER BY certificate, position",
        )
        .map_err(backend)?;
    stmt.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)? as u64,
            AcmeChallenge {
                host: row.get(1)?,
                token: row.get(2)?,
                key_authorization: row.get(3)?,
            },
        ))
    })
    .map_err(backend)?
    .collect::<Result<_, _>>()
    .map_err(backend)
}

/// The last certificate id handed out.
pub(super) fn counter(tx: &Transaction<'_>) -> StoreResult<u64> {
    tx.query_row(
        "SELECT value FROM certificate_counter WHERE id = 1",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|v| v as u64)
    .map_err(backend)
}

pub(super) fn set_counter(tx: &Transaction<'_>, value: u64) -> StoreResult<()> {
    tx.execute(
        "UPDATE certificate_counter SET value = ?1 WHERE id = 1",
        params![int(value)],
    )
    .map_err(backend)?;
    Ok(())
}
