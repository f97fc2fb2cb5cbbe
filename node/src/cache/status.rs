//! The `Cache-Status` response field (RFC 9211): how this cache handled
//! the request, in the standard form other CDNs and tools read, next to
//! the node's own `x-cache`. A member is appended to whatever the response
//! already carries (the origin's own caches come first, as RFC 9211 §2
//! orders them).
//!
//! - a fresh hit: `edge; hit; ttl=N` (N seconds of freshness left);
//! - served stale (`max-stale`, `stale-while-revalidate`): `edge; hit;
//!   ttl=-N; detail=...`;
//! - a miss: `edge; fwd=uri-miss` (nothing stored for the URL),
//!   `fwd=vary-miss` (stored, but not for these request headers),
//!   `fwd=stale` (stored, stale: revalidated), `fwd=request` (stored and
//!   fresh, but the request's directives asked for the origin),
//!   `fwd=method` (a HEAD that missed), `fwd=partial` (a range the stored
//!   parts do not hold), `fwd=bypass` (the cache is not active for the app
//!   yet, or the key is marked uncacheable); with `fwd-status` (the
//!   origin's status), `stored` if the answer is being stored, `collapsed`
//!   if the request waited for a concurrent one and got its answer;
//! - served stale because the origin failed (`stale-if-error`): `edge;
//!   fwd=stale; fwd-status=...; ttl=-N; detail=stale-if-error`.

use http::HeaderValue;
use http::header::HeaderName;

pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// This cache's name in `Cache-Status` members.
const NAME: &str = "edge";

/// Why a request went to the backend (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Bypass,
    Method,
    UriMiss,
    VaryMiss,
    Request,
    Stale,
    Partial,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Request => "request",
            Forward::Stale => "stale",
            Forward::Partial => "partial",
        }
    }
}

/// One `Cache-Status` member.
#[derive(Debug, Clone, Copy, Default)]
pub struct Member {
    /// Answered from the cache without going forward.
    pub hit: bool,
    pub fwd: Option<Forward>,
    pub fwd_status: Option<u16>,
    /// Freshness left, in seconds; negative when stale.
    pub ttl: Option<i64>,
    pub stored: bool,
    pub collapsed: bool,
    /// Why a stale answer was allowed, or another note.
    pub detail: Option<&'static str>,
}

impl Member {
    /// A hit (its `ttl` is set where the answer is built).
    pub fn hit() -> Self {
        Self {
            hit: true,
            ..Self::default()
        }
    }

    /// Forwarded for `why`.
    pub fn forward(why: Forward) -> Self {
        Self {
            fwd: Some(why),
            ..Self::default()
        }
    }

    pub fn value(&self) -> HeaderValue {
        // Built by hand into one buffer that becomes the value: this runs
        // on every answer, and `fmt` costs more than the rest together.
        let mut out = bytes::BytesMut::with_capacity(64);
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(NAME.as_bytes());
        if self.hit {
            out.extend_from_slice(b"; hit");
        }
        if let Some(fwd) = self.fwd {
            out.extend_from_slice(b"; fwd=");
            out.extend_from_slice(fwd.token().as_bytes());
        }
        if let Some(status) = self.fwd_status {
            out.extend_from_slice(b"; fwd-status=");
            out.extend_from_slice(number.format(status).as_bytes());
        }
        if let Some(ttl) = self.ttl {
            out.extend_from_slice(b"; ttl=");
            out.extend_from_slice(number.format(ttl).as_bytes());
        }
        if self.stored {
            out.extend_from_slice(b"; stored");
        }
        if self.collapsed {
            out.extend_from_slice(b"; collapsed");
        }
        if let Some(detail) = self.detail {
            out.extend_from_slice(b"; detail=");
            out.extend_from_slice(detail.as_bytes());
        }
        // Only tokens, digits and the separators above: always valid.
        HeaderValue::from_maybe_shared(out.freeze())
            .unwrap_or_else(|_| HeaderValue::from_static(NAME))
    }
}

/// Appends this cache's member to the response's `Cache-Status`.
pub fn append(headers: &mut http::HeaderMap, member: &Member) {
    headers.append(CACHE_STATUS, member.value());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_as_rfc_9211_structured_fields() {
        let cases = [
            (
                Member {
                    ttl: Some(120),
                    ..Member::hit()
                },
                "edge; hit; ttl=120",
            ),
            (
                Member {
                    detail: Some("stale-while-revalidate"),
                    ttl: Some(-3),
                    ..Member::hit()
                },
                "edge; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                Member {
                    fwd_status: Some(200),
                    stored: true,
                    collapsed: true,
                    ..Member::forward(Forward::UriMiss)
                },
                "edge; fwd=uri-miss; fwd-status=200; stored; collapsed",
            ),
            (Member::forward(Forward::Bypass), "edge; fwd=bypass"),
        ];
        for (member, expected) in cases {
            let value = member.value();
            assert_eq!(value.to_str().unwrap(), expected);
            // A valid RFC 8941 list of one item with parameters.
            let parsed = sfv::Parser::new(expected).parse::<sfv::List>();
            assert!(parsed.is_ok(), "{expected}: {parsed:?}");
        }
    }
}
