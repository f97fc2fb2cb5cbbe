//! The `edgectl` binary against a control plane and a node.

use edge_fixtures::{ECHO, HELLO};

use crate::common::{TestCp, TestNode, edgectl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgectl_deploys_waits_for_nodes_and_rolls_back() {
    let cp = TestCp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let admin = cp.token(edge_cp::auth::Role::Admin, "admin", None);
    let tenant = cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"));
    let url = cp.url();

    let (ok, out, err) = edgectl(&url, &admin, &["tenants", "create", "acme"]).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = edgectl(
        &url,
        &tenant,
        &["apps", "create", "web", "--host", "web.test"],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = edgectl(&url, &tenant, &["deploy", "web", HELLO]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("version 1"), "{out}");
    assert!(out.contains("live on 1/1 nodes"), "{out}");
    assert!(out.contains("https://web.test/"), "{out}");
    // Once `deploy` returns, the node serves it.
    assert_eq!(
        node.get("web.test", "/").await,
        (200, "Hello from the edge!\n".into())
    );

    let (ok, out, _) = edgectl(&url, &tenant, &["deploy", "web", ECHO]).await;
    assert!(ok && out.contains("version 2"), "{out}");
    assert_eq!(node.get("web.test", "/").await, (200, String::new()));
    let (ok, out, _) = edgectl(&url, &tenant, &["rollback", "web"]).await;
    assert!(ok && out.contains("rolled back to version 1"), "{out}");
    assert_eq!(
        node.get("web.test", "/").await,
        (200, "Hello from the edge!\n".into())
    );

    let (ok, out, _) = edgectl(&url, &tenant, &["config", "set", "web", "A=1", "B=two"]).await;
    assert!(ok, "{out}");
    let (ok, out, _) = edgectl(&url, &tenant, &["config", "get", "web"]).await;
    assert!(ok && out.contains("A=1") && out.contains("B=two"), "{out}");
    let (ok, out, _) = edgectl(&url, &tenant, &["status", "web"]).await;
    assert!(
        ok && out.contains("node-a") && out.contains("applied"),
        "{out}"
    );
    let (ok, out, _) = edgectl(&url, &tenant, &["apps", "list"]).await;
    assert!(
        ok && out.contains("web") && out.contains("web.test"),
        "{out}"
    );

    // Errors: one line on stderr, non-zero exit.
    let (ok, _, err) = edgectl(&url, &tenant, &["deploy", "nope", HELLO]).await;
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("edgectl: app nope not found [404 not-found]"),
        "{err}"
    );
    let (ok, _, err) = edgectl(&url, &tenant, &["deploy", "web", "/etc/hostname"]).await;
    assert!(!ok && err.contains("not-wasm"), "{err}");
    let (ok, _, err) = edgectl(&url, "garbage", &["apps", "list"]).await;
    assert!(!ok && err.contains("401 token-invalid"), "{err}");
    let (ok, _, err) = edgectl(&url, &tenant, &["limits", "set", "web", "cpu_time=1s"]).await;
    assert!(!ok && err.contains("403"), "{err}");
}
