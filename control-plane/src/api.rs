//! The HTTP API: routing by method and path, authentication and tenant
//! scoping, and one handler per operation. Documented in README.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_common::AppLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::signing::{is_sha256_hex, sha256_hex};
use edge_common::sync::{ArtifactRef, NodeReport};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{Auth, Principal, Role};
use crate::compile::Compiler;
use crate::error::ApiError;
use crate::gc::BlobGc;
use crate::purge::PurgeLimiter;
pub use crate::settings::{ApiSettings, MAX_CONCURRENT_UPLOADS};
use crate::store::{
    AppOrigin, AppRecord, BlobStore, MAX_QUOTA_BYTES, MetaStore, NewVersion, QuotaExceeded,
    StoreError, TenantStorage, now_unix,
};
use crate::sync::SyncHub;
use crate::uploads::{BodyError, BodyPace, UploadSlots};
use crate::wire::{NewApp, OriginSet, SetOrigin, SetTenantQuota, TenantQuota};
use edge_common::origin::parse_origin;
use edge_common::sync::PurgeRequest;

/// Config values per app, and their total size (keys + values): the same
/// bound the node applies to an app's environment.
pub const MAX_CONFIG_KEYS: usize = 128;
pub const MAX_CONFIG_BYTES: usize = 64 << 10;
/// JSON request bodies (everything but uploads).
const MAX_JSON_BYTES: usize = 256 << 10;
/// Hostnames per app.
const MAX_HOSTS: usize = 32;
/// Apps per tenant, and uploaded versions kept per app: each version keeps
/// its source and artifact on disk, so a tenant cannot grow storage without
/// bound.
pub const MAX_APPS_PER_TENANT: usize = 200;
pub const MAX_VERSIONS_PER_APP: usize = 100;
/// A node's error report is cut to this.
const MAX_REPORT_ERROR_BYTES: usize = 4096;
/// App errors kept per node report.
const MAX_REPORTED_APP_ERRORS: usize = 1000;

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

pub struct ApiState {
    pub store: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub auth: Auth,
    pub compiler: Compiler,
    pub hub: SyncHub,
    pub settings: ApiSettings,
    /// Uploads being received at once, in all and per tenant
    /// (`settings.max_concurrent_uploads`, `upload_slots_per_tenant`):
    /// each is held in memory (up to `max_upload_bytes`) until compiled
    /// and stored.
    pub uploads: Arc<UploadSlots>,
    /// Each tenant's recent purges (`settings.purges_per_minute`).
    pub purges: PurgeLimiter,
    /// Deletes blobs no version references; woken after deletions.
    pub gc: BlobGc,
}

/// How long an upload waits for one of the global slots (within its
/// tenant's share) before 503 `busy`.
const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(30);

type ApiResult = Result<Response<Full<Bytes>>, ApiError>;

pub async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    // A refusal may be sent before the request body was read (an upload to
    // an app that does not exist, an oversized one). HTTP/1 cannot reuse the
    // connection then, so say so; otherwise a client would send its next
    // request on a connection the server is about to close.
    let http1_with_body = req.version() < http::Version::HTTP_2
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
    match (&method, &segments[1..]) {
        (&Method::GET, ["whoami"]) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "role": principal.role,
                "subject": principal.subject,
                "tenant": principal.tenant,
            }),
        )),
        (&Method::GET, ["sync"]) => sync(state, &principal, &query).await,
        (&Method::GET, ["sync", "key"]) => {
            require(&principal, &[Role::Node, Role::Admin])?;
            Ok(json_response(StatusCode::OK, &state.hub.key()))
        }
        (&Method::POST, ["sync", "report"]) => report(state, &principal, req).await,
        (&Method::GET, ["artifacts", digest]) => artifact(state, &principal, digest).await,
        (&Method::GET, ["nodes"]) => {
            require(&principal, &[Role::Admin])?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "nodes": state.store.nodes().await? }),
            ))
        }
        (&Method::GET, ["tenants"]) => {
            require(&principal, &[Role::Admin])?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "tenants": state.store.list_tenants().await? }),
            ))
        }
        (&Method::POST, ["tenants"]) => {
            require(&principal, &[Role::Admin])?;
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct NewTenant {
                id: TenantId,
            }
            let body: NewTenant = read_json(req).await?;
            let tenant = state.store.create_tenant(&body.id).await?;
            Ok(json_response(StatusCode::CREATED, &tenant))
        }
        (_, ["tenants", tenant, "quota"]) => quota(state, &principal, &method, tenant, req).await,
        (_, ["apps", rest @ ..]) => {
            let tenant = scope(state, &principal, &query).await?;
            apps(state, &principal, &tenant, &method, rest, req).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no such endpoint: {method} {path}"),
        )),
    }
}

