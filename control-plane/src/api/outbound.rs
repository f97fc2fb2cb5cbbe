//! An app's outbound policy (`GET/PUT /v1/apps/{app}/outbound`) and its
//! tenant's caps on it (`GET/PUT /v1/tenants/{tenant}/limits`). The
//! destinations are parsed by `edge_common::outbound`, the parser a node
//! uses for its own config file, so what the API takes a node takes.

use ::http::{Method, Request, StatusCode};
use edge_common::api::{
    AppOutbound, Destination, OutboundPolicy, SetOutbound, SetTenantLimits, TenantLimits,
};
use edge_common::names::{AppName, TenantId};
use hyper::body::Incoming;

use super::ApiState;
use super::http::{ApiResult, json_response, read_json};
use crate::auth::Principal;
use crate::error::ApiError;

/// The largest cap an operator may give a tenant, either field: a policy
/// travels in every snapshot to every node and is scanned on each
/// subrequest, so it stays small whatever an operator types.
pub const MAX_TENANT_CAP: u32 = 1000;

fn parse_policy(body: SetOutbound) -> Result<AppOutbound, ApiError> {
    let allow = body
        .allow
        .into_iter()
        .map(|entry| {
            Destination::try_from(entry)
                .map_err(|e| ApiError::bad_request("outbound-destination-invalid", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppOutbound {
        allow,
        max_subrequests: body.max_subrequests,
    })
}

fn policy_view(
    app: &AppName,
    policy: AppOutbound,
    caps: &SetTenantLimits,
    revision: u64,
) -> OutboundPolicy {
    OutboundPolicy {
        app: app.clone(),
        effective_max_subrequests: caps.effective_subrequests(&policy),
        allow: policy.allow,
        max_subrequests: policy.max_subrequests,
        revision,
    }
}

/// `GET /v1/apps/{app}/outbound`.
pub async fn get(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    let policy = state.store.app_outbound(tenant, app).await?;
    let caps = state.store.tenant_limits(tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        &policy_view(app, policy, &caps, 0),
    ))
}

/// `PUT /v1/apps/{app}/outbound`: replaces the app's policy; `{"allow": []}`
/// clears it. Checked against the tenant's caps by the store, in the
/// transaction that writes it.
pub async fn set(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    let policy = parse_policy(read_json(req).await?)?;
    let revision = state.store.set_app_outbound(tenant, app, &policy).await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, %app, destinations = policy.allow.len(), revision, "outbound policy set");
    let caps = state.store.tenant_limits(tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        &policy_view(app, policy, &caps, revision),
    ))
}

/// `GET /v1/tenants/{tenant}/limits` (admin, or the tenant itself) and
/// `PUT` (admin).
pub async fn limits(
    state: &ApiState,
    principal: &Principal,
    method: &Method,
    tenant: &str,
    req: Request<Incoming>,
) -> ApiResult {
    let (tenant, change) = super::tenants::tenant_setting(principal, method, tenant, "limits")?;
    let caps = match change {
        false => state.store.tenant_limits(&tenant).await?,
        true => {
            let body: SetTenantLimits = read_json(req).await?;
            for (field, value) in [
                ("max_outbound_destinations", body.max_outbound_destinations),
                ("max_subrequests", body.max_subrequests),
            ] {
                if value.is_some_and(|v| v > MAX_TENANT_CAP) {
                    return Err(ApiError::bad_request(
                        "invalid-limits",
                        format!("{field} may be at most {MAX_TENANT_CAP}"),
                    ));
                }
            }
            // Each kv_* within 1 ..= the ceiling, named as the body names it.
            body.kv()
                .check()
                .map_err(|e| ApiError::bad_request("invalid-limits", e))?;
            let revision = state.store.set_tenant_limits(&tenant, &body).await?;
            state.hub.notify(revision);
            tracing::info!(%tenant, limits = ?body, "tenant limits set");
            body
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &TenantLimits::new(tenant, caps),
    ))
}
