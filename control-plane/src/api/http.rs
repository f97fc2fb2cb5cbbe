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

/// Query parameters, first occurrence wins, percent-decoded (and `+` read
/// as a space) as `application/x-www-form-urlencoded` says, so
/// `since=5m%2030s` and `since=5m+30s` both mean `5m 30s`. At most
/// `MAX_QUERY_PARAMS` pairs are read; the rest are ignored.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .take(MAX_QUERY_PARAMS)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let query = Query::parse(Some(
            "since=5m%2030s&node=edge%2D1&wait=1m+5s&follow&tenant=a%26b",
        ));
        assert_eq!(query.get("since"), Some("5m 30s"));
        assert_eq!(query.get("node"), Some("edge-1"));
        assert_eq!(query.get("wait"), Some("1m 5s"));
        assert_eq!(query.get("follow"), Some(""));
        assert_eq!(query.get("tenant"), Some("a&b"));
        assert_eq!(query.get("missing"), None);
    }

    #[test]
    fn names_are_decoded_and_the_first_occurrence_wins() {
        let query = Query::parse(Some("%73ince=1&since=2&&=x"));
        assert_eq!(query.get("since"), Some("1"));
        // Invalid escapes stay as they are, like every form decoder.
        assert_eq!(Query::parse(Some("node=%zz")).get("node"), Some("%zz"));
    }

    #[test]
    fn only_the_first_pairs_are_read() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let query = Query::parse(Some(&many.join("&")));
        assert!(query.get(&format!("k{}", MAX_QUERY_PARAMS - 1)).is_some());
        assert!(query.get(&format!("k{MAX_QUERY_PARAMS}")).is_none());
    }
}
