//! Key-value stores on SQLite: the statements and decisions of `kv_rows`,
//! bound and run in the caller's transaction (IMMEDIATE: writers are
//! ordered, so seq order is commit order and a compare-and-swap reads what
//! the writer before it committed).

use std::collections::HashMap;

use edge_common::kv::{KvChange, KvCursor, KvEntry, KvErrorCode, KvLink, KvValue};
use edge_common::names::{AppName, TenantId};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{app_exists, backend, bump_revision, outbound};
use crate::store::cert_rows::{int, sqlite, uint};
use crate::store::kv_rows::{
    self as rows, KvChanges, KvDropRow, KvDump, KvEntryRow, KvHead, KvLinkRow, KvPage,
    KvPruneOutcome, KvStoreRecord, KvStoreRow, KvWrite, KvWriteOutcome, kv_err,
};
use crate::store::{StoreError, StoreResult};

fn parse<T: TryFrom<String, Error = String>>(s: String) -> StoreResult<T> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))
}

fn count(tx: &Transaction<'_>, statement: &str, p: &[&dyn rusqlite::ToSql]) -> StoreResult<u64> {
    tx.query_row(&sqlite(statement), p, |row| row.get::<_, i64>(0))
        .map(uint)
        .map_err(backend)
}

fn tenant_known(tx: &Transaction<'_>, tenant: &TenantId) -> StoreResult<()> {
    outbound::limits(tx, tenant).map(|_| ())
}

