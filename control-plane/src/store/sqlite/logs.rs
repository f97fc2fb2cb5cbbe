//! Live-log tails and lines on SQLite: the statements and decisions of
//! `log_rows`, bound and run in the caller's transaction (one per
//! [`MetaStore`](crate::store::MetaStore) call).

use std::collections::HashSet;

use edge_common::names::{AppName, TenantId};
use edge_common::sync::TailedApp;
use rusqlite::{Row, Transaction, params};

use super::{app_exists, backend, bump_revision};
use crate::store::cert_rows::{int, sqlite, uint};
use crate::store::dump::{LogLineRow, LogPrunedRow, LogTailRow};
use crate::store::log_rows::{self as rows, app_name, name};
use crate::store::{
    LogLineRecord, LogPage, LogStart, LogSweep, LogTail, NewLogLine, StoreError, StoreResult,
};

fn count(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<u64> {
    tx.query_row(&sqlite(statement), params, |row| row.get::<_, i64>(0))
        .map(uint)
        .map_err(backend)
}

pub(super) fn add_tail(tx: &Transaction<'_>, tail: &LogTail, max: u64) -> StoreResult<Option<u64>> {
    app_exists(tx, &tail.tenant, &tail.app)?;
    let now = int(tail.created_unix);
    let held = count(
        tx,
        rows::COUNT_TENANT_TAILS,
        params![tail.tenant.as_str(), now],
    )?;
    rows::check_tail_limit(&tail.tenant, held, max)?;
    if count(tx, rows::COUNT_TAIL, params![tail.id])? > 0 {
        return Err(StoreError::Exists(format!("log tail {}", tail.id)));
    }
    let tailed = count(
        tx,
        rows::COUNT_APP_TAILS,
        params![tail.tenant.as_str(), tail.app.as_str(), now],
    )? > 0;
    insert_tail(tx, tail)?;
    if tailed {
        return Ok(None);
    }
    bump_revision(tx).map(Some)
}

/// Bumps the revision if one of `apps` has no tail unexpired at `now`
/// left: the tailed set changed.
fn bump_if_untailed(
    tx: &Transaction<'_>,
    apps: &[(String, String)],
    now: u64,
) -> StoreResult<Option<u64>> {
    for (tenant, app) in apps {
        if count(tx, rows::COUNT_APP_TAILS, params![tenant, app, int(now)])? == 0 {
            return bump_revision(tx).map(Some);
        }
    }
    Ok(None)
}

fn deleted_apps(
    tx: &Transaction<'_>,
    statement: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = tx.prepare_cached(&sqlite(statement)).map_err(backend)?;
    let mut apps = stmt
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(backend)?
        .collect::<Result<Vec<(String, String)>, _>>()
        .map_err(backend)?;
    apps.sort();
    apps.dedup();
    Ok(apps)
}

fn insert_tail(tx: &Transaction<'_>, tail: &LogTail) -> StoreResult<()> {
    tx.execute(
        &sqlite(rows::INSERT_TAIL),
        params![
            tail.id,
            tail.tenant.as_str(),
            tail.app.as_str(),
            tail.filters,
            int(tail.expires_unix),
            int(tail.created_unix)
        ],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn refresh_tail(
    tx: &Transaction<'_>,
    id: &str,
    now: u64,
    expires: u64,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            &sqlite(rows::REFRESH_TAIL),
            params![id, int(expires), int(now)],
        )
        .map_err(backend)?;
    Ok(changed > 0)
}

pub(super) fn delete_tail(tx: &Transaction<'_>, id: &str, now: u64) -> StoreResult<Option<u64>> {
    let apps = deleted_apps(tx, rows::DELETE_TAIL, params![id])?;
    bump_if_untailed(tx, &apps, now)
}

pub(super) fn sweep(tx: &Transaction<'_>, now: u64, lines_before_ms: u64) -> StoreResult<LogSweep> {
    let (tails, apps) = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::SWEEP_TAILS))
            .map_err(backend)?;
        let deleted = stmt
            .query_map(params![int(now)], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<(String, String)>, _>>()
            .map_err(backend)?;
        let n = deleted.len() as u64;
        let mut apps = deleted;
        apps.sort();
        apps.dedup();
        (n, apps)
    };
    let lines = tx
        .execute(&sqlite(rows::SWEEP_LINES), params![int(lines_before_ms)])
        .map_err(backend)? as u64;
    tx.execute(&sqlite(rows::SWEEP_PRUNED), [])
        .map_err(backend)?;
    let revision = bump_if_untailed(tx, &apps, now)?;
    Ok(LogSweep {
        tails_deleted: tails,
        lines_deleted: lines,
        revision,
    })
}

