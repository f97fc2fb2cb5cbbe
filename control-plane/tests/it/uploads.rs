//! Every invalid upload is refused with its documented error, and leaves no
//! version behind; slow uploads are cut, and one tenant cannot take every
//! upload slot.

use std::time::Duration;

use edge_common::api::{Uploaded, VersionList};
use edge_cp::api::ApiSettings;
use edge_fixtures::HELLO;

use crate::common::{TestCp, answer, assert_error};

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
            "interfaces nodes lack",
            wat::parse_str(r#"(component (import "wasi:nn/graph@0.2.0-rc-2024-10-28" (instance)) (import "wasi:blobstore/container@0.2.0-draft" (instance)))"#).unwrap(),
            400,
            "unsupported-imports",
            "wasi:nn/graph@0.2.0-rc-2024-10-28, wasi:blobstore/container@0.2.0-draft",
        ),
        ("too big", vec![0u8; 600 << 10], 413, "upload-too-large", "524288"),
    ];
    for (what, wasm, status, code, mention) in cases {
        let (got, body) = acme.upload("web", wasm).await;
        let message = assert_error(got, &body, status, code).message;
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

    let versions: VersionList = acme.get("/v1/apps/web/versions").await;
    assert!(
        versions.versions.is_empty(),
        "no refused upload was recorded: {versions:?}"
    );

    // The same real component twice: compiled once, two versions.
    let first: Uploaded = answer(acme.upload("web", std::fs::read(HELLO).unwrap()).await, 201);
    assert!(first.compiled);
    let second: Uploaded = answer(acme.upload("web", std::fs::read(HELLO).unwrap()).await, 201);
    assert!(!second.compiled);
    assert_eq!(second.version, 2);
    assert_eq!(first.artifact, second.artifact);
}

fn futures_stream(
    total: usize,
) -> impl futures_core_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_core_stream::iter((0..total / 4096).map(|_| Ok(vec![0u8; 4096])))
}

mod futures_core_stream {
    pub use futures::stream::{Stream, iter};
}

/// What a control plane answered a raw upload.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: serde_json::Value,
}

/// An upload over a raw socket that declares a 100 000-byte body and then
/// sends a byte a second (or, `stalled`, nothing). It asks for `100
/// Continue`, which the server sends once it reads the body, that is once
/// the upload holds a slot: `holding` says so.
struct SlowUpload {
    holding: tokio::sync::oneshot::Receiver<()>,
    answer: tokio::task::JoinHandle<Answer>,
}

impl SlowUpload {
    fn start(cp: &TestCp, token: &str, app: &str, stalled: bool) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (addr, head) = (
            cp.addr,
            format!(
                "POST /v1/apps/{app}/versions HTTP/1.1\r\nHost: cp.test\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/wasm\r\n\
                 Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            ),
        );
        let (held, holding) = tokio::sync::oneshot::channel();
        let answer = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            writer.write_all(head.as_bytes()).await.unwrap();
            let mut held = Some(held);
            let trickle = async move {
                let mut sent = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // Once the server stops reading, the answer decides.
                    if stalled || sent >= 100_000 || writer.write_all(b"\0").await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    sent += 1;
                }
            };
            let read = async move {
                let mut received = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(answer) = parse_answer(&mut received, &mut held) {
                        return answer;
                    }
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => panic!(
                            "connection closed before an answer: {:?}",
                            String::from_utf8_lossy(&received)
                        ),
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
            };
            tokio::select! {
                answer = read => answer,
                () = trickle => unreachable!("the trickle never ends"),
            }
        });
        Self { holding, answer }
    }

    /// Waits until the upload holds a slot.
    async fn hold(&mut self) {
        tokio::time::timeout(Duration::from_secs(60), &mut self.holding)
            .await
            .expect("the upload never got a slot")
            .expect("the upload was answered before it got a slot");
    }

    async fn answer(self) -> Answer {
        tokio::time::timeout(Duration::from_secs(120), self.answer)
            .await
            .expect("a slow upload was never answered")
            .unwrap()
    }
}

