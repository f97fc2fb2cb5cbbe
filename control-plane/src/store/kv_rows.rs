//! What the key-value stores (issue 16) mean to both SQL backends: every
//! statement, written once in PostgreSQL's `$n` style
//! ([`sqlite`](super::cert_rows::sqlite) rewrites them), the records the
//! store answers with, and the decisions: which ops a write may make, what
//! they leave (the planner, run on the values read in the writing
//! transaction), how a page of changes or of a snapshot is bounded. The
//! backends keep only binding, fetching and their transactions.

use std::collections::HashMap;

use edge_common::kv::{
    self, KvChange, KvCursor, KvEntry, KvError, KvErrorCode, KvLimits, KvOp, KvOpResult, KvValue,
    MAX_BATCH_VALUE_BYTES, MAX_OPS_PER_WRITE,
};
use edge_common::names::{AppName, TenantId};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};

// ---------------------------------------------------------------------------
// Records

/// A store as the store reads it (the API's `KvStore` plus its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStoreRecord {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    pub created_unix: u64,
    pub keys: u64,
    pub bytes: u64,
    /// Apps that link it, by name.
    pub apps: Vec<AppName>,
}

impl KvStoreRecord {
    pub fn api(&self) -> edge_common::kv::KvStore {
        edge_common::kv::KvStore {
            name: self.name.clone(),
            created_unix: i64::try_from(self.created_unix).unwrap_or(i64::MAX),
            keys: self.keys,
            bytes: self.bytes,
            apps: self.apps.clone(),
        }
    }
}

/// One write: the ops of one request on one store, all or none.
#[derive(Debug, Clone)]
pub struct KvWrite {
    pub tenant: TenantId,
    /// The app a node writes for (the link is checked); `None` for the
    /// tenant's own API, which may write any of its stores.
    pub app: Option<AppName>,
    /// The store's name within the tenant.
    pub store: String,
    pub ops: Vec<KvOp>,
    pub now_unix: u64,
}

/// What a write did: one result per op, and the changes it committed (in
/// seq order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWriteOutcome {
    pub results: Vec<KvOpResult>,
    pub changes: Vec<KvChange>,
}

/// A run of changes after some seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChanges {
    pub changes: Vec<KvChange>,
    /// The last seq the run covers: the one of its last change, or the
    /// `since` asked when there is none.
    pub head: u64,
}

/// The counter and the prune mark, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvHead {
    /// The last seq handed out.
    pub seq: u64,
    /// The highest seq of a tombstone or drop pruned (0: none).
    pub pruned: u64,
}

/// A page of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPage {
    pub entries: Vec<KvEntry>,
    /// Where the next page starts; `None`: this was the last.
    pub next: Option<KvCursor>,
}

/// What a prune deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvPruneOutcome {
    pub tombstones: u64,
    pub drops: u64,
    /// The prune mark after it.
    pub pruned: u64,
}

// ---------------------------------------------------------------------------
// Dump rows

/// A store (`kv_stores`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvStoreRow {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    pub created_unix: u64,
    pub keys: u64,
    pub bytes: u64,
}

/// A link (`kv_links`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvLinkRow {
    pub tenant: TenantId,
    pub app: AppName,
    pub store: String,
}

/// An entry or a tombstone (`kv_entries`, value `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvEntryRow {
    pub store: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<KvValue>,
    pub seq: u64,
    pub updated_unix: u64,
}

/// A dropped store (`kv_drops`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvDropRow {
    pub store: String,
    pub seq: u64,
    pub dropped_unix: u64,
}

/// Everything of the key-value tables, for a dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvDump {
    pub stores: Vec<KvStoreRow>,
    pub links: Vec<KvLinkRow>,
    pub entries: Vec<KvEntryRow>,
    pub drops: Vec<KvDropRow>,
    pub head: KvHead,
}

// ---------------------------------------------------------------------------
// Statements

/// `$1`: tenant, `$2`: name → (id, created, keys, bytes).
pub(crate) const STORE_BY_NAME: &str =
    "SELECT id, created_unix, keys, bytes FROM kv_stores WHERE tenant = $1 AND name = $2";
