//! Regressions for what a hostile probe of the node found: each test runs
//! the attack over real sockets on 127.0.0.1, asserts the safe outcome, and
//! that a well-behaved client is still answered while (or right after) it
//! runs.
//!
//! The well-behaved client connects from 127.0.0.2 where the attack fills
//! 127.0.0.1's share of connections: the per-address cap is what keeps it
//! in. Every wait is bounded by a deadline that only turns a hang into a
//! failure; nothing asserts how fast anything is.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use edge_fixtures::{CACHEABLE, HELLO, WSTD_STREAM};
use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{TestNode, app, eventually, metric_value, origin_app};
use crate::origin_server::{Script, ScriptedOrigin};

/// Sends `request` on a fresh connection and reads until the server closes
/// it (the request says `Connection: close`, or the server ends it).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        // A reset after the answer is fine: what came before it counts.
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server answered and closed");
    String::from_utf8_lossy(&received).into_owned()
}

fn status_and_code(answer: &str) -> (String, String) {
    let lower = answer.to_ascii_lowercase();
    let status = lower.split(' ').nth(1).unwrap_or("").to_string();
    let code = lower
        .lines()
        .find_map(|l| l.strip_prefix("x-edge-error: "))
        .unwrap_or("")
        .trim()
        .to_string();
    (status, code)
}

/// A client bound to 127.0.0.2, resolving every host to `addr`.
fn other_address_client(addr: SocketAddr, hosts: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(20));
    for host in hosts {
        builder = builder.resolve(host, addr);
    }
    builder.build().unwrap()
}

/// A plain GET from 127.0.0.2 is answered 200.
pub(crate) async fn well_behaved_client_is_served(addr: SocketAddr, host: &str) {
    let client = other_address_client(addr, &[host]);
    let response = client
        .get(format!("http://{host}:{}/", addr.port()))
        .send()
        .await
        .expect("the well-behaved client is answered");
    assert_eq!(response.status(), 200);
}

/// An HTTP/2 connection (prior knowledge, plaintext) from `local`, driven
/// in the background; `None` if the node closed it at once.
async fn h2_connection(
    node: SocketAddr,
    local: &str,
    builder: &h2::client::Builder,
) -> Option<(
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{local}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    let stream = socket.connect(node).await.ok()?;
    let (send, mut connection) =
        tokio::time::timeout(Duration::from_secs(10), builder.handshake(stream))
            .await
            .ok()?
            .ok()?;
    let mut ping = connection.ping_pong()?;
    let driver = tokio::spawn(connection);
    // The node answers a PING on a connection it serves; one it refused is
    // closed on accept, and the PING fails.
    tokio::time::timeout(Duration::from_secs(10), ping.ping(h2::Ping::opaque()))
        .await
        .ok()?
        .ok()?;
    Some((send, driver))
}

// 1. Cache poisoning through `Connection`-listed headers.

