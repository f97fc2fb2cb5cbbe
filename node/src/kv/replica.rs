//! The node's replica of every key-value store: store id → key (byte
//! order) → value and the seq of the change that wrote it.
//!
//! - A change replaces an entry only when its seq is higher, so a change
//!   applied twice, or an older one arriving after a write's own result,
//!   changes nothing (idempotent, order-safe).
//! - A write's result is applied only for changes after the stream's
//!   position: the stream has already applied everything up to it,
//!   including any later delete whose tombstone it may since have pruned
//!   (a late answer would otherwise bring the key back for good).
//! - A deleted key is kept as a tombstone (no value) until the stream's
//!   position passes its seq: until then an older `set` still in flight on
//!   the stream cannot bring the key back. Pending tombstones are indexed
//!   by seq, so pruning pops only those the stream passed instead of
//!   walking the replica.
//! - `key: None` drops a store (its entries up to that seq).
//! - Bytes (keys plus values plus [`ENTRY_OVERHEAD_BYTES`] per entry) are
//!   bounded by `[kv] max_replica_bytes`: over it the replica stops
//!   applying and reads fail with `kv-replica-full` instead of answering
//!   from data it does not hold. While a snapshot is received, it is built
//!   next to the replica in use: the peak is up to twice the bound.
//! - Maps are `imbl` persistent B-trees: a clone (for the persister) is
//!   O(1) and shares every node, so the file is encoded outside any lock.
//!
//! Reads take a read lock for a map lookup and clone a `Bytes` (a
//! reference count): nothing is held across an await.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use bytes::Bytes;
use edge_common::kv::{KvChange, KvEntry, KvError, KvErrorCode};
use imbl::OrdMap;

/// What an entry costs besides its key and value: the B-tree slot, the
/// `String` and `Bytes` headers and the allocations behind them. Without
/// it a store of many tiny keys would hold several times the bound.
pub const ENTRY_OVERHEAD_BYTES: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `None`: a tombstone.
    pub value: Option<Bytes>,
    pub seq: u64,
}

/// One store's entries, by key.
pub type StoreMap = OrdMap<String, Entry>;

/// A change ready to apply: its value already a `Bytes` (converted before
/// any lock is taken, without copying).
struct Change {
    seq: u64,
    store: String,
    key: Option<String>,
    value: Option<Bytes>,
}

impl From<KvChange> for Change {
    fn from(change: KvChange) -> Self {
        Change {
            seq: change.seq,
            store: change.store,
            key: change.key,
            value: change.value.map(|v| Bytes::from(v.0)),
        }
    }
}

/// The replica's contents, as one value so a snapshot can be built aside
/// and swapped in whole.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The control-plane database the seqs come from; empty until the
    /// replica was first synced.
    pub epoch: String,
    /// Every change up to this seq has been applied (the stream's position).
    pub seq: u64,
    pub stores: OrdMap<String, StoreMap>,
    /// Keys plus values of live entries, plus keys of tombstones, plus
    /// [`ENTRY_OVERHEAD_BYTES`] per entry.
    pub bytes: u64,
    /// Live keys.
    pub keys: u64,
    /// Set when a change did not fit: reads refuse until a snapshot fits.
    pub full: bool,
    /// Tombstones newer than `seq`, by their seq (a seq is one change):
    /// at most as many as the tombstones the replica holds.
    tombstones: BTreeMap<u64, (String, String)>,
    /// Bumped by every change under the write lock, so a snapshot merged
    /// outside the lock knows whether it missed one.
    generation: u64,
}

/// A change the replica could not hold under its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the replica is over its {max_bytes}-byte bound ([kv] max_replica_bytes)")]
pub struct ReplicaFull {
    pub max_bytes: u64,
}

impl State {
    pub fn new(epoch: String, seq: u64) -> Self {
        State {
            epoch,
            seq,
            ..State::default()
        }
    }

    fn entry_bytes(key: &str, entry: &Entry) -> u64 {
        (key.len() + entry.value.as_ref().map_or(0, Bytes::len)) as u64 + ENTRY_OVERHEAD_BYTES
    }

