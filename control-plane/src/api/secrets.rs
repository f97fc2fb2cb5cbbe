//! App secrets, write-only: a value goes in with `PUT`, is sealed with the
//! key-encryption keyring before it is stored, and comes out only in an
//! app's bundle, to a node (`GET /v1/secrets/{sha256}`). No answer here
//! holds a value, and no log line does either: handlers log names only,
//! and the API's request log prints method, path and status.
//!
//! Every change rebuilds the app's bundle (all its values under a new
//! random salt) and stores it with the change, so the snapshot can name
//! the bundle's digest: a change built from a bundle another change
//! replaced meanwhile is refused by the store and built again.

use std::collections::BTreeMap;

use bytes::Bytes;
use edge_common::api::{Revision, Secret, SecretList, SecretSet, SetSecret};
use edge_common::names::{AppName, TenantId};
use edge_common::secrets::{
    MAX_SECRET_VALUE_BYTES, MAX_SECRETS_BUNDLE_BYTES, MAX_SECRETS_PER_APP, SecretsBundle,
    is_valid_key,
};
use edge_common::signing::{is_sha256_hex, sha256_hex};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::apps::component_app;
use super::http::{ApiResult, internal, json_response, read_opaque_json};
use super::state::ApiState;
use crate::error::ApiError;
use crate::seal::secret_aad;
use crate::store::{AppSecrets, SecretBundleRecord, SecretRecord, SecretWrite, StoreError};

/// Times a change is built again after another change to the same app's
/// secrets came first (each retry reads the other's result, so only a
/// steady stream of concurrent writers exhausts them).
const WRITE_ATTEMPTS: usize = 5;

fn shown(record: &SecretRecord) -> Secret {
    Secret {
        name: record.name.clone(),
        created_unix: record.created_unix,
        updated_unix: record.updated_unix,
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if is_valid_key(name) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "secret-name-invalid",
        "secret names use 1-256 letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_` (the rule of config keys)",
    ))
}

/// `GET /v1/apps/{app}/secrets`: names and times, never values.
pub async fn list(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    let secrets = state.store.app_secrets(tenant, app).await?;
    Ok(json_response(
        StatusCode::OK,
        &SecretList {
            secrets: secrets.secrets.iter().map(shown).collect(),
        },
    ))
}

/// `PUT /v1/apps/{app}/secrets/{name}`: sets (or replaces) one value.
pub async fn set(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult {
    check_name(name)?;
    // Secrets are read by a component: an origin app has none.
    component_app(state, tenant, app).await?;
    let body: SetSecret = read_opaque_json(req).await?;
    if body.value.len() > MAX_SECRET_VALUE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "secret-too-large",
            format!(
                "a secret's value is {} bytes; the limit is {MAX_SECRET_VALUE_BYTES}",
                body.value.len()
            ),
        ));
    }
    let sealed = state
        .kek
        .seal(body.value.as_bytes(), &secret_aad(tenant, app, name))
        .map_err(internal)?;
    let (secret, revision) = write(state, tenant, app, name, Some((sealed, body.value))).await?;
    let secret = secret.ok_or_else(|| internal("the secret written was not read back"))?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %app, secret = name, revision, "secret set");
    Ok(json_response(
        StatusCode::OK,
        &SecretSet {
            secret: shown(&secret),
            revision,
        },
    ))
}

/// `DELETE /v1/apps/{app}/secrets/{name}`.
pub async fn delete(state: &ApiState, tenant: &TenantId, app: &AppName, name: &str) -> ApiResult {
    check_name(name)?;
    let (_, revision) = write(state, tenant, app, name, None).await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %app, secret = name, revision, "secret deleted");
    Ok(json_response(StatusCode::OK, &Revision { revision }))
}

