//! The one place where a failure becomes an HTTP response.
//!
//! Every refusal carries a status that fits, a stable machine-readable code in
//! the `x-edge-error` header, and a short plain-text body naming the rule that
//! was hit. Details (trap messages, backtraces) go to the log, never to the
//! client.

use http::{HeaderValue, Response, StatusCode};

use crate::admission::AdmissionError;
use crate::origin::OriginError;
use crate::router::RouteError;
use crate::runtime::GuestError;

pub use crate::body::{ERROR_HEADER, ErrorCode, ResponseBody, full_body, refusal, text_response};

/// Who caused a failure: decides the status family and how loudly to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was bad (4xx).
    Client,
    /// The tenant's component failed (5xx, the tenant's to fix).
    Tenant,
    /// The node itself failed or is at capacity.
    Platform,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Request(#[from] RequestLimit),
    #[error("the response declares {declared} bytes; the app's limit is {limit}")]
    ResponseTooLarge { declared: u64, limit: u64 },
    #[error("{}", crate::cache::result::NOT_CACHED)]
    NotCached,
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("the node does not support the {0} method")]
    MethodNotSupported(http::Method),
}

/// A request the node refuses as it is: larger than the node or app
/// allows, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestLimit {
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the request body is larger than the app's limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request body stalled for more than {timeout:?}")]
    BodyTimeout { timeout: std::time::Duration },
    #[error("the request body is malformed or was cut off")]
    BadBody,
    #[error("a GET or HEAD request to an origin route may not carry a body")]
    BodyNotAllowed,
}

impl EdgeError {
    /// Whether the client broke the protocol rather than asked for
    /// something it may not have: an HTTP/1 connection that sent this is
    /// closed after the answer ([`EdgeError::to_response_for`]), as a
    /// request the node refused for its framing or its host may be one of
    /// several a desynchronised hop in front of it meant differently.
    pub fn ends_connection(&self) -> bool {
        matches!(
            self,
            EdgeError::Route(
                RouteError::MissingHost
                    | RouteError::InvalidHost
                    | RouteError::Userinfo
                    | RouteError::AmbiguousHost
            ) | EdgeError::MethodNotSupported(_)
                | EdgeError::Request(RequestLimit::BadBody | RequestLimit::BodyNotAllowed)
        )
    }

