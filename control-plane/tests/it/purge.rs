//! Origin apps (no component, live once created) and cache purges: what
//! the API accepts and refuses, and what reaches nodes in the signed
//! snapshot. Nodes applying purges are tested on the node side; here a
//! node is played by its token and its reports.

use edge_common::api::{
    App, AppList, AppStatus, NewApp, NodeReport, OriginSet, PurgeBody, PurgeRecorded, SetOrigin,
};
use edge_common::signing::VerifyingKey;
use edge_common::sync::{ApplyOutcome, PurgeTarget, SignedSnapshot, Snapshot};
use edge_cp::keys::KeySource;
use edge_fixtures::HELLO;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::common::{Client, TestCp, answer, assert_error, edgectl, new_app, new_origin_app};

/// The snapshot nodes get now, its signature checked. Read with an admin
/// token: a node token would count as a node seen recently, which
/// `edgectl purge` then waits for.
async fn snapshot(cp: &TestCp) -> Snapshot {
    let signed: SignedSnapshot = cp.admin().get("/v1/sync?epoch=none&wait=0s").await;
    let key = VerifyingKey::from_hex(
        &edge_cp::sync_public_key(&KeySource::DataDir(cp.dir.path().into())).unwrap(),
    )
    .unwrap();
    signed.verify(&key).unwrap()
}

/// `POST /v1/apps` with a `NewApp`, or raw JSON a client should not send.
async fn create(client: &Client, body: &impl Serialize) -> (u16, Value) {
    client.send("POST", "/v1/apps", body).await
}

/// A purge with a `PurgeBody`, or raw JSON a client should not send.
async fn purge(client: &Client, app: &str, body: &impl Serialize) -> (u16, Value) {
    client
        .send("POST", &format!("/v1/apps/{app}/purge"), body)
        .await
}

fn purge_all() -> PurgeBody {
    PurgeBody {
        all: Some(true),
        ..PurgeBody::default()
    }
}

fn set_origin(origin: &str, forward_override_headers: Option<bool>) -> SetOrigin {
    SetOrigin {
        origin: origin.to_string(),
        forward_override_headers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_app_is_live_at_once_and_has_no_component() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    acme.create_app("web", &["web.test"]).await;

    let proxy = new_origin_app(
        "proxy",
        &["proxy.test", "*.proxy.test"],
        "https://origin.test:8443/base",
    );
    let created: App = answer(create(&acme, &proxy).await, 201);
    assert_eq!(
        created.origin.as_deref(),
        Some("https://origin.test:8443/base")
    );
    assert_eq!(created.active_version, None);
    let listed: AppList = acme.get("/v1/apps").await;
    let origins: Vec<_> = listed
        .apps
        .iter()
        .map(|a| (a.name.as_str(), a.origin.as_deref()))
        .collect();
    assert_eq!(
        origins,
        [
            ("proxy", Some("https://origin.test:8443/base")),
            ("web", None),
        ]
    );

    // In the snapshot at once, as an origin (never as a component app).
    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, created.updated_revision);
    assert!(snap.apps.is_empty(), "{snap:?}");
    assert_eq!(snap.origins.len(), 1);
    assert_eq!(snap.origins[0].tenant.as_str(), "acme");
    assert_eq!(snap.origins[0].name.as_str(), "proxy");
    assert_eq!(snap.origins[0].origin, "https://origin.test:8443/base");
    let hosts: Vec<String> = snap.origins[0]
        .hosts
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(hosts, ["proxy.test", "*.proxy.test"]);

    // Its hostnames are as taken as any app's.
    let (status, body) = create(
        &other,
        &new_origin_app("steal", &["x.proxy.test"], "http://o.test"),
    )
    .await;
    assert_error(status, &body, 409, "host-taken");

    // No component: no uploads, deploys, rollbacks or config values.
    let (status, body) = acme.upload("proxy", std::fs::read(HELLO).unwrap()).await;
    let error = assert_error(status, &body, 409, "origin-app");
    assert!(error.message.contains("origin app"), "{error:?}");
    for (method, path, body) in [
        (
            "POST",
            "/v1/apps/proxy/deploy",
            Some(json!({ "version": 1 })),
        ),
        ("POST", "/v1/apps/proxy/rollback", None),
        ("POST", "/v1/apps/proxy/rollback", Some(json!({ "to": 1 }))),
        ("PATCH", "/v1/apps/proxy/config", Some(json!({ "A": "b" }))),
    ] {
        let (status, response) = acme.call(method, path, body).await;
        assert_error(status, &response, 409, "origin-app");
    }

    // The origin can be changed (bumping the revision); a component app
    // has none, and another tenant's app is not there.
    let set: OriginSet = answer(
        acme.send(
            "PUT",
            "/v1/apps/proxy/origin",
            &set_origin("HTTP://Origin2.TEST", None),
        )
        .await,
        200,
    );
    assert_eq!(
        set.origin, "http://origin2.test",
        "scheme and host lowercased"
    );
    assert!(set.revision > snap.revision);
    assert_eq!(snapshot(&cp).await.origins[0].origin, "http://origin2.test");
    let (status, body) = acme
        .send("PUT", "/v1/apps/proxy/origin", &set_origin("ftp://x", None))
        .await;
    assert_error(status, &body, 400, "invalid-origin");
    let (status, body) = acme
        .send(
            "PUT",
            "/v1/apps/web/origin",
            &set_origin("http://o.test", None),
        )
        .await;
    assert_error(status, &body, 409, "not-origin-app");
    let (status, body) = other
        .send(
            "PUT",
            "/v1/apps/proxy/origin",
            &set_origin("http://o.test", None),
        )
        .await;
    assert_error(status, &body, 404, "not-found");
    let status: AppStatus = acme.get("/v1/apps/proxy/status").await;
    assert_eq!(status.origin.as_deref(), Some("http://origin2.test"));

    // Deleting it takes it out of the snapshot.
    let (status, _) = acme.call("DELETE", "/v1/apps/proxy", None).await;
    assert_eq!(status, 200);
    assert!(snapshot(&cp).await.origins.is_empty());
}

