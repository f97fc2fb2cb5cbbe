//! A JSON API over a key-value store: create, read, update, delete and list
//! items, with the SDK's router, JSON helpers, key-value store and log
//! lines.
//!
//! - `GET /items`: `{"items": [ITEM, ...]}`, by id;
//! - `POST /items` with `{"name": "tea", "price_cents": 350}`: 201, the
//!   item with its new `id`, and `Location: /items/ID`;
//! - `GET /items/ID`: the item, or 404;
//! - `PUT /items/ID` with a new name and price: the item, or 404;
//! - `DELETE /items/ID`: 204, or 404.
//!
//! A body that is not such an item answers 400, one over 16 KiB 413; the
//! store unreachable 503 (`kv-unavailable`), over the tenant's op budget
//! 429; each as `{"error": "..."}`. Items live in the store named by the
//! app's `STORE` config value (default `items`), which the tenant links to
//! the app:
//!
//! ```sh
//! edgectl kv create items && edgectl kv link APP items
//! curl -X POST --data '{"name":"tea","price_cents":350}' https://APP.example/items
//! ```
//!
//! Build: `cargo build --release --target wasm32-wasip2` in `examples/`.

use edge_sdk::http::{HeaderValue, StatusCode};
use edge_sdk::json::{error_response, json_response, read_json};
use edge_sdk::kv::{self, Store};
use edge_sdk::router::{Params, Router};
use edge_sdk::{Body, Request, Response, log};
use serde::{Deserialize, Serialize};

const MAX_BODY: usize = 16 << 10;
const ITEM_PREFIX: &str = "item:";
const NEXT_ID: &str = "next-id";

/// What a client sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    name: String,
    price_cents: u64,
}

/// What is stored and answered.
#[derive(Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
    price_cents: u64,
}

fn store() -> Result<Store, Response> {
    let name = edge_sdk::config::get("STORE").unwrap_or_else(|| "items".to_string());
    Store::open(&name).map_err(kv_error)
}

fn kv_error(err: kv::Error) -> Response {
    let status = match err.code() {
        "kv-unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "kv-ops-limit" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    log::warn("key-value call failed")
        .field("code", err.code())
        .emit();
    error_response(status, err.code())
}

fn read_item(req: Request) -> Result<NewItem, Response> {
    let item: NewItem = read_json(req, MAX_BODY)?;
    if item.name.trim().is_empty() || item.name.chars().count() > 100 {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "name must be 1 to 100 characters",
        ));
    }
    Ok(item)
}

fn id(params: &Params) -> Result<u64, Response> {
    params["id"]
        .parse()
        .map_err(|_| error_response(StatusCode::NOT_FOUND, "no such item"))
}

fn key(id: u64) -> String {
    format!("{ITEM_PREFIX}{id:020}")
}

fn load(store: &Store, id: u64) -> Result<Item, Response> {
    match store.get(&key(id)).map_err(kv_error)? {
        Some(bytes) => edge_sdk::json::parse_json(&bytes),
        None => Err(error_response(StatusCode::NOT_FOUND, "no such item")),
    }
}

fn save(store: &Store, item: &Item) -> Result<(), Response> {
    let bytes = serde_json::to_vec(item)
        .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    store.set(&key(item.id), &bytes).map_err(kv_error)
}

fn list(_req: Request, _params: Params) -> Result<Response, Response> {
    let store = store()?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_keys(cursor).map_err(kv_error)?;
        keys.extend(page.keys.into_iter().filter(|k| k.starts_with(ITEM_PREFIX)));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut items = Vec::with_capacity(refs.len());
    for value in store
        .get_many(&refs)
        .map_err(kv_error)?
        .into_iter()
        .flatten()
    {
        items.push(edge_sdk::json::parse_json::<Item>(&value)?);
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

fn create(req: Request, _params: Params) -> Result<Response, Response> {
    let new = read_item(req)?;
    let store = store()?;
    // Atomic across every node: two creates never get the same id.
    let id = store.increment(NEXT_ID, 1).map_err(kv_error)?;
    let item = Item {
        id,
        name: new.name,
        price_cents: new.price_cents,
    };
    save(&store, &item)?;
    log::info("item created").field("id", id).emit();
    let mut resp = json_response(StatusCode::CREATED, &item);
    if let Ok(location) = HeaderValue::from_str(&format!("/items/{id}")) {
        resp.headers_mut().insert("location", location);
    }
    Ok(resp)
}

fn read(_req: Request, params: Params) -> Result<Response, Response> {
    let item = load(&store()?, id(&params)?)?;
    Ok(json_response(StatusCode::OK, &item))
}

fn update(req: Request, params: Params) -> Result<Response, Response> {
    let id = id(&params)?;
    let new = read_item(req)?;
    let store = store()?;
    load(&store, id)?;
    let item = Item {
        id,
        name: new.name,
        price_cents: new.price_cents,
    };
    save(&store, &item)?;
    Ok(json_response(StatusCode::OK, &item))
}

fn delete(_req: Request, params: Params) -> Result<Response, Response> {
    let id = id(&params)?;
    let store = store()?;
    load(&store, id)?;
    store.delete(&key(id)).map_err(kv_error)?;
    log::info("item deleted").field("id", id).emit();
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// A handler's answer, whichever way it went.
fn either(result: Result<Response, Response>) -> Response {
    result.unwrap_or_else(|refusal| refusal)
}

fn handle(req: Request) -> Response {
    Router::new()
        .get("/items", |req, params| either(list(req, params)))
        .post("/items", |req, params| either(create(req, params)))
        .get("/items/:id", |req, params| either(read(req, params)))
        .put("/items/:id", |req, params| either(update(req, params)))
        .delete("/items/:id", |req, params| either(delete(req, params)))
        .handle(req)
}

edge_sdk::handler!(handle);
