//! The tenants' certificates of a snapshot: each bundle (chain and key,
//! PEM) from the local copy if it is intact, else from the control plane
//! (`GET /v1/certificates/{sha256}`, the artifacts' auth and failover),
//! checked against the size and SHA-256 the signed snapshot names before
//! it is parsed or kept, and kept in `data_dir/certificates/` (0600) so a
//! node restarted without its control plane still serves HTTPS. Files are
//! read, written and parsed on the blocking pool, never on the async
//! workers that serve requests.
//!
//! A bad bundle (digest, size, PEM, a key that is not the leaf's, one the
//! control plane cannot open) fails its certificate alone: reported with
//! its app, counted in `edge_sync_failures_total{reason="certificate"}`.
//! A certificate served before under the same id keeps its previous key,
//! for the names of the new entry that the previous one listed too: a name
//! the control plane took away is never served on the strength of an old
//! bundle. Unchanged certificates are not read again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use edge_common::api::ErrorBody;
use edge_common::signing::sha256_hex;
use edge_common::sync::{AppError, MAX_CERTIFICATE_BUNDLE_BYTES, Snapshot, SnapshotCertificate};
use rustls::sign::CertifiedKey;

use super::local::LocalState;
use super::{Fetched, SyncError, Syncer};
use crate::certs::{CertResolver, CertSet, parse_bundle};
use crate::metrics::Metrics;

/// What a snapshot's certificates came to: the parsed key of each bundle
/// that could be had (by digest), and why the others could not.
#[derive(Default)]
pub struct FetchedCertificates {
    pub keys: HashMap<String, Arc<CertifiedKey>>,
    pub bad: HashMap<String, String>,
}

impl FetchedCertificates {
    fn add(&mut self, sha256: String, bytes: &[u8]) {
        match parse_bundle(bytes) {
            Ok(loaded) => {
                self.keys.insert(sha256, loaded.key);
            }
            Err(e) => {
                self.bad.insert(sha256, e.to_string());
            }
        }
    }
}

/// By control-plane id: the entry served (for a certificate whose new
/// bundle is bad, the previous entry's bundle, digest and notAfter with
/// the names both list) and its key.
type Served = HashMap<u64, (SnapshotCertificate, Arc<CertifiedKey>)>;

/// The synced certificates being served.
#[derive(Default)]
pub struct ServedCertificates {
    current: Served,
    /// The same keys by bundle digest, so a sync round asks for each of a
    /// snapshot's bundles in constant time.
    by_bundle: HashMap<String, Arc<CertifiedKey>>,
}

/// A snapshot's certificates, ready to swap in.
#[derive(Default)]
pub struct BuiltCertificates {
    served: Served,
    by_bundle: HashMap<String, Arc<CertifiedKey>>,
    set: CertSet,
    pub failures: Vec<AppError>,
}

impl ServedCertificates {
    /// The parsed key of a bundle already served, so it is not read again.
    pub fn key(&self, sha256: &str) -> Option<Arc<CertifiedKey>> {
        self.by_bundle.get(sha256).cloned()
    }

    /// The bundles being served (their local copies stay).
    pub fn bundles(&self) -> impl Iterator<Item = &str> {
        self.by_bundle.keys().map(String::as_str)
    }

    /// The certificate set of `snapshot`. A certificate whose bundle is bad
    /// is reported, and keeps its previous key (same id, tenant and app),
    /// if any, for the names the snapshot still gives it.
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
                    tracing::error!(tenant = %spec.tenant, app = %spec.app, cert = spec.id, error = why, "a certificate of the revision cannot be served; it keeps its previous key, if any, for the names it still has");
                    built.failures.push(AppError {
                        tenant: spec.tenant.clone(),
                        app: spec.app.clone(),
                        error: format!("certificate {}: {why}", spec.id),
                    });
                    match self
                        .current
                        .get(&spec.id)
                        .and_then(|old| still_served(old, spec))
                    {
                        Some(kept) => kept,
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
            built
                .by_bundle
                .insert(spec.bundle_sha256.clone(), key.clone());
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
        self.by_bundle = built.by_bundle;
    }
}

/// What stays served of `old` when its certificate's new entry `new` has
/// no usable bundle: the old key (and its bundle and notAfter, which are
/// true of that key) for the names both entries list. The control plane
/// checked the old key for the old names only; a name it took away (moved
/// to another tenant, say) goes at once. Nothing of another tenant or app.
fn still_served(
    (old, key): &(SnapshotCertificate, Arc<CertifiedKey>),
    new: &SnapshotCertificate,
) -> Option<(SnapshotCertificate, Arc<CertifiedKey>)> {
    if old.tenant != new.tenant || old.app != new.app {
        return None;
    }
    let hosts: Vec<_> = new
        .hosts
        .iter()
        .filter(|host| old.hosts.contains(host))
        .cloned()
        .collect();
    if hosts.is_empty() {
        return None;
    }
    Some((
        SnapshotCertificate {
            hosts,
            ..old.clone()
        },
        key.clone(),
    ))
}

