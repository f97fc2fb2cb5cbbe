//! The tenants' certificates of a snapshot: each bundle (chain and key,
//! PEM) from the local copy if it is intact, else from the control plane
//! (`GET /v1/certificates/{sha256}`, the artifacts' auth and failover),
//! checked against the size and SHA-256 the signed snapshot names before
//! it is parsed or kept, and kept in `data_dir/certificates/` (0600) so a
//! node restarted without its control plane still serves HTTPS.
//!
//! A bad bundle (digest, size, PEM, a key that is not the leaf's) fails its
//! certificate alone: reported with its app like an app error, counted in
//! `edge_sync_failures_total{reason="certificate"}`; a certificate served
//! before under the same id keeps being served. Unchanged certificates are
//! not read again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edge_common::signing::{is_sha256_hex, sha256_hex};
use edge_common::sync::{AppError, MAX_CERTIFICATE_BUNDLE_BYTES, Snapshot, SnapshotCertificate};
use rustls::sign::CertifiedKey;

use super::{SyncError, Syncer};
use crate::certs::{CertResolver, CertSet, parse_bundle};
use crate::metrics::Metrics;

/// What a snapshot's certificates came to: the parsed key of each bundle
/// that could be had (by digest), and why the others could not.
#[derive(Default)]
pub struct FetchedCertificates {
    pub keys: HashMap<String, Arc<CertifiedKey>>,
    pub bad: HashMap<String, String>,
}

type Served = HashMap<u64, (SnapshotCertificate, Arc<CertifiedKey>)>;

/// The synced certificates being served, by control-plane id.
#[derive(Default)]
pub struct ServedCertificates {
    current: Served,
}

/// A snapshot's certificates, ready to swap in.
#[derive(Default)]
pub struct BuiltCertificates {
    served: Served,
    set: CertSet,
    pub failures: Vec<AppError>,
}

impl ServedCertificates {
    /// The parsed key of a bundle already served, so it is not read again.
    pub fn key(&self, sha256: &str) -> Option<Arc<CertifiedKey>> {
        self.current
            .values()
            .find(|(spec, _)| spec.bundle_sha256 == sha256)
            .map(|(_, key)| key.clone())
    }

    /// The bundles being served (their local copies stay).
    pub fn bundles(&self) -> impl Iterator<Item = &str> {
        self.current
            .values()
            .map(|(spec, _)| spec.bundle_sha256.as_str())
    }

    /// The certificate set of `snapshot`. A certificate whose bundle is bad
    /// keeps its previous version (same id), if any, and is reported.
    pub fn build(&self, snapshot: &Snapshot, fetched: &FetchedCertificates) -> BuiltCertificates {
        let mut built = BuiltCertificates::default();
        for spec in &snapshot.certificates {
            let sha = spec.bundle_sha256.as_str();
            let key = fetched.keys.get(sha).cloned().or_else(|| self.key(sha));
            let entry = match key {
                Some(key) => (spec.clone(), key),
                None => {
                    let why = fetched
                        .bad
                        .get(sha)
                        .map_or("its bundle was not fetched", String::as_str);
                    tracing::error!(tenant = %spec.tenant, app = %spec.app, cert = spec.id, error = why, "a certificate of the revision cannot be served; it keeps its previous version, if any");
                    built.failures.push(AppError {
                        tenant: spec.tenant.clone(),
                        app: spec.app.clone(),
                        error: format!("certificate {}: {why}", spec.id),
                    });
                    match self.current.get(&spec.id) {
                        Some(previous) => previous.clone(),
                        None => continue,
                    }
                }
            };
            built.served.insert(spec.id, entry);
        }
        for (spec, key) in built.served.values() {
            built
                .set
                .insert(&spec.hosts, key, (spec.not_after_unix, spec.id));
        }
        built
    }

    /// Serves `built` from now on: swaps the resolver's synced set and
    /// keeps the expiry series to the certificates served.
    pub fn install(
        &mut self,
        built: BuiltCertificates,
        resolver: &CertResolver,
        metrics: &Metrics,
    ) {
        resolver.replace_synced(built.set);
        for (id, (spec, _)) in &self.current {
            if built
                .served
                .get(id)
                .is_none_or(|(next, _)| next.tenant != spec.tenant || next.app != spec.app)
            {
                metrics.remove_certificate_expiry(
                    spec.tenant.as_str(),
                    spec.app.as_str(),
                    &id.to_string(),
                );
            }
        }
        for (id, (spec, _)) in &built.served {
            metrics.set_certificate_expiry(
                spec.tenant.as_str(),
                spec.app.as_str(),
                &id.to_string(),
                i64::try_from(spec.not_after_unix).unwrap_or(i64::MAX),
            );
        }
        self.current = built.served;
    }
}

