//! Caching headers, built rather than typed: `Cache-Control` (for
//! browsers and every cache), `CDN-Cache-Control` (RFC 9213: for CDNs
//! only, overriding `Cache-Control` there) and `Surrogate-Key` (tags the
//! node's cache purges by: `edgectl purge APP --key KEY`).
//!
//! ```
//! use std::time::Duration;
//! use edge_sdk::cache::{CacheControl, CacheHeaders, SurrogateKeys};
//! use edge_sdk::{Body, Response};
//!
//! let mut resp = Response::new(Body::from("catalog\n"));
//! resp.cache_control(&CacheControl::new().public().max_age(Duration::from_secs(60)));
//! resp.cdn_cache_control(
//!     &CacheControl::new()
//!         .max_age(Duration::from_secs(3600))
//!         .stale_while_revalidate(Duration::from_secs(60)),
//! );
//! resp.surrogate_keys(&SurrogateKeys::new().key("catalog").key("product-42"))
//!     .expect("valid keys");
//! assert_eq!(resp.headers()["cache-control"], "public, max-age=60");
//! assert_eq!(resp.headers()["cdn-cache-control"], "max-age=3600, stale-while-revalidate=60");
//! assert_eq!(resp.headers()["surrogate-key"], "catalog product-42");
//! ```

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The directives of a `Cache-Control` (or `CDN-Cache-Control`) value, in
/// the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    directives: Vec<String>,
}

impl CacheControl {
    pub fn new() -> Self {
        Self::default()
    }

    fn flag(mut self, name: &str) -> Self {
        self.directives.push(name.to_string());
        self
    }

    fn seconds(mut self, name: &str, duration: Duration) -> Self {
        self.directives
            .push(format!("{name}={}", duration.as_secs()));
        self
    }

    /// Any cache may store it, even for a request with `Authorization`.
    pub fn public(self) -> Self {
        self.flag("public")
    }
    /// Only the user's own (browser) cache may store it; the edge never does.
    pub fn private(self) -> Self {
        self.flag("private")
    }
    /// Nothing may store it.
    pub fn no_store(self) -> Self {
        self.flag("no-store")
    }
    /// Stored, but revalidated with the origin before every use.
    pub fn no_cache(self) -> Self {
        self.flag("no-cache")
    }
    /// Once stale, never served without revalidating.
    pub fn must_revalidate(self) -> Self {
        self.flag("must-revalidate")
    }
    /// Never changes while fresh: browsers skip revalidating on reload.
    pub fn immutable(self) -> Self {
        self.flag("immutable")
    }
    /// Fresh for `age` (whole seconds).
    pub fn max_age(self, age: Duration) -> Self {
        self.seconds("max-age", age)
    }
    /// Fresh for `age` in shared caches (the edge), overriding `max-age`.
    pub fn s_maxage(self, age: Duration) -> Self {
        self.seconds("s-maxage", age)
    }
    /// Once stale, still served for `window` while refreshed in the background.
    pub fn stale_while_revalidate(self, window: Duration) -> Self {
        self.seconds("stale-while-revalidate", window)
    }
    /// Once stale, still served for `window` if the origin fails.
    pub fn stale_if_error(self, window: Duration) -> Self {
        self.seconds("stale-if-error", window)
    }

    /// The header value. Always valid: every directive is ASCII.
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl fmt::Display for CacheControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.directives.join(", "))
    }
}

/// The keys of a `Surrogate-Key` header (space-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurrogateKeys {
    keys: Vec<String>,
}

/// A surrogate key that cannot be sent: empty, or with a space, a control
/// character or a non-ASCII byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey(pub String);

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "surrogate key {:?}: keys are visible ASCII without spaces",
            self.0
        )
    }
}

impl std::error::Error for InvalidKey {}

impl SurrogateKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` (checked when the header is built).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// The header value, or the first key that cannot be sent.
    pub fn to_header_value(&self) -> Result<HeaderValue, InvalidKey> {
        for key in &self.keys {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(InvalidKey(key.clone()));
            }
        }
        HeaderValue::from_str(&self.keys.join(" ")).map_err(|_| InvalidKey(self.keys.join(" ")))
    }
}

pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Sets the caching headers on a response.
pub trait CacheHeaders {
    fn cache_control(&mut self, value: &CacheControl) -> &mut Self;
    fn cdn_cache_control(&mut self, value: &CacheControl) -> &mut Self;
    fn surrogate_keys(&mut self, keys: &SurrogateKeys) -> Result<&mut Self, InvalidKey>;
}

impl<B> CacheHeaders for http::Response<B> {
    fn cache_control(&mut self, value: &CacheControl) -> &mut Self {
        self.headers_mut()
            .insert(http::header::CACHE_CONTROL, value.to_header_value());
        self
    }

    fn cdn_cache_control(&mut self, value: &CacheControl) -> &mut Self {
        self.headers_mut()
            .insert(CDN_CACHE_CONTROL, value.to_header_value());
        self
    }

    fn surrogate_keys(&mut self, keys: &SurrogateKeys) -> Result<&mut Self, InvalidKey> {
        let value = keys.to_header_value()?;
        self.headers_mut().insert(SURROGATE_KEY, value);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_in_order() {
        let cc = CacheControl::new()
            .private()
            .no_cache()
            .must_revalidate()
            .max_age(Duration::from_millis(1500))
            .s_maxage(Duration::from_secs(0))
            .stale_if_error(Duration::from_secs(86_400))
            .immutable();
        assert_eq!(
            cc.to_string(),
            "private, no-cache, must-revalidate, max-age=1, s-maxage=0, stale-if-error=86400, immutable"
        );
        assert_eq!(CacheControl::new().no_store().to_header_value(), "no-store");
    }

    #[test]
    fn keys_that_cannot_be_sent_are_refused() {
        for bad in ["", "two words", "tab\tkey", "ümlaut", "nl\n"] {
            assert_eq!(
                SurrogateKeys::new().key("ok").key(bad).to_header_value(),
                Err(InvalidKey(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            SurrogateKeys::new()
                .key("a")
                .key("b-1")
                .to_header_value()
                .unwrap(),
            "a b-1"
        );
    }
}
