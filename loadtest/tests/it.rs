//! edge-load against real servers on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use edge_load::{LoadConfig, Mode, Protocol};

/// A hyper server (HTTP/1.1 and h2) answering 200 on `/` and 503 elsewhere.
async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let status = if req.uri().path() == "/" { 200 } else { 503 };
                        let mut response = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        ));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn config(addr: SocketAddr, path: &str) -> LoadConfig {
    LoadConfig {
        addr,
        https: false,
        host: "load.test".into(),
        path: path.into(),
        connections: 4,
        duration: Duration::from_millis(500),
        protocol: Protocol::Http1,
        mode: Mode::Closed,
        new_connection_per_request: false,
        insecure: false,
        roots: rustls::RootCertStore::empty(),
        progress: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_over_h1_h2_and_new_connections() {
    let addr = server().await;
    for (protocol, new_conn) in [
        (Protocol::Http1, false),
        (Protocol::Http2, false),
        (Protocol::Http1, true),
    ] {
        let report = edge_load::run(
            LoadConfig {
                protocol,
                new_connection_per_request: new_conn,
                ..config(addr, "/")
            },
            "ok",
        )
        .await
        .unwrap();
        assert!(report.requests > 0, "{report:?}");
        assert_eq!(report.statuses.get(&200), Some(&report.requests));
        assert_eq!(report.failures(), 0, "{report:?}");
        assert!(report.latency_ms.p50 <= report.latency_ms.p99);
        assert!(report.latency_ms.p99 <= report.latency_ms.max);
        assert!(report.markdown_row().starts_with("| ok |"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_exactly_the_scheduled_requests() {
    let addr = server().await;
    let report = edge_load::run(
        LoadConfig {
            mode: Mode::Open { rate: 200.0 },
            duration: Duration::from_secs(1),
            ..config(addr, "/")
        },
        "open",
    )
    .await
    .unwrap();
    // Slots due before the deadline: 200 per second for one second.
    assert_eq!(report.requests + report.errors.values().sum::<u64>(), 200);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["mode"]["loop"], "open");
    assert_eq!(json["mode"]["rate"], 200.0);
}

#[tokio::test]
async fn failures_are_counted_by_kind() {
    let addr = server().await;
    let report = edge_load::run(config(addr, "/fail"), "503").await.unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.statuses.get(&503), Some(&report.requests));
    assert_eq!(report.failures(), report.requests);

    // Nothing listens on port 1 on 127.0.0.1: every attempt is refused.
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let report = edge_load::run(config(closed, "/"), "refused")
        .await
        .unwrap();
    assert_eq!(report.requests, 0);
    assert!(
        report.errors.get("connect").is_some_and(|n| *n > 0),
        "{report:?}"
    );
}

/// The suite's own tools, as the suite runs them: `native-hello` over TLS
/// and h2, `edge-load --json` (a full handshake per connection), and
/// `edge-chart` drawing the reports.
#[test]
fn native_hello_edge_load_and_edge_chart_work_together() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let mut server = Command::new(env!("CARGO_BIN_EXE_native-hello"))
        .args(["--listen", "127.0.0.1:0", "--tls"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(server.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("native-hello: listening on ")
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for (label, extra) in [("h2", "--h2"), ("new-conn", "--new-conn")] {
        let json = dir.path().join(format!("{label}.json"));
        let status = Command::new(env!("CARGO_BIN_EXE_edge-load"))
            .args([
                "https://localhost/",
                "--connect",
                &addr,
                "--insecure",
                "-c",
                "2",
                "-d",
                "300ms",
            ])
            .args([extra, "--label", label, "--json"])
            .arg(&json)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let report: edge_load::Report =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(report.requests > 0 && report.failures() == 0, "{report:?}");
        reports.push(json);
    }
    let svg = dir.path().join("chart.svg");
    let status = Command::new(env!("CARGO_BIN_EXE_edge-chart"))
        .args(&reports)
        .args(["--title", "native hello"])
        .arg("-o")
        .arg(&svg)
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("new-conn") && svg.contains("native hello"));
    server.kill().unwrap();
    let _ = server.wait();
}
