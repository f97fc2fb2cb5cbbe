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

/// A database made before origin apps existed (no `apps.origin` column, no
/// purge tables) opens, keeps its apps, and takes origin apps and purges.
#[tokio::test]
async fn sqlite_meta_store_migrates_an_older_database() {
    use edge_common::AppLimits;
    use edge_common::sync::PurgeTarget;
    use edge_cp::store::MetaStore;

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
            Some("http://origin.test"),
        )
        .await
        .unwrap();
    let (purge, revision) = store
        .add_purge(&acme, &web, &PurgeTarget::All, false)
        .await
        .unwrap();
    assert_eq!((purge.id, revision), (1, 9));
    drop(store);
    let snapshot = SqliteMetaStore::open(&path)
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.origins.len(), 1);
    assert_eq!(snapshot.purges, vec![purge]);
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
