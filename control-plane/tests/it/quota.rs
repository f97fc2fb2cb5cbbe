//! Per-tenant storage quotas (set by operators, enforced on upload, shown
//! with the usage) and garbage collection of blobs no version references.

use std::path::PathBuf;
use std::time::Duration;

use edge_common::api::{Deploy, SetTenantQuota, TenantQuota, Uploaded};
use edge_cp::api::ApiSettings;
use edge_fixtures::{ECHO, ENV, HELLO};
use serde_json::{Value, json};

use crate::common::{Client, TestCp, answer, assert_error, edgectl, eventually};

async fn quota(client: &Client, tenant: &str) -> TenantQuota {
    client.get(&format!("/v1/tenants/{tenant}/quota")).await
}

async fn set_quota(client: &Client, tenant: &str, storage_bytes: Option<u64>) -> (u16, Value) {
    client
        .send(
            "PUT",
            &format!("/v1/tenants/{tenant}/quota"),
            &SetTenantQuota { storage_bytes },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_storage_quota_are_refused_until_an_operator_raises_it() {
    let hello = std::fs::read(HELLO).unwrap();
    let size = hello.len() as u64;
    // Room for one copy of the component, not two.
    let default_quota = size + size / 2;
    let cp = TestCp::start_with(ApiSettings {
        storage_quota_bytes: default_quota,
        ..ApiSettings::default()
    })
    .await;
    let admin = cp.admin();
    let acme = cp.new_tenant("acme").await;
    let other = cp.new_tenant("other").await;
    acme.create_app("web", &["web.test"]).await;
    acme.create_app("api", &["api.test"]).await;
    assert_eq!(
        quota(&acme, "acme").await,
        TenantQuota {
            tenant: "acme".parse().unwrap(),
            storage_bytes: default_quota,
            custom: false,
            used_storage_bytes: 0,
        }
    );

    let (status, body) = acme.upload("web", hello.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(quota(&acme, "acme").await.used_storage_bytes, size);

    // Over the quota: refused from the declared length, naming the quota
    // and the usage; the same bytes under another app count again.
    let (status, body) = acme.upload("api", hello.clone()).await;
    let message = assert_error(status, &body, 413, "storage-quota-exceeded").message;
    assert!(
        message.contains(&default_quota.to_string()) && message.contains(&size.to_string()),
        "{message}"
    );
    // And from the real size when no length is declared.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        hello.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/apps/web/versions", cp.url()))
        .bearer_auth(&acme.token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_error(413, &body, 413, "storage-quota-exceeded");
    assert_eq!(quota(&acme, "acme").await.used_storage_bytes, size);

    // Only an operator changes a quota; a tenant sees only its own.
    let (status, body) = set_quota(&acme, "acme", Some(1 << 40)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = acme.call("GET", "/v1/tenants/other/quota", None).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = set_quota(&admin, "nobody", Some(1)).await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = admin
        .call("PUT", "/v1/tenants/acme/quota", Some(json!({})))
        .await;
    assert_error(status, &body, 400, "invalid-json");
    let (status, body) = set_quota(&admin, "acme", Some(u64::MAX)).await;
    assert_error(status, &body, 400, "invalid-quota");

    let raised: TenantQuota = answer(set_quota(&admin, "acme", Some(3 * size)).await, 200);
    assert_eq!(
        (
            raised.storage_bytes,
            raised.custom,
            raised.used_storage_bytes
        ),
        (3 * size, true, size)
    );
    let (status, body) = acme.upload("api", hello.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(quota(&admin, "acme").await.used_storage_bytes, 2 * size);
    assert_eq!(
        quota(&other, "other").await,
        TenantQuota {
            tenant: "other".parse().unwrap(),
            storage_bytes: default_quota,
            custom: false,
            used_storage_bytes: 0,
        },
        "another tenant keeps the default"
    );

    // Deleting versions and apps gives the bytes back.
    let (status, body) = acme.call("DELETE", "/v1/apps/web/versions/1", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(quota(&acme, "acme").await.used_storage_bytes, size);
    let (status, _) = acme.call("DELETE", "/v1/apps/api", None).await;
    assert_eq!(status, 200);
    assert_eq!(quota(&acme, "acme").await.used_storage_bytes, 0);
    let reset: TenantQuota = answer(set_quota(&admin, "acme", None).await, 200);
    assert!(!reset.custom, "{reset:?}");
    assert_eq!(reset.storage_bytes, default_quota, "{reset:?}");
}

/// Two uploads of one tenant at once, each fitting the quota alone but
/// not together: one is stored, the other refused, whichever check
/// catches it (the quota is checked again when the version is recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_cannot_overshoot_the_quota() {
    let hello = std::fs::read(HELLO).unwrap();
    let size = hello.len() as u64;
    let cp = TestCp::start_with(ApiSettings {
        storage_quota_bytes: size + size / 2,
        ..ApiSettings::default()
    })
    .await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let (a, b) = tokio::join!(
        acme.upload("web", hello.clone()),
        acme.upload("web", hello.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 413], "{a:?} {b:?}");
    assert_eq!(quota(&acme, "acme").await.used_storage_bytes, size);
}

/// The blob file of a digest in the control plane's data directory.
fn blob_path(cp: &TestCp, sha256: &str) -> PathBuf {
    cp.dir.path().join("blobs").join(&sha256[..2]).join(sha256)
}

/// The blobs of an upload: its source and its artifact.
fn blobs_of(cp: &TestCp, upload: &Uploaded) -> [PathBuf; 2] {
    [
        blob_path(cp, &upload.source_sha256),
        blob_path(cp, &upload.artifact.sha256),
    ]
}

async fn upload(client: &Client, app: &str, wasm: &str) -> Uploaded {
    answer(client.upload(app, std::fs::read(wasm).unwrap()).await, 201)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_no_version_references_are_deleted() {
    // A short grace, and passes every second, so the test sees them.
    let cp = TestCp::start_with(ApiSettings {
        blob_gc_grace: Duration::from_secs(2),
        blob_gc_interval: Duration::from_secs(1),
        ..ApiSettings::default()
    })
    .await;
    let acme = cp.new_tenant("acme").await;
    for app in ["one", "two", "three"] {
        acme.create_app(app, &[&format!("{app}.test")]).await;
    }
    // HELLO under two apps (one blob each for source and artifact), and
    // active in `one`; ECHO a second version of `one`; ENV only in `three`.
    let hello = upload(&acme, "one", HELLO).await;
    let shared = upload(&acme, "two", HELLO).await;
    assert_eq!(blobs_of(&cp, &hello), blobs_of(&cp, &shared));
    let (status, body) = acme
        .send("POST", "/v1/apps/one/deploy", &Deploy { version: 1 })
        .await;
    assert_eq!(status, 200, "{body}");
    let echo = upload(&acme, "one", ECHO).await;
    let env = upload(&acme, "three", ENV).await;
    for path in [&hello, &echo, &env]
        .into_iter()
        .flat_map(|u| blobs_of(&cp, u))
    {
        assert!(path.exists(), "{} stored", path.display());
    }

    let (status, body) = acme.call("DELETE", "/v1/apps/one/versions/2", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = acme.call("DELETE", "/v1/apps/two", None).await;
    assert_eq!(status, 200);
    let (status, _) = acme.call("DELETE", "/v1/apps/three", None).await;
    assert_eq!(status, 200);
    let garbage: Vec<PathBuf> = [&echo, &env]
        .into_iter()
        .flat_map(|u| blobs_of(&cp, u))
        .collect();
    eventually("the deleted versions' blobs to be deleted", || async {
        garbage.iter().all(|p| !p.exists())
    })
    .await;
    // The active version's blobs stay, though app `two` had them too.
    for path in blobs_of(&cp, &hello) {
        assert!(path.exists(), "{} is still referenced", path.display());
    }
    let artifact = &hello.artifact.sha256;
    let (status, _) = cp
        .admin()
        .call("GET", &format!("/v1/artifacts/{artifact}"), None)
        .await;
    assert_eq!(status, 200, "nodes can still fetch the active artifact");

    // Uploaded again, a collected component is compiled and stored anew.
    let again = upload(&acme, "one", ECHO).await;
    assert!(again.compiled, "{again:?}");
    for path in blobs_of(&cp, &again) {
        assert!(path.exists(), "{} stored again", path.display());
    }

    // Deleting the last app takes the rest.
    let (status, _) = acme.call("DELETE", "/v1/apps/one", None).await;
    assert_eq!(status, 200);
    let rest: Vec<PathBuf> = [&hello, &again]
        .into_iter()
        .flat_map(|u| blobs_of(&cp, u))
        .collect();
    eventually("every blob to be deleted", || async {
        rest.iter().all(|p| !p.exists())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgectl_shows_and_sets_quotas() {
    let cp = TestCp::start().await;
    cp.new_tenant("acme").await;
    let url = cp.url();
    let admin = cp.token(edge_cp::auth::Role::Admin, "admin", None);
    let tenant = cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"));

    let (ok, out, err) = edgectl(&url, &tenant, &["tenants", "quota", "acme"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("acme: 0 B of 1.0 GiB stored (0 of 1073741824 bytes; default quota)"),
        "{out}"
    );
    let (ok, _, err) = edgectl(
        &url,
        &tenant,
        &["tenants", "quota", "acme", "--storage-bytes", "5000000000"],
    )
    .await;
    assert!(!ok && err.contains("403 forbidden"), "{err}");
    let (ok, out, err) = edgectl(
        &url,
        &admin,
        &["tenants", "quota", "acme", "--storage-bytes", "5000000000"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("of 4.7 GiB stored (0 of 5000000000 bytes; own quota)"),
        "{out}"
    );
    let (ok, out, err) = edgectl(&url, &admin, &["tenants", "quota", "acme", "--default"]).await;
    assert!(ok && out.contains("default quota"), "{out}{err}");
    let (ok, _, err) = edgectl(&url, &admin, &["tenants", "quota", "nobody"]).await;
    assert!(!ok && err.contains("404 not-found"), "{err}");
}
