//! Host (and optional path prefix) → app.
//!
//! Lookup order: exact hostname, then the longest matching `*.domain`
//! wildcard, then the catch-all `*`; within the chosen host, the longest path
//! prefix that matches at a `/` boundary.

use std::collections::HashMap;

use http::Request;

use crate::config::normalize_prefix;
use crate::names::{HostPattern, check_dns_name};

/// Why a request has no app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the request names no host (no Host header or :authority)")]
    MissingHost,
    #[error("the request's host is not a valid hostname")]
    InvalidHost,
    #[error("the request's host carries user information (user@host)")]
    Userinfo,
    #[error(
        "the request names more than one host (several Host headers, or a Host unlike :authority)"
    )]
    AmbiguousHost,
    #[error("no app serves host {0}")]
    UnknownHost(String),
    #[error("no app serves this path on host {0}")]
    NoPathMatch(String),
    /// The host belongs to an app of the node's snapshot that could not be
    /// loaded here (a bad artifact, a component this node refuses): said
    /// as such, rather than as a host nobody serves.
    #[error("the app serving host {0} could not be loaded on this node")]
    AppUnavailable(String),
}

/// Prefix routes of one host pattern, longest prefix first.
struct Routes<T>(Vec<(String, T)>);

impl<T> Routes<T> {
    fn find(&self, path: &str) -> Option<&T> {
        self.0
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, target)| target)
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

pub struct Router<T> {
    exact: HashMap<String, Routes<T>>,
    /// Wildcard suffixes (`.example.com`), longest first.
    wildcard: Vec<(String, Routes<T>)>,
    any: Option<Routes<T>>,
}

impl<T: Clone> Router<T> {
    /// Builds a router from `(hosts, path prefix, target)` entries. The config
    /// validation has already refused duplicate (host, prefix) pairs.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a [HostPattern], &'a str, T)>) -> Self {
        let mut exact: HashMap<String, Vec<(String, T)>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<(String, T)>> = HashMap::new();
        let mut any: Vec<(String, T)> = Vec::new();
        for (hosts, prefix, target) in entries {
            let prefix = normalize_prefix(prefix);
            for host in hosts {
                let entry = (prefix.clone(), target.clone());
                match host {
                    HostPattern::Exact(name) => exact.entry(name.clone()).or_default().push(entry),
                    HostPattern::Wildcard(suffix) => {
                        wildcard.entry(suffix.clone()).or_default().push(entry)
                    }
                    HostPattern::Any => any.push(entry),
                }
            }
        }
        let sorted = |mut v: Vec<(String, T)>| {
            v.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            Routes(v)
        };
        let mut wildcard: Vec<(String, Routes<T>)> =
            wildcard.into_iter().map(|(k, v)| (k, sorted(v))).collect();
        wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Router {
            exact: exact.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
            wildcard,
            any: (!any.is_empty()).then(|| sorted(any)),
        }
    }

    /// The target for `host` (already normalised by [`request_host`]) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Result<&T, RouteError> {
        let routes = self
            .exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, routes)| routes)
            })
            .or(self.any.as_ref())
            .ok_or_else(|| RouteError::UnknownHost(host.to_string()))?;
        routes
            .find(path)
            .ok_or_else(|| RouteError::NoPathMatch(host.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    /// Every target, once per route it has.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, routes)| routes))
            .chain(self.any.iter())
            .flat_map(|routes| routes.0.iter().map(|(_, target)| target))
    }
}

