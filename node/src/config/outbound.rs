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
    /// origin on the node's own network): addresses (`"10.0.0.5"`) or
    /// ranges (`"10.0.0.0/24"`). Only the operator's `hosts` entries can
    /// reach them: a name resolved through DNS never may, since a tenant
    /// controlling a DNS zone could point it anywhere. Default: none.
    pub allow_private_addresses: Vec<AddressRange>,
    /// Addresses or ranges nothing on the node may connect to, whatever
    /// else allows them: public addresses with a special meaning on the
    /// provider's network, such as Azure's wire server `168.63.129.16` or
    /// a metadata service outside the link-local range. Wins over
    /// `allow_private_addresses` and `hosts`. Default: none.
    pub deny: Vec<AddressRange>,
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
            deny: Vec::new(),
            hosts: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
        }
    }
}

impl OutboundConfig {
    /// Whether the operator allowed `ip` for names in `hosts`.
    pub fn allows_private(&self, ip: IpAddr) -> bool {
        self.allow_private_addresses.iter().any(|r| r.contains(ip))
    }

    /// Whether `outbound.deny` covers `ip`, or the IPv4 address an
    /// IPv4-mapped `ip` (`::ffff:a.b.c.d`) stands for: the deny list is
    /// read broadly, the allow list exactly.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.deny
            .iter()
            .any(|r| r.contains(ip) || mapped.is_some_and(|v4| r.contains(v4)))
    }
}

/// An address or a CIDR range in `[outbound]`: `"10.0.0.5"` is the range
/// of that one address. Matching is exact: `::ffff:10.0.0.5` is not in
/// `10.0.0.0/24` (but see [`OutboundConfig::denies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange(ipnet::IpNet);

impl AddressRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

/// A CIDR, or a bare address meaning just that address (`/32`, `/128`):
/// `ipnet` parses only CIDRs, and an operator listing one host writes its
/// address. Shared by `[outbound]` and `http.trusted_proxies`.
pub(super) fn address_or_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let net = address_or_net(s).ok_or_else(|| {
            format!("`{s}` is not an IP address or a CIDR range such as 10.0.0.0/24")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has bits set past its prefix length: did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for AddressRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_a_range_of_one() {
        let one: AddressRange = "10.0.0.5".parse().unwrap();
        assert!(one.contains(ip("10.0.0.5")));
        assert!(!one.contains(ip("::ffff:10.0.0.5")));
        assert!(!one.contains(ip("10.0.0.6")));
        let v6: AddressRange = "fd00::1".parse().unwrap();
        assert!(v6.contains(ip("fd00::1")) && !v6.contains(ip("fd00::2")));
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let net: AddressRange = "10.0.0.0/24".parse().unwrap();
        assert!(net.contains(ip("10.0.0.0")) && net.contains(ip("10.0.0.255")));
        assert!(!net.contains(ip("10.0.1.0")) && !net.contains(ip("fd00::1")));
        let v6: AddressRange = "fd00:ec2::/32".parse().unwrap();
        assert!(v6.contains(ip("fd00:ec2::254")) && !v6.contains(ip("fd00:ec3::1")));
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        for (given, says) in [
            ("10.0.0.1/24", "did you mean 10.0.0.0/24"),
            ("10.0.0.0/33", "not an IP address or a CIDR range"),
            ("example.com", "not an IP address or a CIDR range"),
            ("", "not an IP address"),
        ] {
            let err = given.parse::<AddressRange>().expect_err(given);
            assert!(err.contains(says), "{given}: {err}");
        }
    }

    #[test]
    fn the_config_takes_both_forms_and_names_a_bad_entry() {
        let config: OutboundConfig = toml::from_str(
            "allow_private_addresses = [\"10.0.0.5\", \"192.168.0.0/16\"]\ndeny = [\"168.63.129.16\"]",
        )
        .unwrap();
        assert!(config.allows_private(ip("10.0.0.5")));
        assert!(config.allows_private(ip("192.168.7.7")));
        assert!(!config.allows_private(ip("10.0.0.6")));
        assert!(config.denies(ip("168.63.129.16")));
        assert!(config.denies(ip("::ffff:168.63.129.16")));
        assert!(!config.denies(ip("168.63.129.17")));
        // The allow list is exact; the deny list also catches the mapped form.
        assert!(!config.allows_private(ip("::ffff:10.0.0.5")));
        let err = toml::from_str::<OutboundConfig>("deny = [\"168.63.129.16/8\"]").unwrap_err();
        assert!(
            err.to_string().contains("did you mean 168.0.0.0/8"),
            "{err}"
        );
    }
}