/// Sets (`Some((sealed, value))`) or deletes one secret with the app's
/// new bundle, built again if another change came first.
async fn write(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    name: &str,
    value: Option<(Vec<u8>, String)>,
) -> Result<(Option<SecretRecord>, u64), ApiError> {
    let (sealed, value) = match value {
        Some((sealed, value)) => (Some(sealed), Some(value)),
        None => (None, None),
    };
    for _ in 0..WRITE_ATTEMPTS {
        let current = state.store.app_secrets(tenant, app).await?;
        let mut values = open_all(state, &current)?;
        match &value {
            Some(v) => {
                // Refused here with the store's own error (before the
                // bundle is built); the store counts again in its
                // transaction.
                if !values.contains_key(name) && values.len() as u64 >= MAX_SECRETS_PER_APP {
                    return Err(StoreError::SecretLimit {
                        app: app.to_string(),
                        max: MAX_SECRETS_PER_APP,
                    }
                    .into());
                }
                values.insert(name.to_string(), v.clone());
            }
            None => {
                if values.remove(name).is_none() {
                    return Err(ApiError::not_found(format!(
                        "secret {name} of app {app} not found"
                    )));
                }
            }
        }
        let bundle = if values.is_empty() {
            None
        } else {
            Some(build_bundle(values)?)
        };
        let change = SecretWrite {
            name: name.to_string(),
            sealed: sealed.clone(),
            expected_bundle: current.bundle.map(|b| b.sha256),
            bundle,
            max_per_app: MAX_SECRETS_PER_APP,
        };
        match state.store.write_secret(tenant, app, &change).await {
            Err(StoreError::SecretsChanged(_)) => continue,
            other => return Ok(other?),
        }
    }
    Err(StoreError::SecretsChanged(app.to_string()).into())
}

/// A new bundle of `values`, refused (413 `secrets-bundle-too-large`)
/// past what nodes take.
fn build_bundle(values: BTreeMap<String, String>) -> Result<SecretBundleRecord, ApiError> {
    let bundle = SecretsBundle::new(values).map_err(internal)?;
    let bytes = bundle.to_bytes();
    if bytes.len() as u64 > MAX_SECRETS_BUNDLE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "secrets-bundle-too-large",
            format!(
                "the app's secrets would take {} bytes together; the limit is {MAX_SECRETS_BUNDLE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let reference = SecretsBundle::reference(&bytes);
    Ok(SecretBundleRecord {
        salt: bundle.salt,
        sha256: reference.sha256,
        size: reference.size,
    })
}

/// Every value of the app, opened.
fn open_all(state: &ApiState, secrets: &AppSecrets) -> Result<BTreeMap<String, String>, ApiError> {
    secrets
        .secrets
        .iter()
        .map(|s| {
            let unavailable = |why: String| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "secret-unavailable",
                    format!("secret {} of app {} does not open: {why}", s.name, s.app),
                )
            };
            let plain = state
                .kek
                .open(&s.sealed, &secret_aad(&s.tenant, &s.app, &s.name))
                .map_err(|e| unavailable(e.to_string()))?;
            let value = String::from_utf8(plain).map_err(|_| unavailable("not UTF-8".into()))?;
            Ok((s.name.clone(), value))
        })
        .collect()
}

/// `GET /v1/secrets/{sha256}` (nodes): the bundle a snapshot names,
/// rebuilt from the rows and the stored salt and checked against its
/// digest before it is sent.
pub async fn bundle(state: &ApiState, digest: &str) -> ApiResult {
    if !is_sha256_hex(digest) {
        return Err(ApiError::bad_request(
            "invalid-digest",
            "secrets bundles are named by a lowercase hex SHA-256",
        ));
    }
    let not_found = || ApiError::not_found(format!("secrets bundle {digest} not found"));
    let secrets = state
        .store
        .secrets_by_bundle(digest)
        .await?
        .ok_or_else(not_found)?;
    let salt = secrets
        .bundle
        .as_ref()
        .map(|b| b.salt.clone())
        .ok_or_else(not_found)?;
    let values = open_all(state, &secrets)?;
    let bytes = SecretsBundle { salt, values }.to_bytes();
    if sha256_hex(&bytes) != digest {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "secrets-corrupt",
            format!(
                "the stored secrets of app {} do not match their bundle's digest",
                secrets.app
            ),
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        // Secret values: never kept by a cache between here and the node.
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(internal)
}