/// PostgreSQL only: [`STORE_BY_NAME`] locking the row, so a link being
/// made (its foreign key takes a share lock on it) is either committed and
/// seen by the drop, or waits and then fails to find the store.
pub(crate) const STORE_BY_NAME_FOR_UPDATE: &str = "SELECT id, created_unix, keys, bytes \
     FROM kv_stores WHERE tenant = $1 AND name = $2 FOR UPDATE";
/// `$1`: tenant → (id, name, created, keys, bytes), by name.
pub(crate) const TENANT_STORES: &str =
    "SELECT id, name, created_unix, keys, bytes FROM kv_stores WHERE tenant = $1 ORDER BY name";
/// `$1`: tenant → how many stores.
pub(crate) const COUNT_STORES: &str = "SELECT COUNT(*) FROM kv_stores WHERE tenant = $1";
/// `$1`: tenant → the bytes of all its stores.
pub(crate) const TENANT_BYTES: &str =
    "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM kv_stores WHERE tenant = $1";
/// `$1`..`$4`: id, tenant, name, created.
pub(crate) const INSERT_STORE: &str = "INSERT INTO kv_stores \
     (id, tenant, name, created_unix, keys, bytes) VALUES ($1, $2, $3, $4, 0, 0)";
/// `$1`..`$6`: id, tenant, name, created, keys, bytes (a restore).
pub(crate) const RESTORE_STORE: &str = "INSERT INTO kv_stores \
     (id, tenant, name, created_unix, keys, bytes) VALUES ($1, $2, $3, $4, $5, $6)";
/// `$1`: id.
pub(crate) const DELETE_STORE: &str = "DELETE FROM kv_stores WHERE id = $1";
/// `$1`: id, `$2`: keys added, `$3`: bytes added (either may be negative).
pub(crate) const ADD_COUNTS: &str =
    "UPDATE kv_stores SET keys = keys + $2, bytes = bytes + $3 WHERE id = $1";
/// `$1`: store id → the apps linking it, by name.
pub(crate) const STORE_APPS: &str = "SELECT app FROM kv_links WHERE store = $1 ORDER BY app";

/// `$1`: tenant, `$2`: app, `$3`: store id.
pub(crate) const INSERT_LINK: &str =
    "INSERT INTO kv_links (tenant, app, store) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
/// `$1`: tenant, `$2`: app, `$3`: store id.
pub(crate) const DELETE_LINK: &str =
    "DELETE FROM kv_links WHERE tenant = $1 AND app = $2 AND store = $3";
/// `$1`: tenant, `$2`: app, `$3`: store id → 1 if linked.
pub(crate) const LINKED: &str =
    "SELECT 1 FROM kv_links WHERE tenant = $1 AND app = $2 AND store = $3";
/// `$1`: tenant, `$2`: app. Deleting an app deletes its links.
pub(crate) const DELETE_APP_LINKS: &str = "DELETE FROM kv_links WHERE tenant = $1 AND app = $2";
/// `$1`: tenant, `$2`: app → (store name, store id), by name: what the
/// snapshot lists and `GET /v1/apps/{app}/kv` shows.
pub(crate) const APP_LINKS: &str = "SELECT s.name, s.id FROM kv_links l \
     JOIN kv_stores s ON s.id = l.store WHERE l.tenant = $1 AND l.app = $2 ORDER BY s.name";
/// `$1`: tenant, `$2`: app, `$3`: revision. A link is the app's change.
pub(crate) const TOUCH_APP: &str = super::outbound_rows::TOUCH_APP;

/// `$1`: store id, `$2`: key → value (NULL: a tombstone).
pub(crate) const ENTRY: &str = "SELECT value FROM kv_entries WHERE store = $1 AND key = $2";
/// PostgreSQL only: `$1`: store id, `$2`: keys (text[]) → (key, value)
/// of those stored.
pub(crate) const ENTRIES_OF: &str =
    "SELECT key, value FROM kv_entries WHERE store = $1 AND key = ANY($2)";
