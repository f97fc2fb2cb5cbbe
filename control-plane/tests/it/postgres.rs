//! The PostgreSQL metadata store against a real PostgreSQL ([`crate::pg`]):
//! the whole conformance suite, dump and restore across backends, and
//! replicas (separate stores on one database) racing for what only one
//! may get.

use std::sync::Arc;

use edge_common::AppLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{ArtifactRef, PurgeTarget};
use edge_cp::store::location::PgUrl;
use edge_cp::store::postgres::PgMetaStore;
use edge_cp::store::sqlite::SqliteMetaStore;
use edge_cp::store::{MetaStore, NewVersion, StoreError, conformance};
use tokio::sync::Barrier;

use crate::pg;

async fn new_store() -> (PgMetaStore, edge_cp::store::location::PgUrl) {
    let url = pg::new_database().await;
    (url.connect().await.unwrap(), url)
}

fn tenant(s: &str) -> TenantId {
    s.parse().unwrap()
}
fn app(s: &str) -> AppName {
    s.parse().unwrap()
}
fn host(s: &str) -> HostPattern {
    HostPattern::try_from(s.to_string()).unwrap()
}

#[tokio::test]
async fn postgres_meta_store_conforms() {
    let (store, _) = new_store().await;
    conformance::meta_store(&store).await;
}

#[tokio::test]
async fn postgres_meta_store_keeps_everything_across_a_reopen() {
    let (store, url) = new_store().await;
    let (revision, epoch) = conformance::meta_store_fill(&store).await;
    drop(store);
    // Opening again migrates nothing and keeps the epoch.
    let store = url.connect().await.unwrap();
    conformance::meta_store_check(&store, revision, &epoch).await;
    let (other, _) = new_store().await;
    assert_ne!(
        other.epoch().await.unwrap(),
        epoch,
        "a new store, a new epoch"
    );

    // The schema is versioned: each version applied once, however often
    // opened.
    let client = store.pool().get().await.unwrap();
    let applied: Vec<(i32, String)> = client
        .query(
            "SELECT version, name FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        applied,
        vec![
            (1, "initial".to_string()),
            (2, "certificates".to_string()),
            (3, "certificate_leases".to_string()),
            (4, "secrets".to_string()),
            (5, "outbound".to_string()),
            (6, "logs".to_string()),
            (7, "kv".to_string()),
            (8, "compression".to_string()),
        ]
    );
}

#[tokio::test]
async fn dump_and_restore_between_postgres_stores() {
    let ((a, _), (b, _)) = (new_store().await, new_store().await);
    conformance::dump_restore(&a, &b).await;
}

#[tokio::test]
async fn dump_and_restore_from_sqlite_to_postgres_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteMetaStore::open(&dir.path().join("a.sqlite3")).unwrap();
    let (pg, _) = new_store().await;
    conformance::dump_restore(&sqlite, &pg).await;

    let (pg, _) = new_store().await;
    let sqlite = SqliteMetaStore::open(&dir.path().join("b.sqlite3")).unwrap();
    conformance::dump_restore(&pg, &sqlite).await;
}

/// Replicas starting together on a new database migrate it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let url = pg::new_database().await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { url.connect().await })
        })
        .collect();
    let mut epochs = Vec::new();
    for start in starts {
        let store = start.await.unwrap().unwrap();
        epochs.push(store.epoch().await.unwrap());
    }
    epochs.dedup();
    assert_eq!(epochs.len(), 1, "one store, one epoch");
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let dead = edge_fixtures::net::DeadPort::new();
    let port = dead.port();
    let url: PgUrl = format!("postgres://cp:s3cret@127.0.0.1:{port}/edge?connect_timeout=5")
        .parse()
        .unwrap();
    let message = match url.connect().await {
        Err(StoreError::Backend(message)) => message,
        Err(other) => panic!("expected a backend error, got {other}"),
        Ok(_) => panic!("nothing listens on port {port}"),
    };
    assert!(
        message.contains("cannot connect to postgres://cp:***@127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");

    let (_, url) = new_store().await;
    let missing: PgUrl = url
        .to_string()
        .replace("/t_", "/missing_t_")
        .parse()
        .unwrap();
    match missing.connect().await {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("does not exist"), "{message}")
        }
        Err(other) => panic!("expected a backend error, got {other}"),
        Ok(_) => panic!("the database does not exist"),
    }
}

