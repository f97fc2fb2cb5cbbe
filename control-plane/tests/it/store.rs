//! The embedded backends pass the conformance suite every backend must pass.

use edge_cp::store::conformance;
use edge_cp::store::fs::FsBlobStore;
use edge_cp::store::sqlite::SqliteMetaStore;

#[tokio::test]
async fn sqlite_meta_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetaStore::open(&dir.path().join("meta.sqlite3")).unwrap();
    conformance::meta_store(&store).await;
}

#[tokio::test]
async fn sqlite_meta_store_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    let (revision, epoch) = {
        let store = SqliteMetaStore::open(&path).unwrap();
        conformance::meta_store_fill(&store).await
    };
    let store = SqliteMetaStore::open(&path).unwrap();
    conformance::meta_store_check(&store, revision, &epoch).await;
    // A recreated store is another epoch.
    let other = SqliteMetaStore::open(&dir.path().join("other.sqlite3")).unwrap();
    assert_ne!(conformance_epoch(&other).await, epoch);
}

async fn conformance_epoch(store: &SqliteMetaStore) -> String {
    use edge_cp::store::MetaStore;
    store.epoch().await.unwrap()
}

/// A database made before origin apps and quotas existed (no `apps.origin`,
/// `apps.forward_override_headers` or `tenants.storage_quota_bytes`
/// column, no purge tables) opens, keeps its apps, and takes origin apps
/// (with their options), purges and quotas.
#[tokio::test]
async fn sqlite_meta_store_migrates_an_older_database() {
    use edge_common::AppLimits;
    use edge_common::sync::PurgeTarget;
    use edge_cp::store::{AppOrigin, MetaStore, TenantStorage};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
             INSERT INTO identity (id, epoch) VALUES (1, 'old-epoch');
             CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
             INSERT INTO revision (id, value) VALUES (1, 7);
             CREATE TABLE tenants (id TEXT PRIMARY KEY, created_unix INTEGER NOT NULL);
             INSERT INTO tenants VALUES ('acme', 1);
             CREATE TABLE apps (
                 tenant TEXT NOT NULL REFERENCES tenants(id),
                 name TEXT NOT NULL,
                 active_version INTEGER,
                 config TEXT NOT NULL,
                 limits TEXT NOT NULL,
                 created_unix INTEGER NOT NULL,
                 updated_revision INTEGER NOT NULL,
                 PRIMARY KEY (tenant, name)
             );
             CREATE TABLE hosts (host TEXT PRIMARY KEY, tenant TEXT NOT NULL, app TEXT NOT NULL, position INTEGER NOT NULL);
             INSERT INTO hosts VALUES ('web.test', 'acme', 'web', 0);",
        )
        .unwrap();
        old.execute(
            "INSERT INTO apps VALUES ('acme', 'web', NULL, '{}', ?1, 1, 7)",
            [serde_json::to_string(&AppLimits::default()).unwrap()],
        )
        .unwrap();
    }
    let (acme, web, proxy) = (
        "acme".parse().unwrap(),
        "web".parse().unwrap(),
        "proxy".parse().unwrap(),
    );
    for _ in 0..2 {
        // Twice: the migration is done once and then left alone.
        let store = SqliteMetaStore::open(&path).unwrap();
        assert_eq!(store.epoch().await.unwrap(), "old-epoch");
        let app = store.get_app(&acme, &web).await.unwrap();
        assert_eq!((app.origin, app.hosts.len()), (None, 1));
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    store
        .create_app(
            &acme,
            &proxy,
            &[edge_common::names::HostPattern::try_from("proxy.test".to_string()).unwrap()],
            &AppLimits::default(),
            Some(&AppOrigin {
                url: "http://origin.test".into(),
                forward_override_headers: true,
            }),
        )
        .await
        .unwrap();
    let (purge, revision) = store
        .add_purge(&acme, &web, &PurgeTarget::All, false)
        .await
        .unwrap();
    assert_eq!((purge.id, revision), (1, 9));
    assert_eq!(
        store.tenant_storage(&acme).await.unwrap(),
        TenantStorage {
            quota_bytes: None,
            used_bytes: 0
        },
        "an old tenant has the default quota"
    );
    store.set_tenant_quota(&acme, Some(4096)).await.unwrap();
    drop(store);
    let store = SqliteMetaStore::open(&path).unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.origins.len(), 1);
    assert!(snapshot.origins[0].forward_override_headers);
    assert_eq!(snapshot.purges, vec![purge]);
    assert_eq!(
        store.tenant_storage(&acme).await.unwrap().quota_bytes,
        Some(4096),
        "the quota survives a reopen"
    );
}

