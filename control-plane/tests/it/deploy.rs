//! Upload → live on two nodes, rollback, config values, status, and static
//! stability: nodes keep serving (and restart) while the control plane is
//! down, and a restarted control plane has lost nothing.

use edge_common::api::{
    Activated, App, AppStatus, ConfigChanges, Rollback, RolloutState, VersionList,
};
use edge_fixtures::{ECHO, ENV, HELLO};

use crate::common::{TestCp, TestNode, answer, assert_error, eventually};

const HELLO_BODY: &str = "Hello from the edge!\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_live_on_two_nodes_and_rolls_back() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nodes = [
        TestNode::start(&cp.url(), cp.node_token("node-a"), dirs.0.path()).await,
        TestNode::start(&cp.url(), cp.node_token("node-b"), dirs.1.path()).await,
    ];

    let (v1, _) = acme.deploy("web", HELLO).await;
    assert_eq!(v1, 1);
    for node in &nodes {
        node.wait_for_body("web.test", HELLO_BODY).await;
    }
    // A host nobody claimed is still unknown.
    assert_eq!(nodes[0].get("other.test", "/").await.0, 404);

    // Version 2 (echo answers a GET with an empty body).
    let (v2, revision) = acme.deploy("web", ECHO).await;
    assert_eq!(v2, 2);
    for node in &nodes {
        node.wait_for_body("web.test", "").await;
    }
    eventually("both nodes report the revision", || async {
        let status: AppStatus = acme.get("/v1/apps/web/status").await;
        status.nodes.len() == 2
            && status
                .nodes
                .iter()
                .all(|n| n.state == RolloutState::Applied)
    })
    .await;
    let status: AppStatus = acme.get("/v1/apps/web/status").await;
    assert_eq!(status.active_version, Some(2));
    assert_eq!(status.revision, revision);
    for node in &nodes {
        assert_eq!(node.metric("edge_sync_revision").await, revision as f64);
        assert!(
            node.metric("edge_sync_last_success_timestamp_seconds")
                .await
                > 1.7e9
        );
    }

    // Roll back to the previous version, then explicitly forward again.
    // An empty body: to the version deployed before.
    let rolled: Activated = answer(acme.call("POST", "/v1/apps/web/rollback", None).await, 200);
    assert_eq!(rolled.version, 1);
    for node in &nodes {
        node.wait_for_body("web.test", HELLO_BODY).await;
    }
    let rolled: Activated = answer(
        acme.send("POST", "/v1/apps/web/rollback", &Rollback { to: Some(2) })
            .await,
        200,
    );
    assert_eq!(rolled.version, 2);
    for node in &nodes {
        node.wait_for_body("web.test", "").await;
    }
    let (status, body) = acme
        .send("POST", "/v1/apps/web/rollback", &Rollback { to: Some(9) })
        .await;
    assert_error(status, &body, 404, "not-found");

    // Versions: the active one cannot be deleted, others can.
    let (status, body) = acme.call("DELETE", "/v1/apps/web/versions/2", None).await;
    assert_error(status, &body, 409, "version-active");
    let (status, _) = acme.call("DELETE", "/v1/apps/web/versions/1", None).await;
    assert_eq!(status, 200);
    let (status, body) = acme.call("POST", "/v1/apps/web/rollback", None).await;
    assert_error(status, &body, 404, "not-found");

    // Deleting the app takes it off the nodes.
    assert!(nodes[0].metrics_text().await.contains("app=\"web\""));
    let (status, _) = acme.call("DELETE", "/v1/apps/web", None).await;
    assert_eq!(status, 200);
    for node in &nodes {
        eventually("the deleted app is gone", || async {
            node.get("web.test", "/").await.0 == 404
        })
        .await;
        // Its metric series go with it (just after the routing table is
        // swapped, which is what the 404 shows).
        eventually("the deleted app's metric series are gone", || async {
            !node.metrics_text().await.contains("app=\"web\"")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_values_reach_the_guest() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("env", &["env.test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let (status, body) = acme
        .send(
            "PATCH",
            "/v1/apps/env/config",
            &config([("GREETING", "bonjour")]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    acme.deploy("env", ENV).await;
    eventually("the config value is visible", || async {
        let (status, body) = node.get("env.test", "/GREETING").await;
        status == 200 && body.contains("bonjour")
    })
    .await;
    // Bad keys and oversized config are refused with the rule named.
    let (status, body) = acme
        .send("PATCH", "/v1/apps/env/config", &config([("BAD=KEY", "x")]))
        .await;
    assert_error(status, &body, 400, "invalid-config");
    let big = "x".repeat(70_000);
    let (status, body) = acme
        .send(
            "PATCH",
            "/v1/apps/env/config",
            &config([("BIG", big.as_str())]),
        )
        .await;
    assert_error(status, &body, 400, "invalid-config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_through_a_control_plane_outage_and_nothing_is_lost() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let (_, revision) = acme.deploy("web", HELLO).await;
    node.wait_for_body("web.test", HELLO_BODY).await;

    // Control plane gone: the node keeps serving.
    cp.kill().await;
    for _ in 0..20 {
        assert_eq!(
            node.get("web.test", "/").await,
            (200, HELLO_BODY.to_string())
        );
    }
    // Restarted while the control plane is down: serves from local state.
    node.restart().await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    assert_eq!(node.metric("edge_sync_revision").await, revision as f64);

    // The control plane comes back with everything it acknowledged.
    cp.restart().await;
    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert_eq!(versions.versions.len(), 1);
    let app: App = acme.get("/v1/apps/web").await;
    assert_eq!(app.active_version, Some(1));
    assert_eq!(app.updated_revision, revision);

    // The node reconnects on its own and picks up a new version; revisions
    // keep increasing.
    let (v2, revision2) = acme.deploy("web", ECHO).await;
    assert_eq!(v2, 2);
    assert!(revision2 > revision);
    node.wait_for_body("web.test", "").await;
    eventually("the node reports the new revision", || async {
        node.metric("edge_sync_revision").await == revision2 as f64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_a_recreated_control_plane_database() {
    let mut cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", HELLO).await;
    let (_, old_revision) = acme.deploy("web", ECHO).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    node.wait_for_body("web.test", "").await;

    // The metadata is lost (restored from nothing); keys and blobs remain.
    cp.kill().await;
    for file in ["meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm"] {
        let _ = std::fs::remove_file(cp.dir.path().join(file));
    }
    cp.restart().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let (_, new_revision) = acme.deploy("web", HELLO).await;
    assert!(new_revision <= old_revision, "revisions started over");
    // The node takes the new database's state although its revision is lower.
    node.wait_for_body("web.test", HELLO_BODY).await;
    eventually("the node reports the new revision", || async {
        node.metric("edge_sync_revision").await == new_revision as f64
    })
    .await;
}

/// Config values to set.
fn config<const N: usize>(values: [(&str, &str); N]) -> ConfigChanges {
    values
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}
