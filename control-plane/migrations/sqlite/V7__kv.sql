-- Key-value stores (issue 16). Never edit an applied migration: add a new
-- one.
--
-- kv_stores: a tenant's stores. id: random hex, what the change stream
--   and nodes name (a name can be dropped and made again: the new store is
--   another id, so a node never mixes the two). keys, bytes: the live keys
--   and their bytes (keys plus values), kept in every writing transaction
--   so the limits are checked without a scan.
CREATE TABLE kv_stores (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    keys INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, name)
);

-- kv_links: which apps may open which stores (the snapshot lists them per
--   app; a link changes the snapshot, so it bumps the revision).
CREATE TABLE kv_links (
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    store TEXT NOT NULL REFERENCES kv_stores(id),
    PRIMARY KEY (tenant, app, store)
);
CREATE INDEX kv_links_by_store ON kv_links (store);

-- kv_entries: the data. value NULL is a tombstone (a deleted key, kept
--   with its own seq until pruned so a node catching up sees the delete).
--   seq comes from kv_seq, taken in the writing transaction, so seq order
--   is commit order and "after seq N" never skips a later commit.
CREATE TABLE kv_entries (
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    seq INTEGER NOT NULL,
    updated_unix INTEGER NOT NULL,
    PRIMARY KEY (store, key)
);
CREATE INDEX kv_entries_by_seq ON kv_entries (seq);
-- The pruner's scan: old tombstones only, however many live entries.
CREATE INDEX kv_entries_tombstones ON kv_entries (updated_unix) WHERE value IS NULL;

-- kv_drops: dropped stores, a change of their own (key None) until pruned.
CREATE TABLE kv_drops (
    store TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    dropped_unix INTEGER NOT NULL
);
CREATE INDEX kv_drops_by_seq ON kv_drops (seq);

CREATE TABLE kv_seq (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO kv_seq (id, value) VALUES (1, 0);

-- kv_pruned: the highest seq of a tombstone or drop pruned so far. A node
--   whose position is below it may have missed a delete: it resyncs.
CREATE TABLE kv_pruned (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO kv_pruned (id, value) VALUES (1, 0);

-- A tenant's key-value limits (NULL: the default, see common::kv::KvLimits).
ALTER TABLE tenant_limits ADD COLUMN kv_max_key_bytes INTEGER;
ALTER TABLE tenant_limits ADD COLUMN kv_max_value_bytes INTEGER;
ALTER TABLE tenant_limits ADD COLUMN kv_max_keys_per_store INTEGER;
ALTER TABLE tenant_limits ADD COLUMN kv_max_tenant_bytes INTEGER;
ALTER TABLE tenant_limits ADD COLUMN kv_max_ops_per_request INTEGER;
ALTER TABLE tenant_limits ADD COLUMN kv_max_stores INTEGER;
