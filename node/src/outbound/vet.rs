//! Where outbound connections may go: address classes no tenant may reach
//! (loopback, private, link-local with cloud metadata, CGNAT, unique-local,
//! multicast, documentation, benchmarking, discard, and the IPv6 forms that
//! embed such IPv4 addresses) unless the operator allowed the address
//! (`outbound.allow_private_addresses`), the operator's own deny list
//! (`outbound.deny`), which nothing overrides, and the resolver that applies
//! them to every name before the client connects.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::config::OutboundConfig;

/// Why `ip` may not be connected to under `config`, if it may not:
/// `outbound.deny` first, then the special-purpose classes, which only an
/// operator's own name or literal (`operator`) may reach, and only for an
/// address in `outbound.allow_private_addresses`.
pub fn refusal(config: &OutboundConfig, ip: IpAddr, operator: bool) -> Option<&'static str> {
    if config.denies(ip) {
        return Some("outbound.deny");
    }
    match forbidden_address(ip) {
        Some(_) if operator && config.allows_private(ip) => None,
        why => why,
    }
}

/// Why an address may not be connected to, if it may not: the
/// special-purpose registries of RFC 6890 (IPv4 and IPv6) that are not
/// globally reachable, whatever the configuration.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified",
        (127, _) => "loopback",
        (10, _) | (172, 16..=31) | (192, 168) => "private",
        (169, 254) => "link-local (cloud metadata)",
        (100, 64..=127) => "carrier-grade NAT",
        (192, 0) if c == 0 => "IETF protocol assignments",
        (192, 0) if c == 2 => "documentation",
        (198, 51) if c == 100 => "documentation",
        (203, 0) if c == 113 => "documentation",
        (192, 88) if c == 99 => "6to4 relay anycast",
        (198, 18..=19) => "benchmarking",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let segments = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
    if let Some(v4) = ip.to_ipv4() {
        return forbidden_v4(v4).map(|_| "IPv4 address in IPv6 form");
    }
    // SIIT (::ffff:0:a.b.c.d) embeds it in the last 32 bits too.
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        let v4 = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
        return forbidden_v4(v4).map(|_| "IPv4 address in SIIT form");
    }
    // Teredo (2001::/32) tunnels to an obfuscated IPv4 address: refuse all.
    if segments[..2] == [0x2001, 0] {
        return Some("Teredo");
    }
    // Documentation (2001:db8::/32, 3fff::/20), benchmarking (2001:2::/48),
    // ORCHID (2001:10::/28, 2001:20::/28) and discard-only (100::/64).
    if segments[..2] == [0x2001, 0xdb8] || (segments[0] == 0x3fff && segments[1] < 0x1000) {
        return Some("documentation");
    }
    if segments[..3] == [0x2001, 2, 0] {
        return Some("benchmarking");
    }
    if segments[0] == 0x2001 && matches!(segments[1] & 0xfff0, 0x10 | 0x20) {
        return Some("ORCHID");
    }
    if segments[..4] == [0x100, 0, 0, 0] {
        return Some("discard-only");
    }
    // Local-use NAT64 (64:ff9b:1::/48) may use any prefix length: refuse all.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64");
    }
    // NAT64 (64:ff9b::/96) embeds the IPv4 address in the last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
        return forbidden_v4(v4).map(|_| "IPv4 address behind NAT64");
    }
    // 6to4 (2002::/16) embeds it in bits 16..48.
    if segments[0] == 0x2002 {
        let v4 = Ipv4Addr::from((u32::from(segments[1]) << 16) | u32::from(segments[2]));
        return forbidden_v4(v4).map(|_| "IPv4 address behind 6to4");
    }
    match segments[0] {
        s if s & 0xfe00 == 0xfc00 => Some("unique-local"),
        s if s & 0xffc0 == 0xfe80 => Some("link-local"),
        s if s & 0xffc0 == 0xfec0 => Some("site-local"),
        s if s & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

/// The refusal a vetting resolver gives, found again in the client's error
/// chain to tell the guest its destination was prohibited.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to prohibited addresses ({reason})")]
pub(super) struct AddressProhibited {
    host: String,
    reason: &'static str,
}

/// Resolves names for the shared client: static hosts first, then DNS; keeps
/// only addresses that pass [`forbidden_address`] or that the operator
/// allowed, so the connector can only ever connect to a vetted address.
#[derive(Clone)]
pub(super) struct VettingResolver {
    pub(super) config: Arc<OutboundConfig>,
}

impl VettingResolver {
    /// `tenant` is whose request it is: an operator's name scoped to other
    /// tenants is refused outright, never looked up in DNS (where it might
    /// pass, and the connector, which cannot tell tenants apart, would
    /// then use the operator's address). `None` is the connector itself:
    /// every name reaching it was vetted for its tenant first (by the
    /// outbound client's `send_vetted`).
    pub(super) async fn resolve(
        config: Arc<OutboundConfig>,
        host: String,
        tenant: Option<&str>,
    ) -> std::io::Result<Vec<SocketAddr>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let (candidates, from_operator): (Vec<IpAddr>, bool) = match config.hosts.get(&host) {
            Some(entry) if entry.serves(tenant) => (vec![entry.address()], true),
            Some(_) => {
                return Err(std::io::Error::other(AddressProhibited {
                    host,
                    reason: "an operator's name for other tenants",
                }));
            }
            None => {
                // getaddrinfo cannot be cancelled, but the guest need not wait
                // for a slow resolver longer than it would for a connection.
                let lookup = tokio::net::lookup_host((host.as_str(), 0));
                let addrs = tokio::time::timeout(config.connect_timeout, lookup)
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                (addrs.map(|addr| addr.ip()).collect(), false)
            }
        };
        let mut reason = "no addresses";
        let vetted: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|ip| match refusal(&config, *ip, from_operator) {
                None => true,
                Some(why) => {
                    reason = why;
                    false
                }
            })
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        if vetted.is_empty() {
            return Err(std::io::Error::other(AddressProhibited { host, reason }));
        }
        Ok(vetted)
    }
}

