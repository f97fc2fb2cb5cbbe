//! Per-app limits: what one request, and the app as a whole, may use. Set
//! in a node's config file or by an operator through the control plane, and
//! carried to nodes in signed snapshots.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest CPU or wall time a request may be given.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(24 * 3600);

/// Per-app limits. Defaults are production-sane (for reference, Fastly
/// Compute allows 50 ms of CPU and 128 MB of memory per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppLimits {
    /// CPU time the guest's own code may run per request (host calls and
    /// waiting excluded). Over it: 503 `cpu-time-exceeded`. Default: 50ms.
    #[serde(with = "humantime_serde")]
    pub cpu_time: Duration,
    /// Wall-clock time for the whole request, from arrival to the last byte
    /// of the response body. Over it before the response starts: 504
    /// `wall-time-exceeded`; after: the body is cut off. Default: 60s.
    #[serde(with = "humantime_serde")]
    pub wall_time: Duration,
    /// Linear memory one instance may grow to (at most
    /// `runtime.max_memory_bytes`). Over it: the allocation fails, and the
    /// trap that follows is 500 `memory-limit-exceeded`. Default: 128 MiB.
    pub max_memory_bytes: u64,
    /// Elements per table. Default: 20000.
    pub max_table_elements: u32,
    /// Requests of this app running at once on this node. Beyond: 503
    /// `concurrency-limit-exceeded` with `Retry-After`. The node-wide cap
    /// (`http.max_concurrent_requests`) applies on top. Default: 100.
    pub max_concurrent_requests: u32,
    /// Sustained requests per second admitted on this node (token bucket).
    /// Beyond: 429 `rate-limit-exceeded` with `Retry-After`. Default: none.
    pub requests_per_second: Option<f64>,
    /// Requests admitted in a burst above the rate. Default: one second's
    /// worth of `requests_per_second`.
    pub burst: Option<u32>,
    /// Request body bytes, enforced while streaming. Over it: 413
    /// `request-body-too-large`. Default: 100 MiB.
    pub max_request_body_bytes: u64,
    /// Response body bytes. A larger declared `content-length`: 502
    /// `response-too-large`; a stream that goes past it is cut off.
    /// Default: 1 GiB.
    pub max_response_body_bytes: u64,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(60),
            max_memory_bytes: 128 << 20,
            max_table_elements: 20_000,
            max_concurrent_requests: 100,
            requests_per_second: None,
            burst: None,
            max_request_body_bytes: 100 << 20,
            max_response_body_bytes: 1 << 30,
        }
    }
}

impl AppLimits {
    /// The checks that need no node settings, with the offending field named.
    /// A node also checks the limits against its own runtime settings
    /// (memory ceiling, epoch tick) when it applies them.
    pub fn validate(&self) -> Result<(), LimitError> {
        let bad = |field: &'static str, message: &str| {
            Err(LimitError {
                field,
                message: message.to_string(),
            })
        };
        if self.cpu_time < Duration::from_millis(1) || self.cpu_time > MAX_REQUEST_TIME {
            return bad("cpu_time", "must be between 1ms and 24h");
        }
        if self.wall_time.is_zero() || self.wall_time > MAX_REQUEST_TIME {
            return bad("wall_time", "must be more than 0 and at most 24h");
        }
        if self.max_memory_bytes < (1 << 16) {
            return bad("max_memory_bytes", "must be at least 65536 (one wasm page)");
        }
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests", "must be at least 1");
        }
        if let Some(rate) = self.requests_per_second
            && !(rate.is_finite() && (0.001..=1e9).contains(&rate))
        {
            return bad(
                "requests_per_second",
                "must be between 0.001 and 1000000000",
            );
        }
        if self.burst == Some(0) {
            return bad("burst", "must be at least 1");
        }
        Ok(())
    }
}

/// A limit out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits.{field}: {message}")]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}
