//! Outbound HTTP from guests: denied by default, allowed per destination,
//! never to internal addresses, bounded in count and time.
//!
//! Only 127.0.0.1 is ever connected to. Private and metadata addresses are
//! reached through static host entries and refused before any connection.

use std::time::Duration;

use edge_fixtures::{HELLO, SSRF, SUBREQUEST_FLOOD};

use crate::common::{TestNode, TestOrigin, app, metric_value};

async fn get_text(node: &TestNode, host: &str, path: &str) -> String {
    let resp = node.get(host, path).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn outbound_count(node: &TestNode, app: &str, result: &str) -> Option<f64> {
    let text = node.metrics_text().await;
    metric_value(
        &text,
        "edge_outbound_requests_total",
        &[("app", app), ("result", result)],
    )
}

#[tokio::test]
async fn without_an_allowlist_every_internal_target_is_refused() {
    let origin = TestOrigin::start().await;
    let node = TestNode::builder()
        .app(app("ssrf", SSRF))
        .app(app("hello", HELLO))
        .start()
        .await;
    let report = get_text(&node, "ssrf.test", "/").await;
    assert_eq!(report.lines().count(), 11, "{report}");
    for line in report.lines() {
        assert!(line.contains("error:"), "reached: {line}");
    }
    let own = get_text(
        &node,
        "ssrf.test",
        &format!("/?url=http://127.0.0.1:{}/", origin.addr.port()),
    )
    .await;
    assert!(own.contains("HttpRequestDenied"), "{own}");
    assert_eq!(origin.hits(), 0);
    assert!(outbound_count(&node, "ssrf", "denied-destination").await >= Some(12.0));
    assert_eq!(
        get_text(&node, "hello.test", "/").await,
        "Hello from the edge!\n"
    );
}

#[tokio::test]
async fn an_allowed_destination_is_reached_and_nothing_else() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let node = TestNode::builder()
        .app(app("ssrf", SSRF).outbound(
            &[
                &format!("http://origin.test:{port}"),
                "http://internal.test",
                "http://metadata.test",
                "http://public-name.test",
            ],
            None,
        ))
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
            o.hosts
                .insert("internal.test".into(), "10.0.0.7".parse().unwrap());
            o.hosts
                .insert("metadata.test".into(), "169.254.169.254".parse().unwrap());
            o.hosts.insert(
                "public-name.test".into(),
                "::ffff:127.0.0.1".parse().unwrap(),
            );
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await;

    let ok = get_text(
        &node,
        "ssrf.test",
        &format!("/?url=http://origin.test:{port}/"),
    )
    .await;
    assert_eq!(ok, "status 200\n");
    assert_eq!(origin.hits(), 1);

    // Allowed by name, but the name resolves to an internal address: refused
    // before connecting (nothing listens there, and nothing is sent there).
    for url in [
        "http://internal.test/",
        "http://metadata.test/latest/meta-data/",
        "http://public-name.test/",
    ] {
        let refused = get_text(&node, "ssrf.test", &format!("/?url={url}")).await;
        assert!(
            refused.contains("DestinationIpProhibited"),
            "{url}: {refused}"
        );
    }
    // Same origin on a port that is not allowed: refused by policy.
    let other_port = get_text(&node, "ssrf.test", "/?url=http://origin.test:1/").await;
    assert!(other_port.contains("HttpRequestDenied"), "{other_port}");
    assert_eq!(origin.hits(), 1);
    assert_eq!(outbound_count(&node, "ssrf", "ok").await, Some(1.0));
    assert_eq!(
        outbound_count(&node, "ssrf", "denied-address").await,
        Some(3.0)
    );
}

