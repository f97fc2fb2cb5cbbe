//! `edgectl new NAME --lang rust|js|python`: a project that builds with
//! one command and deploys with `edgectl deploy`, like `spin new` or
//! `wrangler init`. Nothing here talks to the control plane.
//!
//! - `rust`: a cdylib on the SDK (`cargo build --release`; the target is
//!   set in `.cargo/config.toml`). The SDK is not on crates.io yet, so the
//!   project points at the SDK of the checkout edgectl was built from, or
//!   at `--sdk PATH`.
//! - `js`: ComponentizeJS (`npm run build`, which installs it first).
//! - `python`: componentize-py (`./build.sh`, which installs it into
//!   `.venv` unless `componentize-py` is on the PATH).
//!
//! The JavaScript and Python projects carry the wasi:http WIT the node
//! serves (`sdk/wit/proxy`, embedded here at build time).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

#[derive(Args)]
pub struct NewArgs {
    /// The project's name: a directory of that name is created, and the
    /// component is NAME.wasm. Lowercase letters, digits and dashes.
    pub name: String,
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// Where to create the project's directory (default: here).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The edge SDK to depend on (Rust only; default: the SDK of the
    /// checkout this edgectl was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// The wasi:http WIT (deps of `wasi:http/proxy@0.2.12`), by file name.
const WIT_DEPS: &[(&str, &str)] = &[
    (
        "cli.wit",
        include_str!("../../../sdk/wit/proxy/deps/cli.wit"),
    ),
    (
        "clocks.wit",
        include_str!("../../../sdk/wit/proxy/deps/clocks.wit"),
    ),
    (
        "filesystem.wit",
        include_str!("../../../sdk/wit/proxy/deps/filesystem.wit"),
    ),
    (
        "http.wit",
        include_str!("../../../sdk/wit/proxy/deps/http.wit"),
    ),
    ("io.wit", include_str!("../../../sdk/wit/proxy/deps/io.wit")),
    (
        "random.wit",
        include_str!("../../../sdk/wit/proxy/deps/random.wit"),
    ),
    (
        "sockets.wit",
        include_str!("../../../sdk/wit/proxy/deps/sockets.wit"),
    ),
];

/// The SDK's lockfile, which a Rust project starts from.
const SDK_LOCK: &str = include_str!("../../../sdk/Cargo.lock");

/// The SDK of the checkout edgectl was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Why a project could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NewError(pub String);

fn check_name(name: &str) -> Result<(), NewError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(NewError(format!(
            "invalid project name {name:?}: 1 to 63 lowercase letters, digits and dashes, starting with a letter [invalid-name]"
        )))
    }
}

/// Creates the project; returns its directory and what to run next.
pub fn run(args: &NewArgs) -> Result<(PathBuf, String), NewError> {
    check_name(&args.name)?;
    let root = args.dir.join(&args.name);
    if root.exists() {
        return Err(NewError(format!(
            "{} already exists; nothing was written [exists]",
            root.display()
        )));
    }
    let files = match args.lang {
        Lang::Rust => rust(&args.name, args.sdk.as_deref())?,
        Lang::Js => js(&args.name),
        Lang::Python => python(&args.name),
    };
    for (path, contents) in &files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| NewError(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| NewError(format!("cannot write {}: {e}", path.display())))?;
    }
    #[cfg(unix)]
    if args.lang == Lang::Python {
        use std::os::unix::fs::PermissionsExt;
        let script = root.join("build.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| NewError(format!("cannot make {} executable: {e}", script.display())))?;
    }
    let (build, wasm) = build_and_output(args.lang, &args.name);
    let next = format!(
        "cd {dir}\n  {build}\n  edgectl apps create {name} --host {name}.example.com   # once\n  edgectl deploy {name} {wasm}",
        dir = root.display(),
        name = args.name,
    );
    Ok((root, next))
}

/// The project's build command, and the component it writes (relative to
/// the project).
pub fn build_and_output(lang: Lang, name: &str) -> (&'static str, String) {
    match lang {
        Lang::Rust => (
            "cargo build --release",
            format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
        ),
        Lang::Js => ("npm run build", format!("{name}.wasm")),
        Lang::Python => ("./build.sh", format!("{name}.wasm")),
    }
}

type Files = Vec<(String, String)>;

