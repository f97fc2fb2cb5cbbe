//! Compression at the edge: negotiation, what is never compressed, one
//! stored copy per encoding, purges, the per-app switch, and a
//! component's fetch left alone.
//!
//! The client's `Accept-Encoding` is sent as a plain header on both paths:
//! on an origin route it reaches the node's cache in front of the app; on
//! the fetch path the origin-proxy component passes it to its fetch (which
//! never compresses: the guest reads that body) and the node compresses
//! the component's own answer on the way out, as it streams.

use std::io::Read;

use bytes::Bytes;
use edge_node::config::AppCompression;
use http::Method;

use super::*;
use crate::origin_server::Script;

/// A text body well above the default threshold (1024 bytes).
fn text_body() -> String {
    "compress me at the edge, please; ".repeat(100)
}

/// What the client got, bytes as they came.
struct Got {
    what: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Bytes,
    cache: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>"))
    }

    fn encoding(&self) -> Option<&str> {
        self.header("content-encoding")
    }

    /// The body decoded as its `Content-Encoding` says.
    fn decoded(&self) -> String {
        let mut out = Vec::new();
        match self.encoding() {
            None => out = self.bytes.to_vec(),
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.bytes[..])
                    .read_to_end(&mut out)
                    .unwrap_or_else(|e| panic!("{}: gzip: {e}", self.what));
            }
            Some("br") => {
                brotli::Decompressor::new(&self.bytes[..], 4096)
                    .read_to_end(&mut out)
                    .unwrap_or_else(|e| panic!("{}: br: {e}", self.what));
            }
            Some("zstd") => {
                out = zstd::stream::decode_all(&self.bytes[..])
                    .unwrap_or_else(|e| panic!("{}: zstd: {e}", self.what))
            }
            Some(other) => panic!("{}: unexpected coding {other}", self.what),
        }
        String::from_utf8(out).unwrap_or_else(|_| panic!("{}: not UTF-8", self.what))
    }

    fn varies_on_accept_encoding(&self) -> bool {
        self.headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
    }

    /// Compressed in `coding` (or sent as it is, `None`), decoding to
    /// `body`, labelled `cache` by the cache under test.
    #[track_caller]
    fn expect(&self, coding: Option<&str>, cache: &str, body: &str) -> &Self {
        assert_eq!(
            (self.status, self.encoding(), self.cache.as_str()),
            (200, coding, cache),
            "{} (status, coding, cache); headers {:?}",
            self.what,
            self.headers
        );
        assert_eq!(self.decoded(), body, "{}", self.what);
        if let Some(length) = self.header("content-length") {
            assert_eq!(length, self.bytes.len().to_string(), "{}", self.what);
        }
        if coding.is_some() {
            assert!(self.varies_on_accept_encoding(), "{}: Vary", self.what);
        }
        self
    }
}

