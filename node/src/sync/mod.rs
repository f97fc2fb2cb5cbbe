//! The node's side of sync: long-poll the control plane for signed
//! snapshots, verify them, fetch and verify the artifacts they name, build
//! the apps, swap the routing table, persist, and report (ACK or NACK).
//!
//! Static stability: the last applied snapshot and its artifacts are kept
//! in `control_plane.data_dir`, and a node that starts while the control
//! plane is unreachable serves from them ([`Syncer::restore`]).

pub mod apply;
pub mod local;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_common::engine_hash;
use edge_common::signing::{VerifyingKey, sha256_hex};
use edge_common::sync::{ApplyOutcome, NodeReport, SignedSnapshot, Snapshot, SyncKey};
use tokio::sync::watch;

use crate::config::ControlPlaneConfig;
use crate::metrics::Metrics;
use apply::Applier;
use local::LocalState;

/// Artifacts larger than this are refused whatever a snapshot says.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

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
    #[error(transparent)]
    Build(#[from] apply::BuildError),
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
            SyncError::Build(_) => "load",
            SyncError::Persist(_) => "persist",
            SyncError::Other(_) => "other",
        }
    }
}

pub struct Syncer {
    config: ControlPlaneConfig,
    token: String,
    client: reqwest::Client,
    local: LocalState,
    key: Option<VerifyingKey>,
    applier: Arc<Mutex<Applier>>,
    metrics: Metrics,
    engine: String,
    /// The revision being served.
    applied: u64,
    /// The newest revision refused; not asked for again.
    rejected: u64,
    /// A report the control plane has not received yet.
    unsent_report: Option<NodeReport>,
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
        let key = match &config.trust_key {
            Some(hex) => {
                Some(VerifyingKey::from_hex(hex).map_err(|e| SyncError::Other(e.to_string()))?)
            }
            None => local.read_pinned_key().map_err(SyncError::Persist)?,
        };
        Ok(Self {
            config,
            token,
            client,
            local,
            key,
            applier: Arc::new(Mutex::new(applier)),
            metrics,
            engine: engine_hash(engine),
            applied: 0,
            rejected: 0,
            unsent_report: None,
        })
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
            let mut artifacts = HashMap::new();
            for app in &snapshot.apps {
                let sha = &app.artifact.sha256;
                let bytes = self
                    .local
                    .read_artifact(sha)
                    .map_err(SyncError::Persist)?
                    .ok_or_else(|| SyncError::Artifact {
                        sha256: sha.clone(),
                        message: "missing from the local store".into(),
                    })?;
                verify_artifact(sha, app.artifact.size, &bytes)?;
                artifacts.insert(sha.clone(), bytes);
            }
            self.install(&snapshot, artifacts).await?;
            Ok::<_, SyncError>(snapshot.revision)
        }
        .await;
        match result {
            Ok(revision) => {
                self.applied = revision;
                self.metrics.sync.revision.set(revision as i64);
                tracing::info!(revision, "serving the stored snapshot");
            }
            Err(e) => {
                tracing::error!(error = %e, "the stored snapshot cannot be served; starting without synced apps")
            }
        }
    }

    /// Polls until `shutdown` is set.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::stopped(&mut shutdown) => return,
                }
            }
            let round = tokio::select! {
                result = self.round() => result,
                _ = crate::stopped(&mut shutdown) => return,
            };
            match round {
                Ok(()) => backoff = Duration::ZERO,
                Err(e) => {
                    self.metrics
                        .sync
                        .failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    backoff = jitter(
                        (backoff * 2)
                            .max(Duration::from_millis(200))
                            .min(self.config.max_backoff),
                    );
                    tracing::warn!(error = %e, retry_in = ?backoff, "control-plane sync failed");
                }
            }
        }
    }

    /// One exchange: deliver a pending report, then one long poll and
    /// whatever it brings.
    async fn round(&mut self) -> Result<(), SyncError> {
        if let Some(report) = self.unsent_report.clone() {
            self.send_report(&report).await?;
            self.unsent_report = None;
        }
        let key = match self.key {
            Some(key) => key,
            None => self.pin_key().await?,
        };
        let since = self.applied.max(self.rejected);
        let wait = self.config.poll_wait;
        let response = self
            .request(reqwest::Method::GET, "/v1/sync")
            .query(&[
                ("since", since.to_string()),
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
        self.apply(signed, &key).await;
        Ok(())
    }

    /// Applies a received snapshot and reports the outcome. A refusal is
    /// the control plane's problem to fix, not a connection failure: the
    /// loop goes on polling for a newer revision.
    async fn apply(&mut self, signed: SignedSnapshot, key: &VerifyingKey) {
        let started = Instant::now();
        // The revision number only names the NACK if the signature fails;
        // nothing else is read from unverified bytes.
        let claimed_revision = serde_json::from_str::<RevisionOnly>(&signed.payload)
            .map(|r| r.revision)
            .unwrap_or(0);
        let result = async {
            let snapshot = signed.verify(key)?;
            if snapshot.revision <= self.applied {
                return Ok(None);
            }
            let artifacts = self.fetch_artifacts(&snapshot).await?;
            self.install(&snapshot, artifacts).await?;
            self.local
                .write_snapshot(&signed)
                .map_err(SyncError::Persist)?;
            let keep: Vec<&str> = snapshot
                .apps
                .iter()
                .map(|a| a.artifact.sha256.as_str())
                .collect();
            self.local.retain_artifacts(&keep);
            Ok::<_, SyncError>(Some(snapshot))
        }
        .await;
        let report = match result {
            Ok(None) => return,
            Ok(Some(snapshot)) => {
                self.applied = snapshot.revision;
                self.metrics.sync.revision.set(snapshot.revision as i64);
                self.metrics
                    .sync
                    .apply_duration
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(revision = snapshot.revision, apps = snapshot.apps.len(), elapsed = ?started.elapsed(), "applied a control-plane revision");
                NodeReport {
                    revision: snapshot.revision,
                    outcome: ApplyOutcome::Applied,
                    error: None,
                    engine: self.engine.clone(),
                }
            }
            Err(e) => {
                self.rejected = self.rejected.max(claimed_revision);
                self.metrics
                    .sync
                    .failures
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::error!(revision = claimed_revision, error = %e, "rejected a control-plane revision; still serving revision {}", self.applied);
                NodeReport {
                    revision: claimed_revision,
                    outcome: ApplyOutcome::Rejected,
                    error: Some(e.to_string()),
                    engine: self.engine.clone(),
                }
            }
        };
        if let Err(e) = self.send_report(&report).await {
            tracing::warn!(error = %e, "cannot report to the control plane; will retry");
            self.unsent_report = Some(report);
        }
    }

    /// The verified bytes of every artifact the current apps do not already
    /// use, from disk if a good copy is there, else from the control plane
    /// (then written to disk).
    async fn fetch_artifacts(
        &self,
        snapshot: &Snapshot,
    ) -> Result<HashMap<String, Vec<u8>>, SyncError> {
        let mut artifacts = HashMap::new();
        for app in &snapshot.apps {
            let sha = &app.artifact.sha256;
            let loaded = self
                .applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?
                .has_artifact(sha);
            if loaded || artifacts.contains_key(sha) {
                continue;
            }
            if let Ok(Some(bytes)) = self.local.read_artifact(sha)
                && verify_artifact(sha, app.artifact.size, &bytes).is_ok()
            {
                artifacts.insert(sha.clone(), bytes);
                continue;
            }
            let bytes = self.download(sha, app.artifact.size).await?;
            verify_artifact(sha, app.artifact.size, &bytes)?;
            self.local
                .write_artifact(sha, &bytes)
                .map_err(SyncError::Persist)?;
            artifacts.insert(sha.clone(), bytes);
        }
        Ok(artifacts)
    }

    async fn download(&self, sha256: &str, size: u64) -> Result<Vec<u8>, SyncError> {
        let artifact_error = |message: String| SyncError::Artifact {
            sha256: sha256.to_string(),
            message,
        };
        if size > MAX_ARTIFACT_BYTES {
            return Err(artifact_error(format!(
                "{size} bytes is over the {MAX_ARTIFACT_BYTES}-byte limit"
            )));
        }
        let mut response = self
            .request(reqwest::Method::GET, &format!("/v1/artifacts/{sha256}"))
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            return Err(artifact_error(format!("fetch answered {status}: {body}")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| artifact_error(format!("fetch failed: {e}")))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > size {
                return Err(artifact_error(format!(
                    "the control plane sent more than the {size} bytes the snapshot names"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn install(
        &self,
        snapshot: &Snapshot,
        artifacts: HashMap<String, Vec<u8>>,
    ) -> Result<(), SyncError> {
        let applier = self.applier.clone();
        let snapshot = snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let mut applier = applier
                .lock()
                .map_err(|_| SyncError::Other("applier lock poisoned".into()))?;
            let built = applier.build(&snapshot, &artifacts)?;
            applier.install(built);
            Ok(())
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
        let url = format!("{}{path}", self.config.url.trim_end_matches('/'));
        self.client.request(method, url).bearer_auth(&self.token)
    }
}

#[derive(serde::Deserialize)]
struct RevisionOnly {
    revision: u64,
}

fn verify_artifact(sha256: &str, size: u64, bytes: &[u8]) -> Result<(), SyncError> {
    let actual = sha256_hex(bytes);
    if bytes.len() as u64 != size || actual != sha256 {
        return Err(SyncError::Artifact {
            sha256: sha256.to_string(),
            message: format!(
                "digest mismatch: got {} bytes hashing to {actual}; refusing to load it",
                bytes.len()
            ),
        });
    }
    Ok(())
}

async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, SyncError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect();
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

/// `base` scaled by a random factor in [0.5, 1.5): nodes that lost the
/// control plane together do not come back in lockstep.
fn jitter(base: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    base.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
