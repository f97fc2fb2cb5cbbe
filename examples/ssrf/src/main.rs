//! A hostile component: tries to reach what it must not.
//!
//! - `GET /?url=URL`: fetches URL and answers `status N` or `error: ...`;
//! - `GET /`: tries a list of internal targets (loopback, private
//!   networks, cloud metadata, IPv6 forms) and answers one
//!   line per target. Every one must fail.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use wstd::http::{Body, Client, Error, Request, Response};

const TARGETS: &[&str] = &[
    "http://127.0.0.1/",
    "http://localhost/",
    "http://10.0.0.1/",
    "http://192.168.0.1/",
    "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fd00::1]/",
];

async fn try_fetch(url: &str) -> String {
    let request = match Request::get(url).body(Body::empty()) {
        Ok(request) => request,
        Err(err) => return format!("error: {err}"),
    };
    match Client::new().send(request).await {
        Ok(response) => format!("status {}", response.status().as_u16()),
        Err(err) => format!("error: {err:?}"),
    }
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_string();
    let out = match query.strip_prefix("url=") {
        Some(url) => format!("{}\n", try_fetch(url).await),
        None => {
            let mut out = String::new();
            for target in TARGETS {
                out.push_str(&format!("{target} {}\n", try_fetch(target).await));
            }
            out
        }
    };
    Ok(Response::new(out.into()))
}
