//! The disk tier (`[cache] disk_path`): entries survive a restart of the
//! node (HIT, right body, right `Age`), its files stay within
//! `disk_capacity_bytes`, purges (hard and soft) reach both tiers and
//! outlive a restart, unusable files are dropped at startup, a file never
//! answers for another tenant's key, and a 100 MiB object streams through
//! a node process without being held in memory.

use std::path::PathBuf;

use super::*;
use crate::common::{TestNodeBuilder, eventually};
use crate::origin_server::Script;

/// A disk tier directory that outlives the nodes started on it.
struct Disk {
    dir: tempfile::TempDir,
    apps: Vec<(&'static str, &'static str)>,
    capacity: u64,
    /// The memory tier's `max_entry_bytes`: larger bodies are on disk only.
    memory_max: usize,
}

impl Disk {
    fn new(apps: &[(&'static str, &'static str)]) -> Disk {
        Disk {
            dir: tempfile::tempdir().expect("temp dir"),
            apps: apps.to_vec(),
            capacity: 64 << 20,
            memory_max: 4096,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn builder(&self, mode: Mode, origin: &ScriptedOrigin) -> TestNodeBuilder {
        let apps: Vec<AppSpec<'_>> = self.apps.iter().map(|(n, t)| (*n, *t, None)).collect();
        let (path, capacity, memory_max) = (self.path(), self.capacity, self.memory_max);
        Fx::builder(mode, origin, &apps, None).cache(move |cache| {
            cache.disk_path = Some(path);
            cache.disk_capacity_bytes = capacity;
            cache.max_entry_bytes = memory_max;
        })
    }

    async fn start(&self, mode: Mode) -> Fx {
        let origin = ScriptedOrigin::start().await;
        let builder = self.builder(mode, &origin);
        Fx::started(mode, origin, builder).await
    }

    /// Stops `fx`'s node and starts another on the same origin and disk.
    async fn restart(&self, fx: Fx) -> Fx {
        let Fx {
            mode,
            origin,
            mut node,
            ..
        } = fx;
        node.shutdown().await;
        drop(node);
        let builder = self.builder(mode, &origin);
        Fx::started(mode, origin, builder).await
    }

    /// The tier's files (outside `tmp`), with their sizes.
    fn files(&self) -> Vec<(PathBuf, u64)> {
        let mut files = Vec::new();
        let Ok(top) = std::fs::read_dir(self.path()) else {
            return files;
        };
        for first in top.flatten().filter(|d| d.file_name() != "tmp") {
            let Ok(second) = std::fs::read_dir(first.path()) else {
                continue;
            };
            for dir in second.flatten() {
                let Ok(entries) = std::fs::read_dir(dir.path()) else {
                    continue;
                };
                for file in entries.flatten() {
                    if let Ok(meta) = file.metadata() {
                        files.push((file.path(), meta.len()));
                    }
                }
            }
        }
        files
    }

    async fn wait_files(&self, n: usize) {
        eventually(&format!("{n} files on disk"), || async {
            self.files().len() == n
        })
        .await;
    }

    /// The file holding `target` of `host` (found by the key in its
    /// header).
    fn file_of(&self, host: &str, target: &str) -> PathBuf {
        let needle = format!("{host}\0{target}");
        self.files()
            .into_iter()
            .map(|(path, _)| path)
            .find(|path| {
                std::fs::read(path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
            .unwrap_or_else(|| panic!("no file for {host}{target}"))
    }
}

/// Waits until `fx`'s node has indexed `n` files of `tenant`'s `app` (the
/// startup scan runs in the background).
async fn wait_indexed(fx: &Fx, tenant: &str, app: &str, n: f64) {
    eventually(&format!("{n} files indexed"), || async {
        fx.metric(
            "edge_cache_disk_entries",
            &[("tenant", tenant), ("app", app)],
        )
        .await
            == n
    })
    .await;
}

/// An admin purge of `acme`'s `web`; its status.
async fn purge(fx: &Fx, body: &str) -> u16 {
    fx.node.admin_purge(Some(PURGE_TOKEN), body).await.0
}

/// A soft purge of surrogate key `tag`; its status.
async fn soft(fx: &Fx, tag: &str) -> u16 {
    let body = format!(r#"{{"tenant":"acme","app":"web","key":"{tag}","soft":true}}"#);
    purge(fx, &body).await
}

rule_tests!(a_restart_keeps_what_was_stored);
/// A small response (memory and disk) and one over the memory tier's
/// limit (disk only, written as it streamed to the client) are both hits
/// after a restart, with their bodies and their `Age` going on.
async fn a_restart_keeps_what_was_stored(mode: Mode) {
    let disk = Disk::new(&[("web", "acme")]);
    let fx = disk.start(mode).await;
    let large = "L".repeat(20_000);
    fx.origin.script(
        "/small",
        Script::ok("small").cc("max-age=600").header("age", "100"),
    );
    fx.origin
        .script("/large", Script::ok(&large).cc("max-age=600"));
    fx.get("/small", &[]).await.expect(200, "MISS", "small#1");
    fx.get("/large", &[])
        .await
        .expect(200, "MISS", &format!("{large}#1"));
    disk.wait_files(2).await;
    // Over the memory tier's limit: answered from its file.
    fx.get("/large", &[])
        .await
        .expect(200, "HIT", &format!("{large}#1"));

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 2.0).await;
    let in_memory = || fx.metric("edge_cache_bytes", &[("tenant", "acme"), ("app", "web")]);
    assert_eq!(in_memory().await, 0.0, "the memory tier starts empty");
    let small = fx.get("/small", &[]).await;
    small.expect(200, "HIT", "small#1");
    // Cache on second hit: a file read once is served, not promoted.
    assert_eq!(in_memory().await, 0.0, "not promoted on its first hit");
    assert!(
        small.age() >= 100,
        "the stored Age goes on: {}",
        small.age()
    );
    fx.get("/large", &[])
        .await
        .expect(200, "HIT", &format!("{large}#1"));
    // The second hit promotes it into memory: still a hit, and the origin
    // never asked again.
    fx.get("/small", &[]).await.expect(200, "HIT", "small#1");
    assert!(in_memory().await > 0.0, "promoted on its second hit");
    assert_eq!(fx.origin.requests("/small"), 1);
    assert_eq!(fx.origin.requests("/large"), 1);
    assert!(
        fx.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            == 0.0,
        "nothing was written again after the restart"
    );
}

rule_tests!(purges_reach_both_tiers_and_outlive_a_restart);
/// Hard purges by URL, surrogate key and app remove the files too: what
/// they removed is not back after a restart, and a purge after a restart
/// (of entries on disk only) removes them as well.
async fn purges_reach_both_tiers_and_outlive_a_restart(mode: Mode) {
    let disk = Disk::new(&[("web", "acme")]);
    let fx = disk.start(mode).await;
    for path in ["/p1", "/p3", "/p4"] {
        fx.origin
            .script(path, Script::ok(&path[1..]).cc("max-age=600"));
    }
    fx.origin.script(
        "/p2",
        Script::ok("p2")
            .cc("max-age=600")
            .header("surrogate-key", "k2"),
    );
    for path in ["/p1", "/p2", "/p3", "/p4"] {
        fx.get(path, &[])
            .await
            .expect(200, "MISS", &format!("{}#1", &path[1..]));
    }
    disk.wait_files(4).await;
    let url = match mode.via {
        Via::Route => "/p1".to_string(),
        Via::Fetch => format!("http://origin.test:{}/p1", fx.origin.port()),
    };
    assert_eq!(
        purge(
            &fx,
            &format!(r#"{{"tenant":"acme","app":"web","url":"{url}"}}"#)
        )
        .await,
        200
    );
    assert_eq!(
        purge(&fx, r#"{"tenant":"acme","app":"web","key":"k2"}"#).await,
        200
    );
    // Out of the index at once (the next GET misses); the files go in
    // the background.
    disk.wait_files(2).await;
    fx.get("/p1", &[]).await.expect(200, "MISS", "p1#2");
    disk.wait_files(3).await;

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 3.0).await;
    fx.get("/p2", &[]).await.expect(200, "MISS", "p2#2");
    fx.get("/p1", &[]).await.expect(200, "HIT", "p1#2");
    // The whole app: p3 is on disk only (never read since the restart).
    assert_eq!(
        purge(&fx, r#"{"tenant":"acme","app":"web","all":true}"#).await,
        200
    );
    disk.wait_files(0).await;
    fx.get("/p3", &[]).await.expect(200, "MISS", "p3#2");
    fx.get("/p1", &[]).await.expect(200, "MISS", "p1#3");
    disk.wait_files(2).await;

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 2.0).await;
    fx.get("/p4", &[]).await.expect(200, "MISS", "p4#2");
    fx.get("/p3", &[]).await.expect(200, "HIT", "p3#2");
}

rule_tests!(a_soft_purge_survives_a_restart);
/// A soft purge marks the file itself: after a restart the entry is
/// revalidated (a 304 from the origin), not served as a hit, whether the
/// purge came before the restart or reached an entry on disk only after
/// one.
async fn a_soft_purge_survives_a_restart(mode: Mode) {
    let disk = Disk::new(&[("web", "acme")]);
    let fx = disk.start(mode).await;
    for (path, tag) in [("/s", "ks"), ("/t", "kt")] {
        fx.origin.script(
            path,
            Script::ok(&path[1..])
                .cc("max-age=600")
                .header("etag", &format!("\"{tag}\""))
                .header("surrogate-key", tag),
        );
        fx.get(path, &[])
            .await
            .expect(200, "MISS", &format!("{}#1", &path[1..]));
    }
    disk.wait_files(2).await;
    assert_eq!(soft(&fx, "ks").await, 200);

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 2.0).await;
    assert_eq!(soft(&fx, "kt").await, 200, "reaches /t, on disk only");
    fx.get("/s", &[]).await.expect(200, "REVALIDATED", "s#1");
    assert_eq!(fx.origin.not_modified("/s"), 1);
    // The revalidated response is written again (fresh).
    eventually("the revalidated /s is written", || async {
        fx.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            == 1.0
    })
    .await;

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 2.0).await;
    fx.get("/t", &[]).await.expect(200, "REVALIDATED", "t#1");
    assert_eq!(fx.origin.not_modified("/t"), 1);
    // Revalidated: fresh again, from memory and after another restart.
    fx.get("/s", &[]).await.expect(200, "HIT", "s#1");
    disk.wait_files(2).await;
}

/// Fills the tier past `disk_capacity_bytes` with bodies over the memory
/// tier's limit: the files on disk (summed) stay within it, and the oldest
/// entries are gone.
#[tokio::test]
async fn the_disk_holds_its_capacity() {
    let mut disk = Disk::new(&[("web", "acme")]);
    disk.capacity = 1 << 20;
    let fx = disk.start(Mode::ROUTE).await;
    let body = "f".repeat(64 << 10);
    let written = || async {
        fx.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            + fx.metric("edge_cache_disk_writes_total", &[("result", "skipped")])
                .await
    };
    for i in 0..40 {
        let path = format!("/fill/{i}");
        fx.origin.script(&path, Script::ok(&body).cc("max-age=600"));
        fx.get(&path, &[])
            .await
            .expect(200, "MISS", &format!("{body}#1"));
        eventually("the write is done", || async {
            written().await == f64::from(i + 1)
        })
        .await;
    }
    assert!(
        fx.metric("edge_cache_disk_writes_total", &[("result", "stored")])
            .await
            > 16.0,
        "more was written than fits"
    );
    eventually("the files fit the capacity", || async {
        let total: u64 = disk.files().iter().map(|(_, len)| len).sum();
        total <= disk.capacity && !disk.files().is_empty()
    })
    .await;
    let gauge = fx
        .metric(
            "edge_cache_disk_bytes",
            &[("tenant", "acme"), ("app", "web")],
        )
        .await;
    assert!(gauge > 0.0 && gauge <= disk.capacity as f64, "{gauge}");
    fx.get("/fill/0", &[])
        .await
        .expect(200, "MISS", &format!("{body}#2"));
    fx.get("/fill/39", &[])
        .await
        .expect(200, "HIT", &format!("{body}#1"));
}

/// Files that are truncated, of another format version or not the node's
/// at all, and temporary files a crash left behind, are deleted at startup
/// and never served; intact ones are.
#[tokio::test]
async fn unusable_files_are_dropped_at_startup() {
    let disk = Disk::new(&[("web", "acme")]);
    let fx = disk.start(Mode::ROUTE).await;
    for path in ["/cut", "/version", "/intact"] {
        fx.origin
            .script(path, Script::ok(&path[1..].repeat(100)).cc("max-age=600"));
        fx.get(path, &[]).await;
    }
    disk.wait_files(3).await;
    let mut fx = fx;
    fx.node.shutdown().await;

    let cut = disk.file_of("web.test", "/cut");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let version = disk.file_of("web.test", "/version");
    let mut bytes = std::fs::read(&version).unwrap();
    bytes[4] = bytes[4].wrapping_add(1);
    std::fs::write(&version, &bytes).unwrap();
    let fan_out = cut.parent().unwrap().to_path_buf();
    let foreign = fan_out.join("not-a-cache-file");
    std::fs::write(&foreign, b"GIF89a, not ours").unwrap();
    let leftover = disk.path().join("tmp").join("0123-crashed");
    std::fs::write(&leftover, b"EDGC half a file").unwrap();

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 1.0).await;
    eventually("unusable files are deleted", || async {
        !cut.exists() && !version.exists() && !foreign.exists() && !leftover.exists()
    })
    .await;
    fx.get("/cut", &[])
        .await
        .expect(200, "MISS", &format!("{}#2", "cut".repeat(100)));
    fx.get("/version", &[])
        .await
        .expect(200, "MISS", &format!("{}#2", "version".repeat(100)));
    fx.get("/intact", &[])
        .await
        .expect(200, "HIT", &format!("{}#1", "intact".repeat(100)));
}

/// A hard purge that arrives while the startup scan runs (slowed down by
/// thousands of unusable files for it to read and delete) is not undone
/// when the scan reaches the purged file: the file is deleted, never
/// indexed, and never answers; the fresh copy fetched after the purge is
/// what outlives the next restart.
#[tokio::test]
async fn a_purge_during_the_startup_scan_is_not_undone() {
    let disk = Disk::new(&[("web", "acme")]);
    let fx = disk.start(Mode::ROUTE).await;
    fx.origin.script("/a", Script::ok("a").cc("max-age=600"));
    fx.origin.script("/b", Script::ok("b").cc("max-age=600"));
    fx.get("/a", &[]).await.expect(200, "MISS", "a#1");
    fx.get("/b", &[]).await.expect(200, "MISS", "b#1");
    disk.wait_files(2).await;
    let mut fx = fx;
    fx.node.shutdown().await;
    let purged = disk.file_of("web.test", "/a");
    let junk: Vec<PathBuf> = (0..10_000u32)
        .map(|i| {
            let dir = disk
                .path()
                .join(format!("{:02x}", i % 256))
                .join(format!("{:02x}", i / 256 % 256));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("junk-{i}"));
            std::fs::write(&path, b"not a cache file").unwrap();
            path
        })
        .collect();

    let fx = disk.restart(fx).await;
    assert_eq!(
        purge(&fx, r#"{"tenant":"acme","app":"web","url":"/a"}"#).await,
        200
    );
    // Until the scan has passed both files: /b indexed, and /a deleted
    // (had it been indexed, as before the fix, it would count too and a
    // hit now would serve it).
    eventually("the scan reached both files", || async {
        let indexed = fx
            .metric(
                "edge_cache_disk_entries",
                &[("tenant", "acme"), ("app", "web")],
            )
            .await;
        indexed + f64::from(u8::from(!purged.exists())) >= 2.0
    })
    .await;
    fx.get("/a", &[]).await.expect(200, "MISS", "a#2");
    for _ in 0..20 {
        fx.get("/a", &[]).await.expect(200, "HIT", "a#2");
    }
    eventually("the scan is over", || async {
        junk.iter().all(|p| !p.exists())
    })
    .await;
    eventually("the purged file is deleted", || async { !purged.exists() }).await;
    fx.get("/a", &[]).await.expect(200, "HIT", "a#2");
    fx.get("/b", &[]).await.expect(200, "HIT", "b#1");

    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 2.0).await;
    fx.get("/a", &[]).await.expect(200, "HIT", "a#2");
    fx.get("/b", &[]).await.expect(200, "HIT", "b#1");
}

/// The index finds a file by key, and the file must name the same key: a
/// file replaced by another tenant's (same path) is dropped and counted,
/// and the request misses instead of getting the other tenant's body.
#[tokio::test]
async fn another_tenants_file_is_never_served() {
    let disk = Disk::new(&[("web", "acme"), ("other", "beta")]);
    let fx = disk.start(Mode::ROUTE).await;
    let body = "x".repeat(8000);
    fx.origin.script("/x", Script::ok(&body).cc("max-age=600"));
    fx.get("/x", &[])
        .await
        .expect(200, "MISS", &format!("{body}#1"));
    fx.send("other", Method::GET, "/x", &[], None)
        .await
        .expect(200, "MISS", &format!("{body}#2"));
    disk.wait_files(2).await;
    let acme = disk.file_of("web.test", "/x");
    let beta = disk.file_of("other.test", "/x");
    std::fs::copy(&beta, &acme).unwrap();
    // Bodies over the memory tier's limit: the next hit reads the file.
    fx.get("/x", &[])
        .await
        .expect(200, "MISS", &format!("{body}#3"));
    assert_eq!(
        fx.metric("edge_cache_disk_read_errors_total", &[]).await,
        1.0
    );
    fx.send("other", Method::GET, "/x", &[], None)
        .await
        .expect(200, "HIT", &format!("{body}#2"));
}

/// The same for a body small enough for the memory tier, after a restart
/// (the memory tier is empty): such a hit reads the whole file from the
/// page cache on the async worker, and must check it just as strictly.
#[tokio::test]
async fn another_tenants_small_file_is_never_served() {
    let disk = Disk::new(&[("web", "acme"), ("other", "beta")]);
    let fx = disk.start(Mode::ROUTE).await;
    fx.origin
        .script("/x", Script::ok("small").cc("max-age=600"));
    fx.get("/x", &[]).await.expect(200, "MISS", "small#1");
    fx.send("other", Method::GET, "/x", &[], None)
        .await
        .expect(200, "MISS", "small#2");
    disk.wait_files(2).await;
    let fx = disk.restart(fx).await;
    wait_indexed(&fx, "acme", "web", 1.0).await;
    wait_indexed(&fx, "beta", "other", 1.0).await;
    let acme = disk.file_of("web.test", "/x");
    let beta = disk.file_of("other.test", "/x");
    // Read once, so that its pages are in the page cache.
    let _ = std::fs::read(&beta).unwrap();
    std::fs::copy(&beta, &acme).unwrap();
    fx.get("/x", &[]).await.expect(200, "MISS", "small#3");
    assert_eq!(
        fx.metric("edge_cache_disk_read_errors_total", &[]).await,
        1.0
    );
    fx.send("other", Method::GET, "/x", &[], None)
        .await
        .expect(200, "HIT", "small#2");
}

/// `edge-node` as a process: a 100 MiB object, over the memory tier's
/// limit, is stored on disk as it streams to a slow client, then served
/// from its file to another slow client, and the node's peak resident
/// memory stays far below the object's size.
#[tokio::test]
async fn a_large_object_streams_with_bounded_rss() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const SIZE: usize = 100 << 20;
    let origin = ScriptedOrigin::start().await;
    origin.script("/big", Script::ok(&"b".repeat(SIZE)).cc("max-age=600"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
             [cache]\ncapacity_bytes = 16777216\nmax_entry_bytes = 1048576\n\
             disk_path = {:?}\ndisk_capacity_bytes = 536870912\n\n\
             [[apps]]\nname = \"big\"\ntenant = \"acme\"\nhosts = [\"big.test\"]\n\
             origin = \"{}\"\n",
            dir.path().join("cache"),
            origin.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn edge-node");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let _child = Kill(child);
    let (http, admin) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut find = |name: &str| -> std::net::SocketAddr {
            let prefix = format!("edge-node: {name} listening on ");
            loop {
                let line = lines.next().expect("edge-node exited").expect("stdout");
                if let Some(addr) = line.strip_prefix(&prefix) {
                    return addr.parse().expect("address");
                }
            }
        };
        (find("http"), find("admin"))
    })
    .await
    .unwrap();
    let status = |field: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field}"))
            * 1024
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let slow_download = |expect_cache: &'static str, expect_tail: String| {
        let client = client.clone();
        async move {
            let mut response = client
                .get(format!("http://{http}/big"))
                .header("host", "big.test")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-cache"], expect_cache);
            let (mut received, mut next_pause) = (0usize, 0usize);
            let mut tail = Vec::new();
            while let Some(chunk) = response.chunk().await.unwrap() {
                received += chunk.len();
                tail.extend_from_slice(&chunk[chunk.len().saturating_sub(2)..]);
                tail.drain(..tail.len().saturating_sub(2));
                if received >= next_pause {
                    // A slow client: the node must not read ahead into
                    // memory to keep it fed.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    next_pause += 1 << 20;
                }
            }
            assert_eq!(
                tail,
                expect_tail.as_bytes(),
                "the origin's answer, to its end"
            );
            received
        }
    };
    let before = status("VmRSS:");
    let metrics = || async {
        let Ok(response) = client.get(format!("http://{admin}/metrics")).send().await else {
            return String::new();
        };
        response.text().await.unwrap_or_default()
    };
    let writes = |text: &str, result: &str| {
        metric_value(text, "edge_cache_disk_writes_total", &[("result", result)]).unwrap_or(0.0)
    };
    // A streamed write that falls too far behind the client is given up
    // (by design: the client is never slowed down for the disk), which a
    // loaded machine can cause; the next miss tries again. So: fetch until
    // a write is stored, each write's outcome awaited, a few tries at most.
    let mut fetched = 0;
    loop {
        fetched += 1;
        let outcomes_before = {
            let text = metrics().await;
            writes(&text, "stored") + writes(&text, "skipped") + writes(&text, "failed")
        };
        assert_eq!(slow_download("MISS", format!("#{fetched}")).await, SIZE + 2);
        let mut text = metrics().await;
        for _ in 0..1500 {
            if writes(&text, "stored") + writes(&text, "skipped") + writes(&text, "failed")
                > outcomes_before
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            text = metrics().await;
        }
        if writes(&text, "stored") >= 1.0 {
            break;
        }
        assert!(
            fetched < 5 && writes(&text, "failed") == 0.0,
            "no streamed write of the object was stored in {fetched} tries: {}",
            text.lines()
                .filter(|l| l.starts_with("edge_cache_disk"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for _ in 0..1500 {
        let text = metrics().await;
        let entries = metric_value(
            &text,
            "edge_cache_disk_entries",
            &[("tenant", "acme"), ("app", "big")],
        );
        if entries == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "edge_cache_disk_entries",
            &[("tenant", "acme"), ("app", "big")],
        ),
        Some(1.0),
        "the object is on disk: {}",
        text.lines()
            .filter(|l| l.starts_with("edge_cache"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Served from its file: the answer that was stored, nothing fetched.
    assert_eq!(slow_download("HIT", format!("#{fetched}")).await, SIZE + 2);
    assert_eq!(origin.requests("/big"), fetched);
    let peak = status("VmHWM:");
    eprintln!(
        "edge-node RSS before the downloads {} MiB, peak {} MiB (object {} MiB)",
        before >> 20,
        peak >> 20,
        SIZE >> 20
    );
    assert!(
        peak < before + (40 << 20),
        "peak RSS {} MiB, {} MiB before the downloads: the object was held in memory",
        peak >> 20,
        before >> 20
    );
}
