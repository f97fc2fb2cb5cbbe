//! The node's side of sync: long-poll the control plane for signed
//! snapshots, verify them, fetch and verify the artifacts they name, build
//! the apps, swap the routing table, persist, and report (ACK or NACK).
//! Tenants' certificates travel the same way ([`certificates`]).
//!
//! Static stability: the last applied snapshot, its artifacts and its
//! certificate bundles are kept in `control_plane.data_dir`, and a node
//! that starts while the control plane is unreachable serves from them
//! ([`Syncer::restore`]).

pub mod apply;
mod artifacts;
pub mod certificates;
pub mod local;
pub mod log_uplink;
pub mod secrets;

use crate::backoff::Backoff;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_common::engine_hash;
use edge_common::signing::VerifyingKey;
use edge_common::sync::{ApplyOutcome, NodeReport, SignedSnapshot, Snapshot, SyncKey};
use tokio::sync::watch;

use crate::config::ControlPlaneConfig;
use crate::metrics::Metrics;
use apply::Applier;
use local::LocalState;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach the control plane: {0}")]
    Unreachable(String),
    #[error("the control plane refused the node's token ({status}): {body}")]
    Unauthorized { status: u16, body: String },
    #[error("the control plane answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error(transparent)]
    Snapshot(#[from] edge_common::sync::SnapshotError),
    #[error("artifact {sha256}: {message}")]
    Artifact { sha256: String, message: String },
    #[error("cannot fetch artifact {sha256}: {message}")]
    ArtifactFetch { sha256: String, message: String },
    #[error("cannot fetch certificate bundle {sha256}: {message}")]
    CertificateFetch { sha256: String, message: String },
    #[error("cannot fetch secrets bundle {sha256}: {message}")]
    SecretsFetch { sha256: String, message: String },
    #[error("cannot write local state: {0}")]
    Persist(std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl SyncError {
    fn reason(&self) -> &'static str {
        match self {
            SyncError::Unreachable(_) => "unreachable",
            SyncError::Unauthorized { .. } => "unauthorized",
            SyncError::Status { .. } => "http-status",
            SyncError::Snapshot(_) => "bad-signature",
            SyncError::Artifact { .. } => "artifact",
            SyncError::ArtifactFetch { .. } => "artifact-fetch",
            SyncError::CertificateFetch { .. } => "certificate-fetch",
            SyncError::SecretsFetch { .. } => "secrets-fetch",
            SyncError::Persist(_) => "persist",
            SyncError::Other(_) => "other",
        }
    }
}

pub struct Syncer {
    config: ControlPlaneConfig,
    /// The control-plane replicas' base URLs, and the one in use.
    endpoints: Vec<String>,
    current: usize,
    /// Endpoints that failed since the last good round: backoff starts
    /// once every one has.
    failed_in_a_row: usize,
    token: String,
    client: reqwest::Client,
    local: LocalState,
    key: Option<VerifyingKey>,
    applier: Arc<Mutex<Applier>>,
    metrics: Metrics,
    engine: String,
    /// The revision being served, and the epoch of the control-plane
    /// database it came from.
    applied: u64,
    applied_epoch: String,
    /// A report the control plane has not received yet.
    unsent_report: Option<NodeReport>,
    /// Told which apps are tailed by each applied snapshot.
    logs: Option<std::sync::Arc<crate::logs::LogHub>>,
}

impl Syncer {
    pub fn new(
        config: ControlPlaneConfig,
        applier: Applier,
        metrics: Metrics,
        engine: &wasmtime::Engine,
    ) -> Result<Self, SyncError> {
        let token = match (&config.token, &config.token_file) {
            (Some(token), _) => token.trim().to_string(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| SyncError::Other(format!("cannot read {}: {e}", file.display())))?
                .trim()
                .to_string(),
            (None, None) => return Err(SyncError::Other("no control-plane token".into())),
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(ca) = &config.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| SyncError::Other(format!("cannot read {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| SyncError::Other(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| SyncError::Other(format!("cannot build the HTTP client: {e}")))?;
        let local = LocalState::open(&config.data_dir).map_err(SyncError::Persist)?;
        secrets::open_dir(&local).map_err(SyncError::Persist)?;
        let key = match &config.trust_key {
            Some(hex) => {
                Some(VerifyingKey::from_hex(hex).map_err(|e| SyncError::Other(e.to_string()))?)
            }
            None => local.read_pinned_key().map_err(SyncError::Persist)?,
        };
        let endpoints = config.endpoints();
        if endpoints.is_empty() {
            return Err(SyncError::Other("no control-plane URL".into()));
        }
        Ok(Self {
            config,
            endpoints,
            current: 0,
            failed_in_a_row: 0,
            token,
            client,
            local,
            key,
            applier: Arc::new(Mutex::new(applier)),
            metrics,
            engine: engine_hash(engine),
            applied: 0,
            applied_epoch: String::new(),
            unsent_report: None,
            logs: None,
        })
    }

    /// The log shipper's uplink: this client, token and replicas.
    pub fn log_uplink(&self) -> log_uplink::LogUplink {
        log_uplink::LogUplink {
            client: self.client.clone(),
            endpoints: std::sync::Arc::new(self.endpoints.clone()),
            token: self.token.clone(),
            current: std::sync::atomic::AtomicUsize::new(self.current),
        }
    }

    /// The key-value service over this client, token, replicas and key:
    /// its replica loaded from `data_dir/kv/`, and handed to the applier
    /// so synced apps open their stores. Call before [`Syncer::restore`].
    pub fn kv_service(&self, config: &crate::config::KvConfig) -> Arc<crate::kv::KvService> {
        let replica = crate::kv::persist::load(&self.config.data_dir, config.max_replica_bytes)
            .unwrap_or_default();
        let replica = Arc::new(crate::kv::replica::Replica::new(
            replica,
            config.max_replica_bytes,
        ));
        let link = Arc::new(crate::kv::CpLink {
            client: self.client.clone(),
            endpoints: Arc::new(self.endpoints.clone()),
            token: self.token.clone(),
            current: std::sync::atomic::AtomicUsize::new(self.current),
            key: {
                let local = self.local.clone();
                crate::kv::KeySource::new(
                    self.key,
                    Some(Box::new(move || local.read_pinned_key().ok().flatten())),
                )
            },
        });
        let service = Arc::new(crate::kv::KvService {
            writer: crate::kv::write::KvWriter {
                link,
                timeout: config.write_timeout,
                replica: replica.clone(),
                metrics: self.metrics.kv.clone(),
            },
            replica,
            metrics: self.metrics.kv.clone(),
        });
        service.refresh_gauges();
        match self.applier.lock() {
            Ok(mut applier) => applier.set_kv(service.clone()),
            Err(_) => tracing::error!(
                "the applier's lock is poisoned: synced apps will open no key-value stores"
            ),
        }
        service
    }

    /// The data directory (the key-value replica is persisted under it).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.config.data_dir.clone()
    }

    /// Backoff ceiling of the control-plane exchanges.
    pub fn max_backoff(&self) -> Duration {
        self.config.max_backoff
    }

    /// Ships the snapshots' tailed apps to `hub` (which lines to ship).
    pub fn with_logs(mut self, hub: std::sync::Arc<crate::logs::LogHub>) -> Self {
        self.logs = Some(hub);
        self
    }

    /// Serves the last applied snapshot from disk, if there is one and it
    /// still verifies. Called before the listeners start.
    pub async fn restore(&mut self) {
        let signed = match self.local.read_snapshot() {
            Ok(Some(signed)) => signed,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored snapshot; starting without synced apps");
                return;
            }
        };
        let Some(key) = self.key else {
            tracing::error!(
                "a stored snapshot but no control-plane key to verify it; starting without synced apps"
            );
            return;
        };
        let result = async {
            let snapshot = signed.verify(&key)?;
            // The control plane may be down: what is not on disk (intact)
            // fails its app or certificate instead of being fetched.
            let (artifacts, bad) = self.fetch_artifacts(&snapshot, false).await?;
            let certificates = self.fetch_certificates(&snapshot, false).await?;
            self.fetch_secrets(&snapshot, false).await?;
            let failures = self
                .install(&snapshot, artifacts, bad, certificates)
                .await?;
            Ok::<_, SyncError>((snapshot, failures))
        }
        .await;
        match result {
            Ok((snapshot, failures)) => {
                // With something missing, the revision counts as not
                // applied: the first exchange brings it whole again and
                // fetches what the disk lacked (what is served is kept).
                if failures.is_empty() {
                    self.applied = snapshot.revision;
                    self.applied_epoch = snapshot.epoch.clone();
                }
                self.metrics.sync.revision.set(snapshot.revision as i64);
                tracing::info!(
                    revision = snapshot.revision,
                    apps = snapshot.apps.len(),
                    failed = failures.len(),
                    "serving the stored snapshot"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "the stored snapshot cannot be served; starting without synced apps")
            }
        }
    }

    /// Polls until `shutdown` is set.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.config.max_backoff);
        let mut wait = Duration::ZERO;
        loop {
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::shutdown::stopped(&mut shutdown) => return,
                }
            }
            let round = tokio::select! {
                result = self.round() => result,
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            };
            match round {
                Ok(()) => {
                    wait = Duration::ZERO;
                    backoff.reset();
                    self.failed_in_a_row = 0;
                }
                Err(e) => {
                    self.metrics
                        .sync
                        .failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    let failed = self.endpoints[self.current].clone();
                    self.failed_in_a_row += 1;
                    self.current = (self.current + 1) % self.endpoints.len();
                    // The next replica is tried at once; the backoff grows
                    // only when all of them failed in a row.
                    wait = if self.failed_in_a_row.is_multiple_of(self.endpoints.len()) {
                        backoff.fail()
                    } else {
                        Duration::ZERO
                    };
                    tracing::warn!(
                        error = %e,
                        control_plane = %failed,
                        next = %self.endpoints[self.current],
                        retry_in = ?wait,
                        "control-plane sync failed"
                    );
                }
            }
        }
    }

    /// One exchange: deliver a pending report, then one long poll and
    /// whatever it brings.
    async fn round(&mut self) -> Result<(), SyncError> {
        if let Some(report) = self.unsent_report.clone() {
            match self.send_report(&report).await {
                Ok(()) => self.unsent_report = None,
                // Refused for good (a 4xx): retrying would only stop the
                // node from polling.
                Err(SyncError::Status { status, body }) if (400..500).contains(&status) => {
                    tracing::warn!(status, body, "the control plane refused a report; dropped");
                    self.unsent_report = None;
                }
                Err(e) => return Err(e),
            }
        }
        let key = match self.key {
            Some(key) => key,
            None => self.pin_key().await?,
        };
        let wait = self.config.poll_wait;
        let response = self
            .request(reqwest::Method::GET, "/v1/sync")
            .query(&[
                ("since", self.applied.to_string()),
                ("epoch", self.applied_epoch.clone()),
                ("wait", format!("{}ms", wait.as_millis())),
            ])
            .timeout(wait + Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        let response = check_status(response).await?;
        self.metrics.sync.last_success.set(unix_now_f64());
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(());
        }
        let signed: SignedSnapshot = response
            .json()
            .await
            .map_err(|e| SyncError::Unreachable(format!("reading the snapshot: {e}")))?;
        self.apply(signed, &key).await
    }

    /// Applies a received snapshot and reports the outcome.
    ///
    /// - Applied (ACK), with the apps that could not be served listed: one
    ///   tenant's bad artifact or component never holds back the others.
    /// - A snapshot whose signature does not verify is reported (NACK) and
    ///   returned as an error, so the poll is retried after a backoff;
    ///   nothing is read from it (its claimed revision only names the
    ///   report, and the control plane ignores a revision it never had).
    /// - A transient failure (an artifact fetch cut off, a full disk) is
    ///   returned as an error, and the same revision is tried again.
    async fn apply(&mut self, signed: SignedSnapshot, key: &VerifyingKey) -> Result<(), SyncError> {
        let started = Instant::now();
        let snapshot = match signed.verify(key) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let claimed = serde_json::from_str::<RevisionOnly>(&signed.payload)
                    .map(|r| r.revision)
                    .unwrap_or(0);
                tracing::error!(revision = claimed, error = %e, "refused a control-plane snapshot; still serving revision {}", self.applied);
                let report = NodeReport {
                    revision: claimed,
                    outcome: ApplyOutcome::Rejected,
                    error: Some(e.to_string()),
                    app_errors: Vec::new(),
                    engine: self.engine.clone(),
                };
                if let Err(report_error) = self.send_report(&report).await {
                    tracing::warn!(error = %report_error, "cannot report the refusal");
                }
                return Err(e.into());
            }
        };
        if snapshot.epoch == self.applied_epoch && snapshot.revision <= self.applied {
            return Ok(());
        }
        if snapshot.epoch != self.applied_epoch && !self.applied_epoch.is_empty() {
            tracing::warn!(old = %self.applied_epoch, new = %snapshot.epoch, "the control plane's database changed (restored or recreated); taking its state as it is");
        }
        let (artifacts, bad) = self.fetch_artifacts(&snapshot, true).await?;
        let certificates = self.fetch_certificates(&snapshot, true).await?;
        self.fetch_secrets(&snapshot, true).await?;
        let failures = self
            .install(&snapshot, artifacts, bad, certificates)
            .await?;
        // Only from the control plane's live answer: a stored snapshot's
        // tails are long gone.
        if let Some(logs) = &self.logs {
            logs.set_tailed(&snapshot.tails);
        }
        self.local
            .write_snapshot(&signed)
            .map_err(SyncError::Persist)?;
        let mut keep: Vec<String> = snapshot
            .apps
            .iter()
            .map(|a| a.artifact.sha256.clone())
            .collect();
        let mut keep_bundles: Vec<String> = snapshot
            .certificates
            .iter()
            .map(|c| c.bundle_sha256.clone())
            .collect();
        if let Ok(applier) = self.applier.lock() {
            keep.extend(applier.served_artifacts());
            keep_bundles.extend(applier.served_certificates());
        }
        self.local
            .retain_artifacts(&keep.iter().map(String::as_str).collect::<Vec<_>>());
        self.local
            .retain_certificates(&keep_bundles.iter().map(String::as_str).collect::<Vec<_>>());
        let mut keep_secrets: Vec<String> = snapshot
            .apps
            .iter()
            .filter_map(|a| a.secrets.as_ref().map(|s| s.sha256.clone()))
            .collect();
        if let Ok(applier) = self.applier.lock() {
            keep_secrets.extend(applier.secrets().held().map(str::to_string));
        }
        secrets::retain_files(
            &self.local,
            &keep_secrets.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        self.applied = snapshot.revision;
        self.applied_epoch = snapshot.epoch.clone();
        self.metrics.sync.revision.set(snapshot.revision as i64);
        self.metrics
            .sync
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        // Certificates were counted as they failed to fetch or parse.
        if !failures.apps.is_empty() {
            self.metrics
                .sync
                .failures
                .with_label_values(&["app"])
                .inc_by(failures.apps.len() as u64);
        }
        tracing::info!(revision = snapshot.revision, apps = snapshot.apps.len(), failed = failures.len(), elapsed = ?started.elapsed(), "applied a control-plane revision");
        let report = NodeReport {
            revision: snapshot.revision,
            outcome: ApplyOutcome::Applied,
            error: None,
            app_errors: failures.into_report(),
            engine: self.engine.clone(),
        };
        if let Err(e) = self.send_report(&report).await {
            tracing::warn!(error = %e, "cannot report to the control plane; will retry");
            self.unsent_report = Some(report);
        }
        Ok(())
    }

    /// Builds and serves the snapshot's apps and certificates; returns the
    /// ones that failed.
    async fn install(
        &self,
        snapshot: &Snapshot,
        artifacts: HashMap<String, Vec<u8>>,
        bad: HashMap<String, String>,
        certificates: certificates::FetchedCertificates,
    ) -> Result<apply::Failures, SyncError> {
        let applier = self.applier.clone();
        let snapshot = snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let mut applier = applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?;
            let mut built = applier.build(&snapshot, &artifacts, &bad, &certificates);
            let failures = built.take_failures();
            applier.install(built);
            applier.apply_purges(&snapshot);
            Ok(failures)
        })
        .await
        .map_err(|e| SyncError::Other(format!("the apply task failed: {e}")))?
    }

    /// Trust on first use: fetch the control plane's key and pin it.
    async fn pin_key(&mut self) -> Result<VerifyingKey, SyncError> {
        let response = self
            .request(reqwest::Method::GET, "/v1/sync/key")
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        let key: SyncKey = check_status(response)
            .await?
            .json()
            .await
            .map_err(|e| SyncError::Unreachable(format!("reading the key: {e}")))?;
        let key = VerifyingKey::from_hex(&key.public_key)
            .map_err(|e| SyncError::Other(format!("the control plane's key: {e}")))?;
        self.local.pin_key(&key).map_err(SyncError::Persist)?;
        tracing::warn!(key = %key.to_hex(), "pinned the control plane's snapshot key on first contact; set control_plane.trust_key to pin it explicitly");
        self.key = Some(key);
        Ok(key)
    }

    async fn send_report(&self, report: &NodeReport) -> Result<(), SyncError> {
        let response = self
            .request(reqwest::Method::POST, "/v1/sync/report")
            .json(report)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        check_status(response).await.map(|_| ())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.endpoints[self.current]);
        self.client.request(method, url).bearer_auth(&self.token)
    }

    /// `GET path` for bytes a signed snapshot names by digest and `size`
    /// (an artifact, a certificate bundle, a secrets bundle): read as they
    /// stream, never past `size`. `fetch_error` wraps a failed exchange;
    /// what the answer means is the caller's to say.
    async fn fetch_named(
        &self,
        path: &str,
        size: u64,
        timeout: Duration,
        fetch_error: impl Fn(String) -> SyncError,
    ) -> Result<Fetched, SyncError> {
        let mut response = self
            .request(reqwest::Method::GET, path)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| fetch_error(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body = error_text(response).await;
            return Ok(Fetched::Refused { status, body });
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(e.to_string()))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > size {
                return Ok(Fetched::TooLong);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Bytes(bytes))
    }
}

