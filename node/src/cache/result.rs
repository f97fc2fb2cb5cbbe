//! How the cache answered a request: a leaf, so that metrics can name it
//! without importing the cache.

/// How the cache answered one request: the `x-cache` value and the
/// `result` label of `edge_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served fresh from the store.
    Hit,
    /// Sent to the backend; its answer is being stored.
    Miss,
    /// Served stale: within `stale-while-revalidate` (a refresh runs in
    /// the background), allowed by the request's `max-stale`, or because
    /// the backend failed within `stale-if-error`.
    Stale,
    /// A stored response the backend confirmed with a 304.
    Revalidated,
    /// Not storable (a range miss whose 206 is not kept too), a HEAD that
    /// missed, or the cache not active for the app yet: passed through.
    Bypass,
}

impl CacheResult {
    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
            CacheResult::Bypass => "BYPASS",
        }
    }
}

/// The `x-edge-error` code of an `only-if-cached` miss.
pub const NOT_CACHED_CODE: &str = "not-cached";

/// What a request that said `only-if-cached` is told when nothing usable
/// is stored (504 `not-cached`).
pub const NOT_CACHED: &str = "only-if-cached: no usable response is stored for this request";
