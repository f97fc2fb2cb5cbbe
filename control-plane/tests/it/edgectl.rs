//! The `edgectl` binary against a control plane and a node.

use std::process::Command;

use edge_fixtures::{ECHO, HELLO};

use crate::common::{TestCp, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgectl_deploys_waits_for_nodes_and_rolls_back() {
    let cp = TestCp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let admin = cp.token(edge_cp::auth::Role::Admin, "admin", None);
    let tenant = cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"));
    // Blocking commands run on the blocking pool so the in-process servers
    // keep running.
    let run = |token: String, args: Vec<String>| {
        let url = cp.url();
        tokio::task::spawn_blocking(move || {
            let output = Command::new(env!("CARGO_BIN_EXE_edgectl"))
                .args(&args)
                .env("EDGE_API", &url)
                .env("EDGE_TOKEN", &token)
                .env_remove("EDGE_TENANT")
                .output()
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = run(admin.clone(), args(&["tenants", "create", "acme"]))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(
        tenant.clone(),
        args(&["apps", "create", "web", "--host", "web.test"]),
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, out, err) = run(tenant.clone(), args(&["deploy", "web", HELLO]))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("version 1"), "{out}");
    assert!(out.contains("live on 1/1 nodes"), "{out}");
    assert!(out.contains("https://web.test/"), "{out}");
    // Once `deploy` returns, the node serves it.
    assert_eq!(
        node.get("web.test", "/").await,
        (200, "Hello from the edge!\n".into())
    );

    let (ok, out, _) = run(tenant.clone(), args(&["deploy", "web", ECHO]))
        .await
        .unwrap();
    assert!(ok && out.contains("version 2"), "{out}");
    assert_eq!(node.get("web.test", "/").await, (200, String::new()));
    let (ok, out, _) = run(tenant.clone(), args(&["rollback", "web"]))
        .await
        .unwrap();
    assert!(ok && out.contains("rolled back to version 1"), "{out}");
    assert_eq!(
        node.get("web.test", "/").await,
        (200, "Hello from the edge!\n".into())
    );

    let (ok, out, _) = run(
        tenant.clone(),
        args(&["config", "set", "web", "A=1", "B=two"]),
    )
    .await
    .unwrap();
    assert!(ok, "{out}");
    let (ok, out, _) = run(tenant.clone(), args(&["config", "get", "web"]))
        .await
        .unwrap();
    assert!(ok && out.contains("A=1") && out.contains("B=two"), "{out}");
    let (ok, out, _) = run(tenant.clone(), args(&["status", "web"])).await.unwrap();
    assert!(
        ok && out.contains("node-a") && out.contains("applied"),
        "{out}"
    );
    let (ok, out, _) = run(tenant.clone(), args(&["apps", "list"])).await.unwrap();
    assert!(
        ok && out.contains("web") && out.contains("web.test"),
        "{out}"
    );

    // Errors: one line on stderr, non-zero exit.
    let (ok, _, err) = run(tenant.clone(), args(&["deploy", "nope", HELLO]))
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("edgectl: app nope not found [404 not-found]"),
        "{err}"
    );
    let (ok, _, err) = run(tenant.clone(), args(&["deploy", "web", "/etc/hostname"]))
        .await
        .unwrap();
    assert!(!ok && err.contains("not-wasm"), "{err}");
    let (ok, _, err) = run("garbage".into(), args(&["apps", "list"]))
        .await
        .unwrap();
    assert!(!ok && err.contains("401 token-invalid"), "{err}");
    let (ok, _, err) = run(
        tenant.clone(),
        args(&["limits", "set", "web", "cpu_time=1s"]),
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("403"), "{err}");
}
