//! A tenant cannot see, change or delete another tenant's apps, nor claim
//! its hostnames; roles are enforced.

use std::time::Duration;

use edge_common::api::{App, AppLimits, AppList, NewTenant, VersionList};
use edge_fixtures::HELLO;
use serde_json::json;

use crate::common::{TestCp, assert_error, new_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_touch_each_others_apps() {
    let cp = TestCp::start().await;
    let a = cp.new_tenant("tenant-a").await;
    let b = cp.new_tenant("tenant-b").await;
    a.create_app("shop", &["shop.test", "*.shop.test"]).await;
    a.deploy("shop", HELLO).await;

    // B sees nothing of A's.
    let listed: AppList = b.get("/v1/apps").await;
    assert!(listed.apps.is_empty(), "{listed:?}");
    for (method, path, body) in [
        ("GET", "/v1/apps/shop", None),
        ("GET", "/v1/apps/shop/versions", None),
        ("GET", "/v1/apps/shop/status", None),
        ("GET", "/v1/apps/shop/config", None),
        ("PATCH", "/v1/apps/shop/config", Some(json!({ "X": "y" }))),
        (
            "POST",
            "/v1/apps/shop/deploy",
            Some(json!({ "version": 1 })),
        ),
        ("POST", "/v1/apps/shop/rollback", None),
        ("DELETE", "/v1/apps/shop", None),
    ] {
        let (status, response) = b.call(method, path, body).await;
        assert_error(status, &response, 404, "not-found");
    }
    let (status, response) = b.upload("shop", std::fs::read(HELLO).unwrap()).await;
    assert_error(status, &response, 404, "not-found");
    // Naming the other tenant explicitly is forbidden.
    let (status, response) = b.call("GET", "/v1/apps?tenant=tenant-a", None).await;
    assert_error(status, &response, 403, "forbidden");
    // Hostnames are global: B cannot claim A's, exact or wildcard.
    for host in ["shop.test", "*.shop.test"] {
        let (status, response) = b.send("POST", "/v1/apps", &new_app("fake", &[host])).await;
        assert_error(status, &response, 409, "host-taken");
    }
    // Nor slip an exact name under A's wildcard, or a wildcard over it.
    for host in ["pay.shop.test", "*.eu.shop.test"] {
        let (status, response) = b.send("POST", "/v1/apps", &new_app("fake", &[host])).await;
        assert_error(status, &response, 409, "host-taken");
    }
    // Nor claim a whole top-level domain.
    let (status, response) = b
        .send("POST", "/v1/apps", &new_app("fake", &["*.test"]))
        .await;
    assert_error(status, &response, 400, "invalid-hosts");
    // Nor take everything.
    let (status, response) = b.send("POST", "/v1/apps", &new_app("all", &["*"])).await;
    assert_error(status, &response, 400, "invalid-hosts");
    // A's app is intact.
    let app: App = a.get("/v1/apps/shop").await;
    assert_eq!(app.active_version, Some(1));
    assert!(app.config.is_empty());

    // Roles: tenants cannot manage tenants, set limits, sync or fetch
    // artifacts; nodes cannot manage apps.
    let evil = NewTenant {
        id: "evil".parse().unwrap(),
    };
    let (status, response) = a.send("POST", "/v1/tenants", &evil).await;
    assert_error(status, &response, 403, "forbidden");
    let generous = AppLimits {
        cpu_time: Duration::from_secs(10),
        ..AppLimits::default()
    };
    let (status, response) = a.send("PUT", "/v1/apps/shop/limits", &generous).await;
    assert_error(status, &response, 403, "forbidden");
    let (status, response) = a.call("GET", "/v1/sync?since=0&wait=0s", None).await;
    assert_error(status, &response, 403, "forbidden");
    let versions: VersionList = a.get("/v1/apps/shop/versions").await;
    let digest = versions.versions[0].artifact.sha256.clone();
    let (status, response) = a
        .call("GET", &format!("/v1/artifacts/{digest}"), None)
        .await;
    assert_error(status, &response, 403, "forbidden");
    let node = crate::common::Client::new(&cp, cp.node_token("node-x"));
    let (status, response) = node.call("GET", "/v1/apps?tenant=tenant-a", None).await;
    assert_error(status, &response, 403, "forbidden");

    // An admin acts on a named tenant, and may set limits.
    let admin = cp.admin();
    let (status, response) = admin.call("GET", "/v1/apps", None).await;
    assert_error(status, &response, 400, "tenant-required");
    // Fields left out take their defaults.
    let (status, body) = admin
        .call(
            "PUT",
            "/v1/apps/shop/limits?tenant=tenant-a",
            Some(json!({ "cpu_time": "20ms", "max_concurrent_requests": 5 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let none_at_once = AppLimits {
        max_concurrent_requests: 0,
        ..AppLimits::default()
    };
    let (status, response) = admin
        .send("PUT", "/v1/apps/shop/limits?tenant=tenant-a", &none_at_once)
        .await;
    let error = assert_error(status, &response, 400, "invalid-limits");
    assert!(
        error.message.contains("max_concurrent_requests"),
        "{error:?}"
    );
    let limits: AppLimits = a.get("/v1/apps/shop/limits").await;
    assert_eq!(limits.max_concurrent_requests, 5);
    assert_eq!(limits.cpu_time, Duration::from_millis(20));
    assert_eq!(limits.wall_time, AppLimits::default().wall_time);
    // The node can fetch the artifact.
    let (status, _) = node
        .call("GET", &format!("/v1/artifacts/{digest}"), None)
        .await;
    assert_eq!(status, 200);
}