async fn apps(
    state: &ApiState,
    principal: &Principal,
    tenant: &TenantId,
    method: &Method,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult {
    let store = &state.store;
    match (method, rest) {
        (&Method::GET, []) => Ok(json_response(
            StatusCode::OK,
            &json!({ "apps": store.list_apps(tenant).await? }),
        )),
        (&Method::POST, []) => create_app(state, tenant, req).await,
        (_, [name, rest @ ..]) => {
            let name = AppName::try_from(name.to_string())
                .map_err(|e| ApiError::not_found(format!("app not found ({e})")))?;
            app(state, principal, tenant, &name, method, rest, req).await
        }
        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

async fn app(
    state: &ApiState,
    principal: &Principal,
    tenant: &TenantId,
    name: &AppName,
    method: &Method,
    rest: &[&str],
    req: Request<Incoming>,
) -> ApiResult {
    let store = &state.store;
    match (method, rest) {
        (&Method::GET, []) => Ok(json_response(
            StatusCode::OK,
            &store.get_app(tenant, name).await?,
        )),
        (&Method::DELETE, []) => {
            let revision = store.delete_app(tenant, name).await?;
            state.hub.notify(revision);
            state.gc.trigger();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "revision": revision }),
            ))
        }
        (&Method::GET, ["versions"]) => Ok(json_response(
            StatusCode::OK,
            &json!({ "versions": store.list_versions(tenant, name).await? }),
        )),
        (&Method::POST, ["versions"]) => upload(state, tenant, name, req).await,
        (&Method::DELETE, ["versions", number]) => {
            let version = number
                .parse::<u64>()
                .map_err(|_| ApiError::not_found(format!("version {number} not found")))?;
            store
                .delete_version(tenant, name, version)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::Exists(_) => ApiError::new(
                        StatusCode::CONFLICT,
                        "version-active",
                        format!("version {version} is active; deploy another one first"),
                    ),
                    other => other.into(),
                })?;
            state.gc.trigger();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "deleted": version }),
            ))
        }
        (&Method::POST, ["deploy"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Deploy {
                version: u64,
            }
            component_app(state, tenant, name).await?;
            let body: Deploy = read_json(req).await?;
            activate(state, tenant, name, body.version).await
        }
        (&Method::POST, ["rollback"]) => {
            #[derive(Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            struct Rollback {
                to: Option<u64>,
            }
            component_app(state, tenant, name).await?;
            let body: Rollback = read_json_or_default(req).await?;
            let target = match body.to {
                Some(version) => version,
                None => previous_version(state, tenant, name).await?,
            };
            activate(state, tenant, name, target).await
        }
        (&Method::GET, ["config"]) => Ok(json_response(
            StatusCode::OK,
            &json!({ "config": store.get_app(tenant, name).await?.config }),
        )),
        (&Method::PATCH, ["config"]) => {
            // Config values are a component's environment.
            let current = component_app(state, tenant, name).await?.config;
            let changes: BTreeMap<String, Option<String>> = read_json(req).await?;
            check_config(&current, &changes)?;
            let revision = store.update_config(tenant, name, &changes).await?;
            state.hub.notify(revision);
            Ok(json_response(
                StatusCode::OK,
                &json!({ "revision": revision }),
            ))
        }
        (&Method::GET, ["limits"]) => Ok(json_response(
            StatusCode::OK,
            &store.get_app(tenant, name).await?.limits,
        )),
        (&Method::PUT, ["limits"]) => {
            if principal.role != Role::Admin {
                return Err(ApiError::forbidden(
                    "only an operator (admin token) may change limits",
                ));
            }
            let limits: AppLimits = read_json(req).await?;
            limits
                .validate()
                .map_err(|e| ApiError::bad_request("invalid-limits", e.to_string()))?;
            let revision = store.set_limits(tenant, name, &limits).await?;
            state.hub.notify(revision);
            Ok(json_response(
                StatusCode::OK,
                &json!({ "revision": revision }),
            ))
        }
        (&Method::GET, ["status"]) => status(state, tenant, name).await,
        (&Method::POST, ["purge"]) => purge(state, tenant, name, req).await,
        (&Method::PUT, ["origin"]) => set_origin(state, tenant, name, req).await,
        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

