//! `[[apps]]`: an app's routes, component, config values and limits, and
//! the checks that span its fields.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MAX_ENV_BYTES, MAX_REQUEST_TIME, NodeConfig, invalid};
use crate::names::{AppName, HostPattern, TenantId};
use crate::runtime::outbound::AppOutbound;

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
    /// The component, a `.wasm` file built for wasm32-wasip2, compiled at start-up.
    pub component: PathBuf,
    /// Config values, seen by the guest as its environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What one request, and the app as a whole, may use.
    #[serde(default)]
    pub limits: AppLimits,
    /// Where the app's component may send HTTP requests. Default: nowhere.
    #[serde(default)]
    pub outbound: AppOutbound,
}

/// Per-app limits. Defaults are production-sane (for reference, Fastly
/// Compute allows 50 ms of CPU and 128 MB of memory per request).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppLimits {
    /// CPU time the guest's own code may run per request (host calls and
    /// waiting excluded). Over it: 503 `cpu-time-exceeded`. Default: 50ms.
    #[serde(with = "humantime_serde")]
    pub cpu_time: Duration,
    /// Wall-clock time for the whole request, from arrival to the last byte
    /// of the response body. Over it before the response starts: 504
    /// `wall-time-exceeded`; after: the body is cut off. Default: 60s.
    #[serde(with = "humantime_serde")]
    pub wall_time: Duration,
    /// Linear memory one instance may grow to (at most
    /// `runtime.max_memory_bytes`). Over it: the allocation fails, and the
    /// trap that follows is 500 `memory-limit-exceeded`. Default: 128 MiB.
    pub max_memory_bytes: u64,
    /// Elements per table. Default: 20000.
    pub max_table_elements: u32,
    /// Requests of this app running at once on this node. Beyond: 503
    /// `concurrency-limit-exceeded` with `Retry-After`. The node-wide cap
    /// (`http.max_concurrent_requests`) applies on top. Default: 100.
    pub max_concurrent_requests: u32,
    /// Sustained requests per second admitted on this node (token bucket).
    /// Beyond: 429 `rate-limit-exceeded` with `Retry-After`. Default: none.
    pub requests_per_second: Option<f64>,
    /// Requests admitted in a burst above the rate. Default: one second's
    /// worth of `requests_per_second`.
    pub burst: Option<u32>,
    /// Request body bytes, enforced while streaming. Over it: 413
    /// `request-body-too-large`. Default: 100 MiB.
    pub max_request_body_bytes: u64,
    /// Response body bytes. A larger declared `content-length`: 502
    /// `response-too-large`; a stream that goes past it is cut off.
    /// Default: 1 GiB.
    pub max_response_body_bytes: u64,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(60),
            max_memory_bytes: 128 << 20,
            max_table_elements: 20_000,
            max_concurrent_requests: 100,
            requests_per_second: None,
            burst: None,
            max_request_body_bytes: 100 << 20,
            max_response_body_bytes: 1 << 30,
        }
    }
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
            if !app.component.is_file() {
                return Err(invalid(
                    field("component"),
                    format!("{} is not a readable file", app.component.display()),
                ));
            }
            self.validate_limits(i, &app.limits)?;
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
