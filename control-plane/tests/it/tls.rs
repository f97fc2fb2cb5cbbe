//! The API over HTTPS: a node and edgectl trusting a private CA; plaintext
//! refused off loopback; `edge-cp token` and `public-key` from the CLI.

use edge_cp::keys::KeySource;
use std::process::Command;
use std::time::Duration;

use edge_cp::{ControlPlane, CpConfig, CpError};
use edge_fixtures::HELLO;
use edge_node::config::ControlPlaneConfig;
use edge_node::{Node, NodeConfig};

use crate::common::{edgectl, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_syncs_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cp.pem"), dir.path().join("cp.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = CpConfig::new(dir.path().join("cp"), "127.0.0.1:0".parse().unwrap());
    config.tls = Some((cert_path.clone(), key_path));
    let cp = ControlPlane::start(config).await.unwrap();
    assert!(cp.tls);
    let url = format!("https://localhost:{}", cp.addr.port());
    let auth = edge_cp::open_auth(&KeySource::DataDir(dir.path().join("cp"))).unwrap();
    let token = |role, sub: &str, tenant: Option<&str>| {
        auth.issue(
            role,
            sub,
            tenant.map(|t| t.parse().unwrap()),
            Duration::from_secs(600),
        )
        .unwrap()
    };
    use edge_cp::auth::Role;

    // A node trusting the CA and pinning the key explicitly.
    let mut node_config = NodeConfig::from_toml("").unwrap();
    node_config.listen.http = Some("127.0.0.1:0".parse().unwrap());
    node_config.runtime.instance_slots = 16;
    let mut cp_config = ControlPlaneConfig::new(
        url.clone(),
        token(Role::Node, "node-tls", None),
        dir.path().join("node"),
    );
    cp_config.ca_cert = Some(cert_path.clone());
    cp_config.trust_key =
        Some(edge_cp::sync_public_key(&KeySource::DataDir(dir.path().join("cp"))).unwrap());
    node_config.control_plane = Some(cp_config);
    let node = Node::start(node_config).await.unwrap();
    let node_addr = node.http_addr.unwrap();

    // edgectl over HTTPS with --ca-cert.
    let ca = cert_path.to_str().unwrap();
    let (ok, out) = edgectl_ca(
        &url,
        ca,
        &token(Role::Admin, "admin", None),
        &["tenants", "create", "acme"],
    )
    .await;
    assert!(ok, "{out}");
    let tenant = token(Role::Tenant, "acme", Some("acme"));
    let (ok, out) = edgectl_ca(
        &url,
        ca,
        &tenant,
        &["apps", "create", "web", "--host", "web.test"],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = edgectl_ca(&url, ca, &tenant, &["deploy", "web", HELLO]).await;
    assert!(ok && out.contains("live on 1/1 nodes"), "{out}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("web.test", node_addr)
        .build()
        .unwrap();
    eventually("the node serves the app", || async {
        client
            .get(format!("http://web.test:{}/", node_addr.port()))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Without the CA, edgectl refuses the certificate.
    let (ok, _, err) = edgectl(&url, &tenant, &["apps", "list"]).await;
    assert!(!ok);
    assert!(err.contains("cannot reach the API"));
    node.shutdown().await;
    cp.shutdown().await;
}

/// `edgectl --ca-cert`; stdout and stderr together.
async fn edgectl_ca(url: &str, ca: &str, token: &str, args: &[&str]) -> (bool, String) {
    let mut args = args.to_vec();
    args.extend(["--ca-cert", ca]);
    let (ok, out, err) = edgectl(url, token, &args).await;
    (ok, out + &err)
}

#[tokio::test]
async fn plaintext_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before anything is bound.
    let config = CpConfig::new(dir.path(), "0.0.0.0:0".parse().unwrap());
    match ControlPlane::start(config).await {
        Err(CpError::Server(e)) => assert!(e.to_string().contains("not a loopback address"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a plaintext API started on 0.0.0.0"),
    }
}

#[test]
fn edge_cp_issues_tokens_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_edge-cp"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["token", "--data-dir", data, "--role", "node"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --sub"));
    let out = cli(&["token", "--data-dir", data, "--role", "tenant"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
    let out = cli(&[
        "token",
        "--data-dir",
        data,
        "--role",
        "tenant",
        "--tenant",
        "acme",
        "--ttl",
        "1h",
    ]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let principal = edge_cp::open_auth(&KeySource::DataDir(dir.path().into()))
        .unwrap()
        .verify(Some(&format!("Bearer {}", token.trim())))
        .unwrap();
    assert_eq!(principal.tenant.unwrap().as_str(), "acme");
    let out = cli(&["public-key", "--data-dir", data]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert_eq!(
        key.trim(),
        edge_cp::sync_public_key(&KeySource::DataDir(dir.path().into())).unwrap()
    );
}
