//! Key-value stores (issue 16): what every backend must do with stores,
//! links, entries, the seq counter, the change stream, snapshot pages and
//! pruning.

use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::kv::{KvCursor, KvErrorCode, KvOp, KvOpResult, KvValue};
use edge_common::names::{AppName, TenantId};

use super::{NO_QUOTA, app, tenant, version};
use crate::store::{KvWrite, MetaStore, StoreError};

fn code<T: std::fmt::Debug>(result: Result<T, StoreError>) -> KvErrorCode {
    match result {
        Err(StoreError::Kv(e)) => e.code,
        other => panic!("expected a key-value refusal, got {other:?}"),
    }
}

fn set(key: &str, value: &[u8]) -> KvOp {
    KvOp::Set {
        key: key.into(),
        value: KvValue(value.to_vec()),
    }
}

fn write(t: &TenantId, app: Option<&AppName>, store: &str, ops: Vec<KvOp>, now: u64) -> KvWrite {
    KvWrite {
        tenant: t.clone(),
        app: app.cloned(),
        store: store.into(),
        ops,
        now_unix: now,
    }
}

pub(super) async fn kv<M: MetaStore>(store: &M) {
    stores_and_links(store).await;
    entries_and_writes(store).await;
    limits(store).await;
    stream_snapshot_and_prune(store).await;
    concurrent_writes_take_contiguous_seqs(store).await;
    racing_writers_stop_at_the_keys_limit(store).await;
    drops_race_writes_and_links(store).await;
    answers_are_cut_by_bytes(store).await;
}

async fn stores_and_links<M: MetaStore>(store: &M) {
    let (t, other) = (tenant("kv-a"), tenant("kv-b"));
    store.create_tenant(&t).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    assert!(matches!(
        store.kv_stores(&tenant("kv-none")).await,
        Err(StoreError::NotFound(_))
    ));
    let created = store
        .kv_create_store(&t, "data", "id-a-data", 100)
        .await
        .unwrap();
    assert_eq!((created.name.as_str(), created.created_unix), ("data", 100));
    assert_eq!(
        code(store.kv_create_store(&t, "data", "id-a-other", 100).await),
        KvErrorCode::StoreExists
    );
    assert_eq!(
        code(store.kv_create_store(&t, "Bad Name", "id-bad", 100).await),
        KvErrorCode::StoreNameInvalid
    );
    // Names are per tenant.
    store
        .kv_create_store(&other, "data", "id-b-data", 100)
        .await
        .unwrap();
    assert_eq!(store.kv_stores(&t).await.unwrap().len(), 1);
    assert_eq!(
        store.kv_store(&other, "data").await.unwrap().id,
        "id-b-data"
    );
    assert_eq!(
        code(store.kv_store(&t, "nope").await),
        KvErrorCode::StoreNotFound
    );

    // Links bump the revision (the snapshot lists them); a repeat does not.
    store
        .create_app(&t, &app("web"), &[], &AppLimits::default(), None)
        .await
        .unwrap();
    store
        .add_version(&t, &app("web"), &version(60), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &app("web"), 1).await.unwrap();
    let before = store.revision().await.unwrap();
    let linked = store.kv_link(&t, &app("web"), "data").await.unwrap();
    assert_eq!(linked, Some(before + 1));
    assert_eq!(store.kv_link(&t, &app("web"), "data").await.unwrap(), None);
    let links = store.kv_app_links(&t, &app("web")).await.unwrap();
    assert_eq!(
        (links[0].name.as_str(), links[0].store.as_str()),
        ("data", "id-a-data")
    );
    let snapshot = store.snapshot().await.unwrap();
    let web = snapshot
        .apps
        .iter()
        .find(|a| a.tenant == t && a.name == app("web"))
        .unwrap();
    assert_eq!(web.kv, links);
    assert_eq!(web.kv_limits, edge_common::kv::KvLimits::DEFAULT);
    assert_eq!(
        store.kv_store(&t, "data").await.unwrap().apps,
        vec![app("web")]
    );
    // Another tenant's store cannot be linked: it is not found.
    store
        .create_app(&other, &app("site"), &[], &AppLimits::default(), None)
        .await
        .unwrap();
    store
        .kv_create_store(&other, "only-b", "id-b-only", 100)
        .await
        .unwrap();
    assert_eq!(
        code(store.kv_link(&t, &app("web"), "only-b").await),
        KvErrorCode::StoreNotFound
    );
    assert!(matches!(
        store.kv_link(&t, &app("nope"), "data").await,
        Err(StoreError::NotFound(_))
    ));

    // A linked store is not dropped; an unlinked one is, once.
    assert_eq!(
        code(store.kv_drop_store(&t, "data", 200).await),
        KvErrorCode::StoreLinked
    );
    let before = store.revision().await.unwrap();
    assert_eq!(
        store.kv_unlink(&t, &app("web"), "data").await.unwrap(),
        Some(before + 1)
    );
    assert_eq!(
        store.kv_unlink(&t, &app("web"), "data").await.unwrap(),
        None
    );
    store.kv_drop_store(&t, "data", 200).await.unwrap();
    assert_eq!(
        code(store.kv_drop_store(&t, "data", 200).await),
        KvErrorCode::StoreNotFound
    );
    // The other tenant's store of the same name is untouched.
    store.kv_store(&other, "data").await.unwrap();

    // Deleting an app deletes its links (the store can then be dropped).
    store.kv_link(&other, &app("site"), "data").await.unwrap();
    store.delete_app(&other, &app("site")).await.unwrap();
    assert!(
        store
            .kv_store(&other, "data")
            .await
            .unwrap()
            .apps
            .is_empty()
    );
    store.kv_drop_store(&other, "data", 200).await.unwrap();
}

