//! Key-value stores on PostgreSQL: the statements and decisions of
//! `kv_rows`, run in the caller's transaction as the SQLite backend runs
//! them (`store/sqlite/kv.rs`). Every transaction that takes a seq starts
//! with `kv_rows::LOCK_SEQ` (see there), and a data write announces its
//! last seq on [`KV_CHANNEL`] at commit, for the long polls of every
//! replica.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use edge_common::kv::{KvChange, KvCursor, KvEntry, KvError, KvErrorCode, KvLink, KvValue};
use edge_common::names::{AppName, TenantId};
use tokio_postgres::Row;

use super::{TxError, TxResult, app_exists, bump_revision, outbound};
use crate::store::StoreError;
use crate::store::cert_rows::{int, uint};
use crate::store::kv_rows::{
    self as rows, KvChanges, KvDropRow, KvDump, KvEntryRow, KvHead, KvLinkRow, KvPage,
    KvPruneOutcome, KvStoreRecord, KvStoreRow, KvWrite, KvWriteOutcome, kv_err,
};

/// The channel committed key-value seqs are announced on.
pub const KV_CHANNEL: &str = "edge_kv";

impl From<KvError> for TxError {
    fn from(e: KvError) -> Self {
        Self::Store(e.into())
    }
}

fn parse<T: TryFrom<String, Error = String>>(s: String) -> Result<T, StoreError> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))
}

async fn one(
    tx: &Transaction<'_>,
    statement: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> TxResult<u64> {
    let v: i64 = tx.query_one(statement, p).await?.try_get(0)?;
    Ok(uint(v))
}

fn store_row(tenant: &TenantId, name: &str, row: &Row) -> TxResult<KvStoreRow> {
    Ok(KvStoreRow {
        id: row.try_get(0)?,
        tenant: tenant.clone(),
        name: name.to_string(),
        created_unix: uint(row.try_get(1)?),
        keys: uint(row.try_get(2)?),
        bytes: uint(row.try_get(3)?),
    })
}

async fn find(tx: &Transaction<'_>, tenant: &TenantId, name: &str) -> TxResult<Option<KvStoreRow>> {
    match tx
        .query_opt(rows::STORE_BY_NAME, &[&tenant.as_str(), &name])
        .await?
    {
        Some(row) => Ok(Some(store_row(tenant, name, &row)?)),
        None => Ok(None),
    }
}

async fn must_find(tx: &Transaction<'_>, tenant: &TenantId, name: &str) -> TxResult<KvStoreRow> {
    find(tx, tenant, name)
        .await?
        .ok_or_else(|| rows::store_not_found(name).into())
}

async fn apps_of(tx: &Transaction<'_>, id: &str) -> TxResult<Vec<AppName>> {
    let mut apps = Vec::new();
    for row in tx.query(rows::STORE_APPS, &[&id]).await? {
        apps.push(parse(row.try_get(0)?)?);
    }
    Ok(apps)
}

async fn record(tx: &Transaction<'_>, row: KvStoreRow) -> TxResult<KvStoreRecord> {
    let apps = apps_of(tx, &row.id).await?;
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

pub(super) async fn create_store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
    id: &str,
    now: u64,
) -> TxResult<KvStoreRecord> {
    let limits = outbound::limits(tx, tenant).await?.kv();
    let held = one(tx, rows::COUNT_STORES, &[&tenant.as_str()]).await?;
    rows::check_new_store(name, held, &limits)?;
    if find(tx, tenant, name).await?.is_some() {
        return Err(kv_err(
            KvErrorCode::StoreExists,
            format!("key-value store {name} already exists"),
        )
        .into());
    }
    tx.execute(
        rows::INSERT_STORE,
        &[&id, &tenant.as_str(), &name, &int(now)],
    )
    .await?;
    let row = must_find(tx, tenant, name).await?;
    record(tx, row).await
}

pub(super) async fn stores(
    tx: &Transaction<'_>,
    tenant: &TenantId,
) -> TxResult<Vec<KvStoreRecord>> {
    outbound::limits(tx, tenant).await?;
    let mut found = Vec::new();
    for row in tx.query(rows::TENANT_STORES, &[&tenant.as_str()]).await? {
        found.push(KvStoreRow {
            id: row.try_get(0)?,
            tenant: tenant.clone(),
            name: row.try_get(1)?,
            created_unix: uint(row.try_get(2)?),
            keys: uint(row.try_get(3)?),
            bytes: uint(row.try_get(4)?),
        });
    }
    let mut records = Vec::with_capacity(found.len());
    for row in found {
        records.push(record(tx, row).await?);
    }
    Ok(records)
}

pub(super) async fn store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
) -> TxResult<KvStoreRecord> {
    let row = must_find(tx, tenant, name).await?;
    record(tx, row).await
}

