//! Many requests at once, and what happens when the node is full.

use edge_fixtures::{HELLO, WSTD_STREAM};
use edge_node::config::AppLimits;
use futures::future::join_all;

use crate::common::{TestNode, app, metric_value, wait_in_flight};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_in_flight_at_once() {
    let limits = AppLimits {
        max_concurrent_requests: 256,
        ..AppLimits::default()
    };
    let node = TestNode::builder()
        .without_cache()
        .app(app("wstd", WSTD_STREAM).limits(limits))
        .start()
        .await;
    // Over h1 (one connection each) and h2 (streams on shared connections).
    let h1 = node.http1_client();
    let h2 = node.client();
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
            let url = node.url("wstd.test", "/sleep?ms=5000");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();

    // Each guest sleeps 5 s; all 200 must be inside the node together.
    wait_in_flight(&node, "wstd", 200.0).await;

    for status in join_all(requests).await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }
    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_requests_total",
            &[("app", "wstd"), ("status", "2xx")]
        ),
        Some(200.0)
    );
}

/// The node-wide cap equals the instance pool's capacity, so one busy app
/// can fill the node; the next request of any app gets a clean 503 instead of
/// waiting for a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_503_with_retry_after_not_a_hang() {
    let node = TestNode::builder()
        .without_cache()
        .app(app("wstd", WSTD_STREAM))
        .app(app("hello", HELLO))
        .instance_slots(2)
        .start()
        .await;
    let client = node.http1_client();
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(node.url("wstd.test", "/sleep?ms=3000")).send()))
        .collect();
    wait_in_flight(&node, "wstd", 2.0).await;

    let refused = client
        .get(node.url("hello.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["x-edge-error"], "node-at-capacity");
    assert_eq!(refused.headers()["retry-after"], "1");

    for request in busy {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    // The slots come back: the node serves again.
    let ok = client
        .get(node.url("hello.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_limit_rejections_total",
            &[("app", "hello"), ("reason", "node-at-capacity")]
        ),
        Some(1.0)
    );
}
