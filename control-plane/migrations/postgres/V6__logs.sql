-- As migrations/sqlite/V6 with PostgreSQL's types: live-log tails (who
-- follows which app, until when) and the lines nodes shipped, numbered
-- from log_seq in the inserting transaction so seq order is commit order.
-- Never edit an applied migration: add a new one.
CREATE TABLE log_tails (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    filters TEXT,
    expires_unix BIGINT NOT NULL,
    created_unix BIGINT NOT NULL
);
CREATE INDEX log_tails_by_app ON log_tails (tenant, app);
CREATE INDEX log_tails_by_expiry ON log_tails (expires_unix);

CREATE TABLE log_lines (
    seq BIGINT PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    node TEXT NOT NULL,
    at_unix_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX log_lines_by_app ON log_lines (tenant, app, seq);
CREATE INDEX log_lines_by_tenant ON log_lines (tenant, seq);
CREATE INDEX log_lines_by_time ON log_lines (at_unix_ms);
CREATE TABLE log_seq (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO log_seq (id, value) VALUES (1, 0);

-- As migrations/sqlite/V6: how far pruning went per app, and how many.
CREATE TABLE log_pruned (
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    PRIMARY KEY (tenant, app)
);