impl Syncer {
    /// The parsed keys of the snapshot's certificates that are not served
    /// already: from disk when the copy is intact, else (with `download`)
    /// from the control plane, then written to disk. A transient failure
    /// (the connection, a 5xx other than a bundle the control plane
    /// cannot open) fails the round, to be tried again; a bad bundle fails
    /// its certificate.
    pub(super) async fn fetch_certificates(
        &self,
        snapshot: &Snapshot,
        download: bool,
    ) -> Result<FetchedCertificates, SyncError> {
        let needed: Vec<SnapshotCertificate> = {
            let applier = self
                .applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?;
            let mut seen = HashSet::new();
            snapshot
                .certificates
                .iter()
                .filter(|spec| {
                    applier.certificate_key(&spec.bundle_sha256).is_none()
                        && seen.insert(spec.bundle_sha256.as_str())
                })
                .cloned()
                .collect()
        };
        if needed.is_empty() {
            return Ok(FetchedCertificates::default());
        }
        let local = self.local.clone();
        let (mut fetched, missing) = super::off_workers("certificate", move || {
            let mut fetched = FetchedCertificates::default();
            let mut missing = Vec::new();
            for spec in needed {
                match local_certificate(&local, &spec) {
                    Ok(bytes) => fetched.add(spec.bundle_sha256, &bytes),
                    Err(why) => missing.push((spec, why)),
                }
            }
            (fetched, missing)
        })
        .await?;
        let mut downloaded = Vec::new();
        for (spec, why) in missing {
            let outcome = if download {
                self.download_certificate(&spec).await?
            } else {
                Err(why)
            };
            match outcome {
                Ok(bytes) => downloaded.push((spec.bundle_sha256, bytes)),
                Err(why) => {
                    fetched.bad.insert(spec.bundle_sha256, why);
                }
            }
        }
        if !downloaded.is_empty() {
            let local = self.local.clone();
            let more = super::off_workers("certificate", move || {
                let mut more = FetchedCertificates::default();
                for (sha, bytes) in downloaded {
                    local.write_certificate(&sha, &bytes)?;
                    more.add(sha, &bytes);
                }
                Ok::<_, std::io::Error>(more)
            })
            .await?
            .map_err(SyncError::Persist)?;
            fetched.keys.extend(more.keys);
            fetched.bad.extend(more.bad);
        }
        self.metrics
            .sync
            .failures
            .with_label_values(&["certificate"])
            .inc_by(fetched.bad.len() as u64);
        Ok(fetched)
    }

    /// The bundle from the control plane: `Ok(Err(why))` when this bundle is
    /// bad, unknown there or one it cannot open, `Err` when the exchange
    /// failed.
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
        let path = format!("/v1/certificates/{sha}");
        let size = spec.bundle_size;
        match (self.fetch_named(&path, size, Duration::from_secs(60), &fetch_error)).await? {
            Fetched::Bytes(bytes) => Ok(verify_bundle(spec, &bytes).map(|()| bytes)),
            Fetched::TooLong => Ok(Err(super::too_long(size))),
            Fetched::Refused { status, body } => match refusal_of_bundle(status, &body) {
                Some(why) => Ok(Err(why)),
                None => Err(fetch_error(format!(
                    "the control plane answered {}: {}",
                    status.as_u16(),
                    super::shorten(&body)
                ))),
            },
        }
    }
}

/// Error codes of `GET /v1/certificates/{sha256}` that are about the one
/// bundle, not the control plane: its key does not open under the
/// control plane's keyring, or what it stored no longer matches the
/// digest. Asking again gets the same answer until someone acts, so the
/// certificate fails (like one the control plane does not have) and every
/// other change of the revision goes live.
const BUNDLE_FAILURE_CODES: [&str; 2] = ["key-unavailable", "cert-corrupt"];

/// Why a non-2xx answer to a bundle request fails that bundle alone, or
/// `None` when it is transient (the round fails and is tried again).
fn refusal_of_bundle(status: reqwest::StatusCode, body: &str) -> Option<String> {
    if status == reqwest::StatusCode::NOT_FOUND {
        return Some(format!(
            "the control plane has no such bundle: {}",
            super::shorten(body)
        ));
    }
    if status != reqwest::StatusCode::INTERNAL_SERVER_ERROR {
        return None;
    }
    let refusal: ErrorBody = serde_json::from_str(body).ok()?;
    BUNDLE_FAILURE_CODES
        .contains(&refusal.error.code.as_str())
        .then(|| {
            super::shorten(&format!(
                "the control plane cannot serve it ({}): {}",
                refusal.error.code, refusal.error.message
            ))
        })
}

/// The local copy of a bundle if it is there and intact, else why not.
fn local_certificate(local: &LocalState, spec: &SnapshotCertificate) -> Result<Vec<u8>, String> {
    check_named(spec)?;
    match local.read_certificate(&spec.bundle_sha256) {
        Ok(Some(bytes)) => verify_bundle(spec, &bytes).map(|()| bytes),
        Ok(None) => Err("missing from the local store".to_string()),
        Err(e) => Err(format!("cannot read it from the local store: {e}")),
    }
}

