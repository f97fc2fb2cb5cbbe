//! Connection-level defences: slow clients, stalled bodies, connection
//! floods and HTTP/2 rapid reset.

use std::time::Duration;

use edge_fixtures::{HELLO, WSTD_STREAM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestNode, app, metric_value};

/// Reads until the server closes the connection; what it sent, if anything.
/// The 20 s bound only turns a hang (a timeout that never fires) into a
/// failure: the timeouts under test are 1 s.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received));
    match read.await {
        Ok(_) => String::from_utf8_lossy(&received).into_owned(),
        Err(_) => panic!("the server never closed the connection"),
    }
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_at_the_header_timeout() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .plaintext()
        .without_https()
        .http(|h| h.header_read_timeout = Duration::from_secs(1))
        .start()
        .await;
    let mut slow = TcpStream::connect(node.http_addr()).await.unwrap();
    // A request head that never ends.
    slow.write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\nX-Slow: 1")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // So is a connection that never sends a byte.
    let mut silent = TcpStream::connect(node.http_addr()).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");

    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(node.http_addr()).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stalled_request_body_gets_408() {
    let node = TestNode::builder()
        .app(app("wstd", WSTD_STREAM))
        .plaintext()
        .without_https()
        .http(|h| h.body_idle_timeout = Duration::from_secs(1))
        .start()
        .await;
    let mut stream = TcpStream::connect(node.http_addr()).await.unwrap();
    // Promise 100 bytes, send 10, then go quiet.
    stream
        .write_all(
            b"POST /trailers HTTP/1.1\r\nHost: wstd.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-edge-error: request-body-timeout"),
        "{answer}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_on_accept() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .plaintext()
        .without_https()
        .http(|h| h.max_connections = 2)
        .start()
        .await;
    let addr = node.http_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Make sure both are accepted before the third arrives.
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut third).await, "");
    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_connections_rejected_total",
            &[("listener", "http")]
        ),
        Some(1.0)
    );

    // A slot frees up when a connection closes.
    drop(first);
    crate::common::eventually("a free connection slot", || async {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return false;
        };
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        read_until_closed(&mut stream)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
}

/// CVE-2023-44487: a client that opens streams and resets them at once
/// makes the server do work for nothing. The frames are written by hand, in
/// one burst, so every reset reaches the server before it could accept the
/// stream: the connection must end with GOAWAY (ENHANCE_YOUR_CALM).
#[tokio::test]
async fn http2_rapid_reset_gets_goaway() {
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .plaintext()
        .without_https()
        .start()
        .await;
    let mut stream = TcpStream::connect(node.http_addr()).await.unwrap();
    let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    burst.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    // HPACK: :method GET, :scheme http, :path /, :authority hello.test.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 10];
    block.extend_from_slice(b"hello.test");
    for i in 0..200u32 {
        let id = 2 * i + 1;
        burst.extend(frame(0x1, 0x5, id, &block)); // HEADERS, END_STREAM|END_HEADERS
        burst.extend(frame(0x3, 0, id, &0x8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    stream.write_all(&burst).await.unwrap();

    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
        .await
        .expect("the server ends the connection")
        .unwrap();
    let goaway = frames(&received)
        .find(|(kind, _)| *kind == 0x7)
        .expect("a GOAWAY frame");
    let error_code = u32::from_be_bytes(goaway.1[4..8].try_into().unwrap());
    assert_eq!(error_code, 0xb, "ENHANCE_YOUR_CALM");

    // Everyone else is served as usual.
    let ok = node
        .plaintext_client()
        .get(node.http_url("hello.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// (type, payload) of each HTTP/2 frame in `bytes`.
fn frames(mut bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let kind = bytes[3];
        let payload = bytes.get(9..9 + len)?;
        bytes = &bytes[9 + len..];
        Some((kind, payload))
    })
}