#[tokio::test]
async fn connection_listed_headers_cannot_poison_the_cache() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/p", Script::ok("page").cc("max-age=60"));
    origin.script(
        "/v",
        Script::ok("variant")
            .cc("max-age=60")
            .header("vary", "x-custom"),
    );
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();

    // The attack: the client lists the edge's own forwarding headers.
    let answer = raw(
        addr,
        "GET /p HTTP/1.1\r\nHost: origin.test\r\n\
         Connection: close, x-forwarded-host, x-forwarded-proto\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.last("/p");
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("origin.test")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    // A clean request over h2 (same listener, so the same scheme in the
    // key) is served what a clean request would get.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("origin.test", addr)
        .build()
        .unwrap();
    let url = |path: &str| format!("http://origin.test:{}{path}", addr.port());
    let clean = h2.get(url("/p")).send().await.unwrap();
    assert_eq!(clean.version(), http::Version::HTTP_2);
    assert_eq!(clean.headers()["x-cache"], "HIT");
    assert_eq!(origin.requests("/p"), 1);

    // A varying header listed in Connection: the origin and the cache key
    // both see the request without it, so no variant gets another's body.
    let answer = raw(
        addr,
        "GET /v HTTP/1.1\r\nHost: origin.test\r\nX-Custom: a\r\n\
         Connection: close, x-custom\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(origin.last("/v").header("x-custom"), None);
    let variant_a = h2
        .get(url("/v"))
        .header("x-custom", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(variant_a.headers()["x-cache"], "MISS");
    assert_eq!(origin.last("/v").header("x-custom").as_deref(), Some("a"));
    let plain = h2.get(url("/v")).send().await.unwrap();
    assert_eq!(plain.headers()["x-cache"], "HIT");
    assert_eq!(plain.text().await.unwrap(), "variant#1");
}

// 2. Idle connections and one address taking every slot.

#[tokio::test]
async fn idle_http2_connections_are_closed_and_one_address_cannot_take_every_slot() {
    let node = TestNode::builder()
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .plaintext()
        .without_https()
        .http(|h| {
            h.max_connections = 20;
            h.max_connections_per_ip = 8;
            h.idle_timeout = Duration::from_secs(1);
        })
        .start()
        .await;
    let addr = node.http_addr();
    let builder = h2::client::Builder::new();

    // The attack: more idle HTTP/2 connections from one address than the
    // node has slots. They send the preface and SETTINGS, answer PINGs
    // (the h2 client does), and open no stream.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..25 {
        match h2_connection(addr, "127.0.0.1", &builder).await {
            Some(connection) => held.push(connection),
            None => refused += 1,
        }
    }
    assert_eq!(held.len(), 8, "the per-address cap");
    assert_eq!(refused, 17);
    // Another client is answered while they are held.
    well_behaved_client_is_served(addr, "hello.test").await;

    // And the idle ones get GOAWAY and are closed.
    for (send, driver) in held {
        let ended = tokio::time::timeout(Duration::from_secs(20), driver).await;
        assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
        drop(send);
    }
    let text = node.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "edge_connections_closed_total",
            &[("listener", "http"), ("reason", "idle")]
        )
        .unwrap_or(0.0)
            >= 8.0,
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "edge_connections_rejected_total",
            &[("listener", "http"), ("reason", "max-connections-per-ip")]
        ),
        Some(17.0)
    );
    // Their slots are free again.
    let again = h2_connection(addr, "127.0.0.1", &builder).await;
    assert!(again.is_some());
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let node = TestNode::builder()
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .plaintext()
        .without_https()
        .http(|h| {
            // The header timeout alone would close it only after 60 s.
            h.header_read_timeout = Duration::from_secs(60);
            h.idle_timeout = Duration::from_secs(1);
        })
        .start()
        .await;
    let mut idle =
        crate::common::idle_keep_alive_connection(node.http_addr(), "hello.test", "/").await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    well_behaved_client_is_served(node.http_addr(), "hello.test").await;
}

// 3. Slow readers.

/// An origin route whose `/big` answer is far larger than what the
/// sockets and hyper buffer, and a node that gives up on a response the
/// client takes nothing of after a second.
async fn big_origin() -> (ScriptedOrigin, TestNode) {
    let origin = ScriptedOrigin::start().await;
    origin.script("/big", Script::ok(&"x".repeat(16 << 20)).cc("no-store"));
    origin.script("/small", Script::ok("small").cc("no-store"));
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .plaintext()
        .http(|h| h.response_idle_timeout = Duration::from_secs(1))
        .start()
        .await;
    (origin, node)
}

