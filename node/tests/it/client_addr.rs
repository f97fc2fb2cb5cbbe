//! The client's address and connection facts: `X-Forwarded-For` and
//! `Forwarded` to origins (replaced for untrusted clients, appended for
//! trusted proxies), `x-edge-*` headers to components (never spoofable),
//! and PROXY protocol listeners (v1, v2, plain and TLS).

use std::net::SocketAddr;
use std::sync::Arc;

use edge_fixtures::{CACHEABLE, ECHO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestNode, app, origin_app};

/// An origin on 127.0.0.1 answering with the request's headers, one
/// `name: value` line each, never cacheable.
async fn header_origin() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let mut body = String::new();
                        for (name, value) in req.headers() {
                            body.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                        }
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("cache-control", "no-store")
                                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

fn header<'a>(lines: &'a str, name: &str) -> Vec<&'a str> {
    lines
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .collect()
}

const SPOOFED: [(&str, &str); 4] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("forwarded", "for=6.6.6.6"),
    ("x-edge-client-ip", "6.6.6.6"),
    ("x-edge-tls-version", "SSLv2"),
];

async fn origin_sees(node: &TestNode) -> String {
    let mut request = node.plaintext_client().get(node.http_url("web.test", "/"));
    for (name, value) in SPOOFED {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_clients_forwarding_headers_are_replaced_with_its_address() {
    let (origin, _task) = header_origin().await;
    let node = TestNode::builder()
        .plaintext()
        .app(origin_app("web", &format!("http://{origin}")).hosts(&["web.test"]))
        .start()
        .await;
    let seen = origin_sees(&node).await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"], "{seen}");
    assert_eq!(
        header(&seen, "forwarded"),
        ["for=127.0.0.1;proto=http;host=\"web.test\""],
        "{seen}"
    );
    assert!(header(&seen, "x-edge-client-ip").is_empty(), "{seen}");
    assert!(header(&seen, "x-edge-tls-version").is_empty(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarding_headers_are_appended_to() {
    let (origin, _task) = header_origin().await;
    let node = TestNode::builder()
        .plaintext()
        .http(|http| http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()])
        .app(origin_app("web", &format!("http://{origin}")).hosts(&["web.test"]))
        .start()
        .await;
    let seen = origin_sees(&node).await;
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        ["6.6.6.6, 127.0.0.1"],
        "{seen}"
    );
    assert_eq!(
        header(&seen, "forwarded"),
        ["for=6.6.6.6, for=127.0.0.1;proto=http;host=\"web.test\""],
        "{seen}"
    );
    // Components' headers never reach an origin, trusted or not.
    assert!(header(&seen, "x-edge-client-ip").is_empty(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_sees_the_client_and_tls_facts_and_cannot_be_lied_to() {
    let node = TestNode::builder()
        .plaintext()
        .app(app("echo", ECHO).hosts(&["echo.test"]))
        .start()
        .await;
    let mut over_tls = node.client().get(node.url("echo.test", "/"));
    let mut plain = node.plaintext_client().get(node.http_url("echo.test", "/"));
    for (name, value) in SPOOFED {
        over_tls = over_tls.header(name, value);
        plain = plain.header(name, value);
    }
    let tls = over_tls.send().await.unwrap();
    assert_eq!(tls.status(), 200);
    let h = tls.headers();
    assert_eq!(h["x-echo-header-x-edge-client-ip"], "127.0.0.1");
    assert_eq!(
        h["x-echo-client-addr"], "127.0.0.1",
        "read with edge_sdk::client_addr"
    );
    assert_eq!(h["x-echo-header-x-edge-tls-version"], "TLSv1.3");
    assert_eq!(h["x-echo-tls-version"], "TLSv1.3");
    let cipher = h["x-echo-header-x-edge-tls-cipher"].to_str().unwrap();
    assert!(cipher.starts_with("TLS13_"), "{cipher}");
    assert_eq!(h["x-echo-header-x-edge-sni"], "echo.test");
    // The spoofed forwarding headers went on entry.
    assert!(h.get("x-echo-header-x-forwarded-for").is_none());
    assert!(h.get("x-echo-header-forwarded").is_none());

    let plain = plain.send().await.unwrap();
    let h = plain.headers();
    assert_eq!(h["x-echo-header-x-edge-client-ip"], "127.0.0.1");
    assert_eq!(
        h.get_all("x-echo-header-x-edge-client-ip").iter().count(),
        1
    );
    assert!(h.get("x-echo-header-x-edge-tls-version").is_none());
    assert!(h.get("x-echo-header-x-edge-tls-cipher").is_none());
    assert!(h.get("x-echo-header-x-edge-sni").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_behind_a_trusted_proxy_sees_the_proxys_last_hop() {
    let node = TestNode::builder()
        .plaintext()
        .http(|http| http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
        .app(app("echo", ECHO).hosts(&["echo.test"]))
        .start()
        .await;
    let client_ip = |headers: &[(&'static str, &'static str)]| {
        let mut request = node.plaintext_client().get(node.http_url("echo.test", "/"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let h = response.headers();
            let seen = h["x-echo-header-x-edge-client-ip"]
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(
                h["x-echo-client-addr"],
                seen.as_str(),
                "as the SDK reads it"
            );
            seen
        }
    };
    // The last hop of the last line: what the proxy appended. What its
    // client claimed before it, and a spoofed x-edge-client-ip, are not.
    assert_eq!(
        client_ip(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.1"),
            ("x-edge-client-ip", "6.6.6.6"),
        ])
        .await,
        "198.51.100.1"
    );
    assert_eq!(
        client_ip(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.2")
        ])
        .await,
        "198.51.100.2"
    );
    // A proxy speaking only RFC 7239.
    assert_eq!(
        client_ip(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::5]:4711\";proto=https"
        )])
        .await,
        "2001:db8::5"
    );
    // A hop that names no address: the proxy's own.
    assert_eq!(
        client_ip(&[("forwarded", "for=unknown")]).await,
        "127.0.0.1"
    );
    assert_eq!(client_ip(&[]).await, "127.0.0.1");
}

/// A response varying on `x-edge-client-ip` is cached per client: the
/// header is set before the cache looks, so no client is served another's
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_varying_on_the_client_address_is_kept_per_client() {
    let node = TestNode::builder()
        .plaintext()
        .http(|http| http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
        .app(app("web", CACHEABLE).hosts(&["web.test"]))
        .start()
        .await;
    let get = |path: &'static str, client: &'static str, spoof: Option<&'static str>| {
        let mut request = node
            .plaintext_client()
            .get(node.http_url("web.test", path))
            .header("x-forwarded-for", client);
        if let Some(spoof) = spoof {
            request = request.header("x-edge-client-ip", spoof);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let cache = response.headers()["x-cache"].to_str().unwrap().to_string();
            (cache, response.text().await.unwrap())
        }
    };
    // The cache becomes active for an app at its second cacheable answer.
    let warm = "/warm?cc=max-age%3D60";
    assert_eq!(get(warm, "198.51.100.1", None).await.0, "BYPASS");
    assert_eq!(get(warm, "198.51.100.1", None).await.0, "MISS");

    let path = "/mine?cc=max-age%3D60&vary=x-edge-client-ip";
    let (cache, one) = get(path, "198.51.100.1", None).await;
    assert_eq!(cache, "MISS");
    let (cache, two) = get(path, "198.51.100.2", None).await;
    assert_eq!(cache, "MISS", "another client's answer is not this one's");
    assert_ne!(one, two);
    assert_eq!(
        get(path, "198.51.100.1", None).await,
        ("HIT".into(), one.clone())
    );
    assert_eq!(
        get(path, "198.51.100.2", None).await,
        ("HIT".into(), two.clone())
    );
    // A client naming another's address itself gets its own variant.
    assert_eq!(
        get(path, "198.51.100.2", Some("198.51.100.1")).await,
        ("HIT".into(), two)
    );
    let (cache, three) = get(path, "198.51.100.3", Some("198.51.100.1")).await;
    assert_eq!(cache, "MISS");
    assert_ne!(three, one);
}

fn v2_header(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

/// Sends `prefix` then a GET on a fresh connection; the whole answer
/// (empty if the node closed the connection without one).
async fn raw_get(addr: SocketAddr, prefix: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_listener_takes_the_client_from_the_header() {
    let node = TestNode::builder()
        .plaintext()
        .proxy_protocol()
        .app(app("echo", ECHO).hosts(&["echo.test"]))
        .start()
        .await;
    let addr = node.http_addr();
    let v1 = raw_get(addr, b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n").await;
    assert!(
        v1.contains("x-echo-header-x-edge-client-ip: 198.51.100.7"),
        "{v1}"
    );
    let v1_6 = raw_get(addr, b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n").await;
    assert!(
        v1_6.contains("x-echo-header-x-edge-client-ip: 2001:db8::7"),
        "{v1_6}"
    );
    let v2 = raw_get(addr, &v2_header([203, 0, 113, 9], 4000)).await;
    assert!(
        v2.contains("x-echo-header-x-edge-client-ip: 203.0.113.9"),
        "{v2}"
    );

    // No header, or a broken one: closed without an answer, and counted.
    assert_eq!(raw_get(addr, b"").await, "");
    assert_eq!(
        raw_get(addr, b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n").await,
        ""
    );
    let page = node.metrics_text().await;
    assert!(
        page.contains(
            "edge_connections_closed_total{listener=\"http\",reason=\"proxy-header-invalid\"} 2"
        ),
        "{page}"
    );

    // Over TLS: the header comes before the ClientHello.
    let mut roots = rustls::RootCertStore::empty();
    for cert in &node.certs {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tcp = TcpStream::connect(node.https_addr()).await.unwrap();
    tcp.write_all(&v2_header([192, 0, 2, 33], 7000))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("echo.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        answer.contains("x-echo-header-x-edge-client-ip: 192.0.2.33"),
        "{answer}"
    );
    assert!(
        answer.contains("x-echo-header-x-edge-sni: echo.test"),
        "{answer}"
    );
    // A TLS client without the header: closed before any handshake.
    let tcp = TcpStream::connect(node.https_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("echo.test").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
}
