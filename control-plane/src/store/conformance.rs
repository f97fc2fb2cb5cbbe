//! The behaviour every storage backend must have, as a test suite: call
//! these from a backend's tests with a fresh, empty store. They panic on the
//! first deviation, naming it.

#![allow(clippy::unwrap_used)] // A test suite: a failure is a panic naming it.

mod certs;
mod compression;
mod kv;
mod logs;
mod outbound;
mod secrets;

use std::collections::BTreeMap;

use bytes::Bytes;
use edge_common::AppLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{ApplyOutcome, ArtifactRef, NodeReport, PurgeTarget};

use super::{
    AppOrigin, BlobStore, MAX_BLOBS_LISTED, MAX_PURGES_KEPT, MetaStore, NewVersion, RestoreError,
    StoreDump, StoreError, TenantStorage, now_unix,
};

/// A default quota no test version comes near.
const NO_QUOTA: u64 = u64::MAX;

fn tenant(s: &str) -> TenantId {
    TenantId::try_from(s.to_string()).expect("valid tenant literal")
}
fn app(s: &str) -> AppName {
    AppName::try_from(s.to_string()).expect("valid app literal")
}
fn host(s: &str) -> HostPattern {
    HostPattern::try_from(s.to_string()).expect("valid host literal")
}
fn origin(url: &str, forward_override_headers: bool) -> AppOrigin {
    AppOrigin {
        url: url.to_string(),
        forward_override_headers,
    }
}
fn version(n: u8) -> NewVersion {
    NewVersion {
        source_sha256: format!("{n:02x}").repeat(32),
        source_size: 100 + u64::from(n),
        artifact: ArtifactRef {
            sha256: format!("{:02x}", n.wrapping_add(100)).repeat(32),
            size: 1000,
            engine: "engine-a".into(),
        },
    }
}

/// Tenants, apps, hostnames, versions, deployments, config, limits, the
/// snapshot and the revision counter, artifacts, node reports, origin apps,
/// cache purges, storage quotas, which blobs versions reference, and TLS
/// certificates (with ACME challenges and accounts, and apps' HTTPS
/// options).
pub async fn meta_store<M: MetaStore>(store: &M) {
    component_apps(store).await;
    origin_apps(store).await;
    purges(store).await;
    purge_budget(store).await;
    quotas(store).await;
    blob_references(store).await;
    certs::certificates(store).await;
    logs::logs(store).await;
    secrets::secrets(store).await;
    outbound::outbound(store).await;
    kv::kv(store).await;
    compression::compression(store).await;
}