/// Runs `work` (file I/O, parsing) on the blocking pool, never on the
/// workers that serve requests; `task` names it if the task fails.
async fn off_workers<T: Send + 'static>(
    task: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SyncError::Other(format!("the {task} task failed: {e}")))
}

/// What a snapshot says of a bundle (`what`) before anything is fetched:
/// a digest that can name a file, and a size a node accepts (`max`).
fn check_named_bundle(what: &str, sha256: &str, size: u64, max: u64) -> Result<(), String> {
    if !edge_common::signing::is_sha256_hex(sha256) {
        return Err(format!(
            "the snapshot names its {what} with an invalid digest"
        ));
    }
    if size > max {
        return Err(format!(
            "its {what} of {size} bytes is over the {max}-byte limit"
        ));
    }
    Ok(())
}

/// What [`Syncer::fetch_named`] got.
enum Fetched {
    Bytes(Vec<u8>),
    /// An answer other than 2xx, and its body (up to
    /// [`MAX_ERROR_BODY_BYTES`]).
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
    /// More bytes than the snapshot names.
    TooLong,
}

/// The refusal of a bundle the snapshot names, for a report.
fn too_long(size: u64) -> String {
    format!("the control plane sent more than the {size} bytes the snapshot names")
}

#[derive(serde::Deserialize)]
struct RevisionOnly {
    revision: u64,
}

async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, SyncError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = error_body(response).await;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        Err(SyncError::Unauthorized {
            status: status.as_u16(),
            body,
        })
    } else {
        Err(SyncError::Status {
            status: status.as_u16(),
            body,
        })
    }
}

/// The start of an error response's body, for a log line or a report.
async fn error_body(response: reqwest::Response) -> String {
    shorten(&error_text(response).await)
}

/// At most this much of an error answer is read: the control plane's JSON
/// refusals are far shorter, and nothing in between makes the node buffer
/// more.
const MAX_ERROR_BODY_BYTES: usize = 4096;

/// An error response's body, up to [`MAX_ERROR_BODY_BYTES`].
async fn error_text(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The start of `text`, for a log line or a report.
fn shorten(text: &str) -> String {
    text.chars().take(512).collect()
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
