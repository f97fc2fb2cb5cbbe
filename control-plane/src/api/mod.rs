//! The HTTP API: routing by method and path, authentication and tenant
//! scoping here; one module per resource for the handlers, `http` for the
//! plumbing they share. Every body is a type of `edge_common::api`, the
//! ones `edgectl` speaks. Documented in README.md.

mod apps;
mod certs;
mod compression;
mod http;
mod kv;
mod log_rates;
mod logs;
mod nodes;
mod outbound;
mod purge;
mod secrets;
mod state;
mod status;
mod tenants;
mod versions;

use std::sync::Arc;
use std::time::Instant;

use ::http::{Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use edge_common::names::{AppName, TenantId};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use self::apps::{MAX_APPS_PER_TENANT, MAX_CONFIG_BYTES, MAX_CONFIG_KEYS};
pub use self::kv::spawn_pruner as spawn_kv_pruner;
pub use self::log_rates::TAILS_PER_MINUTE as LOG_TAILS_PER_MINUTE;
pub use self::logs::{
    TAILS_PER_TENANT as LOG_TAILS_PER_TENANT, spawn_sweeper as spawn_log_sweeper,
};
pub use self::state::ApiState;
pub use self::versions::MAX_VERSIONS_PER_APP;
pub use crate::settings::{ApiSettings, MAX_CONCURRENT_UPLOADS};

use self::http::{ApiResult, Query, text};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// The label of requests that match no route (a template would be the
/// raw path, which a client chooses).
pub const OTHER_ROUTE: &str = "other";

/// What serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Healthz,
    Whoami,
    Sync,
    SyncKey,
    SyncReport,
    Artifact,
    Nodes,
    ListTenants,
    CreateTenant,
    Quota,
    ListApps,
    CreateApp,
    GetApp,
    DeleteApp,
    SetOrigin,
    GetConfig,
    UpdateConfig,
    GetLimits,
    SetLimits,
    ListVersions,
    Upload,
    DeleteVersion,
    Deploy,
    Rollback,
    Status,
    Purge,
    CertBundle,
    ListCerts,
    UploadCert,
    IssueCert,
    RenewCert,
    DeleteCert,
    GetHttps,
    SetHttps,
    // Compression at the edge (issue 17).
    GetCompression,
    SetCompression,
    // App secrets (issue 15): write-only for tenants, bundles for nodes.
    SecretBundle,
    ListSecrets,
    SetSecret,
    DeleteSecret,
    // Outbound through the API (issue 15).
    GetOutbound,
    SetOutbound,
    TenantLimits,
    // Live logs (issue 15): nodes post lines, tenants follow them.
    PostLogs,
    AppLogs,
    // Key-value stores (issue 16): nodes write and follow the change
    // stream; tenants manage stores, links and entries.
    KvWrite,
    KvSync,
    ListKv,
    CreateKv,
    DropKv,
    KvKeys,
    KvEntry,
    AppKv,
    LinkKv,
    UnlinkKv,
}

