//! The ACME work and the limits around certificates, on every backend:
//! bundle lookups by digest, per-app and per-tenant limits under
//! concurrent adds, the due query and the next wake-up, leases (held,
//! ended, taken over, a forced renewal during one) and the status counts.
//! Run by `super::certificates` after its cases, on tenants of their own.

use edge_common::AppLimits;

use super::super::{app, host, tenant};
use super::{FAR, LIMITS, acme, lease_lost, material, not_found, take, upload};
use crate::store::{
    CertLimit, CertLimits, CertRecord, CertificateCounts, MetaStore, StoreError, now_unix,
};

/// A node's bundle lookup: the certificate whose bundle has the digest,
/// the lowest id of several with one bundle; none for a digest no
/// material has (a pending certificate has none), nor once deleted.
pub(super) async fn bundles<M: MetaStore>(store: &M) {
    let t = tenant("bundle-a");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.bundle.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let site = app("site");
    let add = |new| store.add_certificate(&t, &site, new, &LIMITS);
    let (pending, _) = add(acme(&["site.bundle.example"], FAR)).await.unwrap();
    let (one, _) = add(upload(&["site.bundle.example"], 30)).await.unwrap();
    let (twin, _) = add(upload(&["site.bundle.example"], 30)).await.unwrap();
    let (other, _) = add(upload(&["site.bundle.example"], 31)).await.unwrap();
    let find = |digest: String| async move { store.certificate_by_bundle(&digest).await.unwrap() };
    assert_eq!(find(material(30).bundle_sha256).await, Some(one.clone()));
    assert_eq!(find(material(31).bundle_sha256).await, Some(other));
    assert_eq!(
        find(material(32).bundle_sha256).await,
        None,
        "no such bundle"
    );
    assert_eq!(find(String::new()).await, None, "a pending one has none");
    store
        .delete_certificate(&t, &app("site"), one.id)
        .await
        .unwrap();
    assert_eq!(find(material(30).bundle_sha256).await, Some(twin));
    // Issued: found by its new bundle.
    let lease = take(store, pending.id).await;
    store
        .record_certificate_issued(&lease, material(33), None)
        .await
        .unwrap();
    assert_eq!(
        find(material(33).bundle_sha256).await.map(|c| c.id),
        Some(pending.id)
    );
    store.delete_app(&t, &app("site")).await.unwrap();
    for n in [30, 31, 33] {
        assert_eq!(find(material(n).bundle_sha256).await, None, "deleted");
    }
}

