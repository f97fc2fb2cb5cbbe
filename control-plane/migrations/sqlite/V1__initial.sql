-- The schema of the first versioned release. Idempotent (IF NOT EXISTS,
-- OR IGNORE) so that a database made before migrations were versioned is
-- adopted as it is; store/sqlite.rs first adds the columns such a database
-- may lack. Never edit an applied migration: add V2__....sql.
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO revision (id, value) VALUES (1, 0);
-- storage_quota_bytes: the tenant's own quota; NULL for the default.
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_unix INTEGER NOT NULL,
    storage_quota_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS apps (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    active_version INTEGER,
    origin TEXT,
    -- An origin app's `forward_override_headers` (0 for a component app).
    forward_override_headers INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL,
    limits TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    updated_revision INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    source_sha256 TEXT NOT NULL,
    source_size INTEGER NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    engine TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    PRIMARY KEY (tenant, app, version)
);
-- Which versions reference a blob (garbage collection, artifact fetches).
CREATE INDEX IF NOT EXISTS versions_by_source ON versions (source_sha256);
CREATE INDEX IF NOT EXISTS versions_by_artifact ON versions (artifact_sha256);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    created_unix INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    source_sha256 TEXT NOT NULL,
    engine TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (source_sha256, engine)
);
CREATE INDEX IF NOT EXISTS artifacts_by_digest ON artifacts (artifact_sha256);
CREATE TABLE IF NOT EXISTS purges (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT,
    soft INTEGER NOT NULL,
    created_unix INTEGER NOT NULL
);
-- The last purge id handed out: purges are dropped oldest first, and an id
-- must never come back (a node would take it for one it already applied).
CREATE TABLE IF NOT EXISTS purge_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO purge_counter (id, value) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    applied_revision INTEGER,
    rejected_revision INTEGER,
    last_error TEXT,
    app_errors TEXT NOT NULL DEFAULT '[]',
    engine TEXT NOT NULL,
    last_seen_unix INTEGER NOT NULL
);