/// Every route of the API: `METHOD /path` (`*`: any method, the handler
/// answers the ones it does not take; `{name}`: one path segment) and what
/// serves it. The template is also the `route` label of the API's metrics,
/// so the label set is this table and [`OTHER_ROUTE`].
const ROUTES: &[(&str, Endpoint)] = &[
    ("GET /healthz", Endpoint::Healthz),
    ("GET /v1/whoami", Endpoint::Whoami),
    ("GET /v1/sync", Endpoint::Sync),
    ("GET /v1/sync/key", Endpoint::SyncKey),
    ("POST /v1/sync/report", Endpoint::SyncReport),
    ("GET /v1/artifacts/{sha256}", Endpoint::Artifact),
    ("GET /v1/nodes", Endpoint::Nodes),
    ("GET /v1/tenants", Endpoint::ListTenants),
    ("POST /v1/tenants", Endpoint::CreateTenant),
    ("* /v1/tenants/{tenant}/quota", Endpoint::Quota),
    ("GET /v1/apps", Endpoint::ListApps),
    ("POST /v1/apps", Endpoint::CreateApp),
    ("GET /v1/apps/{app}", Endpoint::GetApp),
    ("DELETE /v1/apps/{app}", Endpoint::DeleteApp),
    ("PUT /v1/apps/{app}/origin", Endpoint::SetOrigin),
    ("GET /v1/apps/{app}/config", Endpoint::GetConfig),
    ("PATCH /v1/apps/{app}/config", Endpoint::UpdateConfig),
    ("GET /v1/apps/{app}/limits", Endpoint::GetLimits),
    ("PUT /v1/apps/{app}/limits", Endpoint::SetLimits),
    ("GET /v1/apps/{app}/versions", Endpoint::ListVersions),
    ("POST /v1/apps/{app}/versions", Endpoint::Upload),
    (
        "DELETE /v1/apps/{app}/versions/{version}",
        Endpoint::DeleteVersion,
    ),
    ("POST /v1/apps/{app}/deploy", Endpoint::Deploy),
    ("POST /v1/apps/{app}/rollback", Endpoint::Rollback),
    ("GET /v1/apps/{app}/status", Endpoint::Status),
    ("POST /v1/apps/{app}/purge", Endpoint::Purge),
    ("GET /v1/certificates/{sha256}", Endpoint::CertBundle),
    ("GET /v1/apps/{app}/certificates", Endpoint::ListCerts),
    ("POST /v1/apps/{app}/certificates", Endpoint::UploadCert),
    ("POST /v1/apps/{app}/certificates/acme", Endpoint::IssueCert),
    (
        "POST /v1/apps/{app}/certificates/{id}/renew",
        Endpoint::RenewCert,
    ),
    (
        "DELETE /v1/apps/{app}/certificates/{id}",
        Endpoint::DeleteCert,
    ),
    ("GET /v1/apps/{app}/https", Endpoint::GetHttps),
    ("PUT /v1/apps/{app}/https", Endpoint::SetHttps),
    ("GET /v1/apps/{app}/compression", Endpoint::GetCompression),
    ("PUT /v1/apps/{app}/compression", Endpoint::SetCompression),
    ("GET /v1/secrets/{sha256}", Endpoint::SecretBundle),
    ("GET /v1/apps/{app}/secrets", Endpoint::ListSecrets),
    ("PUT /v1/apps/{app}/secrets/{name}", Endpoint::SetSecret),
    (
        "DELETE /v1/apps/{app}/secrets/{name}",
        Endpoint::DeleteSecret,
    ),
    ("GET /v1/apps/{app}/outbound", Endpoint::GetOutbound),
    ("PUT /v1/apps/{app}/outbound", Endpoint::SetOutbound),
    ("* /v1/tenants/{tenant}/limits", Endpoint::TenantLimits),
    ("POST /v1/logs", Endpoint::PostLogs),
    ("GET /v1/apps/{app}/logs", Endpoint::AppLogs),
    // Before `/v1/kv/{store}`: `sync` and `write` are reserved store names.
    ("POST /v1/kv/write", Endpoint::KvWrite),
    ("GET /v1/kv/sync", Endpoint::KvSync),
    ("GET /v1/kv", Endpoint::ListKv),
    ("POST /v1/kv", Endpoint::CreateKv),
    ("DELETE /v1/kv/{store}", Endpoint::DropKv),
    ("GET /v1/kv/{store}/keys", Endpoint::KvKeys),
    ("* /v1/kv/{store}/entry", Endpoint::KvEntry),
    ("GET /v1/apps/{app}/kv", Endpoint::AppKv),
    ("PUT /v1/apps/{app}/kv/{store}", Endpoint::LinkKv),
    ("DELETE /v1/apps/{app}/kv/{store}", Endpoint::UnlinkKv),
];

/// A request matched to its route: the template and the path's values for
/// its `{name}` segments, in order.
struct Matched<'p> {
    template: &'static str,
    endpoint: Endpoint,
    params: Vec<&'p str>,
}