/// A whole final answer from `received`, skipping (and reporting through
/// `held`) a `100 Continue`.
fn parse_answer(
    received: &mut Vec<u8>,
    held: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Option<Answer> {
    let end = received.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    if status == 100 {
        received.drain(..end);
        if let Some(held) = held.take() {
            let _ = held.send(());
        }
        return parse_answer(received, held);
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let body = received.get(end..end + length)?;
    Some(Answer {
        status,
        body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    })
}

/// The attack that blocked every tenant: uploads trickling a byte a
/// second (or sending nothing) from two tenants take all four upload
/// slots. They are cut with 408 `upload-timeout`, and another tenant's
/// upload, waiting for a slot meanwhile, gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_are_cut_and_free_their_slots() {
    let cp = TestCp::start_with(ApiSettings {
        upload_idle_timeout: Duration::from_secs(2),
        upload_rate_grace: Duration::from_secs(2),
        ..ApiSettings::default()
    })
    .await;
    assert_eq!(
        (
            cp.settings.max_concurrent_uploads,
            cp.settings.upload_slots_per_tenant
        ),
        (4, 2)
    );
    let mut clients = Vec::new();
    for tenant in ["mallory", "eve", "acme"] {
        let client = cp.new_tenant(tenant).await;
        client
            .create_app("web", &[&format!("web.{tenant}.test")])
            .await;
        clients.push(client);
    }
    let (mallory, eve, acme) = (&clients[0], &clients[1], &clients[2]);
    let mut slow = vec![
        (SlowUpload::start(&cp, &mallory.token, "web", false), false),
        (SlowUpload::start(&cp, &mallory.token, "web", true), true),
        (SlowUpload::start(&cp, &eve.token, "web", false), false),
        (SlowUpload::start(&cp, &eve.token, "web", false), false),
    ];
    for (upload, _) in &mut slow {
        upload.hold().await;
    }

    // Every slot is taken; acme's upload waits for one and gets it once
    // a slow upload is cut.
    let (status, body) = acme.upload("web", std::fs::read(HELLO).unwrap()).await;
    assert_eq!(status, 201, "{body}");

    for (upload, stalled) in slow {
        let answer = upload.answer().await;
        let message = assert_error(answer.status, &answer.body, 408, "upload-timeout").message;
        let says = if stalled { "sent nothing" } else { "minimum" };
        assert!(message.contains(says), "{message}");
    }
    // Their slots are free again.
    let (status, body) = mallory.upload("web", std::fs::read(HELLO).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let versions: VersionList = mallory.get("/v1/apps/web/versions").await;
    assert_eq!(versions.versions.len(), 1);
}

/// One tenant holds at most its share of the upload slots: beyond it, 429
/// `upload-slots-busy` at once (with `Retry-After`), and another tenant
/// still uploads while the first one's slow uploads are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_upload_slot() {
    // Timeouts long enough that nothing is cut during the test.
    let cp = TestCp::start_with(ApiSettings {
        upload_idle_timeout: Duration::from_secs(600),
        upload_rate_grace: Duration::from_secs(600),
        upload_slots_per_tenant: 2,
        ..ApiSettings::default()
    })
    .await;
    let mallory = cp.new_tenant("mallory").await;
    mallory.create_app("web", &["web.mallory.test"]).await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.acme.test"]).await;
    let mut slow = vec![
        SlowUpload::start(&cp, &mallory.token, "web", false),
        SlowUpload::start(&cp, &mallory.token, "web", true),
    ];
    for upload in &mut slow {
        upload.hold().await;
    }

    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/web/versions", cp.url()))
        .bearer_auth(&mallory.token)
        .body(std::fs::read(HELLO).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        response.headers().contains_key("retry-after"),
        "{:?}",
        response.headers()
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_error(429, &body, 429, "upload-slots-busy");

    let (status, body) = acme.upload("web", std::fs::read(HELLO).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        slow.iter().all(|s| !s.answer.is_finished()),
        "mallory's slow uploads are still held"
    );

    // A client that goes away gives its slot back.
    for upload in slow {
        upload.answer.abort();
    }
    crate::common::eventually("mallory's slots to be free", || async {
        mallory.upload("web", std::fs::read(HELLO).unwrap()).await.0 == 201
    })
    .await;
}