/// A database made after origin apps but before their
/// `forward_override_headers` opens; its origin apps keep their origin,
/// get the option off, and can have it set (kept across a reopen).
#[tokio::test]
async fn sqlite_meta_store_migrates_origin_apps_made_before_their_options() {
    use edge_common::AppLimits;
    use edge_cp::store::{AppOrigin, MetaStore};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
             INSERT INTO identity (id, epoch) VALUES (1, 'old-epoch');
             CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
             INSERT INTO revision (id, value) VALUES (1, 3);
             CREATE TABLE tenants (id TEXT PRIMARY KEY, created_unix INTEGER NOT NULL, storage_quota_bytes INTEGER);
             INSERT INTO tenants VALUES ('acme', 1, NULL);
             CREATE TABLE apps (
                 tenant TEXT NOT NULL REFERENCES tenants(id),
                 name TEXT NOT NULL,
                 active_version INTEGER,
                 origin TEXT,
                 config TEXT NOT NULL,
                 limits TEXT NOT NULL,
                 created_unix INTEGER NOT NULL,
                 updated_revision INTEGER NOT NULL,
                 PRIMARY KEY (tenant, name)
             );
             CREATE TABLE hosts (host TEXT PRIMARY KEY, tenant TEXT NOT NULL, app TEXT NOT NULL, position INTEGER NOT NULL);
             INSERT INTO hosts VALUES ('proxy.test', 'acme', 'proxy', 0);",
        )
        .unwrap();
        old.execute(
            "INSERT INTO apps VALUES ('acme', 'proxy', NULL, 'http://origin.test', '{}', ?1, 1, 3)",
            [serde_json::to_string(&AppLimits::default()).unwrap()],
        )
        .unwrap();
    }
    let (acme, proxy) = ("acme".parse().unwrap(), "proxy".parse().unwrap());
    let off = AppOrigin {
        url: "http://origin.test".into(),
        forward_override_headers: false,
    };
    for _ in 0..2 {
        let store = SqliteMetaStore::open(&path).unwrap();
        assert_eq!(
            store.get_app(&acme, &proxy).await.unwrap().origin,
            Some(off.clone())
        );
        let snapshot = store.snapshot().await.unwrap();
        assert_eq!(snapshot.revision, 3);
        assert_eq!(snapshot.origins.len(), 1);
        assert!(!snapshot.origins[0].forward_override_headers);
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    let (set, revision) = store
        .set_origin(&acme, &proxy, "http://origin.test", Some(true))
        .await
        .unwrap();
    assert!(set.forward_override_headers);
    assert_eq!(revision, 4);
    drop(store);
    let snapshot = SqliteMetaStore::open(&path)
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.revision, 4);
    assert!(snapshot.origins[0].forward_override_headers);
}

/// The schema is versioned: a new database and one made before versioning
/// (with every table of the time) both end at the latest version
/// (V3, certificate leases), each recorded once however often opened, with
/// their data kept.
#[tokio::test]
async fn sqlite_meta_store_versions_its_schema() {
    use edge_cp::store::MetaStore;

    let history = |path: &std::path::Path| -> Vec<(i64, String)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT version, name FROM refinery_schema_history ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.sqlite3");
    drop(SqliteMetaStore::open(&fresh).unwrap());
    drop(SqliteMetaStore::open(&fresh).unwrap());
    let latest = vec![
        (1, "initial".to_string()),
        (2, "certificates".to_string()),
        (3, "certificate_leases".to_string()),
        (4, "secrets".to_string()),
        (5, "outbound".to_string()),
        (6, "logs".to_string()),
        (7, "kv".to_string()),
        (8, "compression".to_string()),
    ];
    assert_eq!(history(&fresh), latest);

    // Made by the last release without versioning: its schema is V1's.
    let old = dir.path().join("old.sqlite3");
    {
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/V1__initial.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO identity (id, epoch) VALUES (1, 'before-versioning');
             UPDATE revision SET value = 5;
             INSERT INTO tenants (id, created_unix) VALUES ('acme', 1);",
        )
        .unwrap();
    }
    for _ in 0..2 {
        let store = SqliteMetaStore::open(&old).unwrap();
        assert_eq!(store.epoch().await.unwrap(), "before-versioning");
        assert_eq!(store.revision().await.unwrap(), 5);
        assert!(store.tenant_exists(&"acme".parse().unwrap()).await.unwrap());
    }
    assert_eq!(history(&old), latest);
}

