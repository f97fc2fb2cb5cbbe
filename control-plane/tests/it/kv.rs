//! The key-value store's control-plane API (issue 16) on SQLite and on
//! PostgreSQL: stores, links and entries for tenants, every limit and
//! error code, tenant isolation, the node endpoints (signed writes, the
//! change stream's long poll, resync after pruning, snapshot pages), and
//! `edgectl kv`. Real control planes on 127.0.0.1, real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use edge_common::api::SetTenantLimits;
use edge_common::kv::{
    KvBatch, KvKeyList, KvLinkList, KvOp, KvOpResult, KvStore, KvStoreList, KvValue,
    KvWriteRequest, KvWriteResult, MAX_WRITE_BODY_BYTES, NewKvStore, SignedBody,
};
use edge_common::signing::VerifyingKey;
use edge_common::sync::{SignedSnapshot, SyncKey};
use edge_cp::api::ApiSettings;
use edge_cp::auth::Role;
use edge_cp::server::ServerHandle;
use edge_cp::store::location::MetaLocation;
use edge_cp::{ControlPlane, CpConfig};
use serde_json::{Value, json};

use crate::common::{
    Backend, Client, answer, assert_error, edgectl, eventually, init_logging, on_both_backends,
};

/// An in-process control plane on either backend, with its settings.
struct Cp {
    dir: tempfile::TempDir,
    handle: ServerHandle,
}

