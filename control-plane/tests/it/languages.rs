//! Components beyond Rust for WASI 0.2, each uploaded through the control
//! plane (validated and precompiled there), deployed and answering through
//! a real node: Rust for WASI 0.3 (`examples/hello-p3`), JavaScript
//! (ComponentizeJS: `examples/js-hello`, `examples/js-api`) and Python
//! (componentize-py: `examples/py-hello`, `examples/py-api`). The two JSON
//! APIs answer the same requests with the same documents.

use edge_fixtures::lang::{Guest, guest, skipped};
use serde_json::{Value, json};

use crate::common::{TestCp, TestNode, eventually};

/// A request to `host` on `node`'s plain HTTP listener: status and JSON.
async fn call(node: &TestNode, method: &str, host: &str, path: &str, body: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(host, node.http_addr)
        .build()
        .unwrap();
    let url = format!("http://{host}:{}{path}", node.http_addr.port());
    let method: reqwest::Method = method.parse().unwrap();
    let response = client
        .request(method, url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_in_every_language_deploy_and_answer() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;

    let hellos = [
        (
            "hello-p3",
            Guest::Built(edge_fixtures::HELLO_P3.into()),
            "Hello from the edge (WASI 0.3)!\n",
        ),
        (
            "js-hello",
            guest("js-hello"),
            "Hello from the edge (JavaScript)!\n",
        ),
        (
            "py-hello",
            guest("py-hello"),
            "Hello from the edge (Python)!\n",
        ),
    ];
    for (app, guest, greeting) in hellos {
        let path = match guest {
            Guest::Built(path) => path,
            Guest::Unavailable(reason) => {
                skipped(app, &reason);
                continue;
            }
        };
        let host = format!("{app}.test");
        acme.create_app(app, &[&host]).await;
        acme.deploy(app, path.to_str().unwrap()).await;
        node.wait_for_body(&host, greeting).await;
    }

    for lang in ["js", "py"] {
        let app = format!("{lang}-api");
        let path = match guest(&app) {
            Guest::Built(path) => path,
            Guest::Unavailable(reason) => {
                skipped(&app, &reason);
                continue;
            }
        };
        let host = format!("{app}.test");
        acme.create_app(&app, &[&host]).await;
        acme.deploy(&app, path.to_str().unwrap()).await;
        eventually(&format!("{app} is live"), || async {
            call(&node, "GET", &host, "/", "").await.0 == 200
        })
        .await;
        let document = json!({"a": [1, 2.5, {"b": null}], "ü": "ß"});
        let too_big = format!("\"{}\"", "x".repeat(70 << 10));
        let cases: [(&str, &str, &str, u16, Value); 7] = [
            (
                "GET",
                "/",
                "",
                200,
                json!({"service": app, "routes": ["GET /", "GET /hello/NAME", "POST /echo"]}),
            ),
            (
                "GET",
                "/hello/w%C3%B6rld",
                "",
                200,
                json!({"hello": "wörld"}),
            ),
            (
                "POST",
                "/echo",
                &document.to_string(),
                200,
                json!({"received": document}),
            ),
            (
                "POST",
                "/echo",
                "{not json",
                400,
                json!({"error": "invalid JSON body"}),
            ),
            (
                "GET",
                "/echo",
                "",
                405,
                json!({"error": "method not allowed"}),
            ),
            ("GET", "/nowhere", "", 404, json!({"error": "not found"})),
            (
                "POST",
                "/echo",
                &too_big,
                413,
                json!({"error": "body over 65536 bytes"}),
            ),
        ];
        for (method, target, body, status, expected) in cases {
            let answer = call(&node, method, &host, target, body).await;
            assert_eq!(answer, (status, expected), "{app}: {method} {target}");
        }
    }
}