/// The hostname a request is for: the URI authority (HTTP/2 `:authority`, or
/// an HTTP/1 absolute-form target, which RFC 9112 §3.2.2 puts before
/// `Host`), else the `Host` header. Lowercased, without port or trailing
/// dot. Refused: several `Host` headers (RFC 9112 §3.2), userinfo
/// (`user@host`), and an HTTP/2 `Host` that names another host than
/// `:authority` (RFC 9113 §8.3.1): a proxy that read the other one would
/// route, or cache, the request under a name it was not sent to.
pub fn request_host<B>(req: &Request<B>) -> Result<String, RouteError> {
    let mut host_headers = req.headers().get_all(http::header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(RouteError::AmbiguousHost);
    }
    let parse_header = |value: &http::HeaderValue| -> Result<http::uri::Authority, RouteError> {
        let value = value.to_str().map_err(|_| RouteError::InvalidHost)?;
        value.parse().map_err(|_| RouteError::InvalidHost)
    };
    // The common case, an HTTP/1 request naming a plain host: taken apart
    // without building an `Authority` (which copies the value and walks it
    // twice); anything else takes the general path below.
    if req.uri().authority().is_none()
        && let Some(raw) = host_header.and_then(|h| plain_host(h.as_bytes()))
    {
        return normalized_host(raw);
    }
    let from_header;
    let authority = match (req.uri().authority(), host_header) {
        (Some(authority), header) => {
            if let Some(header) = header
                && req.version() == http::Version::HTTP_2
                && !parse_header(header)?
                    .as_str()
                    .eq_ignore_ascii_case(authority.as_str())
            {
                return Err(RouteError::AmbiguousHost);
            }
            authority
        }
        (None, Some(header)) => {
            from_header = parse_header(header)?;
            &from_header
        }
        (None, None) => return Err(RouteError::MissingHost),
    };
    if authority.as_str().contains('@') {
        return Err(RouteError::Userinfo);
    }
    normalized_host(authority.host())
}

/// The host of a `Host` value made only of letters, digits, `-` and `.`,
/// with an optional port of up to five digits: exactly what an `Authority`
/// parsed from it would give as its host.
fn plain_host(value: &[u8]) -> Option<&str> {
    let (host, port) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    let name = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    if host.is_empty() || !host.iter().all(name) {
        return None;
    }
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    std::str::from_utf8(host).ok()
}

