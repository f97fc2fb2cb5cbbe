//! Chaos: processes killed with SIGKILL mid-write, full disks, corrupted
//! local state and skewed clocks. The control plane runs as the real
//! `edge-cp` binary and a node as a child process of this test binary
//! (`node_child_process` below, the node in process there), so a kill is a
//! real `kill -9`. With the `chaos` feature (on in these tests) a process
//! whose `EDGE_CHAOS_HOLD` names a crash point stops there and says so on
//! stderr (`edge_common::chaos`): each kill lands in exactly the state it
//! names, with half a file written or a compile under way.
//!
//! What every case asserts: nothing half written is ever served or used
//! again, every refusal is a deliberate answer, and the restart is clean.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use edge_common::api::{App, VersionList};
use edge_common::signing::sha256_hex;
use edge_cp::auth::Role;
use edge_fixtures::{ECHO, HELLO};

use crate::common::{
    Client, TestCp, TestNode, Tmpfs, answer, assert_error, create_tenant, eventually, issue_token,
};

const HELLO_BODY: &str = "Hello from the edge!\n";

/// A process whose stdout and stderr lines arrive on channels.
struct Proc {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The first stdout line starting with `prefix`, without it.
    fn stdout_line(&mut self, prefix: &str) -> String {
        loop {
            match self.stdout.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(e) => panic!("no `{prefix}` line ({e}); stderr:\n{}", self.stderr_text()),
            }
        }
    }

    /// Waits until the process says it holds at a crash point naming
    /// `what`.
    fn wait_holding(&mut self, what: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(point) = line.strip_prefix("edge-chaos: holding at ")
                        && point.contains(what)
                    {
                        return point.to_string();
                    }
                }
                Err(e) => panic!(
                    "never held at {what} ({e}); stderr:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    fn stderr_text(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// SIGKILL, and the exit reaped.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaped");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `edge-cp serve` on `dir`, at `listen`, holding at `hold`.