/// A database at V1 (made by the release before certificates) migrates
/// to V2 on open: its apps keep everything and get HTTPS off, and
/// certificates work at once.
#[tokio::test]
async fn sqlite_meta_store_migrates_a_v1_database_for_certificates() {
    use edge_common::AppLimits;
    use edge_common::sync::AppHttps;
    use edge_cp::store::{CertSource, MetaStore, NewCertificate};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let v1 = refinery::Migration::unapplied(
            "V1__initial",
            include_str!("../../migrations/sqlite/V1__initial.sql"),
        )
        .unwrap();
        refinery::Runner::new(&[v1]).run(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO identity (id, epoch) VALUES (1, 'v1-epoch');
             UPDATE revision SET value = 4;
             INSERT INTO tenants (id, created_unix) VALUES ('acme', 1);
             INSERT INTO hosts VALUES ('web.v1.test', 'acme', 'web', 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO apps (tenant, name, active_version, config, limits, created_unix, updated_revision)
             VALUES ('acme', 'web', NULL, '{\"K\":\"v\"}', ?1, 1, 4)",
            [serde_json::to_string(&AppLimits::default()).unwrap()],
        )
        .unwrap();
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    let (acme, web) = ("acme".parse().unwrap(), "web".parse().unwrap());
    let old = store.get_app(&acme, &web).await.unwrap();
    assert_eq!(old.config.get("K").map(String::as_str), Some("v"));
    assert_eq!(old.https, AppHttps::default(), "HTTPS options start off");
    assert_eq!(store.revision().await.unwrap(), 4);
    let https = AppHttps {
        redirect: false,
        hsts: Some("max-age=10".into()),
    };
    assert_eq!(store.set_app_https(&acme, &web, &https).await.unwrap(), 5);
    let (cert, revision) = store
        .add_certificate(
            &acme,
            &web,
            NewCertificate {
                hosts: vec![
                    edge_common::names::HostPattern::try_from("web.v1.test".to_string()).unwrap(),
                ],
                source: CertSource::Acme,
                material: None,
                next_attempt_unix: Some(1),
            },
            &edge_cp::store::CertLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!((cert.id, revision), (1, 5));
    drop(store);
    let store = SqliteMetaStore::open(&path).unwrap();
    assert_eq!(store.get_app(&acme, &web).await.unwrap().https, https);
    assert_eq!(store.get_certificate(1).await.unwrap(), cert);
}

/// A database at V2 (certificates whose ACME lease was written over the
/// due time) migrates to V3 on open: its certificates keep everything,
/// hold no lease and no renewal request, a due time still in the future
/// (a V2 lease) is waited for, and bundles are found by digest.
#[tokio::test]
async fn sqlite_meta_store_migrates_a_v2_database_for_leases() {
    use edge_common::AppLimits;
    use edge_cp::store::{CertificateCounts, MetaStore};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite3");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let migrations = [
            (
                "V1__initial",
                include_str!("../../migrations/sqlite/V1__initial.sql"),
            ),
            (
                "V2__certificates",
                include_str!("../../migrations/sqlite/V2__certificates.sql"),
            ),
        ]
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql).unwrap());
        refinery::Runner::new(&migrations).run(&mut conn).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO identity (id, epoch) VALUES (1, 'v2-epoch');
             UPDATE revision SET value = 7;
             UPDATE certificate_counter SET value = 2;
             INSERT INTO tenants (id, created_unix) VALUES ('acme', 1);
             INSERT INTO hosts VALUES ('web.v2.test', 'acme', 'web', 0);
             INSERT INTO certificates (id, tenant, app, hosts, source, chain_pem, sealed_key,
                 bundle_sha256, bundle_size, issuer, not_before_unix, not_after_unix,
                 last_error, attempts, next_attempt_unix, created_unix, updated_unix)
             VALUES (1, 'acme', 'web', '[\"web.v2.test\"]', 'uploaded', 'chain', X'00ff',
                     '{digest}', 10, 'CN=ca', 100, 400, NULL, 0, NULL, 5, 5),
                    (2, 'acme', 'web', '[\"web.v2.test\"]', 'acme', NULL, NULL, NULL, NULL,
                     NULL, NULL, NULL, 'the CA said no', 3, 2000, 5, 6);",
            digest = "ab".repeat(32)
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO apps (tenant, name, active_version, origin, config, limits,
                               created_unix, updated_revision)
             VALUES ('acme', 'web', NULL, 'http://origin.test', '{}', ?1, 1, 7)",
            [serde_json::to_string(&AppLimits::default()).unwrap()],
        )
        .unwrap();
    }
    let store = SqliteMetaStore::open(&path).unwrap();
    assert_eq!(store.epoch().await.unwrap(), "v2-epoch");
    let pending = store.get_certificate(2).await.unwrap();
    assert_eq!(
        (
            pending.last_error.as_deref(),
            pending.attempts,
            pending.next_attempt_unix,
            pending.lease_until_unix,
            pending.renew_requested
        ),
        (Some("the CA said no"), 3, Some(2000), None, false)
    );
    assert_eq!(store.claim_certificate(2, 1999, 2600).await.unwrap(), None);
    let lease = store
        .claim_certificate(2, 2000, 2600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lease.id, lease.until_unix), (2, 2600));
    let found = store
        .certificate_by_bundle(&"ab".repeat(32))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.material.unwrap().sealed_key),
        (1, vec![0, 0xff])
    );
    assert_eq!(
        store.certificate_counts(200).await.unwrap(),
        CertificateCounts {
            issued: 1,
            failed: 1,
            ..CertificateCounts::default()
        }
    );
    assert_eq!(store.revision().await.unwrap(), 7);
}