async fn entries_and_writes<M: MetaStore>(store: &M) {
    let t = tenant("kv-entries");
    store.create_tenant(&t).await.unwrap();
    store
        .kv_create_store(&t, "s", "id-entries", 1)
        .await
        .unwrap();
    store
        .create_app(&t, &app("web"), &[], &AppLimits::default(), None)
        .await
        .unwrap();
    let revision = store.revision().await.unwrap();

    // An app's write needs its link.
    assert_eq!(
        code(
            store
                .kv_write(&write(&t, Some(&app("web")), "s", vec![set("k", b"v")], 10))
                .await
        ),
        KvErrorCode::NotLinked
    );
    store.kv_link(&t, &app("web"), "s").await.unwrap();
    let revision = revision + 1;
    let ops = vec![
        set("k", b"v"),
        KvOp::Increment {
            key: "n".into(),
            delta: 5,
        },
        KvOp::CompareAndSwap {
            key: "k".into(),
            expected: Some(KvValue(b"v".to_vec())),
            value: KvValue(b"w".to_vec()),
        },
        KvOp::CompareAndSwap {
            key: "k".into(),
            expected: None,
            value: KvValue(b"lost".to_vec()),
        },
        KvOp::Delete { key: "gone".into() },
    ];
    let done = store
        .kv_write(&write(&t, Some(&app("web")), "s", ops, 10))
        .await
        .unwrap();
    assert_eq!(
        done.results,
        vec![
            KvOpResult::Done,
            KvOpResult::Incremented { value: 5 },
            KvOpResult::CompareAndSwap { swapped: true },
            KvOpResult::CompareAndSwap { swapped: false },
            KvOpResult::Done,
        ]
    );
    assert_eq!(done.changes.len(), 2);
    assert_eq!(done.changes[1].seq, done.changes[0].seq + 1);
    assert!(done.changes.iter().all(|c| c.store == "id-entries"));
    assert_eq!(
        store.kv_get(&t, "s", "k").await.unwrap(),
        Some(b"w".to_vec())
    );
    assert_eq!(
        store.kv_get(&t, "s", "n").await.unwrap(),
        Some(b"5".to_vec())
    );
    assert_eq!(store.kv_get(&t, "s", "gone").await.unwrap(), None);
    // A data write never changes the config revision.
    assert_eq!(store.revision().await.unwrap(), revision);

    // All or none: a failing op leaves nothing of its write.
    for (value, expected) in [
        (b"x".to_vec(), KvErrorCode::NotANumber),
        (u64::MAX.to_string().into_bytes(), KvErrorCode::Overflow),
    ] {
        store
            .kv_write(&write(&t, None, "s", vec![set("c", &value)], 11))
            .await
            .unwrap();
        let failing = vec![
            set("half", b"done"),
            KvOp::Increment {
                key: "c".into(),
                delta: 1,
            },
        ];
        assert_eq!(
            code(store.kv_write(&write(&t, None, "s", failing, 11)).await),
            expected
        );
        assert_eq!(store.kv_get(&t, "s", "half").await.unwrap(), None);
    }

    // Listing: by prefix, byte order, paged by the last key.
    for key in ["p/1", "p/2", "p/3", "p0", "q"] {
        store
            .kv_write(&write(&t, None, "s", vec![set(key, b"1")], 12))
            .await
            .unwrap();
    }
    let page = store.kv_keys(&t, "s", "p/", None, 2).await.unwrap();
    assert_eq!(page, vec!["p/1", "p/2"]);
    let page = store.kv_keys(&t, "s", "p/", Some("p/2"), 2).await.unwrap();
    assert_eq!(page, vec!["p/3"]);
    let all = store.kv_keys(&t, "s", "", None, 100).await.unwrap();
    assert_eq!(all, vec!["c", "k", "n", "p/1", "p/2", "p/3", "p0", "q"]);
    // Deleted keys are not listed; counters follow.
    store
        .kv_write(&write(
            &t,
            None,
            "s",
            vec![KvOp::Delete { key: "q".into() }],
            13,
        ))
        .await
        .unwrap();
    assert!(
        !store
            .kv_keys(&t, "s", "", None, 100)
            .await
            .unwrap()
            .contains(&"q".to_string())
    );
    let record = store.kv_store(&t, "s").await.unwrap();
    assert_eq!(record.keys, 7);
    // Another tenant sees none of it.
    assert_eq!(
        code(store.kv_get(&tenant("kv-a"), "s", "k").await),
        KvErrorCode::StoreNotFound
    );
    assert_eq!(
        code(
            store
                .kv_write(&write(&tenant("kv-a"), None, "s", vec![set("k", b"v")], 1))
                .await
        ),
        KvErrorCode::StoreNotFound
    );
}

