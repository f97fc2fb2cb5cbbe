//! What the control plane's snapshot brings besides apps: tenants'
//! certificates, ACME HTTP-01 challenges and HTTPS options. Each test lays
//! down the data directory a previous run left (a signed snapshot and the
//! certificate bundles it names) and starts a real node whose control
//! plane is down: static stability, and what the node serves from synced
//! state, over real sockets. Fetching from a live control plane is tested
//! end to end in control-plane/tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edge_common::names::HostPattern;
use edge_common::signing::{SigningKey, sha256_hex};
use edge_common::sync::{
    AcmeChallenge, AppHttps, SignedSnapshot, Snapshot, SnapshotCertificate, SnapshotOrigin,
    certificate_bundle,
};
use edge_fixtures::net::DeadPort;
use edge_node::config::{CertificateConfig, ControlPlaneConfig, NodeConfig, TlsConfig};
use edge_node::{Node, NodeHandle};
use tempfile::TempDir;

use crate::common::{TestOrigin, metric_value};

/// A certificate made for the test, trusted by the clients that name it.
struct Cert {
    pem: String,
    key: String,
}

fn cert(names: &[&str]) -> Cert {
    let made =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    Cert {
        pem: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    }
}

/// The leaf's notAfter, read independently of the node.
fn not_after(cert: &Cert) -> i64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.pem.as_bytes()).unwrap();
    pem.parse_x509().unwrap().validity().not_after.timestamp()
}

fn hosts(list: &[&str]) -> Vec<HostPattern> {
    list.iter()
        .map(|h| HostPattern::try_from(h.to_string()).unwrap())
        .collect()
}

/// The snapshot's entry for a bundle, as the control plane names it.
fn entry(id: u64, app: &str, names: &[&str], bundle: &str) -> SnapshotCertificate {
    SnapshotCertificate {
        id,
        tenant: "acme".to_string().try_into().unwrap(),
        app: app.to_string().try_into().unwrap(),
        hosts: hosts(names),
        bundle_sha256: sha256_hex(bundle.as_bytes()),
        bundle_size: bundle.len() as u64,
        not_after_unix: 2_000_000_000 + id,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        epoch: "test-epoch".into(),
        revision: 42,
        created_unix: 1,
        apps: Vec::new(),
        origins: Vec::new(),
        purges: Vec::new(),
        certificates: Vec::new(),
        acme_challenges: Vec::new(),
        tails: Vec::new(),
    }
}

/// A data directory as a node leaves it, signed by a control plane that is
/// not running.
struct DataDir {
    dir: TempDir,
    key: SigningKey,
    /// The unreachable control plane's port, held as long as the directory.
    control_plane: DeadPort,
}

