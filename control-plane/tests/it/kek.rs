//! The key-encryption keyring: from a file, `EDGE_CP_KEK` or the keys
//! directory; rotated and retired with `edge-cp keys rotate-kek` on a real
//! data directory while certificates keep being served and opened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use edge_common::api::{CertificateCreated, NewTenant, Revision};
use edge_cp::store::location::MetaLocation;
use edge_cp::store::{CertMaterial, CertSource, NewCertificate};
use edge_fixtures::HELLO;
use serde_json::Value;

use crate::certs::{TestCa, edge_cp, node_tls, wait_for_https};
use crate::common::{Client, CpProcess, TestCp, TestNode, answer, host};

/// The key lines of a keyring file.
fn keyring_keys(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A node with nothing synced yet: it must fetch every bundle.
async fn fresh_node(cp: &TestCp, dir: &Path, name: &str) -> TestNode {
    let dir = dir.join(name);
    let tls = node_tls(&dir.join("tls"));
    TestNode::start_https(&cp.url(), cp.node_token(name), &dir, tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_encryption_key_rotates_and_retires_and_certificates_keep_being_served() {
    let mut cp = TestCp::start().await;
    let data = cp.dir.path().to_path_buf();
    let data_arg = data.to_str().unwrap().to_string();
    let kek = data.join("keys").join("kek");
    // Made on first start, secret.
    assert_eq!(keyring_keys(&kek).len(), 1);
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test"]).await;
    acme.deploy("web", HELLO).await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["shop.test"], -1, 90);
    let _: CertificateCreated = answer(
        acme.send("POST", "/v1/apps/web/certificates", &leaf.upload(&[]))
            .await,
        201,
    );
    let nodes = tempfile::tempdir().unwrap();
    let mut first = fresh_node(&cp, nodes.path(), "node-a").await;
    wait_for_https(&ca, &first, "shop.test").await;
    first.stop().await;

    // Rotate (the control plane running): a new current key in front, the
    // old one kept, the certificate's key sealed again.
    let (ok, out, err) = edge_cp(&["keys", "rotate-kek", "--data-dir", &data_arg], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 1 certificate key(s) (0 already current)"),
        "{out}"
    );
    assert!(out.contains("--retire-old"), "{out}");
    let keys = keyring_keys(&kek);
    assert_eq!(keys.len(), 2);
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Again: only what is not yet under the current key is touched.
    let (ok, out, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--retire-old",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 0 certificate key(s) (1 already current)"),
        "{out}"
    );
    assert!(out.contains("retired 1 old key(s)"), "{out}");
    assert_eq!(keyring_keys(&kek), vec![keys[0].clone()]);

    // Restarted with the new keyring: a node that has nothing yet gets the
    // bundle (its key opened with the new key).
    cp.restart().await;
    let second = fresh_node(&cp, nodes.path(), "node-b").await;
    wait_for_https(&ca, &second, "shop.test").await;

    // A value no key of the keyring opens: rotating says so, and retiring
    // is refused with every key kept.
    let store = MetaLocation::Sqlite {
        data_dir: data.clone(),
    }
    .open()
    .await
    .unwrap();
    let other = ca.leaf(&["shop.test"], -1, 90);
    let (broken, _) = store
        .add_certificate(
            &"acme".parse().unwrap(),
            &"web".parse().unwrap(),
            NewCertificate {
                hosts: vec![host("shop.test")],
                source: CertSource::Uploaded,
                material: Some(CertMaterial {
                    chain_pem: other.chain_pem.clone(),
                    sealed_key: b"EK1 sealed by a key nobody has any more".to_vec(),
                    bundle_sha256: "0".repeat(64),
                    bundle_size: 1,
                    issuer: "CN=x".into(),
                    not_before_unix: 0,
                    not_after_unix: u64::MAX >> 2,
                }),
                next_attempt_unix: None,
            },
            &edge_cp::store::CertLimits::default(),
        )
        .await
        .unwrap();
    let (ok, out, err) = edge_cp(&["keys", "rotate-kek", "--data-dir", &data_arg], &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("certificate {}", broken.id)) && out.contains("re-sealed 1"),
        "{out}{err}"
    );
    assert_eq!(keyring_keys(&kek).len(), 2, "the new key is kept");
    let (ok, _, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--retire-old",
        ],
        &[],
    );
    assert!(!ok && err.contains("no key was retired"), "{err}");
    assert_eq!(keyring_keys(&kek).len(), 2);
    let _: Revision = answer(
        acme.call(
            "DELETE",
            &format!("/v1/apps/web/certificates/{}", broken.id),
            None,
        )
        .await,
        200,
    );
    let (ok, out, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--retire-old",
        ],
        &[],
    );
    assert!(ok && out.contains("retired 1 old key(s)"), "{out}{err}");
    cp.restart().await;
    let third = fresh_node(&cp, nodes.path(), "node-c").await;
    wait_for_https(&ca, &third, "shop.test").await;
    drop((second, third));

    // A keyring from the environment cannot be rewritten: refused, and the
    // file is left alone.
    let one = keyring_keys(&kek);
    let (ok, _, err) = edge_cp(
        &["keys", "rotate-kek", "--data-dir", &data_arg],
        &[("EDGE_CP_KEK", one[0].as_str())],
    );
    assert!(!ok && err.contains("EDGE_CP_KEK is set"), "{err}");
    assert_eq!(keyring_keys(&kek), one);
    // A full keyring asks for a retirement first.
    let full: Vec<String> = (0..8).map(|i| format!("{:064x}", i + 1)).collect();
    let full_file = cp.dir.path().join("full-kek");
    std::fs::write(&full_file, full.join("\n")).unwrap();
    let (ok, _, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--kek-file",
            full_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !ok && err.contains("holds 8 keys") && err.contains("--retire-old"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyring_comes_from_a_file_the_environment_or_the_keys_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data_arg = data.to_str().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_arg];
        args.extend_from_slice(extra);
        // Only start-up failures return: a good start would run forever.
        edge_cp(&args, env)
    };

    // A keys directory made before certificates (both signing keys, no
    // keyring): a replica refuses to start and names the command, which
    // adds the keyring and nothing else.
    assert!(edge_cp(&["keys", "init", "--keys-dir", keys_arg], &[]).0);
    std::fs::remove_file(keys.join("kek")).unwrap();
    let token_key = std::fs::read(keys.join("token-signing.pk8")).unwrap();
    let (ok, _, err) = serve(&["--keys-dir", keys_arg], &[]);
    assert!(!ok && err.contains("edge-cp keys init --keys-dir"), "{err}");
    let (ok, out, err) = edge_cp(&["keys", "init", "--keys-dir", keys_arg], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("added the key-encryption keyring"), "{out}");
    assert_eq!(keyring_keys(&keys.join("kek")).len(), 1);
    assert_eq!(
        std::fs::read(keys.join("token-signing.pk8")).unwrap(),
        token_key
    );
    let (ok, out, _) = edge_cp(&["keys", "init", "--keys-dir", keys_arg], &[]);
    assert!(ok && out.contains("nothing changed"), "{out}");

    // Bad keyrings stop the start with the reason, never the value.
    let secret = "ab".repeat(31);
    let (ok, _, err) = serve(&[], &[("EDGE_CP_KEK", secret.as_str())]);
    assert!(
        !ok && err.contains("EDGE_CP_KEK") && err.contains("64 hex digits"),
        "{err}"
    );
    assert!(!err.contains(&secret), "{err}");
    let missing = dir.path().join("nowhere");
    let (ok, _, err) = serve(&["--kek-file", missing.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("openssl rand -hex 32"), "{err}");

    // From the environment: what one control plane sealed, another with a
    // different keyring cannot open, so it refuses to start.
    let key_a = "1".repeat(64);
    let log = dir.path().join("a.log");
    let cp = CpProcess::start(
        &["--data-dir", data_arg],
        &[("EDGE_CP_KEK", key_a.as_str())],
        &log,
    );
    let token = |args: &[&str]| {
        let mut all = vec!["token", "--data-dir", data_arg];
        all.extend_from_slice(args);
        let (ok, out, err) = edge_cp(&all, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let admin = Client::at(&cp.url, token(&["--role", "admin"]));
    let _ = admin
        .send(
            "POST",
            "/v1/tenants",
            &NewTenant {
                id: "acme".parse().unwrap(),
            },
        )
        .await;
    let acme = Client::at(&cp.url, token(&["--role", "tenant", "--tenant", "acme"]));
    acme.create_app("web", &["shop.test"]).await;
    let ca = TestCa::new();
    let _: CertificateCreated = answer(
        acme.send(
            "POST",
            "/v1/apps/web/certificates",
            &ca.leaf(&["shop.test"], -1, 90).upload(&[]),
        )
        .await,
        201,
    );
    assert!(
        !data.join("keys").join("kek").exists(),
        "the environment's keyring is used"
    );
    let node_token = token(&["--role", "node", "--sub", "n"]);
    let bundle_status = |url: String, token: String| async move {
        let (status, snapshot) = Client::at(&url, token.clone())
            .call("GET", "/v1/sync?since=0", None)
            .await;
        assert_eq!(status, 200);
        let signed: edge_common::api::SignedSnapshot = serde_json::from_value(snapshot).unwrap();
        let payload: Value = serde_json::from_str(&signed.payload).unwrap();
        let digest = payload["certificates"][0]["bundle_sha256"]
            .as_str()
            .unwrap()
            .to_string();
        Client::at(&url, token)
            .call("GET", &format!("/v1/certificates/{digest}"), None)
            .await
    };
    let (status, _) = bundle_status(cp.url.clone(), node_token.clone()).await;
    assert_eq!(status, 200);
    drop(cp);
    let key_b = "2".repeat(64);
    // A keyring without the key the stored value is sealed under: refused
    // at start, naming the missing key (never the keys themselves).
    let (ok, _, err) = serve(&[], &[("EDGE_CP_KEK", key_b.as_str())]);
    assert!(
        !ok && err.contains("does not hold") && err.contains("1 stored value"),
        "{err}"
    );
    assert!(!err.contains(&key_a) && !err.contains(&key_b), "{err}");
    // Both keys (the new one current): it opens again.
    let both = format!("{key_b},{key_a}");
    let cp = CpProcess::start(
        &["--data-dir", data_arg],
        &[("EDGE_CP_KEK", both.as_str())],
        &dir.path().join("c.log"),
    );
    let (status, _) = bundle_status(cp.url.clone(), node_token).await;
    assert_eq!(status, 200);
}

/// Several replicas rotate in three steps: a staged key opens but seals
/// nothing; promoted, it seals and every value is re-sealed under it. A
/// control plane given a keyring without the key its stored values are
/// sealed under (a forgotten --kek-file, a replica not given the promoted
/// key) refuses to start, naming the key, instead of failing every node's
/// bundle fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_key_is_promoted_and_a_keyring_without_the_sealing_key_is_refused_at_start() {
    let mut cp = TestCp::start().await;
    let data = cp.dir.path().to_path_buf();
    let data_arg = data.to_str().unwrap().to_string();
    let kek = data.join("keys").join("kek");
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["shop.test"]).await;
    acme.deploy("web", HELLO).await;
    let ca = TestCa::new();
    let _: CertificateCreated = answer(
        acme.send(
            "POST",
            "/v1/apps/web/certificates",
            &ca.leaf(&["shop.test"], -1, 90).upload(&[]),
        )
        .await,
        201,
    );
    let old = keyring_keys(&kek);

    let (ok, out, err) = edge_cp(
        &["keys", "rotate-kek", "--data-dir", &data_arg, "--stage"],
        &[],
    );
    assert!(ok, "{err}");
    let staged = out
        .split("--to ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap()
        .to_string();
    let keys = keyring_keys(&kek);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], old[0], "the current key stays current");
    assert!(!out.contains("re-sealed"), "{out}");

    let (ok, out, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--to",
            &staged,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 1 certificate key(s) (0 already current)"),
        "{out}"
    );
    assert_eq!(keyring_keys(&kek), vec![keys[1].clone(), keys[0].clone()]);
    let (ok, _, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--to",
            "0123456789abcdef",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("holds no key 0123456789abcdef"),
        "{err}"
    );

    // The old keyring alone no longer opens the stored key: refused.
    cp.kill().await;
    let old_file = data.join("old-kek");
    std::fs::write(&old_file, format!("{}\n", old[0])).unwrap();
    let mut config = edge_cp::CpConfig::new(&data, "127.0.0.1:0".parse().unwrap());
    config.kek = edge_cp::keys::KekSource::File(old_file);
    let refused = match edge_cp::ControlPlane::start(config).await {
        Ok(_) => panic!("started with a keyring that opens none of its values"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains(&staged) && refused.contains("does not hold"),
        "{refused}"
    );
    assert!(
        !refused.contains(&old[0]) && !refused.contains(&keys[1]),
        "no key in the error"
    );
    // With the current keyring it serves again.
    cp.restart().await;
    let nodes = tempfile::tempdir().unwrap();
    let node = fresh_node(&cp, nodes.path(), "node-a").await;
    wait_for_https(&ca, &node, "shop.test").await;
}

