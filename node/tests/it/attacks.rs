//! The HTTP/1.1 attack corpus: request smuggling (CL.TE, TE.CL, TE.TE
//! obfuscations), broken framing and header syntax, target and `Host`
//! tricks, protocol switches and methods a proxy must not honour, sent
//! byte for byte over raw sockets to a node whose app forwards to an
//! origin. Each case asserts its answer (status and `x-edge-error` code),
//! that the node closes the connection when it refuses, that nothing the
//! attack hid reaches the origin, and that a well-behaved client is
//! answered right after.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestNode, origin_app};
use crate::origin_server::{Script, ScriptedOrigin};
use crate::probe::well_behaved_client_is_served;

/// What came back for one attack.
#[derive(Debug)]
struct Outcome {
    /// The status line of each answer on the connection, in order.
    statuses: Vec<String>,
    /// The `x-edge-error` codes, in order.
    codes: Vec<String>,
    /// The node closed the connection (rather than waiting for more).
    closed: bool,
    raw: String,
}

/// Sends `bytes` on a fresh connection and reads until the node closes it
/// or stays silent for `IDLE` (a kept-alive connection after its answers).
async fn attack(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    const IDLE: Duration = Duration::from_secs(3);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A node that refuses early may reset before taking every byte.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let raw = String::from_utf8_lossy(&received).into_owned();
    // A status line may follow a body without a newline of its own.
    let statuses = raw
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| raw[at + 9..].chars().take(3).collect())
        .collect();
    let codes = raw
        .lines()
        .filter_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-edge-error: ")
                .map(str::to_string)
        })
        .collect();
    Outcome {
        statuses,
        codes,
        closed,
        raw,
    }
}

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused by the HTTP/1 parser: this status, no code, closed.
    Parser(&'static str),
    /// Refused by the node: this status and code, closed.
    Node(&'static str, &'static str),
    /// Answered by the node without reaching the origin, connection kept
    /// (a request well framed and legitimately refused).
    Answered(&'static str, &'static str),
    /// Read by its `Transfer-Encoding` alone, forwarded once, and the
    /// connection closed after the answer (RFC 9112 §6.1).
    ChunkedThenClosed,
    /// A valid request (the framing is unambiguous): answered and
    /// forwarded once, the connection kept.
    Served,
    /// Two valid pipelined requests: both answered and forwarded, in order.
    ServedTwice,
}

/// What the corpus sends in a body, hoping a desynchronised hop reads it
/// as a request of its own.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n";

