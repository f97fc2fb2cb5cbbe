//! Range requests (RFC 9110 §14) and the cache: ranges served from a
//! stored response (single, several as `multipart/byteranges`, 416),
//! `If-Range`, the cap on ranges, 206 answers kept as parts and completed
//! by later ranges, and what is never stored.
//!
//! The scripted origin's bodies end in `#N`, so "0123456789" is a 12-byte
//! representation ("0123456789#1").

use http::Method;

use super::*;
use crate::origin_server::{Script, http_date};

/// The parts of a `multipart/byteranges` answer: each part's
/// `Content-Type`, `Content-Range` and data.
fn multipart(answer: &Answer) -> Vec<(Option<String>, String, String)> {
    let content_type = answer
        .header("content-type")
        .unwrap_or_else(|| panic!("{}: no Content-Type", answer.what));
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{}: not multipart: {content_type}", answer.what));
    let pieces: Vec<&str> = answer.body.split(&format!("--{boundary}")).collect();
    assert!(
        pieces.len() >= 3 && pieces[0].trim().is_empty(),
        "{}: {:?}",
        answer.what,
        answer.body
    );
    assert_eq!(
        pieces[pieces.len() - 1],
        "--\r\n",
        "{}: the close",
        answer.what
    );
    pieces[1..pieces.len() - 1]
        .iter()
        .map(|piece| {
            let piece = piece
                .strip_prefix("\r\n")
                .and_then(|p| p.strip_suffix("\r\n"))
                .unwrap_or_else(|| panic!("{}: part framing {piece:?}", answer.what));
            let (head, data) = piece
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("{}: part head {piece:?}", answer.what));
            let field = |name: &str| {
                head.split("\r\n").find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let range = field("content-range")
                .unwrap_or_else(|| panic!("{}: a part without Content-Range", answer.what));
            (field("content-type"), range, data.to_string())
        })
        .collect()
}

/// `expect`, plus the range answer's `Content-Range`.
#[track_caller]
fn expect_range(answer: &Answer, cache: &str, body: &str, content_range: &str) {
    answer.expect(206, cache, body);
    assert_eq!(
        answer.header("content-range"),
        Some(content_range),
        "{}",
        answer.what
    );
}

rule_tests!(single_ranges_from_a_stored_response);
/// `A-B`, `A-`, `-N`, a last position past the end and overlapping ranges
/// (coalesced into one) are answered 206 from the stored response, with
/// `Content-Range` and the range's length; an invalid or non-bytes
/// `Range` gets the whole 200.
async fn single_ranges_from_a_stored_response(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/single",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("content-type", "text/plain"),
    );
    let full = fx.get("/single", &[]).await;
    full.expect(200, "MISS", "0123456789#1");
    let cases = [
        ("bytes=0-3", "0123", "bytes 0-3/12"),
        ("bytes=8-", "89#1", "bytes 8-11/12"),
        ("bytes=-2", "#1", "bytes 10-11/12"),
        ("bytes=-50", "0123456789#1", "bytes 0-11/12"),
        ("bytes=5-100", "56789#1", "bytes 5-11/12"),
        ("bytes=0-2, 1-3", "0123", "bytes 0-3/12"),
        ("bytes=2-3,4-5", "2345", "bytes 2-5/12"),
    ];
    for (range, body, content_range) in cases {
        let answer = fx.get("/single", &[("range", range)]).await;
        expect_range(&answer, "HIT", body, content_range);
        assert_eq!(
            answer.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{}",
            answer.what
        );
        assert_eq!(answer.header("accept-ranges"), Some("bytes"));
        assert_eq!(answer.header("content-type"), Some("text/plain"));
    }
    for ignored in ["bytes=5-2", "items=0-3", "bytes=x-", "bytes=", "0-3"] {
        let answer = fx.get("/single", &[("range", ignored)]).await;
        answer.expect(200, "HIT", "0123456789#1");
        assert_eq!(answer.header("content-range"), None);
        assert_eq!(answer.header("accept-ranges"), Some("bytes"));
    }
    assert_eq!(fx.origin.requests("/single"), 1);
}

