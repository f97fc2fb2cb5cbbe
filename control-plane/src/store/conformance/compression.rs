//! Apps' compression at the edge (`set_app_compression`): stored, read
//! back by every app query, in the snapshot for component and origin
//! apps, revision bumps, `NotFound` across tenants, and the dump.

use edge_common::AppLimits;
use edge_common::names::{AppName, TenantId};
use edge_common::sync::AppCompression;

use super::{NO_QUOTA, app, host, origin, tenant, version};
use crate::store::{MetaStore, StoreError};

fn not_found(result: Result<u64, StoreError>, what: &str, expect: &str) {
    match result {
        Err(StoreError::NotFound(name)) => assert_eq!(name, expect, "{what}"),
        other => panic!("{what}: expected NotFound({expect}), got {other:?}"),
    }
}

const OFF: AppCompression = AppCompression {
    enabled: Some(false),
    min_bytes: None,
};

const TUNED: AppCompression = AppCompression {
    enabled: Some(true),
    min_bytes: Some(1 << 30),
};

pub(super) async fn compression<M: MetaStore>(store: &M) {
    let (t, other) = (tenant("compress-a"), tenant("compress-b"));
    store.create_tenant(&t).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.compress.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    store
        .add_version(&t, &app("site"), &version(40), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &app("site"), 1).await.unwrap();
    store
        .create_app(
            &t,
            &app("edge"),
            &[host("edge.compress.example")],
            &AppLimits::default(),
            Some(&origin("http://origin.compress.example", false)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_app(&t, &app("site")).await.unwrap().compression,
        AppCompression::default(),
        "the nodes' defaults until set"
    );

    let before = store.revision().await.unwrap();
    let revision = store
        .set_app_compression(&t, &app("site"), &OFF)
        .await
        .unwrap();
    assert_eq!(revision, before + 1, "a change bumps the revision");
    let site = store.get_app(&t, &app("site")).await.unwrap();
    assert_eq!((site.compression, site.updated_revision), (OFF, revision));
    let revision = store
        .set_app_compression(&t, &app("edge"), &TUNED)
        .await
        .unwrap();
    let apps = store.list_apps(&t).await.unwrap();
    let listed = |name: &str| {
        apps.iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| a.compression)
    };
    assert_eq!(
        (listed("site"), listed("edge")),
        (Some(OFF), Some(TUNED)),
        "list_apps carries it"
    );

    let snapshot = store.snapshot().await.unwrap();
    let site = snapshot.apps.iter().find(|a| a.tenant == t).unwrap();
    assert_eq!(site.compression, OFF, "the snapshot's component app");
    let edge = snapshot.origins.iter().find(|o| o.tenant == t).unwrap();
    assert_eq!(edge.compression, TUNED, "the snapshot's origin app");

    not_found(
        store.set_app_compression(&other, &app("site"), &OFF).await,
        "another tenant's app",
        "app site",
    );
    not_found(
        store.set_app_compression(&t, &app("nope"), &OFF).await,
        "an app that does not exist",
        "app nope",
    );
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "refusals bump nothing"
    );

    // Back to the defaults: both columns cleared.
    store
        .set_app_compression(&t, &app("site"), &AppCompression::default())
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let site = snapshot.apps.iter().find(|a| a.tenant == t).unwrap();
    assert_eq!(site.compression, AppCompression::default());
}

/// Gives `app` settings a dump must carry.
pub(super) async fn fill_for_dump<M: MetaStore>(store: &M, tenant: &TenantId, app: &AppName) {
    store
        .set_app_compression(tenant, app, &TUNED)
        .await
        .unwrap();
}

pub(super) async fn check_restored<A: MetaStore, B: MetaStore>(
    a: &A,
    b: &B,
    tenant: &TenantId,
    app: &AppName,
) {
    let restored = b.get_app(tenant, app).await.unwrap();
    assert_eq!(restored.compression, TUNED, "restored");
    assert_eq!(
        restored.compression,
        a.get_app(tenant, app).await.unwrap().compression
    );
}
