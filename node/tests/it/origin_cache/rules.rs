//! The RFC 9111 core: freshness, validation, stale windows, Vary,
//! invalidation, purges and collapsing.

use std::time::Duration;

use http::Method;

use super::*;
use crate::common::eventually;
use crate::origin_server::{Script, http_date};

rule_tests!(fresh_hits_carry_age);
/// A fresh stored response answers without the origin, with its Age
/// (counting the origin's own Age).
async fn fresh_hits_carry_age(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/fresh", Script::ok("fresh").cc("max-age=600"));
    fx.get("/fresh", &[]).await.expect(200, "MISS", "fresh#1");
    let hit = fx.get("/fresh", &[]).await;
    hit.expect(200, "HIT", "fresh#1");
    assert!(hit.age() < 600, "{}", hit.age());
    assert_eq!(fx.origin.requests("/fresh"), 1);

    fx.origin.script(
        "/aged",
        Script::ok("aged").cc("max-age=600").header("age", "100"),
    );
    fx.get("/aged", &[]).await.expect(200, "MISS", "aged#1");
    let hit = fx.get("/aged", &[]).await;
    hit.expect(200, "HIT", "aged#1");
    assert!(hit.age() >= 100, "the origin's Age counts: {}", hit.age());
    assert_eq!(fx.origin.requests("/aged"), 1);
}

rule_tests!(freshness_is_s_maxage_then_max_age_then_expires);
/// s-maxage beats max-age, which beats Expires − Date.
async fn freshness_is_s_maxage_then_max_age_then_expires(mode: Mode) {
    let fx = Fx::start(mode).await;
    let now = http_date(0);
    // (path, script, stored)
    let cases = [
        (
            "/s-maxage",
            Script::ok("b").cc("max-age=0, s-maxage=600"),
            true,
        ),
        (
            "/s-maxage-zero",
            Script::ok("b").cc("s-maxage=0, max-age=600"),
            false,
        ),
        (
            "/max-age",
            Script::ok("b")
                .cc("max-age=600")
                .header("date", &now)
                .header("expires", &http_date(-3600)),
            true,
        ),
        (
            "/max-age-zero",
            Script::ok("b")
                .cc("max-age=0")
                .header("date", &now)
                .header("expires", &http_date(3600)),
            false,
        ),
        (
            "/expires",
            Script::ok("b")
                .header("date", &now)
                .header("expires", &http_date(600)),
            true,
        ),
        (
            "/expired",
            Script::ok("b").header("date", &now).header("expires", &now),
            false,
        ),
    ];
    for (path, script, stored) in cases {
        fx.origin.script(path, script);
        fx.get(path, &[]).await;
        let second = fx.get(path, &[]).await;
        if stored {
            second.expect(200, "HIT", "b#1");
            assert_eq!(fx.origin.requests(path), 1, "{path}");
        } else {
            assert_eq!(second.body, "b#2", "{path}: not fresh");
            assert_ne!(second.cache(), "HIT", "{path}");
            assert_eq!(fx.origin.requests(path), 2, "{path}");
        }
    }
}

rule_tests!(heuristic_freshness_only_for_heuristically_cacheable_statuses);
/// Without explicit freshness, 10 % of the time since Last-Modified, for
/// heuristically cacheable statuses (200, 404) only: a 302 is not stored.
async fn heuristic_freshness_only_for_heuristically_cacheable_statuses(mode: Mode) {
    let fx = Fx::start(mode).await;
    let (now, ten_days_ago) = (http_date(0), http_date(-10 * 86400));
    for (path, status) in [("/h200", 200), ("/h404", 404), ("/h302", 302)] {
        fx.origin.script(
            path,
            Script::ok("h")
                .status(status)
                .header("date", &now)
                .header("last-modified", &ten_days_ago)
                .header("location", "/elsewhere"),
        );
        if status == 302 {
            fx.get(path, &[]).await.expect(status, "BYPASS", "h#1");
            fx.get(path, &[]).await.expect(status, "BYPASS", "h#2");
        } else {
            fx.get(path, &[]).await.expect(status, "MISS", "h#1");
            fx.get(path, &[]).await.expect(status, "HIT", "h#1");
        }
    }
}

rule_tests!(no_store_private_and_authorization_are_not_stored);
/// no-store, private and a request's Authorization keep a response out of
/// the cache; `public` makes an authorized response shareable.
async fn no_store_private_and_authorization_are_not_stored(mode: Mode) {
    let fx = Fx::start(mode).await;
    let auth = [("authorization", "Bearer secret")];
    let cases: [(&str, &str, Headers); 3] = [
        ("/no-store", "no-store, max-age=600", &[]),
        ("/private", "private, max-age=600", &[]),
        ("/auth", "max-age=600", &auth),
    ];
    for (path, cc, headers) in cases {
        fx.origin.script(path, Script::ok("p").cc(cc));
        fx.get(path, headers).await.expect(200, "BYPASS", "p#1");
        fx.get(path, headers).await.expect(200, "BYPASS", "p#2");
        if path == "/auth" {
            assert_eq!(
                fx.origin.last(path).header("authorization").as_deref(),
                Some("Bearer secret")
            );
        }
    }
    // The request's own no-store.
    fx.origin
        .script("/req-no-store", Script::ok("p").cc("max-age=600"));
    let no_store = [("cache-control", "no-store")];
    fx.get("/req-no-store", &no_store)
        .await
        .expect(200, "BYPASS", "p#1");
    fx.get("/req-no-store", &no_store)
        .await
        .expect(200, "BYPASS", "p#2");

    fx.origin
        .script("/auth-public", Script::ok("p").cc("public, max-age=600"));
    fx.get("/auth-public", &auth)
        .await
        .expect(200, "MISS", "p#1");
    fx.get("/auth-public", &auth)
        .await
        .expect(200, "HIT", "p#1");
    assert_eq!(fx.origin.requests("/auth-public"), 1);
}

