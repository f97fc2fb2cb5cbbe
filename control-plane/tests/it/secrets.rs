//! App secrets end to end: set with `edgectl` (the value on stdin), read
//! by a real component through wasi:config on two nodes, and found nowhere
//! else: not in an API answer, `edgectl`'s output, the control plane's
//! debug log, the guest's environment, the signed snapshot or the node's
//! persisted snapshot. Updates and deletes propagate; other tenants get
//! nothing; limits answer with their codes; a node restarted without its
//! control plane serves its 0600 copy.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use edge_common::api::{NewTenant, SecretList, SecretSet, SignedSnapshot};
use edge_fixtures::ENV;
use serde_json::{Value, json};

use crate::certs::edge_cp;
use crate::common::{
    Client, CpProcess, LogCapture, TestNode, answer, assert_error, edgectl, edgectl_with_stdin,
    eventually,
};

/// `edgectl ARGS` with `stdin` piped in: success, and stdout and stderr.
async fn edgectl_stdin(api: &str, token: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let (ok, out, err) = edgectl_with_stdin(api, token, args, stdin).await;
    (ok, format!("{out}{err}"))
}

/// What the component answers for wasi:config key `key` (status, body).
async fn config_value(node: &TestNode, key: &str) -> (u16, String) {
    node.get("vault.test", &format!("/?config={key}")).await
}

async fn wait_value(node: &TestNode, key: &str, expected: Option<&str>) {
    eventually(&format!("{key} = {expected:?} on a node"), || async {
        let (status, body) = config_value(node, key).await;
        match expected {
            Some(value) => status == 200 && body == value,
            None => status == 404,
        }
    })
    .await;
}