/// `add_certificate` counts in its own transaction: of concurrent adds
/// only as many as the limits leave room for succeed; each refusal names
/// the limit, bumps nothing and uses no id. A pending ACME certificate
/// counts against its tenant's pending limit until issued (a failed one
/// still does), and every certificate against the app's and the tenant's.
pub(super) async fn limits<M: MetaStore>(store: &M) {
    use futures::future::join_all;

    let (t, u) = (tenant("limit-a"), tenant("limit-b"));
    for (tenant, name, hostname) in [
        (&t, "x", "x.limit.example"),
        (&t, "y", "y.limit.example"),
        (&u, "z", "z.limit.example"),
    ] {
        if !store.tenant_exists(tenant).await.unwrap() {
            store.create_tenant(tenant).await.unwrap();
        }
        store
            .create_app(
                tenant,
                &app(name),
                &[host(hostname)],
                &AppLimits::default(),
                None,
            )
            .await
            .unwrap();
    }
    let small = CertLimits {
        per_app: 3,
        per_tenant: 5,
        pending_acme_per_tenant: 2,
    };
    let refused = |results: Vec<Result<(CertRecord, u64), StoreError>>,
                   want: (CertLimit, &str, u64)|
     -> Vec<CertRecord> {
        let mut added = Vec::new();
        for result in results {
            match result {
                Ok((cert, _)) => added.push(cert),
                Err(StoreError::CertificateLimit { limit, owner, max }) => {
                    assert_eq!((limit, owner.as_str(), max), want)
                }
                Err(e) => panic!("expected a limit, got {e}"),
            }
        }
        added.sort_by_key(|c| c.id);
        added
    };

    let (x_app, y_app, z_app) = (app("x"), app("y"), app("z"));
    let start = store.revision().await.unwrap();
    let x = refused(
        join_all((0..8u8).map(|n| {
            store.add_certificate(&t, &x_app, upload(&["x.limit.example"], 40 + n), &small)
        }))
        .await,
        (CertLimit::PerApp, "app x", 3),
    );
    assert_eq!(x.len(), 3, "of eight at once, three fit the app");
    assert_eq!(
        (x[1].id - x[0].id, x[2].id - x[1].id),
        (1, 1),
        "refusals use no id"
    );
    assert_eq!(store.revision().await.unwrap(), start + 3);
    let message = store
        .add_certificate(&t, &app("x"), upload(&["x.limit.example"], 48), &small)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "app x already has 3 certificates, the most allowed; delete one first"
    );
    let y = refused(
        join_all((0..4u8).map(|n| {
            store.add_certificate(&t, &y_app, upload(&["y.limit.example"], 50 + n), &small)
        }))
        .await,
        (CertLimit::PerTenant, "tenant limit-a", 5),
    );
    assert_eq!(y.len(), 2, "the tenant's five: two more fit in another app");
    assert_eq!(
        store.list_certificates(&t, &app("x")).await.unwrap().len(),
        3
    );
    assert_eq!(store.revision().await.unwrap(), start + 5);

    // Pending ACME certificates of a tenant.
    let roomy_app = CertLimits {
        per_app: 100,
        per_tenant: 100,
        ..small
    };
    let z =
        refused(
            join_all((0..5).map(|_| {
                store.add_certificate(&u, &z_app, acme(&["z.limit.example"], 1), &roomy_app)
            }))
            .await,
            (CertLimit::PendingAcmePerTenant, "tenant limit-b", 2),
        );
    assert_eq!(z.len(), 2);
    let pending_refused = || async {
        match store
            .add_certificate(&u, &app("z"), acme(&["z.limit.example"], 1), &roomy_app)
            .await
        {
            Err(StoreError::CertificateLimit { limit, .. }) => {
                assert_eq!(limit, CertLimit::PendingAcmePerTenant);
                true
            }
            Ok((cert, _)) => {
                assert!(cert.id > 0);
                false
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(pending_refused().await);
    store
        .add_certificate(&u, &app("z"), upload(&["z.limit.example"], 60), &roomy_app)
        .await
        .expect("an upload is not pending");
    // A failed one still waits to be issued; an issued one no longer does.
    let lease = store
        .claim_certificate(z[0].id, 1, 2)
        .await
        .unwrap()
        .unwrap();
    store
        .record_certificate_failure(&lease, "no", 1)
        .await
        .unwrap();
    assert!(pending_refused().await, "failed: still pending");
    let lease = store
        .claim_certificate(z[0].id, 1, 2)
        .await
        .unwrap()
        .unwrap();
    store
        .record_certificate_issued(&lease, material(61), None)
        .await
        .unwrap();
    assert!(!pending_refused().await, "issued: room for one more");
    assert!(pending_refused().await);
    // Deleting makes room.
    store
        .delete_certificate(&u, &app("z"), z[1].id)
        .await
        .unwrap();
    assert!(!pending_refused().await);
    // Leaves no ACME work behind for the cases after it.
    store.delete_app(&u, &app("z")).await.unwrap();
}

/// The work due: `due_certificates` lists the ACME certificates due and
/// under no lease, longest due first (then by id), up to the limit;
/// `next_certificate_due` says when the next becomes claimable, a lease's
/// end included. Times here are long past, so only this case's
/// certificates are due by them (the cases before left no such work).
pub(super) async fn due_work<M: MetaStore>(store: &M) {
    let t = tenant("due-a");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.due.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for new in [
        acme(&["site.due.example"], 300),
        acme(&["site.due.example"], 100),
        acme(&["site.due.example"], 200),
        acme(&["site.due.example"], 100),
        acme(&["site.due.example"], 1_000_000),
        upload(&["site.due.example"], 70),
    ] {
        let (cert, _) = store
            .add_certificate(&t, &app("site"), new, &LIMITS)
            .await
            .unwrap();
        ids.push(cert.id);
    }
    let [a, b, c, d, _later, _upload] = ids[..] else {
        unreachable!()
    };
    let due = |now: u64, limit: usize| async move {
        store
            .due_certificates(now, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    let next = |now: u64| async move { store.next_certificate_due(now).await.unwrap() };
    assert_eq!(due(99, 10).await, Vec::<u64>::new());
    assert_eq!(next(99).await, Some(100));
    assert_eq!(due(100, 10).await, vec![b, d], "a tie by id");
    assert_eq!(due(250, 10).await, vec![b, d, c]);
    assert_eq!(due(250, 2).await, vec![b, d], "the limit");
    assert_eq!(due(250, 0).await, Vec::<u64>::new());
    assert_eq!(
        due(10_000, 10).await,
        vec![b, d, c, a],
        "never an upload, nor one due later"
    );
    let got = store.due_certificates(10_000, 10).await.unwrap();
    assert_eq!(
        got[0],
        store.get_certificate(b).await.unwrap(),
        "whole records"
    );

    // Leases take certificates out until they end.
    let lease_b = store.claim_certificate(b, 150, 400).await.unwrap().unwrap();
    assert_eq!(due(250, 10).await, vec![d, c]);
    assert_eq!(
        next(250).await,
        Some(100),
        "work waiting: a time already past"
    );
    store.claim_certificate(d, 250, 260).await.unwrap().unwrap();
    store.claim_certificate(c, 250, 270).await.unwrap().unwrap();
    assert_eq!(due(250, 10).await, Vec::<u64>::new());
    assert_eq!(next(250).await, Some(260), "the first lease to end");
    assert_eq!(due(260, 10).await, vec![d], "a lease ends at its time");
    assert_eq!(next(260).await, Some(100));
    // Under a lease, it is claimable at the later of its due time and the
    // lease's end.
    store
        .record_certificate_failure(&lease_b, "retry later", 900)
        .await
        .unwrap();
    let lease_a = store.claim_certificate(a, 300, 350).await.unwrap().unwrap();
    store
        .schedule_certificate(&t, &app("site"), a, 500)
        .await
        .unwrap();
    store.claim_certificate(d, 300, 800).await.unwrap().unwrap();
    store.claim_certificate(c, 300, 700).await.unwrap().unwrap();
    assert_eq!(
        next(300).await,
        Some(500),
        "a: due at 500, its lease ends at 350"
    );
    assert_eq!(lease_a.until_unix, 350);
    store.delete_app(&t, &app("site")).await.unwrap();
    assert_eq!(
        due(10_000, 10).await,
        Vec::<u64>::new(),
        "deleted, with its leases"
    );
}

/// A forced renewal during a lease: the lease holds (no second claim, no
/// change to it), the holder's result does not cancel the request, and
/// the first claim after the lease acts on it (and clears it). A result
/// under a lease another claim took over, or already recorded, or of a
/// deleted certificate, is refused and writes nothing.
pub(super) async fn forced_renewal_during_a_lease<M: MetaStore>(store: &M) {
    let t = tenant("renew-a");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.renew.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let (cert, _) = store
        .add_certificate(
            &t,
            &app("site"),
            acme(&["site.renew.example"], 1_000),
            &LIMITS,
        )
        .await
        .unwrap();
    let id = cert.id;
    let lease = store
        .claim_certificate(id, 1_000, 1_600)
        .await
        .unwrap()
        .unwrap();
    let before = store.revision().await.unwrap();
    let scheduled = store
        .schedule_certificate(&t, &app("site"), id, 1_100)
        .await
        .unwrap();
    assert_eq!(
        (
            scheduled.next_attempt_unix,
            scheduled.renew_requested,
            scheduled.lease_until_unix
        ),
        (Some(1_100), true, Some(1_600)),
        "the lease is left alone"
    );
    assert_eq!(store.revision().await.unwrap(), before);
    assert_eq!(
        store.claim_certificate(id, 1_100, 1_700).await.unwrap(),
        None,
        "a forced renewal never breaks a lease"
    );
    assert!(
        !store
            .due_certificates(1_100, 100)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == id)
    );
    assert_eq!(
        store.next_certificate_due(1_100).await.unwrap(),
        Some(1_600)
    );

    // The holder's result: issued, renewal due much later, yet the request
    // stands, due since it was made.
    let revision = store
        .record_certificate_issued(&lease, material(80), Some(90_000))
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    let issued = store.get_certificate(id).await.unwrap();
    assert_eq!(
        (
            issued.next_attempt_unix,
            issued.renew_requested,
            issued.lease_until_unix,
            issued.material
        ),
        (Some(1_100), true, None, Some(material(80)))
    );
    // The next claim takes the request.
    let again = store
        .claim_certificate(id, 1_600, 2_000)
        .await
        .unwrap()
        .expect("the request is due");
    assert!(again.token > lease.token);
    assert!(!store.get_certificate(id).await.unwrap().renew_requested);
    assert_eq!(
        store
            .record_certificate_failure(&again, "renewal failed", 3_000)
            .await
            .unwrap(),
        revision,
        "no challenges: no revision"
    );
    let failed = store.get_certificate(id).await.unwrap();
    assert_eq!(
        (
            failed.next_attempt_unix,
            failed.renew_requested,
            failed.attempts,
            failed.material.clone()
        ),
        (Some(3_000), false, 1, Some(material(80))),
        "no request left: the retry time; still served"
    );

    // Taken over: the old holder's results are refused, the new one's
    // count; a lease ends with its first result.
    let old = store
        .claim_certificate(id, 3_000, 3_100)
        .await
        .unwrap()
        .unwrap();
    let new = store
        .claim_certificate(id, 3_100, 3_200)
        .await
        .unwrap()
        .unwrap();
    lease_lost(
        store
            .record_certificate_issued(&old, material(81), Some(5))
            .await,
        id,
    );
    lease_lost(store.record_certificate_failure(&old, "old", 5).await, id);
    assert_eq!(
        store.get_certificate(id).await.unwrap(),
        CertRecord {
            lease_until_unix: Some(3_200),
            ..failed.clone()
        },
        "nothing written"
    );
    store
        .record_certificate_issued(&new, material(82), Some(9_000))
        .await
        .unwrap();
    lease_lost(
        store
            .record_certificate_issued(&new, material(83), Some(9_000))
            .await,
        id,
    );
    assert_eq!(
        store.get_certificate(id).await.unwrap().material,
        Some(material(82))
    );
    // Deleted during a lease: the result has nowhere to go.
    let doomed = store
        .claim_certificate(id, 9_000, 9_500)
        .await
        .unwrap()
        .unwrap();
    store
        .delete_certificate(&t, &app("site"), id)
        .await
        .unwrap();
    not_found(
        store
            .record_certificate_issued(&doomed, material(84), None)
            .await,
        "issued after deletion",
        &format!("certificate {id}"),
    );
    store.delete_app(&t, &app("site")).await.unwrap();
}

/// `certificate_counts` is [`CertRecord::status`] counted in SQL: equal to
/// counting the records, at the edges of each lifetime (two thirds of a
/// lifetime not divisible by three, none, negative) and at times around
/// every certificate's renewal time.
pub(super) async fn counts<M: MetaStore>(store: &M) {
    let t = tenant("count-a");
    store.create_tenant(&t).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.count.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    for (n, not_before, not_after) in [
        (90u8, 1000u64, 1000u64),
        (91, 1000, 1001),
        (92, 1000, 1002),
        (93, 1000, 1003),
        (94, 1000, 1004),
        (95, 1000, 900),
        (96, 0, u64::MAX),
    ] {
        let mut new = upload(&["site.count.example"], n);
        if let Some(m) = new.material.as_mut() {
            m.not_before_unix = not_before;
            m.not_after_unix = not_after;
        }
        store
            .add_certificate(&t, &app("site"), new, &LIMITS)
            .await
            .unwrap();
    }
    let (failing, _) = store
        .add_certificate(&t, &app("site"), acme(&["site.count.example"], 1), &LIMITS)
        .await
        .unwrap();
    store
        .add_certificate(
            &t,
            &app("site"),
            acme(&["site.count.example"], FAR),
            &LIMITS,
        )
        .await
        .unwrap();
    let lease = store
        .claim_certificate(failing.id, 1, 2)
        .await
        .unwrap()
        .unwrap();
    store
        .record_certificate_failure(&lease, "no", FAR)
        .await
        .unwrap();

    let all = store.all_certificates().await.unwrap();
    let mut times: Vec<u64> = vec![0, 999, 1000, 1001, 1002, 1003, 1004, now_unix(), u64::MAX];
    for m in all.iter().filter_map(|c| c.material.as_ref()) {
        let renewal = m.renewal_unix();
        times.extend([
            renewal.saturating_sub(1),
            renewal,
            renewal.saturating_add(1),
        ]);
    }
    let mut seen = CertificateCounts::default();
    for now in times {
        let expected = CertificateCounts::of(&all, now);
        assert_eq!(
            store.certificate_counts(now).await.unwrap(),
            expected,
            "at {now}"
        );
        seen.pending = seen.pending.max(expected.pending);
        seen.issued = seen.issued.max(expected.issued);
        seen.failed = seen.failed.max(expected.failed);
        seen.expiring = seen.expiring.max(expected.expiring);
    }
    assert!(
        seen.pending > 0 && seen.issued > 0 && seen.failed > 0 && seen.expiring > 0,
        "every status is counted somewhere: {seen:?}"
    );
}
