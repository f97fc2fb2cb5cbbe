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
        crate::common::metric_value(&text, "edge_tls_handshake_failures_total", &[]).unwrap()
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
