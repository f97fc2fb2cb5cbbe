//! Tenants' certificates through the API and edgectl: every refusal with
//! its code; a valid upload served over real HTTPS by two nodes and
//! verified by curl and reqwest trusting only the test CA; a deleted one
//! no longer served; a node restarted while the control plane is down
//! still serving it; private keys in no answer, snapshot, log line or
//! database page; HTTPS redirect and HSTS reaching nodes. The
//! key-encryption keyring is in `kek.rs`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edge_common::api::{
    App, AppHttps, Certificate, CertificateCreated, CertificateList, CertificateSource,
    CertificateStatus, HttpsSet, IssueCertificate, NewTenant, Revision, UploadCertificate,
};
use edge_cp::auth::Role;
use edge_cp::keys::KeySource;
use edge_cp::server::ServerHandle;
use edge_cp::settings::AcmeConfig;
use edge_cp::{ControlPlane, CpConfig};
use edge_fixtures::HELLO;
use edge_node::config::{CertificateConfig, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use serde_json::{Value, json};

use crate::common::{
    Client, CpProcess, TestCp, TestNode, answer, assert_error, edgectl, eventually, host,
};

const HELLO_BODY: &str = "Hello from the edge!\n";

/// A private CA, as a tenant's would be: its root, and leaves it signs.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// A leaf's chain (leaf, then the CA) and its key, PEM.
pub(crate) struct Leaf {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tenant Test CA");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(ca.root_path(), ca.issuer.pem()).unwrap();
        ca
    }

    /// The root, as a PEM file: the only trust of the clients below.
    fn root_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).unwrap()
    }

    /// A leaf for `names`, valid from `from_days` to `to_days` from now.
    pub(crate) fn leaf(&self, names: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    pub(crate) fn upload(&self, hosts: &[&str]) -> UploadCertificate {
        UploadCertificate {
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key_pem.clone(),
            hosts: hosts.iter().map(|h| host(h)).collect(),
        }
    }

    /// Writes the chain and key as files: (chain, key).
    fn write(&self, dir: &Path, name: &str) -> (String, String) {
        let (chain, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&chain, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (
            chain.to_str().unwrap().to_string(),
            key.to_str().unwrap().to_string(),
        )
    }

    /// The key's base64 lines: any one of them in a text is a leak.
    fn key_lines(&self) -> Vec<&str> {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .collect()
    }

    #[track_caller]
    fn assert_absent(&self, text: &str, what: &str) {
        assert!(self.key_lines().len() >= 2, "a key has base64 lines");
        assert!(!text.contains("PRIVATE KEY-----"), "a key's PEM in {what}");
        for line in self.key_lines() {
            assert!(!text.contains(line), "the private key is in {what}");
        }
    }
}

/// The node's own file certificate, for a name no tenant uses and not
/// `default`: a client asking for any other name gets a failed handshake
/// unless the control plane sent a certificate for it.
pub(crate) fn node_tls(dir: &Path) -> TlsConfig {
    let own = rcgen::generate_simple_self_signed(vec!["node.internal".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("node.pem"), dir.join("node.key"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&cert_path, own.cert.pem()).unwrap();
    std::fs::write(&key_path, own.signing_key.serialize_pem()).unwrap();
    TlsConfig::Files {
        certificates: vec![CertificateConfig {
            hosts: vec![host("node.internal")],
            cert_path,
            key_path,
            default: false,
        }],
    }
}

/// `GET https://{name}:{port}/` on the node's HTTPS address over a new
/// connection, trusting only the test CA.
pub(crate) async fn https_get(
    ca: &TestCa,
    node: &TestNode,
    name: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let addr = node.https_addr.unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.root())
        .resolve(name, addr)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("https://{name}:{}/", addr.port()))
        .send()
        .await
}

/// `curl --cacert ca.pem --resolve name:port:127.0.0.1 https://name:port/`:
/// (verified and answered, stdout, stderr).
async fn curl(ca: &TestCa, addr: SocketAddr, name: &str) -> (bool, String, String) {
    let (root, name) = (ca.root_path(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&root)
            .arg("--resolve")
            .arg(format!("{name}:{}:127.0.0.1", addr.port()))
            .arg(format!("https://{name}:{}/", addr.port()))
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Waits until the node serves `name` over HTTPS with a certificate the
/// test CA signed.
pub(crate) async fn wait_for_https(ca: &TestCa, node: &TestNode, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match https_get(ca, node, name).await {
            Ok(response) if response.status() == 200 => {
                let body = response.text().await.unwrap();
                assert_eq!(body, HELLO_BODY);
                return;
            }
            Ok(response) => format!("status {}", response.status()),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            Instant::now() < deadline,
            "{name} never served over HTTPS by {:?}: {last}",
            node.https_addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the node no longer completes a verified handshake for
/// `name`.
async fn wait_for_no_https(ca: &TestCa, node: &TestNode, name: &str) {
    eventually(&format!("{name} to stop being served"), || async {
        https_get(ca, node, name).await.is_err()
    })
    .await;
}

async fn certificates(client: &Client, app: &str) -> Vec<Certificate> {
    let list: CertificateList = client.get(&format!("/v1/apps/{app}/certificates")).await;
    list.certificates
}

/// Runs `edge-cp ARGS` with `env`: (success, stdout, stderr).
pub(crate) fn edge_cp(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(args)
        .env("EDGE_LOG", "warn")
        .env_remove("EDGE_CP_KEK")
        .env_remove("EDGE_CP_KEK_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_upload_is_refused_with_its_code_and_nothing_is_stored() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test", "*.shop.test"]).await;
    acme.create_app("api", &["api.acme.test"]).await;
    let other = cp.new_tenant("other").await;
    other
        .create_app("site", &["other.test", "*.other.test"])
        .await;
    let ca = TestCa::new();
    let good = ca.leaf(&["shop.test", "*.shop.test"], -1, 90);
    let foreign_key = ca.leaf(&["shop.test"], -1, 90).key_pem;
    let expired = ca.leaf(&["shop.test"], -90, -1);
    let early = ca.leaf(&["shop.test"], 2, 90);
    let many: Vec<String> = (0..101).map(|i| format!("h{i}.shop.test")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let upload = |chain: &str, key: &str, hosts: &[&str]| UploadCertificate {
        chain_pem: chain.to_string(),
        key_pem: key.to_string(),
        hosts: hosts.iter().map(|h| host(h)).collect(),
    };
    let cases: Vec<(UploadCertificate, &str, &str)> = vec![
        (
            upload("hello", &good.key_pem, &[]),
            "cert-invalid",
            "no CERTIFICATE",
        ),
        (
            upload(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &good.key_pem,
                &[],
            ),
            "cert-invalid",
            "does not parse",
        ),
        (
            upload(&good.chain_pem, "", &[]),
            "cert-invalid",
            "no private key",
        ),
        (
            upload(&good.chain_pem, &good.chain_pem, &[]),
            "cert-invalid",
            "no private key",
        ),
        (
            upload(&good.chain_pem, &foreign_key, &[]),
            "cert-key-mismatch",
            "does not belong",
        ),
        (expired.upload(&[]), "cert-expired", "expired at"),
        (early.upload(&[]), "cert-not-yet-valid", "not valid before"),
        (
            good.upload(&["a.b.shop.test"]),
            "cert-host-not-covered",
            "a.b.shop.test",
        ),
        (
            good.upload(&["shop.test", "shop.test"]),
            "cert-invalid",
            "twice",
        ),
        (
            ca.leaf(&many, -1, 90).upload(&[]),
            "cert-invalid",
            "at most 100",
        ),
        (
            ca.leaf(&["*"], -1, 90).upload(&[]),
            "cert-invalid",
            "DNS host",
        ),
        // Another tenant's names: refused without saying whose they are.
        (
            ca.leaf(&["other.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "other.test",
        ),
        (
            ca.leaf(&["*.other.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "*.other.test",
        ),
        (
            ca.leaf(&["www.other.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "www.other.test",
        ),
        // Names nobody claims, and one of a leaf's names not claimed.
        (
            ca.leaf(&["nobody.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "nobody.test",
        ),
        (
            ca.leaf(&["shop.test", "nobody.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "nobody.test",
        ),
        // A wildcard only under the tenant's own wildcard claim; one label
        // under a claim only.
        (
            ca.leaf(&["*.acme.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "same wildcard",
        ),
        (
            ca.leaf(&["a.b.shop.test"], -1, 90).upload(&[]),
            "cert-host-not-owned",
            "a.b.shop.test",
        ),
    ];
    for (body, code, says) in &cases {
        let (status, answer_body) = acme.send("POST", "/v1/apps/web/certificates", body).await;
        let error = assert_error(status, &answer_body, 400, code);
        assert!(error.message.contains(says), "{code}: {}", error.message);
        good.assert_absent(&answer_body.to_string(), "a refusal");
    }
    assert!(certificates(&acme, "web").await.is_empty());

    // A body that is not what the API takes: serde's message would quote
    // the key, the API's does not.
    let (status, body) = acme
        .call(
            "POST",
            "/v1/apps/web/certificates",
            Some(Value::String(good.key_pem.clone())),
        )
        .await;
    assert_error(status, &body, 400, "invalid-json");
    good.assert_absent(&body.to_string(), "a JSON refusal");
    let (status, body) = acme
        .call(
            "POST",
            "/v1/apps/web/certificates",
            Some(json!({"chain_pem": good.chain_pem, "key_pem": good.key_pem, "key": "x"})),
        )
        .await;
    let error = assert_error(status, &body, 400, "invalid-json");
    assert!(error.message.contains("unknown field"), "{}", error.message);
    // Bigger than any bundle: refused before it is parsed.
    let padded = format!("{}{}", "#".repeat(300 << 10), good.chain_pem);
    let (status, body) = acme
        .send(
            "POST",
            "/v1/apps/web/certificates",
            &upload(&padded, &good.key_pem, &[]),
        )
        .await;
    assert_error(status, &body, 413, "body-too-large");
    // Another tenant's app, an unknown app: 404, nothing revealed.
    let (status, body) = other
        .send("POST", "/v1/apps/web/certificates", &good.upload(&[]))
        .await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = other.call("GET", "/v1/apps/web/certificates", None).await;
    assert_error(status, &body, 404, "not-found");

    // The good one, for the names listed (a wildcard name covered by the
    // leaf's wildcard), then for all of its names.
    let created: CertificateCreated = answer(
        acme.send(
            "POST",
            "/v1/apps/web/certificates",
            &good.upload(&["www.shop.test"]),
        )
        .await,
        201,
    );
    assert_eq!(created.certificate.hosts, vec![host("www.shop.test")]);
    let (status, body) = acme
        .send("POST", "/v1/apps/web/certificates", &good.upload(&[]))
        .await;
    assert_eq!(status, 201, "{body}");
    good.assert_absent(&body.to_string(), "the created certificate");
    let all: CertificateCreated = serde_json::from_value(body).unwrap();
    let c = &all.certificate;
    assert_eq!(c.hosts, vec![host("shop.test"), host("*.shop.test")]);
    assert_eq!(c.source, CertificateSource::Uploaded);
    assert_eq!(c.status, CertificateStatus::Issued);
    assert!(
        c.issuer.as_deref().unwrap().contains("Tenant Test CA"),
        "{c:?}"
    );
    assert!(c.not_after_unix.unwrap() > c.not_before_unix.unwrap());
    assert_eq!(c.next_attempt_unix, None);
    assert!(all.revision > created.revision, "each upload is a revision");

    // Past two thirds of its lifetime: expiring.
    let old: CertificateCreated = answer(
        acme.send(
            "POST",
            "/v1/apps/web/certificates",
            &ca.leaf(&["shop.test"], -60, 29).upload(&[]),
        )
        .await,
        201,
    );
    assert_eq!(old.certificate.status, CertificateStatus::Expiring);

    // Renewing an uploaded one, ids that are not certificates of the app.
    let (status, body) = acme
        .call(
            "POST",
            &format!("/v1/apps/web/certificates/{}/renew", c.id),
            None,
        )
        .await;
    assert_error(status, &body, 400, "cert-not-acme");
    for path in [
        "/v1/apps/web/certificates/999".to_string(),
        "/v1/apps/web/certificates/abc".to_string(),
        format!("/v1/apps/api/certificates/{}", c.id),
    ] {
        let (status, body) = acme.call("DELETE", &path, None).await;
        assert_error(status, &body, 404, "not-found");
    }
    let (status, body) = other
        .call(
            "DELETE",
            &format!("/v1/apps/web/certificates/{}", c.id),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not-found");
    // Without an ACME CA, no ACME certificates.
    let (status, body) = acme
        .send(
            "POST",
            "/v1/apps/web/certificates/acme",
            &IssueCertificate {
                hosts: vec![host("shop.test")],
            },
        )
        .await;
    assert_error(status, &body, 400, "acme-not-configured");

    // At most 20 certificates an app.
    while certificates(&acme, "web").await.len() < 20 {
        let (status, body) = acme
            .send("POST", "/v1/apps/web/certificates", &good.upload(&[]))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = acme
        .send("POST", "/v1/apps/web/certificates", &good.upload(&[]))
        .await;
    assert_error(status, &body, 409, "cert-limit");
    let revision: Revision = answer(
        acme.call(
            "DELETE",
            &format!("/v1/apps/web/certificates/{}", c.id),
            None,
        )
        .await,
        200,
    );
    assert!(revision.revision > all.revision);
    assert_eq!(certificates(&acme, "web").await.len(), 19);
    let listed = acme
        .call("GET", "/v1/apps/web/certificates", None)
        .await
        .1
        .to_string();
    good.assert_absent(&listed, "the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bundles_go_to_nodes_only() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test"]).await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["shop.test"], -1, 90);
    let _: CertificateCreated = answer(
        acme.send("POST", "/v1/apps/web/certificates", &leaf.upload(&[]))
            .await,
        201,
    );
    // The snapshot names the bundle by digest only.
    let (status, snapshot) = cp.admin().call("GET", "/v1/sync?since=0", None).await;
    assert_eq!(status, 200);
    let snapshot = snapshot.to_string();
    leaf.assert_absent(&snapshot, "the snapshot");
    let signed: edge_common::api::SignedSnapshot = serde_json::from_str(&snapshot).unwrap();
    let payload: Value = serde_json::from_str(&signed.payload).unwrap();
    let digest = payload["certificates"][0]["bundle_sha256"]
        .as_str()
        .unwrap()
        .to_string();

    let path = format!("/v1/certificates/{digest}");
    for client in [acme.clone(), cp.admin()] {
        let (status, body) = client.call("GET", &path, None).await;
        assert_error(status, &body, 403, "forbidden");
    }
    let node = Client::new(&cp, cp.node_token("node-a"));
    let response = reqwest::Client::new()
        .get(format!("{}{path}", cp.url()))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-pem-file");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let bundle = response.text().await.unwrap();
    assert_eq!(edge_common::signing::sha256_hex(bundle.as_bytes()), digest);
    for line in leaf.key_lines() {
        assert!(bundle.contains(line), "the bundle holds the key");
    }
    assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----"));
    let (status, body) = node
        .call("GET", &format!("/v1/certificates/{}", "0".repeat(64)), None)
        .await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = node.call("GET", "/v1/certificates/ABC", None).await;
    assert_error(status, &body, 400, "invalid-digest");
}

/// A control plane with an ACME CA configured (one that is never reached
/// here: these requests are refused or recorded before any order).
async fn cp_with_acme(dir: &Path) -> ServerHandle {
    let mut config = CpConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    config.acme =
        Some(AcmeConfig::new("https://127.0.0.1:9/directory".into(), None, None).unwrap());
    ControlPlane::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_requests_are_checked_before_they_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let handle = cp_with_acme(dir.path()).await;
    let url = format!("http://{}", handle.addr);
    let auth = edge_cp::open_auth(&KeySource::DataDir(dir.path().into())).unwrap();
    let token = |role, sub: &str, tenant: Option<&str>| {
        auth.issue(
            role,
            sub,
            tenant.map(|t| t.parse().unwrap()),
            Duration::from_secs(600),
        )
        .unwrap()
    };
    let admin = Client::at(&url, token(Role::Admin, "admin", None));
    for tenant in ["acme", "other"] {
        let (status, body) = admin
            .send(
                "POST",
                "/v1/tenants",
                &NewTenant {
                    id: tenant.parse().unwrap(),
                },
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let acme = Client::at(&url, token(Role::Tenant, "acme", Some("acme")));
    let other = Client::at(&url, token(Role::Tenant, "other", Some("other")));
    acme.create_app("web", &["shop.test", "*.shop.test"]).await;
    other.create_app("site", &["other.test"]).await;

    let issue = |hosts: &[&str]| IssueCertificate {
        hosts: hosts.iter().map(|h| host(h)).collect(),
    };
    let path = "/v1/apps/web/certificates/acme";
    for (hosts, status, code) in [
        (&["*.shop.test"][..], 400, "cert-wildcard-not-supported"),
        (&["other.test"][..], 400, "cert-host-not-owned"),
        (&["a.b.shop.test"][..], 400, "cert-host-not-owned"),
        (&[][..], 400, "cert-invalid"),
        (&["shop.test", "shop.test"][..], 400, "cert-invalid"),
    ] {
        let (got, body) = acme.send("POST", path, &issue(hosts)).await;
        let error = assert_error(got, &body, status, code);
        if let Some(first) = hosts.first() {
            assert!(error.message.contains(first), "{}", error.message);
        }
    }
    let (status, body) = other.send("POST", path, &issue(&["shop.test"])).await;
    assert_error(status, &body, 404, "not-found");
    assert!(certificates(&acme, "web").await.is_empty());

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let created: CertificateCreated = answer(
        acme.send("POST", path, &issue(&["shop.test", "www.shop.test"]))
            .await,
        202,
    );
    let c = created.certificate;
    assert_eq!(c.source, CertificateSource::Acme);
    assert_eq!(c.status, CertificateStatus::Pending);
    assert_eq!(c.hosts, vec![host("shop.test"), host("www.shop.test")]);
    assert!(c.issuer.is_none() && c.not_after_unix.is_none());
    assert!(c.next_attempt_unix.unwrap() >= before, "{c:?}");
    let renewed: CertificateCreated = answer(
        acme.call(
            "POST",
            &format!("/v1/apps/web/certificates/{}/renew", c.id),
            None,
        )
        .await,
        202,
    );
    assert_eq!(renewed.certificate.id, c.id);
    assert!(renewed.certificate.next_attempt_unix.unwrap() >= before);
    let (ok, out, err) = edgectl(&url, &acme.token, &["certs", "list", "web"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("acme") && out.contains("shop.test, www.shop.test"),
        "{out}"
    );
    let (ok, _, err) = edgectl(
        &url,
        &acme.token,
        &["certs", "issue", "web", "--host", "*.shop.test"],
    )
    .await;
    assert!(!ok && err.contains("cert-wildcard-not-supported"), "{err}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_certificate_is_served_by_two_nodes_until_deleted_and_survives_the_control_plane()
 {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test", "*.shop.test"]).await;
    acme.deploy("web", HELLO).await;
    let nodes_dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let dir = nodes_dir.path().join(name);
        let tls = node_tls(&dir.join("tls"));
        nodes.push(TestNode::start_https(&cp.url(), cp.node_token(name), &dir, tls).await);
    }
    for node in &nodes {
        node.wait_for_body("shop.test", HELLO_BODY).await;
        // No certificate for the name yet: the handshake fails.
        assert!(https_get(&TestCa::new(), node, "shop.test").await.is_err());
    }

    // Uploaded with edgectl.
    let ca = TestCa::new();
    let leaf = ca.leaf(&["shop.test", "*.shop.test"], -1, 90);
    let files = tempfile::tempdir().unwrap();
    let (chain, key) = leaf.write(files.path(), "shop");
    let (ok, out, err) = edgectl(
        &cp.url(),
        &acme.token,
        &["certs", "add", "web", "--cert", &chain, "--key", &key],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("certificate 1 for shop.test, *.shop.test"),
        "{out}"
    );
    leaf.assert_absent(&out, "edgectl's output");

    // Both nodes serve it, for the exact name and one under the wildcard;
    // curl and reqwest trust nothing but the test CA.
    for node in &nodes {
        for name in ["shop.test", "www.shop.test"] {
            wait_for_https(&ca, node, name).await;
            let (ok, body, err) = curl(&ca, node.https_addr.unwrap(), name).await;
            assert!(ok, "curl {name}: {err}");
            assert_eq!(body, HELLO_BODY);
        }
        // Two labels under the wildcard: not covered, not served.
        let (ok, _, err) = curl(&ca, node.https_addr.unwrap(), "a.b.shop.test").await;
        assert!(!ok, "{err}");
        // Another CA's trust: refused.
        assert!(https_get(&TestCa::new(), node, "shop.test").await.is_err());
    }
    let (ok, out, _) = edgectl(&cp.url(), &acme.token, &["certs", "list", "web"]).await;
    assert!(ok, "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.starts_with("1 ") && row.contains("uploaded") && row.contains("issued"),
        "{out}"
    );
    assert!(
        row.contains("shop.test, *.shop.test") && row.contains("Tenant Test CA"),
        "{out}"
    );
    let not_after = certificates(&acme, "web").await[0].not_after_unix.unwrap();
    let date =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(not_after))
            .to_string();
    assert!(row.contains(&date[..10]), "{out}");

    // Redirect and HSTS through the API (edgectl) reach both nodes.
    let (ok, out, err) = edgectl(
        &cp.url(),
        &acme.token,
        &[
            "apps",
            "https",
            "web",
            "--redirect",
            "--hsts",
            "max-age=600",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("redirect to https on, hsts max-age=600"),
        "{out}"
    );
    let app: App = acme.get("/v1/apps/web").await;
    assert_eq!(
        app.https,
        AppHttps {
            redirect: true,
            hsts: Some("max-age=600".into())
        }
    );
    for node in &nodes {
        let https_port = node.https_addr.unwrap().port();
        eventually("the redirect", || async {
            let response = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .resolve("shop.test", node.http_addr)
                .build()
                .unwrap()
                .get(format!("http://shop.test:{}/a?b=1", node.http_addr.port()))
                .send()
                .await
                .unwrap();
            response.status() == 308
                && response.headers()["location"]
                    == format!("https://shop.test:{https_port}/a?b=1").as_str()
        })
        .await;
        let response = https_get(&ca, node, "shop.test").await.unwrap();
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=600"
        );
    }
    // An invalid value is refused; `--no-redirect` keeps the HSTS value.
    let (status, body) = acme
        .send(
            "PUT",
            "/v1/apps/web/https",
            &AppHttps {
                redirect: false,
                hsts: Some("max-age=forever".into()),
            },
        )
        .await;
    assert_error(status, &body, 400, "invalid-hsts");
    let (ok, out, _) = edgectl(
        &cp.url(),
        &acme.token,
        &["apps", "https", "web", "--no-redirect"],
    )
    .await;
    assert!(
        ok && out.contains("redirect to https off, hsts max-age=600"),
        "{out}"
    );
    let set: HttpsSet = acme.get("/v1/apps/web/https").await;
    assert!(!set.https.redirect);
    for node in &nodes {
        eventually("plain HTTP served again", || async {
            node.get("shop.test", "/").await == (200, HELLO_BODY.to_string())
        })
        .await;
    }

    // Deleted: every node goes back to what its own config gives for the
    // name (here: no certificate, a failed handshake).
    let (ok, out, err) = edgectl(&cp.url(), &acme.token, &["certs", "delete", "web", "1"]).await;
    assert!(ok && out.contains("deleted certificate 1"), "{out}{err}");
    for node in &nodes {
        wait_for_no_https(&ca, node, "shop.test").await;
        let (ok, _, _) = curl(&ca, node.https_addr.unwrap(), "shop.test").await;
        assert!(!ok);
        assert_eq!(
            node.get("shop.test", "/").await,
            (200, HELLO_BODY.to_string())
        );
    }

    // Uploaded again, then the control plane dies and a node restarts:
    // it serves HTTPS from what it persisted.
    let (ok, _, err) = edgectl(
        &cp.url(),
        &acme.token,
        &[
            "certs",
            "add",
            "web",
            "--cert",
            &chain,
            "--key",
            &key,
            "--host",
            "shop.test",
        ],
    )
    .await;
    assert!(ok, "{err}");
    for node in &nodes {
        wait_for_https(&ca, node, "shop.test").await;
    }
    cp.kill().await;
    let node = &mut nodes[0];
    node.restart().await;
    wait_for_https(&ca, node, "shop.test").await;
    let (ok, body, err) = curl(&ca, node.https_addr.unwrap(), "shop.test").await;
    assert!(ok && body == HELLO_BODY, "{err}");
    // Only the name listed at upload: the wildcard's names are not served.
    assert!(https_get(&ca, node, "www.shop.test").await.is_err());
    // The bundle on disk is the node's alone.
    let mut found = false;
    for entry in walk(&node.data_dir) {
        let text = std::fs::read(&entry).unwrap_or_default();
        if leaf
            .key_lines()
            .iter()
            .any(|l| text.windows(l.len()).any(|w| w == l.as_bytes()))
        {
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} holds a key, mode {mode:o}",
                entry.display()
            );
            found = true;
        }
    }
    assert!(found, "the node persisted the certificate's key");
    for node in &mut nodes {
        node.stop().await;
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_reach_no_answer_log_line_snapshot_or_database_page() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    std::fs::create_dir_all(&data).unwrap();
    let log = dir.path().join("edge-cp.log");
    // Debug logging: every request line, every store call.
    let cp = CpProcess::start(
        &["--data-dir", data.to_str().unwrap()],
        &[("EDGE_LOG", "debug")],
        &log,
    );
    let data_arg = data.to_str().unwrap();
    let token = |args: &[&str]| {
        let mut all = vec!["token", "--data-dir", data_arg];
        all.extend_from_slice(args);
        let (ok, out, err) = edge_cp(&all, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let admin = Client::at(&cp.url, token(&["--role", "admin"]));
    let (status, body) = admin
        .send(
            "POST",
            "/v1/tenants",
            &NewTenant {
                id: "acme".parse().unwrap(),
            },
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let acme = Client::at(&cp.url, token(&["--role", "tenant", "--tenant", "acme"]));
    acme.create_app("web", &["shop.test"]).await;
    acme.deploy("web", HELLO).await;
    let node_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_https(
        &cp.url,
        token(&["--role", "node", "--sub", "node-a"]),
        node_dir.path(),
        node_tls(&node_dir.path().join("tls")),
    )
    .await;

    let ca = TestCa::new();
    let leaf = ca.leaf(&["shop.test"], -1, 90);
    let wrong = ca.leaf(&["shop.test"], -1, 90);
    let mut answers = Vec::new();
    // Refusals that hold a key.
    for body in [
        UploadCertificate {
            key_pem: wrong.key_pem.clone(),
            ..leaf.upload(&[])
        },
        leaf.upload(&["www.shop.test"]),
    ] {
        answers.push(
            acme.send("POST", "/v1/apps/web/certificates", &body)
                .await
                .1
                .to_string(),
        );
    }
    answers.push(
        acme.call(
            "POST",
            "/v1/apps/web/certificates",
            Some(Value::String(leaf.key_pem.clone())),
        )
        .await
        .1
        .to_string(),
    );
    // The upload, through edgectl, and everything that shows it.
    let files = tempfile::tempdir().unwrap();
    let (chain, key) = leaf.write(files.path(), "shop");
    let (ok, out, err) = edgectl(
        &cp.url,
        &acme.token,
        &["certs", "add", "web", "--cert", &chain, "--key", &key],
    )
    .await;
    assert!(ok, "{err}");
    answers.push(out);
    wait_for_https(&ca, &node, "shop.test").await;
    for path in [
        "/v1/apps/web/certificates",
        "/v1/apps/web",
        "/v1/apps",
        "/v1/apps/web/status",
        "/v1/apps/web/https",
    ] {
        answers.push(acme.call("GET", path, None).await.1.to_string());
    }
    answers.push(
        edgectl(&cp.url, &acme.token, &["certs", "list", "web"])
            .await
            .1,
    );
    let (status, snapshot) = admin.call("GET", "/v1/sync?since=0", None).await;
    assert_eq!(status, 200);
    answers.push(snapshot.to_string());
    answers.push(admin.call("GET", "/v1/nodes", None).await.1.to_string());
    for (i, text) in answers.iter().enumerate() {
        leaf.assert_absent(text, &format!("answer {i}"));
        wrong.assert_absent(text, &format!("answer {i}"));
    }

    // The log, at debug level, from the start to here.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("certificate uploaded"), "{text}");
    leaf.assert_absent(&text, "the control plane's log");
    wrong.assert_absent(&text, "the control plane's log");
    // At rest: the key is sealed in every database page.
    for name in ["meta.sqlite3", "meta.sqlite3-wal"] {
        let bytes = std::fs::read(data.join(name)).unwrap_or_default();
        for line in leaf.key_lines() {
            assert!(
                !bytes.windows(line.len()).any(|w| w == line.as_bytes()),
                "the key is readable in {name}"
            );
        }
    }
    drop(node);
}

/// A bundle the control plane cannot open (its sealed key damaged:
/// `key-unavailable`) or whose stored material no longer makes the digest
/// the snapshot names (`cert-corrupt`) fails its own certificate on the
/// node, like one the control plane does not have: the revision applies,
/// every app and the other certificate are served, the tenant sees why in
/// each app's status, and each failure is counted once, as a certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_the_control_plane_cannot_open_fails_its_certificate_alone() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let apps = [
        ("web", "shop.test"),
        ("blog", "blog.test"),
        ("docs", "docs.test"),
    ];
    let ca = TestCa::new();
    for (app, name) in apps {
        acme.create_app(app, &[name]).await;
        acme.deploy(app, HELLO).await;
        let _: CertificateCreated = answer(
            acme.send(
                "POST",
                &format!("/v1/apps/{app}/certificates"),
                &ca.leaf(&[name], -1, 90).upload(&[]),
            )
            .await,
            201,
        );
    }
    // Damaged behind the control plane's back, before any node asked.
    let db = rusqlite::Connection::open(cp.dir.path().join("meta.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let damaged = db
        .execute(
            "UPDATE certificates SET sealed_key = zeroblob(length(sealed_key)) WHERE app = 'web'",
            [],
        )
        .unwrap();
    assert_eq!(damaged, 1);
    let renamed = db
        .execute(
            "UPDATE certificates SET bundle_sha256 = ?1 WHERE app = 'blog'",
            ["ab".repeat(32)],
        )
        .unwrap();
    assert_eq!(renamed, 1);
    drop(db);

    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_https(
        &cp.url(),
        cp.node_token("node-a"),
        &dir.path().join("node"),
        node_tls(&dir.path().join("tls")),
    )
    .await;
    // The revision applies: every app, and the certificate that opens.
    wait_for_https(&ca, &node, "docs.test").await;
    for (_, name) in apps {
        node.wait_for_body(name, HELLO_BODY).await;
    }
    assert!(https_get(&ca, &node, "shop.test").await.is_err());
    assert!(https_get(&ca, &node, "blog.test").await.is_err());
    for (app, code) in [("web", "key-unavailable"), ("blog", "cert-corrupt")] {
        eventually(&format!("{app}'s certificate failure reported"), || async {
            let status: edge_common::api::AppStatus =
                acme.get(&format!("/v1/apps/{app}/status")).await;
            status.nodes.first().is_some_and(|n| {
                n.applied_revision.is_some() && n.error.as_deref().is_some_and(|e| e.contains(code))
            })
        })
        .await;
    }
    let status: edge_common::api::AppStatus = acme.get("/v1/apps/docs/status").await;
    assert_eq!(status.nodes[0].error, None, "{status:?}");
    assert!(
        node.metric("edge_sync_failures_total{reason=\"certificate\"}")
            .await
            >= 2.0
    );
    // Not a failed exchange (retried), nor a failed app too.
    for reason in ["certificate-fetch", "app"] {
        let name = format!("edge_sync_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(node.metric(&name).await, 0.0, "{reason}");
    }

    // A new certificate for the name is fetched and served as usual.
    let leaf = ca.leaf(&["shop.test"], -1, 90);
    let _: CertificateCreated = answer(
        acme.send("POST", "/v1/apps/web/certificates", &leaf.upload(&[]))
            .await,
        201,
    );
    wait_for_https(&ca, &node, "shop.test").await;
    assert!(https_get(&ca, &node, "blog.test").await.is_err());
    node.stop().await;
}

/// A tenant's certificate limit holds against concurrent uploads: the
/// store counts in the transaction that adds one, so of eight uploads at
/// once across two apps exactly the limit's worth land, the others get
/// 409 `cert-limit` naming the tenant and the limit, and deleting one
/// makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_cannot_overshoot_the_tenants_certificate_limit() {
    let cp = TestCp::start_with(edge_cp::api::ApiSettings {
        max_certificates_per_tenant: 3,
        ..Default::default()
    })
    .await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test"]).await;
    acme.create_app("blog", &["blog.test"]).await;
    let ca = TestCa::new();
    let uploads: Vec<(&str, UploadCertificate)> = (0..8)
        .map(|n| {
            let (app, name) = [("web", "shop.test"), ("blog", "blog.test")][n % 2];
            (app, ca.leaf(&[name], -1, 90).upload(&[]))
        })
        .collect();
    let answers = futures::future::join_all(uploads.iter().map(|(app, body)| {
        let path = format!("/v1/apps/{app}/certificates");
        let acme = &acme;
        async move { acme.send("POST", &path, body).await }
    }))
    .await;
    let mut added = Vec::new();
    for (status, body) in answers {
        if status == 201 {
            let created: CertificateCreated = serde_json::from_value(body).unwrap();
            added.push(created.certificate);
            continue;
        }
        assert_error(status, &body, 409, "cert-limit");
        assert_eq!(
            body["error"]["message"],
            "tenant acme already has 3 certificates, the most allowed; delete one first"
        );
    }
    assert_eq!(added.len(), 3, "exactly the limit's worth");
    let listed = certificates(&acme, "web").await.len() + certificates(&acme, "blog").await.len();
    assert_eq!(listed, 3);

    let gone = &added[0];
    let _: Revision = answer(
        acme.call(
            "DELETE",
            &format!("/v1/apps/{}/certificates/{}", gone.app, gone.id),
            None,
        )
        .await,
        200,
    );
    let (status, body) = acme
        .send(
            "POST",
            "/v1/apps/web/certificates",
            &ca.leaf(&["shop.test"], -1, 90).upload(&[]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
