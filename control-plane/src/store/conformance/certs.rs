//! Certificates, ACME challenges and accounts, and apps' HTTPS options:
//! what every backend must do with them. Sealed keys are arbitrary bytes
//! here (the store never opens them).

mod work;

use edge_common::AppLimits;
use edge_common::sync::{AcmeChallenge, AppHttps, Snapshot, SnapshotCertificate};

use super::{NO_QUOTA, app, host, origin, tenant, version};
use crate::store::{
    CertLease, CertLimits, CertMaterial, CertRecord, CertSource, MetaStore, NewCertificate,
    StoreError, now_unix,
};

/// Limits the cases here never reach (but [`work::limits`]).
const LIMITS: CertLimits = CertLimits {
    per_app: 1000,
    per_tenant: 1000,
    pending_acme_per_tenant: 1000,
};

/// A time after every due time and lease the cases here set (2096).
const FAR: u64 = 4_000_000_000;

/// A lease on a certificate that does not exist.
const NO_LEASE: CertLease = CertLease {
    id: 99,
    token: 1,
    until_unix: FAR,
};

/// Claims a certificate's work at [`FAR`]; it must be claimable.
async fn take<M: MetaStore>(store: &M, id: u64) -> CertLease {
    store
        .claim_certificate(id, FAR, FAR + 600)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("certificate {id} is claimable"))
}

fn lease_lost(result: Result<impl std::fmt::Debug, StoreError>, expect: u64) {
    match result {
        Err(StoreError::LeaseLost { id }) => assert_eq!(id, expect),
        other => panic!("expected LeaseLost({expect}), got {other:?}"),
    }
}

/// Material `n`: its sealed key holds every byte value (a backend that
/// mangles a NUL, a high byte or text-decodes it fails).
pub(super) fn material(n: u8) -> CertMaterial {
    CertMaterial {
        chain_pem: format!(
            "-----BEGIN CERTIFICATE-----\nleaf {n}\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nissuer\n-----END CERTIFICATE-----\n"
        ),
        sealed_key: (0..=255u8).chain([n, 0, n]).collect(),
        bundle_sha256: format!("{n:02x}").repeat(32),
        bundle_size: 1000 + u64::from(n),
        issuer: "CN=Conformance CA".into(),
        not_before_unix: 1_700_000_000,
        not_after_unix: 1_800_000_000 + u64::from(n),
    }
}

pub(super) fn upload(hosts: &[&str], n: u8) -> NewCertificate {
    NewCertificate {
        hosts: hosts.iter().map(|h| host(h)).collect(),
        source: CertSource::Uploaded,
        material: Some(material(n)),
        next_attempt_unix: None,
    }
}

pub(super) fn acme(hosts: &[&str], next: u64) -> NewCertificate {
    NewCertificate {
        hosts: hosts.iter().map(|h| host(h)).collect(),
        source: CertSource::Acme,
        material: None,
        next_attempt_unix: Some(next),
    }
}

pub(super) fn challenge(host: &str, token: &str) -> AcmeChallenge {
    AcmeChallenge {
        host: host.into(),
        token: token.into(),
        key_authorization: format!("{token}.thumbprint"),
    }
}

/// The snapshot's certificates as (id, hosts).
fn served(snapshot: &Snapshot) -> Vec<(u64, Vec<String>)> {
    snapshot
        .certificates
        .iter()
        .map(|c| (c.id, c.hosts.iter().map(|h| h.to_string()).collect()))
        .collect()
}

fn tokens(snapshot: &Snapshot) -> Vec<(String, String)> {
    snapshot
        .acme_challenges
        .iter()
        .map(|c| (c.host.clone(), c.token.clone()))
        .collect()
}

fn not_found(result: Result<impl std::fmt::Debug, StoreError>, what: &str, expect: &str) {
    match result {
        Err(StoreError::NotFound(name)) => assert_eq!(name, expect, "{what}"),
        other => panic!("{what}: expected NotFound({expect}), got {other:?}"),
    }
}

/// Everything about certificates, on tenants of its own. Expects no
/// certificate to exist yet (ids start at 1).
pub(super) async fn certificates<M: MetaStore>(store: &M) {
    https_options(store).await;
    records_and_revisions(store).await;
    snapshot_hosts(store).await;
    challenges_and_acme_state(store).await;
    concurrent_claims(store).await;
    deleting(store).await;
    accounts(store).await;
    work::bundles(store).await;
    work::limits(store).await;
    work::due_work(store).await;
    work::forced_renewal_during_a_lease(store).await;
    work::counts(store).await;
}

