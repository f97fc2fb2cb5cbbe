//! Probes memory isolation between requests and between apps.
//!
//! - `GET /write?secret=HEX`: copies the secret (byte-reversed, so the query
//!   text itself never matches) all over a 1 MiB heap
//!   buffer and leaks it;
//! - `GET /scan?secret=HEX`: scans this instance's whole linear memory for
//!   that byte pattern and answers `clean` or
//!   `found at ADDR`.
//!
//! A fresh instance must never see another request's memory.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::http::StatusCode;
use edge_sdk::{Body, Request, Response};

fn pattern(req: &Request) -> Option<Vec<u8>> {
    let hex = req.uri().query()?.strip_prefix("secret=")?;
    if hex.len() < 16 || hex.len() % 2 != 0 {
        return None;
    }
    let mut bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    bytes.reverse();
    Some(bytes)
}

fn write(secret: &[u8]) -> String {
    let mut buf = vec![0u8; 1 << 20];
    for chunk in buf.chunks_mut(secret.len()) {
        chunk.copy_from_slice(&secret[..chunk.len()]);
    }
    std::mem::forget(buf);
    "written\n".to_string()
}

fn scan(secret: &[u8]) -> String {
    let own = secret.as_ptr() as usize..secret.as_ptr() as usize + secret.len();
    let end = core::arch::wasm32::memory_size(0) * 65536;
    // Skip the first KiB: Rust treats address 0 as null.
    let mut addr = 1024;
    while addr + secret.len() <= end {
        if !own.contains(&addr) {
            let matches = secret.iter().enumerate().all(|(i, b)| {
                // SAFETY: every address below memory_size is valid wasm memory.
                unsafe { core::ptr::read_volatile((addr + i) as *const u8) == *b }
            });
            if matches {
                return format!("found at {addr:#x}\n");
            }
        }
        addr += 1;
    }
    "clean\n".to_string()
}

fn isolation(req: Request) -> Response {
    let Some(secret) = pattern(&req) else {
        let mut resp = Response::new(Body::from("pass ?secret= with at least 16 hex digits\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let out = match req.uri().path() {
        "/write" => write(&secret),
        _ => scan(&secret),
    };
    Response::new(Body::from(out))
}

edge_sdk::handler!(isolation);
