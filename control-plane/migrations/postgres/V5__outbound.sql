-- As migrations/sqlite/V5 with PostgreSQL's types: an app's outbound
-- policy (allow: a JSON list of destinations; max_subrequests NULL for the
-- default) and a tenant's caps on it (NULL: the default). Never edit an
-- applied migration: add a later one.
CREATE TABLE app_outbound (
    tenant TEXT COLLATE "C" NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    allow TEXT NOT NULL,
    max_subrequests BIGINT,
    PRIMARY KEY (tenant, app)
);
CREATE TABLE tenant_limits (
    tenant TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants(id),
    max_outbound_destinations BIGINT,
    max_subrequests BIGINT
);
