//! Apps: create, list, fetch and delete them, point an origin app
//! elsewhere, and set a component app's config values and any app's
//! limits.

use std::collections::{BTreeMap, HashSet};

use edge_common::AppLimits;
use edge_common::api::{
    App, AppConfig, AppList, ConfigChanges, NewApp, OriginSet, Revision, Role, SetOrigin,
};
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::origin::parse_origin;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::http::{ApiResult, json_response, read_json};
use super::state::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{AppOrigin, AppRecord, StoreError};

/// Config values per app, and their total size (keys + values): the same
/// bound the node applies to an app's environment.
pub const MAX_CONFIG_KEYS: usize = 128;
pub const MAX_CONFIG_BYTES: usize = 64 << 10;
/// Hostnames per app.
const MAX_HOSTS: usize = 32;
/// Apps per tenant: each keeps versions on disk, so a tenant cannot grow
/// storage without bound (see also `MAX_VERSIONS_PER_APP`).
pub const MAX_APPS_PER_TENANT: usize = 200;

impl From<AppRecord> for App {
    fn from(record: AppRecord) -> Self {
        let (origin, forward_override_headers) = match record.origin {
            Some(o) => (Some(o.url), Some(o.forward_override_headers)),
            None => (None, None),
        };
        Self {
            tenant: record.tenant,
            name: record.name,
            hosts: record.hosts,
            active_version: record.active_version,
            origin,
            forward_override_headers,
            config: record.config,
            limits: record.limits,
            created_unix: record.created_unix,
            updated_revision: record.updated_revision,
            https: record.https,
        }
    }
}

/// `GET /v1/apps`.
pub async fn list(state: &ApiState, tenant: &TenantId) -> ApiResult {
    let apps = state.store.list_apps(tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        &AppList {
            apps: apps.into_iter().map(App::from).collect(),
        },
    ))
}

/// `POST /v1/apps`: a component app, or with `origin` an origin app (live
/// at once).
pub async fn create(state: &ApiState, tenant: &TenantId, req: Request<Incoming>) -> ApiResult {
    let body: NewApp = read_json(req).await?;
    check_hosts(&body.hosts)?;
    let origin = match (&body.origin, body.forward_override_headers) {
        (Some(url), forward) => Some(AppOrigin {
            url: check_origin(url)?,
            forward_override_headers: forward.unwrap_or(false),
        }),
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "origin-only-field",
                "`forward_override_headers` is for origin apps only: add `origin`, or leave it out",
            ));
        }
        (None, None) => None,
    };
    if state.store.list_apps(tenant).await?.len() >= MAX_APPS_PER_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "app-limit",
            format!(
                "tenant {tenant} has {MAX_APPS_PER_TENANT} apps, the most allowed; delete one first"
            ),
        ));
    }
    let app = state
        .store
        .create_app(
            tenant,
            &body.name,
            &body.hosts,
            &AppLimits::default(),
            origin.as_ref(),
        )
        .await?;
    state.hub.notify(app.updated_revision);
    Ok(json_response(StatusCode::CREATED, &App::from(app)))
}

/// `GET /v1/apps/{app}`.
pub async fn get(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let app = state.store.get_app(tenant, name).await?;
    Ok(json_response(StatusCode::OK, &App::from(app)))
}

/// `DELETE /v1/apps/{app}`: off every node with the next revision; its
/// blobs are collected unless another version uses them.
pub async fn delete(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let revision = state.store.delete_app(tenant, name).await?;
    state.hub.notify(revision);
    state.gc.trigger();
    Ok(json_response(StatusCode::OK, &Revision { revision }))
}

/// `PUT /v1/apps/{app}/origin`: points an origin app elsewhere and, if
/// the body names it, sets its `forward_override_headers` (else kept).
pub async fn set_origin(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    let body: SetOrigin = read_json(req).await?;
    let url = check_origin(&body.origin)?;
    let (origin, revision) = state
        .store
        .set_origin(tenant, name, &url, body.forward_override_headers)
        .await?;
    state.hub.notify(revision);
    Ok(json_response(
        StatusCode::OK,
        &OriginSet {
            origin: origin.url,
            forward_override_headers: origin.forward_override_headers,
            revision,
        },
    ))
}

/// `GET /v1/apps/{app}/config`.
pub async fn config(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let app = state.store.get_app(tenant, name).await?;
    Ok(json_response(
        StatusCode::OK,
        &AppConfig { config: app.config },
    ))
}