impl Syncer {
    /// The parsed keys of the snapshot's certificates that are not served
    /// already: from disk when the copy is intact, else (with `download`)
    /// from the control plane, then written to disk. A transient failure
    /// (the connection, a 5xx) fails the round, to be tried again; a bad
    /// bundle fails its certificate.
    pub(super) async fn fetch_certificates(
        &self,
        snapshot: &Snapshot,
        download: bool,
    ) -> Result<FetchedCertificates, SyncError> {
        let mut fetched = FetchedCertificates::default();
        for spec in &snapshot.certificates {
            let sha = spec.bundle_sha256.as_str();
            let served = self
                .applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?
                .certificate_key(sha)
                .is_some();
            if served || fetched.keys.contains_key(sha) || fetched.bad.contains_key(sha) {
                continue;
            }
            let outcome = match self.local_certificate(spec) {
                Ok(bytes) => Ok(bytes),
                Err(why) if !download => Err(why),
                Err(_) => match self.download_certificate(spec).await? {
                    Ok(bytes) => {
                        self.local
                            .write_certificate(sha, &bytes)
                            .map_err(SyncError::Persist)?;
                        Ok(bytes)
                    }
                    Err(why) => Err(why),
                },
            };
            let parsed = outcome.and_then(|bytes| parse_bundle(&bytes).map_err(|e| e.to_string()));
            match parsed {
                Ok(loaded) => {
                    fetched.keys.insert(sha.to_string(), loaded.key);
                }
                Err(why) => {
                    self.metrics
                        .sync
                        .failures
                        .with_label_values(&["certificate"])
                        .inc();
                    fetched.bad.insert(sha.to_string(), why);
                }
            }
        }
        Ok(fetched)
    }

    /// The local copy of a bundle if it is there and intact, else why not.
    fn local_certificate(&self, spec: &SnapshotCertificate) -> Result<Vec<u8>, String> {
        check_named(spec)?;
        match self.local.read_certificate(&spec.bundle_sha256) {
            Ok(Some(bytes)) => verify_bundle(spec, &bytes).map(|()| bytes),
            Ok(None) => Err("missing from the local store".to_string()),
            Err(e) => Err(format!("cannot read it from the local store: {e}")),
        }
    }

