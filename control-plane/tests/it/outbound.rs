//! Outbound through the API: an app's allowlist set with `edgectl
//! outbound`, synced to a node, reaching a loopback origin the node's
//! operator allows; the tenant's caps, set by an admin, holding.

use edge_common::api::{OutboundPolicy, TenantLimits};
use edge_fixtures::{ORIGIN_PROXY, SUBREQUEST_FLOOD};
use serde_json::json;

use crate::common::{
    OUTBOUND_ORIGIN_HOST, OUTBOUND_ORIGIN_TENANT, TestCp, TestNode, assert_error, edgectl,
    eventually, sample,
};

/// An origin on 127.0.0.1 answering `origin says hi` to every request.
async fn start_origin() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"origin says hi")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

async fn denied(node: &TestNode) -> f64 {
    let page = node.metrics_text().await;
    sample(
        &page,
        "edge_outbound_requests_total{app=\"proxy\",result=\"denied-destination\",tenant=\"acme\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_set_through_the_api_opens_the_way_within_the_tenants_caps() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let token = cp.token(edge_cp::auth::Role::Tenant, "dev", Some("acme"));
    let admin = cp.token(edge_cp::auth::Role::Admin, "ops", None);
    let api = cp.url();
    let (port, _origin) = start_origin().await;
    let destination = format!("http://{OUTBOUND_ORIGIN_HOST}:{port}");

    acme.create_app("proxy", &["proxy.test"]).await;
    let (ok, _, err) = edgectl(
        &api,
        &token,
        &["config", "set", "proxy", &format!("ORIGIN={destination}")],
    )
    .await;
    assert!(ok, "{err}");
    acme.deploy("proxy", ORIGIN_PROXY).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&api, cp.node_token("n1"), dir.path()).await;

    // No policy: the component's fetch is denied.
    eventually("the proxy is served and denied", || async {
        let (status, _) = node.get("proxy.test", "/").await;
        status == 502 && denied(&node).await >= 1.0
    })
    .await;

    // Over the default cap of subrequests: refused, naming the cap.
    let (ok, _, err) = edgectl(
        &api,
        &token,
        &[
            "outbound",
            "set",
            "proxy",
            "--allow",
            &destination,
            "--max-subrequests",
            "33",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("max_subrequests") && err.contains("outbound-limit"),
        "{err}"
    );
    // A bad destination: its own code, the entry named.
    let (ok, _, err) = edgectl(
        &api,
        &token,
        &["outbound", "set", "proxy", "--allow", "ftp://x.test"],
    )
    .await;
    assert!(
        !ok && err.contains("outbound-destination-invalid") && err.contains("ftp://x.test"),
        "{err}"
    );

    let (ok, out, err) = edgectl(
        &api,
        &token,
        &[
            "outbound",
            "set",
            "proxy",
            "--allow",
            &destination,
            "--max-subrequests",
            "4",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&destination), "{out}");
    node.wait_for_body("proxy.test", "origin says hi").await;

    let policy: OutboundPolicy = acme.get("/v1/apps/proxy/outbound").await;
    assert_eq!(policy.max_subrequests, Some(4));
    assert_eq!(policy.allow.len(), 1);

    // The tenant cap: an operator lowers max_subrequests below what the app
    // uses — refused, naming the app; a tenant may not change it at all.
    let (ok, _, err) = edgectl(
        &api,
        &admin,
        &["tenants", "limits", "acme", "--max-subrequests", "2"],
    )
    .await;
    assert!(
        !ok && err.contains("limit-in-use") && err.contains("proxy"),
        "{err}"
    );
    let (status, body) = acme
        .call(
            "PUT",
            "/v1/tenants/acme/limits",
            Some(json!({"max_outbound_destinations": 50, "max_subrequests": null})),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    // One destination at most: a second one is over the cap until raised.
    let (ok, _, err) = edgectl(
        &api,
        &admin,
        &[
            "tenants",
            "limits",
            "acme",
            "--max-outbound-destinations",
            "1",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let two = [
        "outbound",
        "set",
        "proxy",
        "--allow",
        &destination,
        "--allow",
        "https://*.example.org",
    ];
    let (ok, _, err) = edgectl(&api, &token, &two).await;
    assert!(
        !ok && err.contains("max_outbound_destinations") && err.contains("outbound-limit"),
        "{err}"
    );
    let (ok, _, err) = edgectl(
        &api,
        &admin,
        &[
            "tenants",
            "limits",
            "acme",
            "--max-outbound-destinations",
            "2",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = edgectl(&api, &token, &two).await;
    assert!(ok, "{err}");
    let limits: TenantLimits = acme.get("/v1/tenants/acme/limits").await;
    assert_eq!(
        (limits.max_outbound_destinations, limits.max_subrequests),
        (2, 32)
    );

    // Cleared: denied again on the node.
    let before = denied(&node).await;
    let (ok, _, err) = edgectl(&api, &token, &["outbound", "clear", "proxy"]).await;
    assert!(ok, "{err}");
    eventually("the cleared policy reaches the node", || async {
        let (status, _) = node.get("proxy.test", "/").await;
        status == 502 && denied(&node).await > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_apps_and_other_tenants_get_no_outbound_policy() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    let (status, _) = acme
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "web", "hosts": ["web.test"], "origin": "http://127.0.0.1:9"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = acme
        .call(
            "PUT",
            "/v1/apps/web/outbound",
            Some(json!({"allow": ["https://api.example.com"]})),
        )
        .await;
    assert_error(status, &body, 409, "origin-app");
    acme.create_app("app", &["app.test"]).await;
    let (status, body) = other
        .call(
            "PUT",
            "/v1/apps/app/outbound",
            Some(json!({"allow": ["https://api.example.com"]})),
        )
        .await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = other.call("GET", "/v1/tenants/acme/limits", None).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = acme
        .call(
            "PUT",
            "/v1/apps/app/outbound",
            Some(json!({"allow": ["https://a.test"], "extra": 1})),
        )
        .await;
    assert_error(status, &body, 400, "invalid-json");
}

/// `edge_outbound_requests_total` of `tenant`'s `app` with `result`.
async fn outbound_count(node: &TestNode, tenant: &str, app: &str, result: &str) -> f64 {
    let page = node.metrics_text().await;
    sample(
        &page,
        &format!(
            "edge_outbound_requests_total{{app=\"{app}\",result=\"{result}\",tenant=\"{tenant}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_set_cap_and_the_operators_addresses_hold_on_the_node() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant(OUTBOUND_ORIGIN_TENANT).await;
    let rival = cp.new_tenant("rival").await;
    let acme_token = cp.token(
        edge_cp::auth::Role::Tenant,
        "dev",
        Some(OUTBOUND_ORIGIN_TENANT),
    );
    let rival_token = cp.token(edge_cp::auth::Role::Tenant, "dev", Some("rival"));
    let api = cp.url();
    let (port, _origin) = start_origin().await;
    let named = format!("http://{OUTBOUND_ORIGIN_HOST}:{port}");
    let loopback = format!("http://127.0.0.1:{port}");
    let unmapped = format!("http://localhost:{port}");

    acme.create_app("flood", &["flood.test"]).await;
    acme.deploy("flood", SUBREQUEST_FLOOD).await;
    rival.create_app("probe", &["probe.test"]).await;
    rival.deploy("probe", SUBREQUEST_FLOOD).await;
    let (ok, _, err) = edgectl(
        &api,
        &acme_token,
        &[
            "outbound",
            "set",
            "flood",
            "--allow",
            &named,
            "--max-subrequests",
            "4",
        ],
    )
    .await;
    assert!(ok, "{err}");
    // The API accepts what the destination syntax allows; the node, not
    // the API, knows which addresses its operator opened, and to whom.
    let (ok, _, err) = edgectl(
        &api,
        &rival_token,
        &[
            "outbound", "set", "probe", "--allow", &named, "--allow", &loopback, "--allow",
            &unmapped,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&api, cp.node_token("n1"), dir.path()).await;

    // max_subrequests = 4, set through the API: the fifth is refused.
    let flood = format!("/?n=5&url={named}/");
    eventually("the capped app reaches the origin", || async {
        let (status, body) = node.get("flood.test", &flood).await;
        status == 200 && body.starts_with("ok 4, failed 1")
    })
    .await;
    // Per request: each gets four, and exactly its fifth is refused.
    let limited = || outbound_count(&node, OUTBOUND_ORIGIN_TENANT, "flood", "subrequest-limit");
    let before = limited().await;
    assert!(before >= 1.0);
    let (status, body) = node.get("flood.test", &flood).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("failed"), "{body}");
    assert_eq!(limited().await, before + 1.0, "{body}");

    // Another tenant, allowed by its own list: the operator's name is
    // scoped to acme, a loopback literal and a private name the operator
    // never mapped are internal. All refused before any connection.
    for url in [&named, &loopback, &unmapped] {
        let path = format!("/?n=1&url={url}/");
        eventually(&format!("{url} is refused to rival"), || async {
            let (status, body) = node.get("probe.test", &path).await;
            status == 200 && body.starts_with("ok 0, failed 1")
        })
        .await;
        let (_, body) = node.get("probe.test", &path).await;
        assert!(body.contains("DestinationIpProhibited"), "{url}: {body}");
    }
    assert!(outbound_count(&node, "rival", "probe", "denied-address").await >= 3.0);
    assert_eq!(outbound_count(&node, "rival", "probe", "ok").await, 0.0);
}