impl Matched<'_> {
    fn param(&self, i: usize) -> &str {
        self.params.get(i).copied().unwrap_or("")
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

fn match_route<'p>(method: &Method, segments: &[&'p str]) -> Option<Matched<'p>> {
    ROUTES.iter().find_map(|&(template, endpoint)| {
        let (route_method, pattern) = template.split_once(' ')?;
        if route_method != "*" && route_method != method.as_str() {
            return None;
        }
        let pattern = self::segments(pattern);
        if pattern.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (expected, actual) in pattern.iter().zip(segments) {
            if expected.starts_with('{') {
                params.push(*actual);
            } else if expected != actual {
                return None;
            }
        }
        Some(Matched {
            template,
            endpoint,
            params,
        })
    })
}

/// The route template of a request (the `route` label), or
/// [`OTHER_ROUTE`].
pub fn route_template(method: &Method, path: &str) -> &'static str {
    match_route(method, &segments(path)).map_or(OTHER_ROUTE, |m| m.template)
}

/// Every route template, for documentation and tests.
pub fn route_templates() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|(template, _)| *template)
}

/// A response of the API: a whole body, or a follower's stream of log
/// lines (`GET /v1/apps/{app}/logs?follow=true`).
pub type ApiBody = http_body_util::Either<Full<Bytes>, logs::LogBody>;

pub async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<ApiBody> {
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
    let segments = segments(&path);
    let matched = match_route(&method, &segments);
    let template = matched.as_ref().map_or(OTHER_ROUTE, |m| m.template);
    let mut response = match matched {
        // Streams: answered apart from the rest, whose bodies are whole.
        Some(m) if m.endpoint == Endpoint::AppLogs => route_logs(&state, &m, req)
            .await
            .unwrap_or_else(|e| e.into_response().map(Either::Left)),
        matched => route(&state, matched, &segments, req)
            .await
            .unwrap_or_else(ApiError::into_response)
            .map(Either::Left),
    };
    if http1_with_body && !response.status().is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .api_request(template, response.status(), elapsed);
    tracing::debug!(%method, %path, route = template, status = response.status().as_u16(), ?elapsed, "api");
    response
}

async fn route(
    state: &ApiState,
    matched: Option<Matched<'_>>,
    segments: &[&str],
    req: Request<Incoming>,
) -> ApiResult {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if matched
        .as_ref()
        .is_some_and(|m| m.endpoint == Endpoint::Healthz)
    {
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
    let Some(matched) = matched else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no such endpoint: {method} {path}"),
        ));
    };
    let query = Query::parse(req.uri().query());
    let node_or_admin = [Role::Node, Role::Admin];
    match matched.endpoint {
        Endpoint::Healthz => Ok(text(StatusCode::OK, "ok\n")),
        Endpoint::Whoami => tenants::whoami(&principal),
        Endpoint::Sync => {
            require(&principal, &node_or_admin)?;
            nodes::sync(state, &principal, &query).await
        }
        Endpoint::SyncKey => {
            require(&principal, &node_or_admin)?;
            nodes::key(state)
        }
        Endpoint::SyncReport => {
            require(&principal, &[Role::Node])?;
            nodes::report(state, &principal, req).await
        }
        Endpoint::Artifact => {
            require(&principal, &node_or_admin)?;
            nodes::artifact(state, matched.param(0)).await
        }
        // Holds a private key: for nodes only.
        Endpoint::CertBundle => {
            require(&principal, &[Role::Node])?;
            certs::bundle(state, matched.param(0)).await
        }
        // Holds secret values: for nodes only.
        Endpoint::SecretBundle => {
            require(&principal, &[Role::Node])?;
            secrets::bundle(state, matched.param(0)).await
        }
        Endpoint::Nodes => {
            require(&principal, &[Role::Admin])?;
            nodes::list(state).await
        }
        Endpoint::ListTenants => {
            require(&principal, &[Role::Admin])?;
            tenants::list(state).await
        }
        Endpoint::CreateTenant => {
            require(&principal, &[Role::Admin])?;
            tenants::create(state, req).await
        }
        Endpoint::Quota => tenants::quota(state, &principal, &method, matched.param(0), req).await,
        Endpoint::TenantLimits => {
            outbound::limits(state, &principal, &method, matched.param(0), req).await
        }
        Endpoint::PostLogs => {
            require(&principal, &[Role::Node])?;
            logs::post_batch(state, &principal, req).await
        }
        // Every store of every tenant: for nodes only.
        Endpoint::KvWrite => {
            require(&principal, &[Role::Node])?;
            kv::write(state, req).await
        }
        Endpoint::KvSync => {
            require(&principal, &[Role::Node])?;
            kv::sync(state, &query).await
        }
        Endpoint::ListKv
        | Endpoint::CreateKv
        | Endpoint::DropKv
        | Endpoint::KvKeys
        | Endpoint::KvEntry => {
            let tenant = scope(state, &principal, &query).await?;
            let store = matched.param(0);
            match matched.endpoint {
                Endpoint::ListKv => kv::list(state, &tenant).await,
                Endpoint::CreateKv => kv::create(state, &tenant, req).await,
                Endpoint::DropKv => kv::drop_store(state, &tenant, store).await,
                Endpoint::KvKeys => kv::keys(state, &tenant, store, &query).await,
                _ => kv::entry(state, &tenant, store, &query, req).await,
            }
        }
        _ => {
            let tenant = scope(state, &principal, &query).await?;
            route_apps(state, &principal, &tenant, &matched, req).await
        }
    }
}

