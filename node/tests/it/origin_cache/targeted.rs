//! Issue 17's policy rules: RFC 9213 targeted fields, lenient dates,
//! `Age`, `immutable`, `must-understand`, interim (1xx) responses, POST
//! answers reused for GET, and Vary normalisation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::origin_server::{Script, http_date};

rule_tests!(targeted_fields_rule_the_edge_and_reach_the_client);
/// `Edge-Cache-Control`, then `CDN-Cache-Control`, decide for the edge
/// over `Surrogate-Control` and `Cache-Control`, whole; both are passed on
/// unchanged (`Surrogate-Control` is consumed).
async fn targeted_fields_rule_the_edge_and_reach_the_client(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/cdn",
        Script::ok("cdn")
            .cc("no-store")
            .header("cdn-cache-control", "max-age=600"),
    );
    let first = fx.get("/cdn", &[]).await;
    first.expect(200, "MISS", "cdn#1");
    assert_eq!(first.origin_header("cache-control"), Some("no-store"));
    assert_eq!(
        first.origin_header("cdn-cache-control"),
        Some("max-age=600")
    );
    let hit = fx.get("/cdn", &[]).await;
    hit.expect(200, "HIT", "cdn#1");
    assert_eq!(hit.origin_header("cdn-cache-control"), Some("max-age=600"));
    assert_eq!(hit.origin_header("cache-control"), Some("no-store"));

    // The other way round: Cache-Control allows, CDN-Cache-Control not.
    for (path, field) in [
        ("/cdn-no-store", "no-store"),
        ("/cdn-private", "private"),
        ("/cdn-zero", "max-age=0"),
    ] {
        fx.origin.script(
            path,
            Script::ok("n")
                .cc("public, max-age=600")
                .header("cdn-cache-control", field),
        );
        let first = fx.get(path, &[]).await;
        assert_ne!(first.cache(), "HIT", "{}", first.what);
        assert_eq!(first.body, "n#1");
        let second = fx.get(path, &[]).await;
        assert_eq!(second.body, "n#2", "{path}: not served from the cache");
        assert_eq!(fx.origin.requests(path), 2, "{path}");
    }

    // Edge-Cache-Control beats CDN-Cache-Control, and both beat
    // Surrogate-Control, which is still consumed.
    fx.origin.script(
        "/edge",
        Script::ok("edge")
            .cc("no-store")
            .header("surrogate-control", "no-store")
            .header("cdn-cache-control", "no-store")
            .header("edge-cache-control", "max-age=600"),
    );
    let first = fx.get("/edge", &[]).await;
    first.expect(200, "MISS", "edge#1");
    assert_eq!(
        first.origin_header("edge-cache-control"),
        Some("max-age=600")
    );
    assert_eq!(first.origin_header("cdn-cache-control"), Some("no-store"));
    assert_eq!(first.origin_header("surrogate-control"), None);
    fx.get("/edge", &[]).await.expect(200, "HIT", "edge#1");

    // A targeted field's stale windows: stale (Age 100 > 60) but within
    // stale-while-revalidate, while Cache-Control says must-revalidate.
    fx.origin.script(
        "/cdn-swr",
        Script::ok("swr")
            .cc("max-age=60, must-revalidate")
            .header(
                "cdn-cache-control",
                "max-age=60, stale-while-revalidate=600",
            )
            .header("age", "100"),
    );
    fx.get("/cdn-swr", &[]).await.expect(200, "MISS", "swr#1");
    fx.get("/cdn-swr", &[]).await.expect(200, "STALE", "swr#1");
}