fn edge_cp(dir: &Path, listen: SocketAddr, hold: Option<&str>) -> (Proc, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-cp"));
    command
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &listen.to_string()])
        .env_remove("EDGE_CP_DATABASE")
        .env_remove("EDGE_CP_BLOBS")
        .env("EDGE_LOG", "warn")
        .env("EDGE_CHAOS_HOLD", hold.unwrap_or(""));
    let mut proc = Proc::spawn(command);
    let addr = proc
        .stdout_line("edge-cp: api listening on http://")
        .parse()
        .expect("an address");
    (proc, addr)
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Every blob in the store's directory has the name of its digest, and
/// nothing but the store's own directories is there.
fn assert_blobs_intact(dir: &Path) {
    let blobs = dir.join("blobs");
    let Ok(prefixes) = std::fs::read_dir(&blobs) else {
        return;
    };
    for prefix in prefixes {
        for blob in std::fs::read_dir(prefix.expect("entry").path()).expect("a prefix directory") {
            let path = blob.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(&path).expect("a blob");
            assert_eq!(sha256_hex(&bytes), name, "{} is not whole", path.display());
        }
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An upload on its own connection that will not be answered (the
/// control plane is stopped in its middle): its result is not awaited.
fn upload_in_background(base: &str, token: &str, app: &str, wasm: Vec<u8>) {
    let request = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{base}/v1/apps/{app}/versions"))
        .bearer_auth(token)
        .body(wasm);
    tokio::spawn(async move {
        let _ = request.send().await;
    });
}

/// `kill -9` of the control plane during an upload (half its body
/// received), during the compile, and with half of the blob written: each
/// time the restarted control plane has no trace of the version, every
/// blob on disk is whole, and the same upload then succeeds and deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_mid_upload_keeps_nothing_half_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp, addr) = edge_cp(dir.path(), any_port(), None);
    let base = format!("http://{addr}");
    let admin = Client::at(&base, issue_token(dir.path(), Role::Admin, "admin", None));
    create_tenant(&admin, "acme").await;
    let token = issue_token(dir.path(), Role::Tenant, "acme", Some("acme"));
    let acme = Client::at(&base, token.clone());
    acme.create_app("web", &["web.test"]).await;
    let wasm = std::fs::read(HELLO).expect("the hello component");

    // 1. Half the body sent, then the process is gone.
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/apps/web/versions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        wasm.len()
    )
    .expect("head");
    stream
        .write_all(&wasm[..wasm.len() / 2])
        .expect("half a body");
    stream.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    cp.kill_9();
    drop(stream);

    // 2. The whole body received, killed while compiling.
    let (mut cp, _) = edge_cp(dir.path(), addr, Some("compile"));
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert!(versions.versions.is_empty(), "{versions:?}");
    upload_in_background(&base, &token, "web", wasm.clone());
    cp.wait_holding("compile");
    cp.kill_9();

    // 3. Compiled, killed with half of the first blob written.
    let (mut cp, _) = edge_cp(dir.path(), addr, Some("/blobs/"));
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert!(versions.versions.is_empty(), "{versions:?}");
    upload_in_background(&base, &token, "web", wasm.clone());
    let point = cp.wait_holding("/blobs/");
    let target = PathBuf::from(point.strip_prefix("write ").expect("a write point"));
    let half: Vec<_> = files_in(&dir.path().join("tmp"));
    assert_eq!(half.len(), 1, "the half-written file: {half:?}");
    cp.kill_9();
    assert!(!target.exists(), "{} is in place", target.display());
    assert_blobs_intact(dir.path());

    // The restart: leftovers gone, nothing recorded, and the same upload
    // goes through and deploys.
    let (_cp, _) = edge_cp(dir.path(), addr, None);
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert!(versions.versions.is_empty(), "{versions:?}");
    let app: App = acme.get("/v1/apps/web").await;
    assert_eq!(app.active_version, None);
    let (version, _) = acme.deploy("web", HELLO).await;
    assert_eq!(version, 1);
    assert_blobs_intact(dir.path());
    let node_dir = tempfile::tempdir().expect("tempdir");
    let node_token = issue_token(dir.path(), Role::Node, "node-a", None);
    let node = TestNode::start(&base, node_token, node_dir.path()).await;
    node.wait_for_body("web.test", HELLO_BODY).await;
}

/// The entry point of a node child process (see the module's comment):
/// run by the tests below with `EDGE_CHAOS_NODE_DIR` set, killed by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the chaos tests, not a test of its own"]
async fn node_child_process() {
    let (Ok(dir), Ok(url), Ok(token)) = (
        std::env::var("EDGE_CHAOS_NODE_DIR"),
        std::env::var("EDGE_CHAOS_CP_URL"),
        std::env::var("EDGE_CHAOS_NODE_TOKEN"),
    ) else {
        return;
    };
    let node = TestNode::start(&url, token, Path::new(&dir)).await;
    println!("edge-chaos: node http {}", node.http_addr);
    std::future::pending::<()>().await;
}

/// A node in a child process, synced from `cp_url` into `dir`.
fn node_process(cp_url: &str, token: &str, dir: &Path, hold: &str) -> (Proc, SocketAddr) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "chaos::node_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("EDGE_CHAOS_NODE_DIR", dir)
        .env("EDGE_CHAOS_CP_URL", cp_url)
        .env("EDGE_CHAOS_NODE_TOKEN", token)
        .env("EDGE_CHAOS_HOLD", hold);
    let mut proc = Proc::spawn(command);
    let addr = proc
        .stdout_line("edge-chaos: node http ")
        .parse()
        .expect("an address");
    (proc, addr)
}

