//! What an operator sees: /metrics, /healthz, /readyz.

use edge_fixtures::{HELLO, PANIC};

use crate::common::{
    TestNode, app, assert_closed_by_server, idle_keep_alive_connection, metric_value,
};

#[tokio::test]
async fn metrics_count_what_happened() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .app(app("panic", PANIC))
        .start()
        .await;
    for _ in 0..5 {
        node.get("hello.test", "/").await;
    }
    node.get("panic.test", "/").await;

    let text = node.metrics_text().await;
    let hello = [("tenant", "acme"), ("app", "hello")];
    let count = |name: &str, extra: &[(&str, &str)]| {
        let labels: Vec<_> = hello.iter().chain(extra).copied().collect();
        metric_value(&text, name, &labels)
    };
    assert_eq!(
        count("edge_requests_total", &[("status", "2xx")]),
        Some(5.0)
    );
    assert_eq!(
        count("edge_requests_total", &[("status", "5xx")]),
        Some(0.0)
    );
    assert_eq!(count("edge_request_duration_seconds_count", &[]), Some(5.0));
    assert_eq!(
        count("edge_instantiate_duration_seconds_count", &[]),
        Some(5.0)
    );
    assert_eq!(count("edge_requests_in_flight", &[]), Some(0.0));
    assert_eq!(
        metric_value(
            &text,
            "edge_requests_total",
            &[("app", "panic"), ("status", "5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(metric_value(&text, "edge_apps_loaded", &[]), Some(2.0));
    assert!(
        metric_value(&text, "edge_connections_total", &[("listener", "https")]).unwrap() >= 1.0
    );
    // Every sample line parses as Prometheus text.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let mut node = TestNode::builder().app(app("hello", HELLO)).start().await;
    let admin = node.handle().admin_addr.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{admin}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(get("/healthz").await.unwrap(), 200);
    assert_eq!(get("/readyz").await.unwrap(), 200);
    assert_eq!(get("/nope").await.unwrap(), 404);
    // An idle keep-alive connection is closed by the shutdown, and new
    // connections are refused.
    let idle = idle_keep_alive_connection(admin, "admin", "/healthz").await;
    node.shutdown().await;
    assert_closed_by_server(idle);
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}