/// `POST /v1/apps`: a component app, or with `origin` an origin app (live
/// at once).
async fn create_app(state: &ApiState, tenant: &TenantId, req: Request<Incoming>) -> ApiResult {
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
    Ok(json_response(StatusCode::CREATED, &app))
}

/// The origin as stored (scheme and host lowercased), or 400
/// `invalid-origin` saying what is wrong.
fn check_origin(origin: &str) -> Result<String, ApiError> {
    parse_origin(origin)
        .map_err(|e| ApiError::bad_request("invalid-origin", format!("origin: {e}")))
}

/// The app, refused (409 `origin-app`) if it is an origin app: checked
/// before reading a body for what only a component app has (versions,
/// deploys, config values).
async fn component_app(
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

/// `POST /v1/apps/{app}/purge`: validated, counted against the tenant's
/// rate, recorded (bumping the revision), and fanned out with the next
/// snapshot.
async fn purge(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    let body: serde_json::Value = read_json(req).await?;
    let request = PurgeRequest::from_json(body)
        .map_err(|e| ApiError::bad_request("invalid-purge", e.to_string()))?;
    if let Err(wait) = state.purges.try_acquire(tenant, Instant::now()) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "purge-rate-limited",
            format!(
                "tenant {tenant} made {} purges in the last minute, the most allowed; retry in {seconds} s",
                state.settings.purges_per_minute
            ),
        )
        .with_retry_after(seconds.max(1)));
    }
    let (purge, revision) = state
        .store
        .add_purge(tenant, name, &request.target, request.soft)
        .await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %name, id = purge.id, revision, target = ?purge.target, soft = purge.soft, "purge recorded");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "id": purge.id, "revision": revision }),
    ))
}

/// `GET /v1/tenants/{tenant}/quota` (the tenant itself or an admin) and
/// `PUT` (admin only): the tenant's storage quota and usage.
async fn quota(
    state: &ApiState,
    principal: &Principal,
    method: &Method,
    tenant: &str,
    req: Request<Incoming>,
) -> ApiResult {
    let tenant = TenantId::try_from(tenant.to_string())
        .map_err(|e| ApiError::not_found(format!("tenant not found ({e})")))?;
    let own = principal.role == Role::Tenant && principal.tenant.as_ref() == Some(&tenant);
    let storage = match *method {
        Method::GET => {
            if !own && principal.role != Role::Admin {
                return Err(ApiError::forbidden(
                    "a tenant token can only see its own tenant's quota",
                ));
            }
            state.store.tenant_storage(&tenant).await?
        }
        Method::PUT => {
            if principal.role != Role::Admin {
                return Err(ApiError::forbidden(
                    "only an operator (admin token) may change a quota",
                ));
            }
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
        _ => return Err(ApiError::not_found("no such endpoint")),
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
async fn check_quota(state: &ApiState, tenant: &TenantId, adding: u64) -> Result<(), ApiError> {
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

/// `PUT /v1/apps/{app}/origin`: points an origin app elsewhere and, if
/// the body names it, sets its `forward_override_headers` (else kept).
async fn set_origin(
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

/// Stores the source, compiles it (or reuses the artifact compiled from the
/// same bytes for the same engine) and records a new version.
async fn upload(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    // Refuse before reading a body for an app that is not there, that has
    // no component, or that has all the versions it may keep.
    component_app(state, tenant, name).await?;
    if state.store.list_versions(tenant, name).await?.len() >= MAX_VERSIONS_PER_APP {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "version-limit",
            format!(
                "app {name} has {MAX_VERSIONS_PER_APP} versions, the most kept; delete old ones (DELETE /v1/apps/{name}/versions/N)"
            ),
        ));
    }
    let settings = &state.settings;
    let limit = settings.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared {
        if declared > limit {
            return Err(BodyError::TooLarge { limit }.into());
        }
        check_quota(state, tenant, declared).await?;
    }
    // The tenant's share first (429 at once), then a global slot.
    let _slot = state.uploads.acquire(tenant, UPLOAD_SLOT_WAIT).await?;
    let pace = BodyPace {
        idle_timeout: settings.upload_idle_timeout,
        min_bytes_per_sec: settings.upload_min_bytes_per_sec,
        grace: settings.upload_rate_grace,
    };
    let wasm = crate::uploads::read_body(req.into_body(), limit, pace)
        .await
        .inspect_err(|e| tracing::info!(%tenant, app = %name, error = %e, "upload cut"))?;
    // Again from the real size, before the compile.
    check_quota(state, tenant, wasm.len() as u64).await?;
    let source_sha256 = sha256_hex(&wasm);
    let engine = state.compiler.engine_hash().to_string();
    let started = Instant::now();
    // Every blob the version will reference is stored or touched (made
    // young) before the version is recorded, so garbage collection leaves
    // it alone (see `gc`); a touch that finds a blob gone stores it again.
    let reusable = match state.store.find_artifact(&source_sha256, &engine).await? {
        Some(artifact) if state.blobs.touch(&artifact.sha256).await? => Some(artifact),
        _ => None,
    };
    let (artifact, compiled) = match reusable {
        Some(artifact) => {
            if !state.blobs.touch(&source_sha256).await? {
                state.blobs.put(wasm.clone()).await?;
            }
            (artifact, false)
        }
        None => {
            let compiled = state.compiler.compile(wasm.clone()).await?;
            let size = compiled.len() as u64;
            state.blobs.put(wasm.clone()).await?;
            let sha256 = state.blobs.put(Bytes::from(compiled)).await?;
            let artifact = ArtifactRef {
                sha256,
                size,
                engine,
            };
            state
                .store
                .record_artifact(&source_sha256, &artifact)
                .await?;
            (artifact, true)
        }
    };
    let version = state
        .store
        .add_version(
            tenant,
            name,
            &NewVersion {
                source_sha256,
                source_size: wasm.len() as u64,
                artifact,
            },
            settings.storage_quota_bytes,
        )
        .await?;
    tracing::info!(%tenant, app = %name, version = version.version, compiled, elapsed = ?started.elapsed(), "version uploaded");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "version": version.version,
            "source_sha256": version.source_sha256,
            "artifact": version.artifact,
            "compiled": compiled,
            "compile_ms": started.elapsed().as_millis() as u64,
        }),
    ))
}

