//! A scriptable cacheable response, for trying (and testing) the edge
//! cache: the query string names the response headers, and the body is
//! unique per execution, so a cache hit is visible as a repeated body.
//!
//!   GET /any/path?cc=max-age%3D60&vary=accept-language&sk=red+blue&etag=%22v1%22
//!
//! Parameters (percent-encoded): `cc` → Cache-Control, `sc` →
//! Surrogate-Control, `sk` → Surrogate-Key, `vary` → Vary, `etag` → ETag,
//! `lm` → Last-Modified, `expires` → Expires, `status` → the status code.
//! Any method is answered the same way.

use edge_sdk::http::{HeaderName, HeaderValue, StatusCode};
use edge_sdk::{Body, Request, Response};

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cacheable(req: Request) -> Response {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut resp = Response::new(Body::from(format!(
        "{} {} #{nanos}\n",
        req.method(),
        req.uri().path()
    )));
    let query = req.uri().query().unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        let name = match key {
            "cc" => "cache-control",
            "sc" => "surrogate-control",
            "sk" => "surrogate-key",
            "vary" => "vary",
            "etag" => "etag",
            "lm" => "last-modified",
            "expires" => "expires",
            "status" => {
                if let Some(status) = value
                    .parse()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                {
                    *resp.status_mut() = status;
                }
                continue;
            }
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut()
                .append(HeaderName::from_static(name), value);
        }
    }
    resp
}

edge_sdk::handler!(cacheable);
