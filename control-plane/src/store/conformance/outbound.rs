//! Apps' outbound policies and tenants' caps: what every backend must do
//! with them.

use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, TenantId};
use edge_common::outbound::{AppOutbound, Destination};

use super::{NO_QUOTA, app, origin, tenant, version};
use crate::store::{MetaStore, StoreError};

fn policy(allow: &[&str], max: Option<u32>) -> AppOutbound {
    AppOutbound {
        allow: allow
            .iter()
            .map(|d| Destination::try_from(d.to_string()).unwrap())
            .collect(),
        max_subrequests: max,
    }
}

fn caps(destinations: Option<u32>, subrequests: Option<u32>) -> SetTenantLimits {
    SetTenantLimits {
        max_outbound_destinations: destinations,
        max_subrequests: subrequests,
        ..Default::default()
    }
}

pub(super) async fn outbound<M: MetaStore>(store: &M) {
    let t = tenant("outbound");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(&t, &app("api"), &[], &AppLimits::default(), None)
        .await
        .unwrap();
    store
        .create_app(
            &t,
            &app("edge"),
            &[],
            &AppLimits::default(),
            Some(&origin("http://o.test", false)),
        )
        .await
        .unwrap();
    // Nothing set: the default policy and caps.
    assert_eq!(
        store.app_outbound(&t, &app("api")).await.unwrap(),
        AppOutbound::default()
    );
    assert_eq!(
        store.tenant_limits(&t).await.unwrap(),
        SetTenantLimits::default()
    );
    assert!(matches!(
        store.app_outbound(&t, &app("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.tenant_limits(&tenant("nobody")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .set_app_outbound(&t, &app("edge"), &policy(&["https://a.test"], None))
            .await,
        Err(StoreError::OriginApp(_))
    ));

    // A policy bumps the revision and reads back as written.
    let before = store.revision().await.unwrap();
    let set = policy(&["https://a.test", "http://*.b.test:8080"], Some(8));
    let revision = store.set_app_outbound(&t, &app("api"), &set).await.unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(store.app_outbound(&t, &app("api")).await.unwrap(), set);
    assert_eq!(
        store
            .get_app(&t, &app("api"))
            .await
            .unwrap()
            .updated_revision,
        revision
    );

    // Over the caps: refused, nothing written.
    store
        .set_tenant_limits(&t, &caps(Some(2), Some(10)))
        .await
        .unwrap();
    assert_eq!(
        store.tenant_limits(&t).await.unwrap(),
        caps(Some(2), Some(10))
    );
    let three = policy(
        &["https://a.test", "https://b.test", "https://c.test"],
        None,
    );
    assert!(matches!(
        store.set_app_outbound(&t, &app("api"), &three).await,
        Err(StoreError::OutboundLimit {
            cap: "max_outbound_destinations",
            max: 2,
            asked: 3
        })
    ));
    assert!(matches!(
        store
            .set_app_outbound(&t, &app("api"), &policy(&[], Some(11)))
            .await,
        Err(StoreError::OutboundLimit {
            cap: "max_subrequests",
            max: 10,
            asked: 11
        })
    ));
    assert_eq!(store.app_outbound(&t, &app("api")).await.unwrap(), set);

    // Caps below what an app uses: refused, naming it.
    match store.set_tenant_limits(&t, &caps(Some(1), None)).await {
        Err(StoreError::LimitInUse { cap, apps, .. }) => {
            assert_eq!(
                (cap, apps),
                ("max_outbound_destinations", vec!["api".to_string()])
            );
        }
        other => panic!("expected LimitInUse, got {other:?}"),
    }
    assert_eq!(
        store.tenant_limits(&t).await.unwrap(),
        caps(Some(2), Some(10))
    );

    // The snapshot carries a deployed app's policy, its default settled
    // under the cap.
    store
        .add_version(&t, &app("api"), &version(40), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &app("api"), 1).await.unwrap();
    let no_number = policy(&["https://a.test"], None);
    store
        .set_app_outbound(&t, &app("api"), &no_number)
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let carried = snapshot
        .apps
        .iter()
        .find(|a| a.tenant == t && a.name == app("api"))
        .unwrap();
    assert_eq!(carried.outbound, policy(&["https://a.test"], Some(10)));

    // Cleared, and caps back to the default; deleting the app drops its policy.
    store
        .set_app_outbound(&t, &app("api"), &AppOutbound::default())
        .await
        .unwrap();
    assert_eq!(
        store.app_outbound(&t, &app("api")).await.unwrap(),
        AppOutbound::default()
    );
    store
        .set_tenant_limits(&t, &SetTenantLimits::default())
        .await
        .unwrap();
    assert_eq!(
        store.tenant_limits(&t).await.unwrap(),
        SetTenantLimits::default()
    );
    store
        .set_app_outbound(&t, &app("api"), &no_number)
        .await
        .unwrap();
    store.delete_app(&t, &app("api")).await.unwrap();
    assert!(
        store
            .dump()
            .await
            .unwrap()
            .app_outbound
            .iter()
            .all(|p| p.tenant != t)
    );
}

/// A policy and caps for [`super::dump_restore`].
pub(super) async fn fill_for_dump<M: MetaStore>(store: &M, t: &TenantId, a: &AppName) {
    store
        .set_tenant_limits(t, &caps(Some(5), None))
        .await
        .unwrap();
    store
        .set_app_outbound(
            t,
            a,
            &policy(
                &["https://api.example.com", "http://*.example.org:8080"],
                Some(3),
            ),
        )
        .await
        .unwrap();
}

pub(super) async fn check_restored<A: MetaStore, B: MetaStore>(
    a: &A,
    b: &B,
    t: &TenantId,
    name: &AppName,
) {
    assert_eq!(
        a.app_outbound(t, name).await.unwrap(),
        b.app_outbound(t, name).await.unwrap()
    );
    assert_eq!(b.tenant_limits(t).await.unwrap(), caps(Some(5), None));
}
