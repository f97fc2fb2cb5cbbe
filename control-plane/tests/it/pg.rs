//! A throwaway PostgreSQL for the tests: one cluster per test process,
//! made in a temp dir with the installed server binaries (`ops/setup`
//! installs Debian's `postgresql`), listening on 127.0.0.1 and a free
//! port, with a fresh database per test ([`PgCluster::new_database`]).
//!
//! As root (tests and CI run as root here) `initdb` and `postgres` run as
//! the `postgres` user through `runuser`: initdb refuses root. The server
//! runs under a small shell that holds a pipe from this process: when the
//! test process exits, however it exits, the pipe closes and the shell
//! stops the server and deletes the cluster. (The cluster lives in a
//! static, whose `Drop` never runs.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use edge_cp::store::location::PgUrl;

use crate::common::free_port;

pub struct PgCluster {
    root: PathBuf,
    pub port: u16,
    /// The watchdog shell and the write end of its stdin.
    guard: Mutex<Option<(Child, ChildStdin)>>,
}

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The process's cluster, started on first use.
pub fn cluster() -> &'static PgCluster {
    CLUSTER.get_or_init(PgCluster::start)
}

/// A fresh, empty database of the process's cluster.
pub async fn new_database() -> PgUrl {
    cluster().new_database().await
}

/// The newest installed server's `bin` directory (`EDGE_TEST_PG_BIN`
/// overrides it).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("EDGE_TEST_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: run ops/setup (it installs Debian's postgresql)"
        ),
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `path` and everything under it, to the `postgres` user (as root).
fn give_to_server_user(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown of {} failed", path.display());
}

/// `t_<n>`, unique in this process.
fn next_database_name() -> String {
    format!("t_{}", DATABASES.fetch_add(1, Ordering::Relaxed))
}

/// `program args...`, as the `postgres` user when we are root.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Stops the server (fast shutdown) once this process lets go of stdin,
/// then deletes the cluster.
const WATCHDOG: &str = r#"
"$1/postgres" -D "$2/data" -p "$3" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories="$2/sock" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=300 -c shared_buffers=32MB >"$2/server.log" 2>&1 &
pg=$!
while read -r _; do :; done
kill -INT "$pg" 2>/dev/null
wait "$pg"
rm -rf "$2"
"#;

impl PgCluster {
    fn start() -> Self {
        let bin = bin_dir();
        let root_user = running_as_root();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let root = std::env::temp_dir().join(format!("edge-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(root.join("sock")).unwrap();
        if root_user {
            give_to_server_user(&root);
        }
        let output = as_server_user(root_user, &bin.join("initdb"))
            .current_dir(&root)
            .arg("-D")
            .arg(root.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let mut watchdog = as_server_user(root_user, Path::new("/bin/sh"))
            .current_dir(&root)
            .args(["-c", WATCHDOG, "sh"])
            .arg(&bin)
            .arg(&root)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = watchdog.stdin.take().unwrap();
        let cluster = Self {
            root,
            port,
            guard: Mutex::new(Some((watchdog, stdin))),
        };
        cluster.wait_ready(&bin);
        cluster
    }

    fn wait_ready(&self, bin: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
                panic!("PostgreSQL did not come up on port {}:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of database `db` as the superuser.
    pub fn url(&self, db: &str) -> PgUrl {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
            .parse()
            .unwrap()
    }

    /// Creates `t_<n>` and returns its URL.
    pub async fn new_database(&self) -> PgUrl {
        let name = next_database_name();
        self.admin(&format!("CREATE DATABASE {name}")).await;
        self.url(&name)
    }

    /// Runs `sql` as the superuser on the `postgres` database.
    pub async fn admin(&self, sql: &str) {
        let (client, connection) = self
            .url("postgres")
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        drop(client);
        let _ = driver.await;
    }

    /// A fresh database whose files live under `dir` (a tablespace there,
    /// the directory handed to the server's user first): its name and URL.
    /// [`PgCluster::drop_in`] removes both before `dir` goes away.
    pub async fn new_database_in(&self, dir: &Path) -> (String, PgUrl) {
        let name = next_database_name();
        if running_as_root() {
            give_to_server_user(dir);
        }
        let location = dir.display().to_string().replace('\'', "''");
        self.admin(&format!(
            "CREATE TABLESPACE {name}_space LOCATION '{location}'"
        ))
        .await;
        self.admin(&format!("CREATE DATABASE {name} TABLESPACE {name}_space"))
            .await;
        let url = self.url(&name);
        (name, url)
    }

    /// Drops a database made by [`PgCluster::new_database_in`], and its
    /// tablespace: nothing of the server refers to the directory after.
    pub async fn drop_in(&self, name: &str) {
        self.admin(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await;
        self.admin(&format!("DROP TABLESPACE {name}_space")).await;
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.guard.lock().ok().and_then(|mut g| g.take()) {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}
