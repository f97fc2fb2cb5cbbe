//! WASI 0.3 components (the `wasi:http/service` world, an async `handle`)
//! served next to 0.2 ones, behind the same limits: CPU, memory, wall
//! time, body sizes and the outbound policy.

use std::time::Duration;

use edge_fixtures::{HELLO, HELLO_P3, P3_PROBE};
use edge_node::config::AppLimits;

use crate::common::{TestNode, TestOrigin, app, metric_value, read_body};

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

#[tokio::test]
async fn a_p3_component_is_served_next_to_a_p2_one_over_h1_and_h2() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .app(app("hello-p3", HELLO_P3))
        .app(app("probe", P3_PROBE))
        .plaintext()
        .start()
        .await;
    for http2 in [false, true] {
        let client = node.client_without_redirects(http2);
        let resp = client
            .get(node.url("hello-p3.test", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-edge-request-id"));
        assert_eq!(resp.headers()["content-length"], "32");
        assert_eq!(
            resp.text().await.unwrap(),
            "Hello from the edge (WASI 0.3)!\n"
        );
        // The guest is told the host, scheme and target it was asked for
        // (a 0.3 guest never sees the Host header itself).
        let resp = client
            .get(node.url("probe.test", "/a/b?c=d"))
            .send()
            .await
            .unwrap();
        let port = node.https_addr().port();
        assert_eq!(
            resp.text().await.unwrap(),
            format!("host=probe.test:{port} scheme=https path=/a/b?c=d\n"),
            "http2: {http2}"
        );
        hello_still_answers(&node).await;
    }
    // Over plain HTTP, the scheme says so.
    let resp = node
        .plaintext_client()
        .get(node.http_url("probe.test", "/"))
        .send()
        .await
        .unwrap();
    let port = node.http_addr().port();
    assert_eq!(
        resp.text().await.unwrap(),
        format!("host=probe.test:{port} scheme=http path=/\n")
    );
}

#[tokio::test]
async fn p3_bodies_stream_both_ways() {
    let node = TestNode::builder()
        .app(app("probe", P3_PROBE))
        .start()
        .await;
    // 1 MiB up and back, through the guest's streams.
    let sent: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let resp = node
        .client()
        .post(node.url("probe.test", "/echo"))
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == sent, "the echo differs");
    // 8 MiB written after `handle` returned.
    let resp = node.get("probe.test", "/stream?8192").await;
    let (received, failed) = read_body(resp).await;
    assert_eq!((received, failed), (8 << 20, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_guests_are_held_to_every_limit() {
    let node = TestNode::builder()
        .app(app("probe", P3_PROBE).limits(AppLimits {
            max_memory_bytes: 32 << 20,
            max_response_body_bytes: 4 << 20,
            wall_time: Duration::from_secs(2),
            ..AppLimits::default()
        }))
        .app(app("hello", HELLO))
        .start()
        .await;

    let resp = node.get("probe.test", "/spin").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-edge-error"], "cpu-time-exceeded");
    hello_still_answers(&node).await;

    let resp = node.get("probe.test", "/mem?64").await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-edge-error"], "memory-limit-exceeded");
    let fits = node.get("probe.test", "/mem?8").await;
    assert_eq!(fits.text().await.unwrap(), "allocated 8 MiB\n");

    let resp = node.get("probe.test", "/sleep?60000").await;
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-edge-error"], "wall-time-exceeded");
    // Waiting is not CPU time: a short sleep answers.
    let resp = node.get("probe.test", "/sleep?100").await;
    assert_eq!(resp.text().await.unwrap(), "slept 100 ms\n");

    // A body over the limit is cut, visibly; one under it is whole.
    let resp = node.get("probe.test", "/stream?8192").await;
    assert_eq!(resp.status(), 200);
    let (received, failed) = read_body(resp).await;
    assert!(failed, "a cut-off body must not look complete");
    assert!(received <= 4 << 20, "received {received} bytes");
    let resp = node.get("probe.test", "/stream?3072").await;
    assert_eq!(read_body(resp).await, (3 << 20, false));

    // A trap while the body streams: the client sees a broken body, not a
    // short one that looks whole.
    // (Over HTTP/2 the reset can overtake the response head: then the
    // request itself fails, which is as visible.)
    match node
        .client()
        .get(node.url("probe.test", "/trap-mid-body"))
        .send()
        .await
    {
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            let (received, failed) = read_body(resp).await;
            assert!(
                failed,
                "a trapped guest's body looked complete ({received} bytes)"
            );
        }
        Err(err) => assert!(format!("{err:?}").contains("INTERNAL_ERROR"), "{err:?}"),
    }
    hello_still_answers(&node).await;

    assert_eq!(
        rejections(&node, "probe", "cpu-time-exceeded").await,
        Some(1.0)
    );
    assert_eq!(
        rejections(&node, "probe", "memory-limit-exceeded").await,
        Some(1.0)
    );
    assert_eq!(
        rejections(&node, "probe", "wall-time-exceeded").await,
        Some(1.0)
    );
    let text = node.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "edge_guest_traps_total",
            &[("app", "probe"), ("kind", "unreachable")]
        )
        .is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn p3_outbound_requests_go_through_the_apps_policy() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let node = TestNode::builder()
        .app(app("probe", P3_PROBE).outbound(&[&format!("http://origin.test:{port}")], None))
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await;
    let fetch = |url: String| {
        let node = &node;
        async move {
            let resp = node.get("probe.test", &format!("/fetch?{url}")).await;
            resp.text().await.unwrap()
        }
    };
    assert_eq!(
        fetch(format!("http://origin.test:{port}/")).await,
        "status 200\n"
    );
    assert_eq!(origin.hits(), 1);
    // Not on the allow-list, and loopback by address: both refused, and
    // nothing reaches the origin.
    for url in [
        "http://example.test/".to_string(),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let answer = fetch(url.clone()).await;
        assert!(answer.starts_with("error "), "{url}: {answer}");
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn p3_guests_read_their_config_and_log_through_the_node() {
    let node = TestNode::builder()
        .app(app("probe", P3_PROBE).env("GREETING", "hej"))
        .start()
        .await;
    let resp = node.get("probe.test", "/env?GREETING").await;
    assert_eq!(resp.text().await.unwrap(), "hej");
    let resp = node.get("probe.test", "/env?PATH").await;
    assert_eq!(resp.status(), 404, "the node's own environment leaked");
    let resp = node.get("probe.test", "/log?hello-from-p3").await;
    assert_eq!(resp.text().await.unwrap(), "logged\n");
}

/// A client that sends its next request as soon as it has the last one's
/// answer never finds the app's slots held by its own finished requests:
/// the end of a response reaches the client only once its guest is done.
/// A 0.3 guest writes its body from a task that outlives the answer by a
/// few scheduler turns; before, such a client got 503
/// `concurrency-limit-exceeded` at an app's limit of 1 (and, under load,
/// well under the default 100).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_never_trip_over_their_own_slot() {
    let one_at_a_time = AppLimits {
        max_concurrent_requests: 1,
        ..AppLimits::default()
    };
    let node = TestNode::builder()
        .app(app("hello-p3", HELLO_P3).limits(one_at_a_time.clone()))
        .app(app("probe", P3_PROBE).limits(one_at_a_time.clone()))
        .app(app("hello", HELLO).limits(one_at_a_time))
        .start()
        .await;
    // With a Content-Length (hello, hello-p3), and chunked, written after
    // `handle` returned (the probe's stream).
    let targets = [
        ("hello-p3.test", "/", 32),
        ("probe.test", "/stream?1", 1 << 10),
        ("hello.test", "/", 21),
    ];
    for http2 in [false, true] {
        let client = node.client_without_redirects(http2);
        for (host, path, length) in targets {
            for round in 0..200 {
                let resp = client.get(node.url(host, path)).send().await.unwrap();
                let status = resp.status();
                let refusal = resp
                    .headers()
                    .get("x-edge-error")
                    .map(|v| v.to_str().unwrap_or("?").to_string());
                let body = resp.bytes().await.unwrap();
                assert_eq!(
                    (status.as_u16(), refusal, body.len()),
                    (200, None, length),
                    "{host}{path}, http2: {http2}, request {round}"
                );
            }
        }
        // No body to hold back: the answer itself waits for the guest.
        for round in 0..200 {
            let resp = client
                .head(node.url("hello-p3.test", "/"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                (resp.status().as_u16(), resp.headers().get("x-edge-error")),
                (200, None),
                "HEAD, http2: {http2}, request {round}"
            );
        }
    }
}