/// One HTTP/1.1 request written byte for byte, its path unnormalised
/// (any URL client would remove `.` and `..` segments): status and body.
async fn raw_request(api: &str, token: &str, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = api.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_component_on_every_node_and_appears_nowhere_else() {
    // The in-process nodes' log lines, debug level included.
    let node_logs = LogCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let data_arg = data.to_str().unwrap();
    let log = dir.path().join("cp.log");
    // At debug level: not even a debug line may hold a value.
    let cp = CpProcess::start(&["--data-dir", data_arg], &[("EDGE_LOG", "debug")], &log);
    let token = |args: &[&str]| {
        let mut all = vec!["token", "--data-dir", data_arg];
        all.extend_from_slice(args);
        let (ok, out, err) = edge_cp(&all, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let admin = Client::at(&cp.url, token(&["--role", "admin"]));
    for id in ["acme", "rival"] {
        let (status, body) = admin
            .send(
                "POST",
                "/v1/tenants",
                &NewTenant {
                    id: id.parse().unwrap(),
                },
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let acme_token = token(&["--role", "tenant", "--tenant", "acme"]);
    let acme = Client::at(&cp.url, acme_token.clone());
    let rival = Client::at(&cp.url, token(&["--role", "tenant", "--tenant", "rival"]));
    acme.create_app("vault", &["vault.test"]).await;
    acme.deploy("vault", ENV).await;
    let (status, body) = acme
        .call(
            "PATCH",
            "/v1/apps/vault/config",
            Some(json!({"GREETING": "hello", "SHARED": "from-config"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Set through edgectl, the value on stdin (its one trailing newline
    // dropped); a name in config values too, where the secret wins.
    let secret = "sv-7f3a9c1e-never-shown";
    let (ok, out) = edgectl_stdin(
        &cp.url,
        &acme_token,
        &["secrets", "set", "vault", "API_KEY"],
        format!("{secret}\n").as_bytes(),
    )
    .await;
    assert!(ok && out.contains("API_KEY"), "{out}");
    assert!(!out.contains(secret), "{out}");
    let (ok, out) = edgectl_stdin(
        &cp.url,
        &acme_token,
        &["secrets", "set", "vault", "SHARED"],
        b"from-secret",
    )
    .await;
    assert!(ok, "{out}");

    let nodes = tempfile::tempdir().unwrap();
    let mut first = TestNode::start(
        &cp.url,
        token(&["--role", "node", "--sub", "n1"]),
        &nodes.path().join("n1"),
    )
    .await;
    let second = TestNode::start(
        &cp.url,
        token(&["--role", "node", "--sub", "n2"]),
        &nodes.path().join("n2"),
    )
    .await;
    for node in [&first, &second] {
        wait_value(node, "API_KEY", Some(secret)).await;
        // wasi:config: the secret wins; the environment keeps the config
        // value, and has no secret at all.
        assert_eq!(
            config_value(node, "SHARED").await,
            (200, "from-secret".into())
        );
        assert_eq!(config_value(node, "GREETING").await, (200, "hello".into()));
        assert_eq!(
            node.get("vault.test", "/SHARED").await,
            (200, "from-config".into())
        );
        assert_eq!(node.get("vault.test", "/API_KEY").await.0, 404);
        let (status, env) = node.get("vault.test", "/").await;
        assert_eq!(status, 200);
        assert!(
            env.contains("GREETING=hello") && !env.contains(secret),
            "{env}"
        );
    }

    // Not in any answer of the API or of edgectl.
    let list: SecretList = answer(acme.call("GET", "/v1/apps/vault/secrets", None).await, 200);
    let names: Vec<_> = list.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["API_KEY", "SHARED"]);
    for path in [
        "/v1/apps/vault/secrets",
        "/v1/apps/vault",
        "/v1/apps/vault/config",
        "/v1/apps/vault/status",
        "/v1/apps",
    ] {
        let (status, body) = acme.call("GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.to_string().contains(secret), "{path}: {body}");
    }
    for args in [
        &["secrets", "list", "vault"][..],
        &["config", "get", "vault"],
        &["status", "vault"],
    ] {
        let (ok, out, err) = edgectl(&cp.url, &acme_token, args).await;
        assert!(ok, "{args:?}: {err}");
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{args:?}: {out}"
        );
    }
    let (_, out, _) = edgectl(&cp.url, &acme_token, &["secrets", "list", "vault"]).await;
    assert!(out.contains("API_KEY") && out.contains("SHARED"), "{out}");

    // The signed snapshot names the bundle by digest only; the node's
    // persisted copy is that snapshot; the bundle is for nodes only.
    let node_client = Client::at(&cp.url, token(&["--role", "node", "--sub", "n3"]));
    let (status, snapshot) = node_client.call("GET", "/v1/sync?since=0", None).await;
    assert_eq!(status, 200);
    let signed: SignedSnapshot = serde_json::from_value(snapshot).unwrap();
    assert!(!signed.payload.contains(secret));
    let payload: Value = serde_json::from_str(&signed.payload).unwrap();
    let digest = payload["apps"][0]["secrets"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    for node in [&first, &second] {
        let persisted = std::fs::read_to_string(node.data_dir.join("snapshot.json")).unwrap();
        assert!(persisted.contains(&digest) && !persisted.contains(secret));
        let kept = node.data_dir.join("secrets").join(format!("{digest}.json"));
        assert_eq!(mode(&kept), 0o600);
        assert_eq!(mode(&node.data_dir.join("secrets")), 0o700);
    }
    let (status, _) = acme
        .call("GET", &format!("/v1/secrets/{digest}"), None)
        .await;
    assert_eq!(status, 403, "a tenant token cannot fetch a bundle");
    let (status, body) = node_client
        .call("GET", &format!("/v1/secrets/{}", "0".repeat(64)), None)
        .await;
    assert_error(status, &body, 404, "not-found");

    // Another tenant can neither set, list nor delete it.
    let put = |value: &str| json!({ "value": value });
    let (status, body) = rival
        .call("PUT", "/v1/apps/vault/secrets/API_KEY", Some(put("stolen")))
        .await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = rival.call("GET", "/v1/apps/vault/secrets", None).await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = rival
        .call("DELETE", "/v1/apps/vault/secrets/API_KEY", None)
        .await;
    assert_error(status, &body, 404, "not-found");
    let (status, body) = rival
        .call("GET", "/v1/apps/vault/secrets?tenant=acme", None)
        .await;
    assert_error(status, &body, 403, "forbidden");

    // Bad names, values and bodies get their codes.
    let (status, body) = acme
        .call("PUT", "/v1/apps/vault/secrets/bad$name", Some(put("x")))
        .await;
    assert_error(status, &body, 400, "secret-name-invalid");
    // `..` as a name: edgectl refuses it before sending anything (a URL
    // client would have removed it and addressed the app), and the API,
    // sent it as is, refuses it too.
    for dots in ["..", "."] {
        let (ok, out, err) =
            edgectl(&cp.url, &acme_token, &["secrets", "delete", "vault", dots]).await;
        assert!(!ok && err.contains("secret-name-invalid"), "{out}{err}");
        let (ok, out) = edgectl_stdin(
            &cp.url,
            &acme_token,
            &["secrets", "set", "vault", dots],
            b"x",
        )
        .await;
        assert!(!ok && out.contains("secret-name-invalid"), "{out}");
    }
    let (status, body) =
        raw_request(&cp.url, &acme_token, "DELETE", "/v1/apps/vault/secrets/..").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("secret-name-invalid"), "{body}");
    let (status, body) =
        raw_request(&cp.url, &acme_token, "DELETE", "/v1/apps/vault/secrets/.").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("secret-name-invalid"), "{body}");
    let (status, body) = acme.call("GET", "/v1/apps/vault", None).await;
    assert_eq!(status, 200, "the app is still there: {body}");
    let big = "x".repeat(64 * 1024 + 1);
    let (status, body) = acme
        .call("PUT", "/v1/apps/vault/secrets/BIG", Some(put(&big)))
        .await;
    assert_error(status, &body, 413, "secret-too-large");
    let (status, body) = acme
        .call("PUT", "/v1/apps/vault/secrets/N", Some(json!({"value": 5})))
        .await;
    let detail = assert_error(status, &body, 400, "invalid-json");
    assert!(!detail.message.contains('5'), "{}", detail.message);
    let (status, body) = acme
        .call("DELETE", "/v1/apps/vault/secrets/NOT_THERE", None)
        .await;
    assert_error(status, &body, 404, "not-found");
    // 100 secrets an app, then `secret-limit`.
    for n in 0..98 {
        let _: SecretSet = answer(
            acme.call(
                "PUT",
                &format!("/v1/apps/vault/secrets/FILL_{n}"),
                Some(put("f")),
            )
            .await,
            200,
        );
    }
    let (status, body) = acme
        .call("PUT", "/v1/apps/vault/secrets/ONE_MORE", Some(put("x")))
        .await;
    assert_error(status, &body, 409, "secret-limit");
    // Replacing one at the limit is fine.
    let _: SecretSet = answer(
        acme.call("PUT", "/v1/apps/vault/secrets/FILL_0", Some(put("g")))
            .await,
        200,
    );
    for n in 0..98 {
        let (status, _) = acme
            .call("DELETE", &format!("/v1/apps/vault/secrets/FILL_{n}"), None)
            .await;
        assert_eq!(status, 200);
    }
    // All values together: at most 1 MiB.
    for n in 0..15 {
        let _: SecretSet = answer(
            acme.call(
                "PUT",
                &format!("/v1/apps/vault/secrets/LARGE_{n}"),
                Some(put(&"y".repeat(64 * 1024))),
            )
            .await,
            200,
        );
    }
    let (status, body) = acme
        .call(
            "PUT",
            "/v1/apps/vault/secrets/LARGE_16",
            Some(put(&"y".repeat(64 * 1024))),
        )
        .await;
    assert_error(status, &body, 413, "secrets-bundle-too-large");
    for n in 0..15 {
        let (status, _) = acme
            .call("DELETE", &format!("/v1/apps/vault/secrets/LARGE_{n}"), None)
            .await;
        assert_eq!(status, 200);
    }

    // An update (from a file: its bytes as they are, newline kept) and a
    // delete reach both nodes.
    let file = dir.path().join("value");
    std::fs::write(&file, "rotated-value\n").unwrap();
    let (ok, out, err) = edgectl(
        &cp.url,
        &acme_token,
        &[
            "secrets",
            "set",
            "vault",
            "API_KEY",
            "--from-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    for node in [&first, &second] {
        wait_value(node, "API_KEY", Some("rotated-value\n")).await;
    }
    let (ok, out, err) = edgectl(
        &cp.url,
        &acme_token,
        &["secrets", "delete", "vault", "SHARED"],
    )
    .await;
    assert!(ok, "{out}{err}");
    for node in [&first, &second] {
        wait_value(node, "SHARED", Some("from-config")).await;
    }

    // The control plane's log, at debug level, never held a value.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("secret set"), "the log is the one written");
    assert!(
        !logged.contains(secret) && !logged.contains("rotated-value"),
        "a secret value reached the log"
    );

    // Nor did the nodes' (the capture is live: the nodes' sync is in it).
    let logged = node_logs.text();
    assert!(logged.contains("DEBUG"), "debug lines are captured");
    assert!(logged.contains("vault"), "the nodes' lines are captured");
    assert!(
        !logged.contains(secret) && !logged.contains("rotated-value"),
        "a secret value reached a node's log"
    );

    // Without its control plane, a restarted node serves its own copy.
    drop(cp);
    first.restart().await;
    wait_value(&first, "API_KEY", Some("rotated-value\n")).await;
    let kept: Vec<_> = std::fs::read_dir(first.data_dir.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "stale bundles are removed: {kept:?}");
    assert_eq!(mode(&kept[0]), 0o600);
    // Reading its copy back logged no value either.
    assert!(!node_logs.text().contains("rotated-value"));
}