impl DataDir {
    fn new() -> Self {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            key,
            control_plane: DeadPort::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bundle_path(&self, bundle: &str) -> PathBuf {
        self.path()
            .join("certificates")
            .join(format!("{}.pem", sha256_hex(bundle.as_bytes())))
    }

    /// Writes `snapshot`, signed, and `bundles` as the node keeps them.
    fn write(&self, snapshot: &Snapshot, bundles: &[&str]) {
        let signed = SignedSnapshot::sign(snapshot, &self.key).unwrap();
        std::fs::write(
            self.path().join("snapshot.json"),
            serde_json::to_vec(&signed).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(self.path().join("certificates")).unwrap();
        for bundle in bundles {
            std::fs::write(self.bundle_path(bundle), bundle).unwrap();
        }
    }

    /// A node serving from this directory, its control plane unreachable.
    fn config(&self, tls: TlsConfig) -> NodeConfig {
        let mut config = NodeConfig::from_toml("").unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        config.listen.https = Some(loopback);
        config.listen.http = Some(loopback);
        config.listen.admin = Some(loopback);
        config.tls = Some(tls);
        let mut cp = ControlPlaneConfig::new(
            self.control_plane.http_url(),
            "node-token".into(),
            self.path().to_path_buf(),
        );
        cp.trust_key = Some(self.key.verifying_key().to_hex());
        config.control_plane = Some(cp);
        config
    }
}

/// A fresh client (a new handshake) trusting only `roots`, reaching `host`
/// on `addr`.
fn client(roots: &[&Cert], host: &str, addr: SocketAddr) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, addr);
    for root in roots {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(root.pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// Whether a handshake for `host` verifies against `root` alone: the node
/// served `root`'s certificate (self-signed, so only it verifies).
async fn serves(node: &NodeHandle, root: &Cert, host: &str) -> bool {
    let addr = node.https_addr.unwrap();
    match client(&[root], host, addr)
        .get(format!("https://{host}:{}/", addr.port()))
        .send()
        .await
    {
        Ok(_) => true,
        Err(err) => {
            assert!(err.is_connect(), "{err:?}");
            false
        }
    }
}

async fn metrics(node: &NodeHandle) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", node.admin_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The file certificates of the node's own config, written to `dir`.
fn file_tls(dir: &Path, certs: &[(&Cert, &[&str])]) -> TlsConfig {
    let certificates = certs
        .iter()
        .enumerate()
        .map(|(i, (cert, names))| {
            let cert_path = dir.join(format!("file{i}.pem"));
            let key_path = dir.join(format!("file{i}.key"));
            std::fs::write(&cert_path, &cert.pem).unwrap();
            std::fs::write(&key_path, &cert.key).unwrap();
            CertificateConfig {
                hosts: hosts(names),
                cert_path,
                key_path,
                default: false,
            }
        })
        .collect();
    TlsConfig::Files { certificates }
}

/// A node restarted while its control plane is down serves the synced
/// certificates it kept, by SNI, next to its own: the more specific name
/// wins, and at equal specificity the synced certificate.
#[tokio::test]
async fn kept_certificates_are_served_by_sni_without_the_control_plane() {
    let data = DataDir::new();
    let shop = cert(&["shop.test", "*.shop.test"]);
    let blog = cert(&["blog.test"]);
    let own = cert(&["shop.test", "*.shop.test", "api.shop.test", "own.test"]);
    let shop_bundle = certificate_bundle(&shop.pem, &shop.key);
    let blog_bundle = certificate_bundle(&blog.pem, &blog.key);
    let mut snap = snapshot();
    snap.certificates = vec![
        entry(7, "shop", &["shop.test", "*.shop.test"], &shop_bundle),
        entry(8, "blog", &["blog.test"], &blog_bundle),
    ];
    data.write(&snap, &[&shop_bundle, &blog_bundle]);
    let tls = file_tls(
        data.path(),
        &[(
            &own,
            &["shop.test", "*.shop.test", "api.shop.test", "own.test"],
        )],
    );
    let node = Node::start(data.config(tls)).await.unwrap();

    // Equal specificity: the synced certificate, exact and wildcard.
    assert!(serves(&node, &shop, "shop.test").await);
    assert!(serves(&node, &shop, "www.shop.test").await);
    assert!(!serves(&node, &own, "www.shop.test").await);
    // The file's exact name beats the synced wildcard.
    assert!(serves(&node, &own, "api.shop.test").await);
    assert!(serves(&node, &own, "own.test").await);
    assert!(serves(&node, &blog, "blog.test").await);
    // `*` is one label; nothing else matches, and there is no default.
    assert!(!serves(&node, &shop, "a.b.shop.test").await);
    assert!(!serves(&node, &blog, "unknown.test").await);

    let text = metrics(&node).await;
    assert_eq!(metric_value(&text, "edge_sync_revision", &[]), Some(42.0));
    let expiry = |tenant: &str, app: &str, id: &str| {
        metric_value(
            &text,
            "edge_tls_certificate_expiry_timestamp_seconds",
            &[("tenant", tenant), ("app", app), ("cert", id)],
        )
    };
    assert_eq!(expiry("acme", "shop", "7"), Some(2_000_000_007.0));
    assert_eq!(expiry("acme", "blog", "8"), Some(2_000_000_008.0));
    assert_eq!(expiry("", "", "file:0"), Some(not_after(&own) as f64));
    assert!(metric_value(&text, "edge_tls_handshakes_total", &[("result", "ok")]).unwrap() >= 5.0);
    node.shutdown().await;
}

/// A kept bundle that is not the one the signed snapshot names (changed on
/// disk), or whose key is not its certificate's, is refused; its
/// certificate alone is not served.
#[tokio::test]
async fn a_tampered_or_mismatched_bundle_is_refused_alone() {
    let data = DataDir::new();
    let good = cert(&["good.test"]);
    let tampered = cert(&["tampered.test"]);
    let mismatched = cert(&["mismatched.test"]);
    let other_key = cert(&["other.test"]);
    let good_bundle = certificate_bundle(&good.pem, &good.key);
    let tampered_bundle = certificate_bundle(&tampered.pem, &tampered.key);
    let mismatched_bundle = certificate_bundle(&mismatched.pem, &other_key.key);
    let mut snap = snapshot();
    snap.certificates = vec![
        entry(1, "good", &["good.test"], &good_bundle),
        entry(2, "tampered", &["tampered.test"], &tampered_bundle),
        entry(3, "mismatched", &["mismatched.test"], &mismatched_bundle),
    ];
    data.write(&snap, &[&good_bundle, &tampered_bundle, &mismatched_bundle]);
    // Replaced on disk by another valid bundle for the same name: were the
    // digest not checked, the node would serve the substitute.
    let substitute = cert(&["tampered.test"]);
    std::fs::write(
        data.bundle_path(&tampered_bundle),
        certificate_bundle(&substitute.pem, &substitute.key),
    )
    .unwrap();

    let node = Node::start(data.config(TlsConfig::SelfSigned))
        .await
        .unwrap();
    assert!(serves(&node, &good, "good.test").await);
    // Self-signed mode: the names fall back to development certificates,
    // which the clients trusting only the tenant's certificate refuse.
    assert!(!serves(&node, &tampered, "tampered.test").await);
    assert!(!serves(&node, &substitute, "tampered.test").await);
    assert!(!serves(&node, &mismatched, "mismatched.test").await);

    let text = metrics(&node).await;
    assert_eq!(
        metric_value(
            &text,
            "edge_sync_failures_total",
            &[("reason", "certificate")]
        ),
        Some(2.0)
    );
    let series = |id: &str| {
        metric_value(
            &text,
            "edge_tls_certificate_expiry_timestamp_seconds",
            &[("cert", id)],
        )
    };
    assert!(series("1").is_some());
    assert!(series("2").is_none() && series("3").is_none());
    // The revision is served (good.test), yet counts as not applied: the
    // next exchange with the control plane brings the missing bundles.
    assert_eq!(metric_value(&text, "edge_sync_revision", &[]), Some(42.0));
    node.shutdown().await;
}

/// Pending HTTP-01 challenges are answered on both listeners, before
/// routing (the host has no app yet) and before an app's redirect to
/// HTTPS; anything else under the path is routed as usual, so an app
/// answers challenges of its own (never redirected either).
#[tokio::test]
async fn acme_challenges_are_answered_before_routing_on_both_listeners() {
    let data = DataDir::new();
    let origin = TestOrigin::start().await;
    let mut snap = snapshot();
    snap.acme_challenges = vec![
        AcmeChallenge {
            host: "new.test".into(),
            token: "tok-1_A".into(),
            key_authorization: "tok-1_A.thumbprint".into(),
        },
        AcmeChallenge {
            host: "secure.test".into(),
            token: "tok-2".into(),
            key_authorization: "tok-2.thumbprint".into(),
        },
    ];
    snap.origins = vec![origin_entry(
        "secure",
        "secure.test",
        &origin,
        AppHttps {
            redirect: true,
            hsts: None,
        },
    )];
    data.write(&snap, &[]);
    let mut config = data.config(TlsConfig::SelfSigned);
    allow_loopback_origin(&mut config);
    let node = Node::start(config).await.unwrap();
    let (http, https) = (node.http_addr.unwrap(), node.https_addr.unwrap());
    let get = |scheme: &'static str, host: &'static str, path: &'static str| {
        let addr = if scheme == "https" { https } else { http };
        async move {
            let resp = reqwest::Client::builder()
                .no_proxy()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .resolve(host, addr)
                .build()
                .unwrap()
                .get(format!("{scheme}://{host}:{}{path}", addr.port()))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.text().await.unwrap())
        }
    };

    for scheme in ["http", "https"] {
        let (status, headers, body) =
            get(scheme, "new.test", "/.well-known/acme-challenge/tok-1_A").await;
        assert_eq!(status, 200, "{scheme}");
        assert_eq!(body, "tok-1_A.thumbprint");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(headers["cache-control"], "no-store");
    }
    // The app redirects plain HTTP, but not its challenges.
    let (status, _, body) = get("http", "secure.test", "/.well-known/acme-challenge/tok-2").await;
    assert_eq!((status, body.as_str()), (200, "tok-2.thumbprint"));
    let (status, headers, _) = get("http", "secure.test", "/").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://secure.test:{}/", https.port()).as_str()
    );