fn wit(files: &mut Files, version: &str) {
    for (name, text) in WIT_DEPS {
        let text = if version == "0.2.12" {
            text.to_string()
        } else {
            text.replace("0.2.12", version)
        };
        files.push((format!("wit/deps/{name}"), text));
    }
    files.push((
        "wit/world.wit".into(),
        format!(
            "// The wasi:http 0.2 proxy world, as the edge node serves it.\npackage edge:guest;\n\nworld proxy {{\n  include wasi:http/proxy@{version};\n}}\n"
        ),
    ));
}

fn rust(name: &str, sdk: Option<&Path>) -> Result<Files, NewError> {
    let sdk = match sdk {
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(BUILT_SDK),
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        NewError(format!(
            "the edge SDK is not at {} ({e}): pass --sdk PATH (the `sdk/` directory of the platform's repository)",
            sdk.display()
        ))
    })?;
    let sdk = sdk.display().to_string().replace('\\', "/");
    Ok(vec![
        (
            "Cargo.toml".into(),
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
edge-sdk = {{ path = "{sdk}", features = ["json"] }}

[profile.release]
# Small components compile and instantiate faster.
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
"#
            ),
        ),
        (
            ".cargo/config.toml".into(),
            "[build]\ntarget = \"wasm32-wasip2\"\n".into(),
        ),
        // The versions the SDK is built and tested with (cargo adds the
        // project itself on the first build).
        ("Cargo.lock".into(), SDK_LOCK.into()),
        (".gitignore".into(), "/target\n".into()),
        (
            "src/lib.rs".into(),
            format!(
                r#"//! {name}: an edge component.
//!
//! Build: `cargo build --release` (needs `rustup target add wasm32-wasip2`).
//! Deploy: `edgectl deploy APP target/wasm32-wasip2/release/{file}.wasm`.

use std::collections::BTreeMap;

use edge_sdk::http::StatusCode;
use edge_sdk::json::json_response;
use edge_sdk::router::Router;
use edge_sdk::{{Body, Request, Response}};

fn handle(req: Request) -> Response {{
    Router::new()
        .get("/", |_req, _params| Response::new(Body::from("Hello from {name}!\n")))
        .get("/hello/:name", |_req, params| {{
            json_response(StatusCode::OK, &BTreeMap::from([("hello", &params["name"])]))
        }})
        .handle(req)
}}

edge_sdk::handler!(handle);
"#,
                file = name.replace('-', "_")
            ),
        ),
        ("README.md".into(), readme(name, Lang::Rust)),
    ])
}

fn js(name: &str) -> Files {
    let mut files = vec![
        (
            "package.json".into(),
            format!(
                r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "prebuild": "test -d node_modules || npm install --no-audit --no-fund",
    "build": "componentize-js src/index.js --wit wit --world-name proxy -o {name}.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0"
  }}
}}
"#
            ),
        ),
        (
            ".gitignore".into(),
            format!("/node_modules\n/{name}.wasm\n"),
        ),
        (
            "src/index.js".into(),
            format!(
                r#"// {name}: an edge component (ComponentizeJS, the fetch-event API).
// Build: `npm run build`. Deploy: `edgectl deploy APP {name}.wasm`.

function json(status, document) {{
  return new Response(JSON.stringify(document) + '\n', {{
    status,
    headers: {{ 'content-type': 'application/json' }},
  }});
}}

addEventListener('fetch', (event) => {{
  const path = new URL(event.request.url).pathname;
  const hello = path.match(/^\/hello\/([^/]+)$/);
  if (path === '/') {{
    event.respondWith(new Response('Hello from {name}!\n'));
  }} else if (hello) {{
    event.respondWith(json(200, {{ hello: decodeURIComponent(hello[1]) }}));
  }} else {{
    event.respondWith(json(404, {{ error: 'not found' }}));
  }}
}});
"#
            ),
        ),
        ("README.md".into(), readme(name, Lang::Js)),
    ];
    // StarlingMonkey's engine exports wasi:http@0.2.10.
    wit(&mut files, "0.2.10");
    files
}

