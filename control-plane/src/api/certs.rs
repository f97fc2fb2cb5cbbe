//! Tenants' TLS certificates (uploaded, or requested from the ACME CA),
//! an app's HTTPS options, and the bundles nodes fetch. A private key goes
//! in with an upload, is sealed before it is stored, and comes out only in
//! a bundle, to a node.

use bytes::Bytes;
use edge_common::api::{
    Certificate, CertificateCreated, CertificateList, CertificateSource, HttpsSet,
    IssueCertificate, Revision, UploadCertificate,
};
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::signing::{is_sha256_hex, sha256_hex};
use edge_common::sync::{AppHttps, certificate_bundle};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::http::{ApiResult, internal, json_response, read_json, read_secret_json};
use super::state::ApiState;
use crate::certs;
use crate::error::ApiError;
use crate::seal::tls_key_aad;
use crate::store::{CertLimits, CertRecord, CertSource, NewCertificate, now_unix, tenant_hosts};

/// A certificate as the API shows it at `now_unix`: never its key, nor its
/// chain.
fn certificate(record: &CertRecord, now_unix: u64) -> Certificate {
    let material = record.material.as_ref();
    Certificate {
        id: record.id,
        app: record.app.clone(),
        hosts: record.hosts.clone(),
        source: match record.source {
            CertSource::Uploaded => CertificateSource::Uploaded,
            CertSource::Acme => CertificateSource::Acme,
        },
        status: record.status(now_unix),
        issuer: material.map(|m| m.issuer.clone()),
        not_before_unix: material.map(|m| m.not_before_unix),
        not_after_unix: material.map(|m| m.not_after_unix),
        next_attempt_unix: match record.source {
            CertSource::Uploaded => None,
            CertSource::Acme => record.next_attempt_unix,
        },
        attempts: record.attempts,
        last_error: record.last_error.clone(),
        created_unix: record.created_unix,
    }
}

fn created(status: StatusCode, record: &CertRecord, revision: u64) -> ApiResult {
    Ok(json_response(
        status,
        &CertificateCreated {
            certificate: certificate(record, now_unix()),
            revision,
        },
    ))
}

/// `GET /v1/apps/{app}/certificates`.
pub async fn list(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    state.store.get_app(tenant, app).await?;
    let now = now_unix();
    let records = state.store.list_certificates(tenant, app).await?;
    Ok(json_response(
        StatusCode::OK,
        &CertificateList {
            certificates: records.iter().map(|r| certificate(r, now)).collect(),
        },
    ))
}

/// `POST /v1/apps/{app}/certificates`: checked, its key sealed, stored,
/// and on every node with the next snapshot.
pub async fn upload(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    state.store.get_app(tenant, app).await?;
    let body: UploadCertificate = read_secret_json(req).await?;
    // Parsing an RSA key validates it (some milliseconds of CPU): off the
    // async workers.
    let UploadCertificate {
        chain_pem,
        key_pem,
        hosts,
    } = body;
    let checked =
        tokio::task::spawn_blocking(move || certs::check(&chain_pem, &key_pem, now_unix()))
            .await
            .map_err(internal)??;
    let hosts = certs::upload_hosts(
        &hosts,
        &checked.names,
        &tenant_hosts(state.store.as_ref(), tenant).await?,
    )?;
    let material = checked.seal(&state.kek, tenant, app)?;
    let (record, revision) = state
        .store
        .add_certificate(
            tenant,
            app,
            NewCertificate {
                hosts,
                source: CertSource::Uploaded,
                material: Some(material),
                next_attempt_unix: None,
            },
            &cert_limits(state),
        )
        .await?;
    state.hub.notify(revision);
    tracing::info!(
        %tenant, app = %app, id = record.id, hosts = %join(&record.hosts),
        not_after_unix = checked.not_after_unix, revision, "certificate uploaded"
    );
    created(StatusCode::CREATED, &record, revision)
}

/// `POST /v1/apps/{app}/certificates/acme`: a pending certificate the
/// ACME worker orders at once.
pub async fn issue(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    state.store.get_app(tenant, app).await?;
    if state.acme.is_none() {
        return Err(ApiError::bad_request(
            "acme-not-configured",
            "this control plane has no ACME CA (edge-cp serve --acme-directory): upload a certificate instead",
        ));
    }
    let body: IssueCertificate = read_json(req).await?;
    let hosts = certs::acme_hosts(
        &body.hosts,
        &tenant_hosts(state.store.as_ref(), tenant).await?,
    )?;
    let (record, revision) = state
        .store
        .add_certificate(
            tenant,
            app,
            NewCertificate {
                hosts,
                source: CertSource::Acme,
                material: None,
                next_attempt_unix: Some(now_unix()),
            },
            &cert_limits(state),
        )
        .await?;
    tracing::info!(%tenant, app = %app, id = record.id, hosts = %join(&record.hosts), "certificate requested from the ACME CA");
    state.acme_wake.notify_one();
    created(StatusCode::ACCEPTED, &record, revision)
}

