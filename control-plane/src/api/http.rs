//! HTTP plumbing the handlers share: JSON bodies in (bounded) and out,
//! query parameters, and the shape of a handler's result.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON request bodies (everything but uploads).
const MAX_JSON_BYTES: usize = 256 << 10;

/// Query parameters read per request (an endpoint takes at most three);
/// the rest are ignored, so a long query costs no more than this.
const MAX_QUERY_PARAMS: usize = 16;

pub type ApiResult = Result<Response<Full<Bytes>>, ApiError>;

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    read_body_within(req, MAX_JSON_BYTES, "body-too-large", "JSON bodies").await
}

/// The whole body, refused with 413 `code` ("`what` are limited to ...")
/// once it passes `limit` bytes.
pub async fn read_body_within(
    req: Request<Incoming>,
    limit: usize,
    code: &'static str,
    what: &str,
) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    code,
                    format!("{what} are limited to {limit} bytes"),
                )
            } else {
                ApiError::bad_request("body-read-failed", e.to_string())
            }
        })
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid-json", format!("invalid request body: {e}")))
}

pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    parse_json(&read_body(req).await?)
}

/// Like [`read_json`], for a body holding a secret (a private key):
/// serde's message may quote a value it could not use, so one quoting
/// PEM says only where the body is wrong.
pub async fn read_secret_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req).await?;
    serde_json::from_slice(&body).map_err(|e| {
        let message = e.to_string();
        let message = if message.contains("-----") || message.contains("PRIVATE") {
            format!(
                "invalid request body at line {} column {}",
                e.line(),
                e.column()
            )
        } else {
            format!("invalid request body: {message}")
        };
        ApiError::bad_request("invalid-json", message)
    })
}

/// Like [`read_json`], for a body that is a secret value: the error says
/// only where the body is wrong, never what serde saw there.
pub async fn read_opaque_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid-json",
            format!(
                "invalid request body at line {} column {} (expected {{\"value\": \"...\"}})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Like [`read_json`], but an empty (or blank) body is `T::default()`.
pub async fn read_json_or_default<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&body)
}

pub fn json_response<T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => internal(e).into_response(),
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Query parameters, first occurrence wins. Values are not percent-decoded:
/// every parameter the API takes is plain ASCII.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .take(MAX_QUERY_PARAMS)
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (pair.to_string(), String::new()),
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
