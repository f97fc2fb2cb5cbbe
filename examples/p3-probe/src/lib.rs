//! A WASI 0.3 component for the node's tests: each path exercises one
//! thing the node must get right for the `wasi:http/service` world.
//!
//! - `GET /`: `host=AUTHORITY scheme=SCHEME path=PATH`, what the guest was
//!   told about the request;
//! - `POST /echo`: the request body back, streamed through;
//! - `GET /stream?KIB`: KIB KiB, written in 64 KiB pieces after `handle`
//!   has returned;
//! - `GET /trap-mid-body`: 1000 bytes, then a panic while streaming;
//! - `GET /spin`: loops forever (the CPU budget must stop it);
//! - `GET /sleep?MS`: waits MS milliseconds on the monotonic clock;
//! - `GET /mem?MIB`: allocates MIB MiB and answers `allocated N MiB`;
//! - `GET /fetch?URL`: a GET of URL through `wasi:http/client`, answering
//!   `status N` or `error CODE`;
//! - `GET /log?TEXT`: writes TEXT to stdout, answers `logged`;
//! - `GET /env?NAME`: the value of NAME in the environment, or 404.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_bindgen, wit_future, wit_stream};

struct Probe;

wasip3::http::service::export!(Probe);

/// A response whose body is written by `write` after `handle` returns.
fn respond<F>(status: u16, write: F) -> Result<Response, ErrorCode>
where
    F: AsyncFnOnce(&mut wit_bindgen::StreamWriter<u8>) + 'static,
{
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .map_err(|_| ErrorCode::InternalError(None))?;
    let (mut body, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    drop(trailers_tx);
    response
        .set_status_code(status)
        .map_err(|_| ErrorCode::InternalError(None))?;
    wit_bindgen::spawn_local(async move {
        write(&mut body).await;
    });
    Ok(response)
}

fn text(status: u16, text: String) -> Result<Response, ErrorCode> {
    respond(status, async move |body| {
        body.write_all(text.into_bytes()).await;
    })
}

async fn fetch(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "error: not an absolute URL".to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&match scheme {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    }));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    match wasip3::http::client::send(request).await {
        Ok(response) => format!("status {}\n", response.get_status_code()),
        Err(code) => format!("error {code:?}\n"),
    }
}

impl wasip3::exports::http::handler::Guest for Probe {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, arg) = match path_with_query.split_once('?') {
            Some((path, arg)) => (path.to_string(), arg.to_string()),
            None => (path_with_query.clone(), String::new()),
        };
        match path.as_str() {
            "/echo" => {
                let (_result_tx, result_rx) = wit_future::new(|| Ok(()));
                let (mut incoming, _trailers) = Request::consume_body(request, result_rx);
                respond(200, async move |body| {
                    loop {
                        let (status, chunk) = incoming.read(Vec::with_capacity(16 << 10)).await;
                        if chunk.is_empty() {
                            if matches!(status, wit_bindgen::StreamResult::Complete(_)) {
                                continue;
                            }
                            break;
                        }
                        if !body.write_all(chunk).await.is_empty() {
                            break;
                        }
                    }
                })
            }
            "/stream" => {
                let kib: usize = arg.parse().unwrap_or(64);
                respond(200, async move |body| {
                    let mut left = kib << 10;
                    while left > 0 {
                        let n = left.min(64 << 10);
                        if !body.write_all(vec![b'x'; n]).await.is_empty() {
                            return;
                        }
                        left -= n;
                    }
                })
            }
            "/trap-mid-body" => respond(200, async move |body| {
                body.write_all(vec![b'y'; 1000]).await;
                panic!("trapped while streaming the body");
            }),
            "/spin" => loop {
                std::hint::black_box(0u64);
            },
            "/sleep" => {
                let ms: u64 = arg.parse().unwrap_or(1000);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                text(200, format!("slept {ms} ms\n"))
            }
            "/mem" => {
                let mib: usize = arg.parse().unwrap_or(1);
                let block = vec![1u8; mib << 20];
                std::hint::black_box(&block);
                text(200, format!("allocated {mib} MiB\n"))
            }
            "/fetch" => {
                let answer = fetch(&arg).await;
                text(200, answer)
            }
            "/log" => {
                let (mut tx, rx) = wit_stream::new();
                let done = wasip3::cli::stdout::write_via_stream(rx);
                tx.write_all(format!("{arg}\n").into_bytes()).await;
                drop(tx);
                let _ = done.await;
                text(200, "logged\n".to_string())
            }
            "/env" => match std::env::var(&arg) {
                Ok(value) => text(200, value),
                Err(_) => text(404, format!("{arg} is not set\n")),
            },
            _ => {
                let host = request.get_authority().unwrap_or_default();
                let scheme = match request.get_scheme() {
                    Some(Scheme::Http) => "http".to_string(),
                    Some(Scheme::Https) => "https".to_string(),
                    Some(Scheme::Other(other)) => other,
                    None => "none".to_string(),
                };
                text(
                    200,
                    format!("host={host} scheme={scheme} path={path_with_query}\n"),
                )
            }
        }
    }
}