impl Cp {
    async fn start(backend: Backend, settings: ApiSettings) -> Self {
        let metadata = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(MetaLocation::Postgres(crate::pg::new_database().await)),
        };
        Self::start_on(metadata, settings).await
    }

    /// `metadata` none: SQLite in its own directory.
    async fn start_on(metadata: Option<MetaLocation>, settings: ApiSettings) -> Self {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let mut config = CpConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        if let Some(metadata) = metadata {
            config.metadata = metadata;
        }
        config.api = settings;
        config.admin = Some("127.0.0.1:0".parse().unwrap());
        let handle = ControlPlane::start(config).await.unwrap();
        Self { dir, handle }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    async fn metrics(&self) -> String {
        let admin = self.handle.admin_addr.unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn token(&self, role: Role, sub: &str, tenant: Option<&str>) -> String {
        crate::common::issue_token(self.dir.path(), role, sub, tenant)
    }

    fn admin(&self) -> Client {
        Client::at(&self.url(), self.token(Role::Admin, "admin", None))
    }

    fn node(&self) -> Client {
        Client::at(&self.url(), self.token(Role::Node, "node-a", None))
    }

    fn tenant(&self, tenant: &str) -> Client {
        Client::at(&self.url(), self.token(Role::Tenant, tenant, Some(tenant)))
    }

    async fn new_tenant(&self, tenant: &str) -> Client {
        crate::common::create_tenant(&self.admin(), tenant).await;
        self.tenant(tenant)
    }

    /// The sync key, as a node pins it.
    async fn key(&self) -> VerifyingKey {
        let key: SyncKey = self.node().get("/v1/sync/key").await;
        VerifyingKey::from_hex(&key.public_key).unwrap()
    }
}

fn quick_prune() -> ApiSettings {
    ApiSettings {
        kv_tombstone_retention: Duration::ZERO,
        kv_prune_every: Duration::from_millis(100),
        ..ApiSettings::default()
    }
}

async fn create_store(tenant: &Client, name: &str) -> KvStore {
    answer(
        tenant
            .send(
                "POST",
                "/v1/kv",
                &NewKvStore {
                    name: name.to_string(),
                },
            )
            .await,
        201,
    )
}

/// A request with a raw body, answered with raw bytes and the content
/// type.
async fn raw(client: &Client, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(method.parse().unwrap(), format!("{}{path}", client.base()))
        .bearer_auth(&client.token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, response.bytes().await.unwrap().to_vec(), kind)
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

async fn put(client: &Client, store: &str, key: &str, value: &[u8]) -> (u16, String) {
    let (status, body, _) = raw(
        client,
        "PUT",
        &format!("/v1/kv/{store}/entry?key={}", enc(key)),
        value.to_vec(),
    )
    .await;
    (status, error_code(&body))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn write_request(tenant: &str, app: &str, store: &str, ops: Vec<KvOp>) -> KvWriteRequest {
    KvWriteRequest {
        nonce: format!("nonce-{}", rand_suffix()),
        tenant: tenant.parse().unwrap(),
        app: app.parse().unwrap(),
        store: store.to_string(),
        ops,
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn set(key: &str, value: &[u8]) -> KvOp {
    KvOp::Set {
        key: key.to_string(),
        value: KvValue(value.to_vec()),
    }
}

/// A node's write, verified with the sync key; the nonce must be echoed.
async fn node_write(cp: &Cp, request: &KvWriteRequest) -> Result<KvWriteResult, (u16, Value)> {
    let (status, body) = cp.node().send("POST", "/v1/kv/write", request).await;
    if status != 200 {
        return Err((status, body));
    }
    let signed: SignedBody = serde_json::from_value(body).unwrap();
    let result: KvWriteResult = signed.verify(&cp.key().await).unwrap();
    assert_eq!(result.nonce, request.nonce);
    Ok(result)
}

/// `GET /v1/kv/sync?{query}`, verified; a `since` without an `epoch`
/// gets the control plane's (as a node would send the one it holds).
async fn sync(cp: &Cp, query: &str) -> Result<KvBatch, (u16, Value)> {
    let query = if query.contains("since=") && !query.contains("epoch=") {
        format!("{query}&epoch={}", epoch(cp).await)
    } else {
        query.to_string()
    };
    sync_raw(cp, &query).await
}

async fn epoch(cp: &Cp) -> String {
    match sync_raw(cp, "snapshot=0").await.unwrap() {
        KvBatch::Snapshot { epoch, .. } => epoch,
        other => panic!("not a snapshot page: {other:?}"),
    }
}

/// Waits until `n` long polls wait on the change stream.
async fn waiters(cp: &Cp, n: f64) {
    eventually(&format!("{n} long polls waiting"), || async {
        crate::common::sample(&cp.metrics().await, "edge_cp_kv_sync_waiters") == Some(n)
    })
    .await;
}

async fn sync_raw(cp: &Cp, query: &str) -> Result<KvBatch, (u16, Value)> {
    let (status, body) = cp
        .node()
        .call("GET", &format!("/v1/kv/sync?{query}"), None)
        .await;
    if status != 200 {
        return Err((status, body));
    }
    let signed: SignedBody = serde_json::from_value(body).unwrap();
    Ok(signed.verify(&cp.key().await).unwrap())
}

fn changes_of(batch: KvBatch) -> (u64, Vec<edge_common::kv::KvChange>) {
    match batch {
        KvBatch::Changes { head, changes, .. } => (head, changes),
        other => panic!("not changes: {other:?}"),
    }
}

/// The app as the signed snapshot shows it.
async fn snapshot_app(cp: &Cp, app: &str) -> edge_common::sync::SnapshotApp {
    let (status, body) = cp.node().call("GET", "/v1/sync?since=0", None).await;
    assert_eq!(status, 200, "{body}");
    let signed: SignedSnapshot = serde_json::from_value(body).unwrap();
    let snapshot = signed.verify(&cp.key().await).unwrap();
    snapshot
        .apps
        .into_iter()
        .find(|a| a.name.as_str() == app)
        .unwrap()
}

/// A node's long poll after `head`, running in its own task: the batch
/// it is answered with, verified with the control plane's sync key.
async fn long_poll(cp: &Cp, head: u64, epoch: &str) -> tokio::task::JoinHandle<KvBatch> {
    let node = cp.node();
    let key = cp.key().await;
    let path = format!("/v1/kv/sync?since={head}&epoch={epoch}&wait=50s");
    tokio::spawn(async move {
        let (status, body) = node.call("GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        let signed: SignedBody = serde_json::from_value(body).unwrap();
        signed.verify::<KvBatch>(&key).unwrap()
    })
}

on_both_backends!(
    workers = 2;
    stores_links_and_entries_round_trip,
    limits_answer_with_their_codes,
    node_writes_are_signed_atomic_and_checked,
    the_change_stream_wakes_resyncs_and_pages,
    tenants_cannot_reach_each_others_stores,
);

async fn stores_links_and_entries_round_trip(backend: Backend) {
    let cp = Cp::start(backend, ApiSettings::default()).await;
    let acme = cp.new_tenant("acme").await;
    let store = create_store(&acme, "sessions").await;
    assert_eq!((store.keys, store.bytes), (0, 0));

    let (status, body) = acme
        .send(
            "POST",
            "/v1/kv",
            &NewKvStore {
                name: "sessions".into(),
            },
        )
        .await;
    assert_error(status, &body, 409, "kv-store-exists");
    for bad in ["Bad", "sync", "write", ""] {
        let (status, body) = acme
            .send("POST", "/v1/kv", &NewKvStore { name: bad.into() })
            .await;
        assert_error(status, &body, 400, "kv-store-name-invalid");
    }

    // Link to a deployed app: the snapshot lists the link (name and id)
    // and the tenant's limits; the link bumped the revision.
    acme.create_app("web", &["web.test"]).await;
    acme.deploy("web", edge_fixtures::HELLO).await;
    assert!(snapshot_app(&cp, "web").await.kv.is_empty());
    let links: KvLinkList = answer(
        acme.call("PUT", "/v1/apps/web/kv/sessions", None).await,
        200,
    );
    assert_eq!(links.stores, vec!["sessions".to_string()]);
    let app = snapshot_app(&cp, "web").await;
    assert_eq!(app.kv.len(), 1);
    assert_eq!(app.kv[0].name, "sessions");
    let listed: KvStoreList = acme.get("/v1/kv").await;
    let id_shown = &listed.stores[0];
    assert_eq!(id_shown.apps, vec!["web".parse().unwrap()]);
    assert_eq!(app.kv_limits, edge_common::kv::KvLimits::DEFAULT);
    let (status, body) = acme.call("PUT", "/v1/apps/nope/kv/sessions", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = acme.call("PUT", "/v1/apps/web/kv/nope", None).await;
    assert_error(status, &body, 404, "kv-store-not-found");

    // Entries: raw bytes in and out, byte for byte.
    let binary: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\n']).collect();
    assert_eq!(put(&acme, "sessions", "a/b c.d", &binary).await.0, 204);
    let (status, got, kind) = raw(
        &acme,
        "GET",
        &format!("/v1/kv/sessions/entry?key={}", enc("a/b c.d")),
        Vec::new(),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "application/octet-stream"));
    assert_eq!(got, binary);
    let (status, body, _) = raw(&acme, "GET", "/v1/kv/sessions/entry?key=missing", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "kv-key-not-found")
    );
    let (status, body, _) = raw(&acme, "GET", "/v1/kv/sessions/entry", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "kv-key-invalid")
    );
    let (status, body, _) = raw(&acme, "GET", "/v1/kv/sessions/entry?key=a%0Ab", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "kv-key-invalid")
    );

    // Keys: by prefix, in byte order, paged by cursor.
    for key in ["user/1", "user/2", "user/3", "users", "z"] {
        assert_eq!(put(&acme, "sessions", key, b"v").await.0, 204);
    }
    let page: KvKeyList = acme
        .get("/v1/kv/sessions/keys?prefix=user%2F&limit=2")
        .await;
    assert_eq!(page.keys, vec!["user/1", "user/2"]);
    let cursor = page.cursor.unwrap();
    let page: KvKeyList = acme
        .get(&format!(
            "/v1/kv/sessions/keys?prefix=user%2F&limit=2&cursor={}",
            enc(&cursor)
        ))
        .await;
    assert_eq!(page.keys, vec!["user/3"]);
    assert_eq!(page.cursor, None);
    let all: KvKeyList = acme.get("/v1/kv/sessions/keys").await;
    assert_eq!(
        all.keys,
        vec!["a/b c.d", "user/1", "user/2", "user/3", "users", "z"]
    );
    let (status, body) = acme.call("GET", "/v1/kv/sessions/keys?limit=0", None).await;
    assert_error(status, &body, 400, "kv-invalid");

    // Counters follow every write.
    let listed: KvStoreList = acme.get("/v1/kv").await;
    assert_eq!(listed.stores[0].keys, 6);
    let (status, _, _) = raw(&acme, "DELETE", "/v1/kv/sessions/entry?key=z", vec![]).await;
    assert_eq!(status, 204);
    let listed: KvStoreList = acme.get("/v1/kv").await;
    assert_eq!(listed.stores[0].keys, 5);
    assert_eq!(
        listed.stores[0].bytes,
        ("a/b c.d".len() + binary.len() + 3 * "user/1v".len() + "usersv".len()) as u64
    );

    // A linked store is not dropped; unlinked, it goes with its data.
    let (status, body) = acme.call("DELETE", "/v1/kv/sessions", None).await;
    assert_error(status, &body, 409, "kv-store-linked");
    let links: KvLinkList = answer(
        acme.call("DELETE", "/v1/apps/web/kv/sessions", None).await,
        200,
    );
    assert!(links.stores.is_empty());
    assert!(snapshot_app(&cp, "web").await.kv.is_empty());
    let (status, body) = acme.call("DELETE", "/v1/kv/sessions", None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body, _) = raw(&acme, "GET", "/v1/kv/sessions/entry?key=z", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "kv-store-not-found")
    );
    let (status, body) = acme.call("DELETE", "/v1/kv/sessions", None).await;
    assert_error(status, &body, 404, "kv-store-not-found");

    // Deleting an app deletes its links.
    create_store(&acme, "again").await;
    answer::<KvLinkList>(acme.call("PUT", "/v1/apps/web/kv/again", None).await, 200);
    let (status, body) = acme.call("DELETE", "/v1/apps/web", None).await;
    assert!((200..300).contains(&status), "{body}");
    let (status, body) = acme.call("DELETE", "/v1/kv/again", None).await;
    assert_eq!(status, 204, "{body}");
}

async fn limits_answer_with_their_codes(backend: Backend) {
    let cp = Cp::start(backend, ApiSettings::default()).await;
    let acme = cp.new_tenant("acme").await;
    let admin = cp.admin();

    // Validated against the ceiling, naming the field; a tenant cannot set
    // its own.
    let (status, body) = admin
        .call(
            "PUT",
            "/v1/tenants/acme/limits",
            Some(
                json!({"max_outbound_destinations": null, "max_subrequests": null,
                        "kv_max_value_bytes": 9 << 20}),
            ),
        )
        .await;
    let error = assert_error(status, &body, 400, "invalid-limits");
    assert!(error.message.contains("kv_max_value_bytes"), "{body}");
    let (status, body) = admin
        .call(
            "PUT",
            "/v1/tenants/acme/limits",
            Some(
                json!({"max_outbound_destinations": null, "max_subrequests": null,
                        "kv_max_stores": 0}),
            ),
        )
        .await;
    assert_error(status, &body, 400, "invalid-limits");
    let limits = SetTenantLimits {
        kv_max_key_bytes: Some(8),
        kv_max_value_bytes: Some(16),
        kv_max_keys_per_store: Some(3),
        kv_max_tenant_bytes: Some(60),
        kv_max_ops_per_request: Some(4),
        kv_max_stores: Some(2),
        ..SetTenantLimits::default()
    };
    let (status, body) = acme.send("PUT", "/v1/tenants/acme/limits", &limits).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = admin.send("PUT", "/v1/tenants/acme/limits", &limits).await;
    assert_eq!(status, 200, "{body}");
    let shown: Value = acme.get("/v1/tenants/acme/limits").await;
    assert_eq!(shown["kv"]["max_stores"], 2, "{shown}");

    create_store(&acme, "one").await;
    create_store(&acme, "two").await;
    let (status, body) = acme
        .send(
            "POST",
            "/v1/kv",
            &NewKvStore {
                name: "three".into(),
            },
        )
        .await;
    assert_error(status, &body, 409, "kv-store-limit");

    assert_eq!(
        put(&acme, "one", "k", &[7; 17]).await,
        (413, "kv-value-too-large".into())
    );
    assert_eq!(
        put(&acme, "one", "123456789", b"v").await,
        (400, "kv-key-too-long".into())
    );
    for key in ["a", "b", "c"] {
        assert_eq!(put(&acme, "one", key, b"0123456789").await.0, 204);
    }
    assert_eq!(
        put(&acme, "one", "d", b"v").await,
        (409, "kv-keys-limit".into())
    );
    // Replacing a value is no new key.
    assert_eq!(put(&acme, "one", "a", b"x").await.0, 204);
    // 3 keys of 1 + 10, 1 + 1: 24 bytes; store two may add 36 more.
    assert_eq!(put(&acme, "two", "big", &[1; 16]).await.0, 204);
    assert_eq!(
        put(&acme, "two", "big2", &[1; 16]).await,
        (409, "kv-bytes-limit".into())
    );

    // A node's write: ops over the tenant's limit, all refused.
    acme.create_app("web", &["web.test"]).await;
    answer::<KvLinkList>(acme.call("PUT", "/v1/apps/web/kv/two", None).await, 200);
    let ops = (0..5)
        .map(|i| KvOp::Delete {
            key: format!("k{i}"),
        })
        .collect();
    let (status, body) = node_write(&cp, &write_request("acme", "web", "two", ops))
        .await
        .unwrap_err();
    assert_error(status, &body, 429, "kv-ops-limit");

    // Every write is counted by its result, a fixed label set.
    let page = cp.metrics().await;
    for (result, at_least) in [
        ("ok", 5.0),
        ("kv-keys-limit", 1.0),
        ("kv-bytes-limit", 1.0),
        ("kv-ops-limit", 1.0),
    ] {
        let n = crate::common::sample(
            &page,
            &format!("edge_cp_kv_writes_total{{result=\"{result}\"}}"),
        );
        assert!(n.is_some_and(|n| n >= at_least), "{result}: {n:?}");
    }
    assert!(
        crate::common::sample(&page, "edge_cp_kv_write_seconds_count").is_some_and(|n| n >= 8.0)
    );
    assert!(crate::common::sample(&page, "edge_cp_kv_seq").is_some_and(|n| n >= 5.0));
    assert_eq!(
        crate::common::sample(&page, "edge_cp_kv_sync_waiters"),
        Some(0.0)
    );

    // The admin lowers the key limit below keys already held: they can no
    // longer be written, but stay readable and deletable.
    let lowered = SetTenantLimits {
        kv_max_key_bytes: Some(2),
        ..limits
    };
    let (status, body) = admin.send("PUT", "/v1/tenants/acme/limits", &lowered).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        put(&acme, "two", "big", b"v").await,
        (400, "kv-key-too-long".into())
    );
    let (status, got, _) = raw(&acme, "GET", "/v1/kv/two/entry?key=big", vec![]).await;
    assert_eq!((status, got), (200, vec![1; 16]));
    let (status, _, _) = raw(&acme, "DELETE", "/v1/kv/two/entry?key=big", vec![]).await;
    assert_eq!(status, 204);
    let (status, body, _) = raw(&acme, "GET", "/v1/kv/two/entry?key=big", vec![]).await;
    assert_eq!(
        (status, error_code(&body)),
        (404, "kv-key-not-found".into())
    );
    let ops = vec![KvOp::Delete { key: "abc".into() }];
    node_write(&cp, &write_request("acme", "web", "two", ops))
        .await
        .unwrap();
}

async fn node_writes_are_signed_atomic_and_checked(backend: Backend) {
    let cp = Cp::start(backend, ApiSettings::default()).await;
    let acme = cp.new_tenant("acme").await;
    let store = create_store(&acme, "data").await;
    acme.create_app("web", &["web.test"]).await;
    acme.create_app("other", &["other.test"]).await;
    answer::<KvLinkList>(acme.call("PUT", "/v1/apps/web/kv/data", None).await, 200);

    // Tenant (and admin) tokens are refused on the node endpoints.
    let request = write_request("acme", "web", "data", vec![set("k", b"v")]);
    for client in [acme.clone(), cp.admin()] {
        let (status, body) = client.send("POST", "/v1/kv/write", &request).await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = client.call("GET", "/v1/kv/sync?since=0", None).await;
        assert_eq!(status, 403, "{body}");
    }

    let revision_before: Value = cp.node().call("GET", "/v1/sync?since=0", None).await.1;
    let result = node_write(
        &cp,
        &write_request(
            "acme",
            "web",
            "data",
            vec![
                set("k", b"v"),
                KvOp::Increment {
                    key: "n".into(),
                    delta: 41,
                },
                KvOp::Increment {
                    key: "n".into(),
                    delta: 1,
                },
                KvOp::CompareAndSwap {
                    key: "k".into(),
                    expected: Some(KvValue(b"v".to_vec())),
                    value: KvValue(b"w".to_vec()),
                },
                KvOp::CompareAndSwap {
                    key: "k".into(),
                    expected: Some(KvValue(b"v".to_vec())),
                    value: KvValue(b"lost".to_vec()),
                },
                KvOp::CompareAndSwap {
                    key: "new".into(),
                    expected: None,
                    value: KvValue(b"first".to_vec()),
                },
                KvOp::Delete {
                    key: "absent".into(),
                },
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        result.results,
        vec![
            KvOpResult::Done,
            KvOpResult::Incremented { value: 41 },
            KvOpResult::Incremented { value: 42 },
            KvOpResult::CompareAndSwap { swapped: true },
            KvOpResult::CompareAndSwap { swapped: false },
            KvOpResult::CompareAndSwap { swapped: true },
            KvOpResult::Done,
        ]
    );
    // One change per key that changed, seqs increasing, on the store's id.
    let keys: Vec<_> = result
        .changes
        .iter()
        .map(|c| c.key.clone().unwrap())
        .collect();
    assert_eq!(keys, vec!["k", "n", "new"]);
    assert!(result.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    let id = result.changes[0].store.clone();
    assert_eq!(id.len(), 32, "a random id, not the name: {id}");
    assert!(result.changes.iter().all(|c| c.store == id));
    let _ = store;
    assert_eq!(result.changes[0].value, Some(KvValue(b"w".to_vec())));
    assert_eq!(result.changes[1].value, Some(KvValue(b"42".to_vec())));
    // A data write does not change the config revision.
    let revision_after: Value = cp.node().call("GET", "/v1/sync?since=0", None).await.1;
    let rev = |v: &Value| -> u64 {
        let signed: SignedSnapshot = serde_json::from_value(v.clone()).unwrap();
        let payload: Value = serde_json::from_str(&signed.payload).unwrap();
        payload["revision"].as_u64().unwrap()
    };
    assert_eq!(rev(&revision_before), rev(&revision_after));

    // All or none: the set before a failing increment is not kept.
    for (bad, code) in [
        (b"text".to_vec(), "kv-not-a-number"),
        (u64::MAX.to_string().into_bytes(), "kv-overflow"),
    ] {
        assert_eq!(put(&acme, "data", "c", &bad).await.0, 204);
        let (status, body) = node_write(
            &cp,
            &write_request(
                "acme",
                "web",
                "data",
                vec![
                    set("kept", b"no"),
                    KvOp::Increment {
                        key: "c".into(),
                        delta: 1,
                    },
                ],
            ),
        )
        .await
        .unwrap_err();
        assert_error(status, &body, 409, code);
        let (status, _, _) = raw(&acme, "GET", "/v1/kv/data/entry?key=kept", vec![]).await;
        assert_eq!(status, 404);
    }

    // The link is checked on every write; so are the tenant and the store.
    for (tenant, app, store) in [("acme", "other", "data"), ("acme", "web", "nope")] {
        let (status, body) = node_write(
            &cp,
            &write_request(tenant, app, store, vec![set("k", b"v")]),
        )
        .await
        .unwrap_err();
        assert_error(status, &body, 403, "kv-not-linked");
    }
    // Bad bodies: a deliberate answer each.
    let (status, body) = cp
        .node()
        .call("POST", "/v1/kv/write", Some(json!({"nonce": "x"})))
        .await;
    assert_error(status, &body, 400, "kv-invalid");
    let mut empty = write_request("acme", "web", "data", vec![]);
    let (status, body) = node_write(&cp, &empty).await.unwrap_err();
    assert_error(status, &body, 400, "kv-invalid");
    empty.ops = vec![set("k", b"v")];
    empty.nonce = "n".repeat(129);
    let (status, body) = cp.node().send("POST", "/v1/kv/write", &empty).await;
    assert_error(status, &body, 400, "kv-invalid");
    let (status, body) = node_write(
        &cp,
        &write_request("acme", "web", "data", vec![set("", b"v")]),
    )
    .await
    .unwrap_err();
    assert_error(status, &body, 400, "kv-key-invalid");
    // A bad store name is refused before any lookup, and not echoed whole.
    let long = "x".repeat(10_000);
    let (status, body) = node_write(
        &cp,
        &write_request("acme", "web", &long, vec![set("k", b"v")]),
    )
    .await
    .unwrap_err();
    let error = assert_error(status, &body, 400, "kv-store-name-invalid");
    assert!(error.message.len() < 200, "{}", error.message);
    // A body past the 16 MiB a write may have: refused while reading it,
    // with a key-value code.
    let (status, body, _) = raw(
        &cp.node(),
        "POST",
        "/v1/kv/write",
        vec![b' '; MAX_WRITE_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "kv-value-too-large");
}

async fn the_change_stream_wakes_resyncs_and_pages(backend: Backend) {
    let cp = Cp::start(backend, quick_prune()).await;
    let acme = cp.new_tenant("acme").await;
    create_store(&acme, "data").await;
    acme.create_app("web", &["web.test"]).await;
    answer::<KvLinkList>(acme.call("PUT", "/v1/apps/web/kv/data", None).await, 200);

    // A wrong epoch is a resync.
    let (status, body) = sync(&cp, "since=0&epoch=not-this-one").await.unwrap_err();
    assert_error(status, &body, 410, "kv-resync");
    let (status, body) = sync(&cp, "since=abc").await.unwrap_err();
    assert_error(status, &body, 400, "kv-invalid");
    // A position means nothing without its epoch.
    let (status, body) = sync_raw(&cp, "since=0&wait=0s").await.unwrap_err();
    let error = assert_error(status, &body, 400, "kv-invalid");
    assert!(error.message.contains("epoch"), "{body}");

    // A long poll wakes on a write made meanwhile.
    let (head, changes) = changes_of(sync(&cp, "since=0&wait=0s").await.unwrap());
    assert!(changes.is_empty());
    let epoch = epoch(&cp).await;
    let known = epoch.clone();
    let poll = long_poll(&cp, head, &epoch).await;
    waiters(&cp, 1.0).await;
    assert_eq!(put(&acme, "data", "woke", b"up").await.0, 204);
    let (woke_head, changes) = changes_of(poll.await.unwrap());
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key.as_deref(), Some("woke"));
    assert_eq!(changes[0].value, Some(KvValue(b"up".to_vec())));
    assert_eq!(woke_head, changes[0].seq);

    // Deletes are tombstones in the stream, then pruned: a node behind
    // the prune mark must resync.
    // (The prune runs every 100 ms and keeps nothing older than this
    // second: the delete and the read follow each other at once.)
    let (status, _, _) = raw(&acme, "DELETE", "/v1/kv/data/entry?key=woke", vec![]).await;
    assert_eq!(status, 204);
    // The pruner may have taken the tombstone already if a second
    // boundary fell between the delete and this read: then the answer is
    // the resync a node that far behind must get. (The conformance suite
    // checks tombstones in the changes without a pruner running.)
    match sync_raw(&cp, &format!("since={woke_head}&epoch={known}&wait=0s")).await {
        Ok(batch) => {
            let (_, changes) = changes_of(batch);
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].value, None);
        }
        Err((status, body)) => {
            assert_error(status, &body, 410, "kv-resync");
        }
    }
    eventually("the tombstone to be pruned", || async {
        matches!(sync(&cp, "since=0&wait=0s").await, Err((410, _)))
    })
    .await;
    let (status, body) = sync(&cp, "since=0&wait=0s").await.unwrap_err();
    assert_error(status, &body, 410, "kv-resync");
    // So is a snapshot whose continuation is pruned, before any page.
    let (status, body) = sync(&cp, "snapshot=1").await.unwrap_err();
    assert_error(status, &body, 410, "kv-resync");

    // Snapshot pages: 1,500 keys in two pages (at most 1,000 entries a
    // page), in key order; a key changed after `at` is left out of the
    // snapshot and arrives in the changes after `at`.
    for chunk in 0..3 {
        let ops = (0..500)
            .map(|i| set(&format!("key-{:04}", chunk * 500 + i), b"v"))
            .collect();
        let mut request = write_request("acme", "web", "data", ops);
        request.nonce = format!("chunk-{chunk}");
        node_write(&cp, &request).await.unwrap();
    }
    let KvBatch::Snapshot {
        at,
        after: None,
        entries,
        next,
        ..
    } = sync(&cp, "snapshot=0").await.unwrap()
    else {
        panic!("not a snapshot page");
    };
    assert_eq!(entries.len(), 1000);
    assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
    let next = next.unwrap();
    assert_eq!(next.key, "key-0999");
    assert_eq!(put(&acme, "data", "key-1200", b"later").await.0, 204);
    let KvBatch::Snapshot {
        entries,
        next: last,
        at: same,
        after: echoed,
        ..
    } = sync(
        &cp,
        &format!(
            "snapshot={at}&after_store={}&after_key={}",
            enc(&next.store),
            enc(&next.key)
        ),
    )
    .await
    .unwrap()
    else {
        panic!("not a snapshot page");
    };
    assert_eq!(same, at);
    assert_eq!(echoed.as_ref(), Some(&next), "the page names its cursor");
    assert_eq!(entries.len(), 499, "key-1200 changed after `at`");
    assert!(entries.iter().all(|e| e.key != "key-1200" && e.seq <= at));
    assert_eq!(last, None);
    let (_, changes) = changes_of(sync(&cp, &format!("since={at}&wait=0s")).await.unwrap());
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key.as_deref(), Some("key-1200"));
    let (status, body) = sync(&cp, &format!("snapshot={}", at + 100))
        .await
        .unwrap_err();
    assert_error(status, &body, 400, "kv-invalid");
    let (status, body) = sync(&cp, &format!("snapshot={at}&after_store=x"))
        .await
        .unwrap_err();
    assert_error(status, &body, 400, "kv-invalid");

    // A dropped store is one change without a key.
    answer::<KvLinkList>(acme.call("DELETE", "/v1/apps/web/kv/data", None).await, 200);
    let (status, _) = acme.call("DELETE", "/v1/kv/data", None).await;
    assert_eq!(status, 204);
    let (_, changes) = changes_of(
        sync(&cp, &format!("since={}&wait=0s", at + 1))
            .await
            .unwrap(),
    );
    let dropped = changes.last().unwrap();
    assert_eq!((dropped.key.as_ref(), dropped.value.as_ref()), (None, None));
    assert_eq!(dropped.store, next.store);
}

async fn tenants_cannot_reach_each_others_stores(backend: Backend) {
    let cp = Cp::start(backend, ApiSettings::default()).await;
    let acme = cp.new_tenant("acme").await;
    let beta = cp.new_tenant("beta").await;
    create_store(&acme, "data").await;
    assert_eq!(put(&acme, "data", "k", b"acme's").await.0, 204);

    let listed: KvStoreList = beta.get("/v1/kv").await;
    assert!(listed.stores.is_empty());
    let (status, body, _) = raw(&beta, "GET", "/v1/kv/data/entry?key=k", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "kv-store-not-found")
    );
    assert_eq!(
        put(&beta, "data", "k", b"x").await,
        (404, "kv-store-not-found".into())
    );
    let (status, body) = beta.call("GET", "/v1/kv/data/keys", None).await;
    assert_error(status, &body, 404, "kv-store-not-found");
    let (status, body) = beta.call("DELETE", "/v1/kv/data", None).await;
    assert_error(status, &body, 404, "kv-store-not-found");
    beta.create_app("site", &["site.test"]).await;
    let (status, body) = beta.call("PUT", "/v1/apps/site/kv/data", None).await;
    assert_error(status, &body, 404, "kv-store-not-found");
    // A node write naming beta's app and acme's store is refused too.
    let (status, body) = node_write(
        &cp,
        &write_request("beta", "site", "data", vec![set("k", b"x")]),
    )
    .await
    .unwrap_err();
    assert_error(status, &body, 403, "kv-not-linked");
    // beta cannot name acme as its tenant.
    let (status, _) = beta.call("GET", "/v1/kv?tenant=acme", None).await;
    assert_eq!(status, 403);

    // The same name in two tenants: two stores, two values.
    create_store(&beta, "data").await;
    assert_eq!(put(&beta, "data", "k", b"beta's").await.0, 204);
    let (_, a, _) = raw(&acme, "GET", "/v1/kv/data/entry?key=k", vec![]).await;
    let (_, b, _) = raw(&beta, "GET", "/v1/kv/data/entry?key=k", vec![]).await;
    assert_eq!(
        (a.as_slice(), b.as_slice()),
        (&b"acme's"[..], &b"beta's"[..])
    );
    // An admin names the tenant.
    let (status, got, _) = raw(
        &cp.admin(),
        "GET",
        "/v1/kv/data/entry?key=k&tenant=beta",
        vec![],
    )
    .await;
    assert_eq!((status, got.as_slice()), (200, &b"beta's"[..]));
}