async fn lock_seq(tx: &Transaction<'_>) -> TxResult<()> {
    tx.query_one(rows::LOCK_SEQ, &[]).await?;
    Ok(())
}

/// Takes `n` seqs and announces the last at commit.
async fn take_seq(tx: &Transaction<'_>, n: u64) -> TxResult<u64> {
    let last = one(tx, rows::TAKE_SEQ, &[&int(n)]).await?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&KV_CHANNEL, &last.to_string()],
    )
    .await?;
    Ok(last)
}

pub(super) async fn drop_store(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
    now: u64,
) -> TxResult<u64> {
    lock_seq(tx).await?;
    // READ COMMITTED (writers wait on the seq lock instead of failing):
    // the store's row lock orders the drop after any link being made, so
    // the links read next are all there are (see
    // `kv_rows::STORE_BY_NAME_FOR_UPDATE`).
    let found = match tx
        .query_opt(rows::STORE_BY_NAME_FOR_UPDATE, &[&tenant.as_str(), &name])
        .await?
    {
        Some(row) => store_row(tenant, name, &row)?,
        None => return Err(rows::store_not_found(name).into()),
    };
    let apps = apps_of(tx, &found.id).await?;
    if !apps.is_empty() {
        let names: Vec<&str> = apps.iter().map(AppName::as_str).collect();
        return Err(kv_err(
            KvErrorCode::StoreLinked,
            format!(
                "key-value store {name} is linked to apps {}; unlink it first",
                names.join(", ")
            ),
        )
        .into());
    }
    let seq = take_seq(tx, 1).await?;
    tx.execute(rows::DELETE_STORE_ENTRIES, &[&found.id]).await?;
    tx.execute(rows::DELETE_STORE, &[&found.id]).await?;
    tx.execute(rows::INSERT_DROP, &[&found.id, &int(seq), &int(now)])
        .await?;
    Ok(seq)
}

pub(super) async fn link(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    store: &str,
    on: bool,
) -> TxResult<Option<u64>> {
    app_exists(tx, tenant, app).await?;
    let found = must_find(tx, tenant, store).await?;
    let statement = if on {
        rows::INSERT_LINK
    } else {
        rows::DELETE_LINK
    };
    let changed = tx
        .execute(statement, &[&tenant.as_str(), &app.as_str(), &found.id])
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    let revision = bump_revision(tx).await?;
    tx.execute(
        rows::TOUCH_APP,
        &[&tenant.as_str(), &app.as_str(), &int(revision)],
    )
    .await?;
    Ok(Some(revision))
}

