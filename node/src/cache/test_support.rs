//! Helpers the cache's unit tests share.

use http::HeaderMap;
use http::header::HeaderName;

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
