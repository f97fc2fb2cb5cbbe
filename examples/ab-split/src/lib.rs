//! An A/B split at the edge: each visitor is put in variant `a` or `b`
//! and stays there (a cookie), and the page comes from the origin's copy
//! of that variant, `ORIGIN/a/PATH` or `ORIGIN/b/PATH`.
//!
//! - A request without a valid `ab` cookie is assigned a variant at
//!   random (half each) and answered with `Set-Cookie: ab=V` (30 days,
//!   HttpOnly, SameSite=Lax); one with the cookie keeps its variant.
//! - The fetch of the variant goes through the node's cache, keyed by its
//!   URL, so each variant is cached once for everybody in it.
//! - The answer carries `x-variant`, `x-variant-cache` (how the node's
//!   cache answered the variant's fetch) and, as it depends on the cookie,
//!   `Cache-Control: private` and `Vary: Cookie`: no shared cache may give
//!   one visitor's variant to another.
//!
//! Config: `ORIGIN` (`https://www.example.com`), which the app's
//! `outbound` allow-list must name.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::time::Duration;

use edge_sdk::cache::{CacheControl, CacheHeaders};
use edge_sdk::fetch::Fetch;
use edge_sdk::http::{self, HeaderValue, StatusCode};
use edge_sdk::{Body, Request, Response};

const COOKIE: &str = "ab";
const VARIANTS: [&str; 2] = ["a", "b"];

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp
}

/// The variant the request's cookie names, if it names one.
fn cookie_variant(req: &Request) -> Option<&'static str> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| VARIANTS.into_iter().find(|v| *v == value))
}

fn split(req: Request) -> Response {
    let Some(origin) = edge_sdk::config::get("ORIGIN") else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "ORIGIN is not set\n");
    };
    let (variant, assigned) = match cookie_variant(&req) {
        Some(variant) => (variant, false),
        None => (VARIANTS[(edge_sdk::random::u64() & 1) as usize], true),
    };
    let target = format!(
        "{}/{variant}{}",
        origin.trim_end_matches('/'),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let request = match http::Request::get(&target).body(Body::Empty) {
        Ok(request) => request,
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "ORIGIN is not a URL\n"),
    };
    let upstream = match Fetch::new(request).timeout(Duration::from_secs(5)).send() {
        Ok(upstream) => upstream,
        Err(err) => {
            eprintln!("ab-split: {target}: {err}");
            return text(StatusCode::BAD_GATEWAY, "the origin did not answer\n");
        }
    };
    let (parts, body) = upstream.into_parts();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = parts.status;
    if let Some(content_type) = parts.headers.get(http::header::CONTENT_TYPE) {
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    resp.headers_mut()
        .insert("x-variant", HeaderValue::from_static(variant));
    // How the node's cache answered the fetch of the variant.
    if let Some(cache) = parts.headers.get("x-cache") {
        resp.headers_mut().insert("x-variant-cache", cache.clone());
    }
    resp.headers_mut()
        .insert(http::header::VARY, HeaderValue::from_static("Cookie"));
    resp.cache_control(&CacheControl::new().private());
    if assigned {
        let cookie = format!("{COOKIE}={variant}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(http::header::SET_COOKIE, cookie);
        }
    }
    resp
}

edge_sdk::handler!(split);
