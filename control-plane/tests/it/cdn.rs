//! The CDN path end to end: a tenant creates an origin route through the
//! API, two in-process nodes serve it from their caches, and purges made
//! with `edgectl` reach both nodes' caches through the sync stream; an
//! origin app's `forward_override_headers` set with `edgectl` decides what
//! the nodes send its origin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use edge_common::api::App;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common::{TestCp, TestNode, edgectl, eventually, new_origin_app};

/// An origin answering every path with a cacheable body that names the
/// path and how many times the origin has answered it; `/tagged` carries a
/// surrogate key. It keeps the request headers it last got for each path.
struct Origin {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, u32>>>,
    heads: Arc<Mutex<HashMap<String, hyper::HeaderMap>>>,
}

impl Origin {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let heads: Arc<Mutex<HashMap<String, hyper::HeaderMap>>> = Arc::default();
        let (shared, shared_heads) = (counts.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counts, heads) = (shared.clone(), shared_heads.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        heads
                            .lock()
                            .unwrap()
                            .insert(path.clone(), req.headers().clone());
                        let n = {
                            let mut counts = counts.lock().unwrap();
                            let n = counts.entry(path.clone()).or_default();
                            *n += 1;
                            *n
                        };
                        let mut response = hyper::Response::new(Full::new(bytes::Bytes::from(
                            format!("{path}#{n}"),
                        )));
                        let headers = response.headers_mut();
                        headers.insert("cache-control", "public, max-age=3600".parse().unwrap());
                        if path == "/tagged" {
                            headers.insert("surrogate-key", "tag-a other".parse().unwrap());
                        }
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            counts,
            heads,
        }
    }

    fn count(&self, path: &str) -> u32 {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The value of header `name` in the last request for `path`.
    fn header(&self, path: &str, name: &str) -> Option<String> {
        let heads = self.heads.lock().unwrap();
        let value = heads.get(path)?.get(name)?;
        Some(value.to_str().unwrap().to_string())
    }
}

