//! JSON requests and responses (feature `json`, with serde).
//!
//! ```
//! use edge_sdk::json::{json_response, read_json};
//! use edge_sdk::http::StatusCode;
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Order { item: String, quantity: u32 }
//!
//! fn create(req: edge_sdk::Request) -> edge_sdk::Response {
//!     // A body over 64 KiB answers 413, one that is not an Order 400,
//!     // each with `{"error": "..."}`.
//!     let order: Order = match read_json(req, 64 << 10) {
//!         Ok(order) => order,
//!         Err(refusal) => return refusal,
//!     };
//!     json_response(StatusCode::CREATED, &order)
//! }
//! # let _ = create;
//! ```

use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Body, BodyError, Request, Response};

/// `value` as a JSON response with `status` (a 500 if it cannot be
/// serialized, which a map with non-string keys, say, cannot).
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(err) => {
            eprintln!("edge-sdk: cannot serialize the JSON response: {err}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

/// The request body as a `T`, read up to `limit` bytes. The error is the
/// answer to give: 413 over the limit, 400 for a body that is not JSON or
/// not a `T` (saying where), each as `{"error": "..."}`.
pub fn read_json<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, Response> {
    let bytes = req.into_body().bytes(limit).map_err(|err| match err {
        BodyError::TooLarge { limit } => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body over {limit} bytes"),
        ),
        BodyError::Stream(msg) => error_response(StatusCode::BAD_REQUEST, &msg),
    })?;
    parse_json(&bytes)
}

/// [`read_json`]'s parsing step, on bytes already read.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|err| {
        error_response(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {err}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        item: String,
        quantity: u32,
    }

    fn body_text(resp: Response) -> String {
        match resp.into_body() {
            Body::Bytes(bytes) => String::from_utf8(bytes).unwrap(),
            _ => panic!("not a bytes body"),
        }
    }

    #[test]
    fn responses_and_refusals() {
        let resp = json_response(StatusCode::CREATED, &serde_json::json!({"a": [1, "ü"]}));
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(body_text(resp), "{\"a\":[1,\"ü\"]}\n");

        let order: Order = parse_json(br#"{"item":"tea","quantity":2}"#).unwrap();
        assert_eq!(
            order,
            Order {
                item: "tea".into(),
                quantity: 2
            }
        );
        for bad in [
            &b"{not json"[..],
            br#"{"item":"tea"}"#,
            br#"{"item":"tea","quantity":-1}"#,
        ] {
            let refusal = parse_json::<Order>(bad).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
            assert!(body_text(refusal).starts_with("{\"error\":\"invalid JSON body: "));
        }
    }
}
