//! The node's side of the key-value stores, over real sockets: a real node
//! running the `examples/kv` component, against a small control plane
//! served by the test itself (a real HTTP server that keeps stores, commits
//! writes and signs every body with `SignedBody::sign`, as the real one
//! does). The full path through the real control plane is tested in
//! control-plane/tests/it/kv_e2e.rs.
//!
//! Why a control plane of the test's own here: these tests inject faults
//! the real one never produces on demand — a write answer held back until
//! the stream has passed it, an answer lost past the write timeout, a
//! replayed snapshot page, a forged signature — and look at exactly what
//! reached it (how many writes). Everything else is real: the node, its
//! sockets, the signatures, the guest component. A truly unreachable
//! control plane is a refused port (`DeadPort`), not a simulated one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_common::kv::{
    KvBatch, KvChange, KvCursor, KvEntry, KvLimits, KvLink, KvOp, KvOpResult, KvValue,
    KvWriteRequest, KvWriteResult, SignedBody, now_ms,
};
use edge_common::signing::{SigningKey, sha256_hex};
use edge_common::sync::{ArtifactRef, SignedSnapshot, Snapshot, SnapshotApp};
use edge_common::{CompileSettings, compile_config, engine_hash};
use edge_node::config::{ControlPlaneConfig, NodeConfig};
use edge_node::{Node, NodeHandle};
use http_body_util::{BodyExt, Full};
use tempfile::TempDir;
use tokio::sync::Notify;

use crate::common::{TestNode, app, eventually, metric_value};

const TENANT: &str = "acme";
const APP: &str = "kv";
const HOST: &str = "kv.test";
/// The id of the store the app links as `data`.
const STORE: &str = "st-data";

/// What the test's control plane holds.
struct CpState {
    epoch: String,
    seq: u64,
    /// Changes up to here are no longer in `log`: older positions get 410.
    pruned: u64,
    log: Vec<KvChange>,
    /// (store id, key) -> (value, seq).
    data: BTreeMap<(String, String), (Vec<u8>, u64)>,
    /// (tenant, app, name) -> store id.
    links: Vec<(String, String, String, String)>,
    /// The control plane's own value limit (the node's is the snapshot's).
    max_value: usize,
    /// Sign with a key the node does not trust.
    forge: bool,
    /// Answer every request 503.
    down: bool,
    writes: u64,
    write_ops: u64,
    /// Answer snapshot pages as if every request asked for the first one
    /// (a replayed page).
    replay_first_page: bool,
    /// Commit writes but hold their answers until `release` is notified.
    hold_writes: bool,
}

#[derive(Clone)]
struct TestCp {
    state: Arc<Mutex<CpState>>,
    changed: Arc<Notify>,
    /// Lets held write answers go.
    release: Arc<Notify>,
    key: Arc<SigningKey>,
    other: Arc<SigningKey>,
    addr: SocketAddr,
}

