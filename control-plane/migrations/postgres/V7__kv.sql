-- As migrations/sqlite/V7 with PostgreSQL's types: key-value stores, their
-- links to apps, the entries (value NULL: a tombstone) numbered from kv_seq
-- in the writing transaction so seq order is commit order, dropped stores,
-- the prune mark, and the tenants' kv limits. COLLATE "C": keys list in
-- byte order, as on SQLite. Never edit an applied migration: add a new one.
CREATE TABLE kv_stores (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name TEXT COLLATE "C" NOT NULL,
    created_unix BIGINT NOT NULL,
    keys BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant, name)
);

CREATE TABLE kv_links (
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    store TEXT COLLATE "C" NOT NULL REFERENCES kv_stores(id),
    PRIMARY KEY (tenant, app, store)
);
CREATE INDEX kv_links_by_store ON kv_links (store);

CREATE TABLE kv_entries (
    store TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA,
    seq BIGINT NOT NULL,
    updated_unix BIGINT NOT NULL,
    PRIMARY KEY (store, key)
);
CREATE INDEX kv_entries_by_seq ON kv_entries (seq);
CREATE INDEX kv_entries_tombstones ON kv_entries (updated_unix) WHERE value IS NULL;

CREATE TABLE kv_drops (
    store TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT NOT NULL,
    dropped_unix BIGINT NOT NULL
);
CREATE INDEX kv_drops_by_seq ON kv_drops (seq);

CREATE TABLE kv_seq (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO kv_seq (id, value) VALUES (1, 0);

CREATE TABLE kv_pruned (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO kv_pruned (id, value) VALUES (1, 0);

ALTER TABLE tenant_limits ADD COLUMN kv_max_key_bytes BIGINT;
ALTER TABLE tenant_limits ADD COLUMN kv_max_value_bytes BIGINT;
ALTER TABLE tenant_limits ADD COLUMN kv_max_keys_per_store BIGINT;
ALTER TABLE tenant_limits ADD COLUMN kv_max_tenant_bytes BIGINT;
ALTER TABLE tenant_limits ADD COLUMN kv_max_ops_per_request BIGINT;
ALTER TABLE tenant_limits ADD COLUMN kv_max_stores BIGINT;
