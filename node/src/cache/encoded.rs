//! A stored entry's encoded copies (compression at the edge): one per
//! content coding, built once, on the first hit that asks for it, and kept
//! next to the identity body they were made from. They live inside the
//! [`Entry`](super::store::Entry), so they count in its weight and go
//! with it, whatever removes it (a purge by URL, surrogate key or app, an
//! eviction, a newer response).
//!
//! Data only: which stored responses may have copies, and the copies.
//! Negotiation and the codecs are in `compress`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::body::StoredBody;
use crate::config::Coding;

/// The encoded copies of one stored entry.
#[derive(Debug)]
pub struct EncodedCopies {
    /// The identity body the copies are made from (the entry's own: a
    /// reference, not a second copy of its bytes).
    pub identity: StoredBody,
    /// One slot per [`Coding::ALL`].
    copies: [OnceLock<Bytes>; 3],
    /// The entry's strong `ETag` and its weak form (what every copy is
    /// sent with, RFC 9110 §8.8.3), made once rather than on every hit.
    etags: Option<(HeaderValue, HeaderValue)>,
    /// Held while a copy is built, one per coding: concurrent first hits
    /// wait for one build instead of each compressing the same body.
    building: [tokio::sync::Mutex<()>; 3],
    /// The store key of the entry holding these copies, set when it is
    /// stored: adding a copy re-weighs that key.
    owner: OnceLock<String>,
}

impl EncodedCopies {
    /// Copies for a response about to be stored, if it is one compression
    /// may apply to (see [`compressible`]).
    pub fn for_response(
        status: StatusCode,
        headers: &HeaderMap,
        body: &StoredBody,
    ) -> Option<std::sync::Arc<Self>> {
        compressible(status, headers).then(|| {
            std::sync::Arc::new(Self {
                identity: body.clone(),
                copies: Default::default(),
                etags: headers.get(header::ETAG).and_then(|strong| {
                    if strong.as_bytes().starts_with(b"W/") {
                        return None;
                    }
                    let mut weak = Vec::with_capacity(strong.len() + 2);
                    weak.extend_from_slice(b"W/");
                    weak.extend_from_slice(strong.as_bytes());
                    Some((strong.clone(), HeaderValue::from_bytes(&weak).ok()?))
                }),
                building: Default::default(),
                owner: OnceLock::new(),
            })
        })
    }

    /// The weak form of `etag`, if it is the strong `ETag` the entry was
    /// stored with.
    pub fn weak_etag_of(&self, etag: &HeaderValue) -> Option<&HeaderValue> {
        match &self.etags {
            Some((strong, weak)) if strong == etag => Some(weak),
            _ => None,
        }
    }

    /// The copy in `coding`, if it was built.
    pub fn get(&self, coding: Coding) -> Option<&Bytes> {
        self.copies[coding.index()].get()
    }

    /// Held while the copy in `coding` is built.
    pub async fn building(&self, coding: Coding) -> tokio::sync::MutexGuard<'_, ()> {
        self.building[coding.index()].lock().await
    }

    /// Keeps `bytes` as the copy in `coding`: the bytes it adds to the
    /// entry (0 if another request kept one first).
    pub fn set(&self, coding: Coding, bytes: Bytes) -> usize {
        let len = bytes.len();
        match self.copies[coding.index()].set(bytes) {
            Ok(()) => len,
            Err(_) => 0,
        }
    }

    /// Bytes the copies hold (part of the entry's weight).
    pub fn memory_bytes(&self) -> usize {
        self.copies
            .iter()
            .filter_map(OnceLock::get)
            .map(Bytes::len)
            .sum()
    }

    /// Records the store key of the entry holding these copies.
    pub fn stored_under(&self, key: &str) {
        let _ = self.owner.set(key.to_string());
    }

    /// The store key of the entry holding these copies, once stored.
    pub fn owner(&self) -> Option<&str> {
        self.owner.get().map(String::as_str)
    }
}

/// Whether compression may apply to a response, whatever the client
/// accepts: a 200 (never a 206, a 304 or an error page) that is not encoded
/// already (never compress twice), does not say `no-transform` (RFC 9111
/// §5.2.2.6), and whose type compresses.
pub fn compressible(status: StatusCode, headers: &HeaderMap) -> bool {
    // Cheapest first: most answers that are not compressible have no
    // compressible type, and this runs on every answer.
    status == StatusCode::OK
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(compressible_type)
        && headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
        && !no_transform(headers)
}

/// `Cache-Control: no-transform` (a token anywhere in the field; a quoted
/// value that happens to hold it only makes us not compress, the safe way
/// to be wrong).
fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Media types worth compressing: text, and the structured and script
/// types that are text underneath. Images other than SVG, audio, video,
/// fonts in compressed formats and archives are compressed already, and
/// `text/event-stream` must reach the client event by event, which a
/// compressor's buffering would break.
///
/// Compared without case and without lowercasing into a new string: this
/// runs on every hit of a stored response.
pub fn compressible_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let any = |names: &[&str]| names.iter().any(|n| sub.eq_ignore_ascii_case(n));
    let ends = |suffix: &str| {
        sub.len() >= suffix.len()
            && sub.as_bytes()[sub.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    if kind.eq_ignore_ascii_case("text") {
        !sub.eq_ignore_ascii_case("event-stream")
    } else if kind.eq_ignore_ascii_case("application") {
        ends("+json")
            || ends("+xml")
            || any(&[
                "json",
                "javascript",
                "x-javascript",
                "ecmascript",
                "xml",
                "wasm",
                "x-ndjson",
                "x-www-form-urlencoded",
                "vnd.ms-fontobject",
                "x-font-ttf",
                "x-yaml",
                "yaml",
                "toml",
                "wasm-text",
            ])
    } else if kind.eq_ignore_ascii_case("image") {
        any(&["svg+xml", "x-icon", "vnd.microsoft.icon", "bmp"])
    } else if kind.eq_ignore_ascii_case("font") {
        any(&["ttf", "otf", "collection"])
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        for yes in [
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "Application/Problem+JSON",
            "text/plain ; charset=utf-8",
            "application/problem+json",
            "application/atom+xml",
            "application/javascript",
            "image/svg+xml",
            "application/wasm",
        ] {
            assert!(compressible_type(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "video/mp4",
            "audio/mpeg",
            "application/zip",
            "application/gzip",
            "application/octet-stream",
            "font/woff2",
            "text/event-stream",
            "",
            "nonsense",
        ] {
            assert!(!compressible_type(no), "{no}");
        }
    }

    #[test]
    fn only_plain_200s_with_transform_allowed() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            map
        };
        let text = [("content-type", "text/plain")];
        assert!(compressible(StatusCode::OK, &headers(&text)));
        assert!(!compressible(StatusCode::PARTIAL_CONTENT, &headers(&text)));
        assert!(!compressible(StatusCode::NOT_MODIFIED, &headers(&text)));
        assert!(!compressible(
            StatusCode::OK,
            &headers(&[("content-type", "text/plain"), ("content-encoding", "gzip")])
        ));
        assert!(!compressible(
            StatusCode::OK,
            &headers(&[
                ("content-type", "text/plain"),
                ("cache-control", "max-age=60, No-Transform")
            ])
        ));
        assert!(!compressible(StatusCode::OK, &HeaderMap::new()));
    }
}