pub(super) fn active(tx: &Transaction<'_>, now: u64) -> StoreResult<u64> {
    count(tx, rows::COUNT_ACTIVE_TAILS, params![int(now)])
}

pub(super) fn snapshot_tails(tx: &Transaction<'_>, now: u64) -> StoreResult<Vec<TailedApp>> {
    let mut stmt = tx
        .prepare_cached(&sqlite(rows::SNAPSHOT_TAILS))
        .map_err(backend)?;
    let pairs = stmt
        .query_map(params![int(now)], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    pairs
        .into_iter()
        .map(|(tenant, app)| {
            Ok(TailedApp {
                tenant: name(tenant)?,
                app: app_name(app)?,
            })
        })
        .collect()
}

pub(super) fn append(
    tx: &Transaction<'_>,
    node: &str,
    lines: &[NewLogLine],
    now: u64,
    max_per_tenant: u64,
) -> StoreResult<u64> {
    let tailed: HashSet<(String, String)> = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::TAILED_APPS))
            .map_err(backend)?;
        stmt.query_map(params![int(now)], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?
    };
    let kept = rows::kept(lines, &tailed);
    if kept.is_empty() {
        return Ok(0);
    }
    let last = tx
        .query_row(&sqlite(rows::TAKE_SEQ), params![kept.len() as i64], |row| {
            row.get::<_, i64>(0)
        })
        .map(uint)
        .map_err(backend)?;
    let first = last + 1 - kept.len() as u64;
    {
        let mut insert = tx
            .prepare_cached(&sqlite(rows::INSERT_LINE))
            .map_err(backend)?;
        for (i, line) in kept.iter().enumerate() {
            insert
                .execute(params![
                    int(first + i as u64),
                    line.tenant.as_str(),
                    line.app.as_str(),
                    node,
                    int(line.at_unix_ms),
                    line.kind,
                    line.json
                ])
                .map_err(backend)?;
        }
    }
    for tenant in rows::tenants_of(&kept) {
        let deleted = {
            let mut stmt = tx
                .prepare_cached(&sqlite(rows::PRUNE_TENANT))
                .map_err(backend)?;
            stmt.query_map(params![tenant.as_str(), int(max_per_tenant)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?
        };
        for (app, seq, n) in rows::pruned_per_app(deleted) {
            tx.execute(
                &sqlite(rows::MARK_PRUNED),
                params![tenant.as_str(), app, seq, n],
            )
            .map_err(backend)?;
        }
    }
    Ok(kept.len() as u64)
}

fn pruned(tx: &Transaction<'_>, tenant: &str, app: &str) -> StoreResult<(u64, u64)> {
    use rusqlite::OptionalExtension;
    tx.query_row(&sqlite(rows::PRUNED), params![tenant, app], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })
    .optional()
    .map_err(backend)
    .map(|found| found.map_or((0, 0), |(seq, n)| (uint(seq), uint(n))))
}

