//! Apps' outbound policies and tenants' caps on SQLite: the statements and
//! decisions of `outbound_rows`, run in the caller's transaction.

use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, TenantId};
use edge_common::outbound::AppOutbound;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{app_origin, backend, bump_revision};
use crate::store::cert_rows::{int, sqlite};
use crate::store::dump::{AppOutboundRow, TenantLimitsRow};
use crate::store::outbound_rows as rows;
use crate::store::{StoreError, StoreResult};

/// The app's stored policy, if it set one.
fn stored(tx: &Transaction<'_>, tenant: &str, app: &str) -> StoreResult<Option<AppOutbound>> {
    tx.query_row(&sqlite(rows::POLICY), params![tenant, app], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
    })
    .optional()
    .map_err(backend)?
    .map(|(allow, max)| rows::policy(&allow, max))
    .transpose()
}

/// A component app's policy; `OriginApp` for an origin app.
pub(super) fn get(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<AppOutbound> {
    if app_origin(tx, tenant, app)?.is_some() {
        return Err(StoreError::OriginApp(app.to_string()));
    }
    Ok(stored(tx, tenant.as_str(), app.as_str())?.unwrap_or_default())
}

pub(super) fn set(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    policy: &AppOutbound,
) -> StoreResult<u64> {
    if app_origin(tx, tenant, app)?.is_some() {
        return Err(StoreError::OriginApp(app.to_string()));
    }
    rows::within(policy, &caps(tx, tenant.as_str())?)?;
    let (t, a) = (tenant.as_str(), app.as_str());
    if policy.is_default() {
        tx.execute(&sqlite(rows::DELETE_POLICY), params![t, a])
            .map_err(backend)?;
    } else {
        tx.execute(
            &sqlite(rows::PUT_POLICY),
            params![t, a, rows::allow_column(policy)?, policy.max_subrequests],
        )
        .map_err(backend)?;
    }
    let revision = bump_revision(tx)?;
    tx.execute(&sqlite(rows::TOUCH_APP), params![t, a, int(revision)])
        .map_err(backend)?;
    Ok(revision)
}

/// The eight cap columns of `row` from `first` on.
fn limit_columns(row: &Row<'_>, first: usize) -> rusqlite::Result<SetTenantLimits> {
    let mut c = [None; 8];
    for (i, v) in c.iter_mut().enumerate() {
        *v = row.get(first + i)?;
    }
    Ok(rows::limits(c))
}

/// The tenant's caps (defaults without a row); does not check the tenant.
pub(super) fn caps(tx: &Transaction<'_>, tenant: &str) -> StoreResult<SetTenantLimits> {
    Ok(tx
        .query_row(&sqlite(rows::LIMITS), params![tenant], |row| {
            limit_columns(row, 0)
        })
        .optional()
        .map_err(backend)?
        .unwrap_or_default())
}

fn tenant_exists(tx: &Transaction<'_>, tenant: &TenantId) -> StoreResult<()> {
    tx.query_row(
        &sqlite(rows::TENANT_EXISTS),
        params![tenant.as_str()],
        |_| Ok(()),
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant}")))
}

pub(super) fn limits(tx: &Transaction<'_>, tenant: &TenantId) -> StoreResult<SetTenantLimits> {
    tenant_exists(tx, tenant)?;
    caps(tx, tenant.as_str())
}

pub(super) fn set_limits(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    limits: &SetTenantLimits,
) -> StoreResult<u64> {
    tenant_exists(tx, tenant)?;
    let policies = {
        let mut stmt = tx
            .prepare(&sqlite(rows::TENANT_POLICIES))
            .map_err(backend)?;
        stmt.query_map(params![tenant.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(backend)?
        .map(|r| {
            let (app, allow, max) = r.map_err(backend)?;
            Ok((app, rows::policy(&allow, max)?))
        })
        .collect::<StoreResult<Vec<_>>>()?
    };
    rows::not_below(limits, &policies)?;
    write_limits(tx, tenant.as_str(), limits)?;
    bump_revision(tx)
}

fn write_limits(tx: &Transaction<'_>, tenant: &str, limits: &SetTenantLimits) -> StoreResult<()> {
    if limits.is_default() {
        tx.execute(&sqlite(rows::DELETE_LIMITS), params![tenant])
    } else {
        tx.execute(
            &sqlite(rows::PUT_LIMITS),
            rusqlite::params_from_iter(
                std::iter::once(Value::from(tenant.to_string()))
                    .chain(rows::limit_params(limits).map(Value::from)),
            ),
        )
    }
    .map_err(backend)?;
    Ok(())
}

/// What a snapshot carries for a component app.
pub(super) fn for_snapshot(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<AppOutbound> {
    let policy = stored(tx, tenant.as_str(), app.as_str())?;
    if policy.is_none() {
        return Ok(AppOutbound::default());
    }
    Ok(rows::for_snapshot(policy, &caps(tx, tenant.as_str())?))
}

pub(super) fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> StoreResult<()> {
    tx.execute(
        &sqlite(rows::DELETE_POLICY),
        params![tenant.as_str(), app.as_str()],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn dump(
    tx: &Transaction<'_>,
) -> StoreResult<(Vec<AppOutboundRow>, Vec<TenantLimitsRow>)> {
    let mut stmt = tx.prepare(rows::ALL_POLICIES).map_err(backend)?;
    let policies = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })
        .map_err(backend)?
        .map(|r| {
            let (tenant, app, allow, max) = r.map_err(backend)?;
            AppOutboundRow::new(tenant, app, rows::policy(&allow, max)?)
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let mut stmt = tx.prepare(rows::ALL_LIMITS).map_err(backend)?;
    let limits = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, limit_columns(row, 1)?))
        })
        .map_err(backend)?
        .map(|r| {
            let (tenant, limits) = r.map_err(backend)?;
            TenantLimitsRow::new(tenant, limits)
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((policies, limits))
}

/// Writes a checked dump's rows.
pub(super) fn restore(
    tx: &Transaction<'_>,
    policies: &[AppOutboundRow],
    limits: &[TenantLimitsRow],
) -> StoreResult<()> {
    for p in policies {
        let policy = p.policy();
        tx.execute(
            &sqlite(rows::PUT_POLICY),
            params![
                p.tenant.as_str(),
                p.app.as_str(),
                rows::allow_column(&policy)?,
                policy.max_subrequests
            ],
        )
        .map_err(backend)?;
    }
    for l in limits {
        write_limits(tx, l.tenant.as_str(), &l.limits())?;
    }
    Ok(())
}