/// Two stores on one database (two pools: two replicas) run `f(store,
/// round)` at once, released together by a barrier.
async fn race<T, F, Fut>(one: &Arc<PgMetaStore>, two: &Arc<PgMetaStore>, f: F) -> (T, T)
where
    T: Send + 'static,
    F: Fn(Arc<PgMetaStore>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let spawn = |store: Arc<PgMetaStore>, who: usize| {
        let (barrier, f) = (barrier.clone(), f.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            f(store, who).await
        })
    };
    let (a, b) = (spawn(one.clone(), 0), spawn(two.clone(), 1));
    (a.await.unwrap(), b.await.unwrap())
}

/// Two replicas claim one hostname (or overlapping ones) for apps of
/// different tenants at the same moment, round after round: exactly one
/// wins each time, the other gets `HostTaken` (the API's 409
/// `host-taken`) and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_for_a_hostname_end_with_exactly_one_owner() {
    let url = pg::new_database().await;
    let one = Arc::new(url.connect().await.unwrap());
    let two = Arc::new(url.connect().await.unwrap());
    let tenants = [tenant("alpha"), tenant("beta")];
    for t in &tenants {
        one.create_tenant(t).await.unwrap();
    }
    const ROUNDS: usize = 40;
    let mut wins = [0usize; 2];
    for round in 0..ROUNDS {
        // Even rounds: the very same name (the primary key alone would
        // settle it). Odd rounds: a wildcard against a name under it, two
        // different rows, kept apart only by the serializable check.
        let names = if round % 2 == 0 {
            [format!("race-{round}.test"), format!("race-{round}.test")]
        } else {
            [
                format!("*.race-{round}.test"),
                format!("www.race-{round}.test"),
            ]
        };
        let racers = tenants.clone();
        let (a, b) = race(&one, &two, move |store, who| {
            let (t, hostname) = (racers[who].clone(), names[who].clone());
            async move {
                store
                    .create_app(
                        &t,
                        &app(&format!("app-{round}")),
                        &[host(&hostname)],
                        &AppLimits::default(),
                        None,
                    )
                    .await
            }
        })
        .await;
        let winner = match (a, b) {
            (Ok(_), Err(StoreError::HostTaken(_))) => 0,
            (Err(StoreError::HostTaken(_)), Ok(_)) => 1,
            other => panic!("round {round}: exactly one winner expected, got {other:?}"),
        };
        wins[winner] += 1;
        let loser = &tenants[1 - winner];
        assert!(
            matches!(
                one.get_app(loser, &app(&format!("app-{round}"))).await,
                Err(StoreError::NotFound(_))
            ),
            "round {round}: the loser's app is not kept"
        );
    }
    let apps = one.list_apps(&tenants[0]).await.unwrap().len()
        + two.list_apps(&tenants[1]).await.unwrap().len();
    assert_eq!(apps, ROUNDS, "one app per round");
    assert_eq!(
        one.revision().await.unwrap(),
        ROUNDS as u64,
        "each round bumped the revision once, for its winner"
    );
    eprintln!("hostname race: wins by replica {wins:?}");
}