/// `forward_override_headers`: set when an origin app is created or its
/// origin changed (kept when a change does not name it), shown with the
/// app, carried by the signed snapshot, refused on a component app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_override_headers_is_an_origin_app_option_that_reaches_the_snapshot() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let forwarding = |snap: &Snapshot, name: &str| {
        snap.origins
            .iter()
            .find(|o| o.name.as_str() == name)
            .map(|o| o.forward_override_headers)
    };

    let open = NewApp {
        forward_override_headers: Some(true),
        ..new_origin_app("open", &["open.test"], "http://origin.test")
    };
    let created: App = answer(create(&acme, &open).await, 201);
    assert_eq!(created.forward_override_headers, Some(true));
    let plain: App = answer(
        create(
            &acme,
            &new_origin_app("plain", &["plain.test"], "http://origin.test"),
        )
        .await,
        201,
    );
    assert_eq!(
        plain.forward_override_headers,
        Some(false),
        "off by default"
    );
    let fetched: App = acme.get("/v1/apps/open").await;
    assert_eq!(fetched.forward_override_headers, Some(true));
    // On the wire: a component app has no such field at all.
    let (_, listed) = acme.call("GET", "/v1/apps", None).await;
    let shown: Vec<_> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_object().unwrap();
            (
                a["name"].clone(),
                a["origin"].clone(),
                a.get("forward_override_headers").cloned(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                json!("open"),
                json!("http://origin.test"),
                Some(json!(true))
            ),
            (
                json!("plain"),
                json!("http://origin.test"),
                Some(json!(false))
            ),
            // A component app keeps `"origin": null` and has no option.
            (json!("web"), Value::Null, None),
        ]
    );
    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, plain.updated_revision);
    assert_eq!(forwarding(&snap, "open"), Some(true));
    assert_eq!(forwarding(&snap, "plain"), Some(false));

    // A component app has no origin to forward anything to.
    for value in [true, false] {
        let comp = NewApp {
            forward_override_headers: Some(value),
            ..new_app("comp", &["comp.test"])
        };
        let (status, body) = create(&acme, &comp).await;
        let error = assert_error(status, &body, 400, "origin-only-field");
        assert!(error.message.contains("forward_override_headers"), "{body}");
    }
    let (status, body) = acme.call("GET", "/v1/apps/comp", None).await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = create(
        &acme,
        &json!({ "name": "odd", "hosts": ["odd.test"], "origin": "http://origin.test", "forward_override_headers": "yes" }),
    )
    .await;
    assert_error(status, &body, 400, "invalid-json");
    assert_eq!(
        snapshot(&cp).await.revision,
        snap.revision,
        "nothing changed"
    );

    // A change of origin keeps the option unless it names it; each change
    // bumps the revision and reaches the snapshot.
    let put = |app: &'static str, body: Value| {
        let acme = acme.clone();
        async move {
            acme.send("PUT", &format!("/v1/apps/{app}/origin"), &body)
                .await
        }
    };
    let set = |app: &'static str, origin: &'static str, forward: Option<bool>| {
        let acme = acme.clone();
        async move {
            let body = set_origin(origin, forward);
            let set: OriginSet = answer(
                acme.send("PUT", &format!("/v1/apps/{app}/origin"), &body)
                    .await,
                200,
            );
            set
        }
    };
    let kept = set("open", "http://origin2.test", None).await;
    assert_eq!(
        (kept.origin.as_str(), kept.forward_override_headers),
        ("http://origin2.test", true),
        "kept"
    );
    assert!(kept.revision > snap.revision);
    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, kept.revision);
    assert_eq!(forwarding(&snap, "open"), Some(true));
    let off = set("open", "http://origin2.test", Some(false)).await;
    assert!(!off.forward_override_headers);
    assert!(off.revision > kept.revision);
    let on = set("plain", "http://origin.test", Some(true)).await;
    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, on.revision);
    assert_eq!(forwarding(&snap, "open"), Some(false));
    assert_eq!(forwarding(&snap, "plain"), Some(true));
    let fetched: App = acme.get("/v1/apps/plain").await;
    assert_eq!(fetched.forward_override_headers, Some(true));
    assert_eq!(fetched.updated_revision, on.revision);

    // Refused: on a component app, with a value that is not a boolean.
    let (status, body) = acme
        .send(
            "PUT",
            "/v1/apps/web/origin",
            &set_origin("http://origin.test", Some(true)),
        )
        .await;
    assert_error(status, &body, 409, "not-origin-app");
    let (status, body) = put(
        "plain",
        json!({ "origin": "http://origin.test", "forward_override_headers": 1 }),
    )
    .await;
    assert_error(status, &body, 400, "invalid-json");
    assert_eq!(
        snapshot(&cp).await.revision,
        snap.revision,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_origins_are_refused_with_what_is_wrong() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let too_long = format!("http://origin.test/{}", "a".repeat(2048));
    for (origin, says) in [
        ("ftp://origin.test", "http"),
        ("origin.test", "http"),
        ("http://", "no host"),
        ("http:///path", "no host"),
        ("http://origin.test/a?b=1", "query"),
        ("http://origin.test/#top", "fragment"),
        ("http://user:secret@origin.test", "credentials"),
        ("http://origin.test:99999", "port"),
        ("http://bad host", "invalid host"),
        (too_long.as_str(), "longer than 2048"),
    ] {
        let (status, body) = create(&acme, &new_origin_app("proxy", &["proxy.test"], origin)).await;
        let message = assert_error(status, &body, 400, "invalid-origin").message;
        assert!(message.contains(says), "{origin}: {message}");
    }
    let listed: AppList = acme.get("/v1/apps").await;
    assert!(listed.apps.is_empty(), "nothing was created: {listed:?}");
    assert!(snapshot(&cp).await.origins.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_get_consecutive_ids_and_reach_the_snapshot() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let (status, body) = create(
        &acme,
        &new_origin_app("proxy", &["proxy.test"], "http://origin.test"),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let admin = cp.admin();
    let url = |url: &str, soft: bool| PurgeBody {
        url: Some(url.into()),
        soft,
        ..PurgeBody::default()
    };
    let cases = [
        (&acme, "/v1/apps/web/purge", url("/a?b=1", false)),
        (&acme, "/v1/apps/web/purge", url("https://web.test/x", true)),
        (
            &acme,
            "/v1/apps/proxy/purge",
            PurgeBody {
                key: Some("product-7".into()),
                ..PurgeBody::default()
            },
        ),
        (
            &acme,
            "/v1/apps/proxy/purge",
            PurgeBody {
                soft: true,
                ..purge_all()
            },
        ),
        (&admin, "/v1/apps/web/purge?tenant=acme", purge_all()),
    ];
    let mut answers = Vec::new();
    for (client, path, body) in cases {
        let recorded: PurgeRecorded = answer(client.send("POST", path, &body).await, 202);
        answers.push(recorded);
    }
    let ids: Vec<u64> = answers.iter().map(|a| a.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert!(
        answers.windows(2).all(|w| w[1].revision > w[0].revision),
        "each bumps the revision"
    );

    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, answers[4].revision);
    let carried: Vec<_> = snap
        .purges
        .iter()
        .map(|p| {
            (
                p.id,
                p.tenant.as_str(),
                p.app.as_str(),
                p.target.clone(),
                p.soft,
            )
        })
        .collect();
    let url = |u: &str| PurgeTarget::Url { url: u.into() };
    assert_eq!(
        carried,
        vec![
            (1, "acme", "web", url("/a?b=1"), false),
            (2, "acme", "web", url("https://web.test/x"), true),
            (
                3,
                "acme",
                "proxy",
                PurgeTarget::Key {
                    key: "product-7".into()
                },
                false
            ),
            (4, "acme", "proxy", PurgeTarget::All, true),
            (5, "acme", "web", PurgeTarget::All, false),
        ]
    );
    // On the wire, flat with a `kind`, as nodes read it.
    let node = Client::new(&cp, cp.node_token("probe"));
    let (_, body) = node.call("GET", "/v1/sync?since=0&wait=0s", None).await;
    let payload: Value = serde_json::from_str(body["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload["purges"][2],
        json!({ "id": 3, "tenant": "acme", "app": "proxy", "kind": "key", "key": "product-7", "soft": false, "created_unix": payload["purges"][2]["created_unix"] })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_foreign_purges_are_refused() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    acme.create_app("web", &["web.test"]).await;
    let revision = snapshot(&cp).await.revision;

    for body in [
        json!({}),
        json!({ "soft": true }),
        json!({ "url": "/a", "key": "k" }),
        json!({ "url": "/a", "all": true }),
        json!({ "all": false }),
        json!({ "url": "/a", "hard": true }),
        json!({ "url": "ftp://web.test/a" }),
        json!({ "url": "relative/path" }),
        json!({ "url": format!("/{}", "a".repeat(2048)) }),
        json!({ "key": "" }),
        json!({ "key": "two words" }),
        json!({ "key": "k".repeat(257) }),
        json!({ "url": 7 }),
        json!(["url", "/a"]),
    ] {
        let (status, response) = purge(&acme, "web", &body).await;
        assert_error(status, &response, 400, "invalid-purge");
    }
    let (status, response) = acme
        .call("POST", "/v1/apps/web/purge", Some(json!("not an object")))
        .await;
    assert_error(status, &response, 400, "invalid-purge");

    // Another tenant's app is not there; neither is a missing one.
    let (status, response) = purge(&other, "web", &purge_all()).await;
    assert_error(status, &response, 404, "not-found");
    let (status, response) = purge(&acme, "missing", &purge_all()).await;
    assert_error(status, &response, 404, "not-found");
    let (status, response) = other
        .send("POST", "/v1/apps/web/purge?tenant=acme", &purge_all())
        .await;
    assert_error(status, &response, 403, "forbidden");
    // Roles: a node may not purge; an admin must name the tenant.
    let node = Client::new(&cp, cp.node_token("node-a"));
    let (status, response) = purge(&node, "web", &purge_all()).await;
    assert_error(status, &response, 403, "forbidden");
    let (status, response) = purge(&cp.admin(), "web", &purge_all()).await;
    assert_error(status, &response, 400, "tenant-required");

    let snap = snapshot(&cp).await;
    assert_eq!(snap.revision, revision, "nothing refused changed anything");
    assert!(snap.purges.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_are_capped_per_tenant_per_minute() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    acme.create_app("web", &["web.test"]).await;
    other.create_app("site", &["site.test"]).await;

    let statuses: Vec<u16> = futures::stream::iter(0..100)
        .map(|i| {
            let acme = acme.clone();
            async move {
                let body = PurgeBody {
                    url: Some(format!("/p{i}")),
                    ..PurgeBody::default()
                };
                purge(&acme, "web", &body).await.0
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");

    // The 101st within the minute: 429 with a Retry-After.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/web/purge", cp.url()))
        .bearer_auth(&acme.token)
        .json(&purge_all())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_error(429, &body, 429, "purge-rate-limited");

    // Other tenants have their own budget.
    let (status, body) = purge(&other, "site", &purge_all()).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<u64> = snapshot(&cp).await.purges.iter().map(|p| p.id).collect();
    assert_eq!(
        ids,
        (1..=101).collect::<Vec<_>>(),
        "refused ones took no id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgectl_creates_origin_apps_and_purges() {
    let cp = TestCp::start().await;
    let url = cp.url();
    let admin = cp.token(edge_cp::auth::Role::Admin, "admin", None);
    let tenant = cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"));
    let (ok, out, err) = edgectl(&url, &admin, &["tenants", "create", "acme"]).await;
    assert!(ok, "{out}{err}");

    let (ok, out, err) = edgectl(
        &url,
        &tenant,
        &[
            "apps",
            "create",
            "proxy",
            "--host",
            "proxy.test",
            "--host",
            "www.proxy.test",
            "--origin",
            "http://origin.test:8080/base",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("created origin app proxy"), "{out}");
    let snap = snapshot(&cp).await;
    assert_eq!(snap.origins[0].origin, "http://origin.test:8080/base");
    assert_eq!(snap.origins[0].hosts.len(), 2);
    let (ok, out, _) = edgectl(&url, &tenant, &["apps", "list"]).await;
    assert!(
        ok && out.contains("origin") && out.contains("http://origin.test:8080/base"),
        "{out}"
    );
    let (ok, _, err) = edgectl(
        &url,
        &tenant,
        &[
            "apps",
            "create",
            "bad",
            "--host",
            "bad.test",
            "--origin",
            "http://o.test/?q",
        ],
    )
    .await;
    assert!(!ok && err.contains("400 invalid-origin"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (ok, _, err) = edgectl(&url, &tenant, &["deploy", "proxy", HELLO]).await;
    assert!(!ok && err.contains("409 origin-app"), "{err}");

    // --no-wait: recorded, not waited for.
    let (ok, out, err) = edgectl(
        &url,
        &tenant,
        &["purge", "proxy", "--url", "/a", "--no-wait"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("purged proxy (url /a, hard) id 1, revision "),
        "{out}"
    );
    let (ok, out, err) = edgectl(
        &url,
        &tenant,
        &["purge", "proxy", "--key", "k", "--soft", "--no-wait"],
    )
    .await;
    assert!(ok && out.contains("(key k, soft) id 2"), "{out}{err}");
    // No node has checked in: nothing to wait for.
    let (ok, out, err) = edgectl(&url, &tenant, &["purge", "proxy", "--all"]).await;
    assert!(
        ok && out.contains("(all, hard) id 3") && out.contains("no node"),
        "{out}{err}"
    );

    // With a node: waits until it reports the purge's revision.
    let node = Client::new(&cp, cp.node_token("node-a"));
    let (status, _) = node.call("GET", "/v1/sync?since=0&wait=0s", None).await;
    assert_eq!(status, 200);
    let before = snapshot(&cp).await.revision;
    let waiting = tokio::spawn({
        let (url, tenant) = (url.clone(), tenant.clone());
        async move {
            edgectl(
                &url,
                &tenant,
                &["purge", "proxy", "--all", "--timeout", "20s"],
            )
            .await
        }
    });
    let revision = next_revision(&node, before).await;
    report(&node, revision, None).await;
    let (ok, out, err) = waiting.await.unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "id 4, revision {revision}: applied on 1/1 nodes in "
        )) && out.trim_end().ends_with(" ms"),
        "{out}"
    );
    // A node refusing that revision fails the wait, with its reason.
    let waiting = tokio::spawn({
        let (url, tenant) = (url.clone(), tenant.clone());
        async move {
            edgectl(
                &url,
                &tenant,
                &["purge", "proxy", "--url", "/b", "--timeout", "20s"],
            )
            .await
        }
    });
    let next = next_revision(&node, revision).await;
    report(&node, next, Some("bad signature")).await;
    let (ok, _, err) = waiting.await.unwrap();
    assert!(
        !ok && err.contains("node-a") && err.contains("bad signature"),
        "{err}"
    );

    // Usage and API errors: one line, non-zero exit.
    let (ok, _, err) = edgectl(&url, &tenant, &["purge", "proxy"]).await;
    assert!(!ok, "{err}");
    let (ok, _, err) = edgectl(&url, &tenant, &["purge", "proxy", "--all", "--key", "k"]).await;
    assert!(!ok, "{err}");
    let (ok, _, err) = edgectl(&url, &tenant, &["purge", "nope", "--all"]).await;
    assert!(!ok && err.contains("404 not-found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (ok, _, err) = edgectl(&url, &tenant, &["purge", "proxy", "--key", "two words"]).await;
    assert!(!ok && err.contains("400 invalid-purge"), "{err}");
}

/// Long-polls as a node until the revision moves past `since`.
async fn next_revision(node: &Client, since: u64) -> u64 {
    let signed: SignedSnapshot = node.get(&format!("/v1/sync?since={since}&wait=20s")).await;
    let snapshot: Snapshot = serde_json::from_str(&signed.payload).unwrap();
    snapshot.revision
}

/// Reports `revision` applied or, with an error, rejected.
async fn report(node: &Client, revision: u64, rejected: Option<&str>) {
    let report = NodeReport {
        revision,
        outcome: match rejected {
            Some(_) => ApplyOutcome::Rejected,
            None => ApplyOutcome::Applied,
        },
        error: rejected.map(str::to_string),
        app_errors: Vec::new(),
        engine: "e".into(),
    };
    let (status, body) = node.send("POST", "/v1/sync/report", &report).await;
    assert_eq!(status, 200, "{body}");
}