/// (id, created, keys, bytes) of the tenant's store `name`.
fn find(tx: &Transaction<'_>, tenant: &TenantId, name: &str) -> StoreResult<Option<KvStoreRow>> {
    tx.query_row(
        &sqlite(rows::STORE_BY_NAME),
        params![tenant.as_str(), name],
        |row| {
            Ok(KvStoreRow {
                id: row.get(0)?,
                tenant: tenant.clone(),
                name: name.to_string(),
                created_unix: uint(row.get(1)?),
                keys: uint(row.get(2)?),
                bytes: uint(row.get(3)?),
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn must_find(tx: &Transaction<'_>, tenant: &TenantId, name: &str) -> StoreResult<KvStoreRow> {
    find(tx, tenant, name)?.ok_or_else(|| rows::store_not_found(name))
}

fn apps_of(tx: &Transaction<'_>, id: &str) -> StoreResult<Vec<AppName>> {
    let mut stmt = tx
        .prepare_cached(&sqlite(rows::STORE_APPS))
        .map_err(backend)?;
    let names = stmt
        .query_map(params![id], |row| row.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    names.into_iter().map(parse).collect()
}

fn record(tx: &Transaction<'_>, row: KvStoreRow) -> StoreResult<KvStoreRecord> {
    let apps = apps_of(tx, &row.id)?;
    Ok(KvStoreRecord {
        id: row.id,
        tenant: row.tenant,
        name: row.name,
        created_unix: row.created_unix,
        keys: row.keys,
        bytes: row.bytes,
        apps,
    })
}

pub(super) fn create_store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
    id: &str,
    now: u64,
) -> StoreResult<KvStoreRecord> {
    let limits = outbound::limits(tx, tenant)?.kv();
    let held = count(tx, rows::COUNT_STORES, params![tenant.as_str()])?;
    rows::check_new_store(name, held, &limits)?;
    if find(tx, tenant, name)?.is_some() {
        return Err(kv_err(
            KvErrorCode::StoreExists,
            format!("key-value store {name} already exists"),
        ));
    }
    tx.execute(
        &sqlite(rows::INSERT_STORE),
        params![id, tenant.as_str(), name, int(now)],
    )
    .map_err(backend)?;
    record(tx, must_find(tx, tenant, name)?)
}

pub(super) fn stores(tx: &Transaction<'_>, tenant: &TenantId) -> StoreResult<Vec<KvStoreRecord>> {
    tenant_known(tx, tenant)?;
    let found = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::TENANT_STORES))
            .map_err(backend)?;
        stmt.query_map(params![tenant.as_str()], |row| {
            Ok(KvStoreRow {
                id: row.get(0)?,
                tenant: tenant.clone(),
                name: row.get(1)?,
                created_unix: uint(row.get(2)?),
                keys: uint(row.get(3)?),
                bytes: uint(row.get(4)?),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    found.into_iter().map(|row| record(tx, row)).collect()
}

pub(super) fn store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
) -> StoreResult<KvStoreRecord> {
    record(tx, must_find(tx, tenant, name)?)
}

fn take_seq(tx: &Transaction<'_>, n: u64) -> StoreResult<u64> {
    count(tx, rows::TAKE_SEQ, params![int(n)])
}

pub(super) fn drop_store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
    now: u64,
) -> StoreResult<u64> {
    let found = must_find(tx, tenant, name)?;
    let apps = apps_of(tx, &found.id)?;
    if !apps.is_empty() {
        let names: Vec<&str> = apps.iter().map(AppName::as_str).collect();
        return Err(kv_err(
            KvErrorCode::StoreLinked,
            format!(
                "key-value store {name} is linked to apps {}; unlink it first",
                names.join(", ")
            ),
        ));
    }
    let seq = take_seq(tx, 1)?;
    tx.execute(&sqlite(rows::DELETE_STORE_ENTRIES), params![found.id])
        .map_err(backend)?;
    tx.execute(&sqlite(rows::DELETE_STORE), params![found.id])
        .map_err(backend)?;
    tx.execute(
        &sqlite(rows::INSERT_DROP),
        params![found.id, int(seq), int(now)],
    )
    .map_err(backend)?;
    Ok(seq)
}

pub(super) fn link(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    store: &str,
    on: bool,
) -> StoreResult<Option<u64>> {
    app_exists(tx, tenant, app)?;
    let found = must_find(tx, tenant, store)?;
    let statement = if on {
        rows::INSERT_LINK
    } else {
        rows::DELETE_LINK
    };
    let changed = tx
        .execute(
            &sqlite(statement),
            params![tenant.as_str(), app.as_str(), found.id],
        )
        .map_err(backend)?;
    if changed == 0 {
        return Ok(None);
    }
    let revision = bump_revision(tx)?;
    tx.execute(
        &sqlite(rows::TOUCH_APP),
        params![tenant.as_str(), app.as_str(), int(revision)],
    )
    .map_err(backend)?;
    Ok(Some(revision))
}

/// The app's links, by store name (the app is not checked: the snapshot
/// asks for apps it just read).
pub(super) fn links_of(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Vec<KvLink>> {
    let mut stmt = tx
        .prepare_cached(&sqlite(rows::APP_LINKS))
        .map_err(backend)?;
    stmt.query_map(params![tenant.as_str(), app.as_str()], |row| {
        Ok(KvLink {
            name: row.get(0)?,
            store: row.get(1)?,
        })
    })
    .map_err(backend)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(backend)
}

pub(super) fn app_links(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<Vec<KvLink>> {
    app_exists(tx, tenant, app)?;
    links_of(tx, tenant, app)
}

pub(super) fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<()> {
    tx.execute(
        &sqlite(rows::DELETE_APP_LINKS),
        params![tenant.as_str(), app.as_str()],
    )
    .map_err(backend)?;
    Ok(())
}

fn value_of(tx: &Transaction<'_>, id: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
    tx.query_row(&sqlite(rows::ENTRY), params![id, key], |row| {
        row.get::<_, Option<Vec<u8>>>(0)
    })
    .optional()
    .map_err(backend)
    .map(Option::flatten)
}

pub(super) fn get(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    store: &str,
    key: &str,
) -> StoreResult<Option<Vec<u8>>> {
    let found = must_find(tx, tenant, store)?;
    value_of(tx, &found.id, key)
}

pub(super) fn keys(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    store: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let found = must_find(tx, tenant, store)?;
    let mut stmt = tx.prepare_cached(&sqlite(rows::KEYS)).map_err(backend)?;
    let keys = stmt
        .query_map(
            params![found.id, after.unwrap_or(""), prefix, limit as i64],
            |row| row.get::<_, String>(0),
        )
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(rows::within_prefix(keys, prefix))
}

pub(super) fn write(tx: &Transaction<'_>, w: &KvWrite) -> StoreResult<KvWriteOutcome> {
    let limits = outbound::limits(tx, &w.tenant)?.kv();
    let Some(found) = find(tx, &w.tenant, &w.store)? else {
        return Err(match &w.app {
            Some(app) => rows::not_linked(app, &w.store),
            None => rows::store_not_found(&w.store),
        });
    };
    if let Some(app) = &w.app {
        let linked = tx
            .query_row(
                &sqlite(rows::LINKED),
                params![w.tenant.as_str(), app.as_str(), found.id],
                |_| Ok(()),
            )
            .optional()
            .map_err(backend)?;
        if linked.is_none() {
            return Err(rows::not_linked(app, &w.store));
        }
    }
    rows::check_ops(&w.ops, &limits)?;
    let mut current = HashMap::new();
    for key in rows::keys_of(&w.ops) {
        let value = value_of(tx, &found.id, &key)?;
        current.insert(key, value);
    }
    let counts = rows::Counts {
        store_keys: found.keys,
        tenant_bytes: count(tx, rows::TENANT_BYTES, params![w.tenant.as_str()])?,
    };
    let plan = rows::plan(&w.ops, current, &counts, &limits)?;
    let mut changes = Vec::with_capacity(plan.writes.len());
    if !plan.writes.is_empty() {
        let last = take_seq(tx, plan.writes.len() as u64)?;
        let first = last + 1 - plan.writes.len() as u64;
        let mut put = tx
            .prepare_cached(&sqlite(rows::PUT_ENTRY))
            .map_err(backend)?;
        for (i, (key, value)) in plan.writes.into_iter().enumerate() {
            let seq = first + i as u64;
            put.execute(params![found.id, key, value, int(seq), int(w.now_unix)])
                .map_err(backend)?;
            changes.push(KvChange {
                seq,
                store: found.id.clone(),
                key: Some(key),
                value: value.map(KvValue),
            });
        }
        tx.execute(
            &sqlite(rows::ADD_COUNTS),
            params![found.id, plan.keys_delta, plan.bytes_delta],
        )
        .map_err(backend)?;
    }
    Ok(KvWriteOutcome {
        results: plan.results,
        changes,
    })
}

pub(super) fn changes(tx: &Transaction<'_>, since: u64, limit: usize) -> StoreResult<KvChanges> {
    let sizes = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::ENTRY_CHANGE_SIZES))
            .map_err(backend)?;
        stmt.query_map(params![int(since), limit as i64], |row| {
            Ok((
                uint(row.get(0)?),
                row.get::<_, String>(1)?,
                rows::len_of(row.get(2)?),
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    let cut = rows::changes_cut(&sizes, limit);
    let entries = match cut.last {
        None => Vec::new(),
        Some(last) => {
            let mut stmt = tx
                .prepare_cached(&sqlite(rows::ENTRY_CHANGES))
                .map_err(backend)?;
            stmt.query_map(params![int(since), int(last)], |row| {
                Ok(KvChange {
                    seq: uint(row.get(0)?),
                    store: row.get(1)?,
                    key: Some(row.get(2)?),
                    value: row.get::<_, Option<Vec<u8>>>(3)?.map(KvValue),
                })
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?
        }
    };
    let drops = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::DROP_CHANGES))
            .map_err(backend)?;
        stmt.query_map(params![int(since), limit as i64], |row| {
            Ok(KvChange {
                seq: uint(row.get(0)?),
                store: row.get(1)?,
                key: None,
                value: None,
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    Ok(rows::merge_changes(since, entries, drops, cut, limit))
}

pub(super) fn head(tx: &Transaction<'_>) -> StoreResult<KvHead> {
    tx.query_row(&sqlite(rows::HEAD), [], |row| {
        Ok(KvHead {
            seq: uint(row.get(0)?),
            pruned: uint(row.get(1)?),
        })
    })
    .map_err(backend)
}

pub(super) fn snapshot_page(
    tx: &Transaction<'_>,
    at: u64,
    after: Option<&KvCursor>,
    limit: usize,
) -> StoreResult<KvPage> {
    let (store, key) = after.map_or(("", ""), |c| (c.store.as_str(), c.key.as_str()));
    let sizes = {
        let mut stmt = tx
            .prepare_cached(&sqlite(rows::SNAPSHOT_SIZES))
            .map_err(backend)?;
        stmt.query_map(params![int(at), store, key, limit as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                rows::len_of(row.get(2)?),
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    let Some((last, more)) = rows::page_cut(&sizes, limit) else {
        return Ok(KvPage {
            entries: Vec::new(),
            next: None,
        });
    };
    let mut stmt = tx
        .prepare_cached(&sqlite(rows::SNAPSHOT_PAGE))
        .map_err(backend)?;
    let entries = stmt
        .query_map(params![int(at), store, key, last.store, last.key], |row| {
            Ok(KvEntry {
                store: row.get(0)?,
                key: row.get(1)?,
                value: KvValue(row.get(2)?),
                seq: uint(row.get(3)?),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(KvPage {
        entries,
        next: more.then_some(last),
    })
}

fn delete_returning(tx: &Transaction<'_>, statement: &str, before: u64) -> StoreResult<Vec<u64>> {
    let mut stmt = tx.prepare_cached(&sqlite(statement)).map_err(backend)?;
    stmt.query_map(params![int(before), rows::PRUNE_BATCH as i64], |row| {
        row.get::<_, i64>(0).map(uint)
    })
    .map_err(backend)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(backend)
}

pub(super) fn prune(tx: &Transaction<'_>, before: u64) -> StoreResult<KvPruneOutcome> {
    let mark = head(tx)?.pruned;
    let tombstones = delete_returning(tx, rows::DELETE_OLD_TOMBSTONES, before)?;
    let drops = delete_returning(tx, rows::DELETE_OLD_DROPS, before)?;
    let pruned = tombstones
        .iter()
        .chain(&drops)
        .copied()
        .fold(mark, u64::max);
    if pruned > mark {
        tx.execute(&sqlite(rows::SET_PRUNED), params![int(pruned)])
            .map_err(backend)?;
    }
    Ok(KvPruneOutcome {
        tombstones: tombstones.len() as u64,
        drops: drops.len() as u64,
        pruned,
    })
}

pub(super) fn dump(tx: &Transaction<'_>) -> StoreResult<KvDump> {
    let stores = {
        let mut stmt = tx.prepare(rows::ALL_STORES).map_err(backend)?;
        let found = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        found
            .into_iter()
            .map(|(id, tenant, name, created, keys, bytes)| {
                Ok(KvStoreRow {
                    id,
                    tenant: parse(tenant)?,
                    name,
                    created_unix: uint(created),
                    keys: uint(keys),
                    bytes: uint(bytes),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?
    };
    let links = {
        let mut stmt = tx.prepare(rows::ALL_LINKS).map_err(backend)?;
        let found = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        found
            .into_iter()
            .map(|(tenant, app, store)| {
                Ok(KvLinkRow {
                    tenant: parse(tenant)?,
                    app: parse(app)?,
                    store,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?
    };
    let entries = {
        let mut stmt = tx.prepare(rows::ALL_ENTRIES).map_err(backend)?;
        stmt.query_map([], |row| {
            Ok(KvEntryRow {
                store: row.get(0)?,
                key: row.get(1)?,
                value: row.get::<_, Option<Vec<u8>>>(2)?.map(KvValue),
                seq: uint(row.get(3)?),
                updated_unix: uint(row.get(4)?),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    let drops = {
        let mut stmt = tx.prepare(rows::ALL_DROPS).map_err(backend)?;
        stmt.query_map([], |row| {
            Ok(KvDropRow {
                store: row.get(0)?,
                seq: uint(row.get(1)?),
                dropped_unix: uint(row.get(2)?),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
    };
    Ok(KvDump {
        stores,
        links,
        entries,
        drops,
        head: head(tx)?,
    })
}

pub(super) fn restore(tx: &Transaction<'_>, dump: &KvDump) -> StoreResult<()> {
    let counts = rows::recount(&dump.entries);
    for s in &dump.stores {
        let (keys, bytes) = counts.get(s.id.as_str()).copied().unwrap_or((0, 0));
        tx.execute(
            &sqlite(rows::RESTORE_STORE),
            params![
                s.id,
                s.tenant.as_str(),
                s.name,
                int(s.created_unix),
                int(keys),
                int(bytes)
            ],
        )
        .map_err(backend)?;
    }
    for l in &dump.links {
        tx.execute(
            &sqlite(rows::INSERT_LINK),
            params![l.tenant.as_str(), l.app.as_str(), l.store],
        )
        .map_err(backend)?;
    }
    for e in &dump.entries {
        tx.execute(
            &sqlite(rows::PUT_ENTRY),
            params![
                e.store,
                e.key,
                e.value.as_ref().map(|v| v.0.as_slice()),
                int(e.seq),
                int(e.updated_unix)
            ],
        )
        .map_err(backend)?;
    }
    for d in &dump.drops {
        tx.execute(
            &sqlite(rows::INSERT_DROP),
            params![d.store, int(d.seq), int(d.dropped_unix)],
        )
        .map_err(backend)?;
    }
    tx.execute(&sqlite(rows::SET_SEQ), params![int(dump.head.seq)])
        .map_err(backend)?;
    tx.execute(&sqlite(rows::SET_PRUNED), params![int(dump.head.pruned)])
        .map_err(backend)?;
    Ok(())
}