/// Two replicas upload at once versions that each fit the tenant's quota
/// but not together: one is recorded, the other refused with the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_for_the_last_of_a_quota_cannot_overshoot_it() {
    let url = pg::new_database().await;
    let one = Arc::new(url.connect().await.unwrap());
    let two = Arc::new(url.connect().await.unwrap());
    let t = tenant("quota");
    one.create_tenant(&t).await.unwrap();
    for round in 0..10u64 {
        one.create_app(
            &t,
            &app(&format!("up-{round}")),
            &[host(&format!("up-{round}.test"))],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
        // Room for exactly one more 100-byte version.
        one.set_tenant_quota(&t, Some(100 * (round + 1) + 50))
            .await
            .unwrap();
        let t2 = t.clone();
        let (a, b) = race(&one, &two, move |store, who| {
            let t = t2.clone();
            async move {
                let new = NewVersion {
                    source_sha256: format!("{round:02x}{who:02x}").repeat(16),
                    source_size: 100,
                    artifact: ArtifactRef {
                        sha256: "ab".repeat(32),
                        size: 10,
                        engine: "e".into(),
                    },
                };
                store
                    .add_version(&t, &app(&format!("up-{round}")), &new, u64::MAX)
                    .await
            }
        })
        .await;
        match (a, b) {
            (Ok(_), Err(StoreError::QuotaExceeded(e)))
            | (Err(StoreError::QuotaExceeded(e)), Ok(_)) => {
                assert_eq!((e.used_bytes, e.adding_bytes), (100 * (round + 1), 100))
            }
            other => panic!("round {round}: exactly one upload fits, got {other:?}"),
        }
        assert_eq!(
            one.tenant_storage(&t).await.unwrap().used_bytes,
            100 * (round + 1)
        );
    }
}

/// Purges from two replicas at once get ids 1, 2, 3, ... with no gap or
/// repeat, and each its own revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_ids_stay_consecutive_across_replicas() {
    let url = pg::new_database().await;
    let stores = [
        Arc::new(url.connect().await.unwrap()),
        Arc::new(url.connect().await.unwrap()),
    ];
    let t = tenant("purger");
    stores[0].create_tenant(&t).await.unwrap();
    stores[0]
        .create_app(
            &t,
            &app("web"),
            &[host("purger.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let base = stores[0].revision().await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (store, t) = (stores[worker % 2].clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.push(
                    store
                        .add_purge(&t, &app("web"), &PurgeTarget::All, false)
                        .await
                        .unwrap(),
                );
            }
            got
        }));
    }
    let mut ids = Vec::new();
    let mut revisions = Vec::new();
    for task in tasks {
        for (purge, revision) in task.await.unwrap() {
            ids.push(purge.id);
            revisions.push(revision);
        }
    }
    ids.sort_unstable();
    revisions.sort_unstable();
    assert_eq!(ids, (1..=80).collect::<Vec<u64>>());
    assert_eq!(revisions, (base + 1..=base + 80).collect::<Vec<u64>>());
    let kept: Vec<u64> = stores[1]
        .snapshot()
        .await
        .unwrap()
        .purges
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(kept, (1..=80).collect::<Vec<u64>>());
}