    assert_eq!(origin.hits(), 0, "pending challenges never reach the app");

    // Token and host must both match, exactly; anything else is routed.
    // No app for the host: the usual 404.
    for (host, path) in [
        ("new.test", "/.well-known/acme-challenge/tok-1_a"),
        ("new.test", "/.well-known/acme-challenge/tok-2"),
        ("new.test", "/.well-known/acme-challenge/"),
        ("other.test", "/.well-known/acme-challenge/tok-1_A"),
    ] {
        let (status, headers, _) = get("http", host, path).await;
        assert_eq!(status, 404, "{host}{path}");
        assert_eq!(headers["x-edge-error"], "unknown-host", "{host}{path}");
    }
    // An app's own challenges (a tenant's certbot behind it) reach it, on
    // plain HTTP without the redirect, and on HTTPS.
    for (scheme, path) in [
        ("http", "/.well-known/acme-challenge/tok-1_A"),
        ("http", "/.well-known/acme-challenge/certbot-token"),
        ("https", "/.well-known/acme-challenge/certbot-token"),
    ] {
        let (status, headers, body) = get(scheme, "secure.test", path).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "origin says hi"),
            "{scheme} {path}"
        );
        assert!(headers.get("location").is_none());
    }
    assert_eq!(origin.hits(), 3);
    // Only GET and HEAD are a CA's: anything else is redirected as usual.
    let (status, headers, _) = {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve("secure.test", http)
            .build()
            .unwrap()
            .post(format!(
                "http://secure.test:{}/.well-known/acme-challenge/tok-2",
                http.port()
            ))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.headers().clone(), ())
    };
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!(
            "https://secure.test:{}/.well-known/acme-challenge/tok-2",
            https.port()
        )
        .as_str()
    );
    assert_eq!(origin.hits(), 3);
    let text = metrics(&node).await;
    assert!(!text.contains("unknown-acme-challenge"), "{text}");
    node.shutdown().await;
}