/// `GET /v1/apps/{app}/logs`: the tenant scoping of any app endpoint, then
/// the buffered lines or a follower's stream.
async fn route_logs(
    state: &Arc<ApiState>,
    matched: &Matched<'_>,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, ApiError> {
    let principal = state.auth.verify(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    let query = Query::parse(req.uri().query());
    let tenant = scope(state, &principal, &query).await?;
    let name = AppName::try_from(matched.param(0).to_string())
        .map_err(|e| ApiError::not_found(format!("app not found ({e})")))?;
    Ok(match logs::tail(state, &tenant, &name, &query).await? {
        logs::LogsAnswer::Buffered(response) => response.map(Either::Left),
        logs::LogsAnswer::Follow(response) => response.map(Either::Right),
    })
}

/// `/v1/apps/...`, once the tenant is known.
async fn route_apps(
    state: &ApiState,
    principal: &Principal,
    tenant: &TenantId,
    matched: &Matched<'_>,
    req: Request<Incoming>,
) -> ApiResult {
    match matched.endpoint {
        Endpoint::ListApps => return apps::list(state, tenant).await,
        Endpoint::CreateApp => return apps::create(state, tenant, req).await,
        _ => {}
    }
    let name = AppName::try_from(matched.param(0).to_string())
        .map_err(|e| ApiError::not_found(format!("app not found ({e})")))?;
    let name = &name;
    match matched.endpoint {
        Endpoint::GetApp => apps::get(state, tenant, name).await,
        Endpoint::DeleteApp => apps::delete(state, tenant, name).await,
        Endpoint::SetOrigin => apps::set_origin(state, tenant, name, req).await,
        Endpoint::GetConfig => apps::config(state, tenant, name).await,
        Endpoint::UpdateConfig => apps::update_config(state, tenant, name, req).await,
        Endpoint::GetLimits => apps::limits(state, tenant, name).await,
        Endpoint::SetLimits => apps::set_limits(state, principal, tenant, name, req).await,
        Endpoint::ListVersions => versions::list(state, tenant, name).await,
        Endpoint::Upload => versions::upload(state, tenant, name, req).await,
        Endpoint::DeleteVersion => versions::delete(state, tenant, name, matched.param(1)).await,
        Endpoint::Deploy => versions::deploy(state, tenant, name, req).await,
        Endpoint::Rollback => versions::rollback(state, tenant, name, req).await,
        Endpoint::Status => status::status(state, tenant, name).await,
        Endpoint::Purge => purge::purge(state, tenant, name, req).await,
        Endpoint::ListCerts => certs::list(state, tenant, name).await,
        Endpoint::UploadCert => certs::upload(state, tenant, name, req).await,
        Endpoint::IssueCert => certs::issue(state, tenant, name, req).await,
        Endpoint::RenewCert => certs::renew(state, tenant, name, matched.param(1)).await,
        Endpoint::DeleteCert => certs::delete(state, tenant, name, matched.param(1)).await,
        Endpoint::GetHttps => certs::https(state, tenant, name).await,
        Endpoint::SetHttps => certs::set_https(state, tenant, name, req).await,
        Endpoint::GetCompression => compression::get(state, tenant, name).await,
        Endpoint::SetCompression => compression::set(state, tenant, name, req).await,
        Endpoint::ListSecrets => secrets::list(state, tenant, name).await,
        Endpoint::SetSecret => secrets::set(state, tenant, name, matched.param(1), req).await,
        Endpoint::DeleteSecret => secrets::delete(state, tenant, name, matched.param(1)).await,
        Endpoint::GetOutbound => outbound::get(state, tenant, name).await,
        Endpoint::SetOutbound => outbound::set(state, tenant, name, req).await,
        Endpoint::AppKv => kv::links(state, tenant, name).await,
        Endpoint::LinkKv => kv::link(state, tenant, name, matched.param(1), true).await,
        Endpoint::UnlinkKv => kv::link(state, tenant, name, matched.param(1), false).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_by_template_never_by_raw_path() {
        let cases = [
            ("GET", "/healthz", "GET /healthz"),
            (
                "POST",
                "/v1/apps/shop/versions",
                "POST /v1/apps/{app}/versions",
            ),
            (
                "DELETE",
                "/v1/apps/shop/versions/7",
                "DELETE /v1/apps/{app}/versions/{version}",
            ),
            (
                "PUT",
                "/v1/tenants/acme/quota",
                "* /v1/tenants/{tenant}/quota",
            ),
            ("GET", "/v1/artifacts/abc", "GET /v1/artifacts/{sha256}"),
            (
                "GET",
                "/v1/certificates/abc",
                "GET /v1/certificates/{sha256}",
            ),
            (
                "POST",
                "/v1/apps/shop/certificates/acme",
                "POST /v1/apps/{app}/certificates/acme",
            ),
            (
                "POST",
                "/v1/apps/shop/certificates/7/renew",
                "POST /v1/apps/{app}/certificates/{id}/renew",
            ),
            (
                "DELETE",
                "/v1/apps/shop/certificates/7",
                "DELETE /v1/apps/{app}/certificates/{id}",
            ),
            ("GET", "/v1/apps/", "GET /v1/apps"),
            // Unknown paths and methods: one label, whatever the client sent.
            ("GET", "/v1/apps/shop/secret-admin", OTHER_ROUTE),
            ("PUT", "/v1/apps/shop/versions", OTHER_ROUTE),
            ("BREW", "/v1/apps", OTHER_ROUTE),
            ("GET", "/wp-login.php", OTHER_ROUTE),
            ("GET", "/", OTHER_ROUTE),
        ];
        for (method, path, template) in cases {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(route_template(&method, path), template, "{method} {path}");
        }
    }

    #[test]
    fn every_template_is_well_formed_and_matches_itself() {
        let mut seen = std::collections::HashSet::new();
        for template in route_templates() {
            assert!(seen.insert(template), "{template} twice");
            let (method, path) = template.split_once(' ').unwrap();
            assert!(path.starts_with('/'), "{template}");
            let method = if method == "*" { "GET" } else { method };
            let concrete = path.replace('{', "x").replace('}', "");
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(route_template(&method, &concrete), template);
        }
    }
}
