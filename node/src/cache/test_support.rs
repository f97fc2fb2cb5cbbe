//! Helpers the cache's unit tests share.

use std::time::SystemTime;

use http::header::HeaderName;
use http::{HeaderMap, StatusCode};

use super::body::StoredBody;
use super::policy::Received;
use super::store::Entry;

/// A header map of `pairs`, repeated names appended in order.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a test's header name"),
            value.parse().expect("a test's header value"),
        );
    }
    map
}

/// Sent and received now.
pub fn received_now() -> Received {
    let now = SystemTime::now();
    Received {
        request_time: now,
        response_time: now,
    }
}

/// A 200 with `headers` and `body`, received now for a request without
/// headers.
pub fn entry_now(headers: HeaderMap, body: impl Into<StoredBody>) -> Entry {
    Entry::new(
        StatusCode::OK,
        headers,
        body,
        received_now(),
        &HeaderMap::new(),
    )
}
