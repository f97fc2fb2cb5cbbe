//! Shows the app's config values: `GET /` lists the environment, `GET /KEY`
//! returns one environment value (404 if the app has no such key), and
//! `GET /?config=KEY` returns the value of KEY in the app's wasi:config
//! store, where secrets are too (404 if none). Config values come from the
//! node's config file (`[apps.env]`) or the control plane, never from the
//! host's own environment; secrets only from the control plane, and never
//! in the environment.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::http::StatusCode;
use edge_sdk::{Body, Request, Response, config};

fn not_found(what: String) -> Response {
    let mut resp = Response::new(Body::from(what));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

fn env(req: Request) -> Response {
    if let Some(key) = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("config=")))
    {
        return match config::get(key) {
            Some(value) => Response::new(Body::from(value)),
            None => not_found(format!("no wasi:config value {key}\n")),
        };
    }
    let key = req.uri().path().trim_start_matches('/');
    if key.is_empty() {
        let mut out = String::new();
        for (k, v) in config::all() {
            out.push_str(&format!("{k}={v}\n"));
        }
        return Response::new(Body::from(out));
    }
    match std::env::var(key) {
        Ok(value) => Response::new(Body::from(value)),
        Err(_) => not_found(format!("no config value {key}\n")),
    }
}

edge_sdk::handler!(env);
