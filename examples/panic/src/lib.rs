//! A hostile component: panics (a wasm trap) on every request, after writing a
//! line to stderr. The node must answer 500 with `x-edge-error: guest-trap`
//! and keep serving everyone else.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Request, Response};

fn panic(req: Request) -> Response {
    eprintln!("about to panic on {}", req.uri().path());
    panic!("this component always panics");
}

edge_sdk::handler!(panic);