/// `$1`..`$5`: store id, key, value (NULL: a tombstone), seq, updated.
pub(crate) const PUT_ENTRY: &str = "INSERT INTO kv_entries (store, key, value, seq, updated_unix) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (store, key) DO UPDATE \
     SET value = excluded.value, seq = excluded.seq, updated_unix = excluded.updated_unix";
/// `$1`: store id, `$2`: the key to list after (`''`: from the start),
/// `$3`: the prefix (keys sort after it: the caller stops at the first
/// that does not start with it), `$4`: how many.
pub(crate) const KEYS: &str = "SELECT key FROM kv_entries WHERE store = $1 AND value IS NOT NULL \
     AND key > $2 AND key >= $3 ORDER BY key LIMIT $4";
/// `$1`: store id. A dropped store's entries and tombstones.
pub(crate) const DELETE_STORE_ENTRIES: &str = "DELETE FROM kv_entries WHERE store = $1";

/// PostgreSQL only: the first statement of every transaction that takes
/// a seq. The row lock orders them, so seq order is commit order, and
/// everything such a transaction reads after it (READ COMMITTED) is what
/// the writer before it committed: increment and compare-and-swap are
/// linearizable. SQLite's IMMEDIATE transactions are ordered already.
pub(crate) const LOCK_SEQ: &str = "SELECT value FROM kv_seq WHERE id = 1 FOR UPDATE";
/// `$1`: how many numbers to take → the last one taken.
pub(crate) const TAKE_SEQ: &str =
    "UPDATE kv_seq SET value = value + $1 WHERE id = 1 RETURNING value";
pub(crate) const HEAD: &str = "SELECT s.value, p.value FROM kv_seq s, kv_pruned p \
     WHERE s.id = 1 AND p.id = 1";
/// `$1`: seq (a restore).
pub(crate) const SET_SEQ: &str = "UPDATE kv_seq SET value = $1 WHERE id = 1";
/// `$1`: seq.
pub(crate) const SET_PRUNED: &str = "UPDATE kv_pruned SET value = $1 WHERE id = 1";

/// `$1`..`$3`: store id, seq, dropped.
pub(crate) const INSERT_DROP: &str =
    "INSERT INTO kv_drops (store, seq, dropped_unix) VALUES ($1, $2, $3)";

/// `$1`: since, `$2`: how many → (seq, key, value length; NULL: a
/// tombstone), by seq: where a run's byte budget ends is decided on
/// these before any value is read (`length` of a blob/bytea reads no
/// value on either backend).
pub(crate) const ENTRY_CHANGE_SIZES: &str = "SELECT seq, key, CAST(length(value) AS BIGINT) \
     FROM kv_entries WHERE seq > $1 ORDER BY seq LIMIT $2";
/// `$1`: since, `$2`: the last seq the run takes → (seq, store, key,
/// value), by seq.
pub(crate) const ENTRY_CHANGES: &str = "SELECT seq, store, key, value FROM kv_entries \
     WHERE seq > $1 AND seq <= $2 ORDER BY seq";
/// `$1`: since, `$2`: how many → (seq, store), by seq.
pub(crate) const DROP_CHANGES: &str =
    "SELECT seq, store FROM kv_drops WHERE seq > $1 ORDER BY seq LIMIT $2";

/// `$1`: at, `$2`: after store, `$3`: after key, `$4`: how many → (store,
/// key, value length) of live entries unchanged since `at`, in (store,
/// key) order (byte order on both backends). The row-value comparison is
/// a range of the primary key on both backends, so a page costs its own
/// rows, not the ones before it.
pub(crate) const SNAPSHOT_SIZES: &str = "SELECT store, key, CAST(length(value) AS BIGINT) \
     FROM kv_entries WHERE value IS NOT NULL AND seq <= $1 AND (store, key) > ($2, $3) \
     ORDER BY store, key LIMIT $4";
/// `$1`: at, `$2`, `$3`: after (store, key), `$4`, `$5`: the last (store,
/// key) the page takes → (store, key, value, seq), in (store, key) order.
pub(crate) const SNAPSHOT_PAGE: &str = "SELECT store, key, value, seq FROM kv_entries \
     WHERE value IS NOT NULL AND seq <= $1 AND (store, key) > ($2, $3) \
     AND (store, key) <= ($4, $5) ORDER BY store, key";

