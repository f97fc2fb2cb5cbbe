//! Writes to stdout for live logs (`edgectl logs`): one line per request
//! (`hello-log GET /path`), `?n=N` lines (at most 100,000: a flood, for
//! drop notices), `?say=TEXT` (percent-encoded) writes TEXT as a line of
//! its own (control characters included), `/fail` answers 503 after a
//! line on stderr, and `/spoof` answers 200 with the node's own headers
//! (`x-edge-error`, `x-cache`) set, which the node must not believe.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.
//! Run:   `edge-node serve target/wasm32-wasip2/release/log_flood.wasm --listen 127.0.0.1:8080`
//!        then `curl 'http://127.0.0.1:8080/?n=3'`.

use std::io::Write;

use edge_sdk::{Body, Request, Response};

/// Lines one request may ask for.
const MAX_LINES: u64 = 100_000;

fn lines_asked(req: &Request) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .min(MAX_LINES)
}

/// `%XX` escapes decoded, byte by byte (invalid ones kept as they are).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn handle(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let mut out = std::io::stdout().lock();
    for i in 0..lines_asked(&req) {
        let _ = writeln!(out, "hello-log {} {path} line {i}", req.method());
    }
    let said = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("say="));
    if let Some(said) = said {
        let _ = out.write_all(&percent_decode(said));
        let _ = out.write_all(b"\n");
    }
    drop(out);
    if path == "/spoof" {
        let mut resp = Response::new(Body::from("spoofed\n"));
        let headers = resp.headers_mut();
        headers.insert(
            "x-edge-error",
            edge_sdk::http::HeaderValue::from_static("denied-destination"),
        );
        headers.insert("x-cache", edge_sdk::http::HeaderValue::from_static("HIT"));
        return resp;
    }
    if path == "/fail" {
        eprintln!("log-flood: failing on purpose");
        let mut resp = Response::new(Body::from("failing on purpose\n"));
        *resp.status_mut() = edge_sdk::http::StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    }
    Response::new(Body::from("logged\n"))
}

edge_sdk::handler!(handle);
