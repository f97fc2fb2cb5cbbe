//! Echoes the request: method, path and headers in response headers, and the
//! request body streamed straight back as the response body (never buffered,
//! so a body of any size passes through in constant memory).
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.
//! Try:   `curl -k --data-binary @big.file https://echo.localhost:8443/some/path`

use edge_sdk::http::HeaderValue;
use edge_sdk::{Body, Request, Response};

fn echo(req: Request) -> Response {
    // What the node says about the client (x-edge-client-ip, TLS facts),
    // read through the SDK.
    let client = edge_sdk::client_addr(&req).map(|ip| ip.to_string());
    let tls = edge_sdk::tls_info(&req);
    let (parts, body) = req.into_parts();
    let mut resp = Response::new(Body::from(body));
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(parts.method.as_str()) {
        headers.insert("x-echo-method", v);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Ok(v) = HeaderValue::from_str(path) {
        headers.insert("x-echo-path", v);
    }
    for (name, value) in &parts.headers {
        if let Ok(name) = format!("x-echo-header-{name}").parse::<edge_sdk::http::HeaderName>() {
            headers.append(name, value.clone());
        }
    }
    if let Some(v) = client.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert("x-echo-client-addr", v);
    }
    if let Some(v) = tls.and_then(|t| HeaderValue::from_str(&t.version).ok()) {
        headers.insert("x-echo-tls-version", v);
    }
    if let Some(ct) = parts.headers.get("content-type") {
        headers.insert("content-type", ct.clone());
    }
    resp
}

edge_sdk::handler!(echo);
