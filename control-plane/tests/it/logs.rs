//! Live logs end to end: `edgectl logs` against a real control plane and
//! nodes on 127.0.0.1, a component (examples/log-flood) writing stdout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edge_common::api::{GuestLine, GuestStream, LogBatch, LogEvent, MAX_BATCH_LINES, ShippedLine};
use edge_common::sync::{SignedSnapshot, Snapshot, TailedApp};
use edge_fixtures::{HELLO, LOG_FLOOD};
use serde_json::Value;

use crate::common::{Client, TestCp, TestNode, assert_error, edgectl, edgectl_bin, eventually};

/// `edgectl logs ...` running in the background, its stdout collected.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(cp: &TestCp, token: &str, args: &[&str]) -> Self {
        Self::at(&cp.url(), token, args)
    }

    /// Against the control plane (replica) at `url`.
    fn at(url: &str, token: &str, args: &[&str]) -> Self {
        let mut child = Command::new(edgectl_bin())
            .arg("logs")
            .args(args)
            .env("EDGE_API", url)
            .env("EDGE_TOKEN", token)
            .env_remove("EDGE_TENANT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The objects printed so far (`--json`).
    fn events(&self) -> Vec<LogEvent> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    /// Ctrl-C, as a user ends it; it must exit successfully.
    async fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || self.child.wait().unwrap())
            .await
            .unwrap();
        assert!(exit.success(), "edgectl logs ended with {exit:?} on Ctrl-C");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tailed apps of the current snapshot.
async fn snapshot_tails(cp: &TestCp) -> Vec<TailedApp> {
    let (status, body) = cp.admin().call("GET", "/v1/sync?since=0", None).await;
    assert_eq!(status, 200, "{body}");
    let signed: SignedSnapshot = serde_json::from_value(body).unwrap();
    let snapshot: Snapshot = serde_json::from_str(&signed.payload).unwrap();
    snapshot.tails
}

/// A control plane, tenant `acme` with log-flood as `logs` and hello as
/// `hi`, served by two nodes.
struct Fleet {
    cp: TestCp,
    acme: Client,
    nodes: Vec<TestNode>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn fleet() -> Fleet {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("logs", &["logs.test"]).await;
    acme.deploy("logs", LOG_FLOOD).await;
    acme.create_app("hi", &["hi.test"]).await;
    acme.deploy("hi", HELLO).await;
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for name in ["node-1", "node-2"] {
        let dir = tempfile::tempdir().unwrap();
        let node = TestNode::start(&cp.url(), cp.node_token(name), dir.path()).await;
        node.wait_for_body("logs.test", "logged\n").await;
        node.wait_for_body("hi.test", "Hello from the edge!\n")
            .await;
        nodes.push(node);
        dirs.push(dir);
    }
    Fleet {
        cp,
        acme,
        nodes,
        _dirs: dirs,
    }
}

fn acme_token(cp: &TestCp) -> String {
    cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"))
}

#[tokio::test]
async fn follow_sees_guest_and_access_lines_from_two_nodes_and_leaves_no_tail() {
    let f = fleet().await;
    let token = acme_token(&f.cp);
    let follower = Follower::start(&f.cp, &token, &["logs", "--follow", "--json"]);
    let started = Instant::now();
    let mut round = 0;
    eventually("stdout and access lines from both nodes", || {
        round += 1;
        let (nodes, follower) = (&f.nodes, &follower);
        async move {
            for node in nodes {
                let (status, _) = node.get("logs.test", &format!("/probe-{round}")).await;
                assert_eq!(status, 200);
            }
            let events = follower.events();
            ["node-1", "node-2"].iter().all(|node| {
                let log = events.iter().any(|e| {
                    matches!(e, LogEvent::Log(l) if l.node == *node
                        && l.stream == GuestStream::Stdout
                        && l.line.starts_with("hello-log GET /probe-")
                        && l.app.as_str() == "logs"
                        && !l.request_id.is_empty())
                });
                let access = events.iter().any(|e| {
                    matches!(e, LogEvent::Access(a) if a.node == *node
                        && a.method == "GET"
                        && a.path.starts_with("/probe-")
                        && a.status == 200
                        && a.bytes == "logged\n".len() as u64
                        && !a.cache.is_empty()
                        && a.error_code.is_none())
                });
                log && access
            })
        }
    })
    .await;
    // Measured, not asserted (no timing assertions in tests): from the
    // follower's start, through the tail reaching both nodes, to their
    // lines; then one request's line once the tail is in place.
    println!(
        "live logs: lines from both nodes reached the follower {} ms after it started",
        started.elapsed().as_millis()
    );
    let sent = Instant::now();
    f.nodes[0].get("logs.test", "/timed").await;
    eventually("the timed request's line", || async {
        follower
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Log(l) if l.line.starts_with("hello-log GET /timed")))
    })
    .await;
    println!(
        "live logs: a guest line reached the follower {} ms after its request",
        sent.elapsed().as_millis()
    );
    // A guest line and its access line share the request id.
    let events = follower.events();
    let log_ids: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Log(l) => Some(l.request_id.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LogEvent::Access(a) if log_ids.contains(&a.request_id.as_str())))
    );
    // Only the tailed app's lines: hello, untailed, ships nothing.
    f.nodes[0].get("hi.test", "/").await;
    assert!(events.iter().all(|e| match e {
        LogEvent::Log(l) => l.app.as_str() == "logs",
        LogEvent::Access(a) => a.app.as_str() == "logs",
        _ => true,
    }));
    assert_eq!(
        snapshot_tails(&f.cp).await,
        vec![TailedApp {
            tenant: "acme".parse().unwrap(),
            app: "logs".parse().unwrap(),
        }]
    );
    let shipped = f.nodes[0]
        .metric(r#"edge_log_lines_shipped_total{app="logs",tenant="acme"}"#)
        .await;
    assert!(shipped > 0.0, "node-1 counts what it shipped");
    assert_eq!(f.nodes[0].metric("edge_log_tailed_apps").await, 1.0);

    // The access line takes the error code and the cache result from the
    // node's own records: a guest's `x-edge-error` and `x-cache` headers
    // are not believed (nor is the first passed on).
    let (status, _) = f.nodes[0].get("logs.test", "/spoof").await;
    assert_eq!(status, 200);
    eventually("the spoofing request's access line", || async {
        follower
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Access(a) if a.path == "/spoof"))
    })
    .await;
    for event in follower.events() {
        if let LogEvent::Access(a) = event
            && a.path == "/spoof"
        {
            assert_eq!(a.error_code, None, "{a:?}");
            assert_ne!(a.cache, "hit", "{a:?}");
        }
    }
    // A guest line with terminal controls: JSON carries it escaped by
    // serde, the human form escapes it itself.
    let evil = "\u{1b}[31mred\rover\u{202e}txt";
    f.nodes[0]
        .get("logs.test", "/evil?say=%1B%5B31mred%0Dover%E2%80%AEtxt")
        .await;
    eventually("the guest's line with controls", || async {
        follower
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Log(l) if l.line == evil))
    })
    .await;

    // Ctrl-C ends it cleanly, and the tail goes with it: nodes stop
    // shipping.
    follower.interrupt().await;
    eventually("the tail to be deleted", || async {
        snapshot_tails(&f.cp).await.is_empty()
    })
    .await;
    eventually("nodes to learn nobody tails", || async {
        f.nodes[0].metric("edge_log_tailed_apps").await == 0.0
    })
    .await;

    // `--since` without `--follow`: the lines kept from while it was
    // tailed, then the command ends.
    let (ok, out, err) = edgectl(&f.cp.url(), &token, &["logs", "logs", "--since", "1m"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(" stdout hello-log GET /probe-") && l.contains("node-")),
        "human output: time node request-id stream line:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("\"GET /probe-") && l.contains(" 200 ")),
        "access lines like a combined log:\n{out}"
    );
    assert!(
        out.contains(" stdout \\u{1b}[31mred\\u{d}over\\u{202e}txt"),
        "controls escaped in the human form:\n{out}"
    );
    assert!(
        !out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{202e}'),
        "no raw control reaches the terminal"
    );
    let (ok, json_out, _) = edgectl(
        &f.cp.url(),
        &token,
        &[
            "logs", "logs", "--since", "1m", "--json", "--node", "node-2",
        ],
    )
    .await;
    assert!(ok);
    let objects: Vec<Value> = json_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!objects.is_empty());
    assert!(
        objects.iter().all(|o| o["node"] == "node-2"),
        "--node keeps one node's lines: {json_out}"
    );
    assert!(objects.iter().all(|o| o["type"].is_string()));
}

