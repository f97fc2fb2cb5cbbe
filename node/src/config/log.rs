//! `[log]`: the node's own logging of requests.

use serde::Deserialize;

/// `[log]` in the node's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `"stderr"`: one access line per request through the node's log
    /// (stderr, target `access`; JSON with `--log-format json`). Default:
    /// `"off"`. Separate from tenants' live logs (`edgectl logs`), which
    /// need no setting here.
    #[serde(default)]
    pub access: AccessLog,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    #[default]
    Off,
    Stderr,
}