/// `$1`: before (unix), `$2`: how many → the seqs of the tombstones
/// deleted: at most one batch per transaction, found by the partial index
/// `kv_entries_tombstones`, and the prune mark comes from what was really
/// deleted.
pub(crate) const DELETE_OLD_TOMBSTONES: &str = "DELETE FROM kv_entries WHERE (store, key) IN \
     (SELECT store, key FROM kv_entries WHERE value IS NULL AND updated_unix < $1 LIMIT $2) \
     RETURNING seq";
/// `$1`: before (unix), `$2`: how many → the seqs of the drops deleted.
pub(crate) const DELETE_OLD_DROPS: &str = "DELETE FROM kv_drops WHERE store IN \
     (SELECT store FROM kv_drops WHERE dropped_unix < $1 LIMIT $2) RETURNING seq";

/// For a dump: every store, link, entry (tombstones too) and drop.
pub(crate) const ALL_STORES: &str =
    "SELECT id, tenant, name, created_unix, keys, bytes FROM kv_stores ORDER BY id";
pub(crate) const ALL_LINKS: &str =
    "SELECT tenant, app, store FROM kv_links ORDER BY tenant, app, store";
pub(crate) const ALL_ENTRIES: &str =
    "SELECT store, key, value, seq, updated_unix FROM kv_entries ORDER BY store, key";
pub(crate) const ALL_DROPS: &str = "SELECT store, seq, dropped_unix FROM kv_drops ORDER BY seq";

// ---------------------------------------------------------------------------
// Decisions

/// Most changes in one run, whatever their size.
pub const MAX_CHANGES_PER_BATCH: usize = 1_000;
/// Most entries in one snapshot page.
pub const MAX_ENTRIES_PER_PAGE: usize = 1_000;

pub(crate) fn kv_err(code: KvErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::Kv(KvError::new(code, message))
}

pub(crate) fn store_not_found(name: &str) -> StoreError {
    kv_err(
        KvErrorCode::StoreNotFound,
        format!("key-value store {name} not found"),
    )
}

/// A write for an app that does not link the store (or no such store:
/// the app cannot tell the two apart, and need not).
pub(crate) fn not_linked(app: &AppName, store: &str) -> StoreError {
    kv_err(
        KvErrorCode::NotLinked,
        format!("app {app} does not link a key-value store {store}"),
    )
}

/// A new store within the tenant's limit (`held` stores already).
pub(crate) fn check_new_store(name: &str, held: u64, limits: &KvLimits) -> StoreResult<()> {
    kv::check_store_name(name).map_err(|e| kv_err(KvErrorCode::StoreNameInvalid, e))?;
    if held >= u64::from(limits.max_stores) {
        return Err(kv_err(
            KvErrorCode::StoreLimit,
            format!(
                "the tenant has {held} key-value stores, the most allowed ({}); drop one first",
                limits.max_stores
            ),
        ));
    }
    Ok(())
}

/// What can be checked of a write before reading anything: the number of
/// ops, each key and value (the tenant's limits bind what a write makes;
/// a delete is held only to the ceiling).
pub(crate) fn check_ops(ops: &[KvOp], limits: &KvLimits) -> Result<(), KvError> {
    if ops.is_empty() {
        return Err(KvError::new(KvErrorCode::Invalid, "a write needs an op"));
    }
    let max = (limits.max_ops_per_request as usize).min(MAX_OPS_PER_WRITE);
    if ops.len() > max {
        return Err(KvError::new(
            KvErrorCode::OpsLimit,
            format!("a write makes at most {max} ops (this one {})", ops.len()),
        ));
    }
    for op in ops {
        match op {
            KvOp::Set { value, .. } | KvOp::CompareAndSwap { value, .. } => {
                kv::check_key(op.key(), limits)?;
                kv::check_value(&value.0, limits)?;
            }
            KvOp::Increment { .. } => kv::check_key(op.key(), limits)?,
            // A delete makes nothing: a key written before an admin
            // lowered the tenant's key limit must still be deletable.
            KvOp::Delete { .. } => kv::check_key(op.key(), &KvLimits::CEILING)?,
        }
    }
    Ok(())
}

