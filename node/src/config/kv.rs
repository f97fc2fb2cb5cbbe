//! `[kv]`: the node's replica of the key-value stores and its writes to the
//! control plane (used only with a `[control_plane]`).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[kv]` in the node's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    /// Bytes the node's replica of every store may hold: keys plus values
    /// plus about 100 bytes per entry (`ENTRY_OVERHEAD_BYTES`, the maps'
    /// own cost). Over it the node stops applying changes and answers
    /// reads with `kv-replica-full` rather than stale data. While a
    /// snapshot is received it is built next to the replica in use, so
    /// memory peaks at up to twice this. Default 256 MiB.
    #[serde(default = "default_max_replica_bytes")]
    pub max_replica_bytes: u64,
    /// How long a guest's write waits for the control plane before it
    /// fails with `kv-unavailable`. Default 5 s.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
}

fn default_max_replica_bytes() -> u64 {
    256 << 20
}

fn default_write_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            max_replica_bytes: default_max_replica_bytes(),
            write_timeout: default_write_timeout(),
        }
    }
}

impl KvConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Below 1 MiB one default-sized value could not be held.
        if self.max_replica_bytes < (1 << 20) || self.max_replica_bytes > (1 << 40) {
            return Err(invalid(
                "kv.max_replica_bytes",
                "must be between 1 MiB (1048576) and 1 TiB",
            ));
        }
        if self.write_timeout < Duration::from_millis(100)
            || self.write_timeout > Duration::from_secs(60)
        {
            return Err(invalid("kv.write_timeout", "must be between 100ms and 60s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NodeConfig;

    fn parse(toml: &str) -> Result<(), String> {
        let mut config = NodeConfig::from_toml(toml).map_err(|e| e.to_string())?;
        config.listen.http = Some("127.0.0.1:0".parse().map_err(|_| "addr")?);
        config.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_hold_and_bad_values_name_their_field() {
        let config = NodeConfig::from_toml("").unwrap();
        assert_eq!(config.kv.max_replica_bytes, 256 << 20);
        assert_eq!(config.kv.write_timeout, std::time::Duration::from_secs(5));
        assert!(parse("[kv]\nmax_replica_bytes = 2097152\nwrite_timeout = \"1s\"").is_ok());
        let small = parse("[kv]\nmax_replica_bytes = 1000").unwrap_err();
        assert!(small.contains("kv.max_replica_bytes"), "{small}");
        let slow = parse("[kv]\nwrite_timeout = \"5m\"").unwrap_err();
        assert!(slow.contains("kv.write_timeout"), "{slow}");
        let unknown = parse("[kv]\nmax_bytes = 1").unwrap_err();
        assert!(unknown.contains("max_bytes"), "{unknown}");
    }
}
