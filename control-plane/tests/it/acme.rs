//! ACME end to end: a real CA (pebble, with its DNS server saying every
//! name is 127.0.0.1), the control plane ordering over HTTP-01, two nodes
//! answering the challenges from synced state and then serving the issued
//! certificate, which a client trusting only the CA's root verifies.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_common::api::{
    Certificate, CertificateCreated, CertificateList, CertificateStatus, IssueCertificate,
};
use edge_cp::server::ServerHandle;
use edge_cp::settings::AcmeConfig;
use edge_cp::{ControlPlane, CpConfig};
use edge_fixtures::HELLO;
use edge_fixtures::net::DeadPort;
use edge_node::config::TlsConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::common::{Client, TestNode, answer, assert_error, edgectl, free_port, host, sample};
use crate::pebble::Pebble;

/// A control plane whose certificates come from `directory`.
struct AcmeCp {
    dir: tempfile::TempDir,
    handle: ServerHandle,
}

impl AcmeCp {
    async fn start(directory: &str, ca_root: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        config.acme = Some(
            AcmeConfig::new(
                directory.to_string(),
                ca_root.map(Path::to_path_buf),
                Some("ops@example.com".into()),
            )
            .unwrap(),
        );
        config.admin = Some("127.0.0.1:0".parse().unwrap());
        let handle = ControlPlane::start(config).await.unwrap();
        Self { dir, handle }
    }

    fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    fn token(&self, role: edge_cp::auth::Role, sub: &str, tenant: Option<&str>) -> String {
        edge_cp::open_auth(&edge_cp::keys::KeySource::DataDir(self.dir.path().into()))
            .unwrap()
            .issue(
                role,
                sub,
                tenant.map(|t| t.parse().unwrap()),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    async fn tenant_with_app(&self, tenant: &str, app: &str, hosts: &[&str]) -> Client {
        let admin = Client::at(
            &self.url(),
            self.token(edge_cp::auth::Role::Admin, "admin", None),
        );
        let (status, body) = admin
            .send(
                "POST",
                "/v1/tenants",
                &edge_common::api::NewTenant {
                    id: tenant.parse().unwrap(),
                },
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let client = Client::at(
            &self.url(),
            self.token(edge_cp::auth::Role::Tenant, tenant, Some(tenant)),
        );
        client.create_app(app, hosts).await;
        client.deploy(app, HELLO).await;
        client
    }
}

/// GET `https://{name}:{port}/` on 127.0.0.1 over a new connection,
/// trusting only `root`: the body and the served leaf.
async fn fetch_verified(
    root_pem: &str,
    name: &str,
    addr: SocketAddr,
) -> Result<(String, CertificateDer<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no certificate")?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {name}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response).into_owned();
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {response}"));
    }
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((body, leaf.into_owned()))
}

async fn certificate(client: &Client, app: &str, id: u64) -> Certificate {
    let list: CertificateList = client.get(&format!("/v1/apps/{app}/certificates")).await;
    list.certificates
        .into_iter()
        .find(|c| c.id == id)
        .expect("the certificate is listed")
}

async fn wait_for_status(
    client: &Client,
    app: &str,
    id: u64,
    want: CertificateStatus,
    pebble: &Pebble,
) -> Certificate {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let cert = certificate(client, app, id).await;
        if cert.status == want {
            return cert;
        }
        assert!(
            Instant::now() < deadline,
            "certificate {id} is {:?} (last error {:?}), not {want:?}; pebble:\n{}",
            cert.status,
            cert.last_error,
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The series `key` (name and labels, as printed) on the `/metrics` of
/// the admin listener at `admin`.
async fn metric(admin: SocketAddr, key: &str) -> Option<f64> {
    let page = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&page, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_issued_through_pebble_served_by_two_nodes_and_renewed_without_a_failed_request()
 {
    let http_port = free_port();
    let pebble = Pebble::start(http_port).await;
    let cp = AcmeCp::start(&pebble.directory, Some(&pebble.listener_root)).await;
    let client = cp
        .tenant_with_app(
            "acme-shop",
            "shop",
            &["shop.example.com", "www.shop.example.com"],
        )
        .await;
    let nodes_dir = tempfile::tempdir().unwrap();
    // The CA validates on the first node's HTTP port; the second holds
    // the same synced challenges, and serves the issued certificate too.
    // HTTPS: development certificates for names without a synced one.
    let mut node_a = TestNode::start_https_on(
        &cp.url(),
        cp.token(edge_cp::auth::Role::Node, "node-a", None),
        &nodes_dir.path().join("a"),
        TlsConfig::SelfSigned,
        http_port,
    )
    .await;
    let mut node_b = TestNode::start_https(
        &cp.url(),
        cp.token(edge_cp::auth::Role::Node, "node-b", None),
        &nodes_dir.path().join("b"),
        TlsConfig::SelfSigned,
    )
    .await;

    // Through edgectl, as a tenant would.
    let (ok, out, err) = edgectl(
        &cp.url(),
        &client.token,
        &[
            "certs",
            "issue",
            "shop",
            "--host",
            "shop.example.com",
            "--host",
            "www.shop.example.com",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let list: CertificateList = client.get("/v1/apps/shop/certificates").await;
    assert_eq!(list.certificates.len(), 1);
    let id = list.certificates[0].id;
    let issued = wait_for_status(&client, "shop", id, CertificateStatus::Issued, &pebble).await;
    assert!(
        issued
            .issuer
            .as_deref()
            .unwrap_or_default()
            .to_lowercase()
            .contains("pebble"),
        "{issued:?}"
    );
    assert_eq!(issued.attempts, 0);
    assert!(issued.last_error.is_none());
    let (not_before, not_after) = (
        issued.not_before_unix.unwrap(),
        issued.not_after_unix.unwrap(),
    );
    assert_eq!(
        issued.next_attempt_unix,
        Some(not_before + (not_after - not_before) / 3 * 2),
        "renewal is scheduled two thirds through the lifetime"
    );
    let (ok, out, _) = edgectl(&cp.url(), &client.token, &["certs", "list", "shop"]).await;
    assert!(
        ok && out.contains("issued") && out.contains("shop.example.com"),
        "{out}"
    );

    // Both nodes serve it for both names; trusting only pebble's root.
    let root = pebble.issuing_root().await;
    for node in [&node_a, &node_b] {
        let https = node.https_addr.unwrap();
        for name in ["shop.example.com", "www.shop.example.com"] {
            let deadline = Instant::now() + Duration::from_secs(30);
            let body = loop {
                match fetch_verified(&root, name, https).await {
                    Ok((body, _)) => break body,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "{name} on {https}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            assert!(body.contains("Hello from the edge"), "{body}");
        }
        // curl agrees, with the same single trust root.
        let root_file = nodes_dir.path().join("pebble-root.pem");
        std::fs::write(&root_file, &root).unwrap();
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert"])
            .arg(&root_file)
            .args([
                "--resolve",
                &format!("shop.example.com:{}:127.0.0.1", https.port()),
            ])
            .arg(format!("https://shop.example.com:{}/", https.port()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The expiry reaches the node's metrics with the control plane's labels.
        let expiry = metric(node.admin_addr, &format!("edge_tls_certificate_expiry_timestamp_seconds{{app=\"shop\",cert=\"{id}\",tenant=\"acme-shop\"}}")).await;
        assert_eq!(expiry, Some(not_after as f64));
    }
    let cp_admin = cp.handle.admin_addr.unwrap();
    assert_eq!(
        metric(cp_admin, "edge_cp_acme_orders_total{result=\"issued\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(cp_admin, "edge_cp_certificates{status=\"issued\"}").await,
        Some(1.0)
    );

    // A forced renewal swaps in a new certificate while a client opens a
    // new connection after another: none fails.
    let https = node_a.https_addr.unwrap();
    let (_, first_leaf) = fetch_verified(&root, "shop.example.com", https)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammer = {
        let (root, stop, done, failed) = (root.clone(), stop.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match fetch_verified(&root, "shop.example.com", https).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    let (status, body) = client
        .call(
            "POST",
            &format!("/v1/apps/shop/certificates/{id}/renew"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, leaf) = fetch_verified(&root, "shop.example.com", https)
            .await
            .unwrap();
        if leaf != first_leaf {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served; pebble:\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little more traffic on the new certificate, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let errors = hammer.await.unwrap();
    assert!(
        errors.is_empty(),
        "requests failed during the swap: {errors:?}"
    );
    assert!(done.load(Ordering::Relaxed) > 0);
    let renewed = certificate(&client, "shop", id).await;
    assert_eq!(renewed.status, CertificateStatus::Issued);
    assert!(renewed.not_after_unix >= issued.not_after_unix);

    // Challenges are gone from what nodes serve once the order is done,
    // and the path is the app's again.
    let store = edge_cp::store::location::MetaLocation::Sqlite {
        data_dir: cp.dir.path().to_path_buf(),
    }
    .open()
    .await
    .unwrap();
    assert!(store.snapshot().await.unwrap().acme_challenges.is_empty());
    let (status, body) = get_plain(
        http_port,
        "shop.example.com",
        "/.well-known/acme-challenge/nothing-here",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello from the edge"), "{body}");

    node_a.stop().await;
    node_b.stop().await;
}

async fn get_plain(port: u16, host_name: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host_name)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A CA that cannot reach the node (its validation port is closed): the
/// order fails, the failure is listed with the CA's reason, counted, and
/// retried later; nothing is served for the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_is_listed_with_the_reason_and_retried() {
    let closed_port = DeadPort::new();
    let pebble = Pebble::start(closed_port.port()).await;
    let cp = AcmeCp::start(&pebble.directory, Some(&pebble.listener_root)).await;
    let client = cp
        .tenant_with_app("acme-fail", "shop", &["fail.example.com"])
        .await;
    let created: CertificateCreated = answer(
        client
            .send(
                "POST",
                "/v1/apps/shop/certificates/acme",
                &IssueCertificate {
                    hosts: vec![host("fail.example.com")],
                },
            )
            .await,
        202,
    );
    assert_eq!(created.certificate.status, CertificateStatus::Pending);
    let failed = wait_for_status(
        &client,
        "shop",
        created.certificate.id,
        CertificateStatus::Failed,
        &pebble,
    )
    .await;
    let error = failed.last_error.unwrap();
    assert!(error.contains("fail.example.com"), "{error}");
    assert_eq!(failed.attempts, 1);
    let retry = failed.next_attempt_unix.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        retry > now && retry <= now + 61,
        "retried in about a minute, not {retry} (now {now})"
    );
    assert!(failed.not_after_unix.is_none());
    let cp_admin = cp.handle.admin_addr.unwrap();
    assert_eq!(
        metric(cp_admin, "edge_cp_acme_orders_total{result=\"failed\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(cp_admin, "edge_cp_certificates{status=\"failed\"}").await,
        Some(1.0)
    );
}

/// A directory nobody serves: the account cannot be made; the certificate
/// fails with that reason instead of staying pending forever.
#[tokio::test]
async fn an_unreachable_ca_fails_the_certificate_with_the_reason() {
    let no_ca = DeadPort::new();
    let cp = AcmeCp::start(&format!("https://127.0.0.1:{}/dir", no_ca.port()), None).await;
    let client = cp
        .tenant_with_app("acme-down", "shop", &["down.example.com"])
        .await;
    let created: CertificateCreated = answer(
        client
            .send(
                "POST",
                "/v1/apps/shop/certificates/acme",
                &IssueCertificate {
                    hosts: vec![host("down.example.com")],
                },
            )
            .await,
        202,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let cert = loop {
        let cert = certificate(&client, "shop", created.certificate.id).await;
        if cert.status == CertificateStatus::Failed {
            break cert;
        }
        assert!(Instant::now() < deadline, "{cert:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cert.last_error.unwrap().contains("ACME"));
    // Deleting it stops the retries.
    let (status, body) = client
        .call(
            "DELETE",
            &format!("/v1/apps/shop/certificates/{}", created.certificate.id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list: CertificateList = client.get("/v1/apps/shop/certificates").await;
    assert!(list.certificates.is_empty());
    // Another tenant's hostname is refused before any order.
    let other = cp
        .tenant_with_app("acme-other", "other", &["other.example.com"])
        .await;
    let (status, body) = other
        .send(
            "POST",
            "/v1/apps/other/certificates/acme",
            &IssueCertificate {
                hosts: vec![host("down.example.com")],
            },
        )
        .await;
    assert_error(status, &body, 400, "cert-host-not-owned");
}
