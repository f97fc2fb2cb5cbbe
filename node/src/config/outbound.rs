//! `[outbound]` (node-wide) and `[apps.outbound]` (per app): what guests
//! may call and how long outbound requests may take. Enforced by
//! the `outbound` stage.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::names::check_dns_name;

/// Node-wide outbound settings (`[outbound]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Loopback or private addresses that names in `hosts` may point to (an
    /// origin on the node's own network). Only the operator's `hosts`
    /// entries can reach them: a name resolved through DNS never may, since
    /// a tenant controlling a DNS zone could point it anywhere. Default: none.
    pub allow_private_addresses: Vec<IpAddr>,
    /// Names resolved to fixed addresses before DNS, like /etc/hosts.
    /// Default: none.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Longest a connection may take. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest until the response headers; a guest may ask for less.
    /// Default: 30s.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Longest for the whole subrequest, body included. Default: 60s.
    #[serde(with = "humantime_serde")]
    pub total_timeout: Duration,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private_addresses: Vec::new(),
            hosts: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
        }
    }
}

/// One app's outbound policy (`[apps.outbound]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppOutbound {
    /// Destinations the app may call: `https://api.example.com`,
    /// `http://*.example.org:8080`. The port defaults to the scheme's.
    /// Default: none, so every outbound request is denied.
    pub allow: Vec<Destination>,
    /// Subrequests per incoming request. Default: 32.
    pub max_subrequests: Option<u32>,
}

impl AppOutbound {
    pub fn max_subrequests(&self) -> u32 {
        self.max_subrequests.unwrap_or(32)
    }

    pub(crate) fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allow.iter().any(|d| d.matches(scheme, host, port))
    }
}

/// An allowed destination: scheme, host pattern and port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Destination {
    https: bool,
    /// Exact host, or `.suffix` for `*.suffix`.
    host: String,
    wildcard: bool,
    port: u16,
}

impl Destination {
    pub(crate) fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = if self.https {
            scheme == "https"
        } else {
            scheme == "http"
        };
        let host_ok = if self.wildcard {
            host.len() > self.host.len() && host.ends_with(&self.host)
        } else {
            host == self.host
        };
        scheme_ok && host_ok && port == self.port
    }
}

impl TryFrom<String> for Destination {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid outbound destination `{s}`: {why}");
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("write it as scheme://host[:port]"))?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            None => (rest, if https { 443 } else { 80 }),
        };
        let host = host.to_ascii_lowercase();
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(suffix) => (format!(".{suffix}"), true),
            None => (host, false),
        };
        check_dns_name(host.trim_start_matches('.')).map_err(bad)?;
        Ok(Destination {
            https,
            host,
            wildcard,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(s: &str) -> Destination {
        Destination::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn destinations_match_scheme_host_and_port() {
        let api = dest("https://API.example.com");
        assert!(api.matches("https", "api.example.com", 443));
        assert!(!api.matches("http", "api.example.com", 443));
        assert!(!api.matches("https", "api.example.com", 8443));
        assert!(!api.matches("https", "evil.api.example.com", 443));
        let wild = dest("http://*.example.org:8080");
        assert!(wild.matches("http", "a.example.org", 8080));
        assert!(!wild.matches("http", "example.org", 8080));
        assert!(!wild.matches("http", "a.example.org", 80));
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://exa mple.com",
            "https://a.b:x",
        ] {
            assert!(Destination::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