/// A tenant's purge budget holds across replicas: 8 workers on two pools
/// try 40 purges at once against a budget of 25; exactly 25 are recorded
/// and the rest refused with how long to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_budget_holds_across_replicas() {
    let url = pg::new_database().await;
    let stores = [
        Arc::new(url.connect().await.unwrap()),
        Arc::new(url.connect().await.unwrap()),
    ];
    let t = tenant("budgeted");
    stores[0].create_tenant(&t).await.unwrap();
    stores[0]
        .create_app(
            &t,
            &app("web"),
            &[host("budgeted.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let rate = edge_cp::store::PurgeRate {
        max: 25,
        window_secs: 3600,
    };
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (store, t, barrier) = (stores[worker % 2].clone(), t.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (mut recorded, mut refused) = (0, 0);
            for _ in 0..5 {
                match store
                    .add_purge_within(&t, &app("web"), &PurgeTarget::All, false, rate)
                    .await
                {
                    Ok(_) => recorded += 1,
                    Err(StoreError::PurgeRateLimited {
                        retry_after_secs, ..
                    }) => {
                        assert!(retry_after_secs >= 1);
                        refused += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            (recorded, refused)
        }));
    }
    let (mut recorded, mut refused) = (0, 0);
    for task in tasks {
        let (r, f) = task.await.unwrap();
        recorded += r;
        refused += f;
    }
    assert_eq!((recorded, refused), (25, 15));
    assert_eq!(stores[1].snapshot().await.unwrap().purges.len(), 25);
}

/// A tenant's certificate as the ACME worker first records it: no
/// material, its first attempt due at `due`.
fn pending_certificate(hostname: &str, due: u64) -> edge_cp::store::NewCertificate {
    edge_cp::store::NewCertificate {
        hosts: vec![host(hostname)],
        source: edge_cp::store::CertSource::Acme,
        material: None,
        next_attempt_unix: Some(due),
    }
}

/// Limits that the tests here never reach.
const ROOMY: edge_cp::store::CertLimits = edge_cp::store::CertLimits {
    per_app: 1000,
    per_tenant: 1000,
    pending_acme_per_tenant: 1000,
};

/// Replicas share the ACME work through the store: of two replicas
/// claiming one due certificate at the same moment exactly one wins,
/// round after round (each round after the last lease ended); a replica
/// whose lease the other took over cannot record its result; two
/// registering an ACME account at once end up with the same one;
/// certificates added from both get distinct ids, 1 up without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_acme_work_without_doing_it_twice() {
    let url = pg::new_database().await;
    let one = Arc::new(url.connect().await.unwrap());
    let two = Arc::new(url.connect().await.unwrap());
    let t = tenant("acme-race");
    one.create_tenant(&t).await.unwrap();
    one.create_app(
        &t,
        &app("web"),
        &[host("acme-race.test")],
        &AppLimits::default(),
        None,
    )
    .await
    .unwrap();
    let (cert, _) = one
        .add_certificate(
            &t,
            &app("web"),
            pending_certificate("acme-race.test", 100),
            &ROOMY,
        )
        .await
        .unwrap();

    let id = cert.id;
    let mut wins = [0usize; 2];
    let mut last_token = 0;
    for round in 0..30u64 {
        // Each round at a time when the previous round's lease has ended.
        let now = 1000 + round * 1000;
        let (a, b) = race(&one, &two, move |store, _| async move {
            store.claim_certificate(id, now, now + 500).await
        })
        .await;
        let (winner, lease) = match (a.unwrap(), b.unwrap()) {
            (Some(lease), None) => (0, lease),
            (None, Some(lease)) => (1, lease),
            other => panic!("round {round}: exactly one claim wins, got {other:?}"),
        };
        wins[winner] += 1;
        assert!(lease.token > last_token, "round {round}: a new token");
        last_token = lease.token;
        assert_eq!(
            two.get_certificate(id).await.unwrap().lease_until_unix,
            Some(now + 500),
            "round {round}: the winner's lease is stored"
        );
    }
    eprintln!("claim race: wins by replica {wins:?}");

    // Replica one's lease runs out mid-order and replica two takes the
    // work over; both record at once: only two's result counts.
    let late = one
        .claim_certificate(id, 40_000, 40_500)
        .await
        .unwrap()
        .unwrap();
    assert!(
        two.claim_certificate(id, 40_499, 41_000)
            .await
            .unwrap()
            .is_none(),
        "held until its end"
    );
    let taken = two
        .claim_certificate(id, 40_500, 41_000)
        .await
        .unwrap()
        .unwrap();
    let (a, b) = race(&one, &two, move |store, who| async move {
        let lease = [late, taken][who];
        store
            .record_certificate_failure(&lease, &format!("replica {who}"), 50_000)
            .await
    })
    .await;
    assert!(
        matches!(a, Err(StoreError::LeaseLost { id: lost }) if lost == id),
        "{a:?}"
    );
    b.unwrap();
    let failed = one.get_certificate(id).await.unwrap();
    assert_eq!(
        (
            failed.last_error.as_deref(),
            failed.attempts,
            failed.lease_until_unix
        ),
        (Some("replica 1"), 1, None)
    );
    for round in 0..10 {
        let directory = format!("https://acme-{round}.test/dir");
        let (a, b) = race(&one, &two, move |store, who| {
            let directory = directory.clone();
            async move {
                store
                    .put_acme_account(&directory, format!("account-of-{who}").as_bytes(), false)
                    .await
            }
        })
        .await;
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b, "round {round}: both replicas use one account");
    }
    assert_eq!(one.acme_accounts().await.unwrap().len(), 10);

    let mut tasks = Vec::new();
    for worker in 0..6 {
        let (store, t) = ([&one, &two][worker % 2].clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..5 {
                let (cert, _) = store
                    .add_certificate(
                        &t,
                        &app("web"),
                        pending_certificate("acme-race.test", 1),
                        &ROOMY,
                    )
                    .await
                    .unwrap();
                ids.push(cert.id);
            }
            ids
        }));
    }
    let mut ids = vec![id];
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=31).collect::<Vec<u64>>());
}

