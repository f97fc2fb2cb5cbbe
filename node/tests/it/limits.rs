//! Per-app limits against hostile components: each limit holds, the client
//! gets the documented answer, and other apps keep being served meanwhile.

use std::time::Duration;

use bytes::Bytes;
use edge_fixtures::{
    CPU_LOOP, ECHO, HEADER_BOMB, HELLO, HUGE_RESPONSE, ISOLATION, MEMORY_BOMB, SANDBOX,
    SLOW_RESPONSE, STACK_OVERFLOW, WSTD_STREAM,
};
use edge_node::config::AppLimits;

use crate::common::{TestNode, app, metric_value, read_body, wait_in_flight};

fn limits() -> AppLimits {
    AppLimits::default()
}

/// Asserts `hello` answers while something else is going on.
async fn hello_still_answers(node: &TestNode) {
    let resp = node.get("hello.test", "/").await;
    assert_eq!(resp.status(), 200);
}

async fn rejections(node: &TestNode, app: &str, reason: &str) -> Option<f64> {
    let text = node.metrics_text().await;
    metric_value(
        &text,
        "edge_limit_rejections_total",
        &[("app", app), ("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_stopped_at_its_cpu_budget_without_starving_others() {
    let node = TestNode::builder()
        .app(app("spin", CPU_LOOP).tenant("mallory"))
        .app(app("hello", HELLO))
        .start()
        .await;
    let client = node.client();
    // Four hogs at once: more than the two tokio workers.
    let hogs: Vec<_> = (0..4)
        .map(|_| tokio::spawn(client.get(node.url("spin.test", "/")).send()))
        .collect();
    for _ in 0..10 {
        hello_still_answers(&node).await;
    }
    for hog in hogs {
        let resp = hog.await.unwrap().unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-edge-error"], "cpu-time-exceeded");
        assert!(resp.headers().get("retry-after").is_none());
    }
    assert_eq!(
        rejections(&node, "spin", "cpu-time-exceeded").await,
        Some(4.0)
    );
    // Under its budget the same component answers.
    let small = node.get("spin.test", "/?iters=1").await;
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn waiting_does_not_count_as_cpu_time() {
    // 40 sleeps of 10 ms: 400 ms of wall time with a 20 ms CPU budget.
    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM).limits(AppLimits {
            cpu_time: Duration::from_millis(20),
            ..limits()
        }))
        .start()
        .await;
    let resp = node.get("wstd.test", "/stream?n=40").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().lines().count(), 40);
}

#[tokio::test]
async fn wall_time_cuts_off_slow_answers_and_slow_bodies() {
    let node = TestNode::builder()
        .app(app("slow", SLOW_RESPONSE).limits(AppLimits {
            wall_time: Duration::from_millis(500),
            ..limits()
        }))
        .app(app("hello", HELLO))
        .start()
        .await;
    let resp = node.get("slow.test", "/?ms=60000").await;
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-edge-error"], "wall-time-exceeded");

    // Headers already sent: the body is cut off, visibly to the client.
    let resp = node.get("slow.test", "/trickle").await;
    assert_eq!(resp.status(), 200);
    let (_, failed) = read_body(resp).await;
    assert!(failed, "a cut-off body must not look complete");
    hello_still_answers(&node).await;
    assert_eq!(
        rejections(&node, "slow", "wall-time-exceeded").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn a_memory_bomb_hits_its_limit_and_the_node_is_fine() {
    let node = TestNode::builder()
        .app(app("bomb", MEMORY_BOMB).limits(AppLimits {
            max_memory_bytes: 32 << 20,
            ..limits()
        }))
        .app(app("hello", HELLO))
        .start()
        .await;
    for path in ["/", "/?mb=64"] {
        let resp = node.get("bomb.test", path).await;
        assert_eq!(resp.status(), 500, "{path}");
        assert_eq!(resp.headers()["x-edge-error"], "memory-limit-exceeded");
        hello_still_answers(&node).await;
    }
    let fits = node.get("bomb.test", "/?mb=8").await;
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.text().await.unwrap(), "allocated 8 MiB\n");
    assert_eq!(
        rejections(&node, "bomb", "memory-limit-exceeded").await,
        Some(2.0)
    );
    let text = node.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "edge_guest_memory_peak_bytes_count",
            &[("app", "bomb")]
        ) == Some(3.0)
    );
}