async fn limits<M: MetaStore>(store: &M) {
    let t = tenant("kv-limits");
    store.create_tenant(&t).await.unwrap();
    let limits = SetTenantLimits {
        kv_max_keys_per_store: Some(2),
        kv_max_tenant_bytes: Some(10),
        kv_max_stores: Some(2),
        kv_max_ops_per_request: Some(3),
        kv_max_key_bytes: Some(4),
        kv_max_value_bytes: Some(5),
        ..SetTenantLimits::default()
    };
    store.set_tenant_limits(&t, &limits).await.unwrap();
    assert_eq!(store.tenant_limits(&t).await.unwrap(), limits);
    store
        .kv_create_store(&t, "one", "id-l-one", 1)
        .await
        .unwrap();
    store
        .kv_create_store(&t, "two", "id-l-two", 1)
        .await
        .unwrap();
    assert_eq!(
        code(store.kv_create_store(&t, "three", "id-l-three", 1).await),
        KvErrorCode::StoreLimit
    );
    let w = |ops| write(&t, None, "one", ops, 1);
    assert_eq!(
        code(store.kv_write(&w(vec![set("toolong", b"v")])).await),
        KvErrorCode::KeyTooLong
    );
    assert_eq!(
        code(store.kv_write(&w(vec![set("k", b"123456")])).await),
        KvErrorCode::ValueTooLarge
    );
    let four = (0..4)
        .map(|i| KvOp::Delete {
            key: format!("{i}"),
        })
        .collect();
    assert_eq!(code(store.kv_write(&w(four)).await), KvErrorCode::OpsLimit);
    store
        .kv_write(&w(vec![set("a", b"1"), set("b", b"1")]))
        .await
        .unwrap();
    assert_eq!(
        code(store.kv_write(&w(vec![set("c", b"1")])).await),
        KvErrorCode::KeysLimit
    );
    // A delete and a set in one write stay within the key count.
    store
        .kv_write(&w(vec![KvOp::Delete { key: "a".into() }, set("c", b"1")]))
        .await
        .unwrap();
    // 4 bytes held; 6 more reach the tenant's 10, 7 pass it (any store).
    store
        .kv_write(&write(&t, None, "two", vec![set("x", b"12345")], 1))
        .await
        .unwrap();
    assert_eq!(
        code(
            store
                .kv_write(&write(&t, None, "two", vec![set("y", b"1")], 1))
                .await
        ),
        KvErrorCode::BytesLimit
    );
    // Shrinking is always allowed.
    store
        .kv_write(&write(&t, None, "two", vec![set("x", b"1")], 1))
        .await
        .unwrap();
    let snapshot_limits = store.tenant_limits(&t).await.unwrap().kv();
    assert_eq!(snapshot_limits.max_stores, 2);
    // An admin lowers the key limit below a held key: it can no longer be
    // written, but it can still be deleted.
    store
        .kv_write(&write(&t, None, "two", vec![set("abc", b"")], 1))
        .await
        .unwrap();
    let lowered = SetTenantLimits {
        kv_max_key_bytes: Some(2),
        ..limits
    };
    store.set_tenant_limits(&t, &lowered).await.unwrap();
    assert_eq!(
        code(
            store
                .kv_write(&write(&t, None, "two", vec![set("abc", b"1")], 1))
                .await
        ),
        KvErrorCode::KeyTooLong
    );
    store
        .kv_write(&write(
            &t,
            None,
            "two",
            vec![KvOp::Delete { key: "abc".into() }],
            1,
        ))
        .await
        .unwrap();
    assert_eq!(store.kv_get(&t, "two", "abc").await.unwrap(), None);
}

