//! A hostile component: an enormous response body.
//!
//! - `GET /`: streams 1 MiB chunks forever;
//! - `GET /?mb=N`: streams N MiB, then ends;
//! - `GET /?declare=N`: declares `content-length` of N MiB up front and
//!   streams that much.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::{Body, Request, Response};

fn param(req: &Request, name: &str) -> Option<usize> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn huge_response(req: Request) -> Response {
    let declared = param(&req, "declare");
    let mb = declared.or(param(&req, "mb"));
    let chunks = (0..).take_while(move |i| mb.is_none_or(|mb| *i < mb));
    let mut resp = Response::new(Body::from_chunks(chunks.map(|_| vec![b'x'; 1 << 20])));
    if let Some(mb) = declared {
        resp.headers_mut()
            .insert("content-length", (mb << 20).into());
    }
    resp
}

edge_sdk::handler!(huge_response);