    /// Puts `entry` at (`store`, `key`) unless what is there has an equal
    /// or higher seq. Err (and nothing changed) when it would pass
    /// `max_bytes`. A tombstone the position has passed is not kept: no
    /// older change can arrive any more.
    pub fn put(
        &mut self,
        store: &str,
        key: &str,
        entry: Entry,
        max_bytes: u64,
    ) -> Result<bool, ReplicaFull> {
        let old = self.stores.get(store).and_then(|map| map.get(key));
        if old.is_some_and(|old| old.seq >= entry.seq) {
            return Ok(false);
        }
        let passed = entry.value.is_none() && entry.seq <= self.seq;
        let old_bytes = old.map_or(0, |old| Self::entry_bytes(key, old));
        let new_bytes = if passed {
            0
        } else {
            Self::entry_bytes(key, &entry)
        };
        let bytes = self.bytes - old_bytes + new_bytes;
        if new_bytes > old_bytes && bytes > max_bytes {
            self.full = true;
            return Err(ReplicaFull { max_bytes });
        }
        let was_live = old.is_some_and(|old| old.value.is_some());
        let is_live = entry.value.is_some();
        self.keys = self.keys + u64::from(is_live) - u64::from(was_live);
        self.bytes = bytes;
        self.generation += 1;
        if passed {
            self.remove(store, key);
            return Ok(true);
        }
        if !is_live {
            self.tombstones
                .insert(entry.seq, (store.to_string(), key.to_string()));
        }
        match self.stores.get_mut(store) {
            Some(map) => {
                map.insert(key.to_string(), entry);
            }
            None => {
                self.stores
                    .insert(store.to_string(), OrdMap::unit(key.to_string(), entry));
            }
        }
        Ok(true)
    }

    fn remove(&mut self, store: &str, key: &str) {
        if let Some(map) = self.stores.get_mut(store) {
            map.remove(key);
            if map.is_empty() {
                self.stores.remove(store);
            }
        }
    }

    /// Drops `store`'s entries written at or before `seq` (entries after
    /// it belong to a store recreated under the same id).
    fn drop_store(&mut self, store: &str, seq: u64) {
        let Some(map) = self.stores.get_mut(store) else {
            return;
        };
        let (mut bytes, mut keys) = (0, 0);
        let mut kept = StoreMap::new();
        for (key, entry) in map.iter() {
            if entry.seq <= seq {
                bytes += Self::entry_bytes(key, entry);
                keys += u64::from(entry.value.is_some());
            } else {
                kept.insert(key.clone(), entry.clone());
            }
        }
        *map = kept;
        if map.is_empty() {
            self.stores.remove(store);
        }
        self.bytes -= bytes;
        self.keys -= keys;
        self.generation += 1;
    }

    fn apply(&mut self, change: Change, max_bytes: u64) -> Result<(), ReplicaFull> {
        match change.key {
            None => {
                self.drop_store(&change.store, change.seq);
                Ok(())
            }
            Some(key) => {
                let entry = Entry {
                    value: change.value,
                    seq: change.seq,
                };
                self.put(&change.store, &key, entry, max_bytes).map(|_| ())
            }
        }
    }

    /// Tombstones the stream has passed can no longer be overtaken: pops
    /// those at or below the position, nothing else is looked at.
    fn prune_tombstones(&mut self) {
        while let Some(pending) = self.tombstones.first_entry() {
            if *pending.key() > self.seq {
                break;
            }
            let (seq, (store, key)) = pending.remove_entry();
            // Still that tombstone? A later set, or a dropped store, may
            // have replaced or removed it since.
            let bytes = self
                .stores
                .get(&store)
                .and_then(|map| map.get(&key))
                .filter(|entry| entry.seq == seq && entry.value.is_none())
                .map(|entry| Self::entry_bytes(&key, entry));
            if let Some(bytes) = bytes {
                self.bytes -= bytes;
                self.remove(&store, &key);
                self.generation += 1;
            }
        }
    }

    fn bucket(&self, store: &str) -> Result<Option<&StoreMap>, KvError> {
        if self.epoch.is_empty() {
            return Err(KvError::new(
                KvErrorCode::Unavailable,
                "this node has not received the key-value stores from the control plane yet",
            ));
        }
        if self.full {
            return Err(KvError::new(
                KvErrorCode::ReplicaFull,
                "this node's replica is over its size bound; reads are refused rather than answered from partial data",
            ));
        }
        Ok(self.stores.get(store))
    }

