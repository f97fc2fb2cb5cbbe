//! The key-value store end to end: a control plane (on SQLite and on
//! PostgreSQL), two nodes synced from it, and the `examples/kv` component
//! calling `wasi:keyvalue` through the SDK, driven over HTTP.
//!
//! What is checked is the model the README states: the control plane is
//! the source of truth, writes are committed before the guest's call
//! returns and read back at once on the node that made them, other nodes
//! catch up (polled with a deadline, never timed), `increment` and
//! compare-and-swap are atomic across nodes, reads survive the control
//! plane going away (and a node restart meanwhile), writes then fail with
//! `kv-unavailable`, limits answer with their codes, tenants are apart.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_common::api::SetTenantLimits;
use edge_common::kv::{KvKeyList, KvLinkList, KvStore, NewKvStore};
use edge_cp::auth::Role;
use edge_cp::server::ServerHandle;
use edge_cp::store::location::MetaLocation;
use edge_cp::{ControlPlane, CpConfig};
use edge_fixtures::KV;

use crate::common::{Backend, Client, TestNode, answer, init_logging, on_both_backends};

const HOST: &str = "kv.test";

/// An in-process control plane on either backend, which a test can kill
/// and start again on the same address, data directory and database.
struct KvCp {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    metadata: MetaLocation,
    handle: Option<ServerHandle>,
}

impl KvCp {
    async fn start(backend: Backend) -> Self {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let metadata = match backend {
            Backend::Sqlite => MetaLocation::Sqlite {
                data_dir: dir.path().to_path_buf(),
            },
            Backend::Postgres => MetaLocation::Postgres(crate::pg::new_database().await),
        };
        let mut cp = KvCp {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            metadata,
            handle: None,
        };
        cp.launch().await;
        cp
    }