#[tokio::test]
async fn an_http1_client_that_stops_reading_is_cut_with_the_origin_connection() {
    let (origin, node) = big_origin().await;
    let addr = node.http_addr();
    let mut readers = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: origin.test\r\n\r\n")
            .await
            .unwrap();
        // Read the head, then stop reading.
        let mut head = [0u8; 512];
        let n = stream.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"));
        readers.push(stream);
    }
    well_behaved_client_is_served(addr, "hello.test").await;
    // The node drops the responses, and their origin connections with them.
    eventually("the origin connections are closed", || async {
        origin.open_connections() == 0
    })
    .await;
    for mut stream in readers {
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(received.len() < 16 << 20, "the whole body was kept for it");
    }
    let text = node.metrics_text().await;
    let cut = ["timeout", "response-stalled"]
        .iter()
        .filter_map(|reason| {
            metric_value(
                &text,
                "edge_connections_closed_total",
                &[("listener", "http"), ("reason", reason)],
            )
        })
        .sum::<f64>();
    assert!(cut >= 5.0, "{text}");
    // A client that reads gets everything.
    let whole = node
        .plaintext_client()
        .get(node.http_url("origin.test", "/big"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(whole.len() > 16 << 20);
}

#[tokio::test]
async fn an_http2_client_with_a_shut_window_is_cut_with_the_origin_connection() {
    let (origin, node) = big_origin().await;
    let addr = node.http_addr();
    // The attack: INITIAL_WINDOW_SIZE = 0, then never a WINDOW_UPDATE.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let (mut send, driver) = h2_connection(addr, "127.0.0.1", &builder)
        .await
        .expect("connected");
    let mut responses = Vec::new();
    for _ in 0..5 {
        let request = Request::builder()
            .uri("http://origin.test/big")
            .body(())
            .unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        responses.push(response);
    }
    // Held, never read: dropping them would cancel the streams.
    let mut bodies = Vec::new();
    for response in responses {
        let response = tokio::time::timeout(Duration::from_secs(20), response)
            .await
            .expect("headers")
            .expect("a response");
        assert_eq!(response.status(), 200);
        bodies.push(response.into_body());
    }
    well_behaved_client_is_served(addr, "hello.test").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), driver).await;
    assert!(ended.is_ok(), "the stalled HTTP/2 connection stayed open");
    drop(bodies);
    eventually("the origin connections are closed", || async {
        origin.open_connections() == 0
    })
    .await;
    let text = node.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_connections_closed_total",
            &[("listener", "http"), ("reason", "response-stalled")]
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_backend_is_not_a_slow_reader() {
    // Waiting on the origin is not the client's stall: a slow origin with a
    // patient client gets through, however long past response_idle.
    let origin = ScriptedOrigin::start().await;
    origin.script(
        "/slow",
        Script::ok("late")
            .cc("no-store")
            .delay(Duration::from_secs(3)),
    );
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .plaintext()
        .http(|h| h.response_idle_timeout = Duration::from_secs(1))
        .start()
        .await;
    let response = node
        .plaintext_client()
        .get(node.http_url("origin.test", "/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "late#1");
}

// 6. Ambiguous hosts.

#[tokio::test]
async fn several_hosts_and_userinfo_are_refused() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/", Script::ok("root").cc("no-store"));
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();
    for (request, code) in [
        (
            "GET / HTTP/1.1\r\nHost: hello.test\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
            "ambiguous-host",
        ),
        (
            "GET / HTTP/1.1\r\nHost: attacker@origin.test\r\nConnection: close\r\n\r\n",
            "invalid-host",
        ),
        (
            "GET http://attacker@origin.test/ HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
            "invalid-host",
        ),
    ] {
        let answer = raw(addr, request).await;
        assert_eq!(
            status_and_code(&answer),
            ("400".to_string(), code.to_string()),
            "{request:?}: {answer}"
        );
    }
    // Over HTTP/2: userinfo in :authority, and a Host unlike :authority.
    let (mut send, _driver) = h2_connection(addr, "127.0.0.1", &h2::client::Builder::new())
        .await
        .unwrap();
    for (request, code) in [
        (
            Request::get("http://attacker@origin.test/")
                .body(())
                .unwrap(),
            "invalid-host",
        ),
        (
            Request::get("http://hello.test/")
                .header("host", "origin.test")
                .body(())
                .unwrap(),
            "ambiguous-host",
        ),
    ] {
        let (response, _) = send.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["x-edge-error"], code);
    }
    assert_eq!(origin.requests("/"), 0);
    well_behaved_client_is_served(addr, "hello.test").await;
}

// 7. CONNECT.

#[tokio::test]
async fn connect_is_refused_on_http1_and_http2() {
    let origin = ScriptedOrigin::start().await;
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["*"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();
    let target = origin.addr;
    let answer = raw(
        addr,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        status_and_code(&answer),
        ("501".to_string(), "method-not-supported".to_string()),
        "{answer}"
    );

    let (mut send, _driver) = h2_connection(addr, "127.0.0.1", &h2::client::Builder::new())
        .await
        .unwrap();
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(target.to_string())
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 501);
    assert_eq!(response.headers()["x-edge-error"], "method-not-supported");
    assert_eq!(origin.open_connections(), 0, "the origin was never reached");
    // The catch-all app still answers ordinary requests (404 from the
    // unscripted origin path).
    let response = other_address_client(addr, &["anything.test"])
        .get(format!("http://anything.test:{}/", addr.port()))
        .send()
        .await;
    assert_eq!(response.unwrap().status(), 404);
}

// 8. Malformed chunked bodies.