rule_tests!(invalid_targeted_fields_fall_back_to_the_next);
/// A targeted field that is not a Structured Field Dictionary is ignored
/// whole (RFC 9213 §2.1): the next one on the list decides.
async fn invalid_targeted_fields_fall_back_to_the_next(mode: Mode) {
    let fx = Fx::start(mode).await;
    // (path, edge, cdn, cache-control, stored)
    let cases = [
        // Invalid Edge-Cache-Control: CDN-Cache-Control's no-store decides.
        (
            "/bad-edge",
            Some("max-age=\"600"),
            Some("no-store"),
            "max-age=600",
            false,
        ),
        // Invalid CDN-Cache-Control: Cache-Control decides.
        (
            "/bad-cdn",
            None,
            Some("max-age=600 no-store"),
            "max-age=600",
            true,
        ),
        (
            "/bad-cdn-param",
            None,
            Some("no-store;"),
            "max-age=600",
            true,
        ),
        ("/bad-cdn-case", None, Some("No-Store"), "max-age=600", true),
        // Both invalid: Cache-Control's no-store decides.
        (
            "/bad-both",
            Some("max-age=,"),
            Some("max-age=600,"),
            "no-store",
            false,
        ),
        // Valid Dictionary, directive of the wrong type: that directive
        // is ignored, the field still replaces Cache-Control (no lifetime:
        // heuristics need Last-Modified, so nothing is fresh).
        (
            "/bad-type",
            None,
            Some("max-age=\"600\""),
            "max-age=600",
            false,
        ),
    ];
    for (path, edge, cdn, cc, stored) in cases {
        let mut script = Script::ok("f").cc(cc);
        if let Some(edge) = edge {
            script = script.header("edge-cache-control", edge);
        }
        if let Some(cdn) = cdn {
            script = script.header("cdn-cache-control", cdn);
        }
        fx.origin.script(path, script);
        fx.get(path, &[]).await;
        let second = fx.get(path, &[]).await;
        if stored {
            second.expect(200, "HIT", "f#1");
        } else {
            assert_eq!(second.body, "f#2", "{}: not stored", second.what);
        }
        // Passed on as the origin sent them, valid or not.
        assert_eq!(second.origin_header("cdn-cache-control"), cdn, "{path}");
        assert_eq!(second.origin_header("edge-cache-control"), edge, "{path}");
    }
}

rule_tests!(an_invalid_date_is_the_received_time_and_an_invalid_expires_expired);
/// `Expires - Date` with an invalid `Date` counts from when the response
/// arrived; an invalid `Expires` is already expired; `Last-Modified` in a
/// wrong-case form still gives heuristic freshness and validation.
async fn an_invalid_date_is_the_received_time_and_an_invalid_expires_expired(mode: Mode) {
    let fx = Fx::start(mode).await;
    let in_ten_minutes = http_date(600);
    for (path, date, expires, fresh) in [
        ("/bad-date", "yesterday-ish", in_ten_minutes.as_str(), true),
        ("/bad-expires", "", "0", false),
        ("/garbage-expires", "", "next tuesday", false),
    ] {
        let mut script = Script::ok("d").header("expires", expires);
        if !date.is_empty() {
            script = script.header("date", date);
        }
        fx.origin.script(path, script);
        fx.get(path, &[]).await;
        let second = fx.get(path, &[]).await;
        if fresh {
            second.expect(200, "HIT", "d#1");
            assert!(second.age() < 600, "{}", second.age());
        } else {
            assert_eq!(second.body, "d#2", "{}: expired", second.what);
        }
    }
    // Last-Modified in lower case: 10 % of ten days fresh.
    let ten_days_ago = http_date(-10 * 86400).to_ascii_lowercase();
    fx.origin.script(
        "/lm",
        Script::ok("lm")
            .header("date", &http_date(0))
            .header("last-modified", &ten_days_ago),
    );
    fx.get("/lm", &[]).await.expect(200, "MISS", "lm#1");
    fx.get("/lm", &[]).await.expect(200, "HIT", "lm#1");
    // And it answers the client's If-Modified-Since from the cache.
    let since = http_date(-86400);
    let conditional = fx
        .get("/lm", &[("if-modified-since", since.as_str())])
        .await;
    // (Through a component, the fetch cache answers its conditional fetch.)
    conditional.expect(304, "HIT", "");
    assert_eq!(fx.origin.requests("/lm"), 1);
}