/// Two control planes sharing one PostgreSQL database: a long poll on
/// one wakes for a write made through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_for_a_write_through_another_replica() {
    let database = MetaLocation::Postgres(crate::pg::new_database().await);
    let a = Cp::start_on(Some(database.clone()), ApiSettings::default()).await;
    let b = Cp::start_on(Some(database), ApiSettings::default()).await;
    let acme_a = a.new_tenant("acme").await;
    create_store(&acme_a, "data").await;
    let acme_b = b.tenant("acme");
    let (head, _) = changes_of(sync(&a, "since=0&wait=0s").await.unwrap());
    let epoch = epoch(&a).await;
    let poll = long_poll(&a, head, &epoch).await;
    waiters(&a, 1.0).await;
    assert_eq!(put(&acme_b, "data", "from-b", b"1").await.0, 204);
    let (_, changes) = changes_of(poll.await.unwrap());
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key.as_deref(), Some("from-b"));
}

/// `edgectl kv`: create, link, put from stdin and from a file (binary),
/// get to stdout and to a file, list with a prefix, delete, unlink, drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgectl_round_trips() {
    let cp = Cp::start(Backend::Sqlite, ApiSettings::default()).await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("web", &["web.test"]).await;
    let token = cp.token(Role::Tenant, "acme", Some("acme"));
    let url = cp.url();
    let run = |args: Vec<String>| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            edgectl(&url, &token, &args).await
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = run(args(&["kv", "create", "sessions"])).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(args(&["kv", "link", "web", "sessions"])).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(args(&["kv", "stores"])).await;
    assert!(
        ok && out.contains("sessions") && out.contains("web"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = (0..=255u8).rev().chain([0, b'\r', b'\n']).collect();
    let file = dir.path().join("value.bin");
    std::fs::write(&file, &binary).unwrap();
    let (ok, out, err) = run(args(&[
        "kv",
        "put",
        "sessions",
        "user/1 x",
        "--from-file",
        file.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{out}{err}");
    let (status, got, _) = raw(
        &acme,
        "GET",
        &format!("/v1/kv/sessions/entry?key={}", enc("user/1 x")),
        vec![],
    )
    .await;
    assert_eq!((status, got), (200, binary.clone()));
    let out_file = dir.path().join("out.bin");
    let (ok, out, err) = run(args(&[
        "kv",
        "get",
        "sessions",
        "user/1 x",
        "--output",
        out_file.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(&out_file).unwrap(), binary);

    // From stdin, byte for byte; read back on stdout.
    let stdin_value = b"line one\nline two\n".to_vec();
    let (ok, _, err) = crate::common::edgectl_with_stdin(
        &url,
        &token,
        &["kv", "put", "sessions", "user/2"],
        &stdin_value,
    )
    .await;
    assert!(ok, "{err}");
    let output = {
        let (url, token) = (url.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::common::edgectl_bin())
                .args(["kv", "get", "sessions", "user/2"])
                .env("EDGE_API", &url)
                .env("EDGE_TOKEN", &token)
                .env_remove("EDGE_TENANT")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(output.status.success());
    assert_eq!(output.stdout, stdin_value);

    let (ok, out, _) = run(args(&[
        "kv",
        "put",
        "sessions",
        "other",
        "--from-file",
        file.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{out}");
    let (ok, out, err) = run(args(&["kv", "list", "sessions", "--prefix", "user/"])).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["user/1 x", "user/2"]);
    let (ok, _, err) = run(args(&["kv", "delete", "sessions", "user/2"])).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(args(&["kv", "get", "sessions", "user/2"])).await;
    assert!(!ok && err.contains("kv-key-not-found"), "{err}");

    // Dropping a linked store is refused, with the code.
    let (ok, _, err) = run(args(&["kv", "drop", "sessions"])).await;
    assert!(!ok && err.contains("kv-store-linked"), "{err}");
    let (ok, _, err) = run(args(&["kv", "unlink", "web", "sessions"])).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(args(&["kv", "drop", "sessions"])).await;
    assert!(ok, "{err}");
    let (ok, out, _) = run(args(&["kv", "stores"])).await;
    assert!(ok && !out.contains("sessions"), "{out}");

    // An admin sets a tenant's kv limits.
    let admin_token = cp.token(Role::Admin, "admin", None);
    let (ok, out, err) = edgectl(
        &url,
        &admin_token,
        &[
            "tenants",
            "limits",
            "acme",
            "--kv-max-stores",
            "3",
            "--kv-max-value-bytes",
            "1024",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let shown: Value = acme.get("/v1/tenants/acme/limits").await;
    assert_eq!(shown["kv"]["max_stores"], 3, "{shown}");
    assert_eq!(shown["kv"]["max_value_bytes"], 1024, "{shown}");
}
