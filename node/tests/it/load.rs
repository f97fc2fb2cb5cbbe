//! Many requests at once.

use edge_fixtures::WSTD_STREAM;
use futures::future::join_all;

use crate::common::{TestNode, app, eventually, metric_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_in_flight_at_once() {
    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .start()
        .await;
    // Over h1 (one connection each) and h2 (streams on shared connections).
    let h1 = node.http1_client();
    let h2 = node.client();
    let requests = (0..200).map(|i| {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let url = node.url("wstd.test", "/sleep?ms=5000");
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    });
    let requests: Vec<_> = requests.collect();

    // Each guest sleeps 5 s; all 200 must be inside the node together.
    eventually("200 requests in flight", || async {
        let text = node.metrics_text().await;
        metric_value(&text, "edge_requests_in_flight", &[("app", "wstd")]) == Some(200.0)
    })
    .await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_answers_503_with_retry_after_not_a_hang() {
    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .instance_slots(2)
        .start()
        .await;
    let client = node.http1_client();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let request = client.get(node.url("wstd.test", "/sleep?ms=3000")).send();
            tokio::spawn(request)
        })
        .collect();
    eventually("both slots busy", || async {
        let text = node.metrics_text().await;
        metric_value(&text, "edge_requests_in_flight", &[("app", "wstd")]) == Some(2.0)
    })
    .await;

    let refused = client
        .get(node.url("wstd.test", "/sleep?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["x-edge-error"], "instance-pool-exhausted");
    assert_eq!(refused.headers()["retry-after"], "1");

    for request in busy {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    // Slots are returned: the node serves again.
    let ok = client
        .get(node.url("wstd.test", "/sleep?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
