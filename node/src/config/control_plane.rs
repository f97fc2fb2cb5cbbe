//! `[control_plane]`: where the node gets its apps from, and where it keeps
//! its last applied state.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// The control plane's base URL, `https://cp.example:7070`. Plaintext
    /// `http://` only to a loopback address (the token would travel in the
    /// clear).
    #[serde(default)]
    pub url: Option<String>,
    /// Several control-plane replicas (with or instead of `url`): the node
    /// polls one and fails over to the next when a round fails, backing
    /// off only once every one of them has failed in a row.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The node's API token (`edge-cp token --role node --sub NAME`).
    #[serde(default)]
    pub token: Option<String>,
    /// Or a file holding it.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Last applied snapshot and its artifacts; the node boots from them
    /// when the control plane is unreachable.
    pub data_dir: PathBuf,
    /// The control plane's snapshot-signing public key (64 hex digits, from
    /// `edge-cp public-key`). If unset, the key the control plane presents at
    /// first contact is pinned in `data_dir` and required from then on.
    #[serde(default)]
    pub trust_key: Option<String>,
    /// A PEM CA certificate to trust for the control plane's HTTPS, in
    /// addition to the public web roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// How long one long poll waits for a change. Default: 30s.
    #[serde(default = "default_poll_wait", with = "humantime_serde")]
    pub poll_wait: Duration,
    /// Longest pause between reconnection attempts (backoff doubles up to
    /// it, with jitter). Default: 30s.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// More replicas than this is a configuration mistake, not a fleet.
const MAX_ENDPOINTS: usize = 16;

/// A control-plane URL the node may send its token to.
fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(field, format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    "plaintext http:// is only allowed to a loopback address; use https://",
                ))
            }
        }
        other => Err(invalid(
            field,
            format!("scheme `{other}`: use https:// (or http:// on loopback)"),
        )),
    }
}

fn default_poll_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl ControlPlaneConfig {
    pub fn new(url: String, token: String, data_dir: PathBuf) -> Self {
        Self {
            url: Some(url),
            urls: Vec::new(),
            token: Some(token),
            token_file: None,
            data_dir,
            trust_key: None,
            ca_cert: None,
            poll_wait: default_poll_wait(),
            max_backoff: default_max_backoff(),
        }
    }

    /// Every control-plane URL, `url` first, each once.
    pub fn endpoints(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for url in self.url.iter().chain(&self.urls) {
            let url = url.trim_end_matches('/').to_string();
            if !all.contains(&url) {
                all.push(url);
            }
        }
        all
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            return Err(invalid(
                "control_plane.url",
                "set `url` (or `urls`, for several replicas)",
            ));
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(
                "control_plane.urls",
                format!("at most {MAX_ENDPOINTS} control-plane URLs"),
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            check_url(&format!("control_plane.urls[{i}]"), url)?;
        }
        if let Some(url) = &self.url {
            check_url("control_plane.url", url)?;
        }
        match (&self.token, &self.token_file) {
            (None, None) => {
                return Err(invalid(
                    "control_plane.token",
                    "set `token` or `token_file` (a node token from `edge-cp token --role node`)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "control_plane.token_file",
                    "set `token` or `token_file`, not both",
                ));
            }
            _ => {}
        }
        if let Some(key) = &self.trust_key
            && edge_common::signing::VerifyingKey::from_hex(key).is_err()
        {
            return Err(invalid(
                "control_plane.trust_key",
                "expected the 64-hex-digit key printed by `edge-cp public-key`",
            ));
        }
        if self.poll_wait < Duration::from_millis(100) || self.poll_wait > Duration::from_secs(60) {
            return Err(invalid(
                "control_plane.poll_wait",
                "must be between 100ms and 60s",
            ));
        }
        if self.max_backoff < Duration::from_millis(100)
            || self.max_backoff > Duration::from_secs(600)
        {
            return Err(invalid(
                "control_plane.max_backoff",
                "must be between 100ms and 10m",
            ));
        }
        Ok(())
    }
}