async fn activate(state: &ApiState, tenant: &TenantId, name: &AppName, version: u64) -> ApiResult {
    let revision = state.store.activate_version(tenant, name, version).await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %name, version, revision, "version activated");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "version": version, "revision": revision }),
    ))
}

/// The version deployed before the active one (skipping redeploys of the
/// active version).
async fn previous_version(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
) -> Result<u64, ApiError> {
    let active = state.store.get_app(tenant, name).await?.active_version;
    let deployments = state.store.deployments(tenant, name).await?;
    deployments
        .iter()
        .rev()
        .map(|d| d.version)
        .find(|v| Some(*v) != active)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no-previous-version",
                format!("app {name} has no earlier deployed version to roll back to"),
            )
        })
}

/// The app's active version and, per node heard from recently, whether it
/// has applied the app's latest change.
async fn status(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let app = state.store.get_app(tenant, name).await?;
    let now = now_unix();
    let stale = state.settings.node_stale_after.as_secs();
    let target = app.updated_revision;
    let nodes: Vec<_> = state
        .store
        .nodes()
        .await?
        .into_iter()
        .filter(|n| now.saturating_sub(n.last_seen_unix) <= stale)
        .map(|n| {
            let applied = n.applied_revision.unwrap_or(0);
            // Only this app's own error is shown: other apps' failures
            // belong to other tenants.
            let app_error = n
                .app_errors
                .iter()
                .find(|e| e.tenant == *tenant && e.app == *name)
                .map(|e| e.error.clone());
            let rejected = n.rejected_revision.filter(|r| *r >= target && *r > applied);
            let (state, error) = if applied >= target {
                match app_error {
                    Some(error) => ("rejected", Some(error)),
                    None => ("applied", None),
                }
            } else if rejected.is_some() {
                // A whole revision refused (its signature did not verify).
                ("rejected", n.last_error.clone())
            } else {
                ("pending", None)
            };
            // A newer snapshot the node refused whole, whatever the app's
            // own revision: a wait for a later change than the app's (a
            // purge) fails on it.
            let refused = n
                .rejected_revision
                .filter(|r| *r > applied)
                .map(|r| json!({ "revision": r, "error": n.last_error }));
            json!({
                "node": n.node,
                "state": state,
                "applied_revision": n.applied_revision,
                "refused": refused,
                "error": error,
                "last_seen_unix": n.last_seen_unix,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": tenant,
            "app": name,
            "active_version": app.active_version,
            "origin": app.origin.as_ref().map(|o| &o.url),
            "hosts": app.hosts,
            "revision": target,
            "nodes": nodes,
        }),
    ))
}