async fn component_apps<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    assert_eq!(
        store.revision().await.unwrap(),
        0,
        "a new store is at revision 0"
    );
    assert!(store.snapshot().await.unwrap().apps.is_empty());

    // Tenants.
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    assert!(matches!(
        store.create_tenant(&a).await,
        Err(StoreError::Exists(_))
    ));
    assert!(store.tenant_exists(&a).await.unwrap());
    assert!(!store.tenant_exists(&tenant("nobody")).await.unwrap());
    let ids: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec![a.clone(), b.clone()]);

    // Apps and hostnames: a hostname belongs to one app across tenants.
    let limits = AppLimits::default();
    let created = store
        .create_app(
            &a,
            &app("web"),
            &[host("web.test"), host("*.web.test")],
            &limits,
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.hosts, vec![host("web.test"), host("*.web.test")]);
    assert_eq!(created.active_version, None);
    let r1 = store.revision().await.unwrap();
    assert!(r1 > 0, "creating an app bumps the revision");
    assert!(matches!(
        store.create_app(&b, &app("other"), &[host("new.test"), host("web.test")], &limits, None).await,
        Err(StoreError::HostTaken(h)) if h == "web.test"
    ));
    // Overlapping another tenant's names is taking them: an exact name
    // under its wildcard, or a wildcard over its names.
    for overlapping in ["shop.web.test", "*.a.web.test", "*.test"] {
        assert!(
            matches!(
                store
                    .create_app(&b, &app("sneaky"), &[host(overlapping)], &limits, None)
                    .await,
                Err(StoreError::HostTaken(_))
            ),
            "{overlapping} overlaps tenant a's hostnames"
        );
    }
    // The same tenant may nest its own names.
    store
        .create_app(&a, &app("blog"), &[host("blog.web.test")], &limits, None)
        .await
        .expect("a tenant's own names may overlap");
    store.delete_app(&a, &app("blog")).await.unwrap();
    assert!(
        matches!(
            store.get_app(&b, &app("other")).await,
            Err(StoreError::NotFound(_))
        ),
        "a refused app leaves nothing behind"
    );
    store
        .create_app(&b, &app("other"), &[host("new.test")], &limits, None)
        .await
        .expect("new.test was not kept by the refused attempt");
    assert!(matches!(
        store
            .create_app(&a, &app("web"), &[host("x.test")], &limits, None)
            .await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store
            .create_app(
                &tenant("nobody"),
                &app("x"),
                &[host("y.test")],
                &limits,
                None
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    // The same app name in another tenant is a different app.
    store
        .create_app(&b, &app("web"), &[host("b-web.test")], &limits, None)
        .await
        .unwrap();
    assert!(
        matches!(
            store.get_app(&a, &app("other")).await,
            Err(StoreError::NotFound(_))
        ),
        "tenant a does not see tenant b's app"
    );
    let names: Vec<_> = store
        .list_apps(&b)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec![app("other"), app("web")]);

    // Versions: numbered per app, not deployed until activated.
    let before = store.revision().await.unwrap();
    let v1 = store
        .add_version(&a, &app("web"), &version(1), NO_QUOTA)
        .await
        .unwrap();
    let v2 = store
        .add_version(&a, &app("web"), &version(2), NO_QUOTA)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(
        store.revision().await.unwrap(),
        before,
        "an upload alone changes nothing served"
    );
    assert!(store.snapshot().await.unwrap().apps.is_empty());
    assert!(matches!(
        store
            .add_version(&a, &app("missing"), &version(3), NO_QUOTA)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.list_versions(&a, &app("web")).await.unwrap(),
        vec![v1.clone(), v2.clone()]
    );

    // Deploys bump the revision and show in the snapshot.
    let r_deploy1 = store.activate_version(&a, &app("web"), 1).await.unwrap();
    assert!(r_deploy1 > before);
    let r_deploy2 = store.activate_version(&a, &app("web"), 2).await.unwrap();
    assert!(r_deploy2 > r_deploy1);
    assert!(matches!(
        store.activate_version(&a, &app("web"), 9).await,
        Err(StoreError::NotFound(_))
    ));
    let deployments: Vec<_> = store
        .deployments(&a, &app("web"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.version, d.revision))
        .collect();
    assert_eq!(deployments, vec![(1, r_deploy1), (2, r_deploy2)]);
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, r_deploy2);
    assert_eq!(snapshot.apps.len(), 1);
    let served = &snapshot.apps[0];
    assert_eq!(
        (served.tenant.clone(), served.name.clone(), served.version),
        (a.clone(), app("web"), 2)
    );
    assert_eq!(served.artifact, v2.artifact);
    assert_eq!(served.hosts, vec![host("web.test"), host("*.web.test")]);
    let app_record = store.get_app(&a, &app("web")).await.unwrap();
    assert_eq!(app_record.active_version, Some(2));
    assert_eq!(app_record.updated_revision, r_deploy2);

    // Deleting versions: never the active one.
    let v3 = store
        .add_version(&a, &app("web"), &version(3), NO_QUOTA)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_version(&a, &app("web"), 2).await,
        Err(StoreError::Exists(_))
    ));
    store
        .delete_version(&a, &app("web"), v3.version)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_version(&a, &app("web"), v3.version).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_versions(&a, &app("web")).await.unwrap().len(), 2);
    assert!(
        matches!(
            store.delete_version(&b, &app("web"), 1).await,
            Err(StoreError::NotFound(_))
        ),
        "tenant b's `web` has no versions"
    );

    // Config values and limits.
    let mut changes = BTreeMap::new();
    changes.insert("GREETING".to_string(), Some("hi".to_string()));
    changes.insert("MODE".to_string(), Some("fast".to_string()));
    let r_config = store
        .update_config(&a, &app("web"), &changes)
        .await
        .unwrap();
    assert!(r_config > r_deploy2);
    let mut removal = BTreeMap::new();
    removal.insert("MODE".to_string(), None);
    store
        .update_config(&a, &app("web"), &removal)
        .await
        .unwrap();
    let config = store.get_app(&a, &app("web")).await.unwrap().config;
    assert_eq!(
        config.into_iter().collect::<Vec<_>>(),
        vec![("GREETING".to_string(), "hi".to_string())]
    );
    let tight = AppLimits {
        max_concurrent_requests: 3,
        ..AppLimits::default()
    };
    store.set_limits(&a, &app("web"), &tight).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.apps[0].limits, tight);
    assert_eq!(
        snapshot.apps[0].config.get("GREETING").map(String::as_str),
        Some("hi")
    );
    assert!(matches!(
        store.update_config(&b, &app("missing"), &changes).await,
        Err(StoreError::NotFound(_))
    ));

    // Artifacts, keyed by (source, engine).
    let art = version(5).artifact;
    assert_eq!(store.find_artifact("aa", "engine-a").await.unwrap(), None);
    store.record_artifact("aa", &art).await.unwrap();
    assert_eq!(
        store.find_artifact("aa", "engine-a").await.unwrap(),
        Some(art.clone())
    );
    assert_eq!(store.find_artifact("aa", "engine-b").await.unwrap(), None);
    assert!(store.is_artifact(&art.sha256).await.unwrap());
    assert!(!store.is_artifact("aa").await.unwrap());

    // Node reports: the latest ACK, with the apps it could not serve; a
    // NACK is kept with its error.
    let ack = |revision| NodeReport {
        revision,
        outcome: ApplyOutcome::Applied,
        error: None,
        app_errors: vec![],
        engine: "engine-a".into(),
    };
    store
        .record_node_report("node-1", &ack(4), 100)
        .await
        .unwrap();
    let mut partial = ack(5);
    partial.app_errors.push(edge_common::sync::AppError {
        tenant: a.clone(),
        app: app("web"),
        error: "digest mismatch".into(),
    });
    store
        .record_node_report("node-1", &partial, 101)
        .await
        .unwrap();
    store
        .record_node_report(
            "node-1",
            &NodeReport {
                revision: 6,
                outcome: ApplyOutcome::Rejected,
                error: Some("bad signature".into()),
                app_errors: vec![],
                engine: "engine-a".into(),
            },
            102,
        )
        .await
        .unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].applied_revision, Some(5));
    assert_eq!(nodes[0].app_errors.len(), 1);
    assert_eq!(nodes[0].app_errors[0].error, "digest mismatch");
    assert_eq!(nodes[0].rejected_revision, Some(6));
    assert_eq!(nodes[0].last_error.as_deref(), Some("bad signature"));
    assert_eq!(nodes[0].last_seen_unix, 102);
    store.touch_node("node-1", 200).await.unwrap();
    store.touch_node("node-2", 201).await.unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        (nodes[0].last_seen_unix, nodes[0].applied_revision),
        (200, Some(5))
    );
    assert_eq!(
        (nodes[1].node.as_str(), nodes[1].applied_revision),
        ("node-2", None)
    );

    // Deleting frees the hostnames and removes the app from the snapshot.
    let r_before_delete = store.revision().await.unwrap();
    let r_delete = store.delete_app(&a, &app("web")).await.unwrap();
    assert!(r_delete > r_before_delete);
    assert!(store.snapshot().await.unwrap().apps.is_empty());
    assert!(matches!(
        store.delete_app(&a, &app("web")).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .create_app(&b, &app("taker"), &[host("web.test")], &limits, None)
        .await
        .expect("a deleted app's hostname can be claimed again");
    let recreated = store
        .create_app(&a, &app("web"), &[host("web2.test")], &limits, None)
        .await
        .unwrap();
    assert_eq!(recreated.active_version, None);
    assert!(
        store
            .list_versions(&a, &app("web"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Origin apps: served from creation (in `origins`, never in `apps`), no
/// versions or deploys, the origin and its `forward_override_headers`
/// changeable (the option kept when not named), gone when deleted.
/// Expects [`component_apps`] to have run (its tenants exist).
async fn origin_apps<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let limits = AppLimits::default();
    let before = store.revision().await.unwrap();
    let created = store
        .create_app(
            &a,
            &app("proxy"),
            &[host("proxy.test"), host("*.proxy.test")],
            &limits,
            Some(&origin("https://origin.example:8443/base", false)),
        )
        .await
        .unwrap();
    assert_eq!(
        created.origin,
        Some(origin("https://origin.example:8443/base", false))
    );
    assert_eq!(created.active_version, None);
    let r_created = store.revision().await.unwrap();
    assert!(r_created > before, "an origin app is live once created");
    assert_eq!(created.updated_revision, r_created);
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, r_created);
    assert!(
        snapshot.apps.iter().all(|s| s.name != app("proxy")),
        "an origin app is never in `apps`"
    );
    assert_eq!(snapshot.origins.len(), 1);
    let sent = &snapshot.origins[0];
    assert_eq!((&sent.tenant, &sent.name), (&a, &app("proxy")));
    assert_eq!(sent.hosts, vec![host("proxy.test"), host("*.proxy.test")]);
    assert_eq!(sent.origin, "https://origin.example:8443/base");
    assert_eq!(sent.limits, limits);
    assert!(!sent.forward_override_headers);
    let listed = store.list_apps(&a).await.unwrap();
    assert!(listed.iter().any(|r| r.origin.is_some()));
    assert!(listed.iter().any(|r| r.origin.is_none()), "component apps");

    // Host ownership is the same as for any app.
    assert!(matches!(
        store
            .create_app(
                &b,
                &app("steal"),
                &[host("x.proxy.test")],
                &limits,
                Some(&origin("http://o.test", false))
            )
            .await,
        Err(StoreError::HostTaken(_))
    ));

    // No component: no versions, no deploys.
    assert!(matches!(
        store
            .add_version(&a, &app("proxy"), &version(9), NO_QUOTA)
            .await,
        Err(StoreError::OriginApp(_))
    ));
    assert!(matches!(
        store.activate_version(&a, &app("proxy"), 1).await,
        Err(StoreError::OriginApp(_))
    ));

    // The origin can change (a component app has none to change), with
    // its option or keeping it; each change bumps the revision.
    let (set, r_forward) = store
        .set_origin(&a, &app("proxy"), "http://origin2.example", Some(true))
        .await
        .unwrap();
    assert_eq!(set, origin("http://origin2.example", true));
    assert!(r_forward > r_created);
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, r_forward);
    assert_eq!(snapshot.origins[0].origin, "http://origin2.example");
    assert!(snapshot.origins[0].forward_override_headers);
    let (set, r_origin) = store
        .set_origin(&a, &app("proxy"), "http://origin3.example", None)
        .await
        .unwrap();
    assert_eq!(
        set,
        origin("http://origin3.example", true),
        "`None` keeps the option"
    );
    assert!(r_origin > r_forward);
    let fetched = store.get_app(&a, &app("proxy")).await.unwrap();
    assert_eq!(fetched.origin, Some(set));
    assert_eq!(fetched.updated_revision, r_origin);
    assert!(store.snapshot().await.unwrap().origins[0].forward_override_headers);
    let (set, r_off) = store
        .set_origin(&a, &app("proxy"), "http://origin3.example", Some(false))
        .await
        .unwrap();
    assert_eq!(set, origin("http://origin3.example", false));
    assert!(r_off > r_origin);
    assert!(!store.snapshot().await.unwrap().origins[0].forward_override_headers);
    assert!(matches!(
        store
            .set_origin(&a, &app("web"), "http://o.test", Some(true))
            .await,
        Err(StoreError::NotOriginApp(_))
    ));
    assert!(matches!(
        store
            .set_origin(&b, &app("proxy"), "http://o.test", None)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.revision().await.unwrap(),
        r_off,
        "refusals change nothing"
    );

    // Created with the option: carried from its first revision.
    let created = store
        .create_app(
            &a,
            &app("open"),
            &[host("open.test")],
            &limits,
            Some(&origin("http://open.example", true)),
        )
        .await
        .unwrap();
    assert_eq!(created.origin, Some(origin("http://open.example", true)));
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, created.updated_revision);
    let open = snapshot
        .origins
        .iter()
        .find(|o| o.name == app("open"))
        .unwrap();
    assert!(open.forward_override_headers);
    let r_open_deleted = store.delete_app(&a, &app("open")).await.unwrap();
    assert!(r_open_deleted > created.updated_revision);

    // Deleting takes it out of the snapshot.
    let r_delete = store.delete_app(&a, &app("proxy")).await.unwrap();
    assert!(r_delete > r_open_deleted);
    assert!(store.snapshot().await.unwrap().origins.is_empty());
}

/// Purges: ids from 1 up by one, each bumping the revision, carried by the
/// snapshot oldest first; only the newest [`MAX_PURGES_KEPT`] are kept, and
/// ids never come back. Expects [`component_apps`] to have run.
/// `add_purge_within`: a tenant's purges in the window are counted in the
/// transaction; the next one past the budget is refused, with how long to
/// wait, and records nothing; other tenants are not held back.
async fn purge_budget<M: MetaStore>(store: &M) {
    let limits = AppLimits::default();
    let (a, b) = (tenant("budget-a"), tenant("budget-b"));
    for (t, h) in [(&a, "budget-a.test"), (&b, "budget-b.test")] {
        store.create_tenant(t).await.unwrap();
        store
            .create_app(t, &app("web"), &[host(h)], &limits, None)
            .await
            .unwrap();
    }
    let rate = super::PurgeRate {
        max: 3,
        window_secs: 60,
    };
    let all = PurgeTarget::All;
    for _ in 0..3 {
        store
            .add_purge_within(&a, &app("web"), &all, false, rate)
            .await
            .unwrap();
    }
    let revision = store.revision().await.unwrap();
    let kept = store.snapshot().await.unwrap().purges.len();
    match store
        .add_purge_within(&a, &app("web"), &all, false, rate)
        .await
    {
        Err(StoreError::PurgeRateLimited {
            max: 3,
            window_secs: 60,
            retry_after_secs,
            ..
        }) => assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}"),
        other => panic!("a fourth purge in the window must be refused: {other:?}"),
    }
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "nothing recorded"
    );
    assert_eq!(store.snapshot().await.unwrap().purges.len(), kept);
    // Another tenant has its own budget; a wider one lets `a` through.
    store
        .add_purge_within(&b, &app("web"), &all, false, rate)
        .await
        .unwrap();
    let wider = super::PurgeRate { max: 4, ..rate };
    store
        .add_purge_within(&a, &app("web"), &all, false, wider)
        .await
        .unwrap();
    // A missing app is still `NotFound`, whatever the budget.
    assert!(matches!(
        store
            .add_purge_within(&a, &app("missing"), &all, false, rate)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn purges<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    assert!(store.snapshot().await.unwrap().purges.is_empty());
    let url = PurgeTarget::Url {
        url: "/a?b=1".into(),
    };
    let key = PurgeTarget::Key { key: "k1".into() };
    let before = store.revision().await.unwrap();
    let (first, r1) = store.add_purge(&a, &app("web"), &url, false).await.unwrap();
    assert_eq!(first.id, 1, "purge ids start at 1");
    assert_eq!(
        (first.tenant.clone(), first.app.clone()),
        (a.clone(), app("web"))
    );
    assert_eq!((first.target.clone(), first.soft), (url.clone(), false));
    assert!(r1 > before, "a purge bumps the revision");
    assert_eq!(store.revision().await.unwrap(), r1);
    let (second, r2) = store.add_purge(&b, &app("web"), &key, true).await.unwrap();
    let (third, r3) = store
        .add_purge(&a, &app("web"), &PurgeTarget::All, true)
        .await
        .unwrap();
    assert_eq!((second.id, third.id), (2, 3), "ids increase by one");
    assert!(r3 > r2 && r2 > r1);
    assert!(matches!(
        store.add_purge(&a, &app("missing"), &url, false).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(
            store
                .add_purge(&b, &app("other-tenant-app"), &url, false)
                .await,
            Err(StoreError::NotFound(_))
        ),
        "no app of that name in tenant b"
    );
    assert_eq!(
        store.revision().await.unwrap(),
        r3,
        "a refused purge changes nothing"
    );
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, r3);
    assert_eq!(snapshot.purges, vec![first.clone(), second, third]);

    // The window: the newest MAX_PURGES_KEPT, oldest dropped.
    let total = MAX_PURGES_KEPT + 5;
    let mut last = 3;
    for _ in 3..total {
        let (purge, _) = store.add_purge(&a, &app("web"), &key, false).await.unwrap();
        assert_eq!(purge.id, last + 1);
        last = purge.id;
    }
    let purges = store.snapshot().await.unwrap().purges;
    assert_eq!(purges.len() as u64, MAX_PURGES_KEPT);
    assert_eq!(purges[0].id, total - MAX_PURGES_KEPT + 1, "oldest dropped");
    assert_eq!(purges.last().map(|p| p.id), Some(total));
    assert!(purges.windows(2).all(|w| w[1].id == w[0].id + 1));

    // Deleting an app keeps its purges: the ids a node sees stay
    // consecutive (a stale purge of a gone app purges nothing).
    let (kept, _) = store
        .add_purge(&b, &app("taker"), &key, false)
        .await
        .unwrap();
    store.delete_app(&b, &app("taker")).await.unwrap();
    let purges = store.snapshot().await.unwrap().purges;
    assert_eq!(purges.last(), Some(&kept));
    assert_eq!(kept.id, total + 1);
}

/// Storage quotas: a tenant's usage is the sum of its versions' source
/// sizes (a version counts in full even if another has the same bytes);
/// a version that would exceed the quota (the tenant's own, else the
/// default passed in) is refused with the numbers and leaves nothing
/// behind; deleting versions and apps lowers the usage. Uses tenants of
/// its own.
async fn quotas<M: MetaStore>(store: &M) {
    let (q, other, nobody) = (tenant("quota"), tenant("quota-other"), tenant("nobody"));
    let limits = AppLimits::default();
    assert!(matches!(
        store.tenant_storage(&nobody).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_tenant_quota(&nobody, Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
    store.create_tenant(&q).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    assert_eq!(
        store.tenant_storage(&q).await.unwrap(),
        TenantStorage {
            quota_bytes: None,
            used_bytes: 0
        },
        "a new tenant has the default quota and uses nothing"
    );
    for (t, name, h) in [
        (&q, "one", "one.quota.test"),
        (&q, "two", "two.quota.test"),
        (&other, "one", "one.quota-other.test"),
    ] {
        store
            .create_app(t, &app(name), &[host(h)], &limits, None)
            .await
            .unwrap();
    }
    // version(n) has a source of 100 + n bytes.
    store
        .add_version(&q, &app("one"), &version(1), 1000)
        .await
        .unwrap();
    store
        .add_version(&q, &app("two"), &version(1), 1000)
        .await
        .expect("the same bytes under another app");
    store
        .add_version(&other, &app("one"), &version(2), 1000)
        .await
        .unwrap();
    assert_eq!(
        store.tenant_storage(&q).await.unwrap().used_bytes,
        202,
        "each version counts its source, shared bytes or not"
    );
    assert_eq!(store.tenant_storage(&other).await.unwrap().used_bytes, 102);

    // Over the default quota: refused, with the numbers, nothing recorded.
    match store.add_version(&q, &app("one"), &version(3), 304).await {
        Err(StoreError::QuotaExceeded(e)) => assert_eq!(
            (e.tenant, e.quota_bytes, e.used_bytes, e.adding_bytes),
            (q.clone(), 304, 202, 103)
        ),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.list_versions(&q, &app("one")).await.unwrap().len(), 1);
    assert_eq!(store.tenant_storage(&q).await.unwrap().used_bytes, 202);

    // The tenant's own quota wins over the default, either way.
    assert_eq!(
        store.set_tenant_quota(&q, Some(250)).await.unwrap(),
        TenantStorage {
            quota_bytes: Some(250),
            used_bytes: 202
        }
    );
    assert!(
        matches!(
            store.add_version(&q, &app("one"), &version(3), NO_QUOTA).await,
            Err(StoreError::QuotaExceeded(e)) if e.quota_bytes == 250
        ),
        "a tenant's own quota, not the default"
    );
    store.set_tenant_quota(&q, Some(305)).await.unwrap();
    let v2 = store
        .add_version(&q, &app("one"), &version(3), 0)
        .await
        .expect("exactly at the tenant's own quota, whatever the default");
    assert_eq!(store.tenant_storage(&q).await.unwrap().used_bytes, 305);
    assert_eq!(
        store.tenant_storage(&other).await.unwrap().quota_bytes,
        None,
        "another tenant keeps the default"
    );

    // Deleting versions and apps lowers the usage.
    store
        .delete_version(&q, &app("one"), v2.version)
        .await
        .unwrap();
    assert_eq!(store.tenant_storage(&q).await.unwrap().used_bytes, 202);
    store.delete_app(&q, &app("two")).await.unwrap();
    assert_eq!(store.tenant_storage(&q).await.unwrap().used_bytes, 101);
    assert_eq!(
        store.set_tenant_quota(&q, None).await.unwrap(),
        TenantStorage {
            quota_bytes: None,
            used_bytes: 101
        },
        "back to the default"
    );
}

/// Which blobs versions reference: `unreferenced_blobs` returns the
/// candidates no version uses (as source or artifact) and forgets their
/// compile records; a version's artifact stays fetchable without one.
/// Uses a tenant of its own.
async fn blob_references<M: MetaStore>(store: &M) {
    let t = tenant("refs");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("gc"),
            &[host("gc.refs.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let (used, orphan, unrecorded) = (version(40), version(41), version(42));
    store
        .record_artifact(&used.source_sha256, &used.artifact)
        .await
        .unwrap();
    store
        .record_artifact(&orphan.source_sha256, &orphan.artifact)
        .await
        .unwrap();
    store
        .add_version(&t, &app("gc"), &used, NO_QUOTA)
        .await
        .unwrap();
    store
        .add_version(&t, &app("gc"), &unrecorded, NO_QUOTA)
        .await
        .unwrap();
    assert!(
        store
            .is_artifact(&unrecorded.artifact.sha256)
            .await
            .unwrap(),
        "a version's artifact is fetchable without a compile record"
    );
    let never_seen = "ee".repeat(32);
    let candidates = vec![
        used.source_sha256.clone(),
        used.artifact.sha256.clone(),
        orphan.source_sha256.clone(),
        orphan.artifact.sha256.clone(),
        unrecorded.artifact.sha256.clone(),
        never_seen.clone(),
    ];
    let mut unreferenced = store.unreferenced_blobs(&candidates).await.unwrap();
    unreferenced.sort();
    let mut expected = vec![
        orphan.source_sha256.clone(),
        orphan.artifact.sha256.clone(),
        never_seen,
    ];
    expected.sort();
    assert_eq!(unreferenced, expected);
    assert_eq!(
        store
            .find_artifact(&orphan.source_sha256, "engine-a")
            .await
            .unwrap(),
        None,
        "an unreferenced blob's compile record is forgotten"
    );
    assert!(!store.is_artifact(&orphan.artifact.sha256).await.unwrap());
    assert_eq!(
        store
            .find_artifact(&used.source_sha256, "engine-a")
            .await
            .unwrap(),
        Some(used.artifact.clone()),
        "a referenced blob's compile record is kept"
    );

    // Once the versions are gone, so are the references.
    store.delete_app(&t, &app("gc")).await.unwrap();
    let gone = vec![
        used.source_sha256.clone(),
        used.artifact.sha256.clone(),
        unrecorded.artifact.sha256.clone(),
    ];
    let mut unreferenced = store.unreferenced_blobs(&gone).await.unwrap();
    unreferenced.sort();
    let mut expected = gone.clone();
    expected.sort();
    assert_eq!(unreferenced, expected);
    assert!(!store.is_artifact(&used.artifact.sha256).await.unwrap());
    assert_eq!(
        store
            .find_artifact(&used.source_sha256, "engine-a")
            .await
            .unwrap(),
        None
    );
}

/// What a store keeps across a restart: call `fill` on a fresh store, drop
/// it, reopen it and pass it to `check`.
pub async fn meta_store_fill<M: MetaStore>(store: &M) -> (u64, String) {
    let t = tenant("durable");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("web"),
            &[host("durable.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    store
        .add_version(&t, &app("web"), &version(7), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &app("web"), 1).await.unwrap();
    store
        .create_app(
            &t,
            &app("proxy"),
            &[host("proxy.durable.test")],
            &AppLimits::default(),
            Some(&origin("http://origin.durable.test:8080/base", true)),
        )
        .await
        .unwrap();
    store
        .add_purge(&t, &app("web"), &PurgeTarget::Key { key: "k".into() }, true)
        .await
        .unwrap();
    let (_, revision) = store
        .add_purge(&t, &app("proxy"), &PurgeTarget::All, false)
        .await
        .unwrap();
    (revision, store.epoch().await.unwrap())
}

pub async fn meta_store_check<M: MetaStore>(store: &M, revision: u64, epoch: &str) {
    let t = tenant("durable");
    assert_eq!(
        store.epoch().await.unwrap(),
        epoch,
        "the epoch survives a restart"
    );
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "the revision survives a restart"
    );
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.apps.len(), 1);
    assert_eq!(snapshot.apps[0].artifact, version(7).artifact);
    assert_eq!(snapshot.origins.len(), 1, "the origin app survives");
    assert_eq!(
        snapshot.origins[0].origin,
        "http://origin.durable.test:8080/base"
    );
    assert!(
        snapshot.origins[0].forward_override_headers,
        "its forward_override_headers survives a restart"
    );
    let kept: Vec<_> = snapshot
        .purges
        .iter()
        .map(|p| (p.id, p.app.clone(), p.target.clone(), p.soft))
        .collect();
    assert_eq!(
        kept,
        vec![
            (1, app("web"), PurgeTarget::Key { key: "k".into() }, true),
            (2, app("proxy"), PurgeTarget::All, false),
        ],
        "purges survive a restart"
    );
    assert_eq!(store.list_versions(&t, &app("web")).await.unwrap().len(), 1);
    let next = store.activate_version(&t, &app("web"), 1).await.unwrap();
    assert!(next > revision, "revisions keep increasing after a restart");
    let (purge, _) = store
        .add_purge(&t, &app("web"), &PurgeTarget::All, false)
        .await
        .unwrap();
    assert_eq!(purge.id, 3, "purge ids continue after a restart");
}

/// Dump and restore: fill `a`, dump it, restore the dump into the empty
/// `b` (any backend: the dump is backend-neutral); `b` then dumps and
/// snapshots as `a` does and carries on from the same revision, purge id,
/// certificate id and epoch. An invalid dump or a non-empty target is
/// refused with nothing written.
pub async fn dump_restore<A: MetaStore, B: MetaStore>(a: &A, b: &B) {
    let (revision, epoch) = meta_store_fill(a).await;
    // Every table: versions with a gap, a deleted app (its deployments and
    // hostnames go, its purges stay), config, a quota, compile records,
    // node reports.
    let t = tenant("durable");
    for n in [8, 9] {
        a.add_version(&t, &app("web"), &version(n), NO_QUOTA)
            .await
            .unwrap();
    }
    a.delete_version(&t, &app("web"), 2).await.unwrap();
    a.activate_version(&t, &app("web"), 3).await.unwrap();
    let mut config = BTreeMap::new();
    config.insert("GREETING".to_string(), Some("hello".to_string()));
    a.update_config(&t, &app("web"), &config).await.unwrap();
    a.set_tenant_quota(&t, Some(1 << 20)).await.unwrap();
    a.create_tenant(&tenant("other")).await.unwrap();
    a.create_app(
        &tenant("other"),
        &app("gone"),
        &[host("gone.test")],
        &AppLimits::default(),
        None,
    )
    .await
    .unwrap();
    a.add_version(&tenant("other"), &app("gone"), &version(20), NO_QUOTA)
        .await
        .unwrap();
    a.activate_version(&tenant("other"), &app("gone"), 1)
        .await
        .unwrap();
    a.add_purge(&tenant("other"), &app("gone"), &PurgeTarget::All, true)
        .await
        .unwrap();
    a.delete_app(&tenant("other"), &app("gone")).await.unwrap();
    a.record_artifact(&version(8).source_sha256, &version(8).artifact)
        .await
        .unwrap();
    a.record_node_report(
        "node-1",
        &NodeReport {
            revision,
            outcome: ApplyOutcome::Applied,
            error: None,
            app_errors: vec![edge_common::sync::AppError {
                tenant: t.clone(),
                app: app("web"),
                error: "did not load".into(),
            }],
            engine: "engine-a".into(),
        },
        1000,
    )
    .await
    .unwrap();
    a.touch_node("node-2", 1001).await.unwrap();
    let certificate_counter = certs::fill_for_dump(a).await;
    let log_seq = logs::fill_for_dump(a, &t).await;
    secrets::fill_for_dump(a, &t, &app("web")).await;
    outbound::fill_for_dump(a, &t, &app("web")).await;
    kv::fill_for_dump(a, &t, &app("web")).await;
    compression::fill_for_dump(a, &t, &app("web")).await;

    let dump = a.dump().await.unwrap();
    assert_eq!(dump.epoch, epoch);
    assert_eq!(dump.revision, a.revision().await.unwrap());
    assert_eq!(
        (dump.tenants.len(), dump.apps.len(), dump.hosts.len()),
        (2, 2, 2)
    );
    assert_eq!((dump.versions.len(), dump.deployments.len()), (2, 2));
    assert_eq!((dump.purges.len(), dump.purge_counter), (3, 3));
    assert_eq!((dump.artifacts.len(), dump.nodes.len()), (1, 2));
    assert_eq!(
        (
            dump.certificates.len(),
            dump.certificate_counter,
            dump.acme_challenges.len(),
            dump.acme_accounts.len()
        ),
        (2, certificate_counter, 2, 1)
    );
    assert_eq!(
        dump.acme_challenges
            .iter()
            .map(|c| c.token.as_str())
            .collect::<Vec<_>>(),
        vec!["z-token", "a-token"],
        "a certificate's challenges in their stored order"
    );
    // What a file carries: JSON, read back the same.
    let dump: StoreDump = serde_json::from_str(&serde_json::to_string(&dump).unwrap()).unwrap();

    // Refused dumps leave the target as it was.
    let b_epoch = b.epoch().await.unwrap();
    let mut breaks: Vec<(&str, StoreDump)> = Vec::new();
    let mut bad = dump.clone();
    bad.format = 99;
    breaks.push(("another format", bad));
    let mut bad = dump.clone();
    bad.apps
        .iter_mut()
        .for_each(|a| a.active_version = a.active_version.map(|v| v + 40));
    breaks.push(("an active version that does not exist", bad));
    let mut bad = dump.clone();
    bad.hosts.push(bad.hosts[0].clone());
    breaks.push(("a hostname twice", bad));
    let mut bad = dump.clone();
    bad.purge_counter = 1;
    breaks.push(("purge ids above the counter", bad));
    let mut bad = dump.clone();
    bad.revision = u64::MAX;
    breaks.push(("a revision SQL cannot hold", bad));
    let mut bad = dump.clone();
    bad.certificate_counter = 1;
    breaks.push(("certificate ids above the counter", bad));
    let mut bad = dump.clone();
    bad.certificates.push(bad.certificates[0].clone());
    breaks.push(("a certificate twice", bad));
    let mut bad = dump.clone();
    bad.certificates[0].app = app("nope");
    breaks.push(("a certificate of an unknown app", bad));
    let mut bad = dump.clone();
    bad.acme_challenges[0].certificate = 999;
    breaks.push(("a challenge of an unknown certificate", bad));
    let mut bad = dump.clone();
    bad.acme_accounts.push(bad.acme_accounts[0].clone());
    breaks.push(("an ACME account twice", bad));
    let mut bad = dump.clone();
    if let Some(m) = bad.certificates[0].material.as_mut() {
        m.not_after_unix = u64::MAX;
    }
    breaks.push(("a notAfter SQL cannot hold", bad));
    for (what, bad) in breaks {
        match b.restore(bad).await {
            Err(StoreError::Restore(RestoreError::Invalid(_))) => {}
            other => panic!("a dump with {what} must be refused as invalid, got {other:?}"),
        }
        let untouched = b.dump().await.unwrap();
        assert!(untouched.is_empty(), "{what}: nothing written");
        assert_eq!(untouched.epoch, b_epoch, "{what}: the epoch is kept");
    }

    b.restore(dump.clone()).await.unwrap();
    assert_eq!(b.dump().await.unwrap(), a.dump().await.unwrap());
    assert_eq!(b.epoch().await.unwrap(), epoch, "the epoch moves along");
    let (mut from, mut to) = (a.snapshot().await.unwrap(), b.snapshot().await.unwrap());
    (from.created_unix, to.created_unix) = (0, 0);
    assert_eq!(to, from);
    assert_eq!(
        b.tenant_storage(&t).await.unwrap(),
        a.tenant_storage(&t).await.unwrap()
    );
    assert_eq!(b.nodes().await.unwrap(), a.nodes().await.unwrap());
    assert_eq!(
        b.find_artifact(&version(8).source_sha256, "engine-a")
            .await
            .unwrap(),
        Some(version(8).artifact)
    );

    // Only into an empty store.
    match b.restore(dump.clone()).await {
        Err(StoreError::Restore(RestoreError::NotEmpty { what })) => {
            assert!(what.contains("2 tenants"), "{what}")
        }
        other => panic!("a second restore must be refused, got {other:?}"),
    }
    assert_eq!(b.dump().await.unwrap(), dump);

    // The restored store carries on where the dump ended.
    let (purge, r_purge) = b
        .add_purge(&t, &app("web"), &PurgeTarget::All, false)
        .await
        .unwrap();
    assert_eq!((purge.id, r_purge), (4, dump.revision + 1));
    let r_deploy = b.activate_version(&t, &app("web"), 1).await.unwrap();
    assert_eq!(r_deploy, dump.revision + 2);
    let deployments = b.deployments(&t, &app("web")).await.unwrap();
    assert_eq!(
        deployments.iter().map(|d| d.version).collect::<Vec<_>>(),
        vec![1, 3, 1],
        "new deployments come after the restored ones"
    );
    let v = b
        .add_version(&t, &app("web"), &version(10), NO_QUOTA)
        .await
        .unwrap();
    assert_eq!(v.version, 4, "version numbers continue");
    certs::check_restored(a, b, certificate_counter).await;
    logs::check_restored(b, &t, log_seq).await;
    secrets::check_restored(a, b, &t, &app("web")).await;
    outbound::check_restored(a, b, &t, &app("web")).await;
    kv::check_restored(a, b, &t, &app("web")).await;
    compression::check_restored(a, b, &t, &app("web")).await;
}

/// Content addressing, idempotent puts, absent and malformed names.
pub async fn blob_store<B: BlobStore>(store: &B) {
    let bytes = Bytes::from_static(b"\0asm component bytes");
    let sha = store.put(bytes.clone()).await.unwrap();
    assert_eq!(sha, edge_common::signing::sha256_hex(&bytes));
    assert_eq!(
        store.put(bytes.clone()).await.unwrap(),
        sha,
        "puts are idempotent"
    );
    assert_eq!(store.get(&sha).await.unwrap(), Some(bytes));
    let empty = store.put(Bytes::new()).await.unwrap();
    assert_eq!(store.get(&empty).await.unwrap(), Some(Bytes::new()));
    assert_eq!(store.get(&"0".repeat(64)).await.unwrap(), None);
    for bad in ["", "../../etc/passwd", "ab", &sha.to_uppercase()] {
        assert_eq!(
            store.get(bad).await.unwrap(),
            None,
            "{bad:?} is not a blob name"
        );
    }
    let big = Bytes::from(vec![7u8; 3 << 20]);
    let big_sha = store.put(big.clone()).await.unwrap();
    assert_eq!(store.get(&big_sha).await.unwrap(), Some(big));
    blob_listing_and_deletion(store, &[&sha, &empty, &big_sha]).await;
}

/// Listing pages through every blob once, in digest order; touch and
/// conditional deletion. `present` are blobs the caller stored (the store
/// may hold others); they are all there again afterwards.
async fn blob_listing_and_deletion<B: BlobStore>(store: &B, present: &[&str]) {
    let before = now_unix();
    let probe = Bytes::from_static(b"blob listing probe");
    let probe_sha = store.put(probe.clone()).await.unwrap();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2, "a page holds at most the limit");
        let Some(last) = page.last() else { break };
        after = Some(last.sha256.clone());
        listed.extend(page);
    }
    assert!(
        listed.windows(2).all(|w| w[0].sha256 < w[1].sha256),
        "in digest order, each blob once"
    );
    for sha in present.iter().copied().chain([probe_sha.as_str()]) {
        assert!(listed.iter().any(|b| b.sha256 == sha), "{sha} is listed");
    }
    let info = listed
        .iter()
        .find(|b| b.sha256 == probe_sha)
        .unwrap()
        .clone();
    assert_eq!(info.size, probe.len() as u64);
    assert!(
        info.modified_unix >= before && info.modified_unix <= now_unix(),
        "a blob just put was modified now: {info:?}"
    );
    assert!(store.list(None, usize::MAX).await.unwrap().len() <= MAX_BLOBS_LISTED);
    assert_eq!(
        store.list(Some(&"f".repeat(64)), 10).await.unwrap(),
        vec![],
        "nothing sorts after ff..."
    );

    // Touch: a present blob stays modified now; absent or malformed names
    // are not there.
    assert!(store.touch(&probe_sha).await.unwrap());
    assert!(!store.touch(&"0".repeat(64)).await.unwrap());
    assert!(!store.touch("../../etc/passwd").await.unwrap());

    // Deletion only of a blob not modified since the time given.
    assert!(
        !store
            .delete_if_unmodified_since(&probe_sha, before - 1)
            .await
            .unwrap(),
        "modified since: kept"
    );
    assert_eq!(store.get(&probe_sha).await.unwrap(), Some(probe.clone()));
    assert!(
        store
            .delete_if_unmodified_since(&probe_sha, now_unix())
            .await
            .unwrap()
    );
    assert_eq!(store.get(&probe_sha).await.unwrap(), None);
    assert!(!store.touch(&probe_sha).await.unwrap(), "gone");
    assert!(
        store
            .list(None, MAX_BLOBS_LISTED)
            .await
            .unwrap()
            .iter()
            .all(|b| b.sha256 != probe_sha),
        "a deleted blob is not listed"
    );
    assert!(
        !store
            .delete_if_unmodified_since(&probe_sha, u64::MAX)
            .await
            .unwrap(),
        "already gone"
    );
    for bad in ["", "../../etc/passwd", "ab"] {
        assert!(
            !store
                .delete_if_unmodified_since(bad, u64::MAX)
                .await
                .unwrap()
        );
    }
    // Stored again after a deletion, it is whole.
    assert_eq!(store.put(probe.clone()).await.unwrap(), probe_sha);
    assert_eq!(store.get(&probe_sha).await.unwrap(), Some(probe));
    for sha in present {
        assert!(store.get(sha).await.unwrap().is_some(), "{sha} untouched");
    }
}
