//! A hostile component: recurses without end. The wasm stack limit must turn
//! this into a trap (500), never a crash of the node.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Body, Request, Response};

// Scalars only, so the frames live on the wasm stack (bounded by the
// engine's max_wasm_stack) rather than Rust's shadow stack in linear memory.
#[inline(never)]
#[allow(unconditional_recursion)] // the point of this component
fn deeper(depth: u64, acc: u64) -> u64 {
    let acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(depth));
    deeper(depth + 1, acc).wrapping_add(acc)
}

fn stack_overflow(_req: Request) -> Response {
    let n = deeper(0, 1);
    Response::new(Body::from(format!("unreachable {n}\n")))
}

edge_sdk::handler!(stack_overflow);
