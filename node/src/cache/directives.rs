//! The parsed directives of a cache-control field: what `policy` reads
//! from `Cache-Control` and `Surrogate-Control` and `targeted` from the
//! RFC 9213 fields. A leaf of the cache, so that both can build one
//! without importing each other.

use std::time::Duration;

/// Directives of one `Cache-Control` (or `Surrogate-Control`) field set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    /// `no-cache` (with or without field names: both mean revalidate
    /// before every use here, the conservative reading).
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<Duration>,
    pub s_maxage: Option<Duration>,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    /// Request: `max-stale` (`Some(None)` without a value: any staleness).
    pub max_stale: Option<Option<Duration>>,
    pub min_fresh: Option<Duration>,
    pub only_if_cached: bool,
    /// RFC 8246: the body never changes while fresh, so a client's reload
    /// (`no-cache`, `max-age=0`) does not revalidate a fresh response.
    pub immutable: bool,
    /// RFC 9111 §5.2.2.3: store only if this cache implements the status's
    /// rules; then `no-store` is overridden.
    pub must_understand: bool,
    /// Read from an RFC 9213 targeted field (`targeted`): the
    /// response's `Cache-Control` and `Expires` are ignored (§2.2).
    pub targeted: bool,
}
