-- Outbound through the API (issue 15): an app's outbound policy and its
-- tenant's caps on it. Never edit an applied migration: add a later one.
--
-- app_outbound: one row per app that set a policy (none: nothing allowed,
--   the default max_subrequests). allow: a JSON list of destinations as
--   written by the API's parser (scheme://host[:port]); max_subrequests:
--   NULL for the default.
-- tenant_limits: a tenant's own caps (NULL: the default, 20 destinations
--   and 32 subrequests); no row: both defaults.
CREATE TABLE app_outbound (
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    allow TEXT NOT NULL,
    max_subrequests INTEGER,
    PRIMARY KEY (tenant, app)
);
CREATE TABLE tenant_limits (
    tenant TEXT PRIMARY KEY REFERENCES tenants(id),
    max_outbound_destinations INTEGER,
    max_subrequests INTEGER
);