/// GET `/` on `host` at a node's address.
async fn get(addr: SocketAddr, host: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let response = client
        .get(format!("http://{addr}/"))
        .header("host", host)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// `kill -9` of a node with half of a new artifact written: restarted
/// while the control plane is down, it serves the version it had applied
/// (never the half), drops the leftover, and takes the new version once
/// the control plane is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_artifact_write_never_serves_the_half() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    let node_dir = tempfile::tempdir().expect("tempdir");
    let token = cp.node_token("node-a");

    // v1 applied and kept first (every artifact write would hold).
    let (node, addr) = node_process(&cp.url(), &token, node_dir.path(), "");
    eventually("v1 served by the child node", || async {
        get(addr, "web.test").await == (200, HELLO_BODY.to_string())
    })
    .await;
    node.kill_9();

    let (mut node, addr) = node_process(&cp.url(), &token, node_dir.path(), "/artifacts/");
    assert_eq!(get(addr, "web.test").await, (200, HELLO_BODY.to_string()));
    let (v2, _) = acme.deploy("web", ECHO).await;
    assert_eq!(v2, 2);
    let point = node.wait_holding("/artifacts/");
    let target = PathBuf::from(point.strip_prefix("write ").expect("a write point"));
    // Still serving v1 while the write holds.
    assert_eq!(get(addr, "web.test").await, (200, HELLO_BODY.to_string()));
    node.kill_9();
    let artifacts = node_dir.path().join("artifacts");
    let name = target
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let leftovers: Vec<String> = files_in(&artifacts)
        .into_iter()
        .filter(|f| f.starts_with(&name) && f != &name)
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the half-written artifact: {leftovers:?}"
    );
    assert!(!target.exists(), "{} is in place", target.display());

    // Restarted with the control plane down: v1, from what it had.
    cp.kill().await;
    let mut restarted = TestNode::start(&cp.url(), token.clone(), node_dir.path()).await;
    assert_eq!(
        restarted.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    assert!(
        files_in(&artifacts).iter().all(|f| !f.contains(".tmp")),
        "a leftover survived the restart: {:?}",
        files_in(&artifacts)
    );
    // The control plane back: v2, written whole this time.
    cp.restart().await;
    restarted.wait_for_body("web.test", "").await;
    let bytes = std::fs::read(&target).expect("the artifact, whole");
    assert_eq!(sha256_hex(&bytes), name);
    restarted.stop().await;
}

/// A node's stored artifact, then its stored snapshot, corrupted while it
/// was down: on restart each is detected and refused (never loaded), and
/// fetched again from the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_local_state_is_refused_and_fetched_again() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    let node_dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::start(&cp.url(), cp.node_token("node-a"), node_dir.path()).await;
    node.wait_for_body("web.test", HELLO_BODY).await;
    node.stop().await;

    let artifacts = node_dir.path().join("artifacts");
    let names = files_in(&artifacts);
    assert_eq!(names.len(), 1, "{names:?}");
    let artifact = artifacts.join(&names[0]);
    let mut bytes = std::fs::read(&artifact).expect("the artifact");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&artifact, &bytes).expect("corrupted");

    // With the control plane down, the corrupted artifact is not loaded:
    // the app is not served, and says why.
    cp.kill().await;
    node.restart().await;
    let (status, body) = node.get("web.test", "/").await;
    // Not loaded, and no earlier version to fall back on: its host is
    // known, and says the app is unavailable here until fetched again.
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "app-unavailable: the app serving host web.test could not be loaded on this node\n"
        ),
        "served from a corrupted artifact"
    );
    // Back: fetched again, whole, and served.
    cp.restart().await;
    node.wait_for_body("web.test", HELLO_BODY).await;
    assert_eq!(
        sha256_hex(&std::fs::read(&artifact).expect("the artifact")),
        names[0]
    );
    node.stop().await;

    // The snapshot: one byte of its signed payload changed.
    let snapshot = node_dir.path().join("snapshot.json");
    let text = std::fs::read_to_string(&snapshot).expect("the snapshot");
    let changed = text.replacen("web.test", "wex.test", 1);
    assert_ne!(changed, text);
    std::fs::write(&snapshot, changed).expect("corrupted");
    cp.kill().await;
    node.restart().await;
    let (status, _) = node.get("web.test", "/").await;
    assert_eq!(status, 404, "served from a snapshot whose signature fails");
    let (status, _) = node.get("wex.test", "/").await;
    assert_eq!(status, 404, "the altered snapshot's route is served");
    cp.restart().await;
    node.wait_for_body("web.test", HELLO_BODY).await;
    node.stop().await;
}