async fn stream_snapshot_and_prune<M: MetaStore>(store: &M) {
    let t = tenant("kv-stream");
    store.create_tenant(&t).await.unwrap();
    store
        .kv_create_store(&t, "s", "id-stream", 1)
        .await
        .unwrap();
    let start = store.kv_head().await.unwrap().seq;
    let put = |key: &str, value: &[u8], now| write(&t, None, "s", vec![set(key, value)], now);
    let first = store.kv_write(&put("a", b"1", 1000)).await.unwrap();
    let second = store.kv_write(&put("b", b"2", 1000)).await.unwrap();
    assert!(first.changes[0].seq > start);
    assert!(second.changes[0].seq > first.changes[0].seq);
    store
        .kv_write(&write(
            &t,
            None,
            "s",
            vec![KvOp::Delete { key: "a".into() }],
            1000,
        ))
        .await
        .unwrap();
    store
        .kv_create_store(&t, "tmp", "id-stream-tmp", 1)
        .await
        .unwrap();
    store
        .kv_write(&write(&t, None, "tmp", vec![set("t", b"t")], 1000))
        .await
        .unwrap();
    let dropped_at = store.kv_drop_store(&t, "tmp", 1000).await.unwrap();
    let head = store.kv_head().await.unwrap();
    assert_eq!(head.seq, dropped_at);

    // The changes since `start`: set b, the tombstone of a, the drop (the
    // overwritten set of a and the dropped store's entry are gone).
    let run = store.kv_changes(start, 100).await.unwrap();
    let seen: Vec<_> = run
        .changes
        .iter()
        .map(|c| (c.store.as_str(), c.key.as_deref(), c.value.is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("id-stream", Some("b"), true),
            ("id-stream", Some("a"), false),
            ("id-stream-tmp", None, false),
        ]
    );
    assert!(run.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(run.head, dropped_at);
    let limited = store.kv_changes(start, 1).await.unwrap();
    assert_eq!(limited.changes.len(), 1);
    assert_eq!(limited.head, limited.changes[0].seq);
    let none = store.kv_changes(head.seq, 100).await.unwrap();
    assert!(none.changes.is_empty());
    assert_eq!(none.head, head.seq);

    // Snapshot pages at `at`: live entries with seq <= at, in (store, key)
    // order; a key changed later is left out.
    for key in ["c", "d", "e"] {
        store.kv_write(&put(key, b"x", 1000)).await.unwrap();
    }
    let at = store.kv_head().await.unwrap().seq;
    store.kv_write(&put("d", b"later", 1000)).await.unwrap();
    let mut cursor: Option<KvCursor> = None;
    let mut keys = Vec::new();
    loop {
        let page = store
            .kv_snapshot_page(at, cursor.as_ref(), 2)
            .await
            .unwrap();
        assert!(page.entries.len() <= 2);
        for e in &page.entries {
            assert!(e.seq <= at);
            if e.store == "id-stream" {
                keys.push(e.key.clone());
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(keys, vec!["b", "c", "e"]);

    // Pruning: tombstones and drops older than the cut go, the mark moves
    // to the highest seq deleted; newer ones stay.
    let mark_before = store.kv_head().await.unwrap().pruned;
    store
        .kv_write(&write(
            &t,
            None,
            "s",
            vec![KvOp::Delete { key: "c".into() }],
            5000,
        ))
        .await
        .unwrap();
    let pruned = store.kv_prune(2000).await.unwrap();
    assert!(pruned.tombstones >= 1 && pruned.drops >= 1, "{pruned:?}");
    assert!(pruned.pruned >= dropped_at && pruned.pruned > mark_before);
    assert_eq!(store.kv_head().await.unwrap().pruned, pruned.pruned);
    let after = store.kv_changes(start, 100).await.unwrap();
    assert!(after.changes.iter().all(|c| c.store != "id-stream-tmp"));
    assert!(
        after
            .changes
            .iter()
            .any(|c| c.key.as_deref() == Some("c") && c.value.is_none()),
        "a newer tombstone stays"
    );
    // Pruning again moves nothing back.
    let again = store.kv_prune(2000).await.unwrap();
    assert_eq!((again.tombstones, again.pruned), (0, pruned.pruned));
}

/// Writers at once: every change gets its own seq, and together they are
/// a run with no gap (so a reader of "after N" never skips one).
async fn concurrent_writes_take_contiguous_seqs<M: MetaStore>(store: &M) {
    let t = tenant("kv-concurrent");
    store.create_tenant(&t).await.unwrap();
    store
        .kv_create_store(&t, "s", "id-concurrent", 1)
        .await
        .unwrap();
    let start = store.kv_head().await.unwrap().seq;
    let writes: Vec<KvWrite> = (0..16)
        .map(|i| {
            write(
                &t,
                None,
                "s",
                vec![
                    set(&format!("k{i}"), b"v"),
                    KvOp::Increment {
                        key: "counter".into(),
                        delta: 1,
                    },
                ],
                1,
            )
        })
        .collect();
    let results = futures::future::join_all(writes.iter().map(|w| store.kv_write(w))).await;
    let mut counters: Vec<u64> = results
        .into_iter()
        .map(|r| match r.unwrap().results[1] {
            KvOpResult::Incremented { value } => value,
            other => panic!("{other:?}"),
        })
        .collect();
    counters.sort_unstable();
    assert_eq!(
        counters,
        (1..=16).collect::<Vec<_>>(),
        "increments are atomic"
    );
    let run = store.kv_changes(start, 1000).await.unwrap();
    let seqs: Vec<u64> = run.changes.iter().map(|c| c.seq).collect();
    // The counter's row keeps only its last seq: 16 keys + 1 counter.
    assert_eq!(seqs.len(), 17);
    assert_eq!(*seqs.last().unwrap(), start + 32);
    assert_eq!(store.kv_head().await.unwrap().seq, start + 32);
    // The counters kept by the racing writers are exact: k0..k9 (2 + 1
    // bytes), k10..k15 (3 + 1), "counter" = "16" (7 + 2).
    let held = store.kv_store(&t, "s").await.unwrap();
    assert_eq!((held.keys, held.bytes), (17, 10 * 3 + 6 * 4 + 9));
}

/// Writers racing for the last free keys: exactly the limit is reached,
/// never passed.
async fn racing_writers_stop_at_the_keys_limit<M: MetaStore>(store: &M) {
    let t = tenant("kv-race");
    store.create_tenant(&t).await.unwrap();
    let limits = SetTenantLimits {
        kv_max_keys_per_store: Some(8),
        ..SetTenantLimits::default()
    };
    store.set_tenant_limits(&t, &limits).await.unwrap();
    store.kv_create_store(&t, "s", "id-race", 1).await.unwrap();
    let writes: Vec<KvWrite> = (0..16)
        .map(|i| write(&t, None, "s", vec![set(&format!("k{i:02}"), b"v")], 1))
        .collect();
    let results = futures::future::join_all(writes.iter().map(|w| store.kv_write(w))).await;
    let mut done = 0;
    for result in results {
        match result {
            Ok(_) => done += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)), KvErrorCode::KeysLimit),
        }
    }
    assert_eq!(done, 8);
    let held = store.kv_store(&t, "s").await.unwrap();
    assert_eq!((held.keys, held.bytes), (8, 8 * 4));
    let listed = store.kv_keys(&t, "s", "", None, 100).await.unwrap();
    assert_eq!(listed.len(), 8);
}

/// A drop queued behind busy writers still succeeds (it waits for the
/// seq lock rather than failing), and a drop racing a link leaves either
/// the link (and the store) or neither: never a link to a dropped store.
async fn drops_race_writes_and_links<M: MetaStore>(store: &M) {
    let t = tenant("kv-drop-race");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(&t, &app("web"), &[], &AppLimits::default(), None)
        .await
        .unwrap();
    store
        .kv_create_store(&t, "busy", "id-busy", 1)
        .await
        .unwrap();
    for round in 0..4 {
        let name = format!("gone{round}");
        store
            .kv_create_store(&t, &name, &format!("id-gone-{round}"), 1)
            .await
            .unwrap();
        let writes: Vec<KvWrite> = (0..8)
            .map(|i| write(&t, None, "busy", vec![set(&format!("k{i}"), b"v")], 1))
            .collect();
        let (written, dropped, linked) = futures::future::join3(
            futures::future::join_all(writes.iter().map(|w| store.kv_write(w))),
            store.kv_drop_store(&t, &name, 1),
            store.kv_link(&t, &app("web"), &name),
        )
        .await;
        assert!(written.iter().all(Result::is_ok), "{written:?}");
        let links = store.kv_app_links(&t, &app("web")).await.unwrap();
        let still_linked = links.iter().any(|l| l.name == name);
        match (dropped, linked) {
            (Ok(_), Err(e)) => {
                assert_eq!(code::<()>(Err(e)), KvErrorCode::StoreNotFound);
                assert!(!still_linked);
            }
            (Err(e), Ok(_)) => {
                assert_eq!(code::<()>(Err(e)), KvErrorCode::StoreLinked);
                assert!(still_linked);
                store.kv_unlink(&t, &app("web"), &name).await.unwrap();
                store.kv_drop_store(&t, &name, 1).await.unwrap();
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
}

/// A run of changes and a snapshot page stop at MAX_BATCH_VALUE_BYTES of
/// values (one larger travels alone) and continue from where they
/// stopped, nothing skipped.
async fn answers_are_cut_by_bytes<M: MetaStore>(store: &M) {
    use edge_common::kv::MAX_BATCH_VALUE_BYTES;
    let t = tenant("kv-big");
    store.create_tenant(&t).await.unwrap();
    store.kv_create_store(&t, "s", "id-big", 1).await.unwrap();
    let start = store.kv_head().await.unwrap().seq;
    let mib = vec![7u8; 1 << 20];
    for i in 0..5 {
        store
            .kv_write(&write(&t, None, "s", vec![set(&format!("b{i}"), &mib)], 1))
            .await
            .unwrap();
    }
    // 4 values of 1 MiB and their keys pass 4 MiB: 3 a run.
    let first = store.kv_changes(start, 1000).await.unwrap();
    assert_eq!(first.changes.len(), 3);
    assert_eq!(first.head, start + 3);
    assert!(
        first
            .changes
            .iter()
            .all(|c| c.value.as_ref() == Some(&KvValue(mib.clone())))
    );
    let rest = store.kv_changes(first.head, 1000).await.unwrap();
    assert_eq!(rest.changes.len(), 2);
    assert_eq!(rest.head, start + 5);

    let at = store.kv_head().await.unwrap().seq;
    let mut cursor: Option<KvCursor> = None;
    let mut big = Vec::new();
    loop {
        let page = store
            .kv_snapshot_page(at, cursor.as_ref(), 1000)
            .await
            .unwrap();
        let bytes: usize = page
            .entries
            .iter()
            .map(|e| e.key.len() + e.value.0.len())
            .sum();
        assert!(bytes <= MAX_BATCH_VALUE_BYTES || page.entries.len() == 1);
        big.extend(
            page.entries
                .iter()
                .filter(|e| e.store == "id-big")
                .map(|e| e.key.clone()),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(big, vec!["b0", "b1", "b2", "b3", "b4"]);
    store
        .kv_write(&write(
            &t,
            None,
            "s",
            (0..5)
                .map(|i| KvOp::Delete {
                    key: format!("b{i}"),
                })
                .collect(),
            1,
        ))
        .await
        .unwrap();
}

pub(super) async fn fill_for_dump<M: MetaStore>(store: &M, t: &TenantId, a: &AppName) {
    store
        .kv_create_store(t, "dumped", "id-dumped", 7)
        .await
        .unwrap();
    store
        .kv_create_store(t, "gone", "id-gone", 7)
        .await
        .unwrap();
    store.kv_link(t, a, "dumped").await.unwrap();
    store
        .kv_write(&write(
            t,
            None,
            "dumped",
            vec![set("k", &[0, 1, 2, 255]), set("t", b"x")],
            7,
        ))
        .await
        .unwrap();
    store
        .kv_write(&write(
            t,
            None,
            "dumped",
            vec![KvOp::Delete { key: "t".into() }],
            7,
        ))
        .await
        .unwrap();
    store.kv_drop_store(t, "gone", 7).await.unwrap();
}

pub(super) async fn check_restored<A: MetaStore, B: MetaStore>(
    a: &A,
    b: &B,
    t: &TenantId,
    name: &AppName,
) {
    assert_eq!(a.kv_head().await.unwrap(), b.kv_head().await.unwrap());
    assert_eq!(a.kv_stores(t).await.unwrap(), b.kv_stores(t).await.unwrap());
    assert_eq!(b.kv_app_links(t, name).await.unwrap()[0].store, "id-dumped");
    assert_eq!(
        b.kv_get(t, "dumped", "k").await.unwrap(),
        Some(vec![0, 1, 2, 255])
    );
    assert_eq!(
        a.kv_changes(0, 100).await.unwrap(),
        b.kv_changes(0, 100).await.unwrap()
    );
    // Seqs continue after the restored ones.
    let next = b
        .kv_write(&write(t, None, "dumped", vec![set("n", b"1")], 8))
        .await
        .unwrap();
    assert_eq!(next.changes[0].seq, a.kv_head().await.unwrap().seq + 1);
}