rule_tests!(no_cache_responses_are_stored_and_revalidated_every_time);
/// A `no-cache` response is stored, and every use is confirmed by the
/// origin with a 304; a changed resource replaces it.
async fn no_cache_responses_are_stored_and_revalidated_every_time(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/nc",
        Script::ok("nc").cc("no-cache").header("etag", "\"n1\""),
    );
    fx.get("/nc", &[]).await.expect(200, "MISS", "nc#1");
    for round in 1..=2 {
        fx.get("/nc", &[]).await.expect(200, "REVALIDATED", "nc#1");
        let sent = fx.origin.last("/nc");
        assert_eq!(sent.header("if-none-match").as_deref(), Some("\"n1\""));
        assert_eq!(fx.origin.requests("/nc"), 1 + round);
        assert_eq!(fx.origin.not_modified("/nc"), round);
        assert_eq!(fx.origin.full_responses("/nc"), 1);
    }
    // Changed: the origin ignores the validator and answers in full, which
    // replaces the stored response.
    fx.origin.script(
        "/nc",
        Script::ok("changed")
            .cc("no-cache")
            .header("etag", "\"n2\"")
            .unconditional(),
    );
    fx.get("/nc", &[]).await.expect(200, "MISS", "changed#4");
    fx.origin.script(
        "/nc",
        Script::ok("changed")
            .cc("no-cache")
            .header("etag", "\"n2\""),
    );
    fx.get("/nc", &[])
        .await
        .expect(200, "REVALIDATED", "changed#4");
    assert_eq!(
        fx.origin.last("/nc").header("if-none-match").as_deref(),
        Some("\"n2\"")
    );
}

rule_tests!(revalidation_with_last_modified);
/// A stale response with only Last-Modified is revalidated with
/// If-Modified-Since; a newer resource is fetched in full.
async fn revalidation_with_last_modified(mode: Mode) {
    let fx = Fx::start(mode).await;
    let modified = http_date(-86400);
    fx.origin.script(
        "/lm",
        Script::ok("lm")
            .cc("max-age=60")
            .header("age", "100")
            .header("last-modified", &modified),
    );
    fx.get("/lm", &[]).await.expect(200, "MISS", "lm#1");
    fx.get("/lm", &[]).await.expect(200, "REVALIDATED", "lm#1");
    let sent = fx.origin.last("/lm");
    assert_eq!(
        sent.header("if-modified-since").as_deref(),
        Some(modified.as_str())
    );
    assert_eq!(sent.header("if-none-match"), None);
    assert_eq!(fx.origin.not_modified("/lm"), 1);

    fx.origin.script(
        "/lm",
        Script::ok("newer")
            .cc("max-age=600")
            .header("last-modified", &http_date(0)),
    );
    fx.get("/lm", &[]).await.expect(200, "MISS", "newer#3");
    fx.get("/lm", &[]).await.expect(200, "HIT", "newer#3");
    assert_eq!(fx.origin.requests("/lm"), 3);
}

rule_tests!(a_304_updates_the_stored_headers);
/// The headers of a 304 replace the stored ones: a new header and a new
/// Cache-Control show on this and later answers.
async fn a_304_updates_the_stored_headers(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/merge",
        Script::ok("m")
            .cc("max-age=60")
            .header("age", "100")
            .header("etag", "\"m1\"")
            .header("x-version", "1"),
    );
    let first = fx.get("/merge", &[]).await;
    first.expect(200, "MISS", "m#1");
    assert_eq!(first.header("x-version"), Some("1"));
    fx.origin.script(
        "/merge",
        Script::ok("ignored")
            .cc("max-age=600")
            .header("etag", "\"m1\"")
            .header("x-version", "2"),
    );
    for expected in ["REVALIDATED", "HIT"] {
        let answer = fx.get("/merge", &[]).await;
        answer.expect(200, expected, "m#1");
        assert_eq!(answer.header("x-version"), Some("2"), "{}", answer.what);
        assert_eq!(answer.origin_header("cache-control"), Some("max-age=600"));
    }
    assert_eq!(fx.origin.requests("/merge"), 2);
    assert_eq!(fx.origin.not_modified("/merge"), 1);
}

rule_tests!(must_revalidate_forbids_serving_stale);
/// must-revalidate (and proxy-revalidate) responses are never served stale:
/// not for a request's max-stale, not within stale-while-revalidate or
/// stale-if-error.
async fn must_revalidate_forbids_serving_stale(mode: Mode) {
    let fx = Fx::start(mode).await;
    let max_stale = [("cache-control", "max-stale=1000")];
    fx.origin.script(
        "/strict",
        Script::ok("strict")
            .cc("max-age=60, must-revalidate, stale-while-revalidate=600, stale-if-error=600")
            .header("age", "100")
            .header("etag", "\"s1\""),
    );
    fx.get("/strict", &[]).await.expect(200, "MISS", "strict#1");
    fx.get("/strict", &max_stale)
        .await
        .expect(200, "REVALIDATED", "strict#1");
    assert_eq!(
        fx.origin.last("/strict").header("if-none-match").as_deref(),
        Some("\"s1\"")
    );
    fx.get("/strict", &[])
        .await
        .expect(200, "REVALIDATED", "strict#1");
    assert_eq!(fx.origin.requests("/strict"), 3);
    // The origin fails: the error, not the stale response.
    fx.origin.script("/strict", Script::ok("down").status(503));
    let failed = fx.get("/strict", &[]).await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (503, "down#4"),
        "{}",
        failed.what
    );

    fx.origin.script(
        "/proxy-strict",
        Script::ok("p")
            .cc("max-age=60, proxy-revalidate")
            .header("age", "100"),
    );
    fx.get("/proxy-strict", &[])
        .await
        .expect(200, "MISS", "p#1");
    // No validator: refetched in full.
    fx.get("/proxy-strict", &max_stale)
        .await
        .expect(200, "MISS", "p#2");
}

