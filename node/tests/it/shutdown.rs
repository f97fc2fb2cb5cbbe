//! Graceful shutdown: stop accepting, let in-flight requests finish.

use std::time::Duration;

use edge_fixtures::WSTD_STREAM;

use crate::common::{
    TestNode, app, assert_closed_by_server, eventually, idle_keep_alive_connection, metric_value,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_after_shutdown_begins() {
    let mut node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .plaintext()
        .without_https()
        .shutdown_grace(Duration::from_secs(30))
        .start()
        .await;
    let addr = node.http_addr();
    let client = node.plaintext_client();
    let slow = tokio::spawn({
        let url = node.http_url("wstd.test", "/sleep?ms=1500");
        let client = client.clone();
        async move {
            let resp = client.get(url).send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
    });
    let metrics = node.handle().metrics.clone();
    eventually("the slow request is in flight", || {
        let metrics = metrics.clone();
        async move {
            let text = prometheus::TextEncoder::new()
                .encode_to_string(&metrics.registry.gather())
                .unwrap();
            metric_value(&text, "edge_requests_in_flight", &[("app", "wstd")]) == Some(1.0)
        }
    })
    .await;

    // An idle keep-alive connection, to check it is closed by the shutdown.
    let idle = idle_keep_alive_connection(addr, "wstd.test", "/sleep?ms=1").await;

    let handle = node.take_handle();
    let shutdown = tokio::spawn(handle.shutdown());

    // New connections are refused once the listener is closed...
    eventually("the listener closes", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    // ...while the request already in flight completes normally.
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slept 1500 ms\n");
    shutdown.await.unwrap();
    assert_closed_by_server(idle);
}
