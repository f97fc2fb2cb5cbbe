//! A reverse proxy component, for testing the node's fetch cache: the
//! shared HTTP cache that a component's outbound GETs go through.
//!
//! Every request is forwarded to the origin named by the config value
//! `ORIGIN` (for example `http://origin.test:8080`) plus the request's path
//! and query: same method, same headers (minus `Host` and hop-by-hop
//! fields), same body. The origin's status, headers and body come back
//! unchanged, except:
//!
//! - the fetch's `x-cache` (how the fetch cache answered the component) is
//!   renamed `x-fetch-cache`, and the node's own `x-cache` is left to
//!   describe the inbound cache;
//! - the fetch's `Cache-Control`, `Expires`, `Pragma`, `Surrogate-Control`,
//!   `CDN-Cache-Control` and `Edge-Cache-Control` are renamed
//!   `x-fetch-cache-control`, ..., and
//!   replaced by `Cache-Control: no-store`, so that the node's inbound cache
//!   never stores this component's answers and every request reaches the
//!   fetch cache. `Age`, `ETag`, `Last-Modified`, `Vary` and everything
//!   else are kept.
//!
//! The node's inbound cache consumes some request headers before the
//! component runs (conditionals, `Cache-Control: only-if-cached`). A request
//! header `x-fetch-NAME: VALUE` is therefore sent to the origin as
//! `NAME: VALUE` (replacing the client's own `NAME`), so a client can say
//! exactly what the component's fetch carries.
//!
//! A fetch that fails is answered `502` with the error in `x-fetch-error`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use wstd::http::{Body, Client, Error, HeaderName, HeaderValue, Method, Request, Response};

/// Request header prefix: `x-fetch-NAME` is sent as `NAME`.
const FETCH_PREFIX: &str = "x-fetch-";

/// Never forwarded: the origin's own `Host` comes from the URL, and wasi:http
/// refuses hop-by-hop fields.
const DROPPED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Response headers renamed on the way back: the fetch cache's label, and
/// those that would let the node's inbound cache store the answer.
const RENAMED: &[(&str, &str)] = &[
    ("x-cache", "x-fetch-cache"),
    ("cache-control", "x-fetch-cache-control"),
    ("expires", "x-fetch-expires"),
    ("pragma", "x-fetch-pragma"),
    ("surrogate-control", "x-fetch-surrogate-control"),
    // RFC 9213 targeted fields rule the inbound cache over Cache-Control.
    ("cdn-cache-control", "x-fetch-cdn-cache-control"),
    ("edge-cache-control", "x-fetch-edge-cache-control"),
    // The fetch cache's RFC 9211 member, apart from the inbound cache's.
    ("cache-status", "x-fetch-cache-status"),
];

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let Ok(origin) = std::env::var("ORIGIN") else {
        return Ok(text(
            500,
            "origin-proxy: the config value ORIGIN is not set\n",
        ));
    };
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path_and_query}", origin.trim_end_matches('/'));

    let mut outgoing = Request::builder().method(parts.method.clone()).uri(url);
    if let Some(headers) = outgoing.headers_mut() {
        // `x-fetch-NAME` values, renamed; they replace the client's `NAME`.
        let overrides: Vec<(HeaderName, HeaderValue)> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let target = name.as_str().strip_prefix(FETCH_PREFIX)?;
                let target = HeaderName::from_bytes(target.as_bytes()).ok()?;
                (!DROPPED.contains(&target.as_str())).then(|| (target, value.clone()))
            })
            .collect();
        for (name, value) in &parts.headers {
            let plain =
                !DROPPED.contains(&name.as_str()) && !name.as_str().starts_with(FETCH_PREFIX);
            if plain && !overrides.iter().any(|(target, _)| target == name) {
                headers.append(name, value.clone());
            }
        }
        for (name, value) in overrides {
            headers.append(name, value);
        }
    }
    let outgoing = match outgoing.body(body) {
        Ok(outgoing) => outgoing,
        Err(err) => return Ok(fetch_error(&format!("{err}"))),
    };

    let response = match Client::new().send(outgoing).await {
        Ok(response) => response,
        Err(err) => return Ok(fetch_error(&format!("{err:?}"))),
    };
    let (mut parts_out, body) = response.into_parts();
    let headers = &mut parts_out.headers;
    for (name, renamed) in RENAMED {
        let values: Vec<HeaderValue> = headers.get_all(*name).iter().cloned().collect();
        headers.remove(*name);
        for value in values {
            headers.append(*renamed, value);
        }
    }
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    if parts.method == Method::HEAD {
        // No body follows, whatever length the origin declared.
        headers.remove("content-length");
    }
    Ok(Response::from_parts(parts_out, body))
}

fn text(status: u16, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(message.to_string()));
    if let Ok(status) = wstd::http::StatusCode::from_u16(status) {
        *response.status_mut() = status;
    }
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn fetch_error(error: &str) -> Response<Body> {
    let mut response = text(502, &format!("origin-proxy: the fetch failed: {error}\n"));
    // Header values cannot hold every character an error message may.
    let printable: String = error
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    if let Ok(value) = HeaderValue::from_str(&printable) {
        response.headers_mut().insert("x-fetch-error", value);
    }
    response
}
