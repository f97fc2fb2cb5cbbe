//! What guests can do and how their failures reach the client.

use bytes::Bytes;
use edge_common::CompileSettings;
use edge_fixtures::{ECHO, ENV, HELLO, NO_RESPONSE, PANIC, WSTD_STREAM};
use edge_node::config::{AppLimits, RuntimeConfig};
use edge_node::internals::{LoadError, Runtime};
use futures::StreamExt;

use crate::common::{TestNode, app, metric_value};

#[tokio::test]
async fn echo_streams_a_10_mb_body_back() {
    // CPU is charged per epoch tick in which the guest ran at all, and 10 MiB
    // arrive in hundreds of frames, each waking the guest: on a busy machine
    // that spans more than the default 50 ms of ticks, though the guest
    // computes little. The CPU limit is not what this test is about.
    let limits = AppLimits {
        cpu_time: std::time::Duration::from_secs(5),
        ..AppLimits::default()
    };
    let node = TestNode::builder()
        .app(app("echo", ECHO).limits(limits))
        .start()
        .await;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 160; // 10 MiB
    let chunk = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);

    for client in [node.client(), node.http1_client()] {
        let body =
            futures::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
        let resp = client
            .post(node.url("echo.test", "/upload"))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-echo-method"], "POST");
        assert_eq!(resp.headers()["x-echo-path"], "/upload");
        let mut received = 0usize;
        let mut stream = resp.bytes_stream();
        while let Some(part) = stream.next().await {
            let part = part.unwrap();
            for (offset, byte) in part.iter().enumerate() {
                let index = (received + offset) / CHUNK;
                assert_eq!(
                    *byte,
                    (index % 251) as u8,
                    "byte {} differs",
                    received + offset
                );
            }
            received += part.len();
        }
        assert_eq!(received, CHUNK * CHUNKS);
    }
}

#[tokio::test]
async fn config_values_reach_the_guest_and_nothing_else_does() {
    let node = TestNode::builder()
        .app(
            app("config", ENV)
                .env("API_BASE", "https://origin.test")
                .env("MODE", "edge"),
        )
        .start()
        .await;
    let one = node.get("config.test", "/API_BASE").await;
    assert_eq!(one.text().await.unwrap(), "https://origin.test");
    let all = node.get("config.test", "/").await;
    assert_eq!(
        all.text().await.unwrap(),
        "API_BASE=https://origin.test\nMODE=edge\n"
    );
    // The node's own environment (PATH is always set) is not inherited.
    let path = node.get("config.test", "/PATH").await;
    assert_eq!(path.status(), 404);
    // The same values through wasi:config/store, and nothing more.
    let via_store = node.get("config.test", "/?config=MODE").await;
    assert_eq!(via_store.text().await.unwrap(), "edge");
    let absent = node.get("config.test", "/?config=PATH").await;
    assert_eq!(absent.status(), 404);
}

#[tokio::test]
async fn a_trap_is_500_guest_trap_and_the_node_keeps_serving() {
    let node = TestNode::builder()
        .app(app("panic", PANIC).tenant("mallory"))
        .app(app("hello", HELLO))
        .start()
        .await;
    for _ in 0..3 {
        let resp = node.get("panic.test", "/boom").await;
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["x-edge-error"], "guest-trap");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("wasm backtrace"), "internals leaked: {body}");
        let ok = node.get("hello.test", "/").await;
        assert_eq!(ok.status(), 200);
    }
    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_guest_traps_total",
            &[
                ("tenant", "mallory"),
                ("app", "panic"),
                ("kind", "unreachable")
            ]
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn returning_without_a_response_is_502() {
    let node = TestNode::builder()
        .app(app("silent", NO_RESPONSE))
        .start()
        .await;
    let resp = node.get("silent.test", "/").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-edge-error"], "no-response");
}

