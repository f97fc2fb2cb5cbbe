//! Shows the app's config values: `GET /` lists them all, `GET /KEY` returns
//! one (404 if the app has no such key). Config values come from the node's
//! config file (`[apps.env]`) or the control plane, never from the host's own
//! environment.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::http::StatusCode;
use edge_sdk::{Body, Request, Response, config};

fn env(req: Request) -> Response {
    let key = req.uri().path().trim_start_matches('/');
    if key.is_empty() {
        let mut out = String::new();
        for (k, v) in config::all() {
            out.push_str(&format!("{k}={v}\n"));
        }
        return Response::new(Body::from(out));
    }
    match config::get(key) {
        Some(value) => Response::new(Body::from(value)),
        None => {
            let mut resp = Response::new(Body::from(format!("no config value {key}\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}

edge_sdk::handler!(env);