/// The distinct keys of `ops`, in first-use order: what the writing
/// transaction reads before [`plan`].
pub(crate) fn keys_of(ops: &[KvOp]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ops.iter()
        .map(KvOp::key)
        .filter(|k| seen.insert(*k))
        .map(str::to_string)
        .collect()
}

/// The store's state a write is planned against, read in its transaction.
pub(crate) struct Counts {
    pub store_keys: u64,
    pub tenant_bytes: u64,
}

/// What a write leaves: the results, the keys whose value changed (their
/// final value, `None`: deleted) in first-use order, and the counters'
/// deltas.
#[derive(Debug)]
pub(crate) struct Plan {
    pub results: Vec<KvOpResult>,
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    pub keys_delta: i64,
    pub bytes_delta: i64,
}

fn entry_bytes(key: &str, value: &[u8]) -> i64 {
    i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX)
}

/// Runs `ops` in order on `current` (each key's stored value, `None`:
/// absent), then checks the limits on what they leave. Either every op
/// applies or the write is refused.
pub(crate) fn plan(
    ops: &[KvOp],
    mut current: HashMap<String, Option<Vec<u8>>>,
    counts: &Counts,
    limits: &KvLimits,
) -> Result<Plan, KvError> {
    let before = current.clone();
    let order = keys_of(ops);
    let mut results = Vec::with_capacity(ops.len());
    let mut touched = std::collections::HashSet::new();
    for op in ops {
        let slot = current.entry(op.key().to_string()).or_insert(None);
        let result = match op {
            KvOp::Set { value, .. } => {
                *slot = Some(value.0.clone());
                touched.insert(op.key().to_string());
                KvOpResult::Done
            }
            KvOp::Delete { .. } => {
                if slot.take().is_some() {
                    touched.insert(op.key().to_string());
                }
                KvOpResult::Done
            }
            KvOp::Increment { delta, .. } => {
                let value = kv::increment_value(slot.as_deref(), *delta)?;
                *slot = Some(value.to_string().into_bytes());
                touched.insert(op.key().to_string());
                KvOpResult::Incremented { value }
            }
            KvOp::CompareAndSwap {
                expected, value, ..
            } => {
                let swapped = slot.as_deref() == expected.as_ref().map(|e| e.0.as_slice());
                if swapped {
                    *slot = Some(value.0.clone());
                    touched.insert(op.key().to_string());
                }
                KvOpResult::CompareAndSwap { swapped }
            }
        };
        results.push(result);
    }
    let mut writes = Vec::new();
    let (mut keys_delta, mut bytes_delta) = (0i64, 0i64);
    for key in order {
        if !touched.contains(&key) {
            continue;
        }
        let old = before.get(&key).cloned().flatten();
        let new = current.get(&key).cloned().flatten();
        if let Some(old) = &old {
            keys_delta -= 1;
            bytes_delta -= entry_bytes(&key, old);
        }
        if let Some(new) = &new {
            keys_delta += 1;
            bytes_delta += entry_bytes(&key, new);
        }
        // A key set and deleted again in one write was absent before and
        // after: nothing to tell anyone.
        if old.is_none() && new.is_none() {
            continue;
        }
        writes.push((key, new));
    }
    let keys_after = counts.store_keys.saturating_add_signed(keys_delta);
    if keys_delta > 0 && keys_after > limits.max_keys_per_store {
        return Err(KvError::new(
            KvErrorCode::KeysLimit,
            format!(
                "a store holds at most {} keys (this write would leave {keys_after})",
                limits.max_keys_per_store
            ),
        ));
    }
    let bytes_after = counts.tenant_bytes.saturating_add_signed(bytes_delta);
    if bytes_delta > 0 && bytes_after > limits.max_tenant_bytes {
        return Err(KvError::new(
            KvErrorCode::BytesLimit,
            format!(
                "the tenant's stores hold at most {} bytes (this write would leave {bytes_after})",
                limits.max_tenant_bytes
            ),
        ));
    }
    Ok(Plan {
        results,
        writes,
        keys_delta,
        bytes_delta,
    })
}

