//! What live-log tails and lines mean to both SQL backends: every
//! statement, written once in PostgreSQL's `$n` style (see
//! `cert_rows::sqlite` for SQLite), and the decisions (the tail cap, which
//! lines are kept). The backends only bind, fetch and run them in their
//! transactions.

use std::collections::HashSet;

use edge_common::names::{AppName, TenantId};

use super::{NewLogLine, StoreError, StoreResult};

/// `$1`: tenant, `$2`: now. The tenant's unexpired tails.
pub(crate) const COUNT_TENANT_TAILS: &str =
    "SELECT COUNT(*) FROM log_tails WHERE tenant = $1 AND expires_unix > $2";

/// `$1`: id. Whether a tail has it (ids are random: a repeat is a
/// caller's mistake, refused as `Exists` rather than a constraint error).
pub(crate) const COUNT_TAIL: &str = "SELECT COUNT(*) FROM log_tails WHERE id = $1";

/// `$1`..`$6`: id, tenant, app, filters, expires, created.
pub(crate) const INSERT_TAIL: &str = "INSERT INTO log_tails \
     (id, tenant, app, filters, expires_unix, created_unix) VALUES ($1, $2, $3, $4, $5, $6)";

/// `$1`: id, `$2`: new expiry, `$3`: now. Only an unexpired tail: one that
/// expired may have left the snapshot already (without a revision of its
/// own), so its holder registers it again instead.
pub(crate) const REFRESH_TAIL: &str =
    "UPDATE log_tails SET expires_unix = $2 WHERE id = $1 AND expires_unix > $3";

/// `$1`: id. Returns the tail's tenant and app (to tell whether the
/// tailed set changed).
pub(crate) const DELETE_TAIL: &str = "DELETE FROM log_tails WHERE id = $1 RETURNING tenant, app";

/// `$1`: tenant, `$2`: app, `$3`: now. The app's unexpired tails: the
/// snapshot lists the app while there is one, so a tail that is the
/// first (or the last to go) changes the tailed set, and only then bumps
/// the revision.
pub(crate) const COUNT_APP_TAILS: &str =
    "SELECT COUNT(*) FROM log_tails WHERE tenant = $1 AND app = $2 AND expires_unix > $3";

/// `$1`: now. Expired tails, and tails of apps deleted since; returns
/// their tenants and apps.
pub(crate) const SWEEP_TAILS: &str = "DELETE FROM log_tails WHERE expires_unix <= $1 \
     OR NOT EXISTS (SELECT 1 FROM apps WHERE apps.tenant = log_tails.tenant AND apps.name = log_tails.app) \
     RETURNING tenant, app";

/// Prune marks of apps deleted since.
pub(crate) const SWEEP_PRUNED: &str = "DELETE FROM log_pruned WHERE NOT EXISTS \
     (SELECT 1 FROM apps WHERE apps.tenant = log_pruned.tenant AND apps.name = log_pruned.app)";

/// `$1`: the oldest time kept (ms).
pub(crate) const SWEEP_LINES: &str = "DELETE FROM log_lines WHERE at_unix_ms < $1";

/// `$1`: now.
pub(crate) const COUNT_ACTIVE_TAILS: &str =
    "SELECT COUNT(*) FROM log_tails WHERE expires_unix > $1";

/// `$1`: now. The apps a snapshot lists: tailed, unexpired, still there.
pub(crate) const SNAPSHOT_TAILS: &str = "SELECT DISTINCT t.tenant, t.app FROM log_tails t \
     JOIN apps a ON a.tenant = t.tenant AND a.name = t.app \
     WHERE t.expires_unix > $1 ORDER BY t.tenant, t.app";

/// `$1`: now. The apps whose lines are kept.
pub(crate) const TAILED_APPS: &str =
    "SELECT DISTINCT tenant, app FROM log_tails WHERE expires_unix > $1";

/// `$1`: how many numbers to take. Returns the last one taken. The row
/// lock it takes orders inserting transactions, so `seq` order is commit
/// order.
pub(crate) const TAKE_SEQ: &str =
    "UPDATE log_seq SET value = value + $1 WHERE id = 1 RETURNING value";

pub(crate) const LAST_SEQ: &str = "SELECT value FROM log_seq WHERE id = 1";

/// `$1`..`$7`: seq, tenant, app, node, at, kind, json.
pub(crate) const INSERT_LINE: &str = "INSERT INTO log_lines \
     (seq, tenant, app, node, at_unix_ms, kind, json) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// `$1`..`$7`: arrays of seq, tenant, app, at, kind, json; `$4`: the
/// node. A whole batch in one statement (PostgreSQL only).
pub(crate) const INSERT_LINES_UNNEST: &str = "INSERT INTO log_lines \
     (seq, tenant, app, node, at_unix_ms, kind, json) \
     SELECT s, t, a, $4, at, k, j FROM unnest($1::bigint[], $2::text[], $3::text[], \
     $5::bigint[], $6::text[], $7::text[]) AS u(s, t, a, at, k, j)";