/// `method path` on `app` with plain request headers (see the module
/// documentation).
async fn send(fx: &Fx, app: &str, method: Method, path: &str, headers: Headers<'_>) -> Got {
    let what = format!("{:?}: {method} {app}{path} {headers:?}", fx.mode);
    let mut request = fx
        .client
        .request(method, fx.node.url(&format!("{app}.test"), path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let label = match fx.mode.via {
        Via::Route => "x-cache",
        Via::Fetch => "x-fetch-cache",
    };
    let cache = headers
        .get(label)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Got {
        what,
        status,
        headers,
        bytes,
        cache,
    }
}

async fn get(fx: &Fx, path: &str, accept: Option<&str>) -> Got {
    match accept {
        Some(accept) => send(fx, "web", Method::GET, path, &[("accept-encoding", accept)]).await,
        None => send(fx, "web", Method::GET, path, &[]).await,
    }
}

/// `edge_compressed_responses_total` for `encoding` and `source`.
async fn compressed(fx: &Fx, encoding: &str, source: &str) -> f64 {
    fx.metric(
        "edge_compressed_responses_total",
        &[("encoding", encoding), ("source", source)],
    )
    .await
}

rule_tests!(negotiation_matrix);
/// RFC 9110 §12.5.3 over real requests: q-values, `*`, `identity;q=0`,
/// the node's br > zstd > gzip order, and identity without the header;
/// every compressed body decodes to the origin's.
async fn negotiation_matrix(mode: Mode) {
    let fx = Fx::start(mode).await;
    let text = text_body();
    fx.origin.script(
        "/text",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain; charset=utf-8")
            .header("etag", "\"t1\""),
    );
    let body = format!("{text}#1");
    let first = get(&fx, "/text", Some("gzip")).await;
    first.expect(Some("gzip"), "MISS", &body);
    assert_eq!(first.header("etag"), Some("W/\"t1\""), "a weak validator");
    for (accept, coding) in [
        (Some("gzip"), Some("gzip")),
        (Some("br"), Some("br")),
        (Some("zstd"), Some("zstd")),
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("gzip, zstd"), Some("zstd")),
        (Some("*"), Some("br")),
        (Some("br;q=0.5, gzip;q=0.8"), Some("gzip")),
        (Some("*;q=0.5, br;q=0"), Some("zstd")),
        (Some("br;q=0, gzip;q=0, zstd;q=0"), None),
        (Some("*;q=0"), None),
        (Some("identity"), None),
        (Some("identity;q=0, gzip"), Some("gzip")),
        (Some("gzip;q=0.1, identity;q=0.9"), None),
        (Some("deflate, compress"), None),
        (None, None),
    ] {
        let got = get(&fx, "/text", accept).await;
        got.expect(coding, "HIT", &body);
        if coding.is_none() {
            assert_eq!(got.header("etag"), Some("\"t1\""), "{}", got.what);
        }
        // Whatever the client accepts, the answer may differ by it.
        assert!(got.varies_on_accept_encoding(), "{}", got.what);
    }
    assert_eq!(fx.origin.requests("/text"), 1, "one origin fetch for all");
}

rule_tests!(never_compresses_twice_nor_what_must_stay);
/// An answer the origin encoded, a non-text type, a body under the
/// threshold, `no-transform`, a 206 and a HEAD are sent as they are.
async fn never_compresses_twice_nor_what_must_stay(mode: Mode) {
    let fx = Fx::start(mode).await;
    let text = text_body();
    let cases = [
        (
            "/encoded",
            Script::ok(&text)
                .cc("max-age=600")
                .header("content-type", "text/plain")
                .header("content-encoding", "gzip"),
            Some("gzip"),
        ),
        (
            "/png",
            Script::ok(&text)
                .cc("max-age=600")
                .header("content-type", "image/png"),
            None,
        ),
        (
            "/small",
            Script::ok("short")
                .cc("max-age=600")
                .header("content-type", "text/plain"),
            None,
        ),
        (
            "/no-transform",
            Script::ok(&text)
                .cc("max-age=600, no-transform")
                .header("content-type", "text/plain"),
            // The component answers with its own `Cache-Control`
            // (`no-store`): its answer allows transforms.
            match mode.via {
                Via::Route => None,
                Via::Fetch => Some("br"),
            },
        ),
        ("/no-type", Script::ok(&text).cc("max-age=600"), None),
    ];
    for (path, script, coding) in cases {
        fx.origin.script(path, script);
        for _ in 0..2 {
            let got = get(&fx, path, Some("br, gzip, zstd")).await;
            assert_eq!((got.status, got.encoding()), (200, coding), "{}", got.what);
            // Not touched: the origin's bytes (an origin's "gzip" body is
            // passed on as it came, not decoded, not encoded again).
            if coding != Some("br") {
                let raw = String::from_utf8(got.bytes.to_vec()).unwrap();
                assert!(raw.ends_with("#1"), "{}: {raw}", got.what);
            }
        }
    }
    // A range: the origin's 206 (a miss) or the cache's answer from the
    // stored body; never a compressed 206.
    fx.origin.script(
        "/ranged",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    for _ in 0..2 {
        let got = send(
            &fx,
            "web",
            Method::GET,
            "/ranged",
            &[("accept-encoding", "br, gzip"), ("range", "bytes=0-9")],
        )
        .await;
        if got.status == 206 {
            assert_eq!(got.encoding(), None, "{}", got.what);
            assert_eq!(&got.bytes[..], &text.as_bytes()[..10], "{}", got.what);
        } else {
            assert_eq!(got.status, 200, "{}", got.what);
        }
    }
    // HEAD: no body to compress, and no claim of one.
    let head = send(
        &fx,
        "web",
        Method::HEAD,
        "/png",
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!((head.status, head.encoding()), (200, None), "{}", head.what);
    fx.origin.script(
        "/head-text",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    let head = send(
        &fx,
        "web",
        Method::HEAD,
        "/head-text",
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!((head.status, head.encoding()), (200, None), "{}", head.what);
    assert!(head.bytes.is_empty());
}

rule_tests!(one_copy_per_encoding_and_identity_for_others);
/// A hit for each encoding is compressed once and then served from the
/// stored copy (the origin fetched once); a client that asked for no
/// encoding after a br client gets identity; uncacheable answers are
/// compressed as they stream.
async fn one_copy_per_encoding_and_identity_for_others(mode: Mode) {
    let fx = Fx::start(mode).await;
    let text = text_body();
    fx.origin.script(
        "/doc",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "application/json"),
    );
    let body = format!("{text}#1");
    get(&fx, "/doc", Some("br"))
        .await
        .expect(Some("br"), "MISS", &body);
    for coding in ["br", "gzip", "zstd"] {
        get(&fx, "/doc", Some(coding))
            .await
            .expect(Some(coding), "HIT", &body);
        get(&fx, "/doc", Some(coding))
            .await
            .expect(Some(coding), "HIT", &body);
    }
    let plain = get(&fx, "/doc", None).await;
    plain.expect(None, "HIT", &body);
    assert_eq!(plain.bytes.len(), body.len());
    assert_eq!(fx.origin.requests("/doc"), 1);
    if mode.via == Via::Route {
        // Each copy built once, then served as stored.
        for coding in ["br", "gzip", "zstd"] {
            assert_eq!(compressed(&fx, coding, "built").await, 1.0, "{coding}");
            assert_eq!(compressed(&fx, coding, "stored").await, 1.0, "{coding}");
        }
        assert_eq!(compressed(&fx, "br", "stream").await, 1.0, "the miss");
    } else {
        // The component's answer is never stored: every one streams.
        assert_eq!(compressed(&fx, "br", "stream").await, 3.0);
        assert_eq!(compressed(&fx, "br", "built").await, 0.0);
    }

    // Not storable: compressed as it streams, every time.
    fx.origin.script(
        "/private",
        Script::ok(&text)
            .cc("no-store")
            .header("content-type", "text/html"),
    );
    for n in 1..=2 {
        let got = get(&fx, "/private", Some("gzip")).await;
        got.expect(Some("gzip"), "BYPASS", &format!("{text}#{n}"));
        assert_eq!(got.header("content-length"), None, "{}", got.what);
    }
}

rule_tests!(copies_count_in_the_store_and_go_with_purges);
/// Encoded copies are in the store's bytes, and purges by URL, surrogate
/// key and app take them with the entry.
async fn copies_count_in_the_store_and_go_with_purges(mode: Mode) {
    let fx = Fx::start(mode).await;
    let text = text_body();
    for path in ["/a", "/b", "/c"] {
        fx.origin.script(
            path,
            Script::ok(&text)
                .cc("max-age=600")
                .header("content-type", "text/css")
                .header("surrogate-key", &format!("key{}", &path[1..])),
        );
    }
    let bytes = || fx.metric("edge_cache_bytes", &[("tenant", "acme"), ("app", "web")]);
    for path in ["/a", "/b", "/c"] {
        get(&fx, path, None).await;
    }
    let identity_only = bytes().await;
    assert!(identity_only > 0.0);
    for path in ["/a", "/b", "/c"] {
        for coding in ["br", "gzip"] {
            get(&fx, path, Some(coding))
                .await
                .expect(Some(coding), "HIT", &format!("{text}#1"));
        }
    }
    if mode.via == Via::Fetch {
        // The fetch cache stores what the origin sent: nothing more.
        assert_eq!(bytes().await, identity_only);
        return;
    }
    let with_copies = bytes().await;
    assert!(
        with_copies > identity_only,
        "copies count: {with_copies} > {identity_only}"
    );
    let node = &fx.node;
    let purge = |body: String| async move { node.admin_purge(Some(PURGE_TOKEN), &body).await };
    let (status, _, _) = purge(r#"{"tenant":"acme","app":"web","url":"/a"}"#.into()).await;
    assert_eq!(status, 200);
    let (status, _, _) = purge(r#"{"tenant":"acme","app":"web","key":"keyb"}"#.into()).await;
    assert_eq!(status, 200);
    for (path, cache, n) in [("/a", "MISS", 2), ("/b", "MISS", 2), ("/c", "HIT", 1)] {
        get(&fx, path, Some("br"))
            .await
            .expect(Some("br"), cache, &format!("{text}#{n}"));
    }
    // The misses streamed; the next hit builds the new entry's copy.
    assert_eq!(compressed(&fx, "br", "built").await, 3.0);
    get(&fx, "/a", Some("br"))
        .await
        .expect(Some("br"), "HIT", &format!("{text}#2"));
    assert_eq!(compressed(&fx, "br", "built").await, 4.0);
    let (status, _, _) = purge(r#"{"tenant":"acme","app":"web","all":true}"#.into()).await;
    assert_eq!(status, 200);
    crate::common::eventually("the purged bytes leave the gauge", || async {
        bytes().await == 0.0
    })
    .await;
}

/// The per-app switch and threshold from a node config file's app.
#[tokio::test]
async fn per_app_switch_and_threshold() {
    let origin = crate::origin_server::ScriptedOrigin::start().await;
    let node = TestNode::builder()
        .app(
            origin_app("off", &origin.url()).compression(AppCompression {
                enabled: Some(false),
                min_bytes: None,
            }),
        )
        .app(
            origin_app("tiny", &origin.url()).compression(AppCompression {
                enabled: None,
                min_bytes: Some(4),
            }),
        )
        .app(origin_app("web", &origin.url()))
        .purge_token(PURGE_TOKEN)
        .start()
        .await;
    let fx = Fx {
        mode: Mode::ROUTE,
        client: node.client_without_redirects(false),
        origin,
        node,
    };
    fx.origin.script(
        "/big",
        Script::ok(&text_body())
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    fx.origin.script(
        "/short",
        Script::ok("short text")
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    let br = [("accept-encoding", "br")];
    for _ in 0..2 {
        let off = send(&fx, "off", Method::GET, "/big", &br).await;
        assert_eq!(off.encoding(), None, "{}", off.what);
        assert!(!off.varies_on_accept_encoding(), "{}", off.what);
        let on = send(&fx, "web", Method::GET, "/big", &br).await;
        assert_eq!(on.encoding(), Some("br"), "{}", on.what);
        let short = send(&fx, "web", Method::GET, "/short", &br).await;
        assert_eq!(short.encoding(), None, "{}: under 1024 bytes", short.what);
        let tiny = send(&fx, "tiny", Method::GET, "/short", &br).await;
        assert_eq!(tiny.encoding(), Some("br"), "{}: over 4 bytes", tiny.what);
        assert!(tiny.decoded().starts_with("short text#"), "{}", tiny.what);
    }
}

/// A component's fetch is never compressed: the guest reads that body. The
/// component asks its origin with `Accept-Encoding: br` and gets the
/// origin's identity body, stored and served by the fetch cache as it is;
/// the client asked for nothing, so the node sends the component's answer
/// as it is too.
#[tokio::test]
async fn a_components_fetch_is_not_compressed() {
    let fx = Fx::start(Mode {
        via: Via::Fetch,
        http2: false,
    })
    .await;
    let text = text_body();
    fx.origin.script(
        "/f",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    for cache in ["MISS", "HIT"] {
        let answer = fx.get("/f", &[("accept-encoding", "br")]).await;
        answer.expect(200, cache, &format!("{text}#1"));
        assert_eq!(answer.header("content-encoding"), None, "{}", answer.what);
    }
    assert_eq!(
        fx.origin.last("/f").header("accept-encoding").as_deref(),
        Some("br"),
        "the guest's own header reached the origin"
    );
}

/// Concurrent first hits in one coding build its copy once: the others
/// wait for it rather than compressing the same body again.
#[tokio::test]
async fn concurrent_first_hits_build_one_copy() {
    let fx = Fx::start(Mode::ROUTE).await;
    let text = "a body big enough to be worth a blocking thread. ".repeat(20_000);
    fx.origin.script(
        "/big",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    let body = format!("{text}#1");
    get(&fx, "/big", None).await.expect(None, "MISS", &body);
    let hits = (0..8).map(|_| get(&fx, "/big", Some("br")));
    for got in futures::future::join_all(hits).await {
        got.expect(Some("br"), "HIT", &body);
    }
    assert_eq!(compressed(&fx, "br", "built").await, 1.0);
    assert_eq!(compressed(&fx, "br", "stored").await, 7.0);
}

/// `[compression] max_stream_bytes`: an answer compressed as it streams (a
/// miss, a hit on disk, whose body is not in memory to keep a copy of)
/// with a known length past it is sent as it is, still with `Vary:
/// Accept-Encoding`; one under it is compressed. A hit on disk is never
/// given a copy, so without the cap each hit would compress it again.
#[tokio::test]
async fn streamed_compression_stops_at_max_stream_bytes() {
    let origin = crate::origin_server::ScriptedOrigin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache");
    let builder = Fx::builder(Mode::ROUTE, &origin, &[("web", "acme", None)], None)
        .cache(move |cache| {
            cache.disk_path = Some(path);
            cache.disk_capacity_bytes = 64 << 20;
            // Larger bodies are on disk only.
            cache.max_entry_bytes = 4096;
        })
        .compression(|compression| compression.max_stream_bytes = 16 << 10);
    let fx = Fx::started(Mode::ROUTE, origin, builder).await;
    let unit = "stream me, or not at all; ";
    let small = unit.repeat(100); // 2.6 KB: in memory (and on disk)
    let big = unit.repeat(450); // 11.7 KB: on disk only, under the cap
    let huge = unit.repeat(1500); // 39 KB: on disk only, past the cap
    for (path, text) in [("/small", &small), ("/big", &big), ("/huge", &huge)] {
        fx.origin.script(
            path,
            Script::ok(text)
                .cc("max-age=600")
                .header("content-type", "application/json"),
        );
    }
    let (small, big, huge) = (
        format!("{small}#1"),
        format!("{big}#1"),
        format!("{huge}#1"),
    );
    get(&fx, "/small", Some("br"))
        .await
        .expect(Some("br"), "MISS", &small);
    get(&fx, "/big", Some("br"))
        .await
        .expect(Some("br"), "MISS", &big);
    let miss = get(&fx, "/huge", Some("br")).await;
    miss.expect(None, "MISS", &huge);
    assert!(miss.varies_on_accept_encoding(), "{}: Vary", miss.what);
    crate::common::eventually("the three bodies are on disk", || async {
        fx.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            >= 3.0
    })
    .await;
    for _ in 0..2 {
        get(&fx, "/small", Some("br"))
            .await
            .expect(Some("br"), "HIT", &small);
        get(&fx, "/big", Some("br"))
            .await
            .expect(Some("br"), "HIT", &big);
        let hit = get(&fx, "/huge", Some("br")).await;
        hit.expect(None, "HIT", &huge);
        assert!(hit.varies_on_accept_encoding(), "{}: Vary", hit.what);
        let length = huge.len().to_string();
        assert_eq!(hit.header("content-length"), Some(&*length), "{}", hit.what);
        // Identity for a client that asks for none, the same bytes.
        get(&fx, "/huge", None).await.expect(None, "HIT", &huge);
    }
    // The memory entry's copy was built once; the disk entry under the cap
    // was compressed as it streamed, on its miss and on each hit.
    assert_eq!(compressed(&fx, "br", "built").await, 1.0);
    assert_eq!(compressed(&fx, "br", "stored").await, 1.0);
    assert_eq!(compressed(&fx, "br", "stream").await, 4.0);
    assert_eq!(fx.origin.requests("/huge"), 1);
}