rule_tests!(request_directives_no_cache_max_age_min_fresh_max_stale);
/// The request's no-cache, max-age=0, min-fresh and Pragma: no-cache refuse
/// a fresh stored response (revalidated, or refetched without a
/// validator); max-stale accepts a stale one, within its bound.
async fn request_directives_no_cache_max_age_min_fresh_max_stale(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/rq",
        Script::ok("rq").cc("max-age=600").header("etag", "\"r1\""),
    );
    fx.get("/rq", &[]).await.expect(200, "MISS", "rq#1");
    fx.get("/rq", &[]).await.expect(200, "HIT", "rq#1");
    let refusals = [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("cache-control", "min-fresh=3600"),
        ("pragma", "no-cache"),
    ];
    for (i, refusal) in refusals.into_iter().enumerate() {
        fx.get("/rq", &[refusal])
            .await
            .expect(200, "REVALIDATED", "rq#1");
        assert_eq!(fx.origin.requests("/rq"), 2 + i, "{refusal:?}");
        assert_eq!(
            fx.origin.last("/rq").header("if-none-match").as_deref(),
            Some("\"r1\""),
            "{refusal:?}"
        );
    }
    fx.get("/rq", &[]).await.expect(200, "HIT", "rq#1");
    assert_eq!(fx.origin.full_responses("/rq"), 1);

    fx.origin
        .script("/rq-plain", Script::ok("plain").cc("max-age=600"));
    fx.get("/rq-plain", &[])
        .await
        .expect(200, "MISS", "plain#1");
    fx.get("/rq-plain", &[("cache-control", "no-cache")])
        .await
        .expect(200, "MISS", "plain#2");
    fx.get("/rq-plain", &[]).await.expect(200, "HIT", "plain#2");

    // Stale by about 40 s.
    fx.origin.script(
        "/ms",
        Script::ok("ms").cc("max-age=60").header("age", "100"),
    );
    fx.get("/ms", &[]).await.expect(200, "MISS", "ms#1");
    fx.get("/ms", &[("cache-control", "max-stale=1000")])
        .await
        .expect(200, "STALE", "ms#1");
    fx.get("/ms", &[("cache-control", "max-stale")])
        .await
        .expect(200, "STALE", "ms#1");
    assert_eq!(fx.origin.requests("/ms"), 1);
    fx.get("/ms", &[("cache-control", "max-stale=10")])
        .await
        .expect(200, "MISS", "ms#2");
    fx.get("/ms", &[]).await.expect(200, "MISS", "ms#3");
}

rule_tests!(only_if_cached_never_reaches_the_origin);
/// only-if-cached: 504 when nothing usable is stored, the stored response
/// when there is one; never the origin.
async fn only_if_cached_never_reaches_the_origin(mode: Mode) {
    let fx = Fx::start(mode).await;
    let only = [("cache-control", "only-if-cached")];
    fx.origin
        .script("/oic", Script::ok("oic").cc("max-age=600"));
    let refused = fx.get("/oic", &only).await;
    assert_eq!(refused.status, 504, "{}", refused.what);
    assert_eq!(fx.origin.requests("/oic"), 0);
    fx.get("/oic", &[]).await.expect(200, "MISS", "oic#1");
    fx.get("/oic", &only).await.expect(200, "HIT", "oic#1");
    assert_eq!(fx.origin.requests("/oic"), 1);

    // Stored, but stale: not usable either.
    fx.origin.script(
        "/oic-stale",
        Script::ok("s").cc("max-age=60").header("age", "100"),
    );
    fx.get("/oic-stale", &[]).await.expect(200, "MISS", "s#1");
    assert_eq!(fx.get("/oic-stale", &only).await.status, 504);
    assert_eq!(fx.origin.requests("/oic-stale"), 1);
}

rule_tests!(only_if_cached_miss_is_labelled_not_cached);
/// The 504 for only-if-cached says why: `x-edge-error: not-cached`.
async fn only_if_cached_miss_is_labelled_not_cached(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/oic", Script::ok("oic").cc("max-age=600"));
    let refused = fx.get("/oic", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(refused.status, 504, "{}", refused.what);
    assert_eq!(
        refused.header("x-edge-error"),
        Some("not-cached"),
        "{}: {:?}",
        refused.what,
        refused.headers
    );
}

rule_tests!(stale_while_revalidate_refreshes_in_the_background);
/// Within stale-while-revalidate the stale response is served at once and
/// one background refresh brings the new one.
async fn stale_while_revalidate_refreshes_in_the_background(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/swr",
        Script::ok("old")
            .cc("max-age=60, stale-while-revalidate=600")
            .header("age", "100"),
    );
    fx.get("/swr", &[]).await.expect(200, "MISS", "old#1");
    fx.origin
        .script("/swr", Script::ok("new").cc("max-age=600"));
    fx.get("/swr", &[]).await.expect(200, "STALE", "old#1");
    let fx = &fx;
    eventually("the background refresh reaches the origin", || async move {
        fx.origin.requests("/swr") == 2
    })
    .await;
    eventually("the refreshed response is stored", || async move {
        let answer = fx.get("/swr", &[]).await;
        if answer.cache() == "HIT" {
            answer.expect(200, "HIT", "new#2");
            return true;
        }
        answer.expect(200, "STALE", "old#1");
        false
    })
    .await;
    assert_eq!(fx.origin.requests("/swr"), 2, "one refresh");
}