/// `PATCH /v1/apps/{app}/config`.
pub async fn update_config(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    // Config values are a component's environment.
    let current = component_app(state, tenant, name).await?.config;
    let changes: ConfigChanges = read_json(req).await?;
    check_config(&current, &changes)?;
    let revision = state.store.update_config(tenant, name, &changes).await?;
    state.hub.notify(revision);
    Ok(json_response(StatusCode::OK, &Revision { revision }))
}

/// `GET /v1/apps/{app}/limits`.
pub async fn limits(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let app = state.store.get_app(tenant, name).await?;
    Ok(json_response(StatusCode::OK, &app.limits))
}

/// `PUT /v1/apps/{app}/limits` (admin only).
pub async fn set_limits(
    state: &ApiState,
    principal: &Principal,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    if principal.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only an operator (admin token) may change limits",
        ));
    }
    let limits: AppLimits = read_json(req).await?;
    limits
        .validate()
        .map_err(|e| ApiError::bad_request("invalid-limits", e.to_string()))?;
    let revision = state.store.set_limits(tenant, name, &limits).await?;
    state.hub.notify(revision);
    Ok(json_response(StatusCode::OK, &Revision { revision }))
}

/// The app, refused (409 `origin-app`) if it is an origin app: checked
/// before reading a body for what only a component app has (versions,
/// deploys, config values).
pub async fn component_app(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
) -> Result<AppRecord, ApiError> {
    let app = state.store.get_app(tenant, name).await?;
    if app.origin.is_some() {
        return Err(StoreError::OriginApp(name.to_string()).into());
    }
    Ok(app)
}

/// The origin as stored (scheme and host lowercased), or 400
/// `invalid-origin` saying what is wrong.
fn check_origin(origin: &str) -> Result<String, ApiError> {
    parse_origin(origin)
        .map_err(|e| ApiError::bad_request("invalid-origin", format!("origin: {e}")))
}

fn check_hosts(hosts: &[HostPattern]) -> Result<(), ApiError> {
    if hosts.is_empty() || hosts.len() > MAX_HOSTS {
        return Err(ApiError::bad_request(
            "invalid-hosts",
            format!("list 1 to {MAX_HOSTS} hostnames"),
        ));
    }
    if hosts.contains(&HostPattern::Any) {
        return Err(ApiError::bad_request(
            "invalid-hosts",
            "`*` (every hostname) cannot be claimed through the API",
        ));
    }
    if let Some(broad) = hosts.iter().find(|h| match h {
        HostPattern::Wildcard(suffix) => suffix.matches('.').count() < 2,
        _ => false,
    }) {
        return Err(ApiError::bad_request(
            "invalid-hosts",
            format!("{broad} is too broad: a wildcard needs at least two labels after `*.`"),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = hosts.iter().find(|h| !seen.insert(*h)) {
        return Err(ApiError::bad_request(
            "invalid-hosts",
            format!("hostname {dup} is listed twice"),
        ));
    }
    Ok(())
}

fn check_config(
    current: &BTreeMap<String, String>,
    changes: &ConfigChanges,
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid-config", m);
    for (key, value) in changes {
        // One rule for config keys and secret names: guests read both
        // through the same wasi:config store. A key stored before the rule
        // required a leading letter, digit or `_` may still be removed.
        let legacy_removal = value.is_none() && current.contains_key(key);
        if !edge_common::secrets::is_valid_key(key) && !legacy_removal {
            return Err(bad(format!(
                "config key `{key}`: use 1-256 letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_`"
            )));
        }
        if value.as_ref().is_some_and(|v| v.contains('\0')) {
            return Err(bad(format!("config value of `{key}` contains NUL")));
        }
    }
    let mut merged = current.clone();
    for (key, value) in changes {
        match value {
            Some(v) => merged.insert(key.clone(), v.clone()),
            None => merged.remove(key),
        };
    }
    let bytes: usize = merged.iter().map(|(k, v)| k.len() + v.len()).sum();
    if merged.len() > MAX_CONFIG_KEYS || bytes > MAX_CONFIG_BYTES {
        return Err(bad(format!(
            "config would hold {} values in {bytes} bytes; the limit is {MAX_CONFIG_KEYS} values and {MAX_CONFIG_BYTES} bytes",
            merged.len()
        )));
    }
    Ok(())
}
