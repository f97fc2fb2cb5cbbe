//! A hostile component: slow to answer, or slow to finish.
//!
//! - `GET /?ms=N`: waits N ms (no CPU used), then answers;
//! - `GET /trickle`: answers at once, then writes one byte every 100 ms
//!   forever.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Body, Request, Response};
use wasip2::clocks::monotonic_clock::subscribe_duration;

fn sleep_ms(ms: u64) {
    subscribe_duration(ms * 1_000_000).block();
}

fn slow_response(req: Request) -> Response {
    if req.uri().path() == "/trickle" {
        let bytes = std::iter::repeat_with(|| {
            sleep_ms(100);
            b".".to_vec()
        });
        return Response::new(Body::from_chunks(bytes));
    }
    let ms = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    sleep_ms(ms);
    Response::new(Body::from(format!("waited {ms} ms\n")))
}

edge_sdk::handler!(slow_response);
