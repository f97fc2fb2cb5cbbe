//! Nodes given several control-plane URLs fail over between them.

use std::path::Path;
use std::process::Command;

use edge_common::api::{NewApp, NewTenant, PurgeBody};
use edge_fixtures::net::DeadPort;
use edge_fixtures::{ECHO, HELLO};

use crate::common::{Client, CpProcess, TestCp, TestNode};
use crate::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

const HELLO_BODY: &str = "Hello from the edge!\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_skips_a_control_plane_that_is_down() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;

    // The first URL refuses connections: the node goes on to the second
    // and serves what it has.
    let dead = DeadPort::new();
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with_replicas(
        &[dead.http_url(), cp.url()],
        cp.node_token("node-a"),
        dir.path(),
    )
    .await;
    node.wait_for_body("web.test", HELLO_BODY).await;
    let failures: f64 = node
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("edge_sync_failures_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(failures >= 1.0, "the dead replica was tried and counted");

    // The live one goes away and comes back on the same address: the node
    // keeps serving meanwhile and picks up a deploy made after it.
    cp.kill().await;
    assert_eq!(node.get("web.test", "/").await, (200, HELLO_BODY.into()));
    cp.restart().await;
    acme.deploy("web", edge_fixtures::ECHO).await;
    node.wait_for_body("web.test", "").await;
}

/// An `edge-cp serve` process sharing PostgreSQL, an S3 bucket and a keys
/// directory with the other replicas.
pub(crate) fn replica(data: &Path, keys: &Path, database: &str, s3: &S3Server) -> CpProcess {
    std::fs::create_dir_all(data).unwrap();
    let endpoint = s3.endpoint();
    let blobs = format!("s3://{BUCKET}/replicated");
    CpProcess::start(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
            "--database",
            database,
            "--blobs",
            &blobs,
        ],
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ],
        &data.join("edge-cp.log"),
    )
}

pub(crate) fn token(keys: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(["token", "--keys-dir"])
        .arg(keys)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_postgres_and_a_bucket_and_nodes_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let init = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(["keys", "init", "--keys-dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let database = crate::pg::new_database().await.to_string();
    let s3 = S3Server::start();
    let a = replica(&dir.path().join("a"), &keys, &database, &s3);
    let b = replica(&dir.path().join("b"), &keys, &database, &s3);

    let admin_a = Client::at(&a.url, token(&keys, &["--role", "admin"]));
    for tenant in ["acme", "other"] {
        let (status, body) = admin_a
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
    let tenant_token = |t: &str| token(&keys, &["--role", "tenant", "--tenant", t]);
    let acme_a = Client::at(&a.url, tenant_token("acme"));
    let acme_b = Client::at(&b.url, tenant_token("acme"));
    let other_b = Client::at(&b.url, tenant_token("other"));
    acme_a.create_app("web", &["web.test"]).await;

    // Node 1 polls A first, node 2 polls B first: a deploy through A wakes
    // B's long poll through PostgreSQL, not through a timer.
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_token = |n: &str| token(&keys, &["--role", "node", "--sub", n]);
    let mut nodes = [
        TestNode::start_with_replicas(
            &[a.url.clone(), b.url.clone()],
            node_token("node-1"),
            dirs.0.path(),
        )
        .await,
        TestNode::start_with_replicas(
            &[b.url.clone(), a.url.clone()],
            node_token("node-2"),
            dirs.1.path(),
        )
        .await,
    ];
    acme_a.deploy("web", HELLO).await;
    for node in &nodes {
        node.wait_for_body("web.test", HELLO_BODY).await;
    }

    // A purge through B reaches both nodes as a new revision.
    let (status, body) = acme_b
        .send(
            "POST",
            "/v1/apps/web/purge",
            &PurgeBody {
                all: Some(true),
                ..PurgeBody::default()
            },
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let revision: u64 = body["revision"].as_u64().unwrap();
    for node in &nodes {
        crate::common::eventually("the purge's revision reaches the node", || async {
            node.metric("edge_sync_revision").await >= revision as f64
        })
        .await;
    }

    // Two tenants claim one hostname at once, through different replicas:
    // exactly one wins, every round.
    for round in 0..5 {
        let host = format!("race-{round}.test");
        let name = format!("race{round}");
        let app = NewApp {
            name: name.parse().unwrap(),
            hosts: vec![host.clone().try_into().unwrap()],
            origin: None,
            forward_override_headers: None,
        };
        let (first, second) = tokio::join!(
            acme_a.send("POST", "/v1/apps", &app),
            other_b.send("POST", "/v1/apps", &app),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}: {first:?} {second:?}");
    }

    // A dies: both nodes carry on with B, and take a deploy made there.
    drop(a);
    acme_b.deploy("web", ECHO).await;
    for node in &nodes {
        node.wait_for_body("web.test", "").await;
    }
    // And a node restarted while A is down starts from B.
    nodes[0].restart().await;
    nodes[0].wait_for_body("web.test", "").await;
}