/// `path` on `node` is served from its cache, body `body`.
async fn assert_hit(node: &TestNode, path: &str, body: &str) {
    let (status, cache, text) = node.get_cached("site.test", path).await;
    assert_eq!((status, cache.as_str(), text.as_str()), (200, "HIT", body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_routes_are_cached_on_every_node_and_purges_reach_them_all() {
    let cp = TestCp::start().await;
    let tenant = cp.new_tenant("shop").await;
    let origin = Origin::start().await;
    let site = new_origin_app("site", &["site.test"], &format!("http://{}", origin.addr));
    let (status, body) = tenant.send("POST", "/v1/apps", &site).await;
    assert_eq!(status, 201, "{body}");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(
            TestNode::start(&cp.url(), cp.node_token(&format!("node-{i}")), dir.path()).await,
        );
    }

    // Each node fetches once, then answers from its cache.
    for node in &nodes {
        eventually("the origin route is served", || async {
            node.get_cached("site.test", "/page").await.0 == 200
        })
        .await;
    }
    let mut bodies = Vec::new();
    for node in &nodes {
        let (_, cache, text) = node.get_cached("site.test", "/page").await;
        assert_eq!(cache, "HIT");
        bodies.push(text);
    }
    assert_eq!(origin.count("/page"), 2, "one origin request per node");
    for (node, body) in nodes.iter().zip(&bodies) {
        assert_hit(node, "/page", body).await;
        node.get_cached("site.test", "/tagged").await;
        node.get_cached("site.test", "/kept").await;
    }
    assert_eq!(origin.count("/tagged"), 2);

    let token = cp.token(edge_cp::auth::Role::Tenant, "shop-user", Some("shop"));
    // A hard purge of one URL, through edgectl, which waits for both nodes.
    let (ok, out, err) = edgectl(&cp.url(), &token, &["purge", "site", "--url", "/page"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("applied on 2/2 nodes"), "{out}");
    for (i, node) in nodes.iter().enumerate() {
        let (status, cache, text) = node.get_cached("site.test", "/page").await;
        assert_eq!((status, cache.as_str()), (200, "MISS"), "{text}");
        assert_hit(node, "/kept", &format!("/kept#{}", i + 1)).await;
    }
    assert_eq!(origin.count("/page"), 4, "each node fetched /page again");

    // By surrogate key, softly: marked stale, fetched again on next use.
    let (ok, out, err) = edgectl(
        &cp.url(),
        &token,
        &["purge", "site", "--key", "tag-a", "--soft"],
    )
    .await;
    assert!(ok, "{out}{err}");
    for node in &nodes {
        let (_, cache, _) = node.get_cached("site.test", "/tagged").await;
        assert_eq!(
            cache, "MISS",
            "soft-purged and the origin sends no validator"
        );
    }
    assert_eq!(origin.count("/tagged"), 4);
    assert_eq!(origin.count("/kept"), 2, "untagged entries are untouched");

    // The whole app.
    let (ok, out, err) = edgectl(&cp.url(), &token, &["purge", "site", "--all"]).await;
    assert!(ok, "{out}{err}");
    for node in &nodes {
        let (_, cache, _) = node.get_cached("site.test", "/kept").await;
        assert_eq!(cache, "MISS");
    }
    assert_eq!(origin.count("/kept"), 4);
    for node in &nodes {
        let purges = node
            .metric(r#"edge_cache_purges_total{app="site",kind="url",tenant="shop"}"#)
            .await;
        assert_eq!(purges, 1.0);
    }

    // A node restarted from disk starts with an empty cache and does not
    // replay old purges; it keeps applying new ones.
    nodes[1].restart().await;
    eventually("the restarted node serves the route", || async {
        nodes[1].get_cached("site.test", "/kept").await.0 == 200
    })
    .await;
    let (_, cache, _) = nodes[1].get_cached("site.test", "/kept").await;
    assert_eq!(cache, "HIT");
    let (ok, out, err) = edgectl(
        &cp.url(),
        &token,
        &["purge", "site", "--url", "http://site.test/kept"],
    )
    .await;
    assert!(ok, "{out}{err}");
    for node in &nodes {
        let (_, cache, _) = node.get_cached("site.test", "/kept").await;
        assert_eq!(cache, "MISS", "an absolute URL purges that host's entry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_origins_reach_only_addresses_the_operator_allows() {
    let cp = TestCp::start().await;
    let tenant = cp.new_tenant("shop").await;
    // The node allows 127.0.0.1 as an address literal only: other loopback
    // addresses, other spellings of it, and names that resolve to it are
    // all refused.
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let sneaky = [
        format!("http://127.0.0.2:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://127.1:{port}/"),
    ];
    for (i, url) in sneaky.iter().enumerate() {
        let app = new_origin_app(&format!("sneaky{i}"), &[&format!("sneaky{i}.test")], url);
        let (status, body) = tenant.send("POST", "/v1/apps", &app).await;
        assert!(status == 201 || status == 400, "{url}: {status} {body}");
    }
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node"), dir.path()).await;
    for (i, url) in sneaky.iter().enumerate() {
        let host = format!("sneaky{i}.test");
        let client = reqwest::Client::builder()
            .no_proxy()
            .resolve(&host, node.http_addr)
            .build()
            .unwrap();
        // 404 until the route is applied.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (status, code) = loop {
            let response = client
                .get(format!("http://{host}:{}/", node.http_addr.port()))
                .send()
                .await
                .unwrap();
            let code = response
                .headers()
                .get("x-edge-error")
                .map(|v| v.to_str().unwrap().to_string());
            let status = response.status().as_u16();
            if status != 404 || std::time::Instant::now() > deadline {
                break (status, code);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(
            (status, code.as_deref()),
            (502, Some("origin-prohibited")),
            "{url}"
        );
    }
    assert_eq!(origin.count("/"), 0, "the origin was never reached");
}

/// Headers a client could use to change what an origin answers without
/// that being part of the cache key.
const OVERRIDES: [(&str, &str); 2] = [("x-http-method-override", "DELETE"), ("x_custom", "1")];

/// GETs `path` (a new one each time: the origin's answers are cached) on
/// `host` through `node` with [`OVERRIDES`]: the status, and whether the
/// origin got every one of them (`Some(false)`: none of them).
async fn overrides_reached_origin(
    node: &TestNode,
    origin: &Origin,
    host: &str,
    path: &str,
) -> (u16, Option<bool>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(host, node.http_addr)
        .build()
        .unwrap();
    let mut request = client.get(format!("http://{host}:{}{path}", node.http_addr.port()));
    for (name, value) in OVERRIDES {
        request = request.header(name, value);
    }
    let status = request.send().await.unwrap().status().as_u16();
    let seen: Vec<_> = OVERRIDES
        .iter()
        .map(|(name, value)| origin.header(path, name).as_deref() == Some(*value))
        .collect();
    let all = if seen.iter().all(|s| *s) {
        Some(true)
    } else if seen.iter().all(|s| !*s) {
        Some(false)
    } else {
        None
    };
    (status, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_headers_reach_the_origin_of_apps_that_forward_them_only() {
    let cp = TestCp::start().await;
    cp.new_tenant("shop").await;
    let origin = Origin::start().await;
    let url = format!("http://{}", origin.addr);
    let token = cp.token(edge_cp::auth::Role::Tenant, "shop-user", Some("shop"));
    let edgectl = |args: Vec<&str>| {
        let (api, token) = (cp.url(), token.clone());
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = edgectl(&api, &token, &args).await;
            assert!(ok, "edgectl {args:?}: {out}{err}");
            out
        }
    };

    let out = edgectl(vec![
        "apps",
        "create",
        "open",
        "--host",
        "open.test",
        "--origin",
        &url,
        "--forward-override-headers",
    ])
    .await;
    assert!(out.contains("(forwarding override headers)"), "{out}");
    let out = edgectl(vec![
        "apps",
        "create",
        "closed",
        "--host",
        "closed.test",
        "--origin",
        &url,
    ])
    .await;
    assert!(!out.contains("forwarding"), "{out}");
    let (ok, _, err) = crate::common::edgectl(
        &cp.url(),
        &token,
        &[
            "apps",
            "create",
            "comp",
            "--host",
            "comp.test",
            "--forward-override-headers",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("--origin"),
        "an origin-app option: {err}"
    );
    let out = edgectl(vec!["apps", "list"]).await;
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
            .to_string()
    };
    assert!(
        line("open").ends_with("(forwarding override headers)"),
        "{out}"
    );
    assert!(line("closed").ends_with(&url), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node"), dir.path()).await;
    for host in ["open.test", "closed.test"] {
        eventually("the origin routes are served", || async {
            node.get_cached(host, "/ready").await.0 == 200
        })
        .await;
    }
    assert_eq!(
        overrides_reached_origin(&node, &origin, "open.test", "/a").await,
        (200, Some(true)),
        "the app that asked for them gets them"
    );
    assert_eq!(
        overrides_reached_origin(&node, &origin, "closed.test", "/b").await,
        (200, Some(false)),
        "dropped by default"
    );

    // Turned around with `apps set-origin`; the nodes follow.
    let out = edgectl(vec![
        "apps",
        "set-origin",
        "open",
        &url,
        "--no-forward-override-headers",
    ])
    .await;
    assert!(!out.contains("forwarding"), "{out}");
    let out = edgectl(vec![
        "apps",
        "set-origin",
        "closed",
        &url,
        "--forward-override-headers",
    ])
    .await;
    assert!(out.contains("(forwarding override headers)"), "{out}");
    let mut n = 0;
    eventually("the nodes apply the new options", || {
        n += 1;
        let (node, origin) = (&node, &origin);
        async move {
            let open = overrides_reached_origin(node, origin, "open.test", &format!("/c{n}")).await;
            let closed =
                overrides_reached_origin(node, origin, "closed.test", &format!("/d{n}")).await;
            (open, closed) == ((200, Some(false)), (200, Some(true)))
        }
    })
    .await;

    // A change of origin that does not name the option keeps it.
    let out = edgectl(vec!["apps", "set-origin", "closed", &format!("{url}/")]).await;
    assert!(out.contains("(forwarding override headers)"), "{out}");
    let closed: App = cp.tenant("shop").get("/v1/apps/closed").await;
    assert_eq!(closed.forward_override_headers, Some(true), "{closed:?}");
}