rule_tests!(s_maxage_keeps_the_origins_stale_windows);
/// `s-maxage` implies proxy-revalidate against a client's `max-stale`, but
/// the origin's own `stale-while-revalidate` and `stale-if-error` still
/// apply next to it (issue 17: SWR was ignored with s-maxage and SIE was
/// not, so `s-maxage=1, stale-while-revalidate=59` never served stale).
async fn s_maxage_keeps_the_origins_stale_windows(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/shared-swr",
        Script::ok("old")
            .cc("s-maxage=60, stale-while-revalidate=600")
            .header("age", "100"),
    );
    fx.get("/shared-swr", &[])
        .await
        .expect(200, "MISS", "old#1");
    fx.origin
        .script("/shared-swr", Script::ok("new").cc("s-maxage=600"));
    fx.get("/shared-swr", &[])
        .await
        .expect(200, "STALE", "old#1");

    fx.origin.script(
        "/shared-sie",
        Script::ok("good")
            .cc("s-maxage=60, stale-if-error=600")
            .header("age", "100"),
    );
    fx.get("/shared-sie", &[])
        .await
        .expect(200, "MISS", "good#1");
    fx.origin
        .script("/shared-sie", Script::ok("down").status(503));
    fx.get("/shared-sie", &[])
        .await
        .expect(200, "STALE", "good#1");
}

rule_tests!(expires_in_the_wrong_case_is_a_lifetime);
/// `Expires` with the names in the wrong case (issue 17: read strictly, it
/// was invalid, so "already expired", and never a hit).
async fn expires_in_the_wrong_case_is_a_lifetime(mode: Mode) {
    let fx = Fx::start(mode).await;
    let expires = http_date(600).to_ascii_lowercase();
    fx.origin.script(
        "/lower-expires",
        Script::ok("e").header("expires", &expires),
    );
    fx.get("/lower-expires", &[])
        .await
        .expect(200, "MISS", "e#1");
    fx.get("/lower-expires", &[])
        .await
        .expect(200, "HIT", "e#1");
}

rule_tests!(a_quoted_value_does_not_hide_no_store);
/// `no-store` after a quoted value holding an escaped quote (issue 17:
/// the escape ended the quoted string early and `no-store` was read as
/// part of one long directive, so the response was stored).
async fn a_quoted_value_does_not_hide_no_store(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/quoted",
        Script::ok("q").cc(r#"ext="a\"b, c", no-store, max-age=600"#),
    );
    // Not stored: BYPASS both times (before the fix: MISS, then HIT).
    fx.get("/quoted", &[]).await.expect(200, "BYPASS", "q#1");
    fx.get("/quoted", &[]).await.expect(200, "BYPASS", "q#2");
    assert_eq!(fx.origin.requests("/quoted"), 2);
}

rule_tests!(if_none_match_compares_entity_tags_with_commas);
/// An entity-tag may hold commas (issue 17: `If-None-Match` was split at
/// every comma, so `"v1,2"` never matched itself and a part of it could).
async fn if_none_match_compares_entity_tags_with_commas(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/comma-tag",
        Script::ok("t").cc("max-age=600").header("etag", "\"v1,2\""),
    );
    fx.get("/comma-tag", &[]).await.expect(200, "MISS", "t#1");
    let cases: [(Headers, u16); 4] = [
        (&[("if-none-match", "\"v1,2\"")], 304),
        (&[("if-none-match", "\"x\", W/\"v1,2\"")], 304),
        (&[("if-none-match", "\"v1\"")], 200),
        (&[("if-none-match", "\"2\"")], 200),
    ];
    for (headers, status) in cases {
        let body = if status == 304 { "" } else { "t#1" };
        fx.get("/comma-tag", headers)
            .await
            .expect(status, "HIT", body);
    }
    assert_eq!(fx.origin.requests("/comma-tag"), 1);
}

rule_tests!(stale_if_error_serves_stale_when_the_origin_fails);
/// Within stale-if-error, an origin answering 503 or dropping the
/// connection gets the client the stale response; without it, the error.
async fn stale_if_error_serves_stale_when_the_origin_fails(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/sie",
        Script::ok("good")
            .cc("max-age=60, stale-if-error=600")
            .header("age", "100"),
    );
    fx.get("/sie", &[]).await.expect(200, "MISS", "good#1");
    fx.origin.script("/sie", Script::ok("down").status(503));
    fx.get("/sie", &[]).await.expect(200, "STALE", "good#1");
    assert_eq!(fx.origin.requests("/sie"), 2);
    fx.origin.script("/sie", Script::fail());
    fx.get("/sie", &[]).await.expect(200, "STALE", "good#1");
    assert_eq!(fx.origin.requests("/sie"), 3);

    fx.origin.script(
        "/plain",
        Script::ok("good").cc("max-age=60").header("age", "100"),
    );
    fx.get("/plain", &[]).await.expect(200, "MISS", "good#1");
    fx.origin.script("/plain", Script::ok("down").status(503));
    let failed = fx.get("/plain", &[]).await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (503, "down#2"),
        "{}",
        failed.what
    );
    fx.origin.script("/plain", Script::fail());
    let failed = fx.get("/plain", &[]).await;
    assert_eq!(failed.status, 502, "{}", failed.what);
    match mode.via {
        Via::Route => assert_eq!(failed.header("x-edge-error"), Some("origin-unreachable")),
        Via::Fetch => assert!(failed.header("x-fetch-error").is_some(), "{}", failed.what),
    }
    assert_eq!(fx.origin.requests("/plain"), 3);
}