    async fn launch(&mut self) {
        let mut config = CpConfig::new(self.dir.path(), self.addr);
        config.metadata = self.metadata.clone();
        // After a kill the port was just released; retry briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        let handle = loop {
            match ControlPlane::start(config.clone()).await {
                Ok(handle) => break handle,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("control plane start failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("control plane did not start: {e}"),
            }
        };
        self.addr = handle.addr;
        self.handle = Some(handle);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn kill(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    fn token(&self, role: Role, sub: &str, tenant: Option<&str>) -> String {
        crate::common::issue_token(self.dir.path(), role, sub, tenant)
    }

    fn admin(&self) -> Client {
        Client::at(&self.url(), self.token(Role::Admin, "admin", None))
    }

    async fn new_tenant(&self, tenant: &str) -> Client {
        crate::common::create_tenant(&self.admin(), tenant).await;
        Client::at(&self.url(), self.token(Role::Tenant, tenant, Some(tenant)))
    }
}

/// Requests to one host on one node, over a pooled client.
#[derive(Clone)]
struct Guest {
    http: reqwest::Client,
    base: String,
}

impl Guest {
    fn new(node: &TestNode, host: &str) -> Self {
        Guest {
            http: reqwest::Client::builder()
                .no_proxy()
                .resolve(host, node.http_addr)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://{host}:{}", node.http_addr.port()),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, Vec::new()).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> (u16, String) {
        self.call("PUT", &format!("/set?key={key}"), value.to_vec())
            .await
    }

    /// Waits until `path` answers `status` and `body`.
    async fn wait_for(&self, path: &str, status: u16, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.get(path).await;
            if got.0 == status && got.1 == body {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}{path} never answered {status} {body:?}; last: {got:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A control plane, tenant `acme` with app `kv` (the example component on
/// `kv.test`) linked to its store `data`, and two nodes serving it.
struct Env {
    cp: KvCp,
    acme: Client,
    nodes: [TestNode; 2],
    guests: [Guest; 2],
    _dirs: [tempfile::TempDir; 2],
}

impl Env {
    async fn start(backend: Backend) -> Self {
        let cp = KvCp::start(backend).await;
        let acme = cp.new_tenant("acme").await;
        acme.create_app("kv", &[HOST]).await;
        create_store(&acme, "data").await;
        link(&acme, "kv", "data").await;
        acme.deploy("kv", KV).await;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let nodes = [
            TestNode::start(
                &cp.url(),
                cp.token(Role::Node, "node-1", None),
                dirs[0].path(),
            )
            .await,
            TestNode::start(
                &cp.url(),
                cp.token(Role::Node, "node-2", None),
                dirs[1].path(),
            )
            .await,
        ];
        let guests = [Guest::new(&nodes[0], HOST), Guest::new(&nodes[1], HOST)];
        // Deployed, linked and replicated on both: a key written through
        // the tenant API shows up, and so does its delete. (Also what
        // makes the tests' read-your-writes checks start from a node whose
        // replica has taken its first snapshot.)
        let (status, body) =
            raw(&acme, "PUT", "/v1/kv/data/entry?key=ready", b"yes".to_vec()).await;
        assert!((200..300).contains(&status), "{status} {body:?}");
        for guest in &guests {
            guest.wait_for("/get?key=ready", 200, "yes").await;
        }
        let (status, body) = raw(&acme, "DELETE", "/v1/kv/data/entry?key=ready", Vec::new()).await;
        assert!((200..300).contains(&status), "{status} {body:?}");
        for guest in &guests {
            guest
                .wait_for("/get?key=ready", 404, "no key ready\n")
                .await;
        }
        Env {
            cp,
            acme,
            nodes,
            guests,
            _dirs: dirs,
        }
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

async fn link(tenant: &Client, app: &str, store: &str) {
    let (status, body) = tenant
        .call("PUT", &format!("/v1/apps/{app}/kv/{store}"), None)
        .await;
    assert!((200..300).contains(&status), "link: {status} {body}");
}

/// The tenant API's view of a key (the control plane's, the truth): the
/// status and the raw bytes as text.
async fn cp_value(tenant: &Client, store: &str, key: &str) -> (u16, String) {
    let (status, body) = raw(
        tenant,
        "GET",
        &format!("/v1/kv/{store}/entry?key={key}"),
        Vec::new(),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A tenant API request with a raw body, answered with raw bytes (entries
/// are bytes, not JSON).
async fn raw(tenant: &Client, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(method.parse().unwrap(), format!("{}{path}", tenant.base()))
        .bearer_auth(&tenant.token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

on_both_backends!(
    workers = 4;
    a_counter_incremented_on_two_nodes_counts_every_request,
    compare_and_swap_races_between_nodes_have_one_winner,
    writes_are_read_back_at_once_and_reach_the_other_node,
    limits_answer_with_their_codes_through_the_component,
    reads_survive_the_control_plane_and_a_node_restart,
    tenants_cannot_reach_each_others_stores,
);

/// 1,000 `increment`s sent at once, half to each node: every one returns
/// a different value, 1 to 1,000, and both nodes read 1,000.
async fn a_counter_incremented_on_two_nodes_counts_every_request(backend: Backend) {
    let env = Env::start(backend).await;
    const REQUESTS: usize = 1_000;
    // Many increments in flight on both nodes at once, each node's share
    // under the node's cap on requests running at once (32 in the tests'
    // nodes; over it is 503 node-at-capacity).
    let permits = [
        Arc::new(tokio::sync::Semaphore::new(24)),
        Arc::new(tokio::sync::Semaphore::new(24)),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let guest = env.guests[i % 2].clone();
        let permits = permits[i % 2].clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            guest.get("/count").await
        });
    }
    let mut seen = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 200, "{body}");
        let value: u64 = body.parse().unwrap();
        assert!(seen.insert(value), "{value} was returned twice");
    }
    assert_eq!(seen, (1..=REQUESTS as u64).collect::<BTreeSet<_>>());
    assert_eq!(
        cp_value(&env.acme, "data", "hits").await,
        (200, "1000".into())
    );
    for guest in &env.guests {
        guest.wait_for("/get?key=hits", 200, "1000").await;
    }
    // And the next one on either node continues from there.
    assert_eq!(env.guests[1].get("/count").await, (200, "1001".into()));
    assert_eq!(
        env.guests[1].get("/get?key=hits").await,
        (200, "1001".into())
    );
}

/// Both nodes race to take the same absent key, several requests each,
/// over several rounds: exactly one wins each round, and its value is what
/// both nodes end up reading.
async fn compare_and_swap_races_between_nodes_have_one_winner(backend: Backend) {
    let env = Env::start(backend).await;
    for round in 0..5 {
        let key = format!("lock-{round}");
        let mut tasks = tokio::task::JoinSet::new();
        for contender in 0..8 {
            let guest = env.guests[contender % 2].clone();
            let path = format!("/cas?key={key}&value=owner-{contender}");
            tasks.spawn(async move { (contender, guest.call("POST", &path, Vec::new()).await) });
        }
        let mut winners = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (contender, (status, body)) = done.unwrap();
            assert_eq!(status, 200, "{body}");
            match body.as_str() {
                "swapped" => winners.push(contender),
                "not-swapped" => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let owner = format!("owner-{}", winners[0]);
        for guest in &env.guests {
            guest
                .wait_for(&format!("/get?key={key}"), 200, &owner)
                .await;
        }
        // A swap expecting the wrong value changes nothing; the right one
        // swaps, on the node that lost.
        let loser = &env.guests[(winners[0] + 1) % 2];
        assert_eq!(
            loser
                .call(
                    "POST",
                    &format!("/cas?key={key}&expected=nobody&value=x"),
                    Vec::new()
                )
                .await,
            (200, "not-swapped".into())
        );
        assert_eq!(
            loser
                .call(
                    "POST",
                    &format!("/cas?key={key}&expected={owner}&value=released"),
                    Vec::new()
                )
                .await,
            (200, "swapped".into())
        );
        assert_eq!(
            loser.get(&format!("/get?key={key}")).await,
            (200, "released".into())
        );
    }
}

/// A write answers only once committed: the writing node reads it back at
/// once, the control plane has it, the other node catches up. Deletes,
/// batches, listing and the tenant API's writes travel the same way.
async fn writes_are_read_back_at_once_and_reach_the_other_node(backend: Backend) {
    let env = Env::start(backend).await;
    let [one, two] = &env.guests;
    // Every byte value, so nothing is lost to text on the way.
    let value: Vec<u8> = (0..=255u8).collect();
    assert_eq!(one.set("blob", &value).await, (200, "ok".into()));
    let read = one
        .http
        .get(format!("{}/get?key=blob", one.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap().as_ref(), value.as_slice());
    let (status, _) = cp_value(&env.acme, "data", "blob").await;
    assert_eq!(status, 200);
    crate::common::eventually("node 2 reads the value node 1 set", || async {
        let response = two
            .http
            .get(format!("{}/get?key=blob", two.base))
            .send()
            .await
            .unwrap();
        response.status() == 200 && response.bytes().await.unwrap().as_ref() == value.as_slice()
    })
    .await;

    // Keys needing escapes, set in one batch on node 2.
    assert_eq!(
        two.call(
            "POST",
            "/set-many?keys=user%2F1,user%2F2,user%2F3,other",
            b"v".to_vec()
        )
        .await,
        (200, "ok".into())
    );
    assert_eq!(
        two.get("/list?prefix=user%2F").await,
        (200, "user/1\nuser/2\nuser/3\n".into())
    );
    one.wait_for("/list?prefix=user%2F", 200, "user/1\nuser/2\nuser/3\n")
        .await;
    assert_eq!(
        one.get("/many?keys=user%2F1,missing,other").await,
        (200, "user/1=v\nmissing\nother=v\n".into())
    );
    let keys: KvKeyList = env.acme.get("/v1/kv/data/keys?prefix=user%2F").await;
    assert_eq!(keys.keys, ["user/1", "user/2", "user/3"]);

    // Deletes: the deleting node answers 404 at once, the other soon.
    assert_eq!(two.call("DELETE", "/del?key=blob", Vec::new()).await.0, 200);
    assert_eq!(two.get("/get?key=blob").await.0, 404);
    assert_eq!(two.get("/exists?key=blob").await, (200, "false".into()));
    one.wait_for("/get?key=blob", 404, "no key blob\n").await;
    assert_eq!(
        one.call("POST", "/delete-many?keys=user%2F1,user%2F2", Vec::new())
            .await,
        (200, "ok".into())
    );
    assert_eq!(one.get("/list?prefix=user").await, (200, "user/3\n".into()));
    two.wait_for("/list?prefix=user", 200, "user/3\n").await;
    assert_eq!(cp_value(&env.acme, "data", "user%2F1").await.0, 404);

    // A write through the tenant API is a change like any other.
    let (status, body) = raw(
        &env.acme,
        "PUT",
        "/v1/kv/data/entry?key=from-api",
        b"hello".to_vec(),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body:?}");
    for guest in &env.guests {
        guest.wait_for("/get?key=from-api", 200, "hello").await;
    }
    // And a store's listing counts what the guests wrote.
    let stores: edge_common::kv::KvStoreList = env.acme.get("/v1/kv").await;
    let data = stores.stores.iter().find(|s| s.name == "data").unwrap();
    assert_eq!(data.keys, 3, "{data:?}"); // user/3, other, from-api
    assert_eq!(
        data.apps,
        ["kv".parse().unwrap()] as [edge_common::names::AppName; 1]
    );
}

/// The tenant's limits, lowered by an admin, reach the nodes with the
/// snapshot; each refusal reaches the guest with its code, and nothing of
/// a refused write is stored.
async fn limits_answer_with_their_codes_through_the_component(backend: Backend) {
    let env = Env::start(backend).await;
    let [one, two] = &env.guests;
    let limits = SetTenantLimits {
        kv_max_key_bytes: Some(16),
        kv_max_value_bytes: Some(1024),
        kv_max_keys_per_store: Some(4),
        kv_max_ops_per_request: Some(5),
        ..SetTenantLimits::default()
    };
    let (status, body) = env
        .cp
        .admin()
        .send("PUT", "/v1/tenants/acme/limits", &limits)
        .await;
    assert!((200..300).contains(&status), "{status} {body}");

    // Operations per request, which only the node counts: once the new
    // limits are in a node's snapshot, five gets pass and six are refused
    // with 429; a batch counts one per key.
    for guest in [one, two] {
        crate::common::eventually("the lowered limits reach the node", || async {
            let (status, body) = guest.get("/loop?key=big&n=6").await;
            status == 429 && body.starts_with("kv-ops-limit: ")
        })
        .await;
        assert_eq!(
            guest.get("/loop?key=big&n=5").await,
            (200, "5 gets\n".into())
        );
    }
    let (status, body) = two.get("/many?keys=a,b,c,d,e,f").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.starts_with("kv-ops-limit: "), "{body}");
    // The limit is per request: the next request starts afresh.
    assert_eq!(two.get("/many?keys=a,b,c,d,e").await.0, 200);

    // Value too large (1025 bytes); 1024 is fine.
    let big = vec![b'x'; 1025];
    let (status, body) = one.set("big", &big).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("kv-value-too-large: "), "{body}");
    assert_eq!(one.get("/get?key=big").await.0, 404);
    assert_eq!(one.set("big", &big[..1024]).await, (200, "ok".into()));
    assert_eq!(one.get("/get?key=big").await.1.len(), 1024);

    // Key too long (17 bytes); 16 is fine.
    let (status, body) = two.set(&"k".repeat(17), b"v").await;
    assert_eq!(status, 500);
    assert!(body.starts_with("kv-key-too-long: "), "{body}");
    assert_eq!(two.set(&"k".repeat(16), b"v").await, (200, "ok".into()));

    // Keys per store (checked on the control plane): 2 live keys, a batch
    // of 3 more is refused whole.
    let (status, body) = one
        .call("POST", "/set-many?keys=x1,x2,x3", b"v".to_vec())
        .await;
    assert_eq!(status, 500);
    assert!(body.starts_with("kv-keys-limit: "), "{body}");
    for key in ["x1", "x2", "x3"] {
        assert_eq!(cp_value(&env.acme, "data", key).await.0, 404, "{key}");
        assert_eq!(one.get(&format!("/get?key={key}")).await.0, 404, "{key}");
    }

    // Not a number, checked where increment runs (the control plane).
    let (status, body) = two.call("POST", "/incr?key=big", Vec::new()).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("kv-not-a-number: "), "{body}");
    // The refused writes left the store as it was.
    let keys: KvKeyList = env.acme.get("/v1/kv/data/keys").await;
    assert_eq!(keys.keys, ["big".to_string(), "k".repeat(16)]);
}

/// The control plane goes away: both nodes keep answering reads from
/// their replicas, every write fails with `kv-unavailable` (and did not
/// happen), a node restarted meanwhile reads from its persisted replica,
/// and writes work again once the control plane is back.
async fn reads_survive_the_control_plane_and_a_node_restart(backend: Backend) {
    let mut env = Env::start(backend).await;
    assert_eq!(
        env.guests[0].set("greeting", b"hello").await,
        (200, "ok".into())
    );
    assert_eq!(env.guests[1].get("/count").await, (200, "1".into()));
    for guest in &env.guests {
        guest.wait_for("/get?key=greeting", 200, "hello").await;
        guest.wait_for("/get?key=hits", 200, "1").await;
    }

    env.cp.kill().await;
    for guest in &env.guests {
        assert_eq!(guest.get("/get?key=greeting").await, (200, "hello".into()));
        assert_eq!(
            guest.get("/list?prefix=").await,
            (200, "greeting\nhits\n".into())
        );
        let writes: [(&str, &str); 4] = [
            ("PUT", "/set?key=later"),
            ("GET", "/count"),
            ("POST", "/cas?key=later&value=x"),
            ("DELETE", "/del?key=greeting"),
        ];
        for (method, path) in writes {
            let (status, body) = guest.call(method, path, b"v".to_vec()).await;
            assert_eq!(status, 503, "{method} {path}: {body}");
            assert!(
                body.starts_with("kv-unavailable: "),
                "{method} {path}: {body}"
            );
        }
        // Nothing of the failed writes shows on the node.
        assert_eq!(guest.get("/get?key=greeting").await, (200, "hello".into()));
        assert_eq!(guest.get("/get?key=later").await.0, 404);
    }

    // A node restarted while the control plane is down serves the app and
    // its store from what it persisted.
    env.nodes[1].restart().await;
    let restarted = Guest::new(&env.nodes[1], HOST);
    restarted.wait_for("/get?key=greeting", 200, "hello").await;
    assert_eq!(restarted.get("/get?key=hits").await, (200, "1".into()));
    let (status, body) = restarted.set("later", b"v").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("kv-unavailable: "), "{body}");

    // Back: the failed writes never happened, new ones work, and the
    // restarted node follows the stream again.
    env.cp.restart().await;
    assert_eq!(cp_value(&env.acme, "data", "later").await.0, 404);
    assert_eq!(
        cp_value(&env.acme, "data", "greeting").await,
        (200, "hello".into())
    );
    crate::common::eventually("writes work again", || async {
        env.guests[0].get("/count").await == (200, "2".to_string())
    })
    .await;
    restarted.wait_for("/get?key=hits", 200, "2").await;
    assert_eq!(restarted.get("/count").await, (200, "3".into()));
    env.guests[0].wait_for("/get?key=hits", 200, "3").await;
}

/// Two tenants with a store of the same name hold different data; an app
/// opens only the stores its own tenant linked to it, and an unlink takes
/// the store away from the app.
async fn tenants_cannot_reach_each_others_stores(backend: Backend) {
    let env = Env::start(backend).await;
    let acme = &env.guests[0];
    let other = env.cp.new_tenant("other").await;
    other.create_app("theirs", &["theirs.test"]).await;
    create_store(&other, "data").await;
    link(&other, "theirs", "data").await;
    other.deploy("theirs", KV).await;
    // acme's second store, linked to nothing, and one named only in acme.
    create_store(&env.acme, "private").await;
    create_store(&env.acme, "secret").await;
    link(&env.acme, "kv", "secret").await;

    let theirs = [
        Guest::new(&env.nodes[0], "theirs.test"),
        Guest::new(&env.nodes[1], "theirs.test"),
    ];
    for guest in &theirs {
        guest.wait_for("/get?key=k", 404, "no key k\n").await;
    }
    assert_eq!(acme.set("k", b"acme's").await, (200, "ok".into()));
    assert_eq!(theirs[1].set("k", b"other's").await, (200, "ok".into()));
    for (ours, theirs) in env.guests.iter().zip(&theirs) {
        ours.wait_for("/get?key=k", 200, "acme's").await;
        theirs.wait_for("/get?key=k", 200, "other's").await;
    }
    assert_eq!(
        cp_value(&env.acme, "data", "k").await,
        (200, "acme's".into())
    );
    assert_eq!(cp_value(&other, "data", "k").await, (200, "other's".into()));

    // Another tenant's store name, an unlinked store of one's own tenant:
    // neither opens.
    acme.wait_for("/get?key=k&store=secret", 404, "no key k\n")
        .await;
    for (guest, path) in [
        (&theirs[0], "/get?key=k&store=secret"),
        (&theirs[1], "/set?key=k&store=secret"),
        (acme, "/get?key=k&store=private"),
    ] {
        let method = if path.starts_with("/set") {
            "PUT"
        } else {
            "GET"
        };
        let (status, body) = guest.call(method, path, b"x".to_vec()).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert!(body.starts_with("no-such-store"), "{path}: {body}");
    }
    // Nor through the tenant API.
    let (status, _) = other.call("GET", "/v1/kv/secret/entry?key=k", None).await;
    assert_eq!(status, 404);
    let links: KvLinkList = other.get("/v1/apps/theirs/kv").await;
    assert_eq!(links.stores, ["data"]);

    // Unlinked: the app cannot open it any more, on either node.
    let (status, body) = env.acme.call("DELETE", "/v1/apps/kv/kv/data", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    for guest in &env.guests {
        crate::common::eventually("the unlink reaches the node", || async {
            let (status, body) = guest.get("/get?key=k").await;
            status == 500 && body.starts_with("no-such-store")
        })
        .await;
    }
    assert_eq!(
        cp_value(&env.acme, "data", "k").await,
        (200, "acme's".into())
    );
}
