//! `edgectl new NAME --lang rust|js|python`: each template scaffolded,
//! built with the one command it names (`cargo build --release`,
//! `npm run build`, `./build.sh`, which install what they need), deployed
//! with `edgectl deploy` through a control plane, and answering through a
//! real node.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_fixtures::lang::{Guest, guest, skipped};
use serde_json::{Value, json};

use crate::common::{TestCp, TestNode, edgectl};

/// Runs `command` in `dir`; panics with its output if it fails.
async fn build(dir: &Path, mut command: Command) {
    let dir = dir.to_path_buf();
    let output = tokio::task::spawn_blocking(move || command.current_dir(&dir).output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_projects_in_every_language_build_deploy_and_answer() {
    let cp = TestCp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&cp.url(), cp.node_token("node-a"), dir.path()).await;
    let url = cp.url();
    let admin = cp.token(edge_cp::auth::Role::Admin, "admin", None);
    let tenant = cp.token(edge_cp::auth::Role::Tenant, "acme", Some("acme"));
    let (ok, out, err) = edgectl(&url, &admin, &["tenants", "create", "acme"]).await;
    assert!(ok, "{out}{err}");

    let projects = tempfile::tempdir().unwrap();
    let at = projects.path().to_str().unwrap();

    // Refusals: a bad name, and a directory that is already there.
    let (ok, _, err) = edgectl(&url, &tenant, &["new", "My_App", "--dir", at]).await;
    assert!(!ok && err.contains("[invalid-name]"), "{err}");
    std::fs::create_dir(projects.path().join("taken")).unwrap();
    let (ok, _, err) = edgectl(&url, &tenant, &["new", "taken", "--dir", at]).await;
    assert!(!ok && err.contains("[exists]"), "{err}");
    assert_eq!(
        std::fs::read_dir(projects.path().join("taken"))
            .unwrap()
            .count(),
        0,
        "nothing written into an existing directory"
    );

    // The Rust projects' builds share one target directory between runs.
    let rust_target = PathBuf::from(edge_fixtures::LANG_DIR).with_file_name("new-projects");

    for lang in ["rust", "js", "python"] {
        let name = format!("hello-{lang}");
        // JavaScript and Python need the tool chains ops/build-guests
        // installs (or declared unavailable, loudly).
        let example = match lang {
            "js" => Some("js-hello"),
            "python" => Some("py-hello"),
            _ => None,
        };
        if let Some(example) = example
            && let Guest::Unavailable(reason) = guest(example)
        {
            skipped(&format!("edgectl new --lang {lang}"), &reason);
            continue;
        }

        let (ok, out, err) =
            edgectl(&url, &tenant, &["new", &name, "--lang", lang, "--dir", at]).await;
        assert!(ok, "{out}{err}");
        let root = projects.path().join(&name);
        assert!(
            out.contains(&format!("created {}", root.display())),
            "{out}"
        );
        let wasm = match lang {
            "rust" => {
                let mut cargo = Command::new("cargo");
                cargo
                    .args(["build", "--release"])
                    .env("CARGO_TARGET_DIR", &rust_target);
                build(&root, cargo).await;
                rust_target.join("wasm32-wasip2/release/hello_rust.wasm")
            }
            "js" => {
                let mut npm = Command::new("npm");
                npm.args(["run", "build"]);
                build(&root, npm).await;
                root.join("hello-js.wasm")
            }
            _ => {
                build(&root, Command::new("./build.sh")).await;
                root.join("hello-python.wasm")
            }
        };
        // The command `new` printed is the one that deploys it.
        let next = out.lines().last().unwrap().trim();
        assert!(
            next.starts_with(&format!("edgectl deploy {name} ")),
            "{out}"
        );

        let host = format!("{name}.test");
        let (ok, out, err) =
            edgectl(&url, &tenant, &["apps", "create", &name, "--host", &host]).await;
        assert!(ok, "{out}{err}");
        let (ok, out, err) =
            edgectl(&url, &tenant, &["deploy", &name, wasm.to_str().unwrap()]).await;
        assert!(ok && out.contains("live on 1/1 nodes"), "{out}{err}");

        assert_eq!(
            node.get(&host, "/").await,
            (200, format!("Hello from {name}!\n")),
            "{lang}"
        );
        let (status, body) = node.get(&host, "/hello/w%C3%B6rld").await;
        let document: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        assert_eq!(
            (status, document),
            (200, json!({"hello": "wörld"})),
            "{lang}"
        );
        let (status, _) = node.get(&host, "/nowhere").await;
        assert_eq!(status, 404, "{lang}");
    }
}