rule_tests!(several_ranges_are_multipart);
/// Several ranges: one 206 `multipart/byteranges` with a fresh boundary,
/// each part with the representation's `Content-Type` and its own
/// `Content-Range`, in ascending order.
async fn several_ranges_are_multipart(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/multi",
        Script::ok("abcdefghij")
            .cc("max-age=600")
            .header("content-type", "text/plain; charset=utf-8"),
    );
    fx.get("/multi", &[])
        .await
        .expect(200, "MISS", "abcdefghij#1");
    let range = [("range", "bytes=-3, 0-1,4-5")];
    let answer = fx.get("/multi", &range).await;
    assert_eq!(
        (answer.status, answer.cache()),
        (206, "HIT"),
        "{}",
        answer.what
    );
    assert_eq!(answer.header("content-range"), None, "{}", answer.what);
    assert_eq!(
        answer.header("content-length"),
        Some(answer.body.len().to_string().as_str()),
        "{}",
        answer.what
    );
    let text = Some("text/plain; charset=utf-8".to_string());
    assert_eq!(
        multipart(&answer),
        vec![
            (text.clone(), "bytes 0-1/12".into(), "ab".into()),
            (text.clone(), "bytes 4-5/12".into(), "ef".into()),
            (text.clone(), "bytes 9-11/12".into(), "j#1".into()),
        ]
    );
    let again = fx.get("/multi", &range).await;
    assert_ne!(
        again.header("content-type"),
        answer.header("content-type"),
        "every answer has its own boundary"
    );
    assert_eq!(multipart(&again), multipart(&answer));
    assert_eq!(fx.origin.requests("/multi"), 1);
}

