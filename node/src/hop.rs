//! Hop-by-hop headers (RFC 9110 §7.6.1): they belong to one connection and
//! never travel further, nor do the headers a `Connection` header names.
//!
//! A client's request is cleaned as it enters the node, before routing, the
//! cache or a backend look at it: the cache then keys (and varies) on
//! exactly what the backend sees, so a header listed in `Connection` cannot
//! be missing for the origin and present in the cache key. The node adds
//! its own headers (`X-Forwarded-*`) after, so no token can remove them.
//! Origins' responses are cleaned the same way before the cache stores them.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Always hop-by-hop, listed or not.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Non-standard hop-by-hop headers still seen in the wild.
const LEGACY_HOP_BY_HOP: &[&str] = &["keep-alive", "proxy-connection"];

/// End-to-end headers the node itself relies on: a `Connection` token
/// naming one is ignored (routing needs `Host`; framing and the body limit
/// need `Content-Length`).
const NEVER_LISTED: &[HeaderName] = &[header::HOST, header::CONTENT_LENGTH];

/// Removes hop-by-hop headers and those the `Connection` header names
/// (except [`NEVER_LISTED`]). A `Content-Length` that came along with
/// `Transfer-Encoding` is dropped too: the body was framed by the latter,
/// and goes on framed anew.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The common case, every HTTP/2 request and most HTTP/1 ones, has
    // nothing to remove: one pass over the names instead of a lookup per
    // hop-by-hop name.
    let any = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(name) || LEGACY_HOP_BY_HOP.contains(&name.as_str()));
    if !any {
        return;
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !NEVER_LISTED.contains(name))
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    for name in LEGACY_HOP_BY_HOP {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn listed_and_fixed_hop_by_hop_headers_go() {
        let mut map = headers(&[
            ("connection", "x-forwarded-host, X-Custom , keep-alive"),
            ("connection", "accept-language"),
            ("x-forwarded-host", "evil.test"),
            ("x-custom", "1"),
            ("accept-language", "fr"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn host_and_content_length_cannot_be_listed() {
        let mut map = headers(&[
            ("connection", "host, content-length"),
            ("host", "a.test"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut map);
        assert_eq!(map["host"], "a.test");
        assert_eq!(map["content-length"], "3");
    }

    #[test]
    fn a_length_beside_transfer_encoding_goes() {
        let mut map = headers(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
        strip_hop_by_hop(&mut map);
        assert!(map.is_empty());
    }
}
