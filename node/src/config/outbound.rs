//! `[outbound]` (node-wide) and `[apps.outbound]` (per app): what guests
//! may call and how long outbound requests may take. Enforced by
//! the `outbound` stage.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Node-wide outbound settings (`[outbound]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Loopback or private addresses that names in `hosts` may point to (an
    /// origin on the node's own network). Only the operator's `hosts`
    /// entries can reach them: a name resolved through DNS never may, since
    /// a tenant controlling a DNS zone could point it anywhere. Default: none.
    pub allow_private_addresses: Vec<IpAddr>,
    /// Names resolved to fixed addresses before DNS, like /etc/hosts:
    /// `name = "10.0.0.5"` for every app on the node (tenant-set allowlists
    /// included), or `name = { address = "10.0.0.5", tenants = ["acme"] }`
    /// for those tenants' apps only. Default: none.
    pub hosts: BTreeMap<String, HostEntry>,
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

/// Where an `[outbound] hosts` name points, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    /// `name = "10.0.0.5"`: any app may use the name (the form from before
    /// tenants could set allowlists through the API, kept so existing
    /// files mean what they meant).
    Any(IpAddr),
    /// `name = { address = "10.0.0.5", tenants = ["acme"] }`: only those
    /// tenants' apps may; for any other tenant the name is refused
    /// (`denied-address`) and never looked up in DNS.
    Tenants {
        address: IpAddr,
        tenants: BTreeSet<String>,
    },
}

impl HostEntry {
    pub fn address(&self) -> IpAddr {
        match self {
            HostEntry::Any(address) | HostEntry::Tenants { address, .. } => *address,
        }
    }

    /// Whether `tenant`'s apps may use the name; `None` is the node's own
    /// connector, which only ever sees names a tenant was vetted for.
    pub fn serves(&self, tenant: Option<&str>) -> bool {
        match (self, tenant) {
            (HostEntry::Any(_), _) | (HostEntry::Tenants { .. }, None) => true,
            (HostEntry::Tenants { tenants, .. }, Some(tenant)) => tenants.contains(tenant),
        }
    }
}

/// An address, as the unscoped form (tests and code building configs).
impl FromStr for HostEntry {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(HostEntry::Any)
    }
}

/// Hand-written so that both forms give errors naming what is wrong
/// (`#[serde(untagged)]` says only that no variant matched).
impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Scoped {
            address: IpAddr,
            tenants: BTreeSet<String>,
        }

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HostEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an IP address, or { address = \"...\", tenants = [...] }")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<HostEntry, E> {
                value
                    .parse()
                    .map(HostEntry::Any)
                    .map_err(|_| E::custom(format!("`{value}` is not an IP address")))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HostEntry, A::Error> {
                let scoped =
                    Scoped::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if scoped.tenants.is_empty() {
                    return Err(serde::de::Error::custom(
                        "`tenants` must name at least one tenant (or give just the address, for all)",
                    ));
                }
                Ok(HostEntry::Tenants {
                    address: scoped.address,
                    tenants: scoped.tenants,
                })
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// One app's outbound policy (`[apps.outbound]`) and its destinations:
/// shared with the control plane, which checks them with the same parser.
pub use edge_common::outbound::{AppOutbound, Destination};