impl tower_service::Service<Name> for VettingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let config = self.config.clone();
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(Self::resolve(config, host, None).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        forbidden_address(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "2002:a00:1::",
            "::ffff:0:a00:1",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378::1",
            "fec0::1",
            // Documentation, benchmarking, 6to4 relay, ORCHID, discard.
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.255",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "3fff::1",
            "3fff:fff::1",
            "2001:2::1",
            "2001:10::1",
            "2001:2f::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.1",
            "64:ff9b::203.0.113.1",
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            // Next to the special ranges, outside them.
            "192.0.3.1",
            "198.51.101.1",
            "203.0.114.1",
            "198.20.0.1",
            "2001:db9::1",
            "4000::1",
            "2001:3::1",
            "2001:30::1",
            "100:0:0:1::1",
            "3fff:1000::1",
            "3ff0::1",
            "168.63.129.16",
        ] {
            assert!(!forbidden(ip), "{ip} must be allowed");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
        let config = Arc::new(OutboundConfig {
            hosts: [
                ("internal.test".to_string(), "10.0.0.7".parse().unwrap()),
                (
                    "metadata.test".to_string(),
                    "169.254.169.254".parse().unwrap(),
                ),
                ("origin.test".to_string(), "127.0.0.1".parse().unwrap()),
            ]
            .into(),
            allow_private_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..OutboundConfig::default()
        });
        for host in ["internal.test", "metadata.test"] {
            let err = VettingResolver::resolve(config.clone(), host.into(), Some("acme"))
                .await
                .expect_err("refused");
            assert!(err.get_ref().is_some_and(|e| e.is::<AddressProhibited>()));
        }
        // Names match whatever their case or trailing dot.
        let ok = VettingResolver::resolve(config, "ORIGIN.test.".into(), Some("acme"))
            .await
            .unwrap();
        assert_eq!(ok, vec!["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn the_deny_list_wins_and_ranges_allow_their_addresses() {
        let config = OutboundConfig {
            allow_private_addresses: vec!["10.0.0.0/24".parse().unwrap()],
            deny: vec![
                "168.63.129.16".parse().unwrap(),
                "10.0.0.9".parse().unwrap(),
            ],
            ..OutboundConfig::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Public, but denied: for the operator's names too.
        assert_eq!(
            refusal(&config, ip("168.63.129.16"), true),
            Some("outbound.deny")
        );
        assert_eq!(
            refusal(&config, ip("168.63.129.16"), false),
            Some("outbound.deny")
        );
        assert_eq!(
            refusal(&config, ip("::ffff:168.63.129.16"), false),
            Some("outbound.deny")
        );
        assert_eq!(refusal(&config, ip("8.8.8.8"), false), None);
        // Allowed by range, for the operator only; deny beats allow.
        assert_eq!(refusal(&config, ip("10.0.0.200"), true), None);
        assert_eq!(refusal(&config, ip("10.0.0.200"), false), Some("private"));
        assert_eq!(refusal(&config, ip("10.0.1.1"), true), Some("private"));
        assert_eq!(
            refusal(&config, ip("10.0.0.9"), true),
            Some("outbound.deny")
        );
    }

    #[tokio::test]
    async fn a_denied_public_address_is_refused_through_an_operator_name() {
        let config = Arc::new(OutboundConfig {
            hosts: [("wire.test".to_string(), "168.63.129.16".parse().unwrap())].into(),
            deny: vec!["168.63.129.16".parse().unwrap()],
            ..OutboundConfig::default()
        });
        let err = VettingResolver::resolve(config, "wire.test".into(), Some("acme"))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("outbound.deny"), "{err}");
    }

    #[tokio::test]
    async fn a_name_scoped_to_tenants_resolves_only_for_them() {
        let config = Arc::new(OutboundConfig {
            hosts: [(
                "acme-db.test".to_string(),
                crate::config::HostEntry::Tenants {
                    address: "127.0.0.1".parse().unwrap(),
                    tenants: ["acme".to_string()].into(),
                },
            )]
            .into(),
            allow_private_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..OutboundConfig::default()
        });
        let resolve =
            |tenant| VettingResolver::resolve(config.clone(), "acme-db.test".into(), tenant);
        assert_eq!(
            resolve(Some("acme")).await.unwrap(),
            vec!["127.0.0.1:0".parse().unwrap()]
        );
        let err = resolve(Some("other")).await.expect_err("refused");
        assert!(err.get_ref().is_some_and(|e| e.is::<AddressProhibited>()));
    }
}