fn python(name: &str) -> Files {
    let mut files = vec![
        (
            "build.sh".into(),
            format!(
                r#"#!/usr/bin/env bash
# Builds {name}.wasm with componentize-py, installing it into .venv first
# unless a `componentize-py` is on the PATH (or in $COMPONENTIZE_PY).
set -euo pipefail
cd "$(dirname "$0")"
cpy="${{COMPONENTIZE_PY:-$(command -v componentize-py || true)}}"
if [ -z "$cpy" ]; then
  if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q componentize-py==0.25.1
  fi
  cpy=.venv/bin/componentize-py
fi
# -p src, not -p .: componentize-py packs the directories it is given, and
# .venv must not end up inside the component. VIRTUAL_ENV is unset for the
# same reason.
env -u VIRTUAL_ENV "$cpy" -q -d wit -w wasi:http/proxy@0.2.12 componentize -p src app -o {name}.wasm
echo "built {name}.wasm"
"#
            ),
        ),
        (
            ".gitignore".into(),
            format!("/.venv\n/{name}.wasm\n__pycache__/\n"),
        ),
        (
            "src/app.py".into(),
            format!(
                r#""""{name}: an edge component (componentize-py, wasi:http).

Build: `./build.sh`. Deploy: `edgectl deploy APP {name}.wasm`.
"""

import json
from urllib.parse import unquote

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def respond(response_out, status, content_type, payload):
    response = OutgoingResponse(
        Fields.from_list(
            [
                ("content-type", content_type),
                ("content-length", str(len(payload)).encode()),
            ]
        )
    )
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        for start in range(0, len(payload), 4096):
            stream.blocking_write_and_flush(payload[start : start + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        if path == "/":
            respond(response_out, 200, b"text/plain", b"Hello from {name}!\n")
        elif path.startswith("/hello/") and "/" not in path[7:]:
            document = {{"hello": unquote(path[7:])}}
            respond(response_out, 200, b"application/json", (json.dumps(document) + "\n").encode())
        else:
            respond(response_out, 404, b"application/json", b'{{"error": "not found"}}\n')
"#
            ),
        ),
        ("README.md".into(), readme(name, Lang::Python)),
    ];
    wit(&mut files, "0.2.12");
    files
}

fn readme(name: &str, lang: Lang) -> String {
    let (build, wasm) = build_and_output(lang, name);
    let lang = match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
    };
    format!(
        "# {name}\n\nAn edge component in {lang}, made by `edgectl new`.\n\n```sh\n{build}                       # build the component\nedgectl apps create {name} --host {name}.example.com\nedgectl deploy {name} {wasm}   # upload, activate, wait for every node\ncurl https://{name}.example.com/hello/world\n```\n\nIt answers `GET /` with a greeting and `GET /hello/NAME` with JSON.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "Caps", "9lives", "trailing-", "under_score", "dot.ted"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("my-app-2").unwrap();
    }

    #[test]
    fn every_language_gets_its_files_and_an_existing_directory_is_kept() {
        let dir = std::env::temp_dir().join(format!("edgectl-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (lang, expected) in [
            (
                Lang::Rust,
                &[
                    "Cargo.toml",
                    ".cargo/config.toml",
                    "src/lib.rs",
                    "README.md",
                ][..],
            ),
            (
                Lang::Js,
                &[
                    "package.json",
                    "src/index.js",
                    "wit/world.wit",
                    "wit/deps/http.wit",
                ][..],
            ),
            (
                Lang::Python,
                &[
                    "build.sh",
                    "src/app.py",
                    "wit/world.wit",
                    "wit/deps/http.wit",
                ][..],
            ),
        ] {
            let args = NewArgs {
                name: format!("demo-{lang:?}").to_lowercase(),
                lang,
                dir: dir.clone(),
                sdk: None,
            };
            let (root, next) = run(&args).unwrap();
            for file in expected {
                assert!(root.join(file).is_file(), "{lang:?}: {file}");
            }
            assert!(next.contains("edgectl deploy demo-"), "{next}");
            // A second run writes nothing over the first.
            let err = run(&args).unwrap_err();
            assert!(err.0.contains("[exists]"), "{err}");
        }
        let js_http = std::fs::read_to_string(dir.join("demo-js/wit/deps/http.wit")).unwrap();
        assert!(js_http.contains("package wasi:http@0.2.10;"));
        assert!(!js_http.contains("0.2.12"));
        let py_world = std::fs::read_to_string(dir.join("demo-python/wit/world.wit")).unwrap();
        assert!(py_world.contains("wasi:http/proxy@0.2.12"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
