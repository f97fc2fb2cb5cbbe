//! The examples a platform is judged by, each through a real node with a
//! real origin on loopback: `redirects`, `ab-split`, `auth-gate` and
//! `image-resize` (and `json-api`, which needs a control plane's key-value
//! store, in the control plane's tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edge_fixtures::{AB_SPLIT, AUTH_GATE, IMAGE_RESIZE, REDIRECTS};

use crate::common::{TestNode, app};
use crate::origin_server::{Script, ScriptedOrigin};

/// A node with `component` as app `name`, allowed to reach `origin` by
/// the name `origin.test`, with these config values.
async fn node_with(
    name: &str,
    component: &str,
    origin: SocketAddr,
    env: &[(&str, &str)],
) -> TestNode {
    let origin_url = format!("http://origin.test:{}", origin.port());
    let mut app = app(name, component).outbound(&[&origin_url], None);
    app = app.env("ORIGIN", &origin_url);
    for (key, value) in env {
        app = app.env(key, value);
    }
    TestNode::builder()
        .app(app)
        .plaintext()
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await
}

fn client(node: &TestNode) -> reqwest::Client {
    node.client_without_redirects(false)
}

#[tokio::test]
async fn redirects_follow_the_table_with_parameters_and_caching() {
    let table = "# a comment\n\
                 /old-blog/*rest  https://blog.example.com/*rest  301\n\
                 /users/:id       /people/:id                     308\n\
                 /sale            /spring-sale\n";
    let node = TestNode::builder()
        .app(app("redirects", REDIRECTS).env("REDIRECTS", table))
        .start()
        .await;
    let client = client(&node);
    for (path, status, location, cache_control) in [
        (
            "/old-blog/2026/hello?ref=x",
            301,
            "https://blog.example.com/2026/hello?ref=x",
            "public, max-age=86400",
        ),
        ("/users/42", 308, "/people/42", "public, max-age=86400"),
        ("/sale", 302, "/spring-sale", "no-cache"),
    ] {
        let resp = client
            .get(node.url("redirects.test", path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.headers()["location"], location, "{path}");
        assert_eq!(resp.headers()["cache-control"], cache_control, "{path}");
    }
    let resp = client
        .get(node.url("redirects.test", "/sale"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cdn-cache-control"], "max-age=60");
    let resp = client
        .get(node.url("redirects.test", "/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .post(node.url("redirects.test", "/sale"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    // A bad table is answered as one, naming the line.
    let node = TestNode::builder()
        .app(app("redirects", REDIRECTS).env("REDIRECTS", "/a /b 200\n"))
        .start()
        .await;
    let resp = node.get("redirects.test", "/a").await;
    assert_eq!(resp.status(), 500);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("line 1: status 200 is not a redirect")
    );
}

#[tokio::test]
async fn ab_split_is_sticky_and_each_variant_is_fetched_once() {
    let origin = ScriptedOrigin::start().await;
    for variant in ["a", "b"] {
        origin.script(
            &format!("/{variant}/page"),
            Script::ok(&format!("variant {variant}")).cc("public, max-age=600"),
        );
    }
    let node = node_with("ab", AB_SPLIT, origin.addr, &[]).await;
    let client = client(&node);
    // New visitors are assigned a variant, with a cookie to keep it.
    let mut seen = HashMap::new();
    for _ in 0..40 {
        let resp = client
            .get(node.http_url("ab.test", "/page"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let variant = resp.headers()["x-variant"].to_str().unwrap().to_string();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with(&format!("ab={variant}; ")), "{cookie}");
        assert_eq!(resp.headers()["cache-control"], "private");
        assert_eq!(resp.headers()["vary"], "Cookie");
        assert!(
            resp.text()
                .await
                .unwrap()
                .starts_with(&format!("variant {variant}"))
        );
        *seen.entry(variant).or_insert(0) += 1;
    }
    // Both variants come up (40 fair coins all alike: 2^-39).
    assert_eq!(seen.len(), 2, "{seen:?}");
    // A visitor with a cookie keeps the variant and gets no new cookie.
    for variant in ["a", "b"] {
        for _ in 0..3 {
            let resp = client
                .get(node.http_url("ab.test", "/page"))
                .header("cookie", format!("theme=dark; ab={variant}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.headers()["x-variant"], variant);
            assert!(resp.headers().get("set-cookie").is_none());
        }
    }
    // Each variant was fetched from the origin once, then from the cache.
    assert_eq!(origin.requests("/a/page"), 1);
    assert_eq!(origin.requests("/b/page"), 1);
    let resp = client
        .get(node.http_url("ab.test", "/page"))
        .header("cookie", "ab=a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-variant-cache"], "HIT");
    // A cookie naming no variant is a new visitor.
    let resp = client
        .get(node.http_url("ab.test", "/page"))
        .header("cookie", "ab=c")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("set-cookie").is_some());
}

/// An HS256 JWT of `claims` signed with `key`.
fn jwt(key: &[u8], header: &str, claims: &str) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = ring::hmac::sign(&key, signed.as_bytes());
    format!("{signed}.{}", b64(signature.as_ref()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn auth_gate_lets_only_valid_tokens_through() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/api/orders", Script::ok("orders").cc("no-store"));
    let key = b"a-secret-key-of-32-bytes-or-more!";
    let node = node_with(
        "gate",
        AUTH_GATE,
        origin.addr,
        &[
            ("JWT_KEY", std::str::from_utf8(key).unwrap()),
            ("JWT_AUDIENCE", "shop"),
        ],
    )
    .await;
    let client = client(&node);
    let url = node.http_url("gate.test", "/api/orders?page=2");
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    let valid = jwt(
        key,
        hs256,
        &format!(r#"{{"sub":"alice","aud":"shop","exp":{}}}"#, now() + 300),
    );

    let resp = client
        .post(&url)
        .bearer_auth(&valid)
        .body("order body")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().starts_with("orders"));
    let received = origin.last("/api/orders");
    assert_eq!(received.header("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(
        received.header("authorization"),
        None,
        "the token reached the origin"
    );
    assert_eq!(received.body, Bytes::from_static(b"order body"));

    // Refusals, none of which reach the origin.
    let before = origin.requests("/api/orders");
    let expired = jwt(
        key,
        hs256,
        &format!(r#"{{"sub":"a","aud":"shop","exp":{}}}"#, now() - 3600),
    );
    let other_key = jwt(
        b"another-key",
        hs256,
        &format!(r#"{{"aud":"shop","exp":{}}}"#, now() + 300),
    );
    let wrong_aud = jwt(
        key,
        hs256,
        &format!(r#"{{"aud":"blog","exp":{}}}"#, now() + 300),
    );
    let no_exp = jwt(key, hs256, r#"{"aud":"shop"}"#);
    let alg_none = {
        let signed = jwt(
            key,
            r#"{"alg":"none"}"#,
            &format!(r#"{{"aud":"shop","exp":{}}}"#, now() + 300),
        );
        let mut parts: Vec<&str> = signed.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    for (token, reason) in [
        (Some(expired.as_str()), "token expired"),
        (Some(other_key.as_str()), "bad signature"),
        (Some(wrong_aud.as_str()), "wrong audience"),
        (Some(no_exp.as_str()), "token has no exp"),
        (
            Some(alg_none.as_str()),
            "unsupported algorithm (HS256 only)",
        ),
        (Some("not.a.jwt"), "malformed token (base64)"),
        (None, "a bearer token is required"),
    ] {
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{reason}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        if token.is_some() {
            assert!(
                challenge.contains(&format!("error_description=\"{reason}\"")),
                "{challenge}"
            );
        } else {
            assert_eq!(challenge, "Bearer");
        }
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], reason);
    }
    assert_eq!(origin.requests("/api/orders"), before);
}

/// A loopback origin serving fixed files, counting requests per path.
struct FileOrigin {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl FileOrigin {
    async fn start(files: Vec<(&'static str, &'static str, Bytes)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let files = Arc::new(files);
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (files, hits) = (files.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let path = req.uri().path().to_string();
                            *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                            let file = files.iter().find(|(p, _, _)| *p == path).cloned();
                            async move {
                                let resp = match file {
                                    Some((_, content_type, body)) => hyper::Response::builder()
                                        .header("content-type", content_type)
                                        .header("cache-control", "public, max-age=3600")
                                        .body(http_body_util::Full::new(body)),
                                    None => hyper::Response::builder().status(404).body(
                                        http_body_util::Full::new(Bytes::from_static(b"no\n")),
                                    ),
                                };
                                Ok::<_, std::convert::Infallible>(resp.unwrap())
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FileOrigin { addr, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_resize_scales_converts_and_caches_each_variant() {
    let png = Bytes::from_static(include_bytes!(
        "../../../examples/image-resize/testdata/gradient.png"
    ));
    let origin = FileOrigin::start(vec![
        ("/gradient.png", "image/png", png.clone()),
        (
            "/notes.txt",
            "text/plain",
            Bytes::from_static(b"not an image"),
        ),
    ])
    .await;
    let node = node_with("img", IMAGE_RESIZE, origin.addr, &[]).await;
    assert_eq!(png_size(&png), (200, 100));
    let client = client(&node);
    let get = |path: &str| client.get(node.http_url("img.test", path)).send();

    let resp = get("/gradient.png?w=50").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=86400");
    assert_eq!(png_size(&resp.bytes().await.unwrap()), (50, 25));

    let resp = get("/gradient.png?w=80&format=jpeg").await.unwrap();
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let jpeg = resp.bytes().await.unwrap();
    assert_eq!(&jpeg[..3], b"\xFF\xD8\xFF", "not a JPEG");

    // Each size is made once and then served from the node's cache (the
    // app's cache is active from its first cacheable answer on, so the
    // first size is stored when asked again).
    let mut seen = Vec::new();
    for _ in 0..3 {
        let resp = get("/gradient.png?w=50").await.unwrap();
        seen.push(resp.headers()["x-cache"].to_str().unwrap().to_string());
    }
    assert_eq!(seen, ["MISS", "HIT", "HIT"]);
    // The original was fetched once for every size (the fetch is cached
    // too, by its own caching headers).
    assert_eq!(origin.hits("/gradient.png"), 1);
    for (path, status) in [
        ("/gradient.png", 400),
        ("/gradient.png?w=0", 400),
        ("/gradient.png?w=5000", 400),
        ("/gradient.png?w=10&format=gif", 400),
        ("/missing.png?w=10", 404),
        ("/notes.txt?w=10", 415),
    ] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
    }
}
