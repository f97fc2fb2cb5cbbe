//! A guest's outbound policy: which destinations an app may call and how
//! many subrequests one request may make. Shared so that the control plane
//! (`PUT /v1/apps/{app}/outbound`) and the node's config file (`[apps.outbound]`)
//! accept exactly the same syntax, and the snapshot carries it as written.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::check_dns_name;

/// Subrequests per incoming request when an app sets none.
pub const DEFAULT_MAX_SUBREQUESTS: u32 = 32;

/// One app's outbound policy (`[apps.outbound]`, `GET/PUT /v1/apps/{app}/outbound`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppOutbound {
    /// Destinations the app may call: `https://api.example.com`,
    /// `http://*.example.org:8080`. The port defaults to the scheme's.
    /// Default: none, so every outbound request is denied.
    pub allow: Vec<Destination>,
    /// Subrequests per incoming request. Default: 32.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subrequests: Option<u32>,
}

impl AppOutbound {
    pub fn max_subrequests(&self) -> u32 {
        self.max_subrequests.unwrap_or(DEFAULT_MAX_SUBREQUESTS)
    }

    pub fn is_default(&self) -> bool {
        self.allow.is_empty() && self.max_subrequests.is_none()
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allow.iter().any(|d| d.matches(scheme, host, port))
    }
}

/// An allowed destination: scheme, host pattern and port. Written and
/// serialized as `scheme://host[:port]` (`*.` for a wildcard host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Destination {
    https: bool,
    /// Exact host, or `.suffix` for `*.suffix`.
    host: String,
    wildcard: bool,
    port: u16,
}

impl Destination {
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
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

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let star = if self.wildcard { "*" } else { "" };
        write!(f, "{scheme}://{star}{}", self.host)?;
        if self.port != if self.https { 443 } else { 80 } {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl From<Destination> for String {
    fn from(d: Destination) -> String {
        d.to_string()
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

    #[test]
    fn destinations_serialize_as_written_and_parse_back() {
        let policy: AppOutbound = serde_json::from_str(
            r#"{"allow": ["https://API.example.com/", "http://*.example.org:8080", "http://a.test:80"], "max_subrequests": 4}"#,
        )
        .unwrap();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"allow":["https://api.example.com","http://*.example.org:8080","http://a.test"],"max_subrequests":4}"#
        );
        assert_eq!(serde_json::from_str::<AppOutbound>(&json).unwrap(), policy);
        assert_eq!(
            serde_json::to_string(&AppOutbound::default()).unwrap(),
            r#"{"allow":[]}"#
        );
        assert!(serde_json::from_str::<AppOutbound>(r#"{"allow":[],"extra":1}"#).is_err());
    }
}