#[tokio::test]
async fn malformed_chunked_bodies_are_the_clients_fault() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/upload", Script::ok("stored").cc("no-store"));
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        // Reads the whole body before it answers.
        .app(app("wstd", WSTD_STREAM).hosts(&["wstd.test"]))
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();
    let extension = format!("5;{}=x\r\nhello\r\n0\r\n\r\n", "e".repeat(100 << 10));
    let bodies = [
        (
            "chunk-size overflow",
            "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_string(),
        ),
        ("huge chunk extension", extension),
        ("bare LF in framing", "5\nhello\n0\n\n".to_string()),
    ];
    for (host, path) in [("origin.test", "/upload"), ("wstd.test", "/trailers")] {
        for (what, body) in &bodies {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n{body}"
            );
            let answer = raw(addr, &request).await;
            assert_eq!(
                status_and_code(&answer),
                ("400".to_string(), "bad-request-body".to_string()),
                "{host}, {what}: {answer}"
            );
        }
    }
    let text = node.metrics_text().await;
    for app in ["origin", "wstd"] {
        assert_eq!(
            metric_value(
                &text,
                "edge_requests_total",
                &[("app", app), ("status", "4xx")]
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            metric_value(
                &text,
                "edge_requests_total",
                &[("app", app), ("status", "5xx")]
            ),
            Some(0.0),
            "{text}"
        );
    }
    // The origin's outbound result is not an origin error either.
    assert_eq!(
        metric_value(
            &text,
            "edge_outbound_requests_total",
            &[("app", "origin"), ("result", "error")]
        ),
        None,
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "edge_outbound_requests_total",
            &[("app", "origin"), ("result", "request-body-error")]
        ),
        Some(3.0),
        "{text}"
    );
    well_behaved_client_is_served(addr, "hello.test").await;
}

// 9. Unkeyed headers that change the origin's answer.

#[tokio::test]
async fn override_headers_never_reach_the_origin_unless_the_app_allows_them() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/p", Script::ok("page").cc("max-age=60"));
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .app(
            origin_app("trusting", &origin.url())
                .hosts(&["trusting.test"])
                .forward_override_headers(),
        )
        .plaintext()
        .start()
        .await;
    let risky = [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-forwarded-scheme", "http"),
        ("x_forwarded_host", "evil.test"),
    ];
    let mut head = String::from("GET /p HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n");
    for (name, value) in risky {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let answer = raw(node.http_addr(), &head).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.last("/p");
    for (name, _) in risky {
        assert_eq!(seen.header(name), None, "{name} reached the origin");
    }
    // The app that asked for them gets them.
    let answer = raw(
        node.http_addr(),
        &head.replace("origin.test", "trusting.test"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.last("/p");
    for (name, value) in risky {
        assert_eq!(seen.header(name).as_deref(), Some(value), "{name}");
    }
}

#[tokio::test]
async fn a_get_with_a_body_is_refused_by_origins_and_never_cached() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/p", Script::ok("page").cc("max-age=60"));
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .app(app("cacheable", CACHEABLE).hosts(&["cacheable.test"]))
        .plaintext()
        .start()
        .await;
    let addr = node.http_addr();
    for framing in ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"] {
        let body = if framing.starts_with("Content") {
            "hello"
        } else {
            "5\r\nhello\r\n0\r\n\r\n"
        };
        let answer = raw(
            addr,
            &format!(
                "GET /p HTTP/1.1\r\nHost: origin.test\r\n{framing}Connection: close\r\n\r\n{body}"
            ),
        )
        .await;
        assert_eq!(
            status_and_code(&answer),
            ("400".to_string(), "body-not-allowed".to_string()),
            "{answer}"
        );
    }
    assert_eq!(origin.requests("/p"), 0);
    let first = node.get("origin.test", "/p").await;
    assert_eq!(first.headers()["x-cache"], "MISS");

    // A component may read a GET's body, so its answer is neither served
    // from nor stored in the cache.
    let path = "/c?cc=max-age%3D60";
    let answer = raw(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: cacheable.test\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-cache: bypass"),
        "{answer}"
    );
    let clean = node.get("cacheable.test", path).await;
    assert_eq!(clean.headers()["x-cache"], "MISS");
}

// 11. The cache's size after load stops.

#[tokio::test]
async fn the_cache_settles_within_its_capacity_once_load_stops() {
    const CAPACITY: u64 = 256 << 10;
    let origin = ScriptedOrigin::start().await;
    let node = TestNode::builder()
        .app(origin_app("origin", &origin.url()).hosts(&["origin.test"]))
        .plaintext()
        .cache_capacity(CAPACITY)
        .start()
        .await;
    let client = node.plaintext_client();
    // Four times the capacity, in 4 KiB entries.
    for i in 0..256 {
        let path = format!("/e{i}");
        origin.script(&path, Script::ok(&"y".repeat(4 << 10)).cc("max-age=600"));
        let response = client
            .get(node.http_url("origin.test", &path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // Nothing more comes in; the node's own maintenance settles the store.
    eventually("the cache holds at most its capacity", || async {
        let text = node.metrics_text().await;
        let held = metric_value(
            &text,
            "edge_cache_bytes",
            &[("tenant", "acme"), ("app", "origin")],
        )
        .unwrap_or(0.0);
        held > 0.0 && held <= CAPACITY as f64
    })
    .await;
}
