//! The `edge-node` binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use edge_fixtures::{HELLO, WSTD_STREAM};

use crate::common::{eventually, metric_value};

const BIN: &str = env!("CARGO_BIN_EXE_edge-node");

/// Starts `edge-node` with `args` and waits for its "http listening on" line.
fn spawn_node(args: &[&str]) -> (Child, SocketAddr) {
    let (child, addrs) = spawn_node_with(args, &["http"]);
    (child, addrs[0])
}

/// Starts `edge-node` and returns the addresses it prints for `listeners`.
pub(crate) fn spawn_node_with(args: &[&str], listeners: &[&str]) -> (Child, Vec<SocketAddr>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn edge-node");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = Vec::new();
    for listener in listeners {
        let prefix = format!("edge-node: {listener} listening on ");
        let addr = loop {
            let line = lines
                .next()
                .expect("edge-node exited before listening")
                .expect("read stdout");
            if let Some(addr) = line.strip_prefix(&prefix) {
                break addr.parse().expect("address");
            }
        };
        addrs.push(addr);
    }
    (child, addrs)
}

pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test]
async fn serve_runs_any_component_and_sigterm_drains() {
    let (mut child, addrs) = tokio::task::spawn_blocking(|| {
        spawn_node_with(
            &[
                "serve",
                WSTD_STREAM,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            &["http", "admin"],
        )
    })
    .await
    .unwrap();
    let (addr, admin) = (addrs[0], addrs[1]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let quick = client
        .get(format!("http://{addr}/sleep?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(quick.status(), 200);

    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://{addr}/sleep?ms=1500"))
                .send()
                .await?;
            Ok::<_, reqwest::Error>((resp.status(), resp.text().await?))
        }
    });
    eventually("the slow request is in flight", || {
        let client = client.clone();
        async move {
            let Ok(resp) = client.get(format!("http://{admin}/metrics")).send().await else {
                return false;
            };
            let text = resp.text().await.unwrap_or_default();
            metric_value(&text, "edge_requests_in_flight", &[]) == Some(1.0)
        }
    })
    .await;
    sigterm(&child);
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slept 1500 ms\n");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "edge-node exited with {exit}");
}

#[tokio::test]
async fn serve_accepts_env_values() {
    let (mut child, addr) = tokio::task::spawn_blocking(|| {
        spawn_node(&[
            "serve",
            edge_fixtures::ENV,
            "--listen",
            "127.0.0.1:0",
            "--env",
            "COLOR=blue",
        ])
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = client.get(format!("http://{addr}/COLOR")).send().await;
    sigterm(&child);
    let _ = child.wait();
    assert_eq!(body.unwrap().text().await.unwrap(), "blue");
}

/// Runs `edge-node --config` on `toml` (in a temp dir holding `files`),
/// expects it to fail, and returns its stderr.
fn failing_start(toml: &str, files: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let config = dir.path().join("node.toml");
    std::fs::write(&config, toml).unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "edge-node started with a bad config"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_invalid_config_exits_non_zero_naming_the_field() {
    let stderr = failing_start(
        &format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[[apps]]\nname = \"hello\"\ntenant = \"acme\"\n\
             hosts = [\"hello.test\"]\ncomponent = {HELLO:?}\n\n[runtime]\nepoch_tick = \"1h\"\n"
        ),
        &[],
    );
    assert!(
        stderr.contains("runtime.epoch_tick: must be between 100us and 100ms"),
        "{stderr}"
    );
}

#[test]
fn a_component_that_fails_to_load_names_the_app() {
    let stderr = failing_start(
        "[listen]\nhttp = \"127.0.0.1:0\"\n\n[[apps]]\nname = \"broken\"\ntenant = \"acme\"\n\
         hosts = [\"broken.test\"]\ncomponent = \"broken.wasm\"\n",
        &[("broken.wasm", b"\0asm garbage")],
    );
    assert!(stderr.contains("app `broken`"), "{stderr}");
    assert!(
        stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

/// Runs `edge-node serve COMPONENT`, sends one GET of `path`, stops the
/// node with SIGTERM and returns the answer's status and request id, and
/// everything the node wrote to stderr.
async fn serve_once(component: &str, path: &str) -> (u16, String, String) {
    let mut child = Command::new(BIN)
        .args(["serve", component, "--listen", "127.0.0.1:0"])
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    })
    .await
    .unwrap();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let request_id = resp.headers()["x-edge-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let status = resp.status().as_u16();
    sigterm(&child);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        status,
        request_id,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn guest_output_is_logged_with_app_and_request_id() {
    let (status, request_id, log) = serve_once(edge_fixtures::PANIC, "/boom").await;
    assert_eq!(status, 500);
    let line = log
        .lines()
        .find(|l| l.contains("about to panic on /boom"))
        .unwrap_or_else(|| panic!("guest line not logged:\n{log}"));
    assert!(line.contains("app=panic"), "{line}");
    assert!(line.contains(&format!("request_id={request_id}")), "{line}");
    assert!(line.contains("stream=\"stderr\""), "{line}");
}

/// What language runtimes import (wasi:filesystem, wasi:sockets) loads
/// under `serve` too; the probes' refusals are asserted in `limits`.
#[tokio::test]
async fn serve_runs_a_component_importing_filesystem_and_sockets() {
    let (status, _, log) = serve_once(edge_fixtures::SANDBOX, "/listen").await;
    assert_eq!(status, 200, "{log}");
}

/// `serve` runs a WASI 0.3 component too, and its stdout reaches the log
/// as a 0.2 guest's does: per line, with the app and the request id.
#[tokio::test]
async fn serve_runs_a_p3_component_and_logs_its_output() {
    let (status, request_id, log) =
        serve_once(edge_fixtures::P3_PROBE, "/log?p3-line-for-the-log").await;
    assert_eq!(status, 200, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("p3-line-for-the-log"))
        .unwrap_or_else(|| panic!("guest line not logged:\n{log}"));
    assert!(line.contains(&format!("request_id={request_id}")), "{line}");
    assert!(line.contains("stream=\"stdout\""), "{line}");
}

/// A guest's line with terminal controls reaches the node's log escaped:
/// the operator's terminal is never driven by a tenant's bytes.
#[tokio::test]
async fn guest_controls_reach_the_log_escaped() {
    let path = "/evil?say=%1B%5B2J%1B%5D0%3Bowned%07red%0Dover%00nul%C2%9B31m%E2%80%AEtxt";
    let (status, _, log) = serve_once(edge_fixtures::LOG_FLOOD, path).await;
    assert_eq!(status, 200);
    let line = log
        .lines()
        .find(|l| l.contains("owned"))
        .unwrap_or_else(|| panic!("guest line not logged:\n{log}"));
    assert!(
        line.contains(
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}red\\u{d}over\\u{0}nul\\u{9b}31m\\u{202e}txt"
        ),
        "{line}"
    );
    for raw in ['\u{1b}', '\r', '\0', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(!log.contains(raw), "{raw:?} reached the log:\n{log}");
    }
}

fn failing_flags(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(!output.status.success(), "edge-node started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn control_plane_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let stderr = failing_flags(&[
        "--control-plane",
        "http://10.1.2.3:7070",
        "--token",
        "t",
        "--data-dir",
        data,
        "--listen-http",
        "127.0.0.1:0",
    ]);
    assert!(
        stderr
            .contains("control_plane.url: plaintext http:// is only allowed to a loopback address"),
        "{stderr}"
    );
    let stderr = failing_flags(&[
        "--control-plane",
        "http://127.0.0.1:9",
        "--listen-http",
        "127.0.0.1:0",
    ]);
    assert!(stderr.contains("--control-plane needs --token"), "{stderr}");
    let stderr = failing_flags(&["--token", "t", "--listen-http", "127.0.0.1:0"]);
    assert!(stderr.contains("need --control-plane"), "{stderr}");
}

/// A node whose control plane is unreachable (and which has no stored
/// state) still starts, answers 404 for unknown hosts, and counts the
/// failed polls.
#[tokio::test]
async fn a_node_starts_without_its_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    // A port that refuses connections, held for the whole test so that no
    // other test's server can take it.
    let dead = edge_fixtures::net::DeadPort::new();
    let (mut child, addrs) = spawn_node_with(
        &[
            "--control-plane",
            &dead.http_url(),
            "--token",
            "t",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen-http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &["http", "admin"],
    );
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{}/", addrs[0]))
        .header("host", "anything.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let metrics_url = format!("http://{}/metrics", addrs[1]);
    let mut failures = 0.0;
    for _ in 0..100 {
        let text = client
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        failures = text
            .lines()
            .find_map(|l| l.strip_prefix("edge_sync_failures_total{reason=\"unreachable\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if failures > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(failures > 0.0, "no failed poll was counted");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// `--log-format json`: every line the real binary writes to stderr is one
/// JSON object with the fixed names, and a guest's line carries its app
/// and request id as top-level fields.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_flat_fields() {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            edge_fixtures::PANIC,
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_BACKTRACE")
        .env_remove("EDGE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    })
    .await
    .unwrap();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let request_id = resp.headers()["x-edge-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    sigterm(&child);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let guest = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("about to panic on /boom"))
        })
        .unwrap_or_else(|| panic!("guest line not logged:\n{log}"));
    assert_eq!(guest["app"], "panic", "{guest}");
    assert_eq!(guest["request_id"], request_id.as_str(), "{guest}");
    assert!(
        lines.iter().any(|l| l["message"] == "stopped"),
        "no shutdown line:\n{log}"
    );
    let stderr = failing_flags(&["--log-format", "yaml", "serve", HELLO]);
    assert!(
        stderr.contains("yaml") && stderr.contains("json"),
        "{stderr}"
    );
}

/// `--token-file`: the token is read from the file (what systemd's
/// `LoadCredential=` provides) and sent to the control plane; a missing
/// file stops the start naming it, and a token given twice is refused.
#[tokio::test]
async fn the_token_can_come_from_a_file() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("node-token");
    std::fs::write(&token_path, "secret-from-file\n").unwrap();
    // A control plane that records the first request's head and refuses.
    let cp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cp_addr = cp.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        let (mut stream, _) = cp.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let data_dir = dir.path().join("data");
    let (mut child, _) = spawn_node_with(
        &[
            "--control-plane",
            &format!("http://{cp_addr}"),
            "--token-file",
            token_path.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen-http",
            "127.0.0.1:0",
        ],
        &["http"],
    );
    let head = tokio::task::spawn_blocking(move || seen.join().unwrap())
        .await
        .unwrap();
    assert!(
        head.contains("authorization: bearer secret-from-file\r\n"),
        "{head}"
    );
    sigterm(&child);
    assert!(child.wait().unwrap().success());

    let missing = dir.path().join("absent-token");
    let stderr = failing_flags(&[
        "--control-plane",
        &format!("http://{cp_addr}"),
        "--token-file",
        missing.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen-http",
        "127.0.0.1:0",
    ]);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    let stderr = failing_flags(&[
        "--control-plane",
        &format!("http://{cp_addr}"),
        "--token",
        "t",
        "--token-file",
        token_path.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(stderr.contains("--token-file"), "{stderr}");
}

/// `SIGHUP` re-reads the config file and serves its `[tls]` certificates
/// from the next handshake on; a file that does not load (a broken key,
/// a broken file) changes nothing, and the node says so in its log.
#[tokio::test]
async fn sighup_reloads_the_file_certificates_and_a_bad_file_changes_nothing() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |names: &[&str]| {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        made.cert.pem()
    };
    let first = write_cert(&["reload.test"]);
    let config = dir.path().join("node.toml");
    let toml = "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\nsource = \"files\"\n\n\
                [[tls.certificates]]\nhosts = [\"reload.test\"]\ncert_path = \"cert.pem\"\n\
                key_path = \"key.pem\"\n";
    std::fs::write(&config, toml).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
        line.strip_prefix("edge-node: https listening on ")
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap()
    })
    .await
    .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Waits for the log line that says how a SIGHUP went.
    let hangup_and_wait_for = |child: &Child, expected: &str| {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(100))
                && line.contains("SIGHUP")
            {
                assert!(line.contains(expected), "{line}");
                return line;
            }
        }
        panic!("no SIGHUP log line");
    };
    let serves = |root: String| async move {
        reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
            .resolve("reload.test", addr)
            .build()
            .unwrap()
            .get(format!("https://reload.test:{}/", addr.port()))
            .send()
            .await
            .is_ok()
    };
    assert!(serves(first.clone()).await);

    let second = write_cert(&["reload.test"]);
    hangup_and_wait_for(&child, "reloaded the [tls] certificates");
    assert!(serves(second.clone()).await);
    assert!(!serves(first.clone()).await);

    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let line = hangup_and_wait_for(&child, "keeping the current certificates");
    assert!(line.contains("key.pem"), "{line}");
    assert!(serves(second.clone()).await);

    std::fs::write(&config, format!("{toml}\n[surprise]\n")).unwrap();
    hangup_and_wait_for(&child, "keeping the current certificates");
    assert!(serves(second).await);

    sigterm(&child);
    // Off the test's thread: the clients' connection tasks run on it, and
    // must close their connections for the node to finish draining.
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "edge-node exited with {exit}");
}