pub(super) async fn links_of(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Vec<KvLink>> {
    let mut links = Vec::new();
    for row in tx
        .query(rows::APP_LINKS, &[&tenant.as_str(), &app.as_str()])
        .await?
    {
        links.push(KvLink {
            name: row.try_get(0)?,
            store: row.try_get(1)?,
        });
    }
    Ok(links)
}

pub(super) async fn app_links(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<Vec<KvLink>> {
    app_exists(tx, tenant, app).await?;
    links_of(tx, tenant, app).await
}

pub(super) async fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<()> {
    tx.execute(rows::DELETE_APP_LINKS, &[&tenant.as_str(), &app.as_str()])
        .await?;
    Ok(())
}

async fn value_of(tx: &Transaction<'_>, id: &str, key: &str) -> TxResult<Option<Vec<u8>>> {
    Ok(match tx.query_opt(rows::ENTRY, &[&id, &key]).await? {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

pub(super) async fn get(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    store: &str,
    key: &str,
) -> TxResult<Option<Vec<u8>>> {
    let found = must_find(tx, tenant, store).await?;
    value_of(tx, &found.id, key).await
}

pub(super) async fn keys(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    store: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> TxResult<Vec<String>> {
    let found = must_find(tx, tenant, store).await?;
    let after = after.unwrap_or("");
    let mut keys = Vec::new();
    for row in tx
        .query(rows::KEYS, &[&found.id, &after, &prefix, &(limit as i64)])
        .await?
    {
        keys.push(row.try_get(0)?);
    }
    Ok(rows::within_prefix(keys, prefix))
}

pub(super) async fn write(tx: &Transaction<'_>, w: &KvWrite) -> TxResult<KvWriteOutcome> {
    // What needs no stored state is refused before queuing on the
    // writers' lock.
    let limits = outbound::limits(tx, &w.tenant).await?.kv();
    rows::check_ops(&w.ops, &limits)?;
    lock_seq(tx).await?;
    let Some(found) = find(tx, &w.tenant, &w.store).await? else {
        return Err(match &w.app {
            Some(app) => rows::not_linked(app, &w.store),
            None => rows::store_not_found(&w.store),
        }
        .into());
    };
    if let Some(app) = &w.app {
        let linked = tx
            .query_opt(
                rows::LINKED,
                &[&w.tenant.as_str(), &app.as_str(), &found.id],
            )
            .await?;
        if linked.is_none() {
            return Err(rows::not_linked(app, &w.store).into());
        }
    }
    // Every key's current value in one round trip (absent keys: None).
    let keys = rows::keys_of(&w.ops);
    let read = tx.prepare_cached(rows::ENTRIES_OF).await?;
    let mut current: HashMap<String, Option<Vec<u8>>> =
        keys.iter().map(|k| (k.clone(), None)).collect();
    for row in tx.query(&read, &[&found.id, &keys]).await? {
        current.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let counts = rows::Counts {
        store_keys: found.keys,
        tenant_bytes: one(tx, rows::TENANT_BYTES, &[&w.tenant.as_str()]).await?,
    };
    let plan = rows::plan(&w.ops, current, &counts, &limits)?;
    let mut changes = Vec::with_capacity(plan.writes.len());
    if !plan.writes.is_empty() {
        let last = take_seq(tx, plan.writes.len() as u64).await?;
        let first = last + 1 - plan.writes.len() as u64;
        let put = tx.prepare_cached(rows::PUT_ENTRY).await?;
        for (i, (key, value)) in plan.writes.into_iter().enumerate() {
            let seq = first + i as u64;
            tx.execute(
                &put,
                &[&found.id, &key, &value, &int(seq), &int(w.now_unix)],
            )
            .await?;
            changes.push(KvChange {
                seq,
                store: found.id.clone(),
                key: Some(key),
                value: value.map(KvValue),
            });
        }
        tx.execute(
            rows::ADD_COUNTS,
            &[&found.id, &plan.keys_delta, &plan.bytes_delta],
        )
        .await?;
    }
    Ok(KvWriteOutcome {
        results: plan.results,
        changes,
    })
}

pub(super) async fn changes(tx: &Transaction<'_>, since: u64, limit: usize) -> TxResult<KvChanges> {
    let mut sizes = Vec::new();
    for row in tx
        .query(rows::ENTRY_CHANGE_SIZES, &[&int(since), &(limit as i64)])
        .await?
    {
        sizes.push((
            uint(row.try_get(0)?),
            row.try_get::<_, String>(1)?,
            rows::len_of(row.try_get(2)?),
        ));
    }
    let cut = rows::changes_cut(&sizes, limit);
    let mut entries = Vec::new();
    if let Some(last) = cut.last {
        for row in tx
            .query(rows::ENTRY_CHANGES, &[&int(since), &int(last)])
            .await?
        {
            entries.push(KvChange {
                seq: uint(row.try_get(0)?),
                store: row.try_get(1)?,
                key: Some(row.try_get(2)?),
                value: row.try_get::<_, Option<Vec<u8>>>(3)?.map(KvValue),
            });
        }
    }
    let mut drops = Vec::new();
    for row in tx
        .query(rows::DROP_CHANGES, &[&int(since), &(limit as i64)])
        .await?
    {
        drops.push(KvChange {
            seq: uint(row.try_get(0)?),
            store: row.try_get(1)?,
            key: None,
            value: None,
        });
    }
    Ok(rows::merge_changes(since, entries, drops, cut, limit))
}

pub(super) async fn head(tx: &Transaction<'_>) -> TxResult<KvHead> {
    let row = tx.query_one(rows::HEAD, &[]).await?;
    Ok(KvHead {
        seq: uint(row.try_get(0)?),
        pruned: uint(row.try_get(1)?),
    })
}

pub(super) async fn snapshot_page(
    tx: &Transaction<'_>,
    at: u64,
    after: Option<&KvCursor>,
    limit: usize,
) -> TxResult<KvPage> {
    let (store, key) = after.map_or(("", ""), |c| (c.store.as_str(), c.key.as_str()));
    let mut sizes = Vec::new();
    for row in tx
        .query(
            rows::SNAPSHOT_SIZES,
            &[&int(at), &store, &key, &(limit as i64)],
        )
        .await?
    {
        sizes.push((
            row.try_get::<_, String>(0)?,
            row.try_get::<_, String>(1)?,
            rows::len_of(row.try_get(2)?),
        ));
    }
    let Some((last, more)) = rows::page_cut(&sizes, limit) else {
        return Ok(KvPage {
            entries: Vec::new(),
            next: None,
        });
    };
    let mut entries = Vec::new();
    for row in tx
        .query(
            rows::SNAPSHOT_PAGE,
            &[&int(at), &store, &key, &last.store, &last.key],
        )
        .await?
    {
        entries.push(KvEntry {
            store: row.try_get(0)?,
            key: row.try_get(1)?,
            value: KvValue(row.try_get(2)?),
            seq: uint(row.try_get(3)?),
        });
    }
    Ok(KvPage {
        entries,
        next: more.then_some(last),
    })
}

async fn delete_returning(
    tx: &Transaction<'_>,
    statement: &str,
    before: u64,
) -> TxResult<Vec<u64>> {
    let mut seqs = Vec::new();
    for row in tx
        .query(statement, &[&int(before), &(rows::PRUNE_BATCH as i64)])
        .await?
    {
        seqs.push(uint(row.try_get(0)?));
    }
    Ok(seqs)
}

pub(super) async fn prune(tx: &Transaction<'_>, before: u64) -> TxResult<KvPruneOutcome> {
    lock_seq(tx).await?;
    let mark = head(tx).await?.pruned;
    let tombstones = delete_returning(tx, rows::DELETE_OLD_TOMBSTONES, before).await?;
    let drops = delete_returning(tx, rows::DELETE_OLD_DROPS, before).await?;
    let pruned = tombstones
        .iter()
        .chain(&drops)
        .copied()
        .fold(mark, u64::max);
    if pruned > mark {
        tx.execute(rows::SET_PRUNED, &[&int(pruned)]).await?;
    }
    Ok(KvPruneOutcome {
        tombstones: tombstones.len() as u64,
        drops: drops.len() as u64,
        pruned,
    })
}

pub(super) async fn dump(tx: &Transaction<'_>) -> TxResult<KvDump> {
    let mut stores = Vec::new();
    for row in tx.query(rows::ALL_STORES, &[]).await? {
        stores.push(KvStoreRow {
            id: row.try_get(0)?,
            tenant: parse(row.try_get(1)?)?,
            name: row.try_get(2)?,
            created_unix: uint(row.try_get(3)?),
            keys: uint(row.try_get(4)?),
            bytes: uint(row.try_get(5)?),
        });
    }
    let mut links = Vec::new();
    for row in tx.query(rows::ALL_LINKS, &[]).await? {
        links.push(KvLinkRow {
            tenant: parse(row.try_get(0)?)?,
            app: parse(row.try_get(1)?)?,
            store: row.try_get(2)?,
        });
    }
    let mut entries = Vec::new();
    for row in tx.query(rows::ALL_ENTRIES, &[]).await? {
        entries.push(KvEntryRow {
            store: row.try_get(0)?,
            key: row.try_get(1)?,
            value: row.try_get::<_, Option<Vec<u8>>>(2)?.map(KvValue),
            seq: uint(row.try_get(3)?),
            updated_unix: uint(row.try_get(4)?),
        });
    }
    let mut drops = Vec::new();
    for row in tx.query(rows::ALL_DROPS, &[]).await? {
        drops.push(KvDropRow {
            store: row.try_get(0)?,
            seq: uint(row.try_get(1)?),
            dropped_unix: uint(row.try_get(2)?),
        });
    }
    Ok(KvDump {
        stores,
        links,
        entries,
        drops,
        head: head(tx).await?,
    })
}

pub(super) async fn restore(tx: &Transaction<'_>, dump: &KvDump) -> TxResult<()> {
    let counts = rows::recount(&dump.entries);
    for s in &dump.stores {
        let (keys, bytes) = counts.get(s.id.as_str()).copied().unwrap_or((0, 0));
        tx.execute(
            rows::RESTORE_STORE,
            &[
                &s.id,
                &s.tenant.as_str(),
                &s.name,
                &int(s.created_unix),
                &int(keys),
                &int(bytes),
            ],
        )
        .await?;
    }
    for l in &dump.links {
        tx.execute(
            rows::INSERT_LINK,
            &[&l.tenant.as_str(), &l.app.as_str(), &l.store],
        )
        .await?;
    }
    for e in &dump.entries {
        let value = e.value.as_ref().map(|v| v.0.as_slice());
        tx.execute(
            rows::PUT_ENTRY,
            &[&e.store, &e.key, &value, &int(e.seq), &int(e.updated_unix)],
        )
        .await?;
    }
    for d in &dump.drops {
        tx.execute(
            rows::INSERT_DROP,
            &[&d.store, &int(d.seq), &int(d.dropped_unix)],
        )
        .await?;
    }
    tx.execute(rows::SET_SEQ, &[&int(dump.head.seq)]).await?;
    tx.execute(rows::SET_PRUNED, &[&int(dump.head.pruned)])
        .await?;
    Ok(())
}