/// What the snapshot says of a bundle before anything is fetched.
fn check_named(spec: &SnapshotCertificate) -> Result<(), String> {
    super::check_named_bundle(
        "bundle",
        &spec.bundle_sha256,
        spec.bundle_size,
        MAX_CERTIFICATE_BUNDLE_BYTES,
    )
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
        // ... and is asked for again next round.
        assert!(served.key(&sha256_hex(renewed_pem.as_bytes())).is_none());
    }

    fn with_hosts(mut spec: SnapshotCertificate, hosts: &[&str]) -> SnapshotCertificate {
        spec.hosts = hosts
            .iter()
            .map(|h| h.to_string().try_into().unwrap())
            .collect();
        spec
    }

    #[test]
    fn a_bad_bundle_keeps_the_previous_key_only_for_names_the_snapshot_still_gives() {
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let resolver = CertResolver::new(OwnCertificates::default());
        let mut served = ServedCertificates::default();
        let (old_pem, old_key) = bundle("a.test");
        let first = snapshot(vec![with_hosts(
            spec(1, "a.test", &old_pem),
            &["a.test", "b.test", "*.a.test"],
        )]);
        let mut fetched = FetchedCertificates::default();
        fetched
            .keys
            .insert(sha256_hex(old_pem.as_bytes()), old_key.clone());
        served.install(served.build(&first, &fetched), &resolver, &metrics);
        for name in ["a.test", "b.test", "x.a.test"] {
            assert!(resolver.pick(Some(name)).is_some(), "{name}");
        }

        // The control plane took b.test and *.a.test away (to another
        // tenant, say) and added c.test; the new bundle cannot be had.
        let (new_pem, _) = bundle("a.test");
        let second = snapshot(vec![with_hosts(
            spec(1, "a.test", &new_pem),
            &["a.test", "c.test"],
        )]);
        let mut fetched = FetchedCertificates::default();
        fetched.bad.insert(
            sha256_hex(new_pem.as_bytes()),
            "the control plane cannot serve it (key-unavailable)".into(),
        );
        let built = served.build(&second, &fetched);
        assert_eq!(built.failures.len(), 1);
        served.install(built, &resolver, &metrics);
        assert!(
            resolver
                .pick(Some("a.test"))
                .is_some_and(|k| Arc::ptr_eq(&k, &old_key))
        );
        // Taken away: no longer served. Added: the old key was never
        // checked for it.
        for name in ["b.test", "x.a.test", "c.test"] {
            assert!(resolver.pick(Some(name)).is_none(), "{name}");
        }
        assert_eq!(
            served.bundles().collect::<Vec<_>>(),
            [sha256_hex(old_pem.as_bytes())]
        );

        // None of the old names left, or the id now another app's: the
        // old key is not served at all.
        let third = snapshot(vec![with_hosts(spec(1, "a.test", &new_pem), &["c.test"])]);
        served.install(served.build(&third, &fetched), &resolver, &metrics);
        assert!(resolver.pick(Some("a.test")).is_none());
        assert_eq!(served.bundles().count(), 0);

        served.install(
            served.build(
                &first,
                &FetchedCertificates {
                    keys: [(sha256_hex(old_pem.as_bytes()), old_key.clone())].into(),
                    bad: HashMap::new(),
                },
            ),
            &resolver,
            &metrics,
        );
        let mut moved = spec(1, "a.test", &new_pem);
        moved.app = "other".to_string().try_into().unwrap();
        served.install(
            served.build(&snapshot(vec![moved]), &fetched),
            &resolver,
            &metrics,
        );
        assert!(resolver.pick(Some("a.test")).is_none());
    }

    #[test]
    fn only_a_bundle_the_control_plane_cannot_open_fails_alone_among_5xx() {
        use reqwest::StatusCode;
        let refusal = |code: &str| {
            serde_json::json!({"error": {"code": code, "message": "certificate 3 does not open"}})
                .to_string()
        };
        for code in BUNDLE_FAILURE_CODES {
            let why = refusal_of_bundle(StatusCode::INTERNAL_SERVER_ERROR, &refusal(code))
                .expect("the certificate fails alone");
            assert!(why.contains(code) && why.contains("certificate 3"), "{why}");
            // The same code under another status is not the bundle's.
            assert_eq!(
                refusal_of_bundle(StatusCode::SERVICE_UNAVAILABLE, &refusal(code)),
                None
            );
        }
        assert!(refusal_of_bundle(StatusCode::NOT_FOUND, &refusal("not-found")).is_some());
        assert!(refusal_of_bundle(StatusCode::NOT_FOUND, "").is_some());
        // Everything else is transient: the round is tried again.
        for (status, body) in [
            (StatusCode::INTERNAL_SERVER_ERROR, refusal("storage")),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "key-unavailable".to_string(),
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            (StatusCode::BAD_GATEWAY, refusal("key-unavailable")),
            (StatusCode::TOO_MANY_REQUESTS, refusal("cert-corrupt")),
        ] {
            assert_eq!(refusal_of_bundle(status, &body), None, "{status} {body}");
        }
    }
}