/// App secrets are re-sealed by a rotation like certificate keys, keep
/// reaching a fresh node after the old key is retired, and a secret under
/// a key the keyring lacks keeps the control plane from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_secrets_are_resealed_by_a_rotation_and_checked_at_start() {
    let mut cp = TestCp::start().await;
    let data = cp.dir.path().to_path_buf();
    let data_arg = data.to_str().unwrap().to_string();
    let acme = cp.new_tenant("acme").await;
    acme.create_app("vault", &["vault.test"]).await;
    acme.deploy("vault", edge_fixtures::ENV).await;
    let _: edge_common::api::SecretSet = answer(
        acme.call(
            "PUT",
            "/v1/apps/vault/secrets/TOKEN",
            Some(serde_json::json!({"value": "kek-test-value"})),
        )
        .await,
        200,
    );
    let (ok, out, err) = edge_cp(&["keys", "rotate-kek", "--data-dir", &data_arg], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 1 app secret(s) (0 already current)"),
        "{out}"
    );
    let (ok, out, err) = edge_cp(
        &[
            "keys",
            "rotate-kek",
            "--data-dir",
            &data_arg,
            "--retire-old",
        ],
        &[],
    );
    assert!(
        ok && out.contains("re-sealed 0 app secret(s) (1 already current)"),
        "{out}{err}"
    );
    cp.restart().await;
    let nodes = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("n"), nodes.path()).await;
    crate::common::eventually("the secret on a fresh node", || async {
        node.get("vault.test", "/?config=TOKEN").await == (200, "kek-test-value".to_string())
    })
    .await;
    drop(node);

    // A secret sealed under a key nobody has: the start is refused.
    cp.kill().await;
    let store = MetaLocation::Sqlite {
        data_dir: data.clone(),
    }
    .open()
    .await
    .unwrap();
    let (tenant, app) = ("acme".parse().unwrap(), "vault".parse().unwrap());
    let current = store.app_secrets(&tenant, &app).await.unwrap();
    let mut bundle = current.bundle.clone().unwrap();
    bundle.sha256 = "ab".repeat(32);
    store
        .write_secret(
            &tenant,
            &app,
            &edge_cp::store::SecretWrite {
                name: "LOST".into(),
                sealed: Some(b"EK1 sealed by a key nobody has any more".to_vec()),
                expected_bundle: current.bundle.map(|b| b.sha256),
                bundle: Some(bundle),
                max_per_app: 100,
            },
        )
        .await
        .unwrap();
    drop(store);
    let (ok, _, err) = edge_cp(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
        &[],
    );
    assert!(
        !ok && err.contains("does not hold") && err.contains("1 stored value"),
        "{err}"
    );
}
