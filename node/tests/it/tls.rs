//! HTTPS: SNI picks each app's certificate, ALPN serves h2 and http/1.1.

use edge_fixtures::{ENV, HELLO};
use reqwest::Version;

use crate::common::{TestNode, app};

#[tokio::test]
async fn sni_selects_each_apps_certificate_over_h1_and_h2() {
    let node = TestNode::builder()
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .app(
            app("config", ENV)
                .hosts(&["config.test"])
                .env("GREETING", "hi"),
        )
        .start()
        .await;

    // The client verifies the certificate against the name it asked for, and
    // each certificate names only its own app's host: a wrong pick fails here.
    for client in [node.client(), node.http1_client()] {
        let hello = client
            .get(node.url("hello.test", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.text().await.unwrap(), "Hello from the edge!\n");

        let config = client
            .get(node.url("config.test", "/GREETING"))
            .send()
            .await
            .unwrap();
        assert_eq!(config.status(), 200);
        assert_eq!(config.text().await.unwrap(), "hi");
    }

    let h2 = node.get("hello.test", "/").await;
    assert_eq!(h2.version(), Version::HTTP_2, "ALPN should pick h2");
    let h1 = node
        .http1_client()
        .get(node.url("hello.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), Version::HTTP_11);
}

#[tokio::test]
async fn a_certificate_is_not_served_for_another_apps_name() {
    let node = TestNode::builder()
        .app(app("hello", HELLO).hosts(&["hello.test"]))
        .start()
        .await;
    // `other.test` has no certificate and there is no default: the handshake
    // fails instead of presenting hello.test's certificate.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(node.certs[0].pem.as_bytes()).unwrap())
        .resolve("other.test", node.https_addr())
        .build()
        .unwrap();
    let err = client
        .get(node.url("other.test", "/"))
        .send()
        .await
        .expect_err("handshake must fail");
    assert!(
        err.is_connect(),
        "expected a TLS/connect error, got {err:?}"
    );

    // The node is unaffected.
    let ok = node.get("hello.test", "/").await;
    assert_eq!(ok.status(), 200);
    let text = node.metrics_text().await;
    assert!(
        crate::common::metric_value(&text, "edge_tls_handshakes_total", &[("result", "failed")])
            .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn self_signed_dev_mode_serves_every_app_host_with_its_own_short_lived_certificate() {
    use edge_node::config::{ListenConfig, NodeConfig, TlsConfig};
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let mut config = NodeConfig::single_component(
        HELLO.into(),
        "127.0.0.1:0".parse().unwrap(),
        None,
        Default::default(),
    );
    config.listen = ListenConfig {
        https: Some("127.0.0.1:0".parse().unwrap()),
        http: None,
        admin: None,
        ..ListenConfig::default()
    };
    config.apps[0].hosts = vec![
        "hello.localhost".to_string().try_into().unwrap(),
        "secret-tenant.localhost".to_string().try_into().unwrap(),
    ];
    config.tls = Some(TlsConfig::SelfSigned);
    let node = edge_node::Node::start(config).await.unwrap();
    let addr = node.https_addr.unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .resolve("hello.localhost", addr)
        .resolve("secret-tenant.localhost", addr)
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for host in ["hello.localhost", "secret-tenant.localhost"] {
        let resp = client
            .get(format!("https://{host}:{}/", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let der = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .expect("the peer certificate")
            .to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        // Only the name asked for: no certificate lists the node's other
        // hosts.
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .expect("a SAN")
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => dns.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, [host]);
        let validity = cert.validity();
        let (from, to) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        assert!(from <= now && to > now, "valid now");
        assert!(to - from <= 91 * 24 * 3600, "short-lived: {from}..{to}");
    }
    node.shutdown().await;
}

/// `edge_tls_handshakes_total{result}`: a completed handshake is `ok`, one
/// the node cannot serve (no certificate for the name) `failed`, a client
/// that never finishes it `timeout`.
#[tokio::test]
async fn handshakes_are_counted_by_result() {
    use crate::common::{eventually, metric_value};
    let node = TestNode::builder()
        .app(app("hello", HELLO))
        .http(|h| h.tls_handshake_timeout = std::time::Duration::from_millis(300))
        .start()
        .await;
    let count = |text: &str, result: &str| {
        metric_value(text, "edge_tls_handshakes_total", &[("result", result)]).unwrap_or(0.0)
    };
    assert_eq!(node.get("hello.test", "/").await.status(), 200);
    let text = node.metrics_text().await;
    assert!(count(&text, "ok") >= 1.0, "{text}");
    assert_eq!(count(&text, "failed"), 0.0);
    assert_eq!(count(&text, "timeout"), 0.0);

    let stranger = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(node.certs[0].pem.as_bytes()).unwrap())
        .resolve("unknown.test", node.https_addr())
        .build()
        .unwrap();
    let err = stranger
        .get(node.url("unknown.test", "/"))
        .send()
        .await
        .expect_err("no certificate for unknown.test");
    assert!(err.is_connect(), "{err:?}");

    // Connected, silent: the node gives up on it after the timeout.
    let silent = tokio::net::TcpStream::connect(node.https_addr())
        .await
        .unwrap();
    eventually("a failed and a timed-out handshake counted", || async {
        let text = node.metrics_text().await;
        count(&text, "failed") >= 1.0 && count(&text, "timeout") >= 1.0
    })
    .await;
    drop(silent);
    // The old failure-only series is gone with the `result` label.
    let text = node.metrics_text().await;
    assert!(
        !text.contains("edge_tls_handshake_failures_total"),
        "{text}"
    );
}

/// An app's HTTPS options from the node's own config: `redirect` sends
/// plain HTTP to the HTTPS listener with a 308 (ACME challenge paths
/// excepted), `hsts` is sent on HTTPS answers and never on plain HTTP.
#[tokio::test]
async fn apps_redirect_plain_http_and_send_hsts_over_https_only() {
    const HSTS: &str = "max-age=63072000; includeSubDomains";
    let node = TestNode::builder()
        .plaintext()
        .app(app("secure", HELLO).https(true, Some(HSTS)))
        .app(app("mixed", HELLO).https(false, Some("max-age=60")))
        .start()
        .await;
    let plain = plain_client(&node, &["secure.test", "mixed.test"]);
    let secure = node.client_without_redirects(true);
    let https_port = node.https_addr().port();

    for path in ["/", "/a/b?x=1&y=%20z"] {
        let resp = plain
            .get(node.http_url("secure.test", path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 308, "{path}");
        assert_eq!(
            resp.headers()["location"],
            format!("https://secure.test:{https_port}{path}").as_str()
        );
        assert!(resp.headers().get("strict-transport-security").is_none());
    }
    // Every method, not only GET: 308 keeps the method and body.
    let post = plain
        .post(node.http_url("secure.test", "/form"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 308);

    let resp = secure
        .get(node.url("secure.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["strict-transport-security"], HSTS);

    // No redirect: served on plain HTTP, without HSTS (RFC 6797 §7.2).
    let resp = plain
        .get(node.http_url("mixed.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("strict-transport-security").is_none());
    let resp = secure
        .get(node.url("mixed.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=60");

    // The CA fetches challenges over plain HTTP: never redirected. None is
    // pending on a node without a control plane, so the app answers its
    // own (a tenant's certbot behind it would).
    let resp = plain
        .get(node.http_url("secure.test", "/.well-known/acme-challenge/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
    assert_eq!(resp.text().await.unwrap(), "Hello from the edge!\n");

    let text = node.metrics_text().await;
    assert!(
        crate::common::metric_value(
            &text,
            "edge_requests_total",
            &[("app", "secure"), ("status", "3xx")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        crate::common::metric_value(
            &text,
            "edge_requests_total",
            &[("app", "secure"), ("status", "2xx")]
        )
        .unwrap()
            >= 2.0
    );
}

/// `http.https_redirect_port`: the port clients reach HTTPS on (a load
/// balancer's), left out of the URL when it is 443.
#[tokio::test]
async fn the_redirect_port_can_be_set() {
    for (port, expected) in [
        (443, "https://secure.test/p?q"),
        (8443, "https://secure.test:8443/p?q"),
    ] {
        let node = TestNode::builder()
            .plaintext()
            .http(|h| h.https_redirect_port = Some(port))
            .app(app("secure", HELLO).https(true, None))
            .start()
            .await;
        let resp = plain_client(&node, &["secure.test"])
            .get(node.http_url("secure.test", "/p?q"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()["location"], expected);
    }
}

/// A plain-HTTP client that reports redirects instead of following them.
fn plain_client(node: &TestNode, hosts: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    for host in hosts {
        builder = builder.resolve(host, node.http_addr());
    }
    builder.build().unwrap()
}
