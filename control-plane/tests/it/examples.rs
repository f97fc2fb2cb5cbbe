//! `examples/json-api` through the control plane: its items live in a
//! key-value store the tenant created and linked, and every answer of the
//! CRUD API is checked, the refusals too.

use edge_common::kv::NewKvStore;
use serde_json::{Value, json};

use crate::common::{TestCp, TestNode, eventually};

async fn call(
    node: &TestNode,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Option<String>, Value) {
    let host = "shop.test";
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(host, node.http_addr)
        .build()
        .unwrap();
    let method: reqwest::Method = method.parse().unwrap();
    let response = client
        .request(
            method,
            format!("http://{host}:{}{path}", node.http_addr.port()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, location, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_example_keeps_its_items_in_the_key_value_store() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("shop", &["shop.test"]).await;
    let (status, body) = acme
        .send(
            "POST",
            "/v1/kv",
            &NewKvStore {
                name: "items".into(),
            },
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = acme.call("PUT", "/v1/apps/shop/kv/items", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    acme.deploy("shop", edge_fixtures::JSON_API).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    eventually("the app is live with its store", || async {
        call(&node, "GET", "/items", "").await.0 == 200
    })
    .await;

    assert_eq!(
        call(&node, "GET", "/items", "").await.2,
        json!({"items": []})
    );
    let (status, location, tea) = call(
        &node,
        "POST",
        "/items",
        r#"{"name":"tea","price_cents":350}"#,
    )
    .await;
    assert_eq!((status, location.as_deref()), (201, Some("/items/1")));
    assert_eq!(tea, json!({"id": 1, "name": "tea", "price_cents": 350}));
    let (status, _, _) = call(
        &node,
        "POST",
        "/items",
        r#"{"name":"cake","price_cents":420}"#,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(call(&node, "GET", "/items/1", "").await.2, tea);
    let (status, _, updated) = call(
        &node,
        "PUT",
        "/items/2",
        r#"{"name":"cheesecake","price_cents":450}"#,
    )
    .await;
    assert_eq!(
        (status, updated),
        (
            200,
            json!({"id": 2, "name": "cheesecake", "price_cents": 450})
        )
    );
    assert_eq!(
        call(&node, "GET", "/items", "").await.2,
        json!({"items": [tea, {"id": 2, "name": "cheesecake", "price_cents": 450}]})
    );
    assert_eq!(call(&node, "DELETE", "/items/1", "").await.0, 204);
    // The control plane holds the truth: the item is gone there too.
    let (status, body) = acme
        .call(
            "GET",
            "/v1/kv/items/entry?key=item:00000000000000000001",
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // Refusals, each with its rule.
    let too_big = format!(r#"{{"name":"{}","price_cents":1}}"#, "x".repeat(20 << 10));
    for (method, path, body, status, error) in [
        ("GET", "/items/1", "", 404, "no such item"),
        ("DELETE", "/items/1", "", 404, "no such item"),
        (
            "PUT",
            "/items/9",
            r#"{"name":"x","price_cents":1}"#,
            404,
            "no such item",
        ),
        ("GET", "/items/abc", "", 404, "no such item"),
        (
            "POST",
            "/items",
            r#"{"name":"","price_cents":1}"#,
            400,
            "name must be 1 to 100 characters",
        ),
        ("POST", "/items", &too_big, 413, "body over 16384 bytes"),
    ] {
        let (got, _, answer) = call(&node, method, path, body).await;
        assert_eq!(
            (got, &answer["error"]),
            (status, &json!(error)),
            "{method} {path}"
        );
    }
    for body in [
        r#"{"name":"x"}"#,
        r#"{"name":"x","price_cents":-1}"#,
        "{",
        r#"{"name":"x","price_cents":1,"extra":true}"#,
    ] {
        let (got, _, answer) = call(&node, "POST", "/items", body).await;
        assert_eq!(got, 400, "{body}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON body"),
            "{answer}"
        );
    }
    let (status, _, _) = call(&node, "PATCH", "/items/2", "").await;
    assert_eq!(status, 405);
}