#[tokio::test]
async fn the_http1_attack_corpus() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/p", Script::ok("page").cc("no-store"));
    origin.script("/smuggled", Script::ok("SMUGGLED").cc("no-store"));
    origin.script("/", Script::ok("home").cc("no-store"));
    let node = TestNode::builder()
        .app(origin_app("web", &origin.url()).hosts(&["web.test"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();
    let smuggled_len = SMUGGLED.len();
    let chunk = format!("{smuggled_len:x}\r\n{SMUGGLED}\r\n0\r\n\r\n");
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "CL.TE",
            format!(
                "POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + smuggled_len
            ), Expect::ChunkedThenClosed),
        (
            "TE.CL",
            format!(
                "POST /p HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunk}"
            ), Expect::ChunkedThenClosed),
        (
            "TE xchunked",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"), Expect::Parser("400")),
        (
            "TE leading space",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nTransfer-Encoding:  chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"), Expect::ChunkedThenClosed),
        (
            "TE chunked, identity",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n{chunk}"), Expect::Parser("400")),
        (
            "TE tab",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"), Expect::ChunkedThenClosed),
        (
            "TE twice",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{chunk}"), Expect::Parser("400")),
        (
            "TE space before colon",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"), Expect::Parser("400")),
        (
            "CL conflicting",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\nhello{SMUGGLED}", 5 + smuggled_len), Expect::Parser("400")),
        (
            "CL list",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5, {}\r\n\r\nhello{SMUGGLED}", 5 + smuggled_len), Expect::Parser("400")),
        ("CL plus", "POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: +5\r\n\r\nhello".to_string(), Expect::Parser("400")),
        ("CL leading zeros", "POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 005\r\n\r\nhello".to_string(), Expect::Served),
        ("CL negative", "POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: -1\r\n\r\nhello".to_string(), Expect::Parser("400")),
        ("obs-fold", "GET /p HTTP/1.1\r\nHost: web.test\r\nX-Folded: a\r\n b\r\n\r\n".to_string(), Expect::Parser("400")),
        ("bare LF", "GET /p HTTP/1.1\nHost: web.test\n\n".to_string(), Expect::Served),
        ("bare CR", "GET /p HTTP/1.1\rHost: web.test\r\n\r\n".to_string(), Expect::Parser("400")),
        ("NUL in a value", "GET /p HTTP/1.1\r\nHost: web.test\r\nX-A: a\0b\r\n\r\n".to_string(), Expect::Parser("400")),
        ("control byte in a value", "GET /p HTTP/1.1\r\nHost: web.test\r\nX-A: a\x01b\r\n\r\n".to_string(), Expect::Parser("400")),
        ("NUL in the target", "GET /p\0 HTTP/1.1\r\nHost: web.test\r\n\r\n".to_string(), Expect::Parser("400")),
        (
            "chunk-size overflow",
            "POST /p HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_string(), Expect::Node("400", "bad-request-body")),
        (
            "huge chunk extension",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5;{}=x\r\nhello\r\n0\r\n\r\n", "e".repeat(100 << 10)), Expect::Node("400", "bad-request-body")),
        ("absolute-form, other host", "GET http://other.test/p HTTP/1.1\r\nHost: web.test\r\n\r\n".to_string(), Expect::Answered("404", "unknown-host")),
        ("absolute-form, same host", "GET http://web.test/p HTTP/1.1\r\nHost: web.test\r\n\r\n".to_string(), Expect::Served),
        ("two Host fields", "GET /p HTTP/1.1\r\nHost: web.test\r\nHost: other.test\r\n\r\n".to_string(), Expect::Node("400", "ambiguous-host")),
        ("no Host", "GET /p HTTP/1.1\r\n\r\n".to_string(), Expect::Node("400", "missing-host")),
        (
            "Upgrade: h2c",
            "GET /p HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n".to_string(), Expect::Served),
        ("CONNECT", "CONNECT web.test:443 HTTP/1.1\r\nHost: web.test:443\r\n\r\n".to_string(), Expect::Node("501", "method-not-supported")),
        ("TRACE", "TRACE /p HTTP/1.1\r\nHost: web.test\r\n\r\n".to_string(), Expect::Node("501", "method-not-supported")),
        (
            "GET with a body hiding a request",
            format!("GET /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: {smuggled_len}\r\n\r\n{SMUGGLED}"), Expect::Node("400", "body-not-allowed")),
        (
            "pipelined after a body",
            format!("POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}"), Expect::ServedTwice),
        ("HTTP/1.0 with TE", format!("POST /p HTTP/1.0\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"), Expect::Parser("400")),
        ("HTTP/2 version on HTTP/1", "GET /p HTTP/2.0\r\nHost: web.test\r\n\r\n".to_string(), Expect::Parser("400")),
        ("oversized head", format!("GET /p HTTP/1.1\r\nHost: web.test\r\nX-Big: {}\r\n\r\n", "a".repeat(128 << 10)), Expect::Parser("431")),
    ];
    for (name, bytes, expect) in &cases {
        let before = origin.requests("/p");
        let outcome = attack(addr, bytes.as_bytes()).await;
        let forwarded = origin.requests("/p") - before;
        let context = format!("{name}: {outcome:?}");
        match *expect {
            Expect::Parser(status) => {
                assert_eq!(outcome.statuses, [status], "{context}");
                assert!(outcome.codes.is_empty(), "{context}");
                assert!(outcome.closed, "{context}");
                assert_eq!(forwarded, 0, "{context}");
            }
            Expect::Node(status, code) => {
                assert_eq!(outcome.statuses, [status], "{context}");
                assert_eq!(outcome.codes, [code], "{context}");
                assert!(outcome.closed, "{context}");
                assert!(
                    outcome
                        .raw
                        .to_ascii_lowercase()
                        .contains("connection: close"),
                    "{context}"
                );
                assert_eq!(forwarded, 0, "{context}");
            }
            Expect::Answered(status, code) => {
                assert_eq!(outcome.statuses, [status], "{context}");
                assert_eq!(outcome.codes, [code], "{context}");
                assert_eq!(forwarded, 0, "{context}");
            }
            Expect::ChunkedThenClosed => {
                assert_eq!(outcome.statuses, ["200"], "{context}");
                assert!(outcome.closed, "{context}");
                assert_eq!(forwarded, 1, "{context}");
                // The origin got the chunked body: the smuggled request
                // as data, never as a request of its own.
                let body = origin.last("/p").body;
                assert!(
                    body.is_empty() || body.starts_with(b"GET /smuggled"),
                    "{context}: {body:?}"
                );
            }
            Expect::Served => {
                assert_eq!(outcome.statuses, ["200"], "{context}");
                assert!(!outcome.closed, "{context}");
                assert_eq!(forwarded, 1, "{context}");
            }
            Expect::ServedTwice => {
                assert_eq!(outcome.statuses, ["200", "200"], "{context}");
                assert_eq!(forwarded, 1, "{context}");
            }
        }
        if *name == "Upgrade: h2c" {
            // Never honoured, nor passed on.
            let received = origin.last("/p");
            assert_eq!(received.header("upgrade"), None, "{context}");
            assert_eq!(received.header("http2-settings"), None, "{context}");
        }
        well_behaved_client_is_served(addr, "web.test").await;
    }
    // Only the pipelined case, whose framing every hop agrees on, ever
    // sent /smuggled as a request; no attack did.
    assert_eq!(origin.requests("/smuggled"), 1);
}