/// `set_app_https`: bumps the revision and the app's `updated_revision`,
/// shows in the app and in the snapshot (component and origin apps);
/// `NotFound` for another tenant's app.
async fn https_options<M: MetaStore>(store: &M) {
    let (t, other) = (tenant("https-a"), tenant("https-b"));
    store.create_tenant(&t).await.unwrap();
    store.create_tenant(&other).await.unwrap();
    store
        .create_app(
            &t,
            &app("site"),
            &[host("site.https.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    store
        .add_version(&t, &app("site"), &version(30), NO_QUOTA)
        .await
        .unwrap();
    store.activate_version(&t, &app("site"), 1).await.unwrap();
    store
        .create_app(
            &t,
            &app("edge"),
            &[host("edge.https.example")],
            &AppLimits::default(),
            Some(&origin("http://origin.https.example", false)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_app(&t, &app("site")).await.unwrap().https,
        AppHttps::default(),
        "off by default"
    );

    let strict = AppHttps {
        redirect: true,
        hsts: Some("max-age=31536000; includeSubDomains".into()),
    };
    let before = store.revision().await.unwrap();
    let revision = store
        .set_app_https(&t, &app("site"), &strict)
        .await
        .unwrap();
    assert_eq!(revision, before + 1, "an HTTPS change bumps the revision");
    assert_eq!(store.revision().await.unwrap(), revision);
    let site = store.get_app(&t, &app("site")).await.unwrap();
    assert_eq!(site.https, strict);
    assert_eq!(site.updated_revision, revision);
    let redirect_only = AppHttps {
        redirect: true,
        hsts: None,
    };
    let revision = store
        .set_app_https(&t, &app("edge"), &redirect_only)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_app(&t, &app("edge"))
            .await
            .unwrap()
            .updated_revision,
        revision
    );
    assert_eq!(
        store.list_apps(&t).await.unwrap()[1].https,
        strict,
        "list_apps carries it too"
    );

    let snapshot = store.snapshot().await.unwrap();
    let site = snapshot.apps.iter().find(|a| a.tenant == t).unwrap();
    assert_eq!(site.https, strict, "the snapshot's component app");
    let edge = snapshot.origins.iter().find(|o| o.tenant == t).unwrap();
    assert_eq!(edge.https, redirect_only, "the snapshot's origin app");

    not_found(
        store.set_app_https(&other, &app("site"), &strict).await,
        "another tenant's app",
        "app site",
    );
    not_found(
        store.set_app_https(&t, &app("nope"), &strict).await,
        "an app that does not exist",
        "app nope",
    );
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "refusals bump nothing"
    );

    // Back to the default.
    store
        .set_app_https(&t, &app("site"), &AppHttps::default())
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let site = snapshot.apps.iter().find(|a| a.tenant == t).unwrap();
    assert_eq!(site.https, AppHttps::default());
}

/// Adding, reading and listing: ids from 1, material bumps the revision
/// and an ACME request without it does not; `NotFound` across tenants.
async fn records_and_revisions<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("cert-a"), tenant("cert-b"));
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    store
        .create_app(
            &a,
            &app("shop"),
            &[host("shop.certs.example"), host("*.shop.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    store
        .create_app(
            &b,
            &app("shop"),
            &[host("other.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();

    let start = store.revision().await.unwrap();
    let due = now_unix();
    let (pending, revision) = store
        .add_certificate(
            &a,
            &app("shop"),
            acme(&["shop.certs.example"], due),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(pending.id, 1, "ids start at 1");
    assert_eq!(revision, start, "nothing to serve yet: no new revision");
    assert_eq!(store.revision().await.unwrap(), start);
    assert_eq!(
        (
            &pending.tenant,
            &pending.app,
            pending.source,
            &pending.material,
            &pending.last_error,
            pending.attempts,
            pending.next_attempt_unix,
        ),
        (
            &a,
            &app("shop"),
            CertSource::Acme,
            &None,
            &None,
            0,
            Some(due)
        )
    );
    assert_eq!(pending.hosts, vec![host("shop.certs.example")]);
    assert!(pending.created_unix >= due && pending.updated_unix == pending.created_unix);

    let (uploaded, revision) = store
        .add_certificate(
            &a,
            &app("shop"),
            upload(&["shop.certs.example", "*.shop.certs.example"], 1),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(uploaded.id, 2);
    assert_eq!(revision, start + 1, "material to serve: a new revision");
    assert_eq!(uploaded.material, Some(material(1)));
    assert_eq!(uploaded.next_attempt_unix, None);
    assert_eq!(uploaded.source, CertSource::Uploaded);

    let (theirs, _) = store
        .add_certificate(
            &b,
            &app("shop"),
            upload(&["other.certs.example"], 2),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(theirs.id, 3);

    // Read back exactly, key bytes included.
    assert_eq!(store.get_certificate(2).await.unwrap(), uploaded);
    assert_eq!(
        store
            .get_certificate(2)
            .await
            .unwrap()
            .material
            .unwrap()
            .sealed_key,
        material(1).sealed_key,
        "the sealed key comes back byte for byte"
    );
    assert_eq!(store.get_certificate(1).await.unwrap(), pending);
    not_found(
        store.get_certificate(99).await,
        "no such id",
        "certificate 99",
    );
    assert_eq!(
        store.list_certificates(&a, &app("shop")).await.unwrap(),
        vec![pending.clone(), uploaded.clone()],
        "one app's, by id: not the other tenant's app of the same name"
    );
    assert_eq!(
        store.list_certificates(&b, &app("shop")).await.unwrap(),
        vec![theirs.clone()]
    );
    let all: Vec<_> = store
        .all_certificates()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.tenant == a || c.tenant == b)
        .collect();
    assert_eq!(all, vec![pending, uploaded, theirs]);
    not_found(
        store.list_certificates(&a, &app("nope")).await,
        "listing an app that does not exist",
        "app nope",
    );
    not_found(
        store
            .add_certificate(
                &a,
                &app("nope"),
                upload(&["shop.certs.example"], 3),
                &LIMITS,
            )
            .await,
        "adding to an app that does not exist",
        "app nope",
    );
    not_found(
        store
            .add_certificate(
                &tenant("nobody"),
                &app("shop"),
                upload(&["x.test"], 3),
                &LIMITS,
            )
            .await,
        "adding for a tenant that does not exist",
        "app shop",
    );
    assert_eq!(
        store.revision().await.unwrap(),
        start + 2,
        "refusals bump nothing"
    );

    let snapshot = store.snapshot().await.unwrap();
    let ours: Vec<&SnapshotCertificate> = snapshot
        .certificates
        .iter()
        .filter(|c| c.tenant == a || c.tenant == b)
        .collect();
    assert_eq!(
        ours,
        vec![
            &SnapshotCertificate {
                id: 2,
                tenant: a.clone(),
                app: app("shop"),
                hosts: vec![host("shop.certs.example"), host("*.shop.certs.example")],
                bundle_sha256: material(1).bundle_sha256,
                bundle_size: material(1).bundle_size,
                not_after_unix: material(1).not_after_unix,
            },
            &SnapshotCertificate {
                id: 3,
                tenant: b.clone(),
                app: app("shop"),
                hosts: vec![host("other.certs.example")],
                bundle_sha256: material(2).bundle_sha256,
                bundle_size: material(2).bundle_size,
                not_after_unix: material(2).not_after_unix,
            },
        ],
        "certificates with material, by id; a pending one is not served"
    );
    let body = serde_json::to_string(&snapshot).unwrap();
    assert!(
        !body.contains("BEGIN CERTIFICATE") && !body.contains("leaf 1"),
        "the snapshot names bundles, it carries no chain or key"
    );
}

/// The snapshot keeps only the names a certificate's tenant still owns:
/// exact names its apps list or a one-label wildcard of theirs covers,
/// wildcards its apps list themselves. A name whose app goes, or that
/// moves to another tenant, drops out; a certificate left with none is not
/// served. Expects [`records_and_revisions`] to have run.
async fn snapshot_hosts<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("cert-a"), tenant("cert-b"));
    store
        .create_app(
            &a,
            &app("blog"),
            &[host("blog.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let (wide, _) = store
        .add_certificate(
            &a,
            &app("shop"),
            upload(
                &[
                    "shop.certs.example",
                    "a.shop.certs.example",
                    "x.y.shop.certs.example",
                    "*.shop.certs.example",
                    "*.certs.example",
                    "*.y.shop.certs.example",
                    "blog.certs.example",
                    "other.certs.example",
                    "nobody.certs.example",
                ],
                4,
            ),
            &LIMITS,
        )
        .await
        .unwrap();
    let (blog_only, _) = store
        .add_certificate(
            &a,
            &app("shop"),
            upload(&["blog.certs.example"], 5),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!((wide.id, blog_only.id), (4, 5));
    assert_eq!(
        store.get_certificate(4).await.unwrap().hosts.len(),
        9,
        "the store keeps every name given; only the snapshot filters"
    );
    let ours = |s: &Snapshot| -> Vec<(u64, Vec<String>)> {
        served(s).into_iter().filter(|(id, _)| *id >= 2).collect()
    };
    let owned_by_a = vec![
        "shop.certs.example".to_string(),
        "a.shop.certs.example".into(),
        "*.shop.certs.example".into(),
    ];
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        ours(&snapshot),
        vec![
            (
                2,
                vec!["shop.certs.example".into(), "*.shop.certs.example".into()]
            ),
            (3, vec!["other.certs.example".into()]),
            (
                4,
                [owned_by_a.clone(), vec!["blog.certs.example".into()]].concat()
            ),
            (5, vec!["blog.certs.example".into()]),
        ],
        "names of any of the tenant's apps, one-label wildcards only, no other tenant's"
    );

    // The blog app goes: its name leaves both certificates, and the one
    // left without a name is not served.
    store.delete_app(&a, &app("blog")).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        ours(&snapshot),
        vec![
            (
                2,
                vec!["shop.certs.example".into(), "*.shop.certs.example".into()]
            ),
            (3, vec!["other.certs.example".into()]),
            (4, owned_by_a.clone()),
        ]
    );
    // The name moves to the other tenant: still not tenant a's.
    store
        .create_app(
            &b,
            &app("blog"),
            &[host("blog.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(ours(&snapshot)[2], (4, owned_by_a.clone()));
    assert!(!ours(&snapshot).iter().any(|(id, _)| *id == 5));
    assert_eq!(
        store.get_certificate(5).await.unwrap().hosts,
        vec![host("blog.certs.example")],
        "the record keeps its names"
    );
    // And comes back: served again.
    store.delete_app(&b, &app("blog")).await.unwrap();
    store
        .create_app(
            &a,
            &app("blog"),
            &[host("blog.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        ours(&snapshot).last(),
        Some(&(5, vec!["blog.certs.example".to_string()]))
    );

    // A tenant's `*.certs.example` makes that wildcard (and one label
    // under it) its own, not deeper names.
    store
        .create_app(
            &a,
            &app("wild"),
            &[host("*.wild.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    let (wild, _) = store
        .add_certificate(
            &a,
            &app("wild"),
            upload(
                &[
                    "*.wild.certs.example",
                    "one.wild.certs.example",
                    "two.one.wild.certs.example",
                    "*.one.wild.certs.example",
                    "wild.certs.example",
                ],
                6,
            ),
            &LIMITS,
        )
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let listed = snapshot
        .certificates
        .iter()
        .find(|c| c.id == wild.id)
        .unwrap();
    assert_eq!(
        listed.hosts,
        vec![host("*.wild.certs.example"), host("one.wild.certs.example")]
    );
}

/// Challenges in and out of the snapshot; the ACME bookkeeping (claims,
/// failures, issuance, scheduling, resealing) and which of it bumps the
/// revision. Expects [`snapshot_hosts`] to have run.
async fn challenges_and_acme_state<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("cert-a"), tenant("cert-b"));
    let pending = store.get_certificate(1).await.unwrap();
    let due = pending.next_attempt_unix.unwrap();

    // Claims: only an ACME certificate due and under no lease; a lease is
    // kept apart from the due time; no revision.
    let revision = store.revision().await.unwrap();
    assert_eq!(
        store
            .claim_certificate(1, due - 1, due + 600)
            .await
            .unwrap(),
        None,
        "not due yet"
    );
    assert_eq!(
        store.claim_certificate(2, FAR, FAR + 1).await.unwrap(),
        None,
        "an upload has no ACME work"
    );
    assert_eq!(
        store.claim_certificate(99, FAR, FAR + 1).await.unwrap(),
        None,
        "no such certificate: nothing won"
    );
    let first = store
        .claim_certificate(1, due, due + 600)
        .await
        .unwrap()
        .expect("due and under no lease");
    assert_eq!((first.id, first.until_unix), (1, due + 600));
    let leased = store.get_certificate(1).await.unwrap();
    assert_eq!(
        (leased.lease_until_unix, leased.next_attempt_unix),
        (Some(due + 600), Some(due)),
        "the lease is stored apart from the due time"
    );
    assert_eq!(
        CertRecord {
            lease_until_unix: None,
            ..leased.clone()
        },
        pending,
        "a claim changes nothing else"
    );
    assert_eq!(
        store
            .claim_certificate(1, due + 599, due + 900)
            .await
            .unwrap(),
        None,
        "held until its end"
    );
    // Its holder died: once the lease ended, the work is taken over, under
    // a new token.
    let lease = store
        .claim_certificate(1, due + 600, due + 1200)
        .await
        .unwrap()
        .expect("the lease ended");
    assert!(lease.token > first.token, "{lease:?} after {first:?}");
    // The first holder's late results are refused and change nothing.
    lease_lost(
        store
            .record_certificate_failure(&first, "too late", due + 60)
            .await,
        1,
    );
    lease_lost(
        store
            .record_certificate_issued(&first, material(9), None)
            .await,
        1,
    );
    assert_eq!(
        store.get_certificate(1).await.unwrap(),
        CertRecord {
            lease_until_unix: Some(due + 1200),
            ..leased.clone()
        }
    );
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "claims bump nothing"
    );

    // Challenges: set (bumps), in the snapshot by (certificate, token),
    // only for names the certificate's tenant owns.
    let r1 = store
        .set_acme_challenges(
            1,
            &[
                challenge("shop.certs.example", "token-b"),
                challenge("a.shop.certs.example", "token-a"),
                challenge("other.certs.example", "token-c"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r1, revision + 1);
    let (their_pending, r) = store
        .add_certificate(
            &b,
            &app("shop"),
            acme(&["other.certs.example"], due),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(r, r1, "no material, no revision");
    let r2 = store
        .set_acme_challenges(
            their_pending.id,
            &[challenge("other.certs.example", "token-0")],
        )
        .await
        .unwrap();
    assert_eq!(r2, r1 + 1);
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        tokens(&snapshot),
        vec![
            ("a.shop.certs.example".to_string(), "token-a".to_string()),
            ("shop.certs.example".into(), "token-b".into()),
            ("other.certs.example".into(), "token-0".into()),
        ],
        "by certificate then token; tenant a's challenge for tenant b's name is left out"
    );
    assert_eq!(
        snapshot.acme_challenges[0].key_authorization,
        "token-a.thumbprint"
    );
    not_found(
        store
            .set_acme_challenges(99, &[challenge("x.test", "t")])
            .await,
        "challenges of no certificate",
        "certificate 99",
    );

    // A failure: counted, clears the challenges (a revision, returned)
    // and the lease, keeps the next attempt it names.
    let r3 = store
        .record_certificate_failure(&lease, "the CA said no", due + 60)
        .await
        .unwrap();
    assert_eq!(r3, r2 + 1, "challenges cleared");
    assert_eq!(store.revision().await.unwrap(), r3);
    let failed = store.get_certificate(1).await.unwrap();
    assert_eq!(
        (
            failed.last_error.as_deref(),
            failed.attempts,
            failed.next_attempt_unix,
            failed.lease_until_unix
        ),
        (Some("the CA said no"), 1, Some(due + 60), None)
    );
    assert_eq!(failed.material, None);
    lease_lost(
        store
            .record_certificate_failure(&lease, "twice", due + 60)
            .await,
        1,
    );
    assert_eq!(
        store.get_certificate(1).await.unwrap(),
        failed,
        "a lease ends with its result: a second one is refused"
    );
    assert_eq!(
        tokens(&store.snapshot().await.unwrap()),
        vec![("other.certs.example".to_string(), "token-0".to_string())]
    );
    // A second failure without challenges: no revision.
    let lease = take(store, 1).await;
    assert_eq!(
        store
            .record_certificate_failure(&lease, "again", due + 120)
            .await
            .unwrap(),
        r3
    );
    let failed = store.get_certificate(1).await.unwrap();
    assert_eq!(
        (failed.attempts, failed.last_error.as_deref()),
        (2, Some("again"))
    );
    assert_eq!(store.revision().await.unwrap(), r2 + 1);
    not_found(
        store.record_certificate_failure(&NO_LEASE, "x", 1).await,
        "a failure of no certificate",
        "certificate 99",
    );

    // Issued: material in, error and attempts reset, challenges gone, the
    // renewal time set, a revision; then served.
    store
        .set_acme_challenges(1, &[challenge("shop.certs.example", "token-z")])
        .await
        .unwrap();
    let before = store.revision().await.unwrap();
    let renew_at = due + 86_400;
    let lease = take(store, 1).await;
    let revision = store
        .record_certificate_issued(&lease, material(7), Some(renew_at))
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    let issued = store.get_certificate(1).await.unwrap();
    assert_eq!(
        (
            issued.material.as_ref(),
            issued.last_error.as_deref(),
            issued.attempts,
            issued.next_attempt_unix
        ),
        (Some(&material(7)), None, 0, Some(renew_at))
    );
    assert!(issued.updated_unix >= issued.created_unix);
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        tokens(&snapshot),
        vec![("other.certs.example".to_string(), "token-0".to_string())]
    );
    assert_eq!(
        snapshot
            .certificates
            .first()
            .map(|c| (c.id, c.bundle_sha256.clone())),
        Some((1, material(7).bundle_sha256))
    );
    // Renewed: the new material replaces the old one.
    let lease = take(store, 1).await;
    store
        .record_certificate_issued(&lease, material(8), Some(renew_at + 1))
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        (
            snapshot.certificates[0].bundle_sha256.clone(),
            snapshot.certificates[0].not_after_unix
        ),
        (material(8).bundle_sha256, material(8).not_after_unix)
    );
    // A failed renewal keeps serving the material it has.
    let lease = take(store, 1).await;
    store
        .record_certificate_failure(&lease, "renewal failed", renew_at + 60)
        .await
        .unwrap();
    assert_eq!(
        store.get_certificate(1).await.unwrap().material,
        Some(material(8))
    );
    assert_eq!(store.snapshot().await.unwrap().certificates[0].id, 1);
    not_found(
        store
            .record_certificate_issued(&NO_LEASE, material(9), None)
            .await,
        "issuing no certificate",
        "certificate 99",
    );

    // Scheduling: the app's own certificates only, no revision.
    let revision = store.revision().await.unwrap();
    let scheduled = store
        .schedule_certificate(&a, &app("shop"), 1, 5)
        .await
        .unwrap();
    assert_eq!(
        (
            scheduled.next_attempt_unix,
            scheduled.renew_requested,
            scheduled.lease_until_unix
        ),
        (Some(5), true, None)
    );
    assert_eq!(scheduled, store.get_certificate(1).await.unwrap());
    assert_eq!(store.revision().await.unwrap(), revision);
    let uploaded = store.get_certificate(2).await.unwrap();
    assert_eq!(
        store
            .schedule_certificate(&a, &app("shop"), 2, 6)
            .await
            .unwrap(),
        uploaded,
        "an upload has nothing to renew: unchanged"
    );
    not_found(
        store.schedule_certificate(&b, &app("shop"), 1, 6).await,
        "another tenant's app of the same name",
        "certificate 1",
    );
    not_found(
        store.schedule_certificate(&a, &app("wild"), 1, 6).await,
        "another app of the tenant",
        "certificate 1",
    );
    not_found(
        store.schedule_certificate(&a, &app("shop"), 99, 6).await,
        "no such certificate",
        "certificate 99",
    );
    not_found(
        store.schedule_certificate(&a, &app("nope"), 1, 6).await,
        "no such app",
        "app nope",
    );
    assert_eq!(
        store.get_certificate(1).await.unwrap().next_attempt_unix,
        Some(5),
        "refusals change nothing"
    );

    // Resealing: a compare-and-swap on the sealed bytes, no revision.
    let old = material(1).sealed_key;
    let new: Vec<u8> = old.iter().rev().copied().collect();
    assert!(!store.reseal_certificate_key(2, &new, &old).await.unwrap());
    assert!(store.reseal_certificate_key(2, &old, &new).await.unwrap());
    assert!(
        !store.reseal_certificate_key(2, &old, &new).await.unwrap(),
        "the old key is gone: a second rotation of it loses"
    );
    let resealed = store.get_certificate(2).await.unwrap().material.unwrap();
    assert_eq!(resealed.sealed_key, new);
    assert_eq!(resealed.bundle_sha256, material(1).bundle_sha256);
    assert!(!store.reseal_certificate_key(99, &old, &new).await.unwrap());
    assert!(
        !store
            .reseal_certificate_key(their_pending.id, &[], &new)
            .await
            .unwrap(),
        "a certificate without material has no key to reseal"
    );
    assert_eq!(store.revision().await.unwrap(), revision);
}

/// Replicas racing for one certificate's work: of concurrent claims
/// exactly one wins, round after round (each at a time the last lease
/// ended by), each time under a new token.
async fn concurrent_claims<M: MetaStore>(store: &M) {
    let mut last = 0;
    for round in 0..8u64 {
        let now = FAR + round * 1000;
        let (x, y, z) = tokio::join!(
            store.claim_certificate(1, now, now + 1),
            store.claim_certificate(1, now, now + 2),
            store.claim_certificate(1, now, now + 3),
        );
        let won: Vec<CertLease> = [x, y, z].into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one claim wins");
        assert!(won[0].token > last, "round {round}: a new token");
        last = won[0].token;
        assert_eq!(
            store.get_certificate(1).await.unwrap().lease_until_unix,
            Some(won[0].until_unix),
            "round {round}: the winner's lease"
        );
    }
}

/// Deleting a certificate (the app's own only; a revision if nodes saw
/// it) and an app (its certificates and challenges go with it). Ids are
/// never reused. Expects the cases above to have run.
async fn deleting<M: MetaStore>(store: &M) {
    let (a, b) = (tenant("cert-a"), tenant("cert-b"));
    let revision = store.revision().await.unwrap();
    not_found(
        store.delete_certificate(&b, &app("shop"), 2).await,
        "another tenant's certificate",
        "certificate 2",
    );
    not_found(
        store.delete_certificate(&a, &app("wild"), 2).await,
        "another app's certificate",
        "certificate 2",
    );
    not_found(
        store.delete_certificate(&a, &app("shop"), 99).await,
        "no such certificate",
        "certificate 99",
    );
    assert_eq!(store.revision().await.unwrap(), revision);
    assert!(
        store.get_certificate(2).await.is_ok(),
        "refusals delete nothing"
    );

    // Served: deleting it is a revision, and it leaves the snapshot.
    let r = store.delete_certificate(&a, &app("shop"), 2).await.unwrap();
    assert_eq!(r, revision + 1);
    not_found(store.get_certificate(2).await, "deleted", "certificate 2");
    assert!(
        !served(&store.snapshot().await.unwrap())
            .iter()
            .any(|(id, _)| *id == 2)
    );

    // Pending without challenges: nothing nodes saw, no revision.
    let (quiet, _) = store
        .add_certificate(&a, &app("shop"), acme(&["shop.certs.example"], 1), &LIMITS)
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_certificate(&a, &app("shop"), quiet.id)
            .await
            .unwrap(),
        r
    );
    // Pending with challenges: a revision, and the challenges go.
    let (busy, _) = store
        .add_certificate(&a, &app("shop"), acme(&["shop.certs.example"], 1), &LIMITS)
        .await
        .unwrap();
    assert!(busy.id > quiet.id, "ids are never reused");
    let r = store
        .set_acme_challenges(busy.id, &[challenge("shop.certs.example", "busy")])
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_certificate(&a, &app("shop"), busy.id)
            .await
            .unwrap(),
        r + 1
    );
    assert!(
        !tokens(&store.snapshot().await.unwrap())
            .iter()
            .any(|(_, t)| t == "busy")
    );

    // Deleting an app takes its certificates and their challenges along;
    // an app made again under the name starts with none.
    let (doomed, _) = store
        .add_certificate(&a, &app("shop"), acme(&["shop.certs.example"], 1), &LIMITS)
        .await
        .unwrap();
    store
        .set_acme_challenges(doomed.id, &[challenge("shop.certs.example", "doomed")])
        .await
        .unwrap();
    let kept_of_b = store.list_certificates(&b, &app("shop")).await.unwrap();
    store.delete_app(&a, &app("shop")).await.unwrap();
    for id in [1, 4, 5, doomed.id] {
        not_found(
            store.get_certificate(id).await,
            "the app's",
            &format!("certificate {id}"),
        );
    }
    assert!(
        !store
            .all_certificates()
            .await
            .unwrap()
            .iter()
            .any(|c| c.tenant == a && c.app == app("shop"))
    );
    let snapshot = store.snapshot().await.unwrap();
    assert!(
        !snapshot
            .certificates
            .iter()
            .any(|c| c.tenant == a && c.app == app("shop"))
    );
    assert!(!tokens(&snapshot).iter().any(|(_, t)| t == "doomed"));
    assert_eq!(
        store.list_certificates(&b, &app("shop")).await.unwrap(),
        kept_of_b,
        "the other tenant's app of the same name keeps its certificates"
    );
    store
        .create_app(
            &a,
            &app("shop"),
            &[host("shop.certs.example")],
            &AppLimits::default(),
            None,
        )
        .await
        .unwrap();
    assert!(
        store
            .list_certificates(&a, &app("shop"))
            .await
            .unwrap()
            .is_empty()
    );
    let (next, _) = store
        .add_certificate(
            &a,
            &app("shop"),
            upload(&["shop.certs.example"], 9),
            &LIMITS,
        )
        .await
        .unwrap();
    assert!(next.id > doomed.id, "ids are never reused");
}

/// ACME accounts: insert if absent (the stored one wins), replace on
/// demand, listed by directory.
async fn accounts<M: MetaStore>(store: &M) {
    let dir = "https://acme.example/directory";
    assert_eq!(store.acme_account(dir).await.unwrap(), None);
    let first: Vec<u8> = vec![0, 1, 2, 255];
    let second: Vec<u8> = vec![9, 8, 7];
    assert_eq!(
        store.put_acme_account(dir, &first, false).await.unwrap(),
        first
    );
    assert_eq!(
        store.put_acme_account(dir, &second, false).await.unwrap(),
        first,
        "an account there already is kept and returned"
    );
    assert_eq!(store.acme_account(dir).await.unwrap(), Some(first.clone()));
    assert_eq!(
        store.put_acme_account(dir, &second, true).await.unwrap(),
        second,
        "replace overwrites"
    );
    assert_eq!(store.acme_account(dir).await.unwrap(), Some(second.clone()));

    // Two replicas registering at once end with one account.
    let other = "https://another.example/dir";
    let (x, y) = tokio::join!(
        store.put_acme_account(other, b"replica-x", false),
        store.put_acme_account(other, b"replica-y", false),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y, "both use the account stored first");
    assert_eq!(store.acme_account(other).await.unwrap(), Some(x.clone()));

    let listed: Vec<(String, Vec<u8>)> = store
        .acme_accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|(d, _)| d == dir || d == other)
        .collect();
    assert_eq!(
        listed,
        vec![(dir.to_string(), second), (other.to_string(), x)],
        "by directory"
    );
}

/// What `dump_restore` adds to the filled store: HTTPS options, a
/// certificate served, one pending with challenges (under a lease, a
/// renewal forced), one deleted (so the id counter is ahead of the ids
/// kept), an ACME account. Returns the counter.
pub(super) async fn fill_for_dump<M: MetaStore>(store: &M) -> u64 {
    let t = tenant("durable");
    store
        .set_app_https(
            &t,
            &app("web"),
            &AppHttps {
                redirect: true,
                hsts: Some("max-age=60".into()),
            },
        )
        .await
        .unwrap();
    store
        .add_certificate(&t, &app("web"), upload(&["durable.test"], 10), &LIMITS)
        .await
        .unwrap();
    let (pending, _) = store
        .add_certificate(
            &t,
            &app("proxy"),
            acme(&["proxy.durable.test"], 77),
            &LIMITS,
        )
        .await
        .unwrap();
    store
        .set_acme_challenges(
            pending.id,
            &[
                challenge("proxy.durable.test", "z-token"),
                challenge("proxy.durable.test", "a-token"),
            ],
        )
        .await
        .unwrap();
    let lease = store
        .claim_certificate(pending.id, 77, 100)
        .await
        .unwrap()
        .unwrap();
    store
        .record_certificate_failure(&lease, "first try failed", 88)
        .await
        .unwrap();
    store
        .set_acme_challenges(
            pending.id,
            &[
                challenge("proxy.durable.test", "z-token"),
                challenge("proxy.durable.test", "a-token"),
            ],
        )
        .await
        .unwrap();
    // Under a lease, with a renewal forced meanwhile.
    store
        .claim_certificate(pending.id, 88, 500)
        .await
        .unwrap()
        .unwrap();
    store
        .schedule_certificate(&t, &app("proxy"), pending.id, 90)
        .await
        .unwrap();
    let (gone, _) = store
        .add_certificate(&t, &app("web"), upload(&["durable.test"], 11), &LIMITS)
        .await
        .unwrap();
    store
        .delete_certificate(&t, &app("web"), gone.id)
        .await
        .unwrap();
    store
        .put_acme_account("https://acme.durable.test/dir", &[0, 255, 7], false)
        .await
        .unwrap();
    gone.id
}

/// What `dump_restore` checks on the restored store `b` against `a`.
pub(super) async fn check_restored<A: MetaStore, B: MetaStore>(a: &A, b: &B, counter: u64) {
    let t = tenant("durable");
    assert_eq!(
        b.get_app(&t, &app("web")).await.unwrap().https,
        a.get_app(&t, &app("web")).await.unwrap().https
    );
    let (from, to): (Vec<CertRecord>, Vec<CertRecord>) = (
        a.all_certificates().await.unwrap(),
        b.all_certificates().await.unwrap(),
    );
    let pending = from.iter().find(|c| c.source == CertSource::Acme).unwrap();
    assert_eq!(
        (
            pending.lease_until_unix,
            pending.renew_requested,
            pending.next_attempt_unix
        ),
        (Some(500), true, Some(90))
    );
    let unleased: Vec<CertRecord> = from
        .iter()
        .map(|c| CertRecord {
            lease_until_unix: None,
            ..c.clone()
        })
        .collect();
    assert_eq!(
        to, unleased,
        "certificates, sealed keys byte for byte, a forced renewal too; not the lease"
    );
    assert_eq!(to.len(), 2);
    assert_eq!(
        a.claim_certificate(pending.id, 90, 95).await.unwrap(),
        None,
        "held where it was taken"
    );
    assert!(
        b.claim_certificate(pending.id, 90, 95)
            .await
            .unwrap()
            .is_some(),
        "free where it was restored"
    );
    assert_eq!(
        b.acme_accounts().await.unwrap(),
        vec![("https://acme.durable.test/dir".to_string(), vec![0, 255, 7])]
    );
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(
        tokens(&snapshot),
        vec![
            ("proxy.durable.test".to_string(), "a-token".to_string()),
            ("proxy.durable.test".into(), "z-token".into()),
        ]
    );
    // Ids continue after the last handed out, not the last kept.
    let (next, _) = b
        .add_certificate(&t, &app("web"), upload(&["durable.test"], 12), &LIMITS)
        .await
        .unwrap();
    assert_eq!(next.id, counter + 1, "certificate ids continue");
}