rule_tests!(vary_keys_variants_and_vary_star_is_never_stored);
/// One stored variant per value of the headers Vary names; `Vary: *` is
/// never stored.
async fn vary_keys_variants_and_vary_star_is_never_stored(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/vary",
        Script::ok("v")
            .cc("max-age=600")
            .header("vary", "accept-language"),
    );
    let (en, fr) = ([("accept-language", "en")], [("accept-language", "fr")]);
    fx.get("/vary", &en).await.expect(200, "MISS", "v#1");
    fx.get("/vary", &fr).await.expect(200, "MISS", "v#2");
    assert_eq!(
        fx.origin.last("/vary").header("accept-language").as_deref(),
        Some("fr")
    );
    fx.get("/vary", &en).await.expect(200, "HIT", "v#1");
    fx.get("/vary", &fr).await.expect(200, "HIT", "v#2");
    fx.get("/vary", &[]).await.expect(200, "MISS", "v#3");
    fx.get("/vary", &[("accept-language", "en"), ("x-unkeyed", "1")])
        .await
        .expect(200, "HIT", "v#1");
    assert_eq!(fx.origin.requests("/vary"), 3);

    fx.origin.script(
        "/vary-star",
        Script::ok("star").cc("max-age=600").header("vary", "*"),
    );
    fx.get("/vary-star", &[])
        .await
        .expect(200, "BYPASS", "star#1");
    fx.get("/vary-star", &[])
        .await
        .expect(200, "BYPASS", "star#2");
}

/// HEAD is answered from a stored GET; a HEAD that misses is forwarded
/// and stores nothing. (Origin route only: a component's fetch cache
/// takes GETs only, so the component's HEAD goes to the origin.)
#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let fx = Fx::start(Mode::ROUTE).await;
    fx.origin
        .script("/head", Script::ok("head").cc("max-age=600"));
    fx.get("/head", &[]).await.expect(200, "MISS", "head#1");
    fx.send("web", Method::HEAD, "/head", &[], None)
        .await
        .expect(200, "HIT", "");
    assert_eq!(fx.origin.requests("/head"), 1);
    assert_eq!(fx.origin.method_requests("/head", Method::HEAD), 0);

    fx.origin
        .script("/head-miss", Script::ok("hm").cc("max-age=600"));
    let head = fx.send("web", Method::HEAD, "/head-miss", &[], None).await;
    assert_eq!(
        (head.status, head.body.as_str()),
        (200, ""),
        "{}",
        head.what
    );
    assert_eq!(fx.origin.method_requests("/head-miss", Method::HEAD), 1);
    fx.get("/head-miss", &[]).await.expect(200, "MISS", "hm#2");
}

rule_tests!(client_conditionals_are_answered_from_the_cache);
/// If-None-Match / If-Modified-Since matching a stored response: 304 from
/// the cache. On a miss they are not sent to the origin (the cache wants
/// the full response to store).
async fn client_conditionals_are_answered_from_the_cache(mode: Mode) {
    let fx = Fx::start(mode).await;
    let modified = http_date(-86400);
    fx.origin.script(
        "/cond",
        Script::ok("c")
            .cc("max-age=600")
            .header("etag", "\"c1\"")
            .header("last-modified", &modified),
    );
    fx.get("/cond", &[]).await.expect(200, "MISS", "c#1");
    let two_days_ago = http_date(-2 * 86400);
    let cases: [(Headers, u16); 5] = [
        (&[("if-none-match", "\"c1\"")], 304),
        (&[("if-none-match", "W/\"c1\", \"c0\"")], 304),
        (&[("if-none-match", "\"other\"")], 200),
        (&[("if-modified-since", modified.as_str())], 304),
        (&[("if-modified-since", two_days_ago.as_str())], 200),
    ];
    for (headers, status) in cases {
        let body = if status == 304 { "" } else { "c#1" };
        fx.get("/cond", headers).await.expect(status, "HIT", body);
    }
    assert_eq!(fx.origin.requests("/cond"), 1);

    fx.origin.script(
        "/cond-miss",
        Script::ok("cm").cc("max-age=600").header("etag", "\"x\""),
    );
    let miss = fx.get("/cond-miss", &[("if-none-match", "\"x\"")]).await;
    assert_eq!(fx.origin.last("/cond-miss").header("if-none-match"), None);
    assert_eq!(miss.cache(), "MISS", "{}", miss.what);
    match miss.status {
        304 => assert_eq!(miss.body, ""),
        _ => {
            miss.expect(200, "MISS", "cm#1");
        }
    }
    fx.get("/cond-miss", &[]).await.expect(200, "HIT", "cm#1");
    assert_eq!(fx.origin.requests("/cond-miss"), 1);
}

