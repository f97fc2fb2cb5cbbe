//! Certificates, ACME challenges and accounts, and apps' HTTPS options on
//! PostgreSQL: the statements and decisions of `cert_rows`, bound and run
//! in the caller's transaction, as the SQLite backend runs them
//! (`store/sqlite/certs.rs`).

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::{AcmeChallenge, AppHttps, SnapshotCertificate};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{TxResult, app_exists, bump_revision, current_revision};
use crate::store::cert_rows::{
    self as rows, CertColumns, CertValues, Held, LeaseState, MaterialColumns, SnapshotCertColumns,
    int, not_found, uint,
};
use crate::store::{
    CertLease, CertLimits, CertMaterial, CertRecord, CertificateCounts, MAX_DUE_LISTED,
    NewCertificate, now_unix,
};

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
        lease_until: row.try_get(15)?,
        renew_requested: row.try_get(16)?,
        created_unix: row.try_get(17)?,
        updated_unix: row.try_get(18)?,
    })
}

/// The certificates a `cert_rows` query selects.
async fn query(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> TxResult<Vec<CertRecord>> {
    let rows = tx.query(statement, params).await?;
    rows.iter()
        .map(|row| Ok(columns(row)?.into_record()?))
        .collect()
}

pub(super) async fn load(tx: &Transaction<'_>, id: u64) -> TxResult<CertRecord> {
    Ok(query(tx, &rows::select(rows::BY_ID), &[&int(id)])
        .await?
        .pop()
        .ok_or_else(|| not_found(id))?)
}

/// Writes a whole certificate row (a new one, or one being restored).
pub(super) async fn insert(tx: &Transaction<'_>, cert: &CertRecord) -> TxResult<()> {
    let v = CertValues::of(cert)?;
    let m = &v.material;
    tx.execute(
        rows::insert().as_str(),
        &[
            &v.id,
            &v.tenant,
            &v.app,
            &v.hosts,
            &v.source,
            &m.chain_pem,
            &m.sealed_key,
            &m.bundle_sha256,
            &m.bundle_size,
            &m.issuer,
            &m.not_before_unix,
            &m.not_after_unix,
            &v.last_error,
            &v.attempts,
            &v.next_attempt_unix,
            &v.lease_until,
            &v.renew_requested,
            &v.created_unix,
            &v.updated_unix,
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
        rows::INSERT_CHALLENGE,
        &[
            &int(certificate),
            &int(position as u64),
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
    Ok(tx.execute(rows::CLEAR_CHALLENGES, &[&int(id)]).await?)
}

/// Deletes an app's certificates and their challenges (the app is being
/// deleted, which bumps the revision).
pub(super) async fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<()> {
    for statement in [rows::DELETE_APP_CHALLENGES, rows::DELETE_APP_CERTIFICATES] {
        tx.execute(statement, &[&tenant.as_str(), &app.as_str()])
            .await?;
    }
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
        rows::SET_APP_HTTPS,
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

/// Counting and inserting in one `SERIALIZABLE` transaction: of two
/// replicas adding the last certificate allowed at once, PostgreSQL aborts
/// one (its count read what the other wrote), and its retry counts again.
pub(super) async fn add(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    new: &NewCertificate,
    limits: &CertLimits,
) -> TxResult<(CertRecord, u64)> {
    app_exists(tx, tenant, app).await?;
    let row = tx
        .query_one(rows::LIMIT_COUNTS, &[&tenant.as_str(), &app.as_str()])
        .await?;
    let held = Held {
        app: row.try_get(0)?,
        tenant: row.try_get(1)?,
        pending_acme: row.try_get(2)?,
    };
    rows::check_limits(limits, &held, tenant, app, new)?;
    let id: i64 = tx.query_one(rows::NEXT_ID, &[]).await?.try_get(0)?;
    let cert = rows::new_record(uint(id), tenant, app, new.clone(), now_unix());
    insert(tx, &cert).await?;
    let revision = if rows::add_bumps(&cert) {
        bump_revision(tx).await?
    } else {
        current_revision(tx).await?
    };
    Ok((cert, revision))
}

pub(super) async fn list(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Vec<CertRecord>> {
    app_exists(tx, tenant, app).await?;
    query(
        tx,
        &rows::select(rows::BY_APP),
        &[&tenant.as_str(), &app.as_str()],
    )
    .await
}

pub(super) async fn all(tx: &Transaction<'_>) -> TxResult<Vec<CertRecord>> {
    query(tx, &rows::select(rows::EVERY), &[]).await
}

pub(super) async fn by_bundle(tx: &Transaction<'_>, sha256: &str) -> TxResult<Option<CertRecord>> {
    Ok(query(tx, &rows::by_bundle(), &[&sha256]).await?.pop())
}

pub(super) async fn due(tx: &Transaction<'_>, now: u64, limit: usize) -> TxResult<Vec<CertRecord>> {
    let limit = limit.min(MAX_DUE_LISTED) as i64;
    query(tx, &rows::due(), &[&int(now), &limit]).await
}

pub(super) async fn next_due(tx: &Transaction<'_>, now: u64) -> TxResult<Option<u64>> {
    let free: Option<i64> = match tx.query_opt(rows::NEXT_DUE_FREE, &[&int(now)]).await? {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    let leased: Option<i64> = tx
        .query_one(rows::NEXT_DUE_LEASED, &[&int(now)])
        .await?
        .try_get(0)?;
    Ok(rows::next_due(free, leased))
}

pub(super) async fn counts(tx: &Transaction<'_>, now: u64) -> TxResult<CertificateCounts> {
    let row = tx.query_one(rows::counts().as_str(), &[&int(now)]).await?;
    Ok(rows::certificate_counts(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}

/// The certificate if it is one of the app's; `NotFound` otherwise.
async fn of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
) -> TxResult<CertRecord> {
    app_exists(tx, tenant, app).await?;
    Ok(query(
        tx,
        &rows::select(rows::OF_APP),
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
    tx.execute(rows::DELETE, &[&int(id)]).await?;
    if rows::delete_bumps(&cert, challenges) {
        bump_revision(tx).await
    } else {
        current_revision(tx).await
    }
}

/// Of replicas claiming at once, the first update wins; `SERIALIZABLE`
/// aborts the others (the row changed under them) and their retries find
/// it leased.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    id: u64,
    now: u64,
    lease_until: u64,
) -> TxResult<Option<CertLease>> {
    let row = tx
        .query_opt(
            rows::claim().as_str(),
            &[&int(now), &int(id), &int(lease_until)],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(CertLease {
            id,
            token: uint(row.try_get(0)?),
            until_unix: lease_until,
        }),
        None => None,
    })
}

/// The certificate's lease if `lease` still holds it; `NotFound` or
/// `LeaseLost` otherwise.
async fn held(tx: &Transaction<'_>, lease: &CertLease) -> TxResult<LeaseState> {
    let row = tx
        .query_opt(rows::LEASE_STATE, &[&int(lease.id)])
        .await?
        .ok_or_else(|| not_found(lease.id))?;
    let state = LeaseState {
        token: row.try_get(0)?,
        lease_until: row.try_get(1)?,
        next_attempt_unix: row.try_get(2)?,
        renew_requested: row.try_get(3)?,
    };
    state.check_held(lease)?;
    Ok(state)
}

pub(super) async fn record_issued(
    tx: &Transaction<'_>,
    lease: &CertLease,
    material: &CertMaterial,
    next_attempt_unix: Option<u64>,
) -> TxResult<u64> {
    let next = held(tx, lease).await?.next_attempt_after(next_attempt_unix);
    let m = MaterialColumns::of(Some(material));
    tx.execute(
        rows::RECORD_ISSUED,
        &[
            &int(lease.id),
            &m.chain_pem,
            &m.sealed_key,
            &m.bundle_sha256,
            &m.bundle_size,
            &m.issuer,
            &m.not_before_unix,
            &m.not_after_unix,
            &next.map(int),
            &int(now_unix()),
        ],
    )
    .await?;
    clear_challenges(tx, lease.id).await?;
    bump_revision(tx).await
}

pub(super) async fn record_failure(
    tx: &Transaction<'_>,
    lease: &CertLease,
    error: &str,
    next_attempt_unix: u64,
) -> TxResult<u64> {
    let next = held(tx, lease)
        .await?
        .next_attempt_after(Some(next_attempt_unix));
    tx.execute(
        rows::RECORD_FAILURE,
        &[&int(lease.id), &error, &next.map(int), &int(now_unix())],
    )
    .await?;
    if rows::failure_bumps(clear_challenges(tx, lease.id).await?) {
        bump_revision(tx).await
    } else {
        current_revision(tx).await
    }
}

pub(super) async fn schedule(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    id: u64,
    at: u64,
) -> TxResult<CertRecord> {
    of_app(tx, tenant, app, id).await?;
    tx.execute(rows::SCHEDULE, &[&int(id), &int(at), &int(now_unix())])
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
    Ok(tx.execute(rows::RESEAL, &[&int(id), &old, &new]).await? == 1)
}

pub(super) async fn account(tx: &Transaction<'_>, directory: &str) -> TxResult<Option<Vec<u8>>> {
    match tx.query_opt(rows::ACCOUNT, &[&directory]).await? {
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
    let statement = if replace {
        rows::PUT_ACCOUNT_REPLACE
    } else {
        rows::PUT_ACCOUNT_KEEP
    };
    tx.execute(statement, &[&directory, &sealed]).await?;
    Ok(account(tx, directory)
        .await?
        .ok_or_else(|| rows::account_vanished(directory))?)
}

pub(super) async fn accounts(tx: &Transaction<'_>) -> TxResult<Vec<(String, Vec<u8>)>> {
    tx.query(rows::ACCOUNTS, &[])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

fn challenge_columns(row: &Row) -> TxResult<AcmeChallenge> {
    Ok(AcmeChallenge {
        host: row.try_get(1)?,
        token: row.try_get(2)?,
        key_authorization: row.try_get(3)?,
    })
}

/// The certificates and challenges of a snapshot (see `cert_rows`).
pub(super) async fn snapshot(
    tx: &Transaction<'_>,
) -> TxResult<(Vec<SnapshotCertificate>, Vec<AcmeChallenge>)> {
    let owned: HashMap<_, _> = rows::owned_by_tenant(
        tx.query(rows::SNAPSHOT_HOSTS, &[])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<TxResult<Vec<(String, String)>>>()?,
    )?;
    let certs = tx
        .query(rows::SNAPSHOT_CERTS, &[])
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
        .query(rows::SNAPSHOT_CHALLENGES, &[])
        .await?
        .iter()
        .map(|row| Ok((row.try_get::<_, String>(0)?, challenge_columns(row)?)))
        .collect::<TxResult<Vec<_>>>()?;
    Ok((
        rows::snapshot_certificates(certs, &owned)?,
        rows::snapshot_challenges(challenges, &owned),
    ))
}

/// Every challenge as (certificate, challenge), in each certificate's
/// order (a dump).
pub(super) async fn all_challenges(tx: &Transaction<'_>) -> TxResult<Vec<(u64, AcmeChallenge)>> {
    tx.query(rows::ALL_CHALLENGES, &[])
        .await?
        .iter()
        .map(|row| Ok((uint(row.try_get(0)?), challenge_columns(row)?)))
        .collect()
}

/// The last certificate id handed out.
pub(super) async fn counter(tx: &Transaction<'_>) -> TxResult<u64> {
    Ok(uint(tx.query_one(rows::COUNTER, &[]).await?.try_get(0)?))
}

pub(super) async fn set_counter(tx: &Transaction<'_>, value: u64) -> TxResult<()> {
    tx.execute(rows::SET_COUNTER, &[&int(value)]).await?;
    Ok(())
}
