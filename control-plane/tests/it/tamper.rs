//! A tampered artifact or snapshot is refused by the node before anything
//! is deserialized; the node keeps serving the previous version and reports
//! a NACK, then applies the next good revision.

use edge_fixtures::{ECHO, HELLO};
use serde_json::json;

use crate::common::{Tamper, TamperProxy, TestCp, TestNode, eventually};

const HELLO_BODY: &str = "Hello from the edge!\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_artifacts_and_snapshots_are_refused() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let proxy = TamperProxy::start(cp.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&proxy.url(), cp.node_token("node-a"), dir.path()).await;
    acme.deploy("web", HELLO).await;
    node.wait_for_body("web.test", HELLO_BODY).await;

    let rejected = |revision: u64, mention: &'static str| {
        let acme = acme.clone();
        async move {
            eventually("the node's NACK", || async {
                let (_, status) = acme.call("GET", "/v1/apps/web/status", None).await;
                let n = &status["nodes"][0];
                n["state"] == "rejected"
                    && n["rejected_revision"] == revision
                    && n["error"].as_str().is_some_and(|e| e.contains(mention))
            })
            .await;
        }
    };

    // An artifact altered in flight: refused by digest.
    proxy.set(Tamper::Artifacts);
    let (_, revision) = acme.deploy("web", ECHO).await;
    rejected(revision, "digest mismatch").await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );

    // A snapshot altered in flight: refused by signature.
    proxy.set(Tamper::Snapshots);
    let (status, body) = acme
        .call("PATCH", "/v1/apps/web/config", Some(json!({ "K": "v" })))
        .await;
    assert_eq!(status, 200);
    let revision = body["revision"].as_u64().unwrap();
    rejected(revision, "signature").await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    assert!(
        node.metric("edge_sync_failures_total{reason=\"bad-signature\"}")
            .await
            >= 1.0
    );
    assert!(
        node.metric("edge_sync_failures_total{reason=\"artifact\"}")
            .await
            >= 1.0
    );

    // Nothing tampered: the next revision applies.
    proxy.set(Tamper::Nothing);
    let (_, revision) = acme.deploy("web", ECHO).await;
    node.wait_for_body("web.test", "").await;
    eventually("the ACK", || async {
        let (_, status) = acme.call("GET", "/v1/apps/web/status", None).await;
        status["nodes"][0]["state"] == "applied"
            && status["nodes"][0]["applied_revision"] == revision
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pinned_to_another_key_refuses_everything() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let dir = tempfile::tempdir().unwrap();
    // The node already trusts a different control plane.
    let other = edge_common::signing::SigningKey::from_pkcs8(
        &edge_common::signing::SigningKey::generate_pkcs8().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("trusted-key"),
        other.verifying_key().to_hex(),
    )
    .unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let (_, revision) = acme.deploy("web", HELLO).await;
    eventually("the NACK", || async {
        let (_, status) = acme.call("GET", "/v1/apps/web/status", None).await;
        status["nodes"][0]["rejected_revision"] == revision
    })
    .await;
    assert_eq!(node.get("web.test", "/").await.0, 404);
}
