//! Live-log tails and lines on PostgreSQL: the statements and decisions of
//! `log_rows`, bound and run in the caller's transaction, as the SQLite
//! backend runs them (`store/sqlite/logs.rs`).

use std::collections::HashSet;

use deadpool_postgres::Transaction;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::TailedApp;
use tokio_postgres::Row;

use super::{TxResult, app_exists, bump_revision};
use crate::store::cert_rows::{int, uint};
use crate::store::dump::{LogLineRow, LogPrunedRow, LogTailRow};
use crate::store::log_rows::{self as rows, app_name, name};
use crate::store::{LogLineRecord, LogPage, LogStart, LogSweep, LogTail, NewLogLine, StoreError};

pub(super) async fn add_tail(
    tx: &Transaction<'_>,
    tail: &LogTail,
    max: u64,
) -> TxResult<Option<u64>> {
    app_exists(tx, &tail.tenant, &tail.app).await?;
    let held: i64 = tx
        .query_one(
            rows::COUNT_TENANT_TAILS,
            &[&tail.tenant.as_str(), &int(tail.created_unix)],
        )
        .await?
        .try_get(0)?;
    rows::check_tail_limit(&tail.tenant, uint(held), max)?;
    let taken: i64 = tx
        .query_one(rows::COUNT_TAIL, &[&tail.id])
        .await?
        .try_get(0)?;
    if taken > 0 {
        return Err(StoreError::Exists(format!("log tail {}", tail.id)).into());
    }
    let tailed = app_tails(
        tx,
        tail.tenant.as_str(),
        tail.app.as_str(),
        tail.created_unix,
    )
    .await?
        > 0;
    insert_tail(tx, tail).await?;
    if tailed {
        return Ok(None);
    }
    Ok(Some(bump_revision(tx).await?))
}

async fn app_tails(tx: &Transaction<'_>, tenant: &str, app: &str, now: u64) -> TxResult<u64> {
    let n: i64 = tx
        .query_one(rows::COUNT_APP_TAILS, &[&tenant, &app, &int(now)])
        .await?
        .try_get(0)?;
    Ok(uint(n))
}

/// Bumps the revision if one of `apps` has no tail unexpired at `now`
/// left: the tailed set changed.
async fn bump_if_untailed(
    tx: &Transaction<'_>,
    apps: &[(String, String)],
    now: u64,
) -> TxResult<Option<u64>> {
    for (tenant, app) in apps {
        if app_tails(tx, tenant, app, now).await? == 0 {
            return Ok(Some(bump_revision(tx).await?));
        }
    }
    Ok(None)
}

fn apps_of(rows: &[Row]) -> TxResult<Vec<(String, String)>> {
    let mut apps = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<TxResult<Vec<(String, String)>>>()?;
    apps.sort();
    apps.dedup();
    Ok(apps)
}

