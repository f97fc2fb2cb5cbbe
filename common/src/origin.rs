//! Origin URLs of origin apps: apps with no component whose every request
//! a node forwards to `http(s)://host[:port][/base/path]`, with the edge
//! cache in front. One check for the control plane (what tenants send) and
//! the node (its config file, and what it syncs).
//!
//! Checked here rather than by `http::Uri` alone so a tenant learns which
//! part is wrong, and so nothing the node would have to guess at (a query
//! appended to every request, credentials in the URL) is ever stored.

use crate::names::check_dns_name;

/// Longest origin URL accepted (the same bound as a purge URL).
pub const MAX_ORIGIN_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("longer than {MAX_ORIGIN_BYTES} bytes")]
    TooLong,
    #[error("write an http:// or https:// URL, such as https://origin.example:8443/base")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("credentials (user:password@) are not allowed in the URL")]
    Userinfo,
    #[error("a query (`?...`) is not allowed; requests keep their own")]
    Query,
    #[error("a fragment (`#...`) is not allowed")]
    Fragment,
    #[error("invalid host `{host}`: {reason}")]
    Host { host: String, reason: &'static str },
    #[error("invalid port `{0}`: use 1 to 65535")]
    Port(String),
    #[error("invalid path `{0}`")]
    Path(String),
}

/// Checks an origin URL as a tenant wrote it, and returns it with the
/// scheme and host lowercased (the path is kept as written): nodes get
/// one spelling of each origin.
pub fn parse_origin(url: &str) -> Result<String, OriginError> {
    if url.len() > MAX_ORIGIN_BYTES {
        return Err(OriginError::TooLong);
    }
    let (scheme, rest) = url.split_once("://").ok_or(OriginError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(OriginError::Scheme);
    }
    if rest.contains('#') {
        return Err(OriginError::Fragment);
    }
    if rest.contains('?') {
        return Err(OriginError::Query);
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(OriginError::Userinfo);
    }
    check_authority(authority)?;
    check_path(path)?;
    let normalized = format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    );
    // Belt and braces: whatever passed must be a URI the node can parse.
    normalized
        .parse::<http::Uri>()
        .map_err(|_| OriginError::Path(path.to_string()))?;
    Ok(normalized)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn check_authority(authority: &str) -> Result<(), OriginError> {
    if authority.is_empty() {
        return Err(OriginError::NoHost);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (literal, after) = v6.split_once(']').ok_or_else(|| OriginError::Host {
            host: authority.to_string(),
            reason: "an IPv6 literal needs a closing `]`",
        })?;
        literal
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| OriginError::Host {
                host: literal.to_string(),
                reason: "not an IPv6 address",
            })?;
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(OriginError::Port(after.to_string())),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err(OriginError::NoHost);
        }
        check_dns_name(&host.to_ascii_lowercase()).map_err(|reason| OriginError::Host {
            host: host.to_string(),
            reason,
        })?;
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(OriginError::Port(port.to_string()));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), OriginError> {
    if path.is_empty() {
        return Ok(());
    }
    path.parse::<http::uri::PathAndQuery>()
        .map(|_| ())
        .map_err(|_| OriginError::Path(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_part_by_part() {
        for (ok, normalized) in [
            ("http://origin.test", "http://origin.test"),
            ("https://origin.test/", "https://origin.test/"),
            (
                "HTTPS://Origin.Test:8443/Base/Path",
                "https://origin.test:8443/Base/Path",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:9000/x", "http://[::1]:9000/x"),
            ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
        ] {
            assert_eq!(parse_origin(ok).as_deref(), Ok(normalized), "{ok}");
        }
        let long = format!("http://o.test/{}", "a".repeat(MAX_ORIGIN_BYTES));
        for (bad, expected) in [
            ("ftp://origin.test", OriginError::Scheme),
            ("origin.test", OriginError::Scheme),
            ("http://", OriginError::NoHost),
            ("http:///path", OriginError::NoHost),
            ("http://:80", OriginError::NoHost),
            ("http://o.test/a?b=1", OriginError::Query),
            ("http://o.test/a#top", OriginError::Fragment),
            ("http://user:pw@o.test", OriginError::Userinfo),
            ("http://o.test:0", OriginError::Port("0".into())),
            ("http://o.test:99999", OriginError::Port("99999".into())),
            ("http://o.test:", OriginError::Port(String::new())),
            ("http://[::1]x", OriginError::Port("x".into())),
            (long.as_str(), OriginError::TooLong),
        ] {
            assert_eq!(parse_origin(bad), Err(expected), "{bad}");
        }
        for bad in [
            "http://bad host",
            "http://a..b",
            "http://[nope]",
            "http://o.test/a b",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
