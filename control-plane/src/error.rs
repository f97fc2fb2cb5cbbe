//! Every API refusal: a status, a stable code and a one-line message, sent
//! as `{"error": {"code": "...", "message": "..."}}` (`edge_common::api::ErrorBody`).

use bytes::Bytes;
use edge_common::api::{ErrorBody, ErrorDetail};
use http::{Response, StatusCode, header};
use http_body_util::Full;

use crate::auth::AuthError;
use crate::certs::CertError;
use crate::compile::UploadError;
use crate::store::{QuotaExceeded, StoreError};
use crate::uploads::{BodyError, SlotError};

/// `Retry-After` for an upload refused for want of a slot: about how long
/// a typical upload (a few MiB received and compiled) holds one.
const UPLOAD_RETRY_AFTER_SECS: u64 = 5;

/// `Retry-After` while the blob store is unavailable: an object store
/// restarting or failing over is back within seconds, and clients should
/// not hammer it meanwhile.
const STORAGE_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to send as `Retry-After` (a rate limit).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        // Two strings cannot fail to serialise; were it to happen, the
        // status would still say what went wrong.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"edge-cp\""),
            );
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::Missing => "token-missing",
            AuthError::Expired => "token-expired",
            AuthError::NotYetValid => "token-not-yet-valid",
            AuthError::Invalid(_) => "token-invalid",
        };
        Self::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}

/// A key-value refusal answers its code's status, with the code.
impl From<edge_common::kv::KvError> for ApiError {
    fn from(e: edge_common::kv::KvError) -> Self {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.code.as_str(), e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::not_found(e.to_string()),
            StoreError::Exists(_) => {
                Self::new(StatusCode::CONFLICT, "already-exists", e.to_string())
            }
            StoreError::HostTaken(_) => {
                Self::new(StatusCode::CONFLICT, "host-taken", e.to_string())
            }
            StoreError::OriginApp(_) => {
                Self::new(StatusCode::CONFLICT, "origin-app", e.to_string())
            }
            StoreError::NotOriginApp(_) => {
                Self::new(StatusCode::CONFLICT, "not-origin-app", e.to_string())
            }
            StoreError::QuotaExceeded(e) => e.into(),
            StoreError::PurgeRateLimited {
                tenant,
                max,
                window_secs,
                retry_after_secs,
            } => {
                let window = if window_secs == 60 {
                    "minute".to_string()
                } else {
                    format!("{window_secs} s")
                };
                Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "purge-rate-limited",
                    format!(
                        "tenant {tenant} made {max} purges in the last {window}, the most allowed; retry in {retry_after_secs} s"
                    ),
                )
                .with_retry_after(retry_after_secs)
            }
            StoreError::TailLimit { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "tail-limit", e.to_string())
            }
            StoreError::CertificateLimit { .. } => {
                Self::new(StatusCode::CONFLICT, "cert-limit", e.to_string())
            }
            StoreError::OutboundLimit { .. } => {
                Self::new(StatusCode::CONFLICT, "outbound-limit", e.to_string())
            }
            StoreError::LimitInUse { .. } => {
                Self::new(StatusCode::CONFLICT, "limit-in-use", e.to_string())
            }
            StoreError::Kv(e) => e.into(),
            StoreError::SecretLimit { .. } => {
                Self::new(StatusCode::CONFLICT, "secret-limit", e.to_string())
            }
            // The API builds the bundle again a few times before giving up.
            StoreError::SecretsChanged(_) => {
                Self::new(StatusCode::CONFLICT, "secrets-busy", e.to_string())
            }
            // Not reachable through the API (the ACME worker drops such a
            // result), mapped for completeness.
            StoreError::LeaseLost { .. } => {
                Self::new(StatusCode::CONFLICT, "lease-lost", e.to_string())
            }
            // Not reachable through the API (restores are an operator's
            // command), mapped for completeness.
            StoreError::Restore(_) => {
                Self::new(StatusCode::CONFLICT, "restore-refused", e.to_string())
            }
            // Whose disk and where goes to the log; the client learns
            // that nothing was stored and that retrying later may work.
            StoreError::Full(detail) => {
                tracing::error!(what = %detail, "storage full");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage-full",
                    "the control plane's storage is full: nothing was stored; try again once an operator has freed space",
                )
            }
            StoreError::Backend(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage-error",
                e.to_string(),
            ),
            // The details (endpoint, the store's own error) go to the log,
            // not to the client.
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "storage backend unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-unavailable",
                    "the blob store is unavailable; try again shortly",
                )
                .with_retry_after(STORAGE_RETRY_AFTER_SECS)
            }
            StoreError::Corrupt(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "blob-corrupt",
                e.to_string(),
            ),
        }
    }
}

impl From<QuotaExceeded> for ApiError {
    fn from(e: QuotaExceeded) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "storage-quota-exceeded",
            e.to_string(),
        )
    }
}

impl From<SlotError> for ApiError {
    fn from(e: SlotError) -> Self {
        let (status, code, message) = match &e {
            SlotError::TenantBusy { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "upload-slots-busy",
                format!("{e}; retry once one has finished"),
            ),
            SlotError::Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many uploads in progress; retry shortly".to_string(),
            ),
        };
        Self::new(status, code, message).with_retry_after(UPLOAD_RETRY_AFTER_SECS)
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let (status, code) = match e {
            BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large"),
            BodyError::Idle { .. } | BodyError::TooSlow { .. } => {
                (StatusCode::REQUEST_TIMEOUT, "upload-timeout")
            }
            BodyError::Read(_) => (StatusCode::BAD_REQUEST, "body-read-failed"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let code = match e {
            UploadError::NotWasm => "not-wasm",
            UploadError::CoreModule => "not-a-component",
            UploadError::Invalid(_) => "invalid-component",
            UploadError::UnsupportedImports(_) => "unsupported-imports",
            UploadError::NotAnHttpHandler => "wrong-world",
            UploadError::Compile(_) => {
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "compile-failed",
                    e.to_string(),
                );
            }
        };
        Self::bad_request(code, e.to_string())
    }
}

impl From<CertError> for ApiError {
    fn from(e: CertError) -> Self {
        let status = match e {
            // No randomness to seal with: the platform's fault.
            CertError::Seal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }
}