rule_tests!(unsatisfiable_ranges_get_416);
/// No range starting inside the representation: 416 with
/// `Content-Range: bytes */LEN`, from the cache.
async fn unsatisfiable_ranges_get_416(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/short", Script::ok("0123456789").cc("max-age=600"));
    fx.get("/short", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    for range in ["bytes=12-", "bytes=20-30, 12-12", "bytes=-0"] {
        let answer = fx.get("/short", &[("range", range)]).await;
        answer.expect(
            416,
            "HIT",
            "range-not-satisfiable: no range in Range starts within the 12-byte representation\n",
        );
        assert_eq!(answer.header("content-range"), Some("bytes */12"));
        if mode.via == Via::Route {
            assert_eq!(answer.header("x-edge-error"), Some("range-not-satisfiable"));
        }
    }
    assert_eq!(fx.origin.requests("/short"), 1);
}

rule_tests!(if_range_gives_the_range_or_the_whole);
/// `If-Range` with the strong ETag, or the (strong) Last-Modified date of
/// a response without an ETag, gives the range; another tag, a weak tag,
/// another date or a date where the response has an ETag (a client holding
/// the identity would send the tag; a compressed answer has only a weak
/// one) gives the whole 200. On a miss it goes to the origin with the
/// Range.
async fn if_range_gives_the_range_or_the_whole(mode: Mode) {
    let fx = Fx::start(mode).await;
    // A day before the origin's Date: a strong validator.
    let modified = http_date(-86400);
    fx.origin.script(
        "/if-range",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"r1\"")
            .header("last-modified", &modified),
    );
    fx.get("/if-range", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    let an_hour_ago = http_date(-3600);
    let cases: [(&str, bool); 5] = [
        ("\"r1\"", true),
        ("\"r0\"", false),
        ("W/\"r1\"", false),
        (&modified, false),
        (&an_hour_ago, false),
    ];
    for (if_range, ranged) in cases {
        let answer = fx
            .get(
                "/if-range",
                &[("range", "bytes=0-3"), ("if-range", if_range)],
            )
            .await;
        if ranged {
            expect_range(&answer, "HIT", "0123", "bytes 0-3/12");
        } else {
            answer.expect(200, "HIT", "0123456789#1");
        }
    }
    assert_eq!(fx.origin.requests("/if-range"), 1);

    // Without an ETag, the strong Last-Modified date.
    fx.origin.script(
        "/if-range-dated",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("last-modified", &modified),
    );
    fx.get("/if-range-dated", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    for (if_range, ranged) in [(&modified, true), (&an_hour_ago, false)] {
        let answer = fx
            .get(
                "/if-range-dated",
                &[("range", "bytes=0-3"), ("if-range", if_range)],
            )
            .await;
        if ranged {
            expect_range(&answer, "HIT", "0123", "bytes 0-3/12");
        } else {
            answer.expect(200, "HIT", "0123456789#1");
        }
    }

    // A miss: the origin sees the Range and the If-Range; it answers the
    // whole when If-Range fails, and that is stored.
    fx.origin.script(
        "/if-range-miss",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"m2\""),
    );
    let stale_tag = [("range", "bytes=0-3"), ("if-range", "\"m1\"")];
    fx.get("/if-range-miss", &stale_tag)
        .await
        .expect(200, "MISS", "0123456789#1");
    let sent = fx.origin.last("/if-range-miss");
    assert_eq!(sent.header("range").as_deref(), Some("bytes=0-3"));
    assert_eq!(sent.header("if-range").as_deref(), Some("\"m1\""));
    let answer = fx.get("/if-range-miss", &[("range", "bytes=0-3")]).await;
    expect_range(&answer, "HIT", "0123", "bytes 0-3/12");
    assert_eq!(fx.origin.requests("/if-range-miss"), 1);
}

rule_tests!(too_many_ranges_get_the_whole_response);
/// Up to 16 ranges are served; past that the Range is ignored: the whole
/// 200, from the cache, or from the origin without the Range.
async fn too_many_ranges_get_the_whole_response(mode: Mode) {
    let fx = Fx::start(mode).await;
    let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    fx.origin
        .script("/cap", Script::ok(alphabet).cc("max-age=600"));
    let whole = format!("{alphabet}#1");
    fx.get("/cap", &[]).await.expect(200, "MISS", &whole);
    // Every other byte: nothing coalesces.
    let ranges = |n: usize| {
        let specs: Vec<String> = (0..n).map(|i| format!("{0}-{0}", 2 * i)).collect();
        format!("bytes={}", specs.join(","))
    };
    let sixteen = ranges(16);
    let answer = fx.get("/cap", &[("range", &sixteen)]).await;
    assert_eq!(
        (answer.status, answer.cache()),
        (206, "HIT"),
        "{}",
        answer.what
    );
    let parts = multipart(&answer);
    assert_eq!(parts.len(), 16);
    assert_eq!(parts[15].1, "bytes 30-30/38");
    assert_eq!(parts[15].2, "4");
    let seventeen = ranges(17);
    fx.get("/cap", &[("range", &seventeen)])
        .await
        .expect(200, "HIT", &whole);
    assert_eq!(fx.origin.requests("/cap"), 1);

    fx.origin
        .script("/cap-miss", Script::ok(alphabet).cc("max-age=600"));
    fx.get("/cap-miss", &[("range", &seventeen)])
        .await
        .expect(200, "MISS", &whole);
    assert_eq!(fx.origin.last("/cap-miss").header("range"), None);
    fx.get("/cap-miss", &[]).await.expect(200, "HIT", &whole);
}

rule_tests!(parts_are_stored_and_completed);
/// A range that misses is fetched with its Range and its 206 kept as a
/// part; ranges it holds are hits (several at once too); a range it does
/// not hold is fetched and merged; once the parts cover the whole, a
/// whole GET is a hit. A whole GET on a key holding only parts is a miss
/// that stores the 200.
async fn parts_are_stored_and_completed(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/part",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"p1\"")
            .header("content-type", "text/plain"),
    );
    let first = fx.get("/part", &[("range", "bytes=0-3")]).await;
    expect_range(&first, "MISS", "0123", "bytes 0-3/12");
    assert_eq!(
        fx.origin.last("/part").header("range").as_deref(),
        Some("bytes=0-3")
    );
    let held = fx.get("/part", &[("range", "bytes=1-2")]).await;
    expect_range(&held, "HIT", "12", "bytes 1-2/12");
    assert_eq!(held.header("content-type"), Some("text/plain"));
    assert_eq!(fx.origin.requests("/part"), 1);

    let tail = fx.get("/part", &[("range", "bytes=8-")]).await;
    expect_range(&tail, "MISS", "89#2", "bytes 8-11/12");
    let both = fx.get("/part", &[("range", "bytes=0-1,9-10")]).await;
    assert_eq!((both.status, both.cache()), (206, "HIT"), "{}", both.what);
    let text = Some("text/plain".to_string());
    assert_eq!(
        multipart(&both),
        vec![
            (text.clone(), "bytes 0-1/12".into(), "01".into()),
            (text.clone(), "bytes 9-10/12".into(), "9#".into()),
        ]
    );
    // Past the end is known from the parts: 416 without the origin.
    let past = fx.get("/part", &[("range", "bytes=12-")]).await;
    assert_eq!((past.status, past.cache()), (416, "HIT"), "{}", past.what);
    assert_eq!(past.header("content-range"), Some("bytes */12"));
    assert_eq!(fx.origin.requests("/part"), 2);

    // The gap: fetched, merged (its bytes win where they overlap), and the
    // parts now cover the whole.
    let gap = fx.get("/part", &[("range", "bytes=2-9")]).await;
    expect_range(&gap, "MISS", "23456789", "bytes 2-9/12");
    let whole = fx.get("/part", &[]).await;
    whole.expect(200, "HIT", "0123456789#2");
    assert_eq!(whole.header("content-length"), Some("12"));
    assert_eq!(whole.header("content-range"), None);
    assert_eq!(whole.header("etag"), Some("\"p1\""));
    let range = fx.get("/part", &[("range", "bytes=3-4")]).await;
    expect_range(&range, "HIT", "34", "bytes 3-4/12");
    assert_eq!(fx.origin.requests("/part"), 3);

    // Only parts stored: a whole GET goes to the origin without a Range,
    // and its 200 is stored.
    fx.origin.script(
        "/part-then-whole",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"w1\""),
    );
    let part = fx.get("/part-then-whole", &[("range", "bytes=0-3")]).await;
    expect_range(&part, "MISS", "0123", "bytes 0-3/12");
    fx.get("/part-then-whole", &[])
        .await
        .expect(200, "MISS", "0123456789#2");
    assert_eq!(fx.origin.last("/part-then-whole").header("range"), None);
    fx.get("/part-then-whole", &[])
        .await
        .expect(200, "HIT", "0123456789#2");
    let range = fx.get("/part-then-whole", &[("range", "bytes=-2")]).await;
    expect_range(&range, "HIT", "#2", "bytes 10-11/12");
    assert_eq!(fx.origin.requests("/part-then-whole"), 2);
}