rule_tests!(unsafe_methods_pass_through_with_their_body);
/// POST, PUT, DELETE and PATCH reach the origin as they are, method and
/// body, and their answers are never stored.
async fn unsafe_methods_pass_through_with_their_body(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/form", Script::ok("form").cc("max-age=600"));
    let methods = [Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
    for (i, method) in methods.into_iter().enumerate() {
        let payload = format!("payload for {method}");
        let answer = fx
            .send("web", method.clone(), "/form", &[], Some(&payload))
            .await;
        assert_eq!(
            (answer.status, answer.body.clone()),
            (200, format!("form#{}", i + 1)),
            "{}",
            answer.what
        );
        let sent = fx.origin.last("/form");
        assert_eq!(sent.method, method);
        assert_eq!(sent.body, payload.as_bytes());
        assert_eq!(fx.origin.method_requests("/form", method), 1);
    }
    fx.get("/form", &[]).await.expect(200, "MISS", "form#5");
    fx.get("/form", &[]).await.expect(200, "HIT", "form#5");
}

rule_tests!(unsafe_methods_invalidate_the_target_and_same_origin_locations);
/// An unsafe method answered 2xx/3xx invalidates the target and the
/// same-origin Location and Content-Location (relative or absolute);
/// another origin's URL, and an error answer, invalidate nothing.
async fn unsafe_methods_invalidate_the_target_and_same_origin_locations(mode: Mode) {
    let fx = Fx::start(mode).await;
    for path in ["/item", "/list", "/detail", "/third"] {
        let name = &path[1..];
        fx.origin.script(path, Script::ok(name).cc("max-age=600"));
        fx.get(path, &[])
            .await
            .expect(200, "MISS", &format!("{name}#1"));
        fx.get(path, &[])
            .await
            .expect(200, "HIT", &format!("{name}#1"));
    }
    fx.origin.script(
        "/item",
        Script::ok("posted")
            .cc("max-age=600")
            .header("location", "/list")
            .header("content-location", &fx.absolute("/detail")),
    );
    let post = fx
        .send("web", Method::POST, "/item", &[], Some("payload"))
        .await;
    assert_eq!((post.status, post.body.as_str()), (200, "posted#2"));
    fx.origin
        .script("/item", Script::ok("item").cc("max-age=600"));
    fx.get("/item", &[]).await.expect(200, "MISS", "item#3");
    fx.get("/list", &[]).await.expect(200, "MISS", "list#2");
    fx.get("/detail", &[]).await.expect(200, "MISS", "detail#2");
    fx.get("/third", &[]).await.expect(200, "HIT", "third#1");

    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let before = fx.get("/item", &[]).await;
        assert_eq!(before.cache(), "HIT", "{}", before.what);
        let answer = fx.send("web", method.clone(), "/item", &[], None).await;
        assert_eq!(answer.status, 200, "{}", answer.what);
        let after = fx.get("/item", &[]).await;
        assert_eq!(
            after.cache(),
            "MISS",
            "{method} invalidates: {}",
            after.what
        );
    }

    // Another origin's Location, and an error answer, invalidate nothing
    // but the target (and an error not even that).
    fx.origin.script(
        "/item",
        Script::ok("item")
            .cc("max-age=600")
            .header("location", "http://elsewhere.test/third"),
    );
    fx.send("web", Method::POST, "/item", &[], Some("x")).await;
    fx.get("/third", &[]).await.expect(200, "HIT", "third#1");
    assert_eq!(fx.get("/item", &[]).await.cache(), "MISS");
    let stored = fx.get("/item", &[]).await;
    assert_eq!(stored.cache(), "HIT", "{}", stored.what);
    fx.origin.script("/item", Script::ok("nope").status(500));
    let failed = fx.send("web", Method::POST, "/item", &[], Some("x")).await;
    assert_eq!(failed.status, 500, "{}", failed.what);
    fx.get("/item", &[]).await.expect(200, "HIT", &stored.body);
}

rule_tests!(surrogate_control_overrides_and_surrogate_headers_are_stripped);
/// Surrogate-Control is the edge's Cache-Control (and is stripped);
/// Surrogate-Key is shown only to `x-edge-debug: surrogate-key`.
async fn surrogate_control_overrides_and_surrogate_headers_are_stripped(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/sc",
        Script::ok("sc")
            .cc("private")
            .header("surrogate-control", "max-age=600")
            .header("surrogate-key", "red blue"),
    );
    let first = fx.get("/sc", &[]).await;
    first.expect(200, "MISS", "sc#1");
    assert_eq!(first.origin_header("cache-control"), Some("private"));
    assert_eq!(first.origin_header("surrogate-control"), None);
    assert_eq!(first.header("surrogate-control"), None);
    assert_eq!(first.header("surrogate-key"), None);
    let hit = fx.get("/sc", &[]).await;
    hit.expect(200, "HIT", "sc#1");
    assert_eq!(hit.header("surrogate-key"), None);
    let debug = fx.get("/sc", &[("x-edge-debug", "surrogate-key")]).await;
    debug.expect(200, "HIT", "sc#1");
    assert_eq!(debug.header("surrogate-key"), Some("red blue"));
    assert_eq!(debug.header("surrogate-control"), None);

    fx.origin.script(
        "/sc-no-store",
        Script::ok("n")
            .cc("max-age=600")
            .header("surrogate-control", "no-store"),
    );
    let first = fx.get("/sc-no-store", &[]).await;
    first.expect(200, "BYPASS", "n#1");
    assert_eq!(first.origin_header("cache-control"), Some("max-age=600"));
    fx.get("/sc-no-store", &[])
        .await
        .expect(200, "BYPASS", "n#2");
}

rule_tests!(x_forwarded_host_is_not_part_of_the_key);
/// A client's X-Forwarded-Host changes nothing: an origin route sends the
/// edge's own, and the stored response is everyone's.
async fn x_forwarded_host_is_not_part_of_the_key(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script("/xfh", Script::ok("x").cc("max-age=600"));
    fx.get("/xfh", &[("x-forwarded-host", "evil.test")])
        .await
        .expect(200, "MISS", "x#1");
    if mode.via == Via::Route {
        let sent = fx.origin.last("/xfh");
        assert_eq!(sent.header("x-forwarded-host").as_deref(), Some("web.test"));
        assert_eq!(sent.header("x-forwarded-proto").as_deref(), Some("https"));
    }
    fx.get("/xfh", &[]).await.expect(200, "HIT", "x#1");
    fx.get("/xfh", &[("x-forwarded-host", "other.test")])
        .await
        .expect(200, "HIT", "x#1");
    assert_eq!(fx.origin.requests("/xfh"), 1);
}

rule_tests!(concurrent_misses_collapse_into_one_origin_request);
/// Ten concurrent requests for a slow cacheable resource: one origin
/// request; for an uncacheable one, every request reaches the origin.
async fn concurrent_misses_collapse_into_one_origin_request(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/slow",
        Script::ok("slow")
            .cc("max-age=600")
            .delay(Duration::from_secs(1)),
    );
    let answers = futures::future::join_all((0..10).map(|_| fx.get("/slow", &[]))).await;
    for answer in &answers {
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "slow#1"),
            "{}",
            answer.what
        );
    }
    assert_eq!(fx.origin.requests("/slow"), 1);
    if mode.via == Via::Route {
        let collapsed = fx
            .metric("edge_cache_collapsed_total", &[("app", "web")])
            .await;
        assert!(collapsed >= 1.0, "{collapsed}");
    }

    fx.origin.script(
        "/slow-private",
        Script::ok("p")
            .cc("private")
            .delay(Duration::from_millis(300)),
    );
    let answers = futures::future::join_all((0..10).map(|_| fx.get("/slow-private", &[]))).await;
    let bodies: std::collections::HashSet<&str> = answers.iter().map(|a| a.body.as_str()).collect();
    assert_eq!(bodies.len(), 10, "{bodies:?}");
    assert_eq!(fx.origin.requests("/slow-private"), 10);
}

