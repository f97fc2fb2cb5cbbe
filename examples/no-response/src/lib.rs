//! A broken component: returns from the handler without ever setting a
//! response. The node must answer 502 (`x-edge-error: no-response`).
//!
//! It uses the raw wasi:http bindings, since the SDK always sets a response.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct NoResponse;

impl wasip2::exports::http::incoming_handler::Guest for NoResponse {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        println!("returning without a response");
    }
}

wasip2::http::proxy::export!(NoResponse with_types_in wasip2);