    /// Applies a run of changes to a state of its own (a snapshot before
    /// it is swapped in), moving its position to `head`.
    pub fn apply_changes(
        &mut self,
        head: u64,
        changes: Vec<KvChange>,
        max_bytes: u64,
    ) -> Result<usize, ReplicaFull> {
        let mut applied = 0;
        for change in changes {
            self.apply(change.into(), max_bytes)?;
            applied += 1;
        }
        self.seq = self.seq.max(head);
        self.prune_tombstones();
        Ok(applied)
    }

    /// Pending tombstones (for tests and the gauges' sanity).
    pub fn pending_tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// Puts every entry of `old` newer than this state's position into it
    /// (writes of the node applied while this state was built).
    fn merge_newer(&mut self, old: &OrdMap<String, StoreMap>, max_bytes: u64) {
        let at = self.seq;
        for (store, map) in old {
            for (key, entry) in map.iter().filter(|(_, e)| e.seq > at) {
                // Over the bound: the stream brings it again anyway.
                let _ = self.put(store, key, entry.clone(), max_bytes);
            }
        }
    }
}

/// What a stream batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub changes: usize,
}

/// One page of `list-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// More live keys follow the last one listed.
    pub more: bool,
}

pub struct Replica {
    state: RwLock<State>,
    max_bytes: u64,
    /// Bumped on every change, so the persister knows what it has written.
    version: std::sync::atomic::AtomicU64,
}

