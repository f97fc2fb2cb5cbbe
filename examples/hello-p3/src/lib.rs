//! The smallest useful WASI 0.3 component: `hello`'s greeting through the
//! `wasi:http/service` world, whose `handle` is an async function.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`
//! (the target's toolchain emits a component; the `wasip3` crate's
//! bindings make it a 0.3 one).
//! Run:   `edge-node serve target/wasm32-wasip2/release/hello_p3.wasm --listen 127.0.0.1:8080`
//!        then `curl http://127.0.0.1:8080/`.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

struct Hello;

wasip3::http::service::export!(Hello);

const GREETING: &[u8] = b"Hello from the edge (WASI 0.3)!\n";

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
            (
                "content-length".to_string(),
                GREETING.len().to_string().into_bytes(),
            ),
        ])
        .map_err(|_| ErrorCode::InternalError(None))?;
        let (mut body, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
        drop(trailers_tx);
        // The body is written after `handle` has returned the response.
        wit_bindgen::spawn_local(async move {
            body.write_all(GREETING.to_vec()).await;
        });
        Ok(response)
    }
}
