//! Who sent a request, and over what: the client's address (the TCP peer,
//! or the address a PROXY protocol header gave), whether it is a trusted
//! proxy (`[http] trusted_proxies`), and the TLS facts. Built once per
//! connection; per request only headers are removed and inserted, with
//! values made here.
//!
//! The rules, in one place:
//! - every request loses the client's own `x-edge-client-ip`,
//!   `x-edge-tls-version`, `x-edge-tls-cipher` and `x-edge-sni`: only the
//!   node sets them, and only for components;
//! - `X-Forwarded-For` and `Forwarded` from an untrusted client are
//!   dropped on entry (before the cache, a component or an origin sees
//!   them); a trusted proxy's are kept, and an origin gets them with the
//!   node's hop appended;
//! - `X-Forwarded-Host` and `X-Forwarded-Proto` are always the node's own
//!   (set in `origin.rs`): they are what the cache keys on (host and
//!   scheme), so even a trusted proxy cannot make the origin answer one
//!   key with two bodies.

use std::net::{IpAddr, SocketAddr};

use http::header::FORWARDED;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

// `HeaderName`s rather than `&str`: a `&str` name is parsed and checked
// on every insert, remove and lookup, on every request.
pub const CLIENT_IP: HeaderName = HeaderName::from_static("x-edge-client-ip");
pub const TLS_VERSION: HeaderName = HeaderName::from_static("x-edge-tls-version");
pub const TLS_CIPHER: HeaderName = HeaderName::from_static("x-edge-tls-cipher");
pub const SNI: HeaderName = HeaderName::from_static("x-edge-sni");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The headers only the node sets.
const EDGE_HEADERS: [HeaderName; 4] = [CLIENT_IP, TLS_VERSION, TLS_CIPHER, SNI];

/// What TLS negotiated on a connection.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: HeaderValue,
    /// The IANA name, `TLS13_AES_128_GCM_SHA256`.
    pub cipher: HeaderValue,
    /// The SNI name the client sent, if any.
    pub sni: Option<HeaderValue>,
}

impl TlsFacts {
    pub fn of(connection: &rustls::ServerConnection) -> Option<TlsFacts> {
        let version = match connection.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => return None,
        };
        let cipher = connection.negotiated_cipher_suite()?.suite().as_str()?;
        Some(TlsFacts {
            version: HeaderValue::from_static(version),
            cipher: HeaderValue::from_static(cipher),
            sni: connection
                .server_name()
                .and_then(|name| HeaderValue::from_str(name).ok()),
        })
    }
}

/// One client connection, as requests on it are handled.
#[derive(Debug, Clone)]
pub struct ClientConn {
    pub scheme: Scheme,
    /// The client: the TCP peer, or the PROXY header's source address.
    pub client: SocketAddr,
    /// Whether `client` is in `[http] trusted_proxies`.
    pub trusted: bool,
    client_ip: HeaderValue,
    /// The node's `for=` value (RFC 7239 §6: IPv6 bracketed and quoted).
    forwarded_for: String,
    tls: Option<TlsFacts>,
}

impl ClientConn {
    pub fn new(
        scheme: Scheme,
        client: SocketAddr,
        trusted_proxies: &[IpNet],
        tls: Option<TlsFacts>,
    ) -> Self {
        let ip = canonical(client.ip());
        let client_ip = ip.to_string();
        let forwarded_for = match ip {
            IpAddr::V4(_) => client_ip.clone(),
            IpAddr::V6(_) => format!("\"[{client_ip}]\""),
        };
        ClientConn {
            scheme,
            client: SocketAddr::new(ip, client.port()),
            trusted: trusted_proxies.iter().any(|net| net.contains(&ip)),
            client_ip: HeaderValue::from_str(&client_ip)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_for,
            tls,
        }
    }

    /// On entry, before anything looks at the request: the node's own
    /// headers go, and an untrusted client's forwarding headers.
    pub fn entering(&self, headers: &mut HeaderMap) {
        let carried = Carried::of(headers);
        if carried.edge {
            strip_edge_headers(headers);
        }
        if carried.forwarding && !self.trusted {
            headers.remove(X_FORWARDED_FOR);
            headers.remove(FORWARDED);
        }
    }

    /// The address components are told: behind a trusted proxy, the one it
    /// appended last to `X-Forwarded-For`, or if it sent none, the last
    /// `Forwarded` element's `for=` (one hop of trust either way); else the
    /// connection's client.
    fn component_client_ip(&self, headers: &HeaderMap) -> HeaderValue {
        if self.trusted
            && let Some(ip) = last_forwarded_for(headers).or_else(|| last_forwarded(headers))
            && let Ok(value) = HeaderValue::from_str(&canonical(ip).to_string())
        {
            return value;
        }
        self.client_ip.clone()
    }

