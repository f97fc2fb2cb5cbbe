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
