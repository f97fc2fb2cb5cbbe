//! A redirect table at the edge, from the app's `REDIRECTS` config value:
//! one rule per line, `FROM TO [STATUS]`.
//!
//! ```text
//! /old-blog/*rest   https://blog.example.com/*rest   301
//! /docs             /documentation                   308
//! /sale             /spring-sale                     302
//! ```
//!
//! `FROM` is a router pattern (`/exact`, `/users/:id`, `/prefix/*rest`);
//! each `:name` and `*name` in `TO` is replaced by what it matched, and
//! the request's query string is kept. STATUS is 301, 302, 303, 307 or 308
//! (default 302). Permanent redirects (301, 308) are cacheable for a day
//! at the edge and in browsers; temporary ones for a minute at the edge
//! only. A path no rule matches answers 404; a table with a bad line
//! answers 500 naming the line, so a mistake shows on the first request.
//!
//! Set the table with `edgectl config set APP REDIRECTS="$(cat rules.txt)"`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use std::time::Duration;

use edge_sdk::cache::{CacheControl, CacheHeaders};
use edge_sdk::http::{HeaderValue, Method, StatusCode};
use edge_sdk::router::{Match, Router};
use edge_sdk::{Body, Request, Response};

struct Rule {
    to: String,
    status: StatusCode,
    /// The pattern's parameter names, to substitute into `to`.
    names: Vec<String>,
}

fn text(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp
}

fn table(config: &str) -> Result<Router<Rule>, String> {
    let mut router = Router::default();
    for (number, line) in config.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, status) = match fields.as_slice() {
            [from, to] => (*from, *to, StatusCode::FOUND),
            [from, to, status] => {
                let status = match *status {
                    "301" | "302" | "303" | "307" | "308" => status
                        .parse::<StatusCode>()
                        .map_err(|e| format!("line {}: {e}", number + 1))?,
                    other => {
                        return Err(format!(
                            "line {}: status {other} is not a redirect (301, 302, 303, 307, 308)",
                            number + 1
                        ));
                    }
                };
                (*from, *to, status)
            }
            _ => return Err(format!("line {}: expected FROM TO [STATUS]", number + 1)),
        };
        let names = from
            .split('/')
            .filter_map(|s| s.strip_prefix(':').or_else(|| s.strip_prefix('*')))
            .map(str::to_string)
            .collect();
        let rule = Rule {
            to: to.to_string(),
            status,
            names,
        };
        router
            .try_add(Method::GET, from, rule)
            .map_err(|e| format!("line {}: {e}", number + 1))?;
    }
    Ok(router)
}

fn redirect(req: Request) -> Response {
    let config = edge_sdk::config::get("REDIRECTS").unwrap_or_default();
    let router = match table(&config) {
        Ok(router) => router,
        Err(err) => {
            eprintln!("redirects: REDIRECTS: {err}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bad redirect table: {err}\n"),
            );
        }
    };
    let (rule, params) = match router.at(req.method(), req.uri().path()) {
        Match::Found(rule, params) => (rule, params),
        Match::MethodNotAllowed(_) => {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n".into());
        }
        Match::NotFound => return text(StatusCode::NOT_FOUND, "no redirect here\n".into()),
    };
    let mut location = rule.to.clone();
    for name in &rule.names {
        let value = params.get(name).unwrap_or_default();
        location = location
            .replace(&format!("*{name}"), value)
            .replace(&format!(":{name}"), value);
    }
    if let Some(query) = req.uri().query() {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(query);
    }
    let Ok(location) = HeaderValue::from_str(&location) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the target is not a valid URL\n".into(),
        );
    };
    let mut resp = text(rule.status, String::new());
    resp.headers_mut().insert("location", location);
    let permanent = matches!(
        rule.status,
        StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
    );
    if permanent {
        resp.cache_control(
            &CacheControl::new()
                .public()
                .max_age(Duration::from_secs(86_400)),
        );
    } else {
        // Cached at the edge for a minute, never by browsers.
        resp.cache_control(&CacheControl::new().no_cache());
        resp.cdn_cache_control(&CacheControl::new().max_age(Duration::from_secs(60)));
    }
    resp
}

edge_sdk::handler!(redirect);
