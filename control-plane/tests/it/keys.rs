//! The shared keys directory replicas mount: `edge-cp keys init`, tokens
//! and the public key from it, `serve --keys-dir`, and rotating the token
//! key, all through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use edge_common::api::Whoami;

use crate::common::CpProcess;

/// Runs `edge-cp ARGS`: (success, stdout, stderr).
fn edge_cp(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-cp"))
        .args(args)
        .env("EDGE_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn token(keys: &Path) -> String {
    let (ok, out, err) = edge_cp(&[
        "token",
        "--keys-dir",
        keys.to_str().unwrap(),
        "--role",
        "admin",
    ]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

/// A control plane process on its own data directory and the shared keys.
struct Replica(CpProcess);

impl Replica {
    fn start(data: &Path, keys: &Path) -> Self {
        let (data, keys) = (data.to_str().unwrap(), keys.to_str().unwrap());
        std::fs::create_dir_all(data).unwrap();
        let log = Path::new(data).join("edge-cp.log");
        Self(CpProcess::start(
            &["--data-dir", data, "--keys-dir", keys],
            &[],
            &log,
        ))
    }

    async fn whoami(&self, token: &str) -> reqwest::StatusCode {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/whoami", self.0.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status.is_success() {
            let who: Whoami = response.json().await.unwrap();
            assert_eq!(who.role.as_str(), "admin");
        }
        status
    }

    async fn sync_key(&self, token: &str) -> String {
        let key: edge_common::api::SyncKey = reqwest::Client::new()
            .get(format!("{}/v1/sync/key", self.0.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        key.public_key
    }
}

#[tokio::test]
async fn replicas_share_one_keys_directory() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();

    // A replica never makes its own keys: without `keys init` it refuses
    // to start, and says what to run.
    let (ok, _, err) = edge_cp(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("a").to_str().unwrap(),
        "--keys-dir",
        keys_arg,
    ]);
    assert!(!ok);
    assert!(err.contains("edge-cp keys init --keys-dir"), "{err}");
    assert!(!keys.join("token-signing.pk8").exists());

    let (ok, out, err) = edge_cp(&["keys", "init", "--keys-dir", keys_arg]);
    assert!(ok, "{err}");
    assert!(out.contains("created the signing keys"), "{out}");
    let public_key = out
        .lines()
        .find_map(|l| l.strip_prefix("snapshot public key (nodes' trust_key): "))
        .unwrap()
        .to_string();
    for name in ["token-signing.pk8", "sync-signing.pk8", "kek"] {
        let mode = std::fs::metadata(keys.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let before = std::fs::read(keys.join("token-signing.pk8")).unwrap();
    // Again: nothing is replaced.
    let (ok, out, _) = edge_cp(&["keys", "init", "--keys-dir", keys_arg]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    assert_eq!(
        std::fs::read(keys.join("token-signing.pk8")).unwrap(),
        before
    );

    let (ok, out, _) = edge_cp(&["public-key", "--keys-dir", keys_arg]);
    assert!(ok);
    assert_eq!(out.trim(), public_key);

    // Two replicas: one token works on both, both sign with the same key.
    let a = Replica::start(&dir.path().join("a"), &keys);
    let b = Replica::start(&dir.path().join("b"), &keys);
    let admin = token(&keys);
    assert_eq!(a.whoami(&admin).await, 200);
    assert_eq!(b.whoami(&admin).await, 200);
    assert_eq!(a.sync_key(&admin).await, public_key);
    assert_eq!(b.sync_key(&admin).await, public_key);
    assert!(!dir.path().join("a").join("keys").exists());

    // A directory with one key only is refused, not repaired.
    std::fs::remove_file(keys.join("sync-signing.pk8")).unwrap();
    let (ok, _, err) = edge_cp(&["keys", "init", "--keys-dir", keys_arg]);
    assert!(!ok);
    assert!(err.contains("holds only one of the two keys"), "{err}");
    // Neither --keys-dir nor --data-dir: clap names what is missing.
    let (ok, _, err) = edge_cp(&["public-key"]);
    assert!(!ok);
    assert!(err.contains("--data-dir"), "{err}");
}

#[tokio::test]
async fn a_rotated_token_key_keeps_old_tokens_until_it_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();
    assert!(edge_cp(&["keys", "init", "--keys-dir", keys_arg]).0);
    let old = token(&keys);

    let (ok, out, err) = edge_cp(&["keys", "rotate-token", "--keys-dir", keys_arg]);
    assert!(ok, "{err}");
    assert!(out.contains("restart every replica"), "{out}");
    let new = token(&keys);
    let replica = Replica::start(&dir.path().join("data"), &keys);
    assert_eq!(
        replica.whoami(&old).await,
        200,
        "the old key is still accepted"
    );
    assert_eq!(replica.whoami(&new).await, 200);

    // A second rotation while the previous key is kept would void the
    // first one's tokens: refused.
    let (ok, _, err) = edge_cp(&["keys", "rotate-token", "--keys-dir", keys_arg]);
    assert!(!ok);
    assert!(err.contains("previous token key is still kept"), "{err}");

    // Retired: old tokens are refused from the next start on.
    drop(replica);
    std::fs::remove_file(keys.join("token-signing.previous.pk8")).unwrap();
    let replica = Replica::start(&dir.path().join("data"), &keys);
    assert_eq!(replica.whoami(&old).await, 401);
    assert_eq!(replica.whoami(&new).await, 200);
}
