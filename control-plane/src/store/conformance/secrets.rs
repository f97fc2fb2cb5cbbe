//! App secrets: what every backend must do with them. Sealed values are
//! arbitrary bytes here (the store never opens them), and bundles are
//! records the caller built.

use edge_common::AppLimits;
use edge_common::names::{AppName, TenantId};
use edge_common::secrets::SecretsRef;

use super::{NO_QUOTA, app, host, origin, tenant, version};
use crate::store::{MetaStore, SecretBundleRecord, SecretWrite, StoreError};

fn bundle(n: u8) -> SecretBundleRecord {
    SecretBundleRecord {
        salt: format!("{n:02x}").repeat(16),
        sha256: format!("{:02x}", n.wrapping_add(7)).repeat(32),
        size: 100 + u64::from(n),
    }
}

/// Every byte value, so a backend that mangles a NUL or a high byte fails.
fn sealed(n: u8) -> Vec<u8> {
    (0..=255u8).chain([n, 0, n]).collect()
}

fn set(name: &str, n: u8, expected: Option<&SecretBundleRecord>, max: u64) -> SecretWrite {
    SecretWrite {
        name: name.into(),
        sealed: Some(sealed(n)),
        expected_bundle: expected.map(|b| b.sha256.clone()),
        bundle: Some(bundle(n)),
        max_per_app: max,
    }
}

