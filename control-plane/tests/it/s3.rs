//! The S3 blob store against a real S3-compatible server: `s3s-fs`
//! (installed by `ops/setup` into `target/tools`), started by each test on
//! 127.0.0.1 with a temporary directory, fixed credentials and a bucket,
//! and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use edge_common::api::Uploaded;
use edge_cp::BlobsConfig;
use edge_cp::api::ApiSettings;
use edge_cp::store::s3::{S3BlobStore, S3Config, S3OpenError};
use edge_cp::store::sqlite::SqliteMetaStore;
use edge_cp::store::{BlobStore, StoreError, conformance};
use edge_fixtures::{ECHO, HELLO};

use crate::common::{TestCp, TestNode, answer, assert_error};

pub const ACCESS_KEY: &str = "edge-test-access";
pub const SECRET_KEY: &str = "edge-test-secret-key";
pub const BUCKET: &str = "edge-blobs";
const PREFIX: &str = "cp";

/// One s3s-fs process serving `dir/data`, with the bucket [`BUCKET`].
pub struct S3Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    starts: u32,
}

fn s3s_fs_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/s3s-fs");
    assert!(
        bin.is_file(),
        "{} is missing: run ops/setup (it builds s3s-fs, the S3 server these tests start)",
        bin.display()
    );
    bin
}