    /// [`EdgeError::to_response`], with `Connection: close` for an HTTP/1
    /// request whose error [ends the connection](Self::ends_connection).
    pub fn to_response_for(&self, version: http::Version) -> Response<ResponseBody> {
        let mut response = self.to_response();
        if version <= http::Version::HTTP_11 && self.ends_connection() {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::Route(
                RouteError::MissingHost
                | RouteError::InvalidHost
                | RouteError::Userinfo
                | RouteError::AmbiguousHost,
            ) => StatusCode::BAD_REQUEST,
            EdgeError::MethodNotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            EdgeError::Route(RouteError::UnknownHost(_) | RouteError::NoPathMatch(_)) => {
                StatusCode::NOT_FOUND
            }
            EdgeError::Route(RouteError::AppUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::Admission(AdmissionError::Rate { .. }) => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::Admission(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::Request(RequestLimit::UriTooLong { .. }) => StatusCode::URI_TOO_LONG,
            EdgeError::Request(RequestLimit::HeadersTooLarge { .. }) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            EdgeError::Request(RequestLimit::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Request(RequestLimit::BodyTimeout { .. }) => StatusCode::REQUEST_TIMEOUT,
            EdgeError::Request(RequestLimit::BadBody | RequestLimit::BodyNotAllowed) => {
                StatusCode::BAD_REQUEST
            }
            EdgeError::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            EdgeError::NotCached => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::Origin(OriginError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::Origin(_) => StatusCode::BAD_GATEWAY,
            EdgeError::Guest(err) => match err {
                GuestError::Trap { .. } | GuestError::MemoryLimitExceeded => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                GuestError::CpuTimeExceeded(_) => StatusCode::SERVICE_UNAVAILABLE,
                GuestError::WallTimeExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
                GuestError::NoResponse | GuestError::ErrorCode(_) => StatusCode::BAD_GATEWAY,
                GuestError::PoolExhausted(_) | GuestError::Instantiate(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                GuestError::Host(_) | GuestError::Join(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The stable code sent in `x-edge-error`.
    pub fn code(&self) -> &'static str {
        match self {
            EdgeError::Route(RouteError::MissingHost) => "missing-host",
            EdgeError::Route(RouteError::InvalidHost | RouteError::Userinfo) => "invalid-host",
            EdgeError::Route(RouteError::AmbiguousHost) => "ambiguous-host",
            EdgeError::MethodNotSupported(_) => "method-not-supported",
            EdgeError::Route(RouteError::UnknownHost(_)) => "unknown-host",
            EdgeError::Route(RouteError::NoPathMatch(_)) => "no-route",
            EdgeError::Route(RouteError::AppUnavailable(_)) => "app-unavailable",
            EdgeError::Admission(AdmissionError::NodeAtCapacity(_)) => "node-at-capacity",
            EdgeError::Admission(AdmissionError::Concurrency(_)) => "concurrency-limit-exceeded",
            EdgeError::Admission(AdmissionError::Rate { .. }) => "rate-limit-exceeded",
            EdgeError::Request(RequestLimit::UriTooLong { .. }) => "uri-too-long",
            EdgeError::Request(RequestLimit::HeadersTooLarge { .. }) => "headers-too-large",
            EdgeError::Request(RequestLimit::BodyTooLarge { .. }) => "request-body-too-large",
            EdgeError::Request(RequestLimit::BodyTimeout { .. }) => "request-body-timeout",
            EdgeError::Request(RequestLimit::BadBody) => "bad-request-body",
            EdgeError::Request(RequestLimit::BodyNotAllowed) => "body-not-allowed",
            EdgeError::ResponseTooLarge { .. } => "response-too-large",
            EdgeError::NotCached => crate::cache::result::NOT_CACHED_CODE,
            EdgeError::Origin(OriginError::Timeout) => "origin-timeout",
            EdgeError::Origin(OriginError::Prohibited(_)) => "origin-prohibited",
            EdgeError::Origin(OriginError::Unreachable(_)) => "origin-unreachable",
            EdgeError::Guest(err) => match err {
                GuestError::Trap { .. } => "guest-trap",
                GuestError::CpuTimeExceeded(_) => "cpu-time-exceeded",
                GuestError::WallTimeExceeded(_) => "wall-time-exceeded",
                GuestError::MemoryLimitExceeded => "memory-limit-exceeded",
                GuestError::NoResponse => "no-response",
                GuestError::ErrorCode(_) => "guest-error",
                GuestError::PoolExhausted(_) => "instance-pool-exhausted",
                GuestError::Instantiate(_) => "instantiation-failed",
                GuestError::Host(_) | GuestError::Join(_) => "internal-error",
            },
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            // The control plane accepted the component; this node could not
            // load it (or its artifact): the operator's to look at.
            EdgeError::Route(RouteError::AppUnavailable(_)) => Fault::Platform,
            EdgeError::Route(_)
            | EdgeError::Request(_)
            | EdgeError::NotCached
            | EdgeError::MethodNotSupported(_) => Fault::Client,
            EdgeError::Admission(AdmissionError::NodeAtCapacity(_)) => Fault::Platform,
            EdgeError::Admission(_) | EdgeError::ResponseTooLarge { .. } | EdgeError::Origin(_) => {
                Fault::Tenant
            }
            EdgeError::Guest(
                GuestError::Trap { .. }
                | GuestError::NoResponse
                | GuestError::ErrorCode(_)
                | GuestError::CpuTimeExceeded(_)
                | GuestError::WallTimeExceeded(_)
                | GuestError::MemoryLimitExceeded,
            ) => Fault::Tenant,
            EdgeError::Guest(_) => Fault::Platform,
        }
    }

    /// What the client reads: one short line, no internals.
    fn public_message(&self) -> String {
        match self {
            EdgeError::Route(err) => err.to_string(),
            EdgeError::Admission(err) => err.to_string(),
            EdgeError::Request(err) => err.to_string(),
            EdgeError::NotCached | EdgeError::MethodNotSupported(_) => self.to_string(),
            EdgeError::Origin(OriginError::Timeout) => "the origin did not answer in time".into(),
            EdgeError::Origin(OriginError::Prohibited(_)) => {
                "the origin's address is not allowed on this node".into()
            }
            EdgeError::Origin(OriginError::Unreachable(_)) => {
                "the origin could not be reached".into()
            }
            EdgeError::ResponseTooLarge { .. } => {
                "the app's response is larger than its limit".into()
            }
            EdgeError::Guest(err) => match err {
                GuestError::CpuTimeExceeded(limit) => {
                    format!("the app used more than its {limit:?} of CPU time for this request")
                }
                GuestError::WallTimeExceeded(limit) => {
                    format!("the app did not finish within its {limit:?} time limit")
                }
                GuestError::MemoryLimitExceeded => "the app ran out of its memory limit".into(),
                GuestError::Trap { .. } => {
                    "the app's component failed while handling the request".into()
                }
                GuestError::NoResponse => "the app's component returned without a response".into(),
                GuestError::ErrorCode(_) => "the app's component answered with an error".into(),
                GuestError::PoolExhausted(_) => "the node is at capacity; retry shortly".into(),
                GuestError::Instantiate(_) => "the app could not be started; retry shortly".into(),
                GuestError::Host(_) | GuestError::Join(_) => {
                    "internal error in the edge node".into()
                }
            },
        }
    }

    /// Seconds after which a retry may succeed, for 503s and 429s.
    fn retry_after(&self) -> Option<u64> {
        match self {
            EdgeError::Admission(AdmissionError::Rate { retry_after, .. }) => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            EdgeError::Admission(_)
            | EdgeError::Guest(GuestError::PoolExhausted(_) | GuestError::Instantiate(_)) => {
                Some(1)
            }
            _ => None,
        }
    }

    pub fn to_response(&self) -> Response<ResponseBody> {
        let mut response = refusal(self.status(), self.code(), &self.public_message());
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_status_code_and_retry_after() {
        let err = EdgeError::from(RouteError::UnknownHost("x.test".into()));
        let resp = err.to_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[ERROR_HEADER], "unknown-host");
        assert!(resp.headers().get(http::header::RETRY_AFTER).is_none());

        let err = EdgeError::from(GuestError::PoolExhausted(wasmtime::format_err!("full")));
        let resp = err.to_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(err.fault(), Fault::Platform);
    }
}