impl Replica {
    pub fn new(state: State, max_bytes: u64) -> Self {
        Replica {
            state: RwLock::new(state),
            max_bytes,
            version: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock left a consistent map (every
        // update is a few assignments after its checks): keep serving.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// (epoch, seq, full): where the stream continues from.
    pub fn position(&self) -> (String, u64, bool) {
        let state = self.read();
        (state.epoch.clone(), state.seq, state.full)
    }

    /// (bytes, live keys, seq), for the gauges.
    pub fn stats(&self) -> (u64, u64, u64) {
        let state = self.read();
        (state.bytes, state.keys, state.seq)
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Bytes>, KvError> {
        let state = self.read();
        Ok(state
            .bucket(store)?
            .and_then(|map| map.get(key))
            .and_then(|entry| entry.value.clone()))
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool, KvError> {
        let state = self.read();
        Ok(state
            .bucket(store)?
            .and_then(|map| map.get(key))
            .is_some_and(|entry| entry.value.is_some()))
    }

    /// Live keys in byte order after `after` (from the first without),
    /// at most `limit`: a B-tree range, so a page costs its own size
    /// however deep into the store it starts.
    pub fn list_keys(
        &self,
        store: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let state = self.read();
        let Some(map) = state.bucket(store)? else {
            return Ok(KeyPage {
                keys: Vec::new(),
                more: false,
            });
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut live = map
            .range::<_, str>((start, Bound::Unbounded))
            .filter(|(_, entry)| entry.value.is_some())
            .map(|(key, _)| key);
        let keys: Vec<String> = live.by_ref().take(limit).cloned().collect();
        let more = live.next().is_some();
        Ok(KeyPage { keys, more })
    }

    /// Applies a run of the stream (changes after the replica's seq, up to
    /// `head`) of `epoch`. Nothing is applied past a change that does not
    /// fit; the seq then stays where it was.
    pub fn apply_batch(
        &self,
        epoch: &str,
        head: u64,
        changes: Vec<KvChange>,
    ) -> Result<Applied, ReplicaFull> {
        let changes: Vec<Change> = changes.into_iter().map(Change::from).collect();
        let mut state = self.write();
        if state.epoch != epoch {
            // The caller resyncs on an epoch change; never mix seqs.
            return Ok(Applied::default());
        }
        let mut applied = Applied::default();
        let mut result = Ok(());
        for change in changes {
            if let Err(full) = state.apply(change, self.max_bytes) {
                result = Err(full);
                break;
            }
            applied.changes += 1;
        }
        if result.is_ok() {
            state.seq = state.seq.max(head);
            state.prune_tombstones();
        }
        drop(state);
        self.changed();
        result.map(|()| applied)
    }

    /// Applies what one of this node's writes committed (read-your-writes):
    /// the stream's position does not move, since other changes before
    /// these may not have arrived yet. A change at or below the position
    /// is skipped: the stream applied it, and everything after it up to the
    /// position (a later delete whose tombstone is already pruned among
    /// them). Changes of another epoch are left to the resync the stream is
    /// about to take.
    pub fn apply_write(&self, epoch: &str, changes: Vec<KvChange>) -> Result<(), ReplicaFull> {
        let changes: Vec<Change> = changes.into_iter().map(Change::from).collect();
        let mut state = self.write();
        if state.epoch != epoch {
            return Ok(());
        }
        let mut result = Ok(());
        for change in changes {
            if change.seq <= state.seq {
                continue;
            }
            if let Err(full) = state.apply(change, self.max_bytes) {
                result = Err(full);
                break;
            }
        }
        drop(state);
        self.changed();
        result
    }

    /// Swaps in a snapshot built aside. Entries of the old state newer
    /// than the snapshot (a write's result applied meanwhile) are kept;
    /// they are merged from an O(1) copy outside the lock, and again under
    /// it only if a change landed in between.
    pub fn install(&self, mut fresh: State) {
        let full = fresh.full;
        let (old, generation) = {
            let state = self.read();
            (
                (state.epoch == fresh.epoch).then(|| state.stores.clone()),
                state.generation,
            )
        };
        if let Some(old) = &old {
            fresh.merge_newer(old, self.max_bytes);
        }
        let mut state = self.write();
        if state.generation != generation && state.epoch == fresh.epoch {
            let stores = state.stores.clone();
            fresh.merge_newer(&stores, self.max_bytes);
        }
        fresh.full = full;
        // Stays ahead of the old one's, so an install racing this one
        // notices.
        fresh.generation = state.generation + 1;
        *state = fresh;
        drop(state);
        self.changed();
    }

    /// A copy for the persister: O(1) for the maps (shared, not copied),
    /// plus the pending tombstones' index.
    pub fn clone_state(&self) -> State {
        self.read().clone()
    }
}

/// A snapshot being received: pages go into a state of its own, swapped
/// in once the last page is in.
pub struct SnapshotBuilder {
    pub state: State,
    max_bytes: u64,
}

impl SnapshotBuilder {
    pub fn new(epoch: String, at: u64, max_bytes: u64) -> Self {
        SnapshotBuilder {
            state: State::new(epoch, at),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn add(&mut self, entries: Vec<KvEntry>) -> Result<(), ReplicaFull> {
        for entry in entries {
            let value = Entry {
                value: Some(Bytes::from(entry.value.0)),
                seq: entry.seq,
            };
            self.state
                .put(&entry.store, &entry.key, value, self.max_bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::kv::KvValue;

    fn set(seq: u64, store: &str, key: &str, value: &str) -> KvChange {
        KvChange {
            seq,
            store: store.into(),
            key: Some(key.into()),
            value: Some(KvValue(value.as_bytes().to_vec())),
        }
    }

    fn delete(seq: u64, store: &str, key: &str) -> KvChange {
        KvChange {
            seq,
            store: store.into(),
            key: Some(key.into()),
            value: None,
        }
    }

    fn get(replica: &Replica, store: &str, key: &str) -> Option<String> {
        replica
            .get(store, key)
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    fn synced() -> Replica {
        Replica::new(State::new("e".into(), 0), 1 << 20)
    }

    const O: u64 = ENTRY_OVERHEAD_BYTES;

    #[test]
    fn only_a_higher_seq_replaces_an_entry() {
        let replica = synced();
        replica
            .apply_batch(
                "e",
                2,
                vec![set(1, "s", "k", "one"), set(2, "s", "k", "two")],
            )
            .unwrap();
        assert_eq!(get(&replica, "s", "k").as_deref(), Some("two"));
        // The same batch again, and an older change: nothing moves.
        replica
            .apply_batch(
                "e",
                2,
                vec![set(1, "s", "k", "one"), set(2, "s", "k", "two")],
            )
            .unwrap();
        replica
            .apply_write("e", vec![set(1, "s", "k", "old")])
            .unwrap();
        assert_eq!(get(&replica, "s", "k").as_deref(), Some("two"));
        assert_eq!(replica.stats(), (4 + O, 1, 2));
    }

    #[test]
    fn a_write_result_is_not_undone_by_an_older_change_on_the_stream() {
        let replica = synced();
        // The node's own delete (seq 7) is applied before the stream
        // delivers seq 5's set of the same key.
        replica.apply_write("e", vec![delete(7, "s", "k")]).unwrap();
        assert_eq!(replica.clone_state().pending_tombstones(), 1);
        replica
            .apply_batch("e", 5, vec![set(5, "s", "k", "v")])
            .unwrap();
        assert_eq!(get(&replica, "s", "k"), None);
        assert!(!replica.exists("s", "k").unwrap());
        // Once the stream passes seq 7 the tombstone goes.
        replica
            .apply_batch("e", 7, vec![delete(7, "s", "k")])
            .unwrap();
        let state = replica.clone_state();
        assert!(state.stores.is_empty());
        assert_eq!(state.pending_tombstones(), 0);
        assert_eq!(replica.stats(), (0, 0, 7));
        // The position is the stream's, not the write's.
        replica
            .apply_write("e", vec![set(9, "s", "x", "y")])
            .unwrap();
        assert_eq!(replica.position().1, 7);
    }

    #[test]
    fn a_late_write_answer_does_not_bring_back_a_key_deleted_after_it() {
        let replica = synced();
        // This node sets k (seq 5); another node deletes it (seq 6); the
        // stream applies both and prunes the tombstone before this node's
        // write answer arrives.
        replica
            .apply_batch("e", 6, vec![set(5, "s", "k", "mine"), delete(6, "s", "k")])
            .unwrap();
        assert!(replica.clone_state().stores.is_empty());
        replica
            .apply_write("e", vec![set(5, "s", "k", "mine")])
            .unwrap();
        assert_eq!(get(&replica, "s", "k"), None);
        assert_eq!(replica.stats(), (0, 0, 6));
        // A write answer past the position still applies (read-your-writes),
        // and so does the part of a multi-change answer past it.
        replica
            .apply_write("e", vec![set(6, "s", "a", "old"), set(7, "s", "b", "new")])
            .unwrap();
        assert_eq!(get(&replica, "s", "a"), None);
        assert_eq!(get(&replica, "s", "b").as_deref(), Some("new"));
    }

    #[test]
    fn pruning_looks_only_at_tombstones_the_stream_passed() {
        let replica = synced();
        replica
            .apply_write(
                "e",
                vec![
                    delete(10, "s", "a"),
                    delete(20, "s", "b"),
                    delete(30, "t", "c"),
                ],
            )
            .unwrap();
        // An empty long-poll answer that moves the position to 20.
        replica.apply_batch("e", 20, Vec::new()).unwrap();
        let state = replica.clone_state();
        assert_eq!(state.pending_tombstones(), 1);
        assert!(state.stores.get("s").is_none());
        assert!(state.stores.get("t").is_some_and(|m| m.contains_key("c")));
        // A tombstone replaced by a later set is not pruned with it.
        replica
            .apply_write("e", vec![set(31, "t", "c", "back")])
            .unwrap();
        replica.apply_batch("e", 31, Vec::new()).unwrap();
        assert_eq!(get(&replica, "t", "c").as_deref(), Some("back"));
        assert_eq!(replica.clone_state().pending_tombstones(), 0);
        assert_eq!(replica.stats(), (5 + O, 1, 31));
    }

    #[test]
    fn a_dropped_store_loses_every_key_and_another_epoch_is_not_mixed_in() {
        let replica = synced();
        replica
            .apply_batch(
                "e",
                3,
                vec![
                    set(1, "a", "k1", "v"),
                    set(2, "a", "k2", "v"),
                    set(3, "b", "k", "v"),
                ],
            )
            .unwrap();
        replica
            .apply_batch(
                "e",
                4,
                vec![KvChange {
                    seq: 4,
                    store: "a".into(),
                    key: None,
                    value: None,
                }],
            )
            .unwrap();
        assert_eq!(get(&replica, "a", "k1"), None);
        assert_eq!(get(&replica, "b", "k").as_deref(), Some("v"));
        assert_eq!(replica.stats(), (2 + O, 1, 4));
        replica
            .apply_batch("other", 9, vec![set(9, "b", "k", "w")])
            .unwrap();
        assert_eq!(get(&replica, "b", "k").as_deref(), Some("v"));
        assert_eq!(replica.position().1, 4);
    }

    #[test]
    fn keys_are_listed_in_byte_order_after_the_last_key() {
        let replica = synced();
        let changes: Vec<KvChange> = ["b", "a", "c", "B", "d"]
            .iter()
            .enumerate()
            .map(|(i, k)| set(i as u64 + 1, "s", k, "v"))
            .chain([delete(6, "s", "c")])
            .collect();
        replica.apply_batch("e", 5, changes).unwrap();
        let first = replica.list_keys("s", None, 2).unwrap();
        assert_eq!(first.keys, ["B", "a"]);
        assert!(first.more);
        let second = replica.list_keys("s", Some("a"), 2).unwrap();
        // "c" is a tombstone: not listed.
        assert_eq!(second.keys, ["b", "d"]);
        assert!(!second.more);
        // A key removed between pages shifts nothing.
        let after_gone = replica.list_keys("s", Some("aa"), 10).unwrap();
        assert_eq!(after_gone.keys, ["b", "d"]);
        assert!(
            replica
                .list_keys("s", Some("z"), 2)
                .unwrap()
                .keys
                .is_empty()
        );
        assert!(replica.list_keys("none", None, 2).unwrap().keys.is_empty());
    }

    #[test]
    fn a_replica_never_synced_is_unavailable_not_empty() {
        let replica = Replica::new(State::default(), 1 << 20);
        assert_eq!(
            replica.get("s", "k").unwrap_err().code,
            KvErrorCode::Unavailable
        );
        assert_eq!(
            replica.list_keys("s", None, 1).unwrap_err().code,
            KvErrorCode::Unavailable
        );
        // A write answer cannot make it look synced.
        replica
            .apply_write("e", vec![set(1, "s", "k", "v")])
            .unwrap();
        assert_eq!(
            replica.exists("s", "k").unwrap_err().code,
            KvErrorCode::Unavailable
        );
    }

    #[test]
    fn over_the_bound_it_stops_and_refuses_reads_until_a_snapshot_fits() {
        let replica = Replica::new(State::new("e".into(), 0), 2 * O + 10);
        let full = replica
            .apply_batch(
                "e",
                2,
                vec![set(1, "s", "a", "12345"), set(2, "s", "b", "123456")],
            )
            .unwrap_err();
        assert_eq!(full.max_bytes, 2 * O + 10);
        assert_eq!(
            replica.get("s", "a").unwrap_err().code,
            KvErrorCode::ReplicaFull
        );
        assert_eq!(
            replica.list_keys("s", None, 10).unwrap_err().code,
            KvErrorCode::ReplicaFull
        );
        // The position did not move past what it could not hold.
        assert_eq!(replica.position(), ("e".into(), 0, true));
        let mut snapshot = SnapshotBuilder::new("e".into(), 3, replica.max_bytes());
        snapshot
            .add(vec![KvEntry {
                store: "s".into(),
                key: "a".into(),
                value: KvValue(b"1".to_vec()),
                seq: 1,
            }])
            .unwrap();
        replica.install(snapshot.state);
        assert_eq!(get(&replica, "s", "a").as_deref(), Some("1"));
        assert_eq!(replica.position(), ("e".into(), 3, false));
    }

    #[test]
    fn many_tiny_keys_count_their_overhead() {
        // 1000 one-byte keys with empty values would be 1000 bytes without
        // the overhead; with it they pass a 10 KB bound.
        let replica = Replica::new(State::new("e".into(), 0), 10_000);
        let changes: Vec<KvChange> = (0..1000)
            .map(|i| set(i + 1, "s", &format!("{}", i % 10), ""))
            .collect();
        replica.apply_batch("e", 1000, changes).unwrap();
        let many: Vec<KvChange> = (0..200)
            .map(|i| set(2000 + i, "s", &format!("k{i}"), ""))
            .collect();
        assert!(replica.apply_batch("e", 2200, many).is_err());
    }

    #[test]
    fn a_snapshot_keeps_newer_writes_of_the_node() {
        let replica = synced();
        replica
            .apply_write("e", vec![set(12, "s", "mine", "new")])
            .unwrap();
        let mut snapshot = SnapshotBuilder::new("e".into(), 10, 1 << 20);
        snapshot
            .add(vec![KvEntry {
                store: "s".into(),
                key: "other".into(),
                value: KvValue(b"x".to_vec()),
                seq: 4,
            }])
            .unwrap();
        replica.install(snapshot.state);
        assert_eq!(get(&replica, "s", "mine").as_deref(), Some("new"));
        assert_eq!(get(&replica, "s", "other").as_deref(), Some("x"));
        assert_eq!(replica.stats().1, 2);
    }
}
