//! `[cache]`: the shared HTTP cache's size and behaviour. Used by
//! `cache::layer`.

use std::time::Duration;

use serde::Deserialize;

/// `[cache]` in the node's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache in front of every app. Default: true.
    pub enabled: bool,
    /// Bytes of responses kept, all tenants together (LRU-ish eviction by
    /// weight). Default: 256 MiB.
    pub capacity_bytes: u64,
    /// Largest response stored; larger ones stream through. Default: 8 MiB.
    pub max_entry_bytes: usize,
    /// How long a request waits for a concurrent miss of the same resource
    /// before going to the app itself. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub collapse_wait: Duration,
    /// Bearer token for `POST /cache/purge` on the admin listener (at least
    /// 16 characters). Default: none, and the endpoint answers 403.
    pub purge_token: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity_bytes: 256 << 20,
            max_entry_bytes: 8 << 20,
            collapse_wait: Duration::from_secs(10),
            purge_token: None,
        }
    }
}