/// A synced app's HTTPS options: redirect on plain HTTP, HSTS on HTTPS.
#[tokio::test]
async fn synced_apps_redirect_and_send_hsts() {
    let data = DataDir::new();
    let origin = TestOrigin::start().await;
    let site = cert(&["site.test"]);
    let bundle = certificate_bundle(&site.pem, &site.key);
    let mut snap = snapshot();
    snap.certificates = vec![entry(5, "site", &["site.test"], &bundle)];
    snap.origins = vec![origin_entry(
        "site",
        "site.test",
        &origin,
        AppHttps {
            redirect: true,
            hsts: Some("max-age=600".into()),
        },
    )];
    data.write(&snap, &[&bundle]);
    let mut config = data.config(TlsConfig::SelfSigned);
    allow_loopback_origin(&mut config);
    let node = Node::start(config).await.unwrap();
    let (http, https) = (node.http_addr.unwrap(), node.https_addr.unwrap());

    let plain = client(&[], "site.test", http)
        .get(format!("http://site.test:{}/x?y=1", http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 308);
    assert_eq!(
        plain.headers()["location"],
        format!("https://site.test:{}/x?y=1", https.port()).as_str()
    );
    assert!(plain.headers().get("strict-transport-security").is_none());
    let secure = client(&[&site], "site.test", https)
        .get(format!("https://site.test:{}/x?y=1", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(secure.status(), 200);
    assert_eq!(secure.headers()["strict-transport-security"], "max-age=600");
    assert_eq!(secure.text().await.unwrap(), "origin says hi");
    node.shutdown().await;
}

fn origin_entry(name: &str, host: &str, origin: &TestOrigin, https: AppHttps) -> SnapshotOrigin {
    SnapshotOrigin {
        tenant: "acme".to_string().try_into().unwrap(),
        name: name.to_string().try_into().unwrap(),
        hosts: hosts(&[host]),
        origin: format!("http://origin.test:{}", origin.addr.port()),
        limits: Default::default(),
        forward_override_headers: false,
        https,
        compression: Default::default(),
    }
}

/// A tenant's origin on loopback is reachable only through the operator's
/// name for it.
fn allow_loopback_origin(config: &mut NodeConfig) {
    config
        .outbound
        .hosts
        .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
    config.outbound.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
}
