//! Host and path routing, and the refusals for requests that match no app.

use edge_fixtures::{ECHO, HELLO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestNode, app, metric_value};

#[tokio::test]
async fn unknown_host_is_404_with_code() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .plaintext()
        .start()
        .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .get(format!("http://127.0.0.1:{}/", node.http_addr().port()))
        .header("host", "nobody.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-edge-error"], "unknown-host");
    assert!(resp.headers().contains_key("x-edge-request-id"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("no app serves host nobody.test"), "{body}");

    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_unrouted_requests_total",
            &[("reason", "unknown-host")]
        ),
        Some(1.0)
    );
}

async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn missing_or_invalid_host_is_400() {
    let node = TestNode::builder()
        .app(app("hello", HELLO).hosts(&["*"]))
        .plaintext()
        .start()
        .await;
    // HTTP/1.0 allows a request without Host; the node cannot route it.
    let response = raw_http(node.http_addr(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
    assert!(
        response.contains("x-edge-error: missing-host"),
        "{response}"
    );

    let response = raw_http(
        node.http_addr(),
        b"GET / HTTP/1.1\r\nHost: bad_host!\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("x-edge-error: invalid-host"),
        "{response}"
    );
}

#[tokio::test]
async fn path_prefixes_split_one_host_between_apps() {
    let node = TestNode::builder()
        .app(app("site", HELLO).hosts(&["shop.test"]))
        .app(app("api", ECHO).hosts(&["shop.test"]).path_prefix("/api"))
        .plaintext()
        .without_https()
        .start()
        .await;
    let client = node.plaintext_client();
    let api = client
        .get(node.http_url("shop.test", "/api/items?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert_eq!(api.headers()["x-echo-path"], "/api/items?x=1");
    let site = client
        .get(node.http_url("shop.test", "/apix"))
        .send()
        .await
        .unwrap();
    assert_eq!(site.text().await.unwrap(), "Hello from the edge!\n");
}