pub(super) fn start(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    since_ms: Option<u64>,
) -> StoreResult<LogStart> {
    let (t, a) = (tenant.as_str(), app.as_str());
    let first = match since_ms {
        Some(ms) => tx
            .query_row(&sqlite(rows::FIRST_SINCE), params![t, a, int(ms)], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .map_err(backend)?,
        None => None,
    };
    let after = match first {
        Some(seq) => uint(seq).saturating_sub(1),
        None => last_seq(tx)?,
    };
    rows::start(after, pruned(tx, t, a)?, |upto| {
        count(tx, rows::COUNT_UPTO, params![t, a, int(upto)])
    })
}

fn line_row(row: &Row<'_>) -> rusqlite::Result<(i64, String, String, String, i64, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

type LineColumns = (i64, String, String, String, i64, String, String);

fn into_record(c: LineColumns) -> StoreResult<LogLineRecord> {
    Ok(LogLineRecord {
        seq: uint(c.0),
        tenant: name(c.1)?,
        app: app_name(c.2)?,
        node: c.3,
        at_unix_ms: uint(c.4),
        kind: c.5,
        json: c.6,
    })
}

pub(super) fn lines(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    after: u64,
    since_ms: u64,
    limit: usize,
) -> StoreResult<LogPage> {
    let mut stmt = tx
        .prepare_cached(&sqlite(rows::SELECT_LINES))
        .map_err(backend)?;
    let found = stmt
        .query_map(
            params![
                tenant.as_str(),
                app.as_str(),
                int(after),
                int(since_ms),
                limit as i64
            ],
            line_row,
        )
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let (pruned_seq, pruned_lines) = pruned(tx, tenant.as_str(), app.as_str())?;
    Ok(LogPage {
        lines: found
            .into_iter()
            .map(into_record)
            .collect::<StoreResult<_>>()?,
        pruned_seq,
        pruned_lines,
    })
}

pub(super) fn last_seq(tx: &Transaction<'_>) -> StoreResult<u64> {
    count(tx, rows::LAST_SEQ, params![])
}

type LogsDump = (Vec<LogTailRow>, Vec<LogLineRow>, u64, Vec<LogPrunedRow>);

/// Every tail, line, prune mark and the counter, for a dump.
pub(super) fn dump(tx: &Transaction<'_>) -> StoreResult<LogsDump> {
    let tails = {
        let mut stmt = tx.prepare(rows::ALL_TAILS).map_err(backend)?;
        let found = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        found
            .into_iter()
            .map(|(id, tenant, app, filters, expires, created)| {
                Ok(LogTailRow {
                    id,
                    tenant: name(tenant)?,
                    app: app_name(app)?,
                    filters,
                    expires_unix: uint(expires),
                    created_unix: uint(created),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?
    };
    let lines = {
        let mut stmt = tx.prepare(rows::ALL_LINES).map_err(backend)?;
        let found = stmt
            .query_map([], line_row)
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        found
            .into_iter()
            .map(|c| into_record(c).map(LogLineRow::from))
            .collect::<StoreResult<Vec<_>>>()?
    };
    let pruned = {
        let mut stmt = tx.prepare(rows::ALL_PRUNED).map_err(backend)?;
        let found = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        found
            .into_iter()
            .map(|(tenant, app, seq, lines)| {
                Ok(LogPrunedRow {
                    tenant: name(tenant)?,
                    app: app_name(app)?,
                    seq: uint(seq),
                    lines: uint(lines),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?
    };
    Ok((tails, lines, last_seq(tx)?, pruned))
}

/// Writes a dump's tails, lines and counter (into an empty store).
pub(super) fn restore(
    tx: &Transaction<'_>,
    tails: &[LogTailRow],
    lines: &[LogLineRow],
    seq: u64,
    pruned: &[LogPrunedRow],
) -> StoreResult<()> {
    for p in pruned {
        tx.execute(
            &sqlite(rows::INSERT_PRUNED),
            params![p.tenant.as_str(), p.app.as_str(), int(p.seq), int(p.lines)],
        )
        .map_err(backend)?;
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
        )?;
    }
    for l in lines {
        tx.execute(
            &sqlite(rows::INSERT_LINE),
            params![
                int(l.seq),
                l.tenant.as_str(),
                l.app.as_str(),
                l.node,
                int(l.at_unix_ms),
                l.kind,
                l.json
            ],
        )
        .map_err(backend)?;
    }
    tx.execute(&sqlite(rows::SET_SEQ), params![int(seq)])
        .map_err(backend)?;
    Ok(())
}