/// Most tombstones (and, apart, drops) one prune deletes: a transaction
/// holding the writers' lock stays short; the pruner runs again at once
/// while batches come back full.
pub const PRUNE_BATCH: usize = 1_000;

/// An entry's bytes in an answer (key and value).
fn answer_bytes(key: &str, value_len: usize) -> usize {
    key.len() + value_len
}

/// How many of the leading rows (key, value length) one answer takes:
/// until [`MAX_BATCH_VALUE_BYTES`] is spent, and always the first (one
/// larger value travels alone).
fn within_budget<'a>(rows: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
    let mut bytes = 0usize;
    let mut taken = 0usize;
    for (key, len) in rows {
        let size = answer_bytes(key, len);
        if taken > 0 && bytes.saturating_add(size) > MAX_BATCH_VALUE_BYTES {
            break;
        }
        bytes = bytes.saturating_add(size);
        taken += 1;
    }
    taken
}

/// Where a run of entry changes ends, decided on their sizes (seq, key,
/// value length; `max` were asked for) before a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangesCut {
    /// Read the entries up to this seq (`None`: none).
    pub last: Option<u64>,
    /// The entries are known only up to `last` (some were left off): a
    /// drop after it must wait for the next run too.
    pub partial: bool,
}

pub(crate) fn changes_cut(sizes: &[(u64, String, usize)], max: usize) -> ChangesCut {
    let taken = within_budget(sizes.iter().map(|(_, k, n)| (k.as_str(), *n)));
    ChangesCut {
        last: taken.checked_sub(1).map(|i| sizes[i].0),
        partial: taken < sizes.len() || sizes.len() >= max,
    }
}

/// Merges the entry changes read up to `cut` and the drop changes after
/// `since` (each by seq, at most `max` long) into one run of at most
/// `max` changes.
pub(crate) fn merge_changes(
    since: u64,
    mut entries: Vec<KvChange>,
    drops: Vec<KvChange>,
    cut: ChangesCut,
    max: usize,
) -> KvChanges {
    let bound = if cut.partial {
        cut.last.unwrap_or(since)
    } else {
        u64::MAX
    };
    entries.extend(drops.into_iter().filter(|d| d.seq <= bound));
    entries.sort_by_key(|c| c.seq);
    entries.truncate(max);
    let head = entries.last().map_or(since, |c| c.seq);
    KvChanges {
        changes: entries,
        head,
    }
}

/// Where a snapshot page ends, decided on its sizes (store, key, value
/// length; `max` were asked for) before a value is read: the last (store,
/// key) it takes, and whether more may follow.
pub(crate) fn page_cut(sizes: &[(String, String, usize)], max: usize) -> Option<(KvCursor, bool)> {
    let taken = within_budget(sizes.iter().map(|(_, k, n)| (k.as_str(), *n)));
    let (store, key, _) = sizes.get(taken.checked_sub(1)?)?;
    Some((
        KvCursor {
            store: store.clone(),
            key: key.clone(),
        },
        taken < sizes.len() || sizes.len() >= max,
    ))
}

/// A value length as read (`length()` is NULL for a tombstone).
pub(crate) fn len_of(n: Option<i64>) -> usize {
    usize::try_from(n.unwrap_or(0)).unwrap_or(0)
}

/// Each store's live keys and bytes, counted from a dump's entries: a
/// restore writes these rather than the dump's counters, which a hand-made
/// or damaged dump could get wrong (and the limits trust them).
pub(crate) fn recount(entries: &[KvEntryRow]) -> HashMap<&str, (u64, u64)> {
    let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
    for e in entries {
        if let Some(value) = &e.value {
            let c = counts.entry(e.store.as_str()).or_default();
            c.0 += 1;
            c.1 += answer_bytes(&e.key, value.0.len()) as u64;
        }
    }
    counts
}

/// The keys of a listing page that start with `prefix` (the query returns
/// keys from the prefix on, in byte order, so the first that does not
/// start with it ends the range).
pub(crate) fn within_prefix(keys: Vec<String>, prefix: &str) -> Vec<String> {
    keys.into_iter()
        .take_while(|k| k.starts_with(prefix))
        .collect()
}