rule_tests!(a_changed_etag_drops_the_parts);
/// A part whose ETag differs from the parts held replaces them (the
/// resource changed); the old parts are fetched again, of the new
/// representation, and complete it.
async fn a_changed_etag_drops_the_parts(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/etag",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"e1\""),
    );
    let old = fx.get("/etag", &[("range", "bytes=0-3")]).await;
    expect_range(&old, "MISS", "0123", "bytes 0-3/12");
    fx.origin.script(
        "/etag",
        Script::ok("abcdefghij")
            .cc("max-age=600")
            .header("etag", "\"e2\""),
    );
    let new = fx.get("/etag", &[("range", "bytes=4-")]).await;
    expect_range(&new, "MISS", "efghij#2", "bytes 4-11/12");
    // The e1 part is gone: fetched again, of e2.
    let again = fx.get("/etag", &[("range", "bytes=0-3")]).await;
    expect_range(&again, "MISS", "abcd", "bytes 0-3/12");
    let whole = fx.get("/etag", &[]).await;
    whole.expect(200, "HIT", "abcdefghij#2");
    assert_eq!(whole.header("etag"), Some("\"e2\""));
    assert_eq!(fx.origin.requests("/etag"), 3);

    // Without ETags, Last-Modified decides the same way.
    let (monday, tuesday) = (http_date(-2 * 86400), http_date(-86400));
    fx.origin.script(
        "/dated",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("last-modified", &monday),
    );
    let old = fx.get("/dated", &[("range", "bytes=0-5")]).await;
    expect_range(&old, "MISS", "012345", "bytes 0-5/12");
    fx.origin.script(
        "/dated",
        Script::ok("abcdefghij")
            .cc("max-age=600")
            .header("last-modified", &tuesday),
    );
    let new = fx.get("/dated", &[("range", "bytes=6-")]).await;
    expect_range(&new, "MISS", "ghij#2", "bytes 6-11/12");
    // Not combined with monday's part: 0-5 is not held.
    let again = fx.get("/dated", &[("range", "bytes=0-5")]).await;
    expect_range(&again, "MISS", "abcdef", "bytes 0-5/12");
    fx.get("/dated", &[])
        .await
        .expect(200, "HIT", "abcdefghij#2");
    assert_eq!(fx.origin.requests("/dated"), 3);
}

