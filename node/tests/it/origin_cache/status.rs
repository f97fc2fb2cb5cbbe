//! RFC 9211 `Cache-Status`: every answer of the cache under test carries
//! its member (`edge; ...`) after any the response already had, next to
//! `x-cache`. In the fetch path the fetch cache's member comes back as
//! `x-fetch-cache-status`.

use std::time::Duration;

use super::*;
use crate::origin_server::Script;

impl Answer {
    /// Every `Cache-Status` member of the cache under test's answer, in
    /// order.
    fn cache_status(&self) -> Vec<String> {
        let name = match self.mode.via {
            Via::Route => "cache-status",
            Via::Fetch => "x-fetch-cache-status",
        };
        self.headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("<binary>").split(','))
            .map(|m| m.trim().to_string())
            .collect()
    }

    /// This cache's member, checked to be the last one.
    #[track_caller]
    fn edge_status(&self) -> String {
        let members = self.cache_status();
        let last = members
            .last()
            .unwrap_or_else(|| panic!("{}: no Cache-Status: {:?}", self.what, self.headers));
        assert!(last.starts_with("edge;"), "{}: {members:?}", self.what);
        last.clone()
    }

    /// The `ttl` parameter of this cache's member.
    #[track_caller]
    fn ttl(&self) -> i64 {
        let member = self.edge_status();
        member
            .split(';')
            .find_map(|p| p.trim().strip_prefix("ttl="))
            .unwrap_or_else(|| panic!("{}: no ttl in {member}", self.what))
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad ttl in {member}", self.what))
    }
}

rule_tests!(hits_misses_and_revalidations_say_what_happened);
/// A miss that is stored, a hit with the freshness left, a request that
/// asked for the origin, a stale entry revalidated, an uncacheable answer,
/// another variant of a stored URL.
async fn hits_misses_and_revalidations_say_what_happened(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script("/a", Script::ok("a").cc("max-age=60"));
    let miss = fx.get("/a", &[]).await;
    miss.expect(200, "MISS", "a#1");
    assert_eq!(
        miss.edge_status(),
        "edge; fwd=uri-miss; fwd-status=200; stored"
    );
    let hit = fx.get("/a", &[]).await;
    hit.expect(200, "HIT", "a#1");
    assert!(
        hit.edge_status().starts_with("edge; hit; ttl="),
        "{}",
        hit.what
    );
    assert!((59..=60).contains(&hit.ttl()), "{}", hit.ttl());

    let reload = fx.get("/a", &[("cache-control", "no-cache")]).await;
    reload.expect(200, "MISS", "a#2");
    assert_eq!(
        reload.edge_status(),
        "edge; fwd=request; fwd-status=200; stored"
    );

    // Stale on arrival (Age past max-age), then confirmed by a 304.
    fx.origin.script(
        "/s",
        Script::ok("s")
            .cc("max-age=60")
            .header("age", "100")
            .header("etag", "\"v1\""),
    );
    fx.get("/s", &[]).await.expect(200, "MISS", "s#1");
    let revalidated = fx.get("/s", &[]).await;
    revalidated.expect(200, "REVALIDATED", "s#1");
    let member = revalidated.edge_status();
    assert!(
        member.starts_with("edge; fwd=stale; fwd-status=304; ttl=") && member.ends_with("; stored"),
        "{member}"
    );
    assert!(revalidated.ttl() < 0, "still stale after the 304: {member}");

    fx.origin.script("/n", Script::ok("n").cc("no-store"));
    let pass = fx.get("/n", &[]).await;
    pass.expect(200, "BYPASS", "n#1");
    assert_eq!(pass.edge_status(), "edge; fwd=uri-miss; fwd-status=200");

    fx.origin.script(
        "/v",
        Script::ok("v")
            .cc("max-age=60")
            .header("vary", "accept-language"),
    );
    fx.get("/v", &[("accept-language", "en")])
        .await
        .expect(200, "MISS", "v#1");
    let other = fx.get("/v", &[("accept-language", "fr")]).await;
    other.expect(200, "MISS", "v#2");
    assert_eq!(
        other.edge_status(),
        "edge; fwd=vary-miss; fwd-status=200; stored"
    );
}