rule_tests!(tenants_do_not_share_entries);
/// Two tenants' apps on the same origin and path each have their own entry.
async fn tenants_do_not_share_entries(mode: Mode) {
    let fx = Fx::with(
        mode,
        &[("a", "tenant-a", None), ("b", "tenant-b", None)],
        None,
    )
    .await;
    fx.origin
        .script("/shared", Script::ok("s").cc("max-age=600"));
    let get = |app| fx.send(app, Method::GET, "/shared", &[], None);
    get("a").await.expect(200, "MISS", "s#1");
    get("b").await.expect(200, "MISS", "s#2");
    get("a").await.expect(200, "HIT", "s#1");
    get("b").await.expect(200, "HIT", "s#2");
    assert_eq!(fx.origin.requests("/shared"), 2);
}

rule_tests!(admin_purges_by_url_key_and_app);
/// The admin listener's purge: by URL (for a component's fetches, the
/// origin's absolute URL), by surrogate key (softly: revalidated next time)
/// and the whole app (hard); refusals with their codes.
async fn admin_purges_by_url_key_and_app(mode: Mode) {
    let fx = Fx::start(mode).await;
    let origin = &fx.origin;
    origin.script("/p1", Script::ok("p1").cc("max-age=600"));
    origin.script(
        "/p2",
        Script::ok("p2")
            .cc("max-age=600")
            .header("etag", "\"v2\"")
            .header("surrogate-key", "k2 shared"),
    );
    origin.script("/p3", Script::ok("p3").cc("max-age=600"));
    for path in ["/p1", "/p2", "/p3"] {
        let body = format!("{}#1", &path[1..]);
        fx.get(path, &[]).await.expect(200, "MISS", &body);
        fx.get(path, &[]).await.expect(200, "HIT", &body);
    }
    let url = match mode.via {
        Via::Route => "/p1".to_string(),
        Via::Fetch => format!("http://origin.test:{}/p1", origin.port()),
    };
    let node = &fx.node;
    let purge = |body: String| async move { node.admin_purge(Some(PURGE_TOKEN), &body).await };
    let (status, _, text) =
        purge(format!(r#"{{"tenant":"acme","app":"web","url":"{url}"}}"#)).await;
    assert_eq!((status, text.trim()), (200, r#"{"purged":1}"#));
    fx.get("/p1", &[]).await.expect(200, "MISS", "p1#2");
    fx.get("/p2", &[]).await.expect(200, "HIT", "p2#1");

    let (status, _, _) =
        purge(r#"{"tenant":"acme","app":"web","key":"k2","soft":true}"#.into()).await;
    assert_eq!(status, 200);
    fx.get("/p2", &[]).await.expect(200, "REVALIDATED", "p2#1");
    assert_eq!(origin.requests("/p2"), 2, "one conditional request");
    fx.get("/p3", &[]).await.expect(200, "HIT", "p3#1");

    let (status, _, _) = purge(r#"{"tenant":"acme","app":"web","all":true}"#.into()).await;
    assert_eq!(status, 200);
    fx.get("/p3", &[]).await.expect(200, "MISS", "p3#2");

    let valid = r#"{"tenant":"acme","app":"web","all":true}"#;
    for (token, body, status, code) in [
        (None, valid, 401, "token-invalid"),
        (Some("wrong-token-wrong-token"), valid, 401, "token-invalid"),
        (
            Some(PURGE_TOKEN),
            r#"{"tenant":"other","app":"web","all":true}"#,
            404,
            "unknown-app",
        ),
        (
            Some(PURGE_TOKEN),
            r#"{"tenant":"acme","app":"web"}"#,
            400,
            "invalid-purge",
        ),
        (
            Some(PURGE_TOKEN),
            r#"{"tenant":"acme","app":"web","key":"a b"}"#,
            400,
            "invalid-purge",
        ),
        (Some(PURGE_TOKEN), "not json", 400, "invalid-purge"),
    ] {
        let (got, got_code, text) = fx.node.admin_purge(token, body).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{body}: {text}");
    }
    let text = fx.node.metrics_text().await;
    for kind in ["url", "key", "all"] {
        let labels = [("tenant", "acme"), ("app", "web"), ("kind", kind)];
        assert_eq!(
            metric_value(&text, "edge_cache_purges_total", &labels),
            Some(1.0)
        );
    }
}

rule_tests!(cache_metrics_count_every_result);
/// Every result of the cache is counted: an origin route's in
/// `edge_cache_requests_total`, a component's fetches in
/// `edge_cache_fetch_requests_total`.
async fn cache_metrics_count_every_result(mode: Mode) {
    let fx = Fx::start(mode).await;
    let origin = &fx.origin;
    origin.script("/m", Script::ok("m").cc("max-age=600"));
    origin.script(
        "/m-nc",
        Script::ok("m").cc("no-cache").header("etag", "\"e\""),
    );
    origin.script(
        "/m-stale",
        Script::ok("m").cc("max-age=60").header("age", "100"),
    );
    origin.script("/m-private", Script::ok("m").cc("private"));
    fx.get("/m", &[]).await.expect(200, "MISS", "m#1");
    fx.get("/m", &[]).await.expect(200, "HIT", "m#1");
    fx.get("/m-nc", &[]).await.expect(200, "MISS", "m#1");
    fx.get("/m-nc", &[]).await.expect(200, "REVALIDATED", "m#1");
    fx.get("/m-stale", &[]).await.expect(200, "MISS", "m#1");
    fx.get("/m-stale", &[("cache-control", "max-stale")])
        .await
        .expect(200, "STALE", "m#1");
    fx.get("/m-private", &[]).await.expect(200, "BYPASS", "m#1");
    let text = fx.node.metrics_text().await;
    for (result, expected) in [
        ("miss", 3.0),
        ("hit", 1.0),
        ("revalidated", 1.0),
        ("stale", 1.0),
        ("bypass", 1.0),
    ] {
        let labels = [("tenant", "acme"), ("app", "web"), ("result", result)];
        let metric = match mode.via {
            Via::Route => "edge_cache_requests_total",
            Via::Fetch => "edge_cache_fetch_requests_total",
        };
        assert_eq!(
            metric_value(&text, metric, &labels),
            Some(expected),
            "{result}: {text}"
        );
    }
    assert!(metric_value(&text, "edge_cache_bytes", &[]).unwrap_or(0.0) > 0.0);
}

rule_tests!(unreachable_and_silent_origins_fail_alone);
/// An origin on a closed port: 502; one that never answers: 504 at the
/// app's wall time. The node goes on serving other apps.
async fn unreachable_and_silent_origins_fail_alone(mode: Mode) {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fx = Fx::with(
        mode,
        &[("down", "acme", Some(closed)), ("web", "acme", None)],
        Some(Duration::from_secs(3)),
    )
    .await;
    fx.origin.script("/ok", Script::ok("ok").cc("max-age=600"));
    fx.origin.script(
        "/silent",
        Script::ok("late")
            .cc("max-age=600")
            .delay(Duration::from_secs(300)),
    );
    let down = fx.send("down", Method::GET, "/x", &[], None).await;
    assert_eq!(down.status, 502, "{}", down.what);
    match mode.via {
        Via::Route => assert_eq!(down.header("x-edge-error"), Some("origin-unreachable")),
        Via::Fetch => assert!(down.header("x-fetch-error").is_some(), "{}", down.what),
    }
    let silent = fx.get("/silent", &[]).await;
    assert_eq!(silent.status, 504, "{}", silent.what);
    let code = match mode.via {
        Via::Route => "origin-timeout",
        Via::Fetch => "wall-time-exceeded",
    };
    assert_eq!(silent.header("x-edge-error"), Some(code), "{}", silent.what);

    fx.get("/ok", &[]).await.expect(200, "MISS", "ok#1");
    fx.get("/ok", &[]).await.expect(200, "HIT", "ok#1");
    assert_eq!(
        fx.send("down", Method::GET, "/x", &[], None).await.status,
        502
    );
}

rule_tests!(a_clients_directives_never_evict_what_others_use);
/// A client that asks for `no-store` (or sends Authorization) makes the
/// cache go to the origin for it, but what others get stays stored.
async fn a_clients_directives_never_evict_what_others_use(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/shared", Script::ok("s").cc("max-age=600"));
    fx.get("/shared", &[]).await.expect(200, "MISS", "s#1");
    for headers in [
        &[("cache-control", "no-cache, no-store")][..],
        &[("cache-control", "max-age=0"), ("authorization", "x")][..],
    ] {
        let answer = fx.get("/shared", headers).await;
        assert_eq!(answer.status, 200);
        fx.get("/shared", &[]).await.expect(200, "HIT", "s#1");
    }
}

rule_tests!(an_origin_error_during_revalidation_keeps_the_stored_copy);
/// A 503 while revalidating reaches the client (no stale-if-error), but the
/// stored copy stays: once the origin is back it is revalidated, not
/// fetched again in full.
async fn an_origin_error_during_revalidation_keeps_the_stored_copy(mode: Mode) {
    let fx = Fx::start(mode).await;
    let stale = || {
        Script::ok("r")
            .cc("max-age=60")
            .header("age", "100")
            .header("etag", "\"r1\"")
    };
    fx.origin.script("/r", stale());
    fx.get("/r", &[]).await.expect(200, "MISS", "r#1");
    fx.origin.script("/r", Script::ok("down").status(503));
    assert_eq!(fx.get("/r", &[]).await.status, 503);
    fx.origin.script("/r", stale());
    fx.get("/r", &[]).await.expect(200, "REVALIDATED", "r#1");
}

rule_tests!(empty_bodies_are_stored);
/// A cacheable answer without a body (hyper never polls such a body) is
/// stored all the same.
async fn empty_bodies_are_stored(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin
        .script("/empty", Script::ok("").status(204).cc("max-age=600"));
    let first = fx.get("/empty", &[]).await;
    assert_eq!((first.status, first.cache()), (204, "MISS"));
    let second = fx.get("/empty", &[]).await;
    assert_eq!((second.status, second.cache()), (204, "HIT"));
    assert_eq!(fx.origin.requests("/empty"), 1);
}

rule_tests!(max_stale_does_not_reach_soft_purged_entries);
/// A soft-purged entry is revalidated before use even when the client
/// accepts stale answers.
async fn max_stale_does_not_reach_soft_purged_entries(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/soft",
        Script::ok("soft")
            .cc("max-age=600")
            .header("etag", "\"s1\""),
    );
    fx.get("/soft", &[]).await.expect(200, "MISS", "soft#1");
    let url = match mode.via {
        Via::Route => "/soft".to_string(),
        Via::Fetch => format!("http://origin.test:{}/soft", fx.origin.port()),
    };
    let body = format!(r#"{{"tenant":"acme","app":"web","url":"{url}","soft":true}}"#);
    assert_eq!(fx.node.admin_purge(Some(PURGE_TOKEN), &body).await.0, 200);
    fx.get("/soft", &[("cache-control", "max-stale")])
        .await
        .expect(200, "REVALIDATED", "soft#1");
    assert_eq!(fx.origin.not_modified("/soft"), 1);
}