rule_tests!(what_is_not_kept_as_a_part);
/// A multipart 206 from the origin, a `no-store` 206 and a 206 without a
/// known length are passed through and not stored.
async fn what_is_not_kept_as_a_part(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/multi-miss", Script::ok("abcdefghij").cc("max-age=600"));
    let range = [("range", "bytes=0-1,4-5")];
    for n in 1..=2 {
        let answer = fx.get("/multi-miss", &range).await;
        assert_eq!(
            (answer.status, answer.cache()),
            (206, "BYPASS"),
            "{}",
            answer.what
        );
        assert_eq!(
            multipart(&answer),
            vec![
                (None, "bytes 0-1/12".into(), "ab".into()),
                (None, "bytes 4-5/12".into(), "ef".into()),
            ]
        );
        assert_eq!(fx.origin.requests("/multi-miss"), n);
    }

    fx.origin
        .script("/no-store", Script::ok("0123456789").cc("no-store"));
    for n in 1..=2 {
        let answer = fx.get("/no-store", &[("range", "bytes=0-3")]).await;
        expect_range(&answer, "BYPASS", "0123", "bytes 0-3/12");
        assert_eq!(fx.origin.requests("/no-store"), n);
    }
}

rule_tests!(a_stale_entry_is_revalidated_for_a_range);
/// A range on a stale stored response goes to the origin with the Range
/// and the stored validators; a 304 refreshes the entry and the range is
/// cut from it.
async fn a_stale_entry_is_revalidated_for_a_range(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/stale",
        Script::ok("0123456789")
            .cc("max-age=60")
            .header("age", "100")
            .header("etag", "\"s1\""),
    );
    fx.get("/stale", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    let answer = fx.get("/stale", &[("range", "bytes=0-3")]).await;
    expect_range(&answer, "REVALIDATED", "0123", "bytes 0-3/12");
    let sent = fx.origin.last("/stale");
    assert_eq!(sent.header("if-none-match").as_deref(), Some("\"s1\""));
    assert_eq!(sent.header("range").as_deref(), Some("bytes=0-3"));
    assert_eq!(fx.origin.not_modified("/stale"), 1);
}

rule_tests!(client_conditionals_work_on_range_hits);
/// The client's own conditionals come first: a matching If-None-Match is
/// a 304 whatever the Range says; a failing one lets the range through.
async fn client_conditionals_work_on_range_hits(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/cond-range",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"c1\""),
    );
    fx.get("/cond-range", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    fx.get(
        "/cond-range",
        &[("range", "bytes=0-3"), ("if-none-match", "\"c1\"")],
    )
    .await
    .expect(304, "HIT", "");
    let answer = fx
        .get(
            "/cond-range",
            &[("range", "bytes=0-3"), ("if-none-match", "\"c0\"")],
        )
        .await;
    expect_range(&answer, "HIT", "0123", "bytes 0-3/12");
    // On parts too.
    fx.origin.script(
        "/cond-part",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"c2\""),
    );
    let part = fx.get("/cond-part", &[("range", "bytes=0-3")]).await;
    expect_range(&part, "MISS", "0123", "bytes 0-3/12");
    fx.get(
        "/cond-part",
        &[("range", "bytes=0-1"), ("if-none-match", "\"c2\"")],
    )
    .await
    .expect(304, "HIT", "");
    assert_eq!(fx.origin.requests("/cond-part"), 1);
}

