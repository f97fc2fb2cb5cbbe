//! A hostile component: exhausts what the host keeps on its behalf.
//!
//! - `GET /?n=N&size=S`: a response with N headers of S bytes each (default
//!   1000 x 1000): past the host's bound on a header map;
//! - `GET /resources`: creates header maps until the host refuses: host
//!   memory is outside the guest's memory limit, so the
//!   number of resources a request holds is bounded too.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::http::{HeaderName, HeaderValue};
use edge_sdk::{Body, Request, Response};
use wasip2::http::types::Fields;

fn param(req: &Request, name: &str, default: usize) -> usize {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.parse().ok()).flatten()
            })
        })
        .unwrap_or(default)
}

fn header_bomb(req: Request) -> Response {
    if req.uri().path() == "/resources" {
        let mut hoard = Vec::new();
        loop {
            hoard.push(Fields::new());
            if hoard.len() % 100_000 == 0 {
                eprintln!("holding {} header maps", hoard.len());
            }
        }
    }
    let n = param(&req, "n", 1000);
    let size = param(&req, "size", 1000);
    let value = HeaderValue::from_str(&"v".repeat(size)).expect("ascii value");
    let mut resp = Response::new(Body::from("headers!\n"));
    for i in 0..n {
        if let Ok(name) = HeaderName::from_bytes(format!("x-bomb-{i}").as_bytes()) {
            resp.headers_mut().insert(name, value.clone());
        }
    }
    resp
}

edge_sdk::handler!(header_bomb);
