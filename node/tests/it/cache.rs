//! The shared cache in front of an app, against the `cacheable` example
//! (its query string scripts the response headers; its body is unique per
//! execution, so a repeated body is a cache hit).

use edge_fixtures::{CACHEABLE, HELLO};

use crate::common::{TestNode, app, metric_value};

async fn get(
    node: &TestNode,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = node.client().get(node.url("web.test", path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn x_cache(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn node() -> TestNode {
    let node = TestNode::builder()
        .app(app("web", CACHEABLE).hosts(&["web.test"]))
        .app(app("hello", HELLO))
        .start()
        .await;
    // The cache becomes active for an app once it has answered with caching
    // headers: the first such answer passes by.
    let (_, headers, _) = get(&node, "/warm?cc=max-age%3D60", &[]).await;
    assert_eq!(x_cache(&headers), "BYPASS");
    let (_, headers, _) = get(&node, "/warm?cc=max-age%3D60", &[]).await;
    assert_eq!(
        x_cache(&headers),
        "MISS",
        "active from the second answer on"
    );
    node
}

#[tokio::test]
async fn fresh_responses_are_served_from_the_cache_with_age() {
    let node = node().await;
    let path = "/a?cc=max-age%3D60";
    let (status, first_headers, first) = get(&node, path, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(x_cache(&first_headers), "MISS");
    let (_, headers, second) = get(&node, path, &[]).await;
    assert_eq!(second, first, "served from the cache");
    assert_eq!(x_cache(&headers), "HIT");
    assert!(headers.get("age").is_some());
    // Another path, or another query, is another resource.
    assert_ne!(get(&node, "/b?cc=max-age%3D60", &[]).await.2, first);
    // A response without freshness is not stored.
    let (_, headers, one) = get(&node, "/plain", &[]).await;
    assert_eq!(x_cache(&headers), "BYPASS");
    assert_ne!(get(&node, "/plain", &[]).await.2, one);
    // Nor is one of another app (hello has no Cache-Control).
    let hello = node.get("hello.test", "/").await;
    assert_eq!(hello.headers()["x-cache"], "BYPASS");

    // Operators see it: results per app, bytes held.
    let text = node.metrics_text().await;
    let count = |result| {
        metric_value(
            &text,
            "edge_cache_requests_total",
            &[("app", "web"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert!(
        count("hit") >= 1.0 && count("miss") >= 3.0 && count("bypass") >= 2.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "edge_cache_bytes", &[]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
}

#[tokio::test]
async fn no_store_private_and_authorization_are_not_cached() {
    let node = node().await;
    for path in [
        "/ns?cc=no-store%2C+max-age%3D60",
        "/pv?cc=private%2C+max-age%3D60",
    ] {
        let (_, headers, one) = get(&node, path, &[]).await;
        assert_eq!(x_cache(&headers), "BYPASS", "{path}");
        assert_ne!(get(&node, path, &[]).await.2, one, "{path}");
    }
    let auth = [("authorization", "Bearer secret")];
    let (_, headers, one) = get(&node, "/auth?cc=max-age%3D60", &auth).await;
    assert_eq!(x_cache(&headers), "BYPASS");
    assert_ne!(get(&node, "/auth?cc=max-age%3D60", &auth).await.2, one);
    // s-maxage makes an authorized response shareable.
    let (_, _, one) = get(&node, "/auth2?cc=s-maxage%3D60", &auth).await;
    assert_eq!(get(&node, "/auth2?cc=s-maxage%3D60", &auth).await.2, one);
    // The request can refuse the stored answer.
    let path = "/rq?cc=max-age%3D60";
    let (_, _, stored) = get(&node, path, &[]).await;
    assert_ne!(
        get(&node, path, &[("cache-control", "no-cache")]).await.2,
        stored
    );
    let (_, _, refreshed) = get(&node, path, &[]).await;
    assert_ne!(
        get(&node, path, &[("cache-control", "max-age=0")]).await.2,
        refreshed
    );
}

#[tokio::test]
async fn vary_keys_variants_and_unkeyed_headers_change_nothing() {
    let node = node().await;
    let path = "/v?cc=max-age%3D60&vary=accept-language";
    let (_, _, en) = get(&node, path, &[("accept-language", "en")]).await;
    let (_, _, fr) = get(&node, path, &[("accept-language", "fr")]).await;
    assert_ne!(en, fr);
    let (_, headers, en_again) = get(
        &node,
        path,
        &[("accept-language", "en"), ("x-forwarded-host", "evil.test")],
    )
    .await;
    assert_eq!(en_again, en);
    assert_eq!(x_cache(&headers), "HIT");
    assert_eq!(get(&node, path, &[("accept-language", "fr")]).await.2, fr);
    // Vary: * is never stored.
    let star = "/star?cc=max-age%3D60&vary=*";
    let (_, _, one) = get(&node, star, &[]).await;
    assert_ne!(get(&node, star, &[]).await.2, one);
}

#[tokio::test]
async fn surrogate_headers_steer_the_edge_and_are_stripped() {
    let node = node().await;
    // Surrogate-Control overrides Cache-Control (private here) for the edge.
    let path = "/s?cc=private&sc=max-age%3D60&sk=red+blue";
    let (_, headers, one) = get(&node, path, &[]).await;
    assert!(headers.get("surrogate-control").is_none());
    assert!(headers.get("surrogate-key").is_none());
    assert_eq!(
        headers["cache-control"], "private",
        "the client still sees the origin's Cache-Control"
    );
    let (_, headers, two) = get(&node, path, &[("x-edge-debug", "surrogate-key")]).await;
    assert_eq!(two, one);
    assert_eq!(headers["surrogate-key"], "red blue");
}

#[tokio::test]
async fn conditional_requests_and_head_are_answered_from_a_stored_get() {
    let node = node().await;
    let path = "/c?cc=max-age%3D60&etag=%22v1%22";
    let (_, _, body) = get(&node, path, &[]).await;
    let (status, headers, empty) = get(&node, path, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((status, empty.as_str()), (304, ""));
    assert_eq!(x_cache(&headers), "HIT");
    assert_eq!(
        get(&node, path, &[("if-none-match", "\"v2\"")]).await.2,
        body
    );
    let head = node
        .client()
        .head(node.url("web.test", path))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(head.text().await.unwrap(), "");
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_concurrent_misses_collapse() {
    let node = node().await;
    let path = "/u?cc=max-age%3D60";
    let (_, _, stored) = get(&node, path, &[]).await;
    assert_eq!(get(&node, path, &[]).await.2, stored);
    let post = node
        .client()
        .post(node.url("web.test", path))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_ne!(
        get(&node, path, &[]).await.2,
        stored,
        "the POST invalidated it"
    );

    // 20 concurrent requests for a cold resource: one execution.
    let cold = "/cold?cc=max-age%3D60";
    let requests = (0..20).map(|_| {
        let client = node.client();
        let url = node.url("web.test", cold);
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    });
    let bodies: Vec<String> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let text = node.metrics_text().await;
    let hits = metric_value(
        &text,
        "edge_cache_requests_total",
        &[("app", "web"), ("result", "hit")],
    )
    .unwrap_or(0.0);
    assert!(hits >= 19.0, "{text}");
}

/// An uncacheable answer is never shared with other requests, concurrent
/// or not: each reaches the app (after the first, without waiting for one
/// another: "hit-for-pass").
#[tokio::test]
async fn uncacheable_answers_are_never_shared() {
    let node = node().await;
    let path = "/pass?cc=no-store";
    let (_, headers, _) = get(&node, path, &[]).await;
    assert_eq!(x_cache(&headers), "BYPASS");
    let requests = (0..10).map(|_| {
        let client = node.client();
        let url = node.url("web.test", path);
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    });
    let bodies: std::collections::HashSet<String> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(bodies.len(), 10, "every request ran the app");
}
