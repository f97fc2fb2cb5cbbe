//! A hostile component: allocates memory and touches every page.
//!
//! - `GET /`: allocates 1 MiB at a time forever: the node's memory
//!   limit must stop it;
//! - `GET /?mb=N`: allocates N MiB, then answers.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Body, Request, Response};

fn memory_bomb(req: Request) -> Response {
    let limit: Option<usize> = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("mb="))
        .and_then(|v| v.parse().ok());
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    while limit.is_none_or(|mb| hoard.len() < mb) {
        // Non-zero fill so every page is really touched.
        hoard.push(vec![0xa5; 1 << 20]);
    }
    let total: usize = hoard.iter().map(|v| v.len()).sum();
    Response::new(Body::from(format!("allocated {} MiB\n", total >> 20)))
}

edge_sdk::handler!(memory_bomb);
