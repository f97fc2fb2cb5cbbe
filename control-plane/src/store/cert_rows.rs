//! A `certificates` row as both SQL backends read it, the one conversion
//! of it into a [`CertRecord`], and the certificates and challenges of a
//! snapshot: the backends differ in how they fetch columns, not in what a
//! row means or which names a tenant owns.

use std::collections::HashMap;

use edge_common::names::HostPattern;
use edge_common::sync::{AcmeChallenge, SnapshotCertificate};

use super::{CertMaterial, CertRecord, CertSource, OwnedHosts, StoreError, StoreResult};

/// The columns, in this order, every certificate query selects.
pub(crate) const CERT_COLUMNS: &str = "id, tenant, app, hosts, source, chain_pem, sealed_key, \
     bundle_sha256, bundle_size, issuer, not_before_unix, not_after_unix, last_error, attempts, \
     next_attempt_unix, created_unix, updated_unix";

/// [`CERT_COLUMNS`] as read, before any check.
pub(crate) struct CertColumns {
    pub id: i64,
    pub tenant: String,
    pub app: String,
    /// JSON array of host patterns.
    pub hosts: String,
    pub source: String,
    pub chain_pem: Option<String>,
    pub sealed_key: Option<Vec<u8>>,
    pub bundle_sha256: Option<String>,
    pub bundle_size: Option<i64>,
    pub issuer: Option<String>,
    pub not_before_unix: Option<i64>,
    pub not_after_unix: Option<i64>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_unix: Option<i64>,
    pub created_unix: i64,
    pub updated_unix: i64,
}

fn invalid(id: i64, what: &str) -> StoreError {
    StoreError::Backend(format!("stored certificate {id} is invalid: {what}"))
}

impl CertColumns {
    pub(crate) fn into_record(self) -> StoreResult<CertRecord> {
        let id = self.id;
        let material = match (
            self.chain_pem,
            self.sealed_key,
            self.bundle_sha256,
            self.bundle_size,
            self.issuer,
            self.not_before_unix,
            self.not_after_unix,
        ) {
            (
                Some(chain_pem),
                Some(sealed_key),
                Some(bundle_sha256),
                Some(bundle_size),
                Some(issuer),
                Some(not_before),
                Some(not_after),
            ) => Some(CertMaterial {
                chain_pem,
                sealed_key,
                bundle_sha256,
                bundle_size: bundle_size as u64,
                issuer,
                not_before_unix: not_before as u64,
                not_after_unix: not_after as u64,
            }),
            (None, None, None, None, None, None, None) => None,
            _ => return Err(invalid(id, "part of its material is missing")),
        };
        Ok(CertRecord {
            id: id as u64,
            tenant: self
                .tenant
                .try_into()
                .map_err(|e: String| invalid(id, &e))?,
            app: self.app.try_into().map_err(|e: String| invalid(id, &e))?,
            hosts: hosts_from_json(&self.hosts).map_err(|e| invalid(id, &e))?,
            source: CertSource::parse(&self.source)
                .ok_or_else(|| invalid(id, &format!("source {:?}", self.source)))?,
            material,
            last_error: self.last_error,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_unix: self.next_attempt_unix.map(|v| v as u64),
            created_unix: self.created_unix as u64,
            updated_unix: self.updated_unix as u64,
        })
    }
}

pub(crate) fn hosts_to_json(hosts: &[HostPattern]) -> StoreResult<String> {
    serde_json::to_string(hosts).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) fn hosts_from_json(text: &str) -> Result<Vec<HostPattern>, String> {
    serde_json::from_str(text).map_err(|e| format!("hosts: {e}"))
}

/// The material as column values (all `None` without material), in
/// [`CERT_COLUMNS`]' order from `chain_pem` to `not_after_unix`.
pub(crate) struct MaterialColumns<'a> {
    pub chain_pem: Option<&'a str>,
    pub sealed_key: Option<&'a [u8]>,
    pub bundle_sha256: Option<&'a str>,
    pub bundle_size: Option<i64>,
    pub issuer: Option<&'a str>,
    pub not_before_unix: Option<i64>,
    pub not_after_unix: Option<i64>,
}

