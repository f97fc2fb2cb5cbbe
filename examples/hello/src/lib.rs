//! The smallest useful component: answers every request with a greeting.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.
//! Run:   `edge-node serve target/wasm32-wasip2/release/hello.wasm --listen 127.0.0.1:8080`
//!        then `curl http://127.0.0.1:8080/`.

use edge_sdk::{Body, Request, Response};

fn hello(_req: Request) -> Response {
    let mut resp = Response::new(Body::from("Hello from the edge!\n"));
    resp.headers_mut().insert(
        "content-type",
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    resp
}

edge_sdk::handler!(hello);
