//! A hostile component: burns CPU without making a single host call.
//!
//! - `GET /`: spins forever: the node's CPU limit must stop it;
//! - `GET /?iters=N`: spins N million iterations, then answers.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Body, Request, Response};

fn spin(millions: Option<u64>) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i: u64 = 0;
    loop {
        x = std::hint::black_box(x.rotate_left(5) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
        i += 1;
        if millions.is_some_and(|m| i >= m.saturating_mul(1_000_000)) {
            return x;
        }
    }
}

fn cpu_loop(req: Request) -> Response {
    let millions = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("iters="))
        .and_then(|v| v.parse().ok());
    let x = spin(millions);
    Response::new(Body::from(format!("done {x:x}\n")))
}

edge_sdk::handler!(cpu_loop);
