//! Compression at the edge through the control plane (issue 17), on
//! SQLite and on PostgreSQL: `edgectl compression set` reaches a synced
//! node and turns its compression of an origin app off and on (and its
//! threshold), `get` shows the settings, and bad input is refused with its
//! code. Real control planes, a real node and a real origin on 127.0.0.1.

use std::io::Read;
use std::net::SocketAddr;

use edge_common::api::CompressionSet;
use edge_cp::api::ApiSettings;
use edge_cp::auth::Role;
use edge_cp::server::ServerHandle;
use edge_cp::store::location::MetaLocation;
use edge_cp::{ControlPlane, CpConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::common::{
    Backend, Client, TestNode, answer, assert_error, edgectl, eventually, init_logging,
    new_origin_app, on_both_backends,
};

/// The text every origin answer carries: 4 KiB, well above the default
/// threshold.
fn text() -> String {
    "edge compression through the control plane. ".repeat(100)
}

/// An in-process control plane on either backend.
struct Cp {
    dir: tempfile::TempDir,
    handle: ServerHandle,
}

impl Cp {
    async fn start(backend: Backend) -> Self {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        if let Backend::Postgres = backend {
            config.metadata = MetaLocation::Postgres(crate::pg::new_database().await);
        }
        config.api = ApiSettings::default();
        let handle = ControlPlane::start(config).await.unwrap();
        Self { dir, handle }
    }

    fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    fn token(&self, role: Role, sub: &str, tenant: Option<&str>) -> String {
        crate::common::issue_token(self.dir.path(), role, sub, tenant)
    }

    async fn new_tenant(&self, tenant: &str) -> Client {
        let admin = Client::at(&self.url(), self.token(Role::Admin, "admin", None));
        crate::common::create_tenant(&admin, tenant).await;
        Client::at(&self.url(), self.token(Role::Tenant, tenant, Some(tenant)))
    }
}

/// An origin answering every path with [`text`] as `text/plain`.
async fn start_origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    let mut response = hyper::Response::new(Full::new(bytes::Bytes::from(text())));
                    let headers = response.headers_mut();
                    headers.insert("content-type", "text/plain".parse().unwrap());
                    headers.insert("cache-control", "max-age=600".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `GET /page` on `site.test` with `Accept-Encoding: br`: status, the
/// `Content-Encoding`, and the body decoded.
async fn get_br(node: &TestNode) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("site.test", node.http_addr)
        .build()
        .unwrap();
    let response = client
        .get(format!("http://site.test:{}/page", node.http_addr.port()))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let coding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.bytes().await.unwrap();
    let mut body = Vec::new();
    match coding.as_deref() {
        Some("br") => {
            brotli::Decompressor::new(&bytes[..], 4096)
                .read_to_end(&mut body)
                .unwrap();
        }
        None => body = bytes.to_vec(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    (status, coding, String::from_utf8(body).unwrap())
}

/// Waits until the node answers with `coding`.
async fn until_coding(node: &TestNode, coding: Option<&str>, what: &str) {
    eventually(what, || async {
        let (status, got, body) = get_br(node).await;
        status == 200 && got.as_deref() == coding && body == text()
    })
    .await;
}

async fn edgectl_switches_a_nodes_compression(backend: Backend) {
    let cp = Cp::start(backend).await;
    let shop = cp.new_tenant("shop").await;
    let origin = start_origin().await;
    let site = new_origin_app("site", &["site.test"], &format!("http://{origin}"));
    let (status, body) = shop.send("POST", "/v1/apps", &site).await;
    assert_eq!(status, 201, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.token(Role::Node, "node-1", None), dir.path()).await;
    // The nodes' default: on.
    until_coding(&node, Some("br"), "compressed by default").await;

    let token = cp.token(Role::Tenant, "shop-user", Some("shop"));
    let run = |args: &'static [&'static str]| {
        let (url, token) = (cp.url(), token.clone());
        async move { edgectl(&url, &token, args).await }
    };
    let (ok, out, err) = run(&["compression", "get", "site"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("compression default, min_bytes default"),
        "{out}"
    );

    let (ok, out, err) = run(&["compression", "set", "site", "--off"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("compression off"), "{out}");
    until_coding(&node, None, "turned off").await;

    let (ok, out, err) = run(&[
        "compression",
        "set",
        "site",
        "--on",
        "--min-bytes",
        "100000",
    ])
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("compression on, min_bytes 100000"), "{out}");
    // On, but 4 KiB is under its threshold: still identity, whatever the
    // node's default threshold says.
    let set: CompressionSet = shop.get("/v1/apps/site/compression").await;
    assert_eq!(
        (set.compression.enabled, set.compression.min_bytes),
        (Some(true), Some(100_000))
    );
    eventually("the threshold reaches the node", || async {
        let snapshot_revision = node.metric("edge_sync_revision").await as u64;
        snapshot_revision >= set.revision
    })
    .await;
    assert_eq!(get_br(&node).await.1, None, "under the app's threshold");

    let (ok, out, err) = run(&["compression", "set", "site", "--min-bytes", "10"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("compression on, min_bytes 10"),
        "the switch is kept: {out}"
    );
    until_coding(&node, Some("br"), "over the app's threshold").await;

    let (ok, out, err) = run(&["compression", "set", "site", "--default"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("compression default, min_bytes default"),
        "{out}"
    );

    // Bad input: a deliberate 400 naming the rule, nothing changed.
    let path = "/v1/apps/site/compression";
    let (status, body) = shop
        .call("PUT", path, Some(json!({"min_bytes": 2_000_000_000u64})))
        .await;
    let error = assert_error(status, &body, 400, "invalid-compression");
    assert!(error.message.contains("min_bytes"), "{}", error.message);
    for bad in [
        json!({"enabled": "yes"}),
        json!({"min_bytes": -1}),
        json!({"level": 9}),
    ] {
        let (status, body) = shop.call("PUT", path, Some(bad.clone())).await;
        assert_error(status, &body, 400, "invalid-json");
    }
    let (ok, _, err) = run(&["compression", "set", "site", "--on", "--off"]).await;
    assert!(!ok, "conflicting flags are refused: {err}");
    let set: CompressionSet = answer(shop.call("GET", path, None).await, 200);
    assert_eq!(
        set.compression,
        Default::default(),
        "refusals change nothing"
    );

    // Another tenant's app, and an app that does not exist.
    let other = cp.new_tenant("other").await;
    let (status, body) = other
        .call("PUT", path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = shop
        .call("PUT", "/v1/apps/nope/compression", Some(json!({})))
        .await;
    assert_eq!(status, 404, "{body}");
}

on_both_backends!(workers = 2; edgectl_switches_a_nodes_compression);
