//! A component app's versions: uploads (validated, compiled or matched to
//! an artifact compiled before, stored), deletion, deploys and rollbacks.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_common::api::{
    Activated, Deploy, Rollback, Uploaded, Version, VersionDeleted, VersionList,
};
use edge_common::names::{AppName, TenantId};
use edge_common::signing::sha256_hex;
use edge_common::sync::ArtifactRef;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;

use super::apps::component_app;
use super::http::{ApiResult, json_response, read_json, read_json_or_default};
use super::state::ApiState;
use super::tenants::check_quota;
use crate::error::ApiError;
use crate::store::{NewVersion, StoreError, VersionRecord};
use crate::uploads::{BodyError, BodyPace};

/// Uploaded versions kept per app: each keeps its source and artifact on
/// disk, so a tenant cannot grow storage without bound.
pub const MAX_VERSIONS_PER_APP: usize = 100;

/// How long an upload waits for one of the global slots (within its
/// tenant's share) before 503 `busy`.
const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(30);

impl From<VersionRecord> for Version {
    fn from(record: VersionRecord) -> Self {
        Self {
            version: record.version,
            source_sha256: record.source_sha256,
            source_size: record.source_size,
            artifact: record.artifact,
            created_unix: record.created_unix,
        }
    }
}

/// `GET /v1/apps/{app}/versions`.
pub async fn list(state: &ApiState, tenant: &TenantId, name: &AppName) -> ApiResult {
    let versions = state.store.list_versions(tenant, name).await?;
    Ok(json_response(
        StatusCode::OK,
        &VersionList {
            versions: versions.into_iter().map(Version::from).collect(),
        },
    ))
}

/// `DELETE /v1/apps/{app}/versions/{n}`: an inactive version.
pub async fn delete(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    number: &str,
) -> ApiResult {
    let version = number
        .parse::<u64>()
        .map_err(|_| ApiError::not_found(format!("version {number} not found")))?;
    state
        .store
        .delete_version(tenant, name, version)
        .await
        .map_err(|e| match e {
            StoreError::Exists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "version-active",
                format!("version {version} is active; deploy another one first"),
            ),
            other => other.into(),
        })?;
    state.gc.trigger();
    Ok(json_response(
        StatusCode::OK,
        &VersionDeleted { deleted: version },
    ))
}

/// `POST /v1/apps/{app}/deploy`.
pub async fn deploy(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    component_app(state, tenant, name).await?;
    let body: Deploy = read_json(req).await?;
    activate(state, tenant, name, body.version).await
}

/// `POST /v1/apps/{app}/rollback`: to the named version, else to the one
/// deployed before the active one.
pub async fn rollback(
    state: &ApiState,
    tenant: &TenantId,
    name: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    component_app(state, tenant, name).await?;
    let body: Rollback = read_json_or_default(req).await?;
    let target = match body.to {
        Some(version) => version,
        None => previous_version(state, tenant, name).await?,
    };
    activate(state, tenant, name, target).await
}

/// `POST /v1/apps/{app}/versions`: stores the source, compiles it (or
/// reuses the artifact compiled from the same bytes for the same engine)
/// and records a new version.
pub async fn upload(
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
        let refused = if declared > limit {
            Err(BodyError::TooLarge { limit }.into())
        } else {
            check_quota(state, tenant, declared).await
        };
        if let Err(err) = refused {
            let mut req = req;
            crate::uploads::discard_briefly(req.body_mut()).await;
            return Err(err);
        }
    }
    // The tenant's share first (429 at once), then a global slot.
    let _slot = state.uploads.acquire(tenant, UPLOAD_SLOT_WAIT).await?;
    let pace = BodyPace {
        idle_timeout: settings.upload_idle_timeout,
        min_bytes_per_sec: settings.upload_min_bytes_per_sec,
        grace: settings.upload_rate_grace,
    };
    let receiving = Instant::now();
    let wasm = crate::uploads::read_body(req.into_body(), limit, pace)
        .await
        .inspect_err(|e| tracing::info!(%tenant, app = %name, error = %e, "upload cut"))?;
    state
        .metrics
        .upload_received(wasm.len() as u64, receiving.elapsed());
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
            let compiling = Instant::now();
            let compiled = state.compiler.compile(wasm.clone()).await;
            state
                .metrics
                .compiled(compiled.is_ok(), compiling.elapsed());
            let compiled = compiled?;
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
        &Uploaded {
            artifact: version.artifact,
            compile_ms: started.elapsed().as_millis() as u64,
            compiled,
            source_sha256: version.source_sha256,
            version: version.version,
        },
    ))
}

async fn activate(state: &ApiState, tenant: &TenantId, name: &AppName, version: u64) -> ApiResult {
    let revision = state.store.activate_version(tenant, name, version).await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %name, version, revision, "version activated");
    Ok(json_response(
        StatusCode::OK,
        &Activated { revision, version },
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