    /// Sets the headers a component reads (its request was cleaned on
    /// entry).
    pub fn for_component(&self, headers: &mut HeaderMap) {
        headers.insert(CLIENT_IP, self.component_client_ip(headers));
        if let Some(tls) = &self.tls {
            headers.insert(TLS_VERSION, tls.version.clone());
            headers.insert(TLS_CIPHER, tls.cipher.clone());
            if let Some(sni) = &tls.sni {
                headers.insert(SNI, sni.clone());
            }
        }
    }

    /// Appends the node's hop to `X-Forwarded-For` and `Forwarded` (a
    /// trusted proxy's values kept before it; an untrusted client's were
    /// dropped on entry). `host` is the host the request was routed by.
    pub fn for_origin(&self, headers: &mut HeaderMap, host: &str) {
        let proto = match self.scheme {
            Scheme::Https => "https",
            _ => "http",
        };
        let ip = self.client_ip.to_str().unwrap_or("unknown");
        append(headers, X_FORWARDED_FOR, ip);
        let element = format!(
            "for={};proto={proto};host={}",
            self.forwarded_for,
            quoted(host)
        );
        append(headers, FORWARDED, &element);
    }
}

/// Removes the headers only the node sets.
pub fn strip_edge_headers(headers: &mut HeaderMap) {
    for name in &EDGE_HEADERS {
        headers.remove(name);
    }
}

/// Requests that reach no client connection (tests, benches): forwarding
/// headers cannot be vouched for, so they go.
pub fn strip_forwarding(headers: &mut HeaderMap) {
    let carried = Carried::of(headers);
    if carried.edge {
        strip_edge_headers(headers);
    }
    if carried.forwarding {
        headers.remove(X_FORWARDED_FOR);
        headers.remove(FORWARDED);
    }
}

/// Which of the headers the node removes on entry a request carries,
/// found in one pass over its names. Most requests carry none, and
/// `HeaderMap::remove` by name parses and hashes the name each time: six
/// removes per request measured about 4,000 instructions, a tenth of an
/// origin route's cache hit, against a few hundred for this pass.
struct Carried {
    edge: bool,
    forwarding: bool,
}

impl Carried {
    fn of(headers: &HeaderMap) -> Self {
        let mut carried = Carried {
            edge: false,
            forwarding: false,
        };
        for name in headers.keys() {
            if name.as_str().starts_with("x-edge-") {
                carried.edge |= EDGE_HEADERS.contains(name);
            } else if *name == X_FORWARDED_FOR || *name == FORWARDED {
                carried.forwarding = true;
            }
        }
        carried
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) as
/// the IPv4 address it is, so trust lists and logs see one form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The last address of the last `X-Forwarded-For` line, if it is one.
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all(X_FORWARDED_FOR).iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry.parse().ok()
}

/// The `for=` of the last `Forwarded` element (RFC 7239), if it is an
/// address. Only the last: that is what the trusted proxy appended; an
/// earlier one is whatever its client claimed. `unknown` and obfuscated
/// identifiers (`_hidden`) name no address, so they give `None` and the
/// connection's own address is used.
fn last_forwarded(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all(FORWARDED).iter().next_back()?;
    let element = split_unquoted(last.to_str().ok()?, ',').pop()?;
    let (_, node) = split_unquoted(element, ';')
        .into_iter()
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))?;
    forwarded_node(node.trim())
}

/// `value` split at `separator`s outside quoted-strings (a quoted `host=`
/// may hold a comma or a semicolon).
fn split_unquoted(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// An RFC 7239 §6 node (`192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:80"`)
/// as its address, without the port.
fn forwarded_node(node: &str) -> Option<IpAddr> {
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, _port) = rest.split_once(']')?;
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let host = node.split_once(':').map_or(node, |(host, _port)| host);
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `existing, value` on one line (several lines of the header joined, as
/// RFC 9110 §5.3 allows).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined = String::new();
    for line in headers.get_all(&name) {
        if let Ok(line) = line.to_str() {
            joined.push_str(line);
            joined.push_str(", ");
        }
    }
    joined.push_str(value);
    match HeaderValue::from_str(&joined) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(&name);
        }
    }
}

