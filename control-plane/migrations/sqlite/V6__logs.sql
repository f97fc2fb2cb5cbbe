-- Live logs (`edgectl logs`). Never edit an applied migration: add a new
-- one.
--
-- log_tails: who follows which app now. A row is written when a follower
--   connects, its expires_unix moved forward by the replica holding the
--   follower's stream, and deleted when the follower goes (or by the sweep
--   once expired: its replica died). The snapshot lists the apps with an
--   unexpired tail, which is how nodes learn what to ship. id: a random
--   token the replica chose (never reused, so a late refresh of a swept
--   tail cannot touch another). filters: the follower's query, for
--   operators.
CREATE TABLE log_tails (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    filters TEXT,
    expires_unix INTEGER NOT NULL,
    created_unix INTEGER NOT NULL
);
CREATE INDEX log_tails_by_app ON log_tails (tenant, app);
CREATE INDEX log_tails_by_expiry ON log_tails (expires_unix);

-- log_lines: lines nodes shipped, kept a few minutes (bounded per tenant)
--   for the replicas streaming them to followers. seq comes from log_seq,
--   taken in the inserting transaction, so seq order is commit order and a
--   reader's "after seq N" never skips a line committed later.
CREATE TABLE log_lines (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    node TEXT NOT NULL,
    at_unix_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX log_lines_by_app ON log_lines (tenant, app, seq);
CREATE INDEX log_lines_by_tenant ON log_lines (tenant, seq);
CREATE INDEX log_lines_by_time ON log_lines (at_unix_ms);
CREATE TABLE log_seq (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO log_seq (id, value) VALUES (1, 0);

-- log_pruned: per app, how far the per-tenant bound has pruned its lines
--   (the highest seq deleted) and how many of its lines were deleted so
--   far. A follower whose position is below `seq` lost lines; it is told
--   how many (a `dropped` notice) from `lines` and its own count.
CREATE TABLE log_pruned (
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    seq INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    PRIMARY KEY (tenant, app)
);
