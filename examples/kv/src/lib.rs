//! A key-value store over HTTP, for the tests and benchmarks of the
//! platform's key-value stores. Every route works on the store `data`, or
//! on `?store=NAME`; keys and values in the query are percent-encoded.
//!
//! - `GET /count`: increments `hits` by 1 and answers the new value;
//! - `GET /read?key=K`: exactly one `get` (the benchmark's read path);
//! - `GET /get?key=K`: the value (404 if absent);
//! - `GET /exists?key=K`: `true` or `false`;
//! - `PUT /set?key=K`: sets K to the request body;
//! - `DELETE /del?key=K`;
//! - `POST /incr?key=K&delta=N`: the new value;
//! - `POST /cas?key=K&expected=E&value=V`: `swapped` or `not-swapped`
//!   (no `expected`: the key must be absent);
//! - `GET /list?prefix=P`: the keys starting with P, one a line (pages
//!   through `list-keys`);
//! - `GET /many?keys=a,b`: `key=value` lines, `key` alone when absent;
//! - `POST /set-many?keys=a,b`: sets each key to the request body, in one
//!   write; `POST /delete-many?keys=a,b`: deletes them in one write;
//! - `GET /loop?key=K&n=N`: N `get`s (for the ops-per-request limit).
//!
//! A refused call answers with the error's text (`kv-unavailable: ...`):
//! 503 for `kv-unavailable`, 429 for `kv-ops-limit`, 500 otherwise.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.
//! Run: upload it as an app, `edgectl kv create data`,
//! `edgectl kv link APP data`, then `curl http://APP.localhost:8080/count`.

use edge_sdk::http::{Method, StatusCode};
use edge_sdk::kv::{self, Store};
use edge_sdk::{Body, Request, Response};

/// The largest request body read as a value: above the platform's value
/// ceiling (8 MiB), so an oversized value reaches the store and is refused
/// there with its code rather than here.
const MAX_BODY: usize = 9 << 20;

/// Most `get`s `/loop` makes, whatever `n` asks.
const MAX_LOOP: u64 = 1_000_000;

fn respond(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp
}

fn kv_error(err: kv::Error) -> Response {
    let status = match err.code() {
        "kv-unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "kv-ops-limit" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    respond(status, format!("{err}\n"))
}

/// `%XX` escapes and `+` decoded (an invalid escape is kept as it is).
/// Written here because the example depends on the SDK alone.
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
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

struct Query(Vec<(String, Vec<u8>)>);

impl Query {
    fn parse(req: &Request) -> Query {
        Query(
            req.uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (
                        String::from_utf8_lossy(&percent_decode(name)).into_owned(),
                        percent_decode(value),
                    )
                })
                .collect(),
        )
    }

    fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn handle(req: Request) -> Response {
    let query = Query::parse(&req);
    let store_name = query.text("store").unwrap_or_else(|| "data".to_string());
    let store = match Store::open(&store_name) {
        Ok(store) => store,
        Err(err) => return kv_error(err),
    };
    let key = query.text("key");
    let need_key = || respond(StatusCode::BAD_REQUEST, "this route needs ?key=\n");
    let keys = || -> Vec<String> {
        query
            .text("keys")
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = match (method, path.as_str()) {
        (Method::GET, "/count") => store
            .increment("hits", 1)
            .map(|n| Response::new(Body::from(n.to_string()))),
        (Method::GET, "/read" | "/get") => {
            let Some(key) = key else { return need_key() };
            store.get(&key).map(|value| match value {
                Some(value) => Response::new(Body::from(value)),
                None => respond(StatusCode::NOT_FOUND, format!("no key {key}\n")),
            })
        }
        (Method::GET, "/exists") => {
            let Some(key) = key else { return need_key() };
            store
                .exists(&key)
                .map(|found| Response::new(Body::from(found.to_string())))
        }
        (Method::PUT, "/set") => {
            let Some(key) = key else { return need_key() };
            let value = match req.into_body().bytes(MAX_BODY) {
                Ok(value) => value,
                Err(err) => return respond(StatusCode::PAYLOAD_TOO_LARGE, format!("{err}\n")),
            };
            store
                .set(&key, &value)
                .map(|()| Response::new(Body::from("ok")))
        }
        (Method::DELETE, "/del") => {
            let Some(key) = key else { return need_key() };
            store.delete(&key).map(|()| Response::new(Body::from("ok")))
        }
        (Method::POST, "/incr") => {
            let Some(key) = key else { return need_key() };
            let delta = query
                .text("delta")
                .and_then(|d| d.parse().ok())
                .unwrap_or(1);
            store
                .increment(&key, delta)
                .map(|n| Response::new(Body::from(n.to_string())))
        }
        (Method::POST, "/cas") => {
            let Some(key) = key else { return need_key() };
            let value = query.bytes("value").unwrap_or_default();
            store
                .compare_and_swap(&key, query.bytes("expected"), value)
                .map(|swapped| {
                    Response::new(Body::from(if swapped { "swapped" } else { "not-swapped" }))
                })
        }
        (Method::GET, "/list") => {
            let prefix = query.text("prefix").unwrap_or_default();
            list(&store, &prefix).map(|keys| {
                let mut out = String::new();
                for key in keys {
                    out.push_str(&key);
                    out.push('\n');
                }
                Response::new(Body::from(out))
            })
        }
        (Method::GET, "/many") => {
            let keys = keys();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            store.get_many(&refs).map(|values| {
                let mut out = Vec::new();
                for (key, value) in keys.iter().zip(values) {
                    out.extend_from_slice(key.as_bytes());
                    if let Some(value) = value {
                        out.push(b'=');
                        out.extend_from_slice(&value);
                    }
                    out.push(b'\n');
                }
                Response::new(Body::from(out))
            })
        }
        (Method::POST, "/set-many") => {
            let keys = keys();
            let value = match req.into_body().bytes(MAX_BODY) {
                Ok(value) => value,
                Err(err) => return respond(StatusCode::PAYLOAD_TOO_LARGE, format!("{err}\n")),
            };
            let entries: Vec<(&str, &[u8])> = keys
                .iter()
                .map(|k| (k.as_str(), value.as_slice()))
                .collect();
            store
                .set_many(&entries)
                .map(|()| Response::new(Body::from("ok")))
        }
        (Method::POST, "/delete-many") => {
            let keys = keys();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            store
                .delete_many(&refs)
                .map(|()| Response::new(Body::from("ok")))
        }
        (Method::GET, "/loop") => {
            let Some(key) = key else { return need_key() };
            let n = query
                .text("n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1u64)
                .min(MAX_LOOP);
            (0..n)
                .try_for_each(|_| store.get(&key).map(drop))
                .map(|()| Response::new(Body::from(format!("{n} gets\n"))))
        }
        _ => return respond(StatusCode::NOT_FOUND, "no such route\n"),
    };
    result.unwrap_or_else(kv_error)
}

/// Every key starting with `prefix`: `list-keys` has no prefix, so this
/// pages through the whole store (each page one operation).
fn list(store: &Store, prefix: &str) -> Result<Vec<String>, kv::Error> {
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_keys(cursor)?;
        found.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix)));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

edge_sdk::handler!(handle);
