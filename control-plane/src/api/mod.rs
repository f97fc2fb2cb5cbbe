//! The HTTP API: routing by method and path, authentication and tenant
//! scoping here; one module per resource for the handlers, `http` for the
//! plumbing they share. Every body is a type of `edge_common::api`, the
//! ones `edgectl` speaks. Documented in README.md.

mod apps;
mod http;
mod nodes;
mod purge;
mod state;
mod status;
mod tenants;
mod versions;

use std::sync::Arc;
use std::time::Instant;

use ::http::{Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use edge_common::names::{AppName, TenantId};
use http_body_util::Full;
use hyper::body::Incoming;

pub use self::apps::{MAX_APPS_PER_TENANT, MAX_CONFIG_BYTES, MAX_CONFIG_KEYS};
pub use self::state::ApiState;
pub use self::versions::MAX_VERSIONS_PER_APP;
pub use crate::settings::{ApiSettings, MAX_CONCURRENT_UPLOADS};

use self::http::{ApiResult, Query, text};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

pub async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    // A refusal may be sent before the request body was read (an upload to
    // an app that does not exist, an oversized one). HTTP/1 cannot reuse the
    // connection then, so say so; otherwise a client would send its next
    // request on a connection the server is about to close.
    let http1_with_body = req.version() < ::http::Version::HTTP_2
        && (req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"));
    let mut response = route(&state, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    if http1_with_body && !response.status().is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "api");
    response
}

async fn route(state: &ApiState, req: Request<Incoming>) -> ApiResult {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    if method == Method::GET && segments == ["healthz"] {
        return Ok(text(StatusCode::OK, "ok\n"));
    }
    if segments.first() != Some(&"v1") {
        return Err(ApiError::not_found(format!("no such endpoint: {path}")));
    }
    let principal = state.auth.verify(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    let query = Query::parse(req.uri().query());
    let node_or_admin = [Role::Node, Role::Admin];
    match (&method, &segments[1..]) {
        (&Method::GET, ["whoami"]) => tenants::whoami(&principal),
        (&Method::GET, ["sync"]) => {
            require(&principal, &node_or_admin)?;
            nodes::sync(state, &principal, &query).await
        }
        (&Method::GET, ["sync", "key"]) => {
            require(&principal, &node_or_admin)?;
            nodes::key(state)
        }
        (&Method::POST, ["sync", "report"]) => {
            require(&principal, &[Role::Node])?;
            nodes::report(state, &principal, req).await
        }
        (&Method::GET, ["artifacts", digest]) => {
            require(&principal, &node_or_admin)?;
            nodes::artifact(state, digest).await
        }
        (&Method::GET, ["nodes"]) => {
            require(&principal, &[Role::Admin])?;
            nodes::list(state).await
        }
        (&Method::GET, ["tenants"]) => {
            require(&principal, &[Role::Admin])?;
            tenants::list(state).await
        }
        (&Method::POST, ["tenants"]) => {
            require(&principal, &[Role::Admin])?;
            tenants::create(state, req).await
        }
        (_, ["tenants", tenant, "quota"]) => {
            tenants::quota(state, &principal, &method, tenant, req).await
        }
        (_, ["apps", rest @ ..]) => {
            let tenant = scope(state, &principal, &query).await?;
            route_apps(state, &principal, &tenant, &method, rest, req).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no such endpoint: {method} {path}"),
        )),
    }
}

/// `/v1/apps/...`, once the tenant is known.
async fn route_apps(
    state: &ApiState,
    principal: &Principal,
    tenant: &TenantId,
    method: &Method,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult {
    let (name, rest) = match (method, rest) {
        (&Method::GET, []) => return apps::list(state, tenant).await,
        (&Method::POST, []) => return apps::create(state, tenant, req).await,
        (_, [name, rest @ ..]) => {
            let name = AppName::try_from(name.to_string())
                .map_err(|e| ApiError::not_found(format!("app not found ({e})")))?;
            (name, rest)
        }
        _ => return Err(ApiError::not_found("no such endpoint")),
    };
    let name = &name;
    match (method, rest) {
        (&Method::GET, []) => apps::get(state, tenant, name).await,
        (&Method::DELETE, []) => apps::delete(state, tenant, name).await,
        (&Method::PUT, ["origin"]) => apps::set_origin(state, tenant, name, req).await,
        (&Method::GET, ["config"]) => apps::config(state, tenant, name).await,
        (&Method::PATCH, ["config"]) => apps::update_config(state, tenant, name, req).await,
        (&Method::GET, ["limits"]) => apps::limits(state, tenant, name).await,
        (&Method::PUT, ["limits"]) => apps::set_limits(state, principal, tenant, name, req).await,
        (&Method::GET, ["versions"]) => versions::list(state, tenant, name).await,
        (&Method::POST, ["versions"]) => versions::upload(state, tenant, name, req).await,
        (&Method::DELETE, ["versions", number]) => {
            versions::delete(state, tenant, name, number).await
        }
        (&Method::POST, ["deploy"]) => versions::deploy(state, tenant, name, req).await,
        (&Method::POST, ["rollback"]) => versions::rollback(state, tenant, name, req).await,
        (&Method::GET, ["status"]) => status::status(state, tenant, name).await,
        (&Method::POST, ["purge"]) => purge::purge(state, tenant, name, req).await,
        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

/// The tenant a request acts on: a tenant token's own (naming another one
/// is refused), or for an admin the `tenant` query parameter.
async fn scope(
    state: &ApiState,
    principal: &Principal,
    query: &Query,
) -> Result<TenantId, ApiError> {
    let named = query
        .get("tenant")
        .map(|t| {
            TenantId::try_from(t.to_string())
                .map_err(|e| ApiError::bad_request("invalid-tenant", e))
        })
        .transpose()?;
    let tenant = match (principal.role, &principal.tenant, named) {
        (Role::Tenant, Some(own), Some(named)) if named != *own => {
            return Err(ApiError::forbidden(
                "a tenant token can only act on its own tenant",
            ));
        }
        (Role::Tenant, Some(own), _) => own.clone(),
        (Role::Admin, _, Some(named)) => named,
        (Role::Admin, _, None) => {
            return Err(ApiError::bad_request(
                "tenant-required",
                "an admin token must name the tenant: add ?tenant=ID",
            ));
        }
        _ => {
            return Err(ApiError::forbidden("this token's role cannot manage apps"));
        }
    };
    if !state.store.tenant_exists(&tenant).await? {
        return Err(ApiError::not_found(format!("tenant {tenant} not found")));
    }
    Ok(tenant)
}

fn require(principal: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this endpoint is not open to {:?} tokens",
            principal.role
        )))
    }
}
