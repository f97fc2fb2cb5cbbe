//! What operators scrape: the control plane's admin listener, its metrics,
//! JSON logs from the real binary, and every metric name `ops/prometheus`
//! and `ops/grafana` use, checked against what a real node and a real
//! control plane export.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_common::sync::PurgeBody;
use edge_cp::auth::Role;
use edge_cp::server::ServerHandle;
use edge_cp::{ControlPlane, CpConfig};
use serde_json::Value;

use crate::common::{Client, TestNode, eventually, sample};

/// A control plane with its admin listener, on 127.0.0.1.
struct AdminCp {
    dir: tempfile::TempDir,
    handle: ServerHandle,
}

impl AdminCp {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        config.admin = Some("127.0.0.1:0".parse().unwrap());
        let handle = ControlPlane::start(config).await.unwrap();
        Self { dir, handle }
    }

    fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.admin_addr.unwrap())
    }

    fn token(&self, role: Role, sub: &str, tenant: Option<&str>) -> String {
        edge_cp::open_auth(&edge_cp::keys::KeySource::DataDir(self.dir.path().into()))
            .unwrap()
            .issue(
                role,
                sub,
                tenant.map(|t| t.parse().unwrap()),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    fn admin(&self) -> Client {
        Client::at(&self.url(), self.token(Role::Admin, "admin", None))
    }

    async fn new_tenant(&self, tenant: &str) -> Client {
        let (status, body) = self
            .admin()
            .call(
                "POST",
                "/v1/tenants",
                Some(serde_json::json!({ "id": tenant })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        Client::at(&self.url(), self.token(Role::Tenant, tenant, Some(tenant)))
    }

    async fn metrics(&self) -> String {
        get(&self.admin_url("/metrics")).await.1
    }
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn admin_listener_serves_health_readiness_and_metrics() {
    let cp = AdminCp::start().await;
    assert_eq!(get(&cp.admin_url("/healthz")).await, (200, "ok\n".into()));
    assert_eq!(get(&cp.admin_url("/readyz")).await, (200, "ready\n".into()));
    let (status, body) = get(&cp.admin_url("/nope")).await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(cp.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // The API listener does not serve the operator's pages.
    let (status, _) = get(&format!("{}/metrics", cp.url())).await;
    assert_eq!(status, 404);

    let page = cp.metrics().await;
    assert_eq!(sample(&page, "edge_cp_revision"), Some(0.0), "{page}");
    assert_eq!(sample(&page, "edge_cp_nodes"), Some(0.0), "{page}");
    let version = format!(
        "edge_cp_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&page, &version), Some(1.0), "{page}");
    assert!(sample(&page, "process_start_time_seconds").unwrap() > 0.0);
    // Every store method's error count exists from the start, at 0.
    assert_eq!(
        sample(
            &page,
            "edge_cp_store_errors_total{op=\"snapshot\",store=\"meta\"}"
        ),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "edge_cp_store_errors_total{op=\"put\",store=\"blob\"}"
        ),
        Some(0.0),
        "{page}"
    );
}

#[tokio::test]
async fn api_requests_are_labelled_by_route_template_and_unknown_paths_as_other() {
    let cp = AdminCp::start().await;
    let tenant = cp.new_tenant("acme").await;
    for app in ["shop-1", "shop-2"] {
        let (status, body) = tenant.call("GET", &format!("/v1/apps/{app}"), None).await;
        assert_eq!(status, 404, "{body}");
    }
    for path in [
        "/v1/apps/shop-1/bogus-xyz",
        "/wp-login.php",
        "/v1/%2e%2e/etc",
    ] {
        let (status, _) = tenant.call("GET", path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let page = cp.metrics().await;
    assert_eq!(
        sample(
            &page,
            "edge_cp_api_requests_total{route=\"GET /v1/apps/{app}\",status_class=\"4xx\"}"
        ),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "edge_cp_api_requests_total{route=\"other\",status_class=\"4xx\"}"
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "edge_cp_api_requests_total{route=\"POST /v1/tenants\",status_class=\"2xx\"}"
        ),
        Some(1.0),
        "{page}"
    );
    for raw in ["shop-1", "wp-login", "bogus-xyz", "%2e"] {
        assert!(
            !page.contains(raw),
            "raw path {raw} became a label:\n{page}"
        );
    }
    assert!(
        sample(
            &page,
            "edge_cp_api_request_duration_seconds_count{route=\"GET /v1/apps/{app}\"}"
        ) == Some(2.0),
        "{page}"
    );
}

#[tokio::test]
async fn long_polls_are_counted_while_they_wait() {
    let cp = AdminCp::start().await;
    let node = Client::at(&cp.url(), cp.token(Role::Node, "edge-1", None));
    let poll =
        tokio::spawn(async move { node.call("GET", "/v1/sync?since=0&wait=30s", None).await });
    eventually("a waiting long poll", || async {
        sample(&cp.metrics().await, "edge_cp_sync_waiters") == Some(1.0)
    })
    .await;
    // A deploy wakes it; the gauge goes back down.
    let tenant = cp.new_tenant("acme").await;
    tenant.create_app("web", &["web.test"]).await;
    tenant.deploy("web", edge_fixtures::HELLO).await;
    let (status, _) = poll.await.unwrap();
    assert_eq!(status, 200);
    eventually("the waiter gone", || async {
        sample(&cp.metrics().await, "edge_cp_sync_waiters") == Some(0.0)
    })
    .await;
    // The poll itself made the node known; it has applied nothing yet.
    let page = cp.metrics().await;
    assert_eq!(sample(&page, "edge_cp_nodes"), Some(1.0), "{page}");
    let revision = sample(&page, "edge_cp_revision").unwrap();
    assert!(revision >= 1.0, "{page}");
    assert_eq!(
        sample(&page, "edge_cp_node_revision_lag{node=\"edge-1\"}"),
        Some(revision),
        "{page}"
    );
    assert_eq!(
        sample(&page, "edge_cp_node_applied_revision{node=\"edge-1\"}"),
        Some(0.0),
        "{page}"
    );
}

/// A blob store that fails (its directory replaced by a file) answers
/// the upload with a 5xx and counts the failure under its method; the
/// metadata store still answers, so the replica stays ready.
#[tokio::test]
async fn store_failures_are_counted_by_store_and_method() {
    let cp = AdminCp::start().await;
    let tenant = cp.new_tenant("acme").await;
    tenant.create_app("web", &["web.test"]).await;
    let blobs = cp.dir.path().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let (status, body) = tenant
        .upload("web", std::fs::read(edge_fixtures::HELLO).unwrap())
        .await;
    assert!(status >= 500, "{status} {body}");
    let page = cp.metrics().await;
    let failed: f64 = ["put", "touch"]
        .iter()
        .filter_map(|op| {
            sample(
                &page,
                &format!("edge_cp_store_errors_total{{op=\"{op}\",store=\"blob\"}}"),
            )
        })
        .sum();
    assert!(failed >= 1.0, "{page}");
    assert_eq!(
        sample(
            &page,
            "edge_cp_store_errors_total{op=\"get_app\",store=\"meta\"}"
        ),
        Some(0.0),
        "a refusal is not a store error:\n{page}"
    );
    assert_eq!(get(&cp.admin_url("/readyz")).await.0, 200);
    assert!(
        sample(
            &page,
            "edge_cp_store_operation_duration_seconds_count{op=\"get_app\",store=\"meta\"}"
        )
        .unwrap()
            >= 1.0,
        "{page}"
    );
}

#[tokio::test]
async fn an_admin_address_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    config.admin = Some(taken.local_addr().unwrap());
    let err = ControlPlane::start(config).await.err().unwrap();
    assert!(
        err.to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{err}"
    );
}

/// Every metric name the alert rules and dashboards use, exported by a
/// real node (with a cache, apps that get traffic, a purge, a trap, an
/// unrouted request) and a real control plane.
#[tokio::test]
async fn every_metric_name_in_ops_is_exported() {
    let cp = AdminCp::start().await;
    let tenant = cp.new_tenant("acme").await;
    tenant.create_app("page", &["page.test"]).await;
    tenant.deploy("page", edge_fixtures::CACHEABLE).await;
    tenant.create_app("boom", &["boom.test"]).await;
    tenant.deploy("boom", edge_fixtures::PANIC).await;
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.token(Role::Node, "edge-1", None), data.path()).await;
    let cached = "/a?cc=max-age%3D600";
    eventually("the app served", || async {
        node.get("page.test", cached).await.0 == 200
    })
    .await;
    eventually("a cache hit", || async {
        node.get_cached("page.test", cached).await.1 == "HIT"
    })
    .await;
    assert_eq!(node.get("boom.test", "/").await.0, 500);
    assert_eq!(node.get("nowhere.test", "/").await.0, 404);
    // A certificate, so that the node exports its expiry.
    let ca = crate::certs::TestCa::new();
    let (status, body) = tenant
        .send(
            "POST",
            "/v1/apps/page/certificates",
            &ca.leaf(&["page.test"], -1, 30).upload(&[]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually("the certificate synced", || async {
        node.metrics_text()
            .await
            .contains("edge_tls_certificate_expiry_timestamp_seconds{")
    })
    .await;
    let (status, body) = tenant
        .send(
            "POST",
            "/v1/apps/page/purge",
            &PurgeBody {
                all: Some(true),
                ..PurgeBody::default()
            },
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    eventually("the purge applied", || async {
        node.metrics_text()
            .await
            .contains("edge_cache_purges_total{")
    })
    .await;
    eventually("the node's ACK", || async {
        sample(
            &cp.metrics().await,
            "edge_cp_node_revision_lag{node=\"edge-1\"}",
        ) == Some(0.0)
    })
    .await;

    let mut exported = exported_names(&node.metrics_text().await);
    exported.extend(exported_names(&cp.metrics().await));
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let mut used = BTreeSet::new();
    for (dir, ext) in [("prometheus", "yml"), ("grafana", "json")] {
        let mut files = 0;
        for entry in std::fs::read_dir(ops.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension() == Some(std::ffi::OsStr::new(ext)) {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for name in referenced_names(&text) {
                    used.insert((
                        name,
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        assert!(files > 0, "no {ext} files in ops/{dir}");
    }
    assert!(used.len() > 20, "too few names found: {used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| !exported.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "used in ops/ but not exported: {missing:?}\nexported: {exported:?}"
    );
}

/// Names on a Prometheus text page: every sample's, and for a histogram
/// also its family name (`_bucket`, `_sum`, `_count` are what is printed).
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split(' ').next() {
                names.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Metric names in rule or dashboard text: identifiers of ours (`edge_`)
/// and of the process collector (`process_`). YAML comment lines are
/// skipped (the certificate rule waits there for its metric).
fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("edge_") || word.starts_with("process_") {
                names.insert(word.to_string());
            }
        }
    }
    names
}

/// `edge-cp --log-format json serve`: every stderr line of the real
/// binary is a JSON object with the fixed names; `--admin` is announced
/// and serves; an unknown format is refused naming the choices.
#[tokio::test]
async fn the_binary_logs_json_lines_and_serves_its_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(["--log-format", "json", "serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env_remove("EDGE_LOG")
        .env_remove("EDGE_CP_DATABASE")
        .env_remove("EDGE_CP_BLOBS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let admin: SocketAddr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("edge-cp: admin listening on http://")
                    .map(|a| a.parse().unwrap())
            })
            .expect("no admin address printed")
    })
    .await
    .unwrap();
    let (status, page) = get(&format!("http://{admin}/metrics")).await;
    assert_eq!(status, 200);
    assert!(page.contains("process_cpu_seconds_total"), "{page}");
    child.kill().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let opened = lines
        .iter()
        .find(|l| l["message"] == "control plane state opened")
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    for field in ["timestamp", "level", "target", "message"] {
        assert!(opened[field].is_string(), "{opened}");
    }
    assert_eq!(opened["level"], "INFO");
    assert_eq!(
        opened["revision"], 0,
        "event fields are top-level: {opened}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(["--log-format", "xml", "public-key", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("xml") && stderr.contains("json"),
        "{stderr}"
    );
}

/// The metrics wrappers change nothing a store does: they pass the whole
/// conformance suite around the embedded backends (dump and restore
/// included), and every call is timed under its method's name.
#[tokio::test]
async fn the_instrumented_stores_conform_and_time_every_call() {
    use std::sync::Arc;

    use edge_cp::store::conformance;
    use edge_cp::store::fs::FsBlobStore;
    use edge_cp::store::instrumented::{InstrumentedBlobs, InstrumentedMeta, StoreMetrics};
    use edge_cp::store::sqlite::SqliteMetaStore;

    let dir = tempfile::tempdir().unwrap();
    let metrics = StoreMetrics::new().unwrap();
    let registry = prometheus::Registry::new();
    metrics.register(&registry).unwrap();
    let open = |name: &str| {
        InstrumentedMeta::new(
            Arc::new(SqliteMetaStore::open(&dir.path().join(name)).unwrap()),
            metrics.clone(),
        )
    };
    conformance::meta_store(&open("a.sqlite3")).await;
    conformance::dump_restore(&open("b.sqlite3"), &open("c.sqlite3")).await;
    let blobs = InstrumentedBlobs::new(
        Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap()),
        metrics.clone(),
    );
    conformance::blob_store(&blobs).await;

    let mut page = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut page,
    )
    .unwrap();
    let page = String::from_utf8(page).unwrap();
    for (store, ops) in [
        ("meta", InstrumentedMeta::OPS),
        ("blob", InstrumentedBlobs::OPS),
    ] {
        for op in ops {
            let calls = sample(
                &page,
                &format!(
                    "edge_cp_store_operation_duration_seconds_count{{op=\"{op}\",store=\"{store}\"}}"
                ),
            );
            assert!(calls.is_some_and(|n| n >= 1.0), "{store}.{op} never timed");
            // The suite provokes refusals (not found, exists, quota), never
            // a backend failure.
            assert_eq!(
                sample(
                    &page,
                    &format!("edge_cp_store_errors_total{{op=\"{op}\",store=\"{store}\"}}")
                ),
                Some(0.0),
                "{store}.{op}"
            );
        }
    }
}

/// `/readyz` follows the metadata store: a replica on PostgreSQL is ready
/// while its database answers and 503 once it is gone (dropped, its
/// connections ended), while `/healthz` still says the process is up and
/// the failed calls are counted.
#[tokio::test]
async fn readiness_fails_when_the_database_goes_away() {
    let url = crate::pg::new_database().await;
    let db = url.config().get_dbname().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    config.metadata = edge_cp::store::location::MetaLocation::Postgres(url);
    let handle = ControlPlane::start(config).await.unwrap();
    let admin = handle.admin_addr.unwrap();
    assert_eq!(get(&format!("http://{admin}/readyz")).await.0, 200);

    crate::pg::cluster()
        .admin(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await;

    let (status, body) = get(&format!("http://{admin}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: the metadata store"), "{body}");
    assert_eq!(get(&format!("http://{admin}/healthz")).await.0, 200);
    let page = get(&format!("http://{admin}/metrics")).await.1;
    let failed = sample(
        &page,
        "edge_cp_store_errors_total{op=\"revision\",store=\"meta\"}",
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{page}");
    handle.shutdown().await;
}
