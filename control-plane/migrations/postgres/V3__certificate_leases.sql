-- As migrations/sqlite/V3 with PostgreSQL's types: the ACME worker's lease
-- on a certificate apart from when it is due (lease_until, a fencing
-- lease_token bumped by every claim), a forced renewal that outlives a
-- lease (renew_requested), and indexes for a node's bundle lookup and the
-- worker's wake-up. Never edit an applied migration: add V4__....sql.
ALTER TABLE certificates ADD COLUMN lease_until BIGINT;
ALTER TABLE certificates ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN renew_requested BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX certificates_by_bundle ON certificates (bundle_sha256);
CREATE INDEX certificates_by_lease ON certificates (lease_until) WHERE lease_until IS NOT NULL;