rule_tests!(age_uses_its_first_member_and_an_invalid_one_is_stale);
/// `Age: 5, 0` is 5; `old, 0`, `-1`, `1.5` make the response stale: it is
/// stored, and revalidated before every use.
async fn age_uses_its_first_member_and_an_invalid_one_is_stale(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/age-list",
        Script::ok("a").cc("max-age=600").header("age", "100, 0"),
    );
    fx.get("/age-list", &[]).await.expect(200, "MISS", "a#1");
    let hit = fx.get("/age-list", &[]).await;
    hit.expect(200, "HIT", "a#1");
    assert!(hit.age() >= 100, "first member counts: {}", hit.age());

    for (i, bad) in ["old, 0", "-1", "1.5"].into_iter().enumerate() {
        let path = format!("/age-bad-{i}");
        fx.origin.script(
            &path,
            Script::ok("b")
                .cc("max-age=600")
                .header("etag", "\"b1\"")
                .header("age", bad),
        );
        fx.get(&path, &[]).await.expect(200, "MISS", "b#1");
        for round in 1..=2 {
            fx.get(&path, &[]).await.expect(200, "REVALIDATED", "b#1");
            assert_eq!(
                fx.origin.last(&path).header("if-none-match").as_deref(),
                Some("\"b1\""),
                "{bad}"
            );
            assert_eq!(fx.origin.not_modified(&path), round, "{bad}");
        }
        assert_eq!(fx.origin.full_responses(&path), 1, "{bad}: stored once");
    }
}

rule_tests!(immutable_answers_a_reload_while_fresh);
/// RFC 8246: a fresh `immutable` response answers a reload (`no-cache`,
/// `max-age=0`) without the origin; without `immutable`, or once stale,
/// the reload is revalidated.
async fn immutable_answers_a_reload_while_fresh(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/app.js",
        Script::ok("js")
            .cc("max-age=600, immutable")
            .header("etag", "\"j1\""),
    );
    fx.origin.script(
        "/plain.js",
        Script::ok("js").cc("max-age=600").header("etag", "\"p1\""),
    );
    fx.origin.script(
        "/stale.js",
        Script::ok("js")
            .cc("max-age=600, immutable")
            .header("etag", "\"s1\"")
            .header("age", "700"),
    );
    for path in ["/app.js", "/plain.js", "/stale.js"] {
        fx.get(path, &[]).await.expect(200, "MISS", "js#1");
    }
    for reload in ["no-cache", "max-age=0"] {
        let headers = [("cache-control", reload)];
        fx.get("/app.js", &headers).await.expect(200, "HIT", "js#1");
        fx.get("/plain.js", &headers)
            .await
            .expect(200, "REVALIDATED", "js#1");
        fx.get("/stale.js", &headers)
            .await
            .expect(200, "REVALIDATED", "js#1");
    }
    assert_eq!(fx.origin.requests("/app.js"), 1);
    assert_eq!(fx.origin.not_modified("/plain.js"), 2);
    assert_eq!(fx.origin.not_modified("/stale.js"), 2);
}

