//! The key-value stores as a node serves them (issue 16; README,
//! "Key-value stores").
//!
//! - [`replica`]: every store of every tenant, built from the control
//!   plane's change stream ([`stream`]) and persisted ([`persist`]); reads
//!   are answered from it.
//! - [`write`]: a guest's writes go to the control plane, which commits
//!   them and answers with the signed changes; they are applied to the
//!   replica before the guest's call returns.
//! - [`host`]: the `wasi:keyvalue` (0.2.0-draft) and `edge:keyvalue/cas`
//!   host bindings a guest calls.
//!
//! Apps from the node's own config file have no stores: there is no
//! control plane to hold them, so `open` answers `no-such-store`.

pub mod host;
pub mod metrics;
pub mod persist;
pub mod replica;
pub mod stream;
pub mod write;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use edge_common::kv::{KvError, KvLimits, KvLink};
use edge_common::signing::VerifyingKey;
use prometheus::IntCounter;

use metrics::{KvMetrics, Op};
use replica::Replica;

/// The way to the control plane the Syncer uses (its client, replicas and
/// token), and the key every body the node applies must be signed with.
pub struct CpLink {
    pub client: reqwest::Client,
    pub endpoints: Arc<Vec<String>>,
    pub token: String,
    /// The replica that answered last.
    pub current: AtomicUsize,
    pub key: KeySource,
}

impl CpLink {
    /// `None` only with no endpoint at all (the Syncer's config requires
    /// one; this does not rely on it).
    pub fn url(&self, index: usize, path: &str) -> Option<String> {
        let base = self
            .endpoints
            .get(index.checked_rem(self.endpoints.len())?)?;
        Some(format!("{base}{path}"))
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1)
    }
}

/// The control plane's signing key: `control_plane.trust_key`, or the key
/// the Syncer pinned on first contact (read from its file once there).
pub struct KeySource {
    pinned: OnceLock<VerifyingKey>,
    /// Reads the key the Syncer pinned, if it has (its file).
    read_pinned: Option<PinnedKeyReader>,
}

pub type PinnedKeyReader = Box<dyn Fn() -> Option<VerifyingKey> + Send + Sync>;

impl KeySource {
    pub fn new(trusted: Option<VerifyingKey>, read_pinned: Option<PinnedKeyReader>) -> Self {
        let pinned = OnceLock::new();
        if let Some(key) = trusted {
            let _ = pinned.set(key);
        }
        KeySource {
            pinned,
            read_pinned,
        }
    }

    pub fn get(&self) -> Option<VerifyingKey> {
        if let Some(key) = self.pinned.get() {
            return Some(*key);
        }
        let key = (self.read_pinned.as_ref()?)()?;
        Some(*self.pinned.get_or_init(|| key))
    }
}

/// The node's key-value service: the replica, the writer, the metrics.
pub struct KvService {
    pub replica: Arc<Replica>,
    pub writer: write::KvWriter,
    pub metrics: KvMetrics,
}

impl KvService {
    pub fn refresh_gauges(&self) {
        let (bytes, keys, seq) = self.replica.stats();
        self.metrics.replica_bytes.set(bytes as i64);
        self.metrics.replica_keys.set(keys as i64);
        self.metrics.replica_seq.set(seq as i64);
    }
}

/// What one app may do with the stores: the links its snapshot lists and
/// its tenant's limits. Built once per app load.
pub struct AppKv {
    pub tenant: edge_common::names::TenantId,
    pub app: edge_common::names::AppName,
    pub links: Vec<KvLink>,
    pub limits: KvLimits,
    pub service: Arc<KvService>,
    /// `result="ok"` counters by op, resolved once (a read is on the hot
    /// path; a label lookup per call is not free).
    ok: Vec<IntCounter>,
}

impl AppKv {
    pub fn new(
        tenant: edge_common::names::TenantId,
        app: edge_common::names::AppName,
        links: Vec<KvLink>,
        limits: KvLimits,
        service: Arc<KvService>,
    ) -> Self {
        let ok = Op::ALL
            .iter()
            .map(|op| {
                service.metrics.operations.with_label_values(&[
                    tenant.as_str(),
                    app.as_str(),
                    op.as_str(),
                    "ok",
                ])
            })
            .collect();
        AppKv {
            tenant,
            app,
            links,
            limits,
            service,
            ok,
        }
    }

    /// The store id behind the name the guest opens.
    pub fn store_id(&self, name: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|link| link.name == name)
            .map(|link| link.store.as_str())
    }

    pub fn record<T>(&self, op: Op, result: &Result<T, KvError>) {
        match result {
            Ok(_) => self.ok[op as usize].inc(),
            Err(e) => self
                .service
                .metrics
                .operations
                .with_label_values(&[
                    self.tenant.as_str(),
                    self.app.as_str(),
                    op.as_str(),
                    e.code.as_str(),
                ])
                .inc(),
        }
    }
}
