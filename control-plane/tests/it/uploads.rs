//! Every invalid upload is refused with its documented error, and leaves no
//! version behind.

use edge_cp::api::ApiSettings;
use edge_fixtures::HELLO;

use crate::common::{TestCp, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_uploads_are_refused_with_the_rule_named() {
    let cp = TestCp::start_with(ApiSettings {
        max_upload_bytes: 512 << 10,
        ..ApiSettings::default()
    })
    .await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;

    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("text", b"hello, not wasm".to_vec(), 400, "not-wasm", "\\0asm"),
        ("core module", wat::parse_str("(module)").unwrap(), 400, "not-a-component", "core WebAssembly module"),
        (
            "truncated component",
            {
                let mut w = wat::parse_str("(component (core module))").unwrap();
                w.truncate(w.len() - 1);
                w
            },
            400,
            "invalid-component",
            "not a valid component",
        ),
        ("wrong world", wat::parse_str("(component)").unwrap(), 400, "wrong-world", "wasi:http/incoming-handler"),
        (
            "newer WASI",
            wat::parse_str(r#"(component (import "wasi:http/types@0.2.99" (instance)))"#).unwrap(),
            400,
            "unsupported-imports",
            "wasi:http/types@0.2.99",
        ),
        (
            "filesystem",
            wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)) (import "wasi:sockets/tcp@0.2.0" (instance)))"#).unwrap(),
            400,
            "unsupported-imports",
            "wasi:filesystem/types@0.2.0, wasi:sockets/tcp@0.2.0",
        ),
        ("too big", vec![0u8; 600 << 10], 413, "upload-too-large", "524288"),
    ];
    for (what, wasm, status, code, mention) in cases {
        let (got, body) = acme.upload("web", wasm).await;
        assert_error(got, &body, status, code);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(mention), "{what}: {message}");
    }
    // A streamed body without a length is cut at the limit too.
    let stream = futures_stream(700 << 10);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/web/versions", cp.url()))
        .bearer_auth(&acme.token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let (_, versions) = acme.call("GET", "/v1/apps/web/versions", None).await;
    assert_eq!(
        versions["versions"],
        serde_json::json!([]),
        "no refused upload was recorded"
    );

    // The same real component twice: compiled once, two versions.
    let (status, first) = acme.upload("web", std::fs::read(HELLO).unwrap()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["compiled"], true);
    let (_, second) = acme.upload("web", std::fs::read(HELLO).unwrap()).await;
    assert_eq!(second["compiled"], false);
    assert_eq!(second["version"], 2);
    assert_eq!(first["artifact"], second["artifact"]);
}

fn futures_stream(
    total: usize,
) -> impl futures_core_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_core_stream::iter((0..total / 4096).map(|_| Ok(vec![0u8; 4096])))
}

mod futures_core_stream {
    pub use futures::stream::{Stream, iter};
}