    /// The bundle from the control plane: `Ok(Err(why))` when this bundle is
    /// bad or unknown there, `Err` when the exchange failed.
    async fn download_certificate(
        &self,
        spec: &SnapshotCertificate,
    ) -> Result<Result<Vec<u8>, String>, SyncError> {
        if let Err(why) = check_named(spec) {
            return Ok(Err(why));
        }
        let sha = &spec.bundle_sha256;
        let fetch_error = |message: String| SyncError::CertificateFetch {
            sha256: sha.clone(),
            message,
        };
        let mut response = self
            .request(reqwest::Method::GET, &format!("/v1/certificates/{sha}"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| fetch_error(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            let body = super::error_body(response).await;
            return Ok(Err(format!("the control plane has no such bundle: {body}")));
        }
        if !status.is_success() {
            let body = super::error_body(response).await;
            return Err(fetch_error(format!(
                "the control plane answered {}: {body}",
                status.as_u16()
            )));
        }
        let mut bytes = Vec::with_capacity(spec.bundle_size as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(e.to_string()))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > spec.bundle_size {
                return Ok(Err(format!(
                    "the control plane sent more than the {} bytes the snapshot names",
                    spec.bundle_size
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(verify_bundle(spec, &bytes).map(|()| bytes))
    }
}

/// What the snapshot says of a bundle before anything is fetched: a digest
/// that can name a file, and a size a node accepts.
fn check_named(spec: &SnapshotCertificate) -> Result<(), String> {
    if !is_sha256_hex(&spec.bundle_sha256) {
        return Err("the snapshot names its bundle with an invalid digest".into());
    }
    if spec.bundle_size > MAX_CERTIFICATE_BUNDLE_BYTES {
        return Err(format!(
            "its bundle of {} bytes is over the {MAX_CERTIFICATE_BUNDLE_BYTES}-byte limit",
            spec.bundle_size
        ));
    }
    Ok(())
}

/// The bundle is the one the signed snapshot names, byte for byte.
fn verify_bundle(spec: &SnapshotCertificate, bytes: &[u8]) -> Result<(), String> {
    let actual = sha256_hex(bytes);
    if bytes.len() as u64 != spec.bundle_size || actual != spec.bundle_sha256 {
        return Err(format!(
            "digest mismatch: got {} bytes hashing to {actual}; refusing to use it",
            bytes.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::OwnCertificates;

    fn bundle(name: &str) -> (String, Arc<CertifiedKey>) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let pem = edge_common::sync::certificate_bundle(
            &made.cert.pem(),
            &made.signing_key.serialize_pem(),
        );
        let key = parse_bundle(pem.as_bytes()).unwrap().key;
        (pem, key)
    }

    fn spec(id: u64, host: &str, pem: &str) -> SnapshotCertificate {
        SnapshotCertificate {
            id,
            tenant: "acme".to_string().try_into().unwrap(),
            app: "web".to_string().try_into().unwrap(),
            hosts: vec![host.to_string().try_into().unwrap()],
            bundle_sha256: sha256_hex(pem.as_bytes()),
            bundle_size: pem.len() as u64,
            not_after_unix: 1_000 + id,
        }
    }

    fn snapshot(certificates: Vec<SnapshotCertificate>) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "epoch": "e", "revision": 1, "created_unix": 0, "apps": [],
        }))
        .map(|mut s: Snapshot| {
            s.certificates = certificates;
            s
        })
        .unwrap()
    }

    #[test]
    fn a_bad_bundle_keeps_the_previous_version_and_gone_certificates_lose_their_series() {
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let resolver = CertResolver::new(OwnCertificates::default());
        let mut served = ServedCertificates::default();
        let (a_pem, a_key) = bundle("a.test");
        let (b_pem, b_key) = bundle("b.test");
        let first = snapshot(vec![spec(1, "a.test", &a_pem), spec(2, "b.test", &b_pem)]);
        let mut fetched = FetchedCertificates::default();
        fetched
            .keys
            .insert(sha256_hex(a_pem.as_bytes()), a_key.clone());
        fetched
            .keys
            .insert(sha256_hex(b_pem.as_bytes()), b_key.clone());
        let built = served.build(&first, &fetched);
        assert!(built.failures.is_empty());
        served.install(built, &resolver, &metrics);
        assert!(
            resolver
                .pick(Some("a.test"))
                .is_some_and(|k| Arc::ptr_eq(&k, &a_key))
        );
        let series = |id: &str| {
            metrics
                .registry
                .gather()
                .iter()
                .filter(|f| f.name() == "edge_tls_certificate_expiry_timestamp_seconds")
                .flat_map(|f| f.get_metric().to_vec())
                .find(|m| m.get_label().iter().any(|l| l.value() == id))
                .map(|m| m.get_gauge().get_value())
        };
        assert_eq!(series("1"), Some(1_001.0));

        // Certificate 1 renewed with a bundle that cannot be had; 2 deleted.
        let (renewed_pem, _) = bundle("a.test");
        let second = snapshot(vec![spec(1, "a.test", &renewed_pem)]);
        let mut fetched = FetchedCertificates::default();
        fetched
            .bad
            .insert(sha256_hex(renewed_pem.as_bytes()), "digest mismatch".into());
        let built = served.build(&second, &fetched);
        assert_eq!(built.failures.len(), 1);
        assert_eq!(built.failures[0].error, "certificate 1: digest mismatch");
        served.install(built, &resolver, &metrics);
        assert!(
            resolver
                .pick(Some("a.test"))
                .is_some_and(|k| Arc::ptr_eq(&k, &a_key))
        );
        assert!(resolver.pick(Some("b.test")).is_none());
        assert_eq!(series("1"), Some(1_001.0));
        assert_eq!(series("2"), None);
        // Served bundles are kept on disk; the bad one is not served.
        assert_eq!(
            served.bundles().collect::<Vec<_>>(),
            [sha256_hex(a_pem.as_bytes())]
        );
    }
}