#[tokio::test]
async fn sqlite_meta_store_dumps_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteMetaStore::open(&dir.path().join("a.sqlite3")).unwrap();
    let b = SqliteMetaStore::open(&dir.path().join("b.sqlite3")).unwrap();
    conformance::dump_restore(&a, &b).await;
}

#[tokio::test]
async fn fs_blob_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    conformance::blob_store(&store).await;
    // Leftover temporary files of an interrupted write are cleared on open
    // and never show up as blobs.
    std::fs::write(dir.path().join("tmp").join("123-0"), b"half").unwrap();
    let reopened = FsBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    conformance::blob_store(&reopened).await;
}

/// `put` of bytes already stored and `touch` make an old blob young again:
/// garbage collection relies on it to spare blobs an upload is reusing.
#[tokio::test]
async fn fs_blob_store_put_and_touch_refresh_the_modified_time() {
    use edge_cp::store::BlobStore;
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let bytes = bytes::Bytes::from_static(b"an old blob");
    let sha = store.put(bytes.clone()).await.unwrap();
    let path = dir.path().join("blobs").join(&sha[..2]).join(&sha);
    let long_ago = 1_000_000;
    let age = |path: &std::path::Path| {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(long_ago))
            .unwrap();
    };
    let modified = || async { store.list(None, 10).await.unwrap()[0].modified_unix };

    age(&path);
    assert_eq!(modified().await, long_ago);
    store.put(bytes.clone()).await.unwrap();
    assert!(modified().await > long_ago, "put refreshes");
    age(&path);
    assert!(store.touch(&sha).await.unwrap());
    assert!(modified().await > long_ago, "touch refreshes");
    age(&path);
    assert!(
        store
            .delete_if_unmodified_since(&sha, long_ago)
            .await
            .unwrap(),
        "not modified after the time given"
    );
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// A garbage-collection pass over the embedded backends deletes a blob
/// only if no version references it and it is older than the grace.
#[tokio::test]
async fn gc_deletes_only_old_unreferenced_blobs() {
    use edge_common::AppLimits;
    use edge_common::sync::ArtifactRef;
    use edge_cp::store::{BlobStore, MetaStore, NewVersion};
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetaStore::open(&dir.path().join("meta.sqlite3")).unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let put = |b: &'static [u8]| blobs.put(bytes::Bytes::from_static(b));
    let (source, artifact) = (
        put(b"source").await.unwrap(),
        put(b"artifact").await.unwrap(),
    );
    let (old_garbage, young_garbage) = (put(b"old").await.unwrap(), put(b"young").await.unwrap());
    let acme = "acme".parse().unwrap();
    let web = "web".parse().unwrap();
    meta.create_tenant(&acme).await.unwrap();
    meta.create_app(
        &acme,
        &web,
        &[edge_common::names::HostPattern::try_from("web.test".to_string()).unwrap()],
        &AppLimits::default(),
        None,
    )
    .await
    .unwrap();
    meta.add_version(
        &acme,
        &web,
        &NewVersion {
            source_sha256: source.clone(),
            source_size: 6,
            artifact: ArtifactRef {
                sha256: artifact.clone(),
                size: 8,
                engine: "e".into(),
            },
        },
        u64::MAX,
    )
    .await
    .unwrap();
    let path = |sha: &str| dir.path().join("blobs").join(&sha[..2]).join(sha);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for sha in [&source, &artifact, &old_garbage] {
        std::fs::File::open(path(sha))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }

    let stats = edge_cp::gc::collect(&meta, &blobs, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (stats.listed, stats.deleted, stats.deleted_bytes),
        (4, 1, 3)
    );
    assert!(!path(&old_garbage).exists());
    for kept in [&source, &artifact, &young_garbage] {
        assert!(path(kept).exists(), "{kept} is referenced or young");
    }
}