#[tokio::test]
async fn status_and_node_filters_hold_while_following() {
    let f = fleet().await;
    let token = acme_token(&f.cp);
    let errors = Follower::start(
        &f.cp,
        &token,
        &["logs", "--follow", "--json", "--status", "5xx"],
    );
    let node_2 = Follower::start(
        &f.cp,
        &token,
        &["logs", "--follow", "--json", "--node", "node-2"],
    );
    eventually("a 503 access line, and node-2's lines", || async {
        for node in &f.nodes {
            node.get("logs.test", "/fail").await;
            node.get("logs.test", "/ok").await;
        }
        let failed = errors
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Access(a) if a.status == 503 && a.path == "/fail"));
        let second = node_2
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Log(_)));
        failed && second
    })
    .await;
    for event in errors.events() {
        match event {
            LogEvent::Access(a) => assert_eq!(a.status, 503, "{a:?}"),
            LogEvent::Dropped(_) => {}
            other => panic!("--status 5xx shows access lines only, got {other:?}"),
        }
    }
    for event in node_2.events() {
        assert_eq!(event.node(), Some("node-2"), "{event:?}");
    }
}

#[tokio::test]
async fn a_flooding_guest_gets_drop_notices_and_its_neighbour_still_answers() {
    let f = fleet().await;
    let token = acme_token(&f.cp);
    let follower = Follower::start(&f.cp, &token, &["logs", "--follow", "--json"]);
    // Wait until lines flow, then flood: 400 lines a request (within the
    // app's CPU time in a debug build), request after request, far over
    // the tenant's 200 a second.
    eventually("lines to flow", || async {
        f.nodes[0].get("logs.test", "/warmup").await;
        !follower.lines().is_empty()
    })
    .await;
    // The neighbour on the same node answers meanwhile, each time:
    // latencies are printed, not asserted (no timing assertions).
    let hello_latencies = Mutex::new(Vec::new());
    eventually("a drop notice from node-1", || async {
        let flood = f.nodes[0].get("logs.test", "/?n=400");
        let hello = async {
            let sent = Instant::now();
            let answer = f.nodes[0].get("hi.test", "/").await;
            hello_latencies.lock().unwrap().push(sent.elapsed());
            answer
        };
        let ((status, _), (hello_status, body)) = tokio::join!(flood, hello);
        assert_eq!(status, 200);
        assert_eq!(
            (hello_status, body.as_str()),
            (200, "Hello from the edge!\n")
        );
        follower.events().iter().any(|e| {
            matches!(e, LogEvent::Dropped(d) if d.node == "node-1" && d.count > 0 && d.app.as_str() == "logs")
        })
    })
    .await;
    // A few more during the flood, all answered.
    for _ in 0..20 {
        let sent = Instant::now();
        let ((status, _), (hello_status, _)) = tokio::join!(
            f.nodes[0].get("logs.test", "/?n=400"),
            f.nodes[0].get("hi.test", "/")
        );
        hello_latencies.lock().unwrap().push(sent.elapsed());
        assert_eq!((status, hello_status), (200, 200));
    }
    let mut latencies = hello_latencies.into_inner().unwrap();
    latencies.sort();
    println!(
        "live logs: hello during a log flood ({} requests, all 200): median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(
        f.nodes[0]
            .metric(r#"edge_log_lines_dropped_total{app="logs",tenant="acme"}"#)
            .await
            > 0.0
    );
    // The human form says it in words.
    let (ok, out, _) = edgectl(&f.cp.url(), &token, &["logs", "logs", "--since", "1m"]).await;
    assert!(ok);
    assert!(out.contains(" lines dropped on node-1"), "{out}");
}

#[tokio::test]
async fn tenants_follow_only_their_own_apps_and_nodes_only_post() {
    let f = fleet().await;
    let other = f.cp.new_tenant("other").await;
    let other_token =
        f.cp.token(edge_cp::auth::Role::Tenant, "other", Some("other"));
    // Another tenant's app is not found, through the API and edgectl.
    let (status, body) = other.call("GET", "/v1/apps/logs/logs", None).await;
    assert_error(status, &body, 404, "not-found");
    let (ok, _, err) = edgectl(&f.cp.url(), &other_token, &["logs", "logs", "--follow"]).await;
    assert!(!ok);
    assert!(err.contains("[404 not-found]"), "{err}");
    let (status, body) = other
        .call("GET", "/v1/apps/logs/logs?tenant=acme", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(snapshot_tails(&f.cp).await.is_empty(), "nothing was tailed");
    // The admin names the tenant.
    let (status, _) =
        f.cp.admin()
            .call("GET", "/v1/apps/logs/logs?tenant=acme", None)
            .await;
    assert_eq!(status, 200);

    // Nodes post lines; tenants cannot, and nodes cannot follow.
    let batch = LogBatch { lines: vec![] };
    let (status, body) = f.acme.send("POST", "/v1/logs", &batch).await;
    assert_error(status, &body, 403, "forbidden");
    let node = Client::at(&f.cp.url(), f.cp.node_token("node-1"));
    let (status, body) = node.call("GET", "/v1/apps/logs/logs", None).await;
    assert_eq!(status, 403, "{body}");

    // A batch's node is its token's, whatever it says; untailed apps'
    // lines are not kept.
    let line = |text: &str| ShippedLine {
        tenant: "acme".parse().unwrap(),
        event: LogEvent::Log(GuestLine {
            time_ms: 1,
            node: "forged".into(),
            app: "logs".parse().unwrap(),
            request_id: "r1".into(),
            stream: GuestStream::Stdout,
            line: text.into(),
            cut: false,
        }),
    };
    let (status, body) = node
        .send(
            "POST",
            "/v1/logs",
            &LogBatch {
                lines: vec![line("x")],
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["dropped"].as_u64()),
        (Some(0), Some(1))
    );
    let follower = Follower::start(&f.cp, &acme_token(&f.cp), &["logs", "--follow", "--json"]);
    eventually("the forged line, under node-1's name", || async {
        let (status, _) = node
            .send(
                "POST",
                "/v1/logs",
                &LogBatch {
                    lines: vec![line("posted")],
                },
            )
            .await;
        assert_eq!(status, 200);
        follower
            .events()
            .iter()
            .any(|e| matches!(e, LogEvent::Log(l) if l.line == "posted" && l.node == "node-1"))
    })
    .await;
    // Bounds of a batch: lines, and a line's length (cut and marked).
    let (status, body) = node
        .send(
            "POST",
            "/v1/logs",
            &LogBatch {
                lines: vec![line("x"); MAX_BATCH_LINES + 1],
            },
        )
        .await;
    assert_error(status, &body, 413, "batch-too-large");
    let long = "y".repeat(10_000);
    eventually("a long line, cut", || async {
        node.send("POST", "/v1/logs", &LogBatch { lines: vec![line(&long)] })
            .await;
        follower.events().iter().any(|e| {
            matches!(e, LogEvent::Log(l) if l.cut && l.line.len() == 4096 && l.line.starts_with("yyy"))
        })
    })
    .await;
}

#[tokio::test]
async fn bad_filters_are_refused_and_the_tail_cap_holds() {
    let cp = TestCp::start().await;
    let acme = cp.new_tenant("acme").await;
    acme.create_app("logs", &["logs.test"]).await;
    for (query, code) in [
        ("status=6xx", "invalid-status"),
        ("status=abc", "invalid-status"),
        ("since=forever", "invalid-since"),
        ("since=1h", "invalid-since"),
        ("node=a%20b", "invalid-node"),
        ("follow=maybe", "invalid-follow"),
    ] {
        let (status, body) = acme
            .call("GET", &format!("/v1/apps/logs/logs?{query}"), None)
            .await;
        assert_error(status, &body, 400, code);
    }
    let (status, body) = acme.call("GET", "/v1/apps/nope/logs", None).await;
    assert_error(status, &body, 404, "not-found");

    // Ten followers at once, fleet-wide; the eleventh is refused.
    let client = reqwest::Client::new();
    let token = acme_token(&cp);
    let follow = || {
        client
            .get(format!("{}/v1/apps/logs/logs?follow=true", cp.url()))
            .bearer_auth(&token)
            .send()
    };
    let mut open = Vec::new();
    for _ in 0..edge_cp::api::LOG_TAILS_PER_TENANT {
        let response = follow().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        open.push(response);
    }
    let refused = follow().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tail-limit");
    // One goes away: its tail is deleted, and there is room again.
    drop(open.pop());
    let room = Mutex::new(None);
    eventually("room for a follower", || async {
        let response = follow().await.unwrap();
        let ok = response.status() == 200;
        if ok {
            *room.lock().unwrap() = Some(response);
        }
        ok
    })
    .await;

    // Starting followers is rated per tenant (30 a minute): a client that
    // reconnects in a loop is told to wait, with Retry-After.
    drop(open);
    drop(room);
    let mut limited = None;
    for _ in 0..=(edge_cp::api::LOG_TAILS_PER_MINUTE as usize) {
        let response = follow().await.unwrap();
        if response.status() == 429 {
            let retry = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            if body["error"]["code"] == "tail-rate-limited" {
                limited = Some((retry, body));
                break;
            }
        }
    }
    let (retry, body) = limited.expect("follower starts are rated");
    let retry: u64 = retry.unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_across_replicas_on_postgres_reach_a_follower_on_another() {
    use crate::replicas::{replica, token};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let init = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(["keys", "init", "--keys-dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let database = crate::pg::new_database().await.to_string();
    let s3 = crate::s3::S3Server::start();
    let x = replica(&dir.path().join("x"), &keys, &database, &s3);
    let y = replica(&dir.path().join("y"), &keys, &database, &s3);
    let admin_y = Client::at(&y.url, token(&keys, &["--role", "admin"]));
    let (status, body) = admin_y
        .send(
            "POST",
            "/v1/tenants",
            &edge_common::api::NewTenant {
                id: "acme".parse().unwrap(),
            },
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let tenant_token = token(&keys, &["--role", "tenant", "--tenant", "acme"]);
    let acme_y = Client::at(&y.url, tenant_token.clone());
    acme_y.create_app("logs", &["logs.test"]).await;
    acme_y.deploy("logs", LOG_FLOOD).await;
    // The node knows only Y: its lines go there.
    let node_dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with_replicas(
        std::slice::from_ref(&y.url),
        token(&keys, &["--role", "node", "--sub", "node-y"]),
        node_dir.path(),
    )
    .await;
    node.wait_for_body("logs.test", "logged\n").await;
    // The follower is on X: the tail it registers there reaches the node
    // through Y's snapshot, and the lines through the shared store.
    let follower = Follower::at(&x.url, &tenant_token, &["logs", "--follow", "--json"]);
    eventually("node-y's line on X", || async {
        node.get("logs.test", "/across").await;
        follower.events().iter().any(|e| {
            matches!(e, LogEvent::Log(l) if l.node == "node-y" && l.line.starts_with("hello-log GET /across"))
        })
    })
    .await;
}