rule_tests!(must_understand_stores_understood_statuses_only);
/// `must-understand`: with a status whose rules the cache implements the
/// response is stored even with `no-store`; with any other, never.
async fn must_understand_stores_understood_statuses_only(mode: Mode) {
    let fx = Fx::start(mode).await;
    for (path, status) in [("/mu-200", 200), ("/mu-404", 404), ("/mu-301", 301)] {
        fx.origin.script(
            path,
            Script::ok("mu")
                .status(status)
                .cc("must-understand, no-store, max-age=600")
                .header("location", "/elsewhere"),
        );
        fx.get(path, &[]).await.expect(status, "MISS", "mu#1");
        fx.get(path, &[]).await.expect(status, "HIT", "mu#1");
    }
    // A 302 with max-age is storable, unless must-understand says the
    // cache must know the status's rules.
    fx.origin.script(
        "/plain-302",
        Script::ok("r")
            .status(302)
            .cc("max-age=600")
            .header("location", "/elsewhere"),
    );
    fx.get("/plain-302", &[]).await.expect(302, "MISS", "r#1");
    fx.get("/plain-302", &[]).await.expect(302, "HIT", "r#1");
    for (path, status, cc) in [
        ("/mu-302", 302, "must-understand, max-age=600"),
        ("/mu-299", 299, "must-understand, max-age=600"),
        ("/mu-422", 422, "must-understand, no-store, max-age=600"),
    ] {
        fx.origin.script(
            path,
            Script::ok("x")
                .status(status)
                .cc(cc)
                .header("location", "/elsewhere"),
        );
        fx.get(path, &[]).await.expect(status, "BYPASS", "x#1");
        fx.get(path, &[]).await.expect(status, "BYPASS", "x#2");
    }
    // Without must-understand, no-store is obeyed.
    fx.origin
        .script("/no-store", Script::ok("n").cc("no-store, max-age=600"));
    fx.get("/no-store", &[]).await.expect(200, "BYPASS", "n#1");
    fx.get("/no-store", &[]).await.expect(200, "BYPASS", "n#2");
}

rule_tests!(post_answers_naming_their_url_answer_later_gets);
/// RFC 9111 §4: a POST's answer with `Content-Location` naming the
/// request's URL and explicit freshness replaces what the POST
/// invalidated and answers later GETs; other POST answers do not.
async fn post_answers_naming_their_url_answer_later_gets(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/doc", Script::ok("doc").cc("max-age=600"));
    fx.get("/doc", &[]).await.expect(200, "MISS", "doc#1");
    fx.get("/doc", &[]).await.expect(200, "HIT", "doc#1");
    fx.origin.script(
        "/doc",
        Script::ok("posted")
            .cc("max-age=600")
            .header("content-location", "/doc"),
    );
    let post = fx
        .send("web", Method::POST, "/doc", &[], Some("new text"))
        .await;
    assert_eq!((post.status, post.body.as_str()), (200, "posted#2"));
    fx.get("/doc", &[]).await.expect(200, "HIT", "posted#2");
    assert_eq!(fx.origin.requests("/doc"), 2);

    // An absolute Content-Location on the cache's own origin, and
    // s-maxage or Expires as the explicit freshness.
    let expires = http_date(600);
    let absolute = fx.absolute("/abs");
    for (path, script) in [
        (
            "/abs",
            Script::ok("p")
                .cc("s-maxage=600")
                .header("content-location", &absolute),
        ),
        (
            "/expires",
            Script::ok("p")
                .header("date", &http_date(0))
                .header("expires", &expires)
                .header("content-location", "/expires"),
        ),
    ] {
        fx.origin.script(path, script);
        fx.send("web", Method::POST, path, &[], Some("x")).await;
        fx.get(path, &[]).await.expect(200, "HIT", "p#1");
        assert_eq!(fx.origin.requests(path), 1, "{path}");
    }

    // Not reused: another URL, no Content-Location, heuristic freshness
    // only, private, a 201.
    let last_week = http_date(-7 * 86400);
    let cases = [
        (
            "/other",
            Script::ok("q")
                .cc("max-age=600")
                .header("content-location", "/elsewhere"),
        ),
        ("/none", Script::ok("q").cc("max-age=600")),
        (
            "/heuristic",
            Script::ok("q")
                .header("last-modified", &last_week)
                .header("content-location", "/heuristic"),
        ),
        (
            "/private",
            Script::ok("q")
                .cc("private, max-age=600")
                .header("content-location", "/private"),
        ),
        (
            "/created",
            Script::ok("q")
                .status(201)
                .cc("max-age=600")
                .header("content-location", "/created"),
        ),
    ];
    for (path, script) in cases {
        fx.origin.script(path, script);
        fx.send("web", Method::POST, path, &[], Some("x")).await;
        let get = fx.get(path, &[]).await;
        assert_ne!(get.cache(), "HIT", "{}", get.what);
        assert_eq!(get.body, "q#2", "{}: the GET went to the origin", get.what);
    }
}