async fn sync(state: &ApiState, principal: &Principal, query: &Query) -> ApiResult {
    require(principal, &[Role::Node, Role::Admin])?;
    let since = match query.get("since") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid-query", "`since` must be a revision number")
        })?,
    };
    let wait = match query.get("wait") {
        None => Duration::from_secs(30),
        Some(s) => humantime::parse_duration(s).map_err(|_| {
            ApiError::bad_request("invalid-query", "`wait` must be a duration such as 30s")
        })?,
    }
    .min(state.settings.max_sync_wait);
    if principal.role == Role::Node {
        state
            .store
            .touch_node(&principal.subject, now_unix())
            .await?;
    }
    let current = state.store.revision().await?;
    // The hub learns of changes made by this process at once; a poll also
    // re-reads the store so a revision written by another replica is seen.
    state.hub.notify(current);
    // A node that knows another epoch (the store was restored or
    // recreated), or a revision this store never reached, gets the current
    // state at once.
    let other_epoch = match query.get("epoch") {
        Some(epoch) if !epoch.is_empty() => epoch != state.store.epoch().await?,
        _ => false,
    };
    let answer_now = other_epoch || since != current;
    if !answer_now && !state.hub.wait_newer(since, wait).await {
        return Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .map_err(internal);
    }
    let (_, body) = state.hub.signed_snapshot().await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(internal)
}

async fn report(state: &ApiState, principal: &Principal, req: Request<Incoming>) -> ApiResult {
    require(principal, &[Role::Node])?;
    let mut report: NodeReport = read_json(req).await?;
    if let Some(error) = report.error.as_mut() {
        truncate_chars(error, MAX_REPORT_ERROR_BYTES);
    }
    truncate_chars(&mut report.engine, 64);
    report.app_errors.truncate(MAX_REPORTED_APP_ERRORS);
    for app_error in &mut report.app_errors {
        truncate_chars(&mut app_error.error, MAX_REPORT_ERROR_BYTES);
    }
    // A revision this store never reached (claimed by a snapshot whose
    // signature failed, say) would show as rejected forever.
    if report.revision > state.store.revision().await? {
        return Err(ApiError::bad_request(
            "invalid-report",
            format!("revision {} does not exist", report.revision),
        ));
    }
    if report.outcome == edge_common::sync::ApplyOutcome::Rejected {
        tracing::warn!(node = %principal.subject, revision = report.revision, error = ?report.error, "node rejected a revision");
    }
    state
        .store
        .record_node_report(&principal.subject, &report, now_unix())
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "recorded": true })))
}

async fn artifact(state: &ApiState, principal: &Principal, digest: &str) -> ApiResult {
    require(principal, &[Role::Node, Role::Admin])?;
    if !is_sha256_hex(digest) {
        return Err(ApiError::bad_request(
            "invalid-digest",
            "artifacts are named by a lowercase hex SHA-256",
        ));
    }
    if !state.store.is_artifact(digest).await? {
        return Err(ApiError::not_found(format!("artifact {digest} not found")));
    }
    let bytes = state
        .blobs
        .get(digest)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact {digest} not found")))?;
    // Never hand a node bytes that are not what the snapshot names (a
    // corrupted disk or a tampered bucket); the node checks again.
    let check = bytes.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_hex(&check))
        .await
        .map_err(internal)?;
    if actual != digest {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "blob-corrupt",
            format!("stored artifact {digest} does not match its digest"),
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(bytes))
        .map_err(internal)
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
    let mut seen = std::collections::HashSet::new();
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
    changes: &BTreeMap<String, Option<String>>,
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid-config", m);
    for (key, value) in changes {
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !key_ok {
            return Err(bad(format!(
                "config key `{key}`: use 1-256 letters, digits, `_`, `-` or `.`"
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

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_JSON_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    format!("JSON bodies are limited to {MAX_JSON_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request("body-read-failed", e.to_string())
            }
        })
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid-json", format!("invalid request body: {e}")))
}

async fn read_json_or_default<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid-json", format!("invalid request body: {e}")))
}

fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => internal(e).into_response(),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Query parameters, first occurrence wins. Values are not percent-decoded:
/// every parameter the API takes is plain ASCII.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Self(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .take(16)
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (pair.to_string(), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