fn new_key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn json(status: u16, body: &impl serde::Serialize) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn error(status: u16, code: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = v.replace('+', " ");
            let decoded = percent_decode(&v);
            (k.to_string(), decoded)
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl TestCp {
    async fn start() -> TestCp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cp = TestCp {
            state: Arc::new(Mutex::new(CpState {
                epoch: "epoch-1".into(),
                seq: 0,
                pruned: 0,
                log: Vec::new(),
                data: BTreeMap::new(),
                links: vec![(TENANT.into(), APP.into(), "data".into(), STORE.into())],
                max_value: 64,
                forge: false,
                down: false,
                writes: 0,
                write_ops: 0,
                replay_first_page: false,
                hold_writes: false,
            })),
            changed: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
            key: Arc::new(new_key()),
            other: Arc::new(new_key()),
            addr: listener.local_addr().unwrap(),
        };
        let server = cp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let cp = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let cp = cp.clone();
                        async move { Ok::<_, Infallible>(cp.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        cp
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn sign<T: serde::Serialize>(&self, body: &T) -> hyper::Response<Full<Bytes>> {
        let forge = self.state.lock().unwrap().forge;
        let key = if forge { &self.other } else { &self.key };
        json(200, &SignedBody::sign(body, key).unwrap())
    }

    /// Commits a change made outside any node (as `edgectl kv set` would).
    fn commit(&self, store: &str, key: &str, value: Option<&[u8]>) {
        let mut state = self.state.lock().unwrap();
        state.seq += 1;
        let seq = state.seq;
        match value {
            Some(v) => {
                state
                    .data
                    .insert((store.into(), key.into()), (v.to_vec(), seq));
            }
            None => {
                state.data.remove(&(store.to_string(), key.to_string()));
            }
        }
        state.log.push(KvChange {
            seq,
            store: store.into(),
            key: Some(key.into()),
            value: value.map(|v| KvValue(v.to_vec())),
        });
        drop(state);
        self.changed.notify_waiters();
    }

    /// A restored or recreated database: a new epoch, its own data, and a
    /// log that starts after it.
    fn new_epoch(&self, epoch: &str, entries: &[(&str, &[u8])]) {
        let mut state = self.state.lock().unwrap();
        state.epoch = epoch.into();
        state.data.clear();
        state.log.clear();
        state.seq = 100;
        for (i, (key, value)) in entries.iter().enumerate() {
            state.data.insert(
                (STORE.into(), key.to_string()),
                (value.to_vec(), 50 + i as u64),
            );
        }
        state.pruned = 100;
        drop(state);
        self.changed.notify_waiters();
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        if self.state.lock().unwrap().down {
            return error(503, "unavailable", "the test's control plane is down");
        }
        let path = req.uri().path().to_string();
        let q = query(req.uri());
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/v1/kv/sync") if q.contains_key("snapshot") => self.snapshot_page(&q),
            ("GET", "/v1/kv/sync") => self.changes(&q).await,
            ("POST", "/v1/kv/write") => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let released = self.release.notified();
                let answer = self.write(&body);
                if self.state.lock().unwrap().hold_writes {
                    // Committed; the answer waits (bounded, so a test that
                    // forgets to release still ends).
                    let _ = tokio::time::timeout(Duration::from_secs(60), released).await;
                }
                answer
            }
            // The Syncer's own poll: nothing new (the snapshot is on disk).
            ("GET", "/v1/sync") => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                hyper::Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }
            ("POST", "/v1/sync/report") => json(200, &serde_json::json!({})),
            _ => error(404, "not-found", "no such route"),
        }
    }

    async fn changes(&self, q: &BTreeMap<String, String>) -> hyper::Response<Full<Bytes>> {
        let since: u64 = q["since"].parse().unwrap();
        let epoch = q["epoch"].clone();
        // A bounded wait for a change; an empty batch otherwise (at once
        // for `wait=0ms`, the node's catch-up after a snapshot).
        let rounds = if q.get("wait").is_some_and(|w| w == "0ms") {
            0
        } else {
            2
        };
        for _ in 0..rounds {
            let notified = self.changed.notified();
            {
                let state = self.state.lock().unwrap();
                if epoch != state.epoch || since < state.pruned {
                    return error(410, "kv-resync", "take a snapshot");
                }
                if state.seq > since {
                    let changes: Vec<KvChange> = state
                        .log
                        .iter()
                        .filter(|c| c.seq > since)
                        .cloned()
                        .collect();
                    let batch = KvBatch::Changes {
                        epoch: state.epoch.clone(),
                        since,
                        head: state.seq.max(since),
                        changes,
                        now_ms: now_ms(),
                    };
                    drop(state);
                    return self.sign(&batch);
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
        let state = self.state.lock().unwrap();
        let batch = KvBatch::Changes {
            epoch: state.epoch.clone(),
            since,
            head: since,
            changes: Vec::new(),
            now_ms: now_ms(),
        };
        drop(state);
        self.sign(&batch)
    }

    /// Pages of two entries, so a snapshot takes several.
    fn snapshot_page(&self, q: &BTreeMap<String, String>) -> hyper::Response<Full<Bytes>> {
        let state = self.state.lock().unwrap();
        let mut at: u64 = q["snapshot"].parse().unwrap();
        if at == 0 {
            at = state.seq;
        }
        let after = q
            .get("after_store")
            .map(|s| (s.clone(), q.get("after_key").cloned().unwrap_or_default()))
            .filter(|_| !state.replay_first_page);
        let mut entries: Vec<KvEntry> = state
            .data
            .iter()
            .filter(|((s, k), (_, seq))| {
                *seq <= at && after.as_ref().is_none_or(|a| (s.clone(), k.clone()) > *a)
            })
            .take(3)
            .map(|((s, k), (v, seq))| KvEntry {
                store: s.clone(),
                key: k.clone(),
                value: KvValue(v.clone()),
                seq: *seq,
            })
            .collect();
        let next = if entries.len() == 3 {
            entries.pop();
            entries.last().map(|e| KvCursor {
                store: e.store.clone(),
                key: e.key.clone(),
            })
        } else {
            None
        };
        let page = KvBatch::Snapshot {
            epoch: state.epoch.clone(),
            at,
            after: after.map(|(store, key)| KvCursor { store, key }),
            entries,
            next,
            now_ms: now_ms(),
        };
        drop(state);
        self.sign(&page)
    }

    fn write(&self, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        let request: KvWriteRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, "kv-invalid", &e.to_string()),
        };
        let mut state = self.state.lock().unwrap();
        state.writes += 1;
        state.write_ops += request.ops.len() as u64;
        let Some(store) = state
            .links
            .iter()
            .find(|(t, a, n, _)| {
                t == request.tenant.as_str() && a == request.app.as_str() && *n == request.store
            })
            .map(|l| l.3.clone())
        else {
            return error(403, "kv-not-linked", "the app does not link this store");
        };
        for op in &request.ops {
            let value = match op {
                KvOp::Set { value, .. } | KvOp::CompareAndSwap { value, .. } => value.0.len(),
                _ => 0,
            };
            if value > state.max_value {
                return error(
                    413,
                    "kv-value-too-large",
                    &format!("a value is at most {} bytes", state.max_value),
                );
            }
        }
        // All ops against a copy, committed together.
        let mut data = state.data.clone();
        let mut seq = state.seq;
        let mut results = Vec::new();
        let mut changes = Vec::new();
        for op in request.ops {
            let id = (store.clone(), op.key().to_string());
            let mut put = |data: &mut BTreeMap<_, _>, value: Option<Vec<u8>>| {
                seq += 1;
                match &value {
                    Some(v) => {
                        data.insert(id.clone(), (v.clone(), seq));
                    }
                    None => {
                        data.remove(&id);
                    }
                }
                changes.push(KvChange {
                    seq,
                    store: store.clone(),
                    key: Some(id.1.clone()),
                    value: value.map(KvValue),
                });
            };
            match op {
                KvOp::Set { value, .. } => {
                    put(&mut data, Some(value.0));
                    results.push(KvOpResult::Done);
                }
                KvOp::Delete { .. } => {
                    if data.contains_key(&id) {
                        put(&mut data, None);
                    }
                    results.push(KvOpResult::Done);
                }
                KvOp::Increment { delta, .. } => {
                    let current = data.get(&id).map(|(v, _)| v.as_slice());
                    match edge_common::kv::increment_value(current, delta) {
                        Ok(value) => {
                            put(&mut data, Some(value.to_string().into_bytes()));
                            results.push(KvOpResult::Incremented { value });
                        }
                        Err(e) => {
                            return error(e.code.status(), e.code.as_str(), &e.message);
                        }
                    }
                }
                KvOp::CompareAndSwap {
                    expected, value, ..
                } => {
                    let current = data.get(&id).map(|(v, _)| v.clone());
                    let swapped = current == expected.map(|e| e.0);
                    if swapped {
                        put(&mut data, Some(value.0));
                    }
                    results.push(KvOpResult::CompareAndSwap { swapped });
                }
            }
        }
        state.data = data;
        state.seq = seq;
        state.log.extend(changes.iter().cloned());
        let result = KvWriteResult {
            nonce: request.nonce,
            epoch: state.epoch.clone(),
            results,
            changes,
        };
        drop(state);
        self.changed.notify_waiters();
        self.sign(&result)
    }
}

/// A node whose data directory holds a signed snapshot with the `kv`
/// example linking `data`, talking to `cp`.
struct KvNode {
    dir: TempDir,
    node: Option<NodeHandle>,
    client: reqwest::Client,
    options: Options,
}

/// The node's `[kv]` settings, and where its control plane is.
#[derive(Clone)]
struct Options {
    write_timeout: Duration,
    max_replica_bytes: u64,
    /// Another control-plane URL than the test's (a dead port).
    url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            write_timeout: Duration::from_secs(2),
            max_replica_bytes: 256 << 20,
            url: None,
        }
    }
}