/// A database at V1 (made by the release before certificates) migrates
/// to V2 on connect: its apps keep everything and get HTTPS off, and
/// certificates work at once.
#[tokio::test]
async fn postgres_meta_store_migrates_a_v1_database_for_certificates() {
    let url = pg::new_database().await;
    {
        let (mut client, connection) = url.config().connect(tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        let v1 = refinery::Migration::unapplied(
            "V1__initial",
            include_str!("../../migrations/postgres/V1__initial.sql"),
        )
        .unwrap();
        refinery::Runner::new(&[v1])
            .run_async(&mut client)
            .await
            .unwrap();
        client
            .batch_execute(
                "INSERT INTO identity (id, epoch) VALUES (1, 'v1-epoch');
                 UPDATE revision SET value = 4;
                 INSERT INTO tenants (id, created_unix) VALUES ('acme', 1);
                 INSERT INTO hosts VALUES ('proxy.v1.test', 'acme', 'proxy', 0);",
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO apps (tenant, name, active_version, origin, config, limits,
                                   created_unix, updated_revision)
                 VALUES ('acme', 'proxy', NULL, 'http://origin.test', '{}', $1, 1, 4)",
                &[&serde_json::to_string(&AppLimits::default()).unwrap()],
            )
            .await
            .unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    }
    let store = url.connect().await.unwrap();
    let (acme, proxy) = (tenant("acme"), app("proxy"));
    let old = store.get_app(&acme, &proxy).await.unwrap();
    assert_eq!(
        old.origin.map(|o| o.url).as_deref(),
        Some("http://origin.test")
    );
    assert_eq!(old.https, edge_common::sync::AppHttps::default());
    assert_eq!(store.epoch().await.unwrap(), "v1-epoch");
    assert_eq!(store.revision().await.unwrap(), 4);
    let https = edge_common::sync::AppHttps {
        redirect: true,
        hsts: None,
    };
    assert_eq!(store.set_app_https(&acme, &proxy, &https).await.unwrap(), 5);
    let (cert, revision) = store
        .add_certificate(
            &acme,
            &proxy,
            pending_certificate("proxy.v1.test", 9),
            &ROOMY,
        )
        .await
        .unwrap();
    assert_eq!((cert.id, revision), (1, 5));
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.origins[0].https, https);
}

/// A database at V2 (certificates whose ACME lease was written over the
/// due time) migrates to V3 on connect: its certificates keep everything,
/// hold no lease and no renewal request, a due time still in the future
/// (a V2 lease) is waited for, and bundles are found by digest.
#[tokio::test]
async fn postgres_meta_store_migrates_a_v2_database_for_leases() {
    let url = pg::new_database().await;
    {
        let (mut client, connection) = url.config().connect(tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        let migrations = [
            (
                "V1__initial",
                include_str!("../../migrations/postgres/V1__initial.sql"),
            ),
            (
                "V2__certificates",
                include_str!("../../migrations/postgres/V2__certificates.sql"),
            ),
        ]
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql).unwrap());
        refinery::Runner::new(&migrations)
            .run_async(&mut client)
            .await
            .unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO identity (id, epoch) VALUES (1, 'v2-epoch');
                 UPDATE revision SET value = 7;
                 UPDATE certificate_counter SET value = 2;
                 INSERT INTO tenants (id, created_unix) VALUES ('acme', 1);
                 INSERT INTO hosts VALUES ('web.v2.test', 'acme', 'web', 0);
                 INSERT INTO certificates (id, tenant, app, hosts, source, chain_pem, sealed_key,
                     bundle_sha256, bundle_size, issuer, not_before_unix, not_after_unix,
                     last_error, attempts, next_attempt_unix, created_unix, updated_unix)
                 VALUES (1, 'acme', 'web', '[\"web.v2.test\"]', 'uploaded', 'chain', '\\x00ff',
                         '{digest}', 10, 'CN=ca', 100, 400, NULL, 0, NULL, 5, 5),
                        (2, 'acme', 'web', '[\"web.v2.test\"]', 'acme', NULL, NULL, NULL, NULL,
                         NULL, NULL, NULL, 'the CA said no', 3, 2000, 5, 6);",
                digest = "ab".repeat(32)
            ))
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO apps (tenant, name, active_version, origin, config, limits,
                                   created_unix, updated_revision)
                 VALUES ('acme', 'web', NULL, 'http://origin.test', '{}', $1, 1, 7)",
                &[&serde_json::to_string(&AppLimits::default()).unwrap()],
            )
            .await
            .unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    }
    let store = url.connect().await.unwrap();
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
        edge_cp::store::CertificateCounts {
            issued: 1,
            failed: 1,
            ..Default::default()
        }
    );
    assert_eq!(store.revision().await.unwrap(), 7);
}

