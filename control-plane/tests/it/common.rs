//! Shared test helpers: an in-process control plane, in-process edge nodes
//! synced from it, an API client, and a proxy that can tamper with what the
//! control plane sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edge_common::api::{Activated, Deploy, ErrorBody, ErrorDetail, NewApp, NewTenant, Uploaded};
use edge_common::names::HostPattern;
use edge_cp::api::ApiSettings;
use edge_cp::auth::Role;
use edge_cp::server::ServerHandle;
use edge_cp::{BlobsConfig, ControlPlane, CpConfig};
use edge_node::config::{ControlPlaneConfig, TlsConfig};
use edge_node::{Node, NodeConfig, NodeHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct TestCp {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub settings: ApiSettings,
    /// Where its blobs live (`DATA_DIR/blobs` unless a test says S3).
    pub blobs: BlobsConfig,
    handle: Option<ServerHandle>,
}

impl TestCp {
    pub async fn start() -> Self {
        Self::start_with(ApiSettings::default()).await
    }

    pub async fn start_with(settings: ApiSettings) -> Self {
        Self::start_with_blobs(settings, BlobsConfig::DataDir).await
    }

    /// A control plane whose blobs live in `blobs` (an S3 bucket).
    pub async fn start_with_blobs(settings: ApiSettings, blobs: BlobsConfig) -> Self {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let handle = launch(
            dir.path(),
            "127.0.0.1:0".parse().unwrap(),
            &settings,
            &blobs,
        )
        .await;
        Self {
            addr: handle.addr,
            dir,
            settings,
            blobs,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the control plane abruptly (listener and every connection).
    pub async fn kill(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// Starts it again on the same address and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.handle = Some(launch(self.dir.path(), self.addr, &self.settings, &self.blobs).await);
    }

    pub fn token(&self, role: Role, sub: &str, tenant: Option<&str>) -> String {
        issue_token(self.dir.path(), role, sub, tenant)
    }

    pub fn admin(&self) -> Client {
        Client::new(self, self.token(Role::Admin, "admin", None))
    }

    pub fn tenant(&self, tenant: &str) -> Client {
        Client::new(self, self.token(Role::Tenant, tenant, Some(tenant)))
    }

    pub fn node_token(&self, name: &str) -> String {
        self.token(Role::Node, name, None)
    }

    /// Creates a tenant and returns its client.
    pub async fn new_tenant(&self, tenant: &str) -> Client {
        create_tenant(&self.admin(), tenant).await;
        self.tenant(tenant)
    }
}

/// A token signed with the keys of the control plane whose data
/// directory is `dir`, valid for an hour.
pub fn issue_token(dir: &Path, role: Role, sub: &str, tenant: Option<&str>) -> String {
    edge_cp::open_auth(&edge_cp::keys::KeySource::DataDir(dir.into()))
        .unwrap()
        .issue(
            role,
            sub,
            tenant.map(|t| t.parse().unwrap()),
            Duration::from_secs(3600),
        )
        .unwrap()
}

/// Creates `tenant` through `admin`'s control plane.
pub async fn create_tenant(admin: &Client, tenant: &str) {
    let id = tenant.parse().unwrap();
    let (status, body) = admin.send("POST", "/v1/tenants", &NewTenant { id }).await;
    assert_eq!(status, 201, "{body}");
}

async fn launch(
    dir: &Path,
    addr: SocketAddr,
    settings: &ApiSettings,
    blobs: &BlobsConfig,
) -> ServerHandle {
    let mut config = CpConfig::new(dir, addr);
    config.api = settings.clone();
    config.blobs = blobs.clone();
    // The port was just released by the previous instance; retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ControlPlane::start(config.clone()).await {
            Ok(handle) => return handle,
            Err(e) if Instant::now() < deadline => {
                eprintln!("control plane start failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("control plane did not start: {e}"),
        }
    }
}

/// An API client with one token.
#[derive(Clone)]
pub struct Client {
    base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(cp: &TestCp, token: String) -> Self {
        Self::at(&cp.url(), token)
    }

    pub fn at(base: &str, token: String) -> Self {
        Self {
            base: base.to_string(),
            token,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request with a raw JSON body (or none): for what clients should
    /// not send, and bodies without a type.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        respond(request).await
    }

    /// A request with one of the API's request types as its body.
    pub async fn send(&self, method: &str, path: &str, body: &impl Serialize) -> (u16, Value) {
        let request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        respond(request).await
    }

    /// `GET path`, which must answer 200 with a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        answer(self.call("GET", path, None).await, 200)
    }

    pub async fn upload(&self, app: &str, wasm: Vec<u8>) -> (u16, Value) {
        respond(
            self.http
                .post(format!("{}/v1/apps/{app}/versions", self.base))
                .bearer_auth(&self.token)
                .body(wasm),
        )
        .await
    }

    pub async fn create_app(&self, app: &str, hosts: &[&str]) {
        let (status, body) = self.send("POST", "/v1/apps", &new_app(app, hosts)).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Uploads and activates; returns (version, revision).
    pub async fn deploy(&self, app: &str, wasm_path: &str) -> (u64, u64) {
        let uploaded: Uploaded = answer(
            self.upload(app, std::fs::read(wasm_path).unwrap()).await,
            201,
        );
        let version = uploaded.version;
        let deployed: Activated = answer(
            self.send(
                "POST",
                &format!("/v1/apps/{app}/deploy"),
                &Deploy { version },
            )
            .await,
            200,
        );
        (version, deployed.revision)
    }
}

async fn respond(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// An answer that must have `expected` status, read as the API's `T`.
#[track_caller]
pub fn answer<T: DeserializeOwned>((status, body): (u16, Value), expected: u16) -> T {
    assert_eq!(status, expected, "{body}");
    match serde_json::from_value(body.clone()) {
        Ok(value) => value,
        Err(e) => panic!("not a {}: {e}: {body}", std::any::type_name::<T>()),
    }
}

/// Asserts an error body with `code` and a message; returns it.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) -> ErrorDetail {
    let ErrorBody { error } = answer((status, body.clone()), expected_status);
    assert_eq!(error.code, code, "{body}");
    assert!(!error.message.is_empty(), "{body}");
    error
}

pub fn host(name: &str) -> HostPattern {
    HostPattern::try_from(name.to_string()).unwrap()
}

/// `POST /v1/apps` for a component app.
pub fn new_app(name: &str, hosts: &[&str]) -> NewApp {
    NewApp {
        name: name.parse().unwrap(),
        hosts: hosts.iter().map(|h| host(h)).collect(),
        origin: None,
        forward_override_headers: None,
    }
}

/// `POST /v1/apps` for an origin app.
pub fn new_origin_app(name: &str, hosts: &[&str], origin: &str) -> NewApp {
    NewApp {
        origin: Some(origin.to_string()),
        ..new_app(name, hosts)
    }
}

/// An edge node synced from a control plane, in process.
pub struct TestNode {
    pub data_dir: PathBuf,
    pub urls: Vec<String>,
    pub token: String,
    handle: Option<NodeHandle>,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The HTTPS listener, for a node started with [`TestNode::start_https`].
    pub https_addr: Option<SocketAddr>,
    tls: Option<TlsConfig>,
    /// The plain HTTP listener's port: 0 (any) unless a test needs to
    /// know it before the node starts (an ACME CA validating there).
    http_port: u16,
}

impl TestNode {
    pub async fn start(cp_url: &str, token: String, data_dir: &Path) -> Self {
        Self::start_with_replicas(&[cp_url.to_string()], token, data_dir).await
    }

    /// A node that fails over between several control-plane URLs.
    pub async fn start_with_replicas(cp_urls: &[String], token: String, data_dir: &Path) -> Self {
        Self::launch(cp_urls, token, data_dir, None, 0).await
    }

    /// A node with an HTTPS listener too, its file certificates from `tls`
    /// (the control plane's are served beside them).
    pub async fn start_https(cp_url: &str, token: String, data_dir: &Path, tls: TlsConfig) -> Self {
        Self::launch(&[cp_url.to_string()], token, data_dir, Some(tls), 0).await
    }

    /// [`TestNode::start_https`] with plain HTTP on `http_port`, chosen
    /// before the start (where pebble validates HTTP-01 challenges).
    pub async fn start_https_on(
        cp_url: &str,
        token: String,
        data_dir: &Path,
        tls: TlsConfig,
        http_port: u16,
    ) -> Self {
        Self::launch(&[cp_url.to_string()], token, data_dir, Some(tls), http_port).await
    }

    async fn launch(
        cp_urls: &[String],
        token: String,
        data_dir: &Path,
        tls: Option<TlsConfig>,
        http_port: u16,
    ) -> Self {
        init_logging();
        let handle = start_node(cp_urls, &token, data_dir, tls.as_ref(), http_port).await;
        Self {
            data_dir: data_dir.to_path_buf(),
            urls: cp_urls.to_vec(),
            token,
            http_addr: handle.http_addr.unwrap(),
            admin_addr: handle.admin_addr.unwrap(),
            https_addr: handle.https_addr,
            handle: Some(handle),
            tls,
            http_port,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// Stops and starts again from the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let handle = start_node(
            &self.urls,
            &self.token,
            &self.data_dir,
            self.tls.as_ref(),
            self.http_port,
        )
        .await;
        self.http_addr = handle.http_addr.unwrap();
        self.admin_addr = handle.admin_addr.unwrap();
        self.https_addr = handle.https_addr;
        self.handle = Some(handle);
    }

    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let (status, _, body) = self.get_cached(host, path).await;
        (status, body)
    }

    /// Waits until `host` answers 200 with `body`.
    pub async fn wait_for_body(&self, host: &str, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, text) = self.get(host, "/").await;
            if status == 200 && text == body {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never served {body:?} for {host}; last: {status} {text:?}",
                self.http_addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path` on `host`: status, `x-cache`, body.
    pub async fn get_cached(&self, host: &str, path: &str) -> (u16, String, String) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .resolve(host, self.http_addr)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{host}:{}{path}", self.http_addr.port()))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, cache, response.text().await.unwrap())
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        // A labelled series not observed yet is 0, as Prometheus reads it.
        sample(&self.metrics_text().await, name).unwrap_or(0.0)
    }
}

/// Logs of the in-process control planes and nodes, shown for failed
/// tests (EDGE_LOG=debug for more); and, while [`LogCapture`] is held,
/// every line at debug level kept for a test to search. One global
/// subscriber for the whole test process: the first call installs it.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, filter, fmt};
    let shown = fmt::layer().with_test_writer().with_filter(
        EnvFilter::try_from_env("EDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
    );
    let captured = fmt::layer()
        .with_ansi(false)
        .with_writer(|| CaptureWriter)
        .with_filter(filter::filter_fn(|meta| {
            CAPTURING.load(Ordering::Relaxed) > 0 && *meta.level() <= tracing::Level::DEBUG
        }));
    let _ = tracing_subscriber::registry()
        .with(shown)
        .with(captured)
        .try_init();
}

/// Tests capturing logs now (they may overlap).
static CAPTURING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
/// Bytes kept at most: a test searching for a value needs its lines, not
/// a whole run's.
const MAX_CAPTURED_BYTES: usize = 64 << 20;

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        if captured.len() + buf.len() <= MAX_CAPTURED_BYTES {
            captured.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// While held, in-process log lines at debug level and above (of this
/// test and of any running beside it) are kept, for [`LogCapture::text`].
/// Only effective if this process's subscriber is [`init_logging`]'s.
pub struct LogCapture(());

impl LogCapture {
    pub fn start() -> Self {
        init_logging();
        CAPTURING.fetch_add(1, Ordering::Relaxed);
        LogCapture(())
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        let captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&captured).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A name every test node resolves to 127.0.0.1 (`[outbound] hosts`), for
/// the apps of [`OUTBOUND_ORIGIN_TENANT`] only.
pub const OUTBOUND_ORIGIN_HOST: &str = "outbound-origin.test";
pub const OUTBOUND_ORIGIN_TENANT: &str = "acme";

async fn start_node(
    cp_urls: &[String],
    token: &str,
    data_dir: &Path,
    tls: Option<&TlsConfig>,
    http_port: u16,
) -> NodeHandle {
    let mut config = NodeConfig::from_toml("").unwrap();
    config.listen.http = Some(SocketAddr::from(([127, 0, 0, 1], http_port)));
    config.listen.admin = Some("127.0.0.1:0".parse().unwrap());
    if let Some(tls) = tls {
        config.listen.https = Some("127.0.0.1:0".parse().unwrap());
        config.tls = Some(tls.clone());
    }
    config.runtime.instance_slots = 32;
    config.http.shutdown_grace = Duration::from_secs(1);
    // Tenants' origin routes may reach the test origins on this address
    // (and no other internal one).
    config.outbound.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
    // The operator's name for those origins, for tenant `acme` only: its
    // component may call it once its app's outbound policy (set through
    // the API) lists it; any other tenant's may not.
    config.outbound.hosts.insert(
        OUTBOUND_ORIGIN_HOST.into(),
        edge_node::config::HostEntry::Tenants {
            address: "127.0.0.1".parse().unwrap(),
            tenants: [OUTBOUND_ORIGIN_TENANT.to_string()].into(),
        },
    );
    let mut cp = ControlPlaneConfig::new(cp_urls[0].clone(), token.to_string(), data_dir.into());
    cp.urls = cp_urls[1..].to_vec();
    cp.max_backoff = Duration::from_millis(500);
    config.control_plane = Some(cp);
    Node::start(config).await.unwrap()
}

/// The `edgectl` binary, built once per test process. It is a package of
/// its own, so cargo neither builds it for these tests nor names it in
/// `CARGO_BIN_EXE_*`: build it into the profile directory this test
/// binary runs from (…/target/debug/deps/it-… → …/target/debug/edgectl).
pub fn edgectl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in <target>/<profile>/deps");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile directory above {}", exe.display()),
        };
        let target_dir = profile_dir.parent().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let output = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--package",
                "edgectl",
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo build --package edgectl failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bin = profile_dir.join(format!("edgectl{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// Runs the `edgectl` binary against `api` with `token` (on the blocking
/// pool, so in-process servers keep running); returns whether it
/// succeeded, its stdout and its stderr.
pub async fn edgectl(api: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let (api, token) = (api.to_string(), token.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(edgectl_bin())
            .args(&args)
            .env("EDGE_API", &api)
            .env("EDGE_TOKEN", &token)
            .env_remove("EDGE_TENANT")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `edgectl ARGS` with `stdin` piped in: success, stdout, stderr.
pub async fn edgectl_with_stdin(
    api: &str,
    token: &str,
    args: &[&str],
    stdin: &[u8],
) -> (bool, String, String) {
    use std::io::Write;
    let (api, token, stdin) = (api.to_string(), token.to_string(), stdin.to_vec());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(edgectl_bin())
            .args(&args)
            .env("EDGE_API", &api)
            .env("EDGE_TOKEN", &token)
            .env_remove("EDGE_TENANT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // An edgectl that refuses its arguments exits without reading
        // stdin; the broken pipe that leaves is not the test's failure.
        match child.stdin.take().unwrap().write_all(&stdin) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A loopback port free a moment ago, for a server that must be told its
/// port before it starts (PostgreSQL, pebble's validation port). Another
/// process may take it meanwhile: callers start at once.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The value of the series `key` (name and labels, as printed) on a
/// Prometheus text page.
pub fn sample(page: &str, key: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let (k, v) = line.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok())?
    })
}

/// Waits until `check` holds, polling.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What [`TamperProxy`] does to what it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tamper {
    Nothing = 0,
    /// Flip a byte of every artifact.
    Artifacts = 1,
    /// Change a snapshot's payload, keeping its signature.
    Snapshots = 2,
    /// Answer 503 for artifacts (an outage, not an attack).
    ArtifactsUnavailable = 3,
}

/// A man in the middle between nodes and the control plane.
pub struct TamperProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Tamper with this artifact only (all of them if unset).
    only: Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TamperProxy {
    pub async fn start(upstream: String) -> Self {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(0));
        let only: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let shared_only = only.clone();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let shared_mode = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, mode, only) = (
                    client.clone(),
                    upstream.clone(),
                    shared_mode.clone(),
                    shared_only.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (client, upstream, mode, only) =
                            (client.clone(), upstream.clone(), mode.clone(), only.clone());
                        async move {
                            let path = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let method = req.method().clone();
                            let auth = req.headers().get("authorization").cloned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut forward = client
                                .request(method, format!("{upstream}{path}"))
                                .body(body);
                            if let Some(auth) = auth {
                                forward = forward.header("authorization", auth);
                            }
                            forward = forward.header("content-type", "application/json");
                            let response = forward.send().await.unwrap();
                            let status = response.status();
                            let mut bytes = response.bytes().await.unwrap().to_vec();
                            let mode = mode.load(Ordering::SeqCst);
                            let selected = only
                                .lock()
                                .unwrap()
                                .as_ref()
                                .is_none_or(|digest| path.ends_with(digest.as_str()));
                            if mode == Tamper::Artifacts as u8
                                && selected
                                && path.starts_with("/v1/artifacts/")
                                && !bytes.is_empty()
                            {
                                let middle = bytes.len() / 2;
                                bytes[middle] ^= 0xff;
                            }
                            if mode == Tamper::Snapshots as u8
                                && path.starts_with("/v1/sync?")
                                && status == 200
                            {
                                let mut signed: Value = serde_json::from_slice(&bytes).unwrap();
                                let payload = signed["payload"]
                                    .as_str()
                                    .unwrap()
                                    .replace("\"revision\":", "\"revision\": ");
                                signed["payload"] = Value::String(payload);
                                bytes = serde_json::to_vec(&signed).unwrap();
                            }
                            let mut out =
                                hyper::Response::new(Full::new(bytes::Bytes::from(bytes)));
                            *out.status_mut() = status;
                            if mode == Tamper::ArtifactsUnavailable as u8
                                && path.starts_with("/v1/artifacts/")
                            {
                                *out.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, std::convert::Infallible>(out)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            mode,
            only,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Limits `Tamper::Artifacts` to one artifact.
    pub fn only(&self, digest: &str) {
        *self.only.lock().unwrap() = Some(digest.to_string());
    }

    pub fn set(&self, tamper: Tamper) {
        self.mode.store(tamper as u8, Ordering::SeqCst);
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `edge-cp serve` as a process, its log in a file; killed on drop.
pub struct CpProcess {
    child: std::process::Child,
    pub url: String,
}

impl CpProcess {
    pub fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-cp"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            // Before `env`, so that a test may log more.
            .env("EDGE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = match line.trim().strip_prefix("edge-cp: api listening on ") {
            Some(url) => url.to_string(),
            None => panic!(
                "unexpected first line {line:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        };
        Self { child, url }
    }
}

impl Drop for CpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metadata store a scenario runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Makes each listed `async fn scenario(backend: Backend)` two tests,
/// `sqlite::scenario` and `postgres::scenario`, on a multi-threaded
/// runtime of `workers` threads.
macro_rules! on_both_backends {
    (workers = $workers:literal; $($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A tmpfs of `bytes` mounted at a new directory, unmounted on drop.
/// Mounting needs root, which CI and this machine have; without it the
/// test fails saying so rather than passing untested.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "the full-disk tests mount a tmpfs, which needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes a file until the filesystem is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 4096];
        loop {
            match std::io::Write::write_all(&mut file, &chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}
