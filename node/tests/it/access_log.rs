//! `[log] access = "stderr"`: the operator's access log, one line per
//! request through the node's log (JSON with `--log-format json`); off by
//! default.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use edge_fixtures::{HELLO, LOG_FLOOD};

const BIN: &str = env!("CARGO_BIN_EXE_edge-node");

/// Runs `edge-node --log-format json --config` with `[log]` set to
/// `access` (or left out), sends two requests, stops it; its stderr lines.
async fn run(access: Option<&str>) -> (Vec<serde_json::Value>, String) {
    let (lines, request_id, _) = run_app(access, HELLO, "/a?b=1", "Hello from the edge!\n").await;
    (lines, request_id)
}

/// As [`run`], with `component` answering `path` with `body`; also the
/// response's headers.
async fn run_app(
    access: Option<&str>,
    component: &str,
    path: &str,
    body: &str,
) -> (Vec<serde_json::Value>, String, reqwest::header::HeaderMap) {
    let dir = tempfile::tempdir().unwrap();
    let log = access.map_or(String::new(), |a| format!("\n[log]\naccess = \"{a}\"\n"));
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[[apps]]\nname = \"hello\"\ntenant = \"acme\"\n\
             hosts = [\"hello.test\"]\ncomponent = {component:?}\n{log}"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .env_remove("RUST_BACKTRACE")
        .env_remove("EDGE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("edge-node exited").unwrap();
            if let Some(addr) = line.strip_prefix("edge-node: http listening on ") {
                break addr.parse().unwrap();
            }
        }
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ok = client
        .get(format!("http://{addr}{path}"))
        .header("host", "hello.test")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let request_id = ok.headers()["x-edge-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let headers = ok.headers().clone();
    assert_eq!(ok.text().await.unwrap(), body);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (lines, request_id, headers)
}

#[tokio::test]
async fn access_lines_go_to_stderr_as_json_when_asked() {
    let (lines, request_id) = run(Some("stderr")).await;
    let access = lines
        .iter()
        .find(|l| l["target"] == "access")
        .unwrap_or_else(|| panic!("no access line in {lines:?}"));
    assert_eq!(access["tenant"], "acme");
    assert_eq!(access["app"], "hello");
    assert_eq!(access["request_id"], request_id.as_str());
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/a?b=1");
    assert_eq!(access["status"], 200);
    assert_eq!(access["bytes"], "Hello from the edge!\n".len());
    assert!(access["duration_ms"].is_u64(), "{access}");
    assert!(access["cache"].is_string(), "{access}");
}

#[tokio::test]
async fn no_access_lines_by_default_or_when_off() {
    for access in [None, Some("off")] {
        let (lines, _) = run(access).await;
        assert!(
            lines.iter().all(|l| l["target"] != "access"),
            "{access:?}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn a_guest_cannot_pass_its_answer_off_as_a_refusal_or_a_cache_hit() {
    // log-flood's `/spoof` sets `x-edge-error: denied-destination` and
    // `x-cache: HIT` on an ordinary 200.
    let (lines, request_id, headers) =
        run_app(Some("stderr"), LOG_FLOOD, "/spoof", "spoofed\n").await;
    // The header reaches the client as the guest wrote it (a guest may
    // relay a subrequest's refusal); only the node's records count.
    assert_eq!(
        headers.get("x-edge-error").and_then(|v| v.to_str().ok()),
        Some("denied-destination"),
        "{headers:?}"
    );
    let access = lines
        .iter()
        .find(|l| l["target"] == "access" && l["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access line in {lines:?}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["error_code"], "", "{access}");
    assert_ne!(access["cache"], "hit", "{access}");
}