/// A request's host as routes match it: lowercase, without a trailing
/// dot, a valid DNS name (or an IPv6 literal).
fn normalized_host(raw: &str) -> Result<String, RouteError> {
    if raw.is_empty() {
        return Err(RouteError::MissingHost);
    }
    let mut host = raw.to_ascii_lowercase();
    if host.ends_with('.') {
        host.pop();
    }
    // IPv6 literals (`[::1]`) are valid hosts for the catch-all route only,
    // and only real addresses, in one spelling (`[0:0::1]` is `[::1]`): the
    // host names the cache key and reaches the guest. Found by the router
    // fuzz target, which had `[jjjj:…]` accepted.
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let address: std::net::Ipv6Addr = literal.parse().map_err(|_| RouteError::InvalidHost)?;
        return Ok(format!("[{address}]"));
    }
    check_dns_name(&host).map_err(|_| RouteError::InvalidHost)?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|h| HostPattern::try_from(h.to_string()).unwrap())
            .collect()
    }

    fn router() -> Router<&'static str> {
        let a = hosts(&["a.test"]);
        let api = hosts(&["a.test"]);
        let wild = hosts(&["*.b.test"]);
        let deeper = hosts(&["*.x.b.test"]);
        Router::new(vec![
            (a.as_slice(), "/", "a"),
            (api.as_slice(), "/api/", "a-api"),
            (wild.as_slice(), "/", "b-any"),
            (deeper.as_slice(), "/", "b-x"),
        ])
    }

    #[test]
    fn exact_then_wildcard_then_nothing() {
        let r = router();
        assert_eq!(r.route("a.test", "/"), Ok(&"a"));
        assert_eq!(r.route("y.b.test", "/"), Ok(&"b-any"));
        assert_eq!(r.route("y.x.b.test", "/"), Ok(&"b-x"));
        assert_eq!(
            r.route("b.test", "/"),
            Err(RouteError::UnknownHost("b.test".into()))
        );
        assert_eq!(
            r.route("c.test", "/"),
            Err(RouteError::UnknownHost("c.test".into()))
        );
    }

    #[test]
    fn longest_prefix_at_segment_boundary() {
        let r = router();
        assert_eq!(r.route("a.test", "/api"), Ok(&"a-api"));
        assert_eq!(r.route("a.test", "/api/v1"), Ok(&"a-api"));
        assert_eq!(r.route("a.test", "/apix"), Ok(&"a"));
        let only_api = hosts(&["c.test"]);
        let r = Router::new(vec![(only_api.as_slice(), "/api", "c")]);
        assert_eq!(
            r.route("c.test", "/other"),
            Err(RouteError::NoPathMatch("c.test".into()))
        );
    }

    #[test]
    fn catch_all_comes_last() {
        let a = hosts(&["a.test"]);
        let any = hosts(&["*"]);
        let r = Router::new(vec![(a.as_slice(), "/", "a"), (any.as_slice(), "/", "any")]);
        assert_eq!(r.route("a.test", "/"), Ok(&"a"));
        assert_eq!(r.route("zzz", "/"), Ok(&"any"));
    }

    #[test]
    fn host_comes_from_authority_or_header() {
        let req = Request::builder()
            .uri("https://Example.TEST:8443/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Ok("example.test".into()));
        let req = Request::builder()
            .uri("/x")
            .header("host", "a.test.:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Ok("a.test".into()));
        let req = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(request_host(&req), Err(RouteError::MissingHost));
        let req = Request::builder()
            .uri("/x")
            .header("host", "bad_host!")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Err(RouteError::InvalidHost));
        let req = Request::builder()
            .uri("/x")
            .header("host", "[::1]:80")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Ok("[::1]".into()));
        // An IPv6 literal is a real address, in one spelling; anything else
        // in brackets is refused (found by fuzzing).
        let host = |value: &str| {
            let req = Request::builder()
                .uri("/x")
                .header("host", value)
                .body(())
                .unwrap();
            request_host(&req)
        };
        assert_eq!(host("[0:0::1]:80"), Ok("[::1]".into()));
        assert_eq!(host("[2001:DB8::A]"), Ok("[2001:db8::a]".into()));
        for bad in ["[jjjj:jjjj]", "[::1%eth0]", "[1.2.3.4]", "[]"] {
            assert_eq!(host(bad), Err(RouteError::InvalidHost), "{bad}");
        }
        let absolute = Request::builder()
            .uri("http://[jjjj:jj]/")
            .body(())
            .map(|req| request_host(&req));
        assert!(matches!(
            absolute,
            Ok(Err(RouteError::InvalidHost)) | Err(_)
        ));
    }

    #[test]
    fn a_plain_host_is_taken_apart_as_an_authority_would_be() {
        for value in [
            "a.test",
            "A.Test:8080",
            "a.test.",
            "a.test.:1",
            "a.test:65535",
            "a.test:99999",
            "127.0.0.1:80",
            "-x-.test",
            "..",
            "a--b.test:0",
        ] {
            let authority: http::uri::Authority = value.parse().unwrap();
            assert_eq!(
                plain_host(value.as_bytes()),
                Some(authority.host()),
                "{value}"
            );
        }
        // Anything else is left to the general path.
        for value in [
            "",
            ":80",
            "a.test:",
            "a.test:123456",
            "a.test:8a",
            "a.test:80:80",
            "[::1]:80",
            "user@a.test",
            "a_b.test",
            "a.test/x",
            "a.test%2e",
            "\u{e9}.test",
        ] {
            assert_eq!(plain_host(value.as_bytes()), None, "{value}");
        }
    }

    #[test]
    fn ambiguous_hosts_and_userinfo_are_refused() {
        let req = Request::builder()
            .uri("/x")
            .header("host", "a.test")
            .header("host", "b.test")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Err(RouteError::AmbiguousHost));
        let req = Request::builder()
            .uri("/x")
            .header("host", "attacker@origin.test")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Err(RouteError::Userinfo));
        let req = Request::builder()
            .uri("http://attacker@origin.test/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Err(RouteError::Userinfo));
        let h2 = |host: &str| {
            Request::builder()
                .version(http::Version::HTTP_2)
                .uri("https://a.test/x")
                .header("host", host)
                .body(())
                .unwrap()
        };
        assert_eq!(request_host(&h2("b.test")), Err(RouteError::AmbiguousHost));
        assert_eq!(request_host(&h2("A.test")), Ok("a.test".into()));
        // HTTP/1 absolute form: the target wins, the Host header is ignored.
        let req = Request::builder()
            .uri("http://a.test/x")
            .header("host", "b.test")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Ok("a.test".into()));
    }
}