/// The control plane's disk fills up: an upload is refused with 507
/// `storage-full` (nothing stored), the control plane stays up, the same
/// upload works once space is freed, and a restart after a kill is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clean_refusal_for_the_control_plane() {
    let disk = Tmpfs::mount(16 << 20);
    let data = disk.path().join("cp");
    let (cp, addr) = edge_cp(&data, any_port(), None);
    let base = format!("http://{addr}");
    let admin = Client::at(&base, issue_token(&data, Role::Admin, "admin", None));
    create_tenant(&admin, "acme").await;
    let acme = Client::at(
        &base,
        issue_token(&data, Role::Tenant, "acme", Some("acme")),
    );
    acme.create_app("web", &["web.test"]).await;
    let wasm = std::fs::read(HELLO).expect("the hello component");

    let filler = disk.fill();
    let (status, body) = acme.upload("web", wasm.clone()).await;
    assert_error(status, &body, 507, "storage-full");
    // Up, answering, and with nothing of the refused upload.
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert!(versions.versions.is_empty(), "{versions:?}");
    assert_eq!(files_in(&data.join("tmp")), Vec::<String>::new());
    assert_blobs_intact(&data);

    std::fs::remove_file(&filler).expect("space freed");
    let uploaded: edge_common::api::Uploaded = answer(acme.upload("web", wasm).await, 201);
    assert_eq!(uploaded.version, 1);
    cp.kill_9();
    let (_cp, _) = edge_cp(&data, addr, None);
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert_eq!(versions.versions.len(), 1);
    assert_blobs_intact(&data);
}

/// A node's disk fills up: a new version cannot be kept, so it is not
/// applied (the node serves the one it has, counts the failure and
/// retries), and once space is freed the new version applies; a restart
/// then serves it from disk, with nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_a_node_keeps_the_applied_version() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    let disk = Tmpfs::mount(64 << 20);
    let node_dir = disk.path().join("node");
    let mut node = TestNode::start(&cp.url(), cp.node_token("node-a"), &node_dir).await;
    node.wait_for_body("web.test", HELLO_BODY).await;

    let filler = disk.fill();
    acme.deploy("web", ECHO).await;
    eventually("the node counts the failed write", || async {
        node.metric("edge_sync_failures_total{reason=\"persist\"}")
            .await
            > 0.0
    })
    .await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );

    std::fs::remove_file(&filler).expect("space freed");
    node.wait_for_body("web.test", "").await;
    cp.kill().await;
    node.restart().await;
    assert_eq!(node.get("web.test", "/").await, (200, String::new()));
    let artifacts = files_in(&node_dir.join("artifacts"));
    assert!(
        artifacts.iter().all(|f| !f.contains(".tmp")),
        "{artifacts:?}"
    );
    node.stop().await;
}

/// Tokens from an issuer whose clock is off: within the 5 s leeway they
/// are accepted; beyond it refused with the code that says which way
/// (`token-not-yet-valid`, `token-expired`). A node whose token was issued
/// by a clock running ahead is refused until the token's time comes, then
/// syncs on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_within_the_leeway_passes_and_beyond_is_refused() {
    let cp = TestCp::start().await;
    let auth = edge_cp::open_auth(&edge_cp::keys::KeySource::DataDir(cp.dir.path().into()))
        .expect("the token key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let ttl = Duration::from_secs(60);
    let skewed = |offset: i64| {
        let issued = now.checked_add_signed(offset).expect("a time");
        auth.issue_at(Role::Admin, "admin", None, ttl, issued)
            .expect("a token")
    };
    let whoami = |token: String| {
        let client = Client::at(&cp.url(), token);
        async move { client.call("GET", "/v1/whoami", None).await }
    };
    // An issuer 3 s ahead (nbf 3 s from now): within the leeway.
    assert_eq!(whoami(skewed(3)).await.0, 200);
    // 30 s ahead: not valid yet.
    let (status, body) = whoami(skewed(30)).await;
    assert_error(status, &body, 401, "token-not-yet-valid");
    // An issuer behind by the token's whole lifetime and 3 s: expired 3 s
    // ago, within the leeway; by 30 s more, expired.
    assert_eq!(whoami(skewed(-63)).await.0, 200);
    let (status, body) = whoami(skewed(-90)).await;
    assert_error(status, &body, 401, "token-expired");

    // A node token from a clock 8 s ahead: refused at first (beyond the
    // leeway), accepted once the node's time catches up, with no restart.
    let node_token = auth
        .issue_at(Role::Node, "node-a", None, ttl, now + 8)
        .expect("a token");
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    let node_dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(&cp.url(), node_token, node_dir.path()).await;
    eventually("the node is refused as not yet valid", || async {
        node.metric("edge_sync_failures_total{reason=\"unauthorized\"}")
            .await
            > 0.0
    })
    .await;
    node.wait_for_body("web.test", HELLO_BODY).await;
}
