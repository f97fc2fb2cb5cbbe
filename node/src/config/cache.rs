//! `[cache]`: the shared HTTP cache's size and behaviour. Used by
//! `cache::layer`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

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
    /// Directory of the disk tier (one file per stored response, kept
    /// across restarts). Default: none, and the cache is memory only.
    pub disk_path: Option<PathBuf>,
    /// Bytes of files the disk tier keeps, all tenants together. Default:
    /// 10 GiB.
    pub disk_capacity_bytes: u64,
    /// Largest body stored on disk; bodies over `max_entry_bytes` (but
    /// not over this) are stored on disk only. Default: 1 GiB.
    pub disk_max_entry_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity_bytes: 256 << 20,
            max_entry_bytes: 8 << 20,
            collapse_wait: Duration::from_secs(10),
            purge_token: None,
            disk_path: None,
            disk_capacity_bytes: 10 << 30,
            disk_max_entry_bytes: 1 << 30,
        }
    }
}

impl CacheConfig {
    /// Checks the disk tier's settings (unused without `disk_path`, but
    /// checked anyway so that turning it on cannot surprise).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.disk_path {
            if path.as_os_str().is_empty() {
                return Err(invalid("cache.disk_path", "must not be empty"));
            }
            if path.is_relative() {
                return Err(invalid(
                    "cache.disk_path",
                    "must be an absolute path (or relative to the config file)",
                ));
            }
        }
        // Below 1 MiB nothing worth a disk tier fits; the index weighs
        // files in KiB in a u32 per key, so one key's files stay under
        // 4 TiB.
        if self.disk_capacity_bytes < (1 << 20) || self.disk_capacity_bytes > (1 << 50) {
            return Err(invalid(
                "cache.disk_capacity_bytes",
                "must be between 1 MiB (1048576) and 1 PiB",
            ));
        }
        // Over `disk_capacity_bytes` it is cut to that (see
        // `disk_entry_limit`): the default must work with a small tier.
        if self.disk_max_entry_bytes == 0 || self.disk_max_entry_bytes > (64 << 30) {
            return Err(invalid(
                "cache.disk_max_entry_bytes",
                "must be between 1 and 64 GiB (68719476736)",
            ));
        }
        Ok(())
    }

    /// The largest body the disk tier stores.
    pub fn disk_entry_limit(&self) -> u64 {
        self.disk_max_entry_bytes.min(self.disk_capacity_bytes)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NodeConfig;

    fn parse(toml: &str) -> Result<NodeConfig, String> {
        let mut config = NodeConfig::from_toml(toml).map_err(|e| e.to_string())?;
        config.listen.http = Some("127.0.0.1:0".parse().map_err(|_| "addr")?);
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_disk_tier_is_off_by_default_and_bad_values_name_their_field() {
        let config = parse("").unwrap();
        assert!(config.cache.disk_path.is_none());
        assert_eq!(config.cache.disk_max_entry_bytes, 1 << 30);
        let on = parse("[cache]\ndisk_path = \"/var/cache/edge\"\ndisk_capacity_bytes = 104857600")
            .unwrap();
        // The default entry limit is cut to a smaller tier's capacity.
        assert_eq!(on.cache.disk_entry_limit(), 100 << 20);
        for (toml, field) in [
            ("[cache]\ndisk_path = \"relative/dir\"", "cache.disk_path"),
            ("[cache]\ndisk_path = \"\"", "cache.disk_path"),
            (
                "[cache]\ndisk_capacity_bytes = 1000",
                "cache.disk_capacity_bytes",
            ),
            (
                "[cache]\ndisk_max_entry_bytes = 0",
                "cache.disk_max_entry_bytes",
            ),
            (
                "[cache]\ndisk_max_entry_bytes = 137438953472",
                "cache.disk_max_entry_bytes",
            ),
            (
                "[cache]\ndisk_capacity_bytes = -1",
                "cache.disk_capacity_bytes",
            ),
        ] {
            let err = parse(toml).err().unwrap_or_default();
            assert!(err.contains(field), "{toml}: {err}");
        }
    }
}