#[tokio::test]
async fn endless_recursion_is_a_trap_not_a_crash() {
    let node = TestNode::builder()
        .app(app("deep", STACK_OVERFLOW))
        .app(app("hello", HELLO))
        .start()
        .await;
    for _ in 0..3 {
        let resp = node.get("deep.test", "/").await;
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["x-edge-error"], "guest-trap");
        hello_still_answers(&node).await;
    }
    let text = node.metrics_text().await;

    assert_eq!(
        metric_value(
            &text,
            "edge_guest_traps_total",
            &[("app", "deep"), ("kind", "stack-overflow")]
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn response_bodies_over_the_limit_are_refused_or_cut_off() {
    let node = TestNode::builder()
        .app(app("huge", HUGE_RESPONSE).limits(AppLimits {
            max_response_body_bytes: 4 << 20,
            ..limits()
        }))
        .start()
        .await;
    // Declared up front: refused before any byte is sent.
    let resp = node.get("huge.test", "/?declare=8").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-edge-error"], "response-too-large");

    // Streamed: cut off at the limit.
    let resp = node.get("huge.test", "/").await;
    assert_eq!(resp.status(), 200);
    let (received, failed) = read_body(resp).await;
    assert!(failed, "the stream must end in an error, not look complete");
    assert!(received <= 4 << 20, "received {received} bytes");

    // Within the limit: whole.
    let ok = node.get("huge.test", "/?mb=3").await;
    assert_eq!(ok.bytes().await.unwrap().len(), 3 << 20);
}

#[tokio::test]
async fn request_size_limits_answer_414_431_413() {
    let node = TestNode::builder()
        .app(app("echo", ECHO).limits(AppLimits {
            max_request_body_bytes: 1 << 20,
            ..limits()
        }))
        .app(app("wstd", WSTD_STREAM).limits(AppLimits {
            max_request_body_bytes: 1 << 20,
            ..limits()
        }))
        .start()
        .await;
    let client = node.client();

    let long = format!("/{}", "a".repeat(9 << 10));
    let resp = node.get("echo.test", &long).await;
    assert_eq!(resp.status(), 414);
    assert_eq!(resp.headers()["x-edge-error"], "uri-too-long");

    let mut req = client.get(node.url("echo.test", "/"));
    for i in 0..40 {
        req = req.header(format!("x-big-{i}"), "v".repeat(1000));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(resp.headers()["x-edge-error"], "headers-too-large");

    // Declared too large: refused before the guest runs.
    let resp = client
        .post(node.url("echo.test", "/"))
        .body(vec![0u8; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-edge-error"], "request-body-too-large");

    // Streamed without a length: caught while streaming.
    let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 64 << 10])));
    let resp = node
        .http1_client()
        .post(node.url("wstd.test", "/trailers"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-edge-error"], "request-body-too-large");
    assert!(rejections(&node, "echo", "request-body-too-large").await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_rate_limits_refuse_with_retry_after() {
    let node = TestNode::builder()
        .without_cache()
        .app(app("slow", SLOW_RESPONSE).limits(AppLimits {
            max_concurrent_requests: 2,
            ..limits()
        }))
        .app(app("hello", HELLO).limits(AppLimits {
            requests_per_second: Some(1.0),
            burst: Some(2),
            ..limits()
        }))
        .start()
        .await;
    let client = node.http1_client();
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(node.url("slow.test", "/?ms=2000")).send()))
        .collect();
    wait_in_flight(&node, "slow", 2.0).await;
    let refused = client
        .get(node.url("slow.test", "/?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["x-edge-error"],
        "concurrency-limit-exceeded"
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    for request in busy {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }

    // Burst of two, then 429 until a token comes back.
    for _ in 0..2 {
        let ok = client
            .get(node.url("hello.test", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let limited = client
        .get(node.url("hello.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-edge-error"], "rate-limit-exceeded");
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        rejections(&node, "hello", "rate-limit-exceeded").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn oversized_response_headers_fail_in_the_guest_not_the_node() {
    let node = TestNode::builder()
        .app(app("bomb", HEADER_BOMB))
        .app(app("hello", HELLO))
        .start()
        .await;
    // 1000 headers of 1000 bytes: past wasi:http's header size bound, so the
    // guest cannot even build the response.
    let resp = node.get("bomb.test", "/").await;
    assert_eq!(resp.status(), 500);
    hello_still_answers(&node).await;
    // Small enough: delivered.
    let resp = node.get("bomb.test", "/?n=10&size=100").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-bomb-9"].len(), 100);

    // Host-side resources are bounded per request: the guest traps.
    let resp = node.get("bomb.test", "/resources").await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-edge-error"], "guest-trap");
    hello_still_answers(&node).await;
}

/// Every import of the component at `path`, with its version.
fn component_imports(path: &str) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_and_sockets_load_but_every_use_is_refused() {
    // The probe really imports what language runtimes import (through
    // Rust's std); otherwise the answers below would prove nothing.
    let imports = component_imports(SANDBOX);
    for interface in [
        "wasi:filesystem/types@",
        "wasi:filesystem/preopens@",
        "wasi:sockets/tcp-create-socket@",
        "wasi:sockets/tcp@",
        "wasi:sockets/udp-create-socket@",
        "wasi:sockets/ip-name-lookup@",
        "wasi:sockets/instance-network@",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(interface)),
            "{interface} not in {imports:?}"
        );
    }
    // Loopback peers a socket that got through would reach.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let node = TestNode::builder()
        .app(app("sandbox", SANDBOX))
        .app(app("hello", HELLO))
        .start()
        .await;

    let probe = |path: String| {
        let node = &node;
        async move {
            let resp = node.get("sandbox.test", &path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.text().await.unwrap()
        }
    };
    let fs = probe("/fs".into()).await;
    assert_eq!(fs.lines().count(), 4, "{fs}");
    for line in fs.lines() {
        assert!(
            line.contains(": error "),
            "a filesystem probe got through: {fs}"
        );
    }
    for (path, expected) in [
        (
            format!("/tcp?{tcp_addr}"),
            "tcp connect: error PermissionDenied",
        ),
        ("/listen".to_string(), "tcp listen: error PermissionDenied"),
        (
            format!("/udp?{udp_addr}"),
            "udp send: error PermissionDenied",
        ),
        ("/dns?localhost".to_string(), "dns: error "),
    ] {
        let answer = probe(path.clone()).await;
        assert!(answer.starts_with(expected), "{path}: {answer}");
        hello_still_answers(&node).await;
    }
    // Nothing reached the peers. The probes above have all answered, so a
    // connection or datagram would already be queued: no wait is needed.
    let accepted = tokio::time::timeout(Duration::from_millis(50), tcp.accept()).await;
    assert!(accepted.is_err(), "a guest connected to {tcp_addr}");
    let mut buf = [0u8; 16];
    assert!(
        udp.try_recv_from(&mut buf).is_err(),
        "a guest sent a datagram"
    );
}

#[tokio::test]
async fn no_request_sees_another_requests_memory() {
    let node = TestNode::builder()
        .app(app("writer", ISOLATION).tenant("alice"))
        .app(app("reader", ISOLATION).tenant("bob"))
        .instance_slots(4)
        .start()
        .await;
    let secret = "5ec2e7c0ffee15dead5ec2e7";
    for _ in 0..3 {
        let written = node
            .get("writer.test", &format!("/write?secret={secret}"))
            .await;
        assert_eq!(written.text().await.unwrap(), "written\n");
        // The same app's next request, and another tenant's app, get fresh
        // instances (from the same few reused pool slots).
        for host in ["writer.test", "reader.test"] {
            let scan = node.get(host, &format!("/scan?secret={secret}")).await;
            assert_eq!(scan.text().await.unwrap(), "clean\n", "{host}");
        }
    }
}

/// A client that hangs up before the answer stops its guest, which frees the
/// app's concurrency slot; until then the slot stays taken even though the
/// request future is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_stops_its_guest() {
    let node = TestNode::builder()
        .app(app("slow", SLOW_RESPONSE).limits(AppLimits {
            max_concurrent_requests: 1,
            ..limits()
        }))
        .start()
        .await;
    let client = node.http1_client();
    let abandoned = tokio::spawn(client.get(node.url("slow.test", "/?ms=60000")).send());
    wait_in_flight(&node, "slow", 1.0).await;
    abandoned.abort();
    wait_in_flight(&node, "slow", 0.0).await;
    let next = client
        .get(node.url("slow.test", "/?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
}