/// A new store's id: 16 random bytes, hex (as an epoch is made).
pub fn new_store_id() -> StoreResult<String> {
    Ok(super::random_id::random_id()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &[u8]) -> KvOp {
        KvOp::Set {
            key: key.into(),
            value: KvValue(value.to_vec()),
        }
    }

    fn counts() -> Counts {
        Counts {
            store_keys: 0,
            tenant_bytes: 0,
        }
    }

    #[test]
    fn a_write_runs_its_ops_in_order_and_counts_what_it_leaves() {
        let ops = vec![
            set("a", b"1"),
            KvOp::Increment {
                key: "a".into(),
                delta: 2,
            },
            set("b", b"x"),
            KvOp::Delete { key: "b".into() },
            KvOp::Delete { key: "c".into() },
        ];
        let plan = plan(&ops, HashMap::new(), &counts(), &KvLimits::DEFAULT).unwrap();
        assert_eq!(plan.results[1], KvOpResult::Incremented { value: 3 });
        assert_eq!(plan.writes, vec![("a".to_string(), Some(b"3".to_vec()))]);
        assert_eq!((plan.keys_delta, plan.bytes_delta), (1, 2));
    }

    #[test]
    fn limits_refuse_growth_only() {
        let limits = KvLimits {
            max_keys_per_store: 1,
            ..KvLimits::DEFAULT
        };
        let full = Counts {
            store_keys: 1,
            tenant_bytes: 2,
        };
        let err = plan(&[set("b", b"1")], HashMap::new(), &full, &limits).unwrap_err();
        assert_eq!(err.code, KvErrorCode::KeysLimit);
        let mut current = HashMap::new();
        current.insert("a".to_string(), Some(b"1".to_vec()));
        assert!(plan(&[set("a", b"2")], current, &full, &limits).is_ok());
    }

    #[test]
    fn runs_and_pages_are_cut_before_their_values_are_read() {
        let half = MAX_BATCH_VALUE_BYTES / 2;
        let sizes = vec![
            (1, "a".to_string(), half),
            (2, "b".to_string(), half),
            (4, "c".to_string(), 10),
        ];
        // The keys' bytes count too: the second value no longer fits.
        let cut = changes_cut(&sizes, 10);
        assert_eq!(
            cut,
            ChangesCut {
                last: Some(1),
                partial: true
            }
        );
        let huge = vec![(5, "k".to_string(), MAX_BATCH_VALUE_BYTES * 2)];
        assert_eq!(changes_cut(&huge, 10).last, Some(5), "travels alone");
        assert!(!changes_cut(&huge, 10).partial);
        let whole = changes_cut(&sizes[2..], 10);
        assert_eq!(
            whole,
            ChangesCut {
                last: Some(4),
                partial: false
            }
        );
        assert_eq!(
            changes_cut(&[], 10),
            ChangesCut {
                last: None,
                partial: false
            }
        );
        let drop = |seq| KvChange {
            seq,
            store: "t".into(),
            key: None,
            value: None,
        };
        // A drop after a partial run's last entry waits for the next run.
        let run = merge_changes(
            0,
            vec![],
            vec![drop(2)],
            ChangesCut {
                last: Some(1),
                partial: true,
            },
            10,
        );
        assert_eq!((run.changes.len(), run.head), (0, 0));
        let run = merge_changes(0, vec![], vec![drop(2)], changes_cut(&[], 10), 10);
        assert_eq!(run.head, 2);
        let pages = vec![
            ("s".to_string(), "a".to_string(), MAX_BATCH_VALUE_BYTES),
            ("s".to_string(), "b".to_string(), 1),
        ];
        let (last, more) = page_cut(&pages, 10).unwrap();
        assert_eq!((last.key.as_str(), more), ("a", true));
        let (last, more) = page_cut(&pages[1..], 10).unwrap();
        assert_eq!((last.key.as_str(), more), ("b", false));
        assert!(
            page_cut(&pages[1..], 1).unwrap().1,
            "a full page may have more"
        );
        assert!(page_cut(&[], 10).is_none());
    }
}