/// `POST /v1/apps/{app}/certificates/{id}/renew`: an ACME certificate's
/// next order moved to now.
pub async fn renew(state: &ApiState, tenant: &TenantId, app: &AppName, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let record = state
        .store
        .list_certificates(tenant, app)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| not_found(id))?;
    if record.source != CertSource::Acme {
        return Err(ApiError::bad_request(
            "cert-not-acme",
            format!(
                "certificate {id} was uploaded: only ACME certificates are renewed; upload a new one instead"
            ),
        ));
    }
    let record = state
        .store
        .schedule_certificate(tenant, app, id, now_unix())
        .await?;
    let revision = state.store.revision().await?;
    tracing::info!(%tenant, app = %app, id, "certificate renewal requested");
    state.acme_wake.notify_one();
    created(StatusCode::ACCEPTED, &record, revision)
}

/// `DELETE /v1/apps/{app}/certificates/{id}`: off every node with the
/// next revision.
pub async fn delete(state: &ApiState, tenant: &TenantId, app: &AppName, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let revision = state.store.delete_certificate(tenant, app, id).await?;
    state.hub.notify(revision);
    tracing::info!(%tenant, app = %app, id, revision, "certificate deleted");
    Ok(json_response(StatusCode::OK, &Revision { revision }))
}

/// `GET /v1/certificates/{sha256}` (nodes): the bundle a snapshot names,
/// its key unsealed, its digest checked before it is sent.
pub async fn bundle(state: &ApiState, digest: &str) -> ApiResult {
    if !is_sha256_hex(digest) {
        return Err(ApiError::bad_request(
            "invalid-digest",
            "certificate bundles are named by a lowercase hex SHA-256",
        ));
    }
    let not_found = || ApiError::not_found(format!("certificate bundle {digest} not found"));
    let record = state
        .store
        .certificate_by_bundle(digest)
        .await?
        .ok_or_else(not_found)?;
    let material = record.material.as_ref().ok_or_else(not_found)?;
    let key = state
        .kek
        .open(
            &material.sealed_key,
            &tls_key_aad(&record.tenant, &record.app, &material.chain_pem),
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key-unavailable",
                format!("the key of certificate {} does not open: {e}", record.id),
            )
        })?;
    let key = String::from_utf8(key).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key-unavailable",
            format!("the key of certificate {} is not PEM", record.id),
        )
    })?;
    let bundle = certificate_bundle(&material.chain_pem, &key);
    drop(key);
    if sha256_hex(bundle.as_bytes()) != digest {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cert-corrupt",
            format!(
                "the stored certificate {} does not match its digest",
                record.id
            ),
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-pem-file")
        // A private key: never kept by a cache between here and the node.
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(bundle)))
        .map_err(internal)
}

/// `GET /v1/apps/{app}/https`.
pub async fn https(state: &ApiState, tenant: &TenantId, app: &AppName) -> ApiResult {
    let record = state.store.get_app(tenant, app).await?;
    Ok(json_response(
        StatusCode::OK,
        &HttpsSet {
            https: record.https,
            revision: record.updated_revision,
        },
    ))
}

/// `PUT /v1/apps/{app}/https`: replaces the app's HTTPS options.
pub async fn set_https(
    state: &ApiState,
    tenant: &TenantId,
    app: &AppName,
    req: Request<Incoming>,
) -> ApiResult {
    let https: AppHttps = read_json(req).await?;
    https
        .validate()
        .map_err(|e| ApiError::bad_request("invalid-hsts", e))?;
    let revision = state.store.set_app_https(tenant, app, &https).await?;
    state.hub.notify(revision);
    Ok(json_response(StatusCode::OK, &HttpsSet { https, revision }))
}

/// What one more certificate may not exceed; the store counts in the
/// transaction that adds it and refuses with `CertificateLimit` (409
/// `cert-limit`).
fn cert_limits(state: &ApiState) -> CertLimits {
    CertLimits {
        per_app: state.settings.max_certificates_per_app,
        per_tenant: state.settings.max_certificates_per_tenant,
        pending_acme_per_tenant: state.settings.max_pending_acme_certificates_per_tenant,
    }
}

/// Every hostname of every app of the tenant: what its certificates may
/// serve.
fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .map_err(|_| ApiError::not_found(format!("certificate {id:?} not found")))
}

fn not_found(id: u64) -> ApiError {
    ApiError::not_found(format!("certificate {id} not found"))
}

fn join(hosts: &[HostPattern]) -> String {
    hosts
        .iter()
        .map(HostPattern::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
