-- Tenants' TLS certificates (uploaded or issued by ACME), the pending ACME
-- HTTP-01 challenges nodes answer, the control plane's ACME accounts, and
-- each app's HTTPS options. Never edit an applied migration: add V3__....sql.

-- A 308 from plain HTTP to HTTPS (0 or 1), and a Strict-Transport-Security
-- value (NULL: none).
ALTER TABLE apps ADD COLUMN https_redirect INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN hsts TEXT;

-- The last certificate id handed out: a deleted certificate's id never
-- comes back (nodes label metrics and keep bundles by it), not even after
-- a dump is restored (the counter travels in the dump).
CREATE TABLE certificate_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO certificate_counter (id, value) VALUES (1, 0);

-- hosts: a JSON array of host patterns, as given. The material columns
-- (chain_pem .. not_after_unix) are all set (what nodes serve) or all NULL
-- (an ACME certificate not issued yet). sealed_key is the private key
-- sealed with the key-encryption key: never the key in the clear.
CREATE TABLE certificates (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    hosts TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('uploaded', 'acme')),
    chain_pem TEXT,
    sealed_key BLOB,
    bundle_sha256 TEXT,
    bundle_size INTEGER,
    issuer TEXT,
    not_before_unix INTEGER,
    not_after_unix INTEGER,
    last_error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_unix INTEGER,
    created_unix INTEGER NOT NULL,
    updated_unix INTEGER NOT NULL,
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
    certificate INTEGER NOT NULL,
    position INTEGER NOT NULL,
    host TEXT NOT NULL,
    token TEXT NOT NULL,
    key_authorization TEXT NOT NULL,
    PRIMARY KEY (certificate, position)
);

-- One ACME account per directory URL: its credentials, sealed.
CREATE TABLE acme_accounts (
    directory TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
);
