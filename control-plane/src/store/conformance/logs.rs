//! Live-log tails and lines: what every backend must do with them.

use edge_common::AppLimits;
use edge_common::names::TenantId;
use edge_common::sync::TailedApp;

use super::{app, host, tenant};
use crate::store::{LogTail, MetaStore, NewLogLine, StoreError};

/// A time after every expiry the cases here set.
const NOW: u64 = 2_000_000_000;

fn tail(id: &str, t: &TenantId, a: &str, expires_unix: u64) -> LogTail {
    LogTail {
        id: id.to_string(),
        tenant: t.clone(),
        app: app(a),
        filters: Some("status=5xx".into()),
        expires_unix,
        created_unix: NOW,
    }
}

fn line(t: &TenantId, a: &str, at: u64, text: &str) -> NewLogLine {
    NewLogLine {
        tenant: t.clone(),
        app: app(a),
        at_unix_ms: at,
        kind: "log".into(),
        json: format!("{{\"line\":\"{text}\"}}"),
    }
}

pub(super) async fn logs<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("tail-a"), tenant("tail-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let limits = AppLimits::default();
    for (t, name, h) in [
        (&a, "one", "tail-one.test"),
        (&a, "two", "tail-two.test"),
        (&b, "three", "tail-three.test"),
    ] {
        store
            .create_app(t, &app(name), &[host(h)], &limits, None)
            .await
            .unwrap();
    }

    // A tail of an app that does not exist (or is another tenant's).
    assert!(matches!(
        store
            .add_log_tail(&tail("t0", &b, "one", NOW + 60), 10)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Registering bumps the revision and puts the app in the snapshot,
    // once however many follow it.
    let r0 = store.revision().await.unwrap();
    let r1 = store
        .add_log_tail(&tail("t1", &a, "one", NOW + 60), 3)
        .await
        .unwrap();
    assert_eq!(r1, Some(r0 + 1), "an app's first tail bumps the revision");
    let r2 = store
        .add_log_tail(&tail("t2", &a, "one", NOW + 60), 3)
        .await
        .unwrap();
    assert_eq!(r2, None, "a second follower of the app bumps nothing");
    assert_eq!(store.revision().await.unwrap(), r0 + 1);
    // Expired at NOW: not listed, not counted.
    store
        .add_log_tail(&tail("t3", &b, "three", NOW - 1), 3)
        .await
        .unwrap();
    assert_eq!(store.active_log_tails(NOW).await.unwrap(), 2);

    // The cap counts the tenant's unexpired tails in the insert's
    // transaction: a, with two, may have a third, not a fourth.
    store
        .add_log_tail(&tail("t4", &a, "two", NOW + 60), 3)
        .await
        .unwrap();
    match store
        .add_log_tail(&tail("t5", &a, "two", NOW + 60), 3)
        .await
    {
        Err(StoreError::TailLimit { tenant, max }) => {
            assert_eq!((tenant.as_str(), max), ("tail-a", 3))
        }
        other => panic!("the fourth tail must be refused, got {other:?}"),
    }
    // Ids are the holder's: the same one twice is refused.
    assert!(matches!(
        store
            .add_log_tail(&tail("t1", &b, "three", NOW + 60), 3)
            .await,
        Err(StoreError::Exists(_))
    ));

    // Lines: kept only for tailed apps (b's tail has expired by NOW).
    let before = store.last_log_seq().await.unwrap();
    let kept = store
        .append_log_lines(
            "node-1",
            &[
                line(&a, "one", 1000, "first"),
                line(&b, "three", 1001, "untailed"),
                line(&a, "two", 1002, "second"),
                line(&a, "one", 1003, "third"),
            ],
            NOW,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(kept, 3);
    assert_eq!(store.last_log_seq().await.unwrap(), before + 3);
    let one = store
        .log_lines(&a, &app("one"), 0, 0, 100)
        .await
        .unwrap()
        .lines;
    assert_eq!(
        one.iter().map(|l| l.json.as_str()).collect::<Vec<_>>(),
        vec![r#"{"line":"first"}"#, r#"{"line":"third"}"#]
    );
    assert!(one.iter().all(|l| l.node == "node-1" && l.kind == "log"));
    assert!(one[0].seq < one[1].seq);
    assert_eq!(one[0].at_unix_ms, 1000);
    // After a seq, since a time, at most a limit.
    let after = store
        .log_lines(&a, &app("one"), one[0].seq, 0, 100)
        .await
        .unwrap()
        .lines;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, one[1].seq);
    assert_eq!(
        store
            .log_lines(&a, &app("one"), 0, 1001, 100)
            .await
            .unwrap()
            .lines
            .len(),
        1
    );
    assert_eq!(
        store
            .log_lines(&a, &app("one"), 0, 0, 1)
            .await
            .unwrap()
            .lines
            .len(),
        1
    );
    assert!(
        store
            .log_lines(&b, &app("three"), 0, 0, 100)
            .await
            .unwrap()
            .lines
            .is_empty()
    );

    // A tenant keeps at most its bound: the newest.
    let many: Vec<_> = (0..10)
        .map(|i| line(&a, "two", 2000 + i, &format!("n{i}")))
        .collect();
    store
        .append_log_lines("node-2", &many, NOW, 4)
        .await
        .unwrap();
    let page_one = store.log_lines(&a, &app("one"), 0, 0, 100).await.unwrap();
    let page_two = store.log_lines(&a, &app("two"), 0, 0, 100).await.unwrap();
    // Each app's prune mark: how far, and how many of its lines.
    assert_eq!(
        (page_one.pruned_seq, page_one.pruned_lines),
        (one[1].seq, 2),
        "first and third went"
    );
    assert_eq!(page_two.pruned_lines, 7, "second and n0..n5 went");
    assert!(page_two.pruned_seq > one[1].seq);
    let left: Vec<_> = [page_one.lines, page_two.lines].concat();
    assert_eq!(left.len(), 4, "the tenant's bound holds across its apps");
    assert!(
        left.iter()
            .all(|l| ["n6", "n7", "n8", "n9"].iter().any(|n| l.json.contains(n)))
    );

    // The snapshot lists tailed apps once each, unexpired, sorted.
    let snapshot = store.snapshot().await.unwrap();
    let listed: Vec<_> = snapshot
        .tails
        .iter()
        .filter(|t| t.tenant == a || t.tenant == b)
        .cloned()
        .collect();
    // The snapshot reads the clock: every tail here expires after it.
    assert_eq!(
        listed,
        vec![
            TailedApp {
                tenant: a.clone(),
                app: app("one")
            },
            TailedApp {
                tenant: a.clone(),
                app: app("two")
            },
            TailedApp {
                tenant: b.clone(),
                app: app("three")
            },
        ]
    );

    // Refreshing moves an unexpired tail without a revision; an expired
    // or unknown one is not refreshed.
    let r = store.revision().await.unwrap();
    assert!(store.refresh_log_tail("t1", NOW, NOW + 120).await.unwrap());
    assert!(!store.refresh_log_tail("t3", NOW, NOW + 120).await.unwrap());
    assert!(
        !store
            .refresh_log_tail("nope", NOW, NOW + 120)
            .await
            .unwrap()
    );
    assert_eq!(store.revision().await.unwrap(), r);

    // Deleting a tail while another of the app is left bumps nothing;
    // deleting again changes nothing.
    assert_eq!(store.delete_log_tail("t2", NOW).await.unwrap(), None);
    assert_eq!(store.delete_log_tail("t2", NOW).await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), r);

    // The sweep: expired tails (t3 at NOW), tails of deleted apps (t4's
    // app), lines before a time; one revision for it all.
    store.delete_app(&a, &app("two")).await.unwrap();
    let r = store.revision().await.unwrap();
    let sweep = store.sweep_logs(NOW, 2008).await.unwrap();
    assert_eq!(sweep.tails_deleted, 2);
    assert_eq!(
        sweep.revision,
        Some(r + 1),
        "b's and a's `two` left the set"
    );
    assert!(sweep.lines_deleted >= 2, "n6 and n7 are older than 2008");
    assert_eq!(store.active_log_tails(NOW).await.unwrap(), 1, "t1 is left");
    let again = store.sweep_logs(NOW, 0).await.unwrap();
    assert_eq!((again.tails_deleted, again.revision), (0, None));
    let r = store.revision().await.unwrap();
    assert_eq!(
        store.delete_log_tail("t1", NOW).await.unwrap(),
        Some(r + 1),
        "the app's last tail going bumps"
    );
    assert_eq!(store.active_log_tails(0).await.unwrap(), 0);
    // With nobody tailing, nothing is kept.
    let kept = store
        .append_log_lines("node-1", &[line(&a, "one", 3000, "late")], NOW, 1000)
        .await
        .unwrap();
    assert_eq!(kept, 0);

    tail_set_bumps(store).await;
    lagging_followers(store).await;
    concurrent_appends(store).await;
}

/// The revision moves only when the set of tailed apps changes.
async fn tail_set_bumps<M: MetaStore>(store: &M) {
    let c = tenant("tail-c");
    store.create_tenant(&c).await.unwrap();
    store
        .create_app(
            &c,
            &app("four"),
            &[host("tail-four.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let r = store.revision().await.unwrap();
    let (u1, u2) = (
        tail("u1", &c, "four", NOW + 60),
        tail("u2", &c, "four", NOW + 60),
    );
    let first = store.add_log_tail(&u1, 10).await.unwrap();
    assert_eq!(first, Some(r + 1), "the first tail");
    let second = store.add_log_tail(&u2, 10).await.unwrap();
    assert_eq!(second, None, "a second follower");
    let four = TailedApp {
        tenant: c.clone(),
        app: app("four"),
    };
    let listed = store.log_tailed_apps(NOW).await.unwrap();
    assert_eq!(listed.iter().filter(|t| **t == four).count(), 1, "once");
    assert!(
        !store
            .log_tailed_apps(NOW + 60)
            .await
            .unwrap()
            .contains(&four)
    );
    assert!(store.refresh_log_tail("u1", NOW, NOW + 90).await.unwrap());
    assert_eq!(store.delete_log_tail("u1", NOW).await.unwrap(), None);
    assert_eq!(
        store.revision().await.unwrap(),
        r + 1,
        "not by refresh or the first going"
    );
    assert_eq!(
        store.delete_log_tail("u2", NOW).await.unwrap(),
        Some(r + 2),
        "the last going"
    );
    // A tail that expired left the set (without a revision): the next one
    // registered puts the app back, and bumps.
    store
        .add_log_tail(&tail("u3", &c, "four", NOW + 10), 10)
        .await
        .unwrap();
    let later = LogTail {
        created_unix: NOW + 20,
        ..tail("u4", &c, "four", NOW + 80)
    };
    assert_eq!(store.add_log_tail(&later, 10).await.unwrap(), Some(r + 4));
    // Sweeping the expired one leaves the app tailed: no bump.
    let sweep = store.sweep_logs(NOW + 20, 0).await.unwrap();
    assert_eq!((sweep.tails_deleted, sweep.revision), (1, None));
    assert_eq!(
        store.delete_log_tail("u4", NOW + 20).await.unwrap(),
        Some(r + 5)
    );
}

/// A follower below an app's prune mark is told how many lines it lost.
async fn lagging_followers<M: MetaStore>(store: &M) {
    let c = tenant("tail-c");
    store
        .add_log_tail(&tail("v1", &c, "four", NOW + 60), 10)
        .await
        .unwrap();
    let start = store.log_start(&c, &app("four"), None).await.unwrap();
    assert_eq!(start.after_seq, store.last_log_seq().await.unwrap());
    assert_eq!(start.lines_upto, 0);
    let five: Vec<_> = (0..5)
        .map(|i| line(&c, "four", 10_000 + i, &format!("l{i}")))
        .collect();
    store
        .append_log_lines("node-1", &five, NOW, 3)
        .await
        .unwrap();
    let page = store
        .log_lines(&c, &app("four"), start.after_seq, 0, 100)
        .await
        .unwrap();
    assert_eq!(page.lines.len(), 3);
    assert!(page.pruned_seq > start.after_seq, "the follower lagged");
    assert_eq!(page.pruned_lines - start.lines_upto, 2, "two lost");
    assert!(page.lines.iter().all(|l| l.seq > page.pruned_seq));
    // A follower starting now is past the mark, and counts what is kept.
    let now = store.log_start(&c, &app("four"), None).await.unwrap();
    assert_eq!(now.lines_upto, 5);
    // `since` starts before the first kept line of the window.
    let since = store
        .log_start(&c, &app("four"), Some(10_003))
        .await
        .unwrap();
    let from = store
        .log_lines(&c, &app("four"), since.after_seq, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        from.lines.iter().map(|l| l.at_unix_ms).collect::<Vec<_>>(),
        vec![10_003, 10_004]
    );
    assert_eq!(since.lines_upto, 3, "two pruned and l2 are before it");
    store.delete_log_tail("v1", NOW).await.unwrap();
}

/// Appends at once: the seq has no gaps, and a reader reading "after N"
/// meanwhile sees every line exactly once.
async fn concurrent_appends<M: MetaStore>(store: &M) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    let d = tenant("tail-d");
    store.create_tenant(&d).await.unwrap();
    store
        .create_app(
            &d,
            &app("five"),
            &[host("tail-five.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    store
        .add_log_tail(&tail("w1", &d, "five", NOW + 60), 10)
        .await
        .unwrap();
    const WRITERS: usize = 4;
    const BATCHES: usize = 5;
    const LINES: usize = 20;
    let start = store.last_log_seq().await.unwrap();
    let done = AtomicBool::new(false);
    let writers = async {
        futures::future::join_all((0..WRITERS).map(|w| {
            let d = &d;
            async move {
                for b in 0..BATCHES {
                    let batch: Vec<_> = (0..LINES)
                        .map(|l| line(d, "five", 1, &format!("w{w}-b{b}-l{l}")))
                        .collect();
                    let kept = store
                        .append_log_lines(&format!("node-{w}"), &batch, NOW, 1_000_000)
                        .await
                        .unwrap();
                    assert_eq!(kept, LINES as u64);
                }
            }
        }))
        .await;
        done.store(true, Ordering::SeqCst);
    };
    let reader = async {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut after = start;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let page = store
                .log_lines(&d, &app("five"), after, 0, 7)
                .await
                .unwrap();
            for l in &page.lines {
                assert!(l.seq > after, "seq order");
                after = l.seq;
                *seen.entry(l.json.clone()).or_default() += 1;
            }
            if finished && page.lines.is_empty() {
                return seen;
            }
            if page.lines.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    };
    let ((), seen) = tokio::join!(writers, reader);
    assert_eq!(seen.len(), WRITERS * BATCHES * LINES, "every line");
    assert!(seen.values().all(|&n| n == 1), "each once");
    let end = store.last_log_seq().await.unwrap();
    assert_eq!(end - start, (WRITERS * BATCHES * LINES) as u64, "no gaps");
    let all = store
        .log_lines(&d, &app("five"), start, 0, 10_000)
        .await
        .unwrap()
        .lines;
    let seqs: Vec<u64> = all.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (start + 1..=end).collect::<Vec<_>>(), "contiguous");
    store.delete_log_tail("w1", NOW).await.unwrap();
}

/// A tail and a line for a dump (tenant `t`, app `web`); the seq handed
/// out.
pub(super) async fn fill_for_dump<M: MetaStore>(store: &M, t: &TenantId) -> u64 {
    let far = 4_000_000_000;
    store
        .add_log_tail(
            &LogTail {
                id: "0123abcd".into(),
                tenant: t.clone(),
                app: app("web"),
                filters: None,
                expires_unix: far,
                created_unix: 1000,
            },
            10,
        )
        .await
        .unwrap();
    // Two lines, a bound of one: the first is pruned (a prune mark).
    let kept = store
        .append_log_lines(
            "node-1",
            &[line(t, "web", 4, "pruned"), line(t, "web", 5, "dumped")],
            1000,
            1,
        )
        .await
        .unwrap();
    assert_eq!(kept, 2);
    store.last_log_seq().await.unwrap()
}

/// The restored store has the tail, the line and the counter.
pub(super) async fn check_restored<M: MetaStore>(store: &M, t: &TenantId, seq: u64) {
    assert_eq!(store.last_log_seq().await.unwrap(), seq);
    let page = store.log_lines(t, &app("web"), 0, 0, 10).await.unwrap();
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].seq, seq);
    assert_eq!((page.pruned_seq, page.pruned_lines), (seq - 1, 1));
    assert_eq!(store.active_log_tails(1000).await.unwrap(), 1);
}