rule_tests!(vary_spellings_that_mean_the_same_share_a_variant);
/// `Accept-Encoding` and `Accept-Language` are normalised before keying
/// (case, whitespace, order at equal q, q=0 members), other selecting
/// headers lose insignificant whitespace; `*;q=0` still makes a variant.
async fn vary_spellings_that_mean_the_same_share_a_variant(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/v",
        Script::ok("v")
            .cc("max-age=600")
            // Never compressed at the edge: the variants are the origin's.
            .header("content-type", "image/png")
            .header("vary", "Accept-Encoding, Accept-Language, X-Device"),
    );
    let first = [
        ("accept-encoding", "gzip, br"),
        ("accept-language", "en-US,en;q=0.9"),
        ("x-device", "Tablet  Pro"),
    ];
    fx.get("/v", &first).await.expect(200, "MISS", "v#1");
    for same in [
        [
            ("accept-encoding", "br,gzip"),
            ("accept-language", "en-us, en;q=0.9"),
            ("x-device", " Tablet Pro "),
        ],
        [
            ("accept-encoding", "GZIP;q=1.0 , br, deflate;q=0"),
            ("accept-language", "EN-US , en;q=0.5"),
            ("x-device", "Tablet Pro"),
        ],
    ] {
        fx.get("/v", &same).await.expect(200, "HIT", "v#1");
    }
    let mut n = 1;
    for other in [
        [
            ("accept-encoding", "gzip"),
            ("accept-language", "en-US,en;q=0.9"),
            ("x-device", "Tablet Pro"),
        ],
        [
            ("accept-encoding", "gzip, br, *;q=0"),
            ("accept-language", "en-US,en;q=0.9"),
            ("x-device", "Tablet Pro"),
        ],
        [
            ("accept-encoding", "gzip, br"),
            ("accept-language", "en,en-US"),
            ("x-device", "Tablet Pro"),
        ],
        [
            ("accept-encoding", "gzip, br"),
            ("accept-language", "en-US,en;q=0.9"),
            ("x-device", "tablet pro"),
        ],
    ] {
        n += 1;
        fx.get("/v", &other)
            .await
            .expect(200, "MISS", &format!("v#{n}"));
    }
}

rule_tests!(interim_responses_are_skipped_and_never_stored);
/// An origin that sends `103 Early Hints` (twice) before its `200`: the
/// client gets the final response, which is stored and served alone; the
/// hints' fields never leak into it. (hyper's server cannot send 1xx
/// responses on, so they are not passed to the client: see README.)
async fn interim_responses_are_skipped_and_never_stored(mode: Mode) {
    let origin = EarlyHintsOrigin::start().await;
    let fx = Fx::with(mode, &[("web", "acme", Some(origin.port))], None).await;
    let first = fx.get("/hinted", &[]).await;
    first.expect(200, "MISS", "final#1");
    assert_eq!(first.header("link"), None, "{}", first.what);
    assert_eq!(first.origin_header("cache-control"), Some("max-age=600"));
    let hit = fx.get("/hinted", &[]).await;
    hit.expect(200, "HIT", "final#1");
    assert_eq!(hit.header("link"), None);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
}

/// A raw-socket HTTP/1.1 origin: every request is answered with two
/// `103 Early Hints` and then a `200` (`final#N`, `max-age=600`), so the
/// interim responses are exactly on the wire as a real origin sends them.
struct EarlyHintsOrigin {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl EarlyHintsOrigin {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request (no body: GETs) per head.
                        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buffer.drain(..end);
                        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("final#{n}");
                        let answer = format!(
                            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                             HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n\
                             HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\n\
                             content-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        EarlyHintsOrigin {
            port,
            requests,
            task,
        }
    }
}

impl Drop for EarlyHintsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