impl<'a> MaterialColumns<'a> {
    /// Numbers are clamped to SQL's signed 64 bits (a `u64` above them is
    /// no real time or size).
    pub(crate) fn of(material: Option<&'a CertMaterial>) -> Self {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            chain_pem: material.map(|m| m.chain_pem.as_str()),
            sealed_key: material.map(|m| m.sealed_key.as_slice()),
            bundle_sha256: material.map(|m| m.bundle_sha256.as_str()),
            bundle_size: material.map(|m| int(m.bundle_size)),
            issuer: material.map(|m| m.issuer.as_str()),
            not_before_unix: material.map(|m| int(m.not_before_unix)),
            not_after_unix: material.map(|m| int(m.not_after_unix)),
        }
    }
}

/// Every tenant's hostnames for [`OwnedHosts`] lookups, from `(tenant,
/// host)` rows of the `hosts` table.
pub(crate) fn owned_by_tenant(
    rows: impl IntoIterator<Item = (String, String)>,
) -> StoreResult<HashMap<String, OwnedHosts>> {
    let mut owned: HashMap<String, OwnedHosts> = HashMap::new();
    for (tenant, host) in rows {
        let host = HostPattern::try_from(host)
            .map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))?;
        owned.entry(tenant).or_default().insert(host);
    }
    Ok(owned)
}

/// A certificate with material, as the snapshot query reads it.
pub(crate) struct SnapshotCertColumns {
    pub id: i64,
    pub tenant: String,
    pub app: String,
    pub hosts: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub not_after_unix: i64,
}

/// The snapshot query's columns, in [`SnapshotCertColumns`]' order; only
/// certificates with material (the query adds `WHERE .. IS NOT NULL`).
pub(crate) const SNAPSHOT_CERT_COLUMNS: &str =
    "id, tenant, app, hosts, bundle_sha256, bundle_size, not_after_unix";

/// What nodes serve: each certificate (rows in id order) with only the
/// hosts its tenant still owns, and without those left with none.
pub(crate) fn snapshot_certificates(
    rows: Vec<SnapshotCertColumns>,
    owned: &HashMap<String, OwnedHosts>,
) -> StoreResult<Vec<SnapshotCertificate>> {
    let none = OwnedHosts::new();
    let mut certificates = Vec::with_capacity(rows.len());
    for row in rows {
        let hosts = hosts_from_json(&row.hosts).map_err(|e| invalid(row.id, &e))?;
        let hosts = owned.get(&row.tenant).unwrap_or(&none).filter(&hosts);
        if hosts.is_empty() {
            continue;
        }
        certificates.push(SnapshotCertificate {
            id: row.id as u64,
            tenant: row
                .tenant
                .try_into()
                .map_err(|e: String| invalid(row.id, &e))?,
            app: row
                .app
                .try_into()
                .map_err(|e: String| invalid(row.id, &e))?,
            hosts,
            bundle_sha256: row.bundle_sha256,
            bundle_size: row.bundle_size as u64,
            not_after_unix: row.not_after_unix as u64,
        });
    }
    Ok(certificates)
}

/// The pending challenges nodes answer, from `(tenant, challenge)` rows in
/// (certificate, token) order: only for names the certificate's tenant
/// still owns, so no node answers for a name that changed hands during an
/// order.
pub(crate) fn snapshot_challenges(
    rows: Vec<(String, AcmeChallenge)>,
    owned: &HashMap<String, OwnedHosts>,
) -> Vec<AcmeChallenge> {
    rows.into_iter()
        .filter(|(tenant, challenge)| {
            let host = HostPattern::try_from(challenge.host.clone());
            match (owned.get(tenant), host) {
                (Some(owned), Ok(host)) => owned.owns(&host),
                _ => false,
            }
        })
        .map(|(_, challenge)| challenge)
        .collect()
}