rule_tests!(stale_answers_name_the_rule_that_allowed_them);
/// `stale-while-revalidate` is a hit with a negative ttl; `stale-if-error`
/// went forward, and says what the origin answered, if anything.
async fn stale_answers_name_the_rule_that_allowed_them(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/swr",
        Script::ok("swr")
            .cc("max-age=60, stale-while-revalidate=600")
            .header("age", "90"),
    );
    fx.get("/swr", &[]).await.expect(200, "MISS", "swr#1");
    let stale = fx.get("/swr", &[]).await;
    stale.expect(200, "STALE", "swr#1");
    let member = stale.edge_status();
    assert!(member.starts_with("edge; hit; ttl=-"), "{member}");
    assert!(
        member.ends_with("; detail=stale-while-revalidate"),
        "{member}"
    );

    fx.origin.script(
        "/sie",
        Script::ok("sie")
            .cc("max-age=60, stale-if-error=600")
            .header("age", "90"),
    );
    fx.get("/sie", &[]).await.expect(200, "MISS", "sie#1");
    fx.origin.script("/sie", Script::ok("down").status(503));
    let failed = fx.get("/sie", &[]).await;
    failed.expect(200, "STALE", "sie#1");
    let member = failed.edge_status();
    assert!(
        member.starts_with("edge; fwd=stale; fwd-status=503; ttl=-"),
        "{member}"
    );
    assert!(member.ends_with("; detail=stale-if-error"), "{member}");
    fx.origin.script("/sie", Script::fail());
    let unreachable = fx.get("/sie", &[]).await;
    unreachable.expect(200, "STALE", "sie#1");
    let member = unreachable.edge_status();
    assert!(member.starts_with("edge; fwd=stale; ttl=-"), "{member}");
}

rule_tests!(the_origins_own_members_come_first);
/// A response that already carries `Cache-Status` (the origin's own
/// caches) keeps it; this cache's member is appended, on a miss and on a
/// hit.
async fn the_origins_own_members_come_first(mode: Mode) {
    let fx = Fx::start(mode).await;
    fx.origin.script(
        "/o",
        Script::ok("o")
            .cc("max-age=60")
            .header("cache-status", "origin-cache; hit; ttl=30"),
    );
    for (cache, body) in [("MISS", "o#1"), ("HIT", "o#1")] {
        let answer = fx.get("/o", &[]).await;
        answer.expect(200, cache, body);
        let members = answer.cache_status();
        assert_eq!(members.len(), 2, "{members:?}");
        assert_eq!(members[0], "origin-cache; hit; ttl=30");
        assert!(members[1].starts_with("edge; "), "{members:?}");
    }
}

/// Requests that waited for a concurrent miss say `collapsed`; exactly one
/// went forward itself. (Origin routes: the fetch path collapses the same
/// way through the same driver.)
#[tokio::test]
async fn collapsed_requests_say_so() {
    let fx = Fx::start(Mode::ROUTE).await;
    fx.origin.script(
        "/slow",
        Script::ok("slow")
            .cc("max-age=600")
            .delay(Duration::from_millis(500)),
    );
    let answers = futures::future::join_all((0..6).map(|_| fx.get("/slow", &[]))).await;
    assert_eq!(fx.origin.requests("/slow"), 1);
    let members: Vec<String> = answers.iter().map(|a| a.edge_status()).collect();
    let leaders = members
        .iter()
        .filter(|m| *m == "edge; fwd=uri-miss; fwd-status=200; stored")
        .count();
    let followers = members
        .iter()
        .filter(|m| m.starts_with("edge; fwd=uri-miss; ttl=") && m.ends_with("; collapsed"))
        .count();
    assert_eq!((leaders, followers), (1, 5), "{members:?}");
}

/// A HEAD that misses went forward for its method, and a pass-through of
/// an app the cache is not active for says `bypass`.
#[tokio::test]
async fn head_misses_are_forwarded_for_their_method() {
    let fx = Fx::start(Mode::ROUTE).await;
    fx.origin.script("/h", Script::ok("h").cc("max-age=60"));
    let head = fx.send("web", Method::HEAD, "/h", &[], None).await;
    assert_eq!(head.status, 200, "{}", head.what);
    assert_eq!(head.edge_status(), "edge; fwd=method; fwd-status=200");
}