async fn insert_tail(tx: &Transaction<'_>, tail: &LogTail) -> TxResult<()> {
    tx.execute(
        rows::INSERT_TAIL,
        &[
            &tail.id,
            &tail.tenant.as_str(),
            &tail.app.as_str(),
            &tail.filters,
            &int(tail.expires_unix),
            &int(tail.created_unix),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn refresh_tail(
    tx: &Transaction<'_>,
    id: &str,
    now: u64,
    expires: u64,
) -> TxResult<bool> {
    let changed = tx
        .execute(rows::REFRESH_TAIL, &[&id, &int(expires), &int(now)])
        .await?;
    Ok(changed > 0)
}

pub(super) async fn delete_tail(tx: &Transaction<'_>, id: &str, now: u64) -> TxResult<Option<u64>> {
    let deleted = tx.query(rows::DELETE_TAIL, &[&id]).await?;
    bump_if_untailed(tx, &apps_of(&deleted)?, now).await
}

pub(super) async fn sweep(
    tx: &Transaction<'_>,
    now: u64,
    lines_before_ms: u64,
) -> TxResult<LogSweep> {
    let deleted = tx.query(rows::SWEEP_TAILS, &[&int(now)]).await?;
    let lines = tx
        .execute(rows::SWEEP_LINES, &[&int(lines_before_ms)])
        .await?;
    tx.execute(rows::SWEEP_PRUNED, &[]).await?;
    let revision = bump_if_untailed(tx, &apps_of(&deleted)?, now).await?;
    Ok(LogSweep {
        tails_deleted: deleted.len() as u64,
        lines_deleted: lines,
        revision,
    })
}

pub(super) async fn active(tx: &Transaction<'_>, now: u64) -> TxResult<u64> {
    let n: i64 = tx
        .query_one(rows::COUNT_ACTIVE_TAILS, &[&int(now)])
        .await?
        .try_get(0)?;
    Ok(uint(n))
}

pub(super) async fn snapshot_tails(tx: &Transaction<'_>, now: u64) -> TxResult<Vec<TailedApp>> {
    let found = tx.query(rows::SNAPSHOT_TAILS, &[&int(now)]).await?;
    found
        .iter()
        .map(|row| {
            Ok(TailedApp {
                tenant: name(row.try_get(0)?)?,
                app: app_name(row.try_get(1)?)?,
            })
        })
        .collect()
}

pub(super) async fn append(
    tx: &Transaction<'_>,
    node: &str,
    lines: &[NewLogLine],
    now: u64,
    max_per_tenant: u64,
) -> TxResult<u64> {
    let tailed: HashSet<(String, String)> = tx
        .query(rows::TAILED_APPS, &[&int(now)])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<TxResult<_>>()?;
    let kept = rows::kept(lines, &tailed);
    if kept.is_empty() {
        return Ok(0);
    }
    let last: i64 = tx
        .query_one(rows::TAKE_SEQ, &[&(kept.len() as i64)])
        .await?
        .try_get(0)?;
    let first = uint(last) + 1 - kept.len() as u64;
    // One statement for the batch: a round trip per line would hold the
    // counter's row lock (and every other appender) that much longer.
    let seqs: Vec<i64> = (0..kept.len() as u64).map(|i| int(first + i)).collect();
    let tenants: Vec<&str> = kept.iter().map(|l| l.tenant.as_str()).collect();
    let apps: Vec<&str> = kept.iter().map(|l| l.app.as_str()).collect();
    let ats: Vec<i64> = kept.iter().map(|l| int(l.at_unix_ms)).collect();
    let kinds: Vec<&str> = kept.iter().map(|l| l.kind.as_str()).collect();
    let jsons: Vec<&str> = kept.iter().map(|l| l.json.as_str()).collect();
    tx.execute(
        rows::INSERT_LINES_UNNEST,
        &[&seqs, &tenants, &apps, &node, &ats, &kinds, &jsons],
    )
    .await?;
    for tenant in rows::tenants_of(&kept) {
        let deleted = tx
            .query(
                rows::PRUNE_TENANT,
                &[&tenant.as_str(), &int(max_per_tenant)],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<TxResult<Vec<(String, i64)>>>()?;
        for (app, seq, n) in rows::pruned_per_app(deleted) {
            tx.execute(rows::MARK_PRUNED, &[&tenant.as_str(), &app, &seq, &n])
                .await?;
        }
    }
    Ok(kept.len() as u64)
}

async fn pruned(tx: &Transaction<'_>, tenant: &str, app: &str) -> TxResult<(u64, u64)> {
    Ok(match tx.query_opt(rows::PRUNED, &[&tenant, &app]).await? {
        Some(row) => (
            uint(row.try_get::<_, i64>(0)?),
            uint(row.try_get::<_, i64>(1)?),
        ),
        None => (0, 0),
    })
}

pub(super) async fn start(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    since_ms: Option<u64>,
) -> TxResult<LogStart> {
    let (t, a) = (tenant.as_str(), app.as_str());
    let first: Option<i64> = match since_ms {
        Some(ms) => tx
            .query_one(rows::FIRST_SINCE, &[&t, &a, &int(ms)])
            .await?
            .try_get(0)?,
        None => None,
    };
    let after = match first {
        Some(seq) => uint(seq).saturating_sub(1),
        None => last_seq(tx).await?,
    };
    let pruned = pruned(tx, t, a).await?;
    let after = after.max(pruned.0);
    let upto: i64 = tx
        .query_one(rows::COUNT_UPTO, &[&t, &a, &int(after)])
        .await?
        .try_get(0)?;
    Ok(rows::start(after, pruned, |_| Ok(uint(upto)))?)
}

fn line_record(row: &Row) -> TxResult<LogLineRecord> {
    Ok(LogLineRecord {
        seq: uint(row.try_get(0)?),
        tenant: name(row.try_get(1)?)?,
        app: app_name(row.try_get(2)?)?,
        node: row.try_get(3)?,
        at_unix_ms: uint(row.try_get(4)?),
        kind: row.try_get(5)?,
        json: row.try_get(6)?,
    })
}

pub(super) async fn lines(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    after: u64,
    since_ms: u64,
    limit: usize,
) -> TxResult<LogPage> {
    let lines = tx
        .query(
            rows::SELECT_LINES,
            &[
                &tenant.as_str(),
                &app.as_str(),
                &int(after),
                &int(since_ms),
                &(limit as i64),
            ],
        )
        .await?
        .iter()
        .map(line_record)
        .collect::<TxResult<Vec<_>>>()?;
    let (pruned_seq, pruned_lines) = pruned(tx, tenant.as_str(), app.as_str()).await?;
    Ok(LogPage {
        lines,
        pruned_seq,
        pruned_lines,
    })
}

pub(super) async fn last_seq(tx: &Transaction<'_>) -> TxResult<u64> {
    let v: i64 = tx.query_one(rows::LAST_SEQ, &[]).await?.try_get(0)?;
    Ok(uint(v))
}

type LogsDump = (Vec<LogTailRow>, Vec<LogLineRow>, u64, Vec<LogPrunedRow>);

/// Every tail, line, prune mark and the counter, for a dump.
pub(super) async fn dump(tx: &Transaction<'_>) -> TxResult<LogsDump> {
    let tails = tx
        .query(rows::ALL_TAILS, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(LogTailRow {
                id: row.try_get(0)?,
                tenant: name(row.try_get(1)?)?,
                app: app_name(row.try_get(2)?)?,
                filters: row.try_get(3)?,
                expires_unix: uint(row.try_get(4)?),
                created_unix: uint(row.try_get(5)?),
            })
        })
        .collect::<TxResult<Vec<_>>>()?;
    let lines = tx
        .query(rows::ALL_LINES, &[])
        .await?
        .iter()
        .map(|row| line_record(row).map(LogLineRow::from))
        .collect::<TxResult<Vec<_>>>()?;
    let pruned = tx
        .query(rows::ALL_PRUNED, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(LogPrunedRow {
                tenant: name(row.try_get(0)?)?,
                app: app_name(row.try_get(1)?)?,
                seq: uint(row.try_get(2)?),
                lines: uint(row.try_get(3)?),
            })
        })
        .collect::<TxResult<Vec<_>>>()?;
    Ok((tails, lines, last_seq(tx).await?, pruned))
}

/// Writes a dump's tails, lines and counter (into an empty store).
pub(super) async fn restore(
    tx: &Transaction<'_>,
    tails: &[LogTailRow],
    lines: &[LogLineRow],
    seq: u64,
    pruned: &[LogPrunedRow],
) -> TxResult<()> {
    for p in pruned {
        tx.execute(
            rows::INSERT_PRUNED,
            &[
                &p.tenant.as_str(),
                &p.app.as_str(),
                &int(p.seq),
                &int(p.lines),
            ],
        )
        .await?;
    }
    for t in tails {
        insert_tail(
            tx,
            &LogTail {
                id: t.id.clone(),
                tenant: t.tenant.clone(),
                app: t.app.clone(),
                filters: t.filters.clone(),
                expires_unix: t.expires_unix,
                created_unix: t.created_unix,
            },
        )
        .await?;
    }
    for l in lines {
        tx.execute(
            rows::INSERT_LINE,
            &[
                &int(l.seq),
                &l.tenant.as_str(),
                &l.app.as_str(),
                &l.node,
                &int(l.at_unix_ms),
                &l.kind,
                &l.json,
            ],
        )
        .await?;
    }
    tx.execute(rows::SET_SEQ, &[&int(seq)]).await?;
    Ok(())
}
