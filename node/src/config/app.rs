//! `[[apps]]`: an app's routes, component, config values and limits, and
//! the checks that span its fields.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;

use super::{AppOutbound, OriginUrl};
use super::{ConfigError, MAX_ENV_BYTES, MAX_REQUEST_TIME, NodeConfig, invalid};
use crate::names::{AppName, HostPattern, TenantId};
pub use edge_common::AppLimits;
pub use edge_common::sync::{AppCompression, AppHttps};

/// One app: a tenant's component, the hostnames it answers, its config values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: AppName,
    pub tenant: TenantId,
    /// Hostnames routed to this app: exact names, `*.domain`, or `*` for any.
    pub hosts: Vec<HostPattern>,
    /// Only requests whose path starts with this prefix (at a `/` boundary).
    /// Default: `/`, every path.
    #[serde(default = "root_prefix")]
    pub path_prefix: String,
    /// The component, a `.wasm` file built for wasm32-wasip2, compiled at
    /// start-up. Give this or `origin`.
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// Instead of a component: forward every request to this origin
    /// (`http(s)://host[:port][/base]`), with the cache in front.
    #[serde(default)]
    pub origin: Option<OriginUrl>,
    /// Origin apps only: forward `X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`, `X-Forwarded-Scheme` and header names with `_`
    /// to the origin. They change the origin's answer without being part of
    /// the cache key, so by default the edge drops them. Default: false.
    #[serde(default)]
    pub forward_override_headers: bool,
    /// Config values, seen by the guest as its environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What one request, and the app as a whole, may use.
    #[serde(default)]
    pub limits: AppLimits,
    /// Where the app's component may send HTTP requests. Default: nowhere.
    #[serde(default)]
    pub outbound: AppOutbound,
    /// `redirect = true`: plain HTTP gets a 308 to HTTPS (ACME challenges
    /// excepted). `hsts = "max-age=..."`: `Strict-Transport-Security` on
    /// HTTPS answers. Default: neither.
    #[serde(default)]
    pub https: AppHttps,
    /// Compression at the edge for this app: `enabled = false` turns it
    /// off, `min_bytes` sets its threshold. Default: the node's
    /// `[compression]`.
    #[serde(default)]
    pub compression: AppCompression,
}

pub(crate) fn root_prefix() -> String {
    "/".to_string()
}

impl NodeConfig {
    pub(super) fn validate_apps(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut routes = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let field = |f: &str| format!("apps[{i}].{f}");
            if !names.insert(app.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("app name `{}` is used twice", app.name),
                ));
            }
            if app.hosts.is_empty() {
                return Err(invalid(field("hosts"), "list at least one hostname"));
            }
            if !is_valid_prefix(&app.path_prefix) {
                return Err(invalid(
                    field("path_prefix"),
                    format!(
                        "`{}` must start with `/` and contain no `?`, `#`, `..` or whitespace",
                        app.path_prefix
                    ),
                ));
            }
            let prefix = normalize_prefix(&app.path_prefix);
            for (h, host) in app.hosts.iter().enumerate() {
                if !routes.insert((host.clone(), prefix.clone())) {
                    return Err(invalid(
                        format!("apps[{i}].hosts[{h}]"),
                        format!(
                            "`{host}` with path prefix `{prefix}` is already routed to another app"
                        ),
                    ));
                }
            }
            match (&app.component, &app.origin) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        field("origin"),
                        "give either a component or an origin, not both",
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        field("component"),
                        "give a component (.wasm) or an origin URL",
                    ));
                }
                (Some(component), None) if !component.is_file() => {
                    return Err(invalid(
                        field("component"),
                        format!("{} is not a readable file", component.display()),
                    ));
                }
                _ => {}
            }
            self.validate_limits(i, &app.limits)?;
            if let Err(message) = app.https.validate() {
                return Err(invalid(field("https"), message));
            }
            if let Err(message) = app.compression.validate() {
                return Err(invalid(field("compression"), message));
            }
            let mut env_bytes = 0;
            for (key, value) in &app.env {
                if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0')
                {
                    return Err(invalid(
                        format!("apps[{i}].env.{key}"),
                        "keys must be non-empty without `=`; neither keys nor values may contain NUL",
                    ));
                }
                env_bytes += key.len() + value.len();
            }
            if env_bytes > MAX_ENV_BYTES {
                return Err(invalid(
                    field("env"),
                    format!("{env_bytes} bytes of config values; the limit is {MAX_ENV_BYTES}"),
                ));
            }
        }
        Ok(())
    }
    fn validate_limits(&self, i: usize, limits: &AppLimits) -> Result<(), ConfigError> {
        let field = |f: &str| format!("apps[{i}].limits.{f}");
        if limits.cpu_time < self.runtime.epoch_tick {
            return Err(invalid(
                field("cpu_time"),
                format!(
                    "must be at least runtime.epoch_tick ({:?}), the granularity of CPU checks",
                    self.runtime.epoch_tick
                ),
            ));
        }
        if limits.cpu_time > MAX_REQUEST_TIME {
            return Err(invalid(field("cpu_time"), "must be at most 24h"));
        }
        if limits.wall_time.is_zero() || limits.wall_time > MAX_REQUEST_TIME {
            return Err(invalid(
                field("wall_time"),
                "must be more than 0 and at most 24h",
            ));
        }
        if limits.max_memory_bytes > self.runtime.max_memory_bytes {
            return Err(invalid(
                field("max_memory_bytes"),
                format!(
                    "must not exceed runtime.max_memory_bytes ({})",
                    self.runtime.max_memory_bytes
                ),
            ));
        }
        // Above the node-wide cap is allowed and simply means the node cap
        // applies first.
        if limits.max_concurrent_requests == 0 {
            return Err(invalid(
                field("max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if let Some(rate) = limits.requests_per_second
            && !(rate.is_finite() && (0.001..=1e9).contains(&rate))
        {
            return Err(invalid(
                field("requests_per_second"),
                "must be between 0.001 and 1000000000",
            ));
        }
        if limits.burst == Some(0) {
            return Err(invalid(field("burst"), "must be at least 1"));
        }
        Ok(())
    }
}

fn is_valid_prefix(prefix: &str) -> bool {
    prefix.starts_with('/')
        && !prefix
            .chars()
            .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        && !prefix.split('/').any(|seg| seg == "..")
}

/// `/api/` and `/api` route the same requests: drop the trailing slash.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}