/// Replicas adding certificates at once cannot overshoot a limit
/// together: each counts in its own `SERIALIZABLE` transaction, and of
/// two that both saw room one is made to count again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_for_the_last_certificates_cannot_overshoot_a_limit() {
    let url = pg::new_database().await;
    let one = Arc::new(url.connect().await.unwrap());
    let two = Arc::new(url.connect().await.unwrap());
    let t = tenant("cert-race");
    one.create_tenant(&t).await.unwrap();
    one.create_app(
        &t,
        &app("web"),
        &[host("cert-race.test")],
        &AppLimits::default(),
        None,
    )
    .await
    .unwrap();
    let limits = edge_cp::store::CertLimits {
        per_app: 1000,
        per_tenant: 1000,
        pending_acme_per_tenant: 7,
    };
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (store, t) = ([&one, &two][worker % 2].clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                outcomes.push(
                    store
                        .add_certificate(
                            &t,
                            &app("web"),
                            pending_certificate("cert-race.test", 1),
                            &limits,
                        )
                        .await,
                );
            }
            outcomes
        }));
    }
    let (mut added, mut refused) = (0, 0);
    for task in tasks {
        for outcome in task.await.unwrap() {
            match outcome {
                Ok(_) => added += 1,
                Err(StoreError::CertificateLimit { max: 7, .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!((added, refused), (7, 17));
    assert_eq!(
        two.list_certificates(&t, &app("web")).await.unwrap().len(),
        7
    );
}

/// PostgreSQL's disk fills up (the database lives in a tablespace on a
/// small tmpfs): a write is refused as `StoreError::Full` (the API's 507
/// `storage-full`, as on SQLite), not as an opaque backend error; nothing
/// of it is stored, and the same write works once space is freed.
#[tokio::test]
async fn a_full_disk_under_postgres_is_storage_full() {
    let disk = crate::common::Tmpfs::mount(64 << 20);
    let cluster = pg::cluster();
    let (name, url) = cluster.new_database_in(disk.path()).await;
    let store: PgMetaStore = url.connect().await.unwrap();
    let t = tenant("acme");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("web"),
            &[host("web.test")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let new = NewVersion {
        source_sha256: "cd".repeat(32),
        source_size: 100,
        artifact: ArtifactRef {
            sha256: "ab".repeat(32),
            size: 10,
            engine: "e".into(),
        },
    };

    let filler = disk.fill();
    match store.add_version(&t, &app("web"), &new, u64::MAX).await {
        Err(StoreError::Full(detail)) => {
            assert!(detail.contains("53100"), "{detail}")
        }
        other => panic!("expected StoreError::Full, got {other:?}"),
    }
    std::fs::remove_file(&filler).unwrap();
    assert!(
        store
            .list_versions(&t, &app("web"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.tenant_storage(&t).await.unwrap().used_bytes, 0);
    let added = store
        .add_version(&t, &app("web"), &new, u64::MAX)
        .await
        .unwrap();
    assert_eq!(added.version, 1);
    assert_eq!(store.tenant_storage(&t).await.unwrap().used_bytes, 100);

    drop(store);
    cluster.drop_in(&name).await;
}
