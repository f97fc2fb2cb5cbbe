-- As migrations/sqlite/V2 with PostgreSQL's types: tenants' TLS
-- certificates, pending ACME HTTP-01 challenges, ACME accounts, and each
-- app's HTTPS options. Never edit an applied migration: add V3__....sql.

-- A 308 from plain HTTP to HTTPS, and a Strict-Transport-Security value
-- (NULL: none).
ALTER TABLE apps ADD COLUMN https_redirect BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE apps ADD COLUMN hsts TEXT;

-- The last certificate id handed out: a deleted certificate's id never
-- comes back (nodes label metrics and keep bundles by it), not even after
-- a dump is restored (the counter travels in the dump).
CREATE TABLE certificate_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO certificate_counter (id, value) VALUES (1, 0);

-- hosts: a JSON array of host patterns (text, as in SQLite), as given. The
-- material columns (chain_pem .. not_after_unix) are all set (what nodes
-- serve) or all NULL (an ACME certificate not issued yet). sealed_key is
-- the private key sealed with the key-encryption key: never in the clear.
CREATE TABLE certificates (
    id BIGINT PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    hosts TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('uploaded', 'acme')),
    chain_pem TEXT,
    sealed_key BYTEA,
    bundle_sha256 TEXT COLLATE "C",
    bundle_size BIGINT,
    issuer TEXT,
    not_before_unix BIGINT,
    not_after_unix BIGINT,
    last_error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_unix BIGINT,
    created_unix BIGINT NOT NULL,
    updated_unix BIGINT NOT NULL,
    CHECK ((chain_pem IS NULL) = (sealed_key IS NULL)
       AND (chain_pem IS NULL) = (bundle_sha256 IS NULL)
       AND (chain_pem IS NULL) = (bundle_size IS NULL)
       AND (chain_pem IS NULL) = (issuer IS NULL)
       AND (chain_pem IS NULL) = (not_before_unix IS NULL)
       AND (chain_pem IS NULL) = (not_after_unix IS NULL))
);
CREATE INDEX certificates_by_app ON certificates (tenant, app);
-- The ACME worker looks for work due.
CREATE INDEX certificates_by_next_attempt ON certificates (next_attempt_unix);

-- A certificate's pending HTTP-01 challenges; position keeps challenges
-- that share a token apart (stored as given).
CREATE TABLE acme_challenges (
    certificate BIGINT NOT NULL,
    position BIGINT NOT NULL,
    host TEXT NOT NULL,
    token TEXT COLLATE "C" NOT NULL,
    key_authorization TEXT NOT NULL,
    PRIMARY KEY (certificate, position)
);

-- One ACME account per directory URL: its credentials, sealed.
CREATE TABLE acme_accounts (
    directory TEXT COLLATE "C" PRIMARY KEY,
    sealed BYTEA NOT NULL
);