/// An RFC 7239 quoted-string (a host may carry a `:port`, not a token
/// character).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(client: &str, trusted: &[&str], tls: bool) -> ClientConn {
        let nets: Vec<IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
        let facts = tls.then(|| TlsFacts {
            version: HeaderValue::from_static("TLSv1.3"),
            cipher: HeaderValue::from_static("TLS13_AES_128_GCM_SHA256"),
            sni: Some(HeaderValue::from_static("a.test")),
        });
        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        ClientConn::new(scheme, client.parse().unwrap(), &nets, facts)
    }

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h.insert(CLIENT_IP, HeaderValue::from_static("6.6.6.6"));
        h.insert(TLS_VERSION, HeaderValue::from_static("SSLv2"));
        h.insert(SNI, HeaderValue::from_static("evil.test"));
        h
    }

    #[test]
    fn an_untrusted_client_loses_its_forwarding_headers_and_the_node_appends_its_hop() {
        let c = conn("203.0.113.7:5000", &["10.0.0.0/8"], false);
        assert!(!c.trusted);
        let mut h = spoofed();
        c.entering(&mut h);
        assert!(h.is_empty(), "{h:?}");
        c.for_origin(&mut h, "shop.test");
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.7");
        assert_eq!(
            h[FORWARDED],
            "for=203.0.113.7;proto=http;host=\"shop.test\""
        );
        let mut h = spoofed();
        c.entering(&mut h);
        c.for_component(&mut h);
        assert_eq!(h[CLIENT_IP], "203.0.113.7");
        assert!(!h.contains_key(TLS_VERSION) && !h.contains_key(SNI));
    }

    #[test]
    fn a_trusted_proxy_is_appended_to_and_its_last_hop_is_the_client() {
        let c = conn("10.1.2.3:5000", &["10.0.0.0/8"], true);
        assert!(c.trusted);
        let mut h = spoofed();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        c.entering(&mut h);
        c.for_component(&mut h);
        assert_eq!(h[CLIENT_IP], "198.51.100.1");
        assert_eq!(h[TLS_VERSION], "TLSv1.3");
        assert_eq!(h[TLS_CIPHER], "TLS13_AES_128_GCM_SHA256");
        assert_eq!(h[SNI], "a.test");
        strip_edge_headers(&mut h);
        c.for_origin(&mut h, "shop.test:8443");
        assert_eq!(h[X_FORWARDED_FOR], "6.6.6.6, 198.51.100.1, 10.1.2.3");
        assert_eq!(
            h[FORWARDED],
            "for=6.6.6.6, for=10.1.2.3;proto=https;host=\"shop.test:8443\""
        );
    }

    fn client_ip_behind(c: &ClientConn, forwarded: &[&'static str]) -> HeaderValue {
        let mut h = HeaderMap::new();
        for line in forwarded {
            h.append(FORWARDED, HeaderValue::from_static(line));
        }
        c.entering(&mut h);
        c.for_component(&mut h);
        h[CLIENT_IP].clone()
    }

    #[test]
    fn a_trusted_proxy_sending_only_forwarded_names_the_client_with_its_last_for() {
        let c = conn("10.1.2.3:5000", &["10.0.0.0/8"], false);
        // The last element wins; earlier ones are the client's claims.
        assert_eq!(
            client_ip_behind(&c, &["for=6.6.6.6", "for=198.51.100.1;proto=https"]),
            "198.51.100.1"
        );
        assert_eq!(
            client_ip_behind(&c, &["for=6.6.6.6, for=198.51.100.2:4711"]),
            "198.51.100.2"
        );
        assert_eq!(
            client_ip_behind(&c, &["proto=http;For=\"[2001:db8::9]:443\";by=_x"]),
            "2001:db8::9"
        );
        assert_eq!(
            client_ip_behind(&c, &["for=\"[::ffff:192.0.2.4]\""]),
            "192.0.2.4",
            "a mapped address is its IPv4 form"
        );
        // A comma or semicolon inside a quoted host does not split.
        assert_eq!(
            client_ip_behind(&c, &["for=192.0.2.60;host=\"a,b;c\""]),
            "192.0.2.60"
        );
        // No address to take: the connection's own.
        for line in [
            "for=unknown",
            "for=_hidden",
            "for=\"_obf:_port\"",
            "proto=https",
            "for=\"[not-v6]\"",
            "for=6.6.6.6, for=unknown",
        ] {
            assert_eq!(client_ip_behind(&c, &[line]), "10.1.2.3", "{line}");
        }
        // X-Forwarded-For, when there, comes first.
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.5"));
        h.insert(FORWARDED, HeaderValue::from_static("for=198.51.100.6"));
        c.for_component(&mut h);
        assert_eq!(h[CLIENT_IP], "198.51.100.5");
        // From an untrusted client, Forwarded is dropped, never believed.
        let untrusted = conn("203.0.113.7:1", &["10.0.0.0/8"], false);
        assert_eq!(
            client_ip_behind(&untrusted, &["for=198.51.100.1"]),
            "203.0.113.7"
        );
    }

    #[test]
    fn ipv6_is_bracketed_and_quoted_and_mapped_ipv4_is_ipv4() {
        let c = conn("[2001:db8::1]:443", &[], false);
        let mut h = HeaderMap::new();
        c.for_origin(&mut h, "a.test");
        assert_eq!(h[X_FORWARDED_FOR], "2001:db8::1");
        assert_eq!(
            h[FORWARDED],
            "for=\"[2001:db8::1]\";proto=http;host=\"a.test\""
        );
        let mapped = conn("[::ffff:127.0.0.1]:1", &["127.0.0.1/32"], false);
        assert!(mapped.trusted);
        assert_eq!(mapped.client.ip().to_string(), "127.0.0.1");
    }
}