/// The `kv` example precompiled as the control plane would, once per run.
fn artifact() -> &'static (Vec<u8>, String) {
    static ARTIFACT: std::sync::OnceLock<(Vec<u8>, String)> = std::sync::OnceLock::new();
    ARTIFACT.get_or_init(|| {
        let engine = wasmtime::Engine::new(&compile_config(&CompileSettings::default())).unwrap();
        let wasm = std::fs::read(edge_fixtures::KV).unwrap();
        (
            engine.precompile_component(&wasm).unwrap(),
            engine_hash(&engine),
        )
    })
}

impl KvNode {
    async fn start(cp: &TestCp, limits: KvLimits) -> KvNode {
        Self::start_with(cp, limits, Options::default()).await
    }

    async fn start_with(cp: &TestCp, limits: KvLimits, options: Options) -> KvNode {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, engine) = tokio::task::spawn_blocking(|| artifact().clone())
            .await
            .unwrap();
        let sha = sha256_hex(&bytes);
        std::fs::create_dir_all(dir.path().join("artifacts")).unwrap();
        std::fs::write(dir.path().join("artifacts").join(&sha), &bytes).unwrap();
        let snapshot = Snapshot {
            epoch: "config-epoch".into(),
            revision: 7,
            created_unix: 1,
            apps: vec![SnapshotApp {
                tenant: TENANT.to_string().try_into().unwrap(),
                name: APP.to_string().try_into().unwrap(),
                hosts: vec![edge_common::names::HostPattern::try_from(HOST.to_string()).unwrap()],
                version: 1,
                source_sha256: sha256_hex(b"source"),
                artifact: ArtifactRef {
                    sha256: sha,
                    size: bytes.len() as u64,
                    engine,
                },
                config: BTreeMap::new(),
                limits: Default::default(),
                https: Default::default(),
                compression: Default::default(),
                secrets: None,
                outbound: Default::default(),
                kv: vec![KvLink {
                    name: "data".into(),
                    store: STORE.into(),
                }],
                kv_limits: limits,
            }],
            origins: Vec::new(),
            purges: Vec::new(),
            certificates: Vec::new(),
            acme_challenges: Vec::new(),
            tails: Vec::new(),
        };
        let signed = SignedSnapshot::sign(&snapshot, &cp.key).unwrap();
        std::fs::write(
            dir.path().join("snapshot.json"),
            serde_json::to_vec(&signed).unwrap(),
        )
        .unwrap();
        let mut node = KvNode {
            dir,
            node: None,
            client: reqwest::Client::new(),
            options,
        };
        node.restart(cp).await;
        node
    }

    /// Starts (again) on the same data directory.
    async fn restart(&mut self, cp: &TestCp) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        let mut config = NodeConfig::from_toml("").unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        config.listen.http = Some(loopback);
        config.listen.admin = Some(loopback);
        let url = self.options.url.clone().unwrap_or_else(|| cp.url());
        let mut control =
            ControlPlaneConfig::new(url, "node-token".into(), self.dir.path().to_path_buf());
        control.trust_key = Some(cp.key.verifying_key().to_hex());
        control.max_backoff = Duration::from_millis(500);
        config.control_plane = Some(control);
        config.kv.write_timeout = self.options.write_timeout;
        config.kv.max_replica_bytes = self.options.max_replica_bytes;
        self.node = Some(Node::start(config).await.unwrap());
    }

    fn handle(&self) -> &NodeHandle {
        self.node.as_ref().unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: &[u8]) -> (u16, String) {
        let addr = self.handle().http_addr.unwrap();
        let resp = self
            .client
            .request(method, format!("http://{addr}{path}"))
            .header("host", HOST)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.call(reqwest::Method::GET, path, b"").await
    }

    async fn metrics(&self) -> String {
        let addr = self.handle().admin_addr.unwrap();
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn shutdown(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

#[tokio::test]
async fn the_replica_takes_a_snapshot_then_follows_changes() {
    let cp = TestCp::start().await;
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")] {
        cp.commit(STORE, key, Some(value.as_bytes()));
    }
    cp.commit("st-other-tenant", "secret", Some(b"theirs"));
    // Positions before 6 are gone: a new node must take a snapshot.
    cp.state.lock().unwrap().pruned = 6;
    let node = KvNode::start(&cp, KvLimits::DEFAULT).await;
    eventually("the snapshot is served", || async {
        node.get("/get?key=e").await == (200, "5".into())
    })
    .await;
    assert_eq!(node.get("/get?key=a").await, (200, "1".into()));
    assert_eq!(node.get("/exists?key=c").await, (200, "true".into()));
    assert_eq!(node.get("/exists?key=zz").await.1, "false");
    assert_eq!(node.get("/get?key=zz").await.0, 404);
    assert_eq!(node.get("/list").await, (200, "a\nb\nc\nd\ne\n".into()));
    // Another tenant's store is replicated but not reachable by name.
    let (status, body) = node.get("/get?store=st-other-tenant&key=secret").await;
    assert_eq!(status, 500);
    assert!(body.starts_with("no-such-store"), "{body}");

    // Changes committed elsewhere arrive through the long poll.
    cp.commit(STORE, "a", Some(b"one"));
    cp.commit(STORE, "b", None);
    eventually("a change is applied", || async {
        node.get("/get?key=a").await == (200, "one".into())
    })
    .await;
    assert_eq!(node.get("/get?key=b").await.0, 404);
    let text = node.metrics().await;
    assert_eq!(metric_value(&text, "edge_kv_replica_seq", &[]), Some(8.0));
    assert_eq!(metric_value(&text, "edge_kv_replica_keys", &[]), Some(5.0));
    assert_eq!(
        metric_value(
            &text,
            "edge_kv_operations_total",
            &[("app", APP), ("op", "get"), ("result", "ok")]
        )
        .map(|v| v >= 4.0),
        Some(true)
    );

    // A restored control-plane database: 410, then a snapshot of the new
    // epoch replaces everything.
    cp.new_epoch("epoch-2", &[("fresh", b"yes")]);
    eventually("the new epoch is served", || async {
        node.get("/get?key=fresh").await == (200, "yes".into())
    })
    .await;
    assert_eq!(node.get("/get?key=a").await.0, 404);
    let text = node.metrics().await;
    assert!(
        metric_value(
            &text,
            "edge_kv_stream_failures_total",
            &[("reason", "resync")]
        )
        .is_some()
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_forged_batch_is_never_applied() {
    let cp = TestCp::start().await;
    cp.commit(STORE, "k", Some(b"genuine"));
    let node = KvNode::start(&cp, KvLimits::DEFAULT).await;
    eventually("the first value", || async {
        node.get("/get?key=k").await == (200, "genuine".into())
    })
    .await;
    cp.state.lock().unwrap().forge = true;
    cp.commit(STORE, "k", Some(b"forged"));
    eventually("the forged batch is counted", || async {
        metric_value(
            &node.metrics().await,
            "edge_kv_stream_failures_total",
            &[("reason", "bad-signature")],
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(node.get("/get?key=k").await, (200, "genuine".into()));
    // A write's forged answer is refused too: the guest hears unavailable.
    let (status, body) = node.call(reqwest::Method::PUT, "/set?key=w", b"v").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    assert_eq!(node.get("/get?key=w").await.0, 404);
    // Signed properly again, the stream catches up.
    cp.state.lock().unwrap().forge = false;
    eventually("the genuine stream resumes", || async {
        node.get("/get?key=k").await == (200, "forged".into())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn writes_are_committed_once_and_read_back_at_once() {
    let cp = TestCp::start().await;
    let node = KvNode::start(&cp, KvLimits::DEFAULT).await;
    eventually("the stream is connected", || async {
        metric_value(&node.metrics().await, "edge_kv_replica_lag_seconds", &[]) == Some(0.0)
            && node.get("/exists?key=x").await == (200, "false".into())
    })
    .await;
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    // Read-your-writes: the very next request sees it, no waiting.
    assert_eq!(
        node.call(put.clone(), "/set?key=x", b"hello").await,
        (200, "ok".into())
    );
    assert_eq!(node.get("/get?key=x").await, (200, "hello".into()));
    assert_eq!(
        node.call(post.clone(), "/incr?key=n&delta=5", b"").await,
        (200, "5".into())
    );
    assert_eq!(node.get("/count").await, (200, "1".into()));
    assert_eq!(node.get("/count").await, (200, "2".into()));
    assert_eq!(
        node.call(post.clone(), "/cas?key=x&expected=nope&value=v2", b"")
            .await
            .1,
        "not-swapped"
    );
    assert_eq!(
        node.call(post.clone(), "/cas?key=x&expected=hello&value=v2", b"")
            .await
            .1,
        "swapped"
    );
    assert_eq!(
        node.call(post.clone(), "/cas?key=new&value=first", b"")
            .await
            .1,
        "swapped"
    );
    assert_eq!(
        node.call(post.clone(), "/cas?key=new&value=again", b"")
            .await
            .1,
        "not-swapped"
    );
    assert_eq!(node.get("/get?key=x").await.1, "v2");
    assert_eq!(
        node.call(post.clone(), "/incr?key=x", b"")
            .await
            .1
            .split(':')
            .next(),
        Some("kv-not-a-number")
    );
    let writes_before = cp.state.lock().unwrap().writes;
    assert_eq!(
        node.call(post.clone(), "/set-many?keys=m1,m2,m3", b"same")
            .await,
        (200, "ok".into())
    );
    assert_eq!(
        node.get("/many?keys=m1,m3,absent").await.1,
        "m1=same\nm3=same\nabsent\n"
    );
    assert_eq!(
        node.call(post.clone(), "/delete-many?keys=m1,m2", b"")
            .await
            .0,
        200
    );
    assert_eq!(node.get("/many?keys=m1,m3").await.1, "m1\nm3=same\n");
    assert_eq!(
        node.call(reqwest::Method::DELETE, "/del?key=x", b"")
            .await
            .0,
        200
    );
    assert_eq!(node.get("/get?key=x").await.0, 404);
    // One write request per batch call.
    assert_eq!(cp.state.lock().unwrap().writes - writes_before, 3);
    let text = node.metrics().await;
    assert!(metric_value(&text, "edge_kv_write_seconds_count", &[]).is_some_and(|v| v >= 10.0));
    assert_eq!(
        metric_value(
            &text,
            "edge_kv_operations_total",
            &[("op", "increment"), ("result", "kv-not-a-number")]
        ),
        Some(1.0)
    );
    // Committed writes also come back on the stream: nothing doubles.
    eventually("the stream passes the writes", || async {
        metric_value(&node.metrics().await, "edge_kv_replica_seq", &[])
            == Some(cp.state.lock().unwrap().seq as f64)
    })
    .await;
    assert_eq!(node.get("/list").await.1, "hits\nm3\nn\nnew\n");
    node.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_their_code_and_nothing_is_sent_that_the_node_can_refuse() {
    let cp = TestCp::start().await;
    let limits = KvLimits {
        max_ops_per_request: 20,
        max_key_bytes: 16,
        ..KvLimits::DEFAULT
    };
    let node = KvNode::start(&cp, limits).await;
    eventually("the stream is connected", || async {
        node.get("/exists?key=x").await == (200, "false".into())
    })
    .await;
    let put = reqwest::Method::PUT;
    // Over the control plane's value limit (64 here): its code is passed on.
    let (status, body) = node.call(put.clone(), "/set?key=big", &[b'v'; 65]).await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with("kv-value-too-large: a value is at most 64 bytes"),
        "{body}"
    );
    // Over the node's own key limit: refused before anything is sent.
    let writes = cp.state.lock().unwrap().writes;
    let long = "k".repeat(17);
    let (status, body) = node
        .call(put.clone(), &format!("/set?key={long}"), b"v")
        .await;
    assert_eq!(status, 500);
    assert!(body.starts_with("kv-key-too-long"), "{body}");
    let (_, body) = node.get(&format!("/get?key={long}")).await;
    assert!(body.starts_with("kv-key-too-long"), "{body}");
    let (_, body) = node.get("/get?key=a%0Ab").await;
    assert!(body.starts_with("kv-key-invalid"), "{body}");
    assert_eq!(cp.state.lock().unwrap().writes, writes);
    // The per-request op budget: 20 gets pass, 21 do not.
    assert_eq!(node.get("/loop?key=k&n=20").await.0, 200);
    let (status, body) = node.get("/loop?key=k&n=21").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.starts_with("kv-ops-limit"), "{body}");
    // A batch counts one per key.
    let keys: Vec<String> = (0..21).map(|i| format!("k{i}")).collect();
    let (status, body) = node.get(&format!("/many?keys={}", keys.join(","))).await;
    assert_eq!(status, 429, "{body}");
    // A store the app does not link.
    let (_, body) = node.get("/get?store=elsewhere&key=k").await;
    assert!(body.starts_with("no-such-store"), "{body}");
    // The control plane no longer has the link (unlinked since the
    // snapshot): it refuses, and says why.
    cp.state.lock().unwrap().links.clear();
    let (_, body) = node.call(put.clone(), "/set?key=k", b"v").await;
    assert!(body.starts_with("kv-not-linked"), "{body}");
    // The control plane down: writes fail, reads keep being served.
    cp.state.lock().unwrap().links = vec![(TENANT.into(), APP.into(), "data".into(), STORE.into())];
    assert_eq!(node.call(put.clone(), "/set?key=k", b"kept").await.0, 200);
    cp.state.lock().unwrap().down = true;
    let (status, body) = node.call(put.clone(), "/set?key=k", b"lost").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    assert_eq!(node.get("/get?key=k").await, (200, "kept".into()));
    eventually("the lag grows while the stream fails", || async {
        metric_value(&node.metrics().await, "edge_kv_replica_lag_seconds", &[])
            .is_some_and(|v| v >= 1.0)
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_restarted_node_serves_its_stored_replica_while_the_control_plane_is_down() {
    let cp = TestCp::start().await;
    let mut node = KvNode::start(&cp, KvLimits::DEFAULT).await;
    eventually("the stream is connected", || async {
        node.get("/exists?key=x").await == (200, "false".into())
    })
    .await;
    assert_eq!(
        node.call(reqwest::Method::PUT, "/set?key=x", &[0, 1, 2, 255])
            .await
            .0,
        200
    );
    cp.commit(STORE, "y", Some(b"from elsewhere"));
    eventually("the change arrives", || async {
        node.get("/get?key=y").await.0 == 200
    })
    .await;
    cp.state.lock().unwrap().down = true;
    node.restart(&cp).await;
    assert_eq!(node.get("/get?key=y").await, (200, "from elsewhere".into()));
    let addr = node.handle().http_addr.unwrap();
    let bytes = node
        .client
        .get(format!("http://{addr}/get?key=x"))
        .header("host", HOST)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), &[0, 1, 2, 255]);
    // Back up, the stream continues from the stored position.
    cp.state.lock().unwrap().down = false;
    cp.commit(STORE, "z", Some(b"after"));
    eventually("the stream resumes", || async {
        node.get("/get?key=z").await == (200, "after".into())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn an_app_from_the_config_file_has_no_stores() {
    let node = TestNode::builder()
        .app(app("kv", edge_fixtures::KV))
        .start()
        .await;
    let resp = node
        .client()
        .get(node.url("kv.test", "/get?key=k"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("no-such-store"), "{body}");
}

/// The node's own write answer arriving after the stream has applied that
/// write and a later delete of the same key (and pruned the tombstone).
#[tokio::test]
async fn a_late_write_answer_does_not_bring_back_a_key_deleted_after_it() {
    let cp = TestCp::start().await;
    let options = Options {
        write_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    let node = KvNode::start_with(&cp, KvLimits::DEFAULT, options).await;
    eventually("the stream is connected", || async {
        node.get("/exists?key=k").await == (200, "false".into())
    })
    .await;
    cp.state.lock().unwrap().hold_writes = true;
    let addr = node.handle().http_addr.unwrap();
    let client = node.client.clone();
    let write = tokio::spawn(async move {
        let resp = client
            .put(format!("http://{addr}/set?key=k"))
            .header("host", HOST)
            .body("mine")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    eventually("the write is committed, its answer held", || async {
        cp.state.lock().unwrap().writes == 1
    })
    .await;
    // Another node deletes the key; the stream delivers the set and the
    // delete before this node's answer.
    cp.commit(STORE, "k", None);
    let head = cp.state.lock().unwrap().seq;
    eventually("the stream passes the delete", || async {
        metric_value(&node.metrics().await, "edge_kv_replica_seq", &[]) == Some(head as f64)
    })
    .await;
    cp.state.lock().unwrap().hold_writes = false;
    cp.release.notify_waiters();
    assert_eq!(write.await.unwrap(), (200, "ok".into()));
    assert_eq!(node.get("/get?key=k").await.0, 404);
    assert_eq!(node.get("/exists?key=k").await, (200, "false".into()));
    node.shutdown().await;
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_unavailable_and_never_sent_twice() {
    let cp = TestCp::start().await;
    let options = Options {
        write_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let node = KvNode::start_with(&cp, KvLimits::DEFAULT, options).await;
    eventually("the stream is connected", || async {
        node.get("/exists?key=n").await == (200, "false".into())
    })
    .await;
    cp.state.lock().unwrap().hold_writes = true;
    let (status, body) = node
        .call(reqwest::Method::POST, "/incr?key=n&delta=1", b"")
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    assert!(body.contains("may or may not have happened"), "{body}");
    // It did happen, once: an increment retried elsewhere would count 2.
    assert_eq!(cp.state.lock().unwrap().writes, 1);
    eventually("the committed increment arrives on the stream", || async {
        node.get("/get?key=n").await == (200, "1".into())
    })
    .await;
    assert_eq!(cp.state.lock().unwrap().writes, 1);
    cp.state.lock().unwrap().hold_writes = false;
    cp.release.notify_waiters();
    node.shutdown().await;
}

#[tokio::test]
async fn a_replayed_snapshot_page_is_refused() {
    let cp = TestCp::start().await;
    for key in ["a", "b", "c", "d", "e"] {
        cp.commit(STORE, key, Some(key.as_bytes()));
    }
    // Every page request gets the first page again: applied as it comes,
    // the snapshot would "complete" with a, b and c... forever, or end
    // with keys missing.
    cp.state.lock().unwrap().replay_first_page = true;
    let node = KvNode::start(&cp, KvLimits::DEFAULT).await;
    eventually("the replayed page is refused", || async {
        metric_value(
            &node.metrics().await,
            "edge_kv_stream_failures_total",
            &[("reason", "malformed")],
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    // Nothing was installed: the node says it has no data yet rather than
    // "not found".
    let (status, body) = node.get("/get?key=a").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    cp.state.lock().unwrap().replay_first_page = false;
    eventually("the snapshot completes", || async {
        node.get("/list").await == (200, "a\nb\nc\nd\ne\n".into())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_full_replica_is_reported_to_the_guest_until_a_snapshot_fits() {
    let cp = TestCp::start().await;
    let options = Options {
        max_replica_bytes: 1 << 20,
        ..Options::default()
    };
    let node = KvNode::start_with(&cp, KvLimits::DEFAULT, options).await;
    eventually("the stream is connected", || async {
        node.get("/exists?key=big1").await == (200, "false".into())
    })
    .await;
    let value = vec![b'x'; 400 << 10];
    for key in ["big1", "big2", "big3"] {
        cp.commit(STORE, key, Some(&value));
    }
    eventually("reads say the replica is full", || async {
        node.get("/get?key=big1")
            .await
            .1
            .starts_with("kv-replica-full")
    })
    .await;
    let (status, body) = node.get("/exists?key=big1").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with("kv-replica-full"), "{body}");
    assert!(
        metric_value(
            &node.metrics().await,
            "edge_kv_stream_failures_total",
            &[("reason", "replica-full")],
        )
        .is_some_and(|v| v >= 1.0)
    );
    // Room again at the control plane: the next snapshot fits.
    cp.commit(STORE, "big2", None);
    cp.commit(STORE, "big3", None);
    eventually("a snapshot that fits is served", || async {
        node.get("/exists?key=big1").await == (200, "true".into())
    })
    .await;
    assert_eq!(node.get("/exists?key=big2").await, (200, "false".into()));
    node.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_control_plane_is_unavailable_not_empty() {
    let cp = TestCp::start().await;
    let dead = edge_fixtures::net::DeadPort::new();
    let options = Options {
        url: Some(dead.http_url()),
        ..Options::default()
    };
    let node = KvNode::start_with(&cp, KvLimits::DEFAULT, options).await;
    eventually("the stream counts the refused connections", || async {
        metric_value(
            &node.metrics().await,
            "edge_kv_stream_failures_total",
            &[("reason", "unreachable")],
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    // Never synced: a read cannot say "not found".
    let (status, body) = node.get("/get?key=k").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    let (status, body) = node.call(reqwest::Method::PUT, "/set?key=k", b"v").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable"), "{body}");
    assert!(body.contains("no control plane reachable"), "{body}");
    assert_eq!(cp.state.lock().unwrap().writes, 0);
    node.shutdown().await;
}