#[tokio::test]
async fn wstd_components_sleep_and_stream_unchanged() {
    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .start()
        .await;
    let client = node.client();
    let slept = node.get("wstd.test", "/sleep?ms=50").await;
    assert_eq!(slept.status(), 200);
    assert_eq!(slept.text().await.unwrap(), "slept 50 ms\n");

    let resp = node.get("wstd.test", "/stream?n=20").await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut parts = 0;
    let mut text = String::new();
    while let Some(part) = stream.next().await {
        parts += 1;
        text.push_str(std::str::from_utf8(&part.unwrap()).unwrap());
    }
    let expected: String = (0..20).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected);
    assert!(
        parts > 1,
        "the body should arrive in several pieces, not buffered whole"
    );

    let echoed = client
        .post(node.url("wstd.test", "/echo"))
        .body("round trip")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "round trip");
}

/// Trailers both ways, over HTTP/2 (h2c prior knowledge on the plaintext
/// listener). Over HTTP/1.1, hyper sends response trailers only when the
/// response declares them in a `Trailer` header.
#[tokio::test]
async fn request_and_response_trailers_pass_through_h2() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .plaintext()
        .without_https()
        .start()
        .await;
    let tcp = tokio::net::TcpStream::connect(node.http_addr())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello "))),
        Ok(Frame::data(Bytes::from_static(b"world"))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = http::Request::post("http://wstd.test/trailers")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-body-bytes"], "11");
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().expect("response trailers");
    assert_eq!(trailers["x-checksum"], "abc123");
}

fn runtime() -> Runtime {
    let settings = RuntimeConfig {
        instance_slots: 4,
        ..RuntimeConfig::default()
    };
    let outbound = edge_node::internals::OutboundClient::new(
        Default::default(),
        prometheus::IntCounterVec::new(
            prometheus::Opts::new("t", "t"),
            &["tenant", "app", "result"],
        )
        .unwrap(),
    );
    Runtime::new(
        &settings,
        &CompileSettings::default(),
        std::sync::Arc::new(outbound),
    )
    .unwrap()
}

#[test]
fn every_example_loads() {
    let rt = runtime();
    for path in [HELLO, ECHO, ENV, PANIC, NO_RESPONSE, WSTD_STREAM] {
        if let Err(err) = rt.load_file(path.as_ref()) {
            panic!("{path}: {err}");
        }
    }
}

#[test]
fn components_needing_more_than_the_node_offers_are_refused_at_load() {
    let rt = runtime();
    let unknown = r#"(component
        (import "wasi:nn/graph@0.2.0-rc-2024-10-28" (instance))
        (import "wasi:blobstore/container@0.2.0-draft" (instance)))"#;
    match rt.load_bytes(unknown.as_bytes()) {
        Err(LoadError::UnsupportedImport(list)) => {
            assert!(list.contains("wasi:nn/graph@0.2.0-rc-2024-10-28"), "{list}");
            assert!(
                list.contains("wasi:blobstore/container@0.2.0-draft"),
                "{list}"
            );
            // The message says what the node does give.
            let message = LoadError::UnsupportedImport(list).to_string();
            assert!(message.contains("wasi:sockets that refuse"), "{message}");
        }
        other => panic!("expected UnsupportedImport, got {:?}", other.err()),
    }

    let too_new = r#"(component (import "wasi:cli/environment@0.2.13" (instance)))"#;
    let err = rt.load_bytes(too_new.as_bytes()).err().expect("refused");
    assert!(
        matches!(&err, LoadError::UnsupportedImport(list) if list == "wasi:cli/environment@0.2.13"),
        "{err}"
    );
    assert!(err.to_string().contains("WASI up to 0.2.12"), "{err}");

    let core_module = "(module)";
    assert!(matches!(
        rt.load_bytes(core_module.as_bytes()),
        Err(LoadError::Compile(_))
    ));
    assert!(matches!(
        rt.load_bytes(b"not wasm at all"),
        Err(LoadError::Compile(_))
    ));

    let exports_nothing = "(component)";
    // Which world a component serves, by its export.
    for (path, world) in [
        (edge_fixtures::HELLO, edge_common::world::HttpWorld::P2),
        (edge_fixtures::HELLO_P3, edge_common::world::HttpWorld::P3),
    ] {
        let loaded = rt.load_file(std::path::Path::new(path)).unwrap();
        assert_eq!(loaded.world(), world, "{path}");
    }
    assert!(matches!(
        rt.load_bytes(exports_nothing.as_bytes()),
        Err(LoadError::NoHttpHandler)
    ));
}
