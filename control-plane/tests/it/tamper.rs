//! A tampered artifact or snapshot is refused by the node before anything
//! is deserialized. A bad artifact fails its own app only (which keeps its
//! previous version); a snapshot whose signature fails is refused whole and
//! retried. Both are reported, and the next good revision applies.

use std::collections::BTreeMap;

use edge_common::api::{Activated, AppStatus, Deploy, RolloutState, Uploaded};
use edge_fixtures::{ECHO, ENV, HELLO, WSTD_STREAM};

use crate::common::{Client, Tamper, TamperProxy, TestCp, TestNode, answer, eventually};

const HELLO_BODY: &str = "Hello from the edge!\n";

/// Waits until the app's status shows the node in `state`, with an error
/// mentioning `mention` (if given).
async fn node_state(client: &Client, app: &str, state: RolloutState, mention: Option<&str>) {
    eventually(&format!("{app} {state:?} on the node"), || async {
        let status: AppStatus = client.get(&format!("/v1/apps/{app}/status")).await;
        status.nodes.first().is_some_and(|n| {
            n.state == state
                && mention.is_none_or(|m| n.error.as_ref().is_some_and(|e| e.contains(m)))
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_artifacts_and_snapshots_are_refused() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    acme.create_app("web", &["web.test"]).await;
    other.create_app("shop", &["shop.test"]).await;
    let proxy = TamperProxy::start(cp.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&proxy.url(), cp.node_token("node-a"), dir.path()).await;
    acme.deploy("web", HELLO).await;
    node.wait_for_body("web.test", HELLO_BODY).await;

    // acme's next artifact is altered in flight: refused by digest. acme's
    // app keeps serving its previous version, and another tenant's deploy
    // goes live all the same.
    let upload: Uploaded = answer(acme.upload("web", std::fs::read(ECHO).unwrap()).await, 201);
    proxy.only(&upload.artifact.sha256);
    proxy.set(Tamper::Artifacts);
    let deploy = Deploy {
        version: upload.version,
    };
    let (status, _) = acme.send("POST", "/v1/apps/web/deploy", &deploy).await;
    assert_eq!(status, 200);
    node_state(
        &acme,
        "web",
        RolloutState::Rejected,
        Some("digest mismatch"),
    )
    .await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    // A new app refused the same way has no version to keep: its host says
    // so (503, the app is known but not loaded), not 404 "unknown host".
    acme.create_app("fresh", &["fresh.test"]).await;
    let fresh: Uploaded = answer(
        acme.upload("fresh", std::fs::read(ECHO).unwrap()).await,
        201,
    );
    proxy.only(&fresh.artifact.sha256);
    let (status, _) = acme
        .send(
            "POST",
            "/v1/apps/fresh/deploy",
            &Deploy {
                version: fresh.version,
            },
        )
        .await;
    assert_eq!(status, 200);
    node_state(
        &acme,
        "fresh",
        RolloutState::Rejected,
        Some("digest mismatch"),
    )
    .await;
    assert_eq!(
        node.get("fresh.test", "/").await,
        (
            503,
            "app-unavailable: the app serving host fresh.test could not be loaded on this node\n"
                .to_string()
        )
    );
    assert_eq!(
        node.metric("edge_unrouted_requests_total{reason=\"app-unavailable\"}")
            .await,
        1.0
    );
    other.deploy("shop", WSTD_STREAM).await;
    node_state(&other, "shop", RolloutState::Applied, None).await;
    assert_eq!(node.get("shop.test", "/stream?n=1").await.0, 200);
    // Only acme sees acme's error.
    let status: AppStatus = other.get("/v1/apps/shop/status").await;
    assert_eq!(status.nodes[0].error, None, "{status:?}");
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    assert!(
        node.metric("edge_sync_failures_total{reason=\"artifact\"}")
            .await
            >= 1.0
    );

    // A snapshot altered in flight: refused by signature, whole.
    proxy.set(Tamper::Snapshots);
    let config = BTreeMap::from([("K".to_string(), Some("v".to_string()))]);
    let (status, body) = acme.send("PATCH", "/v1/apps/web/config", &config).await;
    assert_eq!(status, 200, "{body}");
    node_state(&acme, "web", RolloutState::Rejected, Some("signature")).await;
    assert_eq!(
        node.get("web.test", "/").await,
        (200, HELLO_BODY.to_string())
    );
    assert!(
        node.metric("edge_sync_failures_total{reason=\"bad-signature\"}")
            .await
            >= 1.0
    );

    // An outage while fetching is not a rejection: the node retries the
    // same revision and applies it once artifacts come back.
    proxy.set(Tamper::ArtifactsUnavailable);
    let (_, revision) = acme.deploy("web", ENV).await;
    eventually("failed fetches", || async {
        node.metric("edge_sync_failures_total{reason=\"artifact-fetch\"}")
            .await
            >= 2.0
    })
    .await;
    let status: AppStatus = acme.get("/v1/apps/web/status").await;
    assert_eq!(status.nodes[0].state, RolloutState::Pending, "{status:?}");
    proxy.set(Tamper::Nothing);
    node_state(&acme, "web", RolloutState::Applied, None).await;
    let status: AppStatus = acme.get("/v1/apps/web/status").await;
    assert_eq!(status.nodes[0].applied_revision, Some(revision));
    node.wait_for_body("web.test", "K=v\n").await;

    // Nothing tampered: the version refused earlier applies now.
    let deployed: Activated = answer(acme.send("POST", "/v1/apps/web/deploy", &deploy).await, 200);
    assert!(deployed.revision > revision);
    node.wait_for_body("web.test", "").await;
    node_state(&acme, "web", RolloutState::Applied, None).await;
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
    acme.deploy("web", HELLO).await;
    node_state(&acme, "web", RolloutState::Rejected, Some("signature")).await;
    assert_eq!(node.get("web.test", "/").await.0, 404);
}