#[tokio::test]
async fn a_range_allows_internal_addresses_and_the_deny_list_wins() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let start = |deny: &'static [&'static str]| {
        TestNode::builder()
            .app(app("ssrf", SSRF).outbound(&[&format!("http://origin.test:{port}")], None))
            .app(
                crate::common::origin_app("web", &format!("http://127.0.0.1:{port}"))
                    .hosts(&["web.test"]),
            )
            .outbound(move |o| {
                o.hosts
                    .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
                o.allow_private_addresses = vec!["127.0.0.0/8".parse().unwrap()];
                o.deny = deny.iter().map(|d| d.parse().unwrap()).collect();
            })
            .start()
    };
    let url = format!("/?url=http://origin.test:{port}/");

    // The range allows the operator's name; the operator's own origin
    // route reaches the origin too.
    let node = start(&[]).await;
    assert_eq!(get_text(&node, "ssrf.test", &url).await, "status 200\n");
    assert_eq!(node.get("web.test", "/").await.status(), 200);
    assert_eq!(origin.hits(), 2);
    drop(node);

    // Denied: neither the guest (through the operator's name) nor the
    // operator's origin route connects.
    let node = start(&["127.0.0.1/32"]).await;
    let refused = get_text(&node, "ssrf.test", &url).await;
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    let response = node.get("web.test", "/").await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        response
            .headers()
            .get("x-edge-error")
            .map(|v| v.to_str().unwrap()),
        Some("origin-prohibited")
    );
    assert_eq!(origin.hits(), 2, "nothing reached the origin");
    assert_eq!(
        outbound_count(&node, "ssrf", "denied-address").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn loopback_needs_the_operators_permission_even_when_allowed_by_name() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let node = TestNode::builder()
        .app(app("ssrf", SSRF).outbound(
            &[
                &format!("http://origin.test:{port}"),
                &format!("http://127.0.0.1:{port}"),
            ],
            None,
        ))
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
        })
        .start()
        .await;
    for url in [
        format!("http://origin.test:{port}/"),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let refused = get_text(&node, "ssrf.test", &format!("/?url={url}")).await;
        assert!(
            refused.contains("DestinationIpProhibited"),
            "{url}: {refused}"
        );
    }
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn an_operators_name_scoped_to_a_tenant_is_refused_to_the_others() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let allow = [format!("http://acme-origin.test:{port}")];
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let node = TestNode::builder()
        .app(app("ssrf", SSRF).tenant("acme").outbound(&allow, None))
        .app(
            app("other", SSRF)
                .tenant("other")
                .hosts(&["other.test"])
                .outbound(&allow, None),
        )
        .outbound(|o| {
            o.hosts.insert(
                "acme-origin.test".into(),
                edge_node::config::HostEntry::Tenants {
                    address: "127.0.0.1".parse().unwrap(),
                    tenants: ["acme".to_string()].into(),
                },
            );
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await;
    let url = format!("/?url=http://acme-origin.test:{port}/");
    assert_eq!(get_text(&node, "ssrf.test", &url).await, "status 200\n");
    assert_eq!(origin.hits(), 1);
    // The other tenant listed the same name in its own allowlist: refused
    // as a private address, before DNS or any connection.
    let refused = get_text(&node, "other.test", &url).await;
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    assert_eq!(origin.hits(), 1);
    assert_eq!(
        outbound_count(&node, "other", "denied-address").await,
        Some(1.0)
    );
    // Still refused after acme's connection to it is pooled.
    assert_eq!(get_text(&node, "ssrf.test", &url).await, "status 200\n");
    let refused = get_text(&node, "other.test", &url).await;
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn subrequests_are_capped_per_request() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let node = TestNode::builder()
        .app(
            app("flood", SUBREQUEST_FLOOD)
                .outbound(&[&format!("http://origin.test:{port}")], Some(5)),
        )
        .app(app("hello", HELLO))
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await;
    let report = get_text(
        &node,
        "flood.test",
        &format!("/?n=20&url=http://origin.test:{port}/"),
    )
    .await;
    // The cap is what is asserted: exactly 15 refusals, at most 5 reach the
    // origin. (Rarely, one of the 5 allowed sends fails with "connection
    // reset" when a pooled connection is reused right after the guest
    // dropped the previous response unread — a known, separate issue.)
    assert!(report.contains(", failed 1"), "{report}");
    assert!(
        origin.hits() <= 5 && origin.hits() >= 4,
        "{}",
        origin.hits()
    );
    assert_eq!(
        outbound_count(&node, "flood", "subrequest-limit").await,
        Some(15.0)
    );
    assert_eq!(
        get_text(&node, "hello.test", "/").await,
        "Hello from the edge!\n"
    );
    // The cap is per incoming request: the next one gets five more, and
    // none of them is refused by the cap.
    let _ = get_text(
        &node,
        "flood.test",
        &format!("/?n=5&url=http://origin.test:{port}/"),
    )
    .await;
    assert_eq!(
        outbound_count(&node, "flood", "subrequest-limit").await,
        Some(15.0)
    );
}

#[tokio::test]
async fn a_slow_origin_hits_the_first_byte_timeout() {
    let origin = TestOrigin::start().await;
    let port = origin.addr.port();
    let node = TestNode::builder()
        .app(app("ssrf", SSRF).outbound(&[&format!("http://origin.test:{port}")], None))
        .outbound(|o| {
            o.hosts
                .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
            o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
            o.first_byte_timeout = Duration::from_millis(500);
        })
        .start()
        .await;
    let report = get_text(
        &node,
        "ssrf.test",
        &format!("/?url=http://origin.test:{port}/slow"),
    )
    .await;
    assert!(report.starts_with("error:"), "{report}");
    assert_eq!(outbound_count(&node, "ssrf", "timeout").await, Some(1.0));
}
