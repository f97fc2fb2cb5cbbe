//! A component written with `wstd` (async, no edge SDK) that exercises what a
//! host must get right: streamed bodies, sleeps inside a request, trailers.
//!
//! - `GET /sleep?ms=N`: sleeps N ms (at most 5000) before answering;
//! - `GET /stream?n=N`: streams N lines (at most 1000), 10 ms apart;
//! - `POST /echo`: streams the request body back;
//! - `POST /trailers`: reads the body to its end and answers with the
//!   request's trailers as response trailers, plus the body length in
//!   `x-body-bytes`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::convert::Infallible;

use futures_lite::stream::unfold;
use http_body_util::{BodyExt, StreamBody};
use wstd::http::body::{Body, Bytes, Frame};
use wstd::http::{Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_string();
    match request.uri().path() {
        "/sleep" => {
            let ms = param(&query, "ms").unwrap_or(100).min(5000);
            wstd::task::sleep(Duration::from_millis(ms)).await;
            Ok(Response::new(format!("slept {ms} ms\n").into()))
        }
        "/stream" => {
            let n = param(&query, "n").unwrap_or(5).min(1000);
            let lines = unfold(0u64, move |i| async move {
                if i == n {
                    return None;
                }
                wstd::task::sleep(Duration::from_millis(10)).await;
                Some((
                    Ok::<_, Infallible>(Bytes::from(format!("line {i}\n"))),
                    i + 1,
                ))
            });
            Ok(Response::new(Body::from_try_stream(lines)))
        }
        "/echo" => Ok(Response::new(request.into_body())),
        "/trailers" => {
            let collected = request.into_body().into_boxed_body().collect().await?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let len = collected.to_bytes().len();
            let body = StreamBody::new(futures_lite::stream::once(Ok::<_, Infallible>(Frame::<
                Bytes,
            >::trailers(
                trailers
            ))));
            let mut resp = Response::new(Body::from_http_body(body));
            resp.headers_mut().insert("x-body-bytes", len.into());
            Ok(resp)
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n".to_owned().into())?),
    }
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}
