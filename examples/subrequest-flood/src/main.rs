//! A hostile component: makes as many outbound requests as it can.
//!
//! - `GET /?n=N&url=URL`: sends N sequential GETs to URL and answers
//!   `ok K, failed F, first error: ...`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use wstd::http::{Body, Client, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_string();
    let mut n = 100u32;
    let mut url = String::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("n", v)) => n = v.parse().unwrap_or(n),
            Some(("url", v)) => url = v.to_string(),
            _ => {}
        }
    }
    let client = Client::new();
    let (mut ok, mut failed, mut first_error) = (0, 0, String::new());
    for _ in 0..n {
        let request = Request::get(url.as_str()).body(Body::empty())?;
        match client.send(request).await {
            Ok(_) => ok += 1,
            Err(err) => {
                if failed == 0 {
                    first_error = format!("{err:?}");
                }
                failed += 1;
            }
        }
    }
    Ok(Response::new(
        format!("ok {ok}, failed {failed}, first error: {first_error}\n").into(),
    ))
}
