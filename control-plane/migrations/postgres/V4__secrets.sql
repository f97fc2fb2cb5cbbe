-- As migrations/sqlite/V4 with PostgreSQL's types. Never edit an applied
-- migration: add a new one.

-- App secrets (edgectl secrets set): each value sealed with the control
-- plane's key-encryption keyring, bound to its tenant, app and name, so a
-- sealed value copied to another row does not open. Deleted with the app.
CREATE TABLE secrets (
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    sealed BYTEA NOT NULL,
    created_unix BIGINT NOT NULL,
    updated_unix BIGINT NOT NULL,
    PRIMARY KEY (tenant, app, name)
);

-- The bundle nodes fetch for an app with secrets: the salt it was built
-- with (so every replica rebuilds the same bytes from the rows), its
-- digest (which the signed snapshot names) and size. One row per app
-- that has secrets, written in the transaction that changes them.
CREATE TABLE secret_bundles (
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    salt TEXT COLLATE "C" NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (tenant, app)
);

-- A node fetches a bundle by its digest (GET /v1/secrets/{sha256}).
CREATE INDEX secret_bundles_by_sha256 ON secret_bundles (sha256);