/// `$1`: tenant, `$2`: lines kept. Deletes the tenant's older lines;
/// returns each deleted line's app and seq, for the prune marks.
pub(crate) const PRUNE_TENANT: &str = "DELETE FROM log_lines WHERE tenant = $1 AND seq <= \
     (SELECT seq FROM log_lines WHERE tenant = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2) \
     RETURNING app, seq";

/// `$1`..`$4`: tenant, app, highest seq pruned, lines pruned now. Seqs only
/// grow, so the new mark is the highest; counts add up.
pub(crate) const MARK_PRUNED: &str = "INSERT INTO log_pruned (tenant, app, seq, lines) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, app) \
     DO UPDATE SET seq = excluded.seq, lines = log_pruned.lines + excluded.lines";

/// `$1`: tenant, `$2`: app. The app's prune mark (none: never pruned).
pub(crate) const PRUNED: &str = "SELECT seq, lines FROM log_pruned WHERE tenant = $1 AND app = $2";

/// `$1`: tenant, `$2`: app, `$3`: since (ms). The app's first kept line
/// of the window.
pub(crate) const FIRST_SINCE: &str = "SELECT MIN(seq) FROM log_lines \
     WHERE tenant = $1 AND app = $2 AND at_unix_ms >= $3";

/// `$1`: tenant, `$2`: app, `$3`: seq. The app's kept lines up to a seq.
pub(crate) const COUNT_UPTO: &str =
    "SELECT COUNT(*) FROM log_lines WHERE tenant = $1 AND app = $2 AND seq <= $3";

/// Every prune mark, for a dump; `$1`..`$4` to restore one.
pub(crate) const ALL_PRUNED: &str =
    "SELECT tenant, app, seq, lines FROM log_pruned ORDER BY tenant, app";
pub(crate) const INSERT_PRUNED: &str =
    "INSERT INTO log_pruned (tenant, app, seq, lines) VALUES ($1, $2, $3, $4)";

/// `$1`: tenant, `$2`: app, `$3`: after seq, `$4`: since (ms), `$5`: limit.
pub(crate) const SELECT_LINES: &str = "SELECT seq, tenant, app, node, at_unix_ms, kind, json FROM log_lines \
     WHERE tenant = $1 AND app = $2 AND seq > $3 AND at_unix_ms >= $4 ORDER BY seq LIMIT $5";

/// Every tail and line, for a dump.
pub(crate) const ALL_TAILS: &str = "SELECT id, tenant, app, filters, expires_unix, created_unix \
     FROM log_tails ORDER BY id";
pub(crate) const ALL_LINES: &str =
    "SELECT seq, tenant, app, node, at_unix_ms, kind, json FROM log_lines ORDER BY seq";
/// `$1`: the counter's value, for a restore.
pub(crate) const SET_SEQ: &str = "UPDATE log_seq SET value = $1 WHERE id = 1";

/// `TailLimit` if the tenant has `count` tails and may have `max`.
pub(crate) fn check_tail_limit(tenant: &TenantId, count: u64, max: u64) -> StoreResult<()> {
    if count >= max {
        return Err(StoreError::TailLimit {
            tenant: tenant.to_string(),
            max,
        });
    }
    Ok(())
}

/// The lines of a batch that are kept: those of tailed apps.
pub(crate) fn kept<'l>(
    lines: &'l [NewLogLine],
    tailed: &HashSet<(String, String)>,
) -> Vec<&'l NewLogLine> {
    lines
        .iter()
        .filter(|l| tailed.contains(&(l.tenant.to_string(), l.app.to_string())))
        .collect()
}

/// What one prune deleted, per app: the highest seq and how many.
pub(crate) fn pruned_per_app(deleted: Vec<(String, i64)>) -> Vec<(String, i64, i64)> {
    let mut per_app: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (app, seq) in deleted {
        let entry = per_app.entry(app).or_insert((0, 0));
        entry.0 = entry.0.max(seq);
        entry.1 += 1;
    }
    per_app
        .into_iter()
        .map(|(app, (seq, n))| (app, seq, n))
        .collect()
}

/// Where a follower starts: after `after_seq` (never below the app's
/// prune mark); `lines_upto`: the app's lines ever stored up to it, kept
/// or pruned (see [`LogPage`](super::LogPage)).
pub(crate) fn start(
    after: u64,
    pruned: (u64, u64),
    count_upto: impl FnOnce(u64) -> StoreResult<u64>,
) -> StoreResult<super::LogStart> {
    let after = after.max(pruned.0);
    Ok(super::LogStart {
        after_seq: after,
        lines_upto: pruned.1 + count_upto(after)?,
    })
}

/// The tenants a batch wrote to, each once (to prune after it).
pub(crate) fn tenants_of(lines: &[&NewLogLine]) -> Vec<TenantId> {
    let mut tenants: Vec<TenantId> = lines.iter().map(|l| l.tenant.clone()).collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

/// A stored name back into its type.
pub(crate) fn name<T: TryFrom<String, Error = String>>(s: String) -> StoreResult<T> {
    T::try_from(s).map_err(|e| StoreError::Backend(format!("stored log row is invalid: {e}")))
}

/// The app a stored line or tail names.
pub(crate) fn app_name(s: String) -> StoreResult<AppName> {
    name(s)
}
