//! `edge-cp migrate-store` end to end, through the real binary: a control
//! plane filled through the API on SQLite moves to PostgreSQL (and its
//! blobs to another directory), then `edge-cp serve --database` on the new
//! store shows the same apps, versions and revision, and a node serves its
//! app from it.

use std::process::Command;

use edge_common::api::ErrorBody;
use edge_common::sync::{SignedSnapshot, Snapshot};
use edge_cp::auth::Role;
use edge_fixtures::{ECHO, HELLO};
use serde_json::{Value, json};

use crate::common::{Client, CpProcess, TestCp, TestNode, new_origin_app};
use crate::pg;

const HELLO_BODY: &str = "Hello from the edge!\n";

/// Runs `edge-cp ARGS` with `env`: (success, stdout, stderr).
fn edge_cp(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(args)
        .envs(env.iter().copied())
        .env("EDGE_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What a tenant and a node see of a control plane.
async fn observe(base: &str, cp: &TestCp) -> (Value, Value, Value, Value, Snapshot) {
    let acme = Client::at(base, cp.token(Role::Tenant, "acme", Some("acme")));
    let admin = Client::at(base, cp.token(Role::Admin, "admin", None));
    let node = Client::at(base, cp.node_token("watcher"));
    let get = |client: &Client, path: &'static str| {
        let client = client.clone();
        async move {
            let (status, body) = client.call("GET", path, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let signed: SignedSnapshot =
        serde_json::from_value(get(&node, "/v1/sync?since=0&wait=0s").await).unwrap();
    let mut snapshot: Snapshot = serde_json::from_str(&signed.payload).unwrap();
    snapshot.created_unix = 0;
    (
        get(&acme, "/v1/apps").await,
        get(&acme, "/v1/apps/web/versions").await,
        get(&acme, "/v1/tenants/acme/quota").await,
        get(&admin, "/v1/tenants").await,
        snapshot,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_control_plane_from_sqlite_to_postgres() {
    // A control plane on the embedded default, filled through the API.
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", ECHO).await;
    acme.deploy("web", HELLO).await;
    let (status, body) = acme
        .send(
            "POST",
            "/v1/apps",
            &new_origin_app("proxy", &["proxy.test"], "http://origin.test"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = acme
        .call("POST", "/v1/apps/web/purge", Some(json!({ "all": true })))
        .await;
    assert_eq!(status, 202, "{body}");
    let tls_state = add_tls_state(cp.dir.path()).await;
    let before = observe(&cp.url(), &cp).await;
    assert_eq!(before.4.apps.len(), 1);
    assert_eq!(before.4.apps[0].https.hsts.as_deref(), Some("max-age=60"));
    assert_eq!(before.4.acme_challenges.len(), 1);
    cp.kill().await;

    let data_dir = cp.dir.path().to_str().unwrap().to_string();
    let keys_dir = cp.dir.path().join("keys");
    let new_blobs = tempfile::tempdir().unwrap();
    let url = pg::new_database().await;
    let from = format!("sqlite:{data_dir}");
    let to_blobs = format!("dir:{}", new_blobs.path().display());

    // The target from the environment, as an operator keeps a password
    // off the command line.
    let target_env = [("EDGE_CP_DATABASE", url.to_string())];
    let env: Vec<(&str, &str)> = target_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = edge_cp(
        &["migrate-store", "--from", &from, "--to-blobs", &to_blobs],
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "copied metadata from {from} to {url}: 1 tenants, 2 apps, 2 hostnames, 2 versions, 2 deployments"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "revision {}, epoch {}",
            before.4.revision, before.4.epoch
        )),
        "{out}"
    );
    // Two sources and their two compiled artifacts.
    assert!(out.contains("copied 4 blobs"), "{out}");
    assert!(out.contains(&format!("to {to_blobs}")), "{out}");

    // Never into a store that holds anything.
    let (ok, _, err) = edge_cp(
        &["migrate-store", "--from", &from, "--to", &url.to_string()],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("target store is not empty (1 tenants"),
        "{err}"
    );
    // Nor from a store that is not there, nor to the same one.
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, err) = edge_cp(
        &[
            "migrate-store",
            "--from",
            &format!("sqlite:{}", empty.path().display()),
            "--to",
            &url.to_string(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("meta.sqlite3 (no file) not found"), "{err}");
    let (ok, _, err) = edge_cp(&["migrate-store", "--from", &from, "--to", &from], &[]);
    assert!(!ok);
    assert!(err.contains("name the same store"), "{err}");

    // Served from PostgreSQL (password from the environment; the test
    // cluster trusts local connections, so any password does) with the
    // copied blobs and the same keys.
    let with_password =
        url.to_string()
            .replacen("postgres://postgres@", "postgres://postgres:s3cret@", 1);
    let log = new_blobs.path().join("edge-cp.log");
    let served = CpProcess::start(
        &[
            "--data-dir",
            new_blobs.path().to_str().unwrap(),
            "--keys-dir",
            keys_dir.to_str().unwrap(),
        ],
        &[("EDGE_CP_DATABASE", &with_password)],
        &log,
    );
    let after = observe(&served.url, &cp).await;
    assert_eq!(
        after, before,
        "the same apps, versions, quota, tenants and snapshot"
    );
    use edge_cp::store::MetaStore;
    let migrated = url.connect().await.unwrap();
    assert_eq!(
        tls_state,
        (
            migrated.all_certificates().await.unwrap(),
            migrated.acme_accounts().await.unwrap()
        ),
        "certificates (sealed keys byte for byte) and ACME accounts move along"
    );

    // A node syncs from it, fetches the copied artifact and serves.
    let node_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&served.url, cp.node_token("edge-1"), node_dir.path()).await;
    node.wait_for_body("web.test", HELLO_BODY).await;

    // It carries on from the same revision.
    let acme = Client::at(&served.url, cp.token(Role::Tenant, "acme", Some("acme")));
    let (status, body) = acme
        .call("POST", "/v1/apps/web/purge", Some(json!({ "all": true })))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], 2);
    assert_eq!(body["revision"], before.4.revision + 1);
    // A hostname the migrated store knows is still taken.
    let (status, body) = Client::at(&served.url, cp.token(Role::Admin, "admin", None))
        .call("POST", "/v1/tenants", Some(json!({ "id": "rival" })))
        .await;
    assert_eq!(status, 201, "{body}");
    let rival = Client::at(&served.url, cp.token(Role::Tenant, "rival", Some("rival")));
    let (status, body) = rival
        .call(
            "POST",
            "/v1/apps",
            Some(json!({ "name": "steal", "hosts": ["web.test"] })),
        )
        .await;
    let ErrorBody { error } = serde_json::from_value(body.clone()).unwrap();
    assert_eq!((status, error.code.as_str()), (409, "host-taken"), "{body}");

    drop(served);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("postgres://postgres:***@127.0.0.1"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password is never logged:\n{log}"
    );
}

/// Gives the control plane whose data dir is `data_dir` (running, on
/// SQLite) TLS state through a second handle on its store: an app's HSTS,
/// a pending ACME certificate with a challenge, an ACME account (nothing
/// a node would fetch a bundle for: the sealed bytes here are no real
/// key). Returns what the store then holds of certificates and accounts.
async fn add_tls_state(
    data_dir: &std::path::Path,
) -> (Vec<edge_cp::store::CertRecord>, Vec<(String, Vec<u8>)>) {
    use edge_common::sync::{AcmeChallenge, AppHttps};
    use edge_cp::store::{CertSource, MetaStore, NewCertificate};

    let store = edge_cp::store::sqlite::SqliteMetaStore::open(
        &edge_cp::store::location::MetaLocation::sqlite_file(data_dir),
    )
    .unwrap();
    let (acme, web) = ("acme".parse().unwrap(), "web".parse().unwrap());
    let https = AppHttps {
        redirect: false,
        hsts: Some("max-age=60".into()),
    };
    store.set_app_https(&acme, &web, &https).await.unwrap();
    let (cert, _) = store
        .add_certificate(
            &acme,
            &web,
            NewCertificate {
                hosts: vec!["web.test".to_string().try_into().unwrap()],
                source: CertSource::Acme,
                material: None,
                next_attempt_unix: Some(u64::from(u32::MAX)),
            },
            &edge_cp::store::CertLimits::default(),
        )
        .await
        .unwrap();
    store
        .set_acme_challenges(
            cert.id,
            &[AcmeChallenge {
                host: "web.test".into(),
                token: "migrated-token".into(),
                key_authorization: "migrated-token.thumbprint".into(),
            }],
        )
        .await
        .unwrap();
    store
        .put_acme_account("https://ca.test/dir", &[0, 1, 254, 255], false)
        .await
        .unwrap();
    (
        store.all_certificates().await.unwrap(),
        store.acme_accounts().await.unwrap(),
    )
}

#[test]
fn a_bad_database_url_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = edge_cp(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database",
            "postgres://cp:s3cret@db:notaport/edge",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("--database"), "{err}");
    assert!(
        err.contains("invalid PostgreSQL URL postgres://cp:***@db"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let (ok, _, err) = edge_cp(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("EDGE_CP_DATABASE", "mysql://cp:s3cret@db/edge")],
    );
    assert!(!ok);
    assert!(err.contains("give sqlite:DATA_DIR or postgres://"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// The whole move an operator makes: SQLite and a blob directory into
/// PostgreSQL and an S3 bucket, then served from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_blobs_into_a_bucket() {
    use crate::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    cp.kill().await;

    let s3 = S3Server::start();
    let endpoint = s3.endpoint();
    let aws = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let url = pg::new_database().await.to_string();
    let from = format!("sqlite:{}", cp.dir.path().display());
    let bucket = format!("s3://{BUCKET}/migrated");
    let (ok, out, err) = edge_cp(
        &[
            "migrate-store",
            "--from",
            &from,
            "--to",
            &url,
            "--to-blobs",
            &bucket,
        ],
        &aws,
    );
    assert!(ok, "{err}");
    assert!(out.contains("copied 2 blobs"), "{out}");
    assert!(out.contains(&format!("to {bucket}")), "{out}");
    // A bucket name S3 would refuse is refused before anything is copied.
    let (ok, _, err) = edge_cp(
        &[
            "migrate-store",
            "--from",
            &from,
            "--to",
            &url,
            "--to-blobs",
            "s3://No_Such",
        ],
        &aws,
    );
    assert!(!ok);
    assert!(err.contains("bucket name"), "{err}");

    // Served from PostgreSQL and the bucket: a node fetches the artifact
    // from S3 through the control plane.
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("edge-cp.log");
    let mut env = aws.to_vec();
    env.push(("EDGE_CP_DATABASE", url.as_str()));
    let served = CpProcess::start(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--keys-dir",
            cp.dir.path().join("keys").to_str().unwrap(),
            "--blobs",
            &bucket,
        ],
        &env,
        &log,
    );
    let node_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&served.url, cp.node_token("edge-1"), node_dir.path()).await;
    node.wait_for_body("web.test", HELLO_BODY).await;
}
