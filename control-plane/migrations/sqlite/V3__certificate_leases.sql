-- The ACME worker's lease on a certificate, apart from when it is due.
-- Until V2 a lease was written over next_attempt_unix, so a forced renewal
-- (which sets next_attempt_unix to now) ended a replica's lease early and
-- a second replica could order the same certificate. Never edit an
-- applied migration: add V4__....sql.
--
-- lease_until: the end of the current lease (NULL: none; a past value is a
--   lease its holder gave up on by dying, free to take).
-- lease_token: bumped by every claim; a claim's result is recorded only
--   with the token it got (a fencing token), so a replica whose lease was
--   taken over cannot overwrite its successor's work.
-- renew_requested: a forced renewal asked for during a lease; it outlives
--   the holder's result (the next claim takes it).
-- A V2 lease (a future next_attempt_unix) keeps its meaning: not due until
-- then.
ALTER TABLE certificates ADD COLUMN lease_until INTEGER;
ALTER TABLE certificates ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN renew_requested INTEGER NOT NULL DEFAULT 0;

-- A node fetches a bundle by its digest (GET /v1/certificates/{sha256}).
CREATE INDEX certificates_by_bundle ON certificates (bundle_sha256);
-- The worker's next wake-up looks at the certificates under a lease: a
-- few rows, so a partial index (which also keeps the due-time index the
-- planner's choice for "no lease or one ended").
CREATE INDEX certificates_by_lease ON certificates (lease_until) WHERE lease_until IS NOT NULL;