pub(super) async fn secrets<M: MetaStore>(store: &M) {
    let t = tenant("secrets-t");
    let other = tenant("secrets-o");
    store.create_tenant(&t).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    let limits = AppLimits::default();
    let web = app("vault");
    store
        .create_app(&t, &web, &[host("vault.secrets.test")], &limits, None)
        .await
        .unwrap();
    store
        .add_version(&t, &web, &version(40), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &web, 1).await.unwrap();

    // None yet: no bundle, nothing in the snapshot.
    let none = store.app_secrets(&t, &web).await.unwrap();
    assert!(none.bundle.is_none() && none.secrets.is_empty());
    assert!(matches!(
        store.app_secrets(&other, &web).await,
        Err(StoreError::NotFound(_))
    ));

    // A set bumps the revision and the app's, and the snapshot names the
    // bundle by digest and size.
    let before = store.revision().await.unwrap();
    let (made, revision) = store
        .write_secret(&t, &web, &set("API_KEY", 1, None, 10))
        .await
        .unwrap();
    let made = made.unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(
        (made.name.as_str(), made.sealed.clone()),
        ("API_KEY", sealed(1))
    );
    assert_eq!(
        store.get_app(&t, &web).await.unwrap().updated_revision,
        revision
    );
    let snapshot = store.snapshot().await.unwrap();
    let spec = snapshot.apps.iter().find(|a| a.name == web).unwrap();
    assert_eq!(
        spec.secrets,
        Some(SecretsRef {
            sha256: bundle(1).sha256,
            size: bundle(1).size
        })
    );

    // Built from a bundle that is no longer there: refused, nothing written.
    let stale = store
        .write_secret(&t, &web, &set("OTHER", 2, None, 10))
        .await;
    assert!(
        matches!(stale, Err(StoreError::SecretsChanged(_))),
        "{stale:?}"
    );
    assert_eq!(store.revision().await.unwrap(), revision);

    // A replace keeps the creation time; a second name; found by digest.
    let (replaced, _) = store
        .write_secret(&t, &web, &set("API_KEY", 3, Some(&bundle(1)), 10))
        .await
        .unwrap();
    assert_eq!(replaced.unwrap().created_unix, made.created_unix);
    store
        .write_secret(&t, &web, &set("B.other-1", 4, Some(&bundle(3)), 10))
        .await
        .unwrap();
    let found = store
        .secrets_by_bundle(&bundle(4).sha256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.tenant.clone(), found.app.clone()),
        (t.clone(), web.clone())
    );
    assert_eq!(found.bundle, Some(bundle(4)));
    let names: Vec<_> = found.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["API_KEY", "B.other-1"]);
    assert_eq!(found.secrets[0].sealed, sealed(3));
    assert!(
        store
            .secrets_by_bundle(&bundle(1).sha256)
            .await
            .unwrap()
            .is_none()
    );

    // The limit counts new names only.
    let full = store
        .write_secret(&t, &web, &set("THIRD", 5, Some(&bundle(4)), 2))
        .await;
    assert!(
        matches!(full, Err(StoreError::SecretLimit { max: 2, .. })),
        "{full:?}"
    );
    store
        .write_secret(&t, &web, &set("API_KEY", 6, Some(&bundle(4)), 2))
        .await
        .unwrap();

    // Reseal: a compare-and-swap on the sealed bytes, no revision.
    let revision = store.revision().await.unwrap();
    assert!(
        !store
            .reseal_secret(&t, &web, "API_KEY", &sealed(1), &sealed(9))
            .await
            .unwrap()
    );
    assert!(
        store
            .reseal_secret(&t, &web, "API_KEY", &sealed(6), &sealed(9))
            .await
            .unwrap()
    );
    assert_eq!(store.revision().await.unwrap(), revision);
    let all = store.all_secrets().await.unwrap();
    let mine: Vec<_> = all.iter().filter(|s| s.tenant == t).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].sealed, sealed(9));

    // Deletes: an unknown name is NotFound; the last one drops the bundle.
    let delete = |name: &str, expected: u8, left: Option<SecretBundleRecord>| SecretWrite {
        name: name.into(),
        sealed: None,
        expected_bundle: Some(bundle(expected).sha256),
        bundle: left,
        max_per_app: 2,
    };
    assert!(matches!(
        store
            .write_secret(&t, &web, &delete("NOPE", 6, Some(bundle(7))))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let (gone, _) = store
        .write_secret(&t, &web, &delete("API_KEY", 6, Some(bundle(7))))
        .await
        .unwrap();
    assert!(gone.is_none());
    let (_, last) = store
        .write_secret(&t, &web, &delete("B.other-1", 7, None))
        .await
        .unwrap();
    assert!(store.app_secrets(&t, &web).await.unwrap().bundle.is_none());
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, last);
    assert!(
        snapshot
            .apps
            .iter()
            .find(|a| a.name == web)
            .unwrap()
            .secrets
            .is_none()
    );

    // Origin apps have none; deleting an app deletes its secrets.
    let proxy = app("vault-proxy");
    store
        .create_app(
            &t,
            &proxy,
            &[host("proxy.secrets.test")],
            &limits,
            Some(&origin("https://origin.test", false)),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.write_secret(&t, &proxy, &set("K", 1, None, 2)).await,
        Err(StoreError::OriginApp(_))
    ));
    store
        .write_secret(&t, &web, &set("K", 8, None, 2))
        .await
        .unwrap();
    store.delete_app(&t, &web).await.unwrap();
    assert!(
        store
            .secrets_by_bundle(&bundle(8).sha256)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .all_secrets()
            .await
            .unwrap()
            .iter()
            .all(|s| s.tenant != t)
    );
}

/// Secrets for [`super::dump_restore`]'s app `web` of `t`.
pub(super) async fn fill_for_dump<M: MetaStore>(store: &M, t: &TenantId, web: &AppName) {
    store
        .write_secret(t, web, &set("DUMPED", 11, None, 10))
        .await
        .unwrap();
}

pub(super) async fn check_restored<A: MetaStore, B: MetaStore>(
    a: &A,
    b: &B,
    t: &TenantId,
    web: &AppName,
) {
    let (from, to) = (
        a.app_secrets(t, web).await.unwrap(),
        b.app_secrets(t, web).await.unwrap(),
    );
    assert_eq!(from, to);
    assert_eq!(to.bundle, Some(bundle(11)));
    assert_eq!(to.secrets[0].sealed, sealed(11));
    assert!(
        b.secrets_by_bundle(&bundle(11).sha256)
            .await
            .unwrap()
            .is_some()
    );
}
