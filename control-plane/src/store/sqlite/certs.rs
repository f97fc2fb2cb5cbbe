//! Certificates, ACME challenges and accounts, and apps' HTTPS options on
//! SQLite: the statements and decisions of `cert_rows`, bound and run in
//! the caller's transaction (one per
//! [`MetaStore`](crate::store::MetaStore) call).

use edge_common::names::{AppName, TenantId};
use edge_common::sync::{AcmeChallenge, AppHttps, SnapshotCertificate};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{app_exists, backend, bump_revision};
use crate::store::cert_rows::{
    self as rows, CertColumns, CertValues, Held, LeaseState, MaterialColumns, SnapshotCertColumns,
    int, not_found, sqlite, uint,
};
use crate::store::{
    CertLease, CertLimits, CertMaterial, CertRecord, CertificateCounts, MAX_DUE_LISTED,
    NewCertificate, StoreResult, now_unix,
};

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
        lease_until: row.get(15)?,
        renew_requested: row.get(16)?,
        created_unix: row.get(17)?,
        updated_unix: row.get(18)?,
    })
}

/// The certificates a `cert_rows` query selects.
fn query(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<CertRecord>> {
    let mut stmt = tx.prepare_cached(&sqlite(statement)).map_err(backend)?;
    stmt.query_map(params, columns)
        .map_err(backend)?
        .map(|row| row.map_err(backend)?.into_record())
        .collect()
}

pub(super) fn load(tx: &Transaction<'_>, id: u64) -> StoreResult<CertRecord> {
    query(tx, &rows::select(rows::BY_ID), params![int(id)])?
        .pop()
        .ok_or_else(|| not_found(id))
}

pub(super) fn current_revision(tx: &Transaction<'_>) -> StoreResult<u64> {
    tx.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(uint)
    .map_err(backend)
}

/// Runs a `cert_rows` statement; the rows it changed.
fn execute(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<usize> {
    tx.execute(&sqlite(statement), params).map_err(backend)
}

/// Writes a whole certificate row (a new one, or one being restored).
pub(super) fn insert(tx: &Transaction<'_>, cert: &CertRecord) -> StoreResult<()> {
    let v = CertValues::of(cert)?;
    let m = &v.material;
    execute(
        tx,
        &rows::insert(),
        params![
            v.id,
            v.tenant,
            v.app,
            v.hosts,
            v.source,
            m.chain_pem,
            m.sealed_key,
            m.bundle_sha256,
            m.bundle_size,
            m.issuer,
            m.not_before_unix,
            m.not_after_unix,
            v.last_error,
            v.attempts,
            v.next_attempt_unix,
            v.lease_until,
            v.renew_requested,
            v.created_unix,
            v.updated_unix
        ],
    )?;
    Ok(())
}

/// Writes one challenge row at `position` among its certificate's.
pub(super) fn insert_challenge(
    tx: &Transaction<'_>,
    certificate: u64,
    position: usize,
    challenge: &AcmeChallenge,
) -> StoreResult<()> {
    execute(
        tx,
        rows::INSERT_CHALLENGE,
        params![
            int(certificate),
            int(position as u64),
            challenge.host,
            challenge.token,
            challenge.key_authorization
        ],
    )?;
    Ok(())
}

/// Deletes the certificate's challenges; how many there were.
fn clear_challenges(tx: &Transaction<'_>, id: u64) -> StoreResult<u64> {
    Ok(execute(tx, rows::CLEAR_CHALLENGES, params![int(id)])? as u64)
}

/// Deletes an app's certificates and their challenges (the app is being
/// deleted, which bumps the revision).
pub(super) fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<()> {
    for statement in [rows::DELETE_APP_CHALLENGES, rows::DELETE_APP_CERTIFICATES] {
        execute(tx, statement, params![tenant.as_str(), app.as_str()])?;
    }
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
    execute(
        tx,
        rows::SET_APP_HTTPS,
        params![
            tenant.as_str(),
            name.as_str(),
            https.redirect,
            https.hsts,
            int(revision)
        ],
    )?;
    Ok(revision)
}

pub(super) fn add(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    new: NewCertificate,
    limits: &CertLimits,
) -> StoreResult<(CertRecord, u64)> {
    app_exists(tx, tenant, app)?;
    let held = tx
        .query_row(
            &sqlite(rows::LIMIT_COUNTS),
            params![tenant.as_str(), app.as_str()],
            |row| {
                Ok(Held {
                    app: row.get(0)?,
                    tenant: row.get(1)?,
                    pending_acme: row.get(2)?,
                })
            },
        )
        .map_err(backend)?;
    rows::check_limits(limits, &held, tenant, app, &new)?;
    let id = tx
        .query_row(rows::NEXT_ID, [], |row| row.get::<_, i64>(0))
        .map_err(backend)?;
    let cert = rows::new_record(uint(id), tenant, app, new, now_unix());
    insert(tx, &cert)?;
    let revision = if rows::add_bumps(&cert) {
        bump_revision(tx)?
    } else {
        current_revision(tx)?
    };
    Ok((cert, revision))
}

pub(super) fn list(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Vec<CertRecord>> {
    app_exists(tx, tenant, app)?;
    query(
        tx,
        &rows::select(rows::BY_APP),
        params![tenant.as_str(), app.as_str()],
    )
}

pub(super) fn all(tx: &Transaction<'_>) -> StoreResult<Vec<CertRecord>> {
    query(tx, &rows::select(rows::EVERY), params![])
}

pub(super) fn by_bundle(tx: &Transaction<'_>, sha256: &str) -> StoreResult<Option<CertRecord>> {
    Ok(query(tx, &rows::by_bundle(), params![sha256])?.pop())
}

pub(super) fn due(tx: &Transaction<'_>, now: u64, limit: usize) -> StoreResult<Vec<CertRecord>> {
    let limit = limit.min(MAX_DUE_LISTED) as i64;
    query(tx, &rows::due(), params![int(now), limit])
}

pub(super) fn next_due(tx: &Transaction<'_>, now: u64) -> StoreResult<Option<u64>> {
    let free: Option<i64> = tx
        .query_row(&sqlite(rows::NEXT_DUE_FREE), params![int(now)], |row| {
            row.get(0)
        })
        .optional()
        .map_err(backend)?;
    let leased: Option<i64> = tx
        .query_row(&sqlite(rows::NEXT_DUE_LEASED), params![int(now)], |row| {
            row.get(0)
        })
        .map_err(backend)?;
    Ok(rows::next_due(free, leased))
}

pub(super) fn counts(tx: &Transaction<'_>, now: u64) -> StoreResult<CertificateCounts> {
    tx.query_row(&sqlite(&rows::counts()), params![int(now)], |row| {
        Ok(rows::certificate_counts(
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
        ))
    })
    .map_err(backend)
}

/// The certificate if it is one of the app's; `NotFound` otherwise.
fn of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> StoreResult<CertRecord> {
    app_exists(tx, tenant, app)?;
    query(
        tx,
        &rows::select(rows::OF_APP),
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
    execute(tx, rows::DELETE, params![int(id)])?;
    if rows::delete_bumps(&cert, challenges) {
        bump_revision(tx)
    } else {
        current_revision(tx)
    }
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    id: u64,
    now: u64,
    lease_until: u64,
) -> StoreResult<Option<CertLease>> {
    let token: Option<i64> = tx
        .query_row(
            &sqlite(&rows::claim()),
            params![int(now), int(id), int(lease_until)],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    Ok(token.map(|token| CertLease {
        id,
        token: uint(token),
        until_unix: lease_until,
    }))
}

/// The certificate's lease if `lease` still holds it; `NotFound` or
/// `LeaseLost` otherwise.
fn held(tx: &Transaction<'_>, lease: &CertLease) -> StoreResult<LeaseState> {
    let state = tx
        .query_row(&sqlite(rows::LEASE_STATE), params![int(lease.id)], |row| {
            Ok(LeaseState {
                token: row.get(0)?,
                lease_until: row.get(1)?,
                next_attempt_unix: row.get(2)?,
                renew_requested: row.get(3)?,
            })
        })
        .optional()
        .map_err(backend)?
        .ok_or_else(|| not_found(lease.id))?;
    state.check_held(lease)?;
    Ok(state)
}

pub(super) fn record_issued(
    tx: &Transaction<'_>,
    lease: &CertLease,
    material: &CertMaterial,
    next_attempt_unix: Option<u64>,
) -> StoreResult<u64> {
    let next = held(tx, lease)?.next_attempt_after(next_attempt_unix);
    let m = MaterialColumns::of(Some(material));
    execute(
        tx,
        rows::RECORD_ISSUED,
        params![
            int(lease.id),
            m.chain_pem,
            m.sealed_key,
            m.bundle_sha256,
            m.bundle_size,
            m.issuer,
            m.not_before_unix,
            m.not_after_unix,
            next.map(int),
            int(now_unix())
        ],
    )?;
    clear_challenges(tx, lease.id)?;
    bump_revision(tx)
}

pub(super) fn record_failure(
    tx: &Transaction<'_>,
    lease: &CertLease,
    error: &str,
    next_attempt_unix: u64,
) -> StoreResult<u64> {
    let next = held(tx, lease)?.next_attempt_after(Some(next_attempt_unix));
    execute(
        tx,
        rows::RECORD_FAILURE,
        params![int(lease.id), error, next.map(int), int(now_unix())],
    )?;
    if rows::failure_bumps(clear_challenges(tx, lease.id)?) {
        bump_revision(tx)
    } else {
        current_revision(tx)
    }
}

pub(super) fn schedule(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
    at: u64,
) -> StoreResult<CertRecord> {
    of_app(tx, tenant, app, id)?;
    execute(
        tx,
        rows::SCHEDULE,
        params![int(id), int(at), int(now_unix())],
    )?;
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
    Ok(execute(tx, rows::RESEAL, params![int(id), old, new])? == 1)
}

pub(super) fn account(tx: &Transaction<'_>, directory: &str) -> StoreResult<Option<Vec<u8>>> {
    tx.query_row(&sqlite(rows::ACCOUNT), params![directory], |row| row.get(0))
        .optional()
        .map_err(backend)
}

pub(super) fn put_account(
    tx: &Transaction<'_>,
    directory: &str,
    sealed: &[u8],
    replace: bool,
) -> StoreResult<Vec<u8>> {
    let statement = if replace {
        rows::PUT_ACCOUNT_REPLACE
    } else {
        rows::PUT_ACCOUNT_KEEP
    };
    execute(tx, statement, params![directory, sealed])?;
    account(tx, directory)?.ok_or_else(|| rows::account_vanished(directory))
}

pub(super) fn accounts(tx: &Transaction<'_>) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut stmt = tx.prepare(rows::ACCOUNTS).map_err(backend)?;
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)
}

fn challenge_columns(row: &Row<'_>) -> rusqlite::Result<AcmeChallenge> {
    Ok(AcmeChallenge {
        host: row.get(1)?,
        token: row.get(2)?,
        key_authorization: row.get(3)?,
    })
}

/// The certificates and challenges of a snapshot (see `cert_rows`).
pub(super) fn snapshot(
    tx: &Transaction<'_>,
) -> StoreResult<(Vec<SnapshotCertificate>, Vec<AcmeChallenge>)> {
    let owned = {
        let mut stmt = tx.prepare(rows::SNAPSHOT_HOSTS).map_err(backend)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<(String, String)>, _>>()
            .map_err(backend)?;
        rows::owned_by_tenant(rows)?
    };
    let certs = {
        let mut stmt = tx.prepare(rows::SNAPSHOT_CERTS).map_err(backend)?;
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
        let mut stmt = tx.prepare(rows::SNAPSHOT_CHALLENGES).map_err(backend)?;
        stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, challenge_columns(row)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    Ok((
        rows::snapshot_certificates(certs, &owned)?,
        rows::snapshot_challenges(challenges, &owned),
    ))
}

/// Every challenge as (certificate, challenge), in each certificate's
/// order (a dump).
pub(super) fn all_challenges(tx: &Transaction<'_>) -> StoreResult<Vec<(u64, AcmeChallenge)>> {
    let mut stmt = tx.prepare(rows::ALL_CHALLENGES).map_err(backend)?;
    stmt.query_map([], |row| {
        Ok((uint(row.get::<_, i64>(0)?), challenge_columns(row)?))
    })
    .map_err(backend)?
    .collect::<Result<_, _>>()
    .map_err(backend)
}

/// The last certificate id handed out.
pub(super) fn counter(tx: &Transaction<'_>) -> StoreResult<u64> {
    tx.query_row(rows::COUNTER, [], |row| row.get::<_, i64>(0))
        .map(uint)
        .map_err(backend)
}

pub(super) fn set_counter(tx: &Transaction<'_>, value: u64) -> StoreResult<()> {
    execute(tx, rows::SET_COUNTER, params![int(value)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::sqlite::SqliteMetaStore;

    /// What SQLite plans for `statement` (its placeholders unbound).
    fn plan(conn: &rusqlite::Connection, statement: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sqlite(statement)))
            .unwrap();
        let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        stmt.query_map(rusqlite::params_from_iter(nulls), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .join("; ")
    }

    /// The lookups a node or the ACME worker makes often go through an
    /// index, in the order asked for: never a scan of the table or a sort.
    #[test]
    fn lookups_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("meta.sqlite3")).unwrap();
        let conn = store.conn.lock().unwrap();
        for (statement, index) in [
            (rows::by_bundle(), "certificates_by_bundle"),
            (rows::due(), "certificates_by_next_attempt"),
            (
                rows::NEXT_DUE_FREE.to_string(),
                "certificates_by_next_attempt",
            ),
            (rows::NEXT_DUE_LEASED.to_string(), "certificates_by_lease"),
            (rows::LIMIT_COUNTS.to_string(), "certificates_by_app"),
            (rows::select(rows::BY_APP), "certificates_by_app"),
        ] {
            let plan = plan(&conn, &statement);
            assert!(plan.contains(index), "{statement}: {plan}");
            assert!(
                !plan.contains("SCAN") && !plan.contains("TEMP B-TREE"),
                "no scan, no sort: {statement}: {plan}"
            );
        }
    }
}