impl S3Server {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // s3s-fs serves each directory under its root as a bucket.
        std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).unwrap();
        let mut server = Self {
            dir,
            child: None,
            port: 0,
            starts: 0,
        };
        server.spawn();
        server
    }

    /// Starts the process (again, on the same port once it has one) and
    /// waits until it listens.
    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.starts += 1;
            let log = self.dir.path().join(format!("s3s-{}.log", self.starts));
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(s3s_fs_bin())
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(self.dir.path().join("data"))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            // It logs its address once bound (with --port 0, the port it got).
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(at) = text.find("server is running at http://127.0.0.1:") {
                    let digits: String = text[at + 38..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    self.port = digits.parse().unwrap();
                    self.child = Some(child);
                    return;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    // The old port may not be free yet after a stop.
                    assert!(
                        Instant::now() < deadline,
                        "s3s-fs exited ({status}): {text}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
                assert!(Instant::now() < deadline, "s3s-fs did not start: {text}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The store's settings, with these credentials, for `bucket/prefix`.
    pub fn config_for(&self, bucket: &str, prefix: &str, secret: &str) -> S3Config {
        let mut config = S3Config::new(format!("s3://{bucket}/{prefix}").parse().unwrap());
        config.options = [
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", ACCESS_KEY.to_string()),
            ("aws_secret_access_key", secret.to_string()),
            ("aws_region", "us-east-1".to_string()),
            ("aws_allow_http", "true".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec();
        config
    }

    pub fn config(&self) -> S3Config {
        self.config_for(BUCKET, PREFIX, SECRET_KEY)
    }

    /// The file s3s-fs keeps an object of the store in (`kind`: `blobs`,
    /// `touched`, `graves`).
    pub fn object_file(&self, kind: &str, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join(BUCKET)
            .join(PREFIX)
            .join(kind)
            .join(name)
    }

    /// Sets a blob's (and its touch marker's) modified time to `age` ago.
    pub fn age(&self, sha: &str, age: Duration) {
        let when = SystemTime::now() - age;
        for kind in ["blobs", "touched"] {
            if let Ok(file) = std::fs::File::options()
                .write(true)
                .open(self.object_file(kind, sha))
            {
                file.set_modified(when).unwrap();
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn s3_blob_store_conforms_and_keeps_blobs_across_a_reopen() {
    let server = S3Server::start();
    let store = S3BlobStore::open(&server.config()).await.unwrap();
    conformance::blob_store(&store).await;
    let kept = store.put(Bytes::from_static(b"kept")).await.unwrap();
    drop(store);
    let reopened = S3BlobStore::open(&server.config()).await.unwrap();
    assert_eq!(
        reopened.get(&kept).await.unwrap(),
        Some(Bytes::from_static(b"kept"))
    );
    conformance::blob_store(&reopened).await;
    assert!(
        server.object_file("blobs", &kept).is_file(),
        "blobs are objects under PREFIX/blobs/"
    );
    // Nothing left aside by the deletions.
    let graves = server.object_file("graves", "");
    assert!(!graves.exists() || std::fs::read_dir(graves).unwrap().count() == 0);
}

#[tokio::test]
async fn s3_blob_store_never_returns_a_corrupted_or_swapped_object() {
    let server = S3Server::start();
    let store = S3BlobStore::open(&server.config()).await.unwrap();
    let original = Bytes::from_static(b"the original bytes");
    let sha = store.put(original.clone()).await.unwrap();
    let other = store
        .put(Bytes::from_static(b"another blob"))
        .await
        .unwrap();

    // Changed behind the store's back: one flipped byte...
    std::fs::write(server.object_file("blobs", &sha), b"the original bytez").unwrap();
    match store.get(&sha).await {
        Err(StoreError::Corrupt(name)) => assert_eq!(name, sha),
        other => panic!("a corrupted object must be an error, got {other:?}"),
    }
    // ...or another blob's whole, valid bytes.
    std::fs::copy(
        server.object_file("blobs", &other),
        server.object_file("blobs", &sha),
    )
    .unwrap();
    assert!(matches!(store.get(&sha).await, Err(StoreError::Corrupt(_))));
    // Storing the bytes again repairs it.
    assert_eq!(store.put(original.clone()).await.unwrap(), sha);
    assert_eq!(store.get(&sha).await.unwrap(), Some(original));
}

#[tokio::test]
async fn s3_touch_and_put_make_an_old_blob_young() {
    let server = S3Server::start();
    let store = S3BlobStore::open(&server.config()).await.unwrap();
    let bytes = Bytes::from_static(b"an old blob");
    let sha = store.put(bytes.clone()).await.unwrap();
    let long_ago = Duration::from_secs(30 * 86400);
    let modified = || async { store.list(None, 10).await.unwrap()[0].modified_unix };
    let old = edge_cp_now() - long_ago.as_secs();

    server.age(&sha, long_ago);
    assert!(modified().await <= old);
    assert!(store.touch(&sha).await.unwrap());
    assert!(modified().await > old, "touch refreshes");
    assert!(
        !store.delete_if_unmodified_since(&sha, old).await.unwrap(),
        "touched after the cut-off: kept"
    );
    server.age(&sha, long_ago);
    store.put(bytes.clone()).await.unwrap();
    assert!(modified().await > old, "put refreshes");
    server.age(&sha, long_ago);
    assert!(
        store.delete_if_unmodified_since(&sha, old).await.unwrap(),
        "not modified after the cut-off: deleted"
    );
    assert!(!server.object_file("blobs", &sha).exists());
    assert!(!store.touch(&sha).await.unwrap(), "a touch finds it gone");
}

/// A deletion that died after moving a blob aside (its grave) and before
/// deciding: the next pass's listing puts the blob back.
#[tokio::test]
async fn s3_an_interrupted_deletion_is_undone_by_the_next_pass() {
    let server = S3Server::start();
    let store = S3BlobStore::open(&server.config()).await.unwrap();
    let bytes = Bytes::from_static(b"moved aside by a deletion that died");
    let sha = store.put(bytes.clone()).await.unwrap();
    let graves = server.object_file("graves", "");
    std::fs::create_dir_all(&graves).unwrap();
    let grave = graves.join(format!("{sha}.0123456789abcdef"));
    std::fs::rename(server.object_file("blobs", &sha), &grave).unwrap();
    assert_eq!(store.get(&sha).await.unwrap(), None);

    // A young grave may belong to a deletion still running: left alone.
    store.list(None, 10).await.unwrap();
    assert_eq!(store.get(&sha).await.unwrap(), None);
    std::fs::File::options()
        .write(true)
        .open(&grave)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let listed = store.list(None, 10).await.unwrap();
    assert!(listed.iter().any(|b| b.sha256 == sha), "{listed:?}");
    assert_eq!(store.get(&sha).await.unwrap(), Some(bytes));
    assert!(!grave.exists());
}

fn edge_cp_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A pass over S3 deletes an unreferenced blob older than the grace, and
/// spares referenced, young and touched ones.
#[tokio::test]
async fn gc_on_s3_deletes_only_old_unreferenced_untouched_blobs() {
    use edge_common::AppLimits;
    use edge_common::sync::ArtifactRef;
    use edge_cp::store::{MetaStore, NewVersion};

    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetaStore::open(&dir.path().join("meta.sqlite3")).unwrap();
    let blobs = S3BlobStore::open(&server.config()).await.unwrap();
    let put = |b: &'static [u8]| blobs.put(Bytes::from_static(b));
    let (source, artifact) = (
        put(b"source").await.unwrap(),
        put(b"artifact").await.unwrap(),
    );
    let (old_garbage, young_garbage, touched) = (
        put(b"old").await.unwrap(),
        put(b"young").await.unwrap(),
        put(b"touched").await.unwrap(),
    );
    let acme = "acme".parse().unwrap();
    let web = "web".parse().unwrap();
    meta.create_tenant(&acme).await.unwrap();
    meta.create_app(
        &acme,
        &web,
        &[edge_common::names::HostPattern::try_from("web.test".to_string()).unwrap()],
        &AppLimits::default(),
        None,
    )
    .await
    .unwrap();
    meta.add_version(
        &acme,
        &web,
        &NewVersion {
            source_sha256: source.clone(),
            source_size: 6,
            artifact: ArtifactRef {
                sha256: artifact.clone(),
                size: 8,
                engine: "e".into(),
            },
        },
        u64::MAX,
    )
    .await
    .unwrap();
    for sha in [&source, &artifact, &old_garbage, &touched] {
        server.age(sha, Duration::from_secs(7200));
    }
    // An upload reusing it, after the pass's cut-off.
    assert!(blobs.touch(&touched).await.unwrap());

    let stats = edge_cp::gc::collect(&meta, &blobs, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (stats.listed, stats.deleted, stats.deleted_bytes),
        (5, 1, 3)
    );
    assert_eq!(blobs.get(&old_garbage).await.unwrap(), None);
    for kept in [&source, &artifact, &young_garbage, &touched] {
        assert!(
            blobs.get(kept).await.unwrap().is_some(),
            "{kept} is referenced, young or touched"
        );
    }
}

#[tokio::test]
async fn s3_start_up_errors_name_what_to_fix() {
    let mut server = S3Server::start();
    let refused = S3BlobStore::open(&server.config_for(BUCKET, PREFIX, "wrong-secret"))
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, S3OpenError::Refused { .. }), "{refused}");
    assert!(refused.to_string().contains("AWS_SECRET_ACCESS_KEY"));

    let missing = S3BlobStore::open(&server.config_for("no-such-bucket", PREFIX, SECRET_KEY))
        .await
        .err()
        .unwrap();
    assert!(matches!(missing, S3OpenError::NoBucket { .. }), "{missing}");
    assert!(
        missing
            .to_string()
            .contains("bucket \"no-such-bucket\" does not exist"),
        "{missing}"
    );

    // The binary, configured from the standard environment variables.
    let dir = tempfile::tempdir().unwrap();
    let serve = |blobs: &str, secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_edge-cp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("EDGE_CP_BLOBS", blobs)
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    };
    let out = serve(&format!("s3://{BUCKET}/{PREFIX}"), "wrong-secret");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused the credentials") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    let out = serve("s3://no-such-bucket/cp", SECRET_KEY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    let out = serve("https://bucket/cp", SECRET_KEY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("starts with s3://"), "{stderr}");

    // Nobody listening.
    server.stop();
    let down = S3BlobStore::open(&server.config()).await.err().unwrap();
    assert!(matches!(down, S3OpenError::Unreachable { .. }), "{down}");
    assert!(down.to_string().contains("AWS_ENDPOINT_URL"), "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_on_s3_serves_nodes_and_survives_an_outage() {
    let mut server = S3Server::start();
    let cp =
        TestCp::start_with_blobs(ApiSettings::default(), BlobsConfig::S3(server.config())).await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let node_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), node_dir.path()).await;

    let (version, _) = acme.deploy("web", HELLO).await;
    assert_eq!(version, 1);
    node.wait_for_body("web.test", "Hello from the edge!\n")
        .await;
    // The blobs are in the bucket, not in the data directory.
    let versions: edge_common::api::VersionList = acme.get("/v1/apps/web/versions").await;
    let artifact = versions.versions[0].artifact.sha256.clone();
    assert!(server.object_file("blobs", &artifact).is_file());
    assert!(!cp.dir.path().join("blobs").join(&artifact[..2]).exists());

    // The object store goes away: uploads are refused as unavailable,
    // with a stable code and Retry-After; nodes keep serving.
    server.stop();
    let (status, body) = acme.upload("web", std::fs::read(ECHO).unwrap()).await;
    assert_error(status, &body, 503, "storage-unavailable");
    let node_token = cp.node_token("node-b");
    let fetch = reqwest::Client::new()
        .get(format!("{}/v1/artifacts/{artifact}", cp.url()))
        .bearer_auth(&node_token)
        .send()
        .await
        .unwrap();
    assert_eq!(fetch.status(), 503);
    assert_eq!(
        fetch
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "5"
    );
    assert_eq!(node.get("web.test", "/").await.0, 200);

    // Back: the same requests succeed.
    server.restart();
    let uploaded: Uploaded = answer(acme.upload("web", std::fs::read(ECHO).unwrap()).await, 201);
    assert_eq!(uploaded.version, 2);
    let fetch = reqwest::Client::new()
        .get(format!("{}/v1/artifacts/{artifact}", cp.url()))
        .bearer_auth(&node_token)
        .send()
        .await
        .unwrap();
    assert_eq!(fetch.status(), 200);
    let body = fetch.bytes().await.unwrap();
    assert_eq!(edge_common::signing::sha256_hex(&body), artifact);
}
