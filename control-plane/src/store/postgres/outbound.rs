//! Apps' outbound policies and tenants' caps on PostgreSQL: the statements
//! and decisions of `outbound_rows`, run in the caller's transaction as the
//! SQLite backend runs them (`store/sqlite/outbound.rs`).

use deadpool_postgres::Transaction;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, TenantId};
use edge_common::outbound::AppOutbound;

use super::{TxResult, app_origin, bump_revision};
use crate::store::StoreError;
use crate::store::cert_rows::int;
use crate::store::dump::{AppOutboundRow, TenantLimitsRow};
use crate::store::outbound_rows as rows;

/// The eight cap columns of `row` from `first` on.
fn limit_columns(row: &tokio_postgres::Row, first: usize) -> TxResult<SetTenantLimits> {
    let mut c = [None; 8];
    for (i, v) in c.iter_mut().enumerate() {
        *v = row.try_get(first + i)?;
    }
    Ok(rows::limits(c))
}

fn big(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

async fn stored(tx: &Transaction<'_>, tenant: &str, app: &str) -> TxResult<Option<AppOutbound>> {
    match tx.query_opt(rows::POLICY, &[&tenant, &app]).await? {
        None => Ok(None),
        Some(row) => {
            let allow: String = row.try_get(0)?;
            Ok(Some(rows::policy(&allow, row.try_get(1)?)?))
        }
    }
}

pub(super) async fn get(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<AppOutbound> {
    if app_origin(tx, tenant, app).await?.is_some() {
        return Err(StoreError::OriginApp(app.to_string()).into());
    }
    Ok(stored(tx, tenant.as_str(), app.as_str())
        .await?
        .unwrap_or_default())
}

pub(super) async fn set(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
    policy: &AppOutbound,
) -> TxResult<u64> {
    if app_origin(tx, tenant, app).await?.is_some() {
        return Err(StoreError::OriginApp(app.to_string()).into());
    }
    rows::within(policy, &caps(tx, tenant.as_str()).await?)?;
    let (t, a) = (tenant.as_str(), app.as_str());
    if policy.is_default() {
        tx.execute(rows::DELETE_POLICY, &[&t, &a]).await?;
    } else {
        let allow = rows::allow_column(policy)?;
        tx.execute(
            rows::PUT_POLICY,
            &[&t, &a, &allow, &big(policy.max_subrequests)],
        )
        .await?;
    }
    let revision = bump_revision(tx).await?;
    tx.execute(rows::TOUCH_APP, &[&t, &a, &int(revision)])
        .await?;
    Ok(revision)
}

pub(super) async fn caps(tx: &Transaction<'_>, tenant: &str) -> TxResult<SetTenantLimits> {
    Ok(match tx.query_opt(rows::LIMITS, &[&tenant]).await? {
        None => SetTenantLimits::default(),
        Some(row) => limit_columns(&row, 0)?,
    })
}

async fn tenant_exists(tx: &Transaction<'_>, tenant: &TenantId) -> TxResult<()> {
    match tx
        .query_opt(rows::TENANT_EXISTS, &[&tenant.as_str()])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant {tenant}")).into()),
    }
}

pub(super) async fn limits(tx: &Transaction<'_>, tenant: &TenantId) -> TxResult<SetTenantLimits> {
    tenant_exists(tx, tenant).await?;
    caps(tx, tenant.as_str()).await
}

pub(super) async fn set_limits(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    limits: &SetTenantLimits,
) -> TxResult<u64> {
    tenant_exists(tx, tenant).await?;
    let mut policies = Vec::new();
    for row in tx.query(rows::TENANT_POLICIES, &[&tenant.as_str()]).await? {
        let (app, allow): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        policies.push((app, rows::policy(&allow, row.try_get(2)?)?));
    }
    rows::not_below(limits, &policies)?;
    write_limits(tx, tenant.as_str(), limits).await?;
    bump_revision(tx).await
}

async fn write_limits(
    tx: &Transaction<'_>,
    tenant: &str,
    limits: &SetTenantLimits,
) -> TxResult<()> {
    if limits.is_default() {
        tx.execute(rows::DELETE_LIMITS, &[&tenant]).await?;
    } else {
        let c = rows::limit_params(limits);
        tx.execute(
            rows::PUT_LIMITS,
            &[
                &tenant, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7],
            ],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn for_snapshot(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<AppOutbound> {
    let policy = stored(tx, tenant.as_str(), app.as_str()).await?;
    if policy.is_none() {
        return Ok(AppOutbound::default());
    }
    Ok(rows::for_snapshot(
        policy,
        &caps(tx, tenant.as_str()).await?,
    ))
}

pub(super) async fn delete_of_app(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    app: &AppName,
) -> TxResult<()> {
    tx.execute(rows::DELETE_POLICY, &[&tenant.as_str(), &app.as_str()])
        .await?;
    Ok(())
}

pub(super) async fn dump(
    tx: &Transaction<'_>,
) -> TxResult<(Vec<AppOutboundRow>, Vec<TenantLimitsRow>)> {
    let mut policies = Vec::new();
    for row in tx.query(rows::ALL_POLICIES, &[]).await? {
        let (tenant, app, allow): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let policy = rows::policy(&allow, row.try_get(3)?)?;
        policies.push(AppOutboundRow::new(tenant, app, policy)?);
    }
    let mut limits = Vec::new();
    for row in tx.query(rows::ALL_LIMITS, &[]).await? {
        let tenant: String = row.try_get(0)?;
        limits.push(TenantLimitsRow::new(tenant, limit_columns(&row, 1)?)?);
    }
    Ok((policies, limits))
}

pub(super) async fn restore(
    tx: &Transaction<'_>,
    policies: &[AppOutboundRow],
    limits: &[TenantLimitsRow],
) -> TxResult<()> {
    for p in policies {
        let policy = p.policy();
        let allow = rows::allow_column(&policy)?;
        tx.execute(
            rows::PUT_POLICY,
            &[
                &p.tenant.as_str(),
                &p.app.as_str(),
                &allow,
                &big(policy.max_subrequests),
            ],
        )
        .await?;
    }
    for l in limits {
        write_limits(tx, l.tenant.as_str(), &l.limits()).await?;
    }
    Ok(())
}
