//! Tenants and their storage quotas, and who a token says it is.

use edge_common::api::{NewTenant, Role, SetTenantQuota, Tenant, TenantList, TenantQuota, Whoami};
use edge_common::names::TenantId;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::http::{ApiResult, json_response, read_json};
use super::state::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{MAX_QUOTA_BYTES, QuotaExceeded, TenantRecord, TenantStorage};

impl From<TenantRecord> for Tenant {
    fn from(record: TenantRecord) -> Self {
        Self {
            id: record.id,
            created_unix: record.created_unix,
        }
    }
}

/// `GET /v1/whoami`.
pub fn whoami(principal: &Principal) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &Whoami {
            role: principal.role,
            subject: principal.subject.clone(),
            tenant: principal.tenant.clone(),
        },
    ))
}

/// `GET /v1/tenants`.
pub async fn list(state: &ApiState) -> ApiResult {
    let tenants = state.store.list_tenants().await?;
    Ok(json_response(
        StatusCode::OK,
        &TenantList {
            tenants: tenants.into_iter().map(Tenant::from).collect(),
        },
    ))
}

/// `POST /v1/tenants`.
pub async fn create(state: &ApiState, req: Request<Incoming>) -> ApiResult {
    let body: NewTenant = read_json(req).await?;
    let tenant = state.store.create_tenant(&body.id).await?;
    Ok(json_response(StatusCode::CREATED, &Tenant::from(tenant)))
}

/// `GET /v1/tenants/{tenant}/quota` (the tenant itself or an admin) and
/// `PUT` (admin only): the tenant's storage quota and usage.
pub async fn quota(
    state: &ApiState,
    principal: &Principal,
    method: &Method,
    tenant: &str,
    req: Request<Incoming>,
) -> ApiResult {
    let (tenant, change) = tenant_setting(principal, method, tenant, "quota")?;
    let storage = match change {
        false => state.store.tenant_storage(&tenant).await?,
        true => {
            let body: SetTenantQuota = read_json(req).await?;
            if body.storage_bytes.is_some_and(|q| q > MAX_QUOTA_BYTES) {
                return Err(ApiError::bad_request(
                    "invalid-quota",
                    format!("storage_bytes may be at most {MAX_QUOTA_BYTES}"),
                ));
            }
            let storage = state
                .store
                .set_tenant_quota(&tenant, body.storage_bytes)
                .await?;
            tracing::info!(%tenant, quota = ?body.storage_bytes, "storage quota set");
            storage
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &tenant_quota(state, tenant, storage),
    ))
}

fn tenant_quota(state: &ApiState, tenant: TenantId, storage: TenantStorage) -> TenantQuota {
    TenantQuota {
        tenant,
        storage_bytes: storage
            .quota_bytes
            .unwrap_or(state.settings.storage_quota_bytes),
        custom: storage.quota_bytes.is_some(),
        used_storage_bytes: storage.used_bytes,
    }
}

/// Refuses (413 `storage-quota-exceeded`) an upload of `adding` bytes that
/// would take the tenant over its quota. A check before the work: the
/// binding one is made again when the version is recorded.
pub async fn check_quota(state: &ApiState, tenant: &TenantId, adding: u64) -> Result<(), ApiError> {
    let quota = tenant_quota(
        state,
        tenant.clone(),
        state.store.tenant_storage(tenant).await?,
    );
    QuotaExceeded::check(
        tenant,
        quota.storage_bytes,
        quota.used_storage_bytes,
        adding,
    )?;
    Ok(())
}

/// Who may read and change a tenant's settings (`what`: its quota, its
/// limits): the tenant itself reads them, an operator (admin token) reads
/// and changes them. The tenant named, and whether this is a change (PUT)
/// rather than a read (GET).
pub(super) fn tenant_setting(
    principal: &Principal,
    method: &Method,
    tenant: &str,
    what: &str,
) -> Result<(TenantId, bool), ApiError> {
    let tenant = TenantId::try_from(tenant.to_string())
        .map_err(|e| ApiError::not_found(format!("tenant not found ({e})")))?;
    let admin = principal.role == Role::Admin;
    let own = principal.role == Role::Tenant && principal.tenant.as_ref() == Some(&tenant);
    match *method {
        Method::GET if admin || own => Ok((tenant, false)),
        Method::GET => Err(ApiError::forbidden(format!(
            "a tenant token can only see its own tenant's {what}"
        ))),
        Method::PUT if admin => Ok((tenant, true)),
        Method::PUT => Err(ApiError::forbidden(format!(
            "only an operator (admin token) may change a tenant's {what}"
        ))),
        _ => Err(ApiError::not_found("no such endpoint")),
    }
}