rule_tests!(purges_remove_parts);
/// A partial entry is purged like any entry, and is the app's own: another
/// tenant's app with the same origin does not see it.
async fn purges_remove_parts(mode: Mode) {
    let fx = Fx::with(
        mode,
        &[("web", "acme", None), ("other", "globex", None)],
        None,
    )
    .await;
    fx.origin.script(
        "/purged",
        Script::ok("0123456789")
            .cc("max-age=600")
            .header("etag", "\"x1\""),
    );
    let range = [("range", "bytes=0-3")];
    expect_range(
        &fx.get("/purged", &range).await,
        "MISS",
        "0123",
        "bytes 0-3/12",
    );
    expect_range(
        &fx.get("/purged", &range).await,
        "HIT",
        "0123",
        "bytes 0-3/12",
    );
    let other = fx.send("other", Method::GET, "/purged", &range, None).await;
    expect_range(&other, "MISS", "0123", "bytes 0-3/12");
    let url = match mode.via {
        Via::Route => "/purged".to_string(),
        Via::Fetch => fx.absolute("/purged"),
    };
    let (status, _, text) = fx
        .node
        .admin_purge(
            Some(PURGE_TOKEN),
            &format!(r#"{{"tenant":"acme","app":"web","url":"{url}"}}"#),
        )
        .await;
    assert_eq!((status, text.trim()), (200, r#"{"purged":1}"#));
    expect_range(
        &fx.get("/purged", &range).await,
        "MISS",
        "0123",
        "bytes 0-3/12",
    );
    let other = fx.send("other", Method::GET, "/purged", &range, None).await;
    expect_range(&other, "HIT", "0123", "bytes 0-3/12");
    assert_eq!(fx.origin.requests("/purged"), 3);
}

/// HEAD with a Range: only GET has range semantics (RFC 9110 §14.2), so
/// the Range is ignored and the answer is the 200's headers, from a stored
/// response; a key holding only parts has no whole answer for a HEAD, so
/// it goes to the origin as it is. (Origin route only: a component's
/// fetch cache takes GETs only.)
async fn head_with_a_range(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/head-range", Script::ok("0123456789").cc("max-age=600"));
    fx.get("/head-range", &[])
        .await
        .expect(200, "MISS", "0123456789#1");
    for range in ["bytes=2-5", "bytes=0-0,5-5", "bytes=20-"] {
        let head = fx
            .send(
                "web",
                Method::HEAD,
                "/head-range",
                &[("range", range)],
                None,
            )
            .await;
        head.expect(200, "HIT", "");
        assert_eq!(head.header("content-range"), None, "{}", head.what);
        assert_eq!(head.header("content-length"), Some("12"), "{}", head.what);
        assert_eq!(head.header("accept-ranges"), Some("bytes"), "{}", head.what);
    }
    assert_eq!(fx.origin.requests("/head-range"), 1);

    fx.origin
        .script("/head-part", Script::ok("0123456789").cc("max-age=600"));
    let part = fx.get("/head-part", &[("range", "bytes=0-3")]).await;
    expect_range(&part, "MISS", "0123", "bytes 0-3/12");
    // Held or not, the part answers no HEAD.
    for range in ["bytes=1-2", "bytes=6-7"] {
        let head = fx
            .send("web", Method::HEAD, "/head-part", &[("range", range)], None)
            .await;
        assert_eq!(
            (
                head.status,
                head.body.as_str(),
                head.header("content-range")
            ),
            (200, "", None),
            "{}",
            head.what
        );
    }
    assert_eq!(fx.origin.method_requests("/head-part", Method::HEAD), 2);
}

#[tokio::test]
async fn head_with_a_range_h1() {
    head_with_a_range(Mode::ROUTE).await
}

#[tokio::test]
async fn head_with_a_range_h2() {
    head_with_a_range(Mode {
        via: Via::Route,
        http2: true,
    })
    .await
}

/// A body of `len` digits (the origin adds `#N`).
fn digits(len: usize) -> String {
    "0123456789".chars().cycle().take(len).collect()
}

rule_tests!(a_range_open_from_zero_stores_the_whole);
/// `Range: bytes=0-` (how a browser's `<video>` starts) on a miss goes to
/// the origin without its Range, as a whole miss: the 200 is stored and
/// the client gets it as the 206 it asked for; later ranges are hits. A
/// stored whole replaces parts held for the key.
async fn a_range_open_from_zero_stores_the_whole(mode: Mode) {
    let fx = Fx::start(mode).await;
    let body = digits(300);
    fx.origin.script(
        "/video",
        Script::ok(&body)
            .cc("max-age=600")
            .header("etag", "\"v1\"")
            .header("content-type", "video/mp4"),
    );
    let whole = format!("{body}#1");
    let first = fx.get("/video", &[("range", "bytes=0-")]).await;
    expect_range(&first, "MISS", &whole, "bytes 0-301/302");
    let sent = fx.origin.last("/video");
    assert_eq!(sent.header("range"), None, "fetched whole");
    let next = fx.get("/video", &[("range", "bytes=100-199")]).await;
    expect_range(&next, "HIT", &whole[100..200], "bytes 100-199/302");
    fx.get("/video", &[]).await.expect(200, "HIT", &whole);
    assert_eq!(fx.origin.requests("/video"), 1);

    // Parts held first: `bytes=0-` still fetches the whole, which
    // replaces them.
    fx.origin.script(
        "/parted",
        Script::ok(&body).cc("max-age=600").header("etag", "\"p1\""),
    );
    let part = fx.get("/parted", &[("range", "bytes=10-19")]).await;
    expect_range(&part, "MISS", &body[10..20], "bytes 10-19/302");
    let all = fx.get("/parted", &[("range", "bytes=0-")]).await;
    let whole = format!("{body}#2");
    expect_range(&all, "MISS", &whole, "bytes 0-301/302");
    assert_eq!(fx.origin.last("/parted").header("range"), None);
    fx.get("/parted", &[]).await.expect(200, "HIT", &whole);
    assert_eq!(fx.origin.requests("/parted"), 2);

    // With an If-Range the whole is stored and sent as the 200.
    fx.origin
        .script("/if-range", Script::ok(&body).cc("max-age=600"));
    let answer = fx
        .get(
            "/if-range",
            &[("range", "bytes=0-"), ("if-range", "\"old\"")],
        )
        .await;
    answer.expect(200, "MISS", &format!("{body}#1"));
    assert_eq!(fx.origin.last("/if-range").header("if-range"), None);
    let hit = fx.get("/if-range", &[("range", "bytes=-2")]).await;
    expect_range(&hit, "HIT", "#1", "bytes 300-301/302");
}

rule_tests!(parts_with_a_weak_last_modified_are_not_combined);
/// Without an ETag, parts are combined only on a strong Last-Modified (a
/// second or more before Date, RFC 9110 §8.8.2.2): one of this very
/// second could name two bodies, so each new part replaces the last.
async fn parts_with_a_weak_last_modified_are_not_combined(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/weak",
        Script::ok("0123456789")
            .cc("max-age=600")
            // Later than Date: weak whatever second Date falls in.
            .header("last-modified", &http_date(60)),
    );
    let first = fx.get("/weak", &[("range", "bytes=0-5")]).await;
    expect_range(&first, "MISS", "012345", "bytes 0-5/12");
    let second = fx.get("/weak", &[("range", "bytes=6-")]).await;
    expect_range(&second, "MISS", "6789#2", "bytes 6-11/12");
    // Had they been combined, this would be a hit on the whole.
    let again = fx.get("/weak", &[("range", "bytes=0-5")]).await;
    expect_range(&again, "MISS", "012345", "bytes 0-5/12");
    let tail = fx.get("/weak", &[("range", "bytes=6-")]).await;
    expect_range(&tail, "MISS", "6789#4", "bytes 6-11/12");
    assert_eq!(fx.origin.requests("/weak"), 4);
}

/// With a disk tier, any range on a key with nothing stored is fetched
/// whole and the 200 stored (a large one streamed to disk only), the
/// client getting the 200 (RFC 9110 §14.2 lets a server ignore Range);
/// the ranges after it are hits, cut from the file.
async fn ranges_with_a_disk_tier_store_the_whole(mode: Mode) {
    let origin = crate::origin_server::ScriptedOrigin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache");
    let builder = Fx::builder(mode, &origin, &[("web", "acme", None)], None).cache(move |cache| {
        cache.disk_path = Some(path);
        cache.disk_capacity_bytes = 64 << 20;
        // Larger bodies are on disk only.
        cache.max_entry_bytes = 4096;
    });
    let fx = Fx::started(mode, origin, builder).await;
    let body = digits(20_000);
    fx.origin
        .script("/large", Script::ok(&body).cc("max-age=600"));
    let whole = format!("{body}#1");
    let first = fx.get("/large", &[("range", "bytes=5000-5009")]).await;
    first.expect(200, "MISS", &whole);
    assert_eq!(fx.origin.last("/large").header("range"), None);
    // The file is written in the background (a range asked before it is
    // there would fetch the whole again).
    let node = &fx;
    crate::common::eventually("the whole is on disk", || async move {
        node.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            == 1.0
    })
    .await;
    let hit = fx.get("/large", &[("range", "bytes=15000-15009")]).await;
    expect_range(&hit, "HIT", &whole[15000..15010], "bytes 15000-15009/20002");
    let tail = fx.get("/large", &[("range", "bytes=-3")]).await;
    expect_range(&tail, "HIT", "9#1", "bytes 19999-20001/20002");
    assert_eq!(fx.origin.requests("/large"), 1);
    // A `<video>`'s first range, over the memory tier's limit: its 206 is
    // the 200 streamed to the client and to disk at once.
    fx.origin
        .script("/video", Script::ok(&body).cc("max-age=600"));
    let first = fx.get("/video", &[("range", "bytes=0-")]).await;
    expect_range(&first, "MISS", &whole, "bytes 0-20001/20002");
    crate::common::eventually("the video is on disk", || async move {
        node.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            == 2.0
    })
    .await;
    let next = fx.get("/video", &[("range", "bytes=100-199")]).await;
    expect_range(&next, "HIT", &whole[100..200], "bytes 100-199/20002");
    assert_eq!(fx.origin.requests("/video"), 1);
    // A small one is stored in memory the same way.
    fx.origin
        .script("/small", Script::ok("0123456789").cc("max-age=600"));
    let first = fx.get("/small", &[("range", "bytes=2-3")]).await;
    first.expect(200, "MISS", "0123456789#1");
    let hit = fx.get("/small", &[("range", "bytes=2-3")]).await;
    expect_range(&hit, "HIT", "23", "bytes 2-3/12");
    assert_eq!(fx.origin.requests("/small"), 1);
}

#[tokio::test]
async fn ranges_with_a_disk_tier_store_the_whole_h1() {
    ranges_with_a_disk_tier_store_the_whole(Mode::ROUTE).await
}

#[tokio::test]
async fn ranges_with_a_disk_tier_store_the_whole_h2() {
    ranges_with_a_disk_tier_store_the_whole(Mode {
        via: Via::Route,
        http2: true,
    })
    .await
}

/// A compressed answer of a response without an ETag carries no
/// Last-Modified: a client resuming it with `If-Range: <date>` would get
/// a 206 of identity bytes after its compressed prefix. The identity
/// answer keeps it, and a date If-Range on it still gets its range.
async fn a_compressed_answer_has_no_date_validator(mode: Mode) {
    let fx = Fx::start(mode).await;
    let text = "resume me, if you can; ".repeat(100);
    let modified = http_date(-86400);
    fx.origin.script(
        "/doc",
        Script::ok(&text)
            .cc("max-age=600")
            .header("content-type", "text/plain")
            .header("last-modified", &modified),
    );
    let gzip = [("accept-encoding", "gzip")];
    let miss = fx.get("/doc", &gzip).await;
    let hit = fx.get("/doc", &gzip).await;
    for answer in [&miss, &hit] {
        assert_eq!(
            answer.header("content-encoding"),
            Some("gzip"),
            "{}",
            answer.what
        );
        assert_eq!(answer.header("last-modified"), None, "{}", answer.what);
        assert_eq!(answer.header("etag"), None, "{}", answer.what);
    }
    let identity = fx.get("/doc", &[]).await;
    identity.expect(200, "HIT", &format!("{text}#1"));
    assert_eq!(identity.header("last-modified"), Some(modified.as_str()));
    let resumed = fx
        .get("/doc", &[("range", "bytes=5-9"), ("if-range", &modified)])
        .await;
    expect_range(
        &resumed,
        "HIT",
        &text[5..10],
        &format!("bytes 5-9/{}", text.len() + 2),
    );
    assert_eq!(fx.origin.requests("/doc"), 1);
}

#[tokio::test]
async fn a_compressed_answer_has_no_date_validator_h1() {
    a_compressed_answer_has_no_date_validator(Mode::ROUTE).await
}

#[tokio::test]
async fn a_compressed_answer_has_no_date_validator_h2() {
    a_compressed_answer_has_no_date_validator(Mode {
        via: Via::Route,
        http2: true,
    })
    .await
}
